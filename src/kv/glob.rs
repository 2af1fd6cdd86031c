//! Redis glob patterns (`KEYS`, `SCAN ... MATCH`) with the semantics of
//! Redis's `stringmatchlen`: `*`, `?`, `[abc]`, `[^a]`, `[a-z]` (reversed
//! ranges allowed), and `\` escapes. Corner cases follow Redis, not POSIX: an
//! unclosed `[` matches against the rest of the pattern as a set, a trailing
//! `\` matches a literal `\`, `[]` is an empty set, bytes are compared as C's
//! signed `char` in ranges, and a non-empty pattern never matches the empty
//! key (except `*`, as `KEYS *` does in Redis).
//!
//! The matcher is iterative. The pattern is read as segments of one-byte
//! tokens separated by runs of `*`: the first segment must match the start of
//! the key and the last one its end, and each middle segment is taken at its
//! leftmost place after the one before (a later place only leaves less room
//! for the rest, so no other choice needs trying). Stack use is constant
//! whatever the pattern; memory is one small record per run of stars; time is
//! at most O(pattern length × key length).

/// Whether `text` matches the Redis glob `pattern` (case-sensitive).
///
/// ```
/// use shardcache::kv::glob_match;
/// assert!(glob_match(b"perm:*", b"perm:user:1"));
/// assert!(glob_match(b"h?llo", b"hello"));
/// assert!(glob_match(b"h[^e]llo", b"hallo"));
/// assert!(!glob_match(b"h[a-b]llo", b"hello"));
/// ```
///
/// The pattern `*` matches everything, including the empty key, as `KEYS *`
/// and `SCAN ... MATCH *` do in Redis (its matcher alone would not match "").
/// Time is bounded by the product of the two lengths, and stack use does not
/// grow with either:
///
/// ```
/// use shardcache::kv::glob_match;
/// let pattern = "*a".repeat(40_000);
/// let key = "a".repeat(100_000);
/// assert!(glob_match(pattern.as_bytes(), key.as_bytes()));
/// ```
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    if pattern == b"*" {
        return true;
    }
    if text.is_empty() {
        // Redis's loop never runs on an empty key: only an empty pattern matches.
        return pattern.is_empty();
    }
    let segments = split(pattern);
    let needed: usize = segments.iter().map(|s| s.tokens).sum();
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return false;
    };
    if segments.len() == 1 {
        return first.tokens == text.len() && first.matches_at(pattern, text, 0);
    }
    if needed > text.len()
        || !first.matches_at(pattern, text, 0)
        || !last.matches_at(pattern, text, text.len() - last.tokens)
    {
        return false;
    }
    let (mut lo, hi) = (first.tokens, text.len() - last.tokens);
    for seg in &segments[1..segments.len() - 1] {
        if lo + seg.tokens > hi {
            return false;
        }
        let Some(at) = (lo..=hi - seg.tokens).find(|&at| seg.matches_at(pattern, text, at)) else {
            return false;
        };
        lo = at + seg.tokens;
    }
    true
}

/// A run of one-byte tokens between stars: pattern bytes `start..end`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: usize,
    end: usize,
    /// How many key bytes it matches.
    tokens: usize,
}

impl Segment {
    /// Whether the segment matches `text` from byte `at` on (`at + tokens <= len`).
    fn matches_at(&self, p: &[u8], text: &[u8], at: usize) -> bool {
        let (mut pi, mut si) = (self.start, at);
        while pi < self.end {
            let (tok, next) = token(p, pi);
            if !tok.matches(p, text[si]) {
                return false;
            }
            pi = next;
            si += 1;
        }
        true
    }
}

/// The pattern as segments: always the one before the first star and the one
/// after the last star (either may be empty), and those between.
fn split(p: &[u8]) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut current = Segment {
        start: 0,
        end: 0,
        tokens: 0,
    };
    let mut i = 0;
    while i < p.len() {
        let (tok, next) = token(p, i);
        if let Token::Star = tok {
            // A run of stars closes the segment; empty middle segments are dropped.
            if segments.is_empty() || current.tokens > 0 {
                segments.push(current);
            }
            current = Segment {
                start: next,
                end: next,
                tokens: 0,
            };
        } else {
            current.end = next;
            current.tokens += 1;
        }
        i = next;
    }
    segments.push(current);
    segments
}

/// One pattern token.
#[derive(Debug, Clone, Copy)]
enum Token {
    Star,
    Any,
    Byte(u8),
    /// A `[...]` set; the index just past its `[`.
    Class(usize),
}

impl Token {
    fn matches(self, p: &[u8], c: u8) -> bool {
        match self {
            Self::Star | Self::Any => true,
            Self::Byte(b) => b == c,
            Self::Class(start) => match_class(p, start, c).0,
        }
    }
}

/// The token at `i` and the index after it.
fn token(p: &[u8], i: usize) -> (Token, usize) {
    match p[i] {
        b'*' => (Token::Star, i + 1),
        b'?' => (Token::Any, i + 1),
        // Where a set ends does not depend on the byte tested against it.
        b'[' => (Token::Class(i + 1), match_class(p, i + 1, 0).1 + 1),
        b'\\' if p.len() - i >= 2 => (Token::Byte(p[i + 1]), i + 2),
        c => (Token::Byte(c), i + 1),
    }
}

/// The pattern byte at `i`, or 0 past the end (Redis reads the terminating NUL).
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

/// A byte as C's (signed) `char`, for range comparisons.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

/// Matches `c` against the class starting at `pi` (just past `[`). Returns
/// whether it matched and the index of the class's last byte (`]`, or the
/// pattern's last byte when the class is unclosed).
fn match_class(p: &[u8], mut pi: usize, c: u8) -> (bool, usize) {
    let negate = at(p, pi) == b'^' && pi < p.len();
    if negate {
        pi += 1;
    }
    let mut matched = false;
    loop {
        let left = p.len().saturating_sub(pi);
        if at(p, pi) == b'\\' && left >= 2 {
            pi += 1;
            if p[pi] == c {
                matched = true;
            }
        } else if at(p, pi) == b']' && left >= 1 {
            break;
        } else if left == 0 {
            pi -= 1;
            break;
        } else if left >= 3 && p[pi + 1] == b'-' {
            let (mut lo, mut hi) = (signed(p[pi]), signed(p[pi + 2]));
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            if (lo..=hi).contains(&signed(c)) {
                matched = true;
            }
            pi += 2;
        } else if p[pi] == c {
            matched = true;
        }
        pi += 1;
    }
    (matched != negate, pi)
}

#[cfg(test)]
mod tests {
    use super::{at, glob_match, match_class};
    use proptest::prelude::*;

    /// Redis's recursive `stringmatchlen`, ported as it is (with its
    /// `skipLongerMatches`), as the reference for the iterative matcher.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        fn rec(p: &[u8], s: &[u8], skip_longer: &mut bool) -> bool {
            let (mut pi, mut si) = (0usize, 0usize);
            while pi < p.len() && si < s.len() {
                match p[pi] {
                    b'*' => {
                        while pi + 1 < p.len() && p[pi + 1] == b'*' {
                            pi += 1;
                        }
                        if pi + 1 == p.len() {
                            return true;
                        }
                        while si < s.len() {
                            if rec(&p[pi + 1..], &s[si..], skip_longer) {
                                return true;
                            }
                            if *skip_longer {
                                return false;
                            }
                            si += 1;
                        }
                        *skip_longer = true;
                        return false;
                    }
                    b'?' => si += 1,
                    b'[' => {
                        let (matched, next) = match_class(p, pi + 1, s[si]);
                        if !matched {
                            return false;
                        }
                        pi = next;
                        si += 1;
                    }
                    b'\\' => {
                        if p.len() - pi >= 2 {
                            pi += 1;
                        }
                        if p[pi] != s[si] {
                            return false;
                        }
                        si += 1;
                    }
                    c => {
                        if c != s[si] {
                            return false;
                        }
                        si += 1;
                    }
                }
                pi += 1;
                if si == s.len() {
                    while at(p, pi) == b'*' && pi < p.len() {
                        pi += 1;
                    }
                    break;
                }
            }
            pi >= p.len() && si == s.len()
        }
        p == b"*" || rec(p, s, &mut false)
    }

    #[test]
    fn redis_corner_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("", ""),
            ("*", "abc"),
            ("a*", "a"),
            ("*a", "a"),
            ("a**b", "ab"),
            ("a?c", "abc"),
            ("[abc]", "b"),
            ("[^abc]", "d"),
            ("[a-c]", "b"),
            ("[c-a]", "b"),
            ("\\*", "*"),
            ("[\\]]", "]"),
            ("[abc", "c"),
            ("a\\", "a\\"),
            ("*a*b*c*", "xaybzc"),
            ("[^", "x"),
        ];
        for (p, s) in yes {
            assert!(
                glob_match(p.as_bytes(), s.as_bytes()),
                "{p} should match {s}"
            );
            assert!(reference(p.as_bytes(), s.as_bytes()), "reference: {p} {s}");
        }
        let no: &[(&str, &str)] = &[
            ("", "a"),
            ("**", ""),
            ("?", ""),
            ("a", "ab"),
            ("[^abc]", "a"),
            ("[a-c]", "d"),
            ("\\*", "a"),
            ("a*b", "acb_"),
            ("[]", "a"),
            ("a*?", "a"),
            ("*ab*ab", "abab_"),
            ("a*[", "ab"),
        ];
        for (p, s) in no {
            assert!(
                !glob_match(p.as_bytes(), s.as_bytes()),
                "{p} should not match {s}"
            );
            assert!(!reference(p.as_bytes(), s.as_bytes()), "reference: {p} {s}");
        }
    }

    /// Runs `f` on a thread with a 2 MiB stack (Rust's and Tokio's default).
    fn on_small_stack(f: impl FnOnce() -> bool + Send + 'static) -> bool {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("matcher thread")
    }

    #[test]
    fn pathological_patterns_stay_on_a_small_stack() {
        let key = "a".repeat(100_000);
        let k = key.clone();
        assert!(on_small_stack(move || glob_match(
            "*a".repeat(40_000).as_bytes(),
            k.as_bytes()
        )));
        let k = key.clone();
        assert!(!on_small_stack(move || glob_match(
            format!("{}b", "*a".repeat(40_000)).as_bytes(),
            k.as_bytes()
        )));
        // More tokens than key bytes: refused before any scan.
        let k = key.clone();
        assert!(!on_small_stack(move || glob_match(
            "*a".repeat(100_001).as_bytes(),
            k.as_bytes()
        )));
        // Deeply nested and unclosed brackets, long escapes.
        let k = key;
        assert!(!on_small_stack(move || {
            let p = format!("{}{}", "[[".repeat(50_000), "\\".repeat(50_000));
            glob_match(p.as_bytes(), k.as_bytes())
        }));
        assert!(glob_match("[".repeat(30_000).as_bytes(), b"["));
    }

    fn small_pattern() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                4 => Just(b'a'),
                2 => Just(b'b'),
                3 => Just(b'*'),
                2 => Just(b'?'),
                2 => Just(b'['),
                2 => Just(b']'),
                1 => Just(b'^'),
                1 => Just(b'-'),
                1 => Just(b'\\'),
                1 => Just(0xC3u8),
            ],
            0..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Same answer as Redis's own recursive matcher on every pattern and
        /// key over a small alphabet of pattern syntax.
        #[test]
        fn agrees_with_redis_matcher(p in small_pattern(), s in proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'b'), Just(b'['), Just(b'*'), Just(b'-'), Just(0xC3u8)], 0..10)) {
            prop_assert_eq!(glob_match(&p, &s), reference(&p, &s), "pattern {:?} key {:?}",
                String::from_utf8_lossy(&p), String::from_utf8_lossy(&s));
        }
    }
}
