//! Digests, manifests, signatures and verification, with OpenSSL and coreutils as
//! independent oracles where they are installed (a test that needs one and does not find
//! it prints a note and checks the rest).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use robust_integrity::sign::{parse_private_key, parse_public_key};
use robust_integrity::{
    generate_keypair, manifest_for, provenance, sha256_file, sign_manifest, verify,
    write_new_atomic, Difference, IntegrityError, Manifest, ManifestEntry, Permissions,
    SignatureFile,
};

/// A fresh scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "robust-integrity-test-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A small model directory with a nested file and a name containing a space.
fn model_dir(root: &Path) -> PathBuf {
    let m = root.join("model");
    fs::create_dir_all(m.join("weights")).unwrap();
    fs::write(m.join("config.json"), br#"{"layers": 3}"#).unwrap();
    fs::write(m.join("weights/layer 1.bin"), vec![7u8; 1000]).unwrap();
    fs::write(
        m.join("weights/layer2.bin"),
        (0..=255u8).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(m.join(".hidden"), b"also signed").unwrap();
    m
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        || Command::new(tool)
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !found {
        println!("note: `{tool}` is not on PATH; skipping the checks that need it");
    }
    found
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn file_digest_matches_sha256sum() {
    let s = Scratch::new("sha256sum");
    let f = s.path().join("model.onnx");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    fs::write(&f, &data).unwrap();
    let ours = sha256_file(&f).unwrap();
    let m = manifest_for(&f).unwrap();
    assert_eq!(m.entries().len(), 1);
    assert_eq!(m.entries()[0].path, "model.onnx");
    assert_eq!(m.entries()[0].sha256, ours);
    assert_eq!(m.entries()[0].size, 200_000);
    if have("sha256sum") {
        let out = run(Command::new("sha256sum").arg(&f));
        let theirs = String::from_utf8(out.stdout).unwrap();
        assert_eq!(&theirs[..64], ours);
    }
}

#[test]
fn root_digest_matches_documented_shell_pipeline() {
    let s = Scratch::new("pipeline");
    let m = model_dir(s.path());
    let manifest = manifest_for(&m).unwrap();
    let paths: Vec<&str> = manifest.entries().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".hidden",
            "config.json",
            "weights/layer 1.bin",
            "weights/layer2.bin"
        ]
    );
    assert_eq!(manifest.total_size(), 11 + 13 + 1000 + 256);
    if !(have("sha256sum") && have("sh")) {
        return;
    }
    // The command from the `digest` module documentation.
    let script = r#"(cd "$1" && echo robust-manifest/1 && find . -type f | sed 's|^\./||' | LC_ALL=C sort |
  while read -r f; do echo "$(sha256sum < "$f" | cut -c1-64) $(stat -c %s "$f") $f"; done) | sha256sum"#;
    let out = run(Command::new("sh").arg("-c").arg(script).arg("sh").arg(&m));
    let theirs = String::from_utf8(out.stdout).unwrap();
    assert_eq!(&theirs[..64], manifest.root_sha256());
}

#[test]
fn sign_and_verify_round_trip_and_every_tampering_is_named() {
    let s = Scratch::new("tamper");
    let m = model_dir(s.path());
    let (private_pem, public_pem) = generate_keypair().unwrap();
    let sig = sign_manifest(&manifest_for(&m).unwrap(), &private_pem).unwrap();
    let sig_path = s.path().join("model.sig.json");
    sig.write(&sig_path).unwrap();
    let sig = SignatureFile::read(&sig_path).unwrap();
    let ok = verify(&m, &sig, &public_pem).unwrap();
    assert_eq!(ok.manifest, sig.manifest);

    let expect_tampered = |what: &str, expected: Vec<Difference>| {
        let err = verify(&m, &sig, &public_pem).unwrap_err();
        assert!(err.is_verification_failure());
        match &err {
            IntegrityError::Tampered { differences, path } => {
                assert_eq!(differences, &expected, "{what}");
                assert_eq!(path, &m);
            }
            other => panic!("{what}: expected Tampered, got {other}"),
        }
        let msg = err.to_string();
        for d in &expected {
            assert!(msg.contains(d.path()), "{what}: {msg}");
        }
        msg
    };

    // One changed byte.
    let f = m.join("weights/layer2.bin");
    let original = fs::read(&f).unwrap();
    let mut changed = original.clone();
    changed[100] ^= 1;
    fs::write(&f, &changed).unwrap();
    let msg = expect_tampered(
        "changed byte",
        vec![Difference::Changed {
            path: "weights/layer2.bin".into(),
            expected_sha256: sha256_hex(&original),
            actual_sha256: sha256_hex(&changed),
            expected_size: 256,
            actual_size: 256,
        }],
    );
    assert!(msg.contains("changed: weights/layer2.bin"), "{msg}");
    fs::write(&f, &original).unwrap();
    verify(&m, &sig, &public_pem).unwrap();

    // Renamed file.
    fs::rename(m.join("config.json"), m.join("config.old")).unwrap();
    let msg = expect_tampered(
        "renamed",
        vec![Difference::Renamed {
            from: "config.json".into(),
            to: "config.old".into(),
        }],
    );
    assert!(msg.contains("renamed: config.json -> config.old"), "{msg}");
    fs::rename(m.join("config.old"), m.join("config.json")).unwrap();

    // Missing file.
    fs::remove_file(m.join(".hidden")).unwrap();
    expect_tampered(
        "missing",
        vec![Difference::Missing {
            path: ".hidden".into(),
        }],
    );
    fs::write(m.join(".hidden"), b"also signed").unwrap();

    // Added file, deep in a new directory.
    fs::create_dir_all(m.join("weights/extra")).unwrap();
    fs::write(m.join("weights/extra/payload.bin"), b"x").unwrap();
    expect_tampered(
        "added",
        vec![Difference::Added {
            path: "weights/extra/payload.bin".into(),
        }],
    );
    fs::remove_dir_all(m.join("weights/extra")).unwrap();

    // Truncated file.
    fs::write(&f, &original[..10]).unwrap();
    let err = verify(&m, &sig, &public_pem).unwrap_err();
    assert!(err.to_string().contains("256 -> 10 bytes"), "{err}");
    fs::write(&f, &original).unwrap();
    verify(&m, &sig, &public_pem).unwrap();
}

fn sha256_hex(b: &[u8]) -> String {
    robust_integrity::sha256_bytes(b)
}

#[test]
fn wrong_key_and_edited_signature_files_are_rejected() {
    let s = Scratch::new("keys");
    let m = model_dir(s.path());
    let (private_pem, public_pem) = generate_keypair().unwrap();
    let (other_private, other_public) = generate_keypair().unwrap();
    let manifest = manifest_for(&m).unwrap();
    let sig = sign_manifest(&manifest, &private_pem).unwrap();

    let err = verify(&m, &sig, &other_public).unwrap_err();
    assert!(matches!(err, IntegrityError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains(&sig.public_key_sha256), "{err}");

    // Someone edits the manifest (consistently, root included) to cover a swapped file.
    let mut entries: Vec<ManifestEntry> = manifest.entries().to_vec();
    entries[1].sha256 = sha256_hex(b"evil config");
    let mut forged = sig.clone();
    forged.manifest = Manifest::new(entries).unwrap();
    let err = verify(&m, &forged, &public_pem).unwrap_err();
    assert!(matches!(err, IntegrityError::BadSignature), "{err}");
    assert!(err.is_verification_failure());

    // ... or re-signs it with their own key but keeps the recorded fingerprint.
    let mut resigned = sign_manifest(&forged.manifest, &other_private).unwrap();
    resigned.public_key_sha256 = sig.public_key_sha256.clone();
    let err = verify(&m, &resigned, &public_pem).unwrap_err();
    assert!(matches!(err, IntegrityError::BadSignature), "{err}");

    // A flipped signature bit.
    let mut flipped = sig.clone();
    let mut bytes = hex::decode(&flipped.signature).unwrap();
    bytes[5] ^= 0x10;
    flipped.signature = hex::encode(bytes);
    assert!(matches!(
        verify(&m, &flipped, &public_pem).unwrap_err(),
        IntegrityError::BadSignature
    ));
}

#[test]
fn a_signature_file_with_an_edited_entry_is_a_verification_failure() {
    let s = Scratch::new("edited-entry");
    let m = model_dir(s.path());
    let (private_pem, _) = generate_keypair().unwrap();
    let good = sign_manifest(&manifest_for(&m).unwrap(), &private_pem).unwrap();
    let good_json: serde_json::Value = serde_json::from_str(&good.to_json_pretty()).unwrap();
    let path = s.path().join("sig.json");
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 3] = [
        ("digest", |v| {
            v["manifest"]["entries"][0]["sha256"] = "0".repeat(64).into()
        }),
        ("size", |v| {
            v["manifest"]["entries"][0]["size"] = 12345.into()
        }),
        ("root", |v| {
            v["manifest"]["root_sha256"] = "0".repeat(64).into()
        }),
    ];
    for (what, edit) in edits {
        let mut v = good_json.clone();
        edit(&mut v);
        fs::write(&path, v.to_string()).unwrap();
        let err = SignatureFile::read(&path).unwrap_err();
        assert!(
            matches!(err, IntegrityError::AlteredSignatureFile { .. }),
            "{what}: {err:?}"
        );
        assert!(err.is_verification_failure(), "{what}");
        let msg = err.to_string();
        assert!(
            msg.contains("sig.json") && msg.contains("altered"),
            "{what}: {msg}"
        );
        assert!(!msg.contains('\n'), "{what}: {msg}");
    }
}

#[test]
fn keys_of_other_types_are_named_and_refused() {
    if !have("openssl") {
        eprintln!("note: openssl not found; skipping the RSA/EC key check");
        return;
    }
    let s = Scratch::new("key-types");
    let gen = |name: &str, args: &[&str]| -> (String, String) {
        let key = s.path().join(format!("{name}.key"));
        let public = s.path().join(format!("{name}.pub"));
        run(Command::new("openssl").args(args).arg("-out").arg(&key));
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public));
        (
            fs::read_to_string(&key).unwrap(),
            fs::read_to_string(&public).unwrap(),
        )
    };
    let cases = [
        (
            "an RSA key",
            gen(
                "rsa",
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:1024",
                ],
            ),
        ),
        (
            "an EC (P-256) key",
            gen(
                "ec",
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ],
            ),
        ),
        (
            "an Ed448 key",
            gen("ed448", &["genpkey", "-algorithm", "ed448"]),
        ),
    ];
    for (found, (private_pem, public_pem)) in cases {
        for (kind, err) in [
            ("private", parse_private_key(&private_pem).unwrap_err()),
            ("public", parse_public_key(&public_pem).unwrap_err()),
        ] {
            let msg = err.to_string();
            assert!(
                matches!(err, IntegrityError::UnsupportedKeyType { .. }),
                "{found} {kind}: {msg}"
            );
            assert!(msg.contains(found), "{kind}: {msg}");
            assert!(msg.contains("only Ed25519 keys are supported"), "{msg}");
            assert!(!msg.contains("OID"), "{msg}");
        }
    }
    // A PKCS#1 RSA key (the "BEGIN RSA PRIVATE KEY" form).
    let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    let msg = parse_private_key(pkcs1).unwrap_err().to_string();
    assert!(msg.contains("an RSA (PKCS#1) key"), "{msg}");
}

#[test]
fn malformed_signature_files_have_clear_errors() {
    let s = Scratch::new("malformed");
    let m = model_dir(s.path());
    let (private_pem, _) = generate_keypair().unwrap();
    let good = sign_manifest(&manifest_for(&m).unwrap(), &private_pem).unwrap();
    let good_json: serde_json::Value = serde_json::from_str(&good.to_json_pretty()).unwrap();
    let path = s.path().join("sig.json");

    let cases: Vec<(&str, String, &str)> = vec![
        ("not json", "this is not json".into(), "not valid JSON"),
        ("empty", String::new(), "not valid JSON"),
        (
            "truncated",
            good.to_json_pretty()[..100].to_string(),
            "not valid JSON",
        ),
        (
            "missing signature",
            {
                let mut v = good_json.clone();
                v.as_object_mut().unwrap().remove("signature");
                v.to_string()
            },
            "missing field `signature`",
        ),
        (
            "missing manifest",
            {
                let mut v = good_json.clone();
                v.as_object_mut().unwrap().remove("manifest");
                v.to_string()
            },
            "missing field `manifest`",
        ),
        (
            "bad hex",
            {
                let mut v = good_json.clone();
                v["signature"] = "zz".repeat(64).into();
                v.to_string()
            },
            "signature is not hex",
        ),
        (
            "short signature",
            {
                let mut v = good_json.clone();
                v["signature"] = "ab".repeat(10).into();
                v.to_string()
            },
            "signature has 10 bytes",
        ),
        (
            "unknown algorithm",
            {
                let mut v = good_json.clone();
                v["algorithm"] = "rsa".into();
                v.to_string()
            },
            "algorithm \"rsa\"",
        ),
        (
            "unknown format",
            {
                let mut v = good_json.clone();
                v["format"] = "robust-signature/9".into();
                v.to_string()
            },
            "robust-signature/9",
        ),
        (
            "bad entry digest",
            {
                let mut v = good_json.clone();
                v["manifest"]["entries"][0]["sha256"] = "xyz".into();
                v.to_string()
            },
            "not 64 lower-case hex digits",
        ),
        (
            "path escaping the model",
            {
                let mut v = good_json.clone();
                v["manifest"]["entries"][0]["path"] = "../etc/passwd".into();
                v.to_string()
            },
            "'..'",
        ),
        (
            "bad fingerprint",
            {
                let mut v = good_json.clone();
                v["public_key_sha256"] = "abc".into();
                v.to_string()
            },
            "public_key_sha256",
        ),
    ];
    for (what, text, needle) in cases {
        fs::write(&path, text).unwrap();
        let err = SignatureFile::read(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, IntegrityError::MalformedSignatureFile { .. }),
            "{what}: {msg}"
        );
        assert!(msg.contains("sig.json"), "{what}: no path in {msg}");
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        assert!(!err.is_verification_failure());
    }
    let err = SignatureFile::read(s.path().join("absent.json")).unwrap_err();
    assert!(matches!(err, IntegrityError::Io { .. }));
    assert!(err.to_string().contains("absent.json"), "{err}");
}

#[test]
fn bad_keys_are_rejected() {
    let (private_pem, public_pem) = generate_keypair().unwrap();
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let m = Manifest::new(vec![ManifestEntry {
        path: "x".into(),
        sha256: sha256_hex(b"x"),
        size: 1,
    }])
    .unwrap();
    let truncated_private = &private_pem[..private_pem.len() / 2];
    let truncated_public = &public_pem[..public_pem.len() / 2];
    for (what, pem) in [
        ("truncated", truncated_private),
        ("empty", ""),
        ("public given as private", public_pem.as_str()),
        (
            "garbage",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        let err = sign_manifest(&m, pem).unwrap_err();
        assert!(
            matches!(
                err,
                IntegrityError::Key {
                    kind: "private",
                    ..
                }
            ),
            "{what}: {err}"
        );
        assert!(err.to_string().contains("private key"), "{what}: {err}");
    }
    let sig = sign_manifest(&m, &private_pem).unwrap();
    for (what, pem) in [
        ("truncated", truncated_public),
        ("empty", ""),
        ("private given as public", private_pem.as_str()),
    ] {
        let err = verify("/nonexistent", &sig, pem).unwrap_err();
        assert!(
            matches!(err, IntegrityError::Key { kind: "public", .. }),
            "{what}: {err}"
        );
    }
    // Two generated key pairs differ.
    assert_ne!(generate_keypair().unwrap().0, private_pem);
}

#[test]
fn bad_model_paths_are_rejected() {
    let s = Scratch::new("paths");
    let err = manifest_for(s.path().join("absent.onnx")).unwrap_err();
    assert!(matches!(err, IntegrityError::Io { .. }));
    assert!(err.to_string().contains("absent.onnx"), "{err}");

    let empty = s.path().join("empty");
    fs::create_dir_all(empty.join("sub")).unwrap();
    let err = manifest_for(&empty).unwrap_err();
    assert!(matches!(err, IntegrityError::EmptyModel { .. }), "{err}");

    #[cfg(unix)]
    {
        let m = model_dir(s.path());
        std::os::unix::fs::symlink("/etc/hostname", m.join("weights/link")).unwrap();
        let err = manifest_for(&m).unwrap_err();
        assert!(matches!(err, IntegrityError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("weights/link"), "{err}");
        fs::remove_file(m.join("weights/link")).unwrap();
        // A symlinked directory is refused too (it could point anywhere).
        std::os::unix::fs::symlink(s.path(), m.join("loop")).unwrap();
        assert!(matches!(
            manifest_for(&m).unwrap_err(),
            IntegrityError::Symlink { .. }
        ));
        fs::remove_file(m.join("loop")).unwrap();
        // The model path itself may be a link (the user's own argument).
        let alias = s.path().join("alias");
        std::os::unix::fs::symlink(&m, &alias).unwrap();
        assert_eq!(manifest_for(&alias).unwrap(), manifest_for(&m).unwrap());
    }
}

#[test]
fn provenance_records_digest_and_verification() {
    let s = Scratch::new("provenance");
    let f = s.path().join("model.onnx");
    fs::write(&f, b"onnx bytes").unwrap();
    let (private_pem, public_pem) = generate_keypair().unwrap();
    let sig = sign_manifest(&manifest_for(&f).unwrap(), &private_pem).unwrap();

    let unverified = provenance(&f, None).unwrap();
    assert!(!unverified.verified);
    assert_eq!(
        unverified.file_sha256.as_deref(),
        Some(sha256_hex(b"onnx bytes").as_str())
    );
    assert_eq!(unverified.root_sha256, sig.manifest.root_sha256());

    let verified = provenance(&f, Some((&sig, &public_pem))).unwrap();
    assert!(verified.verified);
    assert_eq!(
        verified.public_key_sha256.as_deref(),
        Some(sig.public_key_sha256.as_str())
    );

    fs::write(&f, b"onnx bytez").unwrap();
    let err = provenance(&f, Some((&sig, &public_pem))).unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
}

#[test]
fn keys_written_atomically_are_private_and_never_overwritten() {
    let s = Scratch::new("keyfiles");
    let (private_pem, _) = generate_keypair().unwrap();
    let p = s.path().join("robust.key");
    write_new_atomic(&p, private_pem.as_bytes(), Permissions::OwnerOnly).unwrap();
    let err = write_new_atomic(&p, b"other", Permissions::OwnerOnly).unwrap_err();
    assert!(err.to_string().contains("robust.key"), "{err}");
    assert_eq!(fs::read_to_string(&p).unwrap(), private_pem);
}

// ---------------------------------------------------------------------------------------
// OpenSSL interoperability: the independent oracle.
// ---------------------------------------------------------------------------------------

#[test]
fn openssl_reads_our_keys_and_agrees_on_fingerprint() {
    if !have("openssl") {
        return;
    }
    let s = Scratch::new("openssl-keys");
    let (private_pem, public_pem) = generate_keypair().unwrap();
    let (priv_path, pub_path) = (s.path().join("priv.pem"), s.path().join("pub.pem"));
    fs::write(&priv_path, &private_pem).unwrap();
    fs::write(&pub_path, &public_pem).unwrap();
    run(Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&priv_path));
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-in"])
        .arg(&pub_path));
    // OpenSSL derives the same public key from our private key ...
    let derived = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&priv_path));
    assert_eq!(String::from_utf8(derived.stdout).unwrap(), public_pem);
    // ... and writes the private key back byte for byte (PKCS#8 v1, as OpenSSL does).
    let rewritten = run(Command::new("openssl")
        .args(["pkey", "-in"])
        .arg(&priv_path));
    assert_eq!(String::from_utf8(rewritten.stdout).unwrap(), private_pem);
    // The fingerprint is the SHA-256 of the DER SubjectPublicKeyInfo.
    let der = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&pub_path));
    let m = Manifest::new(vec![ManifestEntry {
        path: "x".into(),
        sha256: sha256_hex(b"x"),
        size: 1,
    }])
    .unwrap();
    let sig = sign_manifest(&m, &private_pem).unwrap();
    assert_eq!(sig.public_key_sha256, sha256_hex(&der.stdout));
}

#[test]
fn openssl_signatures_verify_and_ours_verify_in_openssl() {
    if !have("openssl") {
        return;
    }
    let s = Scratch::new("openssl-sign");
    let m = model_dir(s.path());
    let manifest = manifest_for(&m).unwrap();
    let canonical = s.path().join("manifest.txt");
    fs::write(&canonical, manifest.canonical_bytes()).unwrap();

    // Keys made by OpenSSL.
    let (priv_path, pub_path) = (s.path().join("k.pem"), s.path().join("k.pub.pem"));
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&priv_path));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&priv_path)
        .arg("-out")
        .arg(&pub_path));
    let private_pem = fs::read_to_string(&priv_path).unwrap();
    let public_pem = fs::read_to_string(&pub_path).unwrap();
    parse_private_key(&private_pem).unwrap();
    parse_public_key(&public_pem).unwrap();

    // OpenSSL signs the canonical bytes; our verifier accepts that signature.
    let sig_bin = s.path().join("sig.bin");
    run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(&priv_path)
        .arg("-in")
        .arg(&canonical)
        .arg("-out")
        .arg(&sig_bin));
    let openssl_sig = fs::read(&sig_bin).unwrap();
    assert_eq!(openssl_sig.len(), 64);
    let mut ours = sign_manifest(&manifest, &private_pem).unwrap();
    // Ed25519 is deterministic: the same key and message give the same signature.
    assert_eq!(ours.signature, hex::encode(&openssl_sig));
    ours.signature = hex::encode(&openssl_sig);
    verify(&m, &ours, &public_pem).unwrap();

    // Our signature (with a key we generated) verifies in OpenSSL.
    let (our_private, our_public) = generate_keypair().unwrap();
    let our_sig = sign_manifest(&manifest, &our_private).unwrap();
    let our_pub_path = s.path().join("ours.pub.pem");
    fs::write(&our_pub_path, &our_public).unwrap();
    let our_sig_bin = s.path().join("ours.bin");
    fs::write(&our_sig_bin, hex::decode(&our_sig.signature).unwrap()).unwrap();
    let out = run(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
        .arg(&our_pub_path)
        .arg("-in")
        .arg(&canonical)
        .arg("-sigfile")
        .arg(&our_sig_bin));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));

    // And OpenSSL rejects it over a tampered manifest, as we do.
    let mut tampered = manifest.canonical_bytes();
    tampered[40] ^= 1;
    fs::write(&canonical, tampered).unwrap();
    let status = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
        .arg(&our_pub_path)
        .arg("-in")
        .arg(&canonical)
        .arg("-sigfile")
        .arg(&our_sig_bin)
        .output()
        .unwrap();
    assert!(!status.status.success());
}
