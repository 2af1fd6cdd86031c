//! The process-wide graph of blocked waits that could close a cycle, so
//! that the wait that would close one is refused (a panic, or an error
//! where the call has one) instead of leaving every thread in the cycle
//! waiting forever.
//!
//! A thread blocks on one thing at a time, of two kinds:
//!
//! - a shard's lock (see `lock_waits.rs`), named by the address of the
//!   shard's data. Its holder is found among the registered waits: the
//!   one whose thread holds that shard in user code the cache runs under
//!   its lock (a `compute` closure, a `retain` predicate...);
//! - something a thread runs to its end: a single-flight load, a log's
//!   rollback, a log's repair or rewrite (see `flight_waits.rs`). Its
//!   *leader cell* names that thread while it runs, and its holder is that
//!   thread.
//!
//! A thread about to block registers what it waits for and the shards its
//! user code holds meanwhile, under one lock, after a walk: from what it
//! waits for to its holder, to what that holder waits for (its
//! registration), and so on. Reaching this thread (a shard it holds, or a
//! leader cell naming it) means its wait closes a cycle, and it is refused.
//! A holder that is not registered (it runs, or waits for something no
//! thread here holds) ends the walk: no cycle. Walks and registrations are
//! serialised, a thread is named in a leader cell before what it leads can
//! wait for anything, and in a deadlock each thread's last registration
//! lasts for good, so the last thread to register finds the cycle.
//!
//! No cycle is reported that is not one: each step of the walk is true while
//! the walk runs. A registered waiter has not got what it waits for (a
//! shard held in user code is closed to every other thread, see
//! `lock_waits.rs`; a leader cell is cleared before the waiters of what it
//! leads are woken or let in), and cannot give up what it holds before its
//! wait ends: the shards its user code holds stay held until that code
//! returns, and what it leads ends only when its code gets past the wait.
//! So each thread on the walk waits, with no way out, for the next, and the
//! last for the walking thread.
//!
//! Only blocking waits are here. An async task that awaits a load does not
//! block its thread, and may stop waiting at any time (a timeout, a
//! `select!`), so nothing waits on it for good; a thread blocked in the
//! poll of an async load's loader is named by that load's leader cell for
//! as long as the poll runs (see `flight_waits.rs`).

use crate::flight_waits::Leader;
use crate::sync::Mutex;
use std::thread::ThreadId;

/// What a blocked thread waits for.
pub(crate) enum Want {
    /// A shard's lock, named by the address of its data.
    Shard(usize),
    /// The end of what the thread a leader cell names runs (a load, a
    /// rollback, a repair or rewrite of the log).
    Led(Leader),
}

/// A wait that would close a cycle: refused, nothing registered.
#[derive(Debug)]
pub(crate) struct Cycle;

/// A registered wait: the thread, what it waits for, and the shards its
/// user code holds meanwhile.
struct Wait {
    id: u64,
    thread: ThreadId,
    wants: Want,
    holds: Vec<usize>,
}

/// The registered waits, and the next registration's id.
struct Waits {
    next: u64,
    waits: Vec<Wait>,
}

static WAITS: Mutex<Waits> = Mutex::new(Waits {
    next: 0,
    waits: Vec::new(),
});

/// This thread's registered wait; dropping it takes the registration off.
pub(crate) struct Registered {
    id: u64,
}

/// Registers this thread as waiting for `wants` while its user code holds
/// the shards `holds`.
///
/// # Errors
///
/// [`Cycle`] if the wait would close a cycle of waits back to this thread.
pub(crate) fn register(wants: Want, holds: Vec<usize>) -> Result<Registered, Cycle> {
    let me = std::thread::current().id();
    let mut waits = WAITS.lock();
    if closes_cycle(&waits.waits, me, &holds, &wants) {
        return Err(Cycle);
    }
    let id = waits.next;
    waits.next += 1;
    waits.waits.push(Wait {
        id,
        thread: me,
        wants,
        holds,
    });
    Ok(Registered { id })
}

/// Whether following `wants` through the registered `waits` comes back to
/// thread `me`, whose user code holds the shards `mine`.
fn closes_cycle(waits: &[Wait], me: ThreadId, mine: &[usize], wants: &Want) -> bool {
    let mut wanted = wants;
    // Each step moves to another registered waiter: a chain longer than
    // their number has come back on itself without this thread.
    for _ in 0..=waits.len() {
        let holder = match wanted {
            Want::Shard(shard) => {
                if mine.contains(shard) {
                    return true;
                }
                waits.iter().find(|w| w.holds.contains(shard))
            }
            Want::Led(leader) => {
                let Some(thread) = *leader.lock() else {
                    return false;
                };
                if thread == me {
                    return true;
                }
                waits.iter().find(|w| w.thread == thread)
            }
        };
        match holder {
            Some(w) => wanted = &w.wants,
            None => return false,
        }
    }
    false
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut waits = WAITS.lock();
        if let Some(i) = waits.waits.iter().position(|w| w.id == self.id) {
            waits.waits.swap_remove(i);
        }
    }
}
