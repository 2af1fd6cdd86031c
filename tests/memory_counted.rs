#![allow(clippy::unwrap_used)]
// A global allocator can only be written with `unsafe`; this one forwards
// every call to the system allocator and counts bytes (test code only), as
// tests/kv_used_memory.rs does.
#![allow(unsafe_code)]

//! Memory bounds, measured by a counting global allocator (heap bytes
//! counted per thread, so tests running beside each other do not disturb
//! the count): what a cache allocates before its first insert is bounded by
//! its capacity or by a small constant per shard, never by the shard count
//! times a floor; and a file log gives back the buffer of an unusually large
//! record once it is written.

use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, WriteAheadLog};
use shardcache::Cache;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the bytes each thread holds.
struct Counting;

thread_local! {
    /// The bytes this thread allocated less those it freed.
    static MINE: Cell<isize> = const { Cell::new(0) };
}

fn count(n: isize) {
    MINE.set(MINE.get() + n);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The bytes `f` leaves allocated on this thread, and its result.
fn held_by<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let before = MINE.get();
    let t = f();
    (t, MINE.get() - before)
}

const MIB: isize = 1 << 20;

/// Shards enough that a per-shard floor of a few KiB costs a GiB.
const MANY: usize = 65_536;

/// The bytes a cache of `MANY` shards and no capacity leaves allocated
/// (weighted or not): the structures every shard has whatever its capacity
/// (about 1.4 KiB a shard: its lock, its fields, its flight map, its reader
/// counts).
fn unbounded_many(weighted: bool) -> isize {
    let b = Cache::<u64, u64>::builder().shards(MANY);
    let b = if weighted { b.weigher(|_, _| 100) } else { b };
    held_by(|| b.build().unwrap()).1
}

#[test]
fn a_weighted_cache_with_many_shards_allocates_little_before_an_insert() {
    let base = unbounded_many(true);
    let (cache, held) = held_by(|| {
        Cache::<u64, u64>::builder()
            .max_capacity(1 << 30)
            .weigher(|_, _| 100)
            .shards(MANY)
            .build()
            .unwrap()
    });
    eprintln!(
        "weighted, {MANY} shards, empty: {} KiB ({} KiB with no capacity)",
        held >> 10,
        base >> 10
    );
    // Its policy's sketches and ghosts, sized for 4,096 entries a shard,
    // took 1.5 GiB over the shards' own structures.
    assert!(
        held - base < 24 * MIB,
        "weighted, {MANY} shards, empty: {} MiB over an unbounded cache's {} MiB",
        (held - base) / MIB,
        base / MIB
    );
    assert!(
        held < 192 * MIB,
        "weighted, {MANY} shards: {} MiB",
        held / MIB
    );
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
}

#[test]
fn a_store_with_many_shards_allocates_little_before_an_insert() {
    let (_, base) = held_by(|| KvStore::builder().shards(MANY).build().unwrap());
    let (store, held) = held_by(|| {
        KvStore::builder()
            .max_memory(64 << 20)
            .shards(MANY)
            .build()
            .unwrap()
    });
    eprintln!(
        "KvStore max_memory 64 MiB, {MANY} shards, empty: {} KiB ({} KiB unbounded)",
        held >> 10,
        base >> 10
    );
    assert!(
        held - base < 24 * MIB,
        "KvStore, {MANY} shards, empty: {} MiB over an unbounded store's {} MiB",
        (held - base) / MIB,
        base / MIB
    );
    drop(store);
}

#[test]
fn a_unit_cache_with_many_shards_allocates_little_before_an_insert() {
    let base = unbounded_many(false);
    let (cache, held) = held_by(|| {
        Cache::<u64, u64>::builder()
            .max_capacity(1_000_000)
            .shards(MANY)
            .build()
            .unwrap()
    });
    eprintln!(
        "unit, capacity 1M, {MANY} shards, empty: {} KiB ({} KiB with no capacity)",
        held >> 10,
        base >> 10
    );
    // 15 entries a shard; each shard's sketch started at a 16 KiB floor.
    assert!(
        held - base < 32 * MIB,
        "unit, {MANY} shards, empty: {} MiB over an unbounded cache's {} MiB",
        (held - base) / MIB,
        base / MIB
    );
    for k in 0..2_000_000u64 {
        cache.insert(k, k);
    }
    assert!(cache.len() <= 1_000_000);
}

#[test]
fn a_large_record_does_not_stay_in_the_logs_buffers() {
    let dir = tempfile::tempdir().unwrap();
    // `Always`: the record is written and synced on this thread, in `wait`.
    let log = FileLog::open(dir.path().join("c.log"), Fsync::Always).unwrap();
    let record = vec![7u8; 64 << 20];
    let (_, held) = held_by(|| {
        let lsn = log.append(&record).unwrap();
        log.wait(lsn).unwrap();
        let lsn = log.append(b"small").unwrap();
        log.wait(lsn).unwrap();
    });
    eprintln!(
        "file log, after a 64 MiB record and a small one: {} KiB held",
        held >> 10
    );
    // Its buffer kept the record's 64 MiB for the life of the log.
    assert!(
        held < 8 * MIB,
        "file log, after a 64 MiB record: {} MiB held",
        held / MIB
    );
}
