//! Waits for a shard's lock that could close a cycle, registered in the
//! graph of waits (`waits.rs`), so that the wait that would close one
//! panics (or, on the few paths with an error to return, fails) instead of
//! leaving every thread in the cycle waiting forever: threads each holding
//! a shard in user code the cache runs under its lock (a `compute`
//! closure, a `retain` predicate, a weigher, an expiry rule) and calling
//! the cache for a shard the next one holds, or such code waiting for a
//! load, a rollback or a repair (see `flight_waits.rs`) whose thread waits
//! for the shard it holds. A call that reaches the shard its own thread
//! holds is refused by the lock itself (see `shard_lock.rs`).
//!
//! A shard is named by the address of its data. User code run under a
//! shard's write lock names that shard on its thread while it runs
//! (`callback::under_shard_lock`); code nested in it (a `compute` closure
//! calling another cache's `compute`) adds the shard it runs under. A
//! thread registers only on the lock's slow path, once it found the shard
//! closed, and only if it holds something another thread could wait for
//! without end: a shard in such code, or a load, rollback or repair it is
//! named the leader of. A writer stays registered until it has closed the
//! shard itself, a reader until it sees the shard open (then it tries
//! again, and registers again if a writer got in first). The walk goes
//! from the shard to the registered waiter whose user code holds it; a
//! shard no registered waiter holds (its holder is running, or holds it
//! outside user code, for a short write) ends the walk: no cycle.
//!
//! The walk's steps through shards are true while it runs:
//!
//! - A registered waiter holds the shards it registered: it names them
//!   from user code it is still running, under write guards that live
//!   until that code returns, and that code cannot return before its wait
//!   ends and the registration is taken off.
//! - A registered waiter has not got the shard it waits for whenever the
//!   walk follows it there: the walk goes on only if another registered
//!   waiter, or the walking thread, holds that shard in user code, and a
//!   shard held under a write guard is closed to every other reader and
//!   writer. (A writer registered until it closed the shard may have just
//!   closed it; a reader that got in before a writer closed the shard
//!   leaves, and has taken its registration off, before that writer's
//!   guard exists.)
//! - A writer that closed a shard but still waits for its readers to leave
//!   holds it in no user code yet, so the walk does not stop there; readers
//!   run no user code the cache marks, and always leave (a multi-key read
//!   waits only for shards above those it holds, see
//!   `cache/read_batch.rs`).
//!
//! A shard held outside user code (a plain write, a rewrite's read of a
//! chunk) is held for a bounded time, and ends the walk.

use crate::waits::{register, Registered, Want};

pub(crate) use crate::waits::Cycle;

/// What a thread whose wait would close a cycle is told.
const CYCLE: &str = "shardcache: this wait for a shard's lock would close a cycle of waits \
between threads (code the cache runs under a shard's lock: a `compute` closure, a `retain` \
predicate, a weigher, an expiry rule; a loader; a log's rollback or repair), each waiting for \
a shard, a load or a repair another of them holds: every thread in the cycle would wait \
forever";

impl Cycle {
    /// Panics with the cycle's message (for a wait with no error to return).
    #[cold]
    pub(crate) fn panic(self) -> std::convert::Infallible {
        panic!("{CYCLE}")
    }
}

/// This thread's registered wait; dropping it takes the registration off.
pub(crate) struct Waiting {
    _registered: Registered,
}

/// Registers this thread as waiting for the shard `lock` (its data's
/// address) if it runs user code under a shard's lock, or is named in a
/// leader cell (see `flight_waits.rs`); `Ok(None)` (and nothing
/// registered) otherwise.
///
/// # Errors
///
/// [`Cycle`] (nothing registered) if the wait would close a cycle of waits
/// back to this thread.
pub(crate) fn waiting_for(lock: usize) -> Result<Option<Waiting>, Cycle> {
    let holds = crate::callback::held();
    if holds.is_empty() && !crate::flight_waits::leading() {
        return Ok(None);
    }
    register(Want::Shard(lock), holds).map(|r| Some(Waiting { _registered: r }))
}
