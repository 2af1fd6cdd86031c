//! Asymmetric fences: a cheap side that the shard lock's writer runs at
//! every release, and an expensive side that a thread about to sleep on the
//! lock runs once before it sleeps.
//!
//! A releasing writer stores "open" and then loads the count of sleepers, to
//! wake them; a sleeper raises that count and then loads "open", to see
//! whether it may skip the sleep. Each side stores, then loads what the
//! other stored: without a full fence between the two, both loads can read
//! the old values, and the sleeper sleeps through the release. A full fence
//! on x86 is a locked instruction, and on the writer's side it waits for
//! every store of the write (the entry, its links, the sketch) to leave the
//! store buffer: the writer's release would cost what its acquire does.
//!
//! On Linux the two sides can be unequal instead (as Linux's RCU and
//! folly's asymmetric fences do): the releaser orders its store and load
//! for the compiler only ([`light`]), and the sleeper calls
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` ([`heavy`]), which makes
//! every other running thread of the process execute a full fence before it
//! returns. A releaser is then either past that fence when the sleeper
//! loads "open" (its store is visible), or not yet at its load of the count
//! (which then sees the sleeper's raise). Where that call is unavailable
//! (other systems, a seccomp filter, Miri), both sides are full fences.
//!
//! The choice is made once per process, at the first cache's construction
//! ([`init`]), before any lock exists, and never changes.

use std::sync::atomic::{compiler_fence, fence, AtomicBool, Ordering};
use std::sync::Once;

/// Whether `membarrier` was registered: releases need compiler fences only.
static ASYMMETRIC: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

/// Registers the process for expedited `membarrier` calls, once; returns
/// whether the asymmetric fences are in use. Every shard lock is built
/// after a call to this.
pub(crate) fn init() -> bool {
    REGISTER.call_once(|| ASYMMETRIC.store(membarrier::register(), Ordering::Release));
    ASYMMETRIC.load(Ordering::Acquire)
}

/// The cheap side: orders a store before a later load of another location
/// against a thread that runs [`heavy`].
#[inline]
pub(crate) fn light() {
    if ASYMMETRIC.load(Ordering::Relaxed) {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The expensive side: after it returns, every thread's stores that came
/// before its last [`light`] are visible here, or that thread has not yet
/// reached the loads that follow its [`light`].
pub(crate) fn heavy() {
    if !(ASYMMETRIC.load(Ordering::Relaxed) && membarrier::expedited()) {
        fence(Ordering::SeqCst);
    }
}

#[cfg(all(target_os = "linux", not(miri)))]
mod membarrier {
    // From linux/membarrier.h (stable ABI since Linux 4.14).
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn call(cmd: libc::c_long) -> bool {
        // SAFETY: membarrier takes two integers (a command and flags) and a
        // third (a CPU id) that these commands ignore; it reads and writes
        // no memory of this process, so no argument can be invalid: an
        // unknown or refused command returns -1.
        #[allow(unsafe_code)]
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        };
        r == 0
    }

    pub(super) fn register() -> bool {
        call(CMD_REGISTER_PRIVATE_EXPEDITED)
    }

    pub(super) fn expedited() -> bool {
        call(CMD_PRIVATE_EXPEDITED)
    }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
mod membarrier {
    pub(super) fn register() -> bool {
        false
    }

    pub(super) fn expedited() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_stable_and_heavy_returns() {
        let first = init();
        assert_eq!(init(), first);
        assert_eq!(ASYMMETRIC.load(Ordering::Relaxed), first);
        light();
        heavy();
    }
}
