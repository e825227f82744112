//! `robust sign --format openssl|openssf` and `robust verify` on raw openssl signatures and
//! OpenSSF bundles, through the built binary, against the real `openssl` CLI (the
//! playbook's exact two commands) and `model_signing` (when installed; required in CI by
//! `ROBUST_REQUIRE_MODEL_SIGNING=1`). Also `eval --require-signature` with an openssl
//! signature.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Run {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn robust(dir: &Path, args: &[&str]) -> Run {
    run_in(dir, env!("CARGO_BIN_EXE_robust"), args)
}

fn openssl(dir: &Path, args: &[&str]) -> Run {
    run_in(dir, "openssl", args).ok()
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Exit `code` with one stderr line containing `needle`.
    fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected:\n{}", self.stderr);
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
        self
    }
}

fn model_signing() -> Option<PathBuf> {
    let p = std::env::var_os("ROBUST_MODEL_SIGNING")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/robust-ci-venv/bin/model_signing"));
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("ROBUST_REQUIRE_MODEL_SIGNING").as_deref() != Ok("1"),
        "ROBUST_REQUIRE_MODEL_SIGNING=1 but {} is missing",
        p.display()
    );
    println!("note: {} is missing; skipping its checks", p.display());
    None
}

/// The playbook's two commands, with an RSA and an EC key, in both directions.
#[test]
fn the_playbook_openssl_commands_interoperate_with_robust() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(
        root().join("models/mnist-cnn/model.onnx"),
        d.join("model.h5"),
    )
    .unwrap();
    for (gen, kind) in [
        (&["genrsa", "-out", "private_key.pem", "3072"][..], "rsa"),
        (
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "private_key.pem",
            ][..],
            "ec",
        ),
    ] {
        openssl(d, gen);
        openssl(
            d,
            &[
                "pkey",
                "-in",
                "private_key.pem",
                "-pubout",
                "-out",
                "public_key.pem",
            ],
        );
        // openssl signs; robust verifies (format detected).
        openssl(
            d,
            &[
                "dgst",
                "-sha256",
                "-sign",
                "private_key.pem",
                "-out",
                "model.sig",
                "model.h5",
            ],
        );
        let out = robust(
            d,
            &[
                "verify",
                "model.h5",
                "--signature",
                "model.sig",
                "--pubkey",
                "public_key.pem",
            ],
        )
        .ok();
        assert!(
            out.stdout.contains("openssl signature"),
            "{kind}: {}",
            out.stdout
        );
        // robust signs; openssl verifies.
        robust(
            d,
            &[
                "sign",
                "model.h5",
                "--key",
                "private_key.pem",
                "--format",
                "openssl",
                "--out",
                "robust.sig",
            ],
        )
        .ok();
        let out = openssl(
            d,
            &[
                "dgst",
                "-sha256",
                "-verify",
                "public_key.pem",
                "-signature",
                "robust.sig",
                "model.h5",
            ],
        );
        assert_eq!(out.stdout.trim(), "Verified OK", "{kind}");
        if kind == "rsa" {
            // PKCS#1 v1.5 is deterministic: the very bytes openssl wrote.
            assert_eq!(
                std::fs::read(d.join("robust.sig")).unwrap(),
                std::fs::read(d.join("model.sig")).unwrap()
            );
            // PSS both ways.
            robust(
                d,
                &[
                    "sign",
                    "model.h5",
                    "--key",
                    "private_key.pem",
                    "--format",
                    "openssl",
                    "--padding",
                    "pss",
                    "--out",
                    "pss.sig",
                ],
            )
            .ok();
            openssl(
                d,
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "public_key.pem",
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-signature",
                    "pss.sig",
                    "model.h5",
                ],
            );
            openssl(
                d,
                &[
                    "dgst",
                    "-sha256",
                    "-sign",
                    "private_key.pem",
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-out",
                    "pss.sig",
                    "model.h5",
                ],
            );
            let out = robust(
                d,
                &[
                    "verify",
                    "model.h5",
                    "--signature",
                    "pss.sig",
                    "--pubkey",
                    "public_key.pem",
                ],
            )
            .ok();
            assert!(out.stdout.contains("RSA-PSS"), "{}", out.stdout);
        }
        // A changed byte: exit 1, one line.
        let original = std::fs::read(d.join("model.h5")).unwrap();
        let mut bytes = original.clone();
        bytes[1000] ^= 4;
        std::fs::write(d.join("model.h5"), &bytes).unwrap();
        robust(
            d,
            &[
                "verify",
                "model.h5",
                "--signature",
                "model.sig",
                "--pubkey",
                "public_key.pem",
            ],
        )
        .fails(1, "verification FAILED: model.sig with public_key.pem");
        std::fs::write(d.join("model.h5"), &original).unwrap();
    }
    // Bad inputs: exit 2 naming the file; no output left behind.
    // robust's own JSON format is Ed25519 only: the message points to the other formats.
    robust(
        d,
        &[
            "sign",
            "model.h5",
            "--key",
            "private_key.pem",
            "--out",
            "never.sig.json",
        ],
    )
    .fails(2, "use --format openssl");
    assert!(!d.join("never.sig.json").exists());
    std::fs::write(d.join("short.sig"), b"\x00\x01").unwrap();
    robust(
        d,
        &[
            "verify",
            "model.h5",
            "--signature",
            "short.sig",
            "--pubkey",
            "public_key.pem",
        ],
    )
    .fails(2, "short.sig");
    robust(
        d,
        &[
            "verify",
            "model.h5",
            "--signature",
            "model.sig",
            "--pubkey",
            "private_key.pem",
        ],
    )
    .fails(2, "private_key.pem");
    openssl(d, &["genpkey", "-algorithm", "ed448", "-out", "ed448.key"]);
    robust(
        d,
        &[
            "sign",
            "model.h5",
            "--key",
            "ed448.key",
            "--format",
            "openssl",
            "--out",
            "never.sig",
        ],
    )
    .fails(2, "Ed448");
    assert!(!d.join("never.sig").exists());
    robust(
        d,
        &[
            "sign",
            "model.h5",
            "--key",
            "private_key.pem",
            "--format",
            "openssl",
            "--padding",
            "pss",
            "--out",
            "never.sig",
        ],
    )
    .fails(2, "PSS padding applies to RSA keys only");
    assert!(!d.join("never.sig").exists());
}

/// Ed25519 with `openssl pkeyutl -rawin`: robust's openssl-format signature is the same
/// bytes; robust's keys work for both formats.
#[test]
fn ed25519_raw_signatures_match_openssl_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("m.bin"), vec![9u8; 4097]).unwrap();
    robust(d, &["keygen", "--out-dir", "keys"]).ok();
    robust(
        d,
        &[
            "sign",
            "m.bin",
            "--key",
            "keys/robust.key",
            "--format",
            "openssl",
        ],
    )
    .ok();
    assert!(d.join("m.bin.sig").is_file(), "default output <model>.sig");
    openssl(
        d,
        &[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            "keys/robust.key",
            "-in",
            "m.bin",
            "-out",
            "o.sig",
        ],
    );
    assert_eq!(
        std::fs::read(d.join("o.sig")).unwrap(),
        std::fs::read(d.join("m.bin.sig")).unwrap()
    );
    robust(
        d,
        &[
            "verify",
            "m.bin",
            "--signature",
            "o.sig",
            "--pubkey",
            "keys/robust.pub",
        ],
    )
    .ok();
    // Forcing the wrong format is an error about the file, not a crash.
    robust(
        d,
        &[
            "verify",
            "m.bin",
            "--signature",
            "o.sig",
            "--pubkey",
            "keys/robust.pub",
            "--signature-format",
            "openssf",
        ],
    )
    .fails(2, "o.sig");
}

/// OpenSSF bundles: robust signs a folder, model_signing verifies, and back; tampering is
/// exit 1 naming the file.
#[test]
fn openssf_bundles_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("model/weights")).unwrap();
    std::fs::write(d.join("model/config.json"), b"{}").unwrap();
    std::fs::write(d.join("model/weights/w.bin"), vec![1u8; 300]).unwrap();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    openssl(d, &["ec", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    robust(
        d,
        &["sign", "model", "--key", "ec.key", "--format", "openssf"],
    )
    .ok();
    assert!(d.join("model.sigstore.json").is_file());
    let out = robust(
        d,
        &[
            "verify",
            "model",
            "--signature",
            "model.sigstore.json",
            "--pubkey",
            "ec.pub",
        ],
    )
    .ok();
    assert!(out.stdout.contains("openssf signature"), "{}", out.stdout);
    if let Some(ms) = model_signing() {
        let ms = ms.to_str().unwrap();
        let r = run_in(
            d,
            ms,
            &[
                "verify",
                "key",
                "model",
                "--signature",
                "model.sigstore.json",
                "--public_key",
                "ec.pub",
            ],
        );
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        run_in(
            d,
            ms,
            &[
                "sign",
                "key",
                "model",
                "--signature",
                "ms.sig",
                "--private_key",
                "ec.key",
            ],
        )
        .ok();
        robust(
            d,
            &[
                "verify",
                "model",
                "--signature",
                "ms.sig",
                "--pubkey",
                "ec.pub",
            ],
        )
        .ok();
    }
    std::fs::write(d.join("model/weights/w.bin"), vec![2u8; 300]).unwrap();
    robust(
        d,
        &[
            "verify",
            "model",
            "--signature",
            "model.sigstore.json",
            "--pubkey",
            "ec.pub",
        ],
    )
    .fails(1, "changed: weights/w.bin");
    // RSA keys cannot make bundles.
    openssl(d, &["genrsa", "-out", "rsa.key", "2048"]);
    robust(
        d,
        &[
            "sign",
            "model",
            "--key",
            "rsa.key",
            "--format",
            "openssf",
            "--out",
            "never.json",
        ],
    )
    .fails(2, "rsa.key");
    assert!(!d.join("never.json").exists());
}

/// `eval --require-signature` takes a raw openssl signature.
#[test]
fn eval_accepts_an_openssl_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let model = d.join("model.onnx");
    std::fs::copy(root().join("models/mnist-cnn/model.onnx"), &model).unwrap();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "k.pem",
        ],
    );
    openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-out", "k.pub"]);
    openssl(
        d,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "k.pem",
            "-out",
            "model.sig",
            "model.onnx",
        ],
    );
    let eval = |out: &str| {
        let (m, s, k) = (
            model.to_str().unwrap().to_string(),
            d.join("model.sig").to_str().unwrap().to_string(),
            d.join("k.pub").to_str().unwrap().to_string(),
        );
        let o = d.join(out).to_str().unwrap().to_string();
        robust(
            &root(),
            &[
                "eval",
                "--config",
                "robust.toml",
                "--model",
                &m,
                "--limit",
                "10",
                "--attack",
                "fgsm",
                "--eps",
                "0.1",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                &o,
                "--require-signature",
                &s,
                "--pubkey",
                &k,
            ],
        )
    };
    eval("good").ok();
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("good/results.json")).unwrap())
            .unwrap();
    assert_eq!(
        results["model"]["signature_verified"],
        serde_json::Value::Bool(true)
    );
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x40;
    std::fs::write(&model, bytes).unwrap();
    let r = eval("bad");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("refusing to evaluate an unverified model"),
        "{}",
        r.stderr
    );
    assert!(!d.join("bad/results.json").exists());
}
