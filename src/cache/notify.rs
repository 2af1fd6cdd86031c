//! What follows a write once its shard is unlocked: the statistics it
//! counts and the removal notices the listener gets.

use crate::cache::Cache;
use crate::listener::{Listener, Removal, RemovalCause, Removed};
use crate::shard::Inserted;
use crate::stats::{Counter, Local};
use std::hash::{BuildHasher, Hash};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Bookkeeping after a write: counters and listener.
    ///
    /// Always inlined (four callers): on the insert path the call and its
    /// entry and exit cost about 6 instructions per insert.
    #[inline(always)]
    pub(crate) fn after_write(
        &self,
        removed: Removed<K, V>,
        inserted: Option<Inserted>,
        rejected: bool,
    ) {
        let stats = self.inner.stats.local();
        count_outcome(&stats, inserted, rejected);
        if !removed.is_empty() {
            self.notify_counted(&stats, removed);
        }
    }

    /// Counts removals and hands them to the listener, with no lock held.
    pub(super) fn notify(&self, removed: Removed<K, V>) {
        self.notify_counted(&self.inner.stats.local(), removed);
    }

    /// Counts a write's outcome as [`after_write`](Self::after_write)
    /// does, leaving its removals to be handed to the listener later (see
    /// [`deliver`]).
    pub(crate) fn count_write(
        &self,
        removed: &Removed<K, V>,
        inserted: Option<Inserted>,
        rejected: bool,
    ) {
        let stats = self.inner.stats.local();
        count_outcome(&stats, inserted, rejected);
        count_causes(&stats, removed);
    }

    /// The cache's eviction listener, to call with no handle on the cache
    /// held (see [`deliver`]).
    pub(crate) fn listener(&self) -> Option<Listener<K, V>> {
        self.inner.listener.clone()
    }

    /// [`notify`](Self::notify), counting in `stats`. The first removal
    /// (nearly always the only one) is handled inline: through a closure
    /// called for each, it cost a call per removal.
    ///
    /// A listener that panics does not cost the other removals their
    /// notice: every one is delivered, then the first panic goes on.
    ///
    /// Without a listener only the causes are counted, and the removals are
    /// dropped together at the end: taking each one out to hand it on cost
    /// about 20 instructions per insert that evicts.
    #[inline(always)]
    fn notify_counted(&self, stats: &Local<'_>, mut removed: Removed<K, V>) {
        let Some(listener) = &self.inner.listener else {
            count_causes(stats, &removed);
            return;
        };
        let mut panicked = None;
        if let Some(item) = removed.take_first() {
            removed_one(listener, stats, item, &mut panicked);
        }
        let rest = removed.into_rest();
        if !rest.is_empty() {
            notify_rest(listener, stats, rest, &mut panicked);
        }
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
    }
}

/// The removals after the first, in order.
#[inline(never)]
fn notify_rest<K, V>(
    listener: &Listener<K, V>,
    stats: &Local<'_>,
    rest: Vec<Removal<K, V>>,
    panicked: &mut Panic,
) {
    for item in rest {
        removed_one(listener, stats, item, panicked);
    }
}

/// Counts one removal and hands it to `listener`; keeps the first panic of
/// a listener in `panicked`.
#[inline(always)]
fn removed_one<K, V>(
    listener: &Listener<K, V>,
    stats: &Local<'_>,
    (k, v, cause): Removal<K, V>,
    panicked: &mut Panic,
) {
    count_removal(stats, cause);
    deliver_one(listener, (k, v, cause), panicked);
}

/// A write's removals, counted already, handed to the listener when this is
/// dropped: a load's leader holds them until its load has landed, so that
/// a listener that loads the same key finds no load of it in flight (it
/// would wait for its own thread, or be refused as a loader asking for its
/// own key).
pub(crate) struct Later<K, V> {
    listener: Option<Listener<K, V>>,
    removed: Removed<K, V>,
}

impl<K, V> Later<K, V> {
    /// Nothing to hand on yet, for `cache`'s listener.
    pub(crate) fn new<S>(cache: &Cache<K, V, S>) -> Self {
        Self {
            listener: cache.inner.listener.clone(),
            removed: Removed::new(),
        }
    }

    /// The removals to hand on.
    pub(crate) fn removed(&mut self) -> &mut Removed<K, V> {
        &mut self.removed
    }
}

impl<K, V> Drop for Later<K, V> {
    fn drop(&mut self) {
        // While a panic unwinds, a listener's own panic would abort: the
        // notices are dropped instead (the removals were counted).
        if self.removed.is_empty() || std::thread::panicking() {
            return;
        }
        if let Some(listener) = self.listener.take() {
            deliver(
                &listener,
                std::mem::replace(&mut self.removed, Removed::new()),
            );
        }
    }
}

/// Hands `removed`, counted already, to `listener`, every one of them even
/// if the listener panics; then the first panic goes on.
pub(crate) fn deliver<K, V>(listener: &Listener<K, V>, mut removed: Removed<K, V>) {
    let mut panicked = None;
    let first = removed.take_first();
    for item in first.into_iter().chain(removed.into_rest()) {
        deliver_one(listener, item, &mut panicked);
    }
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
}

/// Hands one removal to `listener`; keeps the first panic in `panicked`.
#[inline(always)]
fn deliver_one<K, V>(
    listener: &Listener<K, V>,
    (k, v, cause): Removal<K, V>,
    panicked: &mut Panic,
) {
    let call = std::panic::AssertUnwindSafe(|| listener(k, v, cause));
    if let Err(payload) = std::panic::catch_unwind(call) {
        panicked.get_or_insert(payload);
    }
}

/// Counts a write's own outcome: a new key, a replaced value, a refusal.
#[inline(always)]
fn count_outcome(stats: &Local<'_>, inserted: Option<Inserted>, rejected: bool) {
    match inserted {
        Some(Inserted::New) => stats.bump(Counter::Insert),
        Some(Inserted::Replaced) => stats.bump(Counter::Update),
        None => {}
    }
    if rejected {
        stats.bump(Counter::Rejection);
    }
}

/// Counts every removal of `removed` by its cause, without taking any out.
#[inline(always)]
fn count_causes<K, V>(stats: &Local<'_>, removed: &Removed<K, V>) {
    if let Some(cause) = removed.first_cause() {
        count_removal(stats, cause);
    }
    for cause in removed.rest_causes() {
        count_removal(stats, cause);
    }
}

/// Counts one removal by its cause.
#[inline(always)]
fn count_removal(stats: &Local<'_>, cause: RemovalCause) {
    match cause {
        RemovalCause::Evicted => stats.bump(Counter::Eviction),
        RemovalCause::Expired => stats.bump(Counter::Expiration),
        RemovalCause::Removed => stats.bump(Counter::Removal),
        RemovalCause::Replaced => {}
    }
}

/// The first panic of a listener, held until every removal is delivered.
type Panic = Option<Box<dyn std::any::Any + Send>>;
