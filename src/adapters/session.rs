//! [`SessionStore`]: sessions with random ids, absolute and idle timeouts,
//! per-user destruction, and persistence across restarts.
//!
//! Each session is one cache entry, keyed by its id. The record keeps the
//! owner, the data, and the creation time and absolute deadline as wall-clock
//! Unix milliseconds; the entry's cache TTL is the nearer of the absolute
//! deadline and the idle deadline. With [`SessionStore::open`] every write
//! goes to an append-only [`FileLog`] (by default [`Fsync::Always`](crate::persist::Fsync::Always): a
//! `create` that returned is on disk), and reopening replays it: sessions,
//! their absolute deadlines and their slid idle deadlines all survive, and
//! what expired while the process was down is not loaded, and is rewritten
//! out of the log (`reopen.rs`).
//!
//! A user → sessions index serves [`SessionStore::destroy_all_for_user`] and
//! [`SessionStore::count_for_user`]; it follows the cache through its
//! eviction listener and is rebuilt from the replayed entries on open.
//!
//! Deadlines are decided on a steady clock (the wall clock read when the
//! store is made, advanced by the monotonic clock), so wall-clock steps
//! neither end nor extend sessions; [`SessionStore`]'s docs describe it.

mod config;
mod id;
mod record;
mod reopen;
mod steady;
#[cfg(test)]
mod tests;
mod user_locks;

pub use config::SessionConfig;
pub use id::SessionId;

use crate::builder::BuildError;
use crate::compute::{Decision, Ttl};
use crate::listener::RemovalCause;
use crate::persist::{FileLog, PersistError, RecoveryReport, WriteAheadLog};
use crate::{Cache, CacheBuilder, Policy};
use parking_lot::Mutex;
use reopen::overhangs;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use steady::{Now, Steady};
use user_locks::UserLocks;

/// The default absolute session lifetime: 24 hours.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(86_400);

/// The default most sessions kept: one million.
pub(crate) const DEFAULT_MAX_SESSIONS: u64 = 1_000_000;

/// How far the wall clock may move against the steady clock before a
/// `touch` logs a session's absolute deadline again, and so how far past
/// that deadline a logged idle deadline may reach before the store brings it
/// back on open. The cache and the session read the wall clock apart and
/// round apart, so the two differ by a few milliseconds; a gap this small
/// ends on its own before it matters.
const OVERHANG: Duration = Duration::from_secs(1);

/// A session store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The log could not be opened, read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A setting cannot work (a zero capacity or timeout, or one over ten years).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
    /// The store is full and the new session was not kept.
    #[error("the session store is full")]
    Full,
}

/// One session: its owner, its data and its deadlines.
///
/// `created_at_ms` and `expires_at_ms` are given on the wall clock as it read
/// when the session was returned: after a wall-clock step they move with it,
/// while the session's deadlines do not (see [`SessionStore`](SessionStore#time)).
/// What is logged is exactly these four fields.
// Defined here: its path, as release 0.1 printed it, is part of the
// fingerprint its session logs carry (see `config.rs`).
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session<T> {
    /// The user the session belongs to.
    pub user: String,
    /// The application's data.
    pub data: T,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: u64,
    /// When it ends whatever its activity (the absolute timeout), in Unix
    /// milliseconds.
    pub expires_at_ms: u64,
    /// How far the wall clock was ahead of the store's steady clock when the
    /// wall-clock fields were set (negative: behind). Zero for a session read
    /// back from the log, since the steady clock starts from the wall clock.
    /// Kept in memory only.
    #[serde(skip)]
    skew_ms: i64,
}

type UserIndex = Arc<Mutex<HashMap<String, HashSet<String>>>>;

/// A session store. Cheap to clone: clones share the sessions.
///
/// ```
/// use shardcache::adapters::{SessionConfig, SessionStore};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("sessions.log");
/// let id = {
///     let store: SessionStore<String> = SessionStore::open(&path, SessionConfig::default())?;
///     store.create("ada", "cart=3".to_string())?
/// }; // dropped: as if the process restarted
/// let store: SessionStore<String> = SessionStore::open(&path, SessionConfig::default())?;
/// let session = store.get(id.as_str()).expect("survived the restart");
/// assert_eq!((session.user.as_str(), session.data.as_str()), ("ada", "cart=3"));
/// assert_eq!(store.destroy_all_for_user("ada")?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Time
///
/// Within one process, timeouts are measured in real elapsed time. A store
/// decides deadlines on its own steady clock: the wall clock read once when
/// the store is made, advanced from then on by the monotonic clock (both
/// from the [`Clock`](crate::Clock) in the config). A wall-clock step, such as an NTP
/// correction, therefore neither ends a session early nor lets touches keep
/// it past its absolute timeout. A [`Session`]'s wall-clock fields are its
/// deadlines read on the wall clock of the moment: [`SessionStore::get`]
/// returns them as the wall clock reads now (after a step they move with it,
/// so `expires_at_ms` minus the wall clock's now is always the time left),
/// and [`create`](SessionStore::create) and [`update`](SessionStore::update)
/// log them as the wall clock reads then.
///
/// Across a restart the wall clock is the only link: the reopened store
/// starts its steady clock from the wall clock, and a session ends when the
/// wall clock reaches the absolute deadline last logged for it.
/// [`create`](SessionStore::create) and [`update`](SessionStore::update) log
/// it as the wall clock reads then, and so does a
/// [`touch`](SessionStore::touch) once the wall clock has moved more than a
/// second against the steady clock since it was last logged: a wall-clock
/// step followed by any of them does not change when the session ends, within
/// a second. A step after the session's last `create`, `update` or `touch`
/// and before the restart shortens or lengthens what is left of the session
/// by the step. On open, an idle deadline that the log places more than a
/// second past the absolute one (as a log compacted after a forward step
/// may, or a log whose touches logged idle deadlines only) is brought back to
/// it. A session that the reopened store finds ended is not loaded, and the
/// log is rewritten without it: a later open does not bring it back, even
/// on a wall clock set back before its deadline.
pub struct SessionStore<T> {
    cache: Cache<String, Session<T>>,
    users: UserIndex,
    /// Held by `destroy_all_for_user` for its whole call.
    user_locks: UserLocks,
    /// Whether the log may still hold sessions that the replay found ended
    /// (see `reopen.rs`).
    lapsed: Arc<AtomicBool>,
    config: SessionConfig,
    steady: Steady,
    recovery: Option<RecoveryReport>,
}

impl<T> Clone for SessionStore<T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            users: self.users.clone(),
            user_locks: self.user_locks.clone(),
            lapsed: self.lapsed.clone(),
            config: self.config.clone(),
            steady: self.steady.clone(),
            recovery: self.recovery.clone(),
        }
    }
}

impl<T> fmt::Debug for SessionStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("config", &self.config)
            .field("persistent", &self.recovery.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> SessionStore<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A store in memory only: sessions are lost when it is dropped.
    ///
    /// # Errors
    ///
    /// [`SessionError::Build`] for a zero or overlong timeout or capacity.
    pub fn in_memory(config: SessionConfig) -> Result<Self, SessionError> {
        config.validate()?;
        let steady = Steady::new(config.clock.clone());
        let (builder, users) = Self::builder(&config);
        Ok(Self {
            cache: builder.build()?,
            users,
            user_locks: UserLocks::new(),
            lapsed: Arc::default(),
            config,
            steady,
            recovery: None,
        })
    }

    /// A store whose sessions are logged to the file at `path` (created if
    /// missing) and reloaded from it, so they survive restarts.
    ///
    /// # Errors
    ///
    /// [`SessionError::Build`] for a bad setting; [`SessionError::Persist`]
    /// if the log cannot be opened or read, belongs to another type of
    /// session data, or is held open by another process.
    pub fn open(path: impl AsRef<Path>, config: SessionConfig) -> Result<Self, SessionError> {
        config.validate()?;
        let log = FileLog::open(path, config.fsync)?;
        Self::with_log(log, config)
    }

    /// A store whose sessions are logged to `log` (any [`WriteAheadLog`];
    /// its own fsync setting applies, not the config's) and reloaded from it.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn with_log(log: impl WriteAheadLog, config: SessionConfig) -> Result<Self, SessionError> {
        config.validate()?;
        // Started before the replay, from the wall clock the replay reads:
        // a replayed session's wall fields are its steady deadlines.
        let steady = Steady::new(config.clock.clone());
        let (builder, users) = Self::builder(&config);
        let (cache, report) = builder.build_persistent(log)?;
        let now = steady.now();
        let mut overhanging = Vec::new();
        {
            let mut index = users.lock();
            for (id, session) in cache.iter() {
                let left = now.until(session.deadline());
                if cache.ttl(&id).is_some_and(|ttl| overhangs(ttl, left)) {
                    overhanging.push((id.clone(), left));
                }
                index.entry(session.user).or_default().insert(id);
            }
        }
        let lapsed = report.expired > 0;
        let store = Self {
            cache,
            users,
            user_locks: UserLocks::new(),
            lapsed: Arc::new(AtomicBool::new(lapsed)),
            config,
            steady,
            recovery: Some(report),
        };
        store.end_at_absolute(overhanging);
        // If the log cannot be rewritten now, `destroy` and
        // `destroy_all_for_user` try again and report the failure.
        let _ = store.drop_lapsed();
        Ok(store)
    }

    fn builder(config: &SessionConfig) -> (CacheBuilder<String, Session<T>>, UserIndex) {
        let users: UserIndex = Arc::default();
        let index = users.clone();
        let builder = Cache::builder()
            .log_schema_from(config.log_name::<T>(), config.previous_fingerprints::<T>())
            .max_capacity(config.max_sessions)
            // One budget for all shards: a live session is evicted only when
            // `max_sessions` are held, not when its shard's share fills.
            .shared_capacity()
            .expired_first()
            .policy(Policy::lru())
            .clock(config.clock.clone())
            .eviction_listener(move |id: String, session: Session<T>, cause| {
                if cause != RemovalCause::Replaced {
                    unindex(&index, &session.user, &id);
                }
            });
        (builder, users)
    }

    /// What reopening the log found (`None` for an in-memory store).
    pub fn recovery_report(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// The cache TTL at `now` for a session ending absolutely at `deadline`
    /// (steady): the nearer of that and the idle deadline.
    fn ttl_until(&self, now: Now, deadline: u64) -> Duration {
        let absolute = now.until(deadline);
        self.config.idle.map_or(absolute, |idle| idle.min(absolute))
    }

    /// Creates a session for `user` and returns its new id.
    ///
    /// # Errors
    ///
    /// [`SessionError::Random`] if no id could be drawn;
    /// [`SessionError::Full`] if the store cannot take it (at
    /// [`max_sessions`](SessionConfig::max_sessions) a new session evicts
    /// another; it finds no room only when its shard holds no other session
    /// and the other shards stay locked by concurrent calls while it tries
    /// again for a moment, a few yields of the CPU);
    /// [`SessionError::Persist`] if the log could not keep it (under
    /// [`Fsync::Always`](crate::persist::Fsync::Always): it is not on disk), in which case the session does
    /// not exist.
    pub fn create(&self, user: &str, data: T) -> Result<SessionId, SessionError> {
        let id = SessionId::random()?;
        let now = self.steady.now();
        let session = Session {
            user: user.to_string(),
            data,
            created_at_ms: now.wall,
            // Rounded up, as every deadline: a timeout under a millisecond
            // must not end the session as it is made.
            expires_at_ms: now
                .wall
                .saturating_add(crate::shard::expiry::ttl_ms(self.config.absolute)),
            skew_ms: now.skew(),
        };
        // Indexed first, and checked after: a concurrent destroy_all_for_user
        // either removes the entry or makes us remove it.
        self.users
            .lock()
            .entry(user.to_string())
            .or_default()
            .insert(id.0.clone());
        let ttl = self.ttl_until(now, session.deadline());
        let stored = self.cache.durably(|| {
            self.cache
                .try_insert_with_expiry(id.0.clone(), session, Some(ttl))
        });
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                unindex(&self.users, user, &id.0);
                return Err(e.into());
            }
        };
        let still_indexed = self
            .users
            .lock()
            .get(user)
            .is_some_and(|ids| ids.contains(&id.0));
        if stored.is_err() {
            unindex(&self.users, user, &id.0);
            return Err(SessionError::Full);
        }
        if !still_indexed {
            self.cache.durably(|| self.cache.remove(&id.0))?;
        }
        Ok(id)
    }

    /// The live session `id`, without extending it (see [`touch`](Self::touch)).
    pub fn get(&self, id: &str) -> Option<Session<T>> {
        let session = self.cache.get(id)?;
        let now = self.steady.now();
        if session.deadline() <= now.steady {
            // Dead either way: if the log cannot record the removal now, the
            // session still expires when reloaded.
            let _ = self.cache.durably(|| self.cache.remove(id));
            return None;
        }
        Some(session.on_wall(now.skew()))
    }

    /// Replaces the data of live session `id`, keeping its deadlines.
    /// Returns false if there is no such session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Full`] if the new data could not be stored;
    /// [`SessionError::Persist`] if the log could not keep it (the session
    /// keeps its old data).
    pub fn update(&self, id: &str, data: T) -> Result<bool, SessionError> {
        let now = self.steady.now();
        let updated = self.cache.durably(|| {
            self.cache.compute(id.to_string(), |current| match current {
                Some(c) if c.value.deadline() > now.steady => {
                    let session = Session {
                        data,
                        ..c.value.clone()
                    }
                    .on_wall(now.skew());
                    (Decision::Put(session, Ttl::Keep), true)
                }
                _ => (Decision::Nothing, false),
            })
        })?;
        updated.map_err(|_| SessionError::Full)
    }

    /// Records activity on session `id`: its idle deadline starts over (never
    /// past its absolute deadline). Returns false if there is no such session.
    ///
    /// If the wall clock has moved more than a second against the store's
    /// steady clock since the session's absolute deadline was last logged, the
    /// touch logs the session again, with its deadlines read on the wall
    /// clock of the moment, so a restart keeps the real time left (see
    /// [`SessionStore`](SessionStore#time)).
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the log could not keep the new idle
    /// deadline (the session keeps its old one); [`SessionError::Full`] if
    /// the session could not be stored again.
    pub fn touch(&self, id: &str) -> Result<bool, SessionError> {
        let now = self.steady.now();
        let touched = self.cache.durably(|| {
            self.cache.compute(id.to_string(), |current| match current {
                Some(c) if c.value.deadline() > now.steady => {
                    let ttl = Ttl::After(self.ttl_until(now, c.value.deadline()));
                    let decision = if c.value.set_on_another_wall(now.skew(), OVERHANG) {
                        Decision::Put(c.value.clone().on_wall(now.skew()), ttl)
                    } else if self.config.idle.is_some() {
                        Decision::SetTtl(ttl)
                    } else {
                        Decision::Nothing
                    };
                    (decision, true)
                }
                _ => (Decision::Nothing, false),
            })
        })?;
        touched.map_err(|_| SessionError::Full)
    }

    /// Ends session `id`. Returns whether it was live: a session that ended
    /// while the process was down is not (`false`), and no later open brings
    /// it back, even on a wall clock set back before its deadline (the open
    /// that found it ended rewrote the log without it).
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the log could not keep the removal.
    /// Under [`Fsync::Always`](crate::persist::Fsync::Always) (the
    /// default) the session is then still live, and still valid after a
    /// restart. Under a buffering log the removal the failure met stays in
    /// memory (the session is gone) but is not yet logged: until
    /// [`sync`](Self::sync) repairs the log, a restart can bring the session
    /// back. Call `sync`, then `destroy` again. Also when `id` is not live
    /// and the log could not yet be rewritten without the sessions that
    /// ended while the process was down (the open tried, and this call
    /// tried again): on a wall clock set back, a later open could load
    /// such a session again. Call `destroy` again.
    pub fn destroy(&self, id: &str) -> Result<bool, SessionError> {
        let live = self.cache.durably(|| self.cache.remove(id))?.is_some();
        if !live {
            self.drop_lapsed()?;
        }
        Ok(live)
    }

    /// Ends every session of `user` (e.g. on a password change); returns how
    /// many were live. Visits only that user's sessions.
    ///
    /// When it returns `Ok`, no session of `user` created before the call
    /// began is live, even while other calls for `user` run at the same
    /// time: calls for one user take turns (the one that found a session
    /// counts it, the others do not).
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the log could not keep a removal: the
    /// sessions it could not remove are still live (under a buffering log,
    /// the one whose removal met the failure is gone from memory but not
    /// yet logged, as in [`destroy`](Self::destroy)); call
    /// [`sync`](Self::sync), then again. Also if the log could not yet be
    /// rewritten without the sessions that ended while the process was
    /// down, as in [`destroy`](Self::destroy): call again.
    pub fn destroy_all_for_user(&self, user: &str) -> Result<usize, SessionError> {
        // Held until every removal is settled: a concurrent call for `user`
        // finds the index empty once this one has taken the ids out, and
        // must not return before they are removed (or back in the index,
        // for it to remove).
        let turn = self.user_locks.lock(user);
        let ids = self.users.lock().remove(user).unwrap_or_default();
        let mut destroyed = 0;
        let mut failure = None;
        for id in ids {
            match self.cache.durably(|| self.cache.remove(&id)) {
                Ok(removed) => destroyed += usize::from(removed.is_some()),
                Err(e) => {
                    // Still live: back in the index, so a retry finds it. A
                    // buffering log keeps in memory the removal the failure
                    // met; that id stays out.
                    if self.cache.contains_key(&id) {
                        self.users
                            .lock()
                            .entry(user.to_string())
                            .or_default()
                            .insert(id);
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        drop(turn);
        match failure {
            Some(e) => Err(e.into()),
            None => {
                self.drop_lapsed()?;
                Ok(destroyed)
            }
        }
    }

    /// The number of live sessions. Reclaims expired ones first, so it visits
    /// every session: O(sessions).
    pub fn count(&self) -> usize {
        self.cache.purge_expired();
        self.cache.len()
    }

    /// The number of live sessions of `user`.
    pub fn count_for_user(&self, user: &str) -> usize {
        self.live_ids(user).count()
    }

    /// The ids of `user`'s live sessions.
    pub fn sessions_of(&self, user: &str) -> Vec<SessionId> {
        self.live_ids(user).map(SessionId).collect()
    }

    /// `user`'s indexed session ids that are still live (the index lock is
    /// released before the cache is asked).
    fn live_ids(&self, user: &str) -> impl Iterator<Item = String> + '_ {
        let ids: Vec<String> = self
            .users
            .lock()
            .get(user)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        ids.into_iter().filter(|id| self.cache.contains_key(id))
    }

    /// Makes every logged write durable, repairs a failed log, and reports
    /// the first log failure since the last call that no method returned
    /// (see [`Cache::sync`]).
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] with that failure.
    pub fn sync(&self) -> Result<(), SessionError> {
        Ok(self.cache.sync()?)
    }
}

fn unindex(users: &Mutex<HashMap<String, HashSet<String>>>, user: &str, id: &str) {
    let mut users = users.lock();
    if let Some(ids) = users.get_mut(user) {
        ids.remove(id);
        if ids.is_empty() {
            users.remove(user);
        }
    }
}
