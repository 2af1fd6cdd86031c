//! Number parsing and formatting with Redis's exact rules (`string2ll`,
//! `string2ld`, and `INCRBYFLOAT`'s human-readable float format).

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

/// Parses a float as Redis's `string2ld` does (`strtold`, whole input, no
/// leading space, no NaN). Values beyond `f64` overflow to infinity here,
/// where Redis's `long double` still holds them.
///
/// # Errors
///
/// [`KvError::NotFloat`].
pub(crate) fn parse_f64(s: &[u8]) -> Result<f64, KvError> {
    let text = std::str::from_utf8(s).map_err(|_| KvError::NotFloat)?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(KvError::NotFloat);
    }
    match text.parse::<f64>() {
        Ok(v) if !v.is_nan() => Ok(v),
        _ => Err(KvError::NotFloat),
    }
}

/// Formats a float as `INCRBYFLOAT` replies: plain decimal, no exponent, at
/// most 17 digits after the point, no trailing zeros, `-0` as `0`.
pub(crate) fn format_f64(v: f64) -> String {
    let mut s = v.to_string();
    if let Some(dot) = s.find('.') {
        if s.len() - dot - 1 > 17 {
            s = format!("{v:.17}");
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
        }
    }
    if s == "-0" {
        s = "0".to_owned();
    }
    s
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

    #[test]
    fn floats_format_like_redis() {
        assert_eq!(format_f64(10.5 + 0.1), "10.6");
        assert_eq!(format_f64(3.0e3), "3000");
        assert_eq!(format_f64(-0.0), "0");
        assert_eq!(format_f64(1e-20), "0");
        assert!(parse_f64(b"nan").is_err());
        assert!(parse_f64(b" 1").is_err());
        assert_eq!(parse_f64(b".5"), Ok(0.5));
    }
}
