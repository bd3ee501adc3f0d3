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

use crate::acl::Users;
use crate::command::{Classifier, LockPatterns, LockRules};
use crate::config::Config;
use crate::protocol::FrameLimits;
use crate::redlock::scripts::ScriptRegistry;
use crate::redlock::voter::VoterSpec;
use crate::redlock::{Engine, EngineConfig};

/// The parts of the proxy a reload replaces.
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
    /// The TLS listener's handshake configuration (its files re-read at a reload).
    pub(crate) tls_acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// The users and their permissions.
    pub(crate) users: Arc<Users>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("config", &self.config)
            .field("engine", &self.engine)
            .field("tls", &self.tls_acceptor.is_some())
            .finish_non_exhaustive()
    }
}

/// The TLS listener's configuration from `config`'s files; on failure (a
/// reload whose files broke) the running one, `old`, stays.
pub(crate) fn acceptor(
    config: &Config,
    old: Option<&tokio_rustls::TlsAcceptor>,
) -> Option<tokio_rustls::TlsAcceptor> {
    match config.tls.server() {
        Ok(server) => server.map(|s| tokio_rustls::TlsAcceptor::from(Arc::new(s))),
        Err((option, e)) => {
            tracing::error!(option, error = %e, "TLS: keeping the running certificate");
            old.cloned()
        }
    }
}

impl Live {
    /// The live parts for `config`, over `engine` and the learned `scripts`.
    pub(crate) fn new(
        config: Config,
        engine: Arc<Engine>,
        scripts: Arc<ScriptRegistry>,
        tls_acceptor: Option<tokio_rustls::TlsAcceptor>,
        users: Arc<Users>,
    ) -> Live {
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
            reply_timeout: config.passthrough.reply_timeout,
            max_output_buffer: config.limits.max_output_buffer,
            output_high_water: config.limits.output_high_water,
            max_query_buffer: config.limits.max_query_buffer,
            auth_required: users.auth_required(),
            proxy_auth: !config.server.requirepass.is_empty() || !config.users.is_empty(),
            client_identity: config.passthrough.identity == crate::config::Identity::Client,
            auth_limit: (
                config.server.auth_failure_limit,
                config.server.auth_failure_window,
            ),
            multiplex: config.passthrough.multiplex,
            cluster: config.passthrough.cluster,
            bind_ttl_less_locks: config.redlock.bind_ttl_less_locks,
        };
        Live {
            tls_acceptor,
            limits: config.limits.frame_limits(),
            config,
            classifier,
            engine,
            settings,
            users,
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
    "passthrough_cluster",
    "passthrough_reply_timeout",
    "max_client_memory",
    "health_interval",
    "quarantine_on_start",
    "scripts",
    "tls_listen",
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
    new.passthrough = old.passthrough.clone();
    new.limits.max_client_memory = old.limits.max_client_memory;
    new.redlock.health_interval = old.redlock.health_interval;
    new.redlock.quarantine_on_start = old.redlock.quarantine_on_start;
    new.redlock.scripts = old.redlock.scripts.clone();
    new.tls.listen.clone_from(&old.tls.listen);
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
        let mut config = effective(&old.config, new);
        let users = match Users::from_config(&config.server.requirepass, &config.users) {
            Ok(u) => Arc::new(u),
            Err(e) => {
                // Validated before a reload is taken; kept safe all the same.
                tracing::error!(error = %e, "users: keeping the running ones");
                config.users.clone_from(&old.config.users);
                config.server.requirepass = old.config.server.requirepass.clone();
                Arc::clone(&old.users)
            }
        };
        let depth = config.limits.max_nesting_depth;
        let voters = VoterSpec::from_config(&config.redlock, depth, self.tls_client.as_ref());
        let (engine, removed) = old.engine.reconfigured(
            EngineConfig::from(&config.redlock),
            voters,
            &self.masters_shutdown,
            &self.masters_tracker,
        );
        let scripts = Arc::clone(&old.classifier.scripts);
        let tls_acceptor = acceptor(&config, old.tls_acceptor.as_ref());
        if let Some(client) = &self.tls_client {
            match config.tls.client() {
                Ok(c) => client.replace(c),
                Err((option, e)) => {
                    tracing::error!(option, error = %e, "TLS: keeping the running client configuration");
                }
            }
        }
        self.live.store(Arc::new(Live::new(
            config,
            Arc::new(engine),
            scripts,
            tls_acceptor,
            users,
        )));
        self.generation.fetch_add(1, Ordering::Release);
        // Queued requests are delivered before they stop: operations under
        // way on the old engine still get their answers.
        for m in removed {
            m.stop();
        }
        report
    }
}
