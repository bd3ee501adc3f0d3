//! The last warnings and errors the proxy logged, for the status page: a
//! `tracing` layer that keeps a bounded ring of them (the process's log is
//! where they all go; this only keeps the most recent).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many are kept.
pub const KEPT: usize = 20;

/// One logged warning or error.
#[derive(Debug, Clone)]
pub struct Warning {
    /// When it was logged.
    pub at: SystemTime,
    /// `WARN` or `ERROR`.
    pub level: Level,
    /// Its message and fields, as one line.
    pub text: String,
}

static RECENT: Mutex<VecDeque<Warning>> = Mutex::new(VecDeque::new());

/// The warnings and errors kept, oldest first.
pub fn recent() -> Vec<Warning> {
    RECENT
        .lock()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default()
}

/// Keeps each warning and error logged through it.
#[derive(Debug, Default)]
pub struct RecentWarnings;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RecentWarnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        if let Ok(mut recent) = RECENT.lock() {
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back(Warning {
                at: SystemTime::now(),
                level,
                text: line.0,
            });
        }
    }
}
