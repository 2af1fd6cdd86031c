//! Several traces replayed as one: the requests of two or more workloads
//! sharing one cache (tenants of one service, or tables of one database),
//! each kept in its own order.
//!
//! A request stays whole (an ARC trace line of several blocks, or one key
//! of a plain trace). The next request is taken from a trace picked at
//! random with odds proportional to the requests it has left, so all of
//! them end together. Keys are renumbered per trace (in order of first
//! use) into ranges that do not overlap: two traces never share a key.

use std::collections::{HashMap, HashSet};

/// A request: its first key and how many consecutive keys it spans.
pub(crate) type Request = (u64, u64);

/// SplitMix64: a small seeded generator, the same on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` for `n > 0` (multiply and shift; the bias is
    /// below 2^-40 at any trace's length).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// The keys of `r`, in order. A request running past `u64::MAX` wraps
/// (the trace reader refuses those, so this never happens with its input).
fn keys(r: Request) -> impl Iterator<Item = u64> {
    (0..r.1).map(move |i| r.0.wrapping_add(i))
}

/// Interleaves `traces` (each a list of requests) into one sequence of
/// keys (see the module docs); `seed` fixes the order.
pub(crate) fn interleave(traces: &[Vec<Request>], seed: u64) -> Vec<u64> {
    // Each trace's keys are renumbered from a base of its own, past the
    // distinct keys of the traces before it.
    let mut base = Vec::with_capacity(traces.len());
    let mut distinct = 0u64;
    for t in traces {
        base.push(distinct);
        distinct += t
            .iter()
            .flat_map(|&r| keys(r))
            .collect::<HashSet<_>>()
            .len() as u64;
    }
    let mut ids: Vec<HashMap<u64, u64>> = vec![HashMap::new(); traces.len()];
    let mut next = vec![0usize; traces.len()];
    let mut left: u64 = traces.iter().map(|t| t.len() as u64).sum();
    let total = traces.iter().flatten().map(|r| r.1).sum::<u64>();
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut rng = SplitMix(seed);
    while left > 0 {
        // A trace, with odds proportional to the requests it has left.
        let mut pick = rng.below(left);
        let mut t = 0;
        while pick >= (traces[t].len() - next[t]) as u64 {
            pick -= (traces[t].len() - next[t]) as u64;
            t += 1;
        }
        let r = traces[t][next[t]];
        next[t] += 1;
        left -= 1;
        for k in keys(r) {
            let n = ids[t].len() as u64;
            out.push(base[t] + *ids[t].entry(k).or_insert(n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_trace_whole_in_order_and_apart() {
        let a = vec![(10, 3), (40, 1), (10, 1), (7, 2)];
        let b = vec![(10, 1), (10, 1), (3, 3), (10, 1), (99, 1)];
        for seed in 0..20 {
            let m = interleave(&[a.clone(), b.clone()], seed);
            // a's six distinct keys are 0..6 in order of first use, b's
            // five 6..11.
            let ma: Vec<u64> = m.iter().copied().filter(|&k| k < 6).collect();
            let mb: Vec<u64> = m.iter().copied().filter(|&k| k >= 6).collect();
            assert_eq!(ma, [0, 1, 2, 3, 0, 4, 5]);
            assert_eq!(mb, [6, 6, 7, 8, 9, 6, 10]);
            // A request of several keys is never split.
            let at = |k: u64| m.iter().position(|&x| x == k).expect("present");
            assert_eq!(&m[at(1)..at(1) + 2], [1, 2]);
            assert_eq!(m[at(5) - 1], 4);
            assert_eq!(&m[at(7)..at(7) + 3], [7, 8, 9]);
        }
    }

    #[test]
    fn seeded_and_ending_together() {
        let a: Vec<Request> = (0..2000).map(|i| (i * 2, 1)).collect();
        let b: Vec<Request> = (0..1000).map(|i| (i * 3, 1)).collect();
        let m = interleave(&[a.clone(), b.clone()], 7);
        assert_eq!(m, interleave(&[a.clone(), b.clone()], 7));
        assert_ne!(m, interleave(&[a.clone(), b.clone()], 8));
        // The odds follow what is left, so neither trace runs out early.
        let last_a = m.iter().rposition(|&k| k < 2000).expect("a is there");
        let last_b = m.iter().rposition(|&k| k >= 2000).expect("b is there");
        assert!(last_a.min(last_b) > m.len() * 95 / 100, "{last_a} {last_b}");
        assert!(interleave(&[], 1).is_empty());
        assert_eq!(interleave(&[vec![], vec![(5, 1), (5, 1)]], 1), [0, 0]);
    }
}
