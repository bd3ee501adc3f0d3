//! What a configuration reload (SIGHUP) can change while clients stay
//! connected, swapped as one [`Live`]: lock patterns and rules, the engine
//! (timeouts, drift, retries, `max_ttl`, the master list), and the limits of
//! new connections. Connections pick the new one up before their next request;
//! lock operations under way finish on the engine they started on. Options
//! that cannot change live keep their running values and are logged as
//! needing a restart.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Shared, connection};
use crate::backend::Endpoint;
use crate::command::{Classifier, LockPatterns, LockRules};
use crate::config::Config;
use crate::protocol::FrameLimits;
use crate::redlock::master;
use crate::redlock::scripts::ScriptRegistry;
use crate::redlock::{Engine, EngineConfig};

/// The parts of the proxy a reload replaces.
#[derive(Debug)]
pub struct Live {
    /// The configuration in effect.
    pub(crate) config: Config,
    /// Request classification.
    pub(crate) classifier: Classifier,
    /// The lock engine.
    pub(crate) engine: Arc<Engine>,
    /// What each new connection takes from the configuration.
    pub(crate) settings: connection::Settings,
    /// Framing limits of new connections.
    pub(crate) limits: FrameLimits,
}

impl Live {
    /// The live parts for `config`, over `engine` and the learned `scripts`.
    pub(crate) fn new(config: Config, engine: Arc<Engine>, scripts: Arc<ScriptRegistry>) -> Live {
        let r = &config.redlock;
        let classifier = Classifier {
            patterns: LockPatterns::new(&r.lock_patterns),
            scripts,
            lock_rules: LockRules {
                require_ttl: r.require_ttl,
                max_ttl: (!r.max_ttl.is_zero()).then_some(r.max_ttl),
            },
        };
        let settings = connection::Settings {
            default_db: config.passthrough.url.db,
            idle_timeout: config.server.timeout,
            max_output_buffer: config.limits.max_output_buffer,
            output_high_water: config.limits.output_high_water,
            max_query_buffer: config.limits.max_query_buffer,
            auth_required: !config.server.requirepass.is_empty() || !config.users.is_empty(),
            multiplex: config.passthrough.multiplex,
        };
        Live {
            limits: config.limits.frame_limits(),
            config,
            classifier,
            engine,
            settings,
        }
    }
}

/// The options a reload cannot change (they keep their running values).
const NEEDS_RESTART: &[&str] = &[
    "listen",
    "threads",
    "log_format",
    "metrics_listen",
    "passthrough",
    "passthrough_connect_timeout",
    "multiplex",
    "max_client_memory",
    "health_interval",
    "quarantine_on_start",
    "scripts",
    "requirepass",
    "users",
];

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// Options now in effect with new values.
    pub changed: Vec<&'static str>,
    /// Options whose new values need a restart (the running ones stay).
    pub needs_restart: Vec<&'static str>,
}

/// `new`, with the options a reload cannot change taken from `old`.
fn effective(old: &Config, mut new: Config) -> Config {
    new.server.listen.clone_from(&old.server.listen);
    new.server.threads = old.server.threads;
    new.server.log_format = old.server.log_format;
    new.server
        .metrics_listen
        .clone_from(&old.server.metrics_listen);
    new.server.requirepass = old.server.requirepass.clone();
    new.passthrough = old.passthrough.clone();
    new.limits.max_client_memory = old.limits.max_client_memory;
    new.redlock.health_interval = old.redlock.health_interval;
    new.redlock.quarantine_on_start = old.redlock.quarantine_on_start;
    new.redlock.scripts = old.redlock.scripts.clone();
    new.users = old.users.clone();
    new
}

impl Shared {
    /// Applies a new configuration (already validated): what can change
    /// live, changes; the rest is reported.
    pub fn reload(&self, new: Config) -> Reload {
        let old = self.live.load_full();
        let before = old.config.pairs();
        let after = new.pairs();
        let mut report = Reload::default();
        for ((name, was), (_, now)) in before.iter().zip(&after) {
            if was != now {
                if NEEDS_RESTART.contains(name) {
                    report.needs_restart.push(name);
                } else {
                    report.changed.push(name);
                }
            }
        }
        let config = effective(&old.config, new);
        let depth = config.limits.max_nesting_depth;
        let endpoints = config
            .redlock
            .masters
            .iter()
            .map(|url| Endpoint::new(url.clone(), master::CONNECT_TIMEOUT, depth))
            .collect();
        let (engine, removed) = old.engine.reconfigured(
            EngineConfig::from(&config.redlock),
            endpoints,
            &self.masters_shutdown,
            &self.masters_tracker,
        );
        let scripts = Arc::clone(&old.classifier.scripts);
        self.live
            .store(Arc::new(Live::new(config, Arc::new(engine), scripts)));
        self.generation.fetch_add(1, Ordering::Release);
        // Queued requests are delivered before they stop: operations under
        // way on the old engine still get their answers.
        for m in removed {
            m.stop();
        }
        report
    }
}
