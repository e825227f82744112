//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Each variant carries the context a user needs to act on it: the path of the file
/// concerned, the feature or sample index, or the parameter. Messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A `.npy` feature table could not be read.
    #[error("cannot read feature table {}: {reason}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A CSV feature table could not be read.
    #[error("cannot read feature table {}{}: {reason}", path.display(),
            line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The 1-based line, where known.
        line: Option<u64>,
        /// What is wrong with it.
        reason: String,
    },

    /// A feature table file has an extension other than `.npy` or `.csv`.
    #[error("cannot read feature table {}: expected a .npy or .csv file", path.display())]
    UnknownTableFormat {
        /// The file.
        path: PathBuf,
    },

    /// A table, matrix or list has the wrong shape.
    #[error("shape mismatch: {reason}")]
    Shape {
        /// What does not fit.
        reason: String,
    },

    /// A set of samples that must not be empty is empty.
    #[error("{what} contains no samples")]
    Empty {
        /// Which input.
        what: String,
    },

    /// A value that must be a number is NaN.
    #[error("{what} holds NaN at sample {sample}, feature {feature}")]
    NotANumber {
        /// Which input.
        what: String,
        /// Row index (0-based).
        sample: usize,
        /// Column index (0-based).
        feature: usize,
    },

    /// Talking to an MLflow tracking server failed (unreachable, refused, or an answer
    /// that is not what the REST API documents).
    #[error("MLflow tracking server {uri}: {reason}")]
    Mlflow {
        /// The tracking URI.
        uri: String,
        /// What went wrong, in one line.
        reason: String,
    },

    /// A parameter is outside its valid range.
    #[error("invalid {name} {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name (as the CLI spells it where there is a flag).
        name: &'static str,
        /// The value given.
        value: String,
        /// The valid range.
        reason: String,
    },
}

/// `Result` with [`MonitorError`].
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;

impl MonitorError {
    /// Builds a [`MonitorError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        MonitorError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds a [`MonitorError::InvalidParameter`].
    pub(crate) fn param(
        name: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        MonitorError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
