//! Redis glob patterns (`KEYS`, `SCAN ... MATCH`), a port of Redis's
//! `stringmatchlen`: `*`, `?`, `[abc]`, `[^a]`, `[a-z]` (reversed ranges
//! allowed), and `\` escapes. Corner cases follow Redis, not POSIX: an
//! unclosed `[` matches against the rest of the pattern as a set, a trailing
//! `\` matches a literal `\`, and bytes are compared as C's signed `char`.

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
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    if pattern == b"*" {
        return true;
    }
    let mut skip_longer = false;
    match_from(pattern, text, &mut skip_longer)
}

/// The pattern byte at `i`, or 0 past the end (Redis reads the terminating NUL).
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

/// A byte as C's (signed) `char`, for range comparisons.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

fn match_from(p: &[u8], s: &[u8], skip_longer: &mut bool) -> bool {
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
                    if match_from(&p[pi + 1..], &s[si..], skip_longer) {
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
    use super::glob_match;

    #[test]
    fn redis_corner_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "abc"),
            ("a*", "a"),
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
        ];
        for (p, s) in yes {
            assert!(
                glob_match(p.as_bytes(), s.as_bytes()),
                "{p} should match {s}"
            );
        }
        let no: &[(&str, &str)] = &[
            ("", "a"),
            ("?", ""),
            ("a", "ab"),
            ("[^abc]", "a"),
            ("[a-c]", "d"),
            ("\\*", "a"),
            ("a*b", "acb_"),
        ];
        for (p, s) in no {
            assert!(
                !glob_match(p.as_bytes(), s.as_bytes()),
                "{p} should not match {s}"
            );
        }
    }
}
