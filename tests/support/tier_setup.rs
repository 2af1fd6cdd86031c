//! The tier as the tier tests build it, and waiting for a condition with a
//! limit: shared by `tests/tier.rs` and `tests/tier_partitions.rs`.
#![allow(dead_code, clippy::unwrap_used)]

use shardcache::tier::{DownReason, TieredCache};
use std::time::{Duration, Instant};

/// Every remote call's bound in the tests.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_millis(50);

/// A tier on `url` under `prefix`: 10,000 local entries for 30 s, 300 s in
/// Redis, [`OP_TIMEOUT`], a heartbeat every 200 ms, reconnects from 20 ms
/// to 200 ms apart.
pub(crate) async fn tier(url: &str, prefix: &str) -> TieredCache {
    TieredCache::builder(url)
        .prefix(prefix)
        .local_capacity(10_000)
        .local_ttl(Duration::from_secs(30))
        .remote_ttl(Duration::from_secs(300))
        .op_timeout(OP_TIMEOUT)
        .heartbeat(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// Polls `f` every 5 ms until it holds; fails the test after `limit`.
pub(crate) async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `c` has gone from `Up` to `Down` more than `before` times
/// (its `down_transitions`) and returns why it last did; fails the test
/// after `limit`. A transition is counted even when the tier is `Up` again
/// before anyone reads `health()`: an outage confined to one connection
/// ends as soon as the reconnect has a fresh one.
pub(crate) async fn wait_for_down(
    c: &TieredCache,
    what: &str,
    before: u64,
    limit: Duration,
) -> DownReason {
    wait_for(what, limit, || c.stats().down_transitions > before).await;
    c.stats()
        .last_down_reason
        .expect("a counted transition has a reason")
}
