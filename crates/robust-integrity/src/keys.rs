//! PEM keys of every type the openssl-compatible formats use: RSA, EC P-256 and P-384,
//! Ed25519.
//!
//! Accepted encodings, as OpenSSL writes them:
//!
//! | label | structure | written by |
//! |---|---|---|
//! | `PUBLIC KEY` | SubjectPublicKeyInfo (RSA, RSA-PSS, EC, Ed25519) | `openssl pkey -pubout`, `openssl rsa -pubout`, `openssl ec -pubout` |
//! | `RSA PUBLIC KEY` | PKCS#1 RSAPublicKey | `openssl rsa -RSAPublicKey_out` |
//! | `PRIVATE KEY` | PKCS#8 (RSA, RSA-PSS, EC, Ed25519) | `openssl genpkey` |
//! | `RSA PRIVATE KEY` | PKCS#1 RSAPrivateKey | `openssl genrsa -traditional`, `openssl rsa -traditional` |
//! | `EC PRIVATE KEY` | SEC1 ECPrivateKey (named curve) | `openssl ecparam -genkey` (an `EC PARAMETERS` block before it is skipped) |
//!
//! Password-protected keys (`ENCRYPTED PRIVATE KEY`, or `Proc-Type: 4,ENCRYPTED` headers)
//! are refused with a hint to decrypt them with `openssl pkey` first. Keys of other types
//! (DSA, Ed448, X25519, P-521, secp256k1) are refused naming the type found.
//!
//! An RSA key stored under the RSA-PSS algorithm identifier (`openssl genpkey -algorithm
//! RSA-PSS`) may only make and verify PSS signatures, as in OpenSSL.

use ecdsa::elliptic_curve::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use pkcs8::der::asn1::ObjectIdentifier;
use pkcs8::der::Decode;
use pkcs8::spki::SubjectPublicKeyInfoRef;
use pkcs8::PrivateKeyInfo;
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::signing_error::{SignatureError, SignatureResult};

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Key types supported by the openssl format, for error messages.
pub const OPENSSL_KEY_TYPES: &str = "RSA (2048 bits or more), EC P-256, EC P-384 and Ed25519 keys";

/// A public key of a supported type.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// RSA; `pss_only` for a key stored under the RSA-PSS algorithm identifier.
    Rsa {
        /// The key.
        key: RsaPublicKey,
        /// Whether the key may only verify PSS signatures.
        pss_only: bool,
    },
    /// ECDSA on NIST P-256 (prime256v1).
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on NIST P-384 (secp384r1).
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A private key of a supported type.
#[derive(Debug, Clone)]
pub enum PrivateKey {
    /// RSA; `pss_only` for a key stored under the RSA-PSS algorithm identifier.
    Rsa {
        /// The key.
        key: Box<RsaPrivateKey>,
        /// Whether the key may only make PSS signatures.
        pss_only: bool,
    },
    /// ECDSA on NIST P-256.
    P256(p256::ecdsa::SigningKey),
    /// ECDSA on NIST P-384.
    P384(p384::ecdsa::SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl PublicKey {
    /// Parses a PEM public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> SignatureResult<Self> {
        let (label, der) = key_block(pem, "public")?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => Ok(PublicKey::Rsa {
                key: RsaPublicKey::from_pkcs1_der(&der).map_err(|e| key_err("public", e))?,
                pss_only: false,
            }),
            l if l.contains("PRIVATE KEY") => Err(SignatureError::Key {
                kind: "public",
                reason: format!(
                    "this is a private key ({l}); give the public key \
                     (`openssl pkey -in KEY -pubout -out key.pub`)"
                ),
            }),
            l => Err(unexpected_label("public", l)),
        }
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> SignatureResult<Self> {
        let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| key_err("public", e))?;
        let oid = info.algorithm.oid.to_string();
        let params = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .map(|o| o.to_string());
        match (oid.as_str(), params.as_deref()) {
            (OID_RSA, _) => Ok(PublicKey::Rsa {
                key: RsaPublicKey::from_public_key_der(der).map_err(|e| key_err("public", e))?,
                pss_only: false,
            }),
            (OID_RSA_PSS, _) => {
                let bits = info.subject_public_key.raw_bytes();
                Ok(PublicKey::Rsa {
                    key: RsaPublicKey::from_pkcs1_der(bits).map_err(|e| key_err("public", e))?,
                    pss_only: true,
                })
            }
            (OID_EC, Some(OID_P256)) => Ok(PublicKey::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| key_err("public", e))?,
            )),
            (OID_EC, Some(OID_P384)) => Ok(PublicKey::P384(
                p384::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| key_err("public", e))?,
            )),
            (OID_ED25519, _) => Ok(PublicKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| key_err("public", e))?,
            )),
            (oid, params) => Err(unsupported("public", oid, params)),
        }
    }

    /// The key's type for messages: `RSA-3072`, `EC P-256`, `Ed25519`.
    pub fn type_name(&self) -> String {
        match self {
            PublicKey::Rsa { key, pss_only } => {
                use rsa::traits::PublicKeyParts;
                let pss = if *pss_only { "-PSS" } else { "" };
                format!("RSA{pss}-{}", key.n().bits())
            }
            PublicKey::P256(_) => "EC P-256".to_string(),
            PublicKey::P384(_) => "EC P-384".to_string(),
            PublicKey::Ed25519(_) => "Ed25519".to_string(),
        }
    }

    /// The DER SubjectPublicKeyInfo (for an RSA-PSS key, re-encoded under the plain RSA
    /// algorithm identifier).
    pub fn to_spki_der(&self) -> SignatureResult<Vec<u8>> {
        let der = match self {
            PublicKey::Rsa { key, .. } => key.to_public_key_der(),
            PublicKey::P256(k) => k.to_public_key_der(),
            PublicKey::P384(k) => k.to_public_key_der(),
            PublicKey::Ed25519(k) => {
                use ed25519_dalek::pkcs8::EncodePublicKey as _;
                return k
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .map_err(|e| key_err("public", e));
            }
        };
        der.map(|d| d.as_bytes().to_vec())
            .map_err(|e| key_err("public", e))
    }

    /// The SPKI PEM (`-----BEGIN PUBLIC KEY-----`, 64-character lines, LF), byte for byte
    /// what OpenSSL and Python's `cryptography` write.
    pub fn to_spki_pem(&self) -> SignatureResult<String> {
        let der = self.to_spki_der()?;
        pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &der)
            .map_err(|e| key_err("public", e))
    }

    /// SHA-256 (hex) of the DER SubjectPublicKeyInfo, as
    /// `openssl pkey -pubin -in pub.pem -outform DER | sha256sum` prints it.
    pub fn fingerprint(&self) -> SignatureResult<String> {
        Ok(crate::digest::sha256_bytes(&self.to_spki_der()?))
    }
}

impl PrivateKey {
    /// Parses a PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`, SEC1
    /// `EC PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> SignatureResult<Self> {
        let (label, der) = key_block(pem, "private")?;
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "RSA PRIVATE KEY" => Ok(PrivateKey::Rsa {
                key: Box::new(
                    RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| key_err("private", e))?,
                ),
                pss_only: false,
            }),
            "EC PRIVATE KEY" => Self::from_sec1_der(&der),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(SignatureError::Key {
                kind: "private",
                reason: "this is a public key; signing needs the private key".to_string(),
            }),
            l => Err(unexpected_label("private", l)),
        }
    }

    fn from_pkcs8_der(der: &[u8]) -> SignatureResult<Self> {
        let info = PrivateKeyInfo::from_der(der).map_err(|e| key_err("private", e))?;
        let oid = info.algorithm.oid.to_string();
        let params = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .map(|o| o.to_string());
        match (oid.as_str(), params.as_deref()) {
            (OID_RSA, _) => Ok(PrivateKey::Rsa {
                key: Box::new(
                    RsaPrivateKey::from_pkcs8_der(der).map_err(|e| key_err("private", e))?,
                ),
                pss_only: false,
            }),
            (OID_RSA_PSS, _) => Ok(PrivateKey::Rsa {
                key: Box::new(
                    RsaPrivateKey::from_pkcs1_der(info.private_key)
                        .map_err(|e| key_err("private", e))?,
                ),
                pss_only: true,
            }),
            (OID_EC, Some(OID_P256)) => Ok(PrivateKey::P256(
                p256::SecretKey::from_pkcs8_der(der)
                    .map_err(|e| key_err("private", e))?
                    .into(),
            )),
            (OID_EC, Some(OID_P384)) => Ok(PrivateKey::P384(
                p384::SecretKey::from_pkcs8_der(der)
                    .map_err(|e| key_err("private", e))?
                    .into(),
            )),
            (OID_ED25519, _) => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                Ok(PrivateKey::Ed25519(
                    ed25519_dalek::SigningKey::from_pkcs8_der(der)
                        .map_err(|e| key_err("private", e))?,
                ))
            }
            (oid, params) => Err(unsupported("private", oid, params)),
        }
    }

    fn from_sec1_der(der: &[u8]) -> SignatureResult<Self> {
        let info = sec1::EcPrivateKey::from_der(der).map_err(|e| key_err("private", e))?;
        let curve = info
            .parameters
            .and_then(|p| p.named_curve())
            .map(|o| o.to_string());
        match curve.as_deref() {
            Some(OID_P256) => Ok(PrivateKey::P256(
                p256::SecretKey::from_sec1_der(der)
                    .map_err(|e| key_err("private", e))?
                    .into(),
            )),
            Some(OID_P384) => Ok(PrivateKey::P384(
                p384::SecretKey::from_sec1_der(der)
                    .map_err(|e| key_err("private", e))?
                    .into(),
            )),
            Some(other) => Err(unsupported("private", OID_EC, Some(other))),
            None => Err(SignatureError::Key {
                kind: "private",
                reason: "the SEC1 EC key names no curve (write it with \
                         `openssl pkey -in KEY -out key.pem`, which names the curve)"
                    .to_string(),
            }),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa { key, pss_only } => PublicKey::Rsa {
                key: key.to_public_key(),
                pss_only: *pss_only,
            },
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }
}

/// The first PEM block of `pem` that holds a key: `(label, DER bytes)`. Blocks such as
/// `EC PARAMETERS` (written before the key by `openssl ecparam -genkey`) are skipped.
fn key_block(pem: &str, kind: &'static str) -> SignatureResult<(String, Vec<u8>)> {
    let mut rest = pem;
    let mut seen = Vec::new();
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            return Err(SignatureError::Key {
                kind,
                reason: format!("the PEM block {label:?} has no END line"),
            });
        };
        let block_end = start + 11 + end + end_marker.len();
        let block = &rest[start..block_end];
        rest = &rest[block_end..];
        if label == "EC PARAMETERS" {
            seen.push(label);
            continue;
        }
        if label == "ENCRYPTED PRIVATE KEY" || block.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(SignatureError::Key {
                kind,
                reason: "the key is password-protected; write a decrypted copy with \
                         `openssl pkey -in KEY -out plain.pem` and keep it safe"
                    .to_string(),
            });
        }
        let (l, der) =
            pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|e| SignatureError::Key {
                kind,
                reason: format!("bad PEM block {label:?} ({e})"),
            })?;
        return Ok((l.to_string(), der));
    }
    Err(SignatureError::Key {
        kind,
        reason: if seen.is_empty() {
            "no PEM block (-----BEGIN ...-----) found".to_string()
        } else {
            format!("no key among the PEM blocks ({})", seen.join(", "))
        },
    })
}

fn key_err(kind: &'static str, e: impl std::fmt::Display) -> SignatureError {
    SignatureError::Key {
        kind,
        reason: e.to_string(),
    }
}

fn unexpected_label(kind: &'static str, label: &str) -> SignatureError {
    let found = match label {
        "CERTIFICATE" => "an X.509 certificate, not a key".to_string(),
        "OPENSSH PRIVATE KEY" => {
            "an OpenSSH-format key (convert it with `ssh-keygen -p -m PKCS8 -f KEY`)".to_string()
        }
        "DSA PRIVATE KEY" => "a DSA key".to_string(),
        other => format!("a PEM block labelled {other:?}"),
    };
    SignatureError::Key {
        kind,
        reason: format!("this is {found}"),
    }
}

fn unsupported(kind: &'static str, oid: &str, params: Option<&str>) -> SignatureError {
    let found = match (oid, params) {
        (OID_EC, Some("1.3.132.0.35")) => "an EC P-521 key".to_string(),
        (OID_EC, Some("1.3.132.0.10")) => "an EC secp256k1 key".to_string(),
        (OID_EC, Some(c)) => format!("an EC key on curve {c}"),
        (OID_EC, None) => "an EC key without a named curve".to_string(),
        ("1.2.840.10040.4.1", _) => "a DSA key".to_string(),
        ("1.3.101.113", _) => "an Ed448 key".to_string(),
        ("1.3.101.110", _) => "an X25519 key".to_string(),
        ("1.3.101.111", _) => "an X448 key".to_string(),
        (other, _) => format!("a key with algorithm OID {other}"),
    };
    SignatureError::UnsupportedKey {
        kind,
        found: format!("this is {found}"),
        format: "robust",
        supported: OPENSSL_KEY_TYPES,
    }
}
