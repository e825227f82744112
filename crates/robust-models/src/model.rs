//! A loaded model: a graph with its constants on a device, plus its preprocessing.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::{self, Architecture};
use crate::error::{ModelError, Result};
use crate::graph::{Graph, HostData};
use crate::ops::{registry, OpCtx, OpFn};
use crate::value::{FloatValue, IntValue, Value};

fn default_bounds() -> [f32; 2] {
    [0.0, 1.0]
}

/// How to load a model: the `[model]` section of `robust.toml`, or the equivalent flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model file (`.onnx`, or `.safetensors` with an architecture file).
    pub path: PathBuf,
    /// The architecture file for a `.safetensors` model (default: `arch.json` or `arch.toml`
    /// beside the weights).
    #[serde(default)]
    pub arch: Option<PathBuf>,
    /// Input shape without the batch axis, e.g. `[1, 28, 28]`; needed only when the file
    /// does not declare it.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// The valid range of input values, in the pixel space the attacks work in.
    #[serde(default = "default_bounds")]
    pub bounds: [f32; 2],
    /// Per-channel mean subtracted inside the graph (one value, or one per channel).
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided by inside the graph.
    #[serde(default)]
    pub std: Option<Vec<f32>>,
}

impl ModelSpec {
    /// A spec with defaults: bounds `[0, 1]`, no normalization, shapes from the file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            arch: None,
            input_shape: None,
            bounds: default_bounds(),
            mean: None,
            std: None,
        }
    }
}

/// The model file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// An ONNX graph.
    Onnx,
    /// safetensors weights plus an architecture description.
    Safetensors,
}

impl ModelFormat {
    /// `onnx` or `safetensors`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Onnx => "onnx",
            Self::Safetensors => "safetensors",
        }
    }
}

/// What is known about a loaded model (recorded in every report).
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// The model file.
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
    /// The architecture file and its SHA-256, for safetensors models.
    pub arch: Option<(PathBuf, String)>,
    /// Input shape without the batch axis.
    pub input_shape: Vec<usize>,
    /// Number of classes (width of the first output).
    pub num_classes: usize,
    /// Input value bounds.
    pub bounds: [f32; 2],
    /// Normalization mean, if any.
    pub mean: Option<Vec<f32>>,
    /// Normalization std, if any.
    pub std: Option<Vec<f32>>,
    /// The ONNX opset (17 for safetensors models).
    pub opset: i64,
    /// The distinct operator types the graph uses, sorted.
    pub ops: Vec<String>,
    /// The graph's output names (the first is the logits).
    pub outputs: Vec<String>,
    /// Bytes per sample of all float values one forward pass produces (measured on the probe
    /// batch at load; an input gradient keeps most of them alive for the backward pass).
    pub activation_bytes_per_sample: u64,
    /// Bytes per sample of the largest single float value of a forward pass: one device
    /// buffer must hold it for the whole batch.
    pub largest_activation_bytes_per_sample: u64,
}

/// A classifier ready to run on one device.
///
/// The forward pass accepts plain or autodiff tensors: constants live on the plain device
/// and act as constants in the autodiff graph, so gradients flow to the input only.
#[derive(Debug)]
pub struct Model {
    graph: Graph,
    ops: Vec<OpFn>,
    consts: HashMap<String, Value>,
    /// Values that die after node `k` (freed to keep memory flat).
    frees: Vec<Vec<String>>,
    norm: Option<(FloatValue, FloatValue)>,
    device: Device,
    info: ModelInfo,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn find_arch(weights: &Path) -> Option<PathBuf> {
    let dir = weights.parent().unwrap_or(Path::new("."));
    let stem = weights.file_stem()?.to_string_lossy().into_owned();
    [
        format!("{stem}.arch.json"),
        format!("{stem}.arch.toml"),
        "arch.json".to_string(),
        "arch.toml".to_string(),
    ]
    .into_iter()
    .map(|n| dir.join(n))
    .find(|p| p.is_file())
}

/// Runs `f`, turning a panic inside a backend into an error message.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    out.unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend failed".into());
        Err(ModelError::Op {
            node: "?".into(),
            op: "?".into(),
            msg: msg.lines().next().unwrap_or_default().to_string(),
        })
    })
}

impl Model {
    /// Loads and checks a model: parses the file, checks every operator, places the
    /// constants on `device` and runs a probe batch to learn the number of classes.
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self> {
        let path = spec.path.as_path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let bytes = read(path)?;
        let sha256 = sha256_hex(&bytes);
        let (graph, format, arch_info) = match ext.as_str() {
            "onnx" => (crate::onnx::parse(path, &bytes)?, ModelFormat::Onnx, None),
            "safetensors" => {
                let arch_path = match &spec.arch {
                    Some(p) => p.clone(),
                    None => find_arch(path).ok_or_else(|| ModelError::Invalid {
                        path: path.to_path_buf(),
                        reason: "a safetensors file holds weights only: give its architecture \
                                 file (model.arch, or arch.json beside the weights)"
                            .into(),
                    })?,
                };
                let arch_bytes = read(&arch_path)?;
                let arch = Architecture::read(&arch_path)?;
                let g = arch::build(&arch, path, &bytes)?;
                (
                    g,
                    ModelFormat::Safetensors,
                    Some((arch_path.clone(), sha256_hex(&arch_bytes))),
                )
            }
            _ => {
                return Err(ModelError::UnknownFormat {
                    path: path.to_path_buf(),
                })
            }
        };
        drop(bytes);
        // The operators of the file as written (reports list these), then the graph as run.
        let mut op_names: Vec<String> = graph.nodes.iter().map(|n| n.op.clone()).collect();
        op_names.sort();
        op_names.dedup();
        let mut graph = graph;
        graph.fuse();

        let input_shape = resolve_input_shape(path, &graph.input_dims, spec.input_shape.as_ref())?;
        let invalid = |reason: String| ModelError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if spec.bounds[0] >= spec.bounds[1] || spec.bounds.iter().any(|b| !b.is_finite()) {
            return Err(invalid(format!(
                "bounds {:?} must be an increasing pair",
                spec.bounds
            )));
        }
        let channels = input_shape[0];
        let norm = match (&spec.mean, &spec.std) {
            (None, None) => None,
            (Some(m), Some(s)) => {
                for (what, v) in [("mean", m), ("std", s)] {
                    if v.len() != 1 && v.len() != channels {
                        return Err(invalid(format!(
                            "{what} has {} values but the input has {channels} channels",
                            v.len()
                        )));
                    }
                }
                if s.iter().any(|&x| x <= 0.0 || !x.is_finite()) {
                    return Err(invalid(format!("std {s:?} must be positive")));
                }
                let shape = |v: &Vec<f32>| vec![1, v.len(), 1, 1];
                let m_t =
                    FloatValue::from_host(m.clone(), shape(m), device).map_err(|e| invalid(e.0))?;
                let s_t =
                    FloatValue::from_host(s.clone(), shape(s), device).map_err(|e| invalid(e.0))?;
                Some((m_t, s_t))
            }
            _ => return Err(invalid("give both mean and std, or neither".into())),
        };

        let reg = registry();
        let ops = graph
            .nodes
            .iter()
            .map(|n| reg[n.op.as_str()])
            .collect::<Vec<OpFn>>();
        let mut consts = HashMap::with_capacity(graph.consts.len());
        for (name, t) in &graph.consts {
            let v = match &t.data {
                HostData::F32(d) => Value::Float(
                    FloatValue::from_host(d.clone(), t.shape.clone(), device)
                        .map_err(|e| invalid(format!("constant '{name}': {}", e.0)))?,
                ),
                HostData::I64(d) => Value::Int(IntValue {
                    shape: t.shape.clone(),
                    data: d.clone(),
                }),
            };
            consts.insert(name.clone(), v);
        }
        let mut last_use: HashMap<&str, usize> = HashMap::new();
        for (k, n) in graph.nodes.iter().enumerate() {
            for i in &n.inputs {
                if !i.is_empty() && !graph.consts.contains_key(i) {
                    last_use.insert(i.as_str(), k);
                }
            }
        }
        let mut frees = vec![Vec::new(); graph.nodes.len()];
        for (name, k) in last_use {
            if !graph.outputs.iter().any(|o| o == name) {
                frees[k].push(name.to_string());
            }
        }
        let info = ModelInfo {
            path: path.to_path_buf(),
            format,
            sha256,
            arch: arch_info,
            input_shape: input_shape.clone(),
            num_classes: 0,
            bounds: spec.bounds,
            mean: spec.mean.clone(),
            std: spec.std.clone(),
            opset: graph.opset,
            ops: op_names,
            outputs: graph.outputs.clone(),
            activation_bytes_per_sample: 0,
            largest_activation_bytes_per_sample: 0,
        };
        let mut model = Model {
            graph,
            ops,
            consts,
            frees,
            norm,
            device: device.clone(),
            info,
        };

        // Probe with a batch of two: it checks that every node runs on the declared shape
        // and that the batch axis is really dynamic.
        let mut probe_shape = vec![2];
        probe_shape.extend(&input_shape);
        let probe = Tensor::<4>::zeros(
            [
                probe_shape[0],
                probe_shape[1],
                probe_shape[2],
                probe_shape[3],
            ],
            device,
        );
        const PROBE_BATCH: usize = 2;
        let (mut total, mut largest) = (0usize, 0usize);
        let mut measure = |v: &FloatValue| {
            if v.shape.first() == Some(&PROBE_BATCH) {
                total += v.numel();
                largest = largest.max(v.numel());
            }
        };
        let logits = guarded(|| model.forward_observed(probe, &mut measure)).map_err(|e| {
            invalid(format!(
                "the model does not run on inputs of shape {probe_shape:?}: {e} \
                 (was it exported with a fixed batch size? export with a dynamic batch axis)"
            ))
        })?;
        let bytes = |floats: usize| (floats * std::mem::size_of::<f32>() / PROBE_BATCH) as u64;
        model.info.activation_bytes_per_sample = bytes(total);
        model.info.largest_activation_bytes_per_sample = bytes(largest);
        model.info.num_classes = logits.dims()[1];
        if model.info.num_classes < 2 {
            return Err(invalid(format!(
                "the first output has shape {:?}; a classifier needs at least 2 classes",
                logits.dims()
            )));
        }
        Ok(model)
    }

    /// What is known about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The device the model's constants live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[N, classes]` for a batch `[N, C, H, W]` in pixel space (normalization is
    /// applied inside). Works on autodiff tensors.
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<2>> {
        self.forward_observed(x, &mut |_| {})
    }

    /// [`Self::forward`], showing `observe` every float value on the way (see
    /// [`Self::run_observed`]).
    fn forward_observed(
        &self,
        x: Tensor<4>,
        observe: &mut dyn FnMut(&FloatValue),
    ) -> Result<Tensor<2>> {
        let first = self.graph.outputs[0].clone();
        let mut out = self.run_observed(x, &[first.as_str()], observe)?;
        let v = out.remove(0);
        if v.rank() != 2 {
            return Err(ModelError::Op {
                node: first,
                op: "output".into(),
                msg: format!(
                    "the first output has shape {:?}, expected [batch, classes]",
                    v.shape
                ),
            });
        }
        v.at_rank::<2>("logits").map_err(|e| ModelError::Op {
            node: "output".into(),
            op: "output".into(),
            msg: e.0,
        })
    }

    /// The values named `names` (graph outputs or any intermediate value) for a batch.
    pub fn forward_values(&self, x: Tensor<4>, names: &[&str]) -> Result<Vec<FloatValue>> {
        self.run(x, names)
    }

    /// The name of the value feeding the last dense layer (the penultimate features), if the
    /// graph ends in one: what drift and poisoning screens use as features.
    pub fn penultimate_value(&self) -> Option<String> {
        self.graph
            .nodes
            .iter()
            .rev()
            .find(|n| n.op == "Gemm" || n.op == "MatMul")
            .and_then(|n| n.inputs.first().cloned())
    }

    /// For a value removed by [`Graph::fuse`], the value that now exists in its place (the
    /// end of the chain: a Conv's output folded into a BatchNormalization, itself into a Relu).
    fn folded_into(&self, name: &str) -> Option<&str> {
        let mut end = self.graph.folded.get(name)?;
        while let Some(next) = self.graph.folded.get(end) {
            end = next;
        }
        Some(end)
    }

    fn run(&self, x: Tensor<4>, want: &[&str]) -> Result<Vec<FloatValue>> {
        self.run_observed(x, want, &mut |_| {})
    }

    /// [`Self::run`], showing `observe` the input (after normalization) and every float
    /// value a node produces.
    fn run_observed(
        &self,
        x: Tensor<4>,
        want: &[&str],
        observe: &mut dyn FnMut(&FloatValue),
    ) -> Result<Vec<FloatValue>> {
        let dims = x.dims();
        if dims[1..] != self.info.input_shape[..] {
            return Err(ModelError::Input(format!(
                "the model expects inputs of shape [N, {}], got {dims:?}",
                self.info
                    .input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let op_err = |node: &crate::graph::Node, msg: String| ModelError::Op {
            node: node.name.clone(),
            op: node.op.clone(),
            msg,
        };
        let mut xv = FloatValue::from_tensor(x).map_err(|e| ModelError::Input(e.0))?;
        if let Some((m, s)) = &self.norm {
            xv = xv.map(|t| (t - m.t.clone()) / s.t.clone());
        }
        observe(&xv);
        let mut env: HashMap<&str, Value> = HashMap::new();
        env.insert(self.graph.input.as_str(), Value::Float(xv));
        let ctx = OpCtx {
            device: &self.device,
            opset: self.graph.opset,
        };
        for (k, node) in self.graph.nodes.iter().enumerate() {
            let inputs: Vec<Option<Value>> = node
                .inputs
                .iter()
                .map(|n| {
                    if n.is_empty() {
                        None
                    } else {
                        env.get(n.as_str()).or_else(|| self.consts.get(n)).cloned()
                    }
                })
                .collect();
            let outs = (self.ops[k])(&ctx, node, &inputs).map_err(|e| op_err(node, e.0))?;
            for (name, v) in node.outputs.iter().zip(outs) {
                if let Value::Float(f) = &v {
                    observe(f);
                }
                if !name.is_empty() {
                    env.insert(name.as_str(), v);
                }
            }
            for dead in &self.frees[k] {
                if !want.contains(&dead.as_str()) {
                    env.remove(dead.as_str());
                }
            }
        }
        want.iter()
            .map(
                |w| match env.remove(w).or_else(|| self.consts.get(*w).cloned()) {
                    Some(Value::Float(f)) => Ok(f),
                    Some(Value::Int(_)) => Err(ModelError::Input(format!(
                        "value '{w}' is an integer tensor, not features"
                    ))),
                    None => Err(ModelError::Input(match self.folded_into(w) {
                        Some(bn) => format!(
                            "value '{w}' (a convolution's output) was folded with the \
                             operator after it (BatchNormalization or Relu) when the model \
                             loaded; use '{bn}'"
                        ),
                        None => format!("the model has no value named '{w}'"),
                    })),
                },
            )
            .collect()
    }
}

fn resolve_input_shape(
    path: &Path,
    declared: &[Option<usize>],
    given: Option<&Vec<usize>>,
) -> Result<Vec<usize>> {
    let invalid = |reason: String| ModelError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let from_file: Option<Vec<usize>> =
        if !declared.is_empty() && declared.iter().all(|d| d.is_some()) {
            Some(declared.iter().map(|d| d.unwrap_or(0)).collect())
        } else {
            None
        };
    let shape =
        match (from_file, given) {
            (Some(f), Some(g)) if &f != g => {
                return Err(invalid(format!(
                    "the configured input shape {g:?} differs from the model's declared {f:?}"
                )))
            }
            (Some(f), _) => f,
            (None, Some(g)) => g.clone(),
            (None, None) => return Err(invalid(
                "the model does not declare its input shape; set input_shape (e.g. [3, 32, 32])"
                    .into(),
            )),
        };
    if shape.len() != 3 || shape.contains(&0) {
        return Err(invalid(format!(
            "input shape {shape:?} is not an image shape [channels, height, width]"
        )));
    }
    Ok(shape)
}
