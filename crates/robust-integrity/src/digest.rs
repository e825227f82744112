//! SHA-256 digests of model files and manifests of model directories.
//!
//! A [`Manifest`] lists every regular file of a model (one file, or a directory walked
//! recursively) with its path relative to the model root, its SHA-256 and its size. Its
//! *canonical text form* is what gets hashed into the root digest and what gets signed:
//!
//! ```text
//! robust-manifest/1\n
//! <sha256 hex, 64 lower-case digits> <size in bytes, decimal> <path>\n     (one line per file)
//! ```
//!
//! Lines are sorted by path (byte order of the UTF-8 path), paths use `/` as separator
//! and never start with `/` or contain `.`/`..` components; a path may contain spaces
//! but no control characters, so the path is simply the rest of the line. The root
//! digest is the SHA-256 of exactly these bytes (UTF-8, `\n` line endings, a final `\n`).
//! It can be recomputed with standard tools, for a directory `m`:
//!
//! ```text
//! (cd m && echo robust-manifest/1 && find . -type f | sed 's|^\./||' | LC_ALL=C sort |
//!   while read -r f; do echo "$(sha256sum < "$f" | cut -c1-64) $(stat -c %s "$f") $f"; done) | sha256sum
//! ```
//!
//! For a single file the manifest has one entry named after the file (its final path
//! component), so a file and a directory holding only that file have the same manifest.
//! Symbolic links inside a model directory are refused ([`IntegrityError::Symlink`]):
//! following them would let a signed directory silently depend on files outside it. The
//! model path given by the caller is itself resolved normally. Hidden files are included:
//! ignoring any file would leave a place to hide a payload.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{IntegrityError, Result};

/// First line of the canonical text form; also the `format` field of a manifest's JSON.
pub const MANIFEST_FORMAT: &str = "robust-manifest/1";

/// SHA-256 of a file's contents, as 64 lower-case hex digits (what `sha256sum` prints).
///
/// The file is streamed, so its size is not limited by memory.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    Ok(hash_file(path.as_ref())?.0)
}

/// SHA-256 of a byte string, as 64 lower-case hex digits.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Streams a file through SHA-256; returns (hex digest, size in bytes).
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = fs::File::open(path).map_err(|e| IntegrityError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IntegrityError::io("read", path, e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the model root, `/`-separated.
    pub path: String,
    /// SHA-256 of the file's contents, 64 lower-case hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The files of a model with their digests, sorted by path, and the root digest over them.
///
/// Built by [`manifest_for`] or [`Manifest::new`]; every constructor (including JSON
/// deserialisation) checks the invariants: paths sorted, unique, well-formed; digests
/// 64 lower-case hex digits; and, when read from JSON, the recorded root digest equal to
/// the one recomputed from the entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawManifest", into = "RawManifest")]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
    root_sha256: String,
}

/// The JSON shape of a manifest, before its invariants are checked.
#[derive(Serialize, Deserialize)]
pub(crate) struct RawManifest {
    format: String,
    root_sha256: String,
    entries: Vec<ManifestEntry>,
}

impl RawManifest {
    /// The manifest of the entries (format and entries checked), and the root digest the
    /// JSON recorded, which may differ from the manifest's own (see [`Manifest::try_from`]).
    pub(crate) fn into_manifest_and_recorded_root(self) -> Result<(Manifest, String)> {
        if self.format != MANIFEST_FORMAT {
            return Err(IntegrityError::InvalidManifest {
                reason: format!("format is {:?}, expected {MANIFEST_FORMAT:?}", self.format),
            });
        }
        Ok((Manifest::new(self.entries)?, self.root_sha256))
    }
}

impl TryFrom<RawManifest> for Manifest {
    type Error = IntegrityError;

    fn try_from(raw: RawManifest) -> Result<Self> {
        let (manifest, recorded) = raw.into_manifest_and_recorded_root()?;
        let raw = RawManifest {
            format: String::new(),
            root_sha256: recorded,
            entries: Vec::new(),
        };
        if manifest.root_sha256 != raw.root_sha256 {
            return Err(IntegrityError::InvalidManifest {
                reason: format!(
                    "recorded root digest {} differs from the digest of its entries {}",
                    raw.root_sha256, manifest.root_sha256
                ),
            });
        }
        Ok(manifest)
    }
}

impl From<Manifest> for RawManifest {
    fn from(m: Manifest) -> Self {
        RawManifest {
            format: MANIFEST_FORMAT.to_string(),
            root_sha256: m.root_sha256,
            entries: m.entries,
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks that a manifest path is relative, `/`-separated, without empty, `.` or `..`
/// components and without control characters.
fn check_manifest_path(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if path.contains('\\') {
        return Err("contains a backslash");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, '.' or '..' component, or a leading or trailing '/'");
    }
    Ok(())
}

impl Manifest {
    /// Builds a manifest from entries (in any order), checking them and computing the
    /// root digest.
    pub fn new(mut entries: Vec<ManifestEntry>) -> Result<Self> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in entries.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(IntegrityError::InvalidManifest {
                    reason: format!("path {:?} appears twice", pair[0].path),
                });
            }
        }
        for e in &entries {
            check_manifest_path(&e.path).map_err(|why| IntegrityError::InvalidManifest {
                reason: format!("path {:?} {why}", e.path),
            })?;
            if !is_sha256_hex(&e.sha256) {
                return Err(IntegrityError::InvalidManifest {
                    reason: format!(
                        "digest of {:?} is not 64 lower-case hex digits: {:?}",
                        e.path, e.sha256
                    ),
                });
            }
        }
        let root_sha256 = sha256_bytes(&canonical_bytes(&entries));
        Ok(Manifest {
            entries,
            root_sha256,
        })
    }

    /// The files, sorted by path.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// SHA-256 of [`Manifest::canonical_bytes`]: one digest that identifies the whole model.
    pub fn root_sha256(&self) -> &str {
        &self.root_sha256
    }

    /// Total size of all files in bytes.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The canonical text form described in the [module documentation](self): the bytes
    /// that are hashed into the root digest and signed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical_bytes(&self.entries)
    }

    /// Everything that differs between `self` (the expected manifest, e.g. the signed one)
    /// and `actual` (e.g. the one recomputed from disk), sorted by path.
    ///
    /// A file missing under one path and added under another with the same digest and
    /// size is reported once, as [`Difference::Renamed`].
    pub fn diff(&self, actual: &Manifest) -> Vec<Difference> {
        let expected: BTreeMap<&str, &ManifestEntry> =
            self.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let found: BTreeMap<&str, &ManifestEntry> = actual
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut added = Vec::new();
        for (path, e) in &expected {
            match found.get(path) {
                None => missing.push(*e),
                Some(a) if a.sha256 != e.sha256 || a.size != e.size => {
                    out.push(Difference::Changed {
                        path: path.to_string(),
                        expected_sha256: e.sha256.clone(),
                        actual_sha256: a.sha256.clone(),
                        expected_size: e.size,
                        actual_size: a.size,
                    })
                }
                Some(_) => {}
            }
        }
        for (path, a) in &found {
            if !expected.contains_key(path) {
                added.push(*a);
            }
        }
        // Pair each missing file with the first unpaired added file of identical content.
        let mut used = vec![false; added.len()];
        for m in missing {
            let partner = added
                .iter()
                .enumerate()
                .find(|(i, a)| !used[*i] && a.sha256 == m.sha256 && a.size == m.size)
                .map(|(i, _)| i);
            match partner {
                Some(i) => {
                    used[i] = true;
                    out.push(Difference::Renamed {
                        from: m.path.clone(),
                        to: added[i].path.clone(),
                    });
                }
                None => out.push(Difference::Missing {
                    path: m.path.clone(),
                }),
            }
        }
        for (i, a) in added.iter().enumerate() {
            if !used[i] {
                out.push(Difference::Added {
                    path: a.path.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.path().cmp(b.path()));
        out
    }

    /// The manifest as pretty-printed JSON
    /// (`{"format": "robust-manifest/1", "root_sha256": ..., "entries": [...]}`).
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn canonical_bytes(entries: &[ManifestEntry]) -> Vec<u8> {
    let mut out = String::with_capacity(32 + entries.len() * 100);
    out.push_str(MANIFEST_FORMAT);
    out.push('\n');
    for e in entries {
        out.push_str(&e.sha256);
        out.push(' ');
        out.push_str(&e.size.to_string());
        out.push(' ');
        out.push_str(&e.path);
        out.push('\n');
    }
    out.into_bytes()
}

/// One way in which a model differs from its expected manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The file exists in both, with different contents.
    Changed {
        /// Path relative to the model root.
        path: String,
        /// Digest in the expected manifest.
        expected_sha256: String,
        /// Digest found.
        actual_sha256: String,
        /// Size in the expected manifest.
        expected_size: u64,
        /// Size found.
        actual_size: u64,
    },
    /// The expected file is absent.
    Missing {
        /// Path relative to the model root.
        path: String,
    },
    /// A file is present that the expected manifest does not list.
    Added {
        /// Path relative to the model root.
        path: String,
    },
    /// An expected file is absent and a file with identical contents appeared elsewhere.
    Renamed {
        /// Path in the expected manifest.
        from: String,
        /// Path found.
        to: String,
    },
}

impl Difference {
    /// The path concerned (for [`Difference::Renamed`], the original one).
    pub fn path(&self) -> &str {
        match self {
            Difference::Changed { path, .. }
            | Difference::Missing { path }
            | Difference::Added { path } => path,
            Difference::Renamed { from, .. } => from,
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Changed {
                path,
                expected_sha256,
                actual_sha256,
                expected_size,
                actual_size,
            } => write!(
                f,
                "changed: {path} (sha256 {expected_sha256} -> {actual_sha256}, \
                 {expected_size} -> {actual_size} bytes)"
            ),
            Difference::Missing { path } => write!(f, "missing: {path}"),
            Difference::Added { path } => write!(f, "added: {path}"),
            Difference::Renamed { from, to } => write!(f, "renamed: {from} -> {to}"),
        }
    }
}

/// Builds the manifest of a model: a single file (one entry, named after the file) or a
/// directory (every regular file below it, recursively).
///
/// Errors: the path does not exist or cannot be read ([`IntegrityError::Io`]); a symbolic
/// link inside the directory ([`IntegrityError::Symlink`]); a socket/FIFO/device
/// ([`IntegrityError::NotAFile`]); a file name that is not UTF-8 or holds a control
/// character ([`IntegrityError::UnsupportedFileName`]); a directory without files
/// ([`IntegrityError::EmptyModel`]).
pub fn manifest_for(path: impl AsRef<Path>) -> Result<Manifest> {
    let path = path.as_ref();
    let meta = fs::metadata(path).map_err(|e| IntegrityError::io("read", path, e))?;
    let mut entries = Vec::new();
    if meta.is_file() {
        let name = path
            .file_name()
            .ok_or_else(|| IntegrityError::UnsupportedFileName {
                path: path.to_path_buf(),
                reason: "it has no final component",
            })?;
        let name = component_str(path, name)?;
        let (sha256, size) = hash_file(path)?;
        entries.push(ManifestEntry {
            path: name.to_string(),
            sha256,
            size,
        });
    } else if meta.is_dir() {
        walk(path, "", &mut entries)?;
        if entries.is_empty() {
            return Err(IntegrityError::EmptyModel {
                path: path.to_path_buf(),
            });
        }
    } else {
        return Err(IntegrityError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    // Names were checked by `component_str`; `Manifest::new` re-checks them anyway.
    Manifest::new(entries)
}

fn component_str<'a>(full: &Path, name: &'a std::ffi::OsStr) -> Result<&'a str> {
    let s = name
        .to_str()
        .ok_or_else(|| IntegrityError::UnsupportedFileName {
            path: full.to_path_buf(),
            reason: "it is not valid UTF-8",
        })?;
    if s.chars().any(char::is_control) {
        return Err(IntegrityError::UnsupportedFileName {
            path: full.to_path_buf(),
            reason: "it contains a control character",
        });
    }
    if s.contains('\\') {
        return Err(IntegrityError::UnsupportedFileName {
            path: full.to_path_buf(),
            reason: "it contains a backslash",
        });
    }
    Ok(s)
}

fn walk(dir: &Path, prefix: &str, entries: &mut Vec<ManifestEntry>) -> Result<()> {
    let reader = fs::read_dir(dir).map_err(|e| IntegrityError::io("list", dir, e))?;
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    for item in reader {
        let item = item.map_err(|e| IntegrityError::io("list", dir, e))?;
        let full = item.path();
        let name = component_str(&full, &item.file_name())?.to_string();
        children.push((name, full));
    }
    children.sort();
    for (name, full) in children {
        let meta = fs::symlink_metadata(&full).map_err(|e| IntegrityError::io("read", &full, e))?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            return Err(IntegrityError::Symlink { path: full });
        } else if ft.is_dir() {
            walk(&full, &rel, entries)?;
        } else if ft.is_file() {
            let (sha256, size) = hash_file(&full)?;
            entries.push(ManifestEntry {
                path: rel,
                sha256,
                size,
            });
        } else {
            return Err(IntegrityError::NotAFile { path: full });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, byte: u8) -> ManifestEntry {
        ManifestEntry {
            path: path.to_string(),
            sha256: sha256_bytes(&[byte]),
            size: 1,
        }
    }

    #[test]
    fn sha256_of_known_strings() {
        // FIPS 180-2 test vectors.
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn entries_are_sorted_and_root_covers_canonical_text() {
        let m = Manifest::new(vec![entry("b", 1), entry("a/c", 2), entry("a b", 3)]).unwrap();
        let paths: Vec<_> = m.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a b", "a/c", "b"]);
        let text = String::from_utf8(m.canonical_bytes()).unwrap();
        let expected = format!(
            "robust-manifest/1\n{} 1 a b\n{} 1 a/c\n{} 1 b\n",
            sha256_bytes(&[3]),
            sha256_bytes(&[2]),
            sha256_bytes(&[1])
        );
        assert_eq!(text, expected);
        assert_eq!(m.root_sha256(), sha256_bytes(expected.as_bytes()));
    }

    #[test]
    fn invalid_entries_are_rejected() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/./b",
            "../x",
            "a/",
            "new\nline",
            "back\\slash",
        ] {
            assert!(
                matches!(
                    Manifest::new(vec![entry(bad, 0)]),
                    Err(IntegrityError::InvalidManifest { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let dup = Manifest::new(vec![entry("a", 0), entry("a", 1)]);
        assert!(dup.unwrap_err().to_string().contains("appears twice"));
        let mut e = entry("a", 0);
        e.sha256 = e.sha256.to_uppercase();
        assert!(Manifest::new(vec![e]).is_err());
    }

    #[test]
    fn diff_names_every_kind_of_difference() {
        let expected = Manifest::new(vec![
            entry("keep", 1),
            entry("edit", 2),
            entry("gone", 3),
            entry("old", 4),
        ])
        .unwrap();
        let mut edited = entry("edit", 9);
        edited.size = 7;
        let actual = Manifest::new(vec![
            entry("keep", 1),
            edited,
            entry("new", 5),
            entry("renamed", 4),
        ])
        .unwrap();
        let d = expected.diff(&actual);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(
            matches!(&d[0], Difference::Changed { path, expected_size: 1, actual_size: 7, .. } if path == "edit")
        );
        assert_eq!(
            d[1],
            Difference::Missing {
                path: "gone".into()
            }
        );
        assert_eq!(d[2], Difference::Added { path: "new".into() });
        assert_eq!(
            d[3],
            Difference::Renamed {
                from: "old".into(),
                to: "renamed".into()
            }
        );
        assert!(expected.diff(&expected).is_empty());
        assert_eq!(d[3].to_string(), "renamed: old -> renamed");
    }

    #[test]
    fn json_round_trip_checks_root() {
        let m = Manifest::new(vec![entry("x", 1)]).unwrap();
        let json = m.to_json_pretty();
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let tampered = json.replace(&m.entries()[0].sha256, &sha256_bytes(b"other"));
        let err = serde_json::from_str::<Manifest>(&tampered).unwrap_err();
        assert!(err.to_string().contains("root digest"), "{err}");
    }
}
