#![allow(clippy::unwrap_used)]
//! Attacks on the Redis tier (feature `redis`) with fault schedules and
//! settings the other tier tests do not use: Redis killed and restarted,
//! paused around the liveness bound, its pubsub clients killed, one of the
//! tier's connections blackholed, two instances racing on one key, a write
//! whose outcome is unknown on a full replay queue, and extreme settings.
#![cfg(feature = "redis")]

use bytes::Bytes;
use shardcache::tier::{Health, TierConfigError, TierError, TieredCache, MAX_REMOTE_TTL};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tier_setup.rs"]
mod tier_setup;

use fault_proxy::{Dir, Proxy, Sel};
use redis_server::RedisServer;
use tier_setup::{tier, wait_for};

const BOUND: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(15);

fn server() -> RedisServer {
    RedisServer::start(&[]).expect("redis-server on PATH")
}

fn raw_get(s: &RedisServer, key: &str) -> Option<String> {
    let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(&mut s.raw()).unwrap();
    v.map(|v| String::from_utf8(v).unwrap())
}

fn s(v: &Option<Bytes>) -> Option<String> {
    v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

async fn put(c: &TieredCache, key: &str, value: &str) {
    for _ in 0..50 {
        match c.set(key, Bytes::from(value.to_string()), None).await {
            Ok(()) => return,
            Err(TierError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("set {key}: {e:?}"),
        }
    }
    panic!("set {key} refused 50 times");
}

// A `set` that times out while the tier stays up, when the replay queue is
// full: its bytes went out, so Redis may still apply it, after a newer write
// that another instance acknowledged. Its delete is queued past the
// queue's capacity (only writes never sent are refused as "not applied"),
// so whatever Redis did with it, once the bound has passed no instance and
// not Redis serves the value it was refused with. (It used to be refused as
// "not applied" with no delete queued, and both instances then served it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_write_on_a_full_queue_is_still_deleted() {
    let srv = server();
    let proxy = Proxy::start(srv.port());
    // A goes through the proxy and has room for one queued key.
    let a = TieredCache::builder(proxy.url())
        .prefix("fq:")
        .local_ttl(Duration::from_secs(30))
        .op_timeout(Duration::from_millis(50))
        .heartbeat(Duration::from_millis(200))
        .queue_capacity(1)
        .build()
        .await
        .unwrap();
    let b = tier(&srv.url(), "fq:").await;
    wait_for("both up", LIMIT, || {
        a.health().is_up() && b.health().is_up()
    })
    .await;
    put(&a, "k", "v1").await;
    let downs = a.stats().down_transitions;

    // A's data connection stops delivering client->server (held, in order).
    assert_eq!(proxy.pause(Sel::Data, Dir::Up, true), 1);
    let t0 = Instant::now();
    // One timed-out write of another key fills the queue (capacity 1).
    let filler = a.set("filler", "x", None).await;
    // The write of "k" times out too; the queue is full.
    let r = a.set("k", "v2-refused", None).await;
    eprintln!(
        "filler: {filler:?}; k: {r:?}; queue {} after {:?}",
        a.stats().queue_len,
        t0.elapsed()
    );
    match &r {
        Err(TierError::Unavailable(m)) => assert!(m.contains("outcome is unknown"), "{m}"),
        other => panic!("the timed-out write of k was acknowledged: {other:?}"),
    }
    assert!(a.stats().queue_len >= 2, "both timed-out writes queued");
    // B (Up) acknowledges a newer write of k.
    b.set("k", "v3-acked", None).await.unwrap();
    assert_eq!(raw_get(&srv, "fq:k").as_deref(), Some("v3-acked"));
    // The partition heals while A is still Up (well inside the 500 ms outage window).
    proxy.pause(Sel::All, Dir::Both, false);
    let healed_after = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!(
        "healed after {healed_after:?}; A health {:?}, down transitions {} -> {}",
        a.health(),
        downs,
        a.stats().down_transitions
    );
    // Give everything far more than the liveness bound to settle.
    tokio::time::sleep(3 * BOUND).await;
    let truth = raw_get(&srv, "fq:k");
    let a_get = s(&a.get("k").await.unwrap());
    let b_get = s(&b.get("k").await.unwrap());
    eprintln!(
        "Redis {truth:?}; A {:?} reads {a_get:?}; B {:?} reads {b_get:?}",
        a.health(),
        b.health()
    );
    assert!(a.health().is_up() && b.health().is_up());
    for (who, v) in [("Redis", &truth), ("A", &a_get), ("B", &b_get)] {
        assert_ne!(
            v.as_deref(),
            Some("v2-refused"),
            "{who} holds the value of a write refused while it may land"
        );
    }
}

// A `remote_ttl` Redis would refuse on every write (here `Duration::MAX`,
// a natural way to spell "keep forever") is refused by `build()`; so is a
// per-call TTL beyond the longest, whether the tier is up or not. (It used
// to build, then every `set` failed while up and was accepted while down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_ttl_redis_would_refuse_is_refused_at_build() {
    let srv = server();
    let built = TieredCache::builder(srv.url())
        .prefix("ttl:")
        .local_ttl(Duration::from_secs(30))
        .remote_ttl(Duration::MAX)
        .build()
        .await;
    match built {
        Err(TierError::Config(TierConfigError::DurationTooLong { setting, max, .. })) => {
            assert_eq!(setting, "remote_ttl");
            assert_eq!(max, MAX_REMOTE_TTL);
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("remote_ttl(Duration::MAX) built"),
    }
    let c = TieredCache::builder(srv.url())
        .prefix("ttl:")
        .local_ttl(Duration::from_secs(30))
        .remote_ttl(MAX_REMOTE_TTL)
        .build()
        .await
        .unwrap();
    wait_for("up", LIMIT, || c.health().is_up()).await;
    c.set("k", "v", None).await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("ttl:k")
        .query(&mut srv.raw())
        .unwrap();
    assert!(pttl > 0, "PTTL {pttl}");
    let too_long = MAX_REMOTE_TTL + Duration::from_millis(1);
    for r in [
        c.set("k", "v2", Some(too_long)).await.map(drop),
        c.expire("k", too_long).await.map(drop),
    ] {
        assert!(
            matches!(&r, Err(TierError::Redis(m)) if m.contains("invalid expire time")),
            "{r:?}"
        );
    }
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    // Down: refused all the same, nothing kept.
    drop(srv);
    wait_for("down", LIMIT, || !c.health().is_up()).await;
    let r = c.set("k2", "v", Some(too_long)).await;
    assert!(matches!(&r, Err(TierError::Redis(_))), "{r:?}");
    assert_eq!(c.get("k2").await.unwrap(), None);
}

/// Extreme but accepted settings: no panic, and the tier works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_local_settings_do_not_panic() {
    let srv = server();
    for (cap, ttl) in [
        (u64::MAX, Duration::from_secs(30)),
        (1, Duration::from_secs(30)),
        (1000, Duration::from_nanos(1)),
        (1000, Duration::from_secs(10 * 365 * 86_400)),
        (1000, Duration::MAX),
    ] {
        let built = TieredCache::builder(srv.url())
            .prefix("x:")
            .local_capacity(cap)
            .local_ttl(ttl)
            .build()
            .await;
        match built {
            Err(e) => eprintln!("cap {cap} ttl {ttl:?}: error {e}"),
            Ok(c) => {
                c.set("k", "v", None).await.unwrap();
                let got = c.get("k").await.unwrap();
                assert_eq!(s(&got).as_deref(), Some("v"), "cap {cap} ttl {ttl:?}");
                c.set("", "empty", None).await.unwrap();
                assert_eq!(s(&c.get("").await.unwrap()).as_deref(), Some("empty"));
                let uni = "ключ🔑:\u{0}:x";
                c.set(uni, "u", None).await.unwrap();
                assert_eq!(s(&c.get(uni).await.unwrap()).as_deref(), Some("u"));
                // Own TTL edges.
                assert!(c
                    .set("t", "v", Some(Duration::from_micros(999)))
                    .await
                    .is_err());
                let r = c.set("t", "v", Some(Duration::MAX)).await;
                eprintln!("cap {cap} ttl {ttl:?}: set ttl MAX -> {r:?}");
                let r = c.expire("k", Duration::MAX).await;
                eprintln!("cap {cap} ttl {ttl:?}: expire MAX -> {r:?}");
                assert!(c.health().is_up());
            }
        }
    }
}

/// Two instances writing one key concurrently: once writes stop and a bound
/// has passed, no instance that says Up reads anything but Redis's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_on_one_key_converge_to_redis() {
    let srv = server();
    let a = tier(&srv.url(), "r2:").await;
    let b = tier(&srv.url(), "r2:").await;
    let mut bad = Vec::new();
    for round in 0..150 {
        let key = format!("k{}", round % 10);
        let (a1, b1, k1, k2) = (a.clone(), b.clone(), key.clone(), key.clone());
        let ta = tokio::spawn(async move {
            for i in 0..5 {
                let _ = a1.set(&k1, format!("a{round}-{i}"), None).await;
                let _ = a1.get(&k1).await;
            }
        });
        let tb = tokio::spawn(async move {
            for i in 0..5 {
                let _ = b1.set(&k2, format!("b{round}-{i}"), None).await;
                let _ = b1.get(&k2).await;
            }
        });
        ta.await.unwrap();
        tb.await.unwrap();
        if round % 10 == 9 {
            tokio::time::sleep(BOUND + Duration::from_millis(300)).await;
            for k in 0..10 {
                let key = format!("k{k}");
                let truth = raw_get(&srv, &format!("r2:{key}"));
                for (name, c) in [("A", &a), ("B", &b)] {
                    let got = s(&c.get(&key).await.unwrap());
                    if c.health().is_up() && got != truth {
                        bad.push((name, key.clone(), got, truth.clone()));
                    }
                }
            }
        }
    }
    eprintln!(
        "{} divergent reads: {:?}",
        bad.len(),
        bad.iter().take(5).collect::<Vec<_>>()
    );
    assert!(bad.is_empty());
}

/// A monitor for the invariant: B writes increasing sequence numbers to one
/// key and records when each was acknowledged; readers on A record what they
/// read and whether A said Up. A read while Up of a value older than one
/// acknowledged (by an Up B) more than the bound before the read began is a
/// violation.
struct Monitor {
    acked: Mutex<Vec<(Instant, u64)>>,
    violations: Mutex<Vec<String>>,
    stop: AtomicBool,
    reads: AtomicU64,
}

impl Monitor {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            acked: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            reads: AtomicU64::new(0),
        })
    }

    fn newest_acked_before(&self, t: Instant) -> u64 {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at <= t)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }
}

fn spawn_writer(b: TieredCache, key: &'static str, m: Arc<Monitor>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 1u64;
        while !m.stop.load(Ordering::Relaxed) {
            let up_before = b.health().is_up();
            let r = b.set(key, n.to_string(), None).await;
            if r.is_ok() && up_before && b.health().is_up() {
                m.acked.lock().unwrap().push((Instant::now(), n));
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn spawn_reader(a: TieredCache, key: &'static str, m: Arc<Monitor>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !m.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let up = a.health().is_up();
            if let Ok(Some(v)) = a.get(key).await {
                let up_after = a.health().is_up();
                let seen: u64 = String::from_utf8_lossy(&v).parse().unwrap_or(0);
                if up && up_after {
                    let floor = m.newest_acked_before(began.checked_sub(BOUND).unwrap_or(began));
                    if seen < floor {
                        m.violations.lock().unwrap().push(format!(
                            "read {seen} while Up; {floor} acknowledged more than {BOUND:?} before"
                        ));
                    }
                }
            }
            m.reads.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// Redis killed (SIGKILL) and restarted on the same port, with its data
/// (AOF, fsync always) and without, while B keeps writing and A reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_and_without_data_keep_the_invariant() {
    for aof in [true, false] {
        let mut srv = if aof {
            RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]).unwrap()
        } else {
            server()
        };
        let a = tier(&srv.url(), "rs:").await;
        let b = tier(&srv.url(), "rs:").await;
        let m = Monitor::new();
        let w = spawn_writer(b.clone(), "k", m.clone());
        let r = spawn_reader(a.clone(), "k", m.clone());
        tokio::time::sleep(Duration::from_millis(700)).await;
        for _ in 0..3 {
            srv.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            srv.restart().unwrap();
            wait_for("both up", LIMIT, || {
                a.health().is_up() && b.health().is_up()
            })
            .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        m.stop.store(true, Ordering::Relaxed);
        w.await.unwrap();
        r.await.unwrap();
        let v = m.violations.lock().unwrap().clone();
        eprintln!(
            "aof {aof}: {} reads, {} acked, {} violations {:?}",
            m.reads.load(Ordering::Relaxed),
            m.acked.lock().unwrap().len(),
            v.len(),
            v.iter().take(5).collect::<Vec<_>>()
        );
        assert!(v.is_empty());
    }
}

/// SIGSTOP of Redis for less than, between one and two, and more than two
/// liveness bounds, while B writes and A reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_around_the_bound_keep_the_invariant() {
    let srv = server();
    let a = tier(&srv.url(), "ps:").await;
    let b = tier(&srv.url(), "ps:").await;
    let m = Monitor::new();
    let w = spawn_writer(b.clone(), "k", m.clone());
    let r = spawn_reader(a.clone(), "k", m.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ms in [300u64, 1500, 2600] {
        srv.signal("-STOP");
        tokio::time::sleep(Duration::from_millis(ms)).await;
        srv.signal("-CONT");
        wait_for("both up", LIMIT, || {
            a.health().is_up() && b.health().is_up()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    m.stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    r.await.unwrap();
    let v = m.violations.lock().unwrap().clone();
    eprintln!(
        "{} reads, {} acked, {} violations {:?}; A {:?}",
        m.reads.load(Ordering::Relaxed),
        m.acked.lock().unwrap().len(),
        v.len(),
        v.iter().take(5).collect::<Vec<_>>(),
        a.stats()
    );
    assert!(v.is_empty());
}

/// `CLIENT PAUSE` (WRITE, then ALL) and `CLIENT KILL TYPE pubsub` while B
/// writes and A reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_and_pubsub_kills_keep_the_invariant() {
    let srv = server();
    let a = tier(&srv.url(), "cp:").await;
    let b = tier(&srv.url(), "cp:").await;
    let m = Monitor::new();
    let w = spawn_writer(b.clone(), "k", m.clone());
    let r = spawn_reader(a.clone(), "k", m.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut raw = srv.raw();
    for (mode, ms) in [("WRITE", 800u64), ("WRITE", 2500), ("ALL", 1500)] {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg(mode)
            .query(&mut raw)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(ms + 200)).await;
        wait_for("both up", LIMIT, || {
            a.health().is_up() && b.health().is_up()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    for _ in 0..3 {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut raw)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    wait_for("both up", LIMIT, || {
        a.health().is_up() && b.health().is_up()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    m.stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    r.await.unwrap();
    let v = m.violations.lock().unwrap().clone();
    eprintln!(
        "{} reads, {} acked, {} violations {:?}; A {:?}",
        m.reads.load(Ordering::Relaxed),
        m.acked.lock().unwrap().len(),
        v.len(),
        v.iter().take(5).collect::<Vec<_>>(),
        a.stats()
    );
    assert!(v.is_empty());
}

/// A's data connection blackholed (both directions discarded, socket open)
/// while its subscriber keeps working, then the reverse; B writes, A reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_blackholed_keeps_the_invariant() {
    let srv = server();
    let proxy = Proxy::start(srv.port());
    let a = tier(&proxy.url(), "bh:").await;
    let b = tier(&srv.url(), "bh:").await;
    let m = Monitor::new();
    let w = spawn_writer(b.clone(), "k", m.clone());
    let r = spawn_reader(a.clone(), "k", m.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sel in [Sel::Data, Sel::Subs, Sel::Data, Sel::Subs] {
        let n = proxy.discard(sel, Dir::Both, true);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // Only the connections blackholed then are affected; new ones flow.
        let _ = n;
        wait_for("A up", LIMIT, || a.health().is_up()).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    m.stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    r.await.unwrap();
    let v = m.violations.lock().unwrap().clone();
    eprintln!(
        "{} reads, {} acked, {} violations {:?}; A {:?}",
        m.reads.load(Ordering::Relaxed),
        m.acked.lock().unwrap().len(),
        v.len(),
        v.iter().take(5).collect::<Vec<_>>(),
        a.stats()
    );
    assert!(v.is_empty());
    assert!(matches!(a.health(), Health::Up));
}
