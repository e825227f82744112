//! Layers: convolution, pooling, batch normalization, dense products, softmax.

use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{activation, Tensor};

use super::{float_input, one, optional, standard, to_float, to_usize, OpCtx, OpResult};
use crate::error::OpError;
use crate::graph::Node;
use crate::value::{broadcast_shapes, norm_axis, FloatValue, Value};

/// Reads an attribute list of `n` non-negative integers (or a default).
fn usize_list(node: &Node, name: &str, n: usize, default: usize) -> Result<Vec<usize>, OpError> {
    match node.ints(name)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => v.iter().map(|&x| to_usize(x, name)).collect(),
        Some(v) => Err(OpError::new(format!(
            "attribute '{name}' has {} values, expected {n}",
            v.len()
        ))),
    }
}

/// Resolves ONNX padding (`pads` or `auto_pad`) into (begin, end) pairs per spatial axis.
fn resolve_pads(
    node: &Node,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<Vec<(usize, usize)>, OpError> {
    let n = kernel.len();
    match node.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => {
            let pads = usize_list(node, "pads", 2 * n, 0)?;
            Ok((0..n).map(|k| (pads[k], pads[k + n])).collect())
        }
        "VALID" => Ok(vec![(0, 0); n]),
        mode @ ("SAME_UPPER" | "SAME_LOWER") => Ok((0..n)
            .map(|k| {
                let out = input[k].div_ceil(strides[k]);
                let span = (kernel[k] - 1) * dilations[k] + 1;
                let total = ((out - 1) * strides[k] + span).saturating_sub(input[k]);
                let small = total / 2;
                if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(OpError::new(format!("unknown auto_pad '{other}'"))),
    }
}

/// The length of one spatial output axis (rounded down, or up with `ceil`), `None` when it
/// overflows; 0 when the padded input is shorter than the kernel (the operator reports that).
fn out_len(
    input: usize,
    pads: (usize, usize),
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil: bool,
) -> Option<u64> {
    let padded = (input as u64)
        .checked_add(pads.0 as u64)?
        .checked_add(pads.1 as u64)?;
    let span = (kernel.max(1) as u64 - 1)
        .checked_mul(dilation as u64)?
        .checked_add(1)?;
    let Some(room) = padded.checked_sub(span) else {
        return Some(0);
    };
    let stride = stride.max(1) as u64;
    Some(
        if ceil {
            room.div_ceil(stride)
        } else {
            room / stride
        } + 1,
    )
}

/// The sliding window of a convolution or pooling, per spatial axis.
struct Window<'a> {
    kernel: &'a [usize],
    strides: &'a [usize],
    dilations: &'a [usize],
    pads: &'a [(usize, usize)],
    /// Output lengths rounded up (pooling's `ceil_mode`).
    ceil: bool,
}

/// Checks the output size of a window sliding over `input` (spatial dimensions) with
/// `channels` output channels against the limit, before anything is allocated.
fn check_window_output(
    ctx: &OpCtx<'_>,
    channels: usize,
    input: &[usize],
    w: Window<'_>,
) -> Result<(), OpError> {
    let axes = input
        .iter()
        .zip(w.pads)
        .zip(w.kernel.iter().zip(w.dilations));
    for (a, ((&len, &(begin, end)), (&kernel, &dilation))) in axes.enumerate() {
        let padded = len as u128 + begin as u128 + end as u128;
        let span = (kernel.max(1) as u128 - 1) * dilation as u128 + 1;
        if span > padded {
            return Err(OpError::new(format!(
                "the window spans {span} values along spatial axis {a}, more than the {padded} \
                 of the padded input"
            )));
        }
    }
    let spatial: Vec<Option<u64>> = (0..w.kernel.len())
        .map(|a| {
            out_len(
                input[a],
                w.pads[a],
                w.kernel[a],
                w.strides[a],
                w.dilations[a],
                w.ceil,
            )
        })
        .collect();
    ctx.check_output(channels, &spatial)
}

fn pair(v: &[usize]) -> [usize; 2] {
    [v[0], v[1]]
}

fn pairs(v: &[(usize, usize)]) -> [(usize, usize); 2] {
    [v[0], v[1]]
}

pub(crate) fn conv(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let w = float_input(ctx, i, 1)?;
    let spatial = w.rank().saturating_sub(2);
    if spatial != 1 && spatial != 2 {
        return Err(OpError::new(format!(
            "only 1-D and 2-D convolutions are supported, weight shape {:?}",
            w.shape
        )));
    }
    if x.rank() != w.rank() {
        return Err(OpError::new(format!(
            "input shape {:?} does not fit weight shape {:?}",
            x.shape, w.shape
        )));
    }
    let group = to_usize(n.int("group", 1)?, "group")?.max(1);
    if w.shape[1] * group != x.shape[1] || w.shape[0] % group != 0 {
        return Err(OpError::new(format!(
            "input has {} channels but the weight {:?} with group={group} expects {}",
            x.shape[1],
            w.shape,
            w.shape[1] * group
        )));
    }
    let kernel = w.shape[2..].to_vec();
    if let Some(ks) = n.ints("kernel_shape")? {
        if ks.iter().map(|&k| k as usize).collect::<Vec<_>>() != kernel {
            return Err(OpError::new(format!(
                "kernel_shape {ks:?} disagrees with the weight shape {:?}",
                w.shape
            )));
        }
    }
    let strides = usize_list(n, "strides", spatial, 1)?;
    let dilations = usize_list(n, "dilations", spatial, 1)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(OpError::new("strides and dilations must be positive"));
    }
    let pads = resolve_pads(n, &x.shape[2..], &kernel, &strides, &dilations)?;
    let window = Window {
        kernel: &kernel,
        strides: &strides,
        dilations: &dilations,
        pads: &pads,
        ceil: false,
    };
    check_window_output(ctx, w.shape[0], &x.shape[2..], window)?;
    let bias = match optional(i, 2) {
        Some(b) => {
            let b = to_float(ctx, b)?;
            if b.shape != [w.shape[0]] {
                return Err(OpError::new(format!(
                    "bias shape {:?} should be [{}]",
                    b.shape, w.shape[0]
                )));
            }
            Some(b.at_rank::<1>("Conv bias")?)
        }
        None => None,
    };
    // 1-D convolutions run as 2-D ones over a height of 1.
    let (x4, w4, strides, dilations, pads) = if spatial == 1 {
        (
            x.reshape(vec![x.shape[0], x.shape[1], 1, x.shape[2]])?,
            w.reshape(vec![w.shape[0], w.shape[1], 1, w.shape[2]])?,
            vec![1, strides[0]],
            vec![1, dilations[0]],
            vec![(0, 0), pads[0]],
        )
    } else {
        (x, w, strides, dilations, pads)
    };
    // Set by `Graph::fuse` when it removed the Relu that read this node's output (after the
    // residual sum, when there is one).
    let fused_relu = n.int(crate::graph::Graph::FUSED_RELU, 0)? != 0;
    // Set by `Graph::fuse` when it folded the residual sum that read this node's output into
    // it: the value added to the output.
    let residual = match n.int(crate::graph::Graph::RESIDUAL, 0)? != 0 {
        true => Some(float_input(ctx, i, 3)?),
        false => None,
    };
    // Whether the matrix-product path can take the convolution (then, with the residual
    // held batch-innermost, as that path writes its output).
    let tap_path = dilations == [1, 1] && group == 1;
    let held_residual = residual
        .as_ref()
        .filter(|_| tap_path)
        .and_then(super::batch_inner);
    // The other paths apply the ReLU themselves only when no sum comes first.
    let relu = fused_relu && residual.is_none();
    let w4 = w4.at_rank::<4>("Conv weight")?;
    // The matrix-product path (its output is batch-innermost), for an input held either way,
    // with the residual sum and the ReLU in its products.
    let tap = |x: &Tensor<4>, batch_inner: bool| {
        (tap_path && residual.is_some() == held_residual.is_some())
            .then(|| {
                crate::kernels::tap_conv2d(
                    x,
                    batch_inner,
                    &w4,
                    bias.as_ref(),
                    pair(&strides),
                    pairs(&pads),
                    fused_relu,
                    held_residual.as_ref(),
                )
            })
            .flatten()
    };
    // A batch-innermost input (the output of another such convolution) goes to that path as
    // it is held; every other path reads the standard layout.
    let x4 = match x4.batch_inner_tensor() {
        Some(held) => {
            if let Some(out) = tap(&held, true) {
                return conv_output(FloatValue::batch_inner(out), spatial);
            }
            standard(x4)?.at_rank::<4>("Conv input")?
        }
        None => x4.at_rank::<4>("Conv input")?,
    };
    if let Some(out) = tap(&x4, false) {
        return conv_output(FloatValue::batch_inner(out), spatial);
    }
    let direct = if dilations == [1, 1] && group == 1 && strides == [1, 1] {
        crate::kernels::conv2d(&x4, &w4, bias.as_ref(), pairs(&pads), relu)
    } else {
        None
    };
    let fast = match direct {
        Some(out) => Some(out),
        None if group == 1 => crate::kernels::gemm_conv2d(
            &x4,
            &w4,
            bias.as_ref(),
            pair(&strides),
            pair(&dilations),
            pairs(&pads),
            relu,
        ),
        None => None,
    };
    let out = match fast {
        Some(out) => out,
        None => {
            let opts = ConvOptions::new_with_padding(
                pair(&strides),
                pairs(&pads),
                pair(&dilations),
                group,
            );
            let out = conv2d(x4, w4, bias, opts);
            if relu {
                activation::relu(out)
            } else {
                out
            }
        }
    };
    let y = conv_output(FloatValue::from_tensor(out)?, spatial)?;
    match residual {
        None => Ok(y),
        // The residual sum (and its ReLU) as the `Add` operator computes it.
        Some(r) => {
            let y = y.into_iter().next();
            super::elementwise::add_relu(ctx, n, &[y, Some(Value::Float(r))], fused_relu)
        }
    }
}

/// A convolution's output: a 1-D one (run over a height of 1) back at rank 3, in the
/// standard layout; a 2-D one as the kernel left it.
fn conv_output(out: FloatValue, spatial: usize) -> OpResult {
    if spatial == 1 {
        let out = standard(out)?;
        let s = out.shape.clone();
        one(out.reshape(vec![s[0], s[1], s[3]])?)
    } else {
        one(out)
    }
}

/// Kernel, strides, dilations, pads and ceil mode of a 2-D pooling node.
struct Pool2d {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [(usize, usize); 2],
    ceil: bool,
}

fn pool2d(ctx: &OpCtx<'_>, n: &Node, x: &FloatValue) -> Result<Pool2d, OpError> {
    if x.rank() != 4 {
        return Err(OpError::new(format!(
            "only 2-D pooling over [N, C, H, W] inputs is supported, got shape {:?}",
            x.shape
        )));
    }
    let kernel = n
        .ints("kernel_shape")?
        .ok_or_else(|| OpError::new("missing attribute 'kernel_shape'"))?;
    if kernel.len() != 2 {
        return Err(OpError::new(format!("kernel_shape {kernel:?} is not 2-D")));
    }
    let kernel: Vec<usize> = kernel
        .iter()
        .map(|&k| to_usize(k, "kernel_shape"))
        .collect::<Result<_, _>>()?;
    let strides = usize_list(n, "strides", 2, 1)?;
    let dilations = usize_list(n, "dilations", 2, 1)?;
    if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
        return Err(OpError::new(
            "kernel, strides and dilations must be positive",
        ));
    }
    let pads = resolve_pads(n, &x.shape[2..], &kernel, &strides, &dilations)?;
    let ceil = n.int("ceil_mode", 0)? != 0;
    let window = Window {
        kernel: &kernel,
        strides: &strides,
        dilations: &dilations,
        pads: &pads,
        ceil,
    };
    check_window_output(ctx, x.shape[1], &x.shape[2..], window)?;
    Ok(Pool2d {
        kernel: pair(&kernel),
        strides: pair(&strides),
        dilations: pair(&dilations),
        pads: pairs(&pads),
        ceil,
    })
}

pub(crate) fn max_pool(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    if n.outputs.get(1).is_some_and(|o| !o.is_empty()) {
        return Err(OpError::new(
            "the Indices output of MaxPool is not supported",
        ));
    }
    let x = float_input(ctx, i, 0)?;
    let p = pool2d(ctx, n, &x)?;
    // A batch-innermost input (a convolution's output) is pooled as it is held.
    let x = match x.batch_inner_tensor() {
        Some(held) => {
            if p.dilations == [1, 1] && !p.ceil {
                let pooled =
                    crate::kernels::max_pool2d_batch_inner(&held, p.kernel, p.strides, p.pads);
                if let Some(y) = pooled {
                    return one(FloatValue::batch_inner(y));
                }
            }
            standard(x)?
        }
        None => x,
    };
    let x = x.at_rank::<4>("MaxPool input")?;
    if p.dilations == [1, 1] && !p.ceil {
        if let Some(y) = crate::kernels::max_pool2d(&x, p.kernel, p.strides, p.pads) {
            return one(FloatValue::from_tensor(y)?);
        }
    }
    let opts = MaxPoolOptions::new(p.kernel)
        .with_stride(p.strides)
        .with_padding_pairs(p.pads)
        .with_dilation(p.dilations)
        .with_ceil_mode(p.ceil);
    one(FloatValue::from_tensor(max_pool2d(x, opts))?)
}

pub(crate) fn average_pool(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let p = pool2d(ctx, n, &x)?;
    if p.dilations != [1, 1] {
        return Err(OpError::new("dilated AveragePool is not supported"));
    }
    let opts = AvgPoolOptions::new(p.kernel)
        .with_stride(p.strides)
        .with_padding_pairs(p.pads)
        .with_count_include_pad(n.int("count_include_pad", 0)? != 0)
        .with_ceil_mode(p.ceil);
    one(FloatValue::from_tensor(avg_pool2d(
        x.at_rank::<4>("AveragePool input")?,
        opts,
    ))?)
}

fn global_pool(
    ctx: &OpCtx<'_>,
    i: &[Option<Value>],
    f: fn(Tensor<{ crate::value::MAX_RANK }>, usize) -> Tensor<{ crate::value::MAX_RANK }>,
) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    if x.rank() < 3 {
        return Err(OpError::new(format!(
            "global pooling needs [N, C, spatial...], got shape {:?}",
            x.shape
        )));
    }
    let mut t = x.t.clone();
    let mut shape = x.shape.clone();
    for (a, d) in shape.iter_mut().enumerate().skip(2) {
        t = f(t, x.padded_axis(a));
        *d = 1;
    }
    one(FloatValue::from_padded(t, shape))
}

pub(crate) fn global_average_pool(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    global_pool(ctx, i, |t, d| t.mean_dim(d))
}

pub(crate) fn global_max_pool(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    global_pool(ctx, i, |t, d| t.max_dim(d))
}

pub(crate) fn batch_norm(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    if x.rank() < 2 {
        return Err(OpError::new(format!(
            "BatchNormalization needs [N, C, ...], got shape {:?}",
            x.shape
        )));
    }
    let c = x.shape[1];
    let mut params = Vec::with_capacity(4);
    for (k, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
        let p = float_input(ctx, i, k)?;
        if p.numel() != c {
            return Err(OpError::new(format!(
                "{what} has shape {:?}, expected [{c}]",
                p.shape
            )));
        }
        let mut shape = vec![c];
        shape.resize(x.rank() - 1, 1);
        params.push(p.reshape(shape)?.t);
    }
    let eps = n.float("epsilon", 1e-5)? as f64;
    let (scale, bias, mean, var) = (
        params[0].clone(),
        params[1].clone(),
        params[2].clone(),
        params[3].clone(),
    );
    let a = scale / var.add_scalar(eps).sqrt();
    let b = bias - mean * a.clone();
    one(x.map(|t| t * a + b))
}

pub(crate) fn gemm(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    let a = float_input(ctx, i, 0)?.at_rank::<2>("Gemm A")?;
    let b = float_input(ctx, i, 1)?.at_rank::<2>("Gemm B")?;
    let a = if n.int("transA", 0)? != 0 {
        a.transpose()
    } else {
        a
    };
    let b = if n.int("transB", 0)? != 0 {
        b.transpose()
    } else {
        b
    };
    let (ad, bd) = (a.dims(), b.dims());
    if ad[1] != bd[0] {
        return Err(OpError::new(format!(
            "cannot multiply {ad:?} by {bd:?} (inner dimensions differ)"
        )));
    }
    let alpha = n.float("alpha", 1.0)?;
    let beta = n.float("beta", 1.0)?;
    let mut y = a.matmul(b);
    if alpha != 1.0 {
        y = y.mul_scalar(alpha);
    }
    let y = FloatValue::from_tensor(y)?;
    match optional(i, 2) {
        Some(c) if beta != 0.0 => {
            let c = to_float(ctx, c)?;
            let shape = broadcast_shapes(&y.shape, &c.shape)?;
            if shape != y.shape {
                return Err(OpError::new(format!(
                    "C of shape {:?} does not broadcast to {:?}",
                    c.shape, y.shape
                )));
            }
            let ct = if beta != 1.0 {
                c.t.mul_scalar(beta)
            } else {
                c.t
            };
            one(FloatValue::from_padded(y.t + ct, shape))
        }
        _ => one(y),
    }
}

pub(crate) fn matmul(ctx: &OpCtx<'_>, _: &Node, i: &[Option<Value>]) -> OpResult {
    let a = float_input(ctx, i, 0)?;
    let b = float_input(ctx, i, 1)?;
    if a.rank() == 0 || b.rank() == 0 {
        return Err(OpError::new("MatMul inputs must have rank ≥ 1"));
    }
    let (a2, drop_m) = if a.rank() == 1 {
        (a.reshape(vec![1, a.shape[0]])?, true)
    } else {
        (a, false)
    };
    let (b2, drop_n) = if b.rank() == 1 {
        (b.reshape(vec![b.shape[0], 1])?, true)
    } else {
        (b, false)
    };
    let (ra, rb) = (a2.rank(), b2.rank());
    let (m, k) = (a2.shape[ra - 2], a2.shape[ra - 1]);
    let (k2, nn) = (b2.shape[rb - 2], b2.shape[rb - 1]);
    if k != k2 {
        return Err(OpError::new(format!(
            "cannot multiply {:?} by {:?} (inner dimensions differ)",
            a2.shape, b2.shape
        )));
    }
    let mut shape = broadcast_shapes(&a2.shape[..ra - 2], &b2.shape[..rb - 2])?;
    shape.extend([m, nn]);
    let out = FloatValue::from_padded(a2.t.matmul(b2.t), shape.clone());
    let mut final_shape = shape;
    if drop_n {
        final_shape.pop();
    }
    if drop_m {
        let l = final_shape.len();
        final_shape.remove(l - if drop_n { 1 } else { 2 });
    }
    one(out.reshape(final_shape)?)
}

fn softmax_like(
    ctx: &OpCtx<'_>,
    n: &Node,
    i: &[Option<Value>],
    f: fn(Tensor<{ crate::value::MAX_RANK }>, usize) -> Tensor<{ crate::value::MAX_RANK }>,
) -> OpResult {
    let x = float_input(ctx, i, 0)?;
    let default_axis = if ctx.opset >= 13 { -1 } else { 1 };
    let axis = norm_axis(n.int("axis", default_axis)?, x.rank())?;
    if ctx.opset >= 13 {
        let d = x.padded_axis(axis);
        return one(x.map(|t| f(t, d)));
    }
    // Before opset 13 the input is coerced to 2-D at `axis`.
    let rows: usize = x.shape[..axis].iter().product();
    let cols: usize = x.shape[axis..].iter().product();
    let flat = x.reshape(vec![rows, cols])?;
    let d = flat.padded_axis(1);
    one(flat.map(|t| f(t, d)).reshape(x.shape.clone())?)
}

pub(crate) fn softmax(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    softmax_like(ctx, n, i, activation::softmax)
}

pub(crate) fn log_softmax(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    softmax_like(ctx, n, i, activation::log_softmax)
}

/// `LayerNormalization` (opset 17): normalises over the axes from `axis` to the last, then
/// scales and shifts; the optional mean and inverse-deviation outputs are not supported.
pub(crate) fn layer_norm(ctx: &OpCtx<'_>, n: &Node, i: &[Option<Value>]) -> OpResult {
    if n.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(OpError::new(
            "the Mean and InvStdDev outputs of LayerNormalization are not supported",
        ));
    }
    let x = float_input(ctx, i, 0)?;
    let axis = norm_axis(n.int("axis", -1)?, x.rank())?;
    let eps = f64::from(n.float("epsilon", 1e-5)?);
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis..].iter().product();
    let flat = x.reshape(vec![outer, inner])?;
    let d = flat.padded_axis(1);
    let centred = flat.t.clone() - flat.t.clone().mean_dim(d);
    let var = (centred.clone() * centred.clone()).mean_dim(d);
    let mut y = centred / var.add_scalar(eps).sqrt();
    for (k, what) in [(1, "Scale"), (2, "B")] {
        let Some(p) = optional(i, k) else { continue };
        let p = to_float(ctx, p)?;
        if broadcast_shapes(&x.shape[axis..], &p.shape)? != x.shape[axis..] {
            return Err(OpError::new(format!(
                "{what} of shape {:?} does not broadcast to the normalised shape {:?}",
                p.shape,
                &x.shape[axis..]
            )));
        }
        let full = FloatValue::from_padded(
            p.t.expand(crate::value::padded(&x.shape[axis..])?),
            x.shape[axis..].to_vec(),
        )
        .reshape(vec![1, inner])?;
        y = if k == 1 { y * full.t } else { y + full.t };
    }
    one(FloatValue::from_padded(y, vec![outer, inner]).reshape(x.shape.clone())?)
}
