//! Raw signatures in the byte format of the `openssl` command line, both directions.
//!
//! The MLSecOps playbooks sign a model file with
//!
//! ```text
//! openssl dgst -sha256 -sign private_key.pem -out model.sig model.h5
//! openssl dgst -sha256 -verify public_key.pem -signature model.sig model.h5
//! ```
//!
//! and Ed25519 keys with `openssl pkeyutl -sign -rawin -inkey key.pem -in model.h5 -out
//! model.sig` (Ed25519 signs the message itself, not a digest). The signature file holds the
//! signature bytes and nothing else, so the scheme follows from the key type:
//!
//! | key | signature bytes | robust signs | robust verifies |
//! |---|---|---|---|
//! | RSA | PKCS#1 v1.5 (`EMSA-PKCS1-v1_5`, DigestInfo of the digest), or PSS with `-sigopt rsa_padding_mode:pss` | deterministic, the bytes openssl writes; PSS with a digest-length salt (OpenSSL 3.1+'s default; 3.0 uses the maximum) and MGF1 with the same digest | PKCS#1 v1.5, then PSS with any salt length (digest length and maximum first), as `openssl dgst -verify` does by default |
//! | EC P-256, P-384 | DER `ECDSA-Sig-Value` over the digest; a digest shorter than the curve (P-384 with `-sha256`) is used as the integer it is (a *prehash* signature) | RFC 6979 deterministic nonces, so the bytes differ from openssl's random ones; openssl verifies them | yes |
//! | Ed25519 | the 64-byte RFC 8032 signature of the whole file (no digest) | identical bytes (Ed25519 is deterministic) | yes (strict: small-order keys and non-canonical signatures refused) |
//!
//! The digest is SHA-256 unless asked otherwise ([`HashAlg`]; `-sha384`, `-sha512`).
//! For a directory model, which openssl cannot sign, the signed message is the canonical text
//! of the model's manifest ([`crate::Manifest::canonical_bytes`]: the text `robust digest DIR`
//! prints without its final `root` line), so `openssl dgst -verify` works on that text.
//!
//! **RSA signing on trusted machines only.** The `rsa` crate carries advisory
//! RUSTSEC-2023-0071 (the "Marvin" timing side channel: private-key operations take a time
//! that depends on secret data, which an attacker measuring many operations over a network
//! could exploit). robust blinds every RSA private-key operation with fresh randomness, but
//! the advisory stands: sign with RSA keys on a machine you control (a CI signing step,
//! not a service that signs attacker-chosen data), or use an EC or Ed25519 key. Verifying
//! uses only the public key and is not affected.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::digest::manifest_for;
use crate::error::IntegrityError;
use crate::keys::{PrivateKey, PublicKey};
use crate::signing_error::{SignatureError, SignatureResult};

/// The message digest (`openssl dgst -sha256`, `-sha384`, `-sha512`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlg {
    /// SHA-256 (the default).
    #[default]
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// The name as openssl spells the flag, without the dash.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    fn hasher(self) -> Box<dyn sha2::digest::DynDigest> {
        match self {
            HashAlg::Sha256 => Box::new(Sha256::new()),
            HashAlg::Sha384 => Box::new(Sha384::new()),
            HashAlg::Sha512 => Box::new(Sha512::new()),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            HashAlg::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            HashAlg::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            HashAlg::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    fn pss(self, salt_len: usize) -> Pss {
        match self {
            HashAlg::Sha256 => Pss::new_with_salt::<Sha256>(salt_len),
            HashAlg::Sha384 => Pss::new_with_salt::<Sha384>(salt_len),
            HashAlg::Sha512 => Pss::new_with_salt::<Sha512>(salt_len),
        }
    }
}

impl FromStr for HashAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_start_matches('-').to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Ok(HashAlg::Sha256),
            "sha384" | "sha-384" => Ok(HashAlg::Sha384),
            "sha512" | "sha-512" => Ok(HashAlg::Sha512),
            other => Err(format!(
                "unknown digest {other:?}: expected sha256, sha384 or sha512"
            )),
        }
    }
}

/// RSA padding for signing (`-sigopt rsa_padding_mode:pss` selects PSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaPadding {
    /// PKCS#1 v1.5 (openssl's default).
    #[default]
    Pkcs1v15,
    /// PSS with a digest-length salt and MGF1 with the signing digest.
    Pss,
}

impl FromStr for RsaPadding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pkcs1" | "pkcs1v15" | "pkcs1-v1_5" => Ok(RsaPadding::Pkcs1v15),
            "pss" => Ok(RsaPadding::Pss),
            other => Err(format!(
                "unknown RSA padding {other:?}: expected pkcs1 or pss"
            )),
        }
    }
}

/// The scheme a signature was made or verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// RSA PKCS#1 v1.5.
    RsaPkcs1v15 {
        /// The digest.
        hash: HashAlg,
    },
    /// RSA-PSS.
    RsaPss {
        /// The digest (also MGF1's).
        hash: HashAlg,
        /// The salt length in bytes.
        salt_len: usize,
    },
    /// ECDSA, DER-encoded.
    Ecdsa {
        /// `P-256` or `P-384`.
        curve: &'static str,
        /// The digest.
        hash: HashAlg,
    },
    /// Ed25519 over the message itself.
    Ed25519,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::RsaPkcs1v15 { hash } => write!(f, "RSA PKCS#1 v1.5 with {}", hash.name()),
            Scheme::RsaPss { hash, salt_len } => {
                write!(f, "RSA-PSS with {} (salt {salt_len} bytes)", hash.name())
            }
            Scheme::Ecdsa { curve, hash } => write!(f, "ECDSA {curve} with {}", hash.name()),
            Scheme::Ed25519 => write!(f, "Ed25519"),
        }
    }
}

/// What a signature covers: a model file's bytes, or a model directory's manifest text.
#[derive(Debug, Clone)]
pub enum Message {
    /// A file, read (or streamed through the digest) when needed.
    File(std::path::PathBuf),
    /// Bytes in memory (the canonical manifest text of a directory).
    Bytes(Vec<u8>),
}

impl Message {
    /// The message of a model: the file itself, or for a directory the canonical text of its
    /// manifest.
    pub fn for_model(model: &Path) -> SignatureResult<Self> {
        let meta = std::fs::metadata(model).map_err(|e| IntegrityError::io("read", model, e))?;
        if meta.is_file() {
            Ok(Message::File(model.to_path_buf()))
        } else {
            Ok(Message::Bytes(manifest_for(model)?.canonical_bytes()))
        }
    }

    fn digest(&self, hash: HashAlg) -> SignatureResult<Vec<u8>> {
        let mut h = hash.hasher();
        match self {
            Message::Bytes(b) => h.update(b),
            Message::File(p) => {
                let mut f = std::fs::File::open(p).map_err(|e| IntegrityError::io("open", p, e))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| IntegrityError::io("read", p, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
        Ok(h.finalize().to_vec())
    }

    fn bytes(&self) -> SignatureResult<std::borrow::Cow<'_, [u8]>> {
        match self {
            Message::Bytes(b) => Ok(std::borrow::Cow::Borrowed(b)),
            Message::File(p) => Ok(std::borrow::Cow::Owned(
                std::fs::read(p).map_err(|e| IntegrityError::io("read", p, e))?,
            )),
        }
    }
}

/// Options for [`sign`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SignOptions {
    /// The digest (ignored for Ed25519).
    pub hash: HashAlg,
    /// RSA padding (ignored for other keys; PSS is forced for an RSA-PSS key).
    pub padding: RsaPadding,
}

/// Signs `message` with `key`, giving the bytes `openssl dgst -<hash> -sign` (or `openssl
/// pkeyutl -sign -rawin` for Ed25519) would write, and the scheme used.
pub fn sign(
    key: &PrivateKey,
    message: &Message,
    opts: SignOptions,
) -> SignatureResult<(Vec<u8>, Scheme)> {
    let hash = opts.hash;
    match key {
        PrivateKey::Rsa { key, pss_only } => {
            let digest = message.digest(hash)?;
            let mut rng = rand_core_06::OsRng;
            if opts.padding == RsaPadding::Pss || *pss_only {
                let salt_len = hash.output_len();
                let sig = key
                    .sign_with_rng(&mut rng, hash.pss(salt_len), &digest)
                    .map_err(|e| sign_err(&e))?;
                Ok((sig, Scheme::RsaPss { hash, salt_len }))
            } else {
                let sig = key
                    .sign_with_rng(&mut rng, hash.pkcs1v15(), &digest)
                    .map_err(|e| sign_err(&e))?;
                Ok((sig, Scheme::RsaPkcs1v15 { hash }))
            }
        }
        PrivateKey::P256(k) => {
            use ecdsa::signature::hazmat::PrehashSigner;
            refuse_pss(opts)?;
            let digest = message.digest(hash)?;
            let sig: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| sign_err(&e))?;
            Ok((
                sig.to_der().as_bytes().to_vec(),
                Scheme::Ecdsa {
                    curve: "P-256",
                    hash,
                },
            ))
        }
        PrivateKey::P384(k) => {
            use ecdsa::signature::hazmat::PrehashSigner;
            refuse_pss(opts)?;
            let digest = message.digest(hash)?;
            let sig: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| sign_err(&e))?;
            Ok((
                sig.to_der().as_bytes().to_vec(),
                Scheme::Ecdsa {
                    curve: "P-384",
                    hash,
                },
            ))
        }
        PrivateKey::Ed25519(k) => {
            use ed25519_dalek::Signer;
            refuse_pss(opts)?;
            let sig = k.sign(&message.bytes()?);
            Ok((sig.to_bytes().to_vec(), Scheme::Ed25519))
        }
    }
}

fn refuse_pss(opts: SignOptions) -> SignatureResult<()> {
    if opts.padding == RsaPadding::Pss {
        return Err(SignatureError::Usage {
            reason: "PSS padding applies to RSA keys only".to_string(),
        });
    }
    Ok(())
}

fn sign_err(e: &dyn fmt::Display) -> SignatureError {
    SignatureError::Key {
        kind: "private",
        reason: format!("signing failed: {e}"),
    }
}

/// Verifies a raw openssl signature over `message` with `key`; returns the scheme that
/// verified. `path` names the signature file in errors.
///
/// RSA: PKCS#1 v1.5 is tried, then PSS with the digest-length salt, the maximum salt, and
/// every other salt length (openssl's default `-sigopt rsa_pss_saltlen:auto`). An RSA-PSS
/// key accepts PSS only.
pub fn verify(
    key: &PublicKey,
    message: &Message,
    signature: &[u8],
    hash: HashAlg,
    path: &Path,
) -> SignatureResult<Scheme> {
    let malformed = |reason: String| SignatureError::MalformedSignature {
        path: path.to_path_buf(),
        reason,
    };
    match key {
        PublicKey::Rsa { key, pss_only } => {
            if signature.len() != key.size() {
                return Err(malformed(format!(
                    "{} bytes, but a signature by this {}-bit RSA key has {} \
                     (was it base64-encoded? decode it with `openssl base64 -d`)",
                    signature.len(),
                    key.n().bits(),
                    key.size()
                )));
            }
            let digest = message.digest(hash)?;
            if !pss_only && key.verify(hash.pkcs1v15(), &digest, signature).is_ok() {
                return Ok(Scheme::RsaPkcs1v15 { hash });
            }
            // emLen - hLen - 2 is the longest salt that fits.
            let em_len = (key.n().bits() - 1).div_ceil(8);
            let max = em_len.saturating_sub(hash.output_len() + 2);
            let mut order = vec![hash.output_len(), max];
            order.extend((0..=max).filter(|s| *s != hash.output_len() && *s != max));
            for salt_len in order.into_iter().filter(|s| *s <= max) {
                if key.verify(hash.pss(salt_len), &digest, signature).is_ok() {
                    return Ok(Scheme::RsaPss { hash, salt_len });
                }
            }
            Err(SignatureError::BadSignature {
                scheme: if *pss_only {
                    format!("RSA-PSS with {}", hash.name())
                } else {
                    format!("RSA (PKCS#1 v1.5 or PSS) with {}", hash.name())
                },
            })
        }
        PublicKey::P256(k) => {
            use ecdsa::signature::hazmat::PrehashVerifier;
            let sig = p256::ecdsa::Signature::from_der(signature)
                .map_err(|e| malformed(format!("not a DER ECDSA P-256 signature ({e})")))?;
            let digest = message.digest(hash)?;
            k.verify_prehash(&digest, &sig)
                .map_err(|_| SignatureError::BadSignature {
                    scheme: format!("ECDSA P-256 with {}", hash.name()),
                })?;
            Ok(Scheme::Ecdsa {
                curve: "P-256",
                hash,
            })
        }
        PublicKey::P384(k) => {
            use ecdsa::signature::hazmat::PrehashVerifier;
            let sig = p384::ecdsa::Signature::from_der(signature)
                .map_err(|e| malformed(format!("not a DER ECDSA P-384 signature ({e})")))?;
            let digest = message.digest(hash)?;
            k.verify_prehash(&digest, &sig)
                .map_err(|_| SignatureError::BadSignature {
                    scheme: format!("ECDSA P-384 with {}", hash.name()),
                })?;
            Ok(Scheme::Ecdsa {
                curve: "P-384",
                hash,
            })
        }
        PublicKey::Ed25519(k) => {
            let bytes: [u8; 64] = signature.try_into().map_err(|_| {
                malformed(format!(
                    "{} bytes, an Ed25519 signature has 64",
                    signature.len()
                ))
            })?;
            let sig = ed25519_dalek::Signature::from_bytes(&bytes);
            k.verify_strict(&message.bytes()?, &sig)
                .map_err(|_| SignatureError::BadSignature {
                    scheme: "Ed25519".to_string(),
                })?;
            Ok(Scheme::Ed25519)
        }
    }
}

/// A model whose openssl signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOpenssl {
    /// The scheme that verified.
    pub scheme: Scheme,
    /// The key's type, e.g. `RSA-3072`.
    pub key_type: String,
    /// SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub public_key_sha256: String,
    /// The model's manifest (recomputed from disk).
    pub manifest: crate::Manifest,
}

/// Verifies a model file or directory against a raw openssl signature file and a PEM public
/// key. See the [module documentation](self).
pub fn verify_model(
    model: &Path,
    signature_path: &Path,
    public_pem: &str,
    hash: HashAlg,
) -> SignatureResult<VerifiedOpenssl> {
    let key = PublicKey::from_pem(public_pem)?;
    let signature =
        std::fs::read(signature_path).map_err(|e| IntegrityError::io("read", signature_path, e))?;
    let message = Message::for_model(model)?;
    let scheme = verify(&key, &message, &signature, hash, signature_path)?;
    // The manifest after the signature: a directory's was just computed for the message;
    // computing it again is cheap next to the risk of reporting another state.
    let manifest = manifest_for(model)?;
    Ok(VerifiedOpenssl {
        scheme,
        key_type: key.type_name(),
        public_key_sha256: key.fingerprint()?,
        manifest,
    })
}

/// Signs a model file or directory with a PEM private key; returns the signature bytes and
/// the scheme. See the [module documentation](self).
pub fn sign_model(
    model: &Path,
    private_pem: &str,
    opts: SignOptions,
) -> SignatureResult<(Vec<u8>, Scheme)> {
    let key = PrivateKey::from_pem(private_pem)?;
    let message = Message::for_model(model)?;
    sign(&key, &message, opts)
}
