//! Monitoring for `robust`: has the data drifted, and does the training set hold
//! poisoned or anomalous samples?
//!
//! The crate is a library of plain functions over files and `f64`/`f32` matrices; the
//! `robust` binary wires them to the `drift` and `scan` commands, and runs the model to
//! obtain features when one is needed. Nothing here depends on a tensor library.
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
//! [`alibi_ks_drift`] gives alibi-detect's `KSDrift` verdicts instead ([`alibi`]:
//! asymptotic p-values, `float32` results, strict `<`, alibi's FDR rule and output
//! layout), and [`mmd_drift`] tests whole samples at once ([`mmd`]: Gaussian-kernel
//! MMD² with the median-heuristic bandwidth and a seeded permutation test, as
//! alibi-detect's `MMDDrift`). [`outputs`] turns a model's logits into the features of
//! black-box shift detection ([`softmax`]) and of classifier-uncertainty drift
//! ([`entropy`]). All are tested against alibi-detect itself.
//!
//! # Tracking
//!
//! [`mlflow`] sends a command's parameters, metrics, tags and output files to an MLflow
//! tracking server over its REST API ([`log_run`]), so robust's evaluations, drift tests
//! and scans sit next to the training runs in `mlflow ui`.
//!
//! [`trend`](mod@trend) follows a metric over runs (robust accuracy from the history file) and flags
//! a drop from its best recent value: the slow decline no run-to-run comparison catches.
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
//! Every function returns [`Result`] with a [`MonitorError`] that names the file,
//! sample, feature or parameter concerned; no file or data content makes the library
//! panic (only index accessors such as [`FeatureTable::row`] panic on an out-of-range
//! index, as slice indexing does).
//!
//! # Example
//!
//! Drift between two feature tables:
//!
//! ```
//! use robust_monitor::{detect_drift, DriftOptions, FeatureTable};
//!
//! # fn main() -> Result<(), robust_monitor::MonitorError> {
//! let reference = FeatureTable::new(50, 1, (0..50).map(|i| i as f64).collect())?;
//! let current = FeatureTable::new(50, 1, (0..50).map(|i| i as f64 + 30.0).collect())?;
//! let report = detect_drift(&reference, &current, &DriftOptions::default())?;
//! assert!(report.is_drift);
//! assert_eq!(report.features[0].statistic, 0.6);
//! # Ok(())
//! # }
//! ```

pub mod alibi;
pub mod drift;
mod error;
pub mod ks;
pub mod mlflow;
pub mod mmd;
pub mod outputs;
pub mod scan;
pub mod table;
pub mod trend;

pub use alibi::{
    alibi_fdr, alibi_ks_drift, AlibiKsData, AlibiKsMeta, AlibiKsOptions, AlibiKsReport,
    AlibiThreshold,
};
pub use drift::{detect_drift, Correction, DriftOptions, DriftReport, FeatureDrift};
pub use error::{MonitorError, Result};
pub use ks::{ks_2samp, ks_2samp_with, KsMethod, KsMethodUsed, KsResult};
pub use mlflow::{log_run, LoggedRun, MlflowClient, MlflowConfig, MlflowTarget, RunRecord};
pub use mmd::{median_heuristic_sigma, mmd_drift, MmdData, MmdMeta, MmdOptions, MmdReport};
pub use outputs::{entropy, softmax};
pub use scan::{
    describe, find_duplicates, label_disagreements, spectral_signatures, spectral_signatures_with,
    ClassSignature, DuplicateOptions, DuplicateReport, FeatureSummary, ImageGeometry,
    LabelDisagreement, Layout, SpectralCut, SpectralReport,
};
pub use table::{npy_shape, FeatureTable};
pub use trend::{sparkline, trend, Series, Trend};
