//! `robust audit` on the committed corpus (`tests/fixtures/audit/make_corpus.py`): every
//! malicious file is flagged with the finding its payload calls for, no benign file is, and
//! the imports the opcode walker lists equal those Python's own unpickler asks for
//! (`expected_imports.json`, recorded by a `find_class` that returns stand-ins).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use robust_integrity::audit::{pickle, zipread};
use robust_integrity::{audit_path, Severity};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit")
}

/// Each malicious file and the finding kind (and a word of its message) it must raise.
const MALICIOUS: &[(&str, &str, &str)] = &[
    ("builtins_eval.pkl", "dangerous-import", "builtins.eval"),
    ("builtins_exec.pkl", "dangerous-import", "builtins.exec"),
    ("custom_domain_op.onnx", "custom-domain", "com.evil.ops"),
    ("custom_object.keras", "keras-custom-object", "evil_layers"),
    (
        "external_data_escape.onnx",
        "external-data-escape",
        "etc/passwd",
    ),
    (
        "getattr_import_chain.pkl",
        "dangerous-import",
        "builtins.__import__",
    ),
    ("lambda.h5", "keras-lambda", "Lambda layer"),
    ("lambda.keras", "keras-lambda", "Lambda layer"),
    ("object_array.npy", "dangerous-import", "posix.system"),
    ("object_array.npz", "dangerous-import", "posix.system"),
    ("os_system_p0.pkl", "dangerous-import", "posix.system"),
    ("os_system_p2.pkl", "dangerous-import", "posix.system"),
    ("os_system_p4.pkl", "dangerous-import", "posix.system"),
    (
        "out_of_bounds.safetensors",
        "malformed-safetensors",
        "outside",
    ),
    ("overlap.safetensors", "malformed-safetensors", "overlaps"),
    (
        "oversized_tensor.onnx",
        "oversized-tensor",
        "[100000, 100000, 1000]",
    ),
    ("pytorch_model.bin", "dangerous-import", "__builtin__.exec"),
    ("runpy_run_path.pkl", "dangerous-import", "runpy.run_path"),
    ("second_pickle.pt", "dangerous-import", "posix.system"),
    (
        "socket_connect.pkl",
        "dangerous-import",
        "socket.create_connection",
    ),
    ("subprocess_popen.pkl", "dangerous-import", "commands.Popen"),
    ("torch_zip_os_system.pt", "dangerous-import", "posix.system"),
    ("webbrowser_open.pkl", "dangerous-import", "webbrowser.open"),
];

#[test]
fn every_malicious_file_is_flagged_with_its_finding() {
    let dir = corpus().join("malicious");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let listed: Vec<&str> = MALICIOUS.iter().map(|m| m.0).collect();
    assert_eq!(
        names, listed,
        "the corpus and this table list the same files"
    );
    for (name, kind, needle) in MALICIOUS {
        let report = audit_path(dir.join(name)).unwrap();
        assert!(
            report.failed(),
            "{name} not flagged:\n{}",
            report.to_table()
        );
        let f = &report.files[0];
        assert!(
            f.findings.iter().any(|x| x.kind == *kind
                && x.message.contains(needle)
                && x.severity >= Severity::Medium),
            "{name}: no {kind} finding mentioning {needle}:\n{}",
            report.to_table()
        );
    }
}

#[test]
fn no_benign_file_is_flagged_and_the_folder_audits_clean() {
    let dir = corpus().join("benign");
    let report = audit_path(&dir).unwrap();
    assert!(!report.failed(), "{}", report.to_table());
    let formats: BTreeMap<&str, &str> = report
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.format.as_str()))
        .collect();
    assert_eq!(formats["state_dict.pt"], "pytorch zip");
    assert_eq!(formats["state_dict_legacy.pth"], "pickle (torch legacy)");
    assert_eq!(formats["weights.npz"], "npz");
    assert_eq!(formats["dense.keras"], "keras");
    assert_eq!(formats["dense.h5"], "hdf5 (keras)");
    assert_eq!(formats["add_ext.data"], "not scanned");
    // Every benign model file was read: nothing skipped but the external-data blob.
    assert_eq!(formats.values().filter(|f| **f == "not scanned").count(), 1);
    // The whole corpus as one folder fails, and lists every malicious file.
    let all = audit_path(corpus()).unwrap();
    assert!(all.failed());
    for (name, _, _) in MALICIOUS {
        assert!(
            all.failing()
                .any(|(f, _)| f.path == format!("malicious/{name}")),
            "{name} missing from the folder audit"
        );
    }
    assert!(all.failing().all(|(f, _)| f.path.starts_with("malicious/")));
}

/// The walker's imports equal those Python's unpickler requests, pickle by pickle.
#[test]
fn imports_match_pythons_unpickler() {
    let expected: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&fs::read_to_string(corpus().join("expected_imports.json")).unwrap())
            .unwrap();
    assert!(expected.len() >= 15);
    for (key, want) in &expected {
        let (file, member) = match key.split_once(':') {
            Some((f, m)) => (f, Some(m)),
            None => (key.as_str(), None),
        };
        let path = corpus().join(file);
        let mut data = match member {
            Some(m) => {
                let members = zipread::members(&path).unwrap();
                let entry = members.iter().find(|e| e.name == m).unwrap();
                zipread::read_member(&path, entry, 1 << 20).unwrap().0
            }
            None => fs::read(&path).unwrap(),
        };
        if data.starts_with(b"\x93NUMPY") {
            let (_, start) = robust_integrity::audit::formats::npy_header(&data).unwrap();
            data.drain(..start);
        }
        let got: Vec<(String, String)> = pickle::walk(&data)
            .imports
            .into_iter()
            .map(|i| (i.module, i.name))
            .collect();
        assert_eq!(&got, want, "{key}");
    }
}

/// Every prefix and many byte flips of every corpus file audit without a panic, and a
/// truncated pickle is reported, not passed.
#[test]
fn damaged_files_give_findings_not_panics() {
    let tmp = std::env::temp_dir().join(format!("robust-audit-damage-{}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap();
    for group in ["benign", "malicious"] {
        for entry in fs::read_dir(corpus().join(group)).unwrap() {
            let p = entry.unwrap().path();
            let data = fs::read(&p).unwrap();
            let target = tmp.join(p.file_name().unwrap());
            let step = (data.len() / 40).max(1);
            for cut in (0..data.len()).step_by(step) {
                fs::write(&target, &data[..cut]).unwrap();
                audit_path(&target).unwrap();
                let mut flipped = data.clone();
                flipped[cut] ^= 0xA5;
                fs::write(&target, &flipped).unwrap();
                audit_path(&target).unwrap();
            }
        }
    }
    let data = fs::read(corpus().join("benign/config.pkl")).unwrap();
    let target = tmp.join("cut.pkl");
    fs::write(&target, &data[..data.len() - 3]).unwrap();
    let report = audit_path(&target).unwrap();
    assert!(report.failed(), "{}", report.to_table());
    assert_eq!(report.files[0].findings[0].kind, "malformed-pickle");
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn unreadable_paths_are_errors() {
    let err = audit_path("/definitely/not/here.pt").unwrap_err();
    assert!(err.to_string().contains("/definitely/not/here.pt"), "{err}");
}
