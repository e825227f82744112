//! Helpers shared by the CLI test files: the repository root and running the built binary
//! from it. (Each test file is its own crate and uses a part of this.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (the bundled models and data sets are read relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the `robust` binary with `args` in the repository root.
pub fn robust(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_robust"))
        .args(args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("robust runs")
}

/// A run's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `data` of `shape` as a .npy file.
pub fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    p: &Path,
    shape: &[u64],
    data: &[T],
) {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(p, buf).unwrap();
}
