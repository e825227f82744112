//! `robust eval` with the minimum-norm attacks (CW-L2, DeepFool) and AutoAttack's `plus`
//! version, end to end on the bundled demo: the median perturbation in every report (checked
//! against the per-sample sizes of a shard file), sharded runs, the component breakdown of
//! `plus`, and bad settings.

use std::path::Path;
use std::process::Output;

mod common;
use common::{robust, stderr};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const MIN_NORM: &str = "deepfool,cw:steps=40:binary_search_steps=3:step_size=0.1:initial_const=1";

fn eval(out: &Path, attack: &str, eps: &str, limit: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval", "--attack", attack, "--eps", eps, "--limit", limit, "--quiet", "--device", "cpu",
        "--out",
    ];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    robust(&args)
}

/// The median of the clean-correct samples' sizes (null: +∞), as NumPy's median.
fn median(sizes: &[Option<f64>], clean: &[bool]) -> f64 {
    let mut v: Vec<f64> = sizes
        .iter()
        .zip(clean)
        .filter(|(_, &c)| c)
        .map(|(s, _)| s.unwrap_or(f64::INFINITY))
        .collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median in results.json, summary.md and report.html is the median of the per-sample
/// sizes the shard file records, and each ε's robust accuracy is the share of clean-correct
/// samples whose size exceeds ε; two shards merged give the single run's numbers.
#[test]
fn minimum_norm_attacks_report_their_median_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let o = eval(&single, MIN_NORM, "0,1,2", "60", &["--batch-size", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("median smallest perturbation"), "{stdout}");
    let part_dir = dir.path().join("part");
    let o = eval(
        &part_dir,
        MIN_NORM,
        "0,1,2",
        "60",
        &["--batch-size", "30", "--shard", "0/1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let part = json(&part_dir.join("shard-0-of-1.json"));
    let r = json(&single.join("results.json"));
    let md = std::fs::read_to_string(single.join("summary.md")).unwrap();
    let html = std::fs::read_to_string(single.join("report.html")).unwrap();
    for (a, attack) in r["attacks"].as_array().unwrap().iter().enumerate() {
        let points = part["points"][a].as_array().unwrap();
        let clean: Vec<bool> = points[0]["robust"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let sizes: Vec<Option<f64>> = points[0]["minimum_norms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64())
            .collect();
        assert_eq!(sizes.len(), 60);
        let want = median(&sizes, &clean);
        let m = &attack["params"]["median_perturbation"];
        let got = m["median"].as_f64().unwrap_or(f64::INFINITY);
        assert!(
            want.is_finite() && (got - want).abs() <= 1e-6 * want,
            "{}: median {got} vs {want} from the sizes",
            attack["label"]
        );
        assert_eq!(
            m["points"].as_u64().unwrap() as usize,
            clean.iter().filter(|&&c| c).count()
        );
        let unbroken = (0..60).filter(|&i| clean[i] && sizes[i].is_none()).count();
        assert_eq!(m["unbroken"].as_u64().unwrap() as usize, unbroken);
        for p in attack["points"].as_array().unwrap() {
            let eps = p["eps"].as_f64().unwrap();
            let robust = (0..60)
                .filter(|&i| clean[i] && sizes[i].is_none_or(|s| s > eps))
                .count();
            let acc = p["robust_accuracy"].as_f64().unwrap();
            assert!(
                (acc - robust as f64 / 60.0).abs() < 1e-9,
                "{} at ε {eps}: {acc} vs {robust}/60",
                attack["label"]
            );
        }
        let line = format!("median smallest perturbation {want:.4}");
        assert!(md.contains(&line), "summary.md lacks '{line}'");
        assert!(html.contains(&line), "report.html lacks '{line}'");
    }
    // Two shards merged: the single run's medians.
    let parts = dir.path().join("parts");
    for k in ["0/2", "1/2"] {
        let o = eval(
            &parts,
            MIN_NORM,
            "0,1,2",
            "60",
            &["--batch-size", "30", "--shard", k],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let merged = dir.path().join("merged");
    let o = robust(&[
        "merge",
        parts.join("shard-0-of-2.json").to_str().unwrap(),
        parts.join("shard-1-of-2.json").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&merged.join("results.json"));
    for (a, b) in r["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m["attacks"].as_array().unwrap())
    {
        assert_eq!(
            a["params"]["median_perturbation"], b["params"]["median_perturbation"],
            "{}",
            a["label"]
        );
    }
}

/// `autoattack:version=plus` runs its six components in the reference's order, each on the
/// points still robust, and is at least as strong as `standard` on the same data (its first
/// restarts and its targeted components are standard's, drawn from the same per-sample
/// streams).
#[test]
fn autoattack_plus_runs_its_six_components() {
    let dir = tempfile::tempdir().unwrap();
    let small = "steps=10:queries=50:n_target_classes=2";
    let attack = format!("autoattack:{small},autoattack:version=plus:{small}:restarts=2");
    let o = eval(dir.path(), &attack, "0.1", "30", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&dir.path().join("results.json"));
    let attacks = r["attacks"].as_array().unwrap();
    let (standard, plus) = (&attacks[0], &attacks[1]);
    assert_eq!(plus["params"]["version"], "plus");
    let chain = &plus["params"]["components_by_eps"][0]["components"];
    let names: Vec<&str> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    );
    let acc = |a: &serde_json::Value| a["points"][0]["robust_accuracy"].as_f64().unwrap();
    let clean = r["clean_accuracy"].as_f64().unwrap();
    let broken: usize = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["broken"].as_array().unwrap().len())
        .sum();
    assert!(
        (clean - acc(plus) - broken as f64 / 30.0).abs() < 1e-9,
        "clean {clean}, robust {}, {broken} broken",
        acc(plus)
    );
    let last = chain[5]["robust_accuracy_after"].as_f64().unwrap();
    assert!((last - acc(plus)).abs() < 1e-9);
    assert!(
        acc(plus) <= acc(standard) + 1e-9,
        "plus {} vs standard {}",
        acc(plus),
        acc(standard)
    );
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("apgd-dlr") && md.contains("fab-t"), "{md}");
}

/// Bad settings of the new attacks are one-line errors, exit 2.
#[test]
fn bad_minimum_norm_settings_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (attack, want) in [
        ("cw:overshoot=0.1", "has no overshoot"),
        ("cw-l2:norm=linf", "L2 attack"),
        ("deepfool:candidates=1", "candidates must be at least 2"),
        ("cw:confidence=-1", "confidence must be"),
        (
            "autoattack:version=bogus",
            "available: standard, plus, rand",
        ),
        ("fab:n_target_classes=3", "has no n_target_classes"),
    ] {
        let o = eval(dir.path(), attack, "0.1", "5", &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{attack}: {err}");
        assert!(err.contains(want), "{attack}: '{err}' lacks '{want}'");
        assert_eq!(err.trim().lines().count(), 1, "{attack}: {err}");
    }
}
