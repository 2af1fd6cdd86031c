//! `KvStore` on an append-only log: what every write command leaves behind
//! survives a reopen (and a rewrite), with TTLs counted on the wall clock.

use proptest::prelude::*;
use shardcache::kv::{KvStore, Reply};
use shardcache::persist::{FileLog, Fsync, MemStorage};
use shardcache::MockClock;
use std::collections::BTreeMap;
use std::time::Duration;

fn open(storage: &MemStorage, clock: &MockClock) -> KvStore {
    KvStore::builder()
        .clock(clock.clone())
        .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
        .expect("load")
        .0
}

/// Every key with its value and its PTTL.
fn dump(store: &KvStore) -> BTreeMap<Vec<u8>, (Reply, Reply)> {
    let Reply::Array(keys) = store.execute(&["KEYS", "*"]) else {
        panic!("KEYS returns an array");
    };
    keys.into_iter()
        .map(|k| {
            let Reply::Bulk(k) = k else {
                panic!("keys are bulk strings")
            };
            let value = store.execute(&[&b"GET"[..], &k]);
            let pttl = store.execute(&[&b"PTTL"[..], &k]);
            (k.to_vec(), (value, pttl))
        })
        .collect()
}

#[test]
fn every_write_command_survives_a_reopen() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let store = open(&storage, &clock);
    let script: &[&[&str]] = &[
        &["SET", "plain", "v"],
        &["SET", "ex", "v", "EX", "100"],
        &["SET", "px", "v", "PX", "5500"],
        &["SETEX", "setex", "50", "v"],
        &["SET", "gone", "v", "EX", "1"],
        &["MSET", "m1", "a", "m2", "b"],
        &["MSETNX", "n1", "x", "n2", "y"],
        &["INCR", "counter"],
        &["INCRBY", "counter", "41"],
        &["INCRBYFLOAT", "float", "1.5"],
        &["APPEND", "plain", "++"],
        &["EXPIRE", "m1", "30"],
        &["SET", "keep", "v", "EX", "70"],
        &["SET", "keep", "w", "KEEPTTL"],
        &["PERSIST", "ex"],
        &["SET", "deleted", "v"],
        &["DEL", "deleted"],
        &["SET", "getdel", "v"],
        &["GETDEL", "getdel"],
        &["SET", "getex", "v"],
        &["GETEX", "getex", "PX", "9000"],
        &["GETSET", "m2", "c"],
        &["SET", "perm:a", "1"],
        &["SET", "perm:b", "1"],
        &["SETRANGE", "keep", "3", "xyz"],
        &["SETRANGE", "padded", "4", "z"],
        &["SETBIT", "keep", "70", "1"],
        &["SETBIT", "bits", "13", "1"],
        &["SETBIT", "bits", "13", "0"],
        &["SET", "unlinked", "v"],
        &["UNLINK", "unlinked"],
    ];
    for cmd in script {
        let reply = store.execute(cmd);
        assert!(!matches!(reply, Reply::Error(_)), "{cmd:?}: {reply:?}");
    }
    store.namespace("perm:").execute(&["FLUSHDB"]);
    clock.advance(Duration::from_millis(1500));
    let want = dump(&store);
    assert!(want.contains_key(&b"plain"[..]) && !want.contains_key(&b"gone"[..]));
    drop(store);
    let reopened = open(&storage, &clock);
    assert_eq!(dump(&reopened), want);
    assert_eq!(reopened.get("counter").as_deref(), Some(&b"42"[..]));
    // The TTLs keep running on the wall clock across the restart.
    clock.advance(Duration::from_secs(4));
    assert_eq!(reopened.execute(&["EXISTS", "px"]), Reply::Integer(0));
    drop(reopened);
    assert_eq!(
        open(&storage, &clock).execute(&["EXISTS", "px"]),
        Reply::Integer(0)
    );
}

#[test]
fn a_rewritten_kv_log_loads_the_same_keyspace() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let store = open(&storage, &clock);
    for i in 0..500 {
        store.execute(&["INCR", &format!("hits:{}", i % 20)]);
        store.execute(&["SET", &format!("s:{}", i % 50), &i.to_string(), "EX", "600"]);
    }
    let before = storage.len();
    store.rewrite_log().expect("rewrite");
    assert!(storage.len() * 5 < before);
    let want = dump(&store);
    drop(store);
    assert_eq!(dump(&open(&storage, &clock)), want);
}

/// `SETRANGE` logs the whole new value with the key's expiry: over the
/// value's bytes, past its end (into the spare capacity `APPEND` left), and
/// on a new key, each comes back from the log (and from a rewrite) with the
/// same bytes and TTL.
#[test]
fn setrange_survives_a_reopen_with_its_bytes_and_ttl() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let store = open(&storage, &clock);
    let script: &[&[&str]] = &[
        &["SET", "s", "hello world", "EX", "100"],
        &["SETRANGE", "s", "6", "WORLD, again"],
        &["APPEND", "s", "!"],
        &["SETRANGE", "s", "25", "end"],
        &["SETRANGE", "s", "0", "J"],
        &["SETRANGE", "padded", "5", "abc"],
        &["PEXPIRE", "padded", "7500"],
        &["SETRANGE", "padded", "1", "z"],
        &["SETRANGE", "nothing", "3", ""],
    ];
    for cmd in script {
        let reply = store.execute(cmd);
        assert!(!reply.is_error(), "{cmd:?}: {reply:?}");
    }
    // Through a namespace view, on the prefixed key.
    let ns = store.namespace("ns:");
    assert_eq!(ns.execute(&["SETRANGE", "x", "1", "y"]), Reply::Integer(2));
    assert_eq!(
        ns.execute(&["GETRANGE", "x", "1", "1"]),
        Reply::Bulk("y".into())
    );
    assert_eq!(ns.execute(&["TOUCH", "x", "s"]), Reply::Integer(1));
    assert_eq!(ns.execute(&["PEXPIRETIME", "x"]), Reply::Integer(-1));
    assert_eq!(store.get("ns:x").as_deref(), Some(&b"\0y"[..]));
    let want = dump(&store);
    assert_eq!(
        store.get("s").as_deref(),
        Some(&b"Jello WORLD, again!\0\0\0\0\0\0end"[..])
    );
    assert_eq!(store.get("padded").as_deref(), Some(&b"\0z\0\0\0abc"[..]));
    assert_eq!(store.execute(&["EXISTS", "nothing"]), Reply::Integer(0));
    assert_eq!(want[&b"s"[..]].1, Reply::Integer(100_000));
    assert_eq!(want[&b"padded"[..]].1, Reply::Integer(7_500));
    drop(store);
    let reopened = open(&storage, &clock);
    assert_eq!(dump(&reopened), want);
    clock.advance(Duration::from_millis(2_500));
    reopened.rewrite_log().expect("rewrite");
    let later = dump(&reopened);
    assert_eq!(later[&b"padded"[..]].1, Reply::Integer(5_000));
    drop(reopened);
    assert_eq!(dump(&open(&storage, &clock)), later);
}

/// A `SETRANGE` or `SETBIT` the log refuses changes nothing, also when it
/// would have grown the value in place (into spare capacity left by
/// `APPEND`); a `SETBIT` that would change nothing is refused too, as Redis
/// refuses every write command while it cannot write its AOF.
#[test]
fn a_setrange_the_log_refuses_leaves_the_value() {
    use shardcache::persist::FaultOn;
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let store = open(&storage, &clock);
    for cmd in [&["APPEND", "k", "abc"][..], &["APPEND", "k", "def"]] {
        store.execute(cmd);
    }
    storage.inject(FaultOn::Append, 0, std::io::ErrorKind::StorageFull, true);
    for cmd in [
        &["SETRANGE", "k", "6", "gh"][..],
        &["SETRANGE", "k", "8", "x"],
        &["SETRANGE", "k", "1", "ZZ"],
        &["SETRANGE", "new", "1", "x"],
        &["SETBIT", "k", "0", "1"],
        &["SETBIT", "k", "60", "1"],
        &["SETBIT", "new", "3", "0"],
        &["SETBIT", "k", "1", "1"],
    ] {
        let reply = store.execute(cmd);
        assert!(
            matches!(&reply, Reply::Error(e) if e.starts_with("MISCONF ")),
            "{cmd:?}: {reply:?}"
        );
    }
    assert_eq!(store.get("k").as_deref(), Some(&b"abcdef"[..]));
    assert_eq!(store.execute(&["EXISTS", "new"]), Reply::Integer(0));
    storage.heal();
    let _ = store.sync();
    store.sync().expect("repaired");
    assert_eq!(
        store.execute(&["SETRANGE", "k", "6", "gh"]),
        Reply::Integer(8)
    );
    drop(store);
    assert_eq!(
        open(&storage, &clock).get("k").as_deref(),
        Some(&b"abcdefgh"[..])
    );
}

fn command() -> impl Strategy<Value = Vec<String>> {
    let key = (0..6u8).prop_map(|k| format!("k{k}"));
    let val = "[a-c0-9]{0,3}";
    prop_oneof![
        (key.clone(), val).prop_map(|(k, v)| vec!["SET".into(), k, v]),
        (key.clone(), val, 1..20u32).prop_map(|(k, v, s)| vec![
            "SET".into(),
            k,
            v,
            "EX".into(),
            s.to_string()
        ]),
        (key.clone(), val).prop_map(|(k, v)| vec!["APPEND".into(), k, v]),
        (key.clone(), 0..8u32, val).prop_map(|(k, o, v)| vec![
            "SETRANGE".into(),
            k,
            o.to_string(),
            v
        ]),
        (key.clone(), 0..80u32, 0..2u8).prop_map(|(k, o, b)| vec![
            "SETBIT".into(),
            k,
            o.to_string(),
            b.to_string()
        ]),
        key.clone().prop_map(|k| vec!["INCR".into(), k]),
        key.clone().prop_map(|k| vec!["DEL".into(), k]),
        key.clone().prop_map(|k| vec!["PERSIST".into(), k]),
        (key.clone(), 0..20i32).prop_map(|(k, s)| vec!["EXPIRE".into(), k, s.to_string()]),
        (key, 1..5000u32).prop_map(|(k, ms)| vec!["GETEX".into(), k, "PX".into(), ms.to_string()]),
        Just(vec!["FLUSHDB".into()]),
        (0..3000u64).prop_map(|ms| vec!["#advance".into(), ms.to_string()]),
        Just(vec!["#rewrite".into()]),
        Just(vec!["#reopen".into()]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any command sequence, with reopens and rewrites anywhere in it, ends
    /// in the same keyspace as the same sequence on a store that never
    /// restarted.
    #[test]
    fn reopening_anywhere_changes_nothing(cmds in proptest::collection::vec(command(), 1..60)) {
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let mut store = open(&storage, &clock);
        let reference = KvStore::builder().clock(clock.clone()).build().expect("build");
        for cmd in &cmds {
            match cmd[0].as_str() {
                "#advance" => clock.advance(Duration::from_millis(cmd[1].parse().expect("ms"))),
                "#rewrite" => store.rewrite_log().expect("rewrite"),
                "#reopen" => {
                    drop(store);
                    store = open(&storage, &clock);
                }
                _ => {
                    let got = store.execute(cmd);
                    let want = reference.execute(cmd);
                    prop_assert_eq!(got, want, "{:?}", cmd);
                }
            }
        }
        prop_assert_eq!(dump(&store), dump(&reference));
        drop(store);
        prop_assert_eq!(dump(&open(&storage, &clock)), dump(&reference));
    }
}

/// While the log cannot be written, write commands answer `MISCONF` and
/// change nothing; reads go on; writes resume once the log is repaired.
#[test]
fn write_commands_answer_misconf_while_the_log_fails() {
    use shardcache::persist::FaultOn;
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let store = open(&storage, &clock);
    assert_eq!(store.execute(&["SET", "key0", "a"]), Reply::ok());
    assert_eq!(store.execute(&["SET", "key1", "b"]), Reply::ok());
    storage.inject(FaultOn::Append, 0, std::io::ErrorKind::StorageFull, true);
    for command in [
        &["SET", "key2", "c"][..],
        &["DEL", "key0"],
        &["INCR", "n"],
        &["EXPIRE", "key1", "100"],
    ] {
        let reply = store.execute(command);
        let Reply::Error(e) = &reply else {
            panic!("{command:?} answered {reply:?}");
        };
        assert!(e.starts_with("MISCONF "), "{e}");
    }
    assert_eq!(store.execute(&["GET", "key0"]), Reply::Bulk("a".into()));
    assert_eq!(store.execute(&["EXISTS", "key2"]), Reply::Integer(0));
    assert_eq!(store.execute(&["TTL", "key1"]), Reply::Integer(-1));
    storage.heal();
    let _ = store.sync();
    store.sync().expect("repaired");
    assert_eq!(store.execute(&["DEL", "key0"]), Reply::Integer(1));
    drop(store);
    let store = open(&storage, &clock);
    assert_eq!(store.execute(&["GET", "key0"]), Reply::Nil, "the DEL stuck");
    assert_eq!(store.execute(&["GET", "key1"]), Reply::Bulk("b".into()));
    assert_eq!(store.execute(&["GET", "key2"]), Reply::Nil, "refused SET");
}

#[test]
fn a_value_over_256_mib_is_logged_and_the_store_reopens() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let big = vec![b'x'; (256 << 20) + 1];
    {
        let store = open(&storage, &clock);
        assert_eq!(store.execute(&["SET", "a", "1"]), Reply::ok());
        let reply = store.execute(&[&b"SET"[..], b"big", &big]);
        assert_eq!(reply, Reply::ok(), "Redis takes values up to 512 MB");
        assert_eq!(store.execute(&["SET", "b", "2"]), Reply::ok());
    }
    let store = open(&storage, &clock);
    assert_eq!(
        store.execute(&["MGET", "a", "b"]),
        Reply::Array(vec![Reply::Bulk("1".into()), Reply::Bulk("2".into()),])
    );
    assert_eq!(store.get("big").as_deref(), Some(&big[..]));
}
