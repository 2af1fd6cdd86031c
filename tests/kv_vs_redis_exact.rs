//! Differential tests compared exactly, with no tolerance: `LCS` in all its
//! forms (hostile arguments, the table's size limit, random values and
//! options), and `EXPIRETIME`/`PEXPIRETIME` after deadlines given in Unix
//! time, which Redis answers exactly as set.
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
fn lcs_matches_redis_on_hostile_arguments() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    for line in [
        "LCS",
        "LCS a",
        "LCS a b",
        "MSET a ohmytext b mynewtext e \"\"",
        "LCS a b",
        "LCS a b LEN",
        "LCS a b IDX",
        "LCS a b IDX WITHMATCHLEN",
        "LCS a b IDX MINMATCHLEN 4",
        "LCS a b IDX MINMATCHLEN 4 WITHMATCHLEN",
        "LCS a b WITHMATCHLEN IDX MINMATCHLEN 2",
        "LCS a b idx minmatchlen -5 withmatchlen",
        "LCS a b IDX MINMATCHLEN 0",
        "LCS a b IDX MINMATCHLEN 9223372036854775807",
        "LCS a b IDX MINMATCHLEN 9223372036854775808",
        "LCS a b IDX MINMATCHLEN -9223372036854775808",
        "LCS a b IDX MINMATCHLEN x",
        "LCS a b IDX MINMATCHLEN 1.5",
        "LCS a b IDX MINMATCHLEN \"\"",
        "LCS a b IDX MINMATCHLEN",
        "LCS a b MINMATCHLEN",
        "LCS a b MINMATCHLEN 3",
        "LCS a b WITHMATCHLEN",
        "LCS a b IDX LEN",
        "LCS a b LEN IDX",
        "LCS a b LEN LEN",
        "LCS a b IDX IDX",
        "LCS a b LEN MINMATCHLEN x",
        "LCS a b IDX LEN MINMATCHLEN x",
        "LCS a b IDX NOPE",
        "LCS a b NOPE LEN IDX",
        "LCS a a",
        "LCS a a IDX WITHMATCHLEN",
        "LCS a missing",
        "LCS missing a IDX",
        "LCS missing other LEN",
        "LCS e a IDX",
        "LCS a e",
        "LCS a b IDX MINMATCHLEN 4 MINMATCHLEN 1",
    ] {
        p.line(line);
    }
    // Option names are compared as C strings; keys and numbers whole.
    let cases: [&[&[u8]]; 6] = [
        &[b"LCS", b"a", b"b", b"idx\0junk"],
        &[b"LCS", b"a", b"b", b"LEN\0"],
        &[b"LCS", b"a", b"b", b"IDX", b"MINMATCHLEN", b"4\0"],
        &[b"LCS", b"a", b"b", b"\0IDX"],
        &[b"LCS", b"a\0", b"b"],
        &[b"LCS", b"a", b"b", b"IDX", b"\r\nLEN"],
    ];
    for args in cases {
        p.same(args);
    }
    // Binary values, NUL bytes included.
    p.same(&[b"SET", b"x", b"\0\x01\0\xff\0ab\0"]);
    p.same(&[b"SET", b"y", b"\xff\0\0ab\x01\0"]);
    for opts in [&[][..], &[&b"LEN"[..]], &[b"IDX", b"WITHMATCHLEN"]] {
        let mut args: Vec<&[u8]> = vec![b"LCS", b"x", b"y"];
        args.extend_from_slice(opts);
        p.same(&args);
    }
}

#[test]
fn lcs_refuses_the_same_tables_as_redis() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    // (len1 + 1) * (len2 + 1) * 4 bytes against 512 MiB: 11584-byte values
    // are just under it, one byte more is over.
    let a: Vec<u8> = (0..11585u32)
        .map(|i| b"abcd"[(i % 7 % 4) as usize])
        .collect();
    let b: Vec<u8> = (0..11584u32)
        .map(|i| b"abcd"[(i % 5 % 4) as usize])
        .collect();
    p.same(&[b"SET", b"a", &a[..11584]]);
    p.same(&[b"SET", b"b", &b]);
    assert!(matches!(p.line("LCS a b LEN"), R::Int(n) if n > 5000));
    p.same(&[b"SET", b"a", &a]);
    assert!(matches!(p.line("LCS a b LEN"), R::Err(_)));
    p.line("LCS a b");
    p.line("LCS a b IDX");
    p.line("LCS b a IDX LEN");
    // Lopsided: one byte against a long value, at the limit exactly
    // (2 * 2^26 cells of 4 bytes), then one byte over it.
    let long = vec![b'z'; (64 << 20) - 1];
    p.same(&[b"SET", b"long", &long]);
    p.line("SET one z");
    assert_eq!(p.line("LCS one long LEN"), R::Int(1));
    p.line("LCS long one IDX");
    p.line("APPEND long z");
    assert!(matches!(p.line("LCS one long LEN"), R::Err(_)));
    p.line("SET empty \"\"");
    p.line("LCS empty long IDX");
    p.line("LCS missing long LEN");
}

#[test]
fn lcs_matches_redis_on_random_values() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1c5);
    for round in 0..400 {
        let alphabet: &[u8] = [&b"ab"[..], b"abc", b"abcdefgh", b"a\0\xff"][round % 4];
        let value = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
            let len = rng.gen_range(0..40);
            (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect()
        };
        let (a, b) = (value(&mut rng), value(&mut rng));
        p.same(&[b"MSET", b"a", &a, b"b", &b]);
        let min = rng.gen_range(-2..6).to_string();
        let forms: [&[&[u8]]; 5] = [
            &[b"LCS", b"a", b"b"],
            &[b"LCS", b"b", b"a", b"LEN"],
            &[b"LCS", b"a", b"b", b"IDX"],
            &[b"LCS", b"a", b"b", b"IDX", b"MINMATCHLEN", min.as_bytes()],
            &[
                b"LCS",
                b"b",
                b"a",
                b"WITHMATCHLEN",
                b"IDX",
                b"MINMATCHLEN",
                min.as_bytes(),
            ],
        ];
        for args in forms {
            p.same(args);
        }
    }
}

#[test]
fn expiretime_reads_back_absolute_deadlines_exactly() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xe7);
    for _ in 0..200 {
        let at_ms = now_ms + rng.gen_range(10_000..100_000_000);
        let at_s = at_ms / 1000 + 1;
        let (ms, s) = (at_ms.to_string(), at_s.to_string());
        for set in [
            vec!["SET", "k", "v", "PXAT", &ms],
            vec!["PEXPIREAT", "k", &ms],
            vec!["SET", "k", "v", "EXAT", &s],
            vec!["EXPIREAT", "k", &s],
            vec!["GETEX", "k", "PXAT", &ms],
            vec!["GETEX", "k", "EXAT", &s],
            vec!["PEXPIREAT", "k", &ms, "GT"],
        ] {
            p.line(&set.join(" "));
            p.line("PEXPIRETIME k");
            p.line("EXPIRETIME k");
        }
    }
}

#[test]
fn lcs_matches_redis_on_random_argument_lists() {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    p.same(&[b"SET", b"a", b"ohmy\0text\xff"]);
    p.same(&[b"SET", b"b", b"my\0new\xfftext"]);
    p.line("SET n 12345");
    p.same(&[b"SET", b"e", b""]);
    let keys: [&[u8]; 6] = [b"a", b"b", b"n", b"e", b"missing", b"a\0"];
    let words: [&[u8]; 24] = [
        b"IDX",
        b"idx",
        b"LEN",
        b"Len",
        b"WITHMATCHLEN",
        b"MINMATCHLEN",
        b"minmatchlen",
        b"IDX\0",
        b"LEN\0x",
        b"\0",
        b"",
        b"0",
        b"1",
        b"-1",
        b"3",
        b"+2",
        b" 2",
        b"2 ",
        b"02",
        b"-0",
        b"99999999999999999999",
        b"-9223372036854775808",
        b"2\0",
        b"x",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1c5a);
    for _ in 0..3000 {
        let mut args: Vec<&[u8]> = vec![b"LCS"];
        for _ in 0..2 {
            args.push(keys[rng.gen_range(0..keys.len())]);
        }
        for _ in 0..rng.gen_range(0..6) {
            args.push(words[rng.gen_range(0..words.len())]);
        }
        p.same(&args);
    }
}
