//! `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`: the
//! longest common subsequence of two values, as Redis 7.0's `lcsCommand`
//! computes it (the same table, the same walk back through it, so the same
//! subsequence and matches where several are equally long).
//!
//! The table takes 4 bytes per pair of positions (`(len1 + 1) * (len2 + 1)`
//! cells); as in Redis, a table over 512 MiB is refused with
//! [`KvError::LcsTooLarge`] before anything is allocated, and a failed
//! allocation answers [`KvError::LcsNoMemory`].

use super::command::{key, option};
use super::parse::parse_i64;
use super::{KvError, KvStore, Reply, MAX_STRING_LEN};
use bytes::Bytes;

/// One run of bytes common to both values, as `LCS ... IDX` reports it:
/// positions of its first and last byte, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LcsMatch {
    /// First and last position in the first key's value.
    pub first: (usize, usize),
    /// First and last position in the second key's value.
    pub second: (usize, usize),
}

impl LcsMatch {
    /// Its length in bytes (`WITHMATCHLEN`).
    pub fn match_len(&self) -> usize {
        self.first.1 - self.first.0 + 1
    }
}

/// What `LCS ... IDX` answers: the matches, last first (as Redis lists
/// them), and the length of the whole subsequence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LcsMatches {
    /// The runs of at least the asked length, from the end of the values.
    pub matches: Vec<LcsMatch>,
    /// The length of the longest common subsequence.
    pub len: usize,
}

/// The table of LCS lengths of every pair of prefixes, Redis's layout.
struct Table<'a> {
    a: &'a [u8],
    b: &'a [u8],
    cells: Vec<u32>,
}

impl<'a> Table<'a> {
    /// Builds it, or refuses as Redis does when it would be over
    /// [`MAX_STRING_LEN`] bytes.
    fn new(a: &'a [u8], b: &'a [u8]) -> Result<Self, KvError> {
        let n = (a.len() as u128 + 1) * (b.len() as u128 + 1);
        if n * 4 > MAX_STRING_LEN as u128 {
            return Err(KvError::LcsTooLarge);
        }
        let n = n as usize;
        let mut cells = Vec::new();
        cells
            .try_reserve_exact(n)
            .map_err(|_| KvError::LcsNoMemory)?;
        cells.resize(n, 0);
        let width = b.len() + 1;
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                cells[i * width + j] = if a[i - 1] == b[j - 1] {
                    cells[(i - 1) * width + j - 1] + 1
                } else {
                    cells[(i - 1) * width + j].max(cells[i * width + j - 1])
                };
            }
        }
        Ok(Self { a, b, cells })
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * (self.b.len() + 1) + j]
    }

    fn len(&self) -> usize {
        self.at(self.a.len(), self.b.len()) as usize
    }

    /// Redis's walk back from the end: the subsequence, and the runs of at
    /// least `min_len` bytes (any, for 0).
    fn walk(&self, min_len: usize) -> (Vec<u8>, Vec<LcsMatch>) {
        let (a, b) = (self.a, self.b);
        let mut out = vec![0u8; self.len()];
        let mut idx = out.len();
        let mut matches = Vec::new();
        // The run being extended backwards: (a start, a end, b start, b end).
        let mut run: Option<(usize, usize, usize, usize)> = None;
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                out[idx - 1] = a[i - 1];
                run = match run {
                    None => Some((i - 1, i - 1, j - 1, j - 1)),
                    Some((sa, ea, sb, eb)) if sa == i && sb == j => Some((sa - 1, ea, sb - 1, eb)),
                    Some(r) => {
                        emit = true;
                        Some(r)
                    }
                };
                if run.is_some_and(|(sa, _, sb, _)| sa == 0 || sb == 0) {
                    emit = true;
                }
                idx -= 1;
                i -= 1;
                j -= 1;
            } else {
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit = run.is_some();
            }
            if emit {
                if let Some((sa, ea, sb, eb)) = run.take() {
                    let m = LcsMatch {
                        first: (sa, ea),
                        second: (sb, eb),
                    };
                    if m.match_len() >= min_len {
                        matches.push(m);
                    }
                }
            }
        }
        (out, matches)
    }
}

impl KvStore {
    /// The values of both keys (a missing key is empty), looked up as reads.
    fn lcs_values(&self, key1: &str, key2: &str) -> (Bytes, Bytes) {
        (
            self.get(key1).unwrap_or_default(),
            self.get(key2).unwrap_or_default(),
        )
    }

    /// `LCS key1 key2`: the longest common subsequence of the two values (a
    /// missing key counts as empty), the one Redis answers where several are
    /// equally long.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.mset(&[("key1", "ohmytext"), ("key2", "mynewtext")])?;
    /// assert_eq!(&store.lcs("key1", "key2")?[..], b"mytext");
    /// assert_eq!(store.lcs_len("key1", "key2")?, 6);
    /// let idx = store.lcs_idx("key1", "key2", 4)?;
    /// assert_eq!((idx.len, idx.matches.len()), (6, 1));
    /// assert_eq!((idx.matches[0].first, idx.matches[0].second), ((4, 7), (5, 8)));
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::LcsTooLarge`] when `(len1 + 1) * (len2 + 1) * 4` is over
    /// 512 MiB, [`KvError::LcsNoMemory`] if that much cannot be allocated.
    pub fn lcs(&self, key1: &str, key2: &str) -> Result<Bytes, KvError> {
        let (a, b) = self.lcs_values(key1, key2);
        Ok(Table::new(&a, &b)?.walk(0).0.into())
    }

    /// `LCS key1 key2 LEN`: the length of the longest common subsequence.
    ///
    /// # Errors
    ///
    /// As [`lcs`](Self::lcs) (Redis builds the same table for `LEN`).
    pub fn lcs_len(&self, key1: &str, key2: &str) -> Result<usize, KvError> {
        let (a, b) = self.lcs_values(key1, key2);
        Ok(Table::new(&a, &b)?.len())
    }

    /// `LCS key1 key2 IDX MINMATCHLEN min_len`: where the longest common
    /// subsequence's runs are in each value (those of at least `min_len`
    /// bytes), and its length.
    ///
    /// # Errors
    ///
    /// As [`lcs`](Self::lcs).
    pub fn lcs_idx(&self, key1: &str, key2: &str, min_len: usize) -> Result<LcsMatches, KvError> {
        let (a, b) = self.lcs_values(key1, key2);
        let table = Table::new(&a, &b)?;
        Ok(LcsMatches {
            matches: table.walk(min_len).1,
            len: table.len(),
        })
    }
}

/// `LCS` for [`KvStore::execute`], in Redis's order: the keys are looked
/// up, then the options parsed, then `IDX` with `LEN` refused, then the
/// table's size checked.
pub(super) fn command(s: &KvStore, a: &[&[u8]]) -> Result<Reply, KvError> {
    let (a_val, b_val) = s.lcs_values(key(a[1])?, key(a[2])?);
    let (mut idx, mut len, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut j = 3;
    while j < a.len() {
        match option(a[j]).as_slice() {
            b"idx" => idx = true,
            b"len" => len = true,
            b"withmatchlen" => with_len = true,
            b"minmatchlen" if j + 1 < a.len() => {
                let n = parse_i64(a[j + 1])?;
                min_len = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                j += 1;
            }
            _ => return Err(KvError::Syntax),
        }
        j += 1;
    }
    if idx && len {
        return Err(KvError::LcsIdxAndLen);
    }
    let table = Table::new(&a_val, &b_val)?;
    if len {
        return Ok(table.len().into());
    }
    let (subsequence, matches) = table.walk(min_len);
    if !idx {
        return Ok(Reply::Bulk(subsequence.into()));
    }
    let pair = |(x, y): (usize, usize)| Reply::Array(vec![x.into(), y.into()]);
    let matches = matches
        .into_iter()
        .map(|m| {
            let mut r = vec![pair(m.first), pair(m.second)];
            if with_len {
                r.push(m.match_len().into());
            }
            Reply::Array(r)
        })
        .collect();
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"matches")),
        Reply::Array(matches),
        Reply::Bulk(Bytes::from_static(b"len")),
        table.len().into(),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_refused_over_512_mib_before_it_is_allocated() {
        // Values of 11584 bytes: 11585^2 cells of 4 bytes, just under
        // 512 MiB; one byte more is over.
        assert!(Table::new(&[], &[]).is_ok());
        let big = vec![b'a'; 11585];
        assert_eq!(
            Table::new(&big, &big).err(),
            Some(KvError::LcsTooLarge),
            "a square table over the limit"
        );
        // Zeros, so the pages are never touched.
        let long = vec![0u8; 64 << 20];
        assert_eq!(Table::new(&long, b"a").err(), Some(KvError::LcsTooLarge));
    }

    #[test]
    fn runs_and_subsequence_follow_redis() {
        let t = Table::new(b"ohmytext", b"mynewtext").expect("small");
        let (s, m) = t.walk(0);
        assert_eq!(s, b"mytext");
        let ranges: Vec<_> = m.iter().map(|m| (m.first, m.second)).collect();
        assert_eq!(ranges, vec![((4, 7), (5, 8)), ((2, 3), (0, 1))]);
        assert_eq!(t.walk(4).1.len(), 1);
    }
}
