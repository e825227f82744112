//! `robust drift --method alibi-ks|mmd`, `--feature-space softmax|entropy` on tables, and
//! `robust history`, end to end through the binary. The drift cases are alibi-detect's own
//! (`datasets/alibi/cases.json`, made by `make_alibi.py`): the JSON robust writes must
//! carry alibi-detect's verdict, p-values, distances and threshold.

use std::io::Write as _;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;
use common::{robust, root, stderr};

fn case(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("datasets/alibi/cases.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

/// A case's table as CSV (columns f0, f1, …), each value written so that it reads back as
/// exactly the value alibi-detect was given.
fn write_csv(t: &Value, path: &Path) {
    let (rows, cols) = (
        t["rows"].as_u64().unwrap() as usize,
        t["cols"].as_u64().unwrap() as usize,
    );
    let f32_data = t["dtype"] == "float32";
    let values: Vec<f64> = t["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let v = v.as_f64().unwrap();
            if f32_data {
                v as f32 as f64
            } else {
                v
            }
        })
        .collect();
    let mut f = std::fs::File::create(path).unwrap();
    let header: Vec<String> = (0..cols).map(|j| format!("f{j}")).collect();
    writeln!(f, "{}", header.join(",")).unwrap();
    for i in 0..rows {
        let row: Vec<String> = (0..cols)
            .map(|j| format!("{:?}", values[i * cols + j]))
            .collect();
        writeln!(f, "{}", row.join(",")).unwrap();
    }
}

fn drift_case(name: &str, extra: &[&str]) -> (Output, Value, Value) {
    let c = case(name);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        dir.path().join("ref.csv"),
        dir.path().join("cur.csv"),
        dir.path().join("out.json"),
    );
    write_csv(&c["reference"], &a);
    write_csv(&c["current"], &b);
    let mut args = vec![
        "drift",
        "--reference",
        a.to_str().unwrap(),
        "--current",
        b.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
        "--p-val",
    ];
    let p = c["p_val_level"].to_string();
    args.push(&p);
    args.extend_from_slice(extra);
    let o = robust(&args);
    let json = std::fs::read_to_string(&out)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (o, json, c)
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn alibi_ks_writes_alibi_detects_verdict_and_fields() {
    for (name, correction) in [
        ("ks_bonferroni_shift", "bonferroni"),
        ("ks_fdr_none", "fdr"),
        ("ks_fdr_weak", "fdr"),
    ] {
        let (o, json, c) = drift_case(name, &["--method", "alibi-ks", "--correction", correction]);
        let e = &c["expected"];
        let drift = e["is_drift"].as_u64().unwrap();
        assert_eq!(
            o.status.code(),
            Some(drift as i32),
            "{name}: {}",
            stderr(&o)
        );
        assert_eq!(json["method"], "alibi-ks");
        assert_eq!(json["data"]["is_drift"], e["is_drift"], "{name}");
        assert_eq!(f32s(&json["data"]["p_val"]), f32s(&e["p_val"]), "{name}");
        assert_eq!(
            f32s(&json["data"]["distance"]),
            f32s(&e["distance"]),
            "{name}"
        );
        assert_eq!(json["data"]["threshold"], e["threshold"], "{name}");
        assert_eq!(json["meta"]["name"], "KSDrift");
    }
}

#[test]
fn entropy_and_softmax_spaces_read_tables_as_logits() {
    let (o, json, c) = drift_case(
        "uncertainty_less_confident",
        &["--method", "alibi-ks", "--feature-space", "entropy"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json["feature_space"], "entropy");
    assert_eq!(f32s(&json["data"]["p_val"]), f32s(&c["expected"]["p_val"]));
    assert_eq!(
        f32s(&json["data"]["distance"]),
        f32s(&c["expected"]["distance"])
    );
    let (o, json, c) = drift_case(
        "bbsd_less_confident",
        &["--method", "alibi-ks", "--feature-space", "softmax"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(f32s(&json["data"]["p_val"]), f32s(&c["expected"]["p_val"]));
    // Pixels of a table need no model; penultimate features do.
    let (o, _, _) = drift_case("ks_fdr_none", &["--feature-space", "penultimate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs --model"), "{}", stderr(&o));
}

#[test]
fn mmd_is_seeded_and_matches_alibi_detects_statistic() {
    let args = ["--method", "mmd", "--n-permutations", "300", "--seed", "5"];
    let (o1, j1, c) = drift_case("mmd_borderline", &args);
    let (o2, j2, _) = drift_case("mmd_borderline", &args);
    assert_eq!(o1.status.code(), Some(1), "{}", stderr(&o1));
    assert_eq!(o2.status.code(), Some(1));
    assert_eq!(j1["data"], j2["data"], "same seed, same result");
    let d = j1["data"]["distance"].as_f64().unwrap();
    let d_alibi = c["expected"]["distance"].as_f64().unwrap();
    assert!(
        (d - d_alibi).abs() <= 1e-6 * d_alibi.abs(),
        "{d} vs {d_alibi}"
    );
    let (_, j3, _) = drift_case(
        "mmd_borderline",
        &["--method", "mmd", "--n-permutations", "300", "--seed", "6"],
    );
    assert_ne!(j1["data"]["p_val"], Value::Null);
    assert_eq!(j3["data"]["distance"], j1["data"]["distance"]);
    // Bad settings are refused before anything runs.
    let (o, _, _) = drift_case("mmd_none", &["--method", "mmd", "--n-permutations", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let (o, _, _) = drift_case("mmd_none", &["--sigma", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--method mmd only"), "{}", stderr(&o));
}

fn history_line(t: &str, clean: f64, pgd: f64) -> String {
    format!(
        "{{\"started_at\":\"{t}\",\"model_sha256\":\"ab\",\"seed\":0,\"clean_accuracy\":{clean},\
         \"points\":[{{\"attack\":\"PGD-10 Linf\",\"eps\":0.03,\"robust_accuracy\":{pgd}}}]}}\n"
    )
}

#[test]
fn history_flags_a_slow_decline_and_charts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&history_line(
            &format!("2026-11-2{i}T02:00:00Z"),
            0.99,
            0.60 - 0.01 * i as f64,
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let html = dir.path().join("trend.html");
    let o = robust(&[
        "history",
        p,
        "--max-drop",
        "0.02",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("PGD-10 Linf @ eps 0.03"), "{out}");
    assert!(out.contains("DROP"), "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("PGD-10 Linf @ eps 0.03 dropped 0.0400"),
        "{err}"
    );
    assert!(!err.contains("clean accuracy"), "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("PGD-10 Linf"));
    // Night by night, each step is under the limit.
    let o = robust(&["history", p, "--max-drop", "0.02", "--window", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Without a limit it only shows.
    assert_eq!(robust(&["history", p]).status.code(), Some(0));
    // A malformed line is one error naming the file and line.
    text.push_str("{not json\n");
    std::fs::write(&path, &text).unwrap();
    let o = robust(&["history", p, "--max-drop", "0.02"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("line 6"), "{err}");
}
