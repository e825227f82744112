//! Stride-1 3×3 convolutions by Winograd's minimal filtering, F(4×4, 3×3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016), on the `[h, c, w, n]` layout.
//!
//! The output is cut into 4×4 tiles; each reads a 6×6 tile of the input (zeros outside the
//! image). With the weights transformed once, `U = G g Gᵀ` (6×6 per channel pair), and each
//! input tile transformed, `V = Bᵀ d B`, the output tile is `Y = Aᵀ [Σ_c U ⊙ V] A`. The sum
//! over channels is 36 matrix products, one per position `ξ` of the 6×6 transform,
//! `M[ξ] = U[ξ] · V[ξ]` (`co × c` by `c × tiles·images`), on the same micro-kernel as the
//! direct path ([`crate::kernels::microgemm`]). That is 36 multiplies per 16 outputs and
//! channel pair instead of 9 per output, against which the direct path already skips the
//! padding taps: 2.5× fewer on 7×7 planes and 2.8× on 4×4 and 14×14 ones (whose tiles
//! overhang the edge), 3.4× on 8×8, 3.8–3.9× on 28×28 and 56×56, 4× at most.
//!
//! The transforms run along the batch axis (the layout's innermost), 16 images per vector.
//! They are fixed sequences of separate adds and multiplies on each image, and each product
//! sums in a fixed order, so the results do not depend on the vector width or the number of
//! threads. Each task takes a run of (tile, image) pairs, sized so that its transformed input
//! stays near the L2 cache.
//!
//! The weights' transform is computed in `f64`. The transforms' extra rounding makes each
//! output differ from the exact sum by up to about 30 float32 ulps of the sum of its products'
//! magnitudes (the tests bound it at 64), against about 1 for a direct sum: on torchvision's
//! ResNet-18 at 32×32 the input gradient's error against float64 PyTorch rose from 8e-7 to
//! 4e-6 of its largest entry (PyTorch float32: 4e-7). `ROBUST_WINOGRAD=0` in the environment
//! turns the path off.

use macerator::{vload_unaligned, vstore_unaligned, Scalar, Simd, Vector, WithSimd};
use rayon::prelude::*;

use super::{copy_run, Geometry};
use crate::kernels::microgemm::{self, Epilogue, Offsets, PackedLhs};
use crate::kernels::SharedMut;

/// Outputs per tile side.
const M: usize = 4;
/// Inputs per tile side (`M + 3 − 1`).
const T: usize = 6;
/// Positions of the 6×6 transform.
const XI: usize = T * T;
/// Images per transform vector: the layout changes' run of images ([`super::NB`]), so that
/// [`copy_run`] moves one run as a whole vector.
const LANES: usize = super::NB;
/// Values of one task's transformed input, at most (1 MiB, half a core's L2).
const BUDGET: usize = 1 << 18;

/// `G` (6×3), which transforms a kernel row or column.
const G: [[f64; 3]; T] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Whether a convolution takes this path: stride 1, a 3×3 kernel, and planes (input and
/// output, so that its input gradient takes it too) of at least 4×4, below which a tile
/// computes more outputs than the plane has.
pub(super) fn applies(g: &Geometry) -> bool {
    enabled()
        && g.stride == [1, 1]
        && g.kh == 3
        && g.kw == 3
        && [g.h, g.w, g.ho(), g.wo()].iter().all(|&d| d >= M)
}

/// Whether the path is on: `ROBUST_WINOGRAD=0` in the environment (read once) turns it off,
/// for the direct products' smaller rounding error (see the module docs).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("ROBUST_WINOGRAD").map_or(true, |v| v != "0"))
}

/// A convolution's weights transformed and packed: for each transform position `ξ`, the
/// `rows × k` matrix `U[ξ]` (output channels by input channels) for the micro-kernel.
#[derive(Debug)]
pub(super) struct Transformed {
    packs: Vec<PackedLhs>,
}

impl Transformed {
    /// `U = G g Gᵀ` for every channel pair, `g` given by `tap(row, k, i, j)`.
    fn from_fn(
        rows: usize,
        k: usize,
        tap: impl Fn(usize, usize, usize, usize) -> f32 + Sync,
    ) -> Self {
        let u = transform(rows, k, tap);
        let packs = (0..XI)
            .into_par_iter()
            .map(|xi| microgemm::pack_lhs((rows, k), (&u[xi * k..], XI * k, Offsets::Stride(1))))
            .collect();
        Self { packs }
    }

    /// The transformed weights of a convolution with weights `w` (`[co, c, 3, 3]`).
    pub(super) fn forward(w: &[f32], co: usize, c: usize) -> Self {
        Self::from_fn(co, c, |o, ci, i, j| w[((o * c + ci) * 3 + i) * 3 + j])
    }

    /// Those of its transposed convolution (its input gradient): channel axes swapped, taps
    /// flipped.
    pub(super) fn transposed(w: &[f32], co: usize, c: usize) -> Self {
        Self::from_fn(c, co, |ci, o, i, j| {
            w[((o * c + ci) * 3 + (2 - i)) * 3 + (2 - j)]
        })
    }

    /// Values held.
    pub(super) fn values(&self) -> usize {
        self.packs.iter().map(PackedLhs::len).sum()
    }
}

/// `U = G g Gᵀ` for every channel pair, `g` given by `tap(row, k, i, j)`: `[row][ξ][k]`,
/// each value rounded once from `f64`.
fn transform(
    rows: usize,
    k: usize,
    tap: impl Fn(usize, usize, usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    // Per row, each stage runs along `k` (contiguous, so the compiler vectorises it), with
    // every value computed by the same operations in the same order as one sum per channel
    // pair: `(p0 + p1) + p2` is `[p0, p1, p2].iter().sum()` exactly (a float sum starts at
    // -0.0, which adds nothing).
    let mut u = vec![0f32; rows * XI * k];
    u.par_chunks_mut(XI * k).enumerate().for_each_init(
        || (vec![0f64; 9 * k], vec![0f64; 3 * T * k]),
        |(taps, gg), (r, out)| {
            // The taps, [i·3 + j][k].
            for (ij, row) in taps.chunks_exact_mut(k).enumerate() {
                for (kk, v) in row.iter_mut().enumerate() {
                    *v = tap(r, kk, ij / 3, ij % 3) as f64;
                }
            }
            // G g: 6×3, [a·3 + j][k].
            for (aj, row) in gg.chunks_exact_mut(k).enumerate() {
                let (a, j) = (aj / 3, aj % 3);
                let t = |i: usize| &taps[(i * 3 + j) * k..(i * 3 + j + 1) * k];
                let (t0, t1, t2) = (t(0), t(1), t(2));
                for (kk, v) in row.iter_mut().enumerate() {
                    *v = G[a][0] * t0[kk] + G[a][1] * t1[kk] + G[a][2] * t2[kk];
                }
            }
            // (G g) Gᵀ: 6×6, [a·6 + b][k].
            for (ab, row) in out.chunks_exact_mut(k).enumerate() {
                let (a, b) = (ab / T, ab % T);
                let s = |j: usize| &gg[(a * 3 + j) * k..(a * 3 + j + 1) * k];
                let (s0, s1, s2) = (s(0), s(1), s(2));
                for (kk, v) in row.iter_mut().enumerate() {
                    *v = (s0[kk] * G[b][0] + s1[kk] * G[b][1] + s2[kk] * G[b][2]) as f32;
                }
            }
        },
    );
    u
}

/// The columns of a task's products: a run of the convolution's (tile, image) pairs, in
/// the order `tile · n + image` (tiles row-major). Runs are sized so that a task's
/// transformed input stays near the L2 cache, with at least two of the micro-kernel's
/// 3-vector strips, and there are a multiple of the thread count of them (the partition
/// does not change any value: every output is summed by one product in a fixed order).
/// Returns (all columns, columns per task).
fn task_cols(g: &Geometry) -> (usize, usize) {
    let total = g.ho().div_ceil(M) * g.wo().div_ceil(M) * g.n;
    let target = (BUDGET / (XI * g.c.max(g.co))).clamp(96, 512);
    let threads = rayon::current_num_threads().max(1);
    let tasks = total.div_ceil(target);
    let tasks = (tasks + threads / 2) / threads * threads;
    let per_task = total
        .div_ceil(tasks.max(1))
        .next_multiple_of(LANES)
        .min(total);
    (total, per_task)
}

/// `Y = conv(X)` on the layout: `x` is `[h, c, w, n]`, `y` (`[ho, co, wo, n]`) is
/// written (every value); `u` holds `g`'s transformed weights. `fin` (bias per output
/// channel, residual laid out as `y`, ReLU; no mask) is applied to each output on the way
/// out.
pub(super) fn convolve(
    g: &Geometry,
    x: &[f32],
    u: &Transformed,
    y: &mut [std::mem::MaybeUninit<f32>],
    fin: Epilogue<'_>,
) {
    let (ho, wo) = (g.ho(), g.wo());
    let len = ho * g.co * wo * g.n;
    assert!(x.len() >= g.h * g.c * g.w * g.n, "input too short");
    assert!(y.len() >= len, "output too short");
    assert!(
        fin.bias.is_none_or(|b| b.len() == g.co),
        "one bias per channel"
    );
    assert!(
        fin.skip.is_none_or(|s| s.len() >= len),
        "residual too short"
    );
    assert!(
        fin.mask.is_none(),
        "the mask is made by a pass over the output"
    );
    assert_eq!(u.packs.len(), XI);
    let shared = SharedMut::uninit(&mut y[..ho * g.co * wo * g.n]);
    let (total, per_task) = task_cols(g);
    (0..total.div_ceil(per_task)).into_par_iter().for_each(|k| {
        let task = Task::new(g, k * per_task, ((k + 1) * per_task).min(total));
        let cols = task.cols();
        with_buffers(XI * g.c * cols, XI * g.co * cols, |v, m| {
            crate::kernels::simd::dispatch(InputTransform { task: &task, x, v });
            for (xi, pack) in u.packs.iter().enumerate() {
                debug_assert_eq!(pack.dims(), (g.co, g.c));
                // Row `o` of `M[ξ]` at `(o·36 + ξ)·cols`; row `ci` of `V[ξ]` likewise.
                let dst = &mut m[xi * cols..];
                // SAFETY: `dst` is this task's own buffer, holding `co` rows of `cols`
                // values `36·cols` apart.
                #[allow(unsafe_code)]
                unsafe {
                    microgemm::product_packed(
                        cols,
                        (dst.as_mut_ptr(), dst.len(), XI * cols),
                        pack,
                        (&v[xi * cols..], Offsets::Stride(XI * cols)),
                        false,
                    )
                };
            }
            crate::kernels::simd::dispatch(OutputTransform {
                task: &task,
                m,
                y: &shared,
                fin,
            });
        });
    });
}

/// Runs `f` on two buffers of `a` and `b` values, the calling thread's own, kept between
/// calls (each task overwrites every value it reads, so they need no clearing: zeroing a
/// task's megabytes on every call cost as much as its transforms).
fn with_buffers(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32])) {
    thread_local! {
        static BUFFERS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFERS.with(|cell| {
        // Taken out for the call, so that a nested call (none today) would get its own.
        let mut buf = std::mem::take(&mut *cell.borrow_mut());
        if buf.len() < a + b {
            buf.resize(a + b, 0.0);
        }
        let (v, rest) = buf.split_at_mut(a);
        f(v, &mut rest[..b]);
        *cell.borrow_mut() = buf;
    });
}

/// One task: columns `p0..p1` of the (tile, image) pairs, as runs of at most [`LANES`]
/// images of one tile.
struct Task<'a> {
    g: &'a Geometry,
    p0: usize,
    p1: usize,
    /// (tile row, tile column, first image, images, column of the task's products).
    runs: Vec<(usize, usize, usize, usize, usize)>,
}

impl<'a> Task<'a> {
    fn new(g: &'a Geometry, p0: usize, p1: usize) -> Self {
        let tiles_w = g.wo().div_ceil(M);
        let mut runs = Vec::new();
        let mut p = p0;
        while p < p1 {
            let (tile, img) = (p / g.n, p % g.n);
            let len = LANES.min(g.n - img).min(p1 - p);
            runs.push((tile / tiles_w, tile % tiles_w, img, len, p - p0));
            p += len;
        }
        Self { g, p0, p1, runs }
    }

    /// Columns of the task's products.
    fn cols(&self) -> usize {
        self.p1 - self.p0
    }
}

/// 16 images' values.
type Lanes = [f32; LANES];

/// `Bᵀ d` for one row or column of a tile (one image per lane).
#[inline(always)]
fn input_1d<S: Simd>(d: [Vector<S, f32>; T]) -> [Vector<S, f32>; T] {
    let (two, four, five) = (2f32.splat::<S>(), 4f32.splat::<S>(), 5f32.splat::<S>());
    let (p, q) = (d[4] - four * d[2], d[3] - four * d[1]);
    let (s, t) = (d[4] - d[2], two * (d[3] - d[1]));
    [
        four * d[0] - five * d[2] + d[4],
        p + q,
        p - q,
        s + t,
        s - t,
        four * d[1] - five * d[3] + d[5],
    ]
}

/// `Aᵀ m` for one row or column of a transformed tile (one image per lane).
#[inline(always)]
fn output_1d<S: Simd>(m: [Vector<S, f32>; T]) -> [Vector<S, f32>; M] {
    let (two, four, eight) = (2f32.splat::<S>(), 4f32.splat::<S>(), 8f32.splat::<S>());
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, d) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + a + c,
        b + two * d,
        a + four * c,
        b + eight * d + m[5],
    ]
}

/// `out = Lᵀ d L` for a 6×6 tile of [`LANES`] images (`d[a·6 + b]`), with `L` the 1-D
/// transform from 6 values to `R`, [`input_1d`] (`R = 6`) or [`output_1d`] (`R = 4`):
/// columns first, then rows. (No closures: their bodies would be compiled for the baseline
/// target, outside the vector extension's dispatch.)
#[inline(always)]
fn tile_2d<S: Simd, const R: usize>(d: &[Lanes], out: &mut [Lanes]) {
    let lanes = f32::lanes::<S>();
    debug_assert!(LANES.is_multiple_of(lanes) && d.len() == T * T && out.len() == R * R);
    let mut e = [[0f32; LANES]; T * T];
    for l in (0..LANES).step_by(lanes) {
        for b in 0..T {
            line::<S, R>((d, b, T), (&mut e, b, T), l);
        }
        for a in 0..R {
            line::<S, R>((&e, a * T, 1), (out, a * R, 1), l);
        }
    }
}

/// One row or column of [`tile_2d`]: the 1-D transform of `src[at + i·step]` (`i < 6`) into
/// `dst[at + i·step]` (`i < R`), lanes `l..l + lanes`.
#[inline(always)]
fn line<S: Simd, const R: usize>(
    (src, s0, s_step): (&[Lanes], usize, usize),
    (dst, d0, d_step): (&mut [Lanes], usize, usize),
    l: usize,
) {
    assert!(l + f32::lanes::<S>() <= LANES);
    let mut v = [0f32.splat::<S>(); T];
    for (i, x) in v.iter_mut().enumerate() {
        // SAFETY: `l + lanes ≤ LANES` (asserted): the load stays inside the run.
        #[allow(unsafe_code)]
        unsafe {
            *x = vload_unaligned::<S, f32>(src[s0 + i * s_step].as_ptr().add(l));
        }
    }
    for (i, x) in one_d::<S, R>(v).iter().enumerate().take(R) {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            vstore_unaligned::<S, f32>(dst[d0 + i * d_step].as_mut_ptr().add(l), *x);
        }
    }
}

/// [`input_1d`] when `R = 6`, else [`output_1d`] (in the first four of the six).
#[inline(always)]
fn one_d<S: Simd, const R: usize>(v: [Vector<S, f32>; T]) -> [Vector<S, f32>; T] {
    if R == T {
        input_1d::<S>(v)
    } else {
        let [a, b, c, d] = output_1d::<S>(v);
        [a, b, c, d, a, a]
    }
}

/// Copies `len` (at most [`LANES`]) values of `src` (none: zeros) into `dst`, zeroing the
/// rest.
#[inline(always)]
fn load_lanes(dst: &mut Lanes, src: Option<&[f32]>, len: usize) {
    match src {
        Some(src) if len == LANES => dst.copy_from_slice(&src[..LANES]),
        Some(src) => {
            dst[..len].copy_from_slice(&src[..len]);
            dst[len..].fill(0.0);
        }
        None => dst.fill(0.0),
    }
}

/// The transformed input of one task: `v` is `[c][ξ][tile][image]` (the 36 runs one tile
/// writes are consecutive: `[ξ][c]` put them a power of two apart, in one cache set).
struct InputTransform<'a> {
    task: &'a Task<'a>,
    x: &'a [f32],
    v: &'a mut [f32],
}

impl WithSimd for InputTransform<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        let Self { task, x, v } = self;
        let g = task.g;
        let cols = task.cols();
        let (pt, pl) = (g.pads[0], g.pads[2]);
        let (mut d, mut out) = ([[0f32; LANES]; XI], [[0f32; LANES]; XI]);
        let plane = g.w * g.n;
        // Where each run's 36 inputs start for channel 0 (none: outside the image); channel
        // `ci` is `ci · w · n` further.
        let starts: Vec<[Option<usize>; XI]> = task
            .runs
            .iter()
            .map(|&(tr, tc, n0, _, _)| {
                std::array::from_fn(|ab| {
                    let ih = (tr * M + ab / T).checked_sub(pt).filter(|&r| r < g.h);
                    let iw = (tc * M + ab % T).checked_sub(pl).filter(|&c| c < g.w);
                    ih.zip(iw).map(|(ih, iw)| (ih * g.c * g.w + iw) * g.n + n0)
                })
            })
            .collect();
        // Channel by channel, all of the task's runs for each, asking for the next channel's
        // input lines while this one's are transformed: a channel's rows are short runs a
        // whole plane apart, too many and too short for the hardware prefetchers. On
        // ResNet-50 at batch 32 the input transforms of the 64-channel 56×56 convolutions
        // took 4.0 ms of CPU time each against 7.7 (medians of three runs of three
        // gradients, benches/RESULTS.md).
        for ci in 0..g.c {
            for (&(_, _, _, lanes, col), at) in task.runs.iter().zip(&starts) {
                if ci + 1 < g.c {
                    for a in at.iter().flatten() {
                        super::super::prefetch(x.as_ptr().wrapping_add(a + (ci + 1) * plane));
                    }
                }
                for (dv, a) in d.iter_mut().zip(at) {
                    load_lanes(dv, a.map(|a| &x[a + ci * plane..]), lanes);
                }
                tile_2d::<S, T>(&d, &mut out);
                for (xi, r) in out.iter().enumerate() {
                    copy_run(&mut v[(ci * XI + xi) * cols + col..], r, lanes);
                }
            }
        }
    }
}

/// The output tiles of one task from its products `m` (`[co][ξ][tile][image]`), written
/// into the layout through `y` (the task's tiles and images are its own).
struct OutputTransform<'a> {
    task: &'a Task<'a>,
    m: &'a [f32],
    y: &'a SharedMut<'a>,
    fin: Epilogue<'a>,
}

impl WithSimd for OutputTransform<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        let Self { task, m, y, fin } = self;
        let g = task.g;
        let (cols, ho, wo) = (task.cols(), g.ho(), g.wo());
        let (mut mm, mut out) = ([[0f32; LANES]; XI], [[0f32; LANES]; M * M]);
        let plane = wo * g.n;
        // Where each run's 16 outputs go for output channel 0 (none: past the edge); channel
        // `o` is `o · wo · n` further.
        let ends: Vec<[Option<usize>; M * M]> = task
            .runs
            .iter()
            .map(|&(tr, tc, n0, _, _)| {
                std::array::from_fn(|ab| {
                    let (oh, ow) = (tr * M + ab / M, tc * M + ab % M);
                    (oh < ho && ow < wo).then(|| (oh * g.co * wo + ow) * g.n + n0)
                })
            })
            .collect();
        // Channel by channel, all of the task's runs for each, asking for the next channel's
        // output lines (and its residual's) as the input transform does for its inputs:
        // 3.3 ms against 4.5–6.0 for those convolutions' output transforms.
        for o in 0..g.co {
            for (&(_, _, _, lanes, col), at) in task.runs.iter().zip(&ends) {
                if o + 1 < g.co {
                    for a in at.iter().flatten() {
                        let next = a + (o + 1) * plane;
                        super::super::prefetch(y.tail(next).0.cast_const());
                        if let Some(s) = fin.skip {
                            super::super::prefetch(s.as_ptr().wrapping_add(next));
                        }
                    }
                }
                for (xi, mv) in mm.iter_mut().enumerate() {
                    load_lanes(mv, Some(&m[(o * XI + xi) * cols + col..]), lanes);
                }
                tile_2d::<S, M>(&mm, &mut out);
                let bias = fin.bias.map(|b| b[o]);
                for (r, a) in out.iter_mut().zip(at) {
                    let Some(a) = a else { continue };
                    let at = a + o * plane;
                    if !fin.is_empty() {
                        // Plus the bias, and the residual at the same place, separately
                        // rounded, then burn's ReLU (as separate passes would).
                        let skip = fin.skip.map(|s| &s[at..at + lanes]);
                        for (j, v) in r[..lanes].iter_mut().enumerate() {
                            if let Some(b) = bias {
                                *v += b;
                            }
                            if let Some(s) = skip {
                                *v += s[j];
                            }
                            if fin.relu {
                                *v = crate::kernels::relu_value(*v);
                            }
                        }
                    }
                    let (dst, room) = y.tail(at);
                    assert!(room >= lanes);
                    // SAFETY: output (oh, o, ow) of these images belongs to this task's
                    // (tile, image) pairs alone; `lanes` values, inside the buffer (checked),
                    // written through a pointer as they may not be initialised yet.
                    #[allow(unsafe_code)]
                    unsafe {
                        std::ptr::copy_nonoverlapping(r.as_ptr(), dst, lanes)
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `convolve` with no epilogue, into a new vector.
    fn convolved(g: &Geometry, x: &[f32], u: &Transformed) -> Vec<f32> {
        let mut y = vec![f32::NAN; g.ho() * g.co * g.wo() * g.n];
        // SAFETY: `convolve` writes `f32` values only.
        #[allow(unsafe_code)]
        let out = unsafe { super::super::as_uninit(&mut y) };
        convolve(g, x, u, out, Epilogue::default());
        y
    }

    /// A direct convolution in `f64` on the layout, and the sum of the magnitudes of the
    /// products of each output (the scale of its rounding error).
    fn direct(g: &Geometry, x: &[f32], w: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (ho, wo, n) = (g.ho(), g.wo(), g.n);
        let len = ho * g.co * wo * n;
        let (mut y, mut mag) = (vec![0f64; len], vec![0f64; len]);
        for oh in 0..ho {
            for o in 0..g.co {
                for ow in 0..wo {
                    for img in 0..n {
                        let (mut s, mut a) = (0f64, 0f64);
                        for ci in 0..g.c {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let (Some(ih), Some(iw)) = (
                                        (oh + i).checked_sub(g.pads[0]).filter(|&r| r < g.h),
                                        (ow + j).checked_sub(g.pads[2]).filter(|&c| c < g.w),
                                    ) else {
                                        continue;
                                    };
                                    let p = x[((ih * g.c + ci) * g.w + iw) * n + img] as f64
                                        * w[((o * g.c + ci) * 3 + i) * 3 + j] as f64;
                                    s += p;
                                    a += p.abs();
                                }
                            }
                        }
                        let at = ((oh * g.co + o) * wo + ow) * n + img;
                        (y[at], mag[at]) = (s, a);
                    }
                }
            }
        }
        (y, mag)
    }

    fn geometry(
        n: usize,
        c: usize,
        co: usize,
        (h, w): (usize, usize),
        pads: [usize; 4],
    ) -> Geometry {
        Geometry {
            n,
            c,
            h,
            w,
            co,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pads,
        }
    }

    /// The weights' transform, computed along the channels, against one sum per channel
    /// pair and transform position, bit for bit: random taps, some of them zeros of either
    /// sign, and channel counts that are not a multiple of any vector width.
    #[test]
    fn the_weights_transform_is_the_per_pair_sums() {
        let mut bits = crate::kernels::testing::lcg(11);
        for (rows, k) in [(1, 1), (3, 5), (7, 19), (16, 33)] {
            let w: Vec<f32> = (0..rows * k * 9)
                .map(|_| match bits() % 8 {
                    0 => 0.0,
                    1 => -0.0,
                    b => ((bits() >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * b as f32,
                })
                .collect();
            let tap = |r: usize, kk: usize, i: usize, j: usize| w[((r * k + kk) * 3 + i) * 3 + j];
            let got = transform(rows, k, tap);
            for r in 0..rows {
                for kk in 0..k {
                    let mut gg = [[0f64; 3]; T];
                    for (a, row) in gg.iter_mut().enumerate() {
                        for (j, v) in row.iter_mut().enumerate() {
                            *v = (0..3).map(|i| G[a][i] * tap(r, kk, i, j) as f64).sum();
                        }
                    }
                    for (a, gga) in gg.iter().enumerate() {
                        for (b, gb) in G.iter().enumerate() {
                            let u: f64 = (0..3).map(|j| gga[j] * gb[j]).sum();
                            let at = (r * XI + a * T + b) * k + kk;
                            assert_eq!(got[at].to_bits(), (u as f32).to_bits(), "{r} {kk} {a} {b}");
                        }
                    }
                }
            }
        }
    }

    /// Against a direct convolution in `f64`, on planes that are and are not multiples of
    /// the tile, with every padding a 3×3 kernel allows, batches that are not a multiple of
    /// the vector and channel counts that are not a multiple of the packing; and the
    /// transposed weights against the transposed convolution. The error of each output is
    /// within a few float32 ulps of the sum of its products' magnitudes.
    #[test]
    fn matches_a_direct_convolution_in_f64() {
        let mut bits = crate::kernels::testing::lcg(5);
        let mut next = || (bits() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let cases = [
            geometry(3, 5, 7, (8, 8), [1, 1, 1, 1]),
            geometry(17, 9, 4, (7, 7), [1, 1, 1, 1]),
            geometry(2, 3, 11, (9, 6), [0, 2, 2, 0]),
            geometry(40, 6, 6, (6, 5), [0, 0, 1, 1]),
            geometry(1, 2, 3, (13, 10), [2, 2, 0, 0]),
            geometry(130, 64, 64, (8, 8), [1, 1, 1, 1]),
        ];
        let mut worst = 0f64;
        for g0 in cases {
            assert!(applies(&g0), "{g0:?}");
            let w: Vec<f32> = (0..g0.co * g0.c * 9).map(|_| next()).collect();
            // The transposed convolution with flipped, swapped weights, as the backward pass
            // runs it.
            let mut wt = vec![0f32; w.len()];
            for o in 0..g0.co {
                for ci in 0..g0.c {
                    for i in 0..3 {
                        for j in 0..3 {
                            wt[((ci * g0.co + o) * 3 + 2 - i) * 3 + 2 - j] =
                                w[((o * g0.c + ci) * 3 + i) * 3 + j];
                        }
                    }
                }
            }
            let runs = [
                (g0, Transformed::forward(&w, g0.co, g0.c), w.clone()),
                (
                    g0.transposed(),
                    Transformed::transposed(&w, g0.co, g0.c),
                    wt,
                ),
            ];
            for (g, u, weights) in runs {
                let x: Vec<f32> = (0..g.h * g.c * g.w * g.n).map(|_| next()).collect();
                let y = convolved(&g, &x, &u);
                let (exact, mag) = direct(&g, &x, &weights);
                for ((&got, &e), &a) in y.iter().zip(&exact).zip(&mag) {
                    let err = (got as f64 - e).abs() / (a * f32::EPSILON as f64);
                    assert!(err < 64.0, "{g:?}: {got} against {e} (magnitude {a})");
                    worst = worst.max(err);
                }
            }
        }
        // Not exact either: the transforms do round.
        assert!(worst > 0.5, "worst error {worst} ulps");
        eprintln!("worst error: {worst:.1} ulps of the magnitude");
    }

    /// The same bits on one thread as on many, and at every vector width.
    #[test]
    fn same_bits_on_one_thread_and_at_every_width() {
        use crate::kernels::simd::{set_simd_cap, SimdCap};
        let mut bits = crate::kernels::testing::lcg(9);
        let mut next = || (bits() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let g = geometry(37, 33, 20, (8, 8), [1, 1, 1, 1]);
        let w: Vec<f32> = (0..g.co * g.c * 9).map(|_| next()).collect();
        let x: Vec<f32> = (0..g.h * g.c * g.w * g.n).map(|_| next()).collect();
        let u = Transformed::forward(&w, g.co, g.c);
        let run = || {
            let y = convolved(&g, &x, &u);
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let first = run();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert!(pool.install(run) == first, "one thread differs");
        for cap in [SimdCap::Scalar, SimdCap::Sse42, SimdCap::Avx2] {
            set_simd_cap(Some(cap));
            let got = run();
            set_simd_cap(None);
            assert!(got == first, "{cap:?} differs");
        }
    }
}
