//! Error logs of one master, rate-limited: a master that flaps warns at most
//! every [`LOG_EVERY`](super::LOG_EVERY).

use tokio::time::Instant;

use super::LOG_EVERY;
use crate::config::RedisUrl;

/// Rate-limits error logs for one master.
#[derive(Default)]
pub(super) struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
    failures: u64,
}

impl LogLimiter {
    /// A connection is up: says so if failures came before. The rate limit's
    /// window stays, so a master that flaps warns at most every [`LOG_EVERY`].
    pub(super) fn connected(&mut self, url: &RedisUrl) {
        if self.failures > 0 {
            tracing::info!(master = %url, failures = self.failures, "master reconnected");
        } else {
            tracing::debug!(master = %url, "master connected");
        }
        self.failures = 0;
    }

    pub(super) fn error(&mut self, url: &RedisUrl, error: &str) {
        self.failures += 1;
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => self.suppressed += 1,
            _ => {
                tracing::warn!(master = %url, error, suppressed = self.suppressed, "master unavailable");
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}
