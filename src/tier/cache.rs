//! [`TieredCache`]: the operations, local tier first.

use super::config::{Config, TieredCacheBuilder};
use super::error::TierError;
use super::health::Health;
use super::invalidation::{self, Generations, Push};
use super::link::{self, Link};
use crate::kv::typed::type_tag;
use crate::Cache;
use bytes::Bytes;
use redis::FromRedisValue;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// Counters of the Redis tier (local hits are in
/// [`TieredCache::local`]`().stats()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Local misses answered by Redis.
    pub remote_hits: u64,
    /// Local misses that Redis did not have either.
    pub remote_misses: u64,
    /// Operations that found Redis down, or failed or timed out on it.
    pub remote_errors: u64,
    /// Other instances' invalidations applied to the local tier.
    pub invalidations_received: u64,
    /// Deletes and invalidations queued while Redis was down.
    pub invalidations_queued: u64,
    /// Queued ones sent to Redis after it came back.
    pub invalidations_replayed: u64,
    /// Ones lost because the queue was full.
    pub invalidations_dropped: u64,
    /// Times the background task reconnected after an outage.
    pub reconnects: u64,
    /// Keys waiting in the queue now.
    pub queue_len: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    remote_hits: AtomicU64,
    remote_misses: AtomicU64,
    remote_errors: AtomicU64,
    received: AtomicU64,
    queued: AtomicU64,
    pub(crate) replayed: AtomicU64,
    dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Everything the handles and the background task share.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) local: Cache<String, Bytes>,
    pub(crate) link: Link,
    pub(crate) instance_id: u64,
    pub(crate) stats: Counters,
    gens: Generations,
    /// One lock per key whose loader is running (single flight).
    loading: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Removes a key's loader lock from [`Shared::loading`] when the last
/// waiter is done (or its future is dropped).
struct LoadSlot<'a> {
    shared: &'a Shared,
    key: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LoadSlot<'_> {
    fn drop(&mut self) {
        let mut loading = self.shared.loading.lock();
        // Clones are made under this lock: two (the map's and ours) means
        // nobody else waits, so the entry can go.
        if Arc::strong_count(&self.lock) == 2 {
            loading.remove(self.key);
        }
    }
}

impl Shared {
    pub(crate) fn remote_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.cfg.prefix.len() + key.len());
        k.push_str(&self.cfg.prefix);
        k.push_str(key);
        k
    }

    /// Another instance deleted or overwrote a key: drop our copy.
    pub(crate) fn apply_invalidation(&self, payload: &[u8]) {
        let Some((sender, key)) = invalidation::decode(payload) else {
            return;
        };
        if sender == self.instance_id {
            return;
        }
        self.gens.bump(key);
        self.local.remove(key);
        bump(&self.stats.received);
    }
}

/// Stops the background task when the last [`TieredCache`] handle goes.
struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.link.shutdown();
    }
}

/// What one Redis round trip gave.
enum Remote<T> {
    Ok(T),
    /// Redis is down, failed or timed out (now marked down).
    Down,
    /// Redis answered with an error.
    Reply(String),
}

/// A near cache: a bounded, TTL'd local [`Cache`] in front of a shared Redis,
/// kept coherent across instances by pub/sub invalidation, and serving from
/// the local tier alone while Redis is down. Cheap to clone (a handle).
///
/// Every operation is an `async fn` that needs a Tokio runtime; a local hit
/// completes without suspending. See the [module docs](super) for the policy.
#[derive(Clone)]
pub struct TieredCache {
    shared: Arc<Shared>,
    _guard: Arc<TaskGuard>,
}

impl fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("prefix", &self.shared.cfg.prefix)
            .field("instance_id", &self.shared.instance_id)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

impl TieredCache {
    /// A builder for the Redis at `url`; see [`TieredCacheBuilder`].
    pub fn builder(url: impl Into<String>) -> TieredCacheBuilder {
        TieredCacheBuilder::new(url)
    }

    pub(crate) async fn start(cfg: Config) -> Result<Self, TierError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TierError::NoRuntime);
        }
        // rustls needs a process-wide crypto provider; ring is the one we
        // build. An application that installed its own keeps it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let local = Cache::builder()
            .max_capacity(cfg.local_capacity)
            .time_to_live(cfg.local_ttl)
            .build()
            .map_err(super::TierConfigError::from)?;
        let shared = Arc::new(Shared {
            link: Link::new(cfg.queue_capacity),
            local,
            instance_id: random_id(),
            stats: Counters::default(),
            gens: Generations::new(),
            loading: parking_lot::Mutex::new(HashMap::new()),
            cfg,
        });
        let first = match link::connect(&shared).await {
            Ok(connected) => {
                let (conn, stream) = connected.into_parts();
                match link::activate(&shared, conn, true).await {
                    Ok(epoch) => Some((epoch, stream)),
                    Err(e) => {
                        shared.link.health.set_down(&e);
                        None
                    }
                }
            }
            Err(e) if e.auth => return Err(TierError::Auth(e.message)),
            Err(e) if e.tls => return Err(TierError::Tls(e.message)),
            Err(e) if shared.cfg.require_redis => {
                return Err(TierError::Connect {
                    timeout: shared.cfg.connect_timeout,
                    reason: e.message,
                })
            }
            Err(e) => {
                shared.link.health.set_down(&e.message);
                None
            }
        };
        let task = tokio::spawn(link::run(shared.clone(), first));
        shared.link.set_task(task.abort_handle());
        Ok(Self {
            _guard: Arc::new(TaskGuard(shared.clone())),
            shared,
        })
    }

    /// `Up`, or `Down` with the last error and since when.
    pub fn health(&self) -> Health {
        self.shared.link.health.snapshot()
    }

    /// The tier's counters.
    pub fn stats(&self) -> TierStats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TierStats {
            remote_hits: get(&c.remote_hits),
            remote_misses: get(&c.remote_misses),
            remote_errors: get(&c.remote_errors),
            invalidations_received: get(&c.received),
            invalidations_queued: get(&c.queued),
            invalidations_replayed: get(&c.replayed),
            invalidations_dropped: get(&c.dropped),
            reconnects: get(&c.reconnects),
            queue_len: self.shared.link.pending.lock().len() as u64,
        }
    }

    /// The prefix of this cache's keys in Redis.
    pub fn prefix(&self) -> &str {
        &self.shared.cfg.prefix
    }

    /// This instance's id in invalidation messages (random per cache).
    pub fn instance_id(&self) -> u64 {
        self.shared.instance_id
    }

    /// The local tier, for inspection and its statistics. Writing to it
    /// directly bypasses Redis and invalidation.
    pub fn local(&self) -> &Cache<String, Bytes> {
        &self.shared.local
    }

    /// Drops every local copy (Redis is untouched).
    pub fn clear_local(&self) {
        self.shared.local.clear();
    }

    /// Runs `pipe` on Redis within the op timeout; marks the tier down on
    /// a connection error or timeout. Never connects: while down it
    /// returns `Down` at once.
    async fn remote<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Remote<T> {
        let link = &self.shared.link;
        let Some((epoch, mut conn)) = link.conn() else {
            bump(&self.shared.stats.remote_errors);
            return Remote::Down;
        };
        let op_timeout = self.shared.cfg.op_timeout;
        match timeout(op_timeout, pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Remote::Ok(v),
            Ok(Err(e)) if !link::is_connection_error(&e) => Remote::Reply(e.to_string()),
            Ok(Err(e)) => {
                bump(&self.shared.stats.remote_errors);
                link.fail(epoch, &e.to_string());
                Remote::Down
            }
            Err(_) => {
                bump(&self.shared.stats.remote_errors);
                link.fail(epoch, &link::timeout_message(op_timeout));
                Remote::Down
            }
        }
    }

    /// Runs `pipe` (a write that also publishes `key`'s invalidation); if
    /// Redis is down, queues `key` for deletion on reconnect instead.
    async fn write_or_queue<T: FromRedisValue>(
        &self,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<Option<T>, TierError> {
        for _ in 0..2 {
            match self.remote::<T>(pipe).await {
                Remote::Ok(v) => return Ok(Some(v)),
                Remote::Reply(e) => return Err(TierError::Redis(e)),
                Remote::Down => match self.shared.link.enqueue(key) {
                    Some(Push::Added) => {
                        bump(&self.shared.stats.queued);
                        return Ok(None);
                    }
                    Some(Push::Duplicate) => return Ok(None),
                    Some(Push::Full) => {
                        bump(&self.shared.stats.dropped);
                        return Ok(None);
                    }
                    None => continue, // Redis came back meanwhile: send it
                },
            }
        }
        Ok(None)
    }

    fn publish(&self, pipe: &mut redis::Pipeline, key: &str) {
        pipe.cmd("PUBLISH")
            .arg(&self.shared.cfg.channel)
            .arg(invalidation::encode(self.shared.instance_id, key))
            .ignore();
    }

    fn local_ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.map_or(self.shared.cfg.local_ttl, |t| {
            t.min(self.shared.cfg.local_ttl)
        })
    }

    /// The value of `key`: from the local tier, else from Redis (filling
    /// the local tier, for at most the local TTL and never beyond Redis's own
    /// TTL). While Redis is down a local miss is `Ok(None)`.
    ///
    /// # Errors
    ///
    /// [`TierError::Redis`] if Redis answers with an error (`WRONGTYPE`).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, TierError> {
        if let Some(v) = self.shared.local.get(key) {
            return Ok(Some(v));
        }
        let generation = self.shared.gens.current(key);
        let rkey = self.shared.remote_key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&rkey).cmd("PTTL").arg(&rkey);
        match self.remote::<(Option<Vec<u8>>, i64)>(&pipe).await {
            Remote::Ok((Some(v), pttl)) => {
                bump(&self.shared.stats.remote_hits);
                let v = Bytes::from(v);
                let remote_ttl = u64::try_from(pttl).ok().map(Duration::from_millis);
                let ttl = self.local_ttl(remote_ttl);
                if !ttl.is_zero() {
                    self.shared
                        .local
                        .insert_with_ttl(key.to_string(), v.clone(), ttl);
                    if self.shared.gens.current(key) != generation {
                        // Deleted or overwritten while we read: do not keep it.
                        self.shared.local.remove(key);
                    }
                }
                Ok(Some(v))
            }
            Remote::Ok((None, _)) => {
                bump(&self.shared.stats.remote_misses);
                Ok(None)
            }
            Remote::Down => Ok(None),
            Remote::Reply(e) => Err(TierError::Redis(e)),
        }
    }

    /// The value of `key`, or the loader's: local tier, then Redis, then
    /// `loader`, whose value is stored in both tiers with `ttl`. Concurrent
    /// misses of one key in this instance run one loader; the others wait
    /// for its value (if it fails, the next waiter runs its own).
    ///
    /// # Errors
    ///
    /// The loader's error, or a [`TierError`] (converted into `E`) as for
    /// [`get`](Self::get) and [`set`](Self::set).
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: From<TierError>,
    {
        if let Some(v) = self.get(key).await? {
            return Ok(v);
        }
        let lock = self
            .shared
            .loading
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone();
        let slot = LoadSlot {
            shared: &self.shared,
            key,
            lock,
        };
        let _turn = slot.lock.lock().await;
        // A loader that ran while we waited has filled the local tier.
        if let Some(v) = self.shared.local.get(key) {
            return Ok(v);
        }
        let v = loader().await?;
        self.set(key, v.clone(), ttl).await?;
        Ok(v)
    }

    /// Sets `key` in Redis (with `ttl`, else the remote TTL) and in the local
    /// tier (with the shorter of `ttl` and the local TTL), and tells the
    /// other instances to drop their copies. While Redis is down the value
    /// is kept locally only and the key is queued for deletion in Redis on
    /// reconnect, so no instance serves the value this write replaced.
    ///
    /// # Errors
    ///
    /// [`TierError::Redis`] for a TTL under a millisecond or a Redis error reply.
    pub async fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), TierError> {
        let value = value.into();
        let remote_ttl = ttl.or(self.shared.cfg.remote_ttl);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.shared.remote_key(key))
            .arg(&value[..]);
        if let Some(t) = remote_ttl {
            let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 {
                return Err(TierError::Redis(
                    "ERR invalid expire time in 'set' command".into(),
                ));
            }
            pipe.arg("PX").arg(ms);
        }
        pipe.ignore();
        self.publish(&mut pipe, key);
        self.shared.gens.bump(key);
        let generation = self.shared.gens.current(key);
        self.write_or_queue::<()>(key, &pipe).await?;
        self.shared
            .local
            .insert_with_ttl(key.to_string(), value, self.local_ttl(ttl));
        if self.shared.gens.current(key) != generation {
            // Another write to this key landed meanwhile; Redis has the last word.
            self.shared.local.remove(key);
        }
        Ok(())
    }

    /// Deletes `key` from both tiers and from the other instances' local
    /// tiers. True if it existed (in Redis; in the local tier while down).
    /// While Redis is down the delete is queued and replayed on reconnect.
    ///
    /// # Errors
    ///
    /// [`TierError::Redis`] for a Redis error reply.
    pub async fn del(&self, key: &str) -> Result<bool, TierError> {
        self.shared.gens.bump(key);
        let local = self.shared.local.remove(key).is_some();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.shared.remote_key(key));
        self.publish(&mut pipe, key);
        Ok(match self.write_or_queue::<(i64,)>(key, &pipe).await? {
            Some((n,)) => n > 0,
            None => local,
        })
    }

    /// Sets `key`'s TTL (`PEXPIRE`; zero deletes it), shortening the local
    /// copy's to match; other instances drop their copies. True if the key
    /// exists. While Redis is down: applied locally and the key is queued for
    /// deletion in Redis on reconnect.
    ///
    /// # Errors
    ///
    /// [`TierError::Redis`] for a Redis error reply.
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, TierError> {
        self.shared.gens.bump(key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("PEXPIRE").arg(self.shared.remote_key(key)).arg(ms);
        self.publish(&mut pipe, key);
        let remote = self.write_or_queue::<(i64,)>(key, &pipe).await?;
        let local = if ms == 0 {
            self.shared.local.remove(key).is_some()
        } else {
            self.shared
                .local
                .set_ttl(key, Some(self.local_ttl(Some(ttl))))
        };
        Ok(match remote {
            Some((n,)) => {
                if n == 0 {
                    self.shared.local.remove(key);
                }
                n > 0
            }
            None => local,
        })
    }

    /// `key`'s remaining time to live: `None` if it does not exist,
    /// `Some(None)` if it never expires. From Redis; while Redis is down,
    /// from the local copy (whose TTL is capped by the local TTL).
    ///
    /// # Errors
    ///
    /// [`TierError::Redis`] for a Redis error reply.
    pub async fn ttl(&self, key: &str) -> Result<Option<Option<Duration>>, TierError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PTTL").arg(self.shared.remote_key(key));
        match self.remote::<(i64,)>(&pipe).await {
            Remote::Ok((-2,)) => Ok(None),
            Remote::Ok((n,)) => Ok(Some(u64::try_from(n).ok().map(Duration::from_millis))),
            Remote::Down => Ok(self.shared.local.ttl(key)),
            Remote::Reply(e) => Err(TierError::Redis(e)),
        }
    }

    /// Adds `delta` to the integer at `key` in Redis (`INCRBY`) and drops
    /// the local copies. A shared counter cannot be served locally.
    ///
    /// # Errors
    ///
    /// [`TierError::Unavailable`] while Redis is down; [`TierError::Redis`]
    /// if the value is not an integer or would overflow.
    pub async fn incr_by(&self, key: &str, delta: i64) -> Result<i64, TierError> {
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY")
            .arg(self.shared.remote_key(key))
            .arg(delta);
        self.publish(&mut pipe, key);
        self.shared.gens.bump(key);
        self.shared.local.remove(key);
        match self.remote::<(i64,)>(&pipe).await {
            Remote::Ok((n,)) => Ok(n),
            Remote::Reply(e) => Err(TierError::Redis(e)),
            Remote::Down => Err(TierError::Unavailable(match self.health() {
                Health::Down { last_error, .. } => last_error,
                Health::Up => "Redis failed during the operation".into(),
            })),
        }
    }

    /// `incr_by(key, 1)`.
    ///
    /// # Errors
    ///
    /// As [`incr_by`](Self::incr_by).
    pub async fn incr(&self, key: &str) -> Result<i64, TierError> {
        self.incr_by(key, 1).await
    }

    /// Stores `value` (postcard-encoded behind an 8-byte type tag, the same
    /// encoding as [`KvStore::set_as`](crate::kv::KvStore::set_as)) as [`set`](Self::set) does.
    ///
    /// # Errors
    ///
    /// [`TierError::Codec`] if serde fails; otherwise as [`set`](Self::set).
    pub async fn set_as<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), TierError> {
        let buf = postcard::to_extend(value, type_tag::<T>().to_vec())
            .map_err(|e| TierError::Codec(e.to_string()))?;
        self.set(key, buf, ttl).await
    }

    /// Reads a value stored by [`set_as`](Self::set_as) (here or by a
    /// `KvStore`); `None` if missing.
    ///
    /// # Errors
    ///
    /// [`TierError::WrongType`] if it was stored as another type,
    /// [`TierError::Codec`] if it does not decode; otherwise as [`get`](Self::get).
    pub async fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TierError> {
        let Some(raw) = self.get(key).await? else {
            return Ok(None);
        };
        let payload = raw
            .strip_prefix(&type_tag::<T>()[..])
            .ok_or(TierError::WrongType {
                expected: std::any::type_name::<T>(),
            })?;
        postcard::from_bytes(payload)
            .map(Some)
            .map_err(|e| TierError::Codec(e.to_string()))
    }
}
