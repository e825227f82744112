//! Comparisons, boolean logic and `Where`.
//!
//! Exported graphs use these mostly on shapes (`Equal(shape, -1)` feeding a `Where` that
//! picks an `Expand` target in a ViT's legacy export), which stay exact on the host. A
//! comparison of a tensor computed on the device gives a device tensor of 0.0 / 1.0 (ONNX
//! booleans have no gradient, so nothing is lost), which `Where`, `Not`, `And` and `Or`
//! accept like host booleans.

use burn::tensor::{Bool, Tensor, TensorData};

use super::elementwise::{broadcast_index, int_broadcast_to};
use super::{input, one, to_float, OpCtx, OpResult};
use crate::error::OpError;
use crate::graph::Node;
use crate::value::{broadcast_shapes, padded, FloatValue, IntValue, Value, MAX_RANK};

type T = Tensor<MAX_RANK>;

/// The values of a float tensor known on the host (a small constant), if any.
fn host_floats(v: &Value) -> Option<(Vec<f64>, Vec<usize>)> {
    match v {
        Value::Int(i) => Some((i.data.iter().map(|&x| x as f64).collect(), i.shape.clone())),
        Value::Float(f) => f
            .host
            .as_ref()
            .map(|h| (h.iter().map(|&x| f64::from(x)).collect(), f.shape.clone())),
    }
}

/// A binary comparison: exact on the host when both sides are known there, otherwise a
/// device tensor of 0.0 / 1.0.
fn compare(
    ctx: &OpCtx<'_>,
    i: &[Option<Value>],
    host: fn(f64, f64) -> bool,
    device: fn(T, T) -> Tensor<MAX_RANK, Bool>,
) -> OpResult {
    let (a, b) = (input(i, 0)?, input(i, 1)?);
    if let (Some((x, xs)), Some((y, ys))) = (host_floats(a), host_floats(b)) {
        let shape = broadcast_shapes(&xs, &ys)?;
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|l| {
                let p = x[broadcast_index(l, &shape, &xs)];
                let q = y[broadcast_index(l, &shape, &ys)];
                i64::from(host(p, q))
            })
            .collect();
        return Ok(vec![Value::Int(IntValue { shape, data })]);
    }
    let (x, y) = (to_float(ctx, a)?, to_float(ctx, b)?);
    let shape = broadcast_shapes(&x.shape, &y.shape)?;
    let p = padded(&shape)?;
    let mask = device(x.t.expand(p), y.t.expand(p));
    one(FloatValue::from_padded(mask.float(), shape))
}

pub(crate) fn equal(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    compare(ctx, i, |a, b| a == b, |a, b| a.equal(b))
}

pub(crate) fn less(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    compare(ctx, i, |a, b| a < b, |a, b| a.lower(b))
}

pub(crate) fn greater(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    compare(ctx, i, |a, b| a > b, |a, b| a.greater(b))
}

pub(crate) fn less_or_equal(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    compare(ctx, i, |a, b| a <= b, |a, b| a.lower_equal(b))
}

pub(crate) fn greater_or_equal(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    compare(ctx, i, |a, b| a >= b, |a, b| a.greater_equal(b))
}

/// Element-wise logic on booleans (host 0/1 integers or device 0.0/1.0 tensors).
fn logic(ctx: &OpCtx<'_>, i: &[Option<Value>], host: fn(bool, bool) -> bool) -> OpResult {
    let (a, b) = (input(i, 0)?, input(i, 1)?);
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let shape = broadcast_shapes(&x.shape, &y.shape)?;
        let (x, y) = (int_broadcast_to(x, &shape), int_broadcast_to(y, &shape));
        let data = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(&p, &q)| i64::from(host(p != 0, q != 0)))
            .collect();
        return Ok(vec![Value::Int(IntValue { shape, data })]);
    }
    // On 0/1 floats: and = a·b, or = a + b − a·b, xor = a + b − 2·a·b.
    let (x, y) = (to_float(ctx, a)?, to_float(ctx, b)?);
    let shape = broadcast_shapes(&x.shape, &y.shape)?;
    let both = x.t.clone() * y.t.clone();
    let t = match (host(true, true), host(true, false)) {
        (true, false) => both,
        (true, true) => x.t + y.t - both,
        (false, true) => x.t + y.t - both.mul_scalar(2.0),
        _ => return Err(OpError::new("unsupported boolean operation")),
    };
    one(FloatValue::from_padded(t, shape))
}

pub(crate) fn and(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    logic(ctx, i, |a, b| a && b)
}

pub(crate) fn or(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    logic(ctx, i, |a, b| a || b)
}

pub(crate) fn xor(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    logic(ctx, i, |a, b| a != b)
}

pub(crate) fn not(_: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    match input(i, 0)? {
        Value::Int(v) => Ok(vec![Value::Int(IntValue {
            shape: v.shape.clone(),
            data: v.data.iter().map(|&x| i64::from(x == 0)).collect(),
        })]),
        Value::Float(f) => one(f.map(|t| t.neg().add_scalar(1.0))),
    }
}

/// `Where(cond, x, y)`: `x` where `cond` is true, else `y`, all three broadcast together.
pub(crate) fn where_(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let (c, a, b) = (input(i, 0)?, input(i, 1)?, input(i, 2)?);
    let shape = broadcast_shapes(&broadcast_shapes(c.shape(), a.shape())?, b.shape())?;
    if let (Value::Int(c), Value::Int(x), Value::Int(y)) = (c, a, b) {
        let (c, x, y) = (
            int_broadcast_to(c, &shape),
            int_broadcast_to(x, &shape),
            int_broadcast_to(y, &shape),
        );
        let data = (0..c.data.len())
            .map(|k| if c.data[k] != 0 { x.data[k] } else { y.data[k] })
            .collect();
        return Ok(vec![Value::Int(IntValue { shape, data })]);
    }
    let p = padded(&shape)?;
    let mask: Tensor<MAX_RANK, Bool> = match c {
        Value::Int(c) => {
            let c = int_broadcast_to(c, &shape);
            let bits: Vec<bool> = c.data.iter().map(|&v| v != 0).collect();
            Tensor::from_data(TensorData::new(bits, p.to_vec()), ctx.device)
        }
        Value::Float(f) => f.t.clone().expand(p).greater_elem(0.5),
    };
    let (x, y) = (to_float(ctx, a)?, to_float(ctx, b)?);
    let out = y.t.expand(p).mask_where(mask, x.t.expand(p));
    one(FloatValue::from_padded(out, shape))
}
