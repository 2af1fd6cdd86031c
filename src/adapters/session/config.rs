//! [`SessionConfig`]: how a [`SessionStore`](super::SessionStore) behaves.

use super::{Session, DEFAULT_MAX_SESSIONS, DEFAULT_TTL};
use crate::adapters::SharedClock;
use crate::builder::BuildError;
use crate::clock::Clock;
use crate::persist::{fingerprint, schema_fingerprint, type_path_fingerprint, Fsync};
use crate::Cache;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The session store's part of a session log's schema: the layout of its
/// records (a session id, then `Session`'s four logged fields).
const SESSION_SCHEMA: &str = "shardcache/session/v1";

/// How a [`SessionStore`](super::SessionStore) behaves; start from `SessionConfig::default()`.
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
    pub(super) absolute: Duration,
    pub(super) idle: Option<Duration>,
    pub(super) max_sessions: u64,
    pub(super) fsync: Fsync,
    pub(super) clock: SharedClock,
    /// The declared name of the session data's type (`log_schema`).
    data_schema: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            absolute: DEFAULT_TTL,
            idle: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            fsync: Fsync::Always,
            clock: SharedClock::system(),
            data_schema: None,
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
            .field("log_schema", &self.data_schema)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// A session ends this long after creation, however active (default
    /// 24 h).
    pub fn absolute_timeout(mut self, ttl: Duration) -> Self {
        self.absolute = ttl;
        self
    }

    /// A session also ends after this long without a [`SessionStore::touch`](super::SessionStore::touch)
    /// (sliding expiry). Unset by default.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// The most sessions kept (default 1,000,000), counted over the whole
    /// store: no live session is evicted while fewer are live (sessions
    /// that have ended give up their place first, wherever they are). Past it, a
    /// new session evicts a least recently used one (the least recently
    /// used of the shard the new id hashes to, so roughly, not exactly, the
    /// least recently used overall).
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = max;
        self
    }

    /// How [`SessionStore::open`](super::SessionStore::open)'s log syncs (default [`Fsync::Always`]).
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// The time source (a [`MockClock`](crate::MockClock) in tests): its
    /// monotonic clock measures the timeouts, its wall clock dates what is
    /// logged and shown.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock(Arc::new(clock));
        self
    }

    /// Names the session data's type `T` in the log (`"cart/v1"`), so the
    /// log is identified by that name and not by `T`'s Rust path: `T` may
    /// then be renamed or moved, and a compiler that prints type names
    /// differently does not make the log refuse to open. Without it, the
    /// log is identified by the store's own name and `T`'s path
    /// ([`std::any::type_name`]). Change the name when `T`'s encoding
    /// changes, so that an old log is refused rather than misread. A log
    /// written without it (or by a release that identified session logs
    /// by type paths alone) opens under it, and takes the new identity as
    /// it opens (see [`CacheBuilder::log_schema`](crate::CacheBuilder::log_schema)).
    /// The store fails to open on an empty name.
    ///
    /// ```
    /// use shardcache::adapters::{SessionConfig, SessionStore};
    /// let dir = tempfile::tempdir()?;
    /// let config = SessionConfig::default().log_schema("cart/v1");
    /// let store: SessionStore<Vec<String>> = SessionStore::open(dir.path().join("s.log"), config)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_schema(mut self, name: impl Into<String>) -> Self {
        self.data_schema = Some(name.into());
        self
    }

    /// The log schema a store of `T` declares: the store's record layout
    /// and the data's name (declared, or `T`'s path).
    pub(super) fn log_name<T>(&self) -> String {
        let data = self
            .data_schema
            .clone()
            .unwrap_or_else(|| std::any::type_name::<T>().to_owned());
        Self::named(&data)
    }

    fn named(data: &str) -> String {
        format!("{SESSION_SCHEMA}\u{0}{data}")
    }

    /// What session logs of `T` were identified by before: the type paths
    /// of the session record (as this build and as release 0.1 print them),
    /// and the store's name with `T`'s path (no data name declared).
    pub(super) fn previous_fingerprints<T>(&self) -> Vec<u64> {
        let data = std::any::type_name::<T>();
        vec![
            fingerprint::<String, Session<T>>(),
            type_path_fingerprint(
                "alloc::string::String",
                &format!("shardcache::adapters::session::Session<{data}>"),
            ),
            schema_fingerprint(&Self::named(data)),
        ]
    }

    pub(super) fn validate(&self) -> Result<(), BuildError> {
        let mut b = Cache::<u8, u8>::builder()
            .max_capacity(self.max_sessions)
            .time_to_live(self.absolute);
        if let Some(idle) = self.idle {
            b = b.time_to_idle(idle);
        }
        if self.data_schema.as_ref().is_some_and(String::is_empty) {
            return Err(BuildError::EmptyLogSchema);
        }
        b.build().map(drop)
    }
}
