//! Activations, element-wise arithmetic with broadcasting, clipping and reductions.

use burn::tensor::{activation, Tensor};

use super::{
    float_input, host_scalar, input, int_input, one, optional, to_float, unary, OpCtx, OpResult,
};
use crate::error::OpError;
use crate::graph::Node;
use crate::value::{broadcast_shapes, norm_axis, FloatValue, IntValue, Value, MAX_RANK};

type T = Tensor<MAX_RANK>;

pub(crate) fn relu(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, activation::relu)
}

pub(crate) fn leaky_relu(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let alpha = n.float("alpha", 0.01)? as f64;
    unary(ctx, i, |t| activation::leaky_relu(t, alpha))
}

pub(crate) fn prelu(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let slope = float_input(ctx, i, 1)?;
    let shape = broadcast_shapes(&x.shape, &slope.shape)?;
    if shape != x.shape {
        return Err(OpError::new(format!(
            "slope of shape {:?} does not broadcast to the input shape {:?}",
            slope.shape, x.shape
        )));
    }
    let t = x.t.clone().clamp_min(0.0) + slope.t * x.t.clamp_max(0.0);
    one(FloatValue::from_padded(t, shape))
}

pub(crate) fn sigmoid(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, activation::sigmoid)
}

pub(crate) fn tanh(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.tanh())
}

pub(crate) fn gelu(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    match n.string("approximate", "none")?.as_str() {
        "none" => unary(ctx, i, activation::gelu),
        "tanh" => unary(ctx, i, |x: T| {
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            let inner = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715))
                .mul_scalar((2.0f64 / std::f64::consts::PI).sqrt());
            x.mul_scalar(0.5) * (inner.tanh().add_scalar(1.0))
        }),
        other => Err(OpError::new(format!("unknown approximate mode '{other}'"))),
    }
}

pub(crate) fn erf(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.erf())
}

pub(crate) fn exp(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.exp())
}

pub(crate) fn log(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.log())
}

pub(crate) fn sqrt(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.sqrt())
}

pub(crate) fn reciprocal(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.recip())
}

pub(crate) fn neg(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    if let Value::Int(v) = input(i, 0)? {
        return Ok(vec![Value::Int(IntValue {
            shape: v.shape.clone(),
            data: v.data.iter().map(|x| -x).collect(),
        })]);
    }
    unary(ctx, i, |t| t.neg())
}

pub(crate) fn abs(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    if let Value::Int(v) = input(i, 0)? {
        return Ok(vec![Value::Int(IntValue {
            shape: v.shape.clone(),
            data: v.data.iter().map(|x| x.abs()).collect(),
        })]);
    }
    unary(ctx, i, |t| t.abs())
}

pub(crate) fn pow(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let e = input(i, 1)?;
    if let Ok(s) = host_scalar(e, "exponent") {
        return one(x.map(|t| {
            if s == 2.0 {
                t.clone() * t
            } else {
                t.powf_scalar(s)
            }
        }));
    }
    let e = to_float(ctx, e)?;
    let shape = broadcast_shapes(&x.shape, &e.shape)?;
    one(FloatValue::from_padded(x.t.powf(e.t), shape))
}

/// Maps an output index to the index of a broadcast input (NumPy rules).
fn broadcast_index(mut lin: usize, out: &[usize], inp: &[usize]) -> usize {
    let offset = out.len() - inp.len();
    let (mut idx, mut stride) = (0, 1);
    for k in (0..out.len()).rev() {
        let o = lin % out[k];
        lin /= out[k];
        if k >= offset {
            let d = inp[k - offset];
            if d != 1 {
                idx += o * stride;
            }
            stride *= d;
        }
    }
    idx
}

/// Broadcasts a host integer tensor to a shape.
pub(crate) fn int_broadcast_to(v: &IntValue, shape: &[usize]) -> IntValue {
    let n: usize = shape.iter().product();
    IntValue {
        shape: shape.to_vec(),
        data: (0..n)
            .map(|l| v.data[broadcast_index(l, shape, &v.shape)])
            .collect(),
    }
}

fn binary(
    ctx: &OpCtx<'_>,
    i: &[Option<Value>],
    ff: fn(T, T) -> T,
    fi: fn(i64, i64) -> Option<i64>,
) -> OpResult {
    let (a, b) = (input(i, 0)?, input(i, 1)?);
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let shape = broadcast_shapes(&x.shape, &y.shape)?;
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(n);
        for l in 0..n {
            let (p, q) = (
                x.data[broadcast_index(l, &shape, &x.shape)],
                y.data[broadcast_index(l, &shape, &y.shape)],
            );
            data.push(fi(p, q).ok_or_else(|| {
                OpError::new(format!("integer arithmetic failed on {p} and {q}"))
            })?);
        }
        return Ok(vec![Value::Int(IntValue { shape, data })]);
    }
    let (x, y) = (to_float(ctx, a)?, to_float(ctx, b)?);
    let shape = broadcast_shapes(&x.shape, &y.shape)?;
    one(FloatValue::from_padded(ff(x.t, y.t), shape))
}

pub(crate) fn add(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    binary(ctx, i, |a, b| a + b, i64::checked_add)
}

pub(crate) fn sub(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    binary(ctx, i, |a, b| a - b, i64::checked_sub)
}

pub(crate) fn mul(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    binary(ctx, i, |a, b| a * b, i64::checked_mul)
}

pub(crate) fn div(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    binary(ctx, i, |a, b| a / b, i64::checked_div)
}

pub(crate) fn clip(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let (lo, hi) = if ctx.opset >= 11 {
        (
            optional(i, 1)
                .map(|v| host_scalar(v, "Clip min"))
                .transpose()?,
            optional(i, 2)
                .map(|v| host_scalar(v, "Clip max"))
                .transpose()?,
        )
    } else {
        (
            n.attrs
                .get("min")
                .map(|_| n.float("min", 0.0))
                .transpose()?,
            n.attrs
                .get("max")
                .map(|_| n.float("max", 0.0))
                .transpose()?,
        )
    };
    one(x.map(|t| match (lo, hi) {
        (Some(a), Some(b)) => t.clamp(a, b),
        (Some(a), None) => t.clamp_min(a),
        (None, Some(b)) => t.clamp_max(b),
        (None, None) => t,
    }))
}

/// The axes of a Reduce* node (attribute before `attr_until_opset`, input #1 from then on).
fn reduce_axes(
    ctx: &OpCtx<'_>,
    n: &Node,
    i: &[Option<Value>],
    rank: usize,
    input_from_opset: i64,
) -> Result<Vec<usize>, OpError> {
    let axes = if ctx.opset >= input_from_opset {
        match optional(i, 1) {
            Some(_) => Some(int_input(i, 1)?.data.clone()),
            None => None,
        }
    } else {
        n.ints("axes")?
    };
    let mut axes = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            if n.int("noop_with_empty_axes", 0)? != 0 {
                Vec::new()
            } else {
                (0..rank).collect()
            }
        }
    };
    axes.sort_unstable();
    axes.dedup();
    Ok(axes)
}

fn reduce(
    ctx: &OpCtx<'_>,
    n: &Node,
    i: &[Option<Value>],
    input_from_opset: i64,
    f: fn(T, usize) -> T,
) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let axes = reduce_axes(ctx, n, i, x.rank(), input_from_opset)?;
    let mut t = x.t.clone();
    for &a in &axes {
        t = f(t, x.padded_axis(a));
    }
    let keep = n.int("keepdims", 1)? != 0;
    let mut shape = x.shape.clone();
    for &a in &axes {
        shape[a] = 1;
    }
    let out = FloatValue::from_padded(t, shape.clone());
    if keep {
        one(out)
    } else {
        let squeezed: Vec<usize> = shape
            .iter()
            .enumerate()
            .filter(|(k, _)| !axes.contains(k))
            .map(|(_, &d)| d)
            .collect();
        one(out.reshape(squeezed)?)
    }
}

pub(crate) fn reduce_mean(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    reduce(ctx, n, i, 18, |t, d| t.mean_dim(d))
}

pub(crate) fn reduce_sum(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    reduce(ctx, n, i, 13, |t, d| t.sum_dim(d))
}

pub(crate) fn reduce_max(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    reduce(ctx, n, i, 18, |t, d| t.max_dim(d))
}
