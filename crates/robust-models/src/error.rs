//! The crate's error type.

use std::path::PathBuf;

/// Errors from loading or running a model. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a parseable model of its format.
    #[error("{path}: {}", printable(reason))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The ONNX graph uses operators this interpreter does not implement.
    #[error("{path}: unsupported ONNX operator(s): {}", printable(list))]
    UnsupportedOps {
        /// The file.
        path: PathBuf,
        /// `OpType (node 'name'), ...`.
        list: String,
    },
    /// safetensors weights do not match the architecture description.
    #[error("{path}: weights do not match the architecture: {}", printable(reason))]
    WeightMismatch {
        /// The weights file.
        path: PathBuf,
        /// Which keys are missing, unexpected or mis-shaped.
        reason: String,
    },
    /// The model file's extension is not one this crate loads.
    #[error("{path}: unknown model format (expected a .onnx file, or a .safetensors file with an architecture file)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A node failed while the graph ran (shapes that do not fit, for example).
    #[error("node '{}' ({}): {}", printable(node), printable(op), printable(msg))]
    Op {
        /// The node's name.
        node: String,
        /// The node's operator type.
        op: String,
        /// What went wrong.
        msg: String,
    },
    /// The tensor backend failed outside any one node (in the backward pass, say).
    #[error("the tensor backend failed: {0}")]
    Backend(String),
    /// The requested device is not available.
    #[error("device: {0}")]
    Device(String),
    /// An input tensor does not fit the model.
    #[error("input: {0}")]
    Input(String),
}

/// `text` with control characters escaped (`\n` as `\\n`): messages hold names and text
/// read from the model file, and a newline in a node name must not break the one-line
/// error.
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

/// Shorthand for results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// An error raised inside one operator; the interpreter adds the node's name and type.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError(pub String);

impl OpError {
    /// Creates an error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::ModelError;

    /// A value name with a newline in it (a mutated ONNX file, found by the CLI's fuzz
    /// test) made a two-line message.
    #[test]
    fn names_from_the_file_cannot_break_the_line() {
        let e = ModelError::Invalid {
            path: "m.onnx".into(),
            reason: "node '/0/Conv' uses the value '0.\neight' before it is defined".into(),
        };
        assert_eq!(
            e.to_string(),
            "m.onnx: node '/0/Conv' uses the value '0.\\neight' before it is defined"
        );
        let e = ModelError::Op {
            node: "a\tb".into(),
            op: "Conv".into(),
            msg: "x\ry".into(),
        };
        assert_eq!(e.to_string(), "node 'a\\tb' (Conv): x\\ry");
    }
}
