//! Which vector extension the kernels run with, and a cap on it for testing.
//!
//! The kernels are dispatched at run time to the best instruction set the CPU has (SSE4.2,
//! AVX2 or AVX-512 on x86-64). Their results must not depend on which one: they vectorise
//! across output positions and each does the same operations (separate multiplies and
//! adds, or fused multiply-adds in the matrix product) at every width, so every output is
//! summed in the same order and rounded the same way. To test that on one machine, the
//! level can be capped, from the environment (`ROBUST_SIMD=scalar|sse4.2|avx2`, read once)
//! or by [`set_simd_cap`]; the cap never raises the level above what the CPU has.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use macerator::{Arch, WithSimd};

/// A cap on the kernels' vector extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdCap {
    /// Plain scalar code.
    Scalar = 0,
    /// SSE4.2 (x86-64-v2).
    Sse42 = 1,
    /// AVX2 + FMA (x86-64-v3).
    Avx2 = 2,
    /// Whatever the CPU has (AVX-512 where present).
    Native = 255,
}

/// The programmatic cap; `u8::MAX - 1` means "not set" (then the environment decides).
static CAP: AtomicU8 = AtomicU8::new(u8::MAX - 1);

fn env_cap() -> SimdCap {
    static ENV: OnceLock<SimdCap> = OnceLock::new();
    *ENV.get_or_init(|| match std::env::var("ROBUST_SIMD").as_deref() {
        Ok("scalar") => SimdCap::Scalar,
        Ok("sse4.2" | "sse42" | "v2") => SimdCap::Sse42,
        Ok("avx2" | "v3") => SimdCap::Avx2,
        _ => SimdCap::Native,
    })
}

/// Caps the vector extension the kernels use from now on (for tests: results must be
/// identical at every level); `None` returns to the environment's choice.
pub fn set_simd_cap(cap: Option<SimdCap>) {
    CAP.store(cap.map_or(u8::MAX - 1, |c| c as u8), Ordering::SeqCst);
}

fn cap() -> SimdCap {
    match CAP.load(Ordering::SeqCst) {
        0 => SimdCap::Scalar,
        1 => SimdCap::Sse42,
        2 => SimdCap::Avx2,
        255 => SimdCap::Native,
        _ => env_cap(),
    }
}

/// The instruction set the kernels use now: the CPU's best, lowered to the cap.
pub fn simd_level() -> &'static str {
    let arch = capped();
    match arch as u8 {
        0 => "scalar",
        1 => "sse4.2",
        2 => "avx2",
        _ => "avx-512",
    }
}

/// The detected [`Arch`], lowered to the cap.
fn capped() -> Arch {
    let best = Arch::detect();
    #[cfg(target_arch = "x86_64")]
    {
        let level = (best as u8).min(cap() as u8);
        match level {
            0 => Arch::Scalar,
            1 => Arch::V2,
            2 => Arch::V3,
            _ => best,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cap();
        best
    }
}

/// Runs `op` compiled for the capped instruction set.
pub(crate) fn dispatch<Op: WithSimd>(op: Op) -> Op::Output {
    let arch = capped();
    // SAFETY: `arch` is the detected level or a lower one; on x86-64 the levels are
    // cumulative (x86-64-v2 ⊂ v3 ⊂ v4), so every feature it needs is present.
    #[allow(unsafe_code)]
    unsafe {
        arch.dispatch(op)
    }
}
