//! [`SessionStore`]: sessions with random ids, absolute and idle timeouts,
//! per-user destruction, and persistence across restarts.
//!
//! Each session is one cache entry, keyed by its id. The record keeps the
//! owner, the data, and the creation time and absolute deadline as wall-clock
//! Unix milliseconds; the entry's cache TTL is the nearer of the absolute
//! deadline and the idle deadline. With [`SessionStore::open`] every write
//! goes to an append-only [`FileLog`] (by default [`Fsync::Always`]: a
//! `create` that returned is on disk), and reopening replays it: sessions,
//! their absolute deadlines and their slid idle deadlines all survive, and
//! what expired while the process was down is not loaded.
//!
//! A user → sessions index serves [`SessionStore::destroy_all_for_user`] and
//! [`SessionStore::count_for_user`]; it follows the cache through its
//! eviction listener and is rebuilt from the replayed entries on open.

use super::SharedClock;
use crate::clock::Clock;
use crate::compute::{Decision, Ttl};
use crate::error::BuildError;
use crate::listener::RemovalCause;
use crate::persist::{FileLog, Fsync, PersistError, RecoveryReport};
use crate::{Cache, CacheBuilder, Policy};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The default absolute session lifetime: 24 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);

/// The default most sessions kept: one million.
pub const DEFAULT_MAX_SESSIONS: u64 = 1_000_000;

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

/// A session id: 128 bits from the OS random number generator, as 22
/// characters of URL-safe base64 without padding.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id.
    ///
    /// # Errors
    ///
    /// [`SessionError::Random`] if the OS random number generator fails.
    pub fn random() -> Result<Self, SessionError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
        Ok(Self(base64_url(&bytes)))
    }

    /// The id as text (what goes in a cookie).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    /// Shows only a prefix: ids are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.get(..4).unwrap_or("");
        write!(f, "SessionId({shown}…)")
    }
}

/// URL-safe base64 (RFC 4648 §5) without padding.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let sextet = (n >> (18 - 6 * i)) & 0x3F;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// One session: its owner, its data and its deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// How a [`SessionStore`] behaves; start from `SessionConfig::default()`.
///
/// ```
/// use shardcache::adapters::SessionConfig;
/// use shardcache::persist::Fsync;
/// use std::time::Duration;
/// let config = SessionConfig::default()
///     .absolute_timeout(Duration::from_secs(7 * 86_400))
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .fsync(Fsync::EverySecond);
/// # let _ = config;
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionConfig {
    absolute: Duration,
    idle: Option<Duration>,
    max_sessions: u64,
    fsync: Fsync,
    clock: SharedClock,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            absolute: DEFAULT_TTL,
            idle: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            fsync: Fsync::Always,
            clock: SharedClock::system(),
        }
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("absolute_timeout", &self.absolute)
            .field("idle_timeout", &self.idle)
            .field("max_sessions", &self.max_sessions)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// A session ends this long after creation, however active (default
    /// [`DEFAULT_TTL`], 24 h).
    pub fn absolute_timeout(mut self, ttl: Duration) -> Self {
        self.absolute = ttl;
        self
    }

    /// A session also ends after this long without a [`SessionStore::touch`]
    /// (sliding expiry). Unset by default.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// The most sessions kept (default [`DEFAULT_MAX_SESSIONS`]); past it the
    /// least recently used are evicted.
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = max;
        self
    }

    /// How [`SessionStore::open`]'s log syncs (default [`Fsync::Always`]).
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// The time source (a [`MockClock`](crate::MockClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock(Arc::new(clock));
        self
    }

    fn validate(&self) -> Result<(), BuildError> {
        let mut b = Cache::<u8, u8>::builder()
            .max_capacity(self.max_sessions)
            .time_to_live(self.absolute);
        if let Some(idle) = self.idle {
            b = b.time_to_idle(idle);
        }
        b.build().map(drop)
    }
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
/// assert_eq!(store.destroy_all_for_user("ada"), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SessionStore<T> {
    cache: Cache<String, Session<T>>,
    users: UserIndex,
    config: SessionConfig,
    recovery: Option<RecoveryReport>,
}

impl<T> Clone for SessionStore<T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            users: self.users.clone(),
            config: self.config.clone(),
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
        let (builder, users) = Self::builder(&config);
        Ok(Self {
            cache: builder.build()?,
            users,
            config,
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
        let (builder, users) = Self::builder(&config);
        let (cache, report) = builder.build_persistent(log)?;
        {
            let mut index = users.lock();
            for (id, session) in cache.iter() {
                index.entry(session.user).or_default().insert(id);
            }
        }
        Ok(Self {
            cache,
            users,
            config,
            recovery: Some(report),
        })
    }

    fn builder(config: &SessionConfig) -> (CacheBuilder<String, Session<T>>, UserIndex) {
        let users: UserIndex = Arc::default();
        let index = users.clone();
        let builder = Cache::builder()
            .max_capacity(config.max_sessions)
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

    fn now_ms(&self) -> u64 {
        self.cache.wall_clock_ms()
    }

    /// The cache TTL for a session ending absolutely at `expires_at_ms`.
    fn ttl_until(&self, expires_at_ms: u64) -> Duration {
        let absolute = Duration::from_millis(expires_at_ms.saturating_sub(self.now_ms()));
        self.config.idle.map_or(absolute, |idle| idle.min(absolute))
    }

    /// Creates a session for `user` and returns its new id.
    ///
    /// # Errors
    ///
    /// [`SessionError::Random`] if no id could be drawn;
    /// [`SessionError::Full`] if the store cannot take it (not with the
    /// default settings, which evict the least recently used session).
    pub fn create(&self, user: &str, data: T) -> Result<SessionId, SessionError> {
        let id = SessionId::random()?;
        let now = self.now_ms();
        let session = Session {
            user: user.to_string(),
            data,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(super::millis(self.config.absolute)),
        };
        // Indexed first, and checked after: a concurrent destroy_all_for_user
        // either removes the entry or makes us remove it.
        self.users
            .lock()
            .entry(user.to_string())
            .or_default()
            .insert(id.0.clone());
        let ttl = self.ttl_until(session.expires_at_ms);
        let stored = self
            .cache
            .try_insert_with_expiry(id.0.clone(), session, Some(ttl));
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
            self.cache.remove(&id.0);
        }
        Ok(id)
    }

    /// The live session `id`, without extending it (see [`touch`](Self::touch)).
    pub fn get(&self, id: &str) -> Option<Session<T>> {
        let session = self.cache.get(id)?;
        if session.expires_at_ms <= self.now_ms() {
            self.cache.remove(id);
            return None;
        }
        Some(session)
    }

    /// Replaces the data of live session `id`, keeping its deadlines.
    /// Returns false if there is no such session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Full`] if the new data could not be stored.
    pub fn update(&self, id: &str, data: T) -> Result<bool, SessionError> {
        let now = self.now_ms();
        let updated = self.cache.compute(id.to_string(), |current| match current {
            Some(c) if c.value.expires_at_ms > now => {
                let session = Session {
                    data,
                    ..c.value.clone()
                };
                (Decision::Put(session, Ttl::Keep), true)
            }
            _ => (Decision::Nothing, false),
        });
        updated.map_err(|_| SessionError::Full)
    }

    /// Records activity on session `id`: its idle deadline starts over (never
    /// past its absolute deadline). Returns false if there is no such session.
    pub fn touch(&self, id: &str) -> bool {
        let now = self.now_ms();
        let idle = self.config.idle;
        let touched = self.cache.compute(id.to_string(), |current| match current {
            Some(c) if c.value.expires_at_ms > now => {
                let absolute = Duration::from_millis(c.value.expires_at_ms - now);
                let decision = match idle {
                    Some(idle) => Decision::SetTtl(Ttl::After(idle.min(absolute))),
                    None => Decision::Nothing,
                };
                (decision, true)
            }
            _ => (Decision::Nothing, false),
        });
        touched.unwrap_or(false)
    }

    /// Ends session `id`. Returns whether it was live.
    pub fn destroy(&self, id: &str) -> bool {
        self.cache.remove(id).is_some()
    }

    /// Ends every session of `user` (e.g. on a password change); returns how
    /// many were live. Visits only that user's sessions.
    pub fn destroy_all_for_user(&self, user: &str) -> usize {
        let ids = self.users.lock().remove(user).unwrap_or_default();
        ids.iter()
            .filter(|id| self.cache.remove(*id).is_some())
            .count()
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

    /// Makes every logged write durable and reports the first log failure
    /// since the last call (writes are applied in memory even when logging
    /// them fails).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_url_matches_rfc4648_vectors() {
        // RFC 4648 §10, URL-safe alphabet, no padding.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_url(input.as_bytes()), expected);
        }
        assert_eq!(base64_url(&[0xFB, 0xFF]), "-_8");
    }

    #[test]
    fn ids_are_22_url_safe_chars_and_distinct() -> Result<(), SessionError> {
        let a = SessionId::random()?;
        let b = SessionId::random()?;
        assert_eq!(a.as_str().len(), 22);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
        Ok(())
    }
}
