//! One module per subcommand.

pub mod eval;
pub mod integrity;
pub mod predict;
pub mod report;
pub mod scan;

use std::path::{Path, PathBuf};

use crate::exit::bad_input;

/// A path made absolute and free of links where it exists (for a file that does not exist
/// yet: its folder resolved, its name kept), so two spellings of one file compare equal.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), p.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => p.to_path_buf(),
    }
}

/// Refuses (exit 2) an output path that is one of the inputs, or two outputs that are the
/// same file: writing would destroy data.
pub fn refuse_overlap(inputs: &[&Path], outputs: &[&Path]) -> anyhow::Result<()> {
    let ins: Vec<PathBuf> = inputs.iter().map(|p| resolved(p)).collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    for out in outputs {
        let r = resolved(out);
        if let Some(k) = ins.iter().position(|i| *i == r) {
            return Err(bad_input(format!(
                "{}: the output would overwrite the input {}",
                out.display(),
                inputs[k].display()
            )));
        }
        if seen.contains(&r) {
            return Err(bad_input(format!(
                "{}: named for two outputs",
                out.display()
            )));
        }
        seen.push(r);
    }
    Ok(())
}

/// Writes every file or none: each goes to a temporary file in its destination folder, and
/// only when all were written are they renamed into place. On failure the temporary files
/// are removed and no destination is touched.
pub fn write_all_or_nothing(files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let cleanup = |temps: &[PathBuf]| {
        for t in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, bytes) in files {
        let name = path
            .file_name()
            .ok_or_else(|| bad_input(format!("{}: not a file name", path.display())))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if let Err(e) = std::fs::write(&tmp, bytes) {
            cleanup(&temps);
            let _ = std::fs::remove_file(&tmp);
            return Err(bad_input(format!("{}: cannot write: {e}", path.display())));
        }
        temps.push(tmp);
    }
    for (tmp, (path, _)) in temps.iter().zip(files) {
        if let Err(e) = std::fs::rename(tmp, path) {
            cleanup(&temps);
            return Err(bad_input(format!("{}: cannot write: {e}", path.display())));
        }
    }
    Ok(())
}

/// A byte count for people: `12.5 MiB`, `4.0 GiB` (binary units, one decimal).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(128 << 20), "128.0 MiB");
        assert_eq!(super::human_bytes(u64::MAX), "16777216.0 TiB");
    }
}
