//! The error type of the openssl-compatible and OpenSSF signature formats
//! ([`crate::openssl`], [`crate::openssf`]) and of signature-kind detection.

use std::path::PathBuf;

use crate::error::IntegrityError;

/// Everything that can go wrong when signing or verifying in the openssl or OpenSSF formats.
///
/// [`SignatureError::is_verification_failure`] tells a failed check (exit code 1 in the
/// CLI: the signature does not verify, the key is another one, the model changed) from
/// unusable input (exit code 2: a malformed key, signature or bundle).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// An error of the digest layer (reading the model, walking its folder, ...).
    #[error(transparent)]
    Integrity(#[from] IntegrityError),

    /// A key file that cannot be used: not PEM, a corrupt structure, a password-protected key.
    #[error("invalid {kind} key: {reason}")]
    Key {
        /// `"private"` or `"public"`.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A well-formed key of a type the format does not support (DSA, Ed448, P-521, ...).
    #[error("unsupported {kind} key: {found}; {format} supports {supported}")]
    UnsupportedKey {
        /// `"private"` or `"public"`.
        kind: &'static str,
        /// The key type found.
        found: String,
        /// The signature format (`"--format openssl"`, `"an OpenSSF bundle"`).
        format: &'static str,
        /// The key types the format supports.
        supported: &'static str,
    },

    /// The signature does not verify with the key given over the bytes given.
    #[error(
        "the {scheme} signature does not verify: it was made with another key, over other \
         bytes, or altered"
    )]
    BadSignature {
        /// The scheme(s) tried, e.g. `RSA PKCS#1 v1.5 or PSS with SHA-256`.
        scheme: String,
    },

    /// A signature that cannot be decoded (wrong length, not DER, ...).
    #[error("malformed signature {}: {reason}", path.display())]
    MalformedSignature {
        /// The signature file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A sigstore bundle that cannot be read (not JSON, missing fields, bad base64, ...).
    #[error("malformed OpenSSF model-signing bundle {}: {reason}", path.display())]
    MalformedBundle {
        /// The bundle file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A bundle using a feature this version does not implement (sharded serialization,
    /// another hash, certificates instead of a key, ...).
    #[error("unsupported OpenSSF model-signing bundle {}: {reason}", path.display())]
    UnsupportedBundle {
        /// The bundle file.
        path: PathBuf,
        /// What it uses.
        reason: String,
    },

    /// The bundle names another public key than the one given (its key hint differs).
    #[error(
        "wrong public key: the bundle was made for the key whose PEM has SHA-256 {expected}, \
         but the key given has {actual}"
    )]
    WrongKey {
        /// Key hint recorded in the bundle.
        expected: String,
        /// Hint of the key given.
        actual: String,
    },

    /// The model on disk differs from the signed list of files.
    #[error(
        "model {} does not match its signature ({} difference{}):\n{}",
        path.display(),
        differences.len(),
        if differences.len() == 1 { "" } else { "s" },
        differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    )]
    Tampered {
        /// The model path that was verified.
        path: PathBuf,
        /// One line per difference (`changed: a.bin`, `added: b.bin`, `renamed: a -> b`, ...).
        differences: Vec<String>,
    },

    /// An option that does not fit the key or model (e.g. PSS padding with an EC key).
    #[error("{reason}")]
    Usage {
        /// What does not fit.
        reason: String,
    },
}

/// `Result` with [`SignatureError`].
pub type SignatureResult<T> = std::result::Result<T, SignatureError>;

impl SignatureError {
    /// Whether this error means a failed check (wrong key, bad signature, changed model)
    /// rather than unusable input.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            SignatureError::BadSignature { .. }
            | SignatureError::WrongKey { .. }
            | SignatureError::Tampered { .. } => true,
            SignatureError::Integrity(e) => e.is_verification_failure(),
            _ => false,
        }
    }
}
