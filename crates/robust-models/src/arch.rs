//! Models stored as safetensors weights plus an architecture description.
//!
//! A safetensors file holds named tensors only, so the network's structure comes from a small
//! architecture file (JSON or TOML): an input shape and a sequence of layers whose `name`s
//! are the PyTorch parameter prefixes of a `state_dict` (`"0"` for `0.weight` and `0.bias`).
//!
//! ```json
//! {"input_shape": [1, 28, 28],
//!  "layers": [{"type": "conv2d", "name": "0", "in": 1, "out": 8, "kernel": 3, "padding": 1},
//!             {"type": "relu"}, {"type": "maxpool2d", "kernel": 2},
//!             {"type": "flatten"}, {"type": "linear", "name": "4", "in": 1568, "out": 10}]}
//! ```
//!
//! Layer types: `conv2d {name, in, out, kernel, stride=1, padding=0, bias=true}`,
//! `batchnorm2d {name, features, eps=1e-5}` (keys `weight`, `bias`, `running_mean`,
//! `running_var`), `linear {name, in, out, bias=true}`, `relu`, `leaky_relu {slope=0.01}`,
//! `tanh`, `sigmoid`, `gelu`, `maxpool2d {kernel, stride=kernel, padding=0}`,
//! `avgpool2d {kernel, stride=kernel, padding=0}`, `global_avgpool`, `dropout`, `flatten`.
//! The description becomes the same graph form as an ONNX file, so one interpreter runs both.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::graph::{Attr, Graph, HostData, HostTensor, Node};

/// An architecture description.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Input shape without the batch axis, e.g. `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    /// The layers in order.
    pub layers: Vec<Layer>,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn bn_eps() -> f32 {
    1e-5
}
fn slope() -> f32 {
    0.01
}

/// One layer of an [`Architecture`].
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// 2-D convolution with square kernel (`{name}.weight` `[out, in, k, k]`, `{name}.bias`).
    Conv2d {
        /// Parameter prefix.
        name: String,
        /// Input channels.
        #[serde(rename = "in")]
        in_channels: usize,
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding on every side.
        #[serde(default)]
        padding: usize,
        /// Whether the layer has a bias.
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Batch normalization in inference form.
    Batchnorm2d {
        /// Parameter prefix.
        name: String,
        /// Number of channels.
        features: usize,
        /// Epsilon added to the variance.
        #[serde(default = "bn_eps")]
        eps: f32,
    },
    /// Fully connected layer (`{name}.weight` `[out, in]`, `{name}.bias` `[out]`).
    Linear {
        /// Parameter prefix.
        name: String,
        /// Input features.
        #[serde(rename = "in")]
        in_features: usize,
        /// Output features.
        out: usize,
        /// Whether the layer has a bias.
        #[serde(default = "yes")]
        bias: bool,
    },
    /// ReLU.
    Relu,
    /// Leaky ReLU.
    LeakyRelu {
        /// Negative slope.
        #[serde(default = "slope")]
        slope: f32,
    },
    /// tanh.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// GELU (exact form).
    Gelu,
    /// 2-D max pooling.
    Maxpool2d {
        /// Kernel size.
        kernel: usize,
        /// Stride (defaults to the kernel size).
        #[serde(default)]
        stride: Option<usize>,
        /// Padding on every side.
        #[serde(default)]
        padding: usize,
    },
    /// 2-D average pooling (padding excluded from the average, as PyTorch's default is not;
    /// use padding 0 for an exact match).
    Avgpool2d {
        /// Kernel size.
        kernel: usize,
        /// Stride (defaults to the kernel size).
        #[serde(default)]
        stride: Option<usize>,
        /// Padding on every side.
        #[serde(default)]
        padding: usize,
    },
    /// Global average pooling to `[N, C, 1, 1]`.
    GlobalAvgpool,
    /// Dropout (the identity at inference).
    Dropout {
        /// Drop probability (ignored at inference).
        #[serde(default)]
        p: f32,
    },
    /// Flatten everything after the batch axis.
    Flatten,
}

impl Architecture {
    /// Reads a JSON (`.json`) or TOML (any other extension) architecture file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| ModelError::Invalid {
            path: path.to_path_buf(),
            reason: format!("invalid architecture description: {e}"),
        })
    }
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> Node {
    Node {
        op: op.to_string(),
        name,
        inputs,
        outputs: vec![output],
        attrs: BTreeMap::new(),
    }
}

fn read_tensor(
    view: &safetensors::tensor::TensorView<'_>,
) -> std::result::Result<Vec<f32>, String> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        other => return Err(format!("dtype {other:?} is not supported (save float32)")),
    })
}

/// Builds the graph of an architecture with weights from a safetensors file.
pub(crate) fn build(arch: &Architecture, weights_path: &Path, bytes: &[u8]) -> Result<Graph> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Invalid {
        path: weights_path.to_path_buf(),
        reason: format!("not a valid safetensors file: {e}"),
    })?;
    let mut nodes = Vec::new();
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    let mut prev = "input".to_string();
    for (k, layer) in arch.layers.iter().enumerate() {
        let out = format!("layer{k}");
        let mut inputs = vec![prev.clone()];
        let mut param = |name: &str, suffix: &str, shape: Vec<usize>| {
            let key = format!("{name}.{suffix}");
            expected.push((key.clone(), shape));
            inputs.push(key);
        };
        let mut n = match layer {
            Layer::Conv2d {
                name,
                in_channels,
                out: o,
                kernel,
                stride,
                padding,
                bias,
            } => {
                param(name, "weight", vec![*o, *in_channels, *kernel, *kernel]);
                if *bias {
                    param(name, "bias", vec![*o]);
                }
                let mut n = node("Conv", format!("conv2d '{name}'"), inputs, out.clone());
                n.attrs
                    .insert("strides".into(), Attr::Ints(vec![*stride as i64; 2]));
                n.attrs
                    .insert("pads".into(), Attr::Ints(vec![*padding as i64; 4]));
                n
            }
            Layer::Batchnorm2d {
                name,
                features,
                eps,
            } => {
                for s in ["weight", "bias", "running_mean", "running_var"] {
                    param(name, s, vec![*features]);
                }
                let mut n = node(
                    "BatchNormalization",
                    format!("batchnorm2d '{name}'"),
                    inputs,
                    out.clone(),
                );
                n.attrs.insert("epsilon".into(), Attr::Float(*eps));
                n
            }
            Layer::Linear {
                name,
                in_features,
                out: o,
                bias,
            } => {
                param(name, "weight", vec![*o, *in_features]);
                if *bias {
                    param(name, "bias", vec![*o]);
                }
                let mut n = node("Gemm", format!("linear '{name}'"), inputs, out.clone());
                n.attrs.insert("transB".into(), Attr::Int(1));
                n
            }
            Layer::Relu => node("Relu", format!("relu #{k}"), inputs, out.clone()),
            Layer::LeakyRelu { slope } => {
                let mut n = node("LeakyRelu", format!("leaky_relu #{k}"), inputs, out.clone());
                n.attrs.insert("alpha".into(), Attr::Float(*slope));
                n
            }
            Layer::Tanh => node("Tanh", format!("tanh #{k}"), inputs, out.clone()),
            Layer::Sigmoid => node("Sigmoid", format!("sigmoid #{k}"), inputs, out.clone()),
            Layer::Gelu => node("Gelu", format!("gelu #{k}"), inputs, out.clone()),
            Layer::Maxpool2d {
                kernel,
                stride,
                padding,
            }
            | Layer::Avgpool2d {
                kernel,
                stride,
                padding,
            } => {
                let (op, label) = if matches!(layer, Layer::Maxpool2d { .. }) {
                    ("MaxPool", "maxpool2d")
                } else {
                    ("AveragePool", "avgpool2d")
                };
                let mut n = node(op, format!("{label} #{k}"), inputs, out.clone());
                let s = stride.unwrap_or(*kernel) as i64;
                n.attrs
                    .insert("kernel_shape".into(), Attr::Ints(vec![*kernel as i64; 2]));
                n.attrs.insert("strides".into(), Attr::Ints(vec![s; 2]));
                n.attrs
                    .insert("pads".into(), Attr::Ints(vec![*padding as i64; 4]));
                if op == "AveragePool" {
                    n.attrs.insert("count_include_pad".into(), Attr::Int(1));
                }
                n
            }
            Layer::GlobalAvgpool => node(
                "GlobalAveragePool",
                format!("global_avgpool #{k}"),
                inputs,
                out.clone(),
            ),
            Layer::Dropout { .. } => node("Identity", format!("dropout #{k}"), inputs, out.clone()),
            Layer::Flatten => node("Flatten", format!("flatten #{k}"), inputs, out.clone()),
        };
        n.outputs = vec![out.clone()];
        nodes.push(n);
        prev = out;
    }
    if nodes.is_empty() {
        return Err(ModelError::Invalid {
            path: weights_path.to_path_buf(),
            reason: "the architecture has no layers".into(),
        });
    }

    let present: HashMap<String, Vec<usize>> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (key, shape) in &expected {
        match present.get(key) {
            None => missing.push(key.clone()),
            Some(s) if s != shape => wrong.push(format!("{key} is {s:?}, expected {shape:?}")),
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<String> = present
        .keys()
        .filter(|k| !k.ends_with("num_batches_tracked") && !expected.iter().any(|(e, _)| e == *k))
        .cloned()
        .collect();
    unexpected.sort();
    if !missing.is_empty() || !wrong.is_empty() || !unexpected.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing keys: {}", missing.join(", ")));
        }
        if !wrong.is_empty() {
            parts.push(format!("shape mismatches: {}", wrong.join("; ")));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected keys: {}", unexpected.join(", ")));
        }
        return Err(ModelError::WeightMismatch {
            path: weights_path.to_path_buf(),
            reason: parts.join("; "),
        });
    }
    let mut consts = HashMap::new();
    for (key, shape) in expected {
        let view = st.tensor(&key).map_err(|e| ModelError::Invalid {
            path: weights_path.to_path_buf(),
            reason: format!("{key}: {e}"),
        })?;
        let data = read_tensor(&view).map_err(|e| ModelError::Invalid {
            path: weights_path.to_path_buf(),
            reason: format!("{key}: {e}"),
        })?;
        consts.insert(
            key,
            HostTensor {
                shape,
                data: HostData::F32(data),
            },
        );
    }
    Ok(Graph {
        nodes,
        consts,
        input: "input".into(),
        input_dims: arch.input_shape.iter().map(|&d| Some(d)).collect(),
        input_batch: None,
        outputs: vec![prev],
        opset: 17,
        folded: HashMap::new(),
    })
}
