//! Adversarial probes of the recovery scan (`src/persist/scan.rs`,
//! `crc.rs`): crafted logs whose records stop at a bad frame, followed by
//! zeros, garbage, valid frames at chosen offsets (around the 1 MiB search
//! window and the bad frame's claimed end, ending exactly at the end of the
//! file, running into zero fill) and lengths at `MAX_PAYLOAD` ± 1. Each
//! open is compared with a brute-force reference of the documented rules:
//! the first valid frame after the damage (checksummed directly) makes the
//! log refused with `PersistError::Corrupt { resumes_at }`; none, with
//! nothing past the searched window but zeros, makes a torn tail (or zero
//! fill) that opens with every earlier record.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardcache::persist::{FileLog, Fsync, MemStorage, PersistError, Storage};
use shardcache::Cache;

const HEADER_LEN: usize = 20;
const FRAME_OVERHEAD: usize = 8;
const MAX_PAYLOAD: usize = (1 << 30) + (1 << 20);
const SCAN_WINDOW: usize = 1 << 20;

type C = Cache<u32, u64>;

/// A log of `n` records (keys `0..n`), as bytes.
fn base(n: u32) -> Vec<u8> {
    let storage = MemStorage::new();
    {
        let log = FileLog::with_storage(storage.clone(), Fsync::Never)
            .write_delay(std::time::Duration::ZERO)
            .rewrite_policy(0, 0);
        let (cache, _) = C::builder()
            .max_capacity(1_000)
            .build_persistent(log)
            .expect("new log");
        for k in 0..n {
            cache.insert(k, u64::from(k) * 10);
        }
        cache.sync().expect("healthy");
    }
    let mut bytes = storage.read_all().expect("memory");
    // The valid part only: no zero fill.
    let mut at = HEADER_LEN;
    for _ in 0..n {
        at += frame_len(&bytes, at);
    }
    bytes.truncate(at);
    bytes
}

fn frame_len(b: &[u8], at: usize) -> usize {
    FRAME_OVERHEAD + u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// A frame around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// What an open decided.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Opened, with this many records and the valid log ending here.
    Opened { records: u64, valid: u64 },
    /// Refused as damage inside the log.
    Corrupt {
        offset: u64,
        resumes_at: Option<u64>,
    },
}

fn open(bytes: &[u8]) -> Outcome {
    let storage = MemStorage::new();
    storage.append(bytes).expect("memory");
    let log = FileLog::with_storage(storage, Fsync::Never).rewrite_policy(0, 0);
    match C::builder().max_capacity(1_000).build_persistent(log) {
        Ok((_, report)) => Outcome::Opened {
            records: report.records,
            valid: report
                .stopped_at
                .map_or(bytes.len() as u64 - report.zero_fill, |s| s.0),
        },
        Err(PersistError::Corrupt {
            offset, resumes_at, ..
        }) => Outcome::Corrupt { offset, resumes_at },
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The valid frame at `q`, checked directly.
fn valid_at(b: &[u8], q: usize) -> bool {
    let Some(head) = b.get(q..q + FRAME_OVERHEAD) else {
        return false;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_PAYLOAD || q + FRAME_OVERHEAD + len > b.len() {
        return false;
    }
    crc32c::crc32c(&b[q + FRAME_OVERHEAD..q + FRAME_OVERHEAD + len]) == crc
}

/// The documented rules, by brute force (every record of `b` past the
/// header decodes, or the bytes are damage).
fn reference(b: &[u8]) -> Outcome {
    let end = b.len();
    let (mut at, mut records) = (HEADER_LEN, 0);
    // Records: (hint, claimed end) at the stop.
    let stop = loop {
        if at >= end {
            return Outcome::Opened {
                records,
                valid: at as u64,
            };
        }
        let head = &b[at..end.min(at + FRAME_OVERHEAD)];
        if head.iter().all(|&x| x == 0) || head.len() < FRAME_OVERHEAD {
            break (None, None);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 || len > MAX_PAYLOAD {
            break (None, None);
        }
        let next = at + FRAME_OVERHEAD + len;
        if next > end {
            break (None, Some(next));
        }
        if !valid_at(b, at) {
            break (Some(next), Some(next));
        }
        records += 1;
        at = next;
    };
    let (hint, claimed) = stop;
    let opened = Outcome::Opened {
        records,
        valid: at as u64,
    };
    if b[at..].iter().all(|&x| x == 0) {
        return opened;
    }
    if let Some(next) = hint.filter(|&n| n > at && n < end) {
        if valid_at(b, next) {
            return Outcome::Corrupt {
                offset: at as u64,
                resumes_at: Some(next as u64),
            };
        }
    }
    let window_end = end.min((at + SCAN_WINDOW).max(claimed.unwrap_or(at)));
    if let Some(q) = (at + 1..window_end).find(|&q| valid_at(b, q)) {
        return Outcome::Corrupt {
            offset: at as u64,
            resumes_at: Some(q as u64),
        };
    }
    if b[window_end..].iter().any(|&x| x != 0) {
        return Outcome::Corrupt {
            offset: at as u64,
            resumes_at: None,
        };
    }
    opened
}

fn check(b: &[u8], what: &str) -> Outcome {
    let opened = open(b);
    assert_eq!(opened, reference(b), "{what} ({} bytes)", b.len());
    opened
}

/// A torn last write whose payload holds a complete, valid frame (a value
/// that is itself a log record, e.g. a log's bytes stored in the cache): the
/// search finds the embedded frame, and the log is refused as damage inside
/// (`Corrupt`, resuming inside the torn record's payload) although the file
/// is a torn tail. Consistent with the documented rule ("damage followed by
/// a valid record" is refused), which cannot tell the two apart; pinned
/// here, as the documentation does not call this case out.
#[test]
fn a_torn_record_whose_payload_holds_a_valid_frame_is_refused() {
    let mut b = base(3);
    let torn_at = b.len();
    let inner = frame(b"an embedded record's payload");
    let mut payload = vec![7u8; 64];
    payload.extend_from_slice(&inner);
    payload.extend_from_slice(&[9u8; 4096]);
    b.extend_from_slice(&frame(&payload));
    // Cut the outer record after the embedded frame.
    b.truncate(torn_at + FRAME_OVERHEAD + 64 + inner.len() + 100);
    let outcome = open(&b);
    assert_eq!(
        outcome,
        Outcome::Corrupt {
            offset: torn_at as u64,
            resumes_at: Some((torn_at + FRAME_OVERHEAD + 64) as u64),
        }
    );
    assert_eq!(outcome, reference(&b));
    // Cut before the embedded frame ends: a torn tail with every record.
    let mut b2 = b.clone();
    b2.truncate(torn_at + FRAME_OVERHEAD + 64 + inner.len() - 1);
    assert_eq!(
        open(&b2),
        Outcome::Opened {
            records: 3,
            valid: torn_at as u64
        }
    );
}

/// Hand-picked shapes: a header plus garbage, zero fill after a torn
/// record, a candidate ending exactly at the end of the file, lengths at
/// `MAX_PAYLOAD` ± 1, stray bits in zero fill.
#[test]
fn crafted_tails_agree_with_the_reference() {
    let b0 = base(2);
    let header_only = b0[..HEADER_LEN].to_vec();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(7);
    let garbage = |n: usize, rng: &mut StdRng| -> Vec<u8> { (0..n).map(|_| rng.gen()).collect() };

    let mut b = header_only.clone();
    b.extend(garbage(3000, &mut rng));
    cases.push(("header then garbage", b));

    let mut b = header_only.clone();
    b.extend(garbage(100, &mut rng));
    b.extend(frame(b"resumes"));
    cases.push(("header, garbage, a frame ending at EOF", b));

    let mut b = b0.clone();
    let mut torn = frame(&[5u8; 5000]);
    torn.truncate(2000);
    b.extend(torn);
    b.extend(vec![0u8; 70_000]);
    cases.push(("torn record then zero fill", b));

    let mut b = b0.clone();
    b.extend((MAX_PAYLOAD as u32 + 1).to_le_bytes());
    b.extend([1, 2, 3, 4]);
    b.extend(frame(b"after a length one past the largest"));
    cases.push(("MAX_PAYLOAD + 1 then a frame", b));

    for len in [MAX_PAYLOAD - 1, MAX_PAYLOAD] {
        let mut b = b0.clone();
        b.extend((len as u32).to_le_bytes());
        b.extend([1, 2, 3, 4]);
        b.extend(garbage(500, &mut rng));
        cases.push(("a torn frame claiming MAX_PAYLOAD or one less", b.clone()));
        b.extend(frame(b"inside its claimed extent"));
        cases.push(("the same with a frame inside", b));
    }

    let mut b = b0.clone();
    let mut bad = frame(&[3u8; 300]);
    bad[20] ^= 1;
    b.extend(bad);
    b.extend(frame(&[4u8; 10]));
    cases.push(("a checksum error then the next frame (the hint)", b));

    let mut b = b0.clone();
    b.extend([0u8; 64]);
    b.push(0x40);
    b.extend([0u8; 200]);
    cases.push(("stray bits in zero fill", b));

    let mut b = b0.clone();
    b.extend(vec![0u8; 1000]);
    b.extend(frame(b"a record after zeros"));
    cases.push(("zeros then a frame", b));

    // A frame whose payload runs from inside the held bytes into zero
    // fill past them: a torn frame claiming just over the window, a frame
    // near the window's end whose payload is zeros past it.
    let mut b = b0.clone();
    let at = b.len();
    b.extend(((SCAN_WINDOW - 4) as u32).to_le_bytes());
    b.extend([9, 9, 9, 9]);
    b.extend(garbage(1000, &mut rng));
    let q = at + SCAN_WINDOW - 100;
    b.resize(q, 0);
    let mut payload = vec![1u8; 40];
    payload.resize(50_000, 0);
    let f = frame(&payload);
    b.extend(&f[..140]);
    b.resize(q + f.len() + 30_000, 0);
    cases.push(("a frame from the window into zero fill", b));

    for (what, b) in &cases {
        let _ = check(b, what);
    }
}

/// Valid frames placed around the window's end (`at` + 1 MiB, or the bad
/// frame's claimed end when farther), one byte either side, with zeros or
/// garbage past them.
#[test]
fn frames_at_the_window_boundary_agree_with_the_reference() {
    let b0 = base(2);
    let at = b0.len();
    let mut rng = StdRng::seed_from_u64(11);
    for (claim, shift, tail_garbage) in [
        (None, -1i64, false),
        (None, 0, false),
        (None, 1, true),
        (Some(SCAN_WINDOW + 5000), -1, false),
        (Some(SCAN_WINDOW + 5000), 0, true),
        (Some(SCAN_WINDOW + 5000), -9, true),
        (Some(100), -8, false),
    ] {
        let mut b = b0.clone();
        match claim {
            // A torn frame claiming `claim` bytes of payload.
            Some(c) => {
                b.extend((c as u32).to_le_bytes());
                b.extend([1, 1, 1, 1]);
            }
            // A bad length.
            None => b.extend([0xff; 8]),
        }
        let window_end = at + SCAN_WINDOW.max(claim.map_or(0, |c| c + FRAME_OVERHEAD));
        let q = (window_end as i64 + shift) as usize;
        while b.len() < q {
            b.push(rng.gen_range(0x80..=0xff));
        }
        b.extend(frame(b"at the boundary"));
        if tail_garbage {
            b.extend([0xee; 64]);
        }
        let what = format!("claim {claim:?}, frame at window end {shift:+}");
        let _ = check(&b, &what);
    }
}

/// Random logs: records, then a bad frame of a random kind, then random
/// mixtures of garbage, zeros and valid frames (some holding frames in
/// their payloads, some ending at the end of the file).
#[test]
fn random_damage_agrees_with_the_reference() {
    let b0 = base(4);
    let mut rng = StdRng::seed_from_u64(0x5ca1_ab1e);
    let mut kinds = [0; 3];
    for case in 0..300 {
        let mut b = b0.clone();
        let at = b.len();
        match rng.gen_range(0..4) {
            0 => {
                let len = rng.gen_range(1..20_000usize);
                b.extend((len as u32).to_le_bytes());
                b.extend(rng.gen::<u32>().to_le_bytes());
            }
            1 => {
                let mut f = frame(&vec![rng.gen::<u8>(); rng.gen_range(1..3000)]);
                let i = rng.gen_range(4..f.len());
                f[i] ^= 1 << rng.gen_range(0..8);
                b.extend(f);
            }
            2 => b.extend(
                rng.gen_range(MAX_PAYLOAD as u32 + 1..=u32::MAX)
                    .to_le_bytes(),
            ),
            _ => b.extend((0..rng.gen_range(1..50)).map(|_| rng.gen::<u8>())),
        }
        for _ in 0..rng.gen_range(0..5) {
            match rng.gen_range(0..5) {
                0 => b.extend((0..rng.gen_range(1..4000)).map(|_| rng.gen::<u8>())),
                1 => b.extend(vec![0u8; rng.gen_range(1..8000)]),
                2 => b.extend(frame(&vec![rng.gen::<u8>(); rng.gen_range(1..600)])),
                3 => {
                    let inner = frame(&[rng.gen::<u8>(); 33]);
                    let mut outer = vec![1u8; rng.gen_range(0..300)];
                    outer.extend(inner);
                    b.extend(frame(&outer));
                }
                _ => {
                    // Small lengths everywhere (postcard-like bytes).
                    b.extend((0..rng.gen_range(1..3000)).map(|_| rng.gen_range(0..16u8)));
                }
            }
        }
        if rng.gen_bool(0.3) {
            let cut = rng.gen_range(at + 1..=b.len());
            b.truncate(cut);
        }
        kinds[match check(&b, &format!("case {case}")) {
            Outcome::Opened { .. } => 0,
            Outcome::Corrupt {
                resumes_at: Some(_),
                ..
            } => 1,
            Outcome::Corrupt { .. } => 2,
        }] += 1;
    }
    // Each decision was reached (the case mix is not degenerate).
    assert!(kinds[0] > 20 && kinds[1] > 20, "{kinds:?}");
    eprintln!("opened, resumed, unchecked: {kinds:?}");
}
