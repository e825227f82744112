//! A small single-threaded matrix product whose results do not depend on the vector width.
//!
//! `dst[m×cols] = (dst +) lhs[m×k] · rhs[k×cols]`, with `rhs` and `dst` read in place
//! (contiguous columns, any row stride) and `lhs` packed once per call. Every output element
//! is one sequential sum over `k`, in order, starting from `0` or from its old value, each
//! step one fused multiply-add (a single rounding, as `f32::mul_add` and a vector FMA
//! instruction both give): the same operations in the same order at every vector width, so
//! wider vectors only compute more elements at once. The register tile is 8 rows × 3
//! vectors with AVX-512 (16 lanes), 4 × 2 below. Fused, because on Intel cores multiplies
//! and adds share the FMA ports: separate ones capped this kernel at about half its speed
//! there (on Zen 5, whose adds have pipes of their own, they cost less). A CPU without FMA
//! (x86-64 before Haswell, the SSE4.2 path) computes each fused step lane by lane in
//! software: the same bits, much slower.
//!
//! The `gemm` crate (which burn-flex uses) is faster on large shapes but sums in blocks of
//! `k` whose size follows the CPU's caches and its kernels run AVX2 at most as this
//! workspace builds it; this one runs AVX-512 where present, through [`super::simd`]'s
//! dispatch, and gives the same bits everywhere.

use macerator::{vload_unaligned, vstore_unaligned, Scalar, Simd, Vector, WithSimd};

/// One product (see the module docs); pointers checked by [`product_packed`].
#[derive(Clone, Copy)]
struct Product<'a> {
    m: usize,
    cols: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    /// `lhs`, packed by [`pack_lhs`].
    packed: &'a [f32],
    rhs: &'a [f32],
    rhs_rows: Offsets<'a>,
    accumulate: bool,
    epilogue: Epilogue<'a>,
}

/// What a product does to each output after the last step of its sum over `k`, while the
/// tile is still in the L1 cache: plus `bias[r]` for row `r`, plus the value at the same
/// place in `skip`, then burn's ReLU, in that order, each its own rounding (the bits that
/// separate passes over the output give). Saves those passes over memory (on ResNet-50 the
/// bias-and-ReLU passes after the direct convolutions and the residual sums took about 8% of
/// a forward pass; with them here, the forward pass is about 2% shorter, as the residual is
/// still read from memory). The ReLU's one-bit mask is set here too, from one vector test
/// per 16 values (see [`MaskBits`]; benches/RESULTS.md, fourteenth session).
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// One value per row of the product.
    pub(crate) bias: Option<&'a [f32]>,
    /// Laid out as `dst`: the value for row `r`, column `c` at `r · dst_rs + c`.
    pub(crate) skip: Option<&'a [f32]>,
    /// burn's ReLU (see [`super::relu_value`]).
    pub(crate) relu: bool,
    /// With the ReLU: where its one-bit mask of the output goes (see [`MaskBits`]).
    pub(crate) mask: Option<MaskBits<'a>>,
}

impl<'a> Epilogue<'a> {
    /// Nothing to do (a mask comes only with the ReLU).
    pub(crate) fn is_empty(&self) -> bool {
        self.bias.is_none() && self.skip.is_none() && !self.relu
    }

    /// The epilogue of a part of the output: the one whose value 0 is value `at` of this
    /// one's, and whose row 0 is this one's row `r0`.
    pub(crate) fn shifted(&self, at: usize, r0: usize) -> Self {
        Self {
            bias: self.bias.map(|b| &b[r0..]),
            skip: self.skip.map(|s| &s[at..]),
            relu: self.relu,
            mask: self.mask.map(|m| MaskBits {
                words: m.words,
                at: m.at + at,
            }),
        }
    }
}

/// Where a product's ReLU mask goes: the bit of row `r`, column `c` is bit
/// `at + r · dst_rs + c` of `words` (set where the ReLU kept the value; the words start
/// cleared). The caller gives each thread whole words: a word is read and written back
/// without an atomic read-modify-write, so two threads writing bits of one word would lose
/// some.
#[derive(Clone, Copy)]
pub(crate) struct MaskBits<'a> {
    pub(crate) words: &'a [std::sync::atomic::AtomicU64],
    pub(crate) at: usize,
}

impl MaskBits<'_> {
    /// Sets the bits of the ReLU outputs `out` (at most 64; the first at position `at` of
    /// the product's output) that the ReLU kept: those that are not +0 (the ReLU gives +0
    /// for every value it drops, and keeps positive values and NaN).
    #[inline(always)]
    fn set<S: Simd>(&self, at: usize, out: &[f32]) {
        use std::sync::atomic::Ordering::Relaxed;
        let bits = nonzero_bits::<S>(out);
        if bits == 0 {
            return;
        }
        let bit = self.at + at;
        let (word, shift) = (bit / 64, bit % 64);
        let w = &self.words[word];
        w.store(w.load(Relaxed) | (bits << shift), Relaxed);
        if shift > 0 && shift + out.len() > 64 {
            let w = &self.words[word + 1];
            w.store(w.load(Relaxed) | (bits >> (64 - shift)), Relaxed);
        }
    }
}

/// Bit `j` set where `v[j]` is not +0 (its bits are not all zero), for up to 64 values: one
/// vector test per 16 values with AVX-512 and per 8 with AVX2 (the widths [`run`] is
/// compiled for on x86-64), one value at a time otherwise.
#[inline(always)]
fn nonzero_bits<S: Simd>(v: &[f32]) -> u64 {
    assert!(v.len() <= 64, "at most 64 values");
    let lanes = f32::lanes::<S>();
    let whole = v.len() / lanes * lanes;
    #[allow(unused_mut)]
    let mut bits = 0u64;
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `S` runs with 16 lanes only where the CPU has AVX-512 (macerator's
        // dispatch), and with 8 only where it has AVX2; every load is inside `v`.
        #[allow(unsafe_code)]
        unsafe {
            if lanes == 16 {
                bits = x86::nonzero_bits_avx512(&v[..whole]);
                done = whole;
            } else if lanes == 8 {
                bits = x86::nonzero_bits_avx2(&v[..whole]);
                done = whole;
            }
        }
    }
    for (j, x) in v.iter().enumerate().skip(done) {
        bits |= u64::from(x.to_bits() != 0) << j;
    }
    bits
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::nonzero_bits`] for whole vectors of 16.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn nonzero_bits_avx512(v: &[f32]) -> u64 {
        let mut bits = 0u64;
        for (k, run) in v.chunks_exact(16).enumerate() {
            // SAFETY: 16 values inside `v`.
            let x = unsafe { _mm512_loadu_si512(run.as_ptr().cast()) };
            bits |= u64::from(_mm512_test_epi32_mask(x, x)) << (16 * k);
        }
        bits
    }

    /// [`super::nonzero_bits`] for whole vectors of 8.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn nonzero_bits_avx2(v: &[f32]) -> u64 {
        let mut bits = 0u64;
        for (k, run) in v.chunks_exact(8).enumerate() {
            // SAFETY: 8 values inside `v`.
            let x = unsafe { _mm256_loadu_si256(run.as_ptr().cast()) };
            let zero = _mm256_cmpeq_epi32(x, _mm256_setzero_si256());
            let z = _mm256_movemask_ps(_mm256_castsi256_ps(zero)) as u32;
            bits |= u64::from(!z & 0xff) << (8 * k);
        }
        bits
    }
}

/// Rows per block of a packed `lhs`: `[block][k][PACK]` (a multiple of every register
/// tile's row count).
const PACK: usize = 8;

/// A left operand packed once for several products ([`pack_lhs`], [`product_packed`]):
/// `[m / PACK][k][PACK]`, rows past `m` zero.
#[derive(Debug)]
pub(crate) struct PackedLhs {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedLhs {
    /// Rows and columns of the packed operand.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.m, self.k)
    }

    /// Values held (rows rounded up to whole panels).
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }
}

/// Values a packed `m × k` operand holds (see [`pack_lhs`]).
pub(crate) fn packed_len(m: usize, k: usize) -> usize {
    m.div_ceil(PACK) * k * PACK
}

/// Packs `lhs[m×k]` (row stride `lhs_rs`, columns at `lhs_cols`) for [`product_packed`].
pub(crate) fn pack_lhs(
    (m, k): (usize, usize),
    (lhs, lhs_rs, lhs_cols): (&[f32], usize, Offsets<'_>),
) -> PackedLhs {
    if m > 0 && k > 0 {
        assert!(
            (m - 1) * lhs_rs + lhs_cols.last(k) < lhs.len(),
            "lhs out of bounds"
        );
    }
    let mut data = vec![0f32; packed_len(m, k)];
    for (pb, panel) in data.chunks_exact_mut((k * PACK).max(1)).enumerate() {
        let rows = PACK.min(m - pb * PACK);
        for (kk, dst) in panel.chunks_exact_mut(PACK).enumerate() {
            let off = lhs_cols.at(kk);
            for (r, d) in dst.iter_mut().enumerate().take(rows) {
                *d = lhs[(pb * PACK + r) * lhs_rs + off];
            }
        }
    }
    PackedLhs { m, k, data }
}

/// `dst[m×cols] (+)= lhs[m×k] · rhs[k×cols]`, `lhs` packed by [`pack_lhs`] (of `m` rows and
/// `k` columns): `dst` points to `len` values with row stride `dst_rs`, and `rhs` has its
/// rows at the given offsets (the `k` index of a convolution's taps, which need not be
/// evenly spaced in memory), both with contiguous columns. Overwrites `dst` unless
/// `accumulate`, without reading it (so that it may be uninitialised then).
///
/// # Safety
/// `dst` points to `len` writable `f32`, and no other thread reads or writes the elements the
/// product writes (rows `r·dst_rs`, `r < m`, `cols` values each) while it runs.
#[allow(unsafe_code)]
pub(crate) unsafe fn product_packed(
    cols: usize,
    dst: (*mut f32, usize, usize),
    lhs: &PackedLhs,
    rhs: (&[f32], Offsets<'_>),
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe { product_finished(cols, dst, lhs, rhs, accumulate, Epilogue::default()) }
}

/// [`product_packed`], then `epilogue` on each output (see [`Epilogue`]).
///
/// # Safety
/// As for [`product_packed`].
#[allow(unsafe_code)]
pub(crate) unsafe fn product_finished(
    cols: usize,
    (dst, len, dst_rs): (*mut f32, usize, usize),
    lhs: &PackedLhs,
    (rhs, rhs_rows): (&[f32], Offsets<'_>),
    accumulate: bool,
    epilogue: Epilogue<'_>,
) {
    let (m, k) = (lhs.m, lhs.k);
    if m == 0 || cols == 0 {
        return;
    }
    let end = (m - 1) * dst_rs + cols;
    assert!(end <= len, "dst out of bounds");
    if k > 0 {
        assert!(rhs_rows.last(k) + cols <= rhs.len(), "rhs out of bounds");
    }
    assert!(epilogue.bias.is_none_or(|b| b.len() >= m), "bias too short");
    assert!(
        epilogue.skip.is_none_or(|s| s.len() >= end),
        "skip out of bounds"
    );
    assert!(
        epilogue
            .mask
            .is_none_or(|b| epilogue.relu && (b.at + end).div_ceil(64) <= b.words.len()),
        "a mask needs the ReLU, and room for its bits"
    );
    super::simd::dispatch(Product {
        m,
        cols,
        k,
        dst,
        dst_rs,
        packed: &lhs.data,
        rhs,
        rhs_rows,
        accumulate,
        epilogue,
    })
}

/// Where column `kk` of `lhs` (or row `kk` of `rhs`) starts: `kk · stride`, or a table.
#[derive(Clone, Copy)]
pub(crate) enum Offsets<'a> {
    /// Evenly spaced.
    Stride(usize),
    /// One offset per index.
    Table(&'a [usize]),
}

impl Offsets<'_> {
    #[inline(always)]
    fn at(&self, kk: usize) -> usize {
        match self {
            Offsets::Stride(s) => kk * s,
            Offsets::Table(t) => t[kk],
        }
    }
    /// The largest offset of the first `k` (`k > 0`).
    fn last(&self, k: usize) -> usize {
        match self {
            Offsets::Stride(s) => (k - 1) * s,
            Offsets::Table(t) => {
                assert!(t.len() >= k, "offset table too short");
                t[..k].iter().copied().max().unwrap_or(0)
            }
        }
    }
}

/// [`product_packed`] with an unpacked left operand of the given row and column strides
/// (the tests' entry point).
///
/// # Safety
/// As for [`product_packed`].
#[cfg(test)]
#[allow(unsafe_code)]
pub(crate) unsafe fn product(
    (m, cols, k): (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs): (&[f32], usize),
    accumulate: bool,
) {
    if m == 0 || cols == 0 {
        return;
    }
    let lhs = pack_lhs((m, k), (lhs, lhs_rs, Offsets::Stride(lhs_cs)));
    // SAFETY: forwarded from the caller.
    unsafe { product_packed(cols, dst, &lhs, (rhs, Offsets::Stride(rhs_rs)), accumulate) }
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        // 8 × 3 accumulators with AVX-512's 32 registers; 4 × 2 with 16 (AVX2 and below):
        // on this project's Intel VMs (Xeon with AVX-512, 2.2 GHz, one core) the kernel's
        // probe shapes ran 69–97 GFLOP/s at AVX-512 (peak 142 measured) and 29–44 at AVX2
        // with 4 × 2, against 24–31 with 4 × 3 (whose 12 accumulators, 3 operands and the
        // broadcast take all 16 registers).
        if f32::lanes::<S>() >= 16 {
            run::<S, 8, 3>(self)
        } else {
            run::<S, 4, 2>(self)
        }
    }
}

/// The product with register tiles of `MR` rows and (at most) `NW` vectors.
#[inline(always)]
fn run<S: Simd, const MR: usize, const NW: usize>(p: Product<'_>) {
    let lanes = f32::lanes::<S>();
    let blocks = p.m.div_ceil(MR);
    let packed = p.packed;
    // Blocking, outermost first:
    // * `k` in blocks of at most KC rows. Each block continues the sums where the previous
    //   one stored them (in `dst`), so the order of operations, and every bit, is that of
    //   one pass over `k`;
    // * rows in groups of MB register tiles, whose packed `lhs` panel stays in L2;
    // * columns in strips of NW vectors (then 1), the strip of `rhs` packed as [k][width] so
    //   that it stays in L1 (read in place, rows a large power of two apart would share
    //   cache sets), PANEL strips at a time so that each row of `rhs` is read as one run
    //   (the rows of a convolution's input are far apart, and one strip's short pieces of
    //   KC rows left the copy waiting on memory); the last columns, fewer than a vector,
    //   through a zero-padded strip and a scratch tile of which only the real columns are
    //   stored.
    let k_blocks: Vec<(usize, usize)> = if p.k == 0 {
        vec![(0, 0)]
    } else {
        (0..p.k)
            .step_by(KC)
            .map(|k0| (k0, KC.min(p.k - k0)))
            .collect()
    };
    let wide = NW * lanes;
    let full = p.cols / wide;
    // The thread's strip buffer (see [`STRIP`]), taken out of its slot for the call (so that
    // a nested product, none today, would get its own) and put back at the end.
    let mut buf = STRIP.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    let len = KC.min(p.k).max(1) * PANEL.min(full).max(1) * wide;
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let strip = &mut buf[..len];
    let mut scratch = vec![0f32; MR * lanes];
    for (k0, kc) in k_blocks {
        let part = Part {
            k0,
            kc,
            accumulate: p.accumulate || k0 > 0,
            last: k0 + kc == p.k && !p.epilogue.is_empty(),
        };
        for g0 in (0..blocks).step_by(MB) {
            let group = g0..(g0 + MB).min(blocks);
            // The full NW-vector strips, packed PANEL at a time (each row of `rhs` read as
            // one run of PANEL strips' columns, which the hardware prefetchers follow).
            for s0 in (0..full).step_by(PANEL) {
                let ps = PANEL.min(full - s0);
                let panel = &mut strip[..ps * kc * wide];
                pack_panel::<S, NW>(&p, panel, (k0, kc), s0 * wide, ps);
                for t in 0..ps {
                    // (Not `chunks_exact`: with k = 0 the strips are empty, and the tiles
                    // still store their zeros.)
                    let one = &panel[t * kc * wide..][..kc * wide];
                    let c0 = (s0 + t) * wide;
                    for rb in group.clone() {
                        // The next tile's outputs (and its epilogue's `skip`) are asked of
                        // memory while this one computes (see [`Product::prefetch`]).
                        if rb + 1 < group.end {
                            p.prefetch(((rb + 1) * MR, MR), (c0, wide), part.last);
                        } else if c0 + 2 * wide <= p.cols {
                            p.prefetch((group.start * MR, MR), (c0 + wide, wide), part.last);
                        }
                        tile::<S, MR, NW>(
                            &p,
                            packed,
                            one,
                            part,
                            rb * MR,
                            (p.dst_at(rb * MR, c0), p.dst_rs),
                        );
                        if part.last {
                            p.finish::<S>(rb * MR, MR, c0, wide);
                        }
                    }
                }
            }
            let mut c0 = full * wide;
            while c0 + lanes <= p.cols {
                let strip = &mut strip[..kc * lanes];
                pack_panel::<S, 1>(&p, strip, (k0, kc), c0, 1);
                for rb in group.clone() {
                    tile::<S, MR, 1>(
                        &p,
                        packed,
                        strip,
                        part,
                        rb * MR,
                        (p.dst_at(rb * MR, c0), p.dst_rs),
                    );
                    if part.last {
                        p.finish::<S>(rb * MR, MR, c0, lanes);
                    }
                }
                c0 += lanes;
            }
            if c0 < p.cols {
                let rest = p.cols - c0;
                let strip = &mut strip[..kc * lanes];
                for (kk, row) in strip.chunks_exact_mut(lanes).enumerate() {
                    row[..rest].copy_from_slice(&p.rhs[p.rhs_rows.at(k0 + kk) + c0..][..rest]);
                    row[rest..].fill(0.0);
                }
                for rb in group.clone() {
                    let rows = MR.min(p.m - rb * MR);
                    let at = |r: usize| (rb * MR + r) * p.dst_rs + c0;
                    // Only a sum that continues reads `dst` (which may be uninitialised
                    // otherwise: see `product`).
                    if part.accumulate {
                        for r in 0..rows {
                            // SAFETY: in bounds (checked in `product_packed`); exclusive by
                            // its contract.
                            #[allow(unsafe_code)]
                            let d = unsafe { std::slice::from_raw_parts(p.dst.add(at(r)), rest) };
                            scratch[r * lanes..][..rest].copy_from_slice(d);
                        }
                    }
                    tile::<S, MR, 1>(
                        &p,
                        packed,
                        strip,
                        part,
                        rb * MR,
                        (scratch.as_mut_ptr(), lanes),
                    );
                    for r in 0..rows {
                        // SAFETY: as above (written through a pointer: the destination may be
                        // uninitialised, so no reference to it is made).
                        #[allow(unsafe_code)]
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                scratch[r * lanes..][..rest].as_ptr(),
                                p.dst.add(at(r)),
                                rest,
                            )
                        };
                    }
                    if part.last {
                        p.finish::<S>(rb * MR, MR, c0, rest);
                    }
                }
            }
        }
    }
    STRIP.with(|cell| *cell.borrow_mut() = buf);
}

thread_local! {
    /// [`run`]'s strip buffer, the thread's own, kept between products. Every value a tile
    /// reads was written by its packing first, so it needs no clearing: a fresh zeroed one
    /// per product (up to 288 KiB) cost a zeroing pass per product, as much as the packing
    /// itself on short products (a stem's input gradient: `k` = 64 over 512 columns).
    static STRIP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies rows `k0..k0 + kc` of `rhs`, columns `c0..c0 + ps·NV·lanes`, into `panel` as
/// `ps` strips of `[kc][NV·lanes]` one after another, one vector at a time: each row of
/// `rhs` is read as one run.
#[inline(always)]
fn pack_panel<S: Simd, const NV: usize>(
    p: &Product<'_>,
    panel: &mut [f32],
    (k0, kc): (usize, usize),
    c0: usize,
    ps: usize,
) {
    let lanes = f32::lanes::<S>();
    let width = NV * lanes;
    assert_eq!(panel.len(), ps * kc * width, "panel size");
    for kk in 0..kc {
        let src = &p.rhs[p.rhs_rows.at(k0 + kk) + c0..][..ps * width];
        for (t, run) in src.chunks_exact(width).enumerate() {
            let dst = &mut panel[(t * kc + kk) * width..][..width];
            for v in 0..NV {
                // SAFETY: both slices hold NV·lanes values (checked by the slicing above).
                #[allow(unsafe_code)]
                unsafe {
                    let x = vload_unaligned::<S, f32>(run.as_ptr().add(v * lanes));
                    vstore_unaligned::<S, f32>(dst.as_mut_ptr().add(v * lanes), x);
                }
            }
        }
    }
}

/// Register tiles of rows per group: with 8-row tiles and `KC` rows of `k`, a group's
/// packed `lhs` (128 × 192 values, 96 KiB) stays in L2 while the strips go by.
const MB: usize = 16;

/// Strips of `rhs` packed together (see [`pack_panel`]): 8 × `KC` × 48 values with
/// AVX-512, 288 KiB, in L2.
const PANEL: usize = 8;

/// Rows of `k` per block: a 3-vector strip of `rhs` (`KC × 48` values with AVX-512) then
/// fills 36 KiB, inside a 48 KiB L1 data cache.
const KC: usize = 192;

/// One block of `k` in a tile: `k0..k0 + kc`, added to `dst`'s values or to zero.
#[derive(Clone, Copy)]
struct Part {
    k0: usize,
    kc: usize,
    accumulate: bool,
    /// The last block, and there is an epilogue to apply.
    last: bool,
}

/// Rows `rb·MR..` (those below `m`) × columns `c0..c0 + NV·lanes` of the product, over the
/// block `part` of `k` (`strip` holds those rows of `rhs`, packed).
#[inline(always)]
fn tile<S: Simd, const MR: usize, const NV: usize>(
    p: &Product<'_>,
    packed: &[f32],
    strip: &[f32],
    part: Part,
    row0: usize,
    (dst, dst_rs): (*mut f32, usize),
) {
    let lanes = f32::lanes::<S>();
    let rows = MR.min(p.m - row0);
    let zero: Vector<S, f32> = 0f32.splat::<S>();
    let mut acc = [[zero; NV]; MR];
    // SAFETY: `dst` points at rows `row0..row0 + rows` (stride `dst_rs`), columns
    // `NV·lanes` wide, of the product's output or of a scratch tile that size (bounds
    // checked in `product_packed`); it is ours alone by their contract. `strip`
    // holds `kc` rows of `NV·lanes` values.
    #[allow(unsafe_code)]
    unsafe {
        if part.accumulate {
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                for (v, a) in row.iter_mut().enumerate() {
                    *a = vload_unaligned::<S, f32>(dst.add(r * dst_rs + v * lanes));
                }
            }
        }
        // The packed rows of this tile: block `row0 / PACK`, from row `row0 % PACK`.
        let (pb, r0) = (row0 / PACK, row0 % PACK);
        let panel = &packed[(pb * p.k + part.k0) * PACK..][..part.kc * PACK];
        for (a, brow) in panel.chunks_exact(PACK).zip(strip.chunks_exact(NV * lanes)) {
            let mut bv = [zero; NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = vload_unaligned::<S, f32>(brow.as_ptr().add(v * lanes));
            }
            for r in 0..MR {
                let av = a[r0 + r].splat::<S>();
                for v in 0..NV {
                    acc[r][v] = av.fma(bv[v], acc[r][v]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (v, a) in row.iter().enumerate() {
                vstore_unaligned::<S, f32>(dst.add(r * dst_rs + v * lanes), *a);
            }
        }
    }
}

impl Product<'_> {
    /// Applies the epilogue to the stored outputs of rows `row0..row0 + rows` (those below
    /// `m`), columns `c0..c0 + width`, in place: a tile just stored (in the L1 cache; kept
    /// out of the tile's own code, whose 24 accumulators take nearly all the registers).
    #[inline(always)]
    fn finish<S: Simd>(&self, row0: usize, rows: usize, c0: usize, width: usize) {
        let e = &self.epilogue;
        let lanes = f32::lanes::<S>();
        let zero: Vector<S, f32> = 0f32.splat::<S>();
        let whole = width / lanes * lanes;
        for r in row0..row0 + rows.min(self.m - row0) {
            // SAFETY: row `r < m`, columns `c0..c0 + width` inside `cols`: in bounds
            // (checked in `product_finished`), written by this product just before, and
            // exclusive by its contract.
            #[allow(unsafe_code)]
            let out = unsafe { std::slice::from_raw_parts_mut(self.dst_at(r, c0), width) };
            let at = r * self.dst_rs + c0;
            let skip = e.skip.map(|s| &s[at..at + width]);
            let bias = e.bias.map(|b| b[r]);
            for j in (0..whole).step_by(lanes) {
                // SAFETY: `j + lanes <= width`, inside `out` and `skip`.
                #[allow(unsafe_code)]
                unsafe {
                    let mut a = vload_unaligned::<S, f32>(out.as_ptr().add(j));
                    if let Some(b) = bias {
                        a += b.splat::<S>();
                    }
                    if let Some(s) = skip {
                        a += vload_unaligned::<S, f32>(s.as_ptr().add(j));
                    }
                    if e.relu {
                        // burn's ReLU: 0 where `v <= 0` (-0 too), `v` elsewhere (NaN too).
                        a = a.le(zero).select(zero, a);
                    }
                    vstore_unaligned::<S, f32>(out.as_mut_ptr().add(j), a);
                }
            }
            for (j, v) in out.iter_mut().enumerate().skip(whole) {
                let mut x = *v;
                if let Some(b) = bias {
                    x += b;
                }
                if let Some(s) = skip {
                    x += s[j];
                }
                if e.relu {
                    x = super::relu_value(x);
                }
                *v = x;
            }
            if let Some(mask) = e.mask {
                mask.set::<S>(at, out);
            }
        }
    }

    /// Asks the CPU to bring the cache lines of rows `row0..row0 + rows` (those below `m`),
    /// columns `c0..c0 + width`, of `dst` into the L1 cache, and those of the epilogue's
    /// `skip` too when `finishing`. A tile's outputs are written (and its `skip` read) 8
    /// rows at a time, a whole row of the output apart, each row advancing by one strip per
    /// 16 tiles: too many streams for the hardware prefetchers, so each of those lines came
    /// from memory while the tile waited. ResNet-50's four 1×1 convolutions from 64 to 256
    /// channels on 56×56 planes (batch 32, three with a residual sum) took 69–91 ms of a
    /// forward pass without it, 55 ms with it. Only a hint: no value changes.
    #[inline(always)]
    fn prefetch(&self, (row0, rows): (usize, usize), (c0, width): (usize, usize), finishing: bool) {
        const LINE: usize = 64;
        let skip = self.epilogue.skip.filter(|_| finishing);
        for r in row0..(row0 + rows).min(self.m) {
            let at = r * self.dst_rs + c0;
            // Addresses only (`wrapping_add`: nothing is read through them): the lines of
            // `at..at + width`, which are inside `dst` and `skip`.
            let lines = |p: *const f32| {
                let first = p.wrapping_add(at) as usize & !(LINE - 1);
                (first..=p.wrapping_add(at + width - 1) as usize).step_by(LINE)
            };
            for line in lines(self.dst.cast_const()) {
                super::prefetch(line as *const f32);
            }
            if let Some(s) = skip {
                for line in lines(s.as_ptr()) {
                    super::prefetch(line as *const f32);
                }
            }
        }
    }

    /// The output element at row `r`, column `c`.
    fn dst_at(&self, r: usize, c: usize) -> *mut f32 {
        // SAFETY: callers pass rows below `m` and columns below `cols`, inside `dst`
        // (checked in `product_packed`).
        #[allow(unsafe_code)]
        unsafe {
            self.dst.add(r * self.dst_rs + c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{set_simd_cap, SimdCap};

    fn run_product(
        (m, cols, k): (usize, usize, usize),
        lhs: &[f32],
        rhs: &[f32],
        init: &[f32],
        accumulate: bool,
    ) -> Vec<f32> {
        let mut dst = init.to_vec();
        // SAFETY: `dst` is a local buffer of m·cols values.
        #[allow(unsafe_code)]
        unsafe {
            product(
                (m, cols, k),
                (dst.as_mut_ptr(), dst.len(), cols),
                (lhs, k, 1),
                (rhs, cols),
                accumulate,
            )
        };
        dst
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32 ^ seed)
                    .wrapping_mul(2_654_435_761)
                    .rotate_left(13);
                (h % 20_001) as f32 / 10_000.0 - 1.0
            })
            .collect()
    }

    /// Against a float64 product, and bit for bit against the scalar sum in order, for
    /// shapes that exercise the 3-vector tiles, the 1-vector tiles, the scalar tail and the
    /// row remainder; with and without accumulation; at every vector width.
    #[test]
    fn matches_the_sequential_sum_at_every_width() {
        for (m, cols, k) in [
            (8, 48, 5),
            (13, 100, 37),
            (3, 7, 2),
            (21, 512, 64),
            (1, 17, 0),
            (9, 70, 400),
            (10, 453, 200),
        ] {
            let (lhs, rhs, init) = (values(m * k, 1), values(k * cols, 2), values(m * cols, 3));
            for accumulate in [false, true] {
                let sequential: Vec<f32> = (0..m * cols)
                    .map(|e| {
                        let (r, c) = (e / cols, e % cols);
                        let mut acc = if accumulate { init[e] } else { 0.0 };
                        for kk in 0..k {
                            acc = lhs[r * k + kk].mul_add(rhs[kk * cols + c], acc);
                        }
                        acc
                    })
                    .collect();
                for (e, &s) in sequential.iter().enumerate() {
                    let (r, c) = (e / cols, e % cols);
                    let exact: f64 = (0..k)
                        .map(|kk| lhs[r * k + kk] as f64 * rhs[kk * cols + c] as f64)
                        .sum::<f64>()
                        + if accumulate { init[e] as f64 } else { 0.0 };
                    assert!((s as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()));
                }
                for cap in [
                    Some(SimdCap::Scalar),
                    Some(SimdCap::Sse42),
                    Some(SimdCap::Avx2),
                    None,
                ] {
                    set_simd_cap(cap);
                    let got = run_product((m, cols, k), &lhs, &rhs, &init, accumulate);
                    set_simd_cap(None);
                    assert!(
                        got.iter()
                            .zip(&sequential)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{m}×{cols}×{k} accumulate {accumulate} cap {cap:?}"
                    );
                }
            }
        }
    }

    /// The epilogue gives the bits of separate passes (the sum, plus the bias, plus the
    /// residual, then burn's ReLU) and sets exactly the mask bits of the values the ReLU
    /// kept, on the full strips, the 1-vector strips and the last columns, over more than
    /// one block of `k`, at every vector width.
    #[test]
    fn the_epilogue_matches_separate_passes() {
        use std::sync::atomic::{AtomicU64, Ordering};
        for (m, cols, k) in [(13, 100, 37), (9, 70, 400), (3, 7, 2), (21, 512, 64)] {
            let (lhs, rhs) = (values(m * k, 4), values(k * cols, 5));
            let (bias, mut skip) = (values(m, 6), values(m * cols, 7));
            // A NaN that must pass the ReLU, and a sum of exactly zero.
            skip[1] = f32::NAN;
            let plain = run_product((m, cols, k), &lhs, &rhs, &vec![0.0; m * cols], false);
            skip[2] = -(plain[2] + bias[0]);
            for relu in [false, true] {
                let want: Vec<f32> = plain
                    .iter()
                    .enumerate()
                    .map(|(e, &v)| {
                        let v = (v + bias[e / cols]) + skip[e];
                        if relu {
                            crate::kernels::relu_value(v)
                        } else {
                            v
                        }
                    })
                    .collect();
                for cap in [Some(SimdCap::Scalar), Some(SimdCap::Avx2), None] {
                    // The mask's bits from bit 37 on (no word boundary), with the ReLU.
                    let at = 37;
                    let words: Vec<AtomicU64> = (0..(at + m * cols).div_ceil(64))
                        .map(|_| AtomicU64::new(0))
                        .collect();
                    let mut dst = vec![0f32; m * cols];
                    set_simd_cap(cap);
                    // SAFETY: `dst` is a local buffer of m·cols values.
                    #[allow(unsafe_code)]
                    unsafe {
                        product_finished(
                            cols,
                            (dst.as_mut_ptr(), dst.len(), cols),
                            &pack_lhs((m, k), (&lhs, k, Offsets::Stride(1))),
                            (&rhs, Offsets::Stride(cols)),
                            false,
                            Epilogue {
                                bias: Some(&bias),
                                skip: Some(&skip),
                                relu,
                                mask: relu.then_some(MaskBits { words: &words, at }),
                            },
                        )
                    };
                    set_simd_cap(None);
                    let what = format!("{m}×{cols}×{k} relu {relu} cap {cap:?}");
                    let bit = |i: usize| (words[i / 64].load(Ordering::Relaxed) >> (i % 64)) & 1;
                    for i in (0..at).chain(at + m * cols..words.len() * 64) {
                        assert_eq!(bit(i), 0, "{what}: bit {i} outside the output");
                    }
                    for (e, &w) in want.iter().enumerate() {
                        let kept = relu && (w.is_nan() || w > 0.0);
                        assert_eq!(bit(at + e), u64::from(kept), "{what}: mask at {e} ({w})");
                    }
                    for (e, (g, w)) in dst.iter().zip(&want).enumerate() {
                        assert_eq!(g.to_bits(), w.to_bits(), "{what} at {e}: {g} against {w}");
                    }
                }
            }
        }
    }
}
