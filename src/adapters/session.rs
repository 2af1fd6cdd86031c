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
//! The sessions the cache drops itself (evicted at `max_sessions`, or
//! expired and reclaimed) are logged as removed too, from the same
//! listener, so that no replay loads them again (`gone.rs`).
//!
//! Deadlines are decided on a steady clock (the wall clock read when the
//! store is made, advanced by the monotonic clock), so wall-clock steps
//! neither end nor extend sessions; [`SessionStore`]'s docs describe it.

mod config;
mod destroy;
mod gone;
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
use gone::Gone;
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
///
/// # Evictions and expiries are logged
///
/// A session the store drops itself (evicted to make room at
/// [`max_sessions`](SessionConfig::max_sessions), or expired and reclaimed
/// from memory) is logged as removed, as Redis logs its evictions and
/// expirations as `DEL`s: no later open brings it back, whether or not it
/// is destroyed, nor on a wall clock set back before its deadline. The
/// reopened store holds the sessions the store held, no more and no fewer.
/// An eviction's removal is logged just before the record of the `create`
/// that made it, in the same fsync: a crash between them leaves the evicted
/// session removed and the new one unacknowledged. A `create` that fails
/// (its log failed) leaves its evicted session gone from memory but,
/// until the log is repaired, possibly not from the log: a crash then
/// brings back the state before that `create`.
///
/// This costs one log record per eviction or expiry (about 40 bytes; the
/// log's automatic rewrites drop them with the rest); under
/// [`Fsync::Always`](crate::persist::Fsync::Always) a call that reclaims
/// expired sessions waits for one more fsync for all of them.
/// [`destroy`](Self::destroy) of an id that is not live also logs a
/// removal (of a well-formed id only: see there).
pub struct SessionStore<T> {
    cache: Cache<String, Session<T>>,
    users: UserIndex,
    /// Held by `destroy_all_for_user` for its whole call.
    user_locks: UserLocks,
    /// Whether the log may still hold sessions that the replay found ended
    /// (see `reopen.rs`).
    lapsed: Arc<AtomicBool>,
    /// Logs the sessions the cache drops itself (see `gone.rs`).
    gone: Arc<Gone<T>>,
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
            gone: self.gone.clone(),
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
        let (builder, users, gone) = Self::builder(&config);
        let cache = builder.build()?;
        gone.attach(&cache);
        Ok(Self {
            cache,
            users,
            user_locks: UserLocks::new(),
            lapsed: Arc::default(),
            gone,
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
        let (builder, users, gone) = Self::builder(&config);
        let (cache, report) = builder.build_persistent(log)?;
        // The journal is attached: from now on the sessions the cache drops
        // are logged.
        gone.attach(&cache);
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
        // Sessions the log holds that the replay did not load (ended, or
        // over `max_sessions`): rewritten out of the log.
        let lapsed = report.expired > 0 || gone.dropped_early();
        let store = Self {
            cache,
            users,
            user_locks: UserLocks::new(),
            lapsed: Arc::new(AtomicBool::new(lapsed)),
            gone,
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

    fn builder(
        config: &SessionConfig,
    ) -> (CacheBuilder<String, Session<T>>, UserIndex, Arc<Gone<T>>) {
        let users: UserIndex = Arc::default();
        let index = users.clone();
        let gone = Arc::new(Gone::new());
        let dropped = gone.clone();
        let builder = Cache::builder()
            .log_schema_from(config.log_name::<T>(), config.previous_fingerprints::<T>())
            .max_capacity(config.max_sessions)
            // One budget for all shards: a live session is evicted only when
            // `max_sessions` are held, not when its shard's share fills.
            .shared_capacity()
            .expired_first()
            .policy(Policy::lru())
            .clock(config.clock.clone())
            // The log records every session that leaves (see `gone.rs`);
            // an eviction's removal goes before the write that made it.
            .log_evictions()
            .replay_folded()
            .eviction_listener(move |id: String, session: Session<T>, cause| {
                if cause != RemovalCause::Replaced {
                    unindex(&index, &session.user, &id);
                }
                dropped.left(&id, cause);
            });
        (builder, users, gone)
    }

    /// Waits for the removals logged for the sessions the cache dropped
    /// (see `gone.rs`): a call that may have made it drop some calls this
    /// before it returns.
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the log could not keep them.
    fn settle_gone(&self) -> Result<(), SessionError> {
        Ok(self.gone.settle(&self.cache)?)
    }

    /// [`settle_gone`](Self::settle_gone) for a call that returns no error:
    /// a failure goes to the next [`sync`](Self::sync).
    fn settle_gone_or_report(&self) {
        if let Err(e) = self.gone.settle(&self.cache) {
            self.cache.report(e);
        }
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
    /// not exist (the session it evicted, if any, is gone from memory, and
    /// a crash before the log is repaired may bring it back: the log holds
    /// what was durable before this call); also if the log could not keep
    /// the removal of an expired session this call reclaimed (see
    /// [`SessionStore`](SessionStore#evictions-and-expiries-are-logged)):
    /// the new session is then removed again as far as the failed log lets
    /// it, and one it could not remove stays in memory until it ends, its
    /// id never returned (in no user's index until a restart).
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
        let stored = self
            .cache
            .durably(|| {
                self.cache
                    .try_insert_with_expiry(id.0.clone(), session, Some(ttl))
            })
            .map_err(SessionError::from)
            .and_then(|stored| self.settle_gone().map(|()| stored));
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                unindex(&self.users, user, &id.0);
                // Stored if only a removal of a session it reclaimed failed.
                if self.cache.contains_key(&id.0) {
                    let _ = self.cache.durably(|| self.cache.remove(&id.0));
                }
                return Err(e);
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
        let Some(session) = self.cache.get(id) else {
            // An ended session the cache has not reclaimed yet is reclaimed
            // now, its removal logged: once reported ended, it stays ended
            // at a later open, even on a wall clock set back. (An id no
            // session could have is left alone.)
            if SessionId::is_well_formed(id) {
                let _ = self.cache.durably(|| self.cache.remove(id));
                self.settle_gone_or_report();
            }
            return None;
        };
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
    /// keeps its old data), or could not keep the removal of a session this
    /// call found expired and reclaimed (the update itself may then stand).
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
        self.settle_gone()?;
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
    /// deadline (the session keeps its old one), or the removal of a
    /// session this call found expired and reclaimed (the touch itself may
    /// then stand); [`SessionError::Full`] if the session could not be
    /// stored again.
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
        self.settle_gone()?;
        touched.map_err(|_| SessionError::Full)
    }

    /// The number of live sessions. Reclaims expired ones first, so it visits
    /// every session: O(sessions).
    pub fn count(&self) -> usize {
        self.cache.purge_expired();
        self.settle_gone_or_report();
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
