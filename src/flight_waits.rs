//! Waits for something another thread runs to its end: a single-flight
//! load, a log's rollback, a log's repair or rewrite. Registered in the
//! graph of waits (`waits.rs`), which refuses the one that would close a
//! cycle (loaders on several threads each asking for a key another of them
//! is loading; a loader that syncs while the repair it waits for waits for
//! that loader's load; ...).
//!
//! Each such thing has a *leader cell* naming the thread that runs it, set
//! before it can wait for anything ([`Named`]) and cleared before the
//! threads waiting for it are woken or let in:
//!
//! - a load's flight names the thread running its blocking loader, and,
//!   for a load led by an async task, the thread polling its loader while
//!   the poll runs (a blocking wait inside the poll holds that thread, and
//!   the load cannot end before the poll returns; between polls the task
//!   holds no thread, and the cell names none); a background reload's
//!   flight names the refresher's thread running its loader, or the
//!   thread polling its future, likewise;
//! - a log's rollback names the thread applying its undo records (whose
//!   listener may wait for a load, or for a shard);
//! - a log's one-repair-at-a-time lock and its one-rewrite-at-a-time lock
//!   ([`TrackedLock`]) name the thread holding them (a repair rolls back,
//!   and may wait for another rollback; a rewrite reads every shard).
//!
//! A thread about to block for one of them registers ([`Waiting`]); a
//! thread named in a cell also registers its waits for shards (see
//! `lock_waits.rs`), so that a cycle through a shard held in user code is
//! found too. Waits on loads by async tasks (`.await`) are not registered:
//! they block no thread, and the task may stop waiting at any time.

use crate::sync::{Arc, Mutex, MutexGuard};
use crate::waits::{register, Cycle, Registered, Want};
use std::cell::Cell;
use std::thread::ThreadId;

/// The thread running a load's loader (or a log's rollback, or holding a
/// [`TrackedLock`]), while it does.
pub(crate) type Leader = Arc<Mutex<Option<ThreadId>>>;

thread_local! {
    /// How many leader cells name this thread.
    static LEADING: Cell<u32> = const { Cell::new(0) };
}

/// Whether a leader cell names this thread: its waits for shards are then
/// registered too.
pub(crate) fn leading() -> bool {
    LEADING.with(|n| n.get() > 0)
}

/// This thread named in a leader cell; dropping it clears the cell (unless
/// it names another thread by then).
pub(crate) struct Named {
    leader: Leader,
    me: ThreadId,
}

impl Named {
    /// Names this thread in `leader`.
    pub(crate) fn here(leader: &Leader) -> Self {
        let me = std::thread::current().id();
        LEADING.with(|n| n.set(n.get().saturating_add(1)));
        *leader.lock() = Some(me);
        Self {
            leader: leader.clone(),
            me,
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        {
            let mut leader = self.leader.lock();
            if *leader == Some(self.me) {
                *leader = None;
            }
        }
        LEADING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// A lock held for long, through waits that may close a cycle: its
/// holder is named in a leader cell, and a thread about to wait for it
/// registers that wait.
pub(crate) struct TrackedLock {
    lock: Mutex<()>,
    holder: Leader,
}

/// A [`TrackedLock`] held; the cell naming its holder is cleared before
/// the lock is let go (fields drop in order).
pub(crate) struct Tracked<'a> {
    _named: Named,
    _lock: MutexGuard<'a, ()>,
}

impl TrackedLock {
    pub(crate) fn new() -> Self {
        Self {
            lock: Mutex::new(()),
            holder: Arc::new(Mutex::new(None)),
        }
    }

    /// Takes the lock, and names this thread as its holder while it holds
    /// it. A thread that finds it held registers its wait for the holder
    /// first.
    ///
    /// # Errors
    ///
    /// [`Cycle`] (the lock not taken) if that wait would close a cycle:
    /// the holder waits, through others, for this thread.
    pub(crate) fn hold(&self) -> Result<Tracked<'_>, Cycle> {
        let lock = match self.lock.try_lock() {
            Some(lock) => lock,
            None => {
                let _waiting = Waiting::register(&self.holder)?;
                self.lock.lock()
            }
        };
        Ok(Tracked {
            _named: Named::here(&self.holder),
            _lock: lock,
        })
    }
}

/// This thread's registered wait; dropping it takes the registration off.
pub(crate) struct Waiting {
    _registered: Registered,
}

impl Waiting {
    /// Registers this thread as waiting for what the leader cell `leader`
    /// names the thread of, with the shards its user code holds.
    ///
    /// # Errors
    ///
    /// [`Cycle`] (nothing registered) if that wait closes a cycle of waits
    /// back to this thread.
    pub(crate) fn register(leader: &Leader) -> Result<Self, Cycle> {
        let holds = crate::callback::held();
        register(Want::Led(leader.clone()), holds).map(|r| Self { _registered: r })
    }
}
