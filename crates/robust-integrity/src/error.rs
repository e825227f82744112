//! The crate's error type.

use std::path::PathBuf;

use crate::digest::Difference;

/// Everything that can go wrong in this crate.
///
/// Each variant carries the context a user needs to act on it: the path of the file
/// concerned, the feature or sample index, or the differing files. Messages are one line
/// (except [`IntegrityError::Tampered`], which lists one difference per line).
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// Reading, writing or listing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "list", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A model directory contains a symbolic link, which this crate refuses to follow.
    #[error(
        "refusing to follow the symbolic link {}: a signed model directory must hold plain \
         files only (copy the target into the directory instead)",
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },

    /// A model path is neither a regular file nor a directory (a socket, a device, a FIFO).
    #[error("{} is neither a regular file nor a directory", path.display())]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },

    /// A file name cannot be represented in a manifest (not UTF-8, or holding a control
    /// character such as a newline).
    #[error("file name {} cannot be recorded in a manifest: {reason}", path.display())]
    UnsupportedFileName {
        /// The offending path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },

    /// A model directory holds no files at all.
    #[error("model directory {} contains no files", path.display())]
    EmptyModel {
        /// The directory.
        path: PathBuf,
    },

    /// A manifest (usually the one inside a signature file) is inconsistent.
    #[error("invalid manifest: {reason}")]
    InvalidManifest {
        /// What is wrong with it.
        reason: String,
    },

    /// A key could not be parsed or encoded.
    #[error("invalid {kind} key: {reason}")]
    Key {
        /// `"private"` or `"public"`.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },

    /// A key of another type than Ed25519 (RSA, EC, Ed448, ...): only Ed25519 is supported.
    #[error(
        "unsupported {kind} key: this is {} key; only Ed25519 keys are supported for now \
         (make a key pair with `robust keygen` or `openssl genpkey -algorithm ed25519`)",
        article(found)
    )]
    UnsupportedKeyType {
        /// `"private"` or `"public"`.
        kind: &'static str,
        /// The key type found, e.g. `RSA` or `EC (P-256)`.
        found: String,
    },

    /// The operating system's random number generator failed.
    #[error("cannot obtain random bytes from the operating system: {reason}")]
    Random {
        /// What the generator said.
        reason: String,
    },

    /// A signature file could not be parsed (malformed JSON, missing field, bad hex, ...).
    #[error("malformed signature file {}: {reason}", path.display())]
    MalformedSignatureFile {
        /// The signature file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A well-formed signature file whose manifest was edited after signing: its recorded
    /// root digest differs from the digest of its entries. A verification failure.
    #[error("the signature file {} was altered: {reason}", path.display())]
    AlteredSignatureFile {
        /// The signature file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// A signature file uses a format or algorithm this version does not know.
    #[error("unsupported signature file: {reason}")]
    UnsupportedSignature {
        /// Which field has which unexpected value.
        reason: String,
    },

    /// The public key given is not the one recorded in the signature file.
    #[error(
        "wrong public key: the signature was made for the key with SHA-256 {expected}, \
         but the key given has SHA-256 {actual}"
    )]
    WrongKey {
        /// Fingerprint recorded in the signature file.
        expected: String,
        /// Fingerprint of the key given.
        actual: String,
    },

    /// The signature does not verify over the manifest recorded in the signature file:
    /// the signature file was altered.
    #[error(
        "the signature does not match the manifest it records: the signature file was \
         altered or not made with this key"
    )]
    BadSignature,

    /// The model on disk differs from the signed manifest.
    #[error(
        "model {} does not match its signed manifest ({} difference{}):\n{}",
        path.display(),
        differences.len(),
        if differences.len() == 1 { "" } else { "s" },
        differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    )]
    Tampered {
        /// The model path that was verified.
        path: PathBuf,
        /// Every difference between the signed manifest and the model on disk.
        differences: Vec<Difference>,
    },
}

/// `"an RSA"`, `"an EC (P-256)"`, `"a DSA"`: the indefinite article for a key type (by
/// how the abbreviation is spoken); a phrase that already starts with an article is kept.
fn article(found: &str) -> String {
    if found.starts_with("a ") || found.starts_with("an ") {
        return found.to_string();
    }
    let vowel_sound = found
        .chars()
        .next()
        .is_some_and(|c| "AEFHILMNORSXaeiou".contains(c));
    format!("{} {found}", if vowel_sound { "an" } else { "a" })
}

/// `Result` with [`IntegrityError`].
pub type Result<T, E = IntegrityError> = std::result::Result<T, E>;

impl IntegrityError {
    /// Builds an [`IntegrityError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        IntegrityError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether this error means the model or its signature was tampered with (a
    /// verification failure, exit code 1), rather than unusable input (exit code 2).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            IntegrityError::WrongKey { .. }
                | IntegrityError::BadSignature
                | IntegrityError::AlteredSignatureFile { .. }
                | IntegrityError::Tampered { .. }
        )
    }
}
