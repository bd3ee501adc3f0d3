//! Lock-key patterns: Redis glob syntax (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes),
//! matched the way Redis's `stringmatchlen` matches `KEYS` patterns.

/// A compiled set of lock patterns. A key is a lock key when any pattern matches it.
#[derive(Debug, Clone)]
pub struct LockPatterns {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
enum Pattern {
    /// `prefix*` with no other special characters: the common case, a prefix test.
    Prefix(Vec<u8>),
    /// Anything else.
    Glob(Vec<u8>),
}

impl LockPatterns {
    /// Compiles the patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| {
                let p = p.as_ref().as_bytes();
                match p.split_last() {
                    Some((b'*', prefix)) if !prefix.iter().any(|c| b"*?[\\".contains(c)) => {
                        Pattern::Prefix(prefix.to_vec())
                    }
                    _ => Pattern::Glob(p.to_vec()),
                }
            })
            .collect();
        LockPatterns { patterns }
    }

    /// Whether `key` is a lock key.
    pub fn is_lock_key(&self, key: &[u8]) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Prefix(prefix) => key.starts_with(prefix),
            Pattern::Glob(glob) => glob_match(glob, key),
        })
    }
}

/// Matches `s` against the Redis glob `pattern`.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    while p < pattern.len() && i < s.len() {
        match pattern[p] {
            b'*' => {
                while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                return (i..=s.len()).any(|j| glob_match(&pattern[p + 1..], &s[j..]));
            }
            b'?' => i += 1,
            b'[' => {
                p += 1;
                let not = pattern.get(p) == Some(&b'^');
                if not {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    match pattern.get(p) {
                        None => {
                            // Unterminated class: Redis treats the end as closing it.
                            p = pattern.len() - 1;
                            break;
                        }
                        Some(b']') => break,
                        Some(b'\\') if p + 1 < pattern.len() => {
                            p += 1;
                            if pattern[p] == s[i] {
                                matched = true;
                            }
                        }
                        Some(&start)
                            if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() =>
                        {
                            let end = pattern[p + 2];
                            let (lo, hi) = if start <= end {
                                (start, end)
                            } else {
                                (end, start)
                            };
                            if (lo..=hi).contains(&s[i]) {
                                matched = true;
                            }
                            p += 2;
                        }
                        Some(&c) => {
                            if c == s[i] {
                                matched = true;
                            }
                        }
                    }
                    p += 1;
                }
                if matched == not {
                    return false;
                }
                i += 1;
            }
            b'\\' if p + 1 < pattern.len() => {
                p += 1;
                if pattern[p] != s[i] {
                    return false;
                }
                i += 1;
            }
            c => {
                if c != s[i] {
                    return false;
                }
                i += 1;
            }
        }
        p += 1;
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len() && i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_redis_keys() {
        assert!(glob_match(b"lock:*", b"lock:a"));
        assert!(glob_match(b"lock:*", b"lock:"));
        assert!(!glob_match(b"lock:*", b"lockx"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(!glob_match(b"h?llo", b"hllo"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[ae]llo", b"hillo"));
        assert!(glob_match(b"h[^e]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"h[b-a]llo", b"hallo"));
        assert!(glob_match(b"a\\*b", b"a*b"));
        assert!(!glob_match(b"a\\*b", b"axb"));
        assert!(glob_match(b"*:lock:*", b"app:lock:1"));
        assert!(glob_match(b"**", b""));
        assert!(!glob_match(b"a[", b"ab"));
    }

    #[test]
    fn prefix_fast_path_agrees_with_glob() {
        let pats = LockPatterns::new(&["lock:*", "redlock:*", "*:mutex"]);
        for key in [
            "lock:x",
            "redlock:y",
            "a:mutex",
            "lock",
            "data:1",
            "",
            "xlock:1",
        ] {
            let expected = ["lock:*", "redlock:*", "*:mutex"]
                .iter()
                .any(|p| glob_match(p.as_bytes(), key.as_bytes()));
            assert_eq!(pats.is_lock_key(key.as_bytes()), expected, "{key}");
        }
    }
}
