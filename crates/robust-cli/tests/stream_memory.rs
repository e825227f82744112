//! Large data sets stream with bounded memory: `robust eval` on an ImageFolder of 40,000
//! images peaks at about what it does on 2,000 (GNU time's maximum resident set size; the
//! `time` package, which `.ci/run` installs). Figures for 1k/10k/50k images come from
//! `benches/stream_memory.sh` and are in benches/RESULTS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An ImageFolder of `n` PNGs: hard links to the 30 real MNIST images of
/// datasets/mnist-folder, in their class folders, named by index.
fn image_folder(dir: &Path, n: usize) -> PathBuf {
    let src = root().join("datasets/mnist-folder");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for class in std::fs::read_dir(&src).unwrap() {
        let class = class.unwrap().path();
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            files.push((class.file_name().unwrap().to_string_lossy().into_owned(), f));
        }
    }
    files.sort();
    assert_eq!(files.len(), 30);
    let out = dir.join(format!("folder-{n}"));
    for (class, _) in &files {
        std::fs::create_dir_all(out.join(class)).unwrap();
    }
    for i in 0..n {
        let (class, f) = &files[i % files.len()];
        let to = out.join(class).join(format!("{i}.png"));
        std::fs::hard_link(f, &to)
            .or_else(|_| std::fs::copy(f, &to).map(|_| ()))
            .unwrap();
    }
    out
}

/// Runs FGSM on `data` under GNU time; returns (peak RSS in KiB, evaluated samples).
fn peak_kib(data: &Path, out: &Path) -> (u64, u64) {
    let o = Command::new("/usr/bin/time")
        .args(["-f", "peak-kib %M"])
        .arg(env!("CARGO_BIN_EXE_robust"))
        .args([
            "eval",
            "--model",
            "models/mnist-cnn/model.onnx",
            "--mean",
            "0.1307",
            "--std",
            "0.3081",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--device",
            "cpu",
            "--quiet",
            "--data",
        ])
        .arg(data)
        .arg("--out")
        .arg(out)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("GNU time (/usr/bin/time, Debian package `time`) runs robust");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stderr}"));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    (kib, r["dataset"]["size"].as_u64().unwrap())
}

#[test]
fn peak_memory_does_not_grow_with_the_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let small = image_folder(dir.path(), 2_000);
    let large = image_folder(dir.path(), 40_000);
    let (p_small, n_small) = peak_kib(&small, &dir.path().join("o-small"));
    let (p_large, n_large) = peak_kib(&large, &dir.path().join("o-large"));
    assert_eq!((n_small, n_large), (2_000, 40_000));
    // Twenty times the images: what may grow is the per-sample bookkeeping (path, label,
    // digest, per-point outcome: well under 1 KiB a sample), not the images. In KiB: 1 KiB
    // for each of the 38,000 extra samples plus 48 MiB of slack (the allocator's), which is
    // less than keeping the extra images decoded would take (38,000 × 3.1 KiB = 115 MiB).
    let allowed = 38_000 + 48 * 1024;
    assert!(
        p_large <= p_small + allowed,
        "peak {p_large} KiB on 40k images against {p_small} KiB on 2k"
    );
}
