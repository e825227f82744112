//! One module per subcommand.

pub mod audit;
pub mod backdoor;
pub mod drift;
pub mod eval;
pub mod eval_backdoor;
pub mod history;
pub mod integrity;
pub mod mlflow;
pub mod predict;
pub mod report;
pub mod scan;
pub mod shard;
pub mod signing;
pub mod state;

use std::path::{Path, PathBuf};

use crate::exit::bad_input;

/// A path made absolute and free of links where it exists; for a path that does not exist
/// yet, its nearest existing ancestor resolved and the rest kept, so two spellings of one
/// file compare equal.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(mut c) = cur.canonicalize() {
            c.extend(rest.iter().rev());
            return c;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
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

/// `paths`, and for each that is a folder (a data set) the files directly inside it, which
/// a command reads too: the inputs that [`refuse_overlap`] protects.
pub fn with_folder_files(paths: &[&Path]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
    for p in paths {
        if let Ok(entries) = std::fs::read_dir(p) {
            out.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file()),
            );
        }
    }
    out
}

/// Writes every file or none: each goes to a temporary file in its destination folder, and
/// only when all were written are they renamed into place. A destination that is a folder
/// is refused before any rename; if a rename still fails, the files already renamed are
/// put back as they were (the previous file restored, or the new one removed). On failure
/// no destination is changed and no temporary file is left; the error (exit 2) names the
/// file that could not be written.
pub fn write_all_or_nothing(files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    let cannot = |path: &Path, why: &dyn std::fmt::Display| {
        bad_input(format!("{}: cannot write: {why}", path.display()))
    };
    let remove_all = |paths: &[PathBuf]| {
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
    };
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let Some(name) = path.file_name() else {
            remove_all(&temps);
            return Err(bad_input(format!("{}: not a file name", path.display())));
        };
        if path.is_dir() {
            remove_all(&temps);
            return Err(cannot(path, &"it is a folder"));
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if let Err(e) = std::fs::write(&tmp, bytes) {
            let _ = std::fs::remove_file(&tmp);
            remove_all(&temps);
            return Err(cannot(path, &e));
        }
        temps.push(tmp);
    }
    // Keep each file about to be replaced under a second name (a hard link, else a copy),
    // so that a failed rename can put every earlier one back.
    let mut backups: Vec<Option<PathBuf>> = Vec::with_capacity(files.len());
    for (path, _) in files {
        let backup = path.with_file_name(format!(
            ".{}.old-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let kept = path.is_file()
            && (std::fs::hard_link(path, &backup).is_ok() || std::fs::copy(path, &backup).is_ok());
        backups.push(kept.then_some(backup));
    }
    let drop_backups = |backups: &[Option<PathBuf>]| {
        for b in backups.iter().flatten() {
            let _ = std::fs::remove_file(b);
        }
    };
    for (k, (tmp, (path, _))) in temps.iter().zip(files).enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            for ((done, _), backup) in files[..k].iter().zip(&backups) {
                match backup {
                    Some(b) => {
                        let _ = std::fs::rename(b, done);
                    }
                    None => {
                        let _ = std::fs::remove_file(done);
                    }
                }
            }
            remove_all(&temps[k..]);
            drop_backups(&backups[k..]);
            return Err(cannot(path, &e));
        }
    }
    drop_backups(&backups);
    Ok(())
}

/// Creates `dir` and any missing parents; returns the folders it created, deepest first,
/// for [`remove_created`] to take back if the outputs then cannot be written.
pub fn create_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        remove_created(&missing);
        return Err(bad_input(format!(
            "{}: cannot create the output folder: {e}",
            dir.display()
        )));
    }
    Ok(missing)
}

/// Removes folders [`create_dirs`] created, deepest first, as long as they are empty.
pub fn remove_created(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Refuses (exit 2) an output that would land inside the model folder `model`: it would
/// change the very files a digest or signature describes.
pub fn refuse_inside_model(model: &Path, output: &Path) -> anyhow::Result<()> {
    if !model.is_dir() {
        return Ok(());
    }
    let (m, o) = (resolved(model), resolved(output));
    if o.starts_with(&m) {
        return Err(bad_input(format!(
            "{}: the output would be written inside the model folder {}, changing the model; \
             write it elsewhere",
            output.display(),
            model.display()
        )));
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

    fn listing(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn all_or_nothing_writes_all_or_leaves_everything_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.txt"), "old a").unwrap();
        let files = |names: &[&str]| -> Vec<(std::path::PathBuf, Vec<u8>)> {
            names
                .iter()
                .map(|n| (d.join(n), format!("new {n}").into_bytes()))
                .collect()
        };
        // A destination that is a folder: refused before anything is renamed.
        std::fs::create_dir(d.join("c.txt")).unwrap();
        let before = listing(d);
        let err = super::write_all_or_nothing(&files(&["a.txt", "b.txt", "c.txt"])).unwrap_err();
        assert!(err.to_string().contains("c.txt: cannot write"), "{err}");
        assert_eq!(listing(d), before);
        // A folder that is missing: the temporary file cannot be written.
        let mut set = files(&["a.txt", "b.txt"]);
        set.push((d.join("missing/d.txt"), b"d".to_vec()));
        assert!(super::write_all_or_nothing(&set).is_err());
        assert_eq!(listing(d), before);
        // Success: every file replaced or created, nothing else left behind.
        std::fs::remove_dir(d.join("c.txt")).unwrap();
        super::write_all_or_nothing(&files(&["a.txt", "b.txt", "c.txt"])).unwrap();
        let names: Vec<(String, Vec<u8>)> = listing(d);
        assert_eq!(
            names,
            vec![
                ("a.txt".into(), b"new a.txt".to_vec()),
                ("b.txt".into(), b"new b.txt".to_vec()),
                ("c.txt".into(), b"new c.txt".to_vec()),
            ]
        );
    }

    #[test]
    fn overlaps_are_found_through_other_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("m.onnx"), "m").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let input = d.join("m.onnx");
        let other = d.join("sub/../m.onnx");
        assert!(super::refuse_overlap(&[&input], &[&other]).is_err());
        let new_a = d.join("new/x.json");
        let new_b = d.join("new/./x.json");
        assert!(super::refuse_overlap(&[], &[&new_a, &new_b]).is_err());
        assert!(super::refuse_overlap(&[&input], &[&new_a]).is_ok());
        let inside = d.join("sub/sig.json");
        assert!(super::refuse_inside_model(&d.join("sub"), &inside).is_err());
        assert!(super::refuse_inside_model(&input, &inside).is_ok());
    }
}

/// A multi-line message on one line: lines trimmed and joined with `; `, or with a space
/// after a line that ends in `:` (`… (2 differences): changed: a; missing: b`).
pub fn join_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod join_tests {
    #[test]
    fn joins_a_list_after_a_colon() {
        assert_eq!(
            super::join_lines(
                "model m does not match (2 differences):\n  changed: a\n  missing: b"
            ),
            "model m does not match (2 differences): changed: a; missing: b"
        );
        assert_eq!(super::join_lines("one line"), "one line");
    }
}
