#![allow(clippy::unwrap_used)]
//! `MGET`, `EXISTS` and `DEL` of several keys as one step, as Redis runs
//! them, against racing multi-key writes: `EXISTS a b` during `RENAME a b`
//! is always 1, `MGET` never answers half of an `MSET` or a `RENAME`, a
//! multi-key `DEL` is never seen half done, and a crash keeps all of it or
//! none. Each race runs under a watchdog, so a deadlock fails the test.

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/watchdog.rs"]
mod watchdog;

use bytes::Bytes;
use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pairs of keys: with 8 shards, some pairs are all but sure to straddle
/// two shards (the race needs that; a pair on one shard is atomic anyway).
const PAIRS: usize = 6;

/// How long each race runs.
const RACE: Duration = Duration::from_millis(700);

fn pair(p: usize) -> [String; 2] {
    [format!("a{p}"), format!("b{p}")]
}

fn store() -> KvStore {
    KvStore::builder().shards(8).build().unwrap()
}

/// Runs `writer` on threads of their own (each told its index) and
/// `reader` on this one, until `RACE` is up; all under a watchdog. A panic
/// on any of them fails the test with its message.
fn race(
    writers: usize,
    writer: impl Fn(usize, &AtomicBool) + Send + Sync + 'static,
    reader: impl Fn(&mut Xorshift) + Send + 'static,
) {
    let done = watchdog::bounded(30, move || {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Arc::new(writer);
        let threads: Vec<_> = (0..writers)
            .map(|t| {
                let (stop, writer) = (stop.clone(), writer.clone());
                std::thread::spawn(move || writer(t, &stop))
            })
            .collect();
        let mut rng = Xorshift::seeded(7);
        let until = Instant::now() + RACE;
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while Instant::now() < until {
                reader(&mut rng);
            }
        }));
        stop.store(true, Ordering::Relaxed);
        let mut outcome = read.map_err(|e| watchdog::message(&*e));
        for t in threads {
            if let Err(e) = t.join() {
                outcome = outcome.and(Err(watchdog::message(&*e)));
            }
        }
        outcome
    });
    match done {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("{message}"),
        Err(()) => panic!("deadlock: the race did not finish in 30 s"),
    }
}

/// Two threads move each pair's one value back and forth (`RENAME a b`,
/// `RENAME b a`): `EXISTS a b` always counts 1, and `MGET a b` always has
/// exactly one value.
#[test]
fn renames_are_never_seen_half_done() {
    let kv = store();
    for p in 0..PAIRS {
        kv.set(&pair(p)[0], "v", Default::default()).unwrap();
    }
    let w = kv.clone();
    race(
        2,
        move |t, stop| {
            while !stop.load(Ordering::Relaxed) {
                for p in 0..PAIRS {
                    let [a, b] = pair(p);
                    let _ = match t {
                        0 => w.rename(&a, &b),
                        _ => w.rename(&b, &a),
                    };
                }
            }
        },
        move |rng| {
            let keys = pair(rng.index(PAIRS));
            assert_eq!(kv.exists(&keys), 1, "EXISTS {keys:?} during RENAME");
            let values = kv.mget(&keys);
            assert_eq!(
                values.iter().flatten().collect::<Vec<_>>(),
                [&Bytes::from("v")],
                "MGET {keys:?} during RENAME"
            );
        },
    );
}

/// `MSET a X b X` with a new X each time, in the root store and in a
/// namespace: `MGET a b` always answers one X for both.
#[test]
fn mget_never_answers_half_an_mset() {
    let root = store();
    for kv in [root.clone(), root.namespace("ns:")] {
        let w = kv.clone();
        race(
            1,
            move |_, stop| {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for p in 0..PAIRS {
                        let [a, b] = pair(p);
                        let v = x.to_string();
                        w.mset(&[(a.as_str(), v.clone()), (b.as_str(), v)]).unwrap();
                    }
                    x += 1;
                }
            },
            move |rng| {
                let keys = pair(rng.index(PAIRS));
                let values = kv.mget(&keys);
                assert_eq!(values[0], values[1], "MGET {keys:?} during MSET");
            },
        );
    }
}

/// A writer sets three keys with `MSET` and takes them away with one `DEL`
/// (counting 3 each time): readers see all three or none, with `MGET` and
/// with `EXISTS`, never a part.
#[test]
fn del_of_several_keys_is_never_seen_half_done() {
    let kv = store();
    let group = |p: usize| [format!("x{p}"), format!("y{p}"), format!("z{p}")];
    let w = kv.clone();
    race(
        1,
        move |_, stop| {
            while !stop.load(Ordering::Relaxed) {
                for p in 0..PAIRS {
                    let g = group(p);
                    let pairs: Vec<(&str, &str)> = g.iter().map(|k| (k.as_str(), "v")).collect();
                    w.mset(&pairs).unwrap();
                }
                for p in 0..PAIRS {
                    assert_eq!(w.del(&group(p)), 3, "DEL of a whole group");
                }
            }
        },
        move |rng| {
            let keys = group(rng.index(PAIRS));
            let n = kv.exists(&keys);
            assert!(n == 0 || n == 3, "EXISTS {keys:?} during DEL: {n}");
            let found = kv.mget(&keys).iter().flatten().count();
            assert!(
                found == 0 || found == 3,
                "MGET {keys:?} during DEL: {found}"
            );
        },
    );
}

/// `DEL` counts each key once however often it is named, removes nothing
/// absent, and leaves the store's other keys alone.
#[test]
fn del_counts_distinct_existing_keys() {
    let kv = store();
    kv.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
    assert_eq!(kv.del(&["a", "a", "missing", "b"]), 2);
    assert_eq!(kv.del(&["a", "b"]), 0);
    assert_eq!(kv.del::<&str>(&[]), 0);
    assert_eq!(kv.exists(&["a", "b", "c", "c"]), 2);
    assert_eq!(
        kv.mget(&["a", "c", "c"]),
        [None, Some(Bytes::from("3")), Some(Bytes::from("3"))]
    );
    let ns = kv.namespace("ns:");
    ns.mset(&[("c", "x"), ("d", "y")]).unwrap();
    assert_eq!(ns.del(&["c", "d", "c"]), 2);
    assert_eq!(kv.get("c").as_deref(), Some(&b"3"[..]));
}

/// A crash while multi-key `DEL`s are logged but not all synced
/// (`Fsync::EverySecond`, cut at every few bytes of the unsynced tail):
/// the store reopens with each group whole or gone, never a part of one.
#[test]
fn a_crash_keeps_a_multi_key_del_whole_or_not_at_all() {
    let group = |p: usize| [format!("x{p}"), format!("y{p}"), format!("z{p}")];
    let (mut cut, mut kept, mut lost) = (0, 0, 0);
    for keep in (0..600).step_by(5) {
        let storage = MemStorage::new();
        let log =
            FileLog::with_storage(storage.clone(), Fsync::EverySecond).write_delay(Duration::ZERO);
        let (kv, _) = KvStore::builder().shards(8).build_persistent(log).unwrap();
        for p in 0..PAIRS {
            let g = group(p);
            let pairs: Vec<(&str, &str)> = g.iter().map(|k| (k.as_str(), "v")).collect();
            kv.mset(&pairs).unwrap();
        }
        kv.sync().unwrap();
        for p in 0..PAIRS {
            assert_eq!(kv.del(&group(p)), 3);
        }
        // The crash, while the store runs (its drop would sync).
        if storage.synced_len() < storage.len() {
            cut += 1;
        }
        storage.power_loss(keep);
        let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond);
        let (reopened, _) = KvStore::builder().shards(8).build_persistent(log).unwrap();
        for p in 0..PAIRS {
            match reopened.exists(&group(p)) {
                0 => lost += 1,
                3 => kept += 1,
                n => panic!("keep {keep}: group {p} reopened with {n} of its 3 keys"),
            }
        }
        drop(reopened);
        drop(kv);
    }
    assert!(cut > 0, "no crash cut an unsynced DEL");
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

/// Under `Fsync::Always`, a storage failing from its n-th call on, for
/// every n: a multi-key `DEL` is acknowledged (3) and gone, or refused (0)
/// and all there, in memory and after a crash that keeps any part of what
/// was not synced.
#[test]
fn a_refused_multi_key_del_removes_nothing() {
    let keys = ["x", "y", "z"];
    let open = |storage: &MemStorage| {
        let log = FileLog::with_storage(storage.clone(), Fsync::Always).write_delay(Duration::ZERO);
        KvStore::builder()
            .shards(8)
            .build_persistent(log)
            .unwrap()
            .0
    };
    let mut refused = 0;
    for fault in 0..12u64 {
        for keep in [0usize, 1, 9, 40, 1 << 20] {
            let storage = MemStorage::new();
            let kv = open(&storage);
            kv.mset(&keys.map(|k| (k, "v"))).unwrap();
            storage.fail_after(fault);
            let acked = match kv.durably(|| kv.del(&keys)) {
                Ok(n) => {
                    assert_eq!(n, 3, "fault {fault}: an acknowledged DEL");
                    true
                }
                Err(_) => {
                    refused += 1;
                    false
                }
            };
            let left = kv.exists(&keys);
            assert!(left == 0 || left == 3, "fault {fault}: {left} keys left");
            assert_eq!(left == 0, acked, "fault {fault}: memory and answer differ");
            drop(kv);
            storage.heal();
            storage.power_loss(keep);
            let kv = open(&storage);
            let n = kv.exists(&keys);
            assert!(
                n == 0 || n == 3,
                "fault {fault} keep {keep}: {n} keys reopened"
            );
            if acked {
                assert_eq!(
                    n, 0,
                    "fault {fault} keep {keep}: an acknowledged DEL came back"
                );
            }
        }
    }
    assert!(refused > 0, "no fault hit a DEL");
}

/// `DEL` on a log that fails, one key and several, whichever comes first:
/// its count is what it removed from memory. Under `Always` a removal the
/// log could not keep is undone and counts 0; under `EverySecond` the one
/// the failure met stands and counts, the next is refused. A repair logs
/// the removal that stood; a crash before the repair brings it back.
#[test]
fn del_on_a_failing_log_counts_what_it_removed() {
    let present = |kv: &KvStore| ["a", "b", "c"].map(|k| kv.exists(&[k]) == 1);
    for fsync in [Fsync::EverySecond, Fsync::Always] {
        for multi_first in [false, true] {
            for crash in [false, true] {
                let ctx = format!("{fsync:?}, multi first {multi_first}, crash {crash}");
                let storage = MemStorage::new();
                let log = FileLog::with_storage(storage.clone(), fsync).write_delay(Duration::ZERO);
                let (kv, _) = KvStore::builder().shards(8).build_persistent(log).unwrap();
                kv.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
                kv.sync().unwrap();
                storage.fail_after(0);
                let (one, two) = if multi_first {
                    let two = kv.del(&["b", "c"]);
                    (kv.del(&["a"]), two)
                } else {
                    let one = kv.del(&["a"]);
                    (one, kv.del(&["b", "c"]))
                };
                let buffered = fsync != Fsync::Always;
                let expected = match (buffered, multi_first) {
                    (false, _) => (0, 0),
                    (true, false) => (1, 0),
                    (true, true) => (0, 2),
                };
                assert_eq!((one, two), expected, "{ctx}");
                let in_memory = present(&kv);
                assert_eq!(in_memory, [one == 0, two == 0, two == 0], "{ctx}");
                if crash {
                    storage.power_loss(storage.synced_len());
                } else {
                    storage.heal();
                    kv.sync().unwrap_err(); // reports the failure, repairs
                }
                drop(kv);
                storage.heal();
                let log = FileLog::with_storage(storage.clone(), fsync);
                let (kv, _) = KvStore::builder().shards(8).build_persistent(log).unwrap();
                let reopened = if crash { [true; 3] } else { in_memory };
                assert_eq!(present(&kv), reopened, "{ctx}");
            }
        }
    }
}
