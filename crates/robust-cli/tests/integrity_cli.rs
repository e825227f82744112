//! The MLSecOps commands end to end, through the built `robust` binary: signing and
//! verifying models (and `eval --require-signature`), drift between data sets in a model's
//! feature space, and the training-set scan on a real backdoor-poisoned MNIST subset
//! (`datasets/make_poisoned.py`) scored against its poison mask.
//!
//! Every failure case asserts the exit code, one clear line on stderr, and that no output
//! file was left behind. Models run on the CPU (`--device cpu`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The outcome of one `robust` invocation.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `robust ARGS` in the repository root.
fn robust<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_robust"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run robust");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    /// Asserts success (exit 0).
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts exit `code` with exactly one stderr line containing `needle`.
    fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one stderr line, got:\n{}",
            self.stderr
        );
        assert!(
            lines[0].contains(needle),
            "stderr does not mention {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Asserts a clap usage error (exit 2) whose first line contains `needle`.
    fn usage_error(self, needle: &str) -> Run {
        assert_eq!(self.code, 2, "expected exit 2\nstderr:\n{}", self.stderr);
        let first = self.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(needle),
            "stderr does not start with {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// A minimal .npy reader and writer (C order, version 1 headers), independent of robust.
// ---------------------------------------------------------------------------------------

struct Npy {
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (start, len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        _ => (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).expect("ascii header");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let after = |key: &str| &header[header.find(key).expect(key) + key.len()..];
    let descr = after("'descr': '").split('\'').next().unwrap().to_string();
    let dims = after("'shape': (").split(')').next().unwrap();
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    Npy {
        descr,
        shape,
        data: bytes[start + len..].to_vec(),
    }
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let dims = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Writes samples `range` of mnist-demo (uint8 images, int64 labels) into `dir`, with every
/// pixel mapped through `f`; labels only if `labels`.
fn demo_subset(dir: &Path, range: std::ops::Range<usize>, f: impl Fn(u8) -> u8, labels: bool) {
    let images = read_npy(&root().join("datasets/mnist-demo/images.npy"));
    let ys = read_npy(&root().join("datasets/mnist-demo/labels.npy"));
    assert_eq!(
        (images.descr.as_str(), &images.shape[1..]),
        ("|u1", &[28usize, 28][..])
    );
    assert_eq!(ys.descr, "<i8");
    std::fs::create_dir_all(dir).unwrap();
    let px: Vec<u8> = images.data[range.start * 784..range.end * 784]
        .iter()
        .map(|&v| f(v))
        .collect();
    write_npy(&dir.join("images.npy"), "|u1", &[range.len(), 28, 28], &px);
    if labels {
        write_npy(
            &dir.join("labels.npy"),
            "<i8",
            &[range.len()],
            &ys.data[range.start * 8..range.end * 8],
        );
    }
}

const MNIST_CNN: &[&str] = &[
    "--model",
    "models/mnist-cnn/model.onnx",
    "--mean",
    "0.1307",
    "--std",
    "0.3081",
    "--device",
    "cpu",
    "--quiet",
];

// ---------------------------------------------------------------------------------------
// digest, keygen, sign, verify
// ---------------------------------------------------------------------------------------

#[test]
fn sign_and_verify_round_trip_and_catch_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("release");
    std::fs::create_dir_all(&model_dir).unwrap();
    let model = model_dir.join("model.onnx");
    std::fs::copy(root().join("models/mnist-cnn/model.onnx"), &model).unwrap();
    let keys = tmp.path().join("keys");
    let other = tmp.path().join("other");
    let sig = tmp.path().join("model.sig.json");

    // digest prints the file's SHA-256, as sha256sum does.
    let digest = robust(&["digest", &p(&model)]).ok();
    let expected = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(&model).unwrap()))
    };
    assert_eq!(
        digest.stdout.split_whitespace().next(),
        Some(expected.as_str())
    );

    robust(&["keygen", "--out-dir", &p(&keys)]).ok();
    robust(&["keygen", "--out-dir", &p(&other)]).ok();
    // keygen never overwrites.
    robust(&["keygen", "--out-dir", &p(&keys)]).fails(2, "already exists");

    let key = p(&keys.join("robust.key"));
    let public = p(&keys.join("robust.pub"));
    let verify = |target: &Path, signature: &Path, pubkey: &str| {
        robust(&[
            "verify",
            &p(target),
            "--signature",
            &p(signature),
            "--pubkey",
            pubkey,
        ])
    };
    let signed = robust(&["sign", &p(&model), "--key", &key, "--out", &p(&sig)]).ok();
    assert!(signed.stdout.contains("signed"), "{}", signed.stdout);
    // For one file, sign names the file's own SHA-256 (what `digest` and sha256sum print)
    // as well as the root digest of the signed manifest, and says which is which.
    let digest = robust(&["digest", &p(&model)]).ok();
    let file_sha = digest.stdout.split_whitespace().next().unwrap().to_string();
    assert!(
        signed
            .stdout
            .contains(&format!("sha256 {file_sha}, manifest root sha256 ")),
        "{}",
        signed.stdout
    );
    let verified = verify(&model, &sig, &public).ok();
    assert!(
        verified.stdout.starts_with("verified"),
        "{}",
        verified.stdout
    );
    // A signed directory verifies too.
    let dir_sig = tmp.path().join("release.sig.json");
    robust(&["sign", &p(&model_dir), "--key", &key, "--out", &p(&dir_sig)]).ok();
    verify(&model_dir, &dir_sig, &public).ok();

    // One changed byte: exit 1, naming the file, on one line.
    let original = std::fs::read(&model).unwrap();
    let mut tampered = original.clone();
    tampered[original.len() / 2] ^= 1;
    std::fs::write(&model, &tampered).unwrap();
    verify(&model, &sig, &public).fails(1, "changed: model.onnx");
    // An added file in a signed directory.
    std::fs::write(&model, &original).unwrap();
    std::fs::write(model_dir.join("extra.bin"), b"x").unwrap();
    verify(&model_dir, &dir_sig, &public).fails(1, "added: extra.bin");
    std::fs::remove_file(model_dir.join("extra.bin")).unwrap();

    // The wrong public key: exit 1.
    verify(&model, &sig, &p(&other.join("robust.pub"))).fails(1, "wrong public key");

    // Malformed signature JSON: exit 2.
    let bad = tmp.path().join("bad.sig.json");
    std::fs::write(&bad, "{\"manifest\": [").unwrap();
    verify(&model, &bad, &public).fails(2, "malformed signature file");

    // Missing files: exit 2, and sign leaves no signature behind.
    verify(&tmp.path().join("nope.onnx"), &sig, &public).fails(2, "nope.onnx");
    verify(&model, &sig, &p(&tmp.path().join("none.pub"))).fails(2, "none.pub");
    let never = tmp.path().join("never.sig.json");
    robust(&[
        "sign",
        &p(&model),
        "--key",
        &p(&tmp.path().join("none.key")),
        "--out",
        &p(&never),
    ])
    .fails(2, "none.key");
    assert!(!never.exists());
    // A public key where the private key belongs: exit 2.
    robust(&["sign", &p(&model), "--key", &public, "--out", &p(&never)]).fails(2, "robust.pub");
    assert!(!never.exists());
}

#[test]
fn eval_refuses_a_tampered_model_and_records_a_verified_one() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.onnx");
    std::fs::copy(root().join("models/mnist-cnn/model.onnx"), &model).unwrap();
    let keys = tmp.path().join("keys");
    let sig = tmp.path().join("model.onnx.sig.json");
    robust(&["keygen", "--out-dir", &p(&keys)]).ok();
    robust(&["sign", &p(&model), "--key", &p(&keys.join("robust.key"))]).ok();
    assert!(sig.is_file(), "sign writes <model>.sig.json by default");
    let eval = |out: &Path| {
        robust(&[
            "eval",
            "--config",
            "robust.toml",
            "--model",
            &p(&model),
            "--limit",
            "20",
            "--attack",
            "fgsm",
            "--eps",
            "0.1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            &p(out),
            "--require-signature",
            &p(&sig),
            "--pubkey",
            &p(&keys.join("robust.pub")),
        ])
    };

    let good = tmp.path().join("good");
    eval(&good).ok();
    let results = read_json(&good.join("results.json"));
    assert_eq!(results["model"]["signature_verified"], Value::Bool(true));

    let original = std::fs::read(&model).unwrap();
    let mut tampered = original.clone();
    tampered[original.len() - 10] ^= 0x40;
    std::fs::write(&model, &tampered).unwrap();
    let bad = tmp.path().join("bad");
    let run = eval(&bad);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("refusing to evaluate an unverified model"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("changed: model.onnx"), "{}", run.stderr);
    // The list of differences joins the message after its colon, not as ":;   changed".
    assert!(
        run.stderr.contains("difference): changed: model.onnx") && !run.stderr.contains(":;"),
        "{}",
        run.stderr
    );
    assert!(
        !bad.join("results.json").exists(),
        "no results for a refused model"
    );
}

// ---------------------------------------------------------------------------------------
// drift
// ---------------------------------------------------------------------------------------

fn min_p(report: &Value) -> f64 {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["p_value"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn drift_between_data_sets_in_model_feature_space() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, shifted) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("shifted"),
    );
    demo_subset(&a, 0..500, |v| v, true);
    demo_subset(&b, 500..1000, |v| v, true);
    // Brightness +0.3 (77/255), saturating; no labels (production data has none).
    demo_subset(&shifted, 500..1000, |v| v.saturating_add(77), false);

    // Two halves of the same set: no drift in the penultimate features.
    let json = tmp.path().join("same.json");
    let mut args = vec![
        "drift".to_string(),
        "--reference".into(),
        p(&a),
        "--current".into(),
        p(&b),
    ];
    args.extend(MNIST_CNN.iter().map(|s| s.to_string()));
    args.extend(["--json".into(), p(&json)]);
    let run = robust(&args).ok();
    assert!(run.stdout.contains("drift: no"), "{}", run.stdout);
    let same = read_json(&json);
    assert_eq!(same["is_drift"], Value::Bool(false));
    assert_eq!(same["feature_space"], "penultimate");
    assert_eq!(same["n_features"], 32);
    assert_eq!(
        (same["n_reference"].as_u64(), same["n_current"].as_u64()),
        (Some(500), Some(500))
    );
    let p_same = min_p(&same);
    println!(
        "halves of mnist-demo, penultimate features: smallest p-value {p_same:.4e}, threshold {}",
        same["threshold"]
    );

    // The brightness-shifted copy: drift, exit 1.
    let json = tmp.path().join("shifted.json");
    args[4] = p(&shifted);
    let n = args.len();
    args[n - 1] = p(&json);
    let run = robust(&args).fails_quietly(1);
    assert!(run.stdout.contains("drift: YES"), "{}", run.stdout);
    let drifted = read_json(&json);
    assert_eq!(drifted["is_drift"], Value::Bool(true));
    let p_shift = min_p(&drifted);
    println!(
        "brightness +0.3, penultimate features: {} of 32 drifted, smallest p-value {p_shift:.4e}",
        drifted["n_drifted"]
    );
    assert!(p_shift < 1e-10 && p_same > 1e-3, "{p_shift} vs {p_same}");

    // Logits, and pixels without a model, agree.
    let mut logits = args[..5].to_vec();
    logits.extend(MNIST_CNN.iter().map(|s| s.to_string()));
    logits.extend(["--feature-space".into(), "logits".into()]);
    assert_eq!(robust(&logits).code, 1);
    logits[4] = p(&b);
    robust(&logits).ok();
    robust(&["drift", "--reference", &p(&a), "--current", &p(&b)]).ok();
    let pixels = robust(&[
        "drift",
        "--reference",
        &p(&a),
        "--current",
        &p(&shifted.join("images.npy")),
    ]);
    assert_eq!(pixels.code, 1, "{}", pixels.stderr);
    assert!(
        pixels.stdout.contains("784 pixels features"),
        "{}",
        pixels.stdout
    );
}

impl Run {
    /// Asserts exit `code` with nothing on stderr (a failed check reported on stdout).
    fn fails_quietly(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(self.stderr.is_empty(), "{}", self.stderr);
        self
    }
}

#[test]
fn drift_rejects_bad_input_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let two = tmp.path().join("two.csv");
    let three = tmp.path().join("three.csv");
    std::fs::write(&two, "a,b\n1,2\n3,4\n5,6\n").unwrap();
    std::fs::write(&three, "a,b,c\n1,2,3\n3,4,5\n5,6,7\n").unwrap();
    let out = tmp.path().join("out.json");
    let json = p(&out);

    robust(&[
        "drift",
        "--reference",
        &p(&two),
        "--current",
        &p(&three),
        "--json",
        &json,
    ])
    .fails(2, "has 2 features but current");
    robust(&[
        "drift",
        "--reference",
        &p(&two),
        "--current",
        &p(&two),
        "--json",
        &json,
    ])
    .ok();
    std::fs::remove_file(&out).unwrap();

    // Feature counts differ between data sets of different image sizes too.
    let demo = "datasets/mnist-demo";
    let small = tmp.path().join("small.npy");
    write_npy(&small, "|u1", &[5, 14, 14], &[0u8; 5 * 196]);
    robust(&[
        "drift",
        "--reference",
        demo,
        "--current",
        &p(&small),
        "--json",
        &json,
    ])
    .fails(2, "784 features but current");
    // A table and a data set; a table with --model; a model space without a model.
    robust(&[
        "drift",
        "--reference",
        demo,
        "--current",
        &p(&two),
        "--json",
        &json,
    ])
    .fails(2, "is a data set but");
    let mut with_model = vec![
        "drift",
        "--reference",
        two.to_str().unwrap(),
        "--current",
        two.to_str().unwrap(),
    ];
    with_model.extend_from_slice(MNIST_CNN);
    robust(&with_model).fails(2, "feature table, and --model needs data sets");
    robust(&[
        "drift",
        "--reference",
        demo,
        "--current",
        demo,
        "--feature-space",
        "logits",
    ])
    .fails(2, "--feature-space logits needs --model");
    // Missing files, a bad p-value, a model value that does not exist.
    robust(&[
        "drift",
        "--reference",
        "missing.npy",
        "--current",
        &p(&two),
        "--json",
        &json,
    ])
    .fails(2, "missing.npy");
    robust(&[
        "drift",
        "--reference",
        &p(&two),
        "--current",
        &p(&two),
        "--p-val",
        "1.5",
        "--json",
        &json,
    ])
    .fails(2, "--p-val 1.5");
    let mut layer = vec![
        "drift",
        "--reference",
        demo,
        "--current",
        demo,
        "--layer",
        "nope",
    ];
    layer.extend_from_slice(MNIST_CNN);
    robust(&layer).fails(2, "no value named 'nope'");
    robust(&[
        "drift",
        "--reference",
        &p(&two),
        "--current",
        &p(&two),
        "--correction",
        "holm",
    ])
    .usage_error("expected bonferroni or fdr");
    assert!(!out.exists(), "no output file after a failure");
}

// ---------------------------------------------------------------------------------------
// scan
// ---------------------------------------------------------------------------------------

/// Precision and recall of `flagged` against the poison mask.
fn precision_recall(flagged: &[usize], mask: &[bool]) -> (f64, f64, usize) {
    let tp = flagged.iter().filter(|&&i| mask[i]).count();
    let positives = mask.iter().filter(|&&m| m).count();
    (
        tp as f64 / flagged.len().max(1) as f64,
        tp as f64 / positives as f64,
        tp,
    )
}

#[test]
fn scan_finds_the_backdoor_in_a_poisoned_training_set() {
    let mask_npy = read_npy(&root().join("datasets/mnist-poisoned/poison_mask.npy"));
    assert_eq!(
        (mask_npy.descr.as_str(), mask_npy.shape.as_slice()),
        ("|b1", &[2000usize][..])
    );
    let mask: Vec<bool> = mask_npy.data.iter().map(|&b| b != 0).collect();
    let base_rate = mask.iter().filter(|&&m| m).count() as f64 / mask.len() as f64;
    let tmp = tempfile::tempdir().unwrap();
    let model = [
        "--model",
        "models/poisoned-cnn/model.onnx",
        "--device",
        "cpu",
        "--quiet",
    ];

    for (fraction, min_precision) in [
        ("0.1", 5.0 * base_rate),
        ("0.05", 5.0 * base_rate),
        ("auto", 0.5),
    ] {
        let json = tmp.path().join(format!("scan-{fraction}.json"));
        let html = tmp.path().join(format!("scan-{fraction}.html"));
        let mut args = vec![
            "scan",
            "--data",
            "datasets/mnist-poisoned",
            "--fraction",
            fraction,
        ];
        args.extend_from_slice(&model);
        let (j, h) = (p(&json), p(&html));
        args.extend_from_slice(&["--json", &j, "--html", &h]);
        let run = robust(&args).ok();
        assert!(run.stdout.contains("spectral signatures"), "{}", run.stdout);
        let report = read_json(&json);
        let spectral = &report["spectral_signatures"];
        assert_eq!(spectral["layer"], "features");
        let flagged: Vec<usize> = spectral["flagged"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (precision, recall, tp) = precision_recall(&flagged, &mask);
        println!(
            "spectral screen, fraction {fraction}: {} flagged, {tp} of 20 poisoned caught: \
             precision {precision:.4} (base rate {base_rate}), recall {recall:.4}",
            flagged.len()
        );
        if fraction == "0.05" {
            // The Python reference (models/poisoned-cnn/meta.json) catches 16 of 20 here.
            assert!(recall >= 0.75, "recall {recall}");
        } else {
            assert!(recall >= 0.9, "recall {recall}");
        }
        assert!(
            precision >= min_precision,
            "precision {precision} < {min_precision}"
        );
        if fraction == "0.1" {
            // The same 300 samples as the reference screen of make_poisoned.py.
            let meta = read_json(&root().join("models/poisoned-cnn/meta.json"));
            let reference: Vec<usize> = meta["spectral_signature"]["screens"][0]["flagged_indices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(meta["spectral_signature"]["screens"][0]["eps"], 0.1);
            assert_eq!(flagged, reference);
        }
        if fraction == "auto" {
            assert_eq!(spectral["cut"], serde_json::json!({"fence": 3.0}));
            // Only the poisoned class (the backdoor's target, 1) is flagged.
            for c in spectral["classes"].as_array().unwrap() {
                let n = c["flagged"].as_u64().unwrap();
                assert_eq!(n > 0, c["class"] == 1, "{c}");
            }
        }
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(
            page.contains("<section id=\"data-scan\">") && page.contains("data:image/png;base64,")
        );
        assert_eq!(report["describe"].as_array().unwrap().len(), 784);
    }

    // --fail-on-findings turns the report into a gate.
    let mut args = vec![
        "scan",
        "--data",
        "datasets/mnist-poisoned",
        "--fraction",
        "auto",
        "--fail-on-findings",
    ];
    args.extend_from_slice(&model);
    robust(&args).fails_quietly(1);
}

#[test]
fn scan_without_a_model_describes_and_finds_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    demo_subset(&clean, 0..100, |v| v, true);
    let json = tmp.path().join("clean.json");
    let run = robust(&[
        "scan",
        "--data",
        &p(&clean),
        "--json",
        &p(&json),
        "--fail-on-findings",
    ])
    .ok();
    assert!(
        run.stdout
            .contains("spectral signatures: skipped (needs --model)"),
        "{}",
        run.stdout
    );
    let report = read_json(&json);
    assert_eq!(report["flagged_samples"], 0);
    // describe() against the mean and extremes computed here from the raw bytes.
    let images = read_npy(&clean.join("images.npy"));
    for pixel in [0usize, 350, 407, 783] {
        let col: Vec<f64> = (0..100)
            .map(|i| f64::from(images.data[i * 784 + pixel]) / 255.0)
            .collect();
        let mean = col.iter().sum::<f64>() / 100.0;
        let max = col.iter().cloned().fold(0.0, f64::max);
        let s = &report["describe"][pixel];
        assert_eq!(s["count"], 100);
        assert!((s["mean"].as_f64().unwrap() - mean).abs() < 1e-6, "{s}");
        assert!((s["max"].as_f64().unwrap() - max).abs() < 1e-6, "{s}");
    }

    // The same 100 images plus an exact copy of image 3 and a copy of image 7 with one
    // pixel changed.
    let mut data = images.data.clone();
    data.extend_from_slice(&images.data[3 * 784..4 * 784]);
    let mut near = images.data[7 * 784..8 * 784].to_vec();
    near[400] = near[400].wrapping_add(40);
    data.extend_from_slice(&near);
    let mut labels = read_npy(&clean.join("labels.npy")).data;
    labels.extend_from_within(3 * 8..4 * 8);
    labels.extend_from_within(7 * 8..8 * 8);
    let dup = tmp.path().join("dup");
    std::fs::create_dir_all(&dup).unwrap();
    write_npy(&dup.join("images.npy"), "|u1", &[102, 28, 28], &data);
    write_npy(&dup.join("labels.npy"), "<i8", &[102], &labels);
    let json = tmp.path().join("dup.json");
    let run = robust(&[
        "scan",
        "--data",
        &p(&dup),
        "--json",
        &p(&json),
        "--fail-on-findings",
    ])
    .fails_quietly(1);
    assert!(run.stdout.contains("1 exact group"), "{}", run.stdout);
    let report = read_json(&json);
    assert_eq!(report["duplicates"]["exact"], serde_json::json!([[3, 100]]));
    let near_groups = report["duplicates"]["near"].as_array().unwrap();
    assert!(
        near_groups.contains(&serde_json::json!([7, 101])),
        "{near_groups:?}"
    );
}

#[test]
fn scan_rejects_bad_input_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("scan.json");
    let json = p(&out);
    robust(&["scan", "--data", "datasets/nope", "--json", &json]).fails(2, "datasets/nope");
    // Labels that do not match the images.
    let bad = tmp.path().join("bad");
    demo_subset(&bad, 0..10, |v| v, false);
    write_npy(&bad.join("labels.npy"), "<i8", &[9], &[0u8; 72]);
    robust(&["scan", "--data", &p(&bad), "--json", &json]).fails(2, "holds 9 labels");
    // A label the model has no output for.
    let mut labels = vec![0u8; 80];
    labels[0] = 12;
    write_npy(&bad.join("labels.npy"), "<i8", &[10], &labels);
    let mut args = vec!["scan", "--data", bad.to_str().unwrap(), "--json", &json];
    args.extend_from_slice(MNIST_CNN);
    robust(&args).fails(2, "label 12 is out of range");
    // An image folder without a model needs --input-shape.
    robust(&["scan", "--data", "datasets/mnist-folder", "--json", &json]).fails(2, "--input-shape");
    // Flag values.
    robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--fraction",
        "0",
        "--json",
        &json,
    ])
    .usage_error("must lie in (0, 1]");
    robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--fraction",
        "lots",
    ])
    .usage_error("neither a number nor auto");
    robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--fraction",
        "auto",
        "--fence",
        "0",
        "--json",
        &json,
    ])
    .fails(2, "--fence 0");
    robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--confidence",
        "1.5",
        "--json",
        &json,
    ])
    .fails(2, "--confidence 1.5");
    robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--max-distance",
        "2",
        "--json",
        &json,
    ])
    .fails(2, "--max-distance 2");
    // An output path that cannot be written: exit 2, nothing printed to stdout.
    let blocked = tmp.path().join("no/such/dir/scan.json");
    let run = robust(&[
        "scan",
        "--data",
        "datasets/mnist-demo",
        "--limit",
        "50",
        "--json",
        &p(&blocked),
    ])
    .fails(2, "scan.json");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(!out.exists(), "no output file after a failure");
}

#[test]
fn every_integrity_command_has_an_example_in_its_help() {
    for cmd in ["digest", "keygen", "sign", "verify", "drift", "scan"] {
        let run = robust(&[cmd, "--help"]).ok();
        assert!(
            run.stdout.contains("Example"),
            "robust {cmd} --help:\n{}",
            run.stdout
        );
    }
}
