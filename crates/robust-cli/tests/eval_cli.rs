//! `robust eval` and `robust report` end to end: exit codes, outputs, the gate, determinism
//! and bad input, running the real binary on the bundled demo.

use std::path::Path;
use std::process::Output;

use sha2::{Digest, Sha256};

mod common;
use common::{robust, root};

/// Runs `robust` from the repository root (so robust.toml, the demo, is found).
fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn eval_small(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "eval", "--attack", "fgsm,pgd", "--eps", "0,0.1", "--limit", "100", "--quiet", "--out", out,
    ];
    if !extra.contains(&"--device") {
        args.extend_from_slice(&["--device", "cpu"]);
    }
    args.extend_from_slice(extra);
    robust(&args)
}

fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn demo_eval_writes_every_output_and_records_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = eval_small(dir.path(), &["--seed", "7"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("clean accuracy:"), "{stdout}");
    assert!(stdout.contains("PGD-10 Linf"), "{stdout}");
    for f in ["results.json", "report.html", "summary.md", "junit.xml"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let r = results(dir.path());
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["seed"], 7);
    assert_eq!(r["device"]["backend"], "flex");
    assert_eq!(r["dataset"]["size"], 100);
    let model = std::fs::read(root().join("models/mnist-cnn/model.onnx")).unwrap();
    assert_eq!(r["model"]["sha256"], hex::encode(Sha256::digest(&model)));
    assert_eq!(r["model"]["mean"][0].as_f64().unwrap() as f32, 0.1307f32);
    let pgd = &r["attacks"][1];
    assert_eq!(pgd["params"]["steps"], 10);
    assert_eq!(pgd["params"]["random_start"], true);
    // Robust accuracy at eps 0 is the clean accuracy, and the table agrees with the JSON.
    assert_eq!(pgd["points"][0]["robust_accuracy"], r["clean_accuracy"]);
    let acc = pgd["points"][1]["robust_accuracy"].as_f64().unwrap();
    assert!(stdout.contains(&format!("{:.2}%", acc * 100.0)), "{stdout}");
    // The same run through the report crate's schema.
    robust_report::RunResults::read(dir.path().join("results.json")).expect("schema round trip");
}

#[test]
fn a_seed_makes_the_run_repeatable() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(eval_small(a.path(), &["--seed", "3"]).status.success());
    assert!(eval_small(b.path(), &["--seed", "3"]).status.success());
    assert_eq!(results(a.path())["attacks"], results(b.path())["attacks"]);
    assert_eq!(results(a.path())["examples"], results(b.path())["examples"]);
}

#[test]
fn gate_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    assert!(eval_small(&base, &[]).status.success());

    // The same run against itself passes a max-drop gate.
    let run = dir.path().join("run");
    let baseline = base.join("results.json");
    let o = eval_small(
        &run,
        &[
            "--baseline",
            baseline.to_str().unwrap(),
            "--max-drop",
            "0.02",
        ],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("gate: PASSED"), "{stdout}");
    assert_eq!(results(&run)["gate"]["passed"], true);

    // A baseline 10 points better everywhere is a regression: exit 1, the failing rows shown.
    let mut better = results(&base);
    for a in better["attacks"].as_array_mut().unwrap() {
        for p in a["points"].as_array_mut().unwrap() {
            let v = p["robust_accuracy"].as_f64().unwrap();
            p["robust_accuracy"] = serde_json::json!((v + 0.1).min(1.0));
        }
    }
    let better_path = dir.path().join("better.json");
    std::fs::write(&better_path, serde_json::to_string(&better).unwrap()).unwrap();
    let o = eval_small(
        &run,
        &[
            "--baseline",
            better_path.to_str().unwrap(),
            "--max-drop",
            "0.02",
        ],
    );
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("gate: FAILED") && stdout.contains("FAIL "),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");

    // Minimum robust accuracy rules.
    let o = eval_small(&run, &["--min-robust", "*@0.1=0.99"]);
    assert_eq!(o.status.code(), Some(1));
    let o = eval_small(&run, &["--min-robust", "FGSM Linf@0.1=0.05"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    // A minimum that is not a fraction is bad input: NaN used to make results.json invalid
    // after the run (exit 1), and 5 a gate no model can pass.
    for rule in ["*@0.1=nan", "*@0.1=5"] {
        let o = eval_small(&run, &["--min-robust", rule]);
        assert_eq!(o.status.code(), Some(2), "{rule}: {}", text(&o).1);
        assert!(text(&o).1.contains("between 0 and 1"), "{}", text(&o).1);
    }
}

#[test]
fn report_rerenders_an_old_run() {
    let dir = tempfile::tempdir().unwrap();
    assert!(eval_small(dir.path(), &[]).status.success());
    let res = dir.path().join("results.json");
    let o = robust(&[
        "report",
        res.to_str().unwrap(),
        "--format",
        "md",
        "--out",
        "-",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stdout.contains("FGSM Linf") && stdout.contains("Clean accuracy"),
        "{stdout}"
    );
    let o = robust(&["report", "/nonexistent/results.json"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Bad input: exit code 2, one line on stderr naming the problem, no output written.
#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"\x00\x01garbage").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "/nonexistent/net.onnx"],
            "/nonexistent/net.onnx",
        ),
        (vec!["--model", junk.to_str().unwrap()], "junk.onnx"),
        (vec!["--data", "/nonexistent/images"], "/nonexistent/images"),
        (vec!["--eps", "abc"], "abc"),
        (vec!["--attack", "boundary"], "unknown attack 'boundary'"),
        (vec!["--batch-size", "0"], "batch-size"),
        (vec!["--device", "tpu"], "unknown device 'tpu'"),
        (vec!["--max-drop", "0.1"], "--baseline"),
        (
            vec!["--baseline", "/nonexistent/base.json"],
            "/nonexistent/base.json",
        ),
        (
            vec!["--config", "/nonexistent/robust.toml"],
            "/nonexistent/robust.toml",
        ),
    ];
    for (extra, needle) in cases {
        let out = dir.path().join("out");
        let o = eval_small(&out, &extra);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "{extra:?}: stderr should name '{needle}': {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert!(!out.join("results.json").exists(), "{extra:?} wrote output");
    }
}

#[test]
fn convergence_check_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let h = history.to_str().unwrap();
    let o = eval_small(dir.path(), &["--check-convergence", "--history", h]);
    assert!(o.status.success(), "{}", text(&o).1);
    let r = results(dir.path());
    let ids: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"convergence/PGD-10 Linf"), "{ids:?}");
    assert!(
        !ids.iter().any(|i| i.starts_with("convergence/FGSM")),
        "{ids:?}"
    );
    let o = eval_small(dir.path(), &["--history", h]);
    assert!(o.status.success());
    let lines = std::fs::read_to_string(&history).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let history_section = html
        .split("<section id=\"history\">")
        .nth(1)
        .expect("a history section");
    assert!(
        history_section.contains("<svg"),
        "the report should chart the history"
    );
}

#[test]
fn help_has_examples() {
    for cmd in ["eval", "report"] {
        let o = robust(&[cmd, "--help"]);
        assert!(o.status.success());
        assert!(
            text(&o).0.contains("Example"),
            "{cmd} --help has no examples"
        );
    }
}

/// The printed table, with the run-dependent parts filtered out.
#[test]
fn table_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let o = robust(&[
        "eval",
        "--attack",
        "fgsm",
        "--eps",
        "0,0.05,0.1",
        "--limit",
        "200",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"wrote .*results\.json", "wrote [OUT]/results.json");
    settings.add_filter(r"in \d+\.\d s", "in [T] s");
    settings.bind(|| insta::assert_snapshot!(text(&o).0));
}

/// On wgpu one device buffer has a size limit (128 MiB on lavapipe): a batch whose largest
/// activation would not fit is refused up front with the largest batch that fits, and that
/// batch runs. (The demo CNN's largest activation is 8×28×28 floats per sample.)
#[test]
fn wgpu_batch_size_must_fit_one_device_buffer() {
    let devices = text(&robust(&["devices"])).0;
    if !devices
        .lines()
        .any(|l| l.starts_with("wgpu:") && l.contains("largest buffer"))
    {
        assert_ne!(
            std::env::var("ROBUST_REQUIRE_WGPU").as_deref(),
            Ok("1"),
            "wgpu is required by ROBUST_REQUIRE_WGPU=1 but `robust devices` lists none:\n{devices}"
        );
        eprintln!("skipped: no wgpu adapter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let small = [
        "eval", "--device", "wgpu", "--attack", "fgsm", "--eps", "0", "--limit", "4", "--quiet",
        "--out", out_arg,
    ];
    let mut args = small.to_vec();
    args.extend(["--batch-size", "100000000"]);
    let o = robust(&args);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(!out.join("results.json").exists());
    let line = stderr
        .lines()
        .find(|l| l.contains("--batch-size 100000000 is too large"))
        .unwrap_or_else(|| panic!("no batch-size error in: {stderr}"));
    assert!(line.contains("24.5 KiB per sample"), "{line}");
    let most: usize = line
        .rsplit("use at most ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no suggested batch size in: {line}"));
    assert!((1..100_000_000).contains(&most), "{line}");
    let most = most.to_string();
    let mut args = small.to_vec();
    args.extend(["--batch-size", most.as_str()]);
    let o = robust(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
}

/// robust.toml's `[model]` settings belong to the file it names: `--model` naming that same
/// file (by another spelling) keeps its normalization; another file gets none of them, and
/// stderr says so, and that a model without normalization gets raw pixels. An ε wider than
/// the input range is warned about.
#[test]
fn config_model_settings_apply_only_to_the_model_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same");
    let o = robust(&[
        "eval",
        "--model",
        "./models/../models/mnist-cnn/model.onnx",
        "--attack",
        "fgsm",
        "--eps",
        "0.1",
        "--limit",
        "50",
        "--device",
        "cpu",
        "--out",
        same.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        results(&same)["model"]["mean"][0]
            .as_f64()
            .map(|v| v as f32),
        Some(0.1307)
    );
    assert!(!stderr.contains("no --mean/--std"), "{stderr}");

    let copy = dir.path().join("copy.onnx");
    std::fs::copy(root().join("models/mnist-cnn/model.onnx"), &copy).unwrap();
    let other = dir.path().join("other");
    let o = robust(&[
        "eval",
        "--model",
        copy.to_str().unwrap(),
        "--attack",
        "fgsm",
        "--eps",
        "8",
        "--limit",
        "50",
        "--device",
        "cpu",
        "--out",
        other.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(results(&other)["model"]["mean"].is_null());
    assert!(
        stderr.contains("is not the model robust.toml names"),
        "{stderr}"
    );
    assert!(stderr.contains("no --mean/--std given"), "{stderr}");
    assert!(
        stderr.contains("epsilon 8 is larger than the whole input range"),
        "{stderr}"
    );
}

/// ε is recorded as the decimal the user wrote, not as its float32 rounding widened to f64.
#[test]
fn epsilon_is_recorded_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let o = eval_small(dir.path(), &["--eps", "0.05,8/255"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let json = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
    assert!(json.contains("\"eps\": 0.05,"), "{json}");
    assert!(!json.contains("0.05000000074505806"));
}
