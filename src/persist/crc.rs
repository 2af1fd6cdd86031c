//! CRC-32C arithmetic: the checksum of any range of a buffer from the
//! checksums of two of its prefixes, without reading the range.
//!
//! CRC-32C (reflected, initial value and final xor all ones) satisfies
//! `crc(a ++ b) = shift(crc(a), |b|) ^ crc(b)`, where `shift(c, n)`
//! multiplies `c` by x^(8n) modulo the CRC polynomial (what
//! `crc32c::crc32c_combine(c, 0, n)` computes, in time linear in log n but
//! with 32x32 matrix squarings). So, for the prefixes
//! `P(k) = crc(data[..k])`: `crc(data[i..j]) = P(j) ^ shift(P(i), j - i)`.
//!
//! [`Shift`] computes `shift` with three table lookups and three
//! multiplications in GF(2)[x]; [`Prefixes`] keeps `P` at every
//! [`STRIDE`]th byte of a buffer, so `P(k)` costs at most `STRIDE` bytes of
//! hardware CRC.

/// The CRC-32C polynomial, reflected.
const POLY: u32 = 0x82F6_3B78;
/// The polynomial 1, reflected (bit 31 is x^0, bit 0 is x^31).
const ONE: u32 = 1 << 31;
/// Bits of a shift's length looked up per table.
const DIGIT: u32 = 11;
/// Tables of powers, enough for lengths below 2^33.
const DIGITS: usize = 3;

/// `crc(a ++ b)` from `crc(a)`, `crc(b)` and `|b|` (the identity above).
#[derive(Clone)]
pub(crate) struct Shift {
    /// `bytes[b]` is `b * x^32` reduced: one byte of zeros through the CRC.
    bytes: [u32; 256],
    /// `powers[d][v]` is x^(8 * v * 2^(DIGIT * d)) reduced.
    powers: [Vec<u32>; DIGITS],
}

impl Shift {
    pub(crate) fn new() -> Self {
        let mut bytes = [0u32; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            let mut c = b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        let mut shift = Self {
            bytes,
            powers: [Vec::new(), Vec::new(), Vec::new()],
        };
        // x^8, then each table's step: x^(8 * 2^(DIGIT * d)).
        let mut step = ONE >> 8;
        for d in 0..DIGITS {
            let mut table = Vec::with_capacity(1 << DIGIT);
            let mut power = ONE;
            for _ in 0..1 << DIGIT {
                table.push(power);
                power = shift.multiply(power, step);
            }
            step = power;
            shift.powers[d] = table;
        }
        shift
    }

    /// `a * b` modulo the polynomial, both reflected.
    pub(crate) fn multiply(&self, a: u32, b: u32) -> u32 {
        // Bit u of the product is the coefficient of x^(62 - u); one step
        // left makes bit v that of x^(63 - v): the low half is a multiple
        // of x^32 (reduced through the byte table), the high half is
        // already reduced.
        let product = carryless(a, b) << 1;
        let mut low = product as u32;
        for _ in 0..4 {
            low = (low >> 8) ^ self.bytes[(low & 0xFF) as usize];
        }
        low ^ (product >> 32) as u32
    }

    /// x^(8n) reduced: `apply(crc, n)` is `multiply(crc, power(n))`.
    pub(crate) fn power(&self, n: u64) -> u32 {
        debug_assert!(n < 1 << (DIGIT as usize * DIGITS), "shift too long");
        let mut power = ONE;
        for (d, table) in self.powers.iter().enumerate() {
            let v = (n >> (DIGIT as usize * d)) as usize & ((1 << DIGIT) - 1);
            if v != 0 {
                power = if power == ONE {
                    table[v]
                } else {
                    self.multiply(power, table[v])
                };
            }
        }
        power
    }

    /// `crc` followed by `n` bytes of zeros, as a shift: `crc(a ++ b)` is
    /// `self.apply(crc(a), |b|) ^ crc(b)`.
    pub(crate) fn apply(&self, crc: u32, n: u64) -> u32 {
        self.multiply(crc, self.power(n))
    }

    /// `crc` (of some bytes) extended over `bytes`, a byte at a time: for a
    /// few bytes, quicker than a call to the hardware's.
    fn append_bytes(&self, crc: u32, bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!crc, |c, &b| {
            (c >> 8) ^ self.bytes[((c ^ u32::from(b)) & 0xFF) as usize]
        })
    }

    /// The checksum of `n` bytes of zeros.
    pub(crate) fn zeros(&self, n: u64) -> u32 {
        self.apply(!0, n) ^ !0
    }
}

/// The carry-less product of `a` and `b`, by integer multiplications of
/// their bits four apart: at most eight such bits meet at any position, so
/// the carries out of a position stay below the next one kept.
fn carryless(a: u32, b: u32) -> u64 {
    const M: [u32; 4] = [0x1111_1111, 0x2222_2222, 0x4444_4444, 0x8888_8888];
    let x = M.map(|m| u64::from(a & m));
    let y = M.map(|m| u64::from(b & m));
    let mut out = 0u64;
    for r in 0..4 {
        let mut z = 0u64;
        for i in 0..4 {
            z ^= x[i].wrapping_mul(y[(4 + r - i) % 4]);
        }
        out |= z & (0x1111_1111_1111_1111u64 << r);
    }
    out
}

/// Bytes between the prefix checksums [`Prefixes`] keeps.
pub(crate) const STRIDE: usize = 128;

/// The checksums of a buffer's prefixes at every [`STRIDE`]th byte (4 bytes
/// per `STRIDE` of the buffer), and a running one for offsets that only
/// grow.
pub(crate) struct Prefixes {
    marks: Vec<u32>,
    /// `P(at)`, for [`running`](Self::running).
    at: usize,
    crc: u32,
}

impl Prefixes {
    pub(crate) fn new(data: &[u8]) -> Self {
        let mut marks = Vec::with_capacity(data.len() / STRIDE + 1);
        let mut crc = 0;
        marks.push(crc);
        for block in data.chunks(STRIDE) {
            crc = crc32c::crc32c_append(crc, block);
            marks.push(crc);
        }
        Self {
            marks,
            at: 0,
            crc: 0,
        }
    }

    /// `P(k)` of `data` (the buffer given to [`new`](Self::new)).
    pub(crate) fn at(&self, data: &[u8], k: usize) -> u32 {
        let mark = k / STRIDE;
        crc32c::crc32c_append(self.marks[mark], &data[mark * STRIDE..k])
    }

    /// Reads the memory [`at`](Self::at) will need for `P(k)`, so that
    /// the reads for several `k` overlap.
    pub(crate) fn touch(&self, data: &[u8], k: usize) {
        let mark = k / STRIDE;
        let first = (mark * STRIDE).min(k - 1);
        std::hint::black_box((self.marks[mark], data[first], data[k - 1]));
    }

    /// `P(k)`, for a `k` at least the one asked for before (from the last
    /// one, or the nearest mark if that is closer).
    pub(crate) fn running(&mut self, data: &[u8], k: usize, shift: &Shift) -> u32 {
        debug_assert!(k >= self.at, "running prefixes only move forward");
        let step = k - self.at;
        self.crc = if step >= STRIDE {
            self.at(data, k)
        } else if step <= 16 {
            shift.append_bytes(self.crc, &data[self.at..k])
        } else {
            crc32c::crc32c_append(self.crc, &data[self.at..k])
        };
        self.at = k;
        self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The product as zlib computes it, a bit at a time.
    fn multiply_slowly(a: u32, mut b: u32) -> u32 {
        let mut product = 0;
        let mut m = ONE;
        while m != 0 {
            if a & m != 0 {
                product ^= b;
            }
            m >>= 1;
            b = if b & 1 == 1 { (b >> 1) ^ POLY } else { b >> 1 };
        }
        product
    }

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn shifts_of_every_table_digit_match_the_crate() {
        let shift = Shift::new();
        for n in [
            1u64,
            2,
            255,
            2047,
            2048,
            2049,
            1 << 22,
            (1 << 30) + (1 << 20) + 8,
        ] {
            for crc in [1u32, 0xFFFF_FFFF, 0x1234_5678, ONE] {
                let want = crc32c::crc32c_combine(crc, 0, n as usize);
                assert_eq!(shift.apply(crc, n), want, "crc {crc:#x}, n {n}");
            }
        }
        assert_eq!(shift.apply(0xABCD, 0), 0xABCD);
        assert_eq!(shift.zeros(4096), crc32c::crc32c(&[0; 4096]));
        assert_eq!(
            shift.append_bytes(7, b"abc"),
            crc32c::crc32c_append(7, b"abc")
        );
        assert_eq!(shift.power(0), ONE);
        assert_eq!(
            shift.multiply(0x1234_5678, shift.power(5000)),
            shift.apply(0x1234_5678, 5000)
        );
    }

    proptest! {
        #[test]
        fn products_match_the_bitwise_ones(a: u32, b: u32) {
            prop_assert_eq!(Shift::new().multiply(a, b), multiply_slowly(a, b));
        }

        #[test]
        fn shifts_match_the_crate(crc: u32, n in 0u64..(1 << 31)) {
            let shift = Shift::new();
            prop_assert_eq!(shift.apply(crc, n), crc32c::crc32c_combine(crc, 0, n as usize));
        }

        #[test]
        fn ranges_match_their_direct_checksums(
            seed: u64,
            len in 1usize..5000,
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let data = bytes(len, seed);
            let (i, j) = ((a * len as f64) as usize, (b * len as f64) as usize);
            let (i, j) = (i.min(j), i.max(j));
            let shift = Shift::new();
            let mut prefixes = Prefixes::new(&data);
            let direct = crc32c::crc32c(&data[i..j]);
            let at_i = prefixes.running(&data, i, &shift);
            let from_prefixes = prefixes.at(&data, j) ^ shift.apply(at_i, (j - i) as u64);
            prop_assert_eq!(from_prefixes, direct);
            prop_assert_eq!(prefixes.at(&data, len), crc32c::crc32c(&data));
            // Followed by zeros it does not hold.
            let zeros = 1 + (seed % 3000) as usize;
            let mut padded = data[i..].to_vec();
            padded.resize(padded.len() + zeros, 0);
            let tail = prefixes.at(&data, len);
            let at_i = prefixes.running(&data, i, &shift);
            let held = tail ^ shift.apply(at_i, (len - i) as u64);
            let want = crc32c::crc32c(&padded);
            prop_assert_eq!(shift.apply(held, zeros as u64) ^ shift.zeros(zeros as u64), want);
        }
    }
}
