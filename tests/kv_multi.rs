//! `MSET`, `MSETNX`, `RENAME` and `COPY` as one step across shards, under
//! attack: racing `MSETNX` checked against a linearizable model, readers that
//! must never see half of an `MSET`, a full store under `noeviction` that
//! must roll a half-applied batch back, and a persistent store failing at
//! every storage call that must keep each batch whole or not at all.

use bytes::Bytes;
use shardcache::kv::{KvError, KvStore};
use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
use shardcache::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/watchdog.rs"]
mod watchdog;

fn store(shards: usize) -> KvStore {
    KvStore::builder().shards(shards).build().expect("store")
}

/// 1 to `max` distinct keys out of `pool`.
fn subset(rng: &mut Xorshift, pool: usize, max: usize) -> BTreeSet<usize> {
    let n = 1 + (rng.next() as usize) % max;
    let mut s = BTreeSet::new();
    while s.len() < n {
        s.insert((rng.next() as usize) % pool);
    }
    s
}

/// Threads race `MSETNX` (and single-key `SETNX`) over overlapping keys, a
/// round at a time. Every round must be explained by some order of the
/// commands one after another: the winners' key sets are disjoint, every
/// key holds the token of the one winner that covers it (never a mix, never
/// a loser's), keys no winner covers are absent, and every loser overlaps
/// some winner (a key it found existing was a winner's).
#[test]
fn racing_msetnx_has_one_winner_per_key() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    const POOL: usize = 4;
    let kv = store(16);
    let start = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    type Claim = (usize, BTreeSet<usize>, bool);
    let results: Vec<Arc<parking_lot::Mutex<Vec<Claim>>>> = (0..THREADS)
        .map(|_| Arc::new(parking_lot::Mutex::new(Vec::new())))
        .collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (kv, start, done, out) =
                (kv.clone(), start.clone(), done.clone(), results[t].clone());
            std::thread::spawn(move || {
                let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x1000_0001));
                for round in 0..ROUNDS {
                    let keys = if t == 0 {
                        // One thread claims a single key with SETNX.
                        BTreeSet::from([(rng.next() as usize) % POOL])
                    } else {
                        subset(&mut rng, POOL, 3)
                    };
                    let token = format!("{round}:{t}");
                    start.wait();
                    let won = if t == 0 {
                        let k = keys.iter().next().copied().unwrap_or(0);
                        kv.set_nx(&format!("k{k}"), token.clone()).expect("setnx")
                    } else {
                        let pairs: Vec<(String, String)> = keys
                            .iter()
                            .map(|k| (format!("k{k}"), token.clone()))
                            .collect();
                        kv.mset_nx(&pairs).expect("msetnx")
                    };
                    out.lock().push((round, keys, won));
                    done.wait();
                }
            })
        })
        .collect();
    for round in 0..ROUNDS {
        kv.flushdb();
        start.wait();
        done.wait();
        let claims: Vec<(usize, BTreeSet<usize>, bool)> = results
            .iter()
            .enumerate()
            .map(|(t, r)| {
                let (r, keys, won) = r.lock()[round].clone();
                assert_eq!(r, round);
                (t, keys, won)
            })
            .collect();
        let winners: Vec<_> = claims.iter().filter(|c| c.2).collect();
        for (i, a) in winners.iter().enumerate() {
            for b in &winners[i + 1..] {
                assert!(
                    a.1.is_disjoint(&b.1),
                    "round {round}: threads {} and {} both won {:?} / {:?}",
                    a.0,
                    b.0,
                    a.1,
                    b.1
                );
            }
        }
        for k in 0..POOL {
            let held = kv.get(&format!("k{k}"));
            let owner = winners.iter().find(|w| w.1.contains(&k));
            let want = owner.map(|w| Bytes::from(format!("{round}:{}", w.0)));
            assert_eq!(held, want, "round {round}: key k{k} ({claims:?})");
        }
        for loser in claims.iter().filter(|c| !c.2) {
            assert!(
                winners.iter().any(|w| !w.1.is_disjoint(&loser.1)),
                "round {round}: thread {} lost with no winner on its keys ({claims:?})",
                loser.0
            );
        }
    }
    for h in handles {
        h.join().expect("racer");
    }
}

/// One writer `MSET`s a group of keys to the same ever-growing number, in
/// key order; readers read the keys one at a time in that order (and others
/// in the reverse order). Reading forward, a key may only hold a number at
/// least as large as the previous key did (the later read sees the same
/// batch or a newer one); reading backward, at most as large. Writing the
/// keys one at a time breaks this.
#[test]
fn readers_never_see_half_an_mset() {
    const KEYS: usize = 6;
    const WRITES: u64 = 4_000;
    let kv = store(16);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("pair:{i}")).collect();
    kv.mset(&keys.iter().map(|k| (k.as_str(), "0")).collect::<Vec<_>>())
        .expect("mset");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [false, true]
        .into_iter()
        .map(|backward| {
            let (kv, keys, stop) = (kv.clone(), keys.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let mut order: Vec<&String> = keys.iter().collect();
                    if backward {
                        order.reverse();
                    }
                    let seen: Vec<u64> = order
                        .iter()
                        .map(|k| {
                            let v = kv.get(k).expect("never missing");
                            std::str::from_utf8(&v)
                                .expect("utf8")
                                .parse()
                                .expect("number")
                        })
                        .collect();
                    assert!(
                        seen.windows(2).all(|w| w[0] <= w[1]),
                        "half an MSET seen ({}): {seen:?}",
                        if backward { "backward" } else { "forward" }
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 1..=WRITES {
        let v = i.to_string();
        let pairs: Vec<(&str, String)> = keys.iter().map(|k| (k.as_str(), v.clone())).collect();
        kv.mset(&pairs).expect("mset");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
}

/// Threads race `RENAME`s of one value among four keys, in random
/// directions (a rename of a key that is not there fails, as it should):
/// a rename that copied and removed in two steps could duplicate the value
/// or lose it. At the end exactly one key holds it.
#[test]
fn racing_renames_never_duplicate_or_lose_the_value() {
    const NAMES: [&str; 4] = ["left", "mid", "right", "far"];
    let kv = store(16);
    kv.set("left", "v", Default::default()).expect("set");
    let movers: Vec<_> = (0..4u64)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                let mut rng = Xorshift(1_234_567 + t);
                let mut moved = 0;
                for _ in 0..20_000 {
                    let from = NAMES[(rng.next() % 4) as usize];
                    let to = NAMES[(rng.next() % 4) as usize];
                    match kv.rename(from, to) {
                        Ok(()) => moved += 1,
                        Err(KvError::NoSuchKey) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                moved
            })
        })
        .collect();
    let moved: u64 = movers.into_iter().map(|m| m.join().expect("mover")).sum();
    assert!(moved > 0);
    let held: Vec<Option<Bytes>> = NAMES.iter().map(|k| kv.get(k)).collect();
    assert_eq!(held.iter().flatten().count(), 1, "{held:?}");
    assert_eq!(
        held.iter().flatten().next().map(|v| &v[..]),
        Some(&b"v"[..])
    );
    assert_eq!(kv.dbsize(), 1);
}

/// Under `noeviction`, an `MSET` whose second value does not fit writes
/// nothing: the first pair, already applied, is rolled back (a new key
/// leaves, a replaced value comes back), and memory is as before.
#[test]
fn a_batch_that_does_not_fit_is_rolled_back() {
    let kv = KvStore::builder()
        .max_memory(1_000)
        .policy("noeviction".parse::<Policy>().expect("policy"))
        .shards(4)
        .build()
        .expect("store");
    kv.set("old", "small", Default::default()).expect("set");
    let used = kv.stats().used_memory;
    let big = Bytes::from("x".repeat(300));
    // Each value fits alone; together they do not.
    for pairs in [
        vec![
            ("old", big.clone()),
            ("new1", big.clone()),
            ("new2", big.clone()),
        ],
        vec![
            ("new1", big.clone()),
            ("new2", big.clone()),
            ("old", big.clone()),
        ],
        vec![
            ("new1", big.clone()),
            ("old", big.clone()),
            ("new2", big.clone()),
        ],
    ] {
        assert_eq!(kv.mset(&pairs), Err(KvError::OutOfMemory));
        assert_eq!(kv.get("old").as_deref(), Some(&b"small"[..]));
        assert_eq!(kv.get("new1"), None);
        assert_eq!(kv.get("new2"), None);
        assert_eq!(kv.stats().used_memory, used);
        assert_eq!(kv.dbsize(), 1);
        let fresh = [("new1", big.clone()), ("new2", big.clone())];
        assert_eq!(kv.mset_nx(&fresh), Err(KvError::OutOfMemory));
        assert_eq!(kv.dbsize(), 1);
    }
    // Heavier than the whole store: refused before anything is touched.
    let huge = Bytes::from("y".repeat(2_000));
    assert_eq!(
        kv.mset(&[("a", Bytes::from("1")), ("b", huge)]),
        Err(KvError::OutOfMemory)
    );
    assert_eq!(kv.get("a"), None);
    // What fits is written whole.
    kv.mset(&[("new1", big.clone()), ("old", Bytes::from("s2"))])
        .expect("fits");
    assert_eq!(kv.get("old").as_deref(), Some(&b"s2"[..]));
}

/// Batches mixed with single writes, TTL'd writes and evictions under
/// `max_memory`: readers of a group written by `MSET` never see it half
/// written (an evicted key reads as missing, which is allowed), and the
/// store's accounting stays within its limit.
#[test]
fn batches_mixed_with_evictions_and_expiries() {
    let kv = KvStore::builder()
        .max_memory(40_000)
        .policy("allkeys-lru".parse::<Policy>().expect("policy"))
        .shards(8)
        .build()
        .expect("store");
    let stop = Arc::new(AtomicBool::new(false));
    let noise: Vec<_> = (0..2)
        .map(|t| {
            let (kv, stop) = (kv.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Xorshift(77 + t);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) || i < 1_000 {
                    let k = format!("noise:{}", rng.next() % 400);
                    match rng.next() % 4 {
                        0 => {
                            let opts =
                                shardcache::kv::SetOptions::new().px(1 + (rng.next() % 5) as i64);
                            let _ = kv.set(&k, "x".repeat(100), opts);
                        }
                        1 => {
                            let pairs = [(k.clone(), "a"), (format!("{k}:b"), "b")];
                            let _ = kv.mset_nx(&pairs);
                        }
                        2 => {
                            let _ = kv.rename(&k, &format!("noise:{}", rng.next() % 400));
                        }
                        _ => {
                            let _ = kv.set(&k, "y".repeat(200), Default::default());
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let keys: Vec<String> = (0..4).map(|i| format!("group:{i}")).collect();
    let reader = {
        let (kv, keys, stop) = (kv.clone(), keys.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let seen: Vec<u64> = keys
                    .iter()
                    .filter_map(|k| kv.get(k))
                    .map(|v| std::str::from_utf8(&v).expect("utf8").parse().expect("n"))
                    .collect();
                assert!(
                    seen.windows(2).all(|w| w[0] <= w[1]),
                    "half an MSET: {seen:?}"
                );
            }
        })
    };
    for i in 1..=3_000u64 {
        let v = i.to_string();
        let pairs: Vec<(&str, String)> = keys.iter().map(|k| (k.as_str(), v.clone())).collect();
        kv.mset(&pairs).expect("mset");
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    for n in noise {
        n.join().expect("noise");
    }
    let stats = kv.stats();
    assert!(stats.used_memory <= 40_000, "{stats:?}");
}

fn persistent(storage: &MemStorage) -> KvStore {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    KvStore::builder()
        .shards(8)
        .build_persistent(log)
        .expect("open")
        .0
}

const GROUP: [&str; 5] = ["g:a", "g:b", "g:c", "g:d", "g:e"];

/// The number every key of the group holds, asserting they agree (and
/// that none is missing).
fn group_value(kv: &KvStore) -> u64 {
    let values: Vec<Option<Bytes>> = GROUP.iter().map(|k| kv.get(k)).collect();
    let first = values[0].clone().expect("group present");
    assert!(
        values.iter().all(|v| *v == Some(first.clone())),
        "a torn group: {values:?}"
    );
    std::str::from_utf8(&first)
        .expect("utf8")
        .parse()
        .expect("number")
}

/// A persistent store (`Fsync::Always`) whose storage fails from its n-th
/// call on, for every n (and, separately, whose syncs fail from the n-th):
/// each refused `MSET` is fully undone in memory (every key back to the last
/// acknowledged batch), and after a crash that keeps any part of what was
/// not synced, the store reopens with every key of the group from one
/// batch, never older than the last acknowledged one.
#[test]
fn a_batch_survives_a_crash_whole_or_not_at_all() {
    let mut refused = 0;
    for fault in 0..40u64 {
        for sync_fault in [false, true] {
            for keep in [0usize, 1, 9, 40, 1 << 20] {
                let storage = MemStorage::new();
                let kv = persistent(&storage);
                let write = |i: u64| {
                    let v = i.to_string();
                    let pairs: Vec<(&str, String)> =
                        GROUP.iter().map(|k| (*k, v.clone())).collect();
                    kv.durably(|| kv.mset(&pairs))
                };
                assert!(matches!(write(0), Ok(Ok(()))));
                if sync_fault {
                    storage.inject(FaultOn::Sync, fault % 10, std::io::ErrorKind::Other, true);
                } else {
                    storage.fail_after(fault);
                }
                let (mut acked, mut attempted) = (0, 0);
                for i in 1..=10u64 {
                    attempted = i;
                    match write(i) {
                        Ok(Ok(())) => acked = i,
                        Ok(Err(e)) => panic!("batch {i}: {e}"),
                        // Refused or undone: memory holds the last kept batch.
                        Err(_) => {
                            refused += 1;
                            assert_eq!(group_value(&kv), acked, "fault {fault}: batch {i}");
                        }
                    }
                }
                drop(kv);
                storage.heal();
                storage.power_loss(keep);
                let kv = persistent(&storage);
                let v = group_value(&kv);
                assert!(
                    v >= acked && v <= attempted,
                    "fault {fault} sync {sync_fault} keep {keep}: reopened at {v}, acked {acked}"
                );
            }
        }
    }
    assert!(refused > 1_000, "the faults hit too few batches: {refused}");
}

/// Under `Fsync::Always`, a `RENAME` or `COPY` the log fails to keep is
/// undone on both keys: the source back with its value and TTL, the
/// destination as it was.
#[test]
fn a_refused_rename_or_copy_is_undone_on_both_keys() {
    for sync in [false, true] {
        let storage = MemStorage::new();
        let kv = persistent(&storage);
        kv.set("src", "v", shardcache::kv::SetOptions::new().ex(100))
            .expect("set");
        kv.set("dst", "old", Default::default()).expect("set");
        let fail = || match sync {
            true => storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true),
            false => storage.inject(FaultOn::Append, 0, std::io::ErrorKind::Other, true),
        };
        fail();
        assert!(kv.durably(|| kv.rename("src", "dst")).is_err());
        assert!(kv.durably(|| kv.copy("src", "dst", true)).is_err());
        assert_eq!(kv.get("src").as_deref(), Some(&b"v"[..]));
        assert!((99..=100).contains(&kv.ttl("src")));
        assert_eq!(kv.get("dst").as_deref(), Some(&b"old"[..]));
        assert_eq!(kv.ttl("dst"), -1);
        storage.heal();
        kv.sync().ok();
        kv.rename("src", "dst")
            .expect("rename once the log is repaired");
        drop(kv);
        let kv = persistent(&storage);
        assert_eq!(kv.get("src"), None);
        assert_eq!(kv.get("dst").as_deref(), Some(&b"v"[..]));
        assert!((99..=100).contains(&kv.ttl("dst")));
    }
}

/// `COPY` and `RENAME` keep the source's expiry; a refused batch leaves both
/// keys alone; the store logs them as one step and reloads them.
#[test]
fn rename_and_copy_reload_from_the_log() {
    let storage = MemStorage::new();
    {
        let kv = persistent(&storage);
        kv.set("a", "1", shardcache::kv::SetOptions::new().ex(100))
            .expect("set");
        kv.rename("a", "b").expect("rename");
        assert!(kv.copy("b", "c", false).expect("copy"));
        kv.mset(&[("d", "4"), ("e", "5")]).expect("mset");
        assert!(!kv.mset_nx(&[("e", "x"), ("f", "6")]).expect("msetnx"));
        assert!(kv.rename_nx("d", "f").expect("renamenx"));
    }
    let kv = persistent(&storage);
    let state: BTreeMap<String, Option<Bytes>> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| (k.to_string(), kv.get(k)))
        .collect();
    assert_eq!(state["a"], None);
    assert_eq!(state["b"].as_deref(), Some(&b"1"[..]));
    assert_eq!(state["c"].as_deref(), Some(&b"1"[..]));
    assert_eq!(state["d"], None);
    assert_eq!(state["e"].as_deref(), Some(&b"5"[..]));
    assert_eq!(state["f"].as_deref(), Some(&b"4"[..]));
    assert!((99..=100).contains(&kv.ttl("b")));
    assert!((99..=100).contains(&kv.ttl("c")));
}

/// Batches over overlapping keys in every order, renames, copies and single
/// writes, on a full store whose writes evict across shards: two batches
/// never wait for each other in a cycle (each takes its shards in
/// ascending order, and the cross-shard eviction only tries locks), so the
/// run ends (a hang fails the test after a generous bound, not a timing
/// assertion on the work).
#[test]
fn batches_in_every_order_never_deadlock() {
    let kv = KvStore::builder()
        .max_memory(20_000)
        .policy("allkeys-lru".parse::<Policy>().expect("policy"))
        .shards(4)
        .build()
        .expect("store");
    let run = move || {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    let mut rng = Xorshift(99 + t);
                    for _ in 0..3_000 {
                        let a = format!("k{}", rng.next() % 12);
                        let b = format!("k{}", rng.next() % 12);
                        let c = format!("k{}", rng.next() % 12);
                        let v = "v".repeat((rng.next() % 300) as usize);
                        let _ = match rng.next() % 6 {
                            0 => kv.mset(&[(a, v.clone()), (b, v.clone()), (c, v)]).map(drop),
                            1 => kv.mset_nx(&[(c, v.clone()), (a, v)]).map(drop),
                            2 => kv.rename(&a, &b),
                            3 => kv.copy(&b, &a, true).map(drop),
                            4 => kv.set(&a, v, Default::default()).map(drop),
                            _ => {
                                kv.del(&[a, b]);
                                Ok(())
                            }
                        };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
    };
    assert!(watchdog::bounded(300, run).is_ok(), "batches deadlocked");
}

/// Under `Fsync::EverySecond` a crash may lose the last batches, but never
/// part of one: however many of the unsynced bytes survive, the store
/// reopens with every key of the group from one batch.
#[test]
fn a_buffered_batch_is_lost_whole_or_kept_whole() {
    let mut cut = 0;
    for keep in (0..400).step_by(7) {
        let storage = MemStorage::new();
        let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond)
            .write_delay(std::time::Duration::ZERO);
        let (kv, _) = KvStore::builder()
            .shards(8)
            .build_persistent(log)
            .expect("open");
        for i in 0..20u64 {
            let v = i.to_string();
            let pairs: Vec<(&str, String)> = GROUP.iter().map(|k| (*k, v.clone())).collect();
            kv.mset(&pairs).expect("mset");
        }
        // The crash, while the store runs (its drop would sync).
        if storage.synced_len() < storage.len() {
            cut += 1;
        }
        storage.power_loss(keep);
        let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond);
        let (reopened, _) = KvStore::builder()
            .shards(8)
            .build_persistent(log)
            .expect("reopen");
        if reopened.get(GROUP[0]).is_some() {
            let _ = group_value(&reopened);
        } else {
            assert!(
                GROUP.iter().all(|k| reopened.get(k).is_none()),
                "keep {keep}"
            );
        }
        drop(reopened);
        drop(kv);
    }
    assert!(cut > 0, "no crash cut an unsynced batch");
}

/// A value `APPEND` grew keeps spare capacity, counted in `used_memory`:
/// `RENAME` moves it with the value, so the store's memory changes only by
/// the keys' difference in length; `COPY` shares the buffer and counts the
/// copy's bytes.
#[test]
fn rename_keeps_what_a_value_is_counted_as() {
    let kv = store(4);
    for _ in 0..50 {
        kv.append("src1", b"0123456789").expect("append");
    }
    let before = kv.stats().used_memory;
    kv.rename("src1", "dst1").expect("rename");
    assert_eq!(kv.stats().used_memory, before);
    kv.rename("dst1", "longer-name").expect("rename");
    assert_eq!(kv.stats().used_memory, before + 7);
    assert_eq!(kv.strlen("longer-name"), 500);
    assert!(kv.copy("longer-name", "c", false).expect("copy"));
    let copy = kv.stats().used_memory - (before + 7);
    assert_eq!(copy, 1 + 500 + u64::from(shardcache::kv::ENTRY_OVERHEAD));
}
