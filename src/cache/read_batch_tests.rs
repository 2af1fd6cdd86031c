//! A read batch answers what the same keys read one at a time answer
//! (values, expiry, idle time, statistics), whether its keys share shards
//! or not.

use super::ReadAs;
use crate::{Cache, MockClock};
use std::time::Duration;

fn cache(shards: usize, clock: &MockClock) -> Cache<String, u32> {
    Cache::<String, u32>::builder()
        .max_capacity(1_000)
        .shards(shards)
        .clock(clock.clone())
        .build()
        .expect("build")
}

#[test]
fn reads_every_key_in_order_repeats_included() {
    for shards in [1, 2, 16] {
        let clock = MockClock::new();
        let c = cache(shards, &clock);
        for i in 0..20 {
            c.insert(format!("k{i}"), i);
        }
        let names: Vec<String> = (0..25)
            .rev()
            .chain([3, 3])
            .map(|i| format!("k{i}"))
            .collect();
        let keys: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = c.read_batch(&keys, ReadAs::Access, |v| *v);
        let want: Vec<Option<u32>> = keys.iter().map(|k| c.peek_value(*k)).collect();
        assert_eq!(got, want, "{shards} shards");
        assert_eq!(got.iter().flatten().count(), 22);
        assert_eq!(c.read_batch::<str, ()>(&[], ReadAs::Peek, |_| ()), vec![]);
    }
}

#[test]
fn counts_lookups_only_as_an_access() {
    let clock = MockClock::new();
    let c = cache(4, &clock);
    c.insert("a".into(), 1);
    let _ = c.read_batch(&["a", "b", "a"], ReadAs::Peek, |_| ());
    assert_eq!((c.stats().hits, c.stats().misses), (0, 0));
    let _ = c.read_batch(&["a", "b", "a"], ReadAs::Access, |_| ());
    assert_eq!((c.stats().hits, c.stats().misses), (2, 1));
}

#[test]
fn expired_keys_read_as_absent() {
    let clock = MockClock::new();
    let c = cache(4, &clock);
    c.insert_with_ttl("short".into(), 1, Duration::from_millis(10));
    c.insert("long".into(), 2);
    let read = |as_| c.read_batch(&["short", "long"], as_, |v| *v);
    assert_eq!(read(ReadAs::Peek), vec![Some(1), Some(2)]);
    clock.advance(Duration::from_millis(10));
    assert_eq!(read(ReadAs::Peek), vec![None, Some(2)]);
    assert_eq!(read(ReadAs::Access), vec![None, Some(2)]);
}

/// Under a time-to-idle an access keeps a key alive, as `get` does; a peek
/// does not.
#[test]
fn an_access_counts_for_the_idle_time_and_a_peek_does_not() {
    let clock = MockClock::new();
    let c = Cache::<String, u32>::builder()
        .max_capacity(100)
        .shards(4)
        .time_to_idle(Duration::from_millis(100))
        .clock(clock.clone())
        .build()
        .expect("build");
    c.insert("read".into(), 1);
    c.insert("peeked".into(), 2);
    for _ in 0..3 {
        clock.advance(Duration::from_millis(60));
        assert_eq!(c.read_batch(&["read"], ReadAs::Access, |v| *v), [Some(1)]);
        let _ = c.read_batch(&["peeked"], ReadAs::Peek, |v| *v);
    }
    assert_eq!(c.get("read"), Some(1));
    assert_eq!(c.get("peeked"), None);
}
