//! MLSecOps checks for `robust`: is this the model that was signed, has the data drifted,
//! and does the training set hold poisoned or anomalous samples?
//!
//! The crate is a library of plain functions over files and `f64`/`f32` matrices; the
//! `robust` binary wires them to the `digest`, `keygen`, `sign`, `verify`, `drift` and
//! `scan` commands, and runs the model to obtain features when one is needed. Nothing
//! here depends on a tensor library.
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
//! # Drift
//!
//! [`detect_drift`] runs a two-sample Kolmogorov–Smirnov test per feature of two
//! [`FeatureTable`]s (read from `.npy` or CSV, or built from a model's features) and
//! corrects for the number of tests (Bonferroni or Benjamini–Hochberg). The KS p-values
//! follow SciPy's `ks_2samp` algorithm by algorithm ([`ks`]): the exact distribution up
//! to 10 000 samples, the asymptotic one beyond, and they are tested against SciPy's own
//! output.
//!
//! # Poisoning and anomalies
//!
//! [`scan`] holds the training-set screens: [`describe`] (pandas-style summary
//! statistics), [`find_duplicates`] (exact and perceptual-hash near-duplicates),
//! [`label_disagreements`] (labels contradicting a confident model) and
//! [`spectral_signatures`] (Tran et al. 2018: outliers along the top singular direction
//! of each class's penultimate-layer features, the signature of a backdoor; a fixed
//! fraction per class, or Tukey's fences with [`spectral_signatures_with`]).
//!
//! # Errors
//!
//! Every function returns [`Result`] with an [`IntegrityError`] that names the file,
//! sample or feature concerned; no file or data content makes the library panic (only
//! index accessors such as [`FeatureTable::row`] panic on an out-of-range index, as
//! slice indexing does).
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
//!
//! Drift between two feature tables:
//!
//! ```
//! use robust_integrity::{detect_drift, DriftOptions, FeatureTable};
//!
//! # fn main() -> Result<(), robust_integrity::IntegrityError> {
//! let reference = FeatureTable::new(50, 1, (0..50).map(|i| i as f64).collect())?;
//! let current = FeatureTable::new(50, 1, (0..50).map(|i| i as f64 + 30.0).collect())?;
//! let report = detect_drift(&reference, &current, &DriftOptions::default())?;
//! assert!(report.is_drift);
//! assert_eq!(report.features[0].statistic, 0.6);
//! # Ok(())
//! # }
//! ```

pub mod atomic;
pub mod digest;
pub mod drift;
mod error;
pub mod ks;
pub mod scan;
pub mod sign;
pub mod table;

pub use atomic::{write_atomic, write_new_atomic, Permissions};
pub use digest::{manifest_for, sha256_bytes, sha256_file, Difference, Manifest, ManifestEntry};
pub use drift::{detect_drift, Correction, DriftOptions, DriftReport, FeatureDrift};
pub use error::{IntegrityError, Result};
pub use ks::{ks_2samp, ks_2samp_with, KsMethod, KsMethodUsed, KsResult};
pub use scan::{
    describe, find_duplicates, label_disagreements, spectral_signatures, spectral_signatures_with,
    ClassSignature, DuplicateOptions, DuplicateReport, FeatureSummary, ImageGeometry,
    LabelDisagreement, Layout, SpectralCut, SpectralReport,
};
pub use sign::{
    generate_keypair, provenance, sign_manifest, verify, Provenance, SignatureFile,
    VerifiedManifest,
};
pub use table::{npy_shape, FeatureTable};
