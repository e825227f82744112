//! A newcomer's first hour (issue 14): no silent settings, a gate that refuses unlike runs,
//! a baseline that can be saved, per-attack settings on the command line, the headline ε,
//! and data conversions that are recorded, all through the real binary on the demo.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{robust, root, stderr};

/// Runs `robust` from the repository root (so robust.toml, the demo, is found).
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// FGSM at ε 0 and 0.1 on the first `limit` demo images, on the CPU, into `out`.
fn eval(out: &Path, limit: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        "--attack",
        "fgsm",
        "--eps",
        "0,0.1",
        "--limit",
        limit,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    robust(&args)
}

fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn the_gate_refuses_a_baseline_from_an_unlike_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("baseline.json");
    let b = base.to_str().unwrap();
    // --save-baseline writes this run's results.json to the named file.
    let o = eval(&dir.path().join("a"), "60", &["--save-baseline", b]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(&base).unwrap(),
        std::fs::read(dir.path().join("a/results.json")).unwrap()
    );
    let gate = ["--baseline", b, "--max-drop", "0.02"];

    // The same run compares and passes.
    let o = eval(&dir.path().join("b"), "60", &gate);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Fewer samples: refused before any attack runs, nothing written.
    let o = eval(&dir.path().join("c"), "30", &gate);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("baseline.json") && e.contains("60 samples, this run 30"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!dir.path().join("c/results.json").exists());

    // Another ε grid: refused, naming the missing point.
    let mut args = vec![
        "eval", "--attack", "fgsm", "--eps", "0,0.05", "--limit", "60", "--device", "cpu",
        "--quiet", "--out",
    ];
    let d = dir.path().join("d");
    args.push(d.to_str().unwrap());
    args.extend_from_slice(&gate);
    let o = robust(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("FGSM Linf at eps 0.1"),
        "{}",
        stderr(&o)
    );

    // The same number of other samples (the image folder holds 30 demo-like images, the
    // npy's first 30 are others): refused by the samples' digest, results kept.
    let small = dir.path().join("small.json");
    let o = robust(&[
        "eval",
        "--attack",
        "fgsm",
        "--eps",
        "0,0.1",
        "--data",
        "datasets/mnist-folder",
        "--classes",
        "datasets/mnist-demo/classes.txt",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        dir.path().join("e").to_str().unwrap(),
        "--save-baseline",
        small.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = eval(
        &dir.path().join("f"),
        "30",
        &["--baseline", small.to_str().unwrap(), "--max-drop", "0.5"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("the samples differ"), "{}", stderr(&o));
    let r = results(&dir.path().join("f"));
    assert!(r["gate"].is_null(), "no gate on an unlike baseline");
    // The digest is the SHA-256 of labels and pixels, independent of the file format: the
    // folder's digest differs from the npy's, and both are 64 hex digits.
    let f = r["dataset"]["samples_sha256"].as_str().unwrap();
    let e = results(&dir.path().join("e"))["dataset"]["samples_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!((f.len(), e.len()), (64, 64));
    assert_ne!(f, e);

    // A failing gate does not move the baseline forward.
    let mut better = results(&dir.path().join("a"));
    for p in better["attacks"][0]["points"].as_array_mut().unwrap() {
        p["robust_accuracy"] = serde_json::json!(1.0);
    }
    let strict = dir.path().join("strict.json");
    std::fs::write(&strict, serde_json::to_string(&better).unwrap()).unwrap();
    let before = std::fs::read(&strict).unwrap();
    let s = strict.to_str().unwrap();
    let o = eval(
        &dir.path().join("g"),
        "60",
        &["--baseline", s, "--max-drop", "0.02", "--save-baseline", s],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("not saved"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&strict).unwrap(), before);
}

#[test]
fn the_digest_is_sha256_of_labels_and_pixels() {
    // Independent computation from the npy files: per sample, the SHA-256 of its label as
    // u64 LE, then its pixels as f32 LE (the demo's images are uint8, divided by 255 into
    // [0, 1]); then the SHA-256 of those digests in order.
    let dir = tempfile::tempdir().unwrap();
    let o = eval(dir.path(), "5", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let read = |name: &str| -> Vec<u8> {
        let bytes = std::fs::read(root().join("datasets/mnist-demo").join(name)).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        npy.into_vec::<u8>().unwrap()
    };
    let images = read("images.npy");
    let labels: Vec<i64> = {
        let bytes = std::fs::read(root().join("datasets/mnist-demo/labels.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<i64>()
            .unwrap()
    };
    use sha2::Digest as _;
    // SHA-256 of the per-sample SHA-256s, so that shards can combine theirs.
    let mut h = sha2::Sha256::new();
    for i in 0..5 {
        let mut one = sha2::Sha256::new();
        one.update((labels[i] as u64).to_le_bytes());
        for &v in &images[i * 784..(i + 1) * 784] {
            one.update((f32::from(v) / 255.0).to_le_bytes());
        }
        h.update(one.finalize());
    }
    assert_eq!(
        results(dir.path())["dataset"]["samples_sha256"],
        hex::encode(h.finalize())
    );
}

#[test]
fn per_attack_settings_and_flags_that_fit_some_attacks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = |attack: &str, extra: &[&str]| {
        let mut args = vec![
            "eval", "--attack", attack, "--eps", "0,0.1", "--limit", "20", "--device", "cpu",
            "--quiet", "--out", out,
        ];
        args.extend_from_slice(extra);
        robust(&args)
    };
    // --steps applies to PGD only; pgd:... beats the flag; bim takes the flag.
    let o = run("fgsm,pgd:steps=3:random_start=false,bim", &["--steps", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(dir.path());
    let params = |i: usize| r["attacks"][i]["params"].clone();
    assert_eq!(params(0)["steps"], 1);
    assert_eq!(params(1)["steps"], 3);
    assert_eq!(params(1)["random_start"], false);
    assert_eq!(params(2)["steps"], 5);
    // A flag no chosen attack takes is an error naming it.
    let o = run("fgsm", &["--steps", "5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--steps: no chosen attack takes it"),
        "{}",
        stderr(&o)
    );
    // Malformed settings: one line, exit 2.
    for (attack, want) in [
        ("pgd:steps", "is not KEY=VALUE"),
        ("pgd:stepz=3", "stepz"),
        ("pgd:steps=-1", "steps"),
        ("pgd:steps=3:steps=4", "given twice"),
        (":steps=3", "name is missing"),
    ] {
        let o = run(attack, &[]);
        assert_eq!(o.status.code(), Some(2), "{attack}: {}", text(&o));
        let e = stderr(&o);
        assert!(e.contains(want), "{attack}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{attack}: {e}");
    }
}

#[test]
fn the_report_leads_with_the_primary_eps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = |primary: Option<&'static str>| {
        let mut a = vec![
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.05,0.1,0.2",
            "--limit",
            "40",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            out,
        ];
        if let Some(p) = primary {
            a.extend_from_slice(&["--primary-eps", p]);
        }
        a
    };
    // Default: the middle of the non-zero grid [0.05, 0.1, 0.2].
    let o = robust(&args(None));
    assert!(o.status.success(), "{}", text(&o));
    let r = results(dir.path());
    let at = |eps: f64| {
        r["attacks"][0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["eps"] == eps)
            .unwrap()["robust_accuracy"]
            .as_f64()
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let want = format!(
        "robust accuracy: {:.2}% at linf eps 0.1  (worst case over the attacks; mid-sweep",
        at(0.1) * 100.0
    );
    assert!(stdout.contains(&want), "{stdout}");
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("Robust accuracy, L∞ eps 0.1: **"), "{md}");
    // --primary-eps moves it, and is recorded.
    let o = robust(&args(Some("0.05")));
    assert!(o.status.success(), "{}", text(&o));
    let r2 = results(dir.path());
    assert_eq!(r2["primary_eps"], 0.05);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("Robust accuracy, L∞ eps 0.05"),
        "headline card"
    );
    // Only examples at the headline eps start open.
    assert_eq!(html.matches("<details class=\"exgroup\" open>").count(), 1);
    // Not in the grid: refused.
    let o = robust(&args(Some("0.07")));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--primary-eps 0.07"), "{}", stderr(&o));
    // The start time has whole seconds, no nanoseconds.
    let t = r2["started_at"].as_str().unwrap();
    assert!(t.ends_with('Z') && t.len() == 20, "{t}");
}

/// Writes `[n, 32, 32, 3]` float RGB images: the demo's first `n` 28×28 images with a
/// 2-pixel black border, the gray value in all three channels.
fn rgb32(dir: &Path, n: usize) -> PathBuf {
    use npyz::WriterBuilder as _;
    let bytes = std::fs::read(root().join("datasets/mnist-demo/images.npy")).unwrap();
    let images = npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<u8>()
        .unwrap();
    let mut data = vec![0f32; n * 32 * 32 * 3];
    for i in 0..n {
        for y in 0..28 {
            for x in 0..28 {
                let v = f32::from(images[i * 784 + y * 28 + x]) / 255.0;
                for c in 0..3 {
                    data[((i * 32 + y + 2) * 32 + x + 2) * 3 + c] = v;
                }
            }
        }
    }
    let path = dir.join("images.npy");
    let mut out = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[n as u64, 32, 32, 3])
        .writer(std::fs::File::create(&path).unwrap())
        .begin_nd()
        .unwrap();
    out.extend(data).unwrap();
    out.finish().unwrap();
    // The first n labels.
    let lb = std::fs::read(root().join("datasets/mnist-demo/labels.npy")).unwrap();
    let labels: Vec<i64> = npyz::NpyFile::new(&lb[..]).unwrap().into_vec().unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[n as u64])
        .writer(std::fs::File::create(dir.join("labels.npy")).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(labels[..n].iter().copied()).unwrap();
    w.finish().unwrap();
    path
}

#[test]
fn data_conversions_are_warned_about_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let images = rgb32(dir.path(), 20);
    let out = dir.path().join("o");
    let run = |resize: &str, out: &Path| {
        robust(&[
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--data",
            images.to_str().unwrap(),
            "--resize",
            resize,
            "--device",
            "cpu",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = run("resize", &out);
    assert!(o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("20 of 20 samples converted") && e.contains("RGB → gray"),
        "{e}"
    );
    assert!(e.contains("32×32 → 28×28 (resize)"), "{e}");
    let r = results(&out);
    let conv = r["dataset"]["conversions"].as_array().unwrap();
    assert_eq!(conv.len(), 2, "{conv:?}");
    assert!(conv.iter().all(|c| c["samples"] == 20));
    let check = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "inputs/conversions")
        .expect("a conversion check");
    assert_eq!(check["status"], "warn");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("32×32 → 28×28 (resize)"));

    // center-crop removes exactly the border: the model then sees the demo's own pixels
    // (equal channels make the luma exact), so its clean accuracy and the samples' digest
    // equal those of the first 20 demo images.
    let crop = dir.path().join("crop");
    let o = run("center-crop", &crop);
    assert!(o.status.success(), "{}", text(&o));
    let demo = dir.path().join("demo");
    assert!(eval(&demo, "20", &[]).status.success());
    let (a, b) = (results(&crop), results(&demo));
    assert_eq!(a["clean_accuracy"], b["clean_accuracy"]);
    assert_eq!(
        a["dataset"]["samples_sha256"],
        b["dataset"]["samples_sha256"]
    );
    assert!(b["dataset"]["conversions"].as_array().unwrap().is_empty());
}

#[test]
fn quiet_means_quiet_and_csv_headers_have_aliases() {
    let dir = tempfile::tempdir().unwrap();
    // The usual alternative header names for an image CSV.
    let csv = std::fs::read_to_string(root().join("datasets/mnist-folder.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert_eq!(header, "path,label");
    let body: Vec<String> = lines
        .map(|l| {
            let (p, y) = l.split_once(',').unwrap();
            format!("{},{y}", root().join("datasets").join(p).display())
        })
        .collect();
    let renamed = dir.path().join("data.csv");
    std::fs::write(&renamed, format!("filename,class\n{}\n", body.join("\n"))).unwrap();
    // FGSM on `renamed` with the default device (auto), quietly.
    let eval_csv = |out: &str| {
        robust(&[
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--data",
            renamed.to_str().unwrap(),
            "--quiet",
            "--out",
            dir.path().join(out).to_str().unwrap(),
        ])
    };
    let o = eval_csv("o");
    assert!(o.status.success(), "{}", text(&o));
    // --quiet with --device auto: nothing on stderr, not even the adapter note.
    assert_eq!(stderr(&o), "");
    assert_eq!(results(&dir.path().join("o"))["dataset"]["size"], 30);

    // A class name without a classes file: the error names the flag.
    std::fs::write(
        &renamed,
        format!(
            "image,label\n{},seven\n",
            body[0].split(',').next().unwrap()
        ),
    )
    .unwrap();
    let o = eval_csv("p");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--classes FILE"), "{}", stderr(&o));
}

#[test]
fn report_uses_the_names_eval_uses() {
    let dir = tempfile::tempdir().unwrap();
    assert!(eval(dir.path(), "10", &[]).status.success());
    let results_path = dir.path().join("results.json");
    for f in ["summary.md", "report.html", "junit.xml"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let o = robust(&[
        "report",
        results_path.to_str().unwrap(),
        "--format",
        "md,html,junit",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["summary.md", "report.html", "junit.xml"] {
        assert!(dir.path().join(f).is_file(), "{f}");
        assert!(stderr(&o).contains(f), "{}", stderr(&o));
    }
}

#[test]
fn eval_audit_adds_a_section_and_a_check() {
    let dir = tempfile::tempdir().unwrap();
    // The demo model passes the audit.
    let clean = dir.path().join("clean");
    let o = eval(&clean, "20", &["--audit"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&clean);
    assert_eq!(r["audit"]["files_scanned"], 1);
    assert!(r["audit"]["findings"].as_array().unwrap().is_empty());
    let check = |r: &serde_json::Value| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "model-audit")
            .cloned()
            .expect("an audit check")
    };
    assert_eq!(check(&r)["status"], "pass");
    // The same model with an opset import of a custom domain appended (protobuf field 8 of
    // ModelProto, OperatorSetIdProto { domain: "com.evil", version: 1 }): it still loads
    // and evaluates, and the audit flags the native operator library it asks for.
    let mut bytes = std::fs::read(root().join("models/mnist-cnn/model.onnx")).unwrap();
    let mut opset = vec![0x0a, 8];
    opset.extend_from_slice(b"com.evil");
    opset.extend_from_slice(&[0x10, 0x01]);
    bytes.push(0x42);
    bytes.push(opset.len() as u8);
    bytes.extend_from_slice(&opset);
    let evil = dir.path().join("evil.onnx");
    std::fs::write(&evil, bytes).unwrap();
    let out = dir.path().join("evil");
    let o = eval(
        &out,
        "20",
        &[
            "--audit",
            "--model",
            evil.to_str().unwrap(),
            "--mean",
            "0.1307",
            "--std",
            "0.3081",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&out);
    let findings = r["audit"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "custom-domain");
    assert_eq!(check(&r)["status"], "fail");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Model file audit") && html.contains("com.evil"));
}
