//! 16 × 16 transposes in vector registers (AVX-512, or four 8 × 8 ones with AVX2), for the
//! layout changes of `tap_gemm`.
//!
//! Changing a batch between NCHW and the batch-innermost layout moves every value to a
//! place 16 images or 16 positions away. Done one value at a time through a small tile
//! (the portable path), that took about 40% of a ResNet-18 attack step at CIFAR size (as
//! long as two thirds of the products it served). Here 16 runs of 16 values (16 images'
//! values at 16 positions, or the other way round) are loaded as 16 vectors, transposed
//! with shuffles, and stored as 16 vectors.
//!
//! The values are only moved, so the results are the same bits on every path.

/// The vector extension a transpose runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// 512-bit registers: one 16 × 16 transpose.
    Avx512,
    /// 256-bit registers: four 8 × 8 transposes.
    Avx2,
}

/// Which transposes run, if any: x86-64 with AVX-512F or AVX2, not capped below it (see
/// [`super::simd`]).
pub(crate) fn available() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        match super::simd::simd_level() {
            "avx-512" if std::arch::is_x86_feature_detected!("avx512f") => Some(Isa::Avx512),
            "avx-512" | "avx2" if std::arch::is_x86_feature_detected!("avx2") => Some(Isa::Avx2),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// `dst[j][i] = src[i][j]` for `i, j < 16`.
///
/// # Safety
/// [`available`] returned `Some(isa)`; each `src[i]` points to 16 readable `f32`, each
/// `dst[j]` to 16 writable ones that no other thread touches meanwhile and that overlap no
/// source.
#[allow(unsafe_code)]
pub(crate) unsafe fn block(isa: Isa, src: &[*const f32; 16], dst: &[*mut f32; 16]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::block(src, dst),
            Isa::Avx2 => avx2::block(src, dst),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, src, dst);
        unreachable!("transpose::available() is None off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    /// See [`super::block`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(src: &[*const f32; 16], dst: &[*mut f32; 16]) {
        // SAFETY: the pointers are valid for 16 values each (the caller's contract).
        let mut r: [__m512; 16] = unsafe { std::array::from_fn(|i| _mm512_loadu_ps(src[i])) };
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
        for (j, &d) in dst.iter().enumerate() {
            // SAFETY: `dst[j]` is valid for 16 writes (the caller's contract).
            unsafe { _mm512_storeu_ps(d, r[j]) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    /// See [`super::block`]: the 16 × 16 block as four 8 × 8 quadrants.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn block(src: &[*const f32; 16], dst: &[*mut f32; 16]) {
        for qi in 0..2 {
            for qj in 0..2 {
                // SAFETY: rows `8·qi + i`, values `8·qj..8·qj + 8` of 16 (the caller's
                // contract).
                let r: [__m256; 8] = std::array::from_fn(|i| unsafe {
                    _mm256_loadu_ps(src[8 * qi + i].add(8 * qj))
                });
                let t: [__m256; 8] = std::array::from_fn(|k| {
                    let (a, b) = (r[k & !1], r[k | 1]);
                    if k % 2 == 0 {
                        _mm256_unpacklo_ps(a, b)
                    } else {
                        _mm256_unpackhi_ps(a, b)
                    }
                });
                let s = [
                    _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                    _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                    _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                    _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                    _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                    _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                    _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                    _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
                ];
                for j in 0..8 {
                    let v = if j < 4 {
                        _mm256_permute2f128_ps::<0x20>(s[j], s[j + 4])
                    } else {
                        _mm256_permute2f128_ps::<0x31>(s[j - 4], s[j])
                    };
                    // SAFETY: row `8·qj + j`, values `8·qi..8·qi + 8` of 16 (the caller's
                    // contract).
                    unsafe { _mm256_storeu_ps(dst[8 * qj + j].add(8 * qi), v) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each output run holds the inputs' values at its index, bit for bit (NaN and -0
    /// included).
    #[test]
    fn block_transposes() {
        let isas: Vec<Isa> = match available() {
            Some(Isa::Avx512) => vec![Isa::Avx512, Isa::Avx2],
            Some(Isa::Avx2) => vec![Isa::Avx2],
            None => {
                eprintln!("skipped: neither AVX-512 nor AVX2 here");
                return;
            }
        };
        let mut src: Vec<f32> = (0..256)
            .map(|v| {
                if v % 7 == 3 {
                    -(v as f32)
                } else {
                    v as f32 * 0.5
                }
            })
            .collect();
        src[5] = f32::NAN;
        src[17] = -0.0;
        for isa in isas {
            let mut dst = vec![f32::NAN; 256];
            let s: [*const f32; 16] = std::array::from_fn(|i| src[i * 16..].as_ptr());
            let d: [*mut f32; 16] = std::array::from_fn(|j| dst[j * 16..].as_mut_ptr());
            // SAFETY: `isa` is available here; 16 values behind every pointer, disjoint.
            #[allow(unsafe_code)]
            unsafe {
                block(isa, &s, &d)
            };
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(
                        dst[j * 16 + i].to_bits(),
                        src[i * 16 + j].to_bits(),
                        "{isa:?}: row {i}, column {j}"
                    );
                }
            }
        }
    }
}
