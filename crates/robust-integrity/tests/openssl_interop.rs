//! openssl-compatible signatures checked against the real `openssl` command line, both
//! ways, for every key type and key encoding: openssl signs and robust verifies; robust signs
//! and openssl verifies; for the deterministic schemes (RSA PKCS#1 v1.5, Ed25519) the bytes
//! are identical. `openssl` must be on PATH (.ci/run installs it): these tests fail
//! without it rather than skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use robust_integrity::openssl::{
    sign_model, verify_model, HashAlg, Message, RsaPadding, Scheme, SignOptions,
};
use robust_integrity::{manifest_for, PrivateKey, PublicKey, SignatureError};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "robust-openssl-interop-{}-{name}",
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

/// Runs openssl; panics naming the command when it fails.
fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("`openssl` must be installed for these tests (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether openssl accepts a command (for negative checks).
fn openssl_ok(args: &[&str], dir: &Path) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("`openssl` must be installed")
        .status
        .success()
}

/// A key pair made by openssl: `(name, private key file, public key file)`.
struct KeyCase {
    name: &'static str,
    private: &'static str,
    public: &'static str,
    /// Whether `openssl dgst` signs with it (Ed25519 uses `pkeyutl -rawin`).
    dgst: bool,
}

/// Generates every key type and encoding in `dir` with openssl.
fn make_keys(dir: &Path) -> Vec<KeyCase> {
    let o = |a: &[&str]| {
        openssl(a, dir);
    };
    // RSA: PKCS#8 private + SPKI public; the same key as PKCS#1 private and PKCS#1 public.
    o(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.key",
    ]);
    o(&["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"]);
    o(&[
        "rsa",
        "-in",
        "rsa.key",
        "-traditional",
        "-out",
        "rsa-pkcs1.key",
    ]);
    o(&[
        "rsa",
        "-in",
        "rsa.key",
        "-RSAPublicKey_out",
        "-out",
        "rsa-pkcs1.pub",
    ]);
    // RSA-PSS restricted key.
    o(&[
        "genpkey",
        "-algorithm",
        "RSA-PSS",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsapss.key",
    ]);
    o(&["pkey", "-in", "rsapss.key", "-pubout", "-out", "rsapss.pub"]);
    // EC P-256 as `ecparam -genkey` writes it (EC PARAMETERS + SEC1), and as PKCS#8.
    o(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        "p256-sec1.key",
    ]);
    o(&["ec", "-in", "p256-sec1.key", "-pubout", "-out", "p256.pub"]);
    o(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "p256-sec1.key",
        "-out",
        "p256-pkcs8.key",
    ]);
    // EC P-384 (PKCS#8 from genpkey).
    o(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        "p384.key",
    ]);
    o(&["pkey", "-in", "p384.key", "-pubout", "-out", "p384.pub"]);
    // Ed25519.
    o(&["genpkey", "-algorithm", "ed25519", "-out", "ed.key"]);
    o(&["pkey", "-in", "ed.key", "-pubout", "-out", "ed.pub"]);
    vec![
        KeyCase {
            name: "RSA-2048 PKCS#8/SPKI",
            private: "rsa.key",
            public: "rsa.pub",
            dgst: true,
        },
        KeyCase {
            name: "RSA-2048 PKCS#1",
            private: "rsa-pkcs1.key",
            public: "rsa-pkcs1.pub",
            dgst: true,
        },
        KeyCase {
            name: "RSA-PSS-2048",
            private: "rsapss.key",
            public: "rsapss.pub",
            dgst: true,
        },
        KeyCase {
            name: "EC P-256 SEC1",
            private: "p256-sec1.key",
            public: "p256.pub",
            dgst: true,
        },
        KeyCase {
            name: "EC P-256 PKCS#8",
            private: "p256-pkcs8.key",
            public: "p256.pub",
            dgst: true,
        },
        KeyCase {
            name: "EC P-384",
            private: "p384.key",
            public: "p384.pub",
            dgst: true,
        },
        KeyCase {
            name: "Ed25519",
            private: "ed.key",
            public: "ed.pub",
            dgst: false,
        },
    ]
}

fn model_file(dir: &Path) -> PathBuf {
    let p = dir.join("model.h5");
    // Not a multiple of the hash block size, with every byte value.
    let bytes: Vec<u8> = (0..100_003u32)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&p, bytes).unwrap();
    p
}

fn read(dir: &Path, f: &str) -> String {
    fs::read_to_string(dir.join(f)).unwrap()
}

/// openssl signs (the playbook's exact command), robust verifies; the scheme found is the
/// one used.
#[test]
fn openssl_signatures_verify_in_robust_for_every_key_type() {
    let s = Scratch::new("o2r");
    let d = &s.0;
    let model = model_file(d);
    for k in make_keys(d) {
        if k.dgst {
            openssl(
                &[
                    "dgst",
                    "-sha256",
                    "-sign",
                    k.private,
                    "-out",
                    "model.sig",
                    "model.h5",
                ],
                d,
            );
        } else {
            openssl(
                &[
                    "pkeyutl",
                    "-sign",
                    "-rawin",
                    "-inkey",
                    k.private,
                    "-in",
                    "model.h5",
                    "-out",
                    "model.sig",
                ],
                d,
            );
        }
        let v = verify_model(
            &model,
            &d.join("model.sig"),
            &read(d, k.public),
            HashAlg::Sha256,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let expected_pss_max = 256 - 32 - 2;
        match (k.name, &v.scheme) {
            (
                n,
                Scheme::RsaPkcs1v15 {
                    hash: HashAlg::Sha256,
                },
            ) if n.starts_with("RSA-2048") => {}
            // openssl 3.0 signs an RSA-PSS key's signatures with the maximum salt by default.
            ("RSA-PSS-2048", Scheme::RsaPss { salt_len, .. }) => {
                assert!(
                    *salt_len == expected_pss_max || *salt_len == 32,
                    "{salt_len}"
                )
            }
            (n, Scheme::Ecdsa { curve: "P-256", .. }) if n.starts_with("EC P-256") => {}
            (
                "EC P-384",
                Scheme::Ecdsa {
                    curve: "P-384",
                    hash: HashAlg::Sha256,
                },
            ) => {}
            ("Ed25519", Scheme::Ed25519) => {}
            (n, s) => panic!("{n}: unexpected scheme {s}"),
        }
        // One changed byte: the signature no longer verifies.
        let mut bytes = fs::read(&model).unwrap();
        bytes[5000] ^= 1;
        let tampered = d.join("tampered.h5");
        fs::write(&tampered, &bytes).unwrap();
        let err = verify_model(
            &tampered,
            &d.join("model.sig"),
            &read(d, k.public),
            HashAlg::Sha256,
        )
        .unwrap_err();
        assert!(
            matches!(err, SignatureError::BadSignature { .. }) && err.is_verification_failure(),
            "{}: {err}",
            k.name
        );
    }
}

/// RSA-PSS from `openssl dgst -sigopt rsa_padding_mode:pss`, with the maximum salt (3.0's
/// default), the digest-length salt (3.1+'s default) and an arbitrary one.
#[test]
fn rsa_pss_signatures_with_every_salt_length_verify() {
    let s = Scratch::new("pss");
    let d = &s.0;
    let model = model_file(d);
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k.pem",
        ],
        d,
    );
    openssl(&["pkey", "-in", "k.pem", "-pubout", "-out", "k.pub"], d);
    for (saltopt, expected) in [("max", 222), ("digest", 32), ("17", 17), ("0", 0)] {
        let salt = format!("rsa_pss_saltlen:{saltopt}");
        openssl(
            &[
                "dgst",
                "-sha256",
                "-sign",
                "k.pem",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                &salt,
                "-out",
                "m.sig",
                "model.h5",
            ],
            d,
        );
        let v = verify_model(&model, &d.join("m.sig"), &read(d, "k.pub"), HashAlg::Sha256).unwrap();
        assert_eq!(
            v.scheme,
            Scheme::RsaPss {
                hash: HashAlg::Sha256,
                salt_len: expected
            },
            "salt {saltopt}"
        );
    }
    // The default PSS salt of this openssl (3.0: max; 3.1+: digest length) verifies.
    openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            "k.pem",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-out",
            "m.sig",
            "model.h5",
        ],
        d,
    );
    assert!(matches!(
        verify_model(&model, &d.join("m.sig"), &read(d, "k.pub"), HashAlg::Sha256)
            .unwrap()
            .scheme,
        Scheme::RsaPss { .. }
    ));
}

/// robust signs; openssl verifies with the playbook's command; deterministic schemes give
/// openssl's very bytes.
#[test]
fn robust_signatures_verify_in_openssl_for_every_key_type() {
    let s = Scratch::new("r2o");
    let d = &s.0;
    let model = model_file(d);
    for k in make_keys(d) {
        let paddings: &[RsaPadding] = if k.name.starts_with("RSA-2048") {
            &[RsaPadding::Pkcs1v15, RsaPadding::Pss]
        } else {
            &[RsaPadding::Pkcs1v15]
        };
        for &padding in paddings {
            let opts = SignOptions {
                hash: HashAlg::Sha256,
                padding,
            };
            let (sig, scheme) = sign_model(&model, &read(d, k.private), opts)
                .unwrap_or_else(|e| panic!("{}: {e}", k.name));
            fs::write(d.join("robust.sig"), &sig).unwrap();
            let pss = matches!(scheme, Scheme::RsaPss { .. });
            if k.dgst {
                let mut args = vec![
                    "dgst",
                    "-sha256",
                    "-verify",
                    k.public,
                    "-signature",
                    "robust.sig",
                ];
                if pss {
                    args.extend(["-sigopt", "rsa_padding_mode:pss"]);
                }
                args.push("model.h5");
                let out = openssl(&args, d);
                assert_eq!(out.trim(), "Verified OK", "{} {scheme}", k.name);
                // A signature over other bytes is refused by openssl too.
                fs::write(d.join("other.h5"), b"other").unwrap();
                args.pop();
                args.push("other.h5");
                assert!(
                    !openssl_ok(&args, d),
                    "{}: openssl accepted a wrong message",
                    k.name
                );
            } else {
                let out = openssl(
                    &[
                        "pkeyutl",
                        "-verify",
                        "-pubin",
                        "-inkey",
                        k.public,
                        "-rawin",
                        "-in",
                        "model.h5",
                        "-sigfile",
                        "robust.sig",
                    ],
                    d,
                );
                assert!(out.contains("Signature Verified Successfully"), "{out}");
            }
            // Deterministic schemes: the same bytes openssl writes.
            let deterministic = matches!(scheme, Scheme::RsaPkcs1v15 { .. } | Scheme::Ed25519);
            if deterministic {
                if k.dgst {
                    openssl(
                        &[
                            "dgst", "-sha256", "-sign", k.private, "-out", "ossl.sig", "model.h5",
                        ],
                        d,
                    );
                } else {
                    openssl(
                        &[
                            "pkeyutl", "-sign", "-rawin", "-inkey", k.private, "-in", "model.h5",
                            "-out", "ossl.sig",
                        ],
                        d,
                    );
                }
                assert_eq!(
                    fs::read(d.join("ossl.sig")).unwrap(),
                    sig,
                    "{} {scheme}",
                    k.name
                );
            }
        }
    }
}

/// P-384 with SHA-256 (a digest shorter than the curve) and the other digests, both ways.
#[test]
fn other_digests_interoperate() {
    let s = Scratch::new("digests");
    let d = &s.0;
    let model = model_file(d);
    let keys = make_keys(d);
    for k in keys.iter().filter(|k| k.dgst && k.name != "RSA-PSS-2048") {
        for (hash, flag) in [(HashAlg::Sha384, "-sha384"), (HashAlg::Sha512, "-sha512")] {
            openssl(
                &[
                    "dgst", flag, "-sign", k.private, "-out", "o.sig", "model.h5",
                ],
                d,
            );
            verify_model(&model, &d.join("o.sig"), &read(d, k.public), hash)
                .unwrap_or_else(|e| panic!("{} {flag}: {e}", k.name));
            // The digest must match: a SHA-384 signature does not verify as SHA-256.
            assert!(verify_model(
                &model,
                &d.join("o.sig"),
                &read(d, k.public),
                HashAlg::Sha256
            )
            .is_err());
            let (sig, _) = sign_model(
                &model,
                &read(d, k.private),
                SignOptions {
                    hash,
                    padding: RsaPadding::Pkcs1v15,
                },
            )
            .unwrap();
            fs::write(d.join("r.sig"), sig).unwrap();
            openssl(
                &[
                    "dgst",
                    flag,
                    "-verify",
                    k.public,
                    "-signature",
                    "r.sig",
                    "model.h5",
                ],
                d,
            );
        }
    }
}

/// A directory is signed over its manifest's canonical text, which openssl verifies.
#[test]
fn directory_models_are_signed_over_the_manifest_text() {
    let s = Scratch::new("dir");
    let d = &s.0;
    let keys = make_keys(d);
    let m = d.join("model");
    fs::create_dir_all(m.join("sub")).unwrap();
    fs::write(m.join("a.onnx"), b"weights").unwrap();
    fs::write(m.join("sub/b.bin"), vec![3u8; 999]).unwrap();
    fs::write(
        d.join("manifest.txt"),
        manifest_for(&m).unwrap().canonical_bytes(),
    )
    .unwrap();
    for k in keys.iter().filter(|k| k.dgst) {
        let (sig, _) = sign_model(&m, &read(d, k.private), SignOptions::default()).unwrap();
        fs::write(d.join("dir.sig"), sig).unwrap();
        openssl(
            &[
                "dgst",
                "-sha256",
                "-verify",
                k.public,
                "-signature",
                "dir.sig",
                "manifest.txt",
            ],
            d,
        );
        verify_model(&m, &d.join("dir.sig"), &read(d, k.public), HashAlg::Sha256).unwrap();
        // An added file changes the manifest: the signature fails.
        fs::write(m.join("extra.py"), b"import os").unwrap();
        let err =
            verify_model(&m, &d.join("dir.sig"), &read(d, k.public), HashAlg::Sha256).unwrap_err();
        assert!(err.is_verification_failure(), "{err}");
        fs::remove_file(m.join("extra.py")).unwrap();
    }
}

/// A signature checked with another key of the same type fails; one of another type, or of
/// the wrong length, is a malformed signature (bad input, not a failed check).
#[test]
fn wrong_keys_and_malformed_signatures() {
    let s = Scratch::new("wrong");
    let d = &s.0;
    let model = model_file(d);
    make_keys(d);
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
    openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            "p256-pkcs8.key",
            "-out",
            "m.sig",
            "model.h5",
        ],
        d,
    );
    let err = verify_model(
        &model,
        &d.join("m.sig"),
        &read(d, "other.pub"),
        HashAlg::Sha256,
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    // An ECDSA signature given to an RSA key: wrong length, named.
    let err = verify_model(
        &model,
        &d.join("m.sig"),
        &read(d, "rsa.pub"),
        HashAlg::Sha256,
    )
    .unwrap_err();
    assert!(
        matches!(err, SignatureError::MalformedSignature { .. }),
        "{err}"
    );
    assert!(!err.is_verification_failure());
    assert!(err.to_string().contains("m.sig"), "{err}");
    // Base64 text instead of raw bytes.
    fs::write(d.join("b64.sig"), b"MEUCIQ==\n").unwrap();
    let err = verify_model(
        &model,
        &d.join("b64.sig"),
        &read(d, "p256.pub"),
        HashAlg::Sha256,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not a DER ECDSA P-256 signature"),
        "{err}"
    );
}

/// Every key encoding parses to the same public key; unsupported and protected keys are
/// named.
#[test]
fn key_encodings_and_refusals() {
    let s = Scratch::new("keys");
    let d = &s.0;
    make_keys(d);
    let fp = |f: &str| {
        PublicKey::from_pem(&read(d, f))
            .unwrap()
            .fingerprint()
            .unwrap()
    };
    let der_sha = |f: &str| {
        openssl(
            &[
                "pkey", "-pubin", "-in", f, "-outform", "DER", "-out", "k.der",
            ],
            d,
        );
        robust_integrity::sha256_file(d.join("k.der")).unwrap()
    };
    assert_eq!(fp("rsa.pub"), der_sha("rsa.pub"));
    assert_eq!(fp("rsa-pkcs1.pub"), fp("rsa.pub"));
    assert_eq!(fp("p256.pub"), der_sha("p256.pub"));
    assert_eq!(fp("p384.pub"), der_sha("p384.pub"));
    assert_eq!(fp("ed.pub"), der_sha("ed.pub"));
    for (private, public) in [
        ("rsa.key", "rsa.pub"),
        ("rsa-pkcs1.key", "rsa.pub"),
        ("p256-sec1.key", "p256.pub"),
        ("p256-pkcs8.key", "p256.pub"),
        ("p384.key", "p384.pub"),
        ("ed.key", "ed.pub"),
    ] {
        let k = PrivateKey::from_pem(&read(d, private)).unwrap();
        assert_eq!(
            k.public_key().fingerprint().unwrap(),
            fp(public),
            "{private}"
        );
    }
    // Our SPKI PEM is byte-identical to openssl's.
    for f in ["rsa.pub", "p256.pub", "p384.pub", "ed.pub"] {
        assert_eq!(
            PublicKey::from_pem(&read(d, f))
                .unwrap()
                .to_spki_pem()
                .unwrap(),
            read(d, f)
        );
    }
    openssl(&["genpkey", "-algorithm", "ed448", "-out", "ed448.key"], d);
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-521",
            "-out",
            "p521.key",
        ],
        d,
    );
    openssl(
        &[
            "pkey", "-in", "p384.key", "-aes256", "-passout", "pass:x", "-out", "enc.key",
        ],
        d,
    );
    openssl(
        &["dsaparam", "-genkey", "-noout", "-out", "dsa.key", "1024"],
        d,
    );
    for (f, needle) in [
        ("ed448.key", "Ed448"),
        ("p521.key", "P-521"),
        ("enc.key", "password-protected"),
        ("dsa.key", "DSA"),
        ("rsa.pub", "public key"),
    ] {
        let err = PrivateKey::from_pem(&read(d, f)).unwrap_err();
        assert!(err.to_string().contains(needle), "{f}: {err}");
    }
    let err = PublicKey::from_pem(&read(d, "rsa.key")).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    let err = PublicKey::from_pem("not a key").unwrap_err();
    assert!(err.to_string().contains("no PEM block"), "{err}");
    // PSS padding with a non-RSA key is a usage error.
    let m = Message::Bytes(b"x".to_vec());
    let k = PrivateKey::from_pem(&read(d, "ed.key")).unwrap();
    let opts = SignOptions {
        hash: HashAlg::Sha256,
        padding: RsaPadding::Pss,
    };
    assert!(robust_integrity::openssl::sign(&k, &m, opts).is_err());
}
