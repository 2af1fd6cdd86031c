//! `INCRBYFLOAT` as Redis computes it on x86-64: in C's `long double` (x87
//! 80-bit extended precision, a 64-bit significand, round to nearest even),
//! parsed like `strtold` (decimal, hexadecimal such as `0x10` or `0x1p3`,
//! `inf`), and printed as `%.17Lf` with trailing zeros removed. The
//! arithmetic is `rustc_apfloat`'s port of LLVM's `APFloat`; the printing is
//! exact (the binary value's full decimal expansion, rounded half to even at
//! the 17th decimal, as glibc's `printf` does).

use super::KvError;
use rustc_apfloat::ieee::X87DoubleExtended;
use rustc_apfloat::{Float, Round, Status};

/// An 80-bit extended-precision float.
pub(crate) type LongDouble = X87DoubleExtended;

/// Redis's `MAX_LONG_DOUBLE_CHARS`: longer input is not a float.
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

/// Parses a float as Redis's `string2ld` (`strtold` over the whole input,
/// no leading space, no NaN, no overflow, no underflow to zero).
///
/// # Errors
///
/// [`KvError::NotFloat`].
pub(crate) fn parse(s: &[u8]) -> Result<LongDouble, KvError> {
    if s.is_empty() || s.len() >= MAX_LONG_DOUBLE_CHARS {
        return Err(KvError::NotFloat);
    }
    let text = std::str::from_utf8(s).map_err(|_| KvError::NotFloat)?;
    let (neg, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        let inf = LongDouble::INFINITY;
        return Ok(if neg { -inf } else { inf });
    }
    // On bytes: the text may hold any UTF-8, and its second byte may fall
    // inside a character.
    let hex = body.len() > 2 && body.as_bytes()[..2].eq_ignore_ascii_case(b"0x");
    if !strtold_syntax(body.as_bytes(), hex) {
        return Err(KvError::NotFloat);
    }
    // apfloat needs a binary exponent on a hexadecimal number; strtold does not.
    let mut literal = String::with_capacity(body.len() + 3);
    literal.push_str(body);
    if hex && !body.contains(['p', 'P']) {
        literal.push_str("p0");
    }
    let parsed = LongDouble::from_str_r(&literal, Round::NearestTiesToEven)
        .map_err(|_| KvError::NotFloat)?;
    let (status, value) = (parsed.status, parsed.value);
    if status.intersects(Status::OVERFLOW)
        || (value.is_zero() && status.intersects(Status::UNDERFLOW))
        || value.is_nan()
    {
        return Err(KvError::NotFloat);
    }
    Ok(if neg { -value } else { value })
}

/// Whether `body` (sign removed) is a whole number as `strtold` reads one in
/// the C locale: digits with an optional point (at least one digit), then an
/// optional exponent with at least one digit: `e` for decimal, `p` for
/// hexadecimal (after `0x`).
fn strtold_syntax(body: &[u8], hex: bool) -> bool {
    let (digits, is_digit, exp): (&[u8], fn(&u8) -> bool, u8) = if hex {
        (&body[2..], u8::is_ascii_hexdigit, b'p')
    } else {
        (body, u8::is_ascii_digit, b'e')
    };
    let mut i = 0;
    let mut seen = 0;
    while i < digits.len() && is_digit(&digits[i]) {
        i += 1;
        seen += 1;
    }
    if digits.get(i) == Some(&b'.') {
        i += 1;
        while i < digits.len() && is_digit(&digits[i]) {
            i += 1;
            seen += 1;
        }
    }
    if seen == 0 {
        return false;
    }
    if i == digits.len() {
        return true;
    }
    if !digits[i].eq_ignore_ascii_case(&exp) {
        return false;
    }
    i += 1;
    if matches!(digits.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    i < digits.len() && digits[i..].iter().all(u8::is_ascii_digit)
}

/// `a + b` in `long double`, rounded to nearest even.
pub(crate) fn add(a: LongDouble, b: LongDouble) -> LongDouble {
    a.add_r(b, Round::NearestTiesToEven).value
}

/// Formats as Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, then
/// trailing zeros (and a trailing point) removed, and `-0` as `0`. The value
/// must be finite.
pub(crate) fn format_human(v: LongDouble) -> String {
    let bits = v.to_bits();
    let negative = bits >> 79 & 1 == 1;
    let m = bits as u64;
    let biased = (bits >> 64) as i32 & 0x7FFF;
    // v = m * 2^e, with the integer bit explicit in m.
    let e = if biased == 0 { 1 } else { biased } - 16383 - 63;
    // v * 10^17 = (m * 5^17) * 2^(e + 17): an integer times a power of two.
    let scaled = u128::from(m) * 5u128.pow(17);
    let shift = e + 17;
    let digits = if shift >= 0 {
        let mut n = Big::from_u128(scaled);
        n.shift_left(shift.unsigned_abs());
        n.into_decimal()
    } else {
        let s = shift.unsigned_abs();
        let n = if s >= 128 {
            0 // scaled < 2^104: less than half a unit in the 17th decimal
        } else {
            let q = scaled >> s;
            let r = scaled & ((1u128 << s) - 1);
            let half = 1u128 << (s - 1);
            if r > half || (r == half && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        };
        n.to_string()
    };
    let digits = format!("{digits:0>18}");
    let (int, frac) = digits.split_at(digits.len() - 17);
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(digits.len() + 2);
    if negative {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if out == "-0" {
        out = "0".to_owned();
    }
    out
}

/// A non-negative integer as base-2^32 limbs, least significant first: just
/// enough arithmetic to print a `long double` exactly.
struct Big(Vec<u32>);

impl Big {
    fn from_u128(n: u128) -> Self {
        Self((0..4).map(|i| (n >> (32 * i)) as u32).collect())
    }

    fn shift_left(&mut self, bits: u32) {
        let (words, bits) = ((bits / 32) as usize, bits % 32);
        if bits > 0 {
            let mut carry = 0u32;
            for limb in &mut self.0 {
                let next = *limb >> (32 - bits);
                *limb = (*limb << bits) | carry;
                carry = next;
            }
            self.0.push(carry);
        }
        self.0.splice(0..0, std::iter::repeat_n(0, words));
    }

    /// Decimal digits, most significant first ("0" for zero).
    fn into_decimal(mut self) -> String {
        const CHUNK: u64 = 1_000_000_000;
        let mut chunks = Vec::new();
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        while !self.0.is_empty() {
            let mut rem = 0u64;
            for limb in self.0.iter_mut().rev() {
                let cur = (rem << 32) | u64::from(*limb);
                *limb = (cur / CHUNK) as u32;
                rem = cur % CHUNK;
            }
            chunks.push(rem as u32);
            while self.0.last() == Some(&0) {
                self.0.pop();
            }
        }
        let mut out = chunks
            .pop()
            .map_or_else(|| "0".to_owned(), |c| c.to_string());
        for c in chunks.iter().rev() {
            out.push_str(&format!("{c:09}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> Result<String, KvError> {
        let sum = add(parse(a.as_bytes())?, parse(b.as_bytes())?);
        if !sum.is_finite() {
            return Err(KvError::NanOrInfinity);
        }
        Ok(format_human(sum))
    }

    #[test]
    fn non_ascii_input_is_not_a_float() {
        for s in [
            "C\u{17c}",
            "0\u{17c}",
            "-\u{17c}1",
            "\u{17c}",
            "0x\u{17c}",
            "1e\u{17c}",
        ] {
            assert_eq!(parse(s.as_bytes()), Err(KvError::NotFloat), "{s:?}");
        }
        assert_eq!(parse(&[0x30, 0xC5]), Err(KvError::NotFloat));
    }

    #[test]
    fn long_double_cases_redis_answers() {
        assert_eq!(incr("0.1", "0.2").as_deref(), Ok("0.3"));
        assert_eq!(
            incr("9007199254740993", "1").as_deref(),
            Ok("9007199254740994")
        );
        assert_eq!(incr("0x10", "0").as_deref(), Ok("16"));
        assert_eq!(incr("0", "0x1p3").as_deref(), Ok("8"));
        assert_eq!(incr("10.5", "0.1").as_deref(), Ok("10.6"));
        assert_eq!(incr("+0x10", "1").as_deref(), Ok("17"));
        assert_eq!(incr("1", "1e-4940").as_deref(), Ok("1"));
        // Ties at the 17th decimal go to even, as glibc prints them.
        assert_eq!(
            incr("0", "0.000003814697265625").as_deref(),
            Ok("0.00000381469726562")
        );
        assert_eq!(
            incr("0", "0.000011444091796875").as_deref(),
            Ok("0.00001144409179688")
        );
        assert_eq!(incr("5.0e3", "2.0e2").as_deref(), Ok("5200"));
        assert_eq!(incr("-0", "0").as_deref(), Ok("0"));
        assert_eq!(incr("1e-20", "0").as_deref(), Ok("0"));
        let big = incr("1e308", "1e308").expect("finite in long double");
        assert_eq!(big.len(), 309);
        assert!(big.starts_with("1999999999999999999933717593116912913211"));
        assert_eq!(incr("inf", "1"), Err(KvError::NanOrInfinity));
        assert_eq!(incr("1.18e4932", "1.18e4932"), Err(KvError::NanOrInfinity));
        for bad in [
            "",
            " 1",
            "1 ",
            "nan",
            "1e",
            "0x",
            "abc",
            "1e5000",
            "1e-5000",
            "0x1p-16446",
            "--1",
            "+-1",
            "-+1",
            "1e+",
            "0x1p",
            "1.5e-",
            ".",
            "1..2",
            "1e5.5",
            "0x1p+",
            "1_0",
            "e5",
            "0xg",
        ] {
            assert_eq!(parse(bad.as_bytes()), Err(KvError::NotFloat), "{bad:?}");
        }
        for (good, sum) in [
            ("0x1.p1", "3"),
            ("1E2", "101"),
            ("0X1P2", "5"),
            ("00012", "13"),
            ("0x1.8", "2.5"),
            ("+.5", "1.5"),
            ("-.5e1", "-4"),
        ] {
            assert_eq!(incr("1", good).as_deref(), Ok(sum), "{good:?}");
        }
        assert!(parse("9".repeat(MAX_LONG_DOUBLE_CHARS).as_bytes()).is_err());
        // The largest long double prints in full.
        let max = format_human(LongDouble::largest());
        assert_eq!(max.len(), 4933);
    }
}
