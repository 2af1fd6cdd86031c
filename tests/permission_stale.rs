//! PermissionCache's stale-if-error opt-in for allows: off by default;
//! only allows the predicate picks, only when the load fails, only within
//! the window; denials never; and never after an invalidation.

use shardcache::adapters::{PermissionCache, PermissionKey};
use shardcache::{BuildError, MockClock};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
}

const TTL: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(30);

fn perms(clock: &MockClock) -> PermissionCache<Decision> {
    PermissionCache::builder()
        .ttl(TTL)
        .stale_allow_if_error(WINDOW, |d| *d == Decision::Allow)
        .clock(clock.clone())
        .build()
        .expect("valid settings")
}

fn down() -> Result<Decision, &'static str> {
    Err("db down")
}

fn key(subject: &str) -> PermissionKey {
    PermissionKey::new(subject, "doc", "7", "read")
}

#[test]
fn without_the_opt_in_an_expired_allow_is_never_served() {
    let clock = MockClock::new();
    let perms = PermissionCache::<Decision>::builder()
        .ttl(TTL)
        .clock(clock.clone())
        .build()
        .expect("valid");
    assert_eq!(perms.check(&key("u"), || Decision::Allow), Decision::Allow);
    clock.advance(TTL + Duration::from_secs(1));
    assert!(perms.try_check(&key("u"), down).is_err());
}

#[test]
fn an_allow_is_served_only_when_its_load_fails_and_only_within_the_window() {
    let clock = MockClock::new();
    let perms = perms(&clock);
    let k = key("u");
    assert_eq!(perms.check(&k, || Decision::Allow), Decision::Allow);
    // Fresh: a hit, no load.
    clock.advance(TTL - Duration::from_secs(1));
    assert_eq!(perms.try_check(&k, down), Ok(Decision::Allow));
    assert_eq!(perms.stats().stale_allows_served, 0);
    // Past its TTL, the source up: the check loads (and gets the new decision).
    clock.advance(Duration::from_secs(2));
    assert_eq!(perms.get(&k), None);
    let loads = AtomicUsize::new(0);
    let d = perms.check(&k, || {
        loads.fetch_add(1, Ordering::Relaxed);
        Decision::Allow
    });
    assert_eq!((d, loads.load(Ordering::Relaxed)), (Decision::Allow, 1));
    // Past that TTL, the source down: served stale until the window ends.
    clock.advance(TTL + WINDOW - Duration::from_secs(1));
    assert_eq!(perms.try_check(&k, down), Ok(Decision::Allow));
    assert_eq!(perms.stats().stale_allows_served, 1);
    clock.advance(Duration::from_secs(1));
    assert!(perms.try_check(&k, down).is_err());
    assert_eq!(perms.stats().stale_allows_served, 1);
}

#[test]
fn a_denial_is_never_served_stale() {
    let clock = MockClock::new();
    let perms = perms(&clock);
    let k = key("u");
    assert_eq!(perms.check(&k, || Decision::Deny), Decision::Deny);
    clock.advance(TTL + Duration::from_secs(1));
    assert!(perms.try_check(&k, down).is_err());
    assert_eq!(perms.stats().stale_allows_served, 0);
}

#[test]
fn no_invalidation_is_ever_overridden_by_a_stale_allow() {
    let clock = MockClock::new();
    let perms = perms(&clock);
    type Revoke = fn(&PermissionCache<Decision>, &PermissionKey);
    let revocations: [(&str, Revoke); 4] = [
        ("key", |p, k| assert!(p.invalidate(k))),
        ("subject", |p, k| {
            assert_eq!(p.invalidate_subject(k.subject()), 1)
        }),
        ("resource", |p, _| {
            assert_eq!(p.invalidate_resource("doc", "7"), 1)
        }),
        ("all", |p, _| p.invalidate_all()),
    ];
    for (name, revoke) in revocations {
        for past_ttl in [false, true] {
            let k = key(name);
            assert_eq!(perms.check(&k, || Decision::Allow), Decision::Allow);
            if past_ttl {
                clock.advance(TTL + Duration::from_secs(1));
            }
            revoke(&perms, &k);
            assert!(
                perms.try_check(&k, down).is_err(),
                "{name} (past its TTL: {past_ttl})"
            );
        }
    }
    assert_eq!(perms.stats().stale_allows_served, 0);
    perms.validate_index().expect("index");
}

#[test]
fn the_async_check_serves_the_same_stale_allow() {
    futures::executor::block_on(async {
        let clock = MockClock::new();
        let perms = perms(&clock);
        let k = key("u");
        assert_eq!(
            perms.check_async(&k, async { Decision::Allow }).await,
            Decision::Allow
        );
        clock.advance(TTL + Duration::from_secs(5));
        let r = perms.try_check_async(&k, async { down() }).await;
        assert_eq!(r, Ok(Decision::Allow));
        perms.invalidate_subject("u");
        assert!(perms.try_check_async(&k, async { down() }).await.is_err());
    });
}

#[test]
fn a_past_ttl_allow_counts_as_a_miss_not_a_hit() {
    let clock = MockClock::new();
    let perms = perms(&clock);
    let k = key("u");
    perms.check(&k, || Decision::Allow);
    perms.check(&k, || Decision::Allow);
    clock.advance(TTL + Duration::from_secs(1));
    perms.check(&k, || Decision::Allow);
    let s = perms.stats();
    assert_eq!((s.hits, s.misses, s.loads), (1, 2, 2));
}

#[test]
fn the_window_is_bounded() {
    let build = |w| {
        PermissionCache::<bool>::builder()
            .ttl(TTL)
            .stale_allow_if_error(w, |a| *a)
            .build()
    };
    assert!(matches!(
        build(Duration::ZERO),
        Err(BuildError::ZeroDuration(_))
    ));
    assert!(matches!(build(TTL * 2), Err(BuildError::InvalidRefresh(_))));
    assert!(build(TTL).is_ok());
}
