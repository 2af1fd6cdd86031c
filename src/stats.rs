//! Hit / miss / insert / evict / expire counters.
//!
//! Counters are striped: each thread adds to its own cache-line-padded stripe,
//! so counting a hit never writes a line another core is reading. A snapshot
//! sums the stripes; it is exact once writers are quiet and never more than the
//! in-flight operations off while they run.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The counters one stripe holds, in [`Counter`] order.
const COUNTERS: usize = 8;

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Hit = 0,
    Miss = 1,
    Insert = 2,
    Update = 3,
    Eviction = 4,
    Expiration = 5,
    Removal = 6,
    Rejection = 7,
}

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

/// Striped counters shared by every shard of a cache.
pub(crate) struct StatsCounters {
    stripes: Box<[Stripe]>,
    mask: usize,
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
}

impl std::fmt::Debug for StatsCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsCounters")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

impl StatsCounters {
    /// Counters with enough stripes that each of the machine's threads gets its own.
    pub(crate) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, usize::from);
        let n = (cpus * 2).next_power_of_two().clamp(2, 64);
        Self {
            stripes: (0..n).map(|_| Stripe::default()).collect(),
            mask: n - 1,
        }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let stripe = STRIPE.with(|s| *s) & self.mask;
        self.stripes[stripe].0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub(crate) fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.sum(Counter::Hit),
            misses: self.sum(Counter::Miss),
            inserts: self.sum(Counter::Insert),
            updates: self.sum(Counter::Update),
            evictions: self.sum(Counter::Eviction),
            expirations: self.sum(Counter::Expiration),
            removals: self.sum(Counter::Removal),
            rejections: self.sum(Counter::Rejection),
        }
    }

    pub(crate) fn reset(&self) {
        for s in self.stripes.iter() {
            for c in &s.0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// A snapshot of a cache's counters, named after Redis's INFO where the meaning is the same.
///
/// ```
/// let cache = shardcache::Cache::<u32, u32>::new(10);
/// cache.insert(1, 1);
/// assert_eq!(cache.get(&1), Some(1));
/// assert_eq!(cache.get(&2), None);
/// let s = cache.stats();
/// assert_eq!((s.hits, s.misses, s.inserts), (1, 1, 1));
/// assert_eq!(s.hit_ratio(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found a live entry (INFO `keyspace_hits`).
    pub hits: u64,
    /// Lookups that found nothing or an expired entry (INFO `keyspace_misses`).
    pub misses: u64,
    /// Inserts of a key that was not present.
    pub inserts: u64,
    /// Inserts that replaced the value of a present key.
    pub updates: u64,
    /// Entries removed to stay within capacity (INFO `evicted_keys`).
    pub evictions: u64,
    /// Entries removed because their time was up (INFO `expired_keys`).
    pub expirations: u64,
    /// Entries removed by `remove`, `retain`, `invalidate_if` or `clear`.
    pub removals: u64,
    /// Inserts refused because the cache was full and its policy never evicts.
    pub rejections: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when there were no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// `hits + misses`.
    pub fn lookups(&self) -> u64 {
        self.hits + self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_add_up_across_threads() {
        let s = std::sync::Arc::new(StatsCounters::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        s.bump(Counter::Hit);
                    }
                    s.add(Counter::Miss, 3);
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let snap = s.snapshot();
        assert_eq!(snap.hits, 40_000);
        assert_eq!(snap.misses, 12);
        s.reset();
        assert_eq!(s.snapshot(), CacheStats::default());
    }
}
