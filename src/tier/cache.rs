//! [`TieredCache`]: the operations, local tier first.
//!
//! Calls the local [`Cache`] (its single flight included), the link to
//! Redis and the invalidation channel, through the state in `shared.rs`;
//! starts the background task (`task.rs`).

use super::config::{Config, TieredCacheBuilder};
use super::error::TierError;
use super::health::{DownReason, Health, Verdict};
use super::invalidation::{self, Generations, Push};
use super::link::{self, Link};
use super::shared::Shared;
use super::stats::{bump, Counters, TierStats};
use super::task::{self, TaskGuard};
use crate::Cache;
use bytes::Bytes;
use redis::FromRedisValue;
use std::fmt;
use std::future::Future;

use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// What one Redis round trip gave.
enum Remote<T> {
    Ok(T),
    /// The tier is down: nothing was sent.
    Down,
    /// Sent, but the connection failed or the call timed out: its outcome
    /// in Redis is unknown.
    Failed,
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
            link: Link::new(cfg.queue_capacity, cfg.liveness_bound),
            local,
            instance_id: invalidation::random_id(),
            stats: Counters::default(),
            gens: Generations::new(),
            cfg,
        });
        let first = match task::connect(&shared).await {
            Ok(connected) => {
                let (conn, client, stream) = connected.into_parts();
                match task::activate(&shared, conn, client, true).await {
                    Ok(epoch) => Some((epoch, stream)),
                    Err(e) => {
                        shared.link.health.set_down(DownReason::NotConnected, &e);
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
                shared
                    .link
                    .health
                    .set_down(DownReason::NotConnected, &e.message);
                None
            }
        };
        let task = tokio::spawn(task::run(shared.clone(), first));
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

    /// Why the tier last went from `Up` to `Down`, and the error at that
    /// moment; `None` if it never has (a cache built while Redis was
    /// unreachable starts down without a transition).
    pub fn last_down(&self) -> Option<(DownReason, String)> {
        self.shared.link.health.last_down()
    }

    /// The tier's counters.
    pub fn stats(&self) -> TierStats {
        let (downs, reason, queued) = self.shared.link.figures();
        self.shared.stats.snapshot(downs, reason, queued)
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
        self.shared.clear_local();
    }

    /// Runs `pipe` on Redis within the op timeout; marks the tier down on
    /// a connection error, counts a timeout towards going down. Never
    /// connects: while down it returns `Down` at once.
    async fn remote<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Remote<T> {
        let link = &self.shared.link;
        let Some((epoch, mut conn)) = link.conn() else {
            bump(&self.shared.stats.remote_errors);
            return Remote::Down;
        };
        let op_timeout = self.shared.cfg.op_timeout;
        match timeout(op_timeout, pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                link.health.record_success();
                Remote::Ok(v)
            }
            Ok(Err(e)) if !link::is_connection_error(&e) => Remote::Reply(e.to_string()),
            Ok(Err(e)) if !e.is_timeout() => {
                bump(&self.shared.stats.remote_errors);
                link.fail(epoch, DownReason::ConnectionLost, &e.to_string());
                Remote::Failed
            }
            // Ours, or the client's own response timeout (seen first when
            // this task was not scheduled for longer than it).
            Ok(Err(_)) | Err(_) => {
                bump(&self.shared.stats.remote_errors);
                bump(&self.shared.stats.timeouts);
                let _: Verdict = link.timed_out(&self.shared.cfg, epoch);
                Remote::Failed
            }
        }
    }

    /// Runs `pipe` (a write that also publishes `key`'s invalidation). If
    /// Redis is down, or the call failed and its outcome is unknown, queues
    /// `key` for a delete and invalidation in Redis (replayed on reconnect,
    /// or at once by the background task if the tier is still up) and
    /// returns `Ok(None)` (degraded mode).
    ///
    /// # Errors
    ///
    /// [`TierError::Unavailable`] if the queue is full, or if the call
    /// timed out while the tier stays up: the local copy is dropped and the
    /// caller must not keep the write locally.
    async fn write_or_queue<T: FromRedisValue>(
        &self,
        key: &str,
        pipe: &redis::Pipeline,
    ) -> Result<Option<T>, TierError> {
        for _ in 0..2 {
            let (push, sent) = match self.remote::<T>(pipe).await {
                Remote::Ok(v) => return Ok(Some(v)),
                Remote::Reply(e) => return Err(TierError::Redis(e)),
                Remote::Failed => (self.shared.link.enqueue(key, true), true),
                Remote::Down => (self.shared.link.enqueue(key, false), false),
            };
            if matches!(push, Some(Push::Added)) {
                bump(&self.shared.stats.queued);
            }
            match push {
                Some(Push::Added | Push::Duplicate) if sent && self.shared.link.health.is_up() => {
                    // The call timed out but the tier is still up: other
                    // instances may not hear of this write until its delete
                    // is replayed, so it is not acknowledged.
                    self.shared.drop_local(key);
                    return Err(TierError::Unavailable(format!(
                        "Redis did not answer within {:?}: the write's outcome is unknown; \
                         the key is being deleted in Redis and on every instance",
                        self.shared.cfg.op_timeout
                    )));
                }
                Some(Push::Added | Push::Duplicate) => return Ok(None),
                Some(Push::Full) => {
                    bump(&self.shared.stats.dropped);
                    self.shared.drop_local(key);
                    return Err(TierError::Unavailable(format!(
                        "Redis is unreachable and the replay queue is full ({} keys): the write was not applied",
                        self.shared.cfg.queue_capacity
                    )));
                }
                None => continue, // Redis came back meanwhile: send it
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
        if let Some(v) = self.shared.local_get(key) {
            return Ok(Some(v));
        }
        if self.shared.link.pending.lock().contains(key) {
            // A write of ours is queued as a delete: what Redis holds may be
            // older than it.
            return Ok(None);
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
            Remote::Down | Remote::Failed => Ok(None),
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
        let mut loader = Some(loader);
        let mut failed = None;
        loop {
            let load = async {
                let v = match loader.take()?().await {
                    Ok(v) => v,
                    Err(e) => {
                        failed = Some(e);
                        return None;
                    }
                };
                match self.set(key, v.clone(), ttl).await {
                    // The loaded value is the truth; it just could not be cached.
                    Ok(()) | Err(TierError::Unavailable(_)) => Some(v),
                    Err(e) => {
                        failed = Some(e.into());
                        None
                    }
                }
            };
            // A loader that ran while we waited has filled the local tier.
            let ready = || self.shared.local_get(key);
            if let Some(v) = self
                .shared
                .local
                .load_once_async(key.to_string(), ready, load)
                .await
            {
                return Ok(v);
            }
            if let Some(e) = failed.take() {
                return Err(e);
            }
            if loader.is_none() {
                // Unreachable: a caller whose loader ran has a value or an error.
                return Err(TierError::Unavailable("loader did not finish".into()).into());
            }
        }
    }

    /// Sets `key` in Redis (with `ttl`, else the remote TTL) and in the local
    /// tier (with the shorter of `ttl` and the local TTL), and tells the
    /// other instances to drop their copies. While Redis is down the value
    /// is kept locally only and the key is queued for deletion in Redis on
    /// reconnect, so no instance serves the value this write replaced once
    /// this one has reconnected.
    ///
    /// # Errors
    ///
    /// [`TierError::Redis`] for a TTL under a millisecond or a Redis error
    /// reply; [`TierError::Unavailable`] if Redis is unreachable and the
    /// replay queue is full (the write is not applied anywhere), or if the
    /// call timed out while the tier stays up (its outcome is unknown: the
    /// key is deleted in Redis and on every instance as soon as Redis
    /// answers, and not kept locally).
    pub async fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), TierError> {
        let value = value.into();
        let remote_ttl = ttl.or(self.shared.cfg.remote_ttl);
        // Checked before anything is sent or kept, as Redis would refuse
        // it, so that a `Down` tier refuses it too.
        let px = match remote_ttl {
            Some(t) => Some(super::config::remote_ms(t).ok_or_else(|| {
                TierError::Redis("ERR invalid expire time in 'set' command".into())
            })?),
            None => None,
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.shared.remote_key(key))
            .arg(&value[..]);
        if let Some(ms) = px {
            pipe.arg("PX").arg(ms);
        }
        pipe.ignore();
        self.publish(&mut pipe, key);
        self.shared.gens.bump(key);
        let generation = self.shared.gens.current(key);
        let written = self.write_or_queue::<()>(key, &pipe).await;
        // Every write moves its key's generation when it starts and again
        // when it ends (see `Generations`), so a write of this key that was
        // under way when this one started, and that Redis may have applied
        // after it, is seen here if it ended first, or drops this copy when
        // it ends.
        self.shared.gens.bump(key);
        written?;
        self.shared
            .local
            .insert_with_ttl(key.to_string(), value, self.local_ttl(ttl));
        if self.shared.gens.current(key) != generation.wrapping_add(1) {
            // Another write to this key overlapped this one; Redis has the
            // last word.
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
    /// [`TierError::Redis`] for a Redis error reply;
    /// [`TierError::Unavailable`] if Redis is unreachable and the replay
    /// queue is full (the local copy is dropped, Redis and the other
    /// instances are not told), or if the call timed out while the tier
    /// stays up (the delete is replayed as soon as Redis answers).
    pub async fn del(&self, key: &str) -> Result<bool, TierError> {
        self.shared.gens.bump(key);
        let local = self.shared.local.remove(key).is_some();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.shared.remote_key(key));
        self.publish(&mut pipe, key);
        let deleted = self.write_or_queue::<(i64,)>(key, &pipe).await;
        // A `set` of this key that overlapped this delete may have put its
        // copy back meanwhile, and Redis may have applied the delete last.
        self.shared.drop_local(key);
        Ok(match deleted? {
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
    /// [`TierError::Redis`] for a Redis error reply;
    /// [`TierError::Unavailable`] as for [`del`](Self::del).
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, TierError> {
        // Zero deletes; beyond the longest TTL, Redis would refuse it (and
        // so does a `Down` tier).
        let ms = match super::config::remote_ms(ttl) {
            Some(ms) => ms,
            None if ttl.as_millis() == 0 => 0,
            None => {
                return Err(TierError::Redis(
                    "ERR invalid expire time in 'pexpire' command".into(),
                ))
            }
        };
        self.shared.gens.bump(key);
        let mut pipe = redis::pipe();
        pipe.cmd("PEXPIRE").arg(self.shared.remote_key(key)).arg(ms);
        self.publish(&mut pipe, key);
        let remote = self.write_or_queue::<(i64,)>(key, &pipe).await;
        // The write's end (see `set`).
        self.shared.gens.bump(key);
        let remote = remote?;
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
            Remote::Down | Remote::Failed => Ok(self.shared.local.ttl(key)),
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
        let result = self.remote::<(i64,)>(&pipe).await;
        // The write's end (see `set`): a copy an overlapping `set` kept goes.
        self.shared.drop_local(key);
        match result {
            Remote::Ok((n,)) => Ok(n),
            Remote::Reply(e) => Err(TierError::Redis(e)),
            Remote::Down | Remote::Failed => Err(TierError::Unavailable(match self.health() {
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
}
