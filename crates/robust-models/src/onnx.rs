//! Reading an `.onnx` file into the interpreter's [`Graph`].
//!
//! The protobuf is parsed with the message types of `onnx-ir` (burn's ONNX front end); the
//! graph is then taken as it is in the file: node names stay the user's, `Constant` nodes are
//! folded into constants, and every operator is checked against the registry before the
//! model is accepted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::Digest;

use onnx_ir::{AttributeProto, AttributeType, Message, ModelProto, TensorProto};

use crate::error::{ModelError, Result};
use crate::graph::{Attr, Graph, HostData, HostTensor, Node};
use crate::limits::Limits;
use crate::ops::registry;

fn invalid(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Half-precision bits to f32.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Converts an ONNX tensor into host data.
pub(crate) fn tensor_from_proto(t: &TensorProto) -> std::result::Result<HostTensor, String> {
    tensor_with_data(t, None)
}

/// Converts an ONNX tensor into host data, with its raw bytes read from an external file
/// when `external` is given.
fn tensor_with_data(
    t: &TensorProto,
    external: Option<&[u8]>,
) -> std::result::Result<HostTensor, String> {
    let label = if t.name.is_empty() {
        "a constant tensor".to_string()
    } else {
        format!("tensor '{}'", t.name)
    };
    if t.data_location.value() == 1 && external.is_none() {
        return Err(format!(
            "{label} stores its data in an external file, which is only read for initializers"
        ));
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{label} has a negative dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let numel: usize = shape.iter().product();
    let raw: &[u8] = external.unwrap_or(&t.raw_data);
    let chunks = |size: usize| -> std::result::Result<std::slice::ChunksExact<'_, u8>, String> {
        if raw.len() != numel * size {
            return Err(format!(
                "{label} has {} bytes of data, expected {} for shape {shape:?}",
                raw.len(),
                numel * size
            ));
        }
        Ok(raw.chunks_exact(size))
    };
    let use_raw = !raw.is_empty();
    let data = match t.data_type {
        1 => HostData::F32(if use_raw {
            chunks(4)?
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect()
        } else {
            t.float_data.clone()
        }),
        11 => HostData::F32(if use_raw {
            chunks(8)?
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                .collect()
        } else {
            t.double_data.iter().map(|&v| v as f32).collect()
        }),
        10 | 16 => {
            let bits: Vec<u16> = if use_raw {
                chunks(2)?
                    .map(|c| u16::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect()
            } else {
                t.int32_data.iter().map(|&v| v as u16).collect()
            };
            HostData::F32(if t.data_type == 10 {
                bits.into_iter().map(f16_to_f32).collect()
            } else {
                bits.into_iter()
                    .map(|b| f32::from_bits((b as u32) << 16))
                    .collect()
            })
        }
        7 => HostData::I64(if use_raw {
            chunks(8)?
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect()
        } else {
            t.int64_data.clone()
        }),
        6 => HostData::I64(if use_raw {
            chunks(4)?
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect()
        } else {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }),
        2 | 3 | 9 => HostData::I64(if use_raw {
            chunks(1)?
                .map(|c| {
                    if t.data_type == 3 {
                        c[0] as i8 as i64
                    } else {
                        c[0] as i64
                    }
                })
                .collect()
        } else {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }),
        other => return Err(format!("{label} has unsupported data type {other}")),
    };
    let len = match &data {
        HostData::F32(v) => v.len(),
        HostData::I64(v) => v.len(),
    };
    if len != numel {
        return Err(format!(
            "{label} has {len} values, expected {numel} for shape {shape:?}"
        ));
    }
    Ok(HostTensor { shape, data })
}

fn attr_from_proto(a: &AttributeProto) -> std::result::Result<Option<Attr>, String> {
    let ty = a.type_.enum_value().ok();
    Ok(Some(match ty {
        Some(AttributeType::FLOAT) => Attr::Float(a.f),
        Some(AttributeType::INT) => Attr::Int(a.i),
        Some(AttributeType::STRING) => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
        Some(AttributeType::FLOATS) => Attr::Floats(a.floats.clone()),
        Some(AttributeType::INTS) => Attr::Ints(a.ints.clone()),
        Some(AttributeType::TENSOR) => match a.t.as_ref() {
            Some(t) => Attr::Tensor(tensor_from_proto(t)?),
            None => return Ok(None),
        },
        // Graph and string-list attributes belong to operators this interpreter rejects.
        _ => return Ok(None),
    }))
}

/// Folds a `Constant` node into a host tensor.
fn constant_value(node: &Node) -> std::result::Result<HostTensor, String> {
    let (key, attr) = node
        .attrs
        .iter()
        .next()
        .ok_or_else(|| format!("Constant node '{}' has no value", node.name))?;
    Ok(match (key.as_str(), attr) {
        ("value", Attr::Tensor(t)) => t.clone(),
        ("value_float", Attr::Float(f)) => HostTensor {
            shape: vec![],
            data: HostData::F32(vec![*f]),
        },
        ("value_floats", Attr::Floats(f)) => HostTensor {
            shape: vec![f.len()],
            data: HostData::F32(f.clone()),
        },
        ("value_int", Attr::Int(i)) => HostTensor {
            shape: vec![],
            data: HostData::I64(vec![*i]),
        },
        ("value_ints", Attr::Ints(i)) => HostTensor {
            shape: vec![i.len()],
            data: HostData::I64(i.clone()),
        },
        (k, _) => {
            return Err(format!(
                "Constant node '{}' uses the unsupported attribute '{k}'",
                node.name
            ))
        }
    })
}

/// The files an ONNX model keeps its weights in (`torch.onnx.export(..., dynamo=True)`
/// writes `model.onnx.data` beside the graph): each read once, and only from the model's
/// own folder.
struct ExternalData {
    model: PathBuf,
    folder: PathBuf,
    files: HashMap<String, (PathBuf, Vec<u8>)>,
}

impl ExternalData {
    fn new(model: &Path) -> Self {
        let folder = model
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Self {
            model: model.to_path_buf(),
            folder,
            files: HashMap::new(),
        }
    }

    /// The bytes of tensor `name` described by its `external_data` entries.
    fn read<'a>(
        &mut self,
        name: &str,
        entries: impl Iterator<Item = (&'a str, &'a str)>,
        limits: &Limits,
    ) -> Result<Vec<u8>> {
        let bad = |reason: String| invalid(&self.model, format!("tensor '{name}': {reason}"));
        let (mut location, mut offset, mut length) = (None, 0u64, None);
        for (k, v) in entries {
            match k {
                "location" => location = Some(v.to_string()),
                "offset" => {
                    offset = v
                        .parse()
                        .map_err(|_| bad(format!("external data offset '{v}' is not a number")))?
                }
                "length" => {
                    length =
                        Some(v.parse::<u64>().map_err(|_| {
                            bad(format!("external data length '{v}' is not a number"))
                        })?)
                }
                _ => {}
            }
        }
        let location = location.ok_or_else(|| bad("external data without a location".into()))?;
        if !self.files.contains_key(&location) {
            let file = self.resolve(&location).map_err(bad)?;
            let size = std::fs::metadata(&file)
                .map_err(|e| bad(format!("cannot read external data {}: {e}", file.display())))?
                .len();
            if size > limits.max_file_bytes {
                return Err(bad(format!(
                    "external data {} has {size} bytes, above the limit of {} (raise it with --max-model-bytes)",
                    file.display(),
                    limits.max_file_bytes
                )));
            }
            let bytes = std::fs::read(&file)
                .map_err(|e| bad(format!("cannot read external data {}: {e}", file.display())))?;
            self.files.insert(location.clone(), (file, bytes));
        }
        let (file, bytes) = &self.files[&location];
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = match length {
            Some(l) => start.saturating_add(usize::try_from(l).unwrap_or(usize::MAX)),
            None => bytes.len(),
        };
        bytes.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
            bad(format!(
                "external data bytes {start}..{end} lie outside {} ({} bytes)",
                file.display(),
                bytes.len()
            ))
        })
    }

    /// A location made a path inside the model's folder, or why it is refused.
    fn resolve(&self, location: &str) -> std::result::Result<PathBuf, String> {
        let rel = Path::new(location);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if location.is_empty() || location.contains('\0') || !plain {
            return Err(format!(
                "external data location '{location}' must be a plain relative path inside the model's folder"
            ));
        }
        let joined = self.folder.join(rel);
        let canon = joined
            .canonicalize()
            .map_err(|e| format!("cannot open external data {}: {e}", joined.display()))?;
        let folder = self
            .folder
            .canonicalize()
            .map_err(|e| format!("cannot open the model's folder: {e}"))?;
        if !canon.starts_with(&folder) {
            return Err(format!(
                "external data location '{location}' leaves the model's folder (through a link)"
            ));
        }
        Ok(canon)
    }

    /// The external files read, with their SHA-256 digests.
    fn digests(&self) -> Vec<(PathBuf, String)> {
        let mut out: Vec<(PathBuf, String)> = self
            .files
            .values()
            .map(|(p, b)| (p.clone(), hex::encode(sha2::Sha256::digest(b))))
            .collect();
        out.sort();
        out
    }
}

/// Parses ONNX bytes into a checked [`Graph`]; `external` receives the external data
/// files read, with their SHA-256 digests. The initializers' raw data stays in `bytes`
/// (protobuf slices it, no copy) until it is converted to host tensors.
pub(crate) fn parse(
    path: &Path,
    bytes: &bytes::Bytes,
    limits: &Limits,
    external_files: &mut Vec<(PathBuf, String)>,
) -> Result<Graph> {
    if bytes.is_empty() {
        return Err(invalid(path, "the file is empty, not an ONNX model"));
    }
    let model = ModelProto::parse_from_tokio_bytes(bytes).map_err(|e| {
        invalid(
            path,
            format!("not a valid ONNX model (protobuf error: {e})"),
        )
    })?;
    let g = model
        .graph
        .as_ref()
        .filter(|g| !g.node.is_empty())
        .ok_or_else(|| invalid(path, "not a valid ONNX model (it has no graph nodes)"))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            invalid(
                path,
                "the model declares no opset for the default ONNX domain",
            )
        })?;

    let mut consts = HashMap::new();
    let mut external = ExternalData::new(path);
    for init in &g.initializer {
        let t = if init.data_location.value() == 1 {
            let entries = init
                .external_data
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()));
            let bytes = external.read(&init.name, entries, limits)?;
            tensor_with_data(init, Some(&bytes))
        } else {
            tensor_from_proto(init)
        };
        consts.insert(init.name.clone(), t.map_err(|e| invalid(path, e))?);
    }
    let inputs: Vec<&onnx_ir::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !consts.contains_key(&i.name))
        .collect();
    if inputs.len() != 1 {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(invalid(
            path,
            format!(
                "an image classifier needs exactly one graph input, this one has {}: {names:?}",
                inputs.len()
            ),
        ));
    }
    let input = inputs[0];
    let declared: Vec<Option<usize>> = input
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .and_then(|t| t.tensor_type().shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| {
                    (d.has_dim_value() && d.dim_value() > 0)
                        .then(|| usize::try_from(d.dim_value()).unwrap_or(usize::MAX))
                })
                .collect()
        })
        .unwrap_or_default();
    let input_batch = declared.first().copied().flatten();
    let input_dims: Vec<Option<usize>> = declared.into_iter().skip(1).collect();
    let outputs: Vec<String> = g.output.iter().map(|o| o.name.clone()).collect();
    if outputs.is_empty() {
        return Err(invalid(path, "the graph has no outputs"));
    }

    let reg = registry();
    let mut nodes = Vec::with_capacity(g.node.len());
    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut defined: HashSet<String> = consts.keys().cloned().collect();
    defined.insert(input.name.clone());
    for (k, n) in g.node.iter().enumerate() {
        let name = if n.name.is_empty() {
            format!("{}_{k}", n.op_type)
        } else {
            n.name.clone()
        };
        let mut attrs = BTreeMap::new();
        for a in &n.attribute {
            if let Some(v) = attr_from_proto(a).map_err(|e| invalid(path, e))? {
                attrs.insert(a.name.clone(), v);
            }
        }
        let node = Node {
            op: n.op_type.clone(),
            name,
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attrs,
        };
        let domain_ok = n.domain.is_empty() || n.domain == "ai.onnx";
        if node.op == "Constant" && domain_ok {
            let t = constant_value(&node).map_err(|e| invalid(path, e))?;
            if let Some(out) = node.outputs.first() {
                consts.insert(out.clone(), t);
                defined.insert(out.clone());
            }
            continue;
        }
        if !domain_ok || !reg.contains_key(node.op.as_str()) {
            let op = if domain_ok {
                node.op.clone()
            } else {
                format!("{}:{}", n.domain, node.op)
            };
            unsupported.entry(op).or_default().push(node.name.clone());
        }
        for i in node.inputs.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(i) {
                return Err(invalid(
                    path,
                    format!(
                        "node '{}' uses the value '{i}' before it is defined (the graph is not topologically sorted)",
                        node.name
                    ),
                ));
            }
        }
        defined.extend(node.outputs.iter().cloned());
        nodes.push(node);
    }
    if !unsupported.is_empty() {
        let list = unsupported
            .iter()
            .map(|(op, names)| {
                let shown: Vec<String> = names.iter().take(5).map(|n| format!("'{n}'")).collect();
                let more = if names.len() > 5 {
                    format!(" and {} more", names.len() - 5)
                } else {
                    String::new()
                };
                format!(
                    "{op} (node{} {}{more})",
                    if names.len() > 1 { "s" } else { "" },
                    shown.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ModelError::UnsupportedOps {
            path: path.to_path_buf(),
            list,
        });
    }
    for o in &outputs {
        if !defined.contains(o) {
            return Err(invalid(
                path,
                format!("graph output '{o}' is never computed"),
            ));
        }
    }
    *external_files = external.digests();
    Ok(Graph {
        nodes,
        consts,
        input: input.name.clone(),
        input_dims,
        input_batch,
        outputs,
        opset,
        folded: HashMap::new(),
    })
}
