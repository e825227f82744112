//! The operator registry: ONNX operator type → implementation.
//!
//! Adding an operator means writing one function with the [`OpFn`] signature in the module
//! of its family and one line in [`registry`]. The loader checks every node of a graph
//! against this table before anything runs, so an unsupported operator is reported up
//! front, with the names of the nodes that use it.

use std::collections::HashMap;
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};

use crate::error::OpError;
use crate::graph::Node;
use crate::value::{FloatValue, IntValue, Value, MAX_RANK};

mod einsum;
mod elementwise;
mod logic;
mod nn;
mod shape;

/// What an operator sees besides its node and inputs.
pub struct OpCtx<'a> {
    /// The device new tensors are created on.
    pub device: &'a Device,
    /// The default-domain opset of the model (some operators changed between opsets).
    pub opset: i64,
    /// [`crate::limits::Limits::max_activation_values`].
    pub max_activation_values: usize,
}

impl OpCtx<'_> {
    /// Refuses, before it is allocated, an output of `channels × spatial` values per sample
    /// above [`crate::limits::Limits::max_activation_values`]; `spatial` holds `None` for a
    /// size that overflows.
    pub fn check_output(&self, channels: usize, spatial: &[Option<u64>]) -> Result<(), OpError> {
        let values = spatial
            .iter()
            .try_fold(channels as u64, |acc, d| d.and_then(|d| acc.checked_mul(d)));
        let max = self.max_activation_values as u64;
        if values.is_some_and(|v| v <= max) {
            return Ok(());
        }
        let dims: Vec<String> = std::iter::once(channels.to_string())
            .chain(
                spatial
                    .iter()
                    .map(|d| d.map_or("(overflow)".into(), |d| d.to_string())),
            )
            .collect();
        Err(OpError::new(format!(
            "the output would hold {} values per sample, above the limit of {max} (raise \
             [model.limits] max_activation_values)",
            dims.join("×")
        )))
    }
}

/// Most samples in one batch that [`OpCtx::check_shape`] allows for.
const MAX_BATCH: u64 = 1 << 16;

impl OpCtx<'_> {
    /// Refuses, before it is allocated, an output of `shape` (batch first) with more than
    /// [`crate::limits::Limits::max_activation_values`] values per sample, or more than
    /// [`MAX_BATCH`] times that in all; with `per_sample` false (constants computed from
    /// shapes, `ConstantOfShape`), the whole tensor must fit the per-sample limit.
    pub fn check_shape(&self, shape: &[usize], per_sample: bool) -> Result<(), OpError> {
        let product = |d: &[usize]| d.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x as u64));
        let max = self.max_activation_values as u64;
        let total = product(shape);
        let sample = if per_sample && !shape.is_empty() {
            product(&shape[1..])
        } else {
            total
        };
        let fits = match (sample, total) {
            (Some(s), Some(t)) => s <= max && t <= max.saturating_mul(MAX_BATCH),
            _ => false,
        };
        if fits {
            return Ok(());
        }
        Err(OpError::new(format!(
            "an output of shape {shape:?} is above the limit of {max} values per sample (raise \
             [model.limits] max_activation_values)"
        )))
    }
}

/// The result of one operator: its outputs, in order.
pub type OpResult = Result<Vec<Value>, OpError>;

/// An operator implementation.
pub type OpFn = fn(&OpCtx<'_>, &Node, &[Option<Value>]) -> OpResult;

/// The table of supported operators.
pub fn registry() -> &'static HashMap<&'static str, OpFn> {
    static REGISTRY: OnceLock<HashMap<&'static str, OpFn>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let table: &[(&'static str, OpFn)] = &[
            // neural-network layers
            ("Conv", nn::conv),
            ("Gemm", nn::gemm),
            ("MatMul", nn::matmul),
            ("MaxPool", nn::max_pool),
            ("AveragePool", nn::average_pool),
            ("GlobalAveragePool", nn::global_average_pool),
            ("GlobalMaxPool", nn::global_max_pool),
            ("BatchNormalization", nn::batch_norm),
            ("Softmax", nn::softmax),
            ("LogSoftmax", nn::log_softmax),
            ("LayerNormalization", nn::layer_norm),
            ("Einsum", einsum::einsum),
            // activations and element-wise maths
            ("Relu", elementwise::relu),
            ("LeakyRelu", elementwise::leaky_relu),
            ("PRelu", elementwise::prelu),
            ("Sigmoid", elementwise::sigmoid),
            ("Tanh", elementwise::tanh),
            ("Gelu", elementwise::gelu),
            ("HardSigmoid", elementwise::hard_sigmoid),
            ("HardSwish", elementwise::hard_swish),
            ("Softplus", elementwise::softplus),
            ("Floor", elementwise::floor),
            ("Ceil", elementwise::ceil),
            ("Sign", elementwise::sign),
            ("Min", elementwise::min),
            ("Max", elementwise::max),
            ("Sum", elementwise::sum),
            ("Mean", elementwise::mean),
            ("Erf", elementwise::erf),
            ("Exp", elementwise::exp),
            ("Log", elementwise::log),
            ("Sqrt", elementwise::sqrt),
            ("Neg", elementwise::neg),
            ("Abs", elementwise::abs),
            ("Reciprocal", elementwise::reciprocal),
            ("Pow", elementwise::pow),
            ("Add", elementwise::add),
            ("Sub", elementwise::sub),
            ("Mul", elementwise::mul),
            ("Div", elementwise::div),
            ("Mod", elementwise::modulo),
            ("Clip", elementwise::clip),
            ("ReduceMean", elementwise::reduce_mean),
            ("ReduceSum", elementwise::reduce_sum),
            ("ReduceMax", elementwise::reduce_max),
            // comparisons and logic
            ("Equal", logic::equal),
            ("Less", logic::less),
            ("Greater", logic::greater),
            ("LessOrEqual", logic::less_or_equal),
            ("GreaterOrEqual", logic::greater_or_equal),
            ("And", logic::and),
            ("Or", logic::or),
            ("Xor", logic::xor),
            ("Not", logic::not),
            ("Where", logic::where_),
            // shapes and plumbing
            ("Identity", shape::identity),
            ("Dropout", shape::dropout),
            ("Flatten", shape::flatten),
            ("Reshape", shape::reshape),
            ("Transpose", shape::transpose),
            ("Concat", shape::concat),
            ("Shape", shape::shape),
            ("Gather", shape::gather),
            ("Unsqueeze", shape::unsqueeze),
            ("Squeeze", shape::squeeze),
            ("Slice", shape::slice),
            ("Pad", shape::pad),
            ("Cast", shape::cast),
            ("ConstantOfShape", shape::constant_of_shape),
            ("Expand", shape::expand),
            ("Split", shape::split),
            ("Range", shape::range),
            ("Tile", shape::tile),
            ("ScatterND", shape::scatter_nd),
        ];
        table.iter().copied().collect()
    })
}

/// The operator types this crate supports (plus `Constant`, folded at load time), sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = registry().keys().copied().collect();
    ops.push("Constant");
    ops.sort_unstable();
    ops
}

// ---- helpers shared by the operator families ----

/// Input `k`, which the operator requires.
pub(crate) fn input(inputs: &[Option<Value>], k: usize) -> Result<&Value, OpError> {
    inputs
        .get(k)
        .and_then(|v| v.as_ref())
        .ok_or_else(|| OpError::new(format!("missing required input #{k}")))
}

/// Optional input `k`.
pub(crate) fn optional(inputs: &[Option<Value>], k: usize) -> Option<&Value> {
    inputs.get(k).and_then(|v| v.as_ref())
}

/// Input `k` as a float tensor (integer inputs are converted and uploaded).
pub(crate) fn float_input(
    ctx: &OpCtx<'_>,
    inputs: &[Option<Value>],
    k: usize,
) -> Result<FloatValue, OpError> {
    to_float(ctx, input(inputs, k)?)
}

/// A value as a float tensor.
pub(crate) fn to_float(ctx: &OpCtx<'_>, v: &Value) -> Result<FloatValue, OpError> {
    match v {
        Value::Float(f) => Ok(f.clone()),
        Value::Int(i) => FloatValue::from_host(
            i.data.iter().map(|&x| x as f32).collect(),
            i.shape.clone(),
            ctx.device,
        ),
    }
}

/// Operators that read batch-innermost values (see [`crate::value::Layout`]) as they are
/// held; the interpreter gives every other one the standard layout.
pub(crate) const BATCH_INNER_OPS: [&str; 4] = ["Conv", "Relu", "Add", "MaxPool"];

/// A float value in the standard layout: a batch-innermost one is changed back (a node of
/// its autodiff graph).
pub(crate) fn standard(v: FloatValue) -> Result<FloatValue, OpError> {
    match v.batch_inner_tensor() {
        None => Ok(v),
        Some(held) => {
            FloatValue::from_tensor(crate::kernels::standard_layout(&held).ok_or_else(|| {
                OpError::new("a batch-innermost value that is not an f32 CPU tensor")
            })?)
        }
    }
}

/// A rank-4 float value batch-innermost (`[h, c, w, n]`): as it is held, or changed into
/// that layout (a node of its autodiff graph); `None` for another rank, element type or
/// backend.
pub(crate) fn batch_inner(v: &FloatValue) -> Option<Tensor<4>> {
    v.batch_inner_tensor().or_else(|| {
        v.at_rank::<4>("a batch-innermost value")
            .ok()
            .and_then(|t| crate::kernels::batch_inner_layout(&t))
    })
}

/// Input `k` as a host integer tensor.
pub(crate) fn int_input(inputs: &[Option<Value>], k: usize) -> Result<&IntValue, OpError> {
    match input(inputs, k)? {
        Value::Int(i) => Ok(i),
        Value::Float(_) => Err(OpError::new(format!(
            "input #{k} must be an integer tensor known when the graph runs (shape data), got a float tensor"
        ))),
    }
}

/// A one-element value read on the host (for clip bounds, pad values, exponents).
pub(crate) fn host_scalar(v: &Value, what: &str) -> Result<f32, OpError> {
    match v {
        Value::Int(i) if i.data.len() == 1 => Ok(i.data[0] as f32),
        Value::Float(f) => f.host_scalar().ok_or_else(|| {
            OpError::new(format!(
                "{what} must be a one-element constant, got a computed tensor of shape {:?}",
                f.shape
            ))
        }),
        Value::Int(i) => Err(OpError::new(format!(
            "{what} must have one element, got shape {:?}",
            i.shape
        ))),
    }
}

/// Wraps one float output.
pub(crate) fn one(v: FloatValue) -> OpResult {
    Ok(vec![Value::Float(v)])
}

/// Applies a shape-preserving function to float input 0.
pub(crate) fn unary(
    ctx: &OpCtx<'_>,
    inputs: &[Option<Value>],
    f: impl FnOnce(Tensor<MAX_RANK>) -> Tensor<MAX_RANK>,
) -> OpResult {
    let x = float_input(ctx, inputs, 0)?;
    one(x.map(f))
}

/// Converts an i64 to a non-negative usize, naming what it is on failure.
pub(crate) fn to_usize(v: i64, what: &str) -> Result<usize, OpError> {
    usize::try_from(v).map_err(|_| OpError::new(format!("{what} must be non-negative, got {v}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::module::{conv1d, conv2d};
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution, Tensor};

    use super::OpCtx;
    use crate::graph::{Attr, Node};
    use crate::to_host as host;
    use crate::value::{FloatValue, Layout, Value};

    fn node(op: &str, attrs: &[(&str, Attr)]) -> Node {
        Node {
            op: op.into(),
            name: op.to_lowercase(),
            inputs: vec![],
            outputs: vec!["y".into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn ctx(device: &Device) -> OpCtx<'_> {
        OpCtx {
            device,
            opset: 17,
            max_activation_values: 1 << 30,
        }
    }

    fn float(v: &[Value]) -> &FloatValue {
        match &v[0] {
            Value::Float(f) => f,
            Value::Int(_) => panic!("a float output"),
        }
    }

    /// Equal up to rounding on the scale of the largest value (the convolutions may run as
    /// Winograd, whose transforms round on that scale); a value from the wrong place would
    /// be off by about that scale.
    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{x} against {y} (scale {scale})"
            );
        }
    }

    /// A 1-D convolution that the matrix-product path takes (32 channels; strided) gives a
    /// rank-3 output in the standard layout, with burn's values.
    #[test]
    fn one_d_convolutions_come_back_at_rank_3() {
        let device = Device::flex();
        let ctx = ctx(&device);
        let x = Tensor::<3>::random([2, 32, 9], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<3>::random([40, 32, 3], Distribution::Normal(0.0, 1.0), &device);
        for stride in [1, 2] {
            let n = node(
                "Conv",
                &[
                    ("strides", Attr::Ints(vec![stride])),
                    ("pads", Attr::Ints(vec![1, 1])),
                ],
            );
            let inputs = [x.clone(), w.clone()]
                .map(|t| Some(Value::Float(FloatValue::from_tensor(t).unwrap())));
            let out = super::nn::conv(&ctx, &n, &inputs).unwrap();
            let y = float(&out);
            let opts = ConvOptions::new([stride as usize], [1], [1], 1);
            let want = conv1d(x.clone(), w.clone(), None, opts);
            assert_eq!(
                (y.layout, &y.shape[..]),
                (Layout::Standard, &want.dims()[..])
            );
            close(&host(y.at_rank::<3>("y").unwrap()), &host(want));
        }
    }

    /// A convolution's batch-innermost output, and sums with it: two such values add as
    /// held; with a standard one of the same shape (held batch-innermost for the sum) and
    /// with a broadcast bias (in the standard layout) they give the standard sums.
    #[test]
    fn sums_of_batch_innermost_and_standard_values() {
        let device = Device::flex();
        let ctx = ctx(&device);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([3, 32, 5, 6], normal, &device);
        let w = Tensor::<4>::random([8, 32, 3, 3], normal, &device);
        let pads = ("pads", Attr::Ints(vec![1, 1, 1, 1]));
        let inputs =
            [x.clone(), w.clone()].map(|t| Some(Value::Float(FloatValue::from_tensor(t).unwrap())));
        let out = super::nn::conv(&ctx, &node("Conv", &[pads]), &inputs).unwrap();
        let y = float(&out).clone();
        assert_eq!(
            (y.layout, &y.shape[..]),
            (Layout::BatchInner, &[3, 8, 5, 6][..])
        );
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let want = conv2d(x, w, None, opts);
        let standard = super::standard(y.clone()).unwrap();
        assert_eq!(standard.layout, Layout::Standard);
        close(
            &host(standard.at_rank::<4>("y").unwrap()),
            &host(want.clone()),
        );

        let other = Tensor::<4>::random([3, 8, 5, 6], normal, &device);
        let bias = Tensor::<3>::random([8, 1, 1], normal, &device);
        let v = |f: FloatValue| Some(Value::Float(f));
        let relu = ("robust.fused_relu", Attr::Int(1));
        let cases = [
            (
                v(y.clone()),
                v(y.clone()),
                want.clone() * 2.0,
                Layout::BatchInner,
            ),
            (
                v(y.clone()),
                v(FloatValue::from_tensor(other.clone()).unwrap()),
                want.clone() + other.clone(),
                Layout::BatchInner,
            ),
            (
                v(FloatValue::from_tensor(other.clone()).unwrap()),
                v(y.clone()),
                other + want.clone(),
                Layout::BatchInner,
            ),
            (
                v(y.clone()),
                v(FloatValue::from_tensor(bias.clone()).unwrap()),
                want.clone() + bias.unsqueeze::<4>(),
                Layout::Standard,
            ),
        ];
        for (k, (a, b, sum, layout)) in cases.into_iter().enumerate() {
            for fused in [false, true] {
                let attrs = if fused { vec![relu.clone()] } else { vec![] };
                let n = node("Add", &attrs);
                let out = super::elementwise::add(&ctx, &n, &[a.clone(), b.clone()]).unwrap();
                let got = float(&out);
                assert_eq!(got.layout, layout, "case {k}");
                let got = super::standard(got.clone()).unwrap();
                let want = if fused {
                    burn::tensor::activation::relu(sum.clone())
                } else {
                    sum.clone()
                };
                close(&host(got.at_rank::<4>("sum").unwrap()), &host(want));
            }
        }
    }

    #[test]
    fn output_shapes_are_checked_before_allocation() {
        let device = burn::tensor::Device::flex();
        let ctx = OpCtx {
            device: &device,
            opset: 17,
            max_activation_values: crate::limits::Limits::default().max_activation_values,
        };
        // A ResNet stage of a large batch fits; a dimension from a hostile file does not.
        assert!(ctx.check_shape(&[256, 64, 56, 56], true).is_ok());
        assert!(ctx.check_shape(&[2, 1 << 20, 1 << 20], true).is_err());
        assert!(ctx.check_shape(&[1 << 40], false).is_err());
        assert!(ctx.check_shape(&[usize::MAX, 2], true).is_err());
        let e = ctx.check_shape(&[1, 1 << 31], true).unwrap_err().0;
        assert!(e.contains("max_activation_values"), "{e}");
    }
}
