//! OpenSSF model-signing bundles checked against the real `model_signing` package (PyPI
//! `model-signing` 1.1.1), both directions, with the tamper cases of both tools compared:
//! robust and `model_signing verify key` must agree on every case.
//!
//! `model_signing` is looked up as `$ROBUST_MODEL_SIGNING` or
//! `/var/tmp/robust-ci-venv/bin/model_signing` (.ci/run installs it there). When it is
//! missing the live tests print a note and pass, unless `ROBUST_REQUIRE_MODEL_SIGNING=1`
//! (set by .ci/run), which makes them fail. The committed bundles under
//! `tests/fixtures/openssf/` (made by `make_fixtures.sh` beside them with `model_signing`)
//! are verified everywhere.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use robust_integrity::openssf::{sign_bundle, verify_bundle, BundleOptions};
use robust_integrity::SignatureError;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "robust-openssf-interop-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `model_signing` executable, or `None` (after a note) when it is not installed and not
/// required.
fn model_signing() -> Option<PathBuf> {
    let p = std::env::var_os("ROBUST_MODEL_SIGNING")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/robust-ci-venv/bin/model_signing"));
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("ROBUST_REQUIRE_MODEL_SIGNING").as_deref() == Ok("1") {
        panic!(
            "ROBUST_REQUIRE_MODEL_SIGNING=1 but {} is missing (.ci/run installs it)",
            p.display()
        );
    }
    println!(
        "note: {} is missing; skipping the live model_signing checks",
        p.display()
    );
    None
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `model_signing verify key`; returns whether it accepted and its output.
fn ms_verify(ms: &Path, model: &Path, sig: &Path, public: &Path) -> (bool, String) {
    let out = Command::new(ms)
        .args(["verify", "key"])
        .arg(model)
        .arg("--signature")
        .arg(sig)
        .arg("--public_key")
        .arg(public)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("Verification succeeded"),
        text,
    )
}

fn ms_sign(ms: &Path, model: &Path, sig: &Path, private: &Path) {
    let out = Command::new(ms)
        .args(["sign", "key"])
        .arg(model)
        .arg("--signature")
        .arg(sig)
        .arg("--private_key")
        .arg(private)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "model_signing sign: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A model folder with a nested file, a file name with a space, and a `.git` folder.
fn model_dir(root: &Path) -> PathBuf {
    let m = root.join("model");
    let _ = fs::remove_dir_all(&m);
    fs::create_dir_all(m.join("weights")).unwrap();
    fs::create_dir_all(m.join(".git/objects")).unwrap();
    fs::write(m.join("config.json"), br#"{"layers": 3}"#).unwrap();
    fs::write(m.join("weights/layer 1.bin"), vec![7u8; 1000]).unwrap();
    fs::write(
        m.join("weights/layer2.bin"),
        (0..=255u8).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    fs::write(m.join(".git/objects/ab"), b"blob").unwrap();
    m
}

/// A tamper case: a change to the model, and whether a verifier must still accept it.
struct Case {
    name: &'static str,
    apply: fn(&Path),
    accepted: bool,
    /// The line robust must report (when refused).
    line: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "changed byte",
            apply: |m| {
                let p = m.join("weights/layer2.bin");
                let mut b = fs::read(&p).unwrap();
                b[100] ^= 1;
                fs::write(p, b).unwrap();
            },
            accepted: false,
            line: "changed: weights/layer2.bin",
        },
        Case {
            name: "added file",
            apply: |m| fs::write(m.join("weights/extra.py"), b"import os").unwrap(),
            accepted: false,
            line: "added: weights/extra.py",
        },
        Case {
            name: "removed file",
            apply: |m| fs::remove_file(m.join("config.json")).unwrap(),
            accepted: false,
            line: "missing: config.json",
        },
        Case {
            name: "renamed file",
            apply: |m| {
                fs::rename(m.join("weights/layer 1.bin"), m.join("weights/layer1.bin")).unwrap()
            },
            accepted: false,
            line: "renamed: weights/layer 1.bin -> weights/layer1.bin",
        },
        Case {
            name: "changed .git (ignored)",
            apply: |m| {
                fs::write(m.join(".git/HEAD"), b"ref: refs/heads/other\n").unwrap();
                fs::write(m.join(".git/new"), b"x").unwrap();
            },
            accepted: true,
            line: "",
        },
        Case {
            name: "added .gitignore (ignored)",
            apply: |m| fs::write(m.join(".gitignore"), b"*.tmp\n").unwrap(),
            accepted: true,
            line: "",
        },
        Case {
            name: "nested .git is not ignored",
            apply: |m| {
                fs::create_dir_all(m.join("weights/.git")).unwrap();
                fs::write(m.join("weights/.git/HEAD"), b"x").unwrap();
            },
            accepted: false,
            line: "added: weights/.git/HEAD",
        },
    ]
}

/// Checks one bundle against every tamper case with robust and (when given) model_signing.
fn check_cases(root: &Path, make_bundle: &dyn Fn(&Path, &Path), public: &Path, ms: Option<&Path>) {
    for case in cases() {
        let m = model_dir(root);
        let sig = root.join("model.sig");
        make_bundle(&m, &sig);
        (case.apply)(&m);
        let ours = verify_bundle(&m, &sig, &fs::read_to_string(public).unwrap());
        match (&ours, case.accepted) {
            (Ok(_), true) => {}
            (Err(e @ SignatureError::Tampered { .. }), false) => {
                assert!(e.to_string().contains(case.line), "{}: {e}", case.name);
                assert!(e.is_verification_failure());
            }
            (r, _) => panic!("{}: robust gave {:?}", case.name, r.as_ref().map(|_| "ok")),
        }
        if let Some(ms) = ms {
            let (theirs, text) = ms_verify(ms, &m, &sig, public);
            assert_eq!(
                theirs, case.accepted,
                "{}: model_signing said {text}",
                case.name
            );
        }
    }
}

fn keys(d: &Path) {
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
        d,
    );
    openssl(&["ec", "-in", "ec.key", "-pubout", "-out", "ec.pub"], d);
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "p384.key",
        ],
        d,
    );
    openssl(
        &["pkey", "-in", "p384.key", "-pubout", "-out", "p384.pub"],
        d,
    );
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other.key",
        ],
        d,
    );
    openssl(
        &["pkey", "-in", "other.key", "-pubout", "-out", "other.pub"],
        d,
    );
}

#[test]
fn model_signing_bundles_verify_in_robust_with_the_same_tamper_verdicts() {
    let Some(ms) = model_signing() else { return };
    let s = Scratch::new("ms2r");
    let d = &s.0;
    keys(d);
    let key = d.join("ec.key");
    check_cases(
        d,
        &|m, sig| ms_sign(&ms, m, sig, &key),
        &d.join("ec.pub"),
        Some(&ms),
    );
}

#[test]
fn robust_bundles_verify_in_model_signing_with_the_same_tamper_verdicts() {
    let Some(ms) = model_signing() else { return };
    let s = Scratch::new("r2ms");
    let d = &s.0;
    keys(d);
    let pem = fs::read_to_string(d.join("ec.key")).unwrap();
    let sign = |m: &Path, sig: &Path| {
        let json = sign_bundle(m, &pem, sig, &BundleOptions::default()).unwrap();
        fs::write(sig, json).unwrap();
    };
    check_cases(d, &sign, &d.join("ec.pub"), Some(&ms));
}

/// P-384 keys, single-file models and a bundle written inside the model folder, both ways.
#[test]
fn p384_single_files_and_bundles_inside_the_model() {
    let Some(ms) = model_signing() else { return };
    let s = Scratch::new("more");
    let d = &s.0;
    keys(d);
    let pem384 = fs::read_to_string(d.join("p384.key")).unwrap();
    let pub384 = d.join("p384.pub");
    // Folder, P-384, robust -> model_signing and back.
    let m = model_dir(d);
    let sig = d.join("p384.sig");
    fs::write(
        &sig,
        sign_bundle(&m, &pem384, &sig, &BundleOptions::default()).unwrap(),
    )
    .unwrap();
    assert!(ms_verify(&ms, &m, &sig, &pub384).0);
    ms_sign(&ms, &m, &sig, &d.join("p384.key"));
    verify_bundle(&m, &sig, &fs::read_to_string(&pub384).unwrap()).unwrap();
    // Single file.
    let f = m.join("weights/layer2.bin");
    let fsig = d.join("file.sig");
    ms_sign(&ms, &f, &fsig, &d.join("ec.key"));
    let v = verify_bundle(&f, &fsig, &fs::read_to_string(d.join("ec.pub")).unwrap()).unwrap();
    assert_eq!(v.resources.len(), 1);
    assert_eq!(v.model_name, "layer2.bin");
    let pem = fs::read_to_string(d.join("ec.key")).unwrap();
    fs::write(
        &fsig,
        sign_bundle(&f, &pem, &fsig, &BundleOptions::default()).unwrap(),
    )
    .unwrap();
    assert!(ms_verify(&ms, &f, &fsig, &d.join("ec.pub")).0);
    fs::write(&f, b"changed").unwrap();
    assert!(!ms_verify(&ms, &f, &fsig, &d.join("ec.pub")).0);
    assert!(
        verify_bundle(&f, &fsig, &fs::read_to_string(d.join("ec.pub")).unwrap())
            .unwrap_err()
            .is_verification_failure()
    );
    // The bundle inside the model folder (model_signing's default `model.sig`): ignored by both.
    let m = model_dir(d);
    let inside = m.join("model.sig");
    fs::write(
        &inside,
        sign_bundle(&m, &pem, &inside, &BundleOptions::default()).unwrap(),
    )
    .unwrap();
    assert!(ms_verify(&ms, &m, &inside, &d.join("ec.pub")).0);
    ms_sign(&ms, &m, &inside, &d.join("ec.key"));
    verify_bundle(&m, &inside, &fs::read_to_string(d.join("ec.pub")).unwrap()).unwrap();
    // Another key: robust names the mismatch, model_signing refuses too.
    let err = verify_bundle(
        &m,
        &inside,
        &fs::read_to_string(d.join("other.pub")).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::WrongKey { .. }), "{err}");
    assert!(!ms_verify(&ms, &m, &inside, &d.join("other.pub")).0);
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openssf")
}

/// Bundles `model_signing sign key` made (committed with the script that made them) verify
/// without Python; editing any part of a bundle is caught.
#[test]
fn committed_model_signing_bundles_verify() {
    let f = fixtures();
    let public = fs::read_to_string(f.join("ec.pub")).unwrap();
    let model = f.join("model");
    let v = verify_bundle(&model, &f.join("model.sig"), &public).unwrap();
    assert_eq!(v.model_name, "model");
    let names: Vec<&str> = v.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["config.json", "weights/layer1.bin"]);
    let weights = f.join("model/weights/layer1.bin");
    assert_eq!(
        v.resources[1].sha256,
        robust_integrity::sha256_file(&weights).unwrap()
    );
    let p384 = fs::read_to_string(f.join("p384.pub")).unwrap();
    verify_bundle(&model, &f.join("model-p384.sig"), &p384).unwrap();
    verify_bundle(&weights, &f.join("layer1.sig"), &public).unwrap();
    // The P-256 bundle with the P-384 key: wrong key.
    let err = verify_bundle(&model, &f.join("model.sig"), &p384).unwrap_err();
    assert!(matches!(err, SignatureError::WrongKey { .. }), "{err}");

    // Edited bundles.
    let s = Scratch::new("edited");
    let text = fs::read_to_string(f.join("model.sig")).unwrap();
    let mut bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let edited = String::from_utf8(payload)
        .unwrap()
        .replacen("config.json", "config.jsoN", 1);
    let write = |v: &serde_json::Value| {
        let p = s.0.join("edited.sig");
        fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
        p
    };
    let mut b1 = bundle.clone();
    b1["dsseEnvelope"]["payload"] = b64.encode(edited).into();
    let err = verify_bundle(&model, &write(&b1), &public).unwrap_err();
    assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    // Without the key hint the signature itself still decides.
    bundle["verificationMaterial"]["publicKey"] = serde_json::json!({});
    verify_bundle(&model, &write(&bundle), &public).unwrap();
    let err = verify_bundle(&model, &write(&bundle), &p384).unwrap_err();
    assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    // Structural damage is malformed input, not a failed check.
    let mut b2 = bundle.clone();
    b2["dsseEnvelope"]["signatures"] = serde_json::json!([]);
    let err = verify_bundle(&model, &write(&b2), &public).unwrap_err();
    assert!(
        matches!(err, SignatureError::MalformedBundle { .. }) && !err.is_verification_failure(),
        "{err}"
    );
    let mut b3 = bundle.clone();
    b3["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.2+json".into();
    let err = verify_bundle(&model, &write(&b3), &public).unwrap_err();
    assert!(
        matches!(err, SignatureError::UnsupportedBundle { .. }),
        "{err}"
    );
    fs::write(s.0.join("junk.sig"), b"{not json").unwrap();
    let err = verify_bundle(&model, &s.0.join("junk.sig"), &public).unwrap_err();
    assert!(err.to_string().contains("junk.sig"), "{err}");
}

/// The signing side refuses keys the format does not allow.
#[test]
fn bundles_need_ec_keys() {
    let s = Scratch::new("keys");
    let d = &s.0;
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "ed.key"], d);
    fs::write(d.join("m.bin"), b"x").unwrap();
    let err = sign_bundle(
        &d.join("m.bin"),
        &fs::read_to_string(d.join("ed.key")).unwrap(),
        &d.join("m.sig"),
        &BundleOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("EC P-256 and P-384"), "{err}");
}
