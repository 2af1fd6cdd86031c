//! The Redis tier against a real `redis-server` started by each test on a
//! free loopback port (in a temp dir, no persistence, killed on drop).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use shardcache::tier::{DownReason, Health, TierConfigError, TierError, TieredCache};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Scheduling slack allowed on top of the op timeout on a busy 2-core box.
const SLACK: Duration = Duration::from_millis(40);

#[path = "support/redis_server.rs"]
mod redis_server;

#[path = "support/proxy.rs"]
mod proxy;

#[path = "support/tier_setup.rs"]
mod tier_setup;

use tier_setup::{tier, wait_for, OP_TIMEOUT};

/// Tests share the machine; the one that saturates the scheduler on
/// purpose runs alone (it takes this lock for writing), so its load does not
/// leak into the timing bounds of the others.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds [`MACHINE`] shared, or alone.
#[allow(dead_code)] // held only for its drop
enum Turn {
    Shared(std::sync::RwLockReadGuard<'static, ()>),
    Alone(std::sync::RwLockWriteGuard<'static, ()>),
}

/// The test's server (and its turn on the machine, held until it drops); a
/// missing `redis-server` fails the test, loudly.
struct Server(redis_server::RedisServer, #[allow(dead_code)] Turn);

impl Server {
    fn start(extra: &[&str]) -> Server {
        let turn = Turn::Shared(MACHINE.read().unwrap_or_else(|e| e.into_inner()));
        Self::with_turn(extra, turn)
    }

    /// A server for a test that must run alone.
    fn start_alone(extra: &[&str]) -> Server {
        let turn = Turn::Alone(MACHINE.write().unwrap_or_else(|e| e.into_inner()));
        Self::with_turn(extra, turn)
    }

    fn with_turn(extra: &[&str], turn: Turn) -> Server {
        Server(
            redis_server::RedisServer::start(extra)
                .expect("redis-server on the PATH (apt-get install redis-server)"),
            turn,
        )
    }
}

impl std::ops::Deref for Server {
    type Target = redis_server::RedisServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `c.set(key, value, None)`, retried while it is refused because a call
/// timed out on a loaded machine (its outcome unknown); other errors fail.
async fn put(c: &TieredCache, key: &str, value: impl Into<Bytes>) {
    let value = value.into();
    for _ in 0..20 {
        match c.set(key, value.clone(), None).await {
            Ok(()) => return,
            Err(TierError::Unavailable(e)) if c.health().is_up() => {
                eprintln!("set {key}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("set {key}: {e:?}"),
        }
    }
    panic!("set {key}: refused 20 times");
}

fn get_raw(con: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_semantics() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    let a = tier(&server.url(), "app:").await;
    assert_eq!(a.health(), Health::Up);

    put(&a, "k", "v1").await;
    assert_eq!(get_raw(&mut raw, "app:k").as_deref(), Some(&b"v1"[..]));
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    // Redis got the remote TTL; the local copy the local one.
    let ttl = a.ttl("k").await.unwrap().unwrap().unwrap();
    assert!(ttl > Duration::from_secs(290) && ttl <= Duration::from_secs(300));
    let local = a.local().ttl("k").unwrap().unwrap();
    assert!(local <= Duration::from_secs(30));

    // A value only in Redis is read through and fills the local tier.
    redis::cmd("SET")
        .arg("app:remote")
        .arg("r")
        .arg("PX")
        .arg(5_000)
        .exec(&mut raw)
        .unwrap();
    assert!(!a.local().contains_key("remote"));
    assert_eq!(a.get("remote").await.unwrap().as_deref(), Some(&b"r"[..]));
    assert!(a.local().contains_key("remote"));
    assert!(a.local().ttl("remote").unwrap().unwrap() <= Duration::from_secs(5));
    assert_eq!(a.get("missing").await.unwrap(), None);

    // Explicit TTL, expire, ttl, del.
    a.set("short", "s", Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(a.ttl("short").await.unwrap().unwrap().unwrap() <= Duration::from_secs(10));
    assert!(a.expire("short", Duration::from_secs(2)).await.unwrap());
    assert!(a.ttl("short").await.unwrap().unwrap().unwrap() <= Duration::from_secs(2));
    assert!(a.local().ttl("short").unwrap().unwrap() <= Duration::from_secs(2));
    assert!(!a.expire("nope", Duration::from_secs(2)).await.unwrap());
    assert_eq!(a.ttl("nope").await.unwrap(), None);
    assert!(a.del("short").await.unwrap());
    assert!(!a.del("short").await.unwrap());
    assert_eq!(a.get("short").await.unwrap(), None);
    assert!(matches!(
        a.set("z", "v", Some(Duration::ZERO)).await,
        Err(TierError::Redis(_))
    ));

    // Counters live in Redis.
    assert_eq!(a.incr("hits").await.unwrap(), 1);
    assert_eq!(a.incr_by("hits", 41).await.unwrap(), 42);
    assert_eq!(a.get("hits").await.unwrap().as_deref(), Some(&b"42"[..]));
    assert_eq!(a.incr("hits").await.unwrap(), 43);
    assert_eq!(a.get("hits").await.unwrap().as_deref(), Some(&b"43"[..]));
    assert!(matches!(a.incr("k").await, Err(TierError::Redis(_))));

    // Typed values, the same encoding as KvStore's.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Session {
        user: u64,
        roles: Vec<String>,
    }
    let s = Session {
        user: 7,
        roles: vec!["admin".into()],
    };
    a.set_as("sess", &s, None).await.unwrap();
    a.clear_local();
    assert_eq!(a.get_as::<Session>("sess").await.unwrap(), Some(s));
    assert!(matches!(
        a.get_as::<bool>("sess").await,
        Err(TierError::WrongType { .. })
    ));
    let kv = shardcache::kv::KvStore::new();
    kv.set(
        "raw",
        a.get("sess").await.unwrap().unwrap(),
        Default::default(),
    )
    .unwrap();
    assert_eq!(kv.get_as::<Session>("raw").unwrap().unwrap().user, 7);

    // The loader runs once; then the value is in both tiers.
    let mut calls = 0;
    let v = a
        .get_or_load("loaded", None, || {
            calls += 1;
            async { Ok::<_, TierError>(Bytes::from_static(b"db")) }
        })
        .await
        .unwrap();
    assert_eq!(&v[..], b"db");
    let v = a
        .get_or_load("loaded", None, || async {
            Ok::<_, TierError>(Bytes::from_static(b"again"))
        })
        .await
        .unwrap();
    assert_eq!((&v[..], calls), (&b"db"[..], 1));
    assert_eq!(get_raw(&mut raw, "app:loaded").as_deref(), Some(&b"db"[..]));

    // 50 concurrent misses of one key run one loader.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (a, calls) = (a.clone(), calls.clone());
            tokio::spawn(async move {
                a.get_or_load("flight", None, || async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, TierError>(Bytes::from_static(b"once"))
                })
                .await
                .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(&t.await.unwrap()[..], b"once");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A failed load is the leader's error only, and is not cached: the next
    // caller runs its own loader.
    let failed = a
        .get_or_load("flaky", None, || async {
            Err::<Bytes, _>(TierError::Redis("db down".into()))
        })
        .await;
    assert!(matches!(failed, Err(TierError::Redis(_))));
    let v = a
        .get_or_load("flaky", None, || async {
            Ok::<_, TierError>(Bytes::from_static(b"back"))
        })
        .await
        .unwrap();
    assert_eq!(&v[..], b"back");

    // Another prefix is another keyspace.
    let other = tier(&server.url(), "other:").await;
    assert_eq!(other.get("k").await.unwrap(), None);
    let st = a.stats();
    assert!(st.remote_hits >= 1 && st.remote_misses >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_are_clear() {
    let too_long = TieredCache::builder("redis://127.0.0.1:1/0")
        .local_ttl(Duration::from_secs(86_400))
        .remote_ttl(Duration::from_secs(3_600))
        .build()
        .await;
    let e = too_long.unwrap_err();
    assert!(matches!(
        e,
        TierError::Config(TierConfigError::LocalTtlExceedsRemote { .. })
    ));
    assert!(e.to_string().contains("local_ttl"), "{e}");
    let e = TieredCache::builder("http://localhost")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(e, TierError::Config(TierConfigError::InvalidUrl { .. })),
        "{e}"
    );
    let e = TieredCache::builder("redis://:hunter2@127.0.0.1:1/notanumber")
        .build()
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "password leaked: {e}");
    let e = TieredCache::builder("redis://127.0.0.1:1/0")
        .local_capacity(0)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        TierError::Config(TierConfigError::ZeroCapacity)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_port_is_a_clear_error() {
    let server = Server::start(&[]);
    let url = format!("rediss://127.0.0.1:{}/0", server.port());
    let start = Instant::now();
    let e = TieredCache::builder(url).build().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    eprintln!("rediss:// to a plain port: {e}");
    assert!(matches!(e, TierError::Tls(_)), "{e:?}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, via the
/// openssl CLI; `None` if it is not installed.
fn make_certs(dir: &std::path::Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    ok.then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_port_works_and_an_untrusted_certificate_is_a_clear_error() {
    let certs = tempfile::tempdir().unwrap();
    if make_certs(certs.path()).is_none() {
        eprintln!("note: openssl is not available: skipping the TLS round trip");
        return;
    }
    let path = |f: &str| certs.path().join(f).to_str().unwrap().to_string();
    let (key, cert, ca) = (path("server.key"), path("server.pem"), path("ca.pem"));
    let server = Server::start(&[
        "--port",
        "0",
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{}/0", server.port());
    // Our test CA is not in the webpki roots.
    let e = TieredCache::builder(url.as_str())
        .build()
        .await
        .unwrap_err();
    eprintln!("untrusted certificate: {e}");
    assert!(matches!(e, TierError::Tls(_)), "{e:?}");
    // Trusting the CA explicitly works.
    let c = TieredCache::builder(url.as_str())
        .prefix("tls:")
        .tls_root_cert(std::fs::read(&ca).unwrap())
        .require_redis(true)
        .build()
        .await
        .unwrap();
    assert_eq!(c.health(), Health::Up);
    put(&c, "k", "over tls").await;
    c.clear_local();
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"over tls"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let url = |auth: &str| format!("redis://{auth}127.0.0.1:{}/0", server.port());
    let e = TieredCache::builder(url(":wrong@"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, TierError::Auth(_)), "{e:?}");
    assert!(e.to_string().contains("authentication"), "{e}");
    let e = TieredCache::builder(url("")).build().await.unwrap_err();
    assert!(matches!(e, TierError::Auth(_)), "{e:?}");
    let ok = tier(&url(":s3cret@"), "p:").await;
    put(&ok, "a", "1").await;
    assert_eq!(ok.health(), Health::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_start_runs_locally_then_connects() {
    let mut server = Server::start(&[]);
    server.kill();
    let start = Instant::now();
    let e = TieredCache::builder(server.url())
        .require_redis(true)
        .connect_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, TierError::Connect { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(1));

    let c = tier(&server.url(), "p:").await;
    assert!(matches!(c.health(), Health::Down { .. }));
    put(&c, "a", "1").await;
    assert_eq!(c.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    server.restart().expect("redis-server restarts");
    wait_for("Up", Duration::from_secs(5), || c.health().is_up()).await;
    put(&c, "b", "2").await;
    assert_eq!(
        get_raw(&mut server.raw(), "p:b").as_deref(),
        Some(&b"2"[..])
    );
}

/// Redis killed mid-run: no panic, no hang, every op bounded, local-servable
/// ops keep working; restarted on the same port: Up again, data flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    let mut server = Server::start(&[]);
    let c = tier(&server.url(), "app:").await;
    for i in 0..100 {
        c.set(&format!("k{i}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    server.kill();
    let mut slowest = Duration::ZERO;
    let mut errors = 0;
    let outage = Instant::now();
    let mut i = 0;
    while outage.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        let key = format!("k{}", i % 50); // k50..k99 are deleted below
        match c.get(&key).await {
            Ok(Some(v)) if v == format!("v{}", i % 50) => {}
            other => {
                errors += 1;
                eprintln!("get {key}: {other:?}");
            }
        }
        if i % 10 == 0 {
            put(&c, &format!("new{i}"), "x").await;
            assert!(c.del(&format!("k{}", 50 + i % 50)).await.is_ok());
        }
        slowest = slowest.max(t.elapsed());
        i += 1;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eprintln!("outage: {i} ops, {errors} unexpected results, slowest op {slowest:?}");
    assert_eq!(errors, 0);
    assert!(slowest <= OP_TIMEOUT + SLACK, "an op took {slowest:?}");
    assert!(matches!(c.health(), Health::Down { .. }));
    if let Health::Down {
        last_error, since, ..
    } = c.health()
    {
        assert!(!last_error.is_empty() && since.elapsed() < Duration::from_secs(2));
    }
    assert!(matches!(c.incr("n").await, Err(TierError::Unavailable(_))));
    assert!(c.stats().invalidations_queued > 0);

    server.restart().expect("redis-server restarts");
    wait_for("Up after restart", Duration::from_secs(5), || {
        c.health().is_up()
    })
    .await;
    let st = c.stats();
    assert!(st.reconnects >= 1 && st.queue_len == 0);
    assert_eq!(st.invalidations_replayed, st.invalidations_queued);
    put(&c, "after", "yes").await;
    assert_eq!(
        get_raw(&mut server.raw(), "app:after").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(c.incr("n").await.unwrap(), 1);
}

/// Redis stops answering (SIGSTOP): ops time out within the bound; a
/// revoke made meanwhile is replayed when it answers again, and the other
/// instance stops serving the revoked value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_during_a_stall_is_replayed() {
    let server = Server::start(&[]);
    let a = tier(&server.url(), "perm:").await;
    let b = tier(&server.url(), "perm:").await;
    put(&a, "u1:doc9", "allow").await;
    // A's set also publishes an invalidation, which may reach B after B's
    // first read filled its local tier: read until the copy stays.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        assert_eq!(
            b.get("u1:doc9").await.unwrap().as_deref(),
            Some(&b"allow"[..])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        if b.local().contains_key("u1:doc9") || Instant::now() > deadline {
            break;
        }
    }
    assert!(b.local().contains_key("u1:doc9"));

    server.signal("-STOP");
    let t = Instant::now();
    // The tier is still up when the call times out: the revoke is not
    // acknowledged, but it is queued and will reach Redis and B.
    let e = a.del("u1:doc9").await.unwrap_err();
    assert!(matches!(e, TierError::Unavailable(_)), "{e:?}");
    let took = t.elapsed();
    eprintln!("stalled Redis: del returned after {took:?} (op timeout {OP_TIMEOUT:?})");
    assert!(took <= OP_TIMEOUT + SLACK, "del took {took:?}");
    // One timeout is not an outage; the heartbeat probes that follow it are.
    wait_for("A down", Duration::from_secs(2), || !a.health().is_up()).await;
    assert!(matches!(
        a.health(),
        Health::Down {
            reason: DownReason::Timeouts,
            ..
        }
    ));
    // While down the next ops do not wait at all.
    let t = Instant::now();
    assert_eq!(a.get("u1:doc9").await.unwrap(), None);
    put(&a, "other", "x").await;
    assert!(t.elapsed() < Duration::from_millis(10));
    assert_eq!(a.stats().queue_len, 2);

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("-CONT");
    wait_for("A up", Duration::from_secs(5), || a.health().is_up()).await;
    assert_eq!(get_raw(&mut server.raw(), "perm:u1:doc9"), None);
    wait_for("B up", Duration::from_secs(5), || b.health().is_up()).await;
    wait_for("B drops the revoked value", Duration::from_secs(2), || {
        !b.local().contains_key("u1:doc9")
    })
    .await;
    assert_eq!(b.get("u1:doc9").await.unwrap(), None);
}

/// Two caches on one Redis: after a revoke on one, the other never serves
/// the value once the invalidation bound has passed; measures the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_one_instance_reaches_the_other() {
    const BOUND: Duration = Duration::from_millis(100);
    let server = Server::start(&[]);
    let a = tier(&server.url(), "perm:").await;
    let b = tier(&server.url(), "perm:").await;
    let mut delays = Vec::new();
    for i in 0..200 {
        let key = format!("resource:{i}");
        put(&a, &key, "allow").await;
        // B has an old copy locally (from an earlier read; a fill racing the
        // invalidation of A's own set is discarded, so read until it sticks).
        let t = Instant::now();
        while !b.local().contains_key(&key) {
            let v = b.get(&key).await.unwrap(); // a miss if the call timed out
            assert!(v.is_none() || v.as_deref() == Some(&b"allow"[..]), "{v:?}");
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let t = Instant::now();
        if i % 2 == 0 {
            a.del(&key).await.unwrap();
        } else {
            put(&a, &key, "deny").await;
        }
        while b.local().get(&key).as_deref() == Some(&b"allow"[..]) {
            assert!(t.elapsed() < BOUND, "B still serves the revoked value");
            std::hint::spin_loop();
            tokio::task::yield_now().await;
        }
        delays.push(t.elapsed());
        let expect = if i % 2 == 0 { None } else { Some(&b"deny"[..]) };
        assert_eq!(b.get(&key).await.unwrap().as_deref(), expect);
    }
    // Own messages are ignored.
    assert_eq!(a.stats().invalidations_received, 0);
    assert!(b.stats().invalidations_received >= 200);
    delays.sort();
    let p = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    eprintln!(
        "invalidation delay (revoke returned -> gone on the other instance): p50 {:?} p99 {:?} max {:?}",
        p(0.5),
        p(0.99),
        delays[delays.len() - 1]
    );
    assert!(p(0.99) < Duration::from_millis(50), "p99 {:?}", p(0.99));
}

/// Readers on B racing revokes on A: once a revoke has returned and the
/// bound has passed, B never returns the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reads_never_resurrect_a_revoke() {
    let server = Server::start(&[]);
    let a = tier(&server.url(), "perm:").await;
    let b = tier(&server.url(), "perm:").await;
    for round in 0..30 {
        let key = format!("race:{round}");
        put(&a, &key, "allow").await;
        let reader = {
            let b = b.clone();
            let key = key.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    let _ = b.get(&key).await;
                    b.local().remove(&key); // force trips to Redis
                    tokio::task::yield_now().await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        a.del(&key).await.unwrap();
        reader.await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(b.get(&key).await.unwrap(), None, "round {round}");
        assert!(!b.local().contains_key(&key));
    }
    // Without forced removals: fills racing the delete must not stick.
    for round in 0..30 {
        let key = format!("race2:{round}");
        put(&a, &key, "allow").await;
        let b2 = b.clone();
        let k2 = key.clone();
        let reader = tokio::spawn(async move {
            for _ in 0..50 {
                let _ = b2.get(&k2).await;
                tokio::task::yield_now().await;
            }
        });
        a.del(&key).await.unwrap();
        reader.await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(b.local().get(&key), None, "round {round}");
    }
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let e = futures::executor::block_on(TieredCache::builder("redis://127.0.0.1:1/0").build())
        .unwrap_err();
    assert!(matches!(e, TierError::NoRuntime), "{e:?}");
}

fn seq_of(v: &[u8]) -> u64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

/// B's subscriber connection is blackholed (its socket stays open, its data
/// connection works): B stops serving local entries within the liveness
/// bound, clears them and resubscribes; it never serves a value overwritten
/// more than the bound ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_subscriber_never_serves_stale_past_the_bound() {
    const BOUND: Duration = Duration::from_secs(1);
    let server = Server::start(&[]);
    let proxy = proxy::Proxy::start(server.port()).unwrap();
    let a = tier(&server.url(), "perm:").await;
    let b = tier(&format!("redis://127.0.0.1:{}/0", proxy.port()), "perm:").await;
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    for k in &keys {
        put(&a, k, "1").await;
    }
    for k in &keys {
        let t = Instant::now();
        while !b.local().contains_key(k.as_str()) {
            let v = b.get(k).await.unwrap(); // a miss if the call timed out
            assert!(v.is_none() || v.as_deref() == Some(&b"1"[..]), "{v:?}");
            assert!(t.elapsed() < Duration::from_secs(5));
        }
    }
    assert_eq!(proxy.blackhole_subscribers(), 1);
    let blackholed = Instant::now();
    let (mut went_down, mut back_up, mut first_reason) = (None, None, None);
    for k in &keys {
        put(&a, k, "2").await;
    }
    let acked = Instant::now();
    let (mut stale_within_bound, mut reads) = (0, 0);
    while acked.elapsed() < BOUND * 3 {
        for k in &keys {
            let before = acked.elapsed();
            let v = b.get(k).await.unwrap();
            reads += 1;
            if v.as_deref() == Some(&b"1"[..]) {
                assert!(
                    before <= BOUND,
                    "B served an overwritten value {before:?} after the write"
                );
                stale_within_bound += 1;
            }
        }
        let st = b.stats();
        if went_down.is_none() && st.down_transitions > 0 {
            went_down = Some(blackholed.elapsed());
            first_reason = b.last_down().map(|(r, _)| r);
        }
        if back_up.is_none() && st.reconnects > 0 {
            back_up = Some(blackholed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eprintln!(
        "silent subscriber: {reads} reads, {stale_within_bound} stale (all within the {BOUND:?} bound); \
         B down {went_down:?} and up again {back_up:?} after the blackhole; B stats {:?}",
        b.stats()
    );
    // Given up for dead at twice the bound: cleared, resubscribed.
    wait_for("B resubscribed", Duration::from_secs(5), || {
        b.stats().reconnects >= 1
    })
    .await;
    let st = b.stats();
    assert_eq!(first_reason, Some(DownReason::ChannelSilent), "{st:?}");
    assert!(st.local_hits_skipped > 0, "{st:?}");
    wait_for("B up", Duration::from_secs(5), || b.health().is_up()).await;
    // Resubscribed: invalidations flow again.
    put(&a, "k0", "3").await;
    while !b.local().contains_key("k0") {
        let _ = b.get("k0").await.unwrap();
    }
    put(&a, "k0", "4").await;
    wait_for(
        "B applies A's invalidation",
        Duration::from_millis(500),
        || b.local().get("k0").as_deref() != Some(&b"3"[..]),
    )
    .await;
}

/// Writes keep coming while the writer replays its queue and comes back
/// Up: afterwards no local entry of either instance differs from Redis and
/// none is older than the last acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_recovery_leave_no_divergent_local_copy() {
    let server = Server::start(&[]);
    let a = tier(&server.url(), "w:").await;
    let b = tier(&server.url(), "w:").await;
    const KEYS: u64 = 300;
    let key = |i: u64| format!("k{}", i % KEYS);
    server.signal("-STOP");
    let mut seq = 0u64;
    // Fill the queue while down.
    while seq < 3 * KEYS || a.health().is_up() {
        seq += 1;
        // Refused (not acknowledged) while up and timing out; Ok once down.
        match a.set(&key(seq), seq.to_string(), None).await {
            Ok(()) | Err(TierError::Unavailable(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(seq < 1_000_000);
    }
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut last = std::collections::HashMap::new();
            let mut up_since: Option<Instant> = None;
            loop {
                seq += 1;
                match a.set(&key(seq), seq.to_string(), None).await {
                    Ok(()) => {
                        last.insert(key(seq), seq);
                    }
                    Err(TierError::Unavailable(_)) => {}
                    Err(e) => panic!("{e:?}"),
                }
                match (a.health().is_up(), up_since) {
                    (true, None) => up_since = Some(Instant::now()),
                    (true, Some(t)) if t.elapsed() > Duration::from_millis(200) => break,
                    _ => {}
                }
                if seq.is_multiple_of(32) {
                    tokio::task::yield_now().await;
                }
            }
            (last, seq)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.signal("-CONT");
    let (last, seq) = writer.await.unwrap();
    let last_ack = Instant::now();
    wait_for("B up", Duration::from_secs(5), || b.health().is_up()).await;
    assert!(a.health().is_up());
    // Every acknowledged write is older than the liveness bound now.
    let bound = shardcache::tier::DEFAULT_LIVENESS_BOUND;
    tokio::time::sleep(bound.saturating_sub(last_ack.elapsed())).await;
    let mut raw = server.raw();
    let mut diverged = 0;
    for i in 0..KEYS {
        let k = key(i);
        let truth = get_raw(&mut raw, &format!("w:{k}"));
        let floor = last.get(&k).copied().unwrap_or(0);
        if let Some(t) = &truth {
            assert!(seq_of(t) >= floor, "Redis lost {k} to an older value");
        }
        for (name, c) in [("A", &a), ("B", &b)] {
            if let Some(v) = c.local().get(k.as_str()) {
                if Some(&v[..]) != truth.as_deref() {
                    diverged += 1;
                    eprintln!("{name} holds {k}={v:?}, Redis {truth:?}");
                }
            }
            if let Some(v) = c.get(&k).await.unwrap() {
                assert!(seq_of(&v) >= floor, "{name} read {k} older than acked");
            }
        }
    }
    eprintln!(
        "writes during recovery: {} writes, {} keys with an acknowledged write; stats A {:?}",
        seq,
        last.len(),
        a.stats()
    );
    assert_eq!(diverged, 0);
    assert!(a.stats().invalidations_replayed > 0);
}

/// The replay queue fills during an outage: the writes that cannot be
/// queued are refused, and after recovery neither instance serves a value
/// an acknowledged write replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_writes_and_nothing_stale_survives() {
    let server = Server::start(&[]);
    let build = || {
        TieredCache::builder(server.url())
            .prefix("r:")
            .op_timeout(OP_TIMEOUT)
            .heartbeat(Duration::from_millis(200))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .queue_capacity(20)
            .build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    let keys: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    for k in &keys {
        put(&a, k, "v1").await;
        while !b.local().contains_key(k.as_str()) {
            let _ = b.get(k).await.unwrap();
        }
    }
    server.signal("-STOP");
    wait_for("A down", Duration::from_secs(3), || !a.health().is_up()).await;
    let mut acked = Vec::new();
    let mut refused = 0;
    for k in &keys {
        match a.set(k, "v2", None).await {
            Ok(()) => acked.push(k.clone()),
            Err(TierError::Unavailable(e)) => {
                refused += 1;
                assert!(e.contains("queue is full"), "{e}");
                assert_eq!(a.local().get(k.as_str()), None);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let last_ack = Instant::now();
    assert_eq!((acked.len(), refused), (20, 30));
    assert_eq!(a.stats().invalidations_dropped, 30);
    server.signal("-CONT");
    wait_for("both up", Duration::from_secs(5), || {
        a.health().is_up() && b.health().is_up()
    })
    .await;
    // The guarantee: nothing older than a write acknowledged more than the
    // liveness bound ago (B may have stayed Up through a short stall).
    let bound = shardcache::tier::DEFAULT_LIVENESS_BOUND;
    tokio::time::sleep(bound.saturating_sub(last_ack.elapsed())).await;
    let mut raw = server.raw();
    for k in &keys {
        let truth = get_raw(&mut raw, &format!("r:{k}"));
        for c in [&a, &b] {
            let v = c.get(k).await.unwrap();
            // A miss is always allowed (a call can time out on a loaded box).
            assert!(
                v.is_none() || v.as_deref() == truth.as_deref(),
                "{k}: {v:?}"
            );
            if acked.contains(k) {
                assert_ne!(v.as_deref(), Some(&b"v1"[..]), "{k}: revoked value served");
            }
        }
    }
}

/// Busy threads oversubscribe the two cores for a few seconds while two
/// instances serve a 90/10 get/set mix: timeouts may happen, Down must not.
/// `TIER_LOAD_SECS` sets the duration (default 4) and `TIER_LOAD_BURNERS`
/// the number of busy threads (default 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_scheduler_causes_no_spurious_down() {
    let server = Server::start_alone(&[]);
    let a = tier(&server.url(), "load:").await;
    let b = tier(&server.url(), "load:").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = Duration::from_secs(env("TIER_LOAD_SECS", 4));
    let burners: Vec<_> = (0..env("TIER_LOAD_BURNERS", 6))
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let run = |c: TieredCache, seed: u64| {
        tokio::spawn(async move {
            let start = Instant::now();
            let mut s = seed;
            let (mut ops, mut refused) = (0u64, 0u64);
            while start.elapsed() < secs {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = format!("k{}", (s >> 33) % 2_000);
                if (s >> 20).is_multiple_of(10) {
                    match c.set(&k, ops.to_string(), None).await {
                        Ok(()) => {}
                        // A timed-out write is refused, not acknowledged.
                        Err(TierError::Unavailable(_)) => refused += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                } else {
                    c.get(&k).await.unwrap();
                }
                ops += 1;
                if ops.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            (ops, refused)
        })
    };
    let (ra, rb) = (run(a.clone(), 1), run(b.clone(), 2));
    let ((oa, fa), (ob, fb)) = (ra.await.unwrap(), rb.await.unwrap());
    let (ops, refused) = (oa + ob, fa + fb);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in burners {
        t.join().unwrap();
    }
    let (sa, sb) = (a.stats(), b.stats());
    eprintln!(
        "loaded scheduler: {ops} ops, {refused} timed-out writes refused; A {sa:?}; B {sb:?}"
    );
    assert_eq!(
        (sa.down_transitions, sb.down_transitions),
        (0, 0),
        "A {:?} B {:?}",
        a.last_down(),
        b.last_down()
    );
    assert!(a.health().is_up() && b.health().is_up());
}

/// Redis stalls for one call's timeout: the write fails (not acknowledged,
/// not kept locally), the tier stays Up, and the write whose outcome was
/// unknown is replayed as a delete, so no instance keeps the value it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_timeout_is_not_an_outage_and_leaves_nothing_stale() {
    let server = Server::start(&[]);
    let a = tier(&server.url(), "t:").await;
    let b = tier(&server.url(), "t:").await;
    put(&a, "k", "v1").await;
    while !b.local().contains_key("k") {
        let _ = b.get("k").await.unwrap();
    }
    server.signal("-STOP");
    let t = Instant::now();
    let e = a.set("k", "v2", None).await.unwrap_err();
    let took = t.elapsed();
    server.signal("-CONT");
    assert!(matches!(e, TierError::Unavailable(_)), "{e:?}");
    assert_eq!(
        a.local().get("k"),
        None,
        "an unacknowledged write kept locally"
    );
    assert!(took >= OP_TIMEOUT, "the set did not time out ({took:?})");
    wait_for("the unknown write replayed", Duration::from_secs(2), || {
        a.stats().queue_len == 0 && a.stats().invalidations_replayed == 1
    })
    .await;
    let (sa, sb) = (a.stats(), b.stats());
    eprintln!("one stall: A {sa:?}");
    assert!(sa.timeouts >= 1);
    assert_eq!((sa.down_transitions, sb.down_transitions), (0, 0));
    assert!(a.health().is_up() && b.health().is_up());
    wait_for("B drops v1", Duration::from_millis(500), || {
        !b.local().contains_key("k")
    })
    .await;
    assert_eq!(get_raw(&mut server.raw(), "t:k"), None);
    for c in [&a, &b] {
        assert_eq!(c.get("k").await.unwrap(), None);
    }
}

/// Redis kills the subscriber connections (`CLIENT KILL TYPE pubsub`) while
/// the data connections live on: each instance drops its local tier (it may
/// miss invalidations), resubscribes, and never serves an overwritten value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriber_clears_and_resubscribes() {
    let server = Server::start(&[]);
    let a = tier(&server.url(), "sub:").await;
    let b = tier(&server.url(), "sub:").await;
    put(&a, "k", "1").await;
    let t = Instant::now();
    while !b.local().contains_key("k") {
        let _ = b.get("k").await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.raw())
        .unwrap();
    assert_eq!(killed, 2);
    wait_for("B resubscribed", Duration::from_secs(5), || {
        b.stats().reconnects >= 1 && b.health().is_up()
    })
    .await;
    assert_eq!(
        b.last_down().map(|(r, _)| r),
        Some(DownReason::ConnectionLost)
    );
    assert!(
        !b.local().contains_key("k"),
        "kept a copy that may be stale"
    );
    wait_for("A resubscribed", Duration::from_secs(5), || {
        a.stats().reconnects >= 1 && a.health().is_up()
    })
    .await;
    // Invalidations flow on the new subscriptions.
    let t = Instant::now();
    while !b.local().contains_key("k") {
        let _ = b.get("k").await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    put(&a, "k", "2").await;
    wait_for(
        "B drops the overwritten value",
        Duration::from_secs(1),
        || b.local().get("k").as_deref() != Some(&b"1"[..]),
    )
    .await;
    assert_ne!(b.get("k").await.unwrap().as_deref(), Some(&b"1"[..]));
}
