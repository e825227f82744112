//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or rendering results.
///
/// Variants that concern a file carry its path, and their messages name it, so that a
/// command-line tool can print the error as it is.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read (missing, unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A results file is not JSON, or its JSON does not have the shape of [`crate::RunResults`].
    #[error("{} is not a valid robust results file: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said (with line and column).
        source: serde_json::Error,
    },
    /// A results file has no `schema_version` field (it is some other JSON document).
    #[error(
        "{} has no numeric schema_version field: it does not look like a robust results file",
        path.display()
    )]
    MissingSchemaVersion {
        /// The file.
        path: PathBuf,
    },
    /// A results file was written by a newer, incompatible version of robust.
    #[error(
        "{} has schema_version {found}, but this build of robust reads schema_version {supported} \
         at most: upgrade robust to read it",
        path.display()
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The newest version this build reads ([`crate::SCHEMA_VERSION`]).
        supported: u32,
    },
    /// A results file has a `schema_version` that no version of robust ever wrote.
    #[error("{} has schema_version {found}, which no version of robust writes", path.display())]
    InvalidSchemaVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
    },
    /// Results are inconsistent (non-finite numbers, duplicate attack labels, ...).
    #[error("{}: invalid results: {}", path.display(), problems.join("; "))]
    InvalidResults {
        /// The file being read or written.
        path: PathBuf,
        /// One entry per problem found, see [`crate::RunResults::problems`].
        problems: Vec<String>,
    },
    /// A line of a history file is not a valid history entry.
    #[error("{}, line {line}: malformed history entry: {source}", path.display())]
    History {
        /// The history file.
        path: PathBuf,
        /// The line number, counted from 1.
        line: usize,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// Pixel data given to [`crate::png_base64`] does not fit the stated size.
    #[error("cannot encode a {width}x{height} image with {channels} channel(s): {reason}")]
    Image {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Number of channels.
        channels: u32,
        /// What is wrong.
        reason: String,
    },
    /// The HTML template failed to render (a bug in robust, not in the input).
    #[error("HTML template error: {0}")]
    Template(#[from] minijinja::Error),
    /// A chart could not be drawn (a bug in robust, not in the input).
    #[error("cannot draw chart '{title}': {reason}")]
    Chart {
        /// The chart's title.
        title: String,
        /// What plotters said.
        reason: String,
    },
    /// Serialisation to JSON failed (a bug in robust, not in the input).
    #[error("cannot serialize to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
}

/// A `Result` whose error is [`ReportError`].
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
