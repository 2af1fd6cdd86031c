//! Long expiries: kept exactly up to `MAX_EXPIRE_MS`, refused beyond it with
//! a clear error (never shortened), and `EXPIRE ... GT|LT` between long
//! expiries answering as Redis does.

use shardcache::kv::{KvError, KvStore, Reply, MAX_EXPIRE_MS};
use shardcache::MockClock;

fn store() -> KvStore {
    KvStore::builder()
        .clock(MockClock::new())
        .build()
        .expect("valid config")
}

#[test]
fn thirty_years_are_kept_exactly() {
    let s = store();
    assert_eq!(s.execute(&["SETEX", "k", "1000000000", "v"]), Reply::ok());
    assert_eq!(s.execute(&["TTL", "k"]), Reply::Integer(1_000_000_000));
    let ms = (MAX_EXPIRE_MS - 1).to_string();
    assert_eq!(s.execute(&["PEXPIRE", "k", &ms]), Reply::Integer(1));
    assert_eq!(
        s.execute(&["PTTL", "k"]),
        Reply::Integer((MAX_EXPIRE_MS - 1) as i64)
    );
}

#[test]
fn beyond_the_range_is_refused_not_cut() {
    let s = store();
    s.execute(&["SET", "k", "old", "EX", "100"]);
    let too_far = KvError::ExpireTooFar("setex").to_string();
    assert_eq!(
        s.execute(&["SETEX", "k", "2000000000", "v"]),
        Reply::Error(too_far)
    );
    assert_eq!(s.get("k").as_deref(), Some(&b"old"[..]));
    assert_eq!(s.execute(&["TTL", "k"]), Reply::Integer(100));
    for cmd in [
        vec!["SET", "k", "v", "PX", "9000000000000000000"],
        vec!["PEXPIRE", "k", "9000000000000000000"],
        vec!["PEXPIREAT", "k", "9223372036854775807"],
        vec!["EXPIREAT", "k", "9000000000000000"],
        vec!["GETEX", "k", "EX", "2000000000"],
    ] {
        match s.execute(&cmd) {
            Reply::Error(e) => assert!(e.contains("beyond the supported range"), "{cmd:?}: {e}"),
            other => panic!("{cmd:?}: {other:?}"),
        }
        assert_eq!(s.execute(&["TTL", "k"]), Reply::Integer(100), "{cmd:?}");
    }
    // Overflowing i64 stays Redis's own error.
    assert_eq!(
        s.execute(&["EXPIRE", "k", "9223372036854775807"]),
        Reply::Error("ERR invalid expire time in 'expire' command".into())
    );
    // A missing key is 0, as in Redis, whatever the time.
    assert_eq!(
        s.execute(&["PEXPIREAT", "nope", "9223372036854775807"]),
        Reply::Integer(0)
    );
}

#[test]
fn gt_and_lt_between_long_ttls() {
    let s = store();
    s.execute(&["SETEX", "k", "500000000", "v"]);
    assert_eq!(
        s.execute(&["EXPIRE", "k", "1000000000", "LT"]),
        Reply::Integer(0)
    );
    assert_eq!(
        s.execute(&["EXPIRE", "k", "1000000000", "GT"]),
        Reply::Integer(1)
    );
    assert_eq!(s.execute(&["TTL", "k"]), Reply::Integer(1_000_000_000));
    assert_eq!(
        s.execute(&["EXPIRE", "k", "600000000", "GT"]),
        Reply::Integer(0)
    );
    assert_eq!(
        s.execute(&["EXPIRE", "k", "600000000", "LT"]),
        Reply::Integer(1)
    );
    assert_eq!(s.execute(&["TTL", "k"]), Reply::Integer(600_000_000));
}
