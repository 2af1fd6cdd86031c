//! [`TieredCacheBuilder`]: the URL, the prefix, the local tier's size and
//! TTLs, and the timeouts, validated once by `build()`.

use super::error::{TierConfigError, TierError};
use super::TieredCache;
use std::time::Duration;

/// The longest TTL the tier gives a key in Redis: 2^62 ms (about 146
/// million years). Redis refuses an expiry whose deadline does not fit in
/// an `i64` of Unix milliseconds; every TTL up to this one fits.
pub const MAX_REMOTE_TTL: Duration = Duration::from_millis(1 << 62);

/// `ttl` in whole milliseconds (rounded down, as Redis's `PX` takes it), if
/// Redis accepts it as a TTL: from 1 ms to [`MAX_REMOTE_TTL`].
pub(crate) fn remote_ms(ttl: Duration) -> Option<u64> {
    let ms = u64::try_from(ttl.as_millis()).ok()?;
    (1..=1 << 62).contains(&ms).then_some(ms)
}

/// Default bound on one Redis operation.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(50);

/// Default liveness bound of the invalidation channel: an instance whose
/// own heartbeat has not come back on its subscription for this long stops
/// serving local entries, and then reconnects.
pub const DEFAULT_LIVENESS_BOUND: Duration = Duration::from_secs(1);

/// Default time Redis must go unanswering (with calls timing out) before
/// the tier goes down.
pub const DEFAULT_OUTAGE_WINDOW: Duration = Duration::from_millis(500);

/// `TCP_USER_TIMEOUT` on the tier's sockets.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`TieredCache`]; every setting has a default but the URL.
///
/// ```no_run
/// # async fn demo() -> Result<(), shardcache::tier::TierError> {
/// use shardcache::tier::TieredCache;
/// use std::time::Duration;
/// let sessions = TieredCache::builder("redis://:secret@127.0.0.1:6379/2")
///     .prefix("sess:")
///     .local_capacity(50_000)
///     .local_ttl(Duration::from_secs(86_400))
///     .remote_ttl(Duration::from_secs(604_800))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TieredCacheBuilder {
    url: String,
    prefix: String,
    local_capacity: u64,
    local_ttl: Duration,
    remote_ttl: Option<Duration>,
    op_timeout: Duration,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    heartbeat: Duration,
    liveness_bound: Duration,
    timeouts_to_down: u32,
    outage_window: Duration,
    queue_capacity: usize,
    require_redis: bool,
    tls_root_cert: Option<Vec<u8>>,
}

/// The validated settings, shared by the tier's modules.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) client: redis::Client,
    pub(crate) prefix: String,
    pub(crate) channel: String,
    pub(crate) local_capacity: u64,
    pub(crate) local_ttl: Duration,
    pub(crate) remote_ttl: Option<Duration>,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) liveness_bound: Duration,
    pub(crate) timeouts_to_down: u32,
    pub(crate) outage_window: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) require_redis: bool,
    pub(crate) tls: bool,
}

impl TieredCacheBuilder {
    /// A builder for the Redis at `url`: `redis://[user][:password@]host[:port][/db]`,
    /// or `rediss://` for TLS (rustls; the server's certificate must chain to
    /// the webpki roots, or to [`tls_root_cert`](Self::tls_root_cert)).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: String::new(),
            local_capacity: 10_000,
            local_ttl: Duration::from_secs(60),
            remote_ttl: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            heartbeat: Duration::from_millis(250),
            liveness_bound: DEFAULT_LIVENESS_BOUND,
            timeouts_to_down: 3,
            outage_window: DEFAULT_OUTAGE_WINDOW,
            queue_capacity: 10_000,
            require_redis: false,
            tls_root_cert: None,
        }
    }

    /// Prefix of every key in Redis (the local tier stores keys without
    /// it), and of the invalidation channel `shardcache:inv:<prefix>`:
    /// caches share invalidations exactly when they share a prefix. Default "".
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Entries the local tier holds (default 10 000).
    pub fn local_capacity(mut self, entries: u64) -> Self {
        self.local_capacity = entries;
        self
    }

    /// Longest time an entry stays in the local tier (default 60 s): the
    /// bound on staleness when an invalidation is missed (for example while
    /// Redis is down). Must not exceed [`remote_ttl`](Self::remote_ttl).
    pub fn local_ttl(mut self, ttl: Duration) -> Self {
        self.local_ttl = ttl;
        self
    }

    /// TTL given in Redis to values set without their own TTL (default:
    /// none, the key persists). At least a millisecond and at most
    /// [`MAX_REMOTE_TTL`]; `build()` refuses others.
    pub fn remote_ttl(mut self, ttl: Duration) -> Self {
        self.remote_ttl = Some(ttl);
        self
    }

    /// Bound on each Redis operation (default 50 ms). An operation that
    /// takes longer fails (a write is queued for a delete in Redis); the tier
    /// goes `Down` only after [`timeouts_to_down`](Self::timeouts_to_down)
    /// consecutive timeouts spanning at least the
    /// [`outage_window`](Self::outage_window).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Bound on one connection attempt, at `build()` and in the background
    /// reconnect loop (default 500 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The reconnect loop's delay between attempts: starts at `min`,
    /// doubles, capped at `max` (default 25 ms to 1 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// How often the tier publishes a heartbeat on its own invalidation
    /// channel (default 250 ms); it must come back on the subscription
    /// within the [`liveness_bound`](Self::liveness_bound). Must be shorter
    /// than that bound.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The longest the invalidation channel may go unproven (default 1 s).
    /// A local entry is served only if a heartbeat sent at most this long
    /// ago has come back on the subscription, so every invalidation of a
    /// write acknowledged before it has been applied; past it, reads go to
    /// Redis. Past twice the bound the subscription is given up for dead:
    /// the tier clears its local entries and reconnects
    /// ([`DownReason::ChannelSilent`](super::DownReason::ChannelSilent)).
    pub fn liveness_bound(mut self, bound: Duration) -> Self {
        self.liveness_bound = bound;
        self
    }

    /// Consecutive timed-out calls (operations or heartbeats, no success in
    /// between, spanning at least the [`outage_window`](Self::outage_window))
    /// that take the tier `Down` (default 3). A broken connection takes it
    /// down at once.
    pub fn timeouts_to_down(mut self, n: u32) -> Self {
        self.timeouts_to_down = n;
        self
    }

    /// How long Redis must go without answering anything, while calls time
    /// out, before the tier goes `Down` (default 500 ms). After a timeout
    /// the tier probes Redis at once, and any answer ends the streak, so a
    /// scheduling stall on a loaded machine shorter than this never takes
    /// the tier down; a hung Redis does, after about this long. Calls keep
    /// their `op_timeout` bound meanwhile.
    pub fn outage_window(mut self, window: Duration) -> Self {
        self.outage_window = window;
        self
    }

    /// Deletes and invalidations kept while Redis is down, to replay on
    /// reconnect (default 10 000 distinct keys). A write that finds the queue
    /// full is refused with [`TierError::Unavailable`] (nothing is kept
    /// locally) and counted in
    /// [`TierStats::invalidations_dropped`](super::TierStats). A write whose
    /// bytes were sent and whose outcome is unknown (it timed out, or its
    /// connection broke) is queued even then, since only its delete undoes
    /// it: the queue exceeds this by at most the writes in flight when Redis
    /// stopped answering.
    pub fn queue_capacity(mut self, keys: usize) -> Self {
        self.queue_capacity = keys;
        self
    }

    /// When true, `build()` fails with [`TierError::Connect`] if Redis cannot
    /// be reached; when false (the default) it starts `Down`, serves from
    /// the local tier and connects in the background.
    pub fn require_redis(mut self, require: bool) -> Self {
        self.require_redis = require;
        self
    }

    /// For `rediss://`: trust only this CA certificate (PEM), as for a
    /// private CA or a managed Redis, instead of the webpki roots.
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Validates the settings, connects (bounded by the connect timeout) and
    /// starts the background task. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`TierError::Config`] for a bad setting or URL, [`TierError::Auth`]
    /// for refused credentials, [`TierError::Connect`] when
    /// `require_redis(true)` and Redis is unreachable.
    pub async fn build(self) -> Result<TieredCache, TierError> {
        let config = self.validate()?;
        TieredCache::start(config).await
    }

    pub(crate) fn validate(self) -> Result<Config, TierConfigError> {
        let scheme = self.url.split("://").next().unwrap_or("");
        match scheme {
            "redis" | "rediss" => {}
            _ => {
                return Err(TierConfigError::InvalidUrl {
                    url: redact(&self.url),
                    reason: "expected a redis:// or rediss:// URL".into(),
                })
            }
        }
        let invalid = |e: redis::RedisError| TierConfigError::InvalidUrl {
            url: redact(&self.url),
            reason: e.to_string(),
        };
        // TCP_NODELAY for latency; TCP_USER_TIMEOUT as a backstop that
        // closes a connection whose sent data goes unacknowledged.
        let tcp = redis::io::tcp::TcpSettings::default()
            .set_nodelay(true)
            .set_user_timeout(TCP_USER_TIMEOUT);
        let info = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .map_err(invalid)?
            .set_tcp_settings(tcp);
        let client = match (&self.tls_root_cert, scheme) {
            (Some(pem), "rediss") => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => redis::Client::open(info),
        }
        .map_err(invalid)?;
        if self.local_capacity == 0 {
            return Err(TierConfigError::ZeroCapacity);
        }
        for (name, d) in [
            ("local_ttl", self.local_ttl),
            ("op_timeout", self.op_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_backoff", self.backoff_min),
            ("heartbeat", self.heartbeat),
            ("liveness_bound", self.liveness_bound),
        ] {
            if d.is_zero() {
                return Err(TierConfigError::ZeroDuration(name));
            }
        }
        if self.heartbeat >= self.liveness_bound {
            return Err(TierConfigError::HeartbeatNotBelowLiveness {
                heartbeat: self.heartbeat,
                liveness_bound: self.liveness_bound,
            });
        }
        if let Some(remote) = self.remote_ttl {
            if remote.is_zero() {
                return Err(TierConfigError::ZeroDuration("remote_ttl"));
            }
            if remote_ms(remote).is_none() {
                return Err(TierConfigError::DurationTooLong {
                    setting: "remote_ttl",
                    value: remote,
                    max: MAX_REMOTE_TTL,
                });
            }
            if self.local_ttl > remote {
                return Err(TierConfigError::LocalTtlExceedsRemote {
                    local: self.local_ttl,
                    remote,
                });
            }
        }
        let channel = format!("shardcache:inv:{}", self.prefix);
        Ok(Config {
            client,
            channel,
            prefix: self.prefix,
            local_capacity: self.local_capacity,
            local_ttl: self.local_ttl,
            remote_ttl: self.remote_ttl,
            op_timeout: self.op_timeout,
            connect_timeout: self.connect_timeout,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max.max(self.backoff_min),
            heartbeat: self.heartbeat,
            liveness_bound: self.liveness_bound,
            timeouts_to_down: self.timeouts_to_down.max(1),
            outage_window: self.outage_window,
            queue_capacity: self.queue_capacity,
            require_redis: self.require_redis,
            tls: scheme == "rediss",
        })
    }
}

/// The URL with the password (between `:` and `@` in the authority) hidden.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://:pw@host:1/2"),
            "redis://:***@host:1/2".to_string()
        );
        assert_eq!(redact("redis://host:1"), "redis://host:1".to_string());
    }

    #[test]
    fn rejects_bad_settings() {
        let b = || TieredCacheBuilder::new("redis://127.0.0.1:6379/0");
        assert!(b().validate().is_ok());
        assert_eq!(
            b().validate_err(|b| b.local_capacity(0)),
            TierConfigError::ZeroCapacity
        );
        assert!(matches!(
            b().validate_err(|b| b
                .local_ttl(Duration::from_secs(10))
                .remote_ttl(Duration::from_secs(5))),
            TierConfigError::LocalTtlExceedsRemote { .. }
        ));
        assert!(matches!(
            b().validate_err(|b| b.heartbeat(Duration::from_secs(1))),
            TierConfigError::HeartbeatNotBelowLiveness { .. }
        ));
        assert!(TieredCacheBuilder::new("rediss://h:1").validate().is_ok());
        assert!(matches!(
            TieredCacheBuilder::new("http://h").validate().err(),
            Some(TierConfigError::InvalidUrl { .. })
        ));
    }

    impl TieredCacheBuilder {
        fn validate_err(self, f: impl FnOnce(Self) -> Self) -> TierConfigError {
            match f(self).validate() {
                Ok(_) => TierConfigError::ZeroDuration("expected an error"),
                Err(e) => e,
            }
        }
    }
}
