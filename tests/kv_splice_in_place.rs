#![allow(clippy::unwrap_used)]
//! `SETBIT` and `SETRANGE` over a value's own bytes write in place when no
//! reader holds the value and the write is sure to apply (no log, or one
//! that buffers and admits writes): a reader's bytes never change under
//! it, a write the log refuses changes nothing, and the log replays what
//! was written.

use bytes::Bytes;
use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A bitmap of 1 MiB, grown by its last bit.
const BITS: u64 = 8 << 20;

fn buffer_of(kv: &KvStore, key: &str) -> usize {
    kv.get(key).unwrap().as_ptr() as usize
}

/// Readers take the value and check, a while later, that its bytes are
/// what they were, while a writer sets bits all over it.
#[test]
fn a_readers_bytes_never_change_under_writes_in_place() {
    let kv = Arc::new(KvStore::new());
    kv.setbit("bm", BITS - 1, true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (kv, stop) = (kv.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = kv.get("bm").unwrap();
                    let before: Vec<u8> = v[..4096].to_vec();
                    std::thread::yield_now();
                    assert_eq!(&v[..4096], &before[..], "a reader's bytes changed");
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Mostly in the first 4 KiB, where the readers look.
        let bit = if x.is_multiple_of(4) {
            x % BITS
        } else {
            x % (4096 * 8)
        };
        kv.setbit("bm", bit, x & 1 == 0).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// With no reader, a bit set inside the bitmap keeps its buffer; the
/// weight the store counts is unchanged.
#[test]
fn a_write_over_the_bytes_with_no_reader_keeps_the_buffer() {
    let kv = KvStore::new();
    kv.setbit("bm", BITS - 1, true).unwrap();
    let (at, used) = (buffer_of(&kv, "bm"), kv.stats().used_memory);
    for bit in (0..BITS).step_by(4099) {
        assert!(!kv.setbit("bm", bit, true).unwrap());
    }
    assert_eq!(kv.set_range("bm", 10, b"abc"), Ok((BITS / 8) as usize));
    assert_eq!(buffer_of(&kv, "bm"), at);
    assert_eq!(kv.stats().used_memory, used);
    assert!(kv.getbit("bm", 4099).unwrap());
    assert_eq!(&kv.get_range("bm", 10, 12)[..], b"abc");
}

/// On a buffering log: writes in place are replayed as written; once the
/// log has failed, a write over the bytes is refused and changes nothing,
/// and the repair keeps what stood.
#[test]
fn writes_in_place_on_a_buffering_log_replay_and_a_refused_one_changes_nothing() {
    let storage = MemStorage::new();
    let open = || {
        let log =
            FileLog::with_storage(storage.clone(), Fsync::EverySecond).write_delay(Duration::ZERO);
        KvStore::builder().build_persistent(log).unwrap().0
    };
    let kv = open();
    kv.setbit("bm", BITS - 1, true).unwrap();
    let at = buffer_of(&kv, "bm");
    for bit in (0..BITS).step_by(7919) {
        kv.setbit("bm", bit, true).unwrap();
    }
    kv.set_range("bm", 3, b"xyz").unwrap();
    assert_eq!(buffer_of(&kv, "bm"), at, "written in place");
    kv.sync().unwrap();
    let written: Bytes = kv.get("bm").unwrap();

    // The write the failure meets stays (the log buffers); once the log
    // is failed, writes are refused and change nothing.
    storage.fail_after(0);
    let _ = kv.setbit("bm", 1, true);
    assert!(kv.sync().is_err(), "the log has failed");
    assert!(
        kv.getbit("bm", 1).unwrap(),
        "the write the failure met stays"
    );
    let stood = kv.get("bm").unwrap();
    assert!(kv.durably(|| kv.setbit("bm", 2, true)).is_err());
    assert!(kv.durably(|| kv.set_range("bm", 100, b"no")).is_err());
    assert_eq!(
        kv.get("bm").unwrap(),
        stood,
        "a refused write changed the value"
    );
    storage.heal();
    // The first `sync` after the failure reports it; one that succeeds
    // has repaired the log.
    assert!((0..10).any(|_| kv.sync().is_ok()), "repaired");
    drop(kv);
    let kv = open();
    assert_eq!(kv.get("bm").unwrap(), stood, "reopened");
    assert_eq!(stood[0], written[0] | 0b0100_0000, "bit 1 set");
    assert_eq!(&stood[1..3], &written[1..3]);
    assert_eq!(&stood[3..6], b"xyz");
}
