//! `SCAN`'s guarantee: a key present for a whole iteration is returned at
//! least once, while other keys come and go and the tables grow under it;
//! and a call's work follows its `COUNT`, not the store's size.

use shardcache::kv::{KvStore, ScanOptions};
use shardcache::MockClock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn store(shards: usize) -> KvStore {
    KvStore::builder()
        .shards(shards)
        .build()
        .expect("valid config")
}

/// Runs a full iteration, calling `between` after every call.
fn full_scan(
    s: &KvStore,
    count: usize,
    mut between: impl FnMut(usize),
) -> (HashSet<String>, usize) {
    let (mut cursor, mut seen, mut calls) = (0, HashSet::new(), 0);
    loop {
        let (next, batch) = s.scan(cursor, &ScanOptions::new().count(count));
        assert!(
            batch.len() <= count + 24,
            "a call returned {} keys",
            batch.len()
        );
        seen.extend(batch);
        calls += 1;
        between(calls);
        if next == 0 {
            return (seen, calls);
        }
        cursor = next;
    }
}

#[test]
fn stable_keys_survive_growth_and_churn_between_calls() {
    for shards in [1, 8, 64] {
        let s = store(shards);
        let stable: Vec<String> = (0..1000).map(|i| format!("stable:{i}")).collect();
        for k in &stable {
            s.set(k, "v", Default::default()).expect("set");
        }
        let mut added = 0usize;
        let (seen, _) = full_scan(&s, 10, |call| {
            // Grow: many new keys (every table doubles several times).
            for _ in 0..40 {
                s.set(&format!("new:{added}"), "v", Default::default())
                    .expect("set");
                added += 1;
            }
            // Shrink: remove some of what was added.
            if call % 3 == 0 {
                let gone: Vec<String> = (added.saturating_sub(60)..added)
                    .map(|i| format!("new:{i}"))
                    .collect();
                s.del(&gone);
            }
        });
        let missing: Vec<_> = stable.iter().filter(|k| !seen.contains(*k)).collect();
        assert!(missing.is_empty(), "{shards} shards: missing {missing:?}");
        assert!(added > 4_000, "the store grew under the scan ({added})");
    }
}

#[test]
fn stable_keys_survive_a_concurrent_writer() {
    let s = store(16);
    let stable: Vec<String> = (0..2000).map(|i| format!("stable:{i}")).collect();
    for k in &stable {
        s.set(k, "v", Default::default()).expect("set");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 2_000_000 {
                s.set(&format!("churn:{i}"), "v", Default::default())
                    .expect("set");
                if i >= 500 {
                    s.del(&[format!("churn:{}", i - 500)]);
                }
                i += 1;
            }
        })
    };
    for _ in 0..2 {
        let (seen, _) = full_scan(&s, 7, |_| {});
        assert!(stable.iter().all(|k| seen.contains(k)));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}

#[test]
fn a_full_pass_takes_about_keys_over_count_calls() {
    let s = store(64);
    for i in 0..20_000 {
        s.set(&format!("k{i}"), "v", Default::default())
            .expect("set");
    }
    let (seen, calls) = full_scan(&s, 100, |_| {});
    assert_eq!(seen.len(), 20_000);
    // Every call but the shard-boundary ones fills its COUNT.
    assert!(calls <= 20_000 / 100 + 64 + 1, "{calls} calls");
}

#[test]
fn match_namespaces_and_expiry_filter_the_walk() {
    let clock = MockClock::new();
    let s = KvStore::builder()
        .shards(4)
        .clock(clock.clone())
        .build()
        .expect("valid config");
    let ns = s.namespace("ns:");
    for i in 0..100 {
        ns.set(&format!("a{i}"), "v", Default::default())
            .expect("set");
        s.set(&format!("other{i}"), "v", Default::default())
            .expect("set");
        s.set_ex(&format!("ns:short{i}"), "v", 1).expect("set");
    }
    clock.advance(Duration::from_secs(2));
    let (seen, _) = full_scan(&ns, 10, |_| {});
    assert_eq!(seen.len(), 100);
    assert!(seen.iter().all(|k| k.starts_with('a')));
    let mut cursor = 0;
    let mut matched = HashSet::new();
    loop {
        let (next, batch) = s.scan(cursor, &ScanOptions::new().pattern("ns:a1*"));
        matched.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(matched.len(), 11);
    // A cursor that was never handed out ends or resumes the walk, never panics.
    for bad in [u64::MAX, 1 << 40, 0xFFFF, 12345] {
        let _ = s.scan(bad, &ScanOptions::new());
    }
}

/// Patterns are bytes, matched against the keys' UTF-8 bytes as Redis
/// matches them: a pattern that is not UTF-8 itself still finds keys.
#[test]
fn patterns_that_are_not_utf8_match_bytewise() {
    use shardcache::kv::Reply;
    let kv = store(4);
    for k in ["é", "aé", "abc"] {
        kv.execute(&["SET", k, "1"]);
    }
    let keys = |reply: Reply| -> Vec<String> {
        let list = match reply {
            Reply::Array(mut a) if a.len() == 2 => a.remove(1),
            other => other,
        };
        let Reply::Array(items) = list else {
            panic!("not an array: {list:?}");
        };
        let mut v: Vec<String> = items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(b) => String::from_utf8(b.to_vec()).expect("UTF-8 keys"),
                other => panic!("{other:?}"),
            })
            .collect();
        v.sort();
        v
    };
    // é is C3 A9.
    assert_eq!(keys(kv.execute(&[&b"KEYS"[..], b"\xC3?"])), ["é"]);
    assert_eq!(keys(kv.execute(&[&b"KEYS"[..], b"[\x80-\xff]*"])), ["é"]);
    let scan = |pattern: &[u8]| {
        keys(kv.execute(&[&b"SCAN"[..], b"0", b"MATCH", pattern, b"COUNT", b"1000"]))
    };
    assert_eq!(scan(b"*\xA9"), ["aé", "é"]);
    assert_eq!(scan(b"\xff*"), Vec::<String>::new());
    assert_eq!(scan(b"a*"), ["abc", "aé"]);
}
