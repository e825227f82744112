//! The global allocator (mimalloc) and the two options robust changes in it.
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
//!
//! mimalloc also asks the kernel for transparent huge pages on its arenas
//! (`madvise(MADV_HUGEPAGE)`, its `allow_thp` option). Where the kernel's THP `defrag`
//! setting is `madvise` (a common default) each first touch of such a 2 MiB page may then
//! compact memory synchronously before clearing the page: on this project's VMs that made
//! first touches run at about 0.3 GB/s against 2 GB/s with ordinary pages, and a ResNet-50
//! PGD run (2.1 GB resident) spent 5–7 s of system time in it. robust therefore leaves the
//! choice to the kernel's own policy (`allow_thp = 0`: no madvise; a kernel set to
//! `always` still gives huge pages).
//!
//! That setting only reaches the arenas reserved after `main` starts: mimalloc reserves its
//! first arena (1 GiB) at the process's first allocation, before `main`, and madvises it
//! then (`strace -e madvise` shows one `MADV_HUGEPAGE` of 1 GiB). A run that stays within it,
//! such as a CIFAR-size ResNet-18 PGD sweep, keeps huge pages; ResNet-50 at 224×224 outgrows
//! it. `MIMALLOC_ALLOW_THP=0` in the environment covers the first arena too. Two A/Bs of that
//! on ResNet-18 disagreed (PGD-1 0.67–0.79 s against 0.82–1.50 s in one, 0.47–0.56 s against
//! 0.33–0.60 s in the other; PGD-10 1.55–2.11 s against 1.27–1.92 s), with 50–60 MB less
//! resident memory, so the first arena is left as mimalloc makes it.

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

/// `mi_option_allow_thp`'s position in the same enum (checked the same way).
const MI_OPTION_ALLOW_THP: c_int = 43;

extern "C" {
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Turns mimalloc's purging of free memory off (`purge_delay = -1`) and its requests for
/// transparent huge pages (`allow_thp = 0`), each unless the user set it in the environment
/// (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ALLOW_THP`: mimalloc's own overrides win). Call it
/// first thing in `main`, before the large allocations.
pub fn configure() {
    for (option, env, value) in [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", -1),
        (MI_OPTION_ALLOW_THP, "MIMALLOC_ALLOW_THP", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: plain C calls on mimalloc's option table with a valid option index
            // (checked by the test below); setting an option is thread-safe in mimalloc.
            unsafe { mi_option_set(option, value) }
        }
    }
}

/// The value of an option mimalloc uses now.
#[cfg(test)]
fn option(index: c_int) -> c_long {
    // SAFETY: reads mimalloc's option table at a valid index.
    unsafe { mi_option_get(index) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indices_are_mimallocs_purge_delay_and_allow_thp() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_ALLOW_THP").is_some()
        {
            return;
        }
        // mimalloc v3's options.c: `{ 1000, UNINIT, MI_OPTION_LEGACY(purge_delay, reset_delay) }`
        // (the neighbours, deprecated eager_commit_delay: 1 and use_numa_nodes: 0, differ) and
        // `{ 1, UNINIT, MI_OPTION(allow_thp) }` on Linux (the neighbours,
        // page_cross_thread_max_reclaim: 32 and minimal_purge_size: 0, differ).
        assert_eq!(
            option(MI_OPTION_PURGE_DELAY),
            1000,
            "not mimalloc's purge delay"
        );
        assert_eq!(option(MI_OPTION_ALLOW_THP), 1, "not mimalloc's allow_thp");
        configure();
        assert_eq!(option(MI_OPTION_PURGE_DELAY), -1);
        assert_eq!(option(MI_OPTION_ALLOW_THP), 0);
    }
}
