//! The crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while opening or reading a data set.
///
/// Every variant that concerns a file names it, so a message alone tells the user which file
/// to fix. Messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder the data set needs does not exist.
    #[error("{what} not found: {}", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
        /// What it was supposed to be ("data set", "labels file beside images.npy", ...).
        what: String,
    },

    /// Reading a file or listing a folder failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "list", ...).
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An image file could not be decoded (corrupt, truncated, or not an image).
    #[error("cannot decode image {}: {}", path.display(), printable(reason))]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },

    /// A file is not in the expected format, or holds values the options do not allow
    /// (a wrong magic number, an unsupported dtype, a missing CSV column, a pixel outside the
    /// model's bounds).
    #[error("{}: {}", path.display(), printable(reason))]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Two things that must agree do not: the number of images and of labels, or an image's
    /// size and the model's input size.
    #[error("{}: {}", path.display(), printable(reason))]
    Mismatch {
        /// The file concerned.
        path: PathBuf,
        /// What disagrees with what.
        reason: String,
    },

    /// A label is not a valid class index or class name.
    #[error("{}: bad label: {}", path.display(), printable(reason))]
    Label {
        /// The file (or class folder) holding the label.
        path: PathBuf,
        /// Which label, and why it is wrong.
        reason: String,
    },

    /// The options given to [`Dataset::open`](crate::Dataset::open) or to a batch request
    /// are inconsistent (bounds with `lo >= hi`, a zero batch size, a `layout` for images
    /// that are not `.npy`, ...).
    #[error("invalid data options: {}", printable(reason))]
    Options {
        /// What is wrong.
        reason: String,
    },

    /// A batch was requested beyond the end of the data set.
    #[error("samples {start}..{end} requested from a data set of {len} samples")]
    OutOfRange {
        /// First requested index.
        start: usize,
        /// One past the last requested index.
        end: usize,
        /// The data set's size.
        len: usize,
    },
}

/// The crate's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// `text` with control characters escaped (`\n` as `\\n`): messages quote text read from
/// the data files (a CSV header, a label, a class name), and a newline in it must not
/// break the one-line error.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

impl DataError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn mismatch(path: &Path, reason: impl Into<String>) -> Self {
        DataError::Mismatch {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn label(path: &Path, reason: impl Into<String>) -> Self {
        DataError::Label {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(path: &Path, what: impl Into<String>) -> Self {
        DataError::NotFound {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub(crate) fn options(reason: impl Into<String>) -> Self {
        DataError::Options {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DataError;

    /// A CSV header with a quote in it swallowed the following lines into one field, which
    /// the message quoted over several lines (found by the CLI's fuzz test).
    #[test]
    fn text_from_the_file_cannot_break_the_line() {
        let e = DataError::format(
            std::path::Path::new("data.csv"),
            "missing column `label`: the header is `path,label\nimg/0.png,0`",
        );
        assert_eq!(
            e.to_string(),
            "data.csv: missing column `label`: the header is `path,label\\nimg/0.png,0`"
        );
    }
}
