//! Seeded synthetic workloads for `cachebench suite`, each sized for a cache
//! of a given capacity and pulling a policy in a different direction.
//!
//! | name | what it is | what pays |
//! |---|---|---|
//! | `stack` | LRU stack model: 5 % of requests are new keys; the rest re-use the key at stack depth `d` (0 = most recent), `d` exponential with mean = capacity | recency: LRU is the optimal online policy when the depth distribution decreases (Spirn's LRU stack model) |
//! | `zipf:S` | Zipf(S) over 20 × capacity keys, S in 0.6 … 1.2 | frequency |
//! | `loop:F` | keys `0..F × capacity` in order, again and again | F < 1: anything; F > 1: keeping a fixed part (LRU hits nothing) |
//! | `scan` | Zipf(1.0) over 10 × capacity keys for 4 × capacity requests, then a one-off scan of 2 × capacity new keys, repeated | scan resistance |
//! | `phases` | four quarters on disjoint keys: Zipf(0.9), `stack`, `loop:1.2`, then the first Zipf keys again | adapting, and not forgetting too fast |
//!
//! Every generator is deterministic for a (seed, capacity, length).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::trace::Zipf;

/// The synthetic families the suite runs, in report order.
pub(crate) const FAMILIES: [&str; 9] = [
    "stack", "zipf:0.6", "zipf:0.9", "zipf:1.2", "loop:0.5", "loop:1.2", "loop:3", "scan", "phases",
];

/// Keys far apart per phase of `phases`, so that phases share no key.
const PHASE_STRIDE: u64 = 1 << 40;
/// Share of `stack` requests that are new keys.
const STACK_NEW: f64 = 0.05;

/// Generates `len` keys of family `name` for a cache of `cap` entries.
pub(crate) fn generate(name: &str, cap: u64, len: usize, seed: u64) -> Result<Vec<u64>, String> {
    let cap = cap.max(1);
    let mut rng = StdRng::seed_from_u64(seed ^ cap.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut out = Vec::with_capacity(len);
    match name.split_once(':').unwrap_or((name, "")) {
        ("stack", "") => stack(&mut rng, cap, len, 0, &mut out),
        ("zipf", s) => {
            let s: f64 = s
                .parse()
                .map_err(|_| format!("bad Zipf exponent in `{name}`"))?;
            zipf(&mut rng, s, cap, len, 0, &mut out);
        }
        ("loop", f) => {
            let f: f64 = f
                .parse()
                .map_err(|_| format!("bad loop factor in `{name}`"))?;
            let span = ((cap as f64 * f).round() as u64).max(1);
            out.extend((0..len as u64).map(|i| i % span));
        }
        ("scan", "") => scan(&mut rng, cap, len, &mut out),
        ("phases", "") => {
            let q = len / 4;
            zipf(&mut rng, 0.9, cap, q, 0, &mut out);
            stack(&mut rng, cap, q, PHASE_STRIDE, &mut out);
            let span = cap * 6 / 5;
            out.extend((0..q as u64).map(|i| 2 * PHASE_STRIDE + i % span.max(1)));
            zipf(&mut rng, 0.9, cap, len - 3 * q, 0, &mut out);
        }
        _ => return Err(format!("unknown workload `{name}`")),
    }
    Ok(out)
}

fn zipf(rng: &mut StdRng, s: f64, cap: u64, len: usize, base: u64, out: &mut Vec<u64>) {
    let z = Zipf::new(s, cap * 20);
    out.extend((0..len).map(|_| base + z.sample(rng)));
}

fn scan(rng: &mut StdRng, cap: u64, len: usize, out: &mut Vec<u64>) {
    let hot = Zipf::new(1.0, cap * 10);
    let mut next_scan = PHASE_STRIDE;
    let period = cap * 6;
    for i in 0..len as u64 {
        if i % period >= period - cap * 2 {
            next_scan += 1;
            out.push(next_scan);
        } else {
            out.push(hot.sample(rng));
        }
    }
}

/// The LRU stack model: a Fenwick tree over request times marks each key's
/// latest request, so the key at stack depth `d` is the mark with `d` marks
/// after it, found in O(log n).
fn stack(rng: &mut StdRng, cap: u64, len: usize, base: u64, out: &mut Vec<u64>) {
    let mut tree = Fenwick::new(len);
    let mut key_at = vec![0u64; len];
    let mut distinct = 0usize;
    let mut next_key = base;
    for t in 0..len {
        let depth = (-(1.0 - rng.gen::<f64>()).ln() * cap as f64) as usize;
        let key = if distinct == 0 || rng.gen::<f64>() < STACK_NEW || depth >= distinct {
            distinct += 1;
            next_key += 1;
            next_key
        } else {
            // The (distinct - depth)-th mark from the left.
            let p = tree.find(distinct - depth);
            tree.add(p, -1);
            key_at[p]
        };
        tree.add(t, 1);
        key_at[t] = key;
        out.push(key);
    }
}

/// A Fenwick (binary indexed) tree of counts.
struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        Self {
            tree: vec![0; n + 1],
        }
    }

    fn add(&mut self, i: usize, by: i64) {
        let mut i = i + 1;
        while i < self.tree.len() {
            self.tree[i] += by;
            i += i & i.wrapping_neg();
        }
    }

    /// The smallest index whose prefix sum reaches `k` (k ≥ 1).
    fn find(&self, mut k: usize) -> usize {
        let mut pos = 0;
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && (self.tree[next] as usize) < k {
                pos = next;
                k -= self.tree[next] as usize;
            }
            step >>= 1;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        for name in FAMILIES {
            let a = generate(name, 100, 5_000, 1).expect("known");
            assert_eq!(a.len(), 5_000, "{name}");
            assert_eq!(a, generate(name, 100, 5_000, 1).expect("known"), "{name}");
            if !name.starts_with("loop") {
                assert_ne!(a, generate(name, 100, 5_000, 2).expect("known"), "{name}");
            }
        }
        assert!(generate("nope", 10, 10, 0).is_err());
        assert!(generate("zipf:x", 10, 10, 0).is_err());
    }

    #[test]
    fn stack_depths_follow_the_model() {
        // Replay the stack naively and check the depth of each re-use.
        let keys = generate("stack", 50, 20_000, 7).expect("known");
        let mut stack: Vec<u64> = Vec::new();
        let (mut new, mut shallow, mut reuse) = (0, 0, 0);
        for &k in &keys {
            match stack.iter().rev().position(|&s| s == k) {
                Some(d) => {
                    reuse += 1;
                    shallow += usize::from(d < 50);
                    let at = stack.len() - 1 - d;
                    stack.remove(at);
                }
                None => new += 1,
            }
            stack.push(k);
        }
        // 5 % new plus depths past the stack; about 63 % of re-uses sit
        // within one mean depth.
        assert!(new > 20_000 / 25 && new < 20_000 / 8, "{new}");
        let frac = shallow as f64 / reuse as f64;
        assert!((0.58..0.68).contains(&frac), "{frac}");
    }
}
