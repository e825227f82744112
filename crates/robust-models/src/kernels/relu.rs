//! ReLU, alone or after an addition (a residual block's `relu(conv(x) + identity)`), and the
//! one-bit masks that every ReLU on the CPU keeps for its backward pass.
//!
//! burn's ReLU keeps its whole `f32` input for the backward pass, and the convolutions'
//! fused ReLUs kept their outputs: on ResNet-50 at 224×224 (batch 32) that held about 1.2 GB
//! of activations that the backward pass only reads for their signs. A [`ReluMask`] keeps
//! one bit per value instead (32× less), and the fused addition writes the sum and its ReLU
//! in one pass instead of two.
//!
//! The values and gradients are exactly burn's: the output is `x` where `x > 0` or `x` is
//! NaN (which propagates, as in PyTorch) and `0` elsewhere; the gradient passes where the
//! output was kept.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use macerator::{Simd, WithSimd};
use rayon::prelude::*;

use super::{filled, FlexValue, Graph, SharedMut};

/// Values per parallel task (a multiple of 64, so that tasks own whole mask words).
const CHUNK: usize = 1 << 16;

/// Whether a ReLU keeps value `v` (and passes its gradient): `v > 0`, or `v` is NaN.
#[inline(always)]
fn keeps(v: f32) -> bool {
    v.is_nan() || v > 0.0
}

/// burn's ReLU of one value, which every ReLU on the CPU computes: `0` where `v <= 0`
/// (`-0` included), `v` elsewhere (NaN stays NaN).
#[inline(always)]
pub(crate) fn relu_value(v: f32) -> f32 {
    if v <= 0.0 {
        0.0
    } else {
        v
    }
}

/// One bit per value of a tensor: whether a ReLU kept it (see [`keeps`]).
#[derive(Clone, Debug)]
pub(crate) struct ReluMask {
    words: Arc<[u64]>,
    len: usize,
}

impl ReluMask {
    /// The mask of a ReLU's output (or input: the two keep the same values).
    pub(crate) fn of(values: &[f32]) -> Self {
        let mut words = vec![0u64; values.len().div_ceil(64)];
        words
            .par_chunks_mut(CHUNK / 64)
            .zip(values.par_chunks(CHUNK))
            .for_each(|(words, values)| {
                super::simd::dispatch(Pass {
                    a: values,
                    b: None,
                    out: None,
                    words: Some(words),
                })
            });
        Self {
            words: words.into(),
            len: values.len(),
        }
    }

    /// The mask whose bits the products set as they stored `len` values (see
    /// [`super::microgemm::MaskBits`]).
    pub(crate) fn from_words(words: Vec<std::sync::atomic::AtomicU64>, len: usize) -> Self {
        assert_eq!(words.len(), len.div_ceil(64), "a mask word per 64 values");
        Self {
            words: words.into_iter().map(|w| w.into_inner()).collect(),
            len,
        }
    }

    /// Whether value `i` was kept.
    #[cfg(test)]
    pub(crate) fn kept(&self, i: usize) -> bool {
        (self.words[i / 64] >> (i % 64)) & 1 != 0
    }

    /// `dst[j] = src[j]` where value `at + j` was kept, `0` elsewhere, reading each mask
    /// word once.
    #[inline(always)]
    pub(crate) fn copy(&self, at: usize, src: &[f32], mut dst: impl FnMut(usize, f32)) {
        let mut p = 0;
        while p < src.len() {
            let i = at + p;
            let word = self.words[i / 64] >> (i % 64);
            let run = (64 - i % 64).min(src.len() - p);
            for (j, &v) in src[p..p + run].iter().enumerate() {
                dst(p + j, if (word >> j) & 1 != 0 { v } else { 0.0 });
            }
            p += run;
        }
    }

    /// `grad` zeroed, in place, where the value was not kept: [`ReluMask::apply`] without a
    /// new buffer, for a gradient the caller owns (a pass over memory that reads and writes
    /// the same lines, instead of writing fresh ones).
    pub(crate) fn apply_in_place(&self, grad: &mut [f32]) {
        assert_eq!(grad.len(), self.len, "gradient and mask differ in length");
        grad.par_chunks_mut(CHUNK)
            .zip(self.words.par_chunks(CHUNK / 64))
            .for_each(|(grad, words)| super::simd::dispatch(MaskedInPlace { grad, words }));
    }

    /// `grad` where the value was kept, `0` elsewhere.
    pub(crate) fn apply(&self, grad: &[f32]) -> Vec<f32> {
        assert_eq!(grad.len(), self.len, "gradient and mask differ in length");
        // SAFETY: `Masked` writes every value of its chunk (one per gradient value).
        #[allow(unsafe_code)]
        unsafe {
            filled(grad.len(), CHUNK, |k, out| {
                super::simd::dispatch(Masked {
                    grad: &grad[k * CHUNK..][..out.len()],
                    words: &self.words[k * CHUNK / 64..],
                    out,
                })
            })
        }
    }
}

/// One chunk's pass, compiled for the CPU's vector extensions: `out = relu(a (+ b))` when
/// `out` is given, and the ReLU's mask of `a (+ b)` into `words` when given.
struct Pass<'a> {
    a: &'a [f32],
    b: Option<&'a [f32]>,
    out: Option<&'a mut [MaybeUninit<f32>]>,
    words: Option<&'a mut [u64]>,
}

impl WithSimd for Pass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        let Pass { a, b, out, words } = self;
        let mut words = words.map(|w| w.iter_mut());
        let mut outs = out.map(|o| o.chunks_mut(64));
        for (k, run) in a.chunks(64).enumerate() {
            let mut v = [0f32; 64];
            let v = &mut v[..run.len()];
            match b {
                Some(b) => {
                    for ((v, &x), &y) in v.iter_mut().zip(run).zip(&b[k * 64..]) {
                        *v = x + y;
                    }
                }
                None => v.copy_from_slice(run),
            }
            if let Some(words) = words.as_mut() {
                *words.next().expect("a mask word per 64 values") = word(v);
            }
            if let Some(outs) = outs.as_mut() {
                let out = outs.next().expect("an output run per input run");
                for (o, &x) in out.iter_mut().zip(v.iter()) {
                    o.write(relu_value(x));
                }
            }
        }
    }
}

/// The mask word of up to 64 values: one byte per value first (a vector compare), then each
/// 8 bytes of 0 or 1 gathered into 8 bits by one multiply (bit `8i` moves to bit `56 + i`).
#[inline(always)]
fn word(v: &[f32]) -> u64 {
    let mut bytes = [0u8; 64];
    for (b, &x) in bytes.iter_mut().zip(v) {
        *b = u8::from(keeps(x));
    }
    bytes
        .chunks_exact(8)
        .enumerate()
        .fold(0u64, |w, (k, eight)| {
            let x = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
            w | ((x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k))
        })
}

/// One chunk of [`ReluMask::apply`], compiled for the CPU's vector extensions.
struct Masked<'a> {
    grad: &'a [f32],
    words: &'a [u64],
    out: &'a mut [MaybeUninit<f32>],
}

impl WithSimd for Masked<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        for ((out, g), &word) in self
            .out
            .chunks_mut(64)
            .zip(self.grad.chunks(64))
            .zip(self.words)
        {
            for (j, (o, &g)) in out.iter_mut().zip(g).enumerate() {
                o.write(if (word >> j) & 1 != 0 { g } else { 0.0 });
            }
        }
    }
}

/// One chunk of [`ReluMask::apply_in_place`], compiled for the CPU's vector extensions.
struct MaskedInPlace<'a> {
    grad: &'a mut [f32],
    words: &'a [u64],
}

impl WithSimd for MaskedInPlace<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        for (g, &word) in self.grad.chunks_mut(64).zip(self.words) {
            for (j, g) in g.iter_mut().enumerate() {
                if (word >> j) & 1 == 0 {
                    *g = 0.0;
                }
            }
        }
    }
}

/// `relu(a + b)` for two tensors of one shape on the CPU backend, with a one-bit mask for
/// the backward pass; `None` (the caller uses burn's operators) for other backends, element
/// types, shapes that differ, or tracked and plain inputs mixed.
pub(crate) fn add_relu<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> Option<Tensor<D>> {
    if a.dims() != b.dims() {
        return None;
    }
    let (fa, fb) = (FlexValue::of(a)?, FlexValue::of(b)?);
    let (va, vb) = (fa.f32_data()?, fb.f32_data()?);
    forward(&[fa.clone(), fb.clone()], &va, Some(&vb), a.dims().to_vec())
}

/// `relu(x)` on the CPU backend with a one-bit mask for the backward pass; `None` for other
/// backends or element types.
pub(crate) fn relu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    let fx = FlexValue::of(x)?;
    let vx = fx.f32_data()?;
    forward(std::slice::from_ref(&fx), &vx, None, x.dims().to_vec())
}

/// `relu(a (+ b))` of `inputs`' values `a` (and `b`), with the mask when gradients flow.
fn forward<const D: usize>(
    inputs: &[FlexValue],
    a: &[f32],
    b: Option<&[f32]>,
    shape: Vec<usize>,
) -> Option<Tensor<D>> {
    let graph = |v: &FlexValue| matches!(v, FlexValue::Graph(_));
    if inputs.iter().any(graph) && !inputs.iter().all(graph) {
        // Plain and autodiff tensors mixed: burn's operators sort that out.
        return None;
    }
    let tracked = inputs.iter().any(FlexValue::is_tracked);
    let mut words = vec![0u64; if tracked { a.len().div_ceil(64) } else { 0 }];
    let out = {
        let words = SharedMut::new(&mut words[..]);
        let chunk = |k: usize, out: &mut [MaybeUninit<f32>]| {
            let at = k * CHUNK;
            // The mask words of chunk `k` (of `CHUNK` values, so 64 values a word).
            let (start, per) = (k * CHUNK / 64, CHUNK / 64);
            super::simd::dispatch(Pass {
                a: &a[at..at + out.len()],
                b: b.map(|b| &b[at..at + out.len()]),
                // SAFETY: chunk `k`'s words are written by its task alone.
                #[allow(unsafe_code)]
                words: tracked.then(|| unsafe { words.slice(start, per.min(words.len() - start)) }),
                out: Some(out),
            })
        };
        // SAFETY: `Pass` writes an output for every value of `a` it gets, one per value of
        // the chunk.
        #[allow(unsafe_code)]
        unsafe {
            filled(a.len(), CHUNK, chunk)
        }
    };
    let mask = tracked.then(|| ReluMask {
        words: words.into(),
        len: a.len(),
    });
    let out = FlexTensor::from_data(TensorData::new(out, shape.clone()));
    finish(inputs, out, mask.map(|mask| State { mask, shape }))
}

/// What the backward pass of a ReLU keeps: the mask and the shape.
#[derive(Clone, Debug)]
struct State {
    mask: ReluMask,
    shape: Vec<usize>,
}

impl State {
    /// The input gradient: the output gradient where the ReLU kept the value (masked in
    /// place when the output gradient is this pass's alone).
    fn gradient(&self, mut grad_out: FlexTensor) -> FlexTensor {
        if let Some(g) = super::owned_f32(&mut grad_out) {
            self.mask.apply_in_place(g);
            return grad_out;
        }
        let grad = FlexValue::Plain(grad_out);
        let g = grad
            .f32_data()
            .expect("the gradient of an f32 output is f32");
        FlexTensor::from_data(TensorData::new(self.mask.apply(&g), self.shape.clone()))
    }
}

/// The autodiff node of a ReLU over the sum of its `N` inputs (one: a plain ReLU): each
/// parent gets the masked output gradient.
#[derive(Debug)]
struct ReluBackward<const N: usize>(PhantomData<[(); N]>);

impl<const N: usize> Backward<Flex, N> for ReluBackward<N> {
    type State = State;

    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = ops.state.gradient(grads.consume::<Flex>(&ops.node));
        for parent in ops.parents.into_iter().flatten() {
            let removable = super::removed_by_consuming(&parent.requirement);
            super::register(grads, parent.id, removable, g.clone());
        }
    }
}

/// Wraps the output of a ReLU over the sum of `inputs` (one or two): a plain tensor when
/// every input is plain, a node of their autodiff graph (keeping `state`, which is there
/// when gradients flow) when every input is in it (the caller has refused a mixture).
fn finish<const D: usize>(
    inputs: &[FlexValue],
    out: FlexTensor,
    state: Option<State>,
) -> Option<Tensor<D>> {
    if inputs.iter().all(|v| matches!(v, FlexValue::Plain(_))) {
        return Some(Tensor::from_primitive::<Flex>(out));
    }
    let nodes: Vec<_> = inputs
        .iter()
        .map(|v| match v {
            FlexValue::Graph(t) => Some(t.node()),
            FlexValue::Plain(_) => None,
        })
        .collect::<Option<_>>()?;
    let state = || state.expect("a mask when gradients flow");
    let out = match nodes.len() {
        1 => {
            let [x] = <[_; 1]>::try_from(nodes).ok()?;
            match ReluBackward::<1>(PhantomData)
                .prepare::<NoCheckpointing>([x])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state(), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }
        2 => {
            let [a, b] = <[_; 2]>::try_from(nodes).ok()?;
            match ReluBackward::<2>(PhantomData)
                .prepare::<NoCheckpointing>([a, b])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state(), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }
        _ => return None,
    };
    Some(Tensor::from_primitive::<Graph>(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{activation, Device, Distribution};

    use crate::to_host as host;

    /// Forward values and both inputs' gradients equal burn's `relu(a + b)` bit for bit,
    /// with NaN and zeros in the inputs, on a length that is no multiple of 64.
    #[test]
    fn add_relu_matches_burn_bit_for_bit() {
        let device = Device::flex().autodiff();
        let shape = [3, 5, 7, 11];
        let n: usize = shape.iter().product();
        let mut a0 = host(Tensor::<4>::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        a0[3] = f32::NAN;
        a0[10] = 0.0;
        a0[11] = -0.0;
        let mut b0 = host(Tensor::<4>::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        // Sums of exactly +0 and -0 (-0 + -0 = -0, which the ReLU makes +0).
        b0[10] = 0.0;
        b0[11] = -0.0;
        let r = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let t = |v: &[f32]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device);
        let run = |fast: bool| {
            let (a, b) = (t(&a0).require_grad(), t(&b0).require_grad());
            let y = if fast {
                add_relu(&a, &b).expect("handled")
            } else {
                activation::relu(a.clone() + b.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (
                host(y),
                host(a.grad(&grads).unwrap()),
                host(b.grad(&grads).unwrap()),
            )
        };
        let (fast, slow) = (run(true), run(false));
        let same = |x: &[f32], y: &[f32], what: &str| {
            assert_eq!(x.len(), n);
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_eq!(p.to_bits(), q.to_bits(), "{what} at {i}: {p} against {q}");
            }
        };
        same(&fast.0, &slow.0, "output");
        same(&fast.1, &slow.1, "gradient of a");
        same(&fast.2, &slow.2, "gradient of b");
        assert!(fast.0[3].is_nan(), "NaN propagates");
    }

    /// The mask applied in place gives the bits of the mask applied to a copy (NaN and -0
    /// in the gradient, over more than one task's chunk, on a length that is no multiple of
    /// 64).
    #[test]
    fn the_mask_in_place_gives_the_copys_bits() {
        let device = Device::flex();
        let n = 2 * CHUNK + 37;
        let random = || {
            host(Tensor::<1>::random(
                [n],
                Distribution::Normal(0.0, 1.0),
                &device,
            ))
        };
        let mut x = random();
        x[CHUNK + 3] = 0.0;
        let mask = ReluMask::of(&x);
        let mut grad = random();
        for (i, v) in [
            (1, f32::NAN),
            (2, -0.0),
            (CHUNK + 5, f32::NAN),
            (n - 1, -0.0),
        ] {
            grad[i] = v;
        }
        let copied = mask.apply(&grad);
        mask.apply_in_place(&mut grad);
        for (i, (p, q)) in grad.iter().zip(&copied).enumerate() {
            assert_eq!(p.to_bits(), q.to_bits(), "value {i}: {p} against {q}");
        }
        assert!(copied.contains(&0.0) && copied.iter().any(|&v| v != 0.0));
    }

    /// The plain ReLU likewise (NaN, +0 and -0 included, over more than one task's chunk),
    /// and its mask reads back which values it kept.
    #[test]
    fn relu_matches_burn_and_the_mask_reads_back() {
        let device = Device::flex().autodiff();
        let shape = [2, 3, 129, 131];
        let mut x0 = host(Tensor::<4>::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        assert!(x0.len() > CHUNK);
        for (i, v) in [(5, f32::NAN), (6, 0.0), (7, -0.0), (CHUNK + 1, f32::NAN)] {
            x0[i] = v;
        }
        let mask = ReluMask::of(&x0);
        assert_eq!(mask.len, x0.len());
        for (i, &v) in x0.iter().enumerate() {
            assert_eq!(mask.kept(i), v > 0.0 || v.is_nan(), "value {i}: {v}");
        }
        let r = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fast: bool| {
            let x =
                Tensor::<4>::from_data(TensorData::new(x0.clone(), shape), &device).require_grad();
            let y = if fast {
                relu(&x).expect("handled")
            } else {
                activation::relu(x.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (host(y), host(x.grad(&grads).unwrap()))
        };
        let (fast, slow) = (run(true), run(false));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast.0), bits(&slow.0), "output");
        assert_eq!(bits(&fast.1), bits(&slow.1), "gradient");
        // Plain tensors (no autodiff) take the kernel too.
        let plain = Tensor::<4>::from_data(TensorData::new(x0.clone(), shape), &Device::flex());
        assert_eq!(bits(&host(relu(&plain).expect("handled"))), bits(&slow.0));
    }
}
