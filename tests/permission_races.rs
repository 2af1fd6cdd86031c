//! PermissionCache's revocation promise under a harsher schedule than
//! `adapters_permission.rs`: every kind of invalidation (by key, subject,
//! resource, all, and `insert`), a ring of recent invalidations overflowed
//! by unrelated ones, a small capacity evicting, a moving clock expiring
//! entries, and loads that fail and fall back on stale allows. Once an
//! invalidation covering a key has returned, no check that starts after it
//! returns a decision loaded before it.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{PermissionCache, PermissionKey};
use shardcache::MockClock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const HOT_DOCS: u32 = 3;

fn key(user: &str, doc: u32) -> PermissionKey {
    PermissionKey::new(user, "doc", doc.to_string(), "read")
}

/// One revocation of every hot key, by the `round`th kind.
fn revoke(perms: &PermissionCache<u64>, round: u64, version: u64) {
    match round % 5 {
        0 => {
            perms.invalidate_subject("hot");
        }
        1 => (0..HOT_DOCS).for_each(|d| {
            perms.invalidate(&key("hot", d));
        }),
        2 => (0..HOT_DOCS).for_each(|d| {
            perms.invalidate_resource("doc", &d.to_string());
        }),
        3 => perms.invalidate_all(),
        _ => (0..HOT_DOCS).for_each(|d| perms.insert(key("hot", d), version)),
    }
}

#[test]
fn no_check_sees_a_decision_older_than_a_completed_revocation_of_any_kind() {
    let clock = MockClock::new();
    let perms: PermissionCache<u64> = PermissionCache::builder()
        .max_capacity(16)
        .ttl(Duration::from_millis(20))
        .stale_allow_if_error(Duration::from_millis(20), |_| true)
        .clock(clock.clone())
        .build()
        .unwrap();
    let db = AtomicU64::new(0);
    let revoked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = mpsc::channel();
    thread::scope(|s| {
        for t in 0..3u64 {
            let (perms, db, revoked, stop) = (&perms, &db, &revoked, &stop);
            s.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let hot = i.is_multiple_of(2);
                    let k = if hot {
                        key("hot", (i % u64::from(HOT_DOCS)) as u32)
                    } else {
                        key(&format!("u{}", i % 4), (i % 3) as u32)
                    };
                    let floor = revoked.load(Ordering::SeqCst);
                    let fail = i.is_multiple_of(5);
                    let seen = perms.try_check(&k, || {
                        let v = db.load(Ordering::SeqCst);
                        thread::yield_now();
                        if fail {
                            Err("down")
                        } else {
                            Ok(v)
                        }
                    });
                    if let (true, Ok(v)) = (hot, seen) {
                        assert!(v >= floor, "saw version {v} after revocation {floor}");
                    }
                }
            });
        }
        // Unrelated revocations, enough to overflow the ring of recent ones.
        {
            let (perms, stop) = (&perms, &stop);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    perms.invalidate_subject(&format!("n{}", i % 50));
                    if i.is_multiple_of(64) {
                        thread::yield_now();
                    }
                }
            });
        }
        {
            let (clock, stop) = (&clock, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    clock.advance(Duration::from_millis(1));
                    thread::sleep(Duration::from_micros(200));
                }
            });
        }
        let (perms, db, revoked, stop) = (&perms, &db, &revoked, &stop);
        s.spawn(move || {
            for round in 0..8_000 {
                let v = db.fetch_add(1, Ordering::SeqCst) + 1;
                revoke(perms, round, v);
                revoked.store(v, Ordering::SeqCst);
                if round.is_multiple_of(8) {
                    // Room for hot allows to outlive their TTL.
                    thread::sleep(Duration::from_millis(1));
                }
            }
            stop.store(true, Ordering::SeqCst);
            done_tx.send(()).unwrap();
        });
        // The watchdog: a wedged check or invalidation fails the test.
        if done_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            stop.store(true, Ordering::SeqCst);
            panic!("no progress in 120 s: a check or an invalidation is stuck");
        }
    });
    perms.validate_index().unwrap();
    // The schedule reached the stale path it means to attack.
    let stats = perms.stats();
    assert!(stats.stale_allows_served > 0, "{stats:?}");
}
