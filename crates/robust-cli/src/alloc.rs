//! The global allocator (mimalloc) and the one option robust changes in it.
//!
//! mimalloc keeps freed tensor buffers for reuse. With glibc's allocator every attack step
//! returned its large buffers to the kernel and faulted them back in (about half the run
//! time of a PGD sweep in some runs; see benches/RESULTS.md).
//!
//! mimalloc still *purges* free memory it has held for a while (its `purge_delay`, 1 s by
//! default, ten times that for arenas): the pages go back to the kernel, and the next
//! step's activations fault them in again, each 2 MiB huge page cleared by the kernel
//! first. On a PGD-10 run of ResNet-18 (256 CIFAR-size images) that was a quarter of all
//! CPU samples (`clear_page_erms`) and 10 274 page faults; with purging off, 1 415 faults
//! and a third less CPU time. A run's peak resident memory is the same either way (freed
//! buffers are reused, not added to), so purging is turned off for the whole process.

// Two calls into mimalloc's C API, which the mimalloc crate does not wrap.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_long};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`'s position in `mi_option_t` of the mimalloc v3 sources that
/// libmimalloc-sys 0.1.49 builds (the crate exports no constant for it). A test checks that
/// this index reads the option's documented default, so a mimalloc upgrade that moves it
/// fails the tests instead of changing another option.
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Turns mimalloc's purging of free memory off (`purge_delay = -1`), unless the user set
/// `MIMALLOC_PURGE_DELAY` in the environment (mimalloc's own override wins).
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: plain C calls on mimalloc's option table with a valid option index
        // (checked by the test below); setting an option is thread-safe in mimalloc.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

/// The purge delay mimalloc uses now (milliseconds; -1: never).
#[cfg(test)]
fn purge_delay() -> c_long {
    // SAFETY: reads mimalloc's option table at a valid index.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc v3's options.c: `{ 1000, UNINIT, MI_OPTION_LEGACY(purge_delay, reset_delay) }`.
        // The neighbours (deprecated eager_commit_delay: 1, use_numa_nodes: 0) differ.
        assert_eq!(purge_delay(), 1000, "not mimalloc's purge delay");
        keep_freed_memory();
        assert_eq!(purge_delay(), -1);
    }
}
