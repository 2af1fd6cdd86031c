//! Integer parsing with Redis's exact rules (`string2ll`); floats are in
//! `longdouble.rs`.

use super::KvError;

/// Parses a signed 64-bit integer as Redis's `string2ll` does: an optional
/// `-`, no `+`, no leading zeros (so `-0` and `007` are rejected), no spaces.
///
/// # Errors
///
/// [`KvError::NotInteger`] for anything else, or a value outside `i64`.
pub(crate) fn parse_i64(s: &[u8]) -> Result<i64, KvError> {
    if s.is_empty() || s.len() > 20 {
        return Err(KvError::NotInteger);
    }
    if s == b"0" {
        return Ok(0);
    }
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    match digits.first() {
        Some(b'1'..=b'9') if digits.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(KvError::NotInteger),
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(KvError::NotInteger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        for bad in [
            &b""[..],
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1.0",
            b"-",
        ] {
            assert_eq!(parse_i64(bad), Err(KvError::NotInteger), "{bad:?}");
        }
    }
}
