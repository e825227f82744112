//! Atomic file output: a file is either absent or complete, never partly written.
//!
//! Both functions write to a fresh temporary file in the destination's directory (so the
//! final step stays on one file system), flush it to disk, and then move it into place:
//! [`write_atomic`] with `rename` (replacing any existing file), [`write_new_atomic`] with
//! a hard link, which fails if the destination exists — so two concurrent `keygen` runs
//! cannot overwrite each other's keys.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IntegrityError, Result};

/// Who may read a file written by this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// The process's default (umask) permissions.
    Default,
    /// Readable and writable by the owner only (mode 0600 on Unix): for private keys.
    OwnerOnly,
}

/// Writes `contents` to `path` atomically, replacing the file if it exists.
pub fn write_atomic(path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let tmp = write_temp(path, contents, Permissions::Default)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        IntegrityError::io("write", path, e)
    })
}

/// Writes `contents` to `path` atomically, failing (with an [`IntegrityError::Io`] of kind
/// `AlreadyExists`) if `path` exists.
pub fn write_new_atomic(
    path: impl AsRef<Path>,
    contents: &[u8],
    permissions: Permissions,
) -> Result<()> {
    let path = path.as_ref();
    if path.symlink_metadata().is_ok() {
        return Err(IntegrityError::io(
            "create",
            path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "file exists; refusing to overwrite it",
            ),
        ));
    }
    let tmp = write_temp(path, contents, permissions)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|e| {
        let e = if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(e.kind(), "file exists; refusing to overwrite it")
        } else {
            e
        };
        IntegrityError::io("create", path, e)
    })
}

fn write_temp(path: &Path, contents: &[u8], permissions: Permissions) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        IntegrityError::io(
            "write",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if permissions == Permissions::OwnerOnly {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = permissions;
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(IntegrityError::io("write", path, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "robust-integrity-atomic-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = scratch("replace");
        let p = dir.join("out.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_refuses_to_overwrite() {
        let dir = scratch("new");
        let p = dir.join("key.pem");
        write_new_atomic(&p, b"first", Permissions::OwnerOnly).unwrap();
        let err = write_new_atomic(&p, b"second", Permissions::OwnerOnly).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert!(err.to_string().contains("key.pem"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error_with_the_path() {
        let err = write_atomic("/nonexistent-robust-dir/x.json", b"x").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-robust-dir/x.json"),
            "{err}"
        );
    }
}
