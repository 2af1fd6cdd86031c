//! `SETBIT`, `GETBIT`, `BITCOUNT` and `BITPOS` compared exactly with
//! `redis-server`: hostile arguments (arity, offsets and bits at and past
//! their limits, signs, NUL bytes, units), the last bit of a 512 MiB
//! value, and random bitmaps with random ranges.
//!
//! Needs `redis-server` on the PATH, unless `SHARDCACHE_SKIP_REDIS=1` is
//! set (as `tests/kv_vs_redis.rs`).

use rand::{Rng, SeedableRng};

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/replies.rs"]
mod replies;
use replies::{Pair, R};

#[test]
fn bit_commands_match_redis_on_hostile_arguments() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    for line in [
        // Arity.
        "SETBIT",
        "SETBIT k",
        "SETBIT k 1",
        "SETBIT k 1 1 1",
        "GETBIT k",
        "GETBIT k 1 1",
        "BITCOUNT",
        "BITPOS",
        "BITPOS k",
        // A missing key answers before the other arguments are looked at
        // (BITPOS parses its bit first).
        "BITCOUNT missing",
        "BITCOUNT missing 0",
        "BITCOUNT missing x y",
        "BITCOUNT missing 0 1 NOPE",
        "BITCOUNT missing 0 1 BIT extra",
        "BITPOS missing 0",
        "BITPOS missing 1",
        "BITPOS missing 1 x y z w",
        "BITPOS missing 2",
        "BITPOS missing x",
        "GETBIT missing 0",
        "GETBIT missing 4294967295",
        "GETBIT missing 4294967296",
        // Offsets: 0 to 2^32 - 1, string2ll's integers only.
        "SETBIT k 0 1",
        "SETBIT k 4294967296 1",
        "SETBIT k 9223372036854775807 1",
        "SETBIT k 9223372036854775808 1",
        "SETBIT k -1 1",
        "SETBIT k -0 1",
        "SETBIT k +1 1",
        "SETBIT k 01 1",
        "SETBIT k x 1",
        "SETBIT k 1.0 1",
        "SETBIT k \"\" 1",
        "SETBIT k x x",
        "GETBIT k -1",
        "GETBIT k +1",
        "GETBIT k x",
        "GETBIT k 4294967296",
        // Bits: 0 or 1.
        "SETBIT k 1 2",
        "SETBIT k 1 -1",
        "SETBIT k 1 +1",
        "SETBIT k 1 01",
        "SETBIT k 1 x",
        "SETBIT k 1 \"\"",
        "SETBIT k 1 9223372036854775808",
        "SETBIT k 1 1",
        "SETBIT k 1 1",
        "SETBIT k 7 1",
        "SETBIT k 7 0",
        "SETBIT k 7 0",
        "GET k",
        "GETBIT k 0",
        "GETBIT k 1",
        "GETBIT k 7",
        "GETBIT k 8",
        "GETBIT k 4294967295",
        "SETBIT k 100 0",
        "STRLEN k",
        "GET k",
        "SETBIT k 15 1",
        // BITCOUNT's ranges and units.
        "SET s foobar",
        "BITCOUNT s",
        "BITCOUNT s 0",
        "BITCOUNT s 0 0",
        "BITCOUNT s 1 1",
        "BITCOUNT s 0 -1",
        "BITCOUNT s -1 -5",
        "BITCOUNT s -5 -1",
        "BITCOUNT s -100 -200",
        "BITCOUNT s -200 -100",
        "BITCOUNT s -100 100",
        "BITCOUNT s 5 30 BIT",
        "BITCOUNT s 5 30 bit",
        "BITCOUNT s 5 30 BYTE",
        "BITCOUNT s -1 -1 BIT",
        "BITCOUNT s -9 -2 BIT",
        "BITCOUNT s -2 -9 BIT",
        "BITCOUNT s 47 47 BIT",
        "BITCOUNT s 48 100 BIT",
        "BITCOUNT s 0 -1 NOPE",
        "BITCOUNT s 0 -1 BIT BIT",
        "BITCOUNT s x 1",
        "BITCOUNT s 0 x",
        "BITCOUNT s x 1 NOPE",
        "BITCOUNT s 0 1 NOPE",
        "BITCOUNT s +1 2",
        "BITCOUNT s -9223372036854775808 9223372036854775807",
        "BITCOUNT s -9223372036854775808 9223372036854775807 BIT",
        "BITCOUNT s 9223372036854775807 -9223372036854775808 BIT",
        // BITPOS: the bit first, then the key, then start, unit and end.
        "BITPOS s 1",
        "BITPOS s 0",
        "BITPOS s 2",
        "BITPOS s -1",
        "BITPOS s +1",
        "BITPOS s x",
        "BITPOS s 1 2",
        "BITPOS s 1 -1",
        "BITPOS s 0 100",
        "BITPOS s 1 2 -1",
        "BITPOS s 1 -1 -5",
        "BITPOS s 1 -100 -200",
        "BITPOS s 0 -100 -200",
        "BITPOS s 1 7 15 BIT",
        "BITPOS s 0 7 15 BIT",
        "BITPOS s 0 7 15 bit",
        "BITPOS s 0 7 15 BYTE",
        "BITPOS s 0 7 x BIT",
        "BITPOS s 0 7 15 NOPE",
        "BITPOS s 0 7 x NOPE",
        "BITPOS s 0 x 15 NOPE",
        "BITPOS s 0 7 BIT",
        "BITPOS s 0 7 15 BIT extra",
        "BITPOS s 1 -9223372036854775808 9223372036854775807 BIT",
        // Clear bits past the end: found only when no end is given.
        "SETBIT ff 0 1",
        "SETRANGE ff 0 \u{ff}\u{ff}",
        "SET ones \u{7f}",
        "BITPOS ones 0",
        "BITPOS ones 1",
        "GETBIT ones 1",
        "SET e \"\"",
        "BITPOS e 0",
        "BITPOS e 1",
        "BITPOS e 0 0",
        "BITCOUNT e",
        "BITCOUNT e 0 -1 BIT",
        "GETBIT e 0",
        "SETBIT e 3 1",
        "GET e",
        // Growth keeps the expiry; a write on an integer value.
        "SET t abc EX 100",
        "SETBIT t 100 1",
        "TTL t",
        "SETBIT t 0 1",
        "TTL t",
        "GET t",
        "SET n 12",
        "SETBIT n 6 0",
        "GET n",
        "INCR n",
        "BITCOUNT n",
        "TYPE n",
        "SETBIT fresh 5 0",
        "EXISTS fresh",
        "GET fresh",
    ] {
        p.line(line);
    }
    p.same(&[b"SET", b"ff", b"\xff\xff"]);
    for line in [
        "BITPOS ff 0",
        "BITPOS ff 0 1",
        "BITPOS ff 0 0 -1",
        "BITPOS ff 0 5 -1 BIT",
        "BITPOS ff 0 -1",
        "BITPOS ff 0 2",
        "BITPOS ff 1 2",
        "BITPOS ff 0 0 0",
    ] {
        p.line(line);
    }
    // Numbers are read whole (a NUL byte makes them no numbers); units are
    // C strings; keys are read whole.
    let cases: [&[&[u8]]; 14] = [
        &[b"SETBIT", b"k", b"1\0", b"1"],
        &[b"SETBIT", b"k", b"1", b"1\0"],
        &[b"SETBIT", b"k", b"\0", b"1"],
        &[b"GETBIT", b"k", b"1\0"],
        &[b"BITCOUNT", b"s", b"0\0", b"1"],
        &[b"BITCOUNT", b"s", b"0", b"1", b"bit\0junk"],
        &[b"BITCOUNT", b"s", b"0", b"1", b"\0BIT"],
        &[b"BITCOUNT", b"s", b"0", b"1", b"BYTE\0"],
        &[b"BITPOS", b"s", b"1\0"],
        &[b"BITPOS", b"s", b"0", b"1\0"],
        &[b"BITPOS", b"s", b"0", b"1", b"2", b"BIT\0x"],
        &[b"BITPOS", b"s", b"0", b"1", b"2", b"\r\nBIT"],
        &[b"SETBIT", b"s\0", b"3", b"1"],
        &[b"BITCOUNT", b"s\0"],
    ];
    for args in cases {
        p.same(args);
    }
}

#[test]
fn the_last_bit_of_a_512_mib_value_matches_redis() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    for line in [
        "SETBIT big 4294967295 1",
        "STRLEN big",
        "GETBIT big 4294967295",
        "GETBIT big 4294967294",
        "BITCOUNT big -1 -1",
        "BITCOUNT big -8 -1 BIT",
        "BITCOUNT big 4294967295 4294967295 BIT",
        "BITPOS big 1 -1",
        "BITPOS big 1 -2 -1",
        "BITPOS big 1 4294967288 -1 BIT",
        "BITPOS big 0 -1",
        "BITPOS big 0 4294967295 4294967295 BIT",
        "SETBIT big 4294967296 1",
        "SETBIT big 4294967295 1",
        "SETBIT big 4294967295 0",
        "BITPOS big 0 -1",
        "BITCOUNT big -1 -1",
        "SETBIT big 0 1",
        "BITPOS big 1",
        "BITCOUNT big 0 0",
        "DEL big",
        "SETBIT at 4294967295 0",
        "STRLEN at",
        "DEL at",
    ] {
        p.line(line);
    }
}

#[test]
fn random_bitmaps_and_ranges_match_redis() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xb17);
    for round in 0..300 {
        let len = rng.gen_range(0..24);
        let value: Vec<u8> = (0..len)
            .map(|_| match round % 4 {
                0 => rng.gen(),
                1 => [0x00, 0xff][rng.gen_range(0..2)],
                2 => [0x00, 0x00, 0x00, 0x10, 0x80, 0x01][rng.gen_range(0..6)],
                _ => [0xff, 0xff, 0xff, 0xef, 0x7f, 0xfe][rng.gen_range(0..6)],
            })
            .collect();
        p.same(&[b"SET", b"b", &value]);
        for _ in 0..4 {
            let offset = rng.gen_range(0..(len as u64 + 2) * 8).to_string();
            let bit = rng.gen_range(0..2).to_string();
            p.same(&[b"SETBIT", b"b", offset.as_bytes(), bit.as_bytes()]);
            p.same(&[b"GETBIT", b"b", offset.as_bytes()]);
        }
        let span = (len as i64 + 3) * 8;
        for _ in 0..6 {
            let start = rng.gen_range(-span..span).to_string();
            let end = rng.gen_range(-span..span).to_string();
            let bit = rng.gen_range(0..2).to_string();
            let (s, e, b) = (start.as_bytes(), end.as_bytes(), bit.as_bytes());
            let forms: [&[&[u8]]; 9] = [
                &[b"BITCOUNT", b"b"],
                &[b"BITCOUNT", b"b", s, e],
                &[b"BITCOUNT", b"b", s, e, b"BIT"],
                &[b"BITCOUNT", b"b", s, e, b"BYTE"],
                &[b"BITPOS", b"b", b],
                &[b"BITPOS", b"b", b, s],
                &[b"BITPOS", b"b", b, s, e],
                &[b"BITPOS", b"b", b, s, e, b"BIT"],
                &[b"BITPOS", b"b", b, s, e, b"BYTE"],
            ];
            for args in forms {
                p.same(args);
            }
        }
    }
    assert_eq!(p.line("EXISTS b"), R::Int(1));
}
