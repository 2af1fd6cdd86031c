//! Hit / miss / insert / evict / expire counters.
//!
//! Counters are striped so that counting a hit never writes a line another
//! core is reading. Each thread gets a stripe of its own, which only it ever
//! writes, so it counts with a plain load and store: an atomic add is a
//! locked instruction, which costs tens of cycles and keeps the core from
//! overlapping the next operation's cache misses with this one's. Threads
//! past the owned stripes share the rest and add atomically. A snapshot sums
//! the stripes; it is exact once writers are quiet and never more than the
//! in-flight operations off while they run.

use crate::sync::{AtomicU64, Ordering};

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

/// One thread's stripe, from [`StatsCounters::local`]; it stays on that
/// thread (neither `Send` nor `Sync`), since an owned stripe is updated
/// with a plain load and store.
pub(crate) struct Local<'a> {
    stripe: &'a Stripe,
    /// Whether only this thread writes the stripe (else it is shared).
    owned: bool,
    _on_this_thread: std::marker::PhantomData<*const ()>,
}

impl Local<'_> {
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let cell = &self.stripe.0[counter as usize];
        if self.owned {
            cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }
}

/// Striped counters shared by every shard of a cache.
pub(crate) struct StatsCounters {
    /// Stripe `i` is written only by the thread holding [`Slot`] `i`.
    owned: Box<[Stripe]>,
    /// For threads whose slot is past `owned`: shared, added to atomically.
    shared: Box<[Stripe]>,
    /// The sums at the last [`reset`](Self::reset) (stripes only grow: a
    /// reset that zeroed an owned stripe could be undone by its owner's
    /// next store).
    base: [AtomicU64; COUNTERS],
}

impl std::fmt::Debug for StatsCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsCounters")
            .field("owned", &self.owned.len())
            .field("shared", &self.shared.len())
            .finish()
    }
}

impl StatsCounters {
    /// Counters with an owned stripe for twice as many threads as the
    /// machine runs at once.
    pub(crate) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, usize::from);
        let n = (cpus * 2).next_power_of_two().clamp(2, 64);
        Self {
            owned: (0..n).map(|_| Stripe::default()).collect(),
            shared: (0..n).map(|_| Stripe::default()).collect(),
            base: Default::default(),
        }
    }

    /// Counts a lookup: a hit or a miss.
    #[inline]
    pub(crate) fn bump_lookup(&self, hit: bool) {
        self.bump(if hit { Counter::Hit } else { Counter::Miss });
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.local().add(counter, n);
    }

    #[inline]
    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The calling thread's stripe, looked up once for a write that bumps
    /// several counters (each lookup reads the thread's slot and checks it
    /// against the stripes: about ten instructions).
    #[inline]
    pub(crate) fn local(&self) -> Local<'_> {
        // A thread whose slot is gone (counting from a thread-local's
        // destructor) counts in a shared stripe.
        let slot = crate::sync::try_thread_slot().unwrap_or(usize::MAX);
        match self.owned.get(slot) {
            Some(stripe) => Local {
                stripe,
                owned: true,
                _on_this_thread: std::marker::PhantomData,
            },
            None => Local {
                stripe: &self.shared[slot & (self.shared.len() - 1)],
                owned: false,
                _on_this_thread: std::marker::PhantomData,
            },
        }
    }

    /// The stripes' sum for counter index `c`.
    fn total(&self, c: usize) -> u64 {
        self.owned
            .iter()
            .chain(self.shared.iter())
            .map(|s| s.0[c].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    pub(crate) fn sum(&self, counter: Counter) -> u64 {
        let c = counter as usize;
        self.total(c)
            .wrapping_sub(self.base[c].load(Ordering::Relaxed))
    }

    /// Hits in every shard.
    pub(crate) fn hits(&self) -> u64 {
        self.sum(Counter::Hit)
    }

    /// Misses in every shard.
    pub(crate) fn misses(&self) -> u64 {
        self.sum(Counter::Miss)
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits(),
            misses: self.misses(),
            inserts: self.sum(Counter::Insert),
            updates: self.sum(Counter::Update),
            evictions: self.sum(Counter::Eviction),
            expirations: self.sum(Counter::Expiration),
            removals: self.sum(Counter::Removal),
            rejections: self.sum(Counter::Rejection),
        }
    }

    pub(crate) fn reset(&self) {
        for (c, base) in self.base.iter().enumerate() {
            base.store(self.total(c), Ordering::Relaxed);
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
    /// Inserts of a key that was not present (or only expired).
    pub inserts: u64,
    /// Inserts that replaced the live value of a present key.
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
        s.bump(Counter::Hit);
        assert_eq!(s.snapshot().hits, 1);
    }

    #[test]
    fn many_short_lived_threads_count_exactly() {
        // More threads over time than owned stripes: slots are reused, and
        // threads past them share stripes.
        let s = std::sync::Arc::new(StatsCounters::new());
        let owned = s.owned.len();
        for _ in 0..3 {
            let handles: Vec<_> = (0..owned + 5)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for _ in 0..1_000 {
                            s.bump(Counter::Insert);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("thread");
            }
        }
        assert_eq!(s.snapshot().inserts, 3 * (owned as u64 + 5) * 1_000);
    }
}
