//! Seeded synthetic key streams: Zipf, scans, loops and shifting working
//! sets, the same keys for the same seed on every run.

use super::{TraceSpec, SEED};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Zipf sampler over ranks `1..=n` (rejection-inversion, constant memory).
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    s_const: f64,
}

impl Zipf {
    /// Zipf distribution with exponent `s >= 0` over `n >= 1` ranks.
    pub(crate) fn new(s: f64, n: u64) -> Self {
        let n = n.max(1) as f64;
        let mut z = Self {
            n,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            s_const: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(n + 0.5);
        z.s_const = 2.0 - z.big_h_inv(z.big_h(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn big_h(&self, x: f64) -> f64 {
        let lx = x.ln();
        helper_expm1(lx * (1.0 - self.s)) * lx
    }

    fn big_h_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper_ln1p(t) * x).exp()
    }

    /// Draws a rank in `1..=n`.
    pub(crate) fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        loop {
            let u = self.h_n + rng.gen::<f64>() * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s_const || u >= self.big_h(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

/// `expm1(x) / x`, continuous at 0.
fn helper_expm1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// `ln_1p(x) / x`, continuous at 0.
fn helper_ln1p(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// Key offset of one-off scan keys, far from any hot key.
const SCAN_BASE: u64 = 1 << 48;

/// Seeded synthetic key generator.
pub(crate) struct Synthetic {
    kind: Kind,
    rng: StdRng,
    produced: u64,
    len: u64,
    progress: Arc<AtomicU64>,
}

enum Kind {
    Zipf(Zipf),
    Scan {
        hot: Zipf,
        period: u64,
        scan_len: u64,
        next_scan_key: u64,
    },
    Loop {
        span: u64,
    },
    Shift {
        hot: Zipf,
        offset: u64,
    },
}

impl Synthetic {
    /// Builds the generator for `spec` (which must be synthetic) sized for a
    /// cache of `capacity` entries, producing `len` keys.
    pub(crate) fn new(spec: &TraceSpec, capacity: u64, len: u64, progress: Arc<AtomicU64>) -> Self {
        let cap = capacity.max(1);
        let kind = match spec {
            TraceSpec::Zipf { s, n } => Kind::Zipf(Zipf::new(*s, *n)),
            TraceSpec::Scan => Kind::Scan {
                hot: Zipf::new(1.0, cap * 10),
                // Every cycle: 4x capacity hot requests, then a scan of 2x capacity.
                period: cap * 6,
                scan_len: cap * 2,
                next_scan_key: SCAN_BASE,
            },
            TraceSpec::Loop => Kind::Loop {
                span: (cap * 6).div_ceil(5),
            },
            TraceSpec::Shift | TraceSpec::File { .. } => Kind::Shift {
                hot: Zipf::new(1.0, cap * 10),
                offset: cap * 10,
            },
        };
        Self {
            kind,
            rng: StdRng::seed_from_u64(SEED),
            produced: 0,
            len,
            progress,
        }
    }
}

impl Iterator for Synthetic {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.produced >= self.len {
            return None;
        }
        let i = self.produced;
        self.produced += 1;
        if i.is_multiple_of(4096) {
            self.progress.store(i, Ordering::Relaxed);
        }
        let key = match &mut self.kind {
            Kind::Zipf(z) => z.sample(&mut self.rng),
            Kind::Scan {
                hot,
                period,
                scan_len,
                next_scan_key,
            } => {
                if i % *period >= *period - *scan_len {
                    *next_scan_key += 1;
                    *next_scan_key
                } else {
                    hot.sample(&mut self.rng)
                }
            }
            Kind::Loop { span } => i % *span,
            Kind::Shift { hot, offset } => {
                let k = hot.sample(&mut self.rng);
                if i >= self.len / 2 {
                    k + *offset
                } else {
                    k
                }
            }
        };
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_in_range_and_skewed() {
        let z = Zipf::new(1.0, 1000);
        let mut rng = StdRng::seed_from_u64(1);
        let mut ones = 0;
        for _ in 0..10_000 {
            let k = z.sample(&mut rng);
            assert!((1..=1000).contains(&k));
            ones += u32::from(k == 1);
        }
        // P(1) = 1/H(1000) ~ 13%.
        assert!((1000..1700).contains(&ones), "{ones}");
    }
}
