//! `robust eval --shard K/N` and `robust merge`: the merge of N shards equals the single
//! run (bit for bit on the CPU, timing fields aside), and unlike parts are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn robust_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_robust"));
    c.args(args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_MIN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("robust runs")
}

fn robust(args: &[&str]) -> Output {
    robust_env(args, &[])
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The demo sweep every run of this test shares: 130 samples in batches of 40 (so the last
/// batch is short and three shards get batches {0, 3}, {1} and {2}), FGSM and PGD with random start.
fn eval_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "eval",
        "--attack",
        "fgsm,pgd:steps=3",
        "--eps",
        "0,0.05,0.1",
        "--limit",
        "130",
        "--batch-size",
        "40",
        "--seed",
        "11",
        "--device",
        "cpu",
        "--quiet",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(out.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_eval(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let a = eval_args(out, extra);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    robust_env(&refs, env)
}

/// results.json without the fields that record when and how long.
fn comparable(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("started_at");
    o.remove("duration_s");
    v
}

#[test]
fn merged_shards_equal_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let o = run_eval(&single, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));

    let parts = dir.path().join("parts");
    // Shard 0 by flag, shard 1 from a Kubernetes Indexed Job's variable, shard 2 from a
    // Slurm array whose indices start at 1.
    let o = run_eval(&parts, &["--shard", "0/3"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("shard 0/3: 50 of 130 samples"),
        "{}",
        text(&o)
    );
    let o = run_eval(
        &parts,
        &["--shard", "auto/3"],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run_eval(
        &parts,
        &["--shard", "auto/3"],
        &[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let part = |k: usize| parts.join(format!("shard-{k}-of-3.json"));
    for k in 0..3 {
        assert!(part(k).is_file(), "shard {k}");
    }

    let merged = dir.path().join("merged");
    let p: Vec<String> = (0..3).map(|k| part(k).display().to_string()).collect();
    // Parts in any order.
    let o = robust(&[
        "merge",
        &p[2],
        &p[0],
        &p[1],
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["results.json", "report.html", "summary.md", "junit.xml"] {
        assert!(merged.join(f).is_file(), "{f}");
    }
    let (a, b) = (comparable(&single), comparable(&merged));
    assert_eq!(a, b, "the merge differs from the single run");
    // The comparison is not vacuous: PGD fooled some samples, and examples were kept.
    assert!(
        a["attacks"][1]["points"][2]["robust_accuracy"]
            .as_f64()
            .unwrap()
            < 0.95
    );
    assert!(!a["examples"].as_array().unwrap().is_empty());

    // Refusals: a missing shard, a shard twice, a part of another evaluation, a foreign
    // file. Each is one line and exit 2, naming the problem, and writes nothing.
    let refused = |args: &[&str], want: &str| {
        let out = dir.path().join("refused");
        let mut a = vec!["merge"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--out", out.to_str().unwrap()]);
        let o = robust(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(!out.exists(), "nothing written");
    };
    refused(&[&p[0], &p[1]], "shard 2/3 is missing");
    refused(&[&p[0], &p[1], &p[1]], "shard 1/3 is given twice");
    let other = dir.path().join("other");
    let o = run_eval(&other, &["--shard", "2/3", "--examples", "1"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let foreign_seed = other.join("shard-2-of-3.json");
    refused(
        &[&p[0], &p[1], foreign_seed.to_str().unwrap()],
        "their `examples` differs",
    );
    refused(
        &[&p[0], &p[1], single.join("results.json").to_str().unwrap()],
        "not a partial results file",
    );

    // A shard index the scheduler does not give is refused before anything runs.
    let o = run_eval(&dir.path().join("x"), &["--shard", "auto/3"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("JOB_COMPLETION_INDEX"), "{}", text(&o));
}

#[test]
fn the_merge_applies_the_shards_gate() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.json");
    let o = run_eval(
        &dir.path().join("b"),
        &["--save-baseline", base.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The baseline claims 100% everywhere: the merged run regresses.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    for a in v["attacks"].as_array_mut().unwrap() {
        for p in a["points"].as_array_mut().unwrap() {
            p["robust_accuracy"] = serde_json::json!(1.0);
        }
    }
    std::fs::write(&base, v.to_string()).unwrap();
    let parts = dir.path().join("parts");
    for k in 0..2 {
        let shard = format!("{k}/2");
        let o = run_eval(
            &parts,
            &[
                "--shard",
                &shard,
                "--baseline",
                base.to_str().unwrap(),
                "--max-drop",
                "0.02",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let merged = dir.path().join("merged");
    let o = robust(&[
        "merge",
        parts.join("shard-0-of-2.json").to_str().unwrap(),
        parts.join("shard-1-of-2.json").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("gate: FAILED"), "{}", text(&o));
}
