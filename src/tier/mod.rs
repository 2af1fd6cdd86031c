//! The Redis tier (feature `redis`): [`TieredCache`], shardcache as a near
//! cache in front of a shared Redis.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shardcache::tier::TierError> {
//! use shardcache::tier::TieredCache;
//! use std::time::Duration;
//!
//! let perms = TieredCache::builder("redis://127.0.0.1:6379/0")
//!     .prefix("perm:")
//!     .local_capacity(100_000)
//!     .local_ttl(Duration::from_secs(30))
//!     .remote_ttl(Duration::from_secs(300))
//!     .build()
//!     .await?;
//! perms.set_as("resource:boxer:user123:boxer456", &true, None).await?;
//! assert_eq!(perms.get_as::<bool>("resource:boxer:user123:boxer456").await?, Some(true));
//! perms.del("resource:boxer:user123:boxer456").await?; // every instance drops it
//! # Ok(()) }
//! ```
//!
//! ## Reads and writes
//!
//! A read looks in the local tier (a [`Cache`](crate::Cache), nanoseconds,
//! no I/O), then in Redis (filling the local tier for at most
//! `local_ttl`, never longer than the key's TTL in Redis), then, with
//! [`TieredCache::get_or_load`], calls the loader and stores its value in
//! both tiers. Concurrent misses of one key run one loader: the local
//! cache's own single flight (the one behind
//! [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with)), and
//! waiters are handed the leader's value; a failed load is the leader's
//! error alone, and the next caller loads for itself. A write goes to Redis, then to the local tier, and publishes
//! the key on `shardcache:inv:<prefix>`; every other instance with that
//! prefix drops its local copy when the message arrives (its own messages
//! carry its instance id and are ignored). A read racing a delete cannot
//! leave the deleted value behind: a fill is undone if an invalidation of its
//! key arrived while it was in flight.
//!
//! ## Why async, on Tokio
//!
//! Our users are Tokio services. A blocking API would park a runtime worker
//! for up to the op timeout on every remote call (or need `spawn_blocking`
//! and a thread hop on every miss); the async API runs remote calls on one
//! multiplexed connection per cache and costs nothing extra on a local hit:
//! `get` returns without suspending when the local tier has the key. The
//! tier needs a Tokio runtime (`build()` spawns its background task; every
//! remote call is bounded with `tokio::time::timeout`).
//!
//! ## The invariant, and how it is kept
//!
//! An instance that says [`Health::Up`] never serves a local entry older
//! than a write acknowledged more than the liveness bound (default 1 s,
//! [`TieredCacheBuilder::liveness_bound`]) earlier, on any instance that
//! was up when it acknowledged it. (A write acknowledged in degraded mode
//! reaches the others when its instance reconnects: see below.)
//!
//! * **A silent subscriber is a dead one.** Every `heartbeat` (250 ms) the
//!   instance publishes a heartbeat carrying its send time on its own
//!   invalidation channel. Redis delivers a channel's messages in order, so
//!   when the heartbeat comes back every invalidation of a write
//!   acknowledged before it was sent has been applied. A local entry is
//!   served only if such a heartbeat was sent within the bound; otherwise
//!   the read goes to Redis ([`TierStats::local_hits_skipped`]). Once twice
//!   the bound has passed with no heartbeat back, the instance clears its
//!   local tier and reconnects ([`DownReason::ChannelSilent`]). An
//!   instance that goes down (timeouts, a lost connection) while its
//!   entries are refused this way clears them too: degraded mode does not
//!   serve them again.
//! * **Overlapping writes of one key.** Two writes of a key from one
//!   instance that overlap may reach Redis in either order; the local copy
//!   is kept only by a write that no other write of the key overlapped.
//! * **An abandoned connection is closed in Redis.** On reconnect, before
//!   it replays anything, the tier closes its previous data connection in
//!   Redis (`CLIENT KILL ID`, only if the server has not restarted since),
//!   so a write that timed out on it and was held in a partition cannot
//!   land after the replayed delete. (A server or ACL without `CLIENT ID`,
//!   `INFO` or `CLIENT KILL` leaves that window open.)
//! * **Replay, then clear, then Up.** On reconnect the queued writes are
//!   replayed as deletes (with their invalidations); then, under the
//!   queue's lock, the local tier is cleared and the tier marked Up. A
//!   write made during recovery is queued and replayed, or (if it raced the
//!   clear) not kept locally.
//! * **A full queue refuses.** A write that cannot be queued is refused
//!   with [`TierError::Unavailable`]: nothing is kept locally, so no
//!   invalidation is ever silently lost.
//!
//! ## When Redis is down (degraded mode)
//!
//! * Every remote call is bounded by `op_timeout` (default 50 ms). A broken
//!   connection marks the tier [`Health::Down`] at once; timeouts do so only
//!   after `timeouts_to_down` (3) in a row, with no success between them,
//!   spanning at least the `outage_window` (500 ms; a timed-out call wakes
//!   the background task, which probes Redis at once). A write that times
//!   out while the tier stays up fails with [`TierError::Unavailable`] (its
//!   outcome is unknown): it is not kept locally, and its key is queued as
//!   a delete and replayed as soon as Redis answers, so it leaves no stale
//!   value behind. While down no operation touches Redis (none pays a
//!   connect timeout) until the background task has reconnected, with
//!   backoff from 25 ms doubling to 1 s. [`Health::Down`] says why
//!   ([`DownReason`]).
//! * Reads are served by the local tier (its entries may have missed
//!   invalidations: staleness is bounded by `local_ttl`); a local miss is
//!   `Ok(None)` (the caller falls back to its database, or `get_or_load`
//!   calls the loader).
//! * `set` writes the local tier only; `del` and `expire` apply locally. All
//!   three queue the key (a bounded, de-duplicated queue, 10 000 keys by
//!   default) for a `DEL` plus invalidation in Redis on reconnect, so a
//!   revoke made during the outage is not lost and, once this instance
//!   reconnects, no instance keeps serving the value it replaced (until
//!   then the others, which cannot hear of it, may). When the queue is full the write is refused
//!   ([`TierError::Unavailable`]) and counted in
//!   [`TierStats::invalidations_dropped`].
//! * `incr` and `incr_by` fail with [`TierError::Unavailable`]: a shared
//!   counter cannot be served locally. `ttl` answers from the local copy.
//! * On reconnect the queue is replayed first, then the local tier is
//!   cleared (it may have missed invalidations while the subscription was
//!   down; values written only locally during the outage go with it), and
//!   only then is the tier `Up` again. No restart needed.
//!
//! `build()` itself fails only on a bad configuration, refused credentials
//! ([`TierError::Auth`]) or, with `require_redis(true)`, an unreachable
//! Redis; otherwise a cache built while Redis is down starts `Down`.
//!
//! TLS: `rediss://` URLs connect with rustls (ring) and trust the webpki
//! root certificates, or only the CA given to
//! [`TieredCacheBuilder::tls_root_cert`]. A failed handshake at `build()` (a
//! plain-text port, an untrusted certificate) is [`TierError::Tls`], not a
//! silent start in degraded mode.

mod cache;
mod config;
mod error;
mod health;
mod invalidation;
mod link;
mod shared;
mod stats;
mod task;
mod typed;

pub use cache::TieredCache;
pub use config::{
    TieredCacheBuilder, DEFAULT_LIVENESS_BOUND, DEFAULT_OP_TIMEOUT, DEFAULT_OUTAGE_WINDOW,
    MAX_REMOTE_TTL,
};
pub use error::{TierConfigError, TierError};
pub use health::{DownReason, Health};
pub use stats::TierStats;
