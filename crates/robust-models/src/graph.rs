//! The interpreter's graph: ONNX's node list, with constants folded out.
//!
//! Both loaders produce this form: the ONNX loader from the protobuf, the safetensors loader
//! from an architecture description plus a weights file. One interpreter then runs both.

use std::collections::{BTreeMap, HashMap};

use crate::error::OpError;

/// Host-side tensor data of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// Float data (ONNX FLOAT and DOUBLE, stored as f32).
    F32(Vec<f32>),
    /// Integer data (ONNX INT8..INT64 and BOOL, stored as i64).
    I64(Vec<i64>),
}

/// A constant tensor held on the host until a model is placed on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// The shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: HostData,
}

impl HostTensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A node attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// A float.
    Float(f32),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A tensor.
    Tensor(HostTensor),
}

/// One operator application.
#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX operator type (`Conv`, `Gemm`, ...).
    pub op: String,
    /// The node's name (generated when the file has none).
    pub name: String,
    /// Input value names; an empty string is an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: BTreeMap<String, Attr>,
}

impl Node {
    /// An integer attribute, or a default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OpError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be an integer, found {other:?}"
            ))),
        }
    }

    /// A float attribute, or a default.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OpError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be a float, found {other:?}"
            ))),
        }
    }

    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be a list of integers, found {other:?}"
            ))),
        }
    }

    /// A string attribute, or a default.
    pub fn string(&self, name: &str, default: &str) -> Result<String, OpError> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::Str(s)) => Ok(s.clone()),
            Some(other) => Err(OpError::new(format!(
                "attribute '{name}' should be a string, found {other:?}"
            ))),
        }
    }
}

/// A whole model graph.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Constants (initializers and folded `Constant` nodes) by value name.
    pub consts: HashMap<String, HostTensor>,
    /// The image input's value name.
    pub input: String,
    /// The input's declared dimensions after the batch axis (`None` where symbolic).
    pub input_dims: Vec<Option<usize>>,
    /// Output value names (the first one is the logits).
    pub outputs: Vec<String>,
    /// The default-domain opset version.
    pub opset: i64,
}
