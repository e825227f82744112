//! Activations, element-wise arithmetic with broadcasting, clipping and reductions.

use burn::tensor::{activation, Tensor};

use super::{
    float_input, host_scalar, input, int_input, one, optional, to_float, unary, OpCtx, OpResult,
};
use crate::error::OpError;
use crate::graph::Node;
use crate::value::{broadcast_shapes, norm_axis, FloatValue, IntValue, Layout, Value, MAX_RANK};

type T = Tensor<MAX_RANK>;

pub(crate) fn relu(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    // On the CPU: the same values, keeping one bit per value for the backward pass. An
    // element-wise operator reads a batch-innermost value as it is held.
    match crate::kernels::relu(&x.t) {
        Some(t) => one(x.map(|_| t)),
        None => one(x.map(activation::relu)),
    }
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
        // x/2 · (1 + erf(x/√2)), composed from erf so that its gradient is erf's exact
        // one on every backend (burn's fused GELU backward on wgpu was 2-8e-4 off float64
        // on the transformer fixtures).
        "none" => unary(ctx, i, |x: T| {
            x.clone().mul_scalar(0.5) * x.div_scalar(std::f64::consts::SQRT_2).erf().add_scalar(1.0)
        }),
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
pub(crate) fn broadcast_index(mut lin: usize, out: &[usize], inp: &[usize]) -> usize {
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

pub(crate) fn add(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    // Set by `Graph::fuse` when it removed the Relu that read this node's output.
    let fused_relu = n.int(crate::graph::Graph::FUSED_RELU, 0)? != 0;
    add_relu(ctx, n, i, fused_relu)
}

/// The sum of two values, as the `Add` operator computes it, and then burn's ReLU when
/// `fused_relu` (also for a `Conv` that absorbed a residual sum, when its own path could not
/// add it).
pub(crate) fn add_relu(
    ctx: &OpCtx<'_>,
    n: &Node,
    i: &[Option<Value>],
    fused_relu: bool,
) -> OpResult {
    if let (Some(Some(Value::Float(a))), Some(Some(Value::Float(b)))) = (i.first(), i.get(1)) {
        // A residual sum of a batch-innermost value and a standard one (a block's input that
        // came from another operator) holds both batch-innermost, so that the blocks after it
        // stay so.
        let held = |v: &FloatValue| super::batch_inner(v).map(FloatValue::batch_inner);
        let (a, b) = match (a.layout, b.layout) {
            (Layout::BatchInner, Layout::Standard) if a.shape == b.shape => {
                (a.clone(), held(b).unwrap_or_else(|| b.clone()))
            }
            (Layout::Standard, Layout::BatchInner) if a.shape == b.shape => {
                (held(a).unwrap_or_else(|| a.clone()), b.clone())
            }
            _ => (a.clone(), b.clone()),
        };
        let (a, b) = (&a, &b);
        // Two values of one shape held the same way add as they are held.
        if a.shape == b.shape && a.layout == b.layout {
            if fused_relu {
                if let Some(t) = crate::kernels::add_relu(&a.t, &b.t) {
                    return one(a.map(|_| t));
                }
                let sum = Value::Float(a.map(|t| t + b.t.clone()));
                return relu(ctx, n, &[Some(sum)]);
            }
            return one(a.map(|t| t + b.t.clone()));
        }
    }
    // Otherwise (broadcasting, integers, or one value held batch-innermost): the standard
    // layout.
    let i = i
        .iter()
        .map(|v| match v {
            Some(Value::Float(f)) => super::standard(f.clone()).map(|f| Some(Value::Float(f))),
            v => Ok(v.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sum = binary(ctx, &i, |a, b| a + b, i64::checked_add)?;
    if fused_relu {
        return relu(ctx, n, &sum.into_iter().map(Some).collect::<Vec<_>>());
    }
    Ok(sum)
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

pub(crate) fn hard_sigmoid(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let alpha = n.float("alpha", 0.2)?;
    let beta = n.float("beta", 0.5)?;
    unary(ctx, i, |t| {
        t.mul_scalar(alpha).add_scalar(beta).clamp(0.0, 1.0)
    })
}

pub(crate) fn hard_swish(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    // x · max(0, min(1, x/6 + 1/2)), as PyTorch's hardswish.
    unary(ctx, i, |t| {
        t.clone() * t.div_scalar(6.0).add_scalar(0.5).clamp(0.0, 1.0)
    })
}

pub(crate) fn softplus(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| activation::softplus(t, 1.0))
}

pub(crate) fn floor(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.floor())
}

pub(crate) fn ceil(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.ceil())
}

pub(crate) fn sign(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    unary(ctx, i, |t| t.sign())
}

/// Variadic element-wise `Min`, `Max`, `Sum` and `Mean` (opset 8+ broadcasting).
fn variadic(ctx: &OpCtx<'_>, i: &[Option<Value>], f: fn(T, T) -> T, mean: bool) -> OpResult {
    let vals: Vec<FloatValue> = i
        .iter()
        .flatten()
        .map(|v| to_float(ctx, v))
        .collect::<Result<_, _>>()?;
    let Some(first) = vals.first() else {
        return Err(OpError::new("needs at least one input"));
    };
    let mut shape = first.shape.clone();
    let mut t = first.t.clone();
    for v in &vals[1..] {
        shape = broadcast_shapes(&shape, &v.shape)?;
        let p = crate::value::padded(&shape)?;
        t = f(t.expand(p), v.t.clone().expand(p));
    }
    if mean {
        t = t.div_scalar(vals.len() as f64);
    }
    one(FloatValue::from_padded(t, shape))
}

pub(crate) fn min(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    variadic(ctx, i, |a, b| a.min_pair(b), false)
}

pub(crate) fn max(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    variadic(ctx, i, |a, b| a.max_pair(b), false)
}

pub(crate) fn sum(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    variadic(ctx, i, |a, b| a + b, false)
}

pub(crate) fn mean(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    variadic(ctx, i, |a, b| a + b, true)
}

/// `Mod`: the remainder with the divisor's sign (`fmod=0`, Python's `%`) or the dividend's
/// (`fmod=1`, C's `fmod`).
pub(crate) fn modulo(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let c_style = n.int("fmod", 0)? != 0;
    if let (Value::Int(_), Value::Int(_)) = (input(i, 0)?, input(i, 1)?) {
        let f: fn(i64, i64) -> Option<i64> = if c_style {
            i64::checked_rem
        } else {
            |a, b| {
                a.checked_rem_euclid(b)
                    .map(|r| if b < 0 && r != 0 { r + b } else { r })
            }
        };
        return binary(ctx, i, |a, _| a, f);
    }
    if c_style {
        binary(
            ctx,
            i,
            |a, b| {
                let q = a.clone() / b.clone();
                a - q.clone().sign() * q.abs().floor() * b
            },
            |a, b| a.checked_rem(b),
        )
    } else {
        binary(
            ctx,
            i,
            |a, b| a.clone() - (a / b.clone()).floor() * b,
            |a, b| a.checked_rem(b),
        )
    }
}
