//! Reused scratch buffers for the kernels' intermediate layouts.
//!
//! Every convolution in `tap_gemm` needs two or three activation-sized buffers for a few
//! milliseconds. Allocated fresh, buffers that size come from new pages, which the kernel
//! zeroes on first touch: on a ResNet that took a fifth of an attack's time. Here they go
//! back to a small pool when dropped and are handed out again, with whatever values they
//! held (callers overwrite every value they later read).

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Most buffers kept, and most `f32` values kept in all of them (512 MiB).
const MAX_BUFFERS: usize = 8;
const MAX_VALUES: usize = 128 << 20;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of `len` values from the pool (contents unspecified: stale values of an earlier
/// use, or zeros when new), returned to the pool when dropped.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

/// A scratch buffer of at least `len` values; see [`Scratch`].
pub(crate) fn scratch(len: usize) -> Scratch {
    let reused = {
        // A poisoned lock only means a panic elsewhere while the pool was held; the
        // buffers in it are still whole.
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest buffer that is large enough.
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    };
    Scratch {
        buf: reused.unwrap_or_else(|| vec![0f32; len]),
        len,
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(buf);
        // Over the bounds, the smallest buffers go first.
        pool.sort_by_key(|b| std::cmp::Reverse(b.len()));
        while pool.len() > MAX_BUFFERS || pool.iter().map(Vec::len).sum::<usize>() > MAX_VALUES {
            pool.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A returned buffer is handed out again for a request it can hold, and never one that
    /// is too small.
    #[test]
    fn buffers_are_reused_and_large_enough() {
        let len = 1_234_567;
        let first = scratch(len);
        let ptr = first.as_ptr();
        assert_eq!(first.len(), len);
        drop(first);
        let again = scratch(len - 7);
        assert_eq!(again.len(), len - 7);
        assert_eq!(again.as_ptr(), ptr, "the returned buffer is reused");
        let bigger = scratch(len + 1);
        assert_eq!(bigger.len(), len + 1);
        assert_ne!(bigger.as_ptr(), ptr);
    }
}
