//! Shape plumbing: reshapes, concatenation, gathers, slices, padding and casts.
//!
//! Integer tensors stay on the host (see [`crate::value`]); float tensors are reshaped or
//! indexed on the device.

use burn::tensor::ops::PadMode;
use burn::tensor::{Int, Tensor, TensorData};

use super::elementwise::int_broadcast_to;
use super::{host_scalar, input, int_input, one, optional, to_float, to_usize, OpCtx, OpResult};
use crate::error::OpError;
use crate::graph::{Attr, HostData, Node};
use crate::value::{broadcast_shapes, norm_axis, padded, FloatValue, IntValue, Value, MAX_RANK};

/// Reshapes any value (host integers or a device tensor).
fn reshape_value(v: &Value, shape: Vec<usize>) -> OpResult {
    match v {
        Value::Float(f) => one(f.reshape(shape)?),
        Value::Int(i) => {
            let n: usize = shape.iter().product();
            if n != i.data.len() {
                return Err(OpError::new(format!(
                    "cannot reshape {:?} into {shape:?}",
                    i.shape
                )));
            }
            Ok(vec![Value::Int(IntValue {
                shape,
                data: i.data.clone(),
            })])
        }
    }
}

pub(crate) fn identity(_: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    Ok(vec![input(i, 0)?.clone()])
}

pub(crate) fn dropout(_: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    if n.outputs.get(1).is_some_and(|o| !o.is_empty()) {
        return Err(OpError::new("the mask output of Dropout is not supported"));
    }
    // Inference: dropout is the identity.
    Ok(vec![input(i, 0)?.clone()])
}

pub(crate) fn flatten(_: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let shape = x.shape();
    let r = shape.len() as i64;
    let mut axis = n.int("axis", 1)?;
    if axis < 0 {
        axis += r;
    }
    if axis < 0 || axis > r {
        return Err(OpError::new(format!(
            "axis {axis} out of range for rank {r}"
        )));
    }
    let a = axis as usize;
    let outer: usize = shape[..a].iter().product();
    let inner: usize = shape[a..].iter().product();
    reshape_value(x, vec![outer, inner])
}

pub(crate) fn reshape(_: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let target = &int_input(i, 1)?.data;
    let allowzero = n.int("allowzero", 0)? != 0;
    let in_shape = x.shape();
    let total: usize = in_shape.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (k, &s) in target.iter().enumerate() {
        match s {
            0 if !allowzero => out.push(*in_shape.get(k).ok_or_else(|| {
                OpError::new(format!("shape {target:?} copies axis {k} of {in_shape:?}"))
            })?),
            -1 => {
                if infer.replace(k).is_some() {
                    return Err(OpError::new(format!("shape {target:?} has two -1 entries")));
                }
                out.push(1);
            }
            s => out.push(to_usize(s, "a reshape dimension")?),
        }
    }
    if let Some(k) = infer {
        let known: usize = out.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(OpError::new(format!(
                "cannot reshape {in_shape:?} into {target:?}"
            )));
        }
        out[k] = total / known;
    }
    reshape_value(x, out)
}

pub(crate) fn transpose(_: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let r = x.shape().len();
    let perm: Vec<usize> = match n.ints("perm")? {
        Some(p) => p
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if perm.len() != r || seen != (0..r).collect::<Vec<_>>() {
        return Err(OpError::new(format!(
            "perm {perm:?} is not a permutation of rank {r}"
        )));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    match x {
        Value::Float(f) => {
            let off = MAX_RANK - r;
            let mut axes = [0usize; MAX_RANK];
            for (k, a) in axes.iter_mut().enumerate() {
                *a = if k < off { k } else { off + perm[k - off] };
            }
            one(FloatValue::from_padded(f.t.clone().permute(axes), shape))
        }
        Value::Int(v) if r <= 1 => Ok(vec![Value::Int(v.clone())]),
        Value::Int(v) if r == 2 => {
            let (rows, cols) = (v.shape[0], v.shape[1]);
            let data = (0..rows * cols)
                .map(|l| v.data[(l % rows) * cols + l / rows])
                .collect();
            Ok(vec![Value::Int(IntValue { shape, data })])
        }
        Value::Int(_) => Err(OpError::new(
            "transposing integer tensors of rank > 2 is not supported",
        )),
    }
}

pub(crate) fn concat(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let vals: Vec<&Value> = i.iter().flatten().collect();
    let first = vals
        .first()
        .ok_or_else(|| OpError::new("Concat needs at least one input"))?;
    let r = first.shape().len();
    let axis = norm_axis(
        n.attrs
            .get("axis")
            .map(|_| n.int("axis", 0))
            .transpose()?
            .ok_or_else(|| OpError::new("missing attribute 'axis'"))?,
        r,
    )?;
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for v in &vals {
        let s = v.shape();
        let compatible = s.len() == r && (0..r).all(|k| k == axis || s[k] == first.shape()[k]);
        if !compatible {
            return Err(OpError::new(format!(
                "cannot concatenate shapes {:?} and {s:?} along axis {axis}",
                first.shape()
            )));
        }
        shape[axis] += s[axis];
    }
    if vals.iter().all(|v| matches!(v, Value::Int(_))) {
        let outer: usize = shape[..axis].iter().product();
        let mut data = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for v in &vals {
                let Value::Int(iv) = v else { unreachable!() };
                let chunk: usize = iv.shape[axis..].iter().product();
                data.extend_from_slice(&iv.data[o * chunk..(o + 1) * chunk]);
            }
        }
        return Ok(vec![Value::Int(IntValue { shape, data })]);
    }
    let floats = vals
        .iter()
        .map(|v| to_float(ctx, v).map(|f| f.t))
        .collect::<Result<Vec<_>, _>>()?;
    let d = MAX_RANK - r + axis;
    one(FloatValue::from_padded(Tensor::cat(floats, d), shape))
}

pub(crate) fn shape(_: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let s = input(i, 0)?.shape();
    let r = s.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clampi(n.int("start", 0)?);
    let end = clampi(n.int("end", r)?);
    let dims = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
    Ok(vec![Value::Int(IntValue::vector(dims))])
}

pub(crate) fn gather(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let data = input(i, 0)?;
    let idx = int_input(i, 1)?;
    let dshape = data.shape().to_vec();
    let axis = norm_axis(n.int("axis", 0)?, dshape.len())?;
    let dim = dshape[axis] as i64;
    let indices = idx
        .data
        .iter()
        .map(|&k| {
            let k2 = if k < 0 { k + dim } else { k };
            if (0..dim).contains(&k2) {
                Ok(k2)
            } else {
                Err(OpError::new(format!(
                    "index {k} out of range for axis {axis} of size {dim}"
                )))
            }
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let mut out_shape = dshape[..axis].to_vec();
    out_shape.extend(&idx.shape);
    out_shape.extend(&dshape[axis + 1..]);
    match data {
        Value::Int(d) => {
            let outer: usize = dshape[..axis].iter().product();
            let inner: usize = dshape[axis + 1..].iter().product();
            let mut out = Vec::with_capacity(out_shape.iter().product());
            for o in 0..outer {
                for &k in &indices {
                    let base = (o * dshape[axis] + k as usize) * inner;
                    out.extend_from_slice(&d.data[base..base + inner]);
                }
            }
            Ok(vec![Value::Int(IntValue {
                shape: out_shape,
                data: out,
            })])
        }
        Value::Float(f) => {
            let len = indices.len();
            let ind = Tensor::<1, Int>::from_data(TensorData::new(indices, [len]), ctx.device);
            let mut flat_shape = dshape[..axis].to_vec();
            flat_shape.push(len);
            flat_shape.extend(&dshape[axis + 1..]);
            let selected =
                FloatValue::from_padded(f.t.clone().select(f.padded_axis(axis), ind), flat_shape);
            one(selected.reshape(out_shape)?)
        }
    }
}

/// The `axes` of Unsqueeze/Squeeze: an attribute before opset 13, input #1 from then on.
fn axes_of(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> Result<Option<Vec<i64>>, OpError> {
    if ctx.opset >= 13 {
        match optional(i, 1) {
            Some(_) => Ok(Some(int_input(i, 1)?.data.clone())),
            None => Ok(None),
        }
    } else {
        n.ints("axes")
    }
}

pub(crate) fn unsqueeze(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let axes = axes_of(ctx, n, i)?.ok_or_else(|| OpError::new("missing axes"))?;
    let out_rank = x.shape().len() + axes.len();
    let mut axes = axes
        .iter()
        .map(|&a| norm_axis(a, out_rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    let mut shape = x.shape().to_vec();
    for a in axes {
        shape.insert(a, 1);
    }
    reshape_value(x, shape)
}

pub(crate) fn squeeze(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let s = x.shape();
    let axes: Vec<usize> = match axes_of(ctx, n, i)? {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, s.len()))
            .collect::<Result<_, _>>()?,
        None => (0..s.len()).filter(|&k| s[k] == 1).collect(),
    };
    if let Some(&bad) = axes.iter().find(|&&a| s[a] != 1) {
        return Err(OpError::new(format!(
            "cannot squeeze axis {bad} of size {} (shape {s:?})",
            s[bad]
        )));
    }
    let shape = (0..s.len())
        .filter(|k| !axes.contains(k))
        .map(|k| s[k])
        .collect();
    reshape_value(x, shape)
}

pub(crate) fn slice(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let s = x.shape().to_vec();
    let starts = &int_input(i, 1)?.data;
    let ends = &int_input(i, 2)?.data;
    let axes: Vec<usize> = match optional(i, 3) {
        Some(_) => int_input(i, 3)?
            .data
            .iter()
            .map(|&a| norm_axis(a, s.len()))
            .collect::<Result<_, _>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps: Vec<i64> = match optional(i, 4) {
        Some(_) => int_input(i, 4)?.data.clone(),
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(OpError::new(
            "starts, ends, axes and steps differ in length",
        ));
    }
    // (start, count, step) per axis, clamped as ONNX specifies.
    let mut ranges: Vec<(i64, usize, i64)> = s.iter().map(|&d| (0, d, 1)).collect();
    for k in 0..starts.len() {
        let d = s[axes[k]] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(OpError::new("Slice step must not be 0"));
        }
        let wrap = |v: i64| if v < 0 { v + d } else { v };
        let (b, e) = if step > 0 {
            (wrap(starts[k]).clamp(0, d), wrap(ends[k]).clamp(0, d))
        } else {
            (
                wrap(starts[k]).clamp(0, d - 1),
                wrap(ends[k]).clamp(-1, d - 1),
            )
        };
        let count = if step > 0 {
            ((e - b).max(0) + step - 1) / step
        } else {
            ((b - e).max(0) + (-step) - 1) / (-step)
        };
        ranges[axes[k]] = (b, count as usize, step);
    }
    let out_shape: Vec<usize> = ranges.iter().map(|r| r.1).collect();
    match x {
        Value::Float(f) => {
            let mut t = f.t.clone();
            for (a, &(b, count, step)) in ranges.iter().enumerate() {
                if step == 1 {
                    if (b, count) != (0, s[a]) {
                        t = t.narrow(f.padded_axis(a), b as usize, count);
                    }
                } else {
                    // A strided (or reversed) slice gathers its positions.
                    let idx: Vec<i64> = (0..count as i64).map(|k| b + k * step).collect();
                    let idx =
                        Tensor::<1, Int>::from_data(TensorData::new(idx, [count]), ctx.device);
                    t = t.select(f.padded_axis(a), idx);
                }
            }
            one(FloatValue::from_padded(t, out_shape))
        }
        Value::Int(v) => {
            let n_out: usize = out_shape.iter().product();
            let mut data = Vec::with_capacity(n_out);
            for l in 0..n_out {
                let (mut rem, mut src, mut stride) = (l, 0i64, 1i64);
                for a in (0..s.len()).rev() {
                    let o = (rem % out_shape[a]) as i64;
                    rem /= out_shape[a];
                    src += (ranges[a].0 + o * ranges[a].2) * stride;
                    stride *= s[a] as i64;
                }
                data.push(v.data[src as usize]);
            }
            Ok(vec![Value::Int(IntValue {
                shape: out_shape,
                data,
            })])
        }
    }
}

pub(crate) fn pad(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = to_float(ctx, input(i, 0)?)?;
    let r = x.rank();
    let (pads, value, axes) = if ctx.opset >= 11 {
        let pads = int_input(i, 1)?.data.clone();
        let value = match optional(i, 2) {
            Some(v) => host_scalar(v, "Pad constant_value")?,
            None => 0.0,
        };
        let axes = match optional(i, 3) {
            Some(_) => Some(
                int_input(i, 3)?
                    .data
                    .iter()
                    .map(|&a| norm_axis(a, r))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        (pads, value, axes)
    } else {
        let pads = n
            .ints("pads")?
            .ok_or_else(|| OpError::new("missing attribute 'pads'"))?;
        (pads, n.float("value", 0.0)?, None)
    };
    let axes = axes.unwrap_or_else(|| (0..r).collect());
    if pads.len() != 2 * axes.len() {
        return Err(OpError::new(format!(
            "pads {pads:?} should have {} values",
            2 * axes.len()
        )));
    }
    let mut pairs = vec![(0usize, 0usize); MAX_RANK];
    let mut shape = x.shape.clone();
    for (k, &a) in axes.iter().enumerate() {
        let (b, e) = (
            to_usize(pads[k], "a pad")?,
            to_usize(pads[k + axes.len()], "a pad")?,
        );
        pairs[x.padded_axis(a)] = (b, e);
        shape[a] = shape[a].saturating_add(b).saturating_add(e);
    }
    ctx.check_shape(&shape, true)?;
    let mode = match n.string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant(value),
        "reflect" => {
            if axes
                .iter()
                .enumerate()
                .any(|(k, &a)| pads[k].max(pads[k + axes.len()]) as usize >= x.shape[a])
            {
                return Err(OpError::new(
                    "reflect padding must be smaller than the axis",
                ));
            }
            PadMode::Reflect
        }
        "edge" => PadMode::Edge,
        other => Err(OpError::new(format!("unknown Pad mode '{other}'")))?,
    };
    one(FloatValue::from_padded(x.t.pad(pairs, mode), shape))
}

pub(crate) fn cast(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let to = n.int("to", 1)?;
    let to_float_type = matches!(to, 1 | 10 | 11 | 16);
    match (x, to_float_type) {
        (Value::Float(_), true) | (Value::Int(_), false) => Ok(vec![x.clone()]),
        (Value::Int(_), true) => one(to_float(ctx, x)?),
        (Value::Float(f), false) => match &f.host {
            Some(h) => Ok(vec![Value::Int(IntValue {
                shape: f.shape.clone(),
                data: h
                    .iter()
                    .map(|&v| {
                        if to == 9 {
                            i64::from(v != 0.0)
                        } else {
                            v as i64
                        }
                    })
                    .collect(),
            })]),
            // A computed tensor stays on the device: booleans as 0.0 / 1.0 (what the
            // comparison operators give), integers truncated towards zero.
            None if to == 9 => one(f.map(|t| t.not_equal_elem(0.0).float())),
            None => one(f.map(|t| t.clone().sign() * t.abs().floor())),
        },
    }
}

pub(crate) fn constant_of_shape(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let shape: Vec<usize> = int_input(i, 0)?
        .data
        .iter()
        .map(|&d| to_usize(d, "a dimension"))
        .collect::<Result<_, _>>()?;
    ctx.check_shape(&shape, false)?;
    let count: usize = shape.iter().product();
    match n.attrs.get("value") {
        Some(Attr::Tensor(t)) => match &t.data {
            HostData::I64(v) => Ok(vec![Value::Int(IntValue {
                shape,
                data: vec![*v.first().unwrap_or(&0); count],
            })]),
            HostData::F32(v) => one(FloatValue::from_host(
                vec![*v.first().unwrap_or(&0.0); count],
                shape,
                ctx.device,
            )?),
        },
        _ => one(FloatValue::from_host(vec![0.0; count], shape, ctx.device)?),
    }
}

pub(crate) fn expand(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let target: Vec<usize> = int_input(i, 1)?
        .data
        .iter()
        .map(|&d| to_usize(d, "a dimension"))
        .collect::<Result<_, _>>()?;
    let shape = broadcast_shapes(x.shape(), &target)?;
    ctx.check_shape(&shape, matches!(x, Value::Float(_)))?;
    match x {
        Value::Float(f) => one(FloatValue::from_padded(
            f.t.clone().expand(padded(&shape)?),
            shape,
        )),
        Value::Int(v) => Ok(vec![Value::Int(int_broadcast_to(v, &shape))]),
    }
}

/// `Split`: sizes from input #1 (opset 13+) or the `split` attribute (before 13), else
/// `num_outputs` parts (opset 18; the last one smaller), else equal parts per output.
pub(crate) fn split(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let s = x.shape().to_vec();
    let axis = norm_axis(n.int("axis", 0)?, s.len())?;
    let dim = s[axis];
    let given = if ctx.opset >= 13 {
        match optional(i, 1) {
            Some(_) => Some(int_input(i, 1)?.data.clone()),
            None => None,
        }
    } else {
        n.ints("split")?
    };
    let outputs = n.outputs.len();
    let sizes: Vec<usize> = match given {
        Some(v) => v
            .iter()
            .map(|&d| to_usize(d, "a split size"))
            .collect::<Result<_, _>>()?,
        None => {
            let parts = match n.attrs.get("num_outputs") {
                Some(_) => to_usize(n.int("num_outputs", 1)?, "num_outputs")?,
                None => outputs,
            };
            if parts == 0 {
                return Err(OpError::new("Split into 0 parts"));
            }
            let chunk = dim.div_ceil(parts);
            (0..parts)
                .map(|k| chunk.min(dim.saturating_sub(k * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != dim || sizes.len() != outputs {
        return Err(OpError::new(format!(
            "split sizes {sizes:?} do not divide axis {axis} of size {dim} into {outputs} outputs"
        )));
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for len in sizes {
        let mut shape = s.clone();
        shape[axis] = len;
        out.push(match x {
            Value::Float(f) => Value::Float(FloatValue::from_padded(
                f.t.clone().narrow(f.padded_axis(axis), start, len),
                shape,
            )),
            Value::Int(v) => {
                let outer: usize = s[..axis].iter().product();
                let inner: usize = s[axis + 1..].iter().product();
                let mut data = Vec::with_capacity(outer * len * inner);
                for o in 0..outer {
                    let base = (o * dim + start) * inner;
                    data.extend_from_slice(&v.data[base..base + len * inner]);
                }
                Value::Int(IntValue { shape, data })
            }
        });
        start += len;
    }
    Ok(out)
}

/// `Range(start, limit, delta)` on host scalars.
pub(crate) fn range(_: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let v: Vec<i64> = (0..3)
        .map(|k| match input(i, k)? {
            Value::Int(v) if v.data.len() == 1 => Ok(v.data[0]),
            _ => Err(OpError::new(
                "Range needs integer scalars known when the graph runs",
            )),
        })
        .collect::<Result<_, _>>()?;
    let (start, limit, delta) = (v[0], v[1], v[2]);
    if delta == 0 {
        return Err(OpError::new("Range delta must not be 0"));
    }
    let count = ((limit - start) as f64 / delta as f64).ceil().max(0.0) as usize;
    if count > 1 << 24 {
        return Err(OpError::new(format!("Range of {count} values is too long")));
    }
    let data = (0..count as i64).map(|k| start + k * delta).collect();
    Ok(vec![Value::Int(IntValue::vector(data))])
}

/// `Tile`: repeats each axis `repeats[k]` times.
pub(crate) fn tile(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let x = input(i, 0)?;
    let reps = &int_input(i, 1)?.data;
    let s = x.shape().to_vec();
    if reps.len() != s.len() {
        return Err(OpError::new(format!(
            "repeats {reps:?} do not match rank {}",
            s.len()
        )));
    }
    let out: Vec<usize> = s
        .iter()
        .zip(reps)
        .map(|(&d, &r)| to_usize(r, "a repeat count").map(|r| d.saturating_mul(r)))
        .collect::<Result<_, _>>()?;
    ctx.check_shape(&out, true)?;
    match x {
        Value::Float(f) => {
            let mut t = f.t.clone();
            let mut shape = s.clone();
            for (a, &r) in reps.iter().enumerate() {
                let r = to_usize(r, "a repeat count")?;
                if r != 1 {
                    t = t.repeat_dim(f.padded_axis(a), r);
                    shape[a] *= r;
                }
            }
            one(FloatValue::from_padded(t, shape))
        }
        Value::Int(_) => Err(OpError::new("Tile of integer tensors is not supported")),
    }
}

/// `ScatterND` with `reduction="none"`: slices of `data` addressed by the last axis of
/// `indices` are replaced by `updates`. Swin's shifted-window attention builds its mask
/// this way. Float data stays on the device (and differentiable): the updates are added
/// into zeros at their flat positions, then selected where a host-made mask is set.
pub(crate) fn scatter_nd(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let reduction = n.string("reduction", "none")?;
    if reduction != "none" {
        return Err(OpError::new(format!(
            "ScatterND reduction '{reduction}' is not supported"
        )));
    }
    let data = input(i, 0)?;
    let idx = int_input(i, 1)?;
    let upd = input(i, 2)?;
    let ds = data.shape().to_vec();
    let k = *idx.shape.last().unwrap_or(&0);
    if idx.shape.is_empty() || k == 0 || k > ds.len() {
        return Err(OpError::new(format!(
            "indices of shape {:?} do not address data of shape {ds:?}",
            idx.shape
        )));
    }
    let slice: usize = ds[k..].iter().product();
    let tuples = idx.data.len() / k;
    let mut expect = idx.shape[..idx.shape.len() - 1].to_vec();
    expect.extend(&ds[k..]);
    if upd.shape() != expect.as_slice() {
        return Err(OpError::new(format!(
            "updates of shape {:?}, expected {expect:?}",
            upd.shape()
        )));
    }
    // The flat position of every updated element, in the updates' order.
    let mut positions = Vec::with_capacity(tuples * slice);
    for t in 0..tuples {
        let mut base = 0usize;
        for (a, &d) in ds[..k].iter().enumerate() {
            let v = idx.data[t * k + a];
            let v = if v < 0 { v + d as i64 } else { v };
            if !(0..d as i64).contains(&v) {
                return Err(OpError::new(format!(
                    "index {v} out of range for axis {a} of size {d}"
                )));
            }
            base = base * d + v as usize;
        }
        positions.extend((0..slice).map(|s| base * slice + s));
    }
    let total: usize = ds.iter().product();
    match (data, upd) {
        (Value::Int(d), Value::Int(u)) => {
            let mut out = d.data.clone();
            for (p, &v) in positions.iter().zip(&u.data) {
                out[*p] = v;
            }
            Ok(vec![Value::Int(IntValue {
                shape: ds,
                data: out,
            })])
        }
        _ => {
            let (d, u) = (to_float(ctx, data)?, to_float(ctx, upd)?);
            let flat_d = d.reshape(vec![total])?.at_rank::<1>("ScatterND data")?;
            let flat_u = u
                .reshape(vec![positions.len()])?
                .at_rank::<1>("ScatterND updates")?;
            let mut mask = vec![false; total];
            for &p in &positions {
                mask[p] = true;
            }
            let pos: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
            let len = pos.len();
            let pos = Tensor::<1, Int>::from_data(TensorData::new(pos, [len]), ctx.device);
            let scattered = Tensor::<1>::zeros([total], ctx.device).scatter(
                0,
                pos,
                flat_u,
                burn::tensor::IndexingUpdateOp::Add,
            );
            let mask = Tensor::<1, burn::tensor::Bool>::from_data(
                TensorData::new(mask, [total]),
                ctx.device,
            );
            let out = flat_d.mask_where(mask, scattered);
            one(FloatValue::from_tensor(out)?.reshape(ds)?)
        }
    }
}
