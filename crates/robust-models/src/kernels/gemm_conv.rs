//! General 2-D convolution (any stride, padding and dilation; one group) as one matrix
//! product over a whole group of images, and its input gradient.
//!
//! burn-flex convolves image by image: on CIFAR-size ResNets the later layers have 1–16
//! output positions per image, so each product is nearly a matrix-vector product and runs
//! at a few percent of the machine's peak. Here the `im2col` columns of many images are laid
//! side by side (`[c·kh·kw, images·positions]`), so the product `W · cols` is wide, and it
//! runs on [`super::microgemm`] in column tiles on every core. Since `tap_gemm` takes every
//! strided convolution and every stride-1 one with 32 or more channels, what comes here is
//! mostly dilated convolutions and 1×1 convolutions over large planes (read in place, one
//! product per image).
//!
//! The input gradient needs no weight gradient (an attack's weights are constants):
//! `dcols = Wᵀ · dY`, then `col2im` adds each column back onto the input positions it was
//! read from. Every input plane is written by one task in a fixed order, so the result does
//! not depend on the number of threads. Images go in groups whose columns fit in
//! [`COLS_BUDGET`] values, which bounds the extra memory.

use std::sync::Arc;

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::microgemm::PackedLhs;

use super::{
    finish, flex_tensor, parameter_data, ConstantOperands, InputGradient, ReluMask, SharedMut,
};

/// Most `f32` values of im2col columns held at once (64 MiB).
const COLS_BUDGET: usize = 16 << 20;

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding: (top, bottom), (left, right).
    pub pads: [(usize, usize); 2],
}

impl Geometry {
    fn ho(&self) -> usize {
        let span = (self.kh - 1) * self.dilation[0] + 1;
        (self.h + self.pads[0].0 + self.pads[0].1 - span) / self.stride[0] + 1
    }
    fn wo(&self) -> usize {
        let span = (self.kw - 1) * self.dilation[1] + 1;
        (self.w + self.pads[1].0 + self.pads[1].1 - span) / self.stride[1] + 1
    }
    /// Rows of the columns matrix.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn positions(&self) -> usize {
        self.ho() * self.wo()
    }
    fn valid(&self) -> bool {
        let span_h = (self.kh - 1) * self.dilation[0] + 1;
        let span_w = (self.kw - 1) * self.dilation[1] + 1;
        [self.n, self.c, self.h, self.w, self.co, self.kh, self.kw]
            .iter()
            .all(|&d| d > 0)
            && self.stride.iter().all(|&s| s > 0)
            && self.dilation.iter().all(|&d| d > 0)
            && self.h + self.pads[0].0 + self.pads[0].1 >= span_h
            && self.w + self.pads[1].0 + self.pads[1].1 >= span_w
    }
    /// Images per group: as many as keep the columns within [`COLS_BUDGET`] (at least 1).
    fn group(&self) -> usize {
        (COLS_BUDGET / (self.k() * self.positions()).max(1)).clamp(1, self.n)
    }
    /// The input row read by output row `o` at kernel row `i`, if inside the image.
    fn in_row(&self, o: usize, i: usize) -> Option<usize> {
        (o * self.stride[0] + i * self.dilation[0])
            .checked_sub(self.pads[0].0)
            .filter(|&r| r < self.h)
    }
    /// For kernel column `j`: the output columns `lo..hi` that read inside the image, and
    /// the input column read by output column `lo`.
    fn col_span(&self, j: usize) -> (usize, usize, usize) {
        let (s, off) = (self.stride[1], j * self.dilation[1]);
        let pl = self.pads[1].0;
        // First output column with o·s + off ≥ pl, and one past the last with o·s + off < pl + w.
        let lo = pl.saturating_sub(off).div_ceil(s);
        let hi = (pl + self.w).saturating_sub(off).div_ceil(s).min(self.wo());
        let lo = lo.min(hi);
        (lo, hi, (lo * s + off).saturating_sub(pl))
    }
}

/// Columns per task of [`matmul`].
const MATMUL_COLUMNS: usize = 512;

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, row-major `dst` and `rhs`, `lhs` with the given row
/// and column strides (so that `Wᵀ` needs no copy): tasks of [`MATMUL_COLUMNS`] columns on
/// every core, each a [`super::microgemm`] product (AVX-512 where present, the same bits at
/// every vector width and thread count).
fn matmul(m: usize, n: usize, k: usize, lhs: (&[f32], usize, usize), rhs: &[f32], dst: &mut [f32]) {
    assert!(m > 0 && n > 0 && k > 0);
    assert!(dst.len() >= m * n, "dst too short");
    matmul_packed(&pack(m, k, lhs), n, rhs, &SharedMut::new(&mut dst[..m * n]));
}

/// `lhs[m×k]` (with the given row and column strides) packed for [`matmul_packed`].
fn pack(m: usize, k: usize, lhs: (&[f32], usize, usize)) -> PackedLhs {
    super::microgemm::pack_lhs(
        (m, k),
        (lhs.0, lhs.1, super::microgemm::Offsets::Stride(lhs.2)),
    )
}

/// [`matmul`] with `lhs` packed once by [`pack`] (a weight used for every image), into `dst`
/// (`m × n` values, only written: it may be uninitialised).
fn matmul_packed(packed: &PackedLhs, n: usize, rhs: &[f32], shared: &SharedMut<'_>) {
    let (m, k) = packed.dims();
    assert!(m > 0 && n > 0 && k > 0);
    assert!(
        rhs.len() >= k * n && shared.len() >= m * n,
        "rhs or dst too short"
    );
    (0..n.div_ceil(MATMUL_COLUMNS))
        .into_par_iter()
        .for_each(|t| {
            let c0 = t * MATMUL_COLUMNS;
            let cols = MATMUL_COLUMNS.min(n - c0);
            let (start, room) = shared.tail(c0);
            // SAFETY: `dst` holds m·n values (asserted); this task writes columns
            // c0..c0 + cols of its rows, which no other task touches; `microgemm` checks
            // the operands' bounds.
            #[allow(unsafe_code)]
            unsafe {
                super::microgemm::product_packed(
                    cols,
                    (start, room, n),
                    packed,
                    (&rhs[c0..], super::microgemm::Offsets::Stride(n)),
                    false,
                )
            };
        });
}

/// The columns of images `n0..n0 + nb`: row `(c, i, j)` holds, for every image and output
/// position, the input value kernel tap `(i, j)` of channel `c` reads (0 in the padding).
fn im2col(g: &Geometry, x: &[f32], n0: usize, nb: usize, cols: &mut [f32]) {
    let (p, wo) = (g.positions(), g.wo());
    cols.par_chunks_mut(nb * p)
        .enumerate()
        .for_each(|(row, dst)| {
            let c = row / (g.kh * g.kw);
            let (i, j) = ((row / g.kw) % g.kh, row % g.kw);
            for b in 0..nb {
                let plane = &x[((n0 + b) * g.c + c) * g.h * g.w..][..g.h * g.w];
                for oh in 0..g.ho() {
                    let d = &mut dst[b * p + oh * wo..b * p + (oh + 1) * wo];
                    match g.in_row(oh, i) {
                        None => d.fill(0.0),
                        Some(r) => {
                            let src = &plane[r * g.w..(r + 1) * g.w];
                            let (lo, hi, first) = g.col_span(j);
                            d[..lo].fill(0.0);
                            d[hi..].fill(0.0);
                            let s = g.stride[1];
                            if s == 1 {
                                d[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                            } else {
                                for (k, v) in d[lo..hi].iter_mut().enumerate() {
                                    *v = src[first + k * s];
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// Adds the columns `dcols` of images `n0..n0 + nb` back onto their input positions in
/// `dx` (the transpose of [`im2col`]); one task per input plane.
fn col2im(g: &Geometry, dcols: &[f32], n0: usize, nb: usize, dx: &mut [f32]) {
    let (p, wo, taps) = (g.positions(), g.wo(), g.kh * g.kw);
    let m = nb * p;
    let planes = &mut dx[n0 * g.c * g.h * g.w..(n0 + nb) * g.c * g.h * g.w];
    planes
        .par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(bc, plane)| {
            let (b, c) = (bc / g.c, bc % g.c);
            for t in 0..taps {
                let (i, j) = (t / g.kw, t % g.kw);
                let src = &dcols[(c * taps + t) * m + b * p..][..p];
                let (lo, hi, first) = g.col_span(j);
                let s = g.stride[1];
                for oh in 0..g.ho() {
                    let Some(r) = g.in_row(oh, i) else { continue };
                    let row = &mut plane[r * g.w..(r + 1) * g.w];
                    let from = &src[oh * wo + lo..oh * wo + hi];
                    if s == 1 {
                        for (d, &v) in row[first..first + hi - lo].iter_mut().zip(from) {
                            *d += v;
                        }
                    } else {
                        for (k, &v) in from.iter().enumerate() {
                            row[first + k * s] += v;
                        }
                    }
                }
            }
        });
}

impl Geometry {
    /// A 1×1, stride-1, unpadded convolution over planes large enough for one product per
    /// image: the input is its own columns (`[c, positions]` per image), so no copy is made.
    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pads == [(0, 0), (0, 0)]
            && self.positions() >= POINTWISE_MIN_POSITIONS
    }
}

/// Output positions per image from which a 1×1 convolution is one product per image.
const POINTWISE_MIN_POSITIONS: usize = 196;

/// `W · x` per image for a [`Geometry::pointwise`] convolution (`W` as `lhs`, with its
/// strides), then `epilogue(image, out_image)`: the `[n, rows, positions]` output.
fn per_image(
    g: &Geometry,
    rows: usize,
    inner: usize,
    lhs: (&[f32], usize, usize),
    x: &[f32],
    epilogue: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let p = g.positions();
    // The weights are packed once for every image.
    let packed = pack(rows, inner, lhs);
    let image = |b: usize, o: &mut [std::mem::MaybeUninit<f32>]| {
        let shared = SharedMut::uninit(o);
        matmul_packed(&packed, p, &x[b * inner * p..(b + 1) * inner * p], &shared);
        // SAFETY: the product wrote all `rows × p` values of the image just now.
        #[allow(unsafe_code)]
        let o = unsafe { &mut *(o as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
        epilogue(b, o);
    };
    // SAFETY: each chunk is one image's `rows × p` outputs, every one of which the product
    // writes (it overwrites its destination, never reading it).
    #[allow(unsafe_code)]
    unsafe {
        super::filled(g.n * rows * p, rows * p, image)
    }
}

/// The forward pass: `[n, c, h, w]` → `[n, co, ho, wo]`, plus bias, then ReLU if `relu`.
fn forward(g: &Geometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    let (p, k) = (g.positions(), g.k());
    if g.pointwise() {
        return per_image(g, g.co, g.c, (weight, g.c, 1), x, |_, o| {
            o.par_chunks_mut(p).enumerate().for_each(|(co, plane)| {
                let add = bias.map_or(0.0, |bv| bv[co]);
                for v in plane {
                    let t = *v + add;
                    *v = if relu { super::relu_value(t) } else { t };
                }
            })
        });
    }
    let mut out = vec![0f32; g.n * g.co * p];
    let group = g.group();
    let mut cols = vec![0f32; k * group * p];
    let mut prod = vec![0f32; g.co * group * p];
    let mut n0 = 0;
    while n0 < g.n {
        let nb = group.min(g.n - n0);
        let m = nb * p;
        im2col(g, x, n0, nb, &mut cols[..k * m]);
        matmul(
            g.co,
            m,
            k,
            (weight, k, 1),
            &cols[..k * m],
            &mut prod[..g.co * m],
        );
        let prod = &prod[..g.co * m];
        out[n0 * g.co * p..(n0 + nb) * g.co * p]
            .par_chunks_mut(p)
            .enumerate()
            .for_each(|(bo, dst)| {
                let (b, o) = (bo / g.co, bo % g.co);
                let src = &prod[o * m + b * p..][..p];
                let add = bias.map_or(0.0, |bv| bv[o]);
                for (d, &s) in dst.iter_mut().zip(src) {
                    let v = s + add;
                    *d = if relu { super::relu_value(v) } else { v };
                }
            });
        n0 += nb;
    }
    out
}

/// What the backward pass keeps: the geometry, the weights, and for a fused ReLU the output.
#[derive(Clone, Debug)]
struct State {
    g: Geometry,
    weight: Arc<[f32]>,
    /// With a fused ReLU: which outputs it kept.
    relu: Option<ReluMask>,
}

impl InputGradient for State {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        let g = &self.g;
        let (p, k) = (g.positions(), g.k());
        if g.pointwise() {
            // dX = Wᵀ · dY per image, with dY zeroed first where the fused ReLU was off.
            let masked: Option<Vec<f32>> = self.relu.as_ref().map(|mk| mk.apply(grad_out));
            let dy = masked.as_deref().unwrap_or(grad_out);
            let dx = per_image(g, g.c, g.co, (&self.weight, 1, g.c), dy, |_, _| {});
            return (dx, [g.n, g.c, g.h, g.w]);
        }
        let mut dx = vec![0f32; g.n * g.c * g.h * g.w];
        let group = g.group();
        let mut dy = vec![0f32; g.co * group * p];
        let mut dcols = vec![0f32; k * group * p];
        let mut n0 = 0;
        while n0 < g.n {
            let nb = group.min(g.n - n0);
            let m = nb * p;
            // dY as [co, images·positions], zero where the fused ReLU was off.
            dy[..g.co * m]
                .par_chunks_mut(m)
                .enumerate()
                .for_each(|(o, dst)| {
                    for b in 0..nb {
                        let at = ((n0 + b) * g.co + o) * p;
                        let src = &grad_out[at..at + p];
                        let d = &mut dst[b * p..(b + 1) * p];
                        match &self.relu {
                            Some(mk) => mk.copy(at, src, |j, v| d[j] = v),
                            None => d.copy_from_slice(src),
                        }
                    }
                });
            // dcols = Wᵀ · dY: W is [co, k] row-major, so Wᵀ has row stride 1, column stride k.
            matmul(
                k,
                m,
                g.co,
                (&self.weight, 1, k),
                &dy[..g.co * m],
                &mut dcols[..k * m],
            );
            col2im(g, &dcols[..k * m], n0, nb, &mut dx);
            n0 += nb;
        }
        (dx, [g.n, g.c, g.h, g.w])
    }
}

/// A one-group 2-D convolution on the CPU backend as matrix products, or `None` when it
/// does not apply (another backend or element type, weights or bias that need gradients);
/// the caller then uses burn's `conv2d`. With `relu`, a ReLU follows in the same pass.
pub(crate) fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: [(usize, usize); 2],
    relu: bool,
) -> Option<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let [co, wc, kh, kw] = weight.dims();
    let g = Geometry {
        n,
        c,
        h,
        w,
        co,
        kh,
        kw,
        stride,
        dilation,
        pads,
    };
    if wc != c || !g.valid() {
        return None;
    }
    let ConstantOperands {
        x,
        weight: wv,
        bias: bv,
    } = ConstantOperands::of(x, weight, bias)?;
    let (wd, bd) = parameter_data(&wv, bv.as_ref(), co)?;
    let out = {
        let xd = x.f32_data()?;
        forward(&g, &xd, &wd, bd.as_deref(), relu)
    };
    let out = flex_tensor(out, [n, co, g.ho(), g.wo()]);
    Some(finish(x, out, |out| State {
        g,
        weight: wd.to_vec().into(),
        relu: relu.then(|| ReluMask::of(out)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::matches_burn;
    use crate::to_host as host;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution};

    /// (input, weight, stride, dilation, pads)
    type Case = (
        [usize; 4],
        [usize; 4],
        [usize; 2],
        [usize; 2],
        [(usize, usize); 2],
    );
    const CASES: [Case; 7] = [
        (
            [2, 6, 16, 16],
            [5, 6, 1, 1],
            [1, 1],
            [1, 1],
            [(0, 0), (0, 0)],
        ),
        (
            [3, 3, 32, 32],
            [16, 3, 7, 7],
            [2, 2],
            [1, 1],
            [(3, 3), (3, 3)],
        ),
        (
            [2, 16, 9, 9],
            [32, 16, 3, 3],
            [2, 2],
            [1, 1],
            [(1, 1), (1, 1)],
        ),
        (
            [2, 8, 8, 8],
            [24, 8, 1, 1],
            [2, 2],
            [1, 1],
            [(0, 0), (0, 0)],
        ),
        (
            [2, 70, 4, 4],
            [80, 70, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
        ),
        (
            [1, 5, 11, 7],
            [6, 5, 3, 2],
            [1, 2],
            [2, 1],
            [(2, 0), (1, 3)],
        ),
        (
            [4, 12, 1, 1],
            [9, 12, 1, 1],
            [1, 1],
            [1, 1],
            [(0, 0), (0, 0)],
        ),
    ];

    /// Output and input gradient against burn's conv2d (and ReLU), under a random weighting
    /// of the outputs, for strided, dilated, asymmetrically padded and 1×1 cases.
    #[test]
    fn output_and_input_gradient_match_burn() {
        for (xs, ws, s, d, p) in CASES {
            let opts = ConvOptions::new_with_padding(s, p, d, 1);
            let kernel = |x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>, relu: bool| {
                conv2d(x, w, Some(b), s, d, p, relu)
            };
            let what = format!("{xs:?} {ws:?} s{s:?} d{d:?} p{p:?}");
            matches_burn(&kernel, xs, ws, opts, &what);
        }
    }

    /// Small column budgets split the batch into groups without changing a single bit.
    #[test]
    fn groups_of_images_give_the_same_bits() {
        let device = Device::flex();
        let (xs, ws, s, d, p) = CASES[1];
        let x = host(Tensor::<4>::random(
            xs,
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        let w = host(Tensor::<4>::random(
            ws,
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        let g = Geometry {
            n: xs[0],
            c: xs[1],
            h: xs[2],
            w: xs[3],
            co: ws[0],
            kh: ws[2],
            kw: ws[3],
            stride: s,
            dilation: d,
            pads: p,
        };
        let whole = forward(&g, &x, &w, None, false);
        let one = Geometry { n: 1, ..g };
        let per_image: Vec<f32> = (0..xs[0])
            .flat_map(|i| {
                let plane = xs[1] * xs[2] * xs[3];
                forward(&one, &x[i * plane..(i + 1) * plane], &w, None, false)
            })
            .collect();
        assert!(whole
            .iter()
            .zip(&per_image)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
