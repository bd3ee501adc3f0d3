//! Lock-key patterns: Redis glob syntax (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes),
//! matched the way Redis's `stringmatchlen` matches `KEYS` patterns.

use crate::config::MAX_LOCK_PATTERN_LEN;

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
    Glob(Glob),
}

impl LockPatterns {
    /// Compiles the patterns. Configuration keeps them within
    /// [`MAX_LOCK_PATTERN_LEN`](crate::config::MAX_LOCK_PATTERN_LEN); a longer one is cut there.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| {
                let p = p.as_ref().as_bytes();
                match p.split_last() {
                    Some((b'*', prefix)) if !prefix.iter().any(|c| b"*?[\\".contains(c)) => {
                        Pattern::Prefix(prefix.to_vec())
                    }
                    _ => Pattern::Glob(Glob::compile(&p[..p.len().min(MAX_LOCK_PATTERN_LEN)])),
                }
            })
            .collect();
        LockPatterns { patterns }
    }

    /// Whether `key` is a lock key.
    pub fn is_lock_key(&self, key: &[u8]) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Prefix(prefix) => key.starts_with(prefix),
            Pattern::Glob(glob) => glob.matches(key),
        })
    }

    /// Whether some key `prefix + X + suffix`, for any byte string `X`, is a
    /// lock key: the keys a `SORT ... BY/GET prefix*suffix` pattern may form.
    pub fn may_form_lock_key(&self, prefix: &[u8], suffix: &[u8]) -> bool {
        self.patterns.iter().any(|p| match p {
            // X can complete the prefix, or the prefix already has it.
            Pattern::Prefix(lock) => prefix.starts_with(lock) || lock.starts_with(prefix),
            Pattern::Glob(glob) => {
                let states = glob.feed(glob.start(), prefix);
                glob.accepts(glob.feed(glob.any_string(states), suffix))
            }
        })
    }
}

/// One element of a glob.
#[derive(Debug, Clone)]
enum Token {
    /// Any run of bytes.
    Star,
    /// One byte from the set (`?`, a literal and `[...]` alike).
    Byte(ByteSet),
}

/// A set of bytes, as a bitmap.
#[derive(Debug, Clone, Copy, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[b as usize / 64] |= 1 << (b % 64);
        }
    }
    fn one(b: u8) -> Self {
        let mut s = ByteSet::default();
        s.insert_range(b, b);
        s
    }
    fn contains(&self, b: u8) -> bool {
        self.0[b as usize / 64] & (1 << (b % 64)) != 0
    }
    fn negate(self) -> Self {
        ByteSet(self.0.map(|w| !w))
    }
    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// A glob compiled to a nondeterministic automaton: state `i` means "the
/// first `i` tokens matched", so a match is linear in the key's length
/// whatever the pattern (the textbook backtracking is exponential in stars).
/// States are bits of a `u128`, hence [`MAX_LOCK_PATTERN_LEN`](crate::config::MAX_LOCK_PATTERN_LEN)
/// for the automaton; [`Glob::is_match`] takes any length.
#[derive(Debug, Clone)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Whether `s` matches, as Redis's `stringmatchlen` decides, for a
    /// pattern of any length: the automaton when it fits, otherwise the
    /// greedy match that goes back to the last star only (every other token
    /// reads exactly one byte, so that is enough, and it is quadratic at worst).
    pub fn is_match(&self, s: &[u8]) -> bool {
        if self.tokens.len() < 128 {
            self.matches(s)
        } else {
            self.star_backtracking_match(s)
        }
    }

    fn star_backtracking_match(&self, s: &[u8]) -> bool {
        let (mut t, mut i) = (0usize, 0usize);
        let mut back: Option<(usize, usize)> = None;
        while i < s.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    back = Some((t, i));
                    t += 1;
                }
                Some(Token::Byte(set)) if set.contains(s[i]) => {
                    t += 1;
                    i += 1;
                }
                _ => match back {
                    Some((star, from)) => {
                        back = Some((star, from + 1));
                        t = star + 1;
                        i = from + 1;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[t.min(self.tokens.len())..]
            .iter()
            .all(|x| matches!(x, Token::Star))
    }

    /// Reads the pattern exactly as Redis's `stringmatchlen` does.
    pub fn compile(p: &[u8]) -> Self {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let token = match p[i] {
                b'*' => Token::Star,
                b'?' => Token::Byte(ByteSet([u64::MAX; 4])),
                b'[' => {
                    i += 1;
                    let not = p.get(i) == Some(&b'^');
                    if not {
                        i += 1;
                    }
                    let mut set = ByteSet::default();
                    // An unterminated class ends with the pattern.
                    while i < p.len() && p[i] != b']' {
                        if p[i] == b'\\' && i + 1 < p.len() {
                            i += 1;
                            set.insert_range(p[i], p[i]);
                        } else if p.get(i + 1) == Some(&b'-') && i + 2 < p.len() {
                            let (a, b) = (p[i], p[i + 2]);
                            set.insert_range(a.min(b), a.max(b));
                            i += 2;
                        } else {
                            set.insert_range(p[i], p[i]);
                        }
                        i += 1;
                    }
                    Token::Byte(if not { set.negate() } else { set })
                }
                b'\\' if i + 1 < p.len() => {
                    i += 1;
                    Token::Byte(ByteSet::one(p[i]))
                }
                c => Token::Byte(ByteSet::one(c)),
            };
            tokens.push(token);
            i += 1;
        }
        Glob { tokens }
    }

    /// Adds the states reachable without input: past any stars.
    fn close(&self, mut states: u128) -> u128 {
        for (i, t) in self.tokens.iter().enumerate() {
            if matches!(t, Token::Star) && states & (1 << i) != 0 {
                states |= 1 << (i + 1);
            }
        }
        states
    }

    fn start(&self) -> u128 {
        self.close(1)
    }

    /// The states after reading `input`.
    fn feed(&self, mut states: u128, input: &[u8]) -> u128 {
        for &b in input {
            if states == 0 {
                break;
            }
            let mut next = 0;
            for (i, t) in self.tokens.iter().enumerate() {
                if states & (1 << i) == 0 {
                    continue;
                }
                match t {
                    Token::Star => next |= 1 << i,
                    Token::Byte(set) if set.contains(b) => next |= 1 << (i + 1),
                    Token::Byte(_) => {}
                }
            }
            states = self.close(next);
        }
        states
    }

    /// The states after reading some string, any at all (the empty one too).
    fn any_string(&self, mut states: u128) -> u128 {
        for (i, t) in self.tokens.iter().enumerate() {
            let passable = match t {
                Token::Star => true,
                Token::Byte(set) => !set.is_empty(),
            };
            if passable && states & (1 << i) != 0 {
                states |= 1 << (i + 1);
            }
        }
        states
    }

    fn accepts(&self, states: u128) -> bool {
        states & (1 << self.tokens.len()) != 0
    }

    fn matches(&self, key: &[u8]) -> bool {
        self.accepts(self.feed(self.start(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A direct transcription of Redis's backtracking `stringmatchlen`: the
    /// reference the automaton is checked against.
    fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
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

    fn matches(pattern: &str, key: &str) -> bool {
        Glob::compile(pattern.as_bytes()).matches(key.as_bytes())
    }

    #[test]
    fn globs_match_like_redis_keys() {
        let both = |p: &[u8], k: &[u8]| {
            let m = Glob::compile(p).matches(k);
            assert_eq!(m, glob_match(p, k), "{p:?} {k:?}");
            m
        };
        assert!(both(b"lock:*", b"lock:a"));
        assert!(both(b"lock:*", b"lock:"));
        assert!(!both(b"lock:*", b"lockx"));
        assert!(both(b"h?llo", b"hello"));
        assert!(!both(b"h?llo", b"hllo"));
        assert!(both(b"h[ae]llo", b"hallo"));
        assert!(!both(b"h[ae]llo", b"hillo"));
        assert!(both(b"h[^e]llo", b"hallo"));
        assert!(!both(b"h[^e]llo", b"hello"));
        assert!(both(b"h[a-b]llo", b"hbllo"));
        assert!(both(b"h[b-a]llo", b"hallo"));
        assert!(both(b"a\\*b", b"a*b"));
        assert!(!both(b"a\\*b", b"axb"));
        assert!(both(b"*:lock:*", b"app:lock:1"));
        assert!(both(b"**", b""));
        assert!(!both(b"a[", b"ab"));
    }

    #[test]
    fn the_automaton_is_linear_where_backtracking_is_not() {
        let key = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &key));
        assert!(matches("*a*a*a*a*a*a*a*a*", &key));
    }

    proptest! {
        #[test]
        fn the_automaton_matches_like_stringmatchlen(
            pattern in "[ab*?\\[\\]^\\\\-]{0,10}",
            key in "[ab\\]^\\\\*-]{0,10}",
        ) {
            prop_assert_eq!(
                matches(&pattern, &key),
                glob_match(pattern.as_bytes(), key.as_bytes())
            );
        }

        /// The match long patterns take (ACL key patterns have no length
        /// limit) agrees too.
        #[test]
        fn long_patterns_match_like_stringmatchlen(
            pattern in "[ab*?\\[\\]^\\\\-]{0,10}",
            key in "[ab\\]^\\\\*-]{0,10}",
        ) {
            prop_assert_eq!(
                Glob::compile(pattern.as_bytes()).star_backtracking_match(key.as_bytes()),
                glob_match(pattern.as_bytes(), key.as_bytes())
            );
        }

        /// `may_form_lock_key` is exact: yes if and only if some filling
        /// forms a lock key. A shortest filling has at most one byte per
        /// pattern token, and each byte can be one of the pattern's own or
        /// `x` (outside every range the pattern alphabet can write).
        #[test]
        fn may_form_is_exact(
            pattern in "[ab:*?\\[\\]^-]{1,4}",
            prefix in "[ab:]{0,3}",
            suffix in "[ab:]{0,3}",
        ) {
            let pats = LockPatterns::new(&[pattern.as_str()]);
            let mut alphabet: Vec<char> = pattern.chars().collect();
            alphabet.push('x');
            alphabet.sort();
            alphabet.dedup();
            let mut fillings = vec![String::new()];
            let mut last = fillings.clone();
            for _ in 0..pattern.len() {
                last = last
                    .iter()
                    .flat_map(|f| alphabet.iter().map(move |c| format!("{f}{c}")))
                    .collect();
                fillings.extend(last.iter().cloned());
            }
            let some = fillings
                .iter()
                .any(|x| pats.is_lock_key(format!("{prefix}{x}{suffix}").as_bytes()));
            prop_assert_eq!(pats.may_form_lock_key(prefix.as_bytes(), suffix.as_bytes()), some);
        }
    }

    #[test]
    fn keys_a_sort_pattern_may_form() {
        let pats = LockPatterns::new(&["lock:*", "*:mutex", "job:[0-9]"]);
        for (prefix, suffix, may) in [
            ("lock:", "", true),
            ("lo", "", true),
            ("", "", true),
            ("lock:w_", "->f", true),
            ("weight_", "", true), // "weight_x:mutex"
            ("weight_", "_x", false),
            ("job:", "", true),
            ("job:", "1", true),
            ("job:", "x", true), // "job:a:mutex"
            ("job:", "y", false),
            ("jo", "", true),
            ("data:", ":mutex2", false),
        ] {
            assert_eq!(
                pats.may_form_lock_key(prefix.as_bytes(), suffix.as_bytes()),
                may,
                "{prefix}*{suffix}"
            );
        }
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
