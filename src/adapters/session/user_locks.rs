//! The locks that make [`SessionStore::destroy_all_for_user`](super::SessionStore::destroy_all_for_user)
//! calls for one user take turns: a fixed set of mutexes, a user's being
//! the one its name hashes to (users sharing one take turns too, harmlessly).
//!
//! A call holds its user's lock from before it takes the user's ids out of
//! the index until every removal it made is settled, so a second call for
//! the user returns only after the first has removed what it took (or put
//! back in the index what it could not remove, for the second to remove).
//!
//! Lock order: a user lock is taken first, with nothing else held, and
//! nothing that runs while the store holds a shard's lock or the index's
//! lock (the eviction listener, which only takes the index's) takes one, so
//! no cycle of waits goes through it.

use parking_lot::{Mutex, MutexGuard};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// How many locks: enough that unrelated users rarely wait for each other.
const STRIPES: usize = 64;

/// The per-user locks of a store (shared by its clones).
#[derive(Clone)]
pub(super) struct UserLocks {
    locks: Arc<[Mutex<()>]>,
    hasher: RandomState,
}

impl UserLocks {
    pub(super) fn new() -> Self {
        Self {
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits for `user`'s lock.
    pub(super) fn lock(&self, user: &str) -> MutexGuard<'_, ()> {
        // Below the slice's length, so it fits a usize and indexes it.
        let stripe = self.hasher.hash_one(user) % self.locks.len() as u64;
        self.locks[stripe as usize].lock()
    }
}
