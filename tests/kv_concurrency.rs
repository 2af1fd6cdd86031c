//! KvStore under contention: counters and `SET NX` stay exact.

use shardcache::kv::{KvStore, SetOptions};
use std::sync::Arc;

#[test]
fn concurrent_incr_loses_no_update() {
    let store = Arc::new(KvStore::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    s.incr("hits").expect("an integer");
                    s.execute(&["INCRBY", "hits2", "2"]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
    assert_eq!(store.get("hits").as_deref(), Some(&b"20000"[..]));
    assert_eq!(store.get("hits2").as_deref(), Some(&b"40000"[..]));
}

#[test]
fn set_nx_has_exactly_one_winner() {
    for round in 0..50 {
        let store = Arc::new(KvStore::new());
        let key = format!("lock:{round}");
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (s, k) = (store.clone(), key.clone());
                std::thread::spawn(move || {
                    s.set(&k, format!("owner-{i}"), SetOptions::new().nx().px(10_000))
                        .expect("fits")
                        .written
                })
            })
            .collect();
        let winners = threads
            .into_iter()
            .filter(|_| true)
            .map(|t| t.join().expect("no panic"))
            .filter(|w| *w)
            .count();
        assert_eq!(winners, 1);
    }
}
