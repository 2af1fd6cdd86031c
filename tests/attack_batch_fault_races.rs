//! Threads writing batches and splices of their own keys on one persistent
//! store (`Fsync::Always`, background rewrites) while the storage fails now
//! and then: once the log is healed, each thread's keys hold exactly what
//! it was told was written, and the reopened store is the dropped one.

#[path = "support/kv_log.rs"]
#[allow(dead_code)]
mod kv_log;
#[path = "support/watchdog.rs"]
mod watchdog;

use kv_log::{bulk, splice};
use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn persistent(storage: &MemStorage) -> KvStore {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, 2_048);
    KvStore::builder()
        .shards(4)
        .build_persistent(log)
        .expect("open")
        .0
}

type Model = BTreeMap<String, Vec<u8>>;

/// One write of thread `t` on its keys; the model if it is acknowledged.
fn step(kv: &KvStore, t: usize, i: u64, model: &Model) -> Model {
    let keys: Vec<String> = (0..3).map(|j| format!("t{t}:{j}")).collect();
    let (k1, k2) = (&keys[(i % 3) as usize], &keys[((i / 3) % 3) as usize]);
    let mut m = model.clone();
    match (i * 7 + t as u64) % 6 {
        0 | 1 => {
            let extra = format!("<{i}>");
            kv.append(k1, extra.as_bytes()).expect("append");
            m.entry(k1.clone())
                .or_default()
                .extend_from_slice(extra.as_bytes());
        }
        2 => {
            kv.set_range(k1, (i % 9) as usize, b"SR").expect("setrange");
            splice(m.entry(k1.clone()).or_default(), (i % 9) as usize, b"SR");
        }
        3 => {
            if kv.rename(k1, k2).is_ok() && k1 != k2 {
                let v = m.remove(k1).expect("renamed a key the model has");
                m.insert(k2.clone(), v);
            }
        }
        4 => {
            if kv.copy(k1, k2, true).unwrap_or(false) {
                let v = m[k1].clone();
                m.insert(k2.clone(), v);
            }
        }
        _ => {
            let v = format!("m{i}");
            kv.mset(&[(k1.as_str(), v.clone()), (k2.as_str(), v.clone())])
                .expect("mset");
            m.insert(k1.clone(), v.clone().into_bytes());
            m.insert(k2.clone(), v.into_bytes());
        }
    }
    m
}

#[test]
fn concurrent_batches_and_splices_under_transient_faults_keep_what_was_acknowledged() {
    let done = watchdog::bounded(150, || {
        let mut refusals = 0;
        // At least 30 rounds, and more until the faults have hit enough
        // writes: how many land in a round depends on the threads' speed.
        let mut round = 0u64;
        while round < 30 || (refusals <= 20 && round < 600) {
            round += 1;
            let storage = MemStorage::new();
            let kv = persistent(&storage);
            let stop = Arc::new(AtomicBool::new(false));
            let faults = {
                let (storage, stop) = (storage.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = round;
                    while !stop.load(Ordering::Relaxed) {
                        storage.fail_once_after(n % 7);
                        n += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            };
            let writers: Vec<_> = (0..3)
                .map(|t| {
                    let kv = kv.clone();
                    std::thread::spawn(move || {
                        let mut model = Model::new();
                        let (mut unknown, mut refused) = (false, 0u32);
                        for i in 0..300u64 {
                            match kv.durably(|| step(&kv, t, i, &model)) {
                                Ok(m) => model = m,
                                Err(e) => {
                                    refused += 1;
                                    unknown |= e.to_string().contains("unknown");
                                    let _ = kv.sync();
                                }
                            }
                        }
                        (model, unknown, refused)
                    })
                })
                .collect();
            let models: Vec<(Model, bool, u32)> = writers
                .into_iter()
                .map(|w| w.join().expect("writer"))
                .collect();
            stop.store(true, Ordering::Relaxed);
            faults.join().expect("faults");
            storage.heal();
            let mut healed = false;
            for _ in 0..10 {
                if kv.sync().is_ok() {
                    healed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(healed, "round {round}: the log does not heal");
            refusals += models.iter().map(|m| m.2).sum::<u32>();
            for (t, (model, unknown, _)) in models.iter().enumerate() {
                if *unknown {
                    continue;
                }
                for j in 0..3 {
                    let k = format!("t{t}:{j}");
                    assert_eq!(bulk(&kv, &k), model.get(&k).cloned(), "round {round} {k}");
                }
            }
            let mut keys = kv.keys("*");
            keys.sort();
            let before: Vec<_> = keys.iter().map(|k| (k.clone(), bulk(&kv, k))).collect();
            drop(kv);
            let kv = persistent(&storage);
            let mut keys = kv.keys("*");
            keys.sort();
            let after: Vec<_> = keys.iter().map(|k| (k.clone(), bulk(&kv, k))).collect();
            assert_eq!(after, before, "round {round}: reopened");
        }
        assert!(refusals > 20, "the faults hit too few writes: {refusals}");
    });
    done.expect("deadlock: the writers did not finish in 150 s");
}
