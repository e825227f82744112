//! Stride-1, undilated, ungrouped 2-D convolution and its input gradient.
//!
//! Per image, the input is copied into zero-padded planes of width `wp`; every output row is
//! then computed on that padded width, so for one weight tap `(ci, i, j)` the inputs of
//! consecutive output positions are consecutive values starting at offset `i * wp + j` of the
//! padded plane: one contiguous multiply-add over `ho * wp` values per tap, which the compiler
//! vectorises. Four output channels are accumulated in the same pass, so each input load
//! serves four of them; the `wp - wo` extra columns per row are discarded when the plane is
//! copied out. Large planes go in tiles of rows, so that the accumulators stay in L1.
//!
//! The input gradient of a stride-1 convolution is again such a convolution: of the output
//! gradient, with the weights' channel axes swapped and their taps flipped, and the padding
//! `k - 1 - p` on each side (which is why padding above `k - 1` is declined).

use std::sync::Arc;

use burn::tensor::Tensor;
use macerator::{Simd, WithSimd};
use rayon::prelude::*;

use super::{finish, flex_tensor, parameter_data, ConstantOperands, InputGradient, ReluMask};

/// Output channels accumulated together.
const CHANNEL_BLOCK: usize = 4;

/// Padded output positions accumulated at a time (rows of `wp`, at least one row): four
/// channels' accumulators of this size stay in a 32 KiB L1 data cache.
const TILE: usize = 2048;

/// Most input or output channels handled, and most values in one image's padded input (in
/// either direction). Per weight tap the kernel streams the accumulators through L1 and a
/// slice of the padded input from L2; with many channels or large planes burn-flex's
/// im2col + GEMM reuses registers and caches better and wins. Measured forward + input
/// gradient against burn (`benches/RESULTS.md`): 8–16 channels 1.75–2.5× faster; 32 channels
/// at 32×32 2.2×, at 56×56 1.1×; 64 channels at 32×32 1.35×, at 40×40 1.1×, at 56×56 0.68×;
/// 128 channels at 16×16 0.65×.
const MAX_CHANNELS: usize = 64;
const MAX_PADDED_INPUT: usize = 1 << 17;

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    /// Padding: top, left, bottom, right.
    pads: [usize; 4],
}

impl Geometry {
    fn hp(&self) -> usize {
        self.h + self.pads[0] + self.pads[2]
    }
    fn wp(&self) -> usize {
        self.w + self.pads[1] + self.pads[3]
    }
    fn ho(&self) -> usize {
        self.hp() + 1 - self.kh
    }
    fn wo(&self) -> usize {
        self.wp() + 1 - self.kw
    }

    /// `true` for shapes these kernels handle (including their backward).
    fn supported(&self) -> bool {
        let [t, l, b, r] = self.pads;
        self.kh >= 1
            && self.kw >= 1
            && self.hp() >= self.kh
            && self.wp() >= self.kw
            && t < self.kh
            && b < self.kh
            && l < self.kw
            && r < self.kw
            && self.c_in <= MAX_CHANNELS
            && self.c_out <= MAX_CHANNELS
            && self.c_in * self.hp() * self.wp() <= MAX_PADDED_INPUT
            && self.c_out * (self.ho() + self.kh - 1) * (self.wo() + self.kw - 1)
                <= MAX_PADDED_INPUT
            && [self.n, self.c_in, self.c_out, self.h, self.w]
                .iter()
                .all(|&d| d > 0)
    }

    /// The convolution that computes this one's input gradient, and its weights.
    fn transposed(&self, weight: &[f32]) -> (Self, Vec<f32>) {
        let (kh, kw) = (self.kh, self.kw);
        let [t, l, b, r] = self.pads;
        let g = Self {
            n: self.n,
            c_in: self.c_out,
            h: self.ho(),
            w: self.wo(),
            c_out: self.c_in,
            kh,
            kw,
            pads: [kh - 1 - t, kw - 1 - l, kh - 1 - b, kw - 1 - r],
        };
        let mut flipped = vec![0f32; weight.len()];
        for co in 0..self.c_out {
            for ci in 0..self.c_in {
                for i in 0..kh {
                    for j in 0..kw {
                        let src = ((co * self.c_in + ci) * kh + i) * kw + j;
                        let dst = ((ci * self.c_out + co) * kh + (kh - 1 - i)) * kw + (kw - 1 - j);
                        flipped[dst] = weight[src];
                    }
                }
            }
        }
        (g, flipped)
    }
}

/// Adds `w[k] * src` to row `k` of `acc` for `k < B` (rows of length `src.len()`), one
/// pass over `src` for all `B` rows.
#[inline(always)]
fn axpy_block<const B: usize>(w: [f32; B], src: &[f32], acc: &mut [f32]) {
    let len = src.len();
    let mut rows = acc.chunks_exact_mut(len);
    let mut row = || rows.next().expect("B rows");
    match B {
        4 => {
            let (a0, a1, a2, a3) = (row(), row(), row(), row());
            for ((((s, o0), o1), o2), o3) in src.iter().zip(a0).zip(a1).zip(a2).zip(a3) {
                *o0 += w[0] * s;
                *o1 += w[1] * s;
                *o2 += w[2] * s;
                *o3 += w[3] * s;
            }
        }
        _ => {
            for &wk in &w {
                for (o, s) in row().iter_mut().zip(src) {
                    *o += wk * s;
                }
            }
        }
    }
}

/// Convolves one image `op.x` (`[c_in, h, w]`, zeroed where `op.mask` is off)
/// into the output channels `op.co0..` that fit in `op.out` (at most [`CHANNEL_BLOCK`]
/// planes of `[ho, wo]`), with the bias, and a ReLU if `op.relu`.
#[inline(always)]
fn conv_block(op: ConvBlock<'_>) {
    let ConvBlock {
        g,
        x,
        mask,
        weight,
        bias,
        co0,
        relu,
        out,
    } = op;
    let (hp, wp, ho, wo) = (g.hp(), g.wp(), g.ho(), g.wo());
    let [top, left, _, _] = g.pads;
    let padded_plane = hp * wp;
    // `kw - 1` zeros of slack at the end: the last row's taps read up to there.
    let mut padded = vec![0f32; g.c_in * padded_plane + g.kw];
    for (c, plane) in x.chunks_exact(g.h * g.w).enumerate() {
        for (r, src) in plane.chunks_exact(g.w).enumerate() {
            let start = c * padded_plane + (r + top) * wp + left;
            let dst = &mut padded[start..start + g.w];
            match mask {
                // The backward pass of a fused ReLU: the gradient passes where the ReLU kept
                // the output.
                Some((m, base)) => m.copy(base + c * g.h * g.w + r * g.w, src, |j, v| dst[j] = v),
                None => dst.copy_from_slice(src),
            }
        }
    }
    let taps = g.c_in * g.kh * g.kw;
    let block = out.len() / (ho * wo);
    // Output rows in tiles of about TILE padded positions.
    let tile_rows = (TILE / wp).max(1);
    let mut acc = vec![0f32; block * tile_rows * wp];
    for r0 in (0..ho).step_by(tile_rows) {
        let rows = tile_rows.min(ho - r0);
        let len = rows * wp;
        let acc = &mut acc[..block * len];
        for (k, a) in acc.chunks_exact_mut(len).enumerate() {
            a.fill(bias.map_or(0.0, |b| b[co0 + k]));
        }
        let mut tap = 0;
        for ci in 0..g.c_in {
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let start = ci * padded_plane + (r0 + i) * wp + j;
                    let src = &padded[start..start + len];
                    let w = |k: usize| weight[(co0 + k) * taps + tap];
                    match block {
                        4 => axpy_block::<4>(std::array::from_fn(w), src, acc),
                        3 => axpy_block::<3>(std::array::from_fn(w), src, acc),
                        2 => axpy_block::<2>(std::array::from_fn(w), src, acc),
                        _ => axpy_block::<1>(std::array::from_fn(w), src, acc),
                    }
                    tap += 1;
                }
            }
        }
        for (plane, a) in out.chunks_exact_mut(ho * wo).zip(acc.chunks_exact(len)) {
            let plane = &mut plane[r0 * wo..(r0 + rows) * wo];
            for (dst, src) in plane.chunks_exact_mut(wo).zip(a.chunks_exact(wp)) {
                if relu {
                    // burn's ReLU: values at or below zero become zero, NaN stays NaN.
                    for (d, &v) in dst.iter_mut().zip(&src[..wo]) {
                        *d = super::relu_value(v);
                    }
                } else {
                    dst.copy_from_slice(&src[..wo]);
                }
            }
        }
    }
}

/// [`conv_block`] as an operation for [`super::simd::dispatch`], which inlines it into a
/// function compiled for the CPU's vector extensions. (A closure would not do: its body is
/// compiled separately, for the baseline target.)
struct ConvBlock<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    /// The mask over the whole batch, and where this image starts in it.
    mask: Option<(&'a ReluMask, usize)>,
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    co0: usize,
    relu: bool,
    out: &'a mut [f32],
}

impl WithSimd for ConvBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        conv_block(self)
    }
}

/// Convolves a batch `[n, c_in, h, w]` into `[n, c_out, ho, wo]`, followed by a ReLU if
/// `relu`, with the input first zeroed where `mask` (over its values) is off; one task
/// per image and block of [`CHANNEL_BLOCK`] output channels, so that a single image uses
/// every core too.
fn forward(
    g: &Geometry,
    x: &[f32],
    mask: Option<&ReluMask>,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let out_plane = g.ho() * g.wo();
    let in_image = g.c_in * g.h * g.w;
    let mut out = vec![0f32; g.n * g.c_out * out_plane];
    out.par_chunks_mut(g.c_out * out_plane)
        .enumerate()
        .for_each(|(i, out)| {
            let x = &x[i * in_image..(i + 1) * in_image];
            let mask = mask.map(|m| (m, i * in_image));
            out.par_chunks_mut(CHANNEL_BLOCK * out_plane)
                .enumerate()
                .for_each(|(b, out)| {
                    super::simd::dispatch(ConvBlock {
                        g,
                        x,
                        mask,
                        weight,
                        bias,
                        co0: b * CHANNEL_BLOCK,
                        relu,
                        out,
                    })
                })
        });
    out
}

/// What the backward pass needs: the transposed convolution and its weights, and for a
/// fused ReLU which outputs it kept (the gradient passes there).
#[derive(Clone, Debug)]
struct ConvState {
    transposed: Geometry,
    weight: Arc<[f32]>,
    relu: Option<ReluMask>,
}

impl InputGradient for ConvState {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        let t = &self.transposed;
        let values = forward(t, grad_out, self.relu.as_ref(), &self.weight, None, false);
        (values, [t.n, t.c_out, t.ho(), t.wo()])
    }
}

/// A stride-1, undilated, ungrouped 2-D convolution on the CPU backend with padding
/// `[(top, bottom), (left, right)]`, or `None` when the kernel does not apply (another
/// backend, weights or bias that need gradients, padding of at least the kernel size, large
/// images); the caller then uses burn's `conv2d`. With `relu`, the output is that of a ReLU
/// applied to the convolution (one pass, and one node in the autodiff graph).
pub(crate) fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    pads: [(usize, usize); 2],
    relu: bool,
) -> Option<Tensor<4>> {
    let [n, c_in, h, w] = x.dims();
    let [c_out, wc_in, kh, kw] = weight.dims();
    let g = Geometry {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        pads: [pads[0].0, pads[1].0, pads[0].1, pads[1].1],
    };
    if wc_in != c_in || !g.supported() {
        return None;
    }
    let ConstantOperands {
        x,
        weight: wv,
        bias: bv,
    } = ConstantOperands::of(x, weight, bias)?;
    let (wd, bd) = parameter_data(&wv, bv.as_ref(), c_out)?;
    let out = {
        let xd = x.f32_data()?;
        forward(&g, &xd, None, &wd, bd.as_deref(), relu)
    };
    let out = flex_tensor(out, [n, c_out, g.ho(), g.wo()]);
    Some(finish(x, out, |out| {
        let (transposed, flipped) = g.transposed(&wd);
        ConvState {
            transposed,
            weight: flipped.into(),
            relu: relu.then(|| ReluMask::of(out)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_host as host;
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{activation, Device, Distribution};

    use crate::kernels::testing::close;

    /// (input [n, c, h, w], weight [co, c, kh, kw], pads [(top, bottom), (left, right)])
    type Case = ([usize; 4], [usize; 4], [(usize, usize); 2]);
    const CASES: [Case; 7] = [
        ([3, 1, 28, 28], [8, 1, 3, 3], [(1, 1), (1, 1)]),
        ([2, 8, 14, 14], [16, 8, 3, 3], [(1, 1), (1, 1)]),
        ([2, 3, 9, 7], [5, 3, 3, 3], [(0, 0), (0, 0)]),
        ([2, 6, 8, 11], [7, 6, 5, 3], [(2, 1), (0, 2)]),
        ([1, 4, 6, 6], [2, 4, 1, 1], [(0, 0), (0, 0)]),
        ([2, 2, 1, 12], [3, 2, 1, 4], [(0, 0), (3, 0)]),
        // 60 output rows of padded width 52: two tiles of rows (39 and 21).
        ([1, 2, 60, 50], [5, 2, 3, 3], [(1, 1), (1, 1)]),
    ];

    fn burn_conv(
        x: Tensor<4>,
        w: Tensor<4>,
        b: Option<Tensor<1>>,
        p: [(usize, usize); 2],
    ) -> Tensor<4> {
        burn_conv2d(x, w, b, ConvOptions::new_with_padding([1, 1], p, [1, 1], 1))
    }

    #[test]
    fn forward_matches_burn() {
        let device = Device::flex();
        for (xs, ws, p) in CASES {
            let x = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &device);
            let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &device);
            for bias in [None, Some(b)] {
                let fast = conv2d(&x, &w, bias.as_ref(), p, false).expect("handled");
                let reference = burn_conv(x.clone(), w.clone(), bias, p);
                assert_eq!(fast.dims(), reference.dims());
                close(
                    &host(fast),
                    &host(reference),
                    &format!("{xs:?} {ws:?} {p:?}"),
                );
            }
        }
    }

    /// Output and input gradient against burn's conv2d (followed by burn's ReLU when the
    /// kernel fuses one), under a random weighting of the outputs.
    #[test]
    fn input_gradient_matches_burn_with_and_without_relu() {
        let device = Device::flex().autodiff();
        for (xs, ws, p) in CASES {
            for relu in [false, true] {
                let x0 = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &device);
                let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &device);
                let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &device);
                let out_dims = burn_conv(x0.clone(), w.clone(), None, p).dims();
                let r = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);

                let x = x0.clone().require_grad();
                let fast = conv2d(&x, &w, Some(&b), p, relu).expect("handled");
                let fast_y = host(fast.clone());
                let grads = (fast * r.clone()).sum().backward();
                let fast_g = host(x.grad(&grads).expect("tracked"));

                let x = x0.require_grad();
                let reference = burn_conv(x.clone(), w, Some(b), p);
                let reference = if relu {
                    activation::relu(reference)
                } else {
                    reference
                };
                let ref_y = host(reference.clone());
                let grads = (reference * r).sum().backward();
                let ref_g = host(x.grad(&grads).expect("tracked"));
                let what = format!("{xs:?} {ws:?} {p:?} relu {relu}");
                if relu {
                    assert!(fast_y.iter().all(|&v| v >= 0.0), "{what}");
                }
                close(&fast_y, &ref_y, &format!("forward {what}"));
                close(&fast_g, &ref_g, &format!("gradient {what}"));
            }
        }
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        // The convolution is linear in its input, so for the loss sum(r * conv(x)) a central
        // difference with a step of 1 is exact up to rounding, and a large step keeps the
        // float32 rounding of the loss small relative to the difference.
        let device = Device::flex().autodiff();
        let (xs, ws, p) = CASES[3];
        let x0 = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &device);
        let out_dims = burn_conv(x0.clone(), w.clone(), None, p).dims();
        let r = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);
        let loss =
            |x: &Tensor<4>| (conv2d(x, &w, Some(&b), p, false).expect("handled") * r.clone()).sum();
        let x = x0.clone().require_grad();
        let g = host(x.grad(&loss(&x).backward()).expect("tracked"));
        let base = host(x0);
        let at = |v: Vec<f32>| {
            let t = Tensor::<4>::from_data(burn::tensor::TensorData::new(v, xs), &device);
            host(loss(&t).reshape([1, 1, 1, 1]))[0]
        };
        for idx in (0..base.len()).step_by(7) {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[idx] += 1.0;
            minus[idx] -= 1.0;
            let fd = (at(plus) - at(minus)) / 2.0;
            assert!(
                (fd - g[idx]).abs() <= 1e-3 * g[idx].abs().max(1.0),
                "{idx}: {fd} vs {}",
                g[idx]
            );
        }
    }

    #[test]
    fn unhandled_cases_are_declined() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 2, 6, 6], &device);
        let w = Tensor::<4>::zeros([3, 2, 3, 3], &device);
        // Padding of the kernel size, mismatched channels.
        assert!(conv2d(&x, &w, None, [(3, 3), (1, 1)], false).is_none());
        let w1 = Tensor::<4>::zeros([3, 1, 3, 3], &device);
        assert!(conv2d(&x, &w1, None, [(1, 1), (1, 1)], false).is_none());
        // Tracked weights.
        let ad = Device::flex().autodiff();
        let xa = Tensor::<4>::zeros([1, 2, 6, 6], &ad);
        let wa = Tensor::<4>::zeros([3, 2, 3, 3], &ad).require_grad();
        assert!(conv2d(&xa, &wa, None, [(1, 1), (1, 1)], false).is_none());
    }

    /// The kernel's forward values and input gradient are bit-identical at every vector
    /// width the CPU offers (scalar, SSE4.2, AVX2, AVX-512): no result depends on the
    /// machine a test or a user runs on.
    #[test]
    fn results_do_not_depend_on_the_vector_width() {
        use crate::kernels::simd::{set_simd_cap, simd_level, SimdCap};
        let device = Device::flex().autodiff();
        let run = || {
            let mut out = Vec::new();
            for (k, (xs, ws, p)) in CASES.iter().enumerate() {
                let seeded = |shape: [usize; 4], salt: usize| {
                    let n: usize = shape.iter().product();
                    let v: Vec<f32> = (0..n)
                        .map(|i| (((i * 7919 + salt * 104_729 + k) % 1000) as f32 - 500.0) / 97.0)
                        .collect();
                    Tensor::<4>::from_data(burn::tensor::TensorData::new(v, shape), &device)
                };
                let x = seeded(*xs, 1).require_grad();
                let w = seeded(*ws, 2);
                let y = conv2d(&x, &w, None, *p, true).expect("handled");
                let r = seeded(y.dims(), 3);
                out.extend(host(y.clone()).into_iter().map(f32::to_bits));
                let g = x.grad(&(y * r).sum().backward()).expect("tracked");
                out.extend(host(g).into_iter().map(f32::to_bits));
            }
            out
        };
        set_simd_cap(Some(SimdCap::Native));
        let native = run();
        let native_level = simd_level();
        for cap in [SimdCap::Avx2, SimdCap::Sse42, SimdCap::Scalar] {
            set_simd_cap(Some(cap));
            let level = simd_level();
            let got = run();
            set_simd_cap(None);
            assert!(
                got == native,
                "results at {level} differ from {native_level}"
            );
        }
    }
}
