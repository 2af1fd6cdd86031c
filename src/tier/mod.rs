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
//! both tiers. A write goes to Redis, then to the local tier, and publishes
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
//! ## When Redis is down (degraded mode)
//!
//! * Every remote call is bounded by `op_timeout` (default 50 ms). A timeout
//!   or a connection error marks the tier [`Health::Down`]; from then on no
//!   operation touches Redis (none pays a connect timeout) until the
//!   background task has reconnected, with backoff from 25 ms doubling to
//!   1 s. An idle tier notices an outage by a `PING` every 500 ms.
//! * Reads are served by the local tier; a local miss is `Ok(None)` (the
//!   caller falls back to its database, or `get_or_load` calls the loader).
//! * `set` writes the local tier only; `del` and `expire` apply locally. All
//!   three queue the key (a bounded, de-duplicated queue, 10 000 keys by
//!   default) for a `DEL` plus invalidation in Redis on reconnect, so a
//!   revoke made during the outage is not lost and no instance keeps serving
//!   the value it replaced. Keys beyond the bound are counted in
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

pub use cache::{TierStats, TieredCache};
pub use config::{TieredCacheBuilder, DEFAULT_OP_TIMEOUT};
pub use error::{TierConfigError, TierError};
pub use health::Health;
