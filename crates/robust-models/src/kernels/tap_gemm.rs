//! One-group, undilated 2-D convolutions with many channels (and strided ones of any
//! width) as matrix products over only the kernel taps that land inside the image, and
//! their input gradients.
//!
//! `im2col` ([`super::gemm_conv`]) copies every input value `kh·kw` times and multiplies the
//! zeros of the padding as well: on the small planes of CIFAR-size ResNets (8×8 down to 1×1)
//! a 3×3 convolution then does up to 9× the useful work (a 1×1 plane uses only the centre
//! tap), and the copies cost as much time as the products.
//!
//! Here the activations are laid out as `[h, c, w, n]` ("HCWN": the batch innermost; with a
//! column stride `s` the columns of each residue modulo `s` are kept together). In that
//! layout the input row `ih`, channel `c` and column `iw` read by a kernel tap for a run of
//! consecutive output columns is the start of a run of consecutive values, `n` per column.
//! The output columns of a row fall into a few groups (the interior, and a few columns at
//! each edge) that read inside the image with the same kernel columns; each (output row,
//! group) is one matrix product
//!
//! `Y[oh][:, group] = W[:, taps] · X[taps, group]`,  `k = kernel rows · c · kernel columns`
//!
//! over exactly the taps inside the image, with the rows of `X` gathered in place from their
//! offsets (no copies). The products run on [`super::microgemm`] (AVX-512 where present,
//! and the same bits at every vector width), one per task: tasks are (output row, block of
//! [`CO_BLOCK`] or [`CO_BLOCK_WIDE`] output channels), so every output value is computed by
//! one product in a fixed order whatever the number of threads.
//!
//! The input gradient of a stride-1 convolution is the same convolution of the output
//! gradient with the weights' channel axes swapped, their taps flipped and padding
//! `k − 1 − p`, so it runs through the same code; that of a strided one adds `W_jᵀ · dY` for
//! every (output row, kernel column) onto the inputs it read, in tasks that own tiles of
//! input columns. The rearranged weights are cached per weight tensor (see [`WeightCache`]).
//!
//! The output stays in the layout (`[ho, co, wo, n]`, the interpreter's
//! [`crate::value::Layout::BatchInner`]), with the bias added, a fused residual sum (see
//! [`crate::graph::Graph::fuse_residuals`]) and a fused ReLU applied as the products store
//! each tile (or by Winograd's output transform); the next convolution, ReLU, residual sum
//! or max pooling reads it as it is, and the interpreter changes it back
//! to NCHW ([`standard_layout`]) only for an operator that needs that. A standard-layout
//! input (the image, or another operator's output) is changed into the layout on the way
//! in. The backward pass masks the output gradient with the fused ReLU in the same order and
//! gives the input gradient in the input's layout.
//!
//! Stride-1 3×3 convolutions on planes of at least 4×4 (and their input gradients) run
//! instead as Winograd F(4×4, 3×3) on the same layout and micro-kernel (see [`winograd`]),
//! with 2.5–3.9× fewer multiplies on ResNet planes; `ROBUST_WINOGRAD=0` turns that off.

use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use rayon::prelude::*;

mod winograd;

use super::microgemm::{self, Epilogue, MaskBits, PackedLhs};
use super::scratch::scratch;
use super::transpose;
use super::{
    finish, finish_residual, flex_tensor, parameter_data, ConstantOperands, FlexValue,
    InputGradient, ReluMask, ResidualGradient, SharedMut,
};

/// Output channels per product (the rows of one task's matrix product), [`CO_BLOCK`], or
/// [`CO_BLOCK_WIDE`] for stride-1 convolutions with at most [`WIDE_MAX_K`] taps × input
/// channels (a ResNet-50's 1×1 convolutions): each strip of the input that a product
/// copies for the micro-kernel then serves twice the rows. On the 224×224 planes of
/// ResNet-50, whose 1×1 products have thousands of columns, that cut the CPU time of an
/// input gradient by about 6% on this project's Intel VMs (3% of a PGD run's); ResNet-18 at
/// 32×32 ran slower with wide blocks for its 3×3 products on small planes (whose packed
/// weights would outgrow the L2 cache) or its strided ones (too few tasks), hence the
/// limits (benches/RESULTS.md, eleventh session). The block changes no value: each output
/// is one sum in a fixed order whichever block computes it.
fn co_block(g: &Geometry) -> usize {
    if g.stride == [1, 1] && g.kh * g.kw * g.c <= WIDE_MAX_K {
        CO_BLOCK_WIDE
    } else {
        CO_BLOCK
    }
}

/// Output channels per product, in general (see [`co_block`]).
const CO_BLOCK: usize = 64;

/// Output channels per product of stride-1 convolutions with a short inner dimension (see
/// [`co_block`]).
const CO_BLOCK_WIDE: usize = 128;

/// Largest inner dimension (taps × input channels) that takes [`CO_BLOCK_WIDE`].
const WIDE_MAX_K: usize = 1024;

/// Fewest input channels for which a stride-1 convolution takes this path: below that,
/// each product's inner dimension is too short for the matrix-product kernels to pay (and
/// the direct kernel in `conv.rs` is faster). Strided convolutions take it at any width
/// (the alternative, `im2col`, copies their input `kh·kw / stride²` times).
pub(crate) const MIN_CHANNELS: usize = 32;

/// Output positions per image from which an unpadded stride-1 1×1 convolution of a
/// standard-layout input is left to `gemm_conv`'s per-image product, which reads that input
/// in place (a batch-innermost input is read in place here).
const POINTWISE_MIN_POSITIONS: usize = 196;

/// Input columns (positions × images) per task of the strided backward pass, at most.
const TILE: usize = 512;

/// Input columns per task of the strided backward pass over rows of `row` columns: at most
/// [`TILE`], and few enough for four tasks per thread, in whole strips of the micro-kernel
/// (48 columns with AVX-512). With one task per [`TILE`] ResNet-50's last strided 3×3
/// convolution (448 columns) ran on one thread. The partition changes no value: each
/// input column is summed by one task in a fixed order.
fn scatter_tile(row: usize) -> usize {
    const STRIP: usize = 48;
    let tasks = 4 * rayon::current_num_threads();
    row.div_ceil(tasks)
        .next_multiple_of(STRIP)
        .clamp(STRIP, TILE)
}

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    /// Stride: rows, columns.
    stride: [usize; 2],
    /// Padding: top, bottom, left, right (each below the kernel size).
    pads: [usize; 4],
}

impl Geometry {
    /// The geometry of a convolution of an `[n, c, h, w]` input with `[co, _, kh, kw]`
    /// weights (the weights' channel count is checked by the caller).
    fn of(
        [n, c, h, w]: [usize; 4],
        [co, _, kh, kw]: [usize; 4],
        stride: [usize; 2],
        pads: [(usize, usize); 2],
    ) -> Self {
        Self {
            n,
            c,
            h,
            w,
            co,
            kh,
            kw,
            stride,
            pads: [pads[0].0, pads[0].1, pads[1].0, pads[1].1],
        }
    }

    fn ho(&self) -> usize {
        (self.h + self.pads[0] + self.pads[1] - self.kh) / self.stride[0] + 1
    }
    fn wo(&self) -> usize {
        (self.w + self.pads[2] + self.pads[3] - self.kw) / self.stride[1] + 1
    }
    /// Input columns per phase: the layout keeps the columns of each residue modulo the
    /// column stride together (`[phase][column / stride]`), so that the columns one kernel
    /// tap reads for consecutive outputs are consecutive.
    fn wq(&self) -> usize {
        self.w.div_ceil(self.stride[1])
    }
    /// Columns of one input row in the layout (`stride · wq`, at least `w`).
    fn width(&self) -> usize {
        self.stride[1] * self.wq()
    }
    /// Where input column `iw` sits in the layout.
    fn col(&self, iw: usize) -> usize {
        (iw % self.stride[1]) * self.wq() + iw / self.stride[1]
    }
    fn supported(&self) -> bool {
        let [t, b, l, r] = self.pads;
        [self.n, self.c, self.h, self.w, self.co, self.kh, self.kw]
            .iter()
            .all(|&d| d > 0)
            && self.stride.iter().all(|&s| s > 0)
            && t < self.kh
            && b < self.kh
            && l < self.kw
            && r < self.kw
            && self.h + t + b >= self.kh
            && self.w + l + r >= self.kw
    }
    /// A strided 1×1 convolution without padding: it reads only the inputs at multiples of
    /// the stride, so its input gradient is a stride-1 1×1 convolution's at those positions
    /// (see [`Geometry::transposed`]) and zero elsewhere.
    fn strided_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pads == [0; 4] && self.stride != [1, 1]
    }
    /// For a stride-1 convolution: the convolution computing its input gradient (weights
    /// swapped and flipped). For a [strided pointwise](Geometry::strided_pointwise) one:
    /// the stride-1 1×1 convolution computing its input gradient at the positions it read
    /// (`[ho, c, wo, n]`).
    fn transposed(&self) -> Self {
        if self.strided_pointwise() {
            return Self {
                n: self.n,
                c: self.co,
                h: self.ho(),
                w: self.wo(),
                co: self.c,
                kh: 1,
                kw: 1,
                stride: [1, 1],
                pads: [0; 4],
            };
        }
        let [t, b, l, r] = self.pads;
        Self {
            n: self.n,
            c: self.co,
            h: self.ho(),
            w: self.wo(),
            co: self.c,
            kh: self.kh,
            kw: self.kw,
            stride: [1, 1],
            pads: [
                self.kh - 1 - t,
                self.kh - 1 - b,
                self.kw - 1 - l,
                self.kw - 1 - r,
            ],
        }
    }
    /// Kernel rows `i_lo..i_hi` that read inside the image for output row `oh`, and the
    /// input row read by `i_lo`.
    fn rows(&self, oh: usize) -> (usize, usize, usize) {
        let (t, at) = (self.pads[0], oh * self.stride[0]);
        let i_lo = t.saturating_sub(at);
        let i_hi = (self.h + t).saturating_sub(at).min(self.kh).max(i_lo);
        (i_lo, i_hi, (at + i_lo).saturating_sub(t))
    }
    /// Output columns `lo..hi` whose kernel column `j` reads inside the image, and the
    /// layout column read by `lo` (those of `lo..hi` follow it).
    fn cols(&self, j: usize) -> (usize, usize, usize) {
        let (l, s) = (self.pads[2], self.stride[1]);
        let lo = l.saturating_sub(j).div_ceil(s);
        let hi = (self.w + l)
            .saturating_sub(j)
            .div_ceil(s)
            .min(self.wo())
            .max(lo);
        (lo, hi, self.col((lo * s + j).saturating_sub(l)))
    }
}

/// Weights `[co, c, kh, kw]` as `[kw][co][kh][c]`: for kernel column `j`, a `[co, kh·c]`
/// row-major matrix whose columns for consecutive kernel rows are consecutive. One task
/// per (kernel column, output channel).
fn by_column(w: &[f32], co: usize, c: usize, kh: usize, kw: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    out.par_chunks_mut(kh * c)
        .enumerate()
        .for_each(|(jo, dst)| {
            let (j, o) = (jo / co, jo % co);
            for i in 0..kh {
                for ci in 0..c {
                    dst[i * c + ci] = w[((o * c + ci) * kh + i) * kw + j];
                }
            }
        });
    out
}

/// The weights of the transposed convolution (`[c, co, kh, kw]`, taps flipped), arranged
/// as [`by_column`] arranges a convolution's: `[kw][c][kh][co]`.
fn flipped_by_column(w: &[f32], co: usize, c: usize, kh: usize, kw: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    out.par_chunks_mut(kh * co)
        .enumerate()
        .for_each(|(jc, dst)| {
            let (j, ci) = (jc / c, jc % c);
            for i in 0..kh {
                for o in 0..co {
                    dst[i * co + o] = w[((o * c + ci) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)];
                }
            }
        });
    out
}

/// Output columns `ow_a..ow_b` that read inside the image with exactly the kernel columns
/// `j_lo..j_hi` (one product each: every tap of the group reads inside the image).
#[derive(Clone, Copy, Debug)]
struct Group {
    ow_a: usize,
    ow_b: usize,
    j_lo: usize,
    j_hi: usize,
}

impl Geometry {
    /// The output columns grouped by the kernel columns that read inside the image: the
    /// interior (all of them) and a few columns at each edge.
    fn groups(&self) -> Vec<Group> {
        let (l, s) = (self.pads[2], self.stride[1]);
        let mut groups: Vec<Group> = Vec::new();
        for ow in 0..self.wo() {
            let at = ow * s;
            let j_lo = l.saturating_sub(at);
            let j_hi = (self.w + l).saturating_sub(at).min(self.kw);
            match groups.last_mut() {
                Some(g) if g.j_lo == j_lo && g.j_hi == j_hi => g.ow_b = ow + 1,
                _ => groups.push(Group {
                    ow_a: ow,
                    ow_b: ow + 1,
                    j_lo,
                    j_hi,
                }),
            }
        }
        groups
    }
}

/// `Y = conv(X)` on the layout: `x` is `[h, c, width, n]`, `wt` the weights
/// [`by_column`] (with every product's weights packed in advance when `packed` is given),
/// `y` (`[ho, co, wo, n]`) is written (every value), with `fin` applied (its bias per
/// output channel, its residual and mask laid out as `y`).
fn convolve(
    g: &Geometry,
    x: &[f32],
    wt: &[f32],
    packed: Option<&Packed>,
    y: &mut [MaybeUninit<f32>],
    fin: Epilogue<'_>,
) {
    let (n, ho, wo) = (g.n, g.ho(), g.wo());
    let row = g.co * wo * n;
    let groups = g.groups();
    let cb = co_block(g);
    y[..ho * row]
        .par_chunks_mut(row)
        .enumerate()
        .for_each(|(oh, yrow)| {
            yrow.par_chunks_mut(cb * wo * n)
                .enumerate()
                .for_each(|(b, dst)| {
                    let lhs = packed.map(|p| p.get(g, oh, b));
                    let at = oh * row + b * cb * wo * n;
                    block(g, x, wt, lhs, &groups, (oh, b * cb), (dst, at), fin)
                })
        });
}

/// The weight columns (offsets into [`by_column`]'s arrangement, from output channel
/// `o0`'s row) of the taps of kernel rows `i_lo..i_hi` and group `grp`, in the product's
/// fixed order: kernel row, kernel column, channel (so that the weights of consecutive taps
/// are consecutive in memory).
fn lhs_columns(g: &Geometry, (i_lo, i_hi): (usize, usize), grp: &Group, cols: &mut Vec<usize>) {
    cols.clear();
    for i in i_lo..i_hi {
        for j in grp.j_lo..grp.j_hi {
            cols.extend((0..g.c).map(|ci| j * g.co * g.kh * g.c + i * g.c + ci));
        }
    }
}

/// One task of [`convolve`]: output row `oh`, output channels `o0..` (as many as `dst`
/// holds rows of `wo·n`; `dst` starts at value `at` of the output). Each group of output
/// columns is one product over all the taps that read inside the image,
/// `k = rows · columns · c`, gathered in place; `packed` holds this row's and block's
/// weights per group, packed in advance.
#[allow(clippy::too_many_arguments)]
fn block(
    g: &Geometry,
    x: &[f32],
    wt: &[f32],
    packed: Option<&[PackedLhs]>,
    groups: &[Group],
    (oh, o0): (usize, usize),
    (dst, at): (&mut [MaybeUninit<f32>], usize),
    fin: Epilogue<'_>,
) {
    let (n, wo, width) = (g.n, g.wo(), g.width());
    let m = dst.len() / (wo * n);
    let (i_lo, i_hi, ih) = g.rows(oh);
    let (l, s) = (g.pads[2], g.stride[1]);
    let mut lhs_cols = Vec::new();
    let mut rhs_rows = Vec::new();
    for (gi, grp) in groups.iter().enumerate() {
        // The input rows in the order of `lhs_columns`.
        rhs_rows.clear();
        for i in i_lo..i_hi {
            for j in grp.j_lo..grp.j_hi {
                let col = g.col(grp.ow_a * s + j - l);
                rhs_rows
                    .extend((0..g.c).map(|ci| ((ih + i - i_lo) * g.c + ci) * width * n + col * n));
            }
        }
        let (a0, b0) = (grp.ow_a * n, grp.ow_b * n);
        // The products write through the pointer without reading (`accumulate` false).
        let out = (dst[a0..].as_mut_ptr().cast::<f32>(), dst.len() - a0, wo * n);
        let rhs = (x, microgemm::Offsets::Table(&rhs_rows));
        let unpacked;
        let lhs = match packed {
            Some(p) => {
                debug_assert_eq!(p[gi].dims(), (m, rhs_rows.len()));
                &p[gi]
            }
            None => {
                lhs_columns(g, (i_lo, i_hi), grp, &mut lhs_cols);
                unpacked = microgemm::pack_lhs(
                    (m, lhs_cols.len()),
                    (
                        &wt[o0 * g.kh * g.c..],
                        g.kh * g.c,
                        microgemm::Offsets::Table(&lhs_cols),
                    ),
                );
                &unpacked
            }
        };
        // SAFETY: `dst` is this task's own; the product writes `m` rows of `b0 - a0` values
        // from `a0`, inside it (checked by `product_finished`).
        #[allow(unsafe_code)]
        unsafe {
            microgemm::product_finished(b0 - a0, out, lhs, rhs, false, fin.shifted(at + a0, o0))
        }
    }
}

/// Every product's weights of one convolution, packed once: for each range of kernel rows
/// that some output row reads inside the image (`kinds`), each group of output columns and
/// each block of output channels. Kept with the cached arrangement when small (see
/// [`Packed::MAX_RATIO`]): on small planes (a CIFAR ResNet's 2×2 and 1×1 stages) a product
/// has few columns and packing its weights cost a third of it, on every attack step.
#[derive(Debug)]
struct Packed {
    kinds: Vec<(usize, usize)>,
    groups: usize,
    blocks: usize,
    packs: Vec<PackedLhs>,
}

impl Packed {
    /// Largest packed size, as a multiple of the weights' size, that is kept: on large
    /// planes every edge row and column has its own subset of the taps, and the variants
    /// together hold about 5.4 times a 3×3 kernel's weights.
    const MAX_RATIO: usize = 2;

    /// The packed weights of `g` (arranged by [`by_column`] in `wt`), or `None` when they
    /// would exceed [`Packed::MAX_RATIO`] times the weights.
    fn new(g: &Geometry, wt: &[f32]) -> Option<Self> {
        let kinds = row_kinds(g);
        let groups = g.groups();
        let cb = co_block(g);
        let blocks = g.co.div_ceil(cb);
        let taps: usize = kinds
            .iter()
            .flat_map(|&(a, b)| {
                groups
                    .iter()
                    .map(move |grp| (b - a) * (grp.j_hi - grp.j_lo))
            })
            .sum();
        let size: usize = (0..blocks)
            .map(|b| super::microgemm::packed_len(cb.min(g.co - b * cb), taps * g.c))
            .sum();
        if size > Self::MAX_RATIO * wt.len() {
            return None;
        }
        let n_groups = groups.len();
        let jobs: Vec<(usize, usize, usize)> = (0..kinds.len())
            .flat_map(|k| (0..blocks).flat_map(move |b| (0..n_groups).map(move |gi| (k, gi, b))))
            .collect();
        let packs = jobs
            .par_iter()
            .map(|&(k, gi, b)| {
                let mut cols = Vec::new();
                lhs_columns(g, kinds[k], &groups[gi], &mut cols);
                let o0 = b * cb;
                let m = cb.min(g.co - o0);
                super::microgemm::pack_lhs(
                    (m, cols.len()),
                    (
                        &wt[o0 * g.kh * g.c..],
                        g.kh * g.c,
                        super::microgemm::Offsets::Table(&cols),
                    ),
                )
            })
            .collect();
        Some(Self {
            kinds,
            groups: n_groups,
            blocks,
            packs,
        })
    }

    /// The packs of output row `oh`'s products for output-channel block `b`, one per group.
    fn get(&self, g: &Geometry, oh: usize, b: usize) -> &[PackedLhs] {
        let k = row_kind(&self.kinds, g, oh);
        // Laid out [kind][block][group].
        debug_assert!(b < self.blocks);
        &self.packs[(k * self.blocks + b) * self.groups..][..self.groups]
    }

    fn values(&self) -> usize {
        self.packs.iter().map(PackedLhs::len).sum()
    }
}

/// The kinds of `g`'s output rows: the kernel rows `i_lo..i_hi` that read inside the image,
/// each once, in the order they first occur.
fn row_kinds(g: &Geometry) -> Vec<(usize, usize)> {
    let mut kinds: Vec<(usize, usize)> = Vec::new();
    for oh in 0..g.ho() {
        let (i_lo, i_hi, _) = g.rows(oh);
        if !kinds.contains(&(i_lo, i_hi)) {
            kinds.push((i_lo, i_hi));
        }
    }
    kinds
}

/// Which of `kinds` ([`row_kinds`]) output row `oh` of `g` is.
fn row_kind(kinds: &[(usize, usize)], g: &Geometry, oh: usize) -> usize {
    let (i_lo, i_hi, _) = g.rows(oh);
    kinds
        .iter()
        .position(|&r| r == (i_lo, i_hi))
        .expect("every output row's kind was packed")
}

/// The left operands of [`scatter`]'s products, packed once per arrangement: for each kind
/// of output row (the kernel rows `i_lo..i_hi` that read inside the image) and kernel
/// column `j`, `W_jᵀ` restricted to those rows (`(i_hi − i_lo)·c × co`). Packing them on
/// every product call was most of a strided convolution's input gradient on wide layers
/// (a 3×3 kernel over 512 channels is a 3 MB pack, made again for each output row).
#[derive(Debug)]
struct ScatterPacks {
    kinds: Vec<(usize, usize)>,
    /// Laid out `[kind][j]`.
    packs: Vec<PackedLhs>,
}

impl ScatterPacks {
    fn new(g: &Geometry, wt: &[f32]) -> Self {
        let kinds = row_kinds(g);
        let packs = (0..kinds.len() * g.kw)
            .into_par_iter()
            .map(|at| {
                let ((i_lo, i_hi), j) = (kinds[at / g.kw], at % g.kw);
                super::microgemm::pack_lhs(
                    ((i_hi - i_lo) * g.c, g.co),
                    (
                        &wt[(j * g.co * g.kh + i_lo) * g.c..],
                        1,
                        super::microgemm::Offsets::Stride(g.kh * g.c),
                    ),
                )
            })
            .collect();
        Self { kinds, packs }
    }

    /// The pack of output row `oh`'s products for kernel column `j`.
    fn get(&self, g: &Geometry, oh: usize, j: usize) -> &PackedLhs {
        &self.packs[row_kind(&self.kinds, g, oh) * g.kw + j]
    }

    fn values(&self) -> usize {
        self.packs.iter().map(PackedLhs::len).sum()
    }
}

/// The input gradient of a strided convolution, on the layout: every (output row, kernel
/// column) adds `W_jᵀ · dY` onto the input rows and columns it read. Those overlap across
/// output rows, so the tasks are tiles of input columns instead: each adds every
/// contribution to its own columns, in a fixed order.
fn scatter(g: &Geometry, dy: &[f32], packs: &ScatterPacks, dx: &mut [MaybeUninit<f32>]) {
    let (n, wo, width) = (g.n, g.wo(), g.width());
    let row = width * n;
    // Each task owns the columns t0..t1 of every input row; the rows are interleaved in
    // `dx`, so the tasks reach their columns through a shared raw pointer.
    let shared = SharedMut::uninit(dx);
    let tile_w = scatter_tile(row);
    (0..row.div_ceil(tile_w)).into_par_iter().for_each(|tile| {
        let shared = &shared;
        let (t0, t1) = (tile * tile_w, ((tile + 1) * tile_w).min(row));
        for r in 0..g.h * g.c {
            let (start, room) = shared.tail(r * row + t0);
            assert!(room >= t1 - t0);
            // SAFETY: columns t0..t1 of every row are this task's alone, inside the buffer
            // (checked); zeroed through the pointer, as they may not be initialised yet (the
            // products below then add onto them).
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write_bytes(start, 0, t1 - t0)
            };
        }
        for oh in 0..g.ho() {
            let (i_lo, i_hi, ih) = g.rows(oh);
            if i_lo >= i_hi {
                continue;
            }
            for j in 0..g.kw {
                let (lo, hi, col) = g.cols(j);
                // The input columns these outputs read, clipped to the tile.
                let (a, b) = ((col * n).max(t0), ((col + hi - lo) * n).min(t1));
                if lo >= hi || a >= b {
                    continue;
                }
                let (start, room) = shared.tail(ih * g.c * row + a);
                // SAFETY: the product writes columns a..b (inside this task's tile) of
                // rows `start + r·row`; no other task touches those columns.
                #[allow(unsafe_code)]
                unsafe {
                    super::microgemm::product_packed(
                        b - a,
                        (start, room, row),
                        packs.get(g, oh, j),
                        (
                            &dy[(oh * g.co * wo + lo) * n + a - col * n..],
                            super::microgemm::Offsets::Stride(wo * n),
                        ),
                        true,
                    )
                };
            }
        }
    });
}

/// Images per block of the layout changes: one cache line of the batch-innermost side.
const NB: usize = 16;

/// `[n, c, h, w]` → the layout of `g`'s input (`[h, c, width, n]`, columns by phase),
/// written through `shared` (which may be uninitialised). `g` gives the column
/// arrangement; `dims` the tensor's shape. One task per channel: [`NB`] images at a time,
/// it reads each image's plane as one contiguous run into a small tile and writes every
/// position as a run of [`NB`] images (reading one position of many images instead would
/// hit addresses a large power of two apart, which share cache sets); 16 images × 16
/// positions at a time go through a register transpose instead where the CPU has one
/// ([`transpose`]).
fn to_layout(x: &[f32], [n, c, h, w]: [usize; 4], g: &Geometry, shared: SharedMut<'_>) {
    let (hw, width) = (h * w, g.width());
    let total = h * c * width * n;
    assert!(x.len() >= n * c * hw && shared.len() >= total);
    let offsets = position_offsets(g, c, h, w);
    let fast = transpose::available();
    (0..c).into_par_iter().for_each(|ci| {
        let shared = &shared;
        let mut tile = vec![0f32; hw * NB];
        for n0 in (0..n).step_by(NB) {
            let nb = NB.min(n - n0);
            // 16 images × 16 positions at a time in registers, where there are that many.
            let mut p0 = 0;
            while let (Some(isa), true) = (fast, nb == NB && p0 + 16 <= hw) {
                let at: [usize; 16] = std::array::from_fn(|b| ((n0 + b) * c + ci) * hw + p0);
                let src = at.map(|a| x[a..a + 16].as_ptr());
                let dst =
                    std::array::from_fn(|j| shared.tail((offsets[p0 + j] + ci * width) * n + n0).0);
                // SAFETY: the transposes are available; each source is 16 values of `x`
                // (sliced above), each destination channel `ci`'s run of the 16 images at
                // one position, inside `out` (`n0 + 16 <= n`) and this task's alone.
                #[allow(unsafe_code)]
                unsafe {
                    transpose::block(isa, &src, &dst)
                };
                p0 += 16;
            }
            if p0 == hw {
                continue;
            }
            for b in 0..nb {
                let at = ((n0 + b) * c + ci) * hw + p0;
                for (p, &v) in x[at..at + hw - p0].iter().enumerate() {
                    tile[p * NB + b] = v;
                }
            }
            for (p, &off) in offsets[p0..].iter().enumerate() {
                let (dst, room) = shared.tail((off + ci * width) * n + n0);
                assert!(room >= nb);
                // SAFETY: channel `ci`'s run of `nb` values for position `p0 + p`, inside the
                // buffer (checked) and this task's alone; written through a pointer, as the
                // buffer may not be initialised yet.
                #[allow(unsafe_code)]
                unsafe {
                    std::ptr::copy_nonoverlapping(tile[p * NB..][..nb].as_ptr(), dst, nb)
                };
            }
        }
    });
}

/// The layout offset (in runs of `n`) of each position of a `c`-channel `h × w` plane,
/// relative to its channel's rows (channel 0's), for both layout changes.
fn position_offsets(g: &Geometry, c: usize, h: usize, w: usize) -> Vec<usize> {
    (0..h * w)
        .map(|p| (p / w) * c * g.width() + g.col(p % w))
        .collect()
}

/// The layout (`[h, c, width, n]`, columns as `g.col` places them) → `[n, c, h, w]`
/// (values only moved). Tasks take [`NB`] images; each read is a run
/// of [`NB`] consecutive images, each write a run of positions, through a small tile or
/// (16 positions at a time) a register transpose ([`transpose`]).
fn from_layout(y: &[f32], [n, c, h, w]: [usize; 4], g: &Geometry) -> Vec<f32> {
    let (hw, width) = (h * w, g.width());
    let img = c * hw;
    let offsets = position_offsets(g, c, h, w);
    let fast = transpose::available();
    let images = |blk: usize, imgs: &mut [std::mem::MaybeUninit<f32>]| {
        let n0 = blk * NB;
        let nb = imgs.len() / img;
        let mut tile = vec![0f32; hw * NB];
        for ci in 0..c {
            // 16 positions × 16 images at a time in registers, where there are that many.
            let mut p0 = 0;
            while let (Some(isa), true) = (fast, nb == NB && p0 + 16 <= hw) {
                let src = std::array::from_fn(|j| {
                    y[(offsets[p0 + j] + ci * width) * n + n0..][..16].as_ptr()
                });
                let base = imgs.as_mut_ptr().cast::<f32>();
                // SAFETY (`add`): image `b < nb`, values `p0..p0 + 16` of plane `ci`: inside
                // `imgs` (`nb · img` values).
                #[allow(unsafe_code)]
                let dst = std::array::from_fn(|b| unsafe { base.add(b * img + ci * hw + p0) });
                // SAFETY: the transposes are available; each source is 16 values of `y`
                // (sliced above), each destination 16 of this task's own output.
                #[allow(unsafe_code)]
                unsafe {
                    transpose::block(isa, &src, &dst)
                };
                p0 += 16;
            }
            if p0 == hw {
                continue;
            }
            for (p, &off) in offsets[p0..].iter().enumerate() {
                copy_run(&mut tile[p * NB..], &y[(off + ci * width) * n + n0..], nb);
            }
            for b in 0..nb {
                let dst = &mut imgs[b * img + ci * hw + p0..][..hw - p0];
                for (p, d) in dst.iter_mut().enumerate() {
                    d.write(tile[p * NB + b]);
                }
            }
        }
    };
    // SAFETY: each chunk holds `nb` whole images, and `images` writes every value of them:
    // every channel `ci < c` of every image `b < nb`, every position `p < hw` (those below
    // `p0` by the transposes, 16 images × 16 positions at a time).
    #[allow(unsafe_code)]
    unsafe {
        super::filled(n * img, NB * img, images)
    }
}

/// Copies `len` (at most [`NB`]) values from `src` to `dst`; a full run has a constant
/// length, which the compiler turns into a few vector moves instead of a call.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32], len: usize) {
    if len == NB {
        let d: &mut [f32; NB] = (&mut dst[..NB]).try_into().expect("NB values");
        d.copy_from_slice(&src[..NB]);
    } else {
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// The geometry whose layout is plain `[h, c, w, n]` for a tensor of `dims` (stride 1).
fn plain(dims: [usize; 4]) -> Geometry {
    let [n, c, h, w] = dims;
    Geometry {
        n,
        c,
        h,
        w,
        co: 1,
        kh: 1,
        kw: 1,
        stride: [1, 1],
        pads: [0; 4],
    }
}

/// The rearranged weights of one convolution: forward ([`by_column`]) and, for a stride-1
/// convolution, those of its transposed convolution (flipped, then [`by_column`]); or, for a
/// 3×3 one that takes the Winograd path ([`winograd::applies`]), both transformed instead.
#[derive(Debug)]
struct Rearranged {
    /// Empty when only the packed weights are read (see [`Rearranged::new`]).
    forward: Vec<f32>,
    /// `Some` for a stride-1 or [strided pointwise](Geometry::strided_pointwise)
    /// convolution; empty inside when only packed weights are read.
    transposed: Option<Vec<f32>>,
    /// The forward products' weights, packed (when small: see [`Packed`]).
    forward_packed: Option<Packed>,
    /// The same for the transposed convolution.
    transposed_packed: Option<Packed>,
    /// The forward and transposed weights for [`winograd::convolve`].
    winograd: Option<[winograd::Transformed; 2]>,
    /// [`scatter`]'s packed weights, for a strided convolution other than a
    /// [strided pointwise](Geometry::strided_pointwise) one.
    scatter: Option<ScatterPacks>,
}

impl Rearranged {
    fn new(data: &[f32], g: &Geometry) -> Self {
        let (co, c, kh, kw) = (g.co, g.c, g.kh, g.kw);
        if winograd::applies(g) {
            return Self {
                forward: Vec::new(),
                transposed: None,
                forward_packed: None,
                transposed_packed: None,
                winograd: Some([
                    winograd::Transformed::forward(data, co, c),
                    winograd::Transformed::transposed(data, co, c),
                ]),
                scatter: None,
            };
        }
        let forward = by_column(data, co, c, kh, kw);
        let transposed = (g.stride == [1, 1] || g.strided_pointwise())
            .then(|| flipped_by_column(data, co, c, kh, kw));
        // A strided 1×1 convolution's input gradient is a stride-1 product instead
        // (`State::gradient_of_masked`).
        let scatter =
            (g.stride != [1, 1] && !g.strided_pointwise()).then(|| ScatterPacks::new(g, &forward));
        let forward_packed = Packed::new(g, &forward);
        let transposed_packed = transposed
            .as_ref()
            .and_then(|t| Packed::new(&g.transposed(), t));
        // The products read packed weights only, so the arrangements they were packed from
        // are not kept.
        let forward = match forward_packed {
            Some(_) => Vec::new(),
            None => forward,
        };
        let transposed = transposed.map(|t| match transposed_packed {
            Some(_) => Vec::new(),
            None => t,
        });
        Self {
            forward_packed,
            transposed_packed,
            forward,
            transposed,
            winograd: None,
            scatter,
        }
    }
    fn values(&self) -> usize {
        self.forward.len()
            + self.transposed.as_ref().map_or(0, Vec::len)
            + self.forward_packed.as_ref().map_or(0, Packed::values)
            + self.transposed_packed.as_ref().map_or(0, Packed::values)
            + self
                .winograd
                .as_ref()
                .map_or(0, |w| w.iter().map(winograd::Transformed::values).sum())
            + self.scatter.as_ref().map_or(0, ScatterPacks::values)
    }

    /// `y = conv(x)` on the layout, by whichever path the weights were arranged for
    /// (writing every value of `y`), with `fin` applied.
    fn convolve(&self, g: &Geometry, x: &[f32], y: &mut [MaybeUninit<f32>], fin: Epilogue<'_>) {
        match &self.winograd {
            Some([forward, _]) => {
                winograd::convolve(g, x, forward, y, Epilogue { mask: None, ..fin })
            }
            None => convolve(g, x, &self.forward, self.forward_packed.as_ref(), y, fin),
        }
    }

    /// The input gradient `dx` of `g` from the output gradient `dy`, on the layout (every
    /// value of `dx` written), plus `add` (laid out as `dx`) as each value is stored: only
    /// for a stride-1 convolution.
    fn transpose(
        &self,
        g: &Geometry,
        dy: &[f32],
        dx: &mut [MaybeUninit<f32>],
        add: Option<&[f32]>,
    ) {
        assert!(
            add.is_none() || g.stride == [1, 1],
            "only a stride-1 input gradient adds as it stores"
        );
        let fin = Epilogue {
            skip: add,
            ..Epilogue::default()
        };
        match (&self.winograd, &self.scatter) {
            (Some([_, transposed]), _) => {
                winograd::convolve(&g.transposed(), dy, transposed, dx, fin)
            }
            (None, Some(packs)) => scatter(g, dy, packs, dx),
            // Stride 1: the transposed convolution, with parallel tasks per input row. (A
            // strided 1×1 convolution's transposed one computes only the positions it read:
            // `State::gradient_of_masked` spreads them out.)
            (None, None) => {
                assert_eq!(g.stride, [1, 1], "a strided 1×1 gradient is spread out");
                self.transpose_unit(&g.transposed(), dy, dx, fin)
            }
        }
    }

    /// The stride-1 convolution `gt` (a [`Geometry::transposed`]) by the transposed weights,
    /// with `fin` applied.
    fn transpose_unit(
        &self,
        gt: &Geometry,
        dy: &[f32],
        dx: &mut [MaybeUninit<f32>],
        fin: Epilogue<'_>,
    ) {
        let wt = self
            .transposed
            .as_ref()
            .expect("stride-1 and strided 1×1 convolutions keep their transposed weights");
        let packed = self.transposed_packed.as_ref();
        convolve(gt, dy, wt, packed, dx, fin)
    }
}

/// A vector of `len` values that `fill` writes, every one of them.
///
/// # Safety
/// `fill` must write every value of the slice it gets.
#[allow(unsafe_code)]
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote the first `len` values (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// A scratch buffer seen as values to be written.
///
/// # Safety
/// The caller writes only initialised `f32` values through the view (never
/// `MaybeUninit::uninit()`), so that the buffer stays initialised.
#[allow(unsafe_code)]
unsafe fn as_uninit(buf: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; see the contract above.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len()) }
}

/// One cached arrangement: the weight tensor (a clone, which keeps its storage alive), its
/// address, the geometry, and the arrangement.
type CacheEntry = (FlexTensor, usize, Geometry, Arc<Rearranged>);

/// A small cache of rearranged weights, keyed by the weight tensor's storage. Each entry
/// holds a clone of the tensor, which keeps its storage alive, so no other tensor can reuse
/// the address while the entry exists and equal keys mean equal (immutable) values. Bounded
/// by [`WeightCache::MAX_VALUES`]; the oldest entries go first.
struct WeightCache {
    entries: Vec<CacheEntry>,
    values: usize,
}

impl WeightCache {
    /// Most cached `f32` values (all arrangements of all entries): 640 MiB. ResNet-50's
    /// arrangements take about 120 M values (its Winograd weights are 8 times its 3×3 weights,
    /// forward and transposed; its 1×1 weights twice, packed forward and transposed); a model
    /// that needs more re-arranges the evicted ones on every pass.
    const MAX_VALUES: usize = 160 << 20;

    fn get(weight: &FlexTensor, data: &[f32], g: &Geometry) -> Arc<Rearranged> {
        static CACHE: Mutex<WeightCache> = Mutex::new(WeightCache {
            entries: Vec::new(),
            values: 0,
        });
        let key = data.as_ptr() as usize;
        // The batch size does not change the arrangement.
        let g = Geometry { n: 1, ..*g };
        // A poisoned lock only means another thread panicked between two statements that
        // keep the entries complete, so the cache stays usable.
        if let Some(hit) = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .iter()
            .find(|(_, k, kg, _)| *k == key && *kg == g)
        {
            return Arc::clone(&hit.3);
        }
        let made = Arc::new(Rearranged::new(data, &g));
        let size = made.values();
        if size <= Self::MAX_VALUES {
            let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            while cache.values + size > Self::MAX_VALUES && !cache.entries.is_empty() {
                let old = cache.entries.remove(0);
                cache.values -= old.3.values();
            }
            cache
                .entries
                .push((weight.clone(), key, g, Arc::clone(&made)));
            cache.values += size;
        }
        made
    }
}

/// What the backward pass keeps.
#[derive(Clone, Debug)]
struct State {
    g: Geometry,
    weights: Arc<Rearranged>,
    /// With a fused ReLU: which outputs it kept (in the output's batch-innermost order).
    relu: Option<ReluMask>,
    /// The input was batch-innermost (`[h, c, w, n]`), so its gradient is too.
    batch_inner: bool,
}

impl State {
    /// The output gradient as the products read it: masked by the fused ReLU if there is
    /// one (also the gradient of a fused residual sum's other operand).
    fn masked<'a>(&self, grad_out: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match &self.relu {
            Some(mask) => std::borrow::Cow::Owned(mask.apply(grad_out)),
            None => std::borrow::Cow::Borrowed(grad_out),
        }
    }

    /// Whether the input gradient is computed in the products' layout, which is the input's,
    /// by a stride-1 convolution: then it can add another gradient as it stores its values
    /// ([`InputGradient::adds_into`]).
    fn in_place_stride_one(&self) -> bool {
        self.batch_inner && self.g.stride == [1, 1]
    }

    /// The input gradient from an output gradient the caller owns, masked in place by the
    /// fused ReLU first, plus `add` (as [`State::gradient_of_masked`]).
    fn gradient_of_owned(
        &self,
        grad_out: &mut [f32],
        add: Option<&[f32]>,
    ) -> (Vec<f32>, [usize; 4]) {
        if let Some(mask) = &self.relu {
            mask.apply_in_place(grad_out);
        }
        self.gradient_of_masked(grad_out, add)
    }

    /// The input gradient from the masked output gradient `dy` (batch-innermost, as the
    /// output), plus `add` (only where [`State::in_place_stride_one`]).
    fn gradient_of_masked(&self, dy: &[f32], add: Option<&[f32]>) -> (Vec<f32>, [usize; 4]) {
        let g = &self.g;
        assert!(
            add.is_none() || self.in_place_stride_one(),
            "only an input gradient in the products' layout adds as it stores"
        );
        let in_dims = [g.n, g.c, g.h, g.w];
        if g.strided_pointwise() {
            // The stride-1 product at the positions the convolution read, then spread out:
            // one product over all of them with weights packed once, instead of `scatter`'s
            // per-row products onto a zeroed layout that is then copied.
            let gt = g.transposed();
            let mut read = scratch(gt.h * gt.co * gt.w * gt.n);
            // SAFETY: the products write `f32` values only.
            #[allow(unsafe_code)]
            self.weights.transpose_unit(
                &gt,
                dy,
                unsafe { as_uninit(&mut read) },
                Epilogue::default(),
            );
            let dx = spread(&read, g);
            return match self.batch_inner {
                true => (dx, [g.h, g.c, g.w, g.n]),
                false => (from_layout(&dx, in_dims, &plain(in_dims)), in_dims),
            };
        }
        if self.batch_inner && g.stride[1] == 1 {
            // The products' layout is the input's.
            // SAFETY: `transpose` writes every value.
            #[allow(unsafe_code)]
            let dx = unsafe {
                written(g.n * g.c * g.h * g.w, |dx| {
                    self.weights.transpose(g, dy, dx, add)
                })
            };
            return (dx, [g.h, g.c, g.w, g.n]);
        }
        let mut dx = scratch(g.n * g.c * g.h * g.width());
        // SAFETY: the products write `f32` values only.
        #[allow(unsafe_code)]
        self.weights
            .transpose(g, dy, unsafe { as_uninit(&mut dx) }, None);
        if self.batch_inner {
            (plain_columns(&dx, g), [g.h, g.c, g.w, g.n])
        } else {
            (from_layout(&dx, in_dims, g), in_dims)
        }
    }
}

impl InputGradient for State {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        self.gradient_of_masked(&self.masked(grad_out), None)
    }

    fn input_gradient_owned(&self, grad_out: &mut [f32]) -> (Vec<f32>, [usize; 4]) {
        self.gradient_of_owned(grad_out, None)
    }

    fn adds_into(&self) -> Option<[usize; 4]> {
        let g = &self.g;
        self.in_place_stride_one().then_some([g.h, g.c, g.w, g.n])
    }

    fn input_gradient_adding(
        &self,
        grad_out: &mut [f32],
        addend: &[f32],
    ) -> (Vec<f32>, [usize; 4]) {
        let g = &self.g;
        assert_eq!(
            addend.len(),
            g.n * g.c * g.h * g.w,
            "an addend per input value"
        );
        self.gradient_of_owned(grad_out, Some(addend))
    }
}

impl ResidualGradient for State {
    fn gradients(&self, grad_out: &[f32]) -> [(Vec<f32>, [usize; 4]); 2] {
        let g = &self.g;
        let dy = self.masked(grad_out);
        let dx = self.gradient_of_masked(&dy, None);
        [dx, (dy.into_owned(), [g.ho(), g.co, g.wo(), g.n])]
    }

    fn gradients_in_place(&self, grad_out: &mut [f32]) -> (Vec<f32>, [usize; 4]) {
        self.input_gradient_owned(grad_out)
    }
}

/// A batch-innermost `[h, c, w, n]` input in `g`'s layout, written to `out`: the columns
/// grouped by phase (see [`Geometry::col`]; only for a column stride above 1).
fn phase_columns(x: &[f32], g: &Geometry, out: &mut [f32]) {
    let (n, w, width) = (g.n, g.w, g.width());
    out[..g.h * g.c * width * n]
        .par_chunks_mut(width * n)
        .zip(x.par_chunks(w * n))
        .for_each(|(dst, src)| {
            for iw in 0..w {
                let at = g.col(iw) * n;
                dst[at..at + n].copy_from_slice(&src[iw * n..][..n]);
            }
        });
}

/// Values per task of the passes over a batch-innermost output (whole rows of `w·n`).
const ROWS_CHUNK: usize = 1 << 14;

/// A plain batch-innermost tensor of `g`'s input shape (`[h, c, w, n]`), written a row of
/// `w·n` values at a time: position `iw` of row `r` (`r = ih·c + ci`) holds the `n` values
/// `source(r, iw)` gives, or zeros where it gives none.
fn plain_rows<'a>(
    g: &Geometry,
    source: impl Fn(usize, usize) -> Option<&'a [f32]> + Sync,
) -> Vec<f32> {
    let n = g.n;
    let run = g.w * n;
    let rows = (ROWS_CHUNK / run).max(1);
    // SAFETY: each chunk is `rows` whole rows of `w·n` values (the last one fewer), and
    // every position of every row is written: `n` values from a source of exactly `n`
    // (asserted), or `n` zeros.
    #[allow(unsafe_code)]
    unsafe {
        super::filled(g.h * g.c * run, rows * run, |k, out| {
            for (r, dst) in out.chunks_mut(run).enumerate() {
                for (iw, d) in dst.chunks_mut(n).enumerate() {
                    match source(k * rows + r, iw) {
                        Some(src) => {
                            assert_eq!(src.len(), n, "a position is one value per image");
                            for (d, &v) in d.iter_mut().zip(src) {
                                d.write(v);
                            }
                        }
                        None => {
                            for d in d {
                                d.write(0.0);
                            }
                        }
                    }
                }
            }
        })
    }
}

/// The plain batch-innermost input gradient (`[h, c, w, n]`) of a
/// [strided pointwise](Geometry::strided_pointwise) convolution `g` from its values at the
/// positions the convolution read (`[ho, c, wo, n]`): zero at every other position.
fn spread(read: &[f32], g: &Geometry) -> Vec<f32> {
    let (n, c, wo, ho) = (g.n, g.c, g.wo(), g.ho());
    let [sh, sw] = g.stride;
    plain_rows(g, |r, iw| {
        let (ih, ci) = (r / c, r % c);
        (ih % sh == 0 && ih / sh < ho && iw % sw == 0 && iw / sw < wo)
            .then(|| &read[(((ih / sh) * c + ci) * wo + iw / sw) * n..][..n])
    })
}

/// `g`'s input layout back to plain `[h, c, w, n]` (the inverse of [`phase_columns`]).
fn plain_columns(dx: &[f32], g: &Geometry) -> Vec<f32> {
    let (n, width) = (g.n, g.width());
    plain_rows(g, |r, iw| Some(&dx[(r * width + g.col(iw)) * n..][..n]))
}

/// A one-group, undilated convolution on the CPU backend as matrix products over the taps
/// that read inside the image, or `None` when it does not apply (another backend or element
/// type, tracked weights, padding not below the kernel size, a stride-1 convolution with
/// fewer than [`MIN_CHANNELS`] input channels, or a 1×1 one over large planes of a
/// standard-layout input); then the caller uses another path. The input is `[n, c, h, w]`,
/// or `[h, c, w, n]` with `batch_inner`; the output is always batch-innermost,
/// `[ho, co, wo, n]` (see [`crate::value::Layout::BatchInner`]). With `relu`, a ReLU follows
/// in the same pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    x: &Tensor<4>,
    batch_inner: bool,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    stride: [usize; 2],
    pads: [(usize, usize); 2],
    relu: bool,
    skip: Option<&Tensor<4>>,
) -> Option<Tensor<4>> {
    let [n, c, h, w] = match x.dims() {
        [h, c, w, n] if batch_inner => [n, c, h, w],
        d => d,
    };
    let [co, wc, kh, kw] = weight.dims();
    let g = Geometry::of([n, c, h, w], [co, wc, kh, kw], stride, pads);
    let unit = stride == [1, 1];
    let pointwise = unit && kh == 1 && kw == 1 && g.pads == [0; 4];
    if wc != c
        || !g.supported()
        || (unit && c < MIN_CHANNELS)
        || (pointwise && h * w >= POINTWISE_MIN_POSITIONS && !batch_inner)
    {
        return None;
    }
    let (ho, wo) = (g.ho(), g.wo());
    // A residual operand: batch-innermost, the output's shape, on this backend, and in the
    // autodiff graph exactly when the input is.
    let skip = match skip {
        Some(t) if t.dims() == [ho, co, wo, n] => {
            let v = FlexValue::of(t)?;
            let graph = |v: &FlexValue| matches!(v, FlexValue::Graph(_));
            if graph(&v) != graph(&FlexValue::of(x)?) {
                return None;
            }
            Some(v)
        }
        Some(_) => return None,
        None => None,
    };
    let ConstantOperands {
        x,
        weight: wv,
        bias: bv,
    } = ConstantOperands::of(x, weight, bias)?;
    let sd = match &skip {
        Some(v) => Some(v.f32_data()?),
        None => None,
    };
    let (wd, bd) = parameter_data(&wv, bv.as_ref(), co)?;
    let weights = match &wd {
        std::borrow::Cow::Borrowed(d) => WeightCache::get(wv.flex(), d, &g),
        std::borrow::Cow::Owned(d) => Arc::new(Rearranged::new(d, &g)),
    };
    let len = n * co * ho * wo;
    // The ReLU's mask, when gradients flow: set by the direct products as they store each
    // tile when every output row (`wo·n` values, one task's unit) is whole mask words, so
    // that no two threads share a word; otherwise (and on Winograd's path) by a pass over
    // the output.
    let tracked = x.is_tracked() || skip.as_ref().is_some_and(FlexValue::is_tracked);
    let in_products = relu && tracked && weights.winograd.is_none() && (wo * n) % 64 == 0;
    let words: Vec<AtomicU64> = match in_products {
        true => (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        false => Vec::new(),
    };
    let out = {
        let xd = x.f32_data()?;
        let fin = Epilogue {
            bias: bd.as_deref(),
            skip: sd.as_deref(),
            relu,
            mask: in_products.then_some(MaskBits {
                words: &words,
                at: 0,
            }),
        };
        // SAFETY: `convolve` writes every value.
        #[allow(unsafe_code)]
        unsafe {
            written(len, |y| {
                if batch_inner && stride[1] == 1 {
                    weights.convolve(&g, &xd, y, fin)
                } else {
                    let mut xt = scratch(h * c * g.width() * n);
                    if batch_inner {
                        phase_columns(&xd, &g, &mut xt);
                    } else {
                        to_layout(&xd, [n, c, h, w], &g, SharedMut::new(&mut xt));
                    }
                    weights.convolve(&g, &xt, y, fin)
                }
            })
        }
    };
    let out = flex_tensor(out, [ho, co, wo, n]);
    let state = |values: &[f32]| State {
        g,
        weights,
        relu: relu.then(|| match in_products {
            true => ReluMask::from_words(words, len),
            false => ReluMask::of(values),
        }),
        batch_inner,
    };
    Some(match skip {
        Some(skip) => finish_residual(x, skip, out, state),
        None => finish(x, out, state),
    })
}

/// `x` (`[n, c, h, w]`) in the plain batch-innermost layout `[h, c, w, n]`, written to a
/// new vector.
fn plain_layout(x: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let len = dims.iter().product();
    let mut out = Vec::with_capacity(len);
    to_layout(
        x,
        dims,
        &plain(dims),
        SharedMut::uninit(&mut out.spare_capacity_mut()[..len]),
    );
    // SAFETY: `to_layout` wrote every value of the plain layout (each channel's run of
    // every image at every position), the first `len` of the buffer.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    out
}

/// A standard-layout tensor `[n, c, h, w]` held batch-innermost (`[h, c, w, n]`), as a node
/// of its autodiff graph, or `None` on another backend or element type.
pub(crate) fn batch_inner_layout(x: &Tensor<4>) -> Option<Tensor<4>> {
    let xv = super::FlexValue::of(x)?;
    let dims @ [n, c, h, w] = x.dims();
    let out = plain_layout(&xv.f32_data()?, dims);
    Some(finish(xv, flex_tensor(out, [h, c, w, n]), |_| {
        BatchInnered { dims }
    }))
}

/// The backward pass of [`batch_inner_layout`]: the standard dimensions it read.
#[derive(Clone, Debug)]
struct BatchInnered {
    dims: [usize; 4],
}

impl InputGradient for BatchInnered {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        let d = self.dims;
        (from_layout(grad_out, d, &plain(d)), d)
    }
}

/// A batch-innermost tensor `[h, c, w, n]` in the standard layout `[n, c, h, w]`, as a node of
/// its autodiff graph (the gradient goes back the other way), or `None` on another backend
/// or element type.
pub(crate) fn standard_layout(x: &Tensor<4>) -> Option<Tensor<4>> {
    let xv = super::FlexValue::of(x)?;
    let [h, c, w, n] = x.dims();
    let dims = [n, c, h, w];
    let out = from_layout(&xv.f32_data()?, dims, &plain(dims));
    Some(finish(xv, flex_tensor(out, dims), |_| Standardized {
        dims,
    }))
}

/// The backward pass of [`standard_layout`]: the dimensions it produced.
#[derive(Clone, Debug)]
struct Standardized {
    dims: [usize; 4],
}

impl InputGradient for Standardized {
    fn input_gradient(&self, grad_out: &[f32]) -> (Vec<f32>, [usize; 4]) {
        let [n, c, h, w] = self.dims;
        (plain_layout(grad_out, self.dims), [h, c, w, n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::matches_burn;
    use crate::to_host as host;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution};

    /// (input, weight, stride, pads (top, bottom), (left, right))
    type Case = ([usize; 4], [usize; 4], [usize; 2], [(usize, usize); 2]);
    const CASES: [Case; 15] = [
        // CIFAR ResNet planes: 8×8, 2×2 and 1×1 with a 3×3 kernel (only the centre tap
        // reads inside a 1×1 plane).
        ([3, 32, 8, 8], [40, 32, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([2, 33, 2, 2], [70, 33, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([5, 40, 1, 1], [130, 40, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        // Asymmetric padding, a rectangular kernel, no padding at all, and no tap column
        // that covers a whole output row.
        ([2, 32, 7, 9], [20, 32, 3, 2], [1, 1], [(2, 0), (0, 1)]),
        ([1, 36, 6, 5], [8, 36, 3, 3], [1, 1], [(0, 0), (0, 0)]),
        ([2, 32, 4, 3], [16, 32, 2, 3], [1, 1], [(1, 0), (2, 2)]),
        // A 1×1 expansion (a ResNet-50 bottleneck's) to more output channels than a wide
        // block holds, and its input gradient (a 1×1 reduction).
        ([3, 48, 5, 5], [150, 48, 1, 1], [1, 1], [(0, 0), (0, 0)]),
        // Strided: a ResNet stem (7×7, stride 2, 3 channels) on an odd width, a 3×3 and a
        // 1×1 downsampling, different strides per axis, and a 2×2 plane to a 1×1 one.
        ([2, 3, 13, 11], [16, 3, 7, 7], [2, 2], [(3, 3), (3, 3)]),
        ([3, 8, 8, 8], [24, 8, 3, 3], [2, 2], [(1, 1), (1, 1)]),
        ([2, 16, 6, 7], [12, 16, 1, 1], [2, 2], [(0, 0), (0, 0)]),
        ([2, 5, 9, 10], [6, 5, 3, 4], [3, 2], [(2, 0), (1, 3)]),
        ([4, 40, 2, 2], [50, 40, 3, 3], [2, 2], [(1, 1), (1, 1)]),
        // Batches past 16 images and planes past 16 positions, so that the layout changes
        // take their register transposes for whole blocks and the tile path for the rest:
        // stride 1 (Winograd, 63 positions) and stride 2 (16 output positions).
        ([33, 32, 7, 9], [20, 32, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([33, 32, 8, 8], [24, 32, 3, 3], [2, 2], [(1, 1), (1, 1)]),
        // A row stride only: a batch-innermost input is read in place, and the input
        // gradient is scattered.
        ([3, 32, 8, 6], [24, 32, 3, 3], [2, 1], [(1, 1), (1, 1)]),
    ];

    /// The batch-innermost output in the standard layout (through the autodiff node that
    /// changes it back, so its backward pass is checked as well).
    fn standard(y: Tensor<4>) -> Tensor<4> {
        standard_layout(&y).expect("an f32 CPU tensor")
    }

    /// Output and input gradient against burn's conv2d (and ReLU) under a random weighting
    /// of the outputs, from a standard-layout input.
    #[test]
    fn output_and_input_gradient_match_burn() {
        for (xs, ws, st, p) in CASES {
            let opts = ConvOptions::new_with_padding(st, p, [1, 1], 1);
            let kernel = |x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>, relu: bool| {
                conv2d(x, false, w, Some(b), st, p, relu, None).map(standard)
            };
            let what = format!("{xs:?} {ws:?} s{st:?} p{p:?}");
            matches_burn(&kernel, xs, ws, opts, &what);
        }
    }

    /// A residual sum folded into the products (`relu(conv(x) + skip)`, and without the
    /// ReLU) gives the bits of the convolution followed by the separate sum, in the output
    /// and in the gradients of both `x` and `skip`: on the direct path (a 1×1 and a strided
    /// convolution) and on Winograd's.
    #[test]
    fn a_fused_residual_sum_gives_the_separate_sums_bits() {
        let device = burn::tensor::Device::flex().autodiff();
        let cases: [Case; 3] = [
            ([3, 32, 6, 5], [40, 32, 1, 1], [1, 1], [(0, 0), (0, 0)]),
            ([2, 32, 9, 8], [24, 32, 3, 3], [2, 2], [(1, 1), (1, 1)]),
            ([2, 32, 8, 8], [24, 32, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ];
        let random = |dims: [usize; 4]| {
            Tensor::<4>::random(dims, burn::tensor::Distribution::Normal(0.0, 1.0), &device)
        };
        for (xs, ws, st, p) in cases {
            let x0 = batch_inner_layout(&random(xs)).expect("an f32 CPU tensor");
            let w = random(ws);
            let b = Tensor::<1>::random(
                [ws[0]],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let out = conv2d(&x0, true, &w, Some(&b), st, p, false, None).expect("handled");
            let (skip0, r) = (random(out.dims()), random(out.dims()));
            for relu in [false, true] {
                let run = |fused: bool| {
                    let (x, skip) = (x0.clone().require_grad(), skip0.clone().require_grad());
                    let y = if fused {
                        conv2d(&x, true, &w, Some(&b), st, p, relu, Some(&skip)).expect("handled")
                    } else {
                        let y =
                            conv2d(&x, true, &w, Some(&b), st, p, false, None).expect("handled");
                        match relu {
                            true => super::super::add_relu(&y, &skip).expect("handled"),
                            false => y + skip.clone(),
                        }
                    };
                    let grads = (y.clone() * r.clone()).sum().backward();
                    let bits =
                        |t: Tensor<4>| host(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    [
                        bits(y),
                        bits(x.grad(&grads).unwrap()),
                        bits(skip.grad(&grads).unwrap()),
                    ]
                };
                let (fused, separate) = (run(true), run(false));
                for (k, what) in ["output", "gradient of x", "gradient of skip"]
                    .iter()
                    .enumerate()
                {
                    assert!(
                        fused[k] == separate[k],
                        "{what}: {xs:?} {ws:?} s{st:?} relu {relu}"
                    );
                }
            }
        }
    }

    /// Where a residual block's branches meet (the block's input feeds its first
    /// convolution and, as the skip, its last), the first convolution's input gradient adds
    /// the skip's gradient as it stores its values (`kernels::PENDING`): the bits of burn's
    /// separate sum, which it still does when the input is a leaf (whose gradient
    /// consuming does not remove, so that it is never taken out). On the direct path (1×1
    /// convolutions) and on Winograd's (3×3).
    #[test]
    fn a_junctions_gradients_summed_in_the_product_give_burns_bits() {
        let device = burn::tensor::Device::flex().autodiff();
        let random = |dims: [usize; 4]| {
            Tensor::<4>::random(dims, burn::tensor::Distribution::Normal(0.0, 1.0), &device)
        };
        // (input, first convolution's weight, padding)
        let cases: [([usize; 4], [usize; 4], usize); 2] = [
            ([3, 32, 6, 5], [40, 32, 1, 1], 0),
            ([2, 32, 8, 8], [36, 32, 3, 3], 1),
        ];
        for (xs, ws, p) in cases {
            let leaf0 = batch_inner_layout(&random(xs)).expect("an f32 CPU tensor");
            let w1 = random(ws);
            let w2 = random([ws[1], ws[0], ws[2], ws[3]]);
            let pads = [(p, p), (p, p)];
            let r = random(leaf0.dims());
            let run = |through_an_operation: bool| {
                let leaf = leaf0.clone().require_grad();
                // `x * 1` is the leaf's values as an operation's output, whose gradient
                // consuming removes; the product by one changes no bit, there or back.
                let x = match through_an_operation {
                    true => leaf.clone() * 1.0,
                    false => leaf.clone(),
                };
                let h = conv2d(&x, true, &w1, None, [1, 1], pads, true, None).expect("handled");
                let y = conv2d(&h, true, &w2, None, [1, 1], pads, true, Some(&x)).expect("handled");
                let before = super::super::junction_sums();
                let grads = (y * r.clone()).sum().backward();
                let sums = super::super::junction_sums() - before;
                let bits = host(leaf.grad(&grads).unwrap())
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>();
                (bits, sums)
            };
            let ((fused, sums), (separate, none)) = (run(true), run(false));
            assert_eq!(
                (sums, none),
                (1, 0),
                "{xs:?} {ws:?}: junctions summed in a product"
            );
            assert!(
                fused == separate,
                "{xs:?} {ws:?}: the input gradient's bits"
            );
        }
    }

    /// The same from a batch-innermost input (what the next convolution of a network reads),
    /// including 1×1 convolutions over planes large enough that a standard-layout input goes
    /// to `gemm_conv` instead, with and without a stride.
    #[test]
    fn batch_inner_inputs_match_burn() {
        let pointwise: [Case; 2] = [
            ([3, 32, 15, 14], [40, 32, 1, 1], [1, 1], [(0, 0), (0, 0)]),
            ([3, 32, 15, 14], [40, 32, 1, 1], [2, 2], [(0, 0), (0, 0)]),
        ];
        for (xs, ws, st, p) in CASES.into_iter().chain(pointwise) {
            let opts = ConvOptions::new_with_padding(st, p, [1, 1], 1);
            let kernel = |x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>, relu: bool| {
                let held = batch_inner_layout(x).expect("an f32 CPU tensor");
                assert_eq!(held.dims(), [xs[2], xs[1], xs[3], xs[0]]);
                conv2d(&held, true, w, Some(b), st, p, relu, None).map(standard)
            };
            let what = format!("batch-inner {xs:?} {ws:?} s{st:?} p{p:?}");
            matches_burn(&kernel, xs, ws, opts, &what);
        }
    }

    /// The layout changes are exact inverses, forward and backward: they only move values
    /// (bits compared, so -0 stays -0).
    #[test]
    fn layout_changes_move_values_exactly() {
        let device = Device::flex().autodiff();
        for dims in [[33, 5, 3, 7], [16, 32, 4, 4], [2, 3, 1, 1]] {
            let [n, c, h, w] = dims;
            let mut xv = host(Tensor::<4>::random(
                dims,
                Distribution::Normal(0.0, 1.0),
                &device,
            ));
            (xv[0], xv[4]) = (-0.0, f32::NAN);
            let x =
                Tensor::<4>::from_data(burn::tensor::TensorData::new(xv.clone(), dims), &device)
                    .require_grad();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let held = batch_inner_layout(&x).expect("handled");
            let hv = host(held.clone());
            for (i, &v) in xv.iter().enumerate() {
                let (b, ci, y, xx) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
                assert_eq!(hv[((y * c + ci) * w + xx) * n + b].to_bits(), v.to_bits());
            }
            let back = standard(held);
            assert!(bits(&host(back.clone())) == bits(&xv), "{dims:?}");
            // d/dx sum(back · x0) = x0: the gradient comes back through both changes.
            let weight = x.clone().detach();
            let g = x.grad(&(back * weight).sum().backward()).unwrap();
            assert!(bits(&host(g)) == bits(&xv), "{dims:?}");
        }
    }

    /// Outputs and input gradients do not depend on the number of threads (the strided
    /// case is large enough for `gemm` to split its backward products), and a second call
    /// (weights from the cache) gives the same bits.
    #[test]
    fn same_bits_on_one_thread_and_from_the_cache() {
        let device = Device::flex().autodiff();
        let cases: [Case; 2] = [
            CASES[0],
            ([64, 32, 16, 16], [64, 32, 3, 3], [2, 2], [(1, 1), (1, 1)]),
        ];
        for (xs, ws, st, p) in cases {
            let x0 = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &device);
            let run = || {
                let x = x0.clone().require_grad();
                let y = standard(conv2d(&x, false, &w, None, st, p, true, None).expect("handled"));
                let g = x.grad(&(y.clone() * y.clone()).sum().backward()).unwrap();
                (host(y), host(g))
            };
            let first = run();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let single = pool.install(run);
            let again = run();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for other in [&single, &again] {
                assert!(bits(&first.0) == bits(&other.0), "{xs:?}: outputs differ");
                assert!(bits(&first.1) == bits(&other.1), "{xs:?}: gradients differ");
            }
        }
    }

    /// Weights packed in advance give the same bits as packing them in every product, for
    /// the forward and the transposed convolution; they are kept on small planes only.
    #[test]
    fn packed_weights_give_the_same_bits() {
        let mut bits = crate::kernels::testing::lcg(11);
        let mut next = || (bits() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let mut kept = Vec::new();
        for (xs, ws, st, p) in CASES {
            let g = Geometry::of(xs, ws, st, p);
            let weights: Vec<f32> = (0..ws.iter().product::<usize>()).map(|_| next()).collect();
            let r = Rearranged::new(&weights, &g);
            // The arrangements the packed weights were made from (not kept beside them).
            let (co, c, kh, kw) = (g.co, g.c, g.kh, g.kw);
            let forward = by_column(&weights, co, c, kh, kw);
            let transposed = flipped_by_column(&weights, co, c, kh, kw);
            let mut runs = vec![(g, forward.as_slice(), r.forward_packed.as_ref())];
            if r.transposed.is_some() {
                runs.push((g.transposed(), &transposed, r.transposed_packed.as_ref()));
            }
            for (g, wt, packed) in runs {
                let Some(packed) = packed else { continue };
                kept.push((g.h, g.w));
                let x: Vec<f32> = (0..g.h * g.c * g.width() * g.n).map(|_| next()).collect();
                let len = g.ho() * g.co * g.wo() * g.n;
                let (mut with, mut without) = (vec![f32::NAN; len], vec![0f32; len]);
                // SAFETY: `convolve` writes `f32` values only.
                #[allow(unsafe_code)]
                unsafe {
                    convolve(
                        &g,
                        &x,
                        wt,
                        Some(packed),
                        as_uninit(&mut with),
                        Epilogue::default(),
                    );
                    convolve(
                        &g,
                        &x,
                        wt,
                        None,
                        as_uninit(&mut without),
                        Epilogue::default(),
                    );
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&with) == bits(&without),
                    "{xs:?} {ws:?}: products differ"
                );
            }
        }
        // The 2×2 and 1×1 planes (forward and transposed) and the strided 2×2 → 1×1 one;
        // not the 8×8 plane, whose edge variants would hold 5.4 times its weights.
        assert!(kept.contains(&(2, 2)) && kept.contains(&(1, 1)), "{kept:?}");
        assert!(!kept.contains(&(8, 8)), "{kept:?}");
    }

    /// Stride-1 convolutions with fewer input channels than [`MIN_CHANNELS`], padding as
    /// large as the kernel, and 1×1 convolutions over large planes are left to the other
    /// paths.
    #[test]
    fn declines_what_it_does_not_handle() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 8, 4, 4], &device);
        let w = Tensor::<4>::zeros([8, 8, 3, 3], &device);
        assert!(conv2d(&x, false, &w, None, [1, 1], [(1, 1), (1, 1)], false, None).is_none());
        assert!(conv2d(&x, false, &w, None, [2, 2], [(1, 1), (1, 1)], false, None).is_some());
        let x = Tensor::<4>::zeros([1, 32, 4, 4], &device);
        let w = Tensor::<4>::zeros([8, 32, 3, 3], &device);
        assert!(conv2d(&x, false, &w, None, [1, 1], [(3, 1), (1, 1)], false, None).is_none());
        let x = Tensor::<4>::zeros([1, 32, 14, 14], &device);
        let w = Tensor::<4>::zeros([8, 32, 1, 1], &device);
        assert!(conv2d(&x, false, &w, None, [1, 1], [(0, 0), (0, 0)], false, None).is_none());
        // Unless the input is held batch-innermost already.
        let held = Tensor::<4>::zeros([14, 32, 14, 1], &device);
        assert!(conv2d(&held, true, &w, None, [1, 1], [(0, 0), (0, 0)], false, None).is_some());
    }
}
