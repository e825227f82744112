//! 16 × 16 transposes in AVX-512 registers, for the layout changes of `tap_gemm`.
//!
//! Changing a batch between NCHW and the batch-innermost layout moves every value to a
//! place 16 images or 16 positions away. Done one value at a time through a small tile
//! (the portable path), that took about as long as the convolutions it served on the small
//! planes of CIFAR-size ResNets. Here 16 runs of 16 values (16 images' values at 16
//! positions, or the other way round) are loaded as 16 vectors, transposed with 64
//! shuffles, and stored as 16 vectors.
//!
//! The values are only moved (and, on the way out, added to one bias value and clamped at
//! zero, as the portable path does), so the results are the same bits on every path.

use super::relu::ReluMask;

/// Whether the transposes run: x86-64 with AVX-512F, and the kernels' vector extension not
/// capped below it (see [`super::simd`]).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::simd::simd_level() == "avx-512" && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The 16 mask bits of values `at..at + 16` (bit `j` for value `at + j`).
fn bits16(mask: &ReluMask, at: usize) -> u16 {
    let (w, s) = (at / 64, at % 64);
    let words = mask.words();
    let lo = words[w] >> s;
    let hi = if s > 48 { words[w + 1] << (64 - s) } else { 0 };
    ((lo | hi) & 0xFFFF) as u16
}

/// What to do with the values on the way: nothing, zero those a ReLU mask is off for
/// (per source run: the mask's value index of the run's first value), or add a bias and
/// optionally clamp at zero (`v > 0 ? v : 0`, which maps NaN to 0).
pub(crate) enum Op<'a> {
    Copy,
    Mask(&'a ReluMask, [usize; 16]),
    Bias(f32, bool),
}

/// `dst[j][i] = f(src[i][j])` for `i, j < 16`.
///
/// # Safety
/// [`available`] returned true; each `src[i]` points to 16 readable `f32`, each `dst[j]` to
/// 16 writable ones that no other thread touches meanwhile and that overlap no source.
#[allow(unsafe_code)]
pub(crate) unsafe fn block(src: &[*const f32; 16], dst: &[*mut f32; 16], op: &Op<'_>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        avx512::block(src, dst, op)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (src, dst, op);
        unreachable!("transpose::available() is false off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{bits16, Op};

    /// See [`super::block`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(src: &[*const f32; 16], dst: &[*mut f32; 16], op: &Op<'_>) {
        // SAFETY: the pointers are valid for 16 values each (the caller's contract).
        let mut r: [__m512; 16] = unsafe {
            std::array::from_fn(|i| match op {
                Op::Mask(mask, at) => _mm512_maskz_loadu_ps(bits16(mask, at[i]), src[i]),
                _ => _mm512_loadu_ps(src[i]),
            })
        };
        // Pairs of rows interleaved, then pairs of pairs, then 128-bit lanes twice: row `j`
        // of the result holds element `j` of every input row.
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        for k in 0..4 {
            let (a, b, c, d) = (t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
            let pd = _mm512_castps_pd;
            r[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            r[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            r[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            r[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(b), pd(d)));
        }
        for k in 0..2 {
            for q in 0..4 {
                let (a, b) = (r[8 * k + q], r[8 * k + 4 + q]);
                t[8 * k + q] = _mm512_shuffle_f32x4::<0x88>(a, b);
                t[8 * k + 4 + q] = _mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        for q in 0..8 {
            let (a, b) = (t[q], t[8 + q]);
            r[q] = _mm512_shuffle_f32x4::<0x88>(a, b);
            r[8 + q] = _mm512_shuffle_f32x4::<0xdd>(a, b);
        }
        let zero = _mm512_setzero_ps();
        for (j, &d) in dst.iter().enumerate() {
            let mut v = r[j];
            if let Op::Bias(bias, relu) = op {
                v = _mm512_add_ps(v, _mm512_set1_ps(*bias));
                if *relu {
                    let keep = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero);
                    v = _mm512_maskz_mov_ps(keep, v);
                }
            }
            // SAFETY: `dst[j]` is valid for 16 writes (the caller's contract).
            unsafe { _mm512_storeu_ps(d, v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each output run holds the inputs' values at its index, masked or biased as asked;
    /// the same as the scalar definition, bit for bit.
    #[test]
    fn block_transposes_masks_and_biases() {
        if !available() {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        let src: Vec<f32> = (0..256)
            .map(|v| {
                if v % 7 == 3 {
                    -(v as f32)
                } else {
                    v as f32 * 0.5
                }
            })
            .collect();
        let values: Vec<f32> = (0..300).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let mask = ReluMask::of(&values);
        let ats: [usize; 16] = std::array::from_fn(|i| [0, 1, 47, 48, 49, 63, 64, 100][i % 8] + i);
        for (k, op) in [
            Op::Copy,
            Op::Mask(&mask, ats),
            Op::Bias(0.25, true),
            Op::Bias(-1.5, false),
        ]
        .iter()
        .enumerate()
        {
            let mut dst = vec![f32::NAN; 256];
            let s: [*const f32; 16] = std::array::from_fn(|i| src[i * 16..].as_ptr());
            let d: [*mut f32; 16] = std::array::from_fn(|j| dst[j * 16..].as_mut_ptr());
            // SAFETY: AVX-512 present; 16 values behind every pointer, disjoint.
            #[allow(unsafe_code)]
            unsafe {
                block(&s, &d, op)
            };
            for i in 0..16 {
                for j in 0..16 {
                    let x = src[i * 16 + j];
                    let want = match op {
                        Op::Copy => x,
                        Op::Mask(_, at) => {
                            if values[at[i] + j] > 0.0 {
                                x
                            } else {
                                0.0
                            }
                        }
                        Op::Bias(b, relu) => {
                            let v = x + b;
                            if !relu || v > 0.0 {
                                v
                            } else {
                                0.0
                            }
                        }
                    };
                    assert_eq!(
                        dst[j * 16 + i].to_bits(),
                        want.to_bits(),
                        "op {k}: row {i}, column {j}"
                    );
                }
            }
        }
    }
}
