//! Memory use per entry, measured with a counting global allocator.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::report::Table;
use crate::subjects;

/// Wraps the system allocator and tracks the bytes currently allocated.
pub(crate) struct Counting;

static CURRENT: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is
// updated on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            CURRENT.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            CURRENT.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

/// Bytes currently allocated through the global allocator.
pub(crate) fn allocated() -> isize {
    CURRENT.load(Ordering::Relaxed)
}

/// For each subject: build a cache of capacity `entries`, fill it with
/// `entries` distinct `u64 -> u64` pairs, settle it, and report the growth
/// in allocated bytes; then insert `2 × entries` further distinct pairs (a
/// steady state of evictions, where deleted slots and grown tables show),
/// settle again and report the growth once more. Rows are subjects; columns
/// are entries held, total MiB and bytes per held entry after the fill, and
/// bytes per held entry after the churn.
pub(crate) fn run(names: &[&'static str], entries: u64) -> Result<Table, String> {
    if entries == 0 {
        return Err("--entries must be at least 1".into());
    }
    let mut table = Table::new(
        "subject",
        vec![
            "entries held".into(),
            "MiB".into(),
            "bytes/entry".into(),
            "bytes/entry after churn".into(),
        ],
        1,
    );
    table.precision[0] = 0;
    for &name in names {
        let before = allocated();
        let cache = subjects::build(name, entries)?;
        for k in 0..entries {
            cache.insert(k);
        }
        cache.settle();
        let held = cache.len();
        let bytes = (allocated() - before).max(0) as f64;
        for k in entries..entries.saturating_mul(3) {
            cache.insert(k);
        }
        cache.settle();
        let churned = per_entry((allocated() - before).max(0) as f64, cache.len());
        drop(cache);
        table.rows.push((
            name.to_string(),
            vec![
                held as f64,
                bytes / (1024.0 * 1024.0),
                per_entry(bytes, held),
                churned,
            ],
        ));
    }
    Ok(table)
}

/// Bytes per held entry (NaN when nothing is held).
fn per_entry(bytes: f64, held: usize) -> f64 {
    if held > 0 {
        bytes / held as f64
    } else {
        f64::NAN
    }
}
