//! Replay of batches (`RENAME`, `COPY`, `MSET`) and splices (`APPEND`,
//! `SETRANGE`, `SETBIT`) of keys with expiries on a persistent `KvStore`,
//! the mock clock moving between writes: every reopen (and every rewrite)
//! gives back exactly the store that was dropped, values and remaining
//! times to live, with no orphan splice.

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/kv_log.rs"]
#[allow(dead_code)]
mod kv_log;

use kv_log::{bulk, open, open_with};
use shardcache::kv::{ExpireOptions, KvStore, SetOptions};
use shardcache::persist::MemStorage;
use shardcache::MockClock;
use std::time::Duration;

const KEYS: [&str; 3] = ["a", "b", "c"];

fn state(kv: &KvStore) -> Vec<(Option<Vec<u8>>, i64)> {
    KEYS.iter().map(|k| (bulk(kv, k), kv.pttl(k))).collect()
}

fn same(got: &[(Option<Vec<u8>>, i64)], want: &[(Option<Vec<u8>>, i64)]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((gv, gt), (wv, wt))| gv == wv && (gt - wt).abs() <= 1)
}

#[test]
fn batches_and_splices_of_expiring_keys_reload_as_they_were() {
    for seed in 1..=150u64 {
        let mut rng = Xorshift::seeded(seed);
        let mut next = move |n: u64| rng.below(n);
        let clock = MockClock::new();
        let storage = MemStorage::new();
        let mut kv = open(&storage, &clock);
        for step in 0..80 {
            let (k1, k2) = (KEYS[next(3) as usize], KEYS[next(3) as usize]);
            match next(14) {
                0 => {
                    let _ = kv.set(
                        k1,
                        format!("s{step}"),
                        SetOptions::new().px(1 + next(3000) as i64),
                    );
                }
                1 => {
                    let _ = kv.set(k1, format!("p{step}"), SetOptions::new());
                }
                2 | 3 => {
                    let _ = kv.append(k1, format!("<{step}>").as_bytes());
                }
                4 => {
                    let _ = kv.set_range(k1, next(10) as usize, b"SR");
                }
                5 => {
                    let _ = kv.setbit(k1, next(64), next(2) == 0);
                }
                6 => {
                    let _ = kv.rename(k1, k2);
                }
                7 => {
                    let _ = kv.copy(k1, k2, next(2) == 0);
                }
                8 => {
                    let _ = kv.mset(&[(k1, format!("m{step}")), (k2, format!("n{step}"))]);
                }
                9 => {
                    let _ = kv.pexpire(k1, next(3000) as i64, ExpireOptions::default());
                }
                10 => {
                    let _ = kv.persist(k1);
                }
                11 => clock.advance(Duration::from_millis(next(2500))),
                12 => {
                    kv.rewrite_log().expect("rewrite");
                }
                _ => {
                    let before = state(&kv);
                    drop(kv);
                    let (reopened, report) = open_with(&storage, &clock);
                    kv = reopened;
                    let after = state(&kv);
                    assert!(
                        same(&after, &before),
                        "seed {seed} step {step}: reopened {after:?}, dropped {before:?}"
                    );
                    assert_eq!(report.orphan_splices, 0, "seed {seed} step {step}");
                }
            }
        }
        let before = state(&kv);
        drop(kv);
        clock.advance(Duration::from_millis(next(2000)));
        let (kv, report) = open_with(&storage, &clock);
        assert_eq!(report.orphan_splices, 0, "seed {seed}");
        // What lapsed while the store was closed is gone; the rest is back.
        let after = state(&kv);
        for (i, ((gv, _), (wv, wt))) in after.iter().zip(&before).enumerate() {
            if *wt >= 0 && kv.pttl(KEYS[i]) == -2 {
                continue;
            }
            assert_eq!(gv, wv, "seed {seed} key {}", KEYS[i]);
        }
    }
}
