//! Ed25519 signatures over model manifests.
//!
//! * Keys are PEM files OpenSSL reads and writes: the private key is PKCS#8 v1
//!   (`-----BEGIN PRIVATE KEY-----`, the layout of `openssl genpkey -algorithm ed25519`),
//!   the public key SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`). PKCS#8 v2 private
//!   keys (with the public key embedded) are accepted too; the embedded key is checked.
//! * The signed message is the manifest's canonical text
//!   ([`Manifest::canonical_bytes`]), signed as plain Ed25519 (RFC 8032, no pre-hash),
//!   so `openssl pkeyutl -sign -rawin -inkey priv.pem -in manifest.txt` produces the
//!   very same signature (Ed25519 is deterministic).
//! * A key's fingerprint is the SHA-256 of its DER SubjectPublicKeyInfo:
//!   `openssl pkey -pubin -in pub.pem -outform DER | sha256sum`.
//!
//! [`SignatureFile::read`] refuses a file whose manifest was edited without re-signing (its
//! recorded root digest differs from its entries') as [`IntegrityError::AlteredSignatureFile`],
//! a verification failure like the ones below. Keys of other types (RSA, EC, Ed448, ...)
//! are refused as [`IntegrityError::UnsupportedKeyType`], naming the type found.
//!
//! [`verify`] checks, in this order: the signature file's format and algorithm; that the
//! public key given is the one recorded ([`IntegrityError::WrongKey`]); that the
//! signature verifies over the recorded manifest ([`IntegrityError::BadSignature`], the
//! signature file was edited); and only then that the model on disk matches the now
//! trusted manifest ([`IntegrityError::Tampered`], naming every differing file).

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::TryRng;
use serde::{Deserialize, Serialize};

use crate::digest::{manifest_for, sha256_bytes, Manifest, RawManifest};
use crate::error::{IntegrityError, Result};

/// `format` field of a signature file.
pub const SIGNATURE_FORMAT: &str = "robust-signature/1";
/// `algorithm` field of a signature file.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// A new Ed25519 key pair as `(private PKCS#8 PEM, public SPKI PEM)`.
///
/// The 32 secret bytes come straight from the operating system's random number
/// generator (`getrandom`, through rand's `SysRng`). Write the private key with
/// [`crate::write_new_atomic`] and [`crate::Permissions::OwnerOnly`].
pub fn generate_keypair() -> Result<(String, String)> {
    let mut secret = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut secret)
        .map_err(|e| IntegrityError::Random {
            reason: e.to_string(),
        })?;
    let signing = SigningKey::from_bytes(&secret);
    secret.fill(0);
    let private_pem = private_key_pem(&signing)?;
    let public_pem = public_key_pem(&signing.verifying_key())?;
    Ok((private_pem, public_pem))
}

/// PKCS#8 v1 PEM of a signing key (no embedded public key, as OpenSSL writes it).
fn private_key_pem(key: &SigningKey) -> Result<String> {
    let bytes = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| IntegrityError::Key {
            kind: "private",
            reason: e.to_string(),
        })
}

fn public_key_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| IntegrityError::Key {
            kind: "public",
            reason: e.to_string(),
        })
}

/// Parses a PKCS#8 PEM Ed25519 private key. A key of another type (RSA, EC, Ed448, ...)
/// is refused with [`IntegrityError::UnsupportedKeyType`], naming the type found.
pub fn parse_private_key(pem: &str) -> Result<SigningKey> {
    SigningKey::from_pkcs8_pem(pem.trim_start()).map_err(|e| {
        unsupported_key_type(pem, "private").unwrap_or_else(|| IntegrityError::Key {
            kind: "private",
            reason: format!("not a PKCS#8 PEM Ed25519 private key ({e})"),
        })
    })
}

/// Parses an SPKI PEM Ed25519 public key. A key of another type (RSA, EC, Ed448, ...) is
/// refused with [`IntegrityError::UnsupportedKeyType`], naming the type found.
pub fn parse_public_key(pem: &str) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
        unsupported_key_type(pem, "public").unwrap_or_else(|| IntegrityError::Key {
            kind: "public",
            reason: format!("not an SPKI PEM Ed25519 public key ({e})"),
        })
    })
}

/// The error for a PEM key that is recognisably a key of another type than Ed25519 (by its
/// PEM label, or the algorithm of its PKCS#8 / SubjectPublicKeyInfo structure); `None` when
/// the type cannot be told (the caller then reports the parser's error).
fn unsupported_key_type(pem: &str, kind: &'static str) -> Option<IntegrityError> {
    use ed25519_dalek::pkcs8::spki::der::{pem as rfc7468, Decode};
    use ed25519_dalek::pkcs8::spki::SubjectPublicKeyInfoRef;
    use ed25519_dalek::pkcs8::PrivateKeyInfo;

    let (label, der) = rfc7468::decode_vec(pem.trim().as_bytes()).ok()?;
    let found = match label {
        "RSA PRIVATE KEY" | "RSA PUBLIC KEY" => "RSA (PKCS#1)".to_string(),
        "EC PRIVATE KEY" => "EC (SEC1)".to_string(),
        "DSA PRIVATE KEY" => "DSA".to_string(),
        "OPENSSH PRIVATE KEY" => "OpenSSH-format".to_string(),
        "ENCRYPTED PRIVATE KEY" => "encrypted (password-protected) PKCS#8".to_string(),
        "CERTIFICATE" => "an X.509 certificate, not a".to_string(),
        "PRIVATE KEY" => {
            let info = PrivateKeyInfo::from_der(&der).ok()?;
            let params = info.algorithm.parameters.and_then(|p| {
                p.decode_as::<ed25519_dalek::pkcs8::spki::ObjectIdentifier>()
                    .ok()
            });
            algorithm_name(
                &info.algorithm.oid.to_string(),
                params.map(|p| p.to_string()),
            )?
        }
        "PUBLIC KEY" => {
            let info = SubjectPublicKeyInfoRef::from_der(&der).ok()?;
            let params = info.algorithm.parameters.and_then(|p| {
                p.decode_as::<ed25519_dalek::pkcs8::spki::ObjectIdentifier>()
                    .ok()
            });
            algorithm_name(
                &info.algorithm.oid.to_string(),
                params.map(|p| p.to_string()),
            )?
        }
        _ => return None,
    };
    Some(IntegrityError::UnsupportedKeyType { kind, found })
}

/// A key algorithm's name from its OID (and the curve OID for EC keys); `None` for Ed25519
/// (which is supported, so the key is broken in some other way) and for unknown OIDs.
fn algorithm_name(oid: &str, params: Option<String>) -> Option<String> {
    let curve = |p: Option<String>| match p.as_deref() {
        Some("1.2.840.10045.3.1.7") => "P-256".to_string(),
        Some("1.3.132.0.34") => "P-384".to_string(),
        Some("1.3.132.0.35") => "P-521".to_string(),
        Some("1.3.132.0.10") => "secp256k1".to_string(),
        Some(other) => format!("curve {other}"),
        None => "unknown curve".to_string(),
    };
    Some(match oid {
        "1.3.101.112" => return None,
        "1.2.840.113549.1.1.1" => "RSA".to_string(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_string(),
        "1.2.840.10045.2.1" => format!("EC ({})", curve(params)),
        "1.2.840.10040.4.1" => "DSA".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        "1.3.101.110" => "X25519".to_string(),
        "1.3.101.111" => "X448".to_string(),
        other => format!("algorithm OID {other}"),
    })
}

/// SHA-256 (hex) of a public key's DER SubjectPublicKeyInfo.
pub fn public_key_fingerprint(key: &VerifyingKey) -> Result<String> {
    let der = key.to_public_key_der().map_err(|e| IntegrityError::Key {
        kind: "public",
        reason: e.to_string(),
    })?;
    Ok(sha256_bytes(der.as_bytes()))
}

/// A signature file: the manifest, who signed it and the signature, stored as JSON.
///
/// ```json
/// {
///   "format": "robust-signature/1",
///   "algorithm": "ed25519",
///   "manifest": {"format": "robust-manifest/1", "root_sha256": "…", "entries": [{"path": "…", "sha256": "…", "size": 1}]},
///   "public_key_sha256": "…",
///   "signature": "…128 hex digits…"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    /// Always [`SIGNATURE_FORMAT`].
    pub format: String,
    /// Always [`SIGNATURE_ALGORITHM`].
    pub algorithm: String,
    /// The signed manifest.
    pub manifest: Manifest,
    /// Fingerprint of the signer's public key (see [`public_key_fingerprint`]).
    pub public_key_sha256: String,
    /// The 64-byte Ed25519 signature over the manifest's canonical bytes, as hex.
    pub signature: String,
}

impl SignatureFile {
    /// Reads and checks a signature file: valid JSON with every field, a consistent
    /// manifest, a known format and algorithm, and hex fields of the right length.
    ///
    /// A well-formed file whose manifest's recorded root digest differs from the digest of
    /// its entries was edited after signing (robust never writes one): that is
    /// [`IntegrityError::AlteredSignatureFile`], a verification failure, not a malformed file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| IntegrityError::io("read", path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses a signature file from JSON text; `path` is named in the errors.
    fn from_json(text: &str, path: &Path) -> Result<Self> {
        let malformed = |reason: String| IntegrityError::MalformedSignatureFile {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawSignatureFile = serde_json::from_str(text).map_err(|e| {
            malformed(match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    format!("not valid JSON ({e})")
                }
                _ => e.to_string(),
            })
        })?;
        let (manifest, recorded_root) = raw
            .manifest
            .into_manifest_and_recorded_root()
            .map_err(|e| malformed(e.to_string()))?;
        let file = SignatureFile {
            format: raw.format,
            algorithm: raw.algorithm,
            manifest,
            public_key_sha256: raw.public_key_sha256,
            signature: raw.signature,
        };
        file.check().map_err(|e| malformed(e.to_string()))?;
        if file.manifest.root_sha256() != recorded_root {
            return Err(IntegrityError::AlteredSignatureFile {
                path: path.to_path_buf(),
                reason: format!(
                    "its manifest records the root digest {recorded_root}, but its entries \
                     digest to {}: an entry was edited after signing",
                    file.manifest.root_sha256()
                ),
            });
        }
        Ok(file)
    }

    /// Checks the fields a manifest's own checks do not cover.
    fn check(&self) -> Result<()> {
        if self.format != SIGNATURE_FORMAT {
            return Err(IntegrityError::UnsupportedSignature {
                reason: format!("format {:?}, expected {SIGNATURE_FORMAT:?}", self.format),
            });
        }
        if self.algorithm != SIGNATURE_ALGORITHM {
            return Err(IntegrityError::UnsupportedSignature {
                reason: format!(
                    "algorithm {:?}, expected {SIGNATURE_ALGORITHM:?}",
                    self.algorithm
                ),
            });
        }
        self.signature_bytes()?;
        let fp = &self.public_key_sha256;
        if fp.len() != 64 || hex::decode(fp).is_err() {
            return Err(IntegrityError::UnsupportedSignature {
                reason: format!("public_key_sha256 is not 64 hex digits: {fp:?}"),
            });
        }
        Ok(())
    }

    fn signature_bytes(&self) -> Result<Signature> {
        let bytes =
            hex::decode(&self.signature).map_err(|e| IntegrityError::UnsupportedSignature {
                reason: format!("signature is not hex ({e})"),
            })?;
        let bytes: [u8; 64] =
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| IntegrityError::UnsupportedSignature {
                    reason: format!(
                        "signature has {} bytes, an Ed25519 signature has 64",
                        b.len()
                    ),
                })?;
        Ok(Signature::from_bytes(&bytes))
    }

    /// The signature file as pretty-printed JSON (with a final newline).
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes the signature file atomically (see [`crate::write_atomic`]).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic::write_atomic(path, self.to_json_pretty().as_bytes())
    }
}

/// The JSON shape of a signature file, before the manifest's root digest is compared.
#[derive(Deserialize)]
struct RawSignatureFile {
    format: String,
    algorithm: String,
    manifest: RawManifest,
    public_key_sha256: String,
    signature: String,
}

/// Signs a manifest with a PKCS#8 PEM private key.
pub fn sign_manifest(manifest: &Manifest, private_pem: &str) -> Result<SignatureFile> {
    let key = parse_private_key(private_pem)?;
    let signature = key.sign(&manifest.canonical_bytes());
    Ok(SignatureFile {
        format: SIGNATURE_FORMAT.to_string(),
        algorithm: SIGNATURE_ALGORITHM.to_string(),
        manifest: manifest.clone(),
        public_key_sha256: public_key_fingerprint(&key.verifying_key())?,
        signature: hex::encode(signature.to_bytes()),
    })
}

/// A model that verified: its manifest (recomputed from disk, equal to the signed one)
/// and the fingerprint of the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedManifest {
    /// The model's manifest.
    pub manifest: Manifest,
    /// Fingerprint of the signer's public key.
    pub public_key_sha256: String,
}

/// Checks the signature file against a public key, then the model at `model_path`
/// against the signed manifest. See the [module documentation](self) for the order of
/// the checks and the error each failure gives.
pub fn verify(
    model_path: impl AsRef<Path>,
    signature: &SignatureFile,
    public_pem: &str,
) -> Result<VerifiedManifest> {
    let model_path = model_path.as_ref();
    let trusted = verify_signature(signature, public_pem)?;
    let actual = manifest_for(model_path)?;
    let differences = trusted.diff(&actual);
    if !differences.is_empty() {
        return Err(IntegrityError::Tampered {
            path: model_path.to_path_buf(),
            differences,
        });
    }
    Ok(VerifiedManifest {
        manifest: actual,
        public_key_sha256: signature.public_key_sha256.clone(),
    })
}

/// Checks a signature file against a public key without looking at any model; returns
/// the manifest it vouches for.
pub fn verify_signature<'a>(
    signature: &'a SignatureFile,
    public_pem: &str,
) -> Result<&'a Manifest> {
    signature.check()?;
    let key = parse_public_key(public_pem)?;
    let fingerprint = public_key_fingerprint(&key)?;
    if !fingerprint.eq_ignore_ascii_case(&signature.public_key_sha256) {
        return Err(IntegrityError::WrongKey {
            expected: signature.public_key_sha256.clone(),
            actual: fingerprint,
        });
    }
    let sig = signature.signature_bytes()?;
    key.verify_strict(&signature.manifest.canonical_bytes(), &sig)
        .map_err(|_| IntegrityError::BadSignature)?;
    Ok(&signature.manifest)
}

/// Provenance of a model for an evaluation report: its root digest and whether (and by
/// which key) its signature was verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The model path as given.
    pub path: PathBuf,
    /// Root digest of the model's manifest.
    pub root_sha256: String,
    /// For a single-file model, the file's own SHA-256 (what `sha256sum` prints).
    pub file_sha256: Option<String>,
    /// Whether a signature was checked and verified.
    pub verified: bool,
    /// Fingerprint of the verifying key, when verified.
    pub public_key_sha256: Option<String>,
}

/// Computes a model's [`Provenance`]; with `signature = Some((file, public_pem))` the
/// model must verify (any failure is returned as the error, so an evaluation can refuse
/// to run), without it the model is only digested and `verified` is `false`.
pub fn provenance(
    model_path: impl AsRef<Path>,
    signature: Option<(&SignatureFile, &str)>,
) -> Result<Provenance> {
    let model_path = model_path.as_ref();
    let (manifest, key) = match signature {
        Some((sig, pem)) => {
            let v = verify(model_path, sig, pem)?;
            (v.manifest, Some(v.public_key_sha256))
        }
        None => (manifest_for(model_path)?, None),
    };
    let file_sha256 = if std::fs::metadata(model_path).is_ok_and(|m| m.is_file()) {
        manifest.entries().first().map(|e| e.sha256.clone())
    } else {
        None
    };
    Ok(Provenance {
        path: model_path.to_path_buf(),
        root_sha256: manifest.root_sha256().to_string(),
        file_sha256,
        verified: key.is_some(),
        public_key_sha256: key,
    })
}
