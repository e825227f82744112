//! A realistic run shared by the rendering tests: ten classes (two with hostile names),
//! three attacks in two norms, worst case, examples with images, checks and a failed gate.

#![allow(dead_code)]

use robust_report::*;

/// Hostile strings that must never reach a page unescaped.
pub const SCRIPT: &str = "<script>alert(1)</script>";
/// Breaks out of an attribute value.
pub const IMG: &str = "\"><img src=x onerror=alert(1)>";

/// A deterministic pseudo-random sequence in [-1, 1].
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A 3×32×32 "image": a coloured disc on a gradient, different for each class.
fn picture(class: usize) -> Vec<f32> {
    let (w, h) = (32usize, 32usize);
    let hue = class as f32 / 10.0;
    let mut data = vec![0.0f32; 3 * w * h];
    for y in 0..h {
        for x in 0..w {
            let dx = x as f32 - 15.5;
            let dy = y as f32 - 15.5;
            let inside = dx * dx + dy * dy < 100.0;
            let i = y * w + x;
            let base = 0.25 + 0.5 * (y as f32 / h as f32);
            let rgb = if inside {
                [
                    0.5 + 0.5 * (std::f32::consts::TAU * hue).cos(),
                    0.5 + 0.5 * (std::f32::consts::TAU * (hue + 0.33)).cos(),
                    0.5 + 0.5 * (std::f32::consts::TAU * (hue + 0.66)).cos(),
                ]
            } else {
                [base, base * 0.9, base * 0.8]
            };
            for c in 0..3 {
                data[c * w * h + i] = rgb[c];
            }
        }
    }
    data
}

fn example(attack: &str, eps: f64, index: usize, true_label: usize, adv_pred: usize) -> Example {
    let clean = picture(true_label);
    // L∞: every component moves by ±eps; L2: the budget is spread over all components.
    let step = if attack.contains("L2") {
        eps as f32 / (clean.len() as f32).sqrt()
    } else {
        eps as f32
    };
    let delta: Vec<f32> = noise(index as u64, clean.len())
        .iter()
        .map(|n| n.signum() * step)
        .collect();
    let adv: Vec<f32> = clean
        .iter()
        .zip(&delta)
        .map(|(c, d)| (c + d).clamp(0.0, 1.0))
        .collect();
    let real_delta: Vec<f32> = adv.iter().zip(&clean).map(|(a, c)| a - c).collect();
    Example {
        attack: attack.into(),
        eps,
        index,
        true_label,
        clean_pred: true_label,
        clean_conf: 0.97,
        adv_pred,
        adv_conf: 0.81,
        clean_png: png_base64(32, 32, 3, &clean).unwrap(),
        adv_png: png_base64(32, 32, 3, &adv).unwrap(),
        perturbation_png: png_base64(32, 32, 3, &perturbation_to_unit(&real_delta)).unwrap(),
    }
}

fn attack(
    name: &str,
    label: &str,
    norm: &str,
    params: &[(&str, serde_json::Value)],
    pts: &[(f64, f64)],
) -> AttackResult {
    let clean = 0.92;
    AttackResult {
        name: name.into(),
        label: label.into(),
        norm: norm.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        points: pts
            .iter()
            .enumerate()
            .map(|(i, &(eps, acc))| EpsPoint {
                eps,
                robust_accuracy: acc,
                attack_success_rate: ((clean - acc) / clean).max(0.0),
                mean_perturbation: eps * 0.93,
                max_perturbation: eps,
                per_class_robust: (0..10)
                    .map(|c| {
                        if c == 7 {
                            None
                        } else {
                            Some((acc + 0.04 * (c as f64 - 4.5)).clamp(0.0, 1.0))
                        }
                    })
                    .collect(),
                zero_grad_samples: i,
                nonfinite_grad_samples: 0,
                n: 500,
                ..Default::default()
            })
            .collect(),
    }
}

/// The realistic run.
pub fn realistic_run() -> RunResults {
    let mut class_names: Vec<String> = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    class_names[3] = SCRIPT.to_string();
    class_names[5] = IMG.to_string();
    let eps_linf = [
        1.0 / 255.0,
        2.0 / 255.0,
        4.0 / 255.0,
        8.0 / 255.0,
        16.0 / 255.0,
    ];
    let fgsm = attack(
        "fgsm",
        "FGSM Linf",
        "linf",
        &[("steps", 1.into())],
        &eps_linf
            .iter()
            .zip([0.74, 0.58, 0.41, 0.27, 0.19])
            .map(|(&e, a)| (e, a))
            .collect::<Vec<_>>(),
    );
    let pgd = attack(
        "pgd",
        "PGD-10 Linf",
        "linf",
        &[
            ("steps", 10.into()),
            ("step_size", (2.5 / 255.0 / 4.0).into()),
            ("restarts", 1.into()),
        ],
        &eps_linf
            .iter()
            .zip([0.71, 0.49, 0.22, 0.06, 0.004])
            .map(|(&e, a)| (e, a))
            .collect::<Vec<_>>(),
    );
    let pgd_l2 = attack(
        "pgd",
        "PGD-20 L2",
        "l2",
        &[("steps", 20.into()), ("step_size", 0.05.into())],
        &[(0.25, 0.63), (0.5, 0.38), (1.0, 0.12)],
    );
    let worst_linf: Vec<WorstCasePoint> = eps_linf
        .iter()
        .zip([0.70, 0.48, 0.21, 0.05, 0.002])
        .map(|(&eps, robust_accuracy)| WorstCasePoint {
            eps,
            robust_accuracy,
            attacks: vec!["FGSM Linf".into(), "PGD-10 Linf".into()],
        })
        .collect();
    let mut run = RunResults {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "robust".into(),
            version: "0.1.0".into(),
            burn_version: "0.22.1".into(),
            git_commit: Some("0123abcd".into()),
        },
        started_at: "2025-03-14T09:26:53Z".into(),
        duration_s: 183.4,
        seed: 42,
        device: DeviceInfo {
            requested: "auto".into(),
            backend: "wgpu".into(),
            adapter: "NVIDIA H100 (Vulkan)".into(),
        },
        model: ModelInfo {
            path: format!("models/{IMG}/resnet.onnx"),
            file_name: format!("resnet{SCRIPT}.onnx"),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            format: "onnx".into(),
            input_shape: vec![3, 32, 32],
            bounds: [0.0, 1.0],
            mean: Some(vec![0.4914, 0.4822, 0.4465]),
            std: Some(vec![0.247, 0.243, 0.261]),
            num_classes: 10,
            signature_verified: Some(true),
        },
        dataset: DatasetInfo {
            source: format!("datasets/cifar10-test{SCRIPT}.npz"),
            format: "npz".into(),
            size: 500,
            num_classes: 10,
            class_names,
            samples_sha256: None,
            conversions: Vec::new(),
        },
        clean_accuracy: 0.92,
        clean_per_class: (0..10)
            .map(|c| {
                if c == 7 {
                    None
                } else {
                    Some(0.85 + 0.015 * c as f64)
                }
            })
            .collect(),
        attacks: vec![fgsm, pgd, pgd_l2],
        worst_case: worst_linf
            .into_iter()
            .chain(
                [(0.25, 0.62), (0.5, 0.37), (1.0, 0.11)].map(|(eps, robust_accuracy)| {
                    WorstCasePoint {
                        eps,
                        robust_accuracy,
                        attacks: vec!["PGD-20 L2".into()],
                    }
                }),
            )
            .collect(),
        examples: vec![
            example("PGD-10 Linf", 8.0 / 255.0, 17, 3, 5),
            example("PGD-10 Linf", 8.0 / 255.0, 42, 5, 3),
            example("FGSM Linf", 4.0 / 255.0, 101, 0, 8),
            example("PGD-20 L2", 0.5, 256, 9, 9),
        ],
        checks: vec![],
        gate: None,
        primary_eps: None,
        audit: None,
        probes: None,
        backdoor: None,
    };
    // One gradient warning, so that every badge appears.
    run.attacks[2].points[2].zero_grad_samples = 40;
    run.checks = reliability_checks(&run, &CheckOptions::default());
    let thresholds = Thresholds {
        min: vec![
            MinRule {
                attack: "PGD-10 Linf".into(),
                eps: Some(8.0 / 255.0),
                min_robust_accuracy: 0.05,
            },
            MinRule {
                attack: "pgd".into(),
                eps: Some(1.0),
                min_robust_accuracy: 0.15,
            },
        ],
        max_drop: Some(0.02),
    };
    let mut baseline = run.clone();
    baseline.attacks[1].points[2].robust_accuracy = 0.25;
    run.gate = Some(evaluate_gate(
        &run,
        Some(("baselines/main.json", &baseline)),
        &thresholds,
    ));
    run
}

/// A history of four runs ending with `run`.
pub fn history_of(run: &RunResults) -> Vec<HistoryEntry> {
    (0..4)
        .map(|i| {
            let mut r = run.clone();
            r.started_at = format!("2025-03-{:02}T09:00:00Z", 11 + i);
            for a in &mut r.attacks {
                for p in &mut a.points {
                    p.robust_accuracy = (p.robust_accuracy + 0.01 * (3 - i) as f64).min(1.0);
                }
            }
            HistoryEntry::from_run(&r)
        })
        .collect()
}
