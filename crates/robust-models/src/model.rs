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
use crate::limits::Limits;
use crate::ops::{registry, OpCtx, OpFn};
use crate::value::{FloatValue, IntValue, Layout, Value};

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
    /// Size limits checked before anything the file declares is allocated.
    #[serde(default)]
    pub limits: Limits,
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
            limits: Limits::default(),
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
    /// External data files an ONNX model keeps its weights in, with their SHA-256 digests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<(PathBuf, String)>,
    /// The batch size the graph must run at, when the file fixes it and it could not be made
    /// dynamic: batches are then split and padded to this size (slower, same results).
    pub fixed_batch: Option<usize>,
    /// What loading changed or decided about the file as written (for stderr and reports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    /// Values that some operator reads batch-innermost if they are held so
    /// ([`crate::ops::BATCH_INNER_OPS`]); any other value changed back to the standard
    /// layout is replaced by the changed one.
    read_as_held: std::collections::HashSet<String>,
    norm: Option<(FloatValue, FloatValue)>,
    device: Device,
    info: ModelInfo,
    /// [`Limits::max_activation_values`], checked by the operators that size their output.
    max_activation_values: usize,
}

fn read(path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limits.max_file_bytes {
        return Err(ModelError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "the file has {size} bytes, above the limit of {} (raise [model.limits] max_file_bytes)",
                limits.max_file_bytes
            ),
        });
    }
    std::fs::read(path).map_err(io)
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
    out.unwrap_or_else(|payload| Err(ModelError::Backend(panic_text(&*payload))))
}

/// The first line of a panic's message.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend failed".into());
    msg.lines().next().unwrap_or_default().to_string()
}

/// A model file read and checked, before its constants go to a device.
struct Plan {
    graph: Graph,
    info: ModelInfo,
    norm: Option<(Vec<f32>, Vec<f32>)>,
    /// [`Limits::max_activation_values`].
    max_activation_values: usize,
}

/// The batch size of the probe run at load (any size other than a fixed one works).
fn probe_batch(fixed: Option<usize>) -> usize {
    if fixed == Some(2) {
        3
    } else {
        2
    }
}

impl Model {
    /// Loads and checks a model: parses the file, checks every operator, places the
    /// constants on `device` and runs a probe batch to learn the number of classes.
    ///
    /// A graph exported with a fixed batch size is made dynamic where its `Reshape` targets
    /// allow ([`Graph::free_batch`]); otherwise it runs at its own batch size
    /// ([`ModelInfo::fixed_batch`]). Either way [`ModelInfo::notes`] says so.
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self> {
        let plan = Self::plan(spec)?;
        let Some(fixed) = plan.graph.input_batch else {
            return Self::assemble(plan, device)?.probe(None);
        };
        // The file fixes the batch size: first try it as it is with another batch size
        // (many graphs never use it), then with the batch made symbolic, then at its size.
        let first = Self::assemble(
            Plan {
                graph: plan.graph.clone(),
                info: plan.info.clone(),
                norm: plan.norm.clone(),
                max_activation_values: plan.max_activation_values,
            },
            device,
        )?
        .probe(None);
        if first.is_ok() {
            return first;
        }
        let mut freed = plan.graph.clone();
        let rewritten = freed.free_batch(fixed);
        if rewritten > 0 {
            let mut info = plan.info.clone();
            info.notes.push(format!(
                "the file fixes the batch size at {fixed}; {rewritten} Reshape target(s) were made batch-independent"
            ));
            let attempt = Self::assemble(
                Plan {
                    graph: freed,
                    info,
                    norm: plan.norm.clone(),
                    max_activation_values: plan.max_activation_values,
                },
                device,
            )?
            .probe(None);
            if attempt.is_ok() {
                return attempt;
            }
        }
        let mut plan = plan;
        plan.info.fixed_batch = Some(fixed);
        plan.info.notes.push(format!(
            "the file fixes the batch size at {fixed} and its graph depends on it: batches run in \
             groups of {fixed}, padded (export with a dynamic batch axis for speed)"
        ));
        Self::assemble(plan, device)?.probe(Some(fixed))
    }

    /// Reads and checks the file and the spec; nothing touches a device yet.
    fn plan(spec: &ModelSpec) -> Result<Plan> {
        let path = spec.path.as_path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let bytes = bytes::Bytes::from(read(path, &spec.limits)?);
        let mut external_data = Vec::new();
        let mut parse = || -> Result<_> {
            Ok(match ext.as_str() {
                "onnx" => (
                    crate::onnx::parse(path, &bytes, &spec.limits, &mut external_data)?,
                    ModelFormat::Onnx,
                    None,
                ),
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
                    let arch_bytes = read(&arch_path, &spec.limits)?;
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
            })
        };
        // The digest (a read of the whole file) runs beside the parse.
        let (sha256, parsed) = std::thread::scope(|scope| {
            let digest = scope.spawn(|| sha256_hex(&bytes));
            let parsed = parse();
            (digest.join().unwrap_or_else(|_| sha256_hex(&bytes)), parsed)
        });
        let (graph, format, arch_info) = parsed?;
        drop(bytes);
        // The operators of the file as written (reports list these), then the graph as run.
        let mut op_names: Vec<String> = graph.nodes.iter().map(|n| n.op.clone()).collect();
        op_names.sort();
        op_names.dedup();
        let mut graph = graph;
        graph.fuse();

        let input_shape = resolve_input_shape(
            path,
            &graph.input_dims,
            spec.input_shape.as_ref(),
            &spec.limits,
        )?;
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
                if m.iter().any(|x| !x.is_finite()) {
                    return Err(invalid(format!("mean {m:?} must be finite")));
                }
                Some((m.clone(), s.clone()))
            }
            _ => return Err(invalid("give both mean and std, or neither".into())),
        };
        let info = ModelInfo {
            path: path.to_path_buf(),
            format,
            sha256,
            arch: arch_info,
            external_data,
            fixed_batch: None,
            notes: Vec::new(),
            input_shape,
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
        Ok(Plan {
            graph,
            info,
            norm,
            max_activation_values: spec.limits.max_activation_values,
        })
    }

    /// Places a plan's constants on `device`.
    fn assemble(plan: Plan, device: &Device) -> Result<Self> {
        let Plan {
            mut graph,
            info,
            norm,
            max_activation_values,
        } = plan;
        let invalid = |reason: String| ModelError::Invalid {
            path: info.path.clone(),
            reason,
        };
        let norm = match norm {
            Some((m, s)) => {
                let shape = |v: &Vec<f32>| vec![1, v.len(), 1, 1];
                let (ms, ss) = (shape(&m), shape(&s));
                Some((
                    FloatValue::from_host(m, ms, device).map_err(|e| invalid(e.0))?,
                    FloatValue::from_host(s, ss, device).map_err(|e| invalid(e.0))?,
                ))
            }
            None => None,
        };
        let reg = registry();
        let ops = graph
            .nodes
            .iter()
            .map(|n| reg[n.op.as_str()])
            .collect::<Vec<OpFn>>();
        // The host copies move into the device constants (not cloned, and not kept: the
        // weights were held three times over, and every extra copy of a ResNet's weights is
        // memory the run first has to fault in).
        let host = std::mem::take(&mut graph.consts);
        let mut consts = HashMap::with_capacity(host.len());
        for (name, t) in host {
            let v = match t.data {
                HostData::F32(d) => Value::Float(
                    FloatValue::from_host(d, t.shape, device)
                        .map_err(|e| invalid(format!("constant '{name}': {}", e.0)))?,
                ),
                HostData::I64(d) => Value::Int(IntValue {
                    shape: t.shape,
                    data: d,
                }),
            };
            consts.insert(name, v);
        }
        let mut last_use: HashMap<&str, usize> = HashMap::new();
        for (k, n) in graph.nodes.iter().enumerate() {
            for i in &n.inputs {
                if !i.is_empty() && !consts.contains_key(i) {
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
        let read_as_held = graph
            .nodes
            .iter()
            .filter(|n| crate::ops::BATCH_INNER_OPS.contains(&n.op.as_str()))
            .flat_map(|n| n.inputs.iter().cloned())
            .collect();
        Ok(Model {
            graph,
            ops,
            consts,
            frees,
            read_as_held,
            norm,
            device: device.clone(),
            info,
            max_activation_values,
        })
    }

    /// Runs a probe batch: it checks that every node runs on the declared shape and that
    /// the batch axis is dynamic (or `fixed`), and measures activation sizes.
    fn probe(mut self, fixed: Option<usize>) -> Result<Self> {
        let probe_n = fixed.unwrap_or_else(|| probe_batch(self.graph.input_batch));
        let s = self.info.input_shape.clone();
        let probe = Tensor::<4>::zeros([probe_n, s[0], s[1], s[2]], &self.device);
        let (mut total, mut largest) = (0usize, 0usize);
        let mut measure = |v: &FloatValue| {
            if v.shape.first() == Some(&probe_n) {
                total += v.numel();
                largest = largest.max(v.numel());
            }
        };
        let path = self.info.path.clone();
        let invalid = |reason: String| ModelError::Invalid {
            path: path.clone(),
            reason,
        };
        let logits = guarded(|| self.forward_observed(probe, &mut measure)).map_err(|e| {
            let hint = if self.graph.input_batch.is_some() && fixed.is_none() {
                " (the file fixes the batch size; export with a dynamic batch axis)"
            } else {
                ""
            };
            invalid(format!(
                "the model does not run on inputs of shape [{probe_n}, {}, {}, {}]: {e}{hint}",
                s[0], s[1], s[2]
            ))
        })?;
        let bytes = |floats: usize| (floats * std::mem::size_of::<f32>() / probe_n) as u64;
        self.info.activation_bytes_per_sample = bytes(total);
        self.info.largest_activation_bytes_per_sample = bytes(largest);
        if logits.dims()[0] != probe_n {
            return Err(invalid(format!(
                "a batch of {probe_n} inputs gave {} rows of logits: the graph does not keep the batch axis",
                logits.dims()[0]
            )));
        }
        self.info.num_classes = logits.dims()[1];
        if self.info.num_classes < 2 {
            return Err(invalid(format!(
                "the first output has shape {:?}; a classifier needs at least 2 classes",
                logits.dims()
            )));
        }
        Ok(self)
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
    /// end of the chain: a Conv's output folded into a BatchNormalization, itself into a Relu;
    /// or an Add's output fused with its Relu).
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
    /// value a node produces. A graph with a fixed batch size runs in groups of that size,
    /// the last one padded with zeros; the wanted values are cut back and joined, so the
    /// caller (and autodiff) sees one batch.
    fn run_observed(
        &self,
        x: Tensor<4>,
        want: &[&str],
        observe: &mut dyn FnMut(&FloatValue),
    ) -> Result<Vec<FloatValue>> {
        let n = x.dims()[0];
        let fixed = match self.info.fixed_batch {
            Some(b) if b != n => b,
            _ => return self.run_once(x, want, observe),
        };
        let mut parts: Vec<Vec<FloatValue>> = Vec::new();
        let mut start = 0;
        while start < n {
            let len = fixed.min(n - start);
            let mut chunk = x.clone().narrow(0, start, len);
            if len < fixed {
                let [_, c, h, w] = chunk.dims();
                let pad = Tensor::<4>::zeros([fixed - len, c, h, w], &x.device());
                chunk = Tensor::cat(vec![chunk, pad], 0);
            }
            let outs = self.run_once(chunk, want, observe)?;
            let mut cut = Vec::with_capacity(outs.len());
            for (v, name) in outs.into_iter().zip(want) {
                if v.shape.first() != Some(&fixed) {
                    return Err(ModelError::Input(format!(
                        "value '{name}' of shape {:?} has no batch axis to split",
                        v.shape
                    )));
                }
                let mut shape = v.shape.clone();
                shape[0] = len;
                let t = v.t.clone().narrow(v.padded_axis(0), 0, len);
                cut.push(FloatValue::from_padded(t, shape));
            }
            parts.push(cut);
            start += len;
        }
        (0..want.len())
            .map(|k| {
                let mut shape = parts[0][k].shape.clone();
                shape[0] = n;
                let axis = parts[0][k].padded_axis(0);
                let ts = parts.iter().map(|p| p[k].t.clone()).collect();
                Ok(FloatValue::from_padded(Tensor::cat(ts, axis), shape))
            })
            .collect()
    }

    /// One run of the graph on a batch.
    fn run_once(
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
            max_activation_values: self.max_activation_values,
        };
        // Batch-innermost values changed back to the standard layout for the operators that
        // need it, kept beside the value while it lives when another operator reads it as it
        // is held (several operators may read one), in its place otherwise.
        let mut standardized: HashMap<&str, Value> = HashMap::new();
        for (k, node) in self.graph.nodes.iter().enumerate() {
            let aware = crate::ops::BATCH_INNER_OPS.contains(&node.op.as_str());
            let mut inputs: Vec<Option<Value>> = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                let v = if name.is_empty() {
                    None
                } else {
                    env.get(name.as_str())
                        .or_else(|| self.consts.get(name))
                        .cloned()
                };
                inputs.push(match v {
                    Some(Value::Float(f)) if !aware && f.layout != Layout::Standard => {
                        if let Some(done) = standardized.get(name.as_str()) {
                            Some(done.clone())
                        } else {
                            let done =
                                Value::Float(standard_guarded(f).map_err(|e| op_err(node, e.0))?);
                            if self.read_as_held.contains(name) {
                                standardized.insert(name.as_str(), done.clone());
                            } else {
                                env.insert(name.as_str(), done.clone());
                            }
                            Some(done)
                        }
                    }
                    v => v,
                });
            }
            let outs = catch_unwind(AssertUnwindSafe(|| (self.ops[k])(&ctx, node, &inputs)))
                .unwrap_or_else(|payload| Err(crate::error::OpError::new(panic_text(&*payload))))
                .map_err(|e| op_err(node, e.0))?;
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
                    standardized.remove(dead.as_str());
                }
            }
        }
        want.iter()
            .map(|w| {
                match standardized
                    .remove(w)
                    .or_else(|| env.remove(w))
                    .or_else(|| self.consts.get(*w).cloned())
                {
                    Some(Value::Float(f)) => standard_guarded(f)
                        .map_err(|e| ModelError::Input(format!("value '{w}': {}", e.0))),
                    Some(Value::Int(_)) => Err(ModelError::Input(format!(
                        "value '{w}' is an integer tensor, not features"
                    ))),
                    None => Err(ModelError::Input(match self.folded_into(w) {
                        Some(bn) => format!(
                            "value '{w}' (a convolution's or sum's output) was folded with \
                             the operator after it (BatchNormalization, Relu or residual sum) \
                             when the model loaded; use '{bn}'"
                        ),
                        None => format!("the model has no value named '{w}'"),
                    })),
                }
            })
            .collect()
    }
}

/// [`crate::ops::standard`], with a panic in the layout change reported as an error (as
/// the operators' are).
fn standard_guarded(f: FloatValue) -> std::result::Result<FloatValue, crate::error::OpError> {
    catch_unwind(AssertUnwindSafe(|| crate::ops::standard(f)))
        .unwrap_or_else(|payload| Err(crate::error::OpError::new(panic_text(&*payload))))
}

fn resolve_input_shape(
    path: &Path,
    declared: &[Option<usize>],
    given: Option<&Vec<usize>>,
    limits: &Limits,
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
    let values = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if values > limits.max_input_values {
        return Err(invalid(format!(
            "input shape {shape:?} has {values} values per sample, above the limit of {} (raise [model.limits] max_input_values)",
            limits.max_input_values
        )));
    }
    Ok(shape)
}
