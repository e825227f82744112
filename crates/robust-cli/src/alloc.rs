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
//! such as a CIFAR-size ResNet-18 PGD sweep, kept huge pages, and paid for them: on a Zen 4
//! VM of this project (THP `enabled` = `madvise`, `defrag` = `madvise`) a ResNet-18 PGD-10
//! run spent 0.6–1.2 s of system time against 0.3–0.5 s without them (2.4–3.0 s against
//! 2.1–2.5 s in all, three alternations right after a PyTorch run and two without), and a
//! ResNet-50 PGD-2 run 2.8–3.4 s against 1.3–1.4 s (12.5–13.0 s against 11.9–12.3 s).
//! Where the kernel's `enabled` setting is `madvise`, the only huge pages a process gets are
//! those it asks for, so `allow_thp = 0` means none at all; [`configure`] then extends that
//! to the first arena by turning transparent huge pages off for the process
//! (`prctl(PR_SET_THP_DISABLE)`, inherited by the programs robust starts). Where `enabled` is
//! `always` that would also take away the huge pages the kernel hands out on its own, so the
//! first arena is left as mimalloc makes it. `MIMALLOC_ALLOW_THP` in the environment
//! overrides both (an earlier machine of this kind, a Zen 5 with `enabled` = `always`, gave
//! two A/Bs of `MIMALLOC_ALLOW_THP=0` on ResNet-18 that disagreed).

// Two calls into mimalloc's C API, which the mimalloc crate does not wrap, and prctl.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_long, c_ulong};

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

/// `PR_SET_THP_DISABLE` of `<linux/prctl.h>`.
#[cfg(target_os = "linux")]
const PR_SET_THP_DISABLE: c_int = 41;

/// `PR_GET_THP_DISABLE` of `<linux/prctl.h>`.
#[cfg(all(target_os = "linux", test))]
const PR_GET_THP_DISABLE: c_int = 42;

#[cfg(target_os = "linux")]
extern "C" {
    // glibc's wrapper of the system call.
    fn prctl(option: c_int, ...) -> c_int;
}

/// The kernel's transparent-huge-page mode (`/sys/kernel/mm/transparent_hugepage/enabled`,
/// the bracketed word), if it can be read.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn thp_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    selected(&text).map(str::to_owned)
}

/// The bracketed word of a sysfs choice list such as `always [madvise] never`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(&text[start..start + len])
}

/// Turns mimalloc's purging of free memory off (`purge_delay = -1`) and its requests for
/// transparent huge pages (`allow_thp = 0`; where the kernel gives huge pages only to those
/// who ask, the first arena's too, see the module docs), each unless the user set it in the
/// environment (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ALLOW_THP`: mimalloc's own overrides win).
/// Call it first thing in `main`, before the large allocations.
pub fn configure() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() && thp_mode().as_deref() == Some("madvise")
    {
        let (on, zero): (c_ulong, c_ulong) = (1, 0);
        // SAFETY: prctl with an option that takes one integer argument and changes only
        // this process's THP policy; a kernel without it returns an error, which leaves
        // things as they were.
        unsafe { prctl(PR_SET_THP_DISABLE, on, zero, zero, zero) };
    }
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
        // Where the kernel hands huge pages only to those who ask, the process asks for none.
        #[cfg(target_os = "linux")]
        {
            let zero: c_ulong = 0;
            // SAFETY: prctl with an option that takes no argument.
            let off = unsafe { prctl(PR_GET_THP_DISABLE, zero, zero, zero, zero) };
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            if thp_mode().as_deref() == Some("madvise") {
                assert_eq!(off, 1, "THP not disabled for the process");
                assert!(status.contains("THP_enabled:\t0"), "{status}");
            } else {
                assert_eq!(
                    off,
                    0,
                    "THP disabled where the kernel's mode is {:?}",
                    thp_mode()
                );
            }
        }
    }

    #[test]
    fn the_kernels_mode_is_the_bracketed_word() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("[always] madvise never"), Some("always"));
        assert_eq!(selected("always madvise [never]"), Some("never"));
        assert_eq!(selected("always madvise never"), None);
        assert_eq!(selected("[always"), None);
    }
}
