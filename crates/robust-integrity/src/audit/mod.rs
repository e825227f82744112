//! `robust audit`: what loading a model file would execute or expose, found without loading
//! it (the questions modelscan and picklescan answer).
//!
//! | format | recognised by | checked |
//! |---|---|---|
//! | pickle (`.pkl .pickle .pt .pth .bin .ckpt .joblib .dat`, PyTorch's legacy format) | `\x80` protocol opcode or the extension | every import ([`pickle`]): dangerous ones (`os`, `subprocess`, `builtins.eval/exec`, `runpy`, `socket`, ...) are critical, others outside the safe list of data-only imports (PyTorch tensors and storages, NumPy arrays, containers) medium; damaged or obfuscated pickles high |
//! | zip archives: PyTorch checkpoints (`data.pkl`), `.npz`, `.keras` | `PK` magic | each `.pkl` member as a pickle, each `.npy` member as below, a `.keras` `config.json` as below |
//! | NumPy `.npy` | `\x93NUMPY` magic | object arrays: the pickle inside is walked (low note when it is harmless) |
//! | Keras `.h5` / `.keras` | HDF5 magic / `config.json` in the zip | `Lambda` layers (critical: marshalled Python bytecode), custom objects from modules outside Keras (medium) |
//! | ONNX `.onnx` | the extension | external data outside the model's folder (critical), missing or short external data, operators and operator sets from custom domains (medium: native custom-op libraries), declared tensors over 16 GiB or disagreeing with their stored bytes (high) |
//! | safetensors | the extension | header length and JSON, dtypes, offsets inside the data, sizes matching shapes, overlaps (high), holes (medium) |
//!
//! A folder is audited file by file (symbolic links are not followed); files of other
//! types are listed as not scanned. Findings of severity medium or above make the audit
//! fail ([`AuditReport::failed`]); low ones are notes. Nothing is executed or imported:
//! the pickle walker only reads opcodes.

pub mod formats;
pub mod pickle;
pub mod zipread;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{IntegrityError, Result};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A note (e.g. a harmless object array); does not fail the audit.
    Low,
    /// Code runs on load that is not known to be harmless (an unknown import, a custom op).
    Medium,
    /// A damaged or inconsistent file that loaders may handle unpredictably.
    High,
    /// Loading runs commands, evaluates code, or reads files outside the model.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// A stable identifier: `dangerous-import`, `unknown-import`, `malformed-pickle`,
    /// `object-array`, `keras-lambda`, `keras-custom-object`, `external-data-escape`,
    /// `custom-domain`, `oversized-tensor`, `malformed-safetensors`, ...
    pub kind: String,
    /// Where: the file, the archive member and the byte offset where known.
    pub location: String,
    /// What and why, one line.
    pub message: String,
}

/// The audit of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileAudit {
    /// The file, relative to the audited folder (or as given for a single file).
    pub path: String,
    /// The format recognised, or `not scanned`.
    pub format: String,
    /// Its findings, most severe first.
    pub findings: Vec<Finding>,
}

/// The audit of a file or folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// The path audited.
    pub path: PathBuf,
    /// One entry per file.
    pub files: Vec<FileAudit>,
}

impl AuditReport {
    /// Findings of severity medium or above.
    pub fn failing(&self) -> impl Iterator<Item = (&FileAudit, &Finding)> {
        self.files.iter().flat_map(|f| {
            f.findings
                .iter()
                .filter(|x| x.severity >= Severity::Medium)
                .map(move |x| (f, x))
        })
    }

    /// Whether any finding is medium or above.
    pub fn failed(&self) -> bool {
        self.failing().next().is_some()
    }

    /// A plain-text table: one row per finding (or per clean file), then a summary line.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 4]> = Vec::new();
        for f in &self.files {
            if f.findings.is_empty() {
                let verdict = if f.format == "not scanned" {
                    "-"
                } else {
                    "clean"
                };
                rows.push([
                    f.path.clone(),
                    f.format.clone(),
                    verdict.into(),
                    String::new(),
                ]);
            }
            for x in &f.findings {
                rows.push([
                    f.path.clone(),
                    f.format.clone(),
                    x.severity.to_string(),
                    format!("{} ({})", x.message, x.location),
                ]);
            }
        }
        let head = ["file", "format", "severity", "finding"];
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()).take(3) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |r: [&str; 4]| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2]
            )
            .trim_end()
            .to_string()
        };
        let mut out = line(head) + "\n";
        for r in &rows {
            out += &line([&r[0], &r[1], &r[2], &r[3]]);
            out.push('\n');
        }
        let failing = self.failing().count();
        let scanned = self
            .files
            .iter()
            .filter(|f| f.format != "not scanned")
            .count();
        out += &format!(
            "{} file{} scanned, {failing} finding{} of severity medium or above\n",
            scanned,
            if scanned == 1 { "" } else { "s" },
            if failing == 1 { "" } else { "s" }
        );
        out
    }
}

/// Largest file (or archive member) read for auditing; larger ones are audited on their
/// first bytes, with a note.
pub const READ_CAP: usize = 1 << 30;

/// Audits a model file or folder. Errors only for a path that cannot be read; every problem
/// inside a file is a finding.
pub fn audit_path(path: impl AsRef<Path>) -> Result<AuditReport> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| IntegrityError::io("read", path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let mut list = Vec::new();
        list_files(path, path, &mut list)?;
        list.sort();
        for rel in list {
            let full = path.join(&rel);
            let parent = full.parent().unwrap_or(path).to_path_buf();
            files.push(audit_file(&full, &rel, &parent)?);
        }
    } else if meta.is_file() {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let parent = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent
        };
        files.push(audit_file(path, &path.display().to_string(), &parent)?);
    } else {
        return Err(IntegrityError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(AuditReport {
        path: path.to_path_buf(),
        files,
    })
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| IntegrityError::io("list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| IntegrityError::io("list", dir, e))?;
        let p = entry.path();
        let meta = std::fs::symlink_metadata(&p).map_err(|e| IntegrityError::io("read", &p, e))?;
        if meta.is_dir() {
            list_files(root, &p, out)?;
        } else if meta.is_file() {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

fn read_capped(path: &Path) -> Result<(Vec<u8>, bool)> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| IntegrityError::io("open", path, e))?;
    let mut data = Vec::new();
    f.take(READ_CAP as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| IntegrityError::io("read", path, e))?;
    let truncated = data.len() > READ_CAP;
    data.truncate(READ_CAP);
    Ok((data, truncated))
}

const PICKLE_EXTENSIONS: &[&str] = &[
    "pkl", "pickle", "pt", "pth", "bin", "ckpt", "joblib", "dat", "model", "sav",
];

fn audit_file(full: &Path, rel: &str, dir: &Path) -> Result<FileAudit> {
    let (data, truncated) = read_capped(full)?;
    let ext = full
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let (format, mut findings) = if zipread::is_zip(&data) {
        audit_zip(full, rel)
    } else if data.starts_with(b"\x89HDF\r\n\x1a\n") {
        let configs = formats::h5_configs(&data);
        let mut f: Vec<Finding> = configs
            .iter()
            .flat_map(|c| formats::keras_config(c, rel))
            .collect();
        if configs.is_empty() {
            f.push(Finding {
                severity: Severity::Low,
                kind: "no-keras-config".into(),
                location: rel.into(),
                message: "HDF5 file without a Keras model configuration (weights only?)".into(),
            });
        }
        ("hdf5 (keras)".to_string(), f)
    } else if data.starts_with(b"\x93NUMPY") {
        ("npy".to_string(), formats::npy(&data, rel))
    } else if ext == "onnx" {
        ("onnx".to_string(), formats::onnx(&data, dir, rel))
    } else if ext == "safetensors" {
        ("safetensors".to_string(), formats::safetensors(&data, rel))
    } else if data.first() == Some(&0x80) || PICKLE_EXTENSIONS.contains(&ext.as_str()) {
        let (w, f) = pickle::findings(&data, rel);
        let format = if w.pickles > 1 {
            "pickle (torch legacy)"
        } else {
            "pickle"
        };
        (format.to_string(), f)
    } else {
        ("not scanned".to_string(), Vec::new())
    };
    if truncated {
        findings.push(Finding {
            severity: Severity::Low,
            kind: "truncated-read".into(),
            location: rel.into(),
            message: format!("larger than {READ_CAP} bytes: only the first ones were audited"),
        });
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(FileAudit {
        path: rel.to_string(),
        format,
        findings,
    })
}

fn audit_zip(full: &Path, rel: &str) -> (String, Vec<Finding>) {
    let members = match zipread::members(full) {
        Ok(m) => m,
        Err(reason) => {
            return (
                "zip".into(),
                vec![Finding {
                    severity: Severity::High,
                    kind: "malformed-zip".into(),
                    location: rel.into(),
                    message: reason,
                }],
            )
        }
    };
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let format = if names.iter().any(|n| n.ends_with("data.pkl")) {
        "pytorch zip"
    } else if names.contains(&"config.json") && names.iter().any(|n| n.ends_with(".h5")) {
        "keras"
    } else if !names.is_empty() && names.iter().all(|n| n.ends_with(".npy")) {
        "npz"
    } else {
        "zip"
    };
    let mut out = Vec::new();
    for m in &members {
        let lower = m.name.to_ascii_lowercase();
        let kind = if lower.ends_with(".pkl") || lower.ends_with(".pickle") {
            "pickle"
        } else if lower.ends_with(".npy") {
            "npy"
        } else if format == "keras" && m.name == "config.json" {
            "keras"
        } else if lower.ends_with(".h5") {
            "h5"
        } else {
            continue;
        };
        let location = format!("{rel}:{}", m.name);
        let (data, truncated) = match zipread::read_member(full, m, READ_CAP) {
            Ok(d) => d,
            Err(reason) => {
                out.push(Finding {
                    severity: Severity::High,
                    kind: "malformed-zip".into(),
                    location,
                    message: reason,
                });
                continue;
            }
        };
        if truncated {
            out.push(Finding {
                severity: Severity::Low,
                kind: "truncated-read".into(),
                location: location.clone(),
                message: format!("larger than {READ_CAP} bytes: only the first ones were audited"),
            });
        }
        match kind {
            "pickle" => out.extend(pickle::findings(&data, &location).1),
            "npy" => out.extend(formats::npy(&data, &location)),
            "keras" => match serde_json::from_slice::<serde_json::Value>(&data) {
                Ok(v) => out.extend(formats::keras_config(&v, &location)),
                Err(e) => out.push(Finding {
                    severity: Severity::High,
                    kind: "malformed-keras".into(),
                    location,
                    message: format!("config.json is not JSON ({e})"),
                }),
            },
            _ => {
                for c in formats::h5_configs(&data) {
                    out.extend(formats::keras_config(&c, &location));
                }
            }
        }
    }
    (format.to_string(), out)
}
