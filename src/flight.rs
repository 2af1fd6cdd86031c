//! Single flight: when many callers miss the same key at once, one runs the
//! loader and the rest wait for its result.
//!
//! Holds the flights themselves: one per key being loaded, in a map per
//! shard, landed with the loader's value or error (or abandoned) and waited
//! on by blocked threads and async tasks alike. The cache's load methods
//! (`cache/load.rs`) lead and join them; this module knows nothing of the
//! cache.

use crate::flight_waits::{Leader, Named, Waiting};
use crate::sync::{Arc, Condvar, Mutex};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

pub(crate) type ErrBox = Arc<dyn Any + Send + Sync>;
pub(crate) type FlightMap<K, V> = hashbrown::HashMap<K, Arc<Flight<V>>, ahash::RandomState>;

/// In-flight loads, one map per shard.
pub(crate) struct Flights<K, V> {
    pub(crate) maps: Box<[Mutex<FlightMap<K, V>>]>,
}

impl<K, V> Flights<K, V> {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            maps: (0..shards)
                .map(|_| Mutex::new(FlightMap::default()))
                .collect(),
        }
    }
}

pub(crate) struct Flight<V> {
    pub(crate) state: Mutex<State<V>>,
    done: Condvar,
    /// The thread running a blocking loader for this flight, if one is: a
    /// blocking wait on that thread would wait for itself. Shared with the
    /// registry of waits (`flight_waits`), which follows it to find cycles.
    leader: Leader,
}

pub(crate) enum State<V> {
    Loading(Vec<Waker>),
    Done(Result<V, ErrBox>),
    Abandoned,
}

/// What a waiter learns when the flight lands.
pub(crate) enum Outcome<V> {
    Value(V),
    Error(ErrBox),
    Retry,
}

impl<V: Clone> Flight<V> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::Loading(Vec::new())),
            done: Condvar::new(),
            leader: Arc::new(Mutex::new(None)),
        }
    }

    /// Names this thread as the one running the flight's loader (a
    /// blocking loader, or one poll of an async loader), until the flight
    /// lands or the returned mark drops.
    pub(crate) fn led_here(&self) -> Named {
        Named::here(&self.leader)
    }

    /// Runs `load`, an async loader of this flight, with the thread that
    /// polls it named as the flight's leader while each poll runs: a
    /// blocking wait inside the poll holds that thread, and the load
    /// cannot end before the poll returns. Between polls no thread is.
    pub(crate) async fn polled_here<R>(&self, load: impl Future<Output = R>) -> R {
        let mut load = std::pin::pin!(load);
        std::future::poll_fn(|cx| {
            let _named = self.led_here();
            load.as_mut().poll(cx)
        })
        .await
    }

    pub(crate) fn outcome(state: &State<V>) -> Option<Outcome<V>> {
        match state {
            State::Loading(_) => None,
            State::Done(Ok(v)) => Some(Outcome::Value(v.clone())),
            State::Done(Err(e)) => Some(Outcome::Error(e.clone())),
            State::Abandoned => Some(Outcome::Retry),
        }
    }

    /// Blocks until the flight lands.
    ///
    /// # Panics
    ///
    /// If this thread runs the flight's loader: a loader that asks for its
    /// own key would otherwise wait for itself forever. Likewise if the
    /// flight's loader waits, through loaders on other threads, for a load
    /// this thread leads, or through code holding a shard, a rollback or a
    /// repair that waits for this thread (see `waits.rs`).
    pub(crate) fn wait(&self) -> Outcome<V> {
        assert!(
            *self.leader.lock() != Some(std::thread::current().id()),
            "a loader asked the cache for the key it is loading \
             (get_or_insert_with within its own loader): it would wait for itself"
        );
        let Ok(_waiting) = Waiting::register(&self.leader) else {
            panic!(
                "loaders on several threads each asked for a key another of them is loading \
                 (get_or_insert_with within loaders, within code the cache runs under a \
                 shard's lock, or within a listener told of an undo, whose loader waits \
                 back through a shard, a rollback or a repair of the log, in a cycle): they \
                 would wait for each other forever; this load is given up"
            );
        };
        let mut state = self.state.lock();
        loop {
            if let Some(o) = Self::outcome(&state) {
                return o;
            }
            self.done.wait(&mut state);
        }
    }
}

impl<V> Flight<V> {
    /// The flight's leader cell, for a background reload to name the
    /// thread running (or polling) its loader in.
    pub(crate) fn leader(&self) -> &Leader {
        &self.leader
    }

    /// Whether the flight is still loading (a landed one left in the map by
    /// a dropped background reload is ignored and replaced).
    pub(crate) fn is_loading(&self) -> bool {
        matches!(*self.state.lock(), State::Loading(_))
    }

    /// Ends the flight and wakes every waiter, blocked or async.
    ///
    /// Its loader is done: the flight names no leader from here on, so no
    /// wait follows it to that thread.
    pub(crate) fn land(&self, end: State<V>) {
        *self.leader.lock() = None;
        let wakers = match std::mem::replace(&mut *self.state.lock(), end) {
            State::Loading(w) => w,
            _ => Vec::new(),
        };
        self.done.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// A future that resolves when a flight lands.
pub(crate) struct WaitFlight<V> {
    pub(crate) flight: Arc<Flight<V>>,
}

impl<V: Clone> Future for WaitFlight<V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        let mut state = self.flight.state.lock();
        if let Some(o) = Flight::outcome(&state) {
            return Poll::Ready(o);
        }
        if let State::Loading(wakers) = &mut *state {
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

/// A background reload's flight: registered like a foreground load, so
/// foreground callers wait for it. It owns no handle to the cache, so a
/// queued reload does not keep the cache alive; dropping it unfinished lands
/// it as abandoned (waiters load for themselves, and the next `join`
/// replaces it).
pub(crate) struct RefreshFlight<K, V> {
    pub(crate) key: K,
    pub(crate) flight: Arc<Flight<V>>,
    pub(crate) shard: usize,
    pub(crate) landed: bool,
}

impl<K, V> Drop for RefreshFlight<K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.flight.land(State::Abandoned);
        }
    }
}
