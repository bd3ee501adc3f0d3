//! Entry points for fuzzing (`fuzz/`) and the corpus replay test: everything the
//! proxy does with bytes from a socket before any I/O, on arbitrary input.

use crate::command::{Classifier, Context, LockPatterns, LockRules, Multi};
use crate::protocol::{FrameLimits, ReplyScanner, RequestParser};
use crate::redlock::scripts::ScriptRegistry;

/// Parses `data` as a client's byte stream, fed in two pieces split at `split`
/// (so resumption is exercised too), classifying every request in several
/// connection states; then scans it as a stream of replies. Must never panic.
pub fn requests(data: &[u8], split: usize) {
    let classifier = Classifier {
        patterns: LockPatterns::new(&["lock:*", "l?ck:[a-c]*"]),
        scripts: std::sync::Arc::new(ScriptRegistry::new(&[])),
        lock_rules: LockRules::default(),
    };
    let limits = FrameLimits {
        max_bulk_len: 1 << 20,
        max_multibulk_len: 1024,
        max_inline_len: 4096,
        max_nesting_depth: 64,
    };
    for authenticated in [true, false] {
        let mut parser = RequestParser::new(limits);
        parser.set_authenticated(authenticated);
        let split = split.min(data.len());
        let mut buf: Vec<u8> = data[..split].to_vec();
        let mut rest = &data[split..];
        loop {
            match parser.parse(&buf) {
                Err(_) => break,
                Ok(None) => {
                    if rest.is_empty() {
                        break;
                    }
                    buf.extend_from_slice(rest);
                    rest = &[];
                }
                Ok(Some(n)) => {
                    let args = parser.args(&buf);
                    if !crate::protocol::ArgList::is_empty(&args) {
                        for ctx in [
                            Context {
                                authenticated,
                                ..Context::default()
                            },
                            Context {
                                multi: Multi::Queueing,
                                authenticated,
                                ..Context::default()
                            },
                            Context {
                                uncounted: true,
                                attached: true,
                                authenticated,
                                ..Context::default()
                            },
                            Context {
                                multi: Multi::Lost,
                                authenticated,
                                ..Context::default()
                            },
                        ] {
                            let _ = classifier.classify(&args, ctx);
                        }
                    }
                    buf.drain(..n);
                }
            }
        }
    }
    let mut scanner = ReplyScanner::new(64);
    let mut buf = data;
    while let Ok(Some(info)) = scanner.scan(buf) {
        buf = &buf[info.len..];
    }
}
