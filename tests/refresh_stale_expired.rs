//! Inside a refresh stale window (`serve_stale_for`, `stale_if_error_for`)
//! an entry past its time to live is expired to every call but the stale
//! reads the window promises: `compute` sees no entry, `contains_key` and
//! `ttl` none, a write over it or a removal of it reports it `Expired`,
//! `remove` returns nothing and `set_ttl` cannot revive it. A stale read
//! still serves it until a write replaces or removes it.

use shardcache::{Cache, Decision, Freshness, MockClock, RemovalCause, Ttl};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(300);
const AFTER: Duration = Duration::from_secs(240);
const WINDOW: Duration = Duration::from_secs(120);
/// Past the time to live, inside the window.
const INSIDE: Duration = Duration::from_secs(330);

#[derive(Debug, Clone, Copy)]
enum Window {
    ServeStale,
    StaleIfError,
}

type Heard = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

/// A cache with `window`, whose reloads are dropped by the spawner (they
/// never change an entry), and the removals its listener heard.
fn cache(window: Window) -> (Cache<u64, u64>, MockClock, Heard) {
    let clock = MockClock::new();
    let heard: Heard = Arc::default();
    let h = heard.clone();
    let builder = Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_loader_async(
            |k: u64| async move { Ok::<_, std::io::Error>(k) },
            |_job| {},
        )
        .eviction_listener(move |k, v, cause| h.lock().expect("log").push((k, v, cause)));
    let builder = match window {
        Window::ServeStale => builder.serve_stale_for(WINDOW),
        Window::StaleIfError => builder.stale_if_error_for(WINDOW),
    };
    (builder.build().expect("valid settings"), clock, heard)
}

/// What a stale read of `key` gets: the stale value under `serve_stale_for`,
/// nothing under `stale_if_error_for` alone.
fn stale_read(window: Window, cache: &Cache<u64, u64>, key: u64, value: u64) {
    match window {
        Window::ServeStale => {
            assert_eq!(
                cache.get_with_freshness(&key),
                Some((value, Freshness::Stale))
            );
        }
        Window::StaleIfError => {
            assert_eq!(cache.get(&key), None);
            assert_eq!(cache.try_get_or_insert_with(key, || Err("down")), Ok(value));
        }
    }
}

fn taken(heard: &Heard) -> Vec<(u64, u64, RemovalCause)> {
    let mut heard = std::mem::take(&mut *heard.lock().expect("log"));
    heard.sort_by_key(|&(k, _, _)| k);
    heard
}

const BOTH: [Window; 2] = [Window::ServeStale, Window::StaleIfError];

#[test]
fn compute_sees_no_entry_inside_a_stale_window() {
    for window in BOTH {
        let (cache, clock, heard) = cache(window);
        for k in 1..=5 {
            cache.insert(k, 10 * k);
        }
        clock.advance(INSIDE);
        assert!(!cache.contains_key(&1), "{window:?}");
        assert_eq!(cache.ttl(&1), None, "{window:?}");
        assert_eq!(cache.get_with_ttl(&1), None, "{window:?}");

        // Looked at and left alone: still served stale.
        let seen = cache.compute(1, |cur| (Decision::Nothing, cur.map(|c| *c.value)));
        assert_eq!(seen, Ok(None), "{window:?}");
        stale_read(window, &cache, 1, 10);

        // Put over it: the old value expired; the new one is a new entry.
        let seen = cache.compute(2, |cur| (Decision::Put(21, Ttl::Keep), cur.is_some()));
        assert_eq!(seen, Ok(false), "{window:?}");
        assert_eq!(cache.get_with_ttl(&2), Some((21, None)), "{window:?}");

        // Removed: it expired, and is no longer served stale either.
        let seen = cache.compute(3, |cur| (Decision::Remove, cur.is_some()));
        assert_eq!(seen, Ok(false), "{window:?}");
        assert_eq!(
            cache.try_get_or_insert_with(3, || Err("down")),
            Err(Arc::new("down"))
        );

        // A new time to live does not revive it.
        let ttl = Ttl::After(Duration::from_secs(60));
        let seen = cache.compute(4, |cur| (Decision::SetTtl(ttl), cur.is_some()));
        assert_eq!(seen, Ok(false), "{window:?}");
        assert!(!cache.contains_key(&4), "{window:?}");
        stale_read(window, &cache, 4, 40);

        assert_eq!(
            taken(&heard),
            vec![
                (2, 20, RemovalCause::Expired),
                (3, 30, RemovalCause::Expired)
            ],
            "{window:?}"
        );
    }
}

#[test]
fn compute_sees_the_time_to_live_callers_see() {
    for window in BOTH {
        let (cache, clock, _) = cache(window);
        cache.insert(1, 10);
        clock.advance(Duration::from_secs(100));
        let ttl = cache.compute(1, |cur| (Decision::Nothing, cur.and_then(|c| c.ttl)));
        assert_eq!(ttl, Ok(Some(TTL - Duration::from_secs(100))), "{window:?}");
        assert_eq!(cache.ttl(&1), Some(Some(TTL - Duration::from_secs(100))));
        // Kept to the end of the time to live, whatever the decision's `Keep`.
        let kept = cache.compute(1, |_| (Decision::Put(11, Ttl::Keep), ()));
        assert_eq!(kept, Ok(()));
        assert_eq!(cache.ttl(&1), Some(Some(TTL - Duration::from_secs(100))));
    }
}

#[test]
fn writes_over_an_entry_inside_a_stale_window_report_it_expired() {
    for window in BOTH {
        let (cache, clock, heard) = cache(window);
        for k in 1..=4 {
            cache.insert(k, 10 * k);
        }
        clock.advance(INSIDE);
        cache.insert(1, 11);
        assert_eq!(cache.remove(&2), None, "{window:?}");
        assert!(!cache.set_ttl(&3, Some(TTL)), "{window:?}");
        assert!(!cache.contains_key(&3), "{window:?}");
        if let Window::StaleIfError = window {
            // A read-through load stores over it.
            assert_eq!(
                cache.try_get_or_insert_with(4, || Ok::<_, &str>(41)),
                Ok(41)
            );
        } else {
            cache.insert(4, 41);
        }
        assert_eq!(
            taken(&heard),
            vec![
                (1, 10, RemovalCause::Expired),
                (2, 20, RemovalCause::Expired),
                (4, 40, RemovalCause::Expired),
            ],
            "{window:?}"
        );
        assert_eq!(cache.get(&1), Some(11));
        assert_eq!(cache.get(&4), Some(41));
        // Removed: no stale read serves it any more.
        assert_eq!(cache.get(&2), None);
        assert_eq!(
            cache.try_get_or_insert_with(2, || Err("down")),
            Err(Arc::new("down"))
        );
        // Not revived: it is still only stale.
        stale_read(window, &cache, 3, 30);
    }
}

#[test]
fn retain_asks_about_entries_inside_a_stale_window_and_drops_them_as_expired() {
    for window in BOTH {
        let (cache, clock, heard) = cache(window);
        cache.insert(1, 10);
        cache.insert(2, 20);
        clock.advance(INSIDE);
        cache.insert(3, 30);
        let mut asked = Vec::new();
        cache.retain(|&k, _| {
            asked.push(k);
            k != 2 && k != 3
        });
        asked.sort_unstable();
        assert_eq!(asked, vec![1, 2, 3], "{window:?}");
        assert_eq!(
            taken(&heard),
            vec![
                (2, 20, RemovalCause::Expired),
                (3, 30, RemovalCause::Removed)
            ],
            "{window:?}"
        );
        stale_read(window, &cache, 1, 10);
        assert_eq!(
            cache.try_get_or_insert_with(2, || Err("down")),
            Err(Arc::new("down"))
        );
    }
}
