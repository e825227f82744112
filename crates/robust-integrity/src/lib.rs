//! The model supply chain for `robust`: is this the model that was signed, and would
//! loading its files run code?
//!
//! The crate is a library of plain functions over files; the `robust` binary wires them
//! to the `digest`, `keygen`, `sign`, `verify` and `audit` commands. Drift tests and
//! training-data screens live in the `robust-monitor` crate. Nothing here depends on a
//! tensor library.
//!
//! Three signature formats are read and written, told apart by content
//! ([`detect_kind`], [`verify_any`]):
//! - robust's own JSON [`SignatureFile`] (Ed25519 over the manifest, below);
//! - raw signatures as `openssl dgst -sha256 -sign` and `openssl pkeyutl -sign -rawin` make
//!   them ([`openssl`]: RSA PKCS#1 v1.5 and PSS, ECDSA P-256/P-384, Ed25519; keys in
//!   SPKI, PKCS#8, PKCS#1 and SEC1 PEM, [`keys`]);
//! - OpenSSF model-signing bundles, key mode ([`openssf`]: a sigstore bundle v0.3 whose
//!   DSSE envelope signs an in-toto statement listing every file's SHA-256).
//!
//! [`audit_path`] reports what loading a model file or folder would execute or expose
//! (pickle imports found by walking the opcodes without running them, NumPy object
//! arrays, Keras `Lambda` layers and custom objects, ONNX custom domains and external data
//! leaving the folder, malformed safetensors headers), as [`Finding`]s by [`Severity`].
//!
//! # Integrity: digests and signatures
//!
//! A model is a file or a directory. [`manifest_for`] lists its files with their SHA-256
//! digests and sizes ([`Manifest`]), sorted by path, and derives one *root digest* from a
//! canonical text form of that list (documented in [`digest`]; it can be recomputed with
//! `sha256sum`). A signature ([`sign_manifest`]) is an Ed25519 signature over the same
//! canonical text, stored with the manifest in a JSON [`SignatureFile`]. Keys are PEM
//! files OpenSSL reads ([`generate_keypair`]), and OpenSSL can make and check the same
//! signatures (`openssl pkeyutl -sign -rawin`), which the tests use as an independent
//! oracle. [`verify`] recomputes the manifest and reports — in an
//! [`IntegrityError::Tampered`] naming each file — every changed, missing, added or
//! renamed file ([`Manifest::diff`]). Because the whole file list is signed, adding a
//! file is as detectable as changing one. Symbolic links inside a model are refused.
//!
//! # Errors
//!
//! Every function returns [`Result`] with an [`IntegrityError`] that names the file,
//! key or signature concerned; no file content makes the library panic.
//! [`IntegrityError::is_verification_failure`] tells a failed check (tampered model,
//! wrong key) from unusable input.
//!
//! # Example
//!
//! ```
//! use robust_integrity::{generate_keypair, manifest_for, sign_manifest, verify, IntegrityError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("robust-integrity-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("model.onnx"), b"weights")?;
//!
//! let (private_pem, public_pem) = generate_keypair()?;
//! let manifest = manifest_for(&dir)?;
//! let signature = sign_manifest(&manifest, &private_pem)?;
//! assert!(verify(&dir, &signature, &public_pem).is_ok());
//!
//! // One changed byte is caught, and the error names the file.
//! std::fs::write(dir.join("model.onnx"), b"weightz")?;
//! let err = verify(&dir, &signature, &public_pem).unwrap_err();
//! assert!(matches!(err, IntegrityError::Tampered { .. }));
//! assert!(err.to_string().contains("changed: model.onnx"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

pub mod atomic;
pub mod audit;
pub mod digest;
mod error;
pub mod formats;
pub mod keys;
pub mod openssf;
pub mod openssl;
pub mod sign;
pub mod signing_error;

pub use atomic::{write_atomic, write_new_atomic, Permissions};
pub use audit::{audit_path, AuditReport, Finding, Severity};
pub use digest::{manifest_for, sha256_bytes, sha256_file, Difference, Manifest, ManifestEntry};
pub use error::{IntegrityError, Result};
pub use formats::{detect_kind, verify_any, SignatureKind, Verified};
pub use keys::{PrivateKey, PublicKey};
pub use sign::{
    generate_keypair, provenance, sign_manifest, verify, Provenance, SignatureFile,
    VerifiedManifest,
};
pub use signing_error::{SignatureError, SignatureResult};
