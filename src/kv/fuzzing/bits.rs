//! The bitmap commands in the model check: `SETBIT`, `GETBIT`, `BITCOUNT`
//! and `BITPOS` on both stores, against the model's values read bit by bit.

use super::{Input, Model};
use crate::kv::{BitRange, BitUnit, KvStore, Reply};
use bytes::Bytes;

/// Bit `i` of `v` (0 past its end), the first byte's high bit first.
fn bit_at(v: &[u8], i: i64) -> bool {
    usize::try_from(i / 8)
        .ok()
        .and_then(|b| v.get(b))
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// The bits `range` covers in a value of `len` bytes, in order: Redis 7.0
/// counts a negative position from the end, raises it to 0 and lowers the
/// end to the last position.
fn covered(len: usize, range: BitRange) -> Vec<i64> {
    let total = len as i64 * if range.unit == BitUnit::Bit { 8 } else { 1 };
    let at = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (at(range.start), at(range.end.unwrap_or(-1)).min(total - 1));
    let units = start..=end;
    match range.unit {
        BitUnit::Bit => units.collect(),
        BitUnit::Byte => units.flat_map(|u| u * 8..u * 8 + 8).collect(),
    }
}

/// One bitmap command (`which % 8`: `SETBIT`, `GETBIT`, `BITCOUNT`,
/// `BITPOS`, or a `SET` of a value of mostly set or clear bits, whose
/// edges the others then probe) with the step's key and number.
pub(super) fn step(
    exec: &KvStore,
    typed: &KvStore,
    model: &mut Model,
    input: &mut Input<'_>,
    (k, n): (&str, i64),
    which: u8,
) -> (Reply, Reply) {
    let value = model.live(k).map(|e| e.0.clone()).unwrap_or_default();
    match which % 8 {
        0 => {
            let offset = u64::from(input.byte()) + u64::from(input.byte() % 2) * 256;
            let on = n & 1 == 1;
            let want = typed.setbit(k, offset, on);
            let i = i64::try_from(offset).unwrap_or(i64::MAX);
            assert_eq!(want, Ok(bit_at(&value, i)), "SETBIT {k} {offset} vs model");
            let entry = model.live(k).cloned();
            let mut bytes = value.to_vec();
            let byte = usize::try_from(offset / 8).unwrap_or(usize::MAX);
            if bytes.len() <= byte {
                bytes.resize(byte + 1, 0);
            }
            let mask = 0x80 >> (offset % 8);
            bytes[byte] = if on {
                bytes[byte] | mask
            } else {
                bytes[byte] & !mask
            };
            model
                .entries
                .insert(k.to_owned(), (Bytes::from(bytes), entry.and_then(|e| e.1)));
            (
                exec.execute(&["SETBIT", k, &offset.to_string(), &(n & 1).to_string()]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        1 => {
            let offset = u64::from(input.byte());
            let want = typed.getbit(k, offset);
            let i = i64::try_from(offset).unwrap_or(i64::MAX);
            assert_eq!(want, Ok(bit_at(&value, i)), "GETBIT {k} {offset} vs model");
            (
                exec.execute(&["GETBIT", k, &offset.to_string()]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        2 => {
            let end = i64::from(input.byte() as i8);
            let unit = input.pick(&[BitUnit::Byte, BitUnit::Bit]);
            let range = match unit {
                BitUnit::Byte => BitRange::bytes(n, end),
                BitUnit::Bit => BitRange::bits(n, end),
            };
            let want = typed.bitcount(k, range);
            let expected = if n < 0 && end < 0 && n > end {
                0
            } else {
                covered(value.len(), range)
                    .into_iter()
                    .filter(|&i| bit_at(&value, i))
                    .count() as u64
            };
            assert_eq!(want, expected, "BITCOUNT {k} {range:?} vs model");
            let unit = if unit == BitUnit::Bit { "BIT" } else { "BYTE" };
            (
                exec.execute(&["BITCOUNT", k, &n.to_string(), &end.to_string(), unit]),
                Reply::Integer(i64::try_from(want).unwrap_or(i64::MAX)),
            )
        }
        3 => {
            let bit = n & 1 == 1;
            let end = i64::from(input.byte() as i8);
            let form = input.byte() % 4;
            let range = match form {
                0 => BitRange::all(),
                1 => BitRange::from_byte(n),
                2 => BitRange::bytes(n, end),
                _ => BitRange::bits(n, end),
            };
            let want = typed.bitpos(k, bit, range);
            let bits = covered(value.len(), range);
            let expected = match bits.iter().find(|&&i| bit_at(&value, i) == bit) {
                Some(&i) => i,
                None if model.live(k).is_none() => -i64::from(bit),
                None if !bit && range.end.is_none() && !bits.is_empty() => value.len() as i64 * 8,
                None => -1,
            };
            assert_eq!(want, expected, "BITPOS {k} {bit} {range:?} vs model");
            let (b, n, end) = (u8::from(bit).to_string(), n.to_string(), end.to_string());
            let mut args = vec!["BITPOS", k, &b];
            match form {
                0 => {}
                1 => args.push(&n),
                2 => args.extend([&n[..], &end]),
                _ => args.extend([&n[..], &end, "BIT"]),
            }
            (exec.execute(&args), Reply::Integer(want))
        }
        _ => {
            let len = usize::from(input.byte() % 6);
            let fill = input.pick(&[0xFF, 0x00, 0x7F, 0xFE]);
            let mut bytes = vec![fill; len];
            if let Some(last) = bytes.last_mut().filter(|_| n < 0) {
                *last = !fill;
            }
            let bytes = Bytes::from(bytes);
            let want = typed.set(k, bytes.clone(), Default::default());
            model.entries.insert(k.to_owned(), (bytes.clone(), None));
            (
                exec.execute(&[&b"SET"[..], k.as_bytes(), &bytes]),
                want.map_or_else(Reply::from, |_| Reply::ok()),
            )
        }
    }
}
