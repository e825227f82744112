//! CPU kernels that replace a burn operator where it dominates an attack's running time.
//!
//! The interpreter runs on burn's tensor API, whose backend is picked at run time from the
//! device. On the CPU backend (burn-flex 0.22) two operators took most of every input
//! gradient of the demo CNN (`benches/RESULTS.md`): max pooling (a generic 3-D loop writing
//! 64-bit indices) and small convolutions (a single-threaded NHWC copy, im2col and many small
//! matrix products). The kernels here compute those cases directly on burn-flex's buffers:
//!
//! * [`max_pool2d`]: undilated 2-D max pooling (padded or not); the backward pass keeps one byte
//!   per output (the arg-max position inside its window).
//! * [`conv2d`]: stride-1, undilated, ungrouped 2-D convolution with padding up to the
//!   kernel size minus one, and its input gradient (the same kernel on the flipped weights),
//!   with constant (untracked) weights, which is what an attack differentiates; optionally
//!   followed by a fused ReLU. Only below 32 input channels (up to 64 output channels) and
//!   moderate image sizes, where it is faster than the matrix products (see `conv.rs`).
//! * [`tap_conv2d`]: one-group undilated convolutions with 32 or more input channels, and
//!   strided ones of any width, as matrix products over only the kernel taps that read
//!   inside the image, in a batch-innermost layout (see `tap_gemm.rs`): what CIFAR- and
//!   ImageNet-size ResNets are made of. Stride-1 3×3 ones on planes of 4×4 or more run as
//!   Winograd F(4×4, 3×3) on the same layout (`tap_gemm/winograd.rs`). Their outputs stay
//!   in that layout for the operators that read it ([`crate::value::Layout::BatchInner`];
//!   [`standard_layout`] and [`batch_inner_layout`] change it, as autodiff nodes), which
//!   includes [`max_pool2d_batch_inner`].
//! * [`gemm_conv2d`]: every other one-group 2-D convolution (dilation; 1×1 over large
//!   planes of a standard-layout input) as one wide matrix product over a group of images
//!   (see `gemm_conv.rs`).
//! * [`relu`] and [`add_relu`] (a residual block's `relu(a + b)`, fused by the graph): ReLUs
//!   that keep one bit per value for the backward pass, as the convolutions' fused ReLUs do
//!   (see `relu.rs`).
//!
//! The matrix products of `tap_conv2d` and `gemm_conv2d` run on `microgemm.rs`, a register-tiled product that
//! uses AVX-512 where the CPU has it and sums every output in the same order at every vector
//! width.
//!
//! Each is one node of burn-autodiff's graph with its own backward; the interpreter changes
//! batch-innermost values back for every other operator. Anything else (wgpu tensors, tracked weights, strides, dilation, other float
//! types) returns `None` and the caller uses burn's own operator. The kernels are plain Rust
//! loops vectorised by the compiler inside [`macerator`]'s run-time CPU-feature dispatch
//! (SSE4.2 / AVX2 / AVX-512). Each kernel does the same operations in the same order at
//! every width: the convolutions' direct loops and Winograd transforms separate multiplies
//! and adds, `microgemm.rs` fuses them (one rounding per step, in hardware or, without FMA,
//! in software), so the results are bit-identical on every x86-64 CPU whatever the width.

mod conv;
mod gemm_conv;
mod microgemm;
mod pool;
mod relu;
mod scratch;
pub mod simd;
mod tap_gemm;
mod transpose;

use std::borrow::Cow;
use std::marker::PhantomData;

use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::{Autodiff, NodeId};
use burn_backend::tensor::FloatTensor;
use burn_backend::DType;
use burn_flex::{Flex, FlexTensor};

pub(crate) use conv::conv2d;
pub(crate) use gemm_conv::conv2d as gemm_conv2d;
pub(crate) use pool::{max_pool2d, max_pool2d_batch_inner};
pub(crate) use relu::{add_relu, relu};
use relu::{relu_value, ReluMask};
pub(crate) use tap_gemm::{batch_inner_layout, conv2d as tap_conv2d, standard_layout};

/// The autodiff backend whose graph the kernels join (burn's default checkpointing).
type Graph = Autodiff<Flex, NoCheckpointing>;

/// A float tensor's burn-flex storage: a plain tensor, or one inside burn-autodiff's graph.
#[derive(Clone, Debug)]
enum FlexValue {
    Plain(FlexTensor),
    Graph(FloatTensor<Graph>),
}

impl FlexValue {
    /// The tensor's burn-flex primitive, or `None` if it lives on another backend.
    fn of<const D: usize>(t: &Tensor<D>) -> Option<Self> {
        if let Ok(p) = t.clone().try_into_primitive::<Flex>() {
            return Some(Self::Plain(p));
        }
        t.clone()
            .try_into_primitive::<Graph>()
            .ok()
            .map(Self::Graph)
    }

    fn flex(&self) -> &FlexTensor {
        match self {
            Self::Plain(t) => t,
            Self::Graph(t) => t.primitive(),
        }
    }

    /// `true` if gradients flow to this tensor.
    fn is_tracked(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Graph(t) => t.is_tracked(),
        }
    }

    /// The values as a contiguous `f32` slice (copied only if the layout is strided), or
    /// `None` for another element type.
    fn f32_data(&self) -> Option<Cow<'_, [f32]>> {
        let t = self.flex();
        if t.dtype() != DType::F32 {
            return None;
        }
        match t.as_slice::<f32>() {
            Some(d) => Some(Cow::Borrowed(d)),
            None => t
                .to_contiguous()
                .as_slice::<f32>()
                .map(|d| Cow::Owned(d.to_vec())),
        }
    }
}

/// The operands of a layer with constant parameters: the input, and weights and bias that
/// live on the CPU backend and take no gradient (what an attack differentiates).
struct ConstantOperands {
    x: FlexValue,
    weight: FlexValue,
    bias: Option<FlexValue>,
}

impl ConstantOperands {
    /// `None` when any operand lives on another backend or a parameter is tracked.
    fn of(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>) -> Option<Self> {
        let (x, weight) = (FlexValue::of(x)?, FlexValue::of(weight)?);
        let bias = match bias {
            Some(b) => Some(FlexValue::of(b)?),
            None => None,
        };
        if weight.is_tracked() || bias.as_ref().is_some_and(FlexValue::is_tracked) {
            return None;
        }
        Some(Self { x, weight, bias })
    }
}

/// The values of a layer's weights and optional bias.
type ParameterData<'a> = (Cow<'a, [f32]>, Option<Cow<'a, [f32]>>);

/// The values of constant weights and of a bias of `c_out` values, or `None` for another
/// element type or a bias of another length.
fn parameter_data<'a>(
    weight: &'a FlexValue,
    bias: Option<&'a FlexValue>,
    c_out: usize,
) -> Option<ParameterData<'a>> {
    let w = weight.f32_data()?;
    let b = match bias {
        Some(b) => Some(b.f32_data().filter(|b| b.len() == c_out)?),
        None => None,
    };
    Some((w, b))
}

/// A vector of `len` values that `fill` writes in parallel chunks of `chunk` values (it gets
/// the chunk's index `k`, which starts at value `k·chunk`, and the chunk). Not zeroed first:
/// for an activation-sized output, zeroing cost a pass over memory as large as the output.
///
/// # Safety
/// `fill` must write every value of every chunk it gets.
#[allow(unsafe_code)]
unsafe fn filled(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(k, c)| fill(k, c));
    // SAFETY: the first `len` values were written by `fill` (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// Wraps a kernel's output `[d0, d1, d2, d3]` as a burn-flex tensor.
fn flex_tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(burn::tensor::TensorData::new(data, shape))
}

/// What a kernel keeps for its backward pass: it maps the output gradient (contiguous `f32`)
/// to the input gradient's values and shape.
trait InputGradient: Clone + Send + std::fmt::Debug + 'static {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]);
    /// [`InputGradient::input_gradient`] of an output gradient the caller owns and no
    /// longer needs, which this may overwrite (a fused ReLU's mask applied in place).
    fn input_gradient_owned(&self, grad_out: &mut [f32]) -> (Vec<f32>, [usize; 4]) {
        self.input_gradient(grad_out)
    }
    /// The input gradient's shape when [`InputGradient::input_gradient_adding`] adds its
    /// operand as the values are stored (no pass of its own); `None` when it would add
    /// them in a pass of its own.
    fn adds_into(&self) -> Option<[usize; 4]> {
        None
    }
    /// [`InputGradient::input_gradient_owned`] plus `addend` (the input gradient's shape):
    /// `dx + addend`, value by value, one rounding each, the bits of burn's sum of the two.
    fn input_gradient_adding(
        &self,
        grad_out: &mut [f32],
        addend: &[f32],
    ) -> (Vec<f32>, [usize; 4]) {
        let (mut dx, shape) = self.input_gradient_owned(grad_out);
        assert_eq!(dx.len(), addend.len(), "an addend per input gradient value");
        for (d, &a) in dx.iter_mut().zip(addend) {
            *d += a;
        }
        (dx, shape)
    }
}

/// The tensors whose gradient a kernel's backward pass registered with burn last, and
/// which may not have been consumed yet: a later kernel that computes another gradient of
/// one of them takes that gradient out ([`take_pending`]) and adds it as it stores its own
/// ([`InputGradient::input_gradient_adding`]), instead of leaving burn to sum the two in a
/// pass over memory of its own. That happens where a residual block's branches meet: the
/// block's input gets the gradient of the skip connection from the block's last convolution
/// and then that of its first convolution (on ResNet-50 at batch 32, the junctions' sums
/// read and wrote about 1.5 GB a backward pass).
///
/// burn's `Gradients` cannot say whether it holds a tensor's gradient without panicking
/// (or without the tensor itself), hence this record. It holds node ids only (unique in a
/// process), at most [`PENDING_MAX`], the oldest dropped first: a dropped or stale one only
/// means that burn sums as before. Every id here was registered by a kernel, so burn holds
/// a gradient for it until the tensor's own node consumes it, which happens after every
/// consumer of the tensor has added its gradient; so when a consumer finds the id here,
/// the gradient is there. Only tensors that are neither inputs nor parameters (burn's
/// `GradInBackward` requirement, whose gradient consuming removes) are recorded.
static PENDING: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Ids [`PENDING`] keeps: a residual block's gradients reach its input a few kernels apart.
const PENDING_MAX: usize = 64;

/// A node's gradient is removed by consuming it (burn's `GradInBackward` requirement: an
/// operation's output, not an input or a parameter). burn does not export the type.
fn removed_by_consuming(requirement: &impl std::fmt::Debug) -> bool {
    format!("{requirement:?}") == "GradInBackward"
}

/// Registers `value` as (a part of) the gradient of node `id` with burn, and records it in
/// [`PENDING`] when consuming removes it.
fn register(grads: &mut Gradients, id: NodeId, removable: bool, value: FlexTensor) {
    grads.register::<Flex>(id, value);
    if removable {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.contains(&id.value) {
            if pending.len() == PENDING_MAX {
                pending.remove(0);
            }
            pending.push(id.value);
        }
    }
}

/// A tensor's values as one contiguous mutable `f32` slice, when the tensor holds its
/// storage alone (no other tensor shares it, so writing changes no other value).
fn owned_f32(t: &mut FlexTensor) -> Option<&mut [f32]> {
    if t.dtype() != DType::F32 || !t.is_unique() {
        return None;
    }
    let (start, end) = t.layout().contiguous_offsets()?;
    Some(&mut t.try_storage_mut::<f32>()?[start..end])
}

#[cfg(test)]
thread_local! {
    /// Gradients this thread's kernels took out of burn to add as they stored theirs.
    static JUNCTION_SUMS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many gradients this thread's kernels took out of burn to add as they stored theirs.
#[cfg(test)]
fn junction_sums() -> usize {
    JUNCTION_SUMS.with(std::cell::Cell::get)
}

/// The gradient burn holds for node `id`, taken out (by `consume`) when a kernel registered
/// it ([`PENDING`]) and it is a contiguous `f32` tensor of `shape` that no other tensor
/// shares (so that the caller can read it as a slice, see [`owned_f32`]); otherwise it
/// stays where it is and this gives `None`.
fn take_pending(
    grads: &mut Gradients,
    id: NodeId,
    shape: [usize; 4],
    consume: impl FnOnce(&mut Gradients) -> FlexTensor,
) -> Option<FlexTensor> {
    {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let at = pending.iter().position(|&v| v == id.value)?;
        pending.remove(at);
    }
    let mut t = consume(grads);
    if t.layout().shape().as_slice() == shape.as_slice() && owned_f32(&mut t).is_some() {
        #[cfg(test)]
        JUNCTION_SUMS.with(|c| c.set(c.get() + 1));
        Some(t)
    } else {
        // Back as it was (burn had no other gradient of the node: this one was taken).
        register(grads, id, true, t);
        None
    }
}

/// The autodiff node of a kernel whose one differentiable input is its first.
#[derive(Debug)]
struct KernelBackward<S>(PhantomData<S>);

impl<S: InputGradient> Backward<Flex, 1> for KernelBackward<S> {
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let mut grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            let removable = removed_by_consuming(&node.requirement);
            let (values, shape) = match owned_f32(&mut grad) {
                Some(grad_out) => {
                    // Another kernel's gradient of the same input, if burn holds one, is
                    // added here rather than by burn (see [`PENDING`]).
                    let pending = match ops.state.adds_into() {
                        Some(shape) if removable => {
                            take_pending(grads, node.id, shape, |g| g.consume::<Flex>(&node))
                        }
                        _ => None,
                    };
                    match pending {
                        Some(mut addend) => {
                            let addend =
                                owned_f32(&mut addend).expect("take_pending checked the layout");
                            ops.state.input_gradient_adding(grad_out, addend)
                        }
                        None => ops.state.input_gradient_owned(grad_out),
                    }
                }
                None => {
                    let grad = FlexValue::Plain(grad);
                    let grad_out = grad
                        .f32_data()
                        .expect("the gradient of an f32 kernel output is f32");
                    ops.state.input_gradient(&grad_out)
                }
            };
            register(grads, node.id, removable, flex_tensor(values, shape));
        }
    }
}

/// What a kernel with a fused residual sum (`f(x) + skip`, then perhaps a ReLU) keeps for
/// its backward pass: it maps the output gradient to the input gradient (values and shape,
/// as [`InputGradient`]) and the gradient of `skip` (the output gradient as the ReLU
/// passed it, with the output's shape).
trait ResidualGradient: InputGradient {
    fn gradients(&self, grad_out: &[f32]) -> [(Vec<f32>, [usize; 4]); 2];
    /// [`ResidualGradient::gradients`] of an output gradient the caller owns: it is
    /// overwritten with the gradient of `skip` (same shape, masked in place by the fused
    /// ReLU), and the input gradient is returned.
    fn gradients_in_place(&self, grad_out: &mut [f32]) -> (Vec<f32>, [usize; 4]);
}

/// The autodiff node of a kernel with a fused residual sum: parents `x` and `skip`.
#[derive(Debug)]
struct ResidualBackward<S>(PhantomData<S>);

impl<S: ResidualGradient> Backward<Flex, 2> for ResidualBackward<S> {
    type State = S;

    fn backward(self, ops: Ops<S, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, skip] = ops.parents;
        let mut grad = grads.consume::<Flex>(&ops.node);
        let (dx, dskip) = match owned_f32(&mut grad) {
            Some(grad_out) => {
                let dx = ops.state.gradients_in_place(grad_out);
                (dx, grad)
            }
            None => {
                let grad = FlexValue::Plain(grad);
                let grad_out = grad
                    .f32_data()
                    .expect("the gradient of an f32 kernel output is f32");
                let [dx, (dskip, skip_shape)] = ops.state.gradients(&grad_out);
                (dx, flex_tensor(dskip, skip_shape))
            }
        };
        if let Some(node) = x {
            let removable = removed_by_consuming(&node.requirement);
            register(grads, node.id, removable, flex_tensor(dx.0, dx.1));
        }
        if let Some(node) = skip {
            let removable = removed_by_consuming(&node.requirement);
            register(grads, node.id, removable, dskip);
        }
    }
}

/// [`finish`] for a kernel whose output is `f(x) + skip` (then perhaps a ReLU): `x` and
/// `skip` are both plain or both in the autodiff graph (the caller refuses a mixture; it
/// would be treated as plain).
fn finish_residual<S: ResidualGradient>(
    x: FlexValue,
    skip: FlexValue,
    out: FlexTensor,
    state: impl FnOnce(&[f32]) -> S,
) -> Tensor<4> {
    match (x, skip) {
        (FlexValue::Graph(x), FlexValue::Graph(skip)) => {
            let node = ResidualBackward::<S>(PhantomData)
                .prepare::<NoCheckpointing>([x.node(), skip.node()])
                .compute_bound()
                .stateful();
            graph_output(node, out, state)
        }
        _ => Tensor::from_primitive::<Flex>(out),
    }
}

/// Wraps a kernel's output computed from `x`: a plain tensor when `x` was plain, otherwise a
/// node of `x`'s autodiff graph, whose backward state `state` makes (from the output's
/// values) only when gradients flow.
fn finish<S: InputGradient>(
    x: FlexValue,
    out: FlexTensor,
    state: impl FnOnce(&[f32]) -> S,
) -> Tensor<4> {
    match x {
        FlexValue::Plain(_) => Tensor::from_primitive::<Flex>(out),
        FlexValue::Graph(x) => {
            let node = KernelBackward::<S>(PhantomData)
                .prepare::<NoCheckpointing>([x.node()])
                .compute_bound()
                .stateful();
            graph_output(node, out, state)
        }
    }
}

/// A kernel's output as the node `node` of the autodiff graph, with the backward state
/// that `state` makes from the output's values when gradients flow.
fn graph_output<BO, S, const N: usize>(
    node: OpsKind<BO, Flex, S, NoCheckpointing, N>,
    out: FlexTensor,
    state: impl FnOnce(&[f32]) -> S,
) -> Tensor<4>
where
    BO: Backward<Flex, N, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    let out = match node {
        OpsKind::Tracked(prep) => {
            let values = out.as_slice::<f32>().expect("a kernel's output is f32");
            prep.finish(state(values), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Graph>(out)
}

/// A buffer shared by parallel tasks that write disjoint elements of it (columns of rows
/// that interleave in memory, which `par_chunks_mut` cannot hand out).
pub(crate) struct SharedMut<'a, T = f32> {
    ptr: *mut T,
    len: usize,
    _buf: PhantomData<&'a mut [T]>,
}

// SAFETY: every user has each task write only elements no other task touches (see the
// callers: `tap_gemm::scatter` and `to_layout`, Winograd's output transform,
// `gemm_conv::matmul_packed`, the mask words of `relu::forward`, the batch-innermost max
// pooling's backward pass).
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub(crate) fn new(buf: &'a mut [T]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// A buffer whose values are not initialised yet: only [`SharedMut::tail`]'s pointers,
    /// written through, may touch it, and [`SharedMut::slice`] only values a task has
    /// written that way (a reference to values that do not exist yet is undefined).
    pub(crate) fn uninit(buf: &'a mut [std::mem::MaybeUninit<T>]) -> Self {
        Self {
            ptr: buf.as_mut_ptr().cast(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A pointer to element `start` and the number of elements from there to the end.
    pub(crate) fn tail(&self, start: usize) -> (*mut T, usize) {
        assert!(start <= self.len, "out of bounds");
        // SAFETY: in bounds (asserted).
        #[allow(unsafe_code)]
        let ptr = unsafe { self.ptr.add(start) };
        (ptr, self.len - start)
    }

    /// `len` elements from `start`.
    ///
    /// # Safety
    /// No other task reads or writes them while the slice lives.
    #[allow(unsafe_code, clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "out of bounds");
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// Asks the CPU to bring the cache line holding `at` into the L1 cache. Only a hint: it
/// reads nothing through the pointer and cannot fault, so any address will do.
#[inline(always)]
pub(crate) fn prefetch(at: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// What the kernels' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{activation, Device, Distribution, Tensor};

    use crate::to_host as host;

    /// A seeded stream of 32-bit values (a 64-bit linear congruential generator, Knuth's
    /// MMIX constants), for test data that must not depend on burn's random numbers.
    pub(crate) fn lcg(seed: u64) -> impl FnMut() -> u32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 32) as u32
        }
    }

    /// `a` equals `b` within 1e-5 of `b`'s largest magnitude (at least 1).
    pub(crate) fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{what}: max difference {worst} (scale {scale})"
        );
    }

    /// A convolution kernel under test: `(x, weight, bias, relu)` → its output (with its
    /// own backward), or `None` if it declines.
    pub(crate) type Kernel<'a> =
        &'a dyn Fn(&Tensor<4>, &Tensor<4>, &Tensor<1>, bool) -> Option<Tensor<4>>;

    /// The kernel's output and input gradient (under a random weighting of the outputs)
    /// against burn's conv2d with `opts`, then ReLU if `relu`, on random inputs of shape
    /// `xs` and weights `ws`, with and without the fused ReLU. With the ReLU, the reference
    /// gradient takes the kernel's own mask (where its output is positive, checked by the
    /// forward comparison): an output within rounding of zero may fall on the other side
    /// of the kink in burn (a Winograd sum differs from a direct one by a few ulps), which
    /// would change that output's whole gradient term.
    pub(crate) fn matches_burn(
        kernel: Kernel<'_>,
        xs: [usize; 4],
        ws: [usize; 4],
        opts: ConvOptions<2>,
        what: &str,
    ) {
        let device = Device::flex().autodiff();
        for relu in [false, true] {
            let x0 = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &device);
            let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &device);
            let reference = |x: Tensor<4>| {
                let y = burn_conv2d(x, w.clone(), Some(b.clone()), opts.clone());
                if relu {
                    activation::relu(y)
                } else {
                    y
                }
            };
            let r = Tensor::<4>::random(
                reference(x0.clone()).dims(),
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let x = x0.clone().require_grad();
            let fast = kernel(&x, &w, &b, relu).expect("handled");
            let fast_y = host(fast.clone());
            let fast_g = host(x.grad(&(fast * r.clone()).sum().backward()).unwrap());
            let x = x0.require_grad();
            let slow = reference(x.clone());
            let slow_y = host(slow.clone());
            let on = fast_y
                .iter()
                .map(|&v| if !relu || v > 0.0 { 1f32 } else { 0.0 })
                .collect::<Vec<_>>();
            let on = Tensor::<4>::from_data(burn::tensor::TensorData::new(on, r.dims()), &device);
            let linear = burn_conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone());
            let slow_g = host(x.grad(&(linear * (r * on)).sum().backward()).unwrap());
            let what = format!("{what} relu {relu}");
            close(&fast_y, &slow_y, &format!("forward {what}"));
            close(&fast_g, &slow_g, &format!("gradient {what}"));
        }
    }
}
