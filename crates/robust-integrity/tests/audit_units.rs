//! Unit-level checks of the pickle walker and of signature-format detection, on
//! hand-written byte strings.

use robust_integrity::audit::pickle::{classify, walk};
use robust_integrity::{detect_kind, Severity, SignatureKind};

#[test]
fn protocol_0_global_and_protocol_4_stack_global_through_the_memo() {
    // pickle.dumps(os.system-reduce, protocol=0) as Python 3 writes it.
    let p0 = b"cposix\nsystem\np0\n(Vecho hi\np1\ntp2\nRp3\n.";
    let w = walk(p0);
    assert_eq!(w.imports[0].module, "posix");
    assert_eq!(w.imports[0].name, "system");
    assert!(w.problems.is_empty());
    // Protocol 4: module and name memoized, then fetched with BINGET before STACK_GLOBAL.
    let mut p4 = vec![0x80, 4, 0x95];
    p4.extend(0u64.to_le_bytes());
    p4.extend([0x8c, 8]);
    p4.extend(b"builtins");
    p4.push(0x94); // memo 0
    p4.extend([0x8c, 4]);
    p4.extend(b"eval");
    p4.push(0x94); // memo 1
    p4.push(b'0'); // pop "eval"
    p4.push(b'0'); // pop "builtins"
    p4.extend([b'h', 0, b'h', 1, 0x93]);
    p4.extend([0x8c, 1, b'1', 0x85, b'R', b'.']);
    let w = walk(&p4);
    assert_eq!(w.imports.len(), 1, "{:?}", w.problems);
    assert_eq!(
        (w.imports[0].module.as_str(), w.imports[0].name.as_str()),
        ("builtins", "eval")
    );
    assert_eq!(classify("builtins", "eval"), Some(Severity::Critical));
    assert_eq!(classify("torch._utils", "_rebuild_tensor_v2"), None);
    assert_eq!(
        classify("sklearn.tree", "DecisionTreeClassifier"),
        Some(Severity::Medium)
    );
}

#[test]
fn truncation_and_junk_are_problems_not_panics() {
    for data in [
        &b""[..],
        b"\x80",
        b"\x80\x04\x8c\xff",
        b"\xff\xfe",
        b"cos\nsys",
    ] {
        let w = walk(data);
        assert!(!w.problems.is_empty(), "{data:?}");
    }
    // STACK_GLOBAL over a non-string: reported as obfuscated.
    let w = walk(b"\x80\x04K\x01K\x02\x93.");
    assert!(w.problems[0].1.contains("STACK_GLOBAL"));
}

#[test]
fn kinds_are_told_apart_by_content() {
    let robust = br#"{"format": "robust-signature/1", "algorithm": "ed25519"}"#;
    assert_eq!(detect_kind(robust), SignatureKind::Robust);
    let bundle = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#;
    assert_eq!(detect_kind(bundle), SignatureKind::Openssf);
    // Broken JSON stays JSON, so its reader can say what is wrong.
    assert_eq!(detect_kind(b"{\"manifest\": ["), SignatureKind::Robust);
    assert_eq!(
        detect_kind(b"  {\"dsseEnvelope\": {"),
        SignatureKind::Openssf
    );
    // DER ECDSA, binary RSA/Ed25519 bytes (one opening with '{' but not UTF-8).
    assert_eq!(
        detect_kind(&[0x30, 0x45, 0x02, 0x20]),
        SignatureKind::Openssl
    );
    assert_eq!(
        detect_kind(&[b'{', 0xff, 0x80, 0x01]),
        SignatureKind::Openssl
    );
    assert_eq!(detect_kind(b""), SignatureKind::Openssl);
}
