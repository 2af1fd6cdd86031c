//! The Redis tier against a real `redis-server` started by each test on a
//! free loopback port (in a temp dir, no persistence, killed on drop).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use shardcache::tier::{Health, TierConfigError, TierError, TieredCache};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OP_TIMEOUT: Duration = Duration::from_millis(50);
/// Scheduling slack allowed on top of the op timeout on a busy 2-core box.
const SLACK: Duration = Duration::from_millis(40);

#[path = "support/redis_server.rs"]
mod redis_server;

/// The test's server; a missing `redis-server` fails the test, loudly.
struct Server(redis_server::RedisServer);

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server(
            redis_server::RedisServer::start(extra)
                .expect("redis-server on the PATH (apt-get install redis-server)"),
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

async fn tier(url: &str, prefix: &str) -> TieredCache {
    TieredCache::builder(url)
        .prefix(prefix)
        .local_capacity(10_000)
        .local_ttl(Duration::from_secs(30))
        .remote_ttl(Duration::from_secs(300))
        .op_timeout(OP_TIMEOUT)
        .heartbeat(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

    a.set("k", "v1", None).await.unwrap();
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
    c.set("k", "over tls", None).await.unwrap();
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
    ok.set("a", "1", None).await.unwrap();
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
    c.set("a", "1", None).await.unwrap();
    assert_eq!(c.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    server.restart().expect("redis-server restarts");
    wait_for("Up", Duration::from_secs(5), || c.health().is_up()).await;
    c.set("b", "2", None).await.unwrap();
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
            c.set(&format!("new{i}"), "x", None).await.unwrap();
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
    if let Health::Down { last_error, since } = c.health() {
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
    c.set("after", "yes", None).await.unwrap();
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
    a.set("u1:doc9", "allow", None).await.unwrap();
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
    a.del("u1:doc9").await.unwrap();
    let took = t.elapsed();
    eprintln!("stalled Redis: del returned after {took:?} (op timeout {OP_TIMEOUT:?})");
    assert!(took <= OP_TIMEOUT + SLACK, "del took {took:?}");
    assert!(matches!(a.health(), Health::Down { .. }));
    // While down the next ops do not wait at all.
    let t = Instant::now();
    assert_eq!(a.get("u1:doc9").await.unwrap(), None);
    a.set("other", "x", None).await.unwrap();
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
        a.set(&key, "allow", None).await.unwrap();
        // B has an old copy locally (from an earlier read; a fill racing the
        // invalidation of A's own set is discarded, so read until it sticks).
        let t = Instant::now();
        while !b.local().contains_key(&key) {
            assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&b"allow"[..]));
            assert!(t.elapsed() < BOUND);
        }
        let t = Instant::now();
        if i % 2 == 0 {
            a.del(&key).await.unwrap();
        } else {
            a.set(&key, "deny", None).await.unwrap();
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
        a.set(&key, "allow", None).await.unwrap();
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
        a.set(&key, "allow", None).await.unwrap();
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
