//! The typed bitmap methods (`setbit`, `getbit`, `bitcount`, `bitpos`) on
//! their own: the 512 MiB limit, `max_memory` and the memory a refused
//! growth leaves, readers' bytes, expiries and namespaces.

use bytes::Bytes;
use shardcache::kv::{BitRange, KvError, KvStore, SetOptions, ENTRY_OVERHEAD, MAX_STRING_LEN};
use shardcache::{MockClock, Policy, RedisPolicy};
use std::time::Duration;

const LAST: u64 = (1 << 32) - 1;

#[test]
fn the_last_bit_of_a_512_mib_value() {
    let store = KvStore::new();
    assert_eq!(
        store.setbit("big", LAST + 1, true),
        Err(KvError::BitOffsetOutOfRange)
    );
    assert_eq!(
        store.getbit("big", LAST + 1),
        Err(KvError::BitOffsetOutOfRange)
    );
    assert_eq!(
        store.setbit("big", u64::MAX, true),
        Err(KvError::BitOffsetOutOfRange)
    );
    assert_eq!(store.setbit("big", LAST, true), Ok(false));
    assert_eq!(store.strlen("big"), MAX_STRING_LEN);
    assert_eq!(store.getbit("big", LAST), Ok(true));
    assert_eq!(store.getbit("big", LAST - 1), Ok(false));
    assert_eq!(store.bitcount("big", BitRange::bytes(-1, -1)), 1);
    assert_eq!(store.bitcount("big", BitRange::bits(-1, -1)), 1);
    assert_eq!(
        store.bitpos("big", true, BitRange::from_byte(-1)),
        LAST as i64
    );
    assert_eq!(store.bitpos("big", false, BitRange::bits(-1, -1)), -1);
    assert_eq!(
        store.bitpos("big", false, BitRange::from_byte(-1)),
        LAST as i64 - 7
    );
    assert_eq!(store.setbit("big", LAST, true), Ok(true));
    assert_eq!(store.setbit("big", 0, true), Ok(false));
    assert_eq!(store.bitpos("big", true, BitRange::all()), 0);
    assert_eq!(store.bitcount("big", BitRange::bytes(0, 0)), 1);
    assert_eq!(store.setbit("big", LAST, false), Ok(true));
    assert_eq!(
        store.strlen("big"),
        MAX_STRING_LEN,
        "clearing keeps the length"
    );
}

#[test]
fn setbit_keeps_the_expiry_and_the_bytes_readers_hold() {
    let clock = MockClock::new();
    let store = KvStore::builder()
        .clock(clock.clone())
        .build()
        .expect("store");
    store
        .set("k", "abc", SetOptions::new().ex(100))
        .expect("set");
    let reader = store.get("k").expect("k");
    // Within the value (copied), then past its end (grown).
    assert_eq!(store.setbit("k", 0, true), Ok(false));
    assert_eq!(store.setbit("k", 40, true), Ok(false));
    assert_eq!(&reader[..], b"abc");
    let grown = store.get("k").expect("k");
    assert_eq!(&grown[..], b"\xe1bc\x00\x00\x80");
    assert_eq!(store.setbit("k", 47, true), Ok(false));
    assert_eq!(store.setbit("k", 100, false), Ok(false));
    assert_eq!(&grown[..], b"\xe1bc\x00\x00\x80");
    assert_eq!(store.strlen("k"), 13);
    assert_eq!(store.ttl("k"), 100);
    // A bit already as asked writes nothing: the expiry runs on.
    clock.advance(Duration::from_secs(30));
    assert_eq!(store.setbit("k", 0, true), Ok(true));
    assert_eq!(store.ttl("k"), 70);
    clock.advance(Duration::from_secs(70));
    assert_eq!(store.getbit("k", 0), Ok(false));
    assert_eq!(store.bitpos("k", false, BitRange::all()), 0);
    assert_eq!(store.bitpos("k", true, BitRange::all()), -1);
}

#[test]
fn setbit_in_a_namespace_writes_the_prefixed_key() {
    let store = KvStore::new();
    let days = store.namespace("dau:");
    assert_eq!(days.setbit("2026-12-07", 9, true), Ok(false));
    assert_eq!(
        store.get("dau:2026-12-07"),
        Some(Bytes::from_static(b"\x00\x40"))
    );
    assert_eq!(days.bitcount("2026-12-07", BitRange::all()), 1);
    assert_eq!(store.bitpos("dau:2026-12-07", true, BitRange::all()), 9);
}

#[test]
fn setbit_growth_is_weighed_against_max_memory() {
    let max: u64 = 1 << 20;
    let store = KvStore::builder()
        .max_memory(max)
        .policy(Policy::redis(RedisPolicy::NoEviction))
        .build()
        .expect("store");
    // Could never fit: refused before a byte is written.
    assert_eq!(store.setbit("k", LAST, true), Err(KvError::OutOfMemory));
    assert_eq!(store.setbit("k", 8 << 20, true), Err(KvError::OutOfMemory));
    assert_eq!(store.stats().used_memory, 0);
    assert_eq!(store.dbsize(), 0);
    // The largest value that fits beside its key, exactly.
    let fit = max - u64::from(ENTRY_OVERHEAD) - 1;
    assert_eq!(store.setbit("k", fit * 8 - 1, true), Ok(false));
    assert_eq!(store.stats().used_memory, max);
    assert_eq!(store.setbit("k", fit * 8, true), Err(KvError::OutOfMemory));
    assert_eq!(store.strlen("k") as u64, fit);
    assert_eq!(store.stats().used_memory, max);
    store.del(&["k"]);
    assert_eq!(store.stats().used_memory, 0);
    // A value grown past its end keeps spare room while it fits, and is
    // stored without it when only that fits; nothing is left over when the
    // growth is refused.
    let half = max / 2;
    assert_eq!(store.setbit("k", half * 8, true), Ok(false));
    assert_eq!(store.setbit("k", (half + 1) * 8, true), Ok(false));
    let used = store.stats().used_memory;
    assert!(used <= max, "{used}");
    assert_eq!(
        store.setbit("other", (max / 4) * 8, true),
        Err(KvError::OutOfMemory)
    );
    assert_eq!(store.stats().used_memory, used);
    assert_eq!(store.bitcount("k", BitRange::all()), 2);
}
