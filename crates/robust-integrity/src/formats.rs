//! One entry point for every signature format robust reads: robust's own JSON signature
//! file ([`crate::sign`]), a raw openssl signature ([`crate::openssl`]) and an OpenSSF
//! model-signing bundle ([`crate::openssf`]), told apart by content ([`detect_kind`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;

use crate::error::IntegrityError;
use crate::openssl::HashAlg;
use crate::sign::{verify, SignatureFile};
use crate::signing_error::{SignatureError, SignatureResult};

/// A signature file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureKind {
    /// robust's JSON signature file (Ed25519 over the manifest).
    Robust,
    /// Raw signature bytes as `openssl dgst -sign` / `openssl pkeyutl -sign` write them.
    Openssl,
    /// An OpenSSF model-signing sigstore bundle.
    Openssf,
}

impl SignatureKind {
    /// The name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            SignatureKind::Robust => "robust",
            SignatureKind::Openssl => "openssl",
            SignatureKind::Openssf => "openssf",
        }
    }
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SignatureKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "robust" | "json" => Ok(SignatureKind::Robust),
            "openssl" | "raw" => Ok(SignatureKind::Openssl),
            "openssf" | "sigstore" | "model-signing" => Ok(SignatureKind::Openssf),
            other => Err(format!(
                "unknown signature format {other:?}: expected robust, openssl or openssf"
            )),
        }
    }
}

/// The format of a signature file's bytes. UTF-8 text opening with `{` is JSON: a sigstore
/// bundle when it has a sigstore `mediaType` (or, when it does not parse, mentions
/// `mediaType` or `dsseEnvelope`), else robust's signature file, whose reader then names
/// what is wrong with it. Anything else is a raw openssl signature: raw signatures are
/// binary (DER opens with `0`; a random RSA or Ed25519 signature is valid UTF-8 with a
/// probability below 1e-18).
pub fn detect_kind(bytes: &[u8]) -> SignatureKind {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return SignatureKind::Openssl;
    };
    if !text.trim_start().starts_with('{') {
        return SignatureKind::Openssl;
    }
    let bundle = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => crate::openssf::looks_like_bundle(bytes),
        Err(_) => text.contains("\"mediaType\"") || text.contains("\"dsseEnvelope\""),
    };
    if bundle {
        SignatureKind::Openssf
    } else {
        SignatureKind::Robust
    }
}

/// A model that verified, whatever the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The signature's format.
    pub kind: SignatureKind,
    /// The scheme, e.g. `Ed25519`, `RSA-PSS with sha256 (salt 32 bytes)`, `ECDSA P-256 with sha256`.
    pub scheme: String,
    /// The key's type, e.g. `RSA-3072`, `EC P-256`, `Ed25519`.
    pub key_type: String,
    /// SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub public_key_sha256: String,
    /// How many files the signature covers.
    pub files: usize,
    /// The digest that identifies the signed content: robust's manifest root digest, the
    /// file's SHA-256 for a single-file openssl signature, or the bundle's subject digest.
    pub root_sha256: String,
}

/// Verifies a model against a signature file of the given format (`None`: detected from
/// the file's bytes) and a PEM public key. `hash` is the digest of raw openssl signatures.
pub fn verify_any(
    model: &Path,
    signature_path: &Path,
    public_pem: &str,
    kind: Option<SignatureKind>,
    hash: HashAlg,
) -> SignatureResult<Verified> {
    let kind = match kind {
        Some(k) => k,
        None => {
            let bytes = std::fs::read(signature_path)
                .map_err(|e| IntegrityError::io("read", signature_path, e))?;
            detect_kind(&bytes)
        }
    };
    match kind {
        SignatureKind::Robust => {
            let sig = SignatureFile::read(signature_path)?;
            let v = verify(model, &sig, public_pem)?;
            Ok(Verified {
                kind,
                scheme: "Ed25519".to_string(),
                key_type: "Ed25519".to_string(),
                public_key_sha256: v.public_key_sha256,
                files: v.manifest.entries().len(),
                root_sha256: v.manifest.root_sha256().to_string(),
            })
        }
        SignatureKind::Openssl => {
            let v = crate::openssl::verify_model(model, signature_path, public_pem, hash)?;
            let single = std::fs::metadata(model).is_ok_and(|m| m.is_file());
            let root = match (single, v.manifest.entries().first()) {
                (true, Some(e)) => e.sha256.clone(),
                _ => v.manifest.root_sha256().to_string(),
            };
            Ok(Verified {
                kind,
                scheme: v.scheme.to_string(),
                key_type: v.key_type,
                public_key_sha256: v.public_key_sha256,
                files: v.manifest.entries().len(),
                root_sha256: root,
            })
        }
        SignatureKind::Openssf => {
            let v = crate::openssf::verify_bundle(model, signature_path, public_pem)?;
            Ok(Verified {
                kind,
                scheme: format!(
                    "DSSE/in-toto, ECDSA {}",
                    v.key_type.trim_start_matches("EC ")
                ),
                key_type: v.key_type,
                public_key_sha256: v.public_key_sha256,
                files: v.resources.len(),
                root_sha256: v.root_sha256,
            })
        }
    }
}

/// Whether an error is about the key file (unparsable, or of a type the format does not
/// take), so that a caller names the key file in the message.
pub fn is_key_problem(e: &SignatureError) -> bool {
    matches!(
        e,
        SignatureError::Key { .. }
            | SignatureError::UnsupportedKey { .. }
            | SignatureError::Integrity(
                IntegrityError::Key { .. } | IntegrityError::UnsupportedKeyType { .. }
            )
    )
}
