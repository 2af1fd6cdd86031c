//! `used_memory` against the heap the store's entries actually hold,
//! measured with a counting global allocator as glibc's malloc chunks (the
//! requested bytes are printed beside): within ±25 % for small keys at
//! several fill levels, 10 KB values and 1 MB values, set whole or built by
//! appends (which keep spare capacity). The heap is counted from the empty
//! store, so fixed per-shard structures are left out. Also the heap a
//! refused `APPEND` or `SETRANGE` holds at once while it tries.

// A global allocator can only be written with `unsafe`; this one forwards
// every call to the system allocator and counts bytes (test code only).
#![allow(unsafe_code)]

use shardcache::kv::{KvStore, Reply};
use shardcache::{Policy, RedisPolicy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

/// Counts the bytes currently allocated through it.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);
/// The same, counted as glibc's malloc chunks: a 16-byte-aligned block with
/// an 8-byte header, 32 bytes at least.
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// The bytes this thread holds, counted as `HELD` is (frees of memory
    /// another thread allocated count here too).
    static MINE: Cell<isize> = const { Cell::new(0) };
    /// The most `MINE` has been since it was last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `n` bytes to this thread's count and raises its peak.
fn count_mine(n: isize) {
    let now = MINE.get() + n;
    MINE.set(now);
    PEAK.set(PEAK.get().max(now));
}

fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        count_mine(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        count_mine(-(layout.size() as isize));
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        CHUNKS.fetch_add(chunk(new_size) - chunk(layout.size()), Ordering::Relaxed);
        count_mine(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn held() -> (isize, isize) {
    (HELD.load(Ordering::Relaxed), CHUNKS.load(Ordering::Relaxed))
}

/// Fills a fresh store with `n` keys of `value_len` bytes through `execute`;
/// returns the heap grown since the empty store was built (requested bytes,
/// and as malloc chunks) and `used_memory`.
///
/// With `chunk: Some(c)`, each value is built by appends of `c` bytes, the
/// keys taking turns, so it holds spare capacity.
fn measure(
    n: usize,
    value_len: usize,
    max_memory: Option<u64>,
    chunk: Option<usize>,
) -> (f64, f64, f64) {
    let mut b = KvStore::builder().shards(64);
    if let Some(m) = max_memory {
        b = b.max_memory(m);
    }
    let store = b.build().expect("valid config");
    let value = "v".repeat(value_len);
    let before = held();
    match chunk {
        None => {
            for i in 0..n {
                store.execute(&["SET", &format!("user:{i:08}"), &value]);
            }
        }
        Some(c) => {
            for _ in 0..value_len / c {
                for i in 0..n {
                    store.execute(&["APPEND", &format!("user:{i:08}"), &value[..c]]);
                }
            }
        }
    }
    let after = held();
    let used = store.stats().used_memory as f64;
    drop(store);
    (
        (after.0 - before.0) as f64,
        (after.1 - before.1) as f64,
        used,
    )
}

/// The tests of this file one at a time, as each reads the heap counters.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn used_memory_tracks_the_heap() {
    let _alone = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, n, len, chunk) in [
        ("small keys", 60_000, 10, None),
        ("small keys", 200_000, 10, None),
        ("small keys", 330_000, 10, None),
        ("10 KB values", 2_000, 10_000, None),
        ("1 MB values", 40, 1 << 20, None),
        // Spare capacity included: 10,000 bytes in 19,000.
        ("10 KB values by 100 B appends", 2_000, 10_000, Some(100)),
        // 1 MiB (1,048,576 bytes) in 1,564,672.
        ("1 MB values by 4 KB appends", 40, 1 << 20, Some(4096)),
    ] {
        let (grown, chunks, used) = measure(n, len, None, chunk);
        let (ratio, chunk_ratio) = (used / grown, used / chunks);
        println!(
            "{name}: heap grew {grown:.0} B ({chunks:.0} B in malloc chunks), used_memory {used:.0} B, \
             ratio {ratio:.3} ({chunk_ratio:.3})"
        );
        assert!(
            (0.75..=1.25).contains(&chunk_ratio),
            "{name}: used_memory / malloc chunks = {chunk_ratio:.3}"
        );
    }
}

/// The most heap this thread held at once while running `f`, beyond what it
/// held before.
fn peak_while<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let start = MINE.get();
    PEAK.set(start);
    let r = f();
    (r, PEAK.get() - start)
}

/// An `APPEND` or `SETRANGE` that `max_memory` refuses holds one new
/// buffer at a time: the attempt with spare capacity (up to `max_memory`)
/// is freed before the one without is built, so a refusal needs at most
/// `max_memory` of heap beside the store, not twice that.
#[test]
fn a_refused_growth_holds_one_new_buffer_at_a_time() {
    const MAX: u64 = 1 << 20;
    let _alone = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let store = KvStore::builder()
        .max_memory(MAX)
        .policy(Policy::redis(RedisPolicy::NoEviction))
        .shards(1)
        .build()
        .expect("valid config");
    store.execute(&["SET", "small", "abc"]);
    for key in ["big", "pad"] {
        let reply = store.execute(&["SETRANGE", key, "400000", "x"]);
        assert_eq!(reply, Reply::Integer(400_001));
    }
    let more = "z".repeat(300_000);
    for args in [
        vec!["SETRANGE", "small", "400000", "y"],
        vec!["APPEND", "big", &more],
    ] {
        let (reply, peak) = peak_while(|| store.execute(&args));
        assert!(
            matches!(&reply, Reply::Error(e) if e.starts_with("OOM")),
            "{}: {reply:?}",
            args[0]
        );
        assert!(
            peak < (MAX + MAX / 8) as isize,
            "{}: held {peak} bytes at once (one new buffer is at most {MAX})",
            args[0]
        );
    }
    assert_eq!((store.strlen("small"), store.strlen("big")), (3, 400_001));
}
