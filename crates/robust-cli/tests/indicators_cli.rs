//! The indicators of attack failure end to end: each fires on a tiny model built to trigger
//! it (`models/indicators/make_indicators.py`) and stays quiet on the demo model; and
//! `--state` resumes a stopped run to the same results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn robust(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_robust"));
    cmd.args(args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("ROBUST_STOP_AFTER_BATCHES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("robust runs")
}

/// `robust eval` of `model` (the demo when `None`) on the first `limit` demo images.
fn eval(out: &Path, model: Option<&str>, attacks: &str, limit: &str) -> serde_json::Value {
    let mut args = vec![
        "eval", "--attack", attacks, "--eps", "0,0.1", "--limit", limit, "--device", "cpu",
        "--quiet", "--out",
    ];
    args.push(out.to_str().unwrap());
    if let Some(m) = model {
        args.extend_from_slice(&["--model", m]);
    }
    let o = robust(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

fn status<'a>(r: &'a serde_json::Value, id: &str) -> &'a str {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {:#}", r["checks"]))["status"]
        .as_str()
        .unwrap()
}

const INDICATORS: [&str; 8] = [
    "gradients/",
    "silent-success/",
    "incomplete-optimization/",
    "unconstrained-failure/",
    "unstable-predictions",
    "randomness",
    "logits",
    "square-vs-white-box/",
];

#[test]
fn indicators_stay_quiet_on_the_demo_model() {
    let dir = tempfile::tempdir().unwrap();
    let r = eval(dir.path(), None, "fgsm,apgd-ce,square:queries=100", "64");
    let mut seen = 0;
    for c in r["checks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        if INDICATORS.iter().any(|p| id.starts_with(p)) {
            assert!(
                c["status"] == "pass" || c["status"] == "not-applicable",
                "{c:#}"
            );
            seen += usize::from(c["status"] == "pass");
        }
    }
    // gradients ×3, silent success ×2 (Square records no iterates: n/a, not counted as a
    // pass), incomplete (APGD), unconstrained ×3, unstable, randomness, logits, Square.
    assert_eq!(
        status(&r, "silent-success/Square-100 Linf"),
        "not-applicable"
    );
    assert!(seen >= 12, "{seen} indicator checks: {:#}", r["checks"]);
    let probes = &r["probes"];
    assert_eq!(probes["samples"], 32);
    assert_eq!(probes["unconstrained"].as_array().unwrap().len(), 3);
}

#[test]
fn each_indicator_fires_on_a_model_built_for_it() {
    let dir = tempfile::tempdir().unwrap();
    // Rounded inputs: zero gradients; FGSM cannot move even with an unbounded epsilon, and
    // the gradient-free Square breaks what FGSM cannot.
    let r = eval(
        &dir.path().join("step"),
        Some("models/indicators/step.onnx"),
        "fgsm,square:queries=100",
        "32",
    );
    assert_eq!(status(&r, "gradients/FGSM Linf"), "warn");
    assert_eq!(status(&r, "unconstrained-failure/FGSM Linf"), "warn");
    assert_eq!(status(&r, "square-vs-white-box/Square-100 Linf"), "warn");
    // A softmax at the end: probabilities, not logits.
    let r = eval(
        &dir.path().join("softmax"),
        Some("models/indicators/softmax.onnx"),
        "fgsm",
        "32",
    );
    assert_eq!(status(&r, "logits"), "warn");
    assert_eq!(status(&r, "gradients/FGSM Linf"), "pass");
    // A high-frequency sawtooth of the input: the margin jumps under tiny noise, and PGD
    // passes through adversarial points it does not keep.
    let r = eval(
        &dir.path().join("sawtooth"),
        Some("models/indicators/sawtooth.onnx"),
        "pgd",
        "64",
    );
    assert_eq!(status(&r, "unstable-predictions"), "warn");
    assert_eq!(status(&r, "silent-success/PGD-10 Linf"), "warn");
    assert_eq!(status(&r, "logits"), "pass");
    // PGD with two steps on the demo model: still climbing when it stops.
    let r = eval(&dir.path().join("pgd2"), None, "pgd:steps=2", "64");
    assert_eq!(status(&r, "incomplete-optimization/PGD-2 Linf"), "warn");
    assert_eq!(status(&r, "unstable-predictions"), "pass");
}

#[test]
fn a_stopped_run_resumes_to_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let base = [
        "eval",
        "--attack",
        "pgd:steps=3,autoattack:steps=5:queries=20",
        "--eps",
        "0,0.1",
        "--limit",
        "90",
        "--batch-size",
        "30",
        "--device",
        "cpu",
        "--quiet",
        "--seed",
        "5",
    ];
    let run = |out: &str, state: Option<&str>, env: &[(&str, &str)]| {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args.extend(["--out".to_string(), d(out)]);
        if let Some(s) = state {
            args.extend(["--state".to_string(), d(s)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        robust(&args, env)
    };
    assert!(run("whole", None, &[]).status.success());
    // Stopped after the first batch, then after the second (of three), then finished.
    for _ in 0..2 {
        let o = run(
            "resumed",
            Some("state.json"),
            &[("ROBUST_STOP_AFTER_BATCHES", "1")],
        );
        assert_eq!(
            o.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!dir.path().join("resumed/results.json").exists());
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d("state.json")).unwrap()).unwrap();
    assert_eq!(state["sweeps"]["attacking"]["batches_done"], 2);
    assert!(run("resumed", Some("state.json"), &[]).status.success());
    let read = |out: &str| {
        let mut v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(out).join("results.json")).unwrap(),
        )
        .unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("started_at");
        o.remove("duration_s");
        v
    };
    assert_eq!(read("whole"), read("resumed"));

    // The state of another run (another seed) is refused, in one line, writing nothing.
    let mut args: Vec<&str> = base.to_vec();
    let other_out = d("other");
    let state = d("state.json");
    let last = args.len() - 1;
    args[last] = "6";
    args.extend(["--out", &other_out, "--state", &state]);
    let o = robust(&args, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("state.json") && err.contains("`seed` differs"),
        "{err}"
    );
    assert!(!dir.path().join("other").exists());
}

/// `--no-probes` skips the extra passes: the softmax model's outputs are not probed, so
/// the logits check (which fires on it with probes) and the other probe checks are n/a or
/// absent, no probes are recorded, and the robust accuracies are those of a probed run.
#[test]
fn no_probes_skips_the_extra_passes() {
    let dir = tempfile::tempdir().unwrap();
    let probed = eval(
        &dir.path().join("probed"),
        Some("models/indicators/softmax.onnx"),
        "fgsm",
        "32",
    );
    assert_eq!(status(&probed, "logits"), "warn");
    let out = dir.path().join("skipped");
    let o = robust(
        &[
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--limit",
            "32",
            "--device",
            "cpu",
            "--quiet",
            "--no-probes",
            "--model",
            "models/indicators/softmax.onnx",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(r["probes"].is_null(), "{:#}", r["probes"]);
    for id in [
        "logits",
        "randomness",
        "unstable-predictions",
        "unconstrained-failure/FGSM Linf",
    ] {
        let found = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id);
        if let Some(c) = found {
            assert_eq!(c["status"], "not-applicable", "{id}: {c:#}");
        }
    }
    assert_eq!(
        r["attacks"][0]["points"], probed["attacks"][0]["points"],
        "the attack's results do not depend on the probes"
    );
}
