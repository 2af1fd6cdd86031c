//! Hostile arguments for `COPY`, `RENAME`, `RENAMENX`, `MSET` and `MSETNX`
//! compared reply by reply with a real `redis-server` (see
//! `kv_multi_vs_redis.rs`; skipped with `SHARDCACHE_SKIP_REDIS=1`).

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/replies.rs"]
mod replies;
use replies::Pair;

fn run(lines: &[&str]) {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    for line in lines {
        p.line(line);
    }
}

/// Repeated and mixed `DB` options of `COPY` (an out-of-range database
/// before a valid one, before a syntax error or a bad integer) answer as
/// Redis answers.
#[test]
fn copy_reads_every_option_before_the_database_as_redis_does() {
    run(&[
        "SET a 1",
        "COPY a e DB 16 DB 0",
        "EXISTS e",
        "COPY a f DB 16 FOO",
        "COPY a f DB 16 DB x",
        "COPY a f DB 16 DB",
        "COPY a f DB 99999999999 DB 0",
        "EXISTS f",
    ]);
}

/// What holds: hostile but well-ordered arguments of the multi-key
/// commands answer as Redis does.
#[test]
fn hostile_multi_key_arguments_match_redis() {
    run(&[
        "MSET",
        "MSET a",
        "MSET a 1 b",
        "MSETNX a",
        "MSETNX a 1 a",
        "MSETNX a 1 a 2",
        "MGET a",
        "MSETNX a 3 b 4",
        "MGET a b",
        "RENAME",
        "RENAME a",
        "RENAME a b c",
        "RENAME missing missing",
        "RENAMENX missing missing",
        "RENAME a a",
        "RENAMENX a a",
        "RENAMENX a b",
        "RENAMENX a c",
        "MGET a b c",
        "COPY c c DB 16",
        "COPY c c DB 0",
        "COPY c d DB 0 REPLACE DB 0",
        "COPY c d replace db 0",
        "COPY c d DB 2147483648",
        "COPY c d DB -2147483649",
        "COPY c d DB 0x0",
        "COPY c d DB \"\"",
        "COPY c d REPLACE FOO",
        "MGET c d",
        "MSET \"\" empty",
        "COPY \"\" x",
        "RENAME x \"\"",
        "GET \"\"",
        "EXISTS x",
    ]);
}
