//! The tier's errors: configuration mistakes found by `build()`, and the
//! few runtime failures that the local tier cannot paper over.

use std::time::Duration;

/// A [`TieredCacheBuilder`](super::TieredCacheBuilder) setting that cannot work.
/// Returned by `build()`; fix the named setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TierConfigError {
    /// The URL is not a `redis://` or `rediss://` URL the client understands.
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `local_capacity(0)`: a local tier that can hold nothing.
    #[error("local_capacity must be at least 1")]
    ZeroCapacity,
    /// A zero duration where a positive one is needed.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// The local TTL outlives the remote TTL: the local tier would serve
    /// values that Redis has already expired.
    #[error("local_ttl ({local:?}) must not exceed remote_ttl ({remote:?})")]
    LocalTtlExceedsRemote {
        /// The configured local TTL.
        local: Duration,
        /// The configured remote TTL.
        remote: Duration,
    },
    /// The heartbeat interval is not shorter than the liveness bound, so a
    /// live channel could not prove itself in time.
    #[error("heartbeat ({heartbeat:?}) must be shorter than liveness_bound ({liveness_bound:?})")]
    HeartbeatNotBelowLiveness {
        /// The configured heartbeat interval.
        heartbeat: Duration,
        /// The configured liveness bound.
        liveness_bound: Duration,
    },
    /// A duration longer than the setting can hold (a TTL Redis would
    /// refuse on every write).
    #[error("{setting} ({value:?}) must not exceed {max:?}")]
    DurationTooLong {
        /// The setting.
        setting: &'static str,
        /// The configured value.
        value: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// A setting outside what the local cache accepts.
    #[error(transparent)]
    Local(#[from] crate::BuildError),
}

/// An error from a [`TieredCache`](super::TieredCache) operation or from
/// `build()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// A configuration mistake; see [`TierConfigError`].
    #[error(transparent)]
    Config(#[from] TierConfigError),
    /// Redis refused the credentials (wrong password, unknown user, or a
    /// password required but not given). Not retried by `build()`: fix the URL.
    #[error("Redis authentication failed: {0}")]
    Auth(String),
    /// The TLS handshake of a `rediss://` URL failed: the port does not
    /// speak TLS, or the certificate was not accepted. Not retried by
    /// `build()`: fix the URL or the server's certificate.
    #[error(
        "TLS handshake with Redis failed ({0}): is the port a TLS port, and is its certificate trusted?"
    )]
    Tls(String),
    /// Redis is down or timed out and the operation needs it (`incr` and
    /// friends: a shared counter cannot be served from the local tier), or a
    /// write found the replay queue full while Redis was unreachable: it was
    /// not applied in Redis nor kept locally (a `del` still dropped the
    /// local copy), and no other instance was told; or a write timed out
    /// while the tier stayed up: its outcome is unknown, and its key is
    /// deleted in Redis and on every instance as soon as Redis answers.
    /// Retry later; [`TieredCache::health`](super::TieredCache::health) says
    /// when Redis is back.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// `build()` with `require_redis(true)` could not reach Redis in time.
    #[error("could not connect to Redis within {timeout:?}: {reason}")]
    Connect {
        /// The connect timeout that elapsed or the attempt that failed.
        timeout: Duration,
        /// Why.
        reason: String,
    },
    /// Redis answered with an error (for example `WRONGTYPE`, or `INCR` on a
    /// value that is not an integer), in Redis's wording.
    #[error("Redis error: {0}")]
    Redis(String),
    /// The value was stored as another type (or not by `set_as`).
    #[error("WRONGTYPE the value is not a {expected}")]
    WrongType {
        /// The type that was asked for.
        expected: &'static str,
    },
    /// serde / postcard could not encode or decode the value.
    #[error("codec error: {0}")]
    Codec(String),
    /// `build()` was awaited outside a Tokio runtime (the tier needs one,
    /// with the time driver enabled, for its background task and timeouts).
    #[error("TieredCache needs a Tokio runtime (with `enable_time`): build it inside one")]
    NoRuntime,
}
