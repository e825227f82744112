//! Undilated, floor-mode 2-D max pooling (padded or not) with a one-byte arg-max per output.

use std::sync::Arc;

use burn::tensor::Tensor;
use macerator::{Simd, WithSimd};
use rayon::prelude::*;

use super::{finish, flex_tensor, FlexValue, InputGradient, SharedMut};

/// Output planes handed to one rayon task at least (a plane of the demo CNN is 196 outputs).
const MIN_PLANES_PER_TASK: usize = 8;

/// The geometry of one pooling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    /// Batch size and channels.
    n_c: [usize; 2],
    /// Batch × channels.
    planes: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Padding before the first row and column (the padding after only sets the output
    /// size). Padded positions never win (PyTorch pads max pooling with −∞).
    pad: [usize; 2],
}

impl Geometry {
    /// The geometry, or `None` for shapes this kernel does not handle (every window must
    /// overlap the image: each padding below the kernel size).
    fn new(
        dims: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [(usize, usize); 2],
    ) -> Option<Self> {
        let [n, c, in_h, in_w] = dims;
        let window = kernel[0].checked_mul(kernel[1])?;
        if window == 0 || window > 256 || stride.contains(&0) {
            return None;
        }
        let [(t, b), (l, r)] = pads;
        if t >= kernel[0] || b >= kernel[0] || l >= kernel[1] || r >= kernel[1] {
            return None;
        }
        let (span_h, span_w) = (in_h + t + b, in_w + l + r);
        if span_h < kernel[0] || span_w < kernel[1] {
            return None;
        }
        Some(Self {
            n_c: [n, c],
            planes: n * c,
            in_h,
            in_w,
            out_h: (span_h - kernel[0]) / stride[0] + 1,
            out_w: (span_w - kernel[1]) / stride[1] + 1,
            kernel,
            stride,
            pad: [t, l],
        })
    }

    /// For output `o` along axis `a`: the first input index its window covers (negative in
    /// the padding) and the window positions `lo..hi` inside the image.
    #[inline(always)]
    fn window(&self, a: usize, o: usize) -> (isize, usize, usize) {
        let (k, size) = (self.kernel[a], [self.in_h, self.in_w][a]);
        let start = (o * self.stride[a]) as isize - self.pad[a] as isize;
        let lo = (-start).max(0) as usize;
        let hi = (size as isize - start).clamp(0, k as isize) as usize;
        (start, lo, hi)
    }

    fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }
}

/// What the backward pass needs: the geometry and each output's arg-max window position.
#[derive(Clone, Debug)]
struct PoolState {
    geometry: Geometry,
    argmax: Arc<[u8]>,
}

/// Keeps the running maximum `(m, p)` or replaces it by `(v, q)`: `v` wins when it is larger
/// or NaN (burn's and PyTorch's rule: the first maximum in window order stays, NaN
/// propagates). Written without branches so that the loops below vectorise.
#[inline(always)]
fn keep_max((m, p): (f32, u8), v: f32, q: u8) -> (f32, u8) {
    let wins = (v > m) | v.is_nan();
    (if wins { v } else { m }, if wins { q } else { p })
}

/// Pools one plane; `argmax` receives each output's window position (row-major). `rows` and
/// `row_arg` are scratch of `in_h × out_w` for the separable passes of the general case.
#[inline(always)]
fn pool_plane(
    g: &Geometry,
    x: &[f32],
    out: &mut [f32],
    argmax: &mut [u8],
    rows: &mut [f32],
    row_arg: &mut [u8],
) {
    let w = g.in_w;
    let ow = g.out_w;
    if g.kernel == [2, 2] && g.stride == [2, 2] && g.pad == [0, 0] {
        let rows = x.chunks_exact(2 * w).zip(out.chunks_exact_mut(ow));
        for ((pair, o), a) in rows.zip(argmax.chunks_exact_mut(ow)) {
            let (top, bottom) = pair.split_at(w);
            let cols = top.chunks_exact(2).zip(bottom.chunks_exact(2));
            for (((t, b), o), a) in cols.zip(o.iter_mut()).zip(a.iter_mut()) {
                let best = keep_max((t[0], 0), t[1], 1);
                let best = keep_max(best, b[0], 2);
                let (m, p) = keep_max(best, b[1], 3);
                *o = m;
                *a = p;
            }
        }
        return;
    }
    // Separable: the maximum of each input row over each output column's window (with its
    // column in the window), then the maximum of those over each output row's window. Both
    // passes scan in window order and keep the first maximum (or the last NaN), so the pair
    // is the one the row-major scan over the whole window finds: the first row holding the
    // overall maximum and that row's first column holding it (or the last NaN of the last
    // row that has one).
    let kw = g.kernel[1];
    for (row, (m, a)) in x
        .chunks_exact(w)
        .zip(rows.chunks_exact_mut(ow).zip(row_arg.chunks_exact_mut(ow)))
    {
        for (c, (m, a)) in m.iter_mut().zip(a.iter_mut()).enumerate() {
            let (c0, j_lo, j_hi) = g.window(1, c);
            let first = (c0 + j_lo as isize) as usize;
            let window = &row[first..first + (j_hi - j_lo)];
            let mut best = (window[0], j_lo as u8);
            for (j, &v) in window.iter().enumerate().skip(1) {
                best = keep_max(best, v, (j_lo + j) as u8);
            }
            (*m, *a) = best;
        }
    }
    for (r, (o, a)) in out
        .chunks_exact_mut(ow)
        .zip(argmax.chunks_exact_mut(ow))
        .enumerate()
    {
        let (r0, i_lo, i_hi) = g.window(0, r);
        let at = |i: usize| (r0 + i as isize) as usize * ow;
        o.copy_from_slice(&rows[at(i_lo)..][..ow]);
        let base = (i_lo * kw) as u8;
        for (a, &q) in a.iter_mut().zip(&row_arg[at(i_lo)..][..ow]) {
            *a = base + q;
        }
        for i in i_lo + 1..i_hi {
            let base = (i * kw) as u8;
            let (m, q) = (&rows[at(i)..][..ow], &row_arg[at(i)..][..ow]);
            for ((o, a), (&v, &q)) in o.iter_mut().zip(a.iter_mut()).zip(m.iter().zip(q)) {
                (*o, *a) = keep_max((*o, *a), v, base + q);
            }
        }
    }
}

/// [`pool_plane`] as an operation for [`super::simd::dispatch`] (see `conv.rs` for why not a
/// closure).
struct PoolPlane<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    out: &'a mut [f32],
    argmax: &'a mut [u8],
    rows: &'a mut [f32],
    row_arg: &'a mut [u8],
}

impl WithSimd for PoolPlane<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        pool_plane(
            self.g,
            self.x,
            self.out,
            self.argmax,
            self.rows,
            self.row_arg,
        )
    }
}

/// Forward over all planes of a contiguous `[planes, in_h, in_w]` buffer.
fn forward(g: &Geometry, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
    let (ip, op) = (g.in_plane(), g.out_plane());
    let mut out = vec![0f32; g.planes * op];
    let mut argmax = vec![0u8; g.planes * op];
    out.par_chunks_mut(op)
        .zip(argmax.par_chunks_mut(op))
        .zip(x.par_chunks(ip))
        .with_min_len(MIN_PLANES_PER_TASK)
        .for_each_init(
            || (vec![0f32; g.in_h * g.out_w], vec![0u8; g.in_h * g.out_w]),
            |(rows, row_arg), ((out, argmax), x)| {
                super::simd::dispatch(PoolPlane {
                    g,
                    x,
                    out,
                    argmax,
                    rows,
                    row_arg,
                })
            },
        );
    (out, argmax)
}

/// Backward: scatters the output gradient to the arg-max positions (summing where windows
/// overlap).
fn backward(state: &PoolState, grad_out: &[f32]) -> Vec<f32> {
    let g = &state.geometry;
    let (ip, op) = (g.in_plane(), g.out_plane());
    let [_, kw] = g.kernel;
    // Each task writes its planes' zeros itself before adding to them, rather than taking
    // them from a zeroed allocation: fresh pages from the kernel that are read before they
    // are written are mapped to the shared zero page first, and the first write to each
    // then costs a copy-on-write fault and, with the pool's threads on other CPUs, a TLB
    // shootdown (an inter-processor interrupt): about a tenth of the CPU time of a
    // ResNet-18 PGD-1 run on a VM.
    let per_task = ip * MIN_PLANES_PER_TASK;
    // SAFETY: every task writes every value of its chunk (zeros) before anything else.
    #[allow(unsafe_code)]
    unsafe {
        super::filled(g.planes * ip, per_task, |t, chunk| {
            chunk.fill(std::mem::MaybeUninit::new(0.0));
            // SAFETY: initialised just above.
            let chunk = &mut *(std::ptr::from_mut(chunk) as *mut [f32]);
            let first = t * MIN_PLANES_PER_TASK;
            let planes = chunk
                .chunks_exact_mut(ip)
                .zip(grad_out[first * op..].chunks_exact(op))
                .zip(state.argmax[first * op..].chunks_exact(op));
            for ((gi, go), a) in planes {
                add_plane(g, kw, gi, go, a);
            }
        })
    }
}

/// Adds one plane's output gradient `go` to its arg-max inputs in `gi` (zeros before).
fn add_plane(g: &Geometry, kw: usize, gi: &mut [f32], go: &[f32], a: &[u8]) {
    if g.kernel == [2, 2] && g.stride == [2, 2] && g.pad == [0, 0] {
        let w = g.in_w;
        let rows = gi.chunks_exact_mut(2 * w).zip(go.chunks_exact(g.out_w));
        for ((pair, go), a) in rows.zip(a.chunks_exact(g.out_w)) {
            let (top, bottom) = pair.split_at_mut(w);
            let cols = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
            for (((t, b), &go), &p) in cols.zip(go).zip(a) {
                t[0] = if p == 0 { go } else { 0.0 };
                t[1] = if p == 1 { go } else { 0.0 };
                b[0] = if p == 2 { go } else { 0.0 };
                b[1] = if p == 3 { go } else { 0.0 };
            }
        }
        return;
    }
    for r in 0..g.out_h {
        let (r0, _, _) = g.window(0, r);
        for c in 0..g.out_w {
            let (c0, _, _) = g.window(1, c);
            let k = r * g.out_w + c;
            let p = a[k] as usize;
            let (i, j) = ((p / kw) as isize, (p % kw) as isize);
            gi[((r0 + i) * g.in_w as isize + c0 + j) as usize] += go[k];
        }
    }
}

impl InputGradient for PoolState {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        let g = &self.geometry;
        (
            backward(self, grad_out),
            [g.n_c[0], g.n_c[1], g.in_h, g.in_w],
        )
    }
}

/// Undilated, floor-mode 2-D max pooling on the CPU backend, with padding `[(top, bottom),
/// (left, right)]` below the kernel size, or `None` when the tensor is not on burn-flex
/// (plain or under autodiff) or the case is not handled; the caller then uses burn's
/// `max_pool2d`.
pub(crate) fn max_pool2d(
    x: &Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [(usize, usize); 2],
) -> Option<Tensor<4>> {
    let g = Geometry::new(x.dims(), kernel, stride, pads)?;
    let x = FlexValue::of(x)?;
    let (out, argmax) = {
        let data = x.f32_data()?;
        if data.len() != g.planes * g.in_plane() {
            return None;
        }
        forward(&g, &data)
    };
    let out = flex_tensor(out, [g.n_c[0], g.n_c[1], g.out_h, g.out_w]);
    Some(finish(x, out, |_| PoolState {
        geometry: g,
        argmax: argmax.into(),
    }))
}

/// One output row `(oh, channel)` of a batch-innermost pooling: `out` and `argmax` hold
/// `out_w` runs of `n` values, `x` is the whole `[in_h, c, in_w, n]` input. Each window is
/// scanned in row-major order with [`keep_max`] (the reference rule), `n` images at a time.
struct PoolRow<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    row: usize,
    out: &'a mut [f32],
    argmax: &'a mut [u8],
}

impl WithSimd for PoolRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        let Self {
            g,
            x,
            row,
            out,
            argmax,
        } = self;
        let [n, c] = g.n_c;
        let (oh, ci) = (row / c, row % c);
        let (r0, i_lo, i_hi) = g.window(0, oh);
        let kw = g.kernel[1];
        for ow in 0..g.out_w {
            let (c0, j_lo, j_hi) = g.window(1, ow);
            let (o, a) = (&mut out[ow * n..][..n], &mut argmax[ow * n..][..n]);
            for i in i_lo..i_hi {
                let ih = (r0 + i as isize) as usize;
                for j in j_lo..j_hi {
                    let iw = (c0 + j as isize) as usize;
                    let src = &x[((ih * c + ci) * g.in_w + iw) * n..][..n];
                    let q = (i * kw + j) as u8;
                    if (i, j) == (i_lo, j_lo) {
                        o.copy_from_slice(src);
                        a.fill(q);
                        continue;
                    }
                    for ((m, p), &v) in o.iter_mut().zip(a.iter_mut()).zip(src) {
                        (*m, *p) = keep_max((*m, *p), v, q);
                    }
                }
            }
        }
    }
}

/// What the backward pass of a batch-innermost pooling keeps.
#[derive(Clone, Debug)]
struct BatchInnerPoolState {
    geometry: Geometry,
    /// Each output's window position, in the output's `[out_h, c, out_w, n]` order.
    argmax: Arc<[u8]>,
}

impl InputGradient for BatchInnerPoolState {
    /// Every output's gradient goes to its arg-max input. Each task owns one channel of
    /// every input row and adds in output order (rows, then columns), as the standard
    /// layout's backward pass does, so the sums are the same bits. Within a window, each
    /// position takes the gradients of the images whose maximum it held and adds `0` for
    /// the others, which changes no value (the sums start at `+0`), so that the images are
    /// handled as one run.
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        let g = &self.geometry;
        let [n, c] = g.n_c;
        let (in_row, out_row) = (g.in_w * n, g.out_w * n);
        let len = g.in_h * c * in_row;
        let mut grad_in: Vec<f32> = Vec::with_capacity(len);
        let shared = SharedMut::uninit(&mut grad_in.spare_capacity_mut()[..len]);
        (0..c).into_par_iter().for_each(|ci| {
            let shared = &shared;
            // The task writes its own zeros first (see `backward`): channel `ci` of every
            // input row.
            for ih in 0..g.in_h {
                let (row, _) = shared.tail((ih * c + ci) * in_row);
                // SAFETY: `in_row` values from there are this task's alone, inside the
                // buffer (`tail` checked the start; the row ends by `len`); all-zero bits
                // are `0.0`.
                #[allow(unsafe_code)]
                unsafe {
                    row.write_bytes(0, in_row)
                };
            }
            for oh in 0..g.out_h {
                let (r0, i_lo, i_hi) = g.window(0, oh);
                let at = (oh * c + ci) * out_row;
                for ow in 0..g.out_w {
                    let (c0, j_lo, j_hi) = g.window(1, ow);
                    let go = &grad_out[at + ow * n..][..n];
                    let a = &self.argmax[at + ow * n..][..n];
                    for i in i_lo..i_hi {
                        let ih = (r0 + i as isize) as usize;
                        for j in j_lo..j_hi {
                            let iw = (c0 + j as isize) as usize;
                            let q = (i * g.kernel[1] + j) as u8;
                            // SAFETY: channel `ci` of input row `ih` is this task's alone,
                            // and written (zeros) above.
                            #[allow(unsafe_code)]
                            let dst = unsafe { shared.slice((ih * c + ci) * in_row + iw * n, n) };
                            super::simd::dispatch(AddSelected { dst, go, a, q });
                        }
                    }
                }
            }
        });
        // SAFETY: the tasks wrote every row of every channel: all `len` values.
        #[allow(unsafe_code)]
        unsafe {
            grad_in.set_len(len)
        };
        (grad_in, [g.in_h, c, g.in_w, n])
    }
}

/// `dst += (a == q) ? go : 0`, element-wise, compiled for the CPU's vector extensions.
struct AddSelected<'a> {
    dst: &'a mut [f32],
    go: &'a [f32],
    a: &'a [u8],
    q: u8,
}

impl WithSimd for AddSelected<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        let Self { dst, go, a, q } = self;
        for ((d, &g), &p) in dst.iter_mut().zip(go).zip(a) {
            *d += if p == q { g } else { 0.0 };
        }
    }
}

/// [`max_pool2d`] on a batch-innermost input `[in_h, c, in_w, n]` (see
/// [`crate::value::Layout::BatchInner`]), giving a batch-innermost output
/// `[out_h, c, out_w, n]`: the same values, arg-max positions and gradients, with the
/// images of a run handled together.
pub(crate) fn max_pool2d_batch_inner(
    x: &Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [(usize, usize); 2],
) -> Option<Tensor<4>> {
    let [h, c, w, n] = x.dims();
    let g = Geometry::new([n, c, h, w], kernel, stride, pads)?;
    let x = FlexValue::of(x)?;
    let run = g.out_w * n;
    let (out, argmax) = {
        let data = x.f32_data()?;
        if data.len() != g.planes * g.in_plane() {
            return None;
        }
        let mut out = vec![0f32; g.out_h * c * run];
        let mut argmax = vec![0u8; g.out_h * c * run];
        out.par_chunks_mut(run)
            .zip(argmax.par_chunks_mut(run))
            .enumerate()
            .for_each(|(row, (out, argmax))| {
                super::simd::dispatch(PoolRow {
                    g: &g,
                    x: &data,
                    row,
                    out,
                    argmax,
                })
            });
        (out, argmax)
    };
    let out = flex_tensor(out, [g.out_h, c, g.out_w, n]);
    Some(finish(x, out, |_| BatchInnerPoolState {
        geometry: g,
        argmax: argmax.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_host as host;
    use burn::tensor::module::max_pool2d as burn_max_pool2d;
    use burn::tensor::ops::MaxPoolOptions;
    use burn::tensor::{Device, Distribution, TensorData};

    type Pads = [(usize, usize); 2];

    fn burn_pool(x: Tensor<4>, kernel: [usize; 2], stride: [usize; 2], pads: Pads) -> Tensor<4> {
        burn_max_pool2d(
            x,
            MaxPoolOptions::new(kernel)
                .with_stride(stride)
                .with_padding_pairs(pads),
        )
    }

    /// Random data with many exact ties (values rounded to a few levels, half of them zero as
    /// after a ReLU), so the tie rule is exercised.
    fn tied_input(dims: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), device)
            .mul_scalar(3.0)
            .round()
            .clamp_min(0.0)
    }

    /// The plain row-major scan over each window (the kernel before the separable passes):
    /// the reference for values and arg-max positions.
    fn reference_plane(g: &Geometry, x: &[f32], out: &mut [f32], argmax: &mut [u8]) {
        let w = g.in_w;
        let ow = g.out_w;
        let kw = g.kernel[1];
        for r in 0..g.out_h {
            let (r0, i_lo, i_hi) = g.window(0, r);
            for c in 0..ow {
                let (c0, j_lo, j_hi) = g.window(1, c);
                // Window positions in order, from the first one inside the image.
                let at = |i: usize, j: usize| {
                    ((r0 + i as isize) * w as isize + c0 + j as isize) as usize
                };
                let mut best = (x[at(i_lo, j_lo)], (i_lo * kw + j_lo) as u8);
                for i in i_lo..i_hi {
                    for j in j_lo..j_hi {
                        best = keep_max(best, x[at(i, j)], (i * kw + j) as u8);
                    }
                }
                out[r * ow + c] = best.0;
                argmax[r * ow + c] = best.1;
            }
        }
    }

    #[test]
    fn separable_passes_match_the_row_major_scan() {
        // Values from a few levels (many ties), NaNs here and there, every geometry.
        let mut next = crate::kernels::testing::lcg(7);
        for (dims, k, s, p) in CASES {
            let g = Geometry::new(dims, k, s, p).expect("valid case");
            for nan_every in [0u32, 7, 2] {
                let x: Vec<f32> = (0..g.planes * g.in_plane())
                    .map(|_| {
                        let r = next();
                        if nan_every > 0 && r.is_multiple_of(nan_every * 3) {
                            f32::NAN
                        } else {
                            (r % 4) as f32 - 1.0
                        }
                    })
                    .collect();
                let (out, argmax) = forward(&g, &x);
                let (ip, op) = (g.in_plane(), g.out_plane());
                for plane in 0..g.planes {
                    let mut o = vec![0f32; op];
                    let mut a = vec![0u8; op];
                    reference_plane(&g, &x[plane * ip..][..ip], &mut o, &mut a);
                    let got = &out[plane * op..][..op];
                    assert_eq!(
                        &argmax[plane * op..][..op],
                        &a[..],
                        "{dims:?} {k:?} {s:?} {p:?}"
                    );
                    for (u, v) in got.iter().zip(&o) {
                        assert!(u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan()));
                    }
                }
            }
        }
    }

    const NO: Pads = [(0, 0), (0, 0)];
    /// Input shape, kernel, stride, padding.
    type Case = ([usize; 4], [usize; 2], [usize; 2], Pads);
    const CASES: [Case; 9] = [
        ([3, 4, 28, 28], [2, 2], [2, 2], NO),
        ([2, 3, 7, 9], [2, 2], [2, 2], NO),
        ([2, 3, 11, 10], [3, 3], [2, 2], NO),
        ([1, 2, 9, 9], [3, 2], [1, 3], NO),
        ([2, 2, 5, 6], [5, 6], [1, 1], NO),
        // Padded: the ResNet stem's pool (3×3, stride 2, padding 1) on even and odd
        // planes, padding on one side only, and a 2×2 window with padding.
        ([2, 3, 16, 16], [3, 3], [2, 2], [(1, 1), (1, 1)]),
        ([2, 3, 7, 9], [3, 3], [2, 2], [(1, 1), (1, 1)]),
        ([1, 2, 6, 5], [3, 2], [1, 2], [(2, 0), (0, 1)]),
        ([2, 2, 5, 5], [2, 2], [2, 2], [(1, 1), (1, 1)]),
    ];

    #[test]
    fn forward_matches_burn_on_plain_cpu_tensors() {
        let device = Device::flex();
        for (dims, k, s, p) in CASES {
            for x in [
                Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device),
                tied_input(dims, &device),
            ] {
                let fast = max_pool2d(&x, k, s, p).expect("the kernel handles this case");
                assert_eq!(
                    host(fast),
                    host(burn_pool(x, k, s, p)),
                    "{dims:?} {k:?} {s:?} {p:?}"
                );
            }
        }
    }

    #[test]
    fn gradient_matches_burn_under_autodiff() {
        let device = Device::flex().autodiff();
        for (dims, k, s, p) in CASES {
            let x0 = tied_input(dims, &device);
            // A weight per output so that every output gradient differs.
            let out_dims = burn_pool(x0.clone(), k, s, p).dims();
            let weights = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);

            let x = x0.clone().require_grad();
            let fast = max_pool2d(&x, k, s, p).expect("the kernel handles this case");
            let fast_y = host(fast.clone());
            let grads = (fast * weights.clone()).sum().backward();
            let fast_g = host(x.grad(&grads).expect("tracked"));

            let x = x0.require_grad();
            let reference = burn_pool(x.clone(), k, s, p);
            let ref_y = host(reference.clone());
            let grads = (reference * weights).sum().backward();
            let ref_g = host(x.grad(&grads).expect("tracked"));

            assert_eq!(fast_y, ref_y, "forward {dims:?} {k:?} {s:?}");
            assert_eq!(fast_g, ref_g, "gradient {dims:?} {k:?} {s:?}");
        }
    }

    #[test]
    fn nan_propagates_like_burn() {
        let device = Device::flex();
        let data = vec![1.0, f32::NAN, 3.0, 2.0, 0.5, 0.25, 7.0, f32::NAN];
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 1, 2, 4]), &device);
        let fast = host(max_pool2d(&x, [2, 2], [2, 2], NO).expect("handled"));
        let reference = host(burn_pool(x, [2, 2], [2, 2], NO));
        assert!(fast[0].is_nan() && fast[1].is_nan());
        assert!(reference[0].is_nan() && reference[1].is_nan());
    }

    /// The batch-innermost kernel gives the same bits as the standard one: values (with
    /// ties and NaN), and input gradients under a random weighting of the outputs (through
    /// the layout changes, whose gradients only move values).
    #[test]
    fn batch_inner_matches_the_standard_kernel_bit_for_bit() {
        use crate::kernels::{batch_inner_layout, standard_layout};
        let device = Device::flex().autodiff();
        let cases = CASES
            .into_iter()
            .chain([([33, 5, 9, 8], [3, 3], [2, 2], [(1, 1), (1, 1)])]);
        for (dims, k, s, p) in cases {
            let mut x0 = host(tied_input(dims, &device));
            x0[3] = f32::NAN;
            x0[dims[2] * dims[3] + 1] = f32::NAN;
            let x0 = Tensor::<4>::from_data(TensorData::new(x0, dims), &device);
            let out_dims = burn_pool(x0.clone(), k, s, p).dims();
            let weights = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);
            let bits = |t: Tensor<4>| host(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();

            let x = x0.clone().require_grad();
            let held = batch_inner_layout(&x).expect("an f32 CPU tensor");
            let pooled = max_pool2d_batch_inner(&held, k, s, p).expect("handled");
            let fast = standard_layout(&pooled).expect("an f32 CPU tensor");
            let fast_y = bits(fast.clone());
            let fast_g = bits(x.grad(&(fast * weights.clone()).sum().backward()).unwrap());

            let x = x0.require_grad();
            let plain = max_pool2d(&x, k, s, p).expect("handled");
            let plain_y = bits(plain.clone());
            let plain_g = bits(x.grad(&(plain * weights).sum().backward()).unwrap());

            assert!(fast_y == plain_y, "forward {dims:?} {k:?} {s:?} {p:?}");
            assert!(fast_g == plain_g, "gradient {dims:?} {k:?} {s:?} {p:?}");
        }
    }

    #[test]
    fn unhandled_cases_are_declined() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 1, 2, 2], &device);
        // Kernel larger than the input, and a window over 256 positions.
        assert!(max_pool2d(&x, [3, 3], [1, 1], NO).is_none());
        let big = Tensor::<4>::zeros([1, 1, 20, 20], &device);
        assert!(max_pool2d(&big, [17, 17], [1, 1], NO).is_none());
        // Padding as large as the kernel (a window could miss the image).
        assert!(max_pool2d(&big, [2, 2], [1, 1], [(2, 0), (0, 0)]).is_none());
        assert_eq!(
            max_pool2d(&x, [2, 2], [2, 2], NO).expect("handled").dims(),
            [1, 1, 1, 1]
        );
    }
}
