//! `robust audit` through the built binary: exit codes, the table, `--json`, bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../robust-integrity/tests/fixtures/audit")
}

fn robust(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_robust"))
        .args(args)
        .output()
        .expect("run robust");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn clean_findings_and_errors_have_their_exit_codes() {
    let benign = corpus().join("benign");
    let (code, out, err) = robust(&["audit", benign.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("state_dict.pt") && out.contains("clean"),
        "{out}"
    );
    assert!(
        out.contains("0 findings of severity medium or above"),
        "{out}"
    );

    let bad = corpus().join("malicious/torch_zip_os_system.pt");
    let (code, out, _) = robust(&["audit", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("critical") && out.contains("posix.system"),
        "{out}"
    );
    assert!(
        out.contains("archive/data.pkl"),
        "the archive member is named: {out}"
    );

    // JSON on stdout.
    let (code, out, _) = robust(&["audit", bad.to_str().unwrap(), "--json", "-"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"][0]["format"], "pytorch zip");
    assert_eq!(v["files"][0]["findings"][0]["severity"], "critical");
    assert_eq!(v["files"][0]["findings"][0]["kind"], "dangerous-import");

    // JSON to a file, and the table still printed.
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("audit.json");
    let (code, out, _) = robust(&[
        "audit",
        benign.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("file"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 12);

    // A missing path: exit 2, one line naming it.
    let (code, out, err) = robust(&["audit", "/no/such/model.pt"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/no/such/model.pt"), "{err}");

    // --json inside the audited folder is refused before anything is written.
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(bad, model.join("m.pt")).unwrap();
    let inside = model.join("audit.json");
    let (code, _, err) = robust(&[
        "audit",
        model.to_str().unwrap(),
        "--json",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(!inside.exists());
}
