//! Reading an `.onnx` file into the interpreter's [`Graph`].
//!
//! The protobuf is parsed with the message types of `onnx-ir` (burn's ONNX front end); the
//! graph is then taken as it is in the file: node names stay the user's, `Constant` nodes are
//! folded into constants, and every operator is checked against the registry before the
//! model is accepted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use onnx_ir::{AttributeProto, AttributeType, Message, ModelProto, TensorProto};

use crate::error::{ModelError, Result};
use crate::graph::{Attr, Graph, HostData, HostTensor, Node};
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
    let label = if t.name.is_empty() {
        "a constant tensor".to_string()
    } else {
        format!("tensor '{}'", t.name)
    };
    if t.data_location.value() == 1 {
        return Err(format!(
            "{label} stores its data in an external file; re-export the model with the weights embedded"
        ));
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{label} has a negative dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let numel: usize = shape.iter().product();
    let raw: &[u8] = &t.raw_data;
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

/// Parses ONNX bytes into a checked [`Graph`].
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Graph> {
    if bytes.is_empty() {
        return Err(invalid(path, "the file is empty, not an ONNX model"));
    }
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
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
    for init in &g.initializer {
        let t = tensor_from_proto(init).map_err(|e| invalid(path, e))?;
        consts.insert(init.name.clone(), t);
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
    let input_dims: Vec<Option<usize>> = input
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .and_then(|t| t.tensor_type().shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .skip(1)
                .map(|d| (d.has_dim_value() && d.dim_value() > 0).then(|| d.dim_value() as usize))
                .collect()
        })
        .unwrap_or_default();
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
    Ok(Graph {
        nodes,
        consts,
        input: input.name.clone(),
        input_dims,
        outputs,
        opset,
        folded: HashMap::new(),
    })
}
