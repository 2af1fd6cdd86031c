//! Replies in a form both a `redis-server` and a `KvStore` convert to, and
//! a [`Pair`] of the two fed the same commands, for the differential tests
//! that compare replies exactly. Included with `#[path]` beside
//! `support/redis_server.rs` (it is not a test binary of its own).

#![allow(dead_code)] // each includer uses a different part

use crate::redis_server::RedisServer as Server;
use shardcache::kv::{KvStore, Reply};

/// A reply in a form both sides convert to (ordered, for replies compared
/// as sets).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum R {
    Status(String),
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Arr(Vec<R>),
}

pub(crate) fn from_redis(v: redis::RedisResult<redis::Value>) -> R {
    use redis::Value as V;
    match v {
        Err(e) => R::Err(format!(
            "{} {}",
            e.code().unwrap_or("?"),
            e.detail().unwrap_or("")
        )),
        Ok(V::ServerError(e)) => R::Err(format!("{} {}", e.code(), e.details().unwrap_or(""))),
        Ok(V::Okay) => R::Status("OK".into()),
        Ok(V::SimpleString(s)) => R::Status(s),
        Ok(V::Int(n)) => R::Int(n),
        Ok(V::BulkString(b)) => R::Bulk(b),
        Ok(V::Nil) => R::Nil,
        Ok(V::Array(a)) => R::Arr(a.into_iter().map(|v| from_redis(Ok(v))).collect()),
        Ok(other) => panic!("unexpected reply from redis: {other:?}"),
    }
}

pub(crate) fn from_kv(r: Reply) -> R {
    match r {
        Reply::Status(s) => R::Status(s.into_owned()),
        Reply::Error(e) => R::Err(e),
        Reply::Integer(n) => R::Int(n),
        Reply::Bulk(b) => R::Bulk(b.to_vec()),
        Reply::Nil => R::Nil,
        Reply::Array(a) => R::Arr(a.into_iter().map(from_kv).collect()),
        other => panic!("unexpected reply kind {other:?}"),
    }
}

/// A Redis connection and a store, fed the same commands.
pub(crate) struct Pair {
    pub(crate) con: redis::Connection,
    pub(crate) kv: KvStore,
    _server: Server,
}

impl Pair {
    pub(crate) fn new() -> Option<Self> {
        if std::env::var("SHARDCACHE_SKIP_REDIS").as_deref() == Ok("1") {
            eprintln!("SHARDCACHE_SKIP_REDIS=1: skipping the comparison with redis-server");
            return None;
        }
        let server = Server::start(&[]).unwrap_or_else(|e| {
            panic!("could not start redis-server ({e}); install it or set SHARDCACHE_SKIP_REDIS=1")
        });
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/", server.port())).expect("client");
        let con = client.get_connection().expect("connection to redis-server");
        Some(Self {
            con,
            kv: KvStore::new(),
            _server: server,
        })
    }

    /// Runs `args` on both sides; panics unless the replies are equal.
    #[track_caller]
    pub(crate) fn same(&mut self, args: &[&[u8]]) -> R {
        let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("ascii command"));
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let want = from_redis(cmd.query::<redis::Value>(&mut self.con));
        let got = from_kv(self.kv.execute(args));
        let show: Vec<String> = args
            .iter()
            .map(|a| {
                let s = String::from_utf8_lossy(a);
                if s.len() > 40 {
                    format!("<{} bytes>", a.len())
                } else {
                    format!("{s:?}")
                }
            })
            .collect();
        assert_eq!(got, want, "{}", show.join(" "));
        want
    }

    #[track_caller]
    pub(crate) fn line(&mut self, line: &str) -> R {
        let words: Vec<&[u8]> = line
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| if w == "\"\"" { &b""[..] } else { w.as_bytes() })
            .collect();
        self.same(&words)
    }
}
