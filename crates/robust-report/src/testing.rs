//! Builders for unit tests.

use crate::schema::*;

/// A point with the given robust accuracy over 100 samples and otherwise plausible values.
pub(crate) fn point(eps: f64, robust_accuracy: f64) -> EpsPoint {
    EpsPoint {
        eps,
        robust_accuracy,
        attack_success_rate: (0.9 - robust_accuracy).max(0.0) / 0.9,
        mean_perturbation: eps * 0.9,
        max_perturbation: eps,
        per_class_robust: vec![Some(robust_accuracy), Some(robust_accuracy / 2.0), None],
        zero_grad_samples: 0,
        nonfinite_grad_samples: 0,
        n: 100,
        ..Default::default()
    }
}

/// An attack with `steps` steps and one point per `(eps, robust_accuracy)`.
pub(crate) fn attack(label: &str, norm: &str, steps: u64, points: &[(f64, f64)]) -> AttackResult {
    let mut params = serde_json::Map::new();
    params.insert("steps".into(), steps.into());
    AttackResult {
        name: if steps == 1 { "fgsm" } else { "pgd" }.into(),
        label: label.into(),
        norm: norm.into(),
        params,
        points: points.iter().map(|&(e, a)| point(e, a)).collect(),
    }
}

/// A small, consistent run: 3 classes, FGSM and PGD-10 in Linf over three epsilons.
pub(crate) fn sample_run() -> RunResults {
    RunResults {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "robust".into(),
            version: "0.1.0".into(),
            burn_version: "0.22.1".into(),
            git_commit: Some("abc123".into()),
        },
        started_at: "2025-01-31T12:00:00Z".into(),
        duration_s: 12.5,
        seed: 7,
        device: DeviceInfo {
            requested: "auto".into(),
            backend: "flex".into(),
            adapter: "cpu".into(),
        },
        model: ModelInfo {
            path: "models/net.onnx".into(),
            file_name: "net.onnx".into(),
            sha256: "ab".repeat(32),
            format: "onnx".into(),
            input_shape: vec![1, 28, 28],
            bounds: [0.0, 1.0],
            mean: None,
            std: None,
            num_classes: 3,
            signature_verified: None,
        },
        dataset: DatasetInfo {
            source: "datasets/tiny.npz".into(),
            format: "npz".into(),
            size: 100,
            num_classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
            samples_sha256: None,
            conversions: Vec::new(),
        },
        clean_accuracy: 0.9,
        clean_per_class: vec![Some(0.95), Some(0.85), None],
        attacks: vec![
            attack(
                "FGSM Linf",
                "linf",
                1,
                &[(0.01, 0.8), (0.03, 0.6), (0.1, 0.3)],
            ),
            attack(
                "PGD-10 Linf",
                "linf",
                10,
                &[(0.01, 0.7), (0.03, 0.4), (0.1, 0.05)],
            ),
        ],
        worst_case: vec![
            WorstCasePoint {
                eps: 0.01,
                robust_accuracy: 0.7,
                attacks: vec!["FGSM Linf".into(), "PGD-10 Linf".into()],
            },
            WorstCasePoint {
                eps: 0.03,
                robust_accuracy: 0.4,
                attacks: vec!["FGSM Linf".into(), "PGD-10 Linf".into()],
            },
            WorstCasePoint {
                eps: 0.1,
                robust_accuracy: 0.05,
                attacks: vec!["FGSM Linf".into(), "PGD-10 Linf".into()],
            },
        ],
        examples: vec![],
        checks: vec![],
        gate: None,
        primary_eps: None,
        audit: None,
        probes: None,
        backdoor: None,
    }
}

/// A backdoor scan of ten classes, class 1 far below the others (flagged when `flag`).
pub(crate) fn sample_scan(flag: bool) -> crate::backdoor::BackdoorScan {
    let norms = [40.0, 11.5, 38.0, 45.0, 44.0, 50.0, 41.0, 47.0, 39.0, 43.0];
    let classes = norms
        .iter()
        .enumerate()
        .map(|(k, &n)| crate::backdoor::BackdoorClass {
            class: k,
            norm: n,
            anomaly_index: Some(((n - 42.0f64) / (1.4826 * 3.0)).abs()),
            below_median: n < 42.0,
            flagged: flag && k == 1,
            reached_threshold: k != 5,
            attack_success: 0.99,
            attack_samples: 270,
            steps: 30,
            final_cost: 1e-3,
            images: Some(crate::backdoor::TriggerImages {
                mask_png: "iVBO".into(),
                pattern_png: "iVBO".into(),
                trigger_png: "iVBO".into(),
            }),
            ..Default::default()
        })
        .collect();
    crate::backdoor::BackdoorScan {
        method: "neural-cleanse".into(),
        scope: "all-sources".into(),
        samples: 300,
        seed: 0,
        duration_s: 5.0,
        settings: crate::backdoor::BackdoorSettings {
            steps: 30,
            success_threshold: 0.99,
            ..Default::default()
        },
        anomaly_threshold: 2.0,
        median_norm: 42.0,
        mad: 3.0,
        mask_pixels: 784,
        classes,
        flagged: if flag { vec![1] } else { vec![] },
    }
}
