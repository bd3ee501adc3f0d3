//! Configuration: defaults < TOML file < `REDLOCK_PROXY_*` environment < CLI flags.
//!
//! Every layer is turned into a TOML table, the tables are merged, and the result
//! is deserialized and validated once, so an error can name the option and the
//! layer it came from in one line. `config/redlock-proxy.toml` documents every
//! option; `tests/config.rs` checks that file against [`Config::default`].

mod duration;
mod redis_url;
mod scripts;
mod sources;
mod tls;
mod validate;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use redis_url::{RedisUrl, Sentinels};
pub use scripts::{ScriptConfig, ScriptFailure, ScriptKind, ScriptSha, ScriptSuccess};
pub use sources::{ENV_PREFIX, Flags, env_names};
pub use tls::TlsConfig;

pub use crate::auth::{Secret, User};
pub use crate::tls::ClientAuth;

use self::sources::{Provenance, Table, merge, unknown_field};
use crate::protocol::FrameLimits;

/// The longest lock pattern, in bytes (a compiled pattern's automaton states
/// fit in a `u128`).
pub const MAX_LOCK_PATTERN_LEN: usize = 127;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The client-facing listener.
    pub server: ServerConfig,
    /// Framing and buffer limits per client.
    pub limits: LimitsConfig,
    /// The backend that receives every command that is not a lock operation.
    pub passthrough: PassthroughConfig,
    /// The RedLock masters and algorithm parameters.
    pub redlock: RedlockConfig,
    /// Users who may authenticate (besides the default user of `requirepass`).
    pub users: Vec<User>,
    /// TLS: the TLS listener, and the files both sides use.
    pub tls: TlsConfig,
}

impl Config {
    /// Whether any master or the backend is a `rediss://` URL.
    pub fn upstream_tls(&self) -> bool {
        self.passthrough.url.tls
            || self.redlock.masters.iter().any(|m| m.tls)
            || self.redlock.cluster_masters.iter().any(|m| m.tls)
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Most clients connected at once.
    pub max_clients: usize,
    /// Close a client idle this long (0: never, like Redis's `timeout 0`).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// TCP keepalive interval for client sockets (0: off).
    #[serde(with = "duration")]
    pub tcp_keepalive: Duration,
    /// How long SIGTERM/SIGINT waits for in-flight commands before exiting.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Tokio worker threads (0: [`ServerConfig::worker_threads`] picks).
    pub threads: usize,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// What to log: a level (`info`, `debug`...) or `RUST_LOG`-style directives.
    /// `RUST_LOG`, when set, takes precedence. Reloadable.
    pub log_level: String,
    /// Address of the Prometheus `/metrics` endpoint (empty: off).
    pub metrics_listen: String,
    /// Password of the default user; clients must AUTH when set (empty: none).
    pub requirepass: Secret,
    /// Failed logins from one address within `auth_failure_window` after
    /// which its next tries are refused until the window ends (0: no limit).
    pub auth_failure_limit: u32,
    /// The window `auth_failure_limit` counts in.
    #[serde(with = "duration")]
    pub auth_failure_window: Duration,
}

impl ServerConfig {
    /// The worker threads to run: `threads`, or with 0 half the CPU cores (at
    /// least one). Measured on 2 cores shared with Redis and the clients, one
    /// thread passed 1.11× direct Redis's requests at one request per round
    /// trip where two passed 0.73×: every thread beyond what the proxy's share
    /// of the machine keeps busy adds wakeups across threads (a futex and a
    /// context switch each) instead of capacity. A proxy usually shares its
    /// host with a Redis or its clients; one with the cores to itself does
    /// best with `threads` set to their number (BENCHMARKS.md).
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7379".into(),
            max_clients: 10_000,
            timeout: Duration::ZERO,
            tcp_keepalive: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(5),
            threads: 0,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            metrics_listen: String::new(),
            requirepass: Secret::default(),
            auth_failure_limit: 10,
            auth_failure_window: Duration::from_secs(60),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest bulk string in a request (Redis `proto-max-bulk-len`).
    pub max_bulk_len: u64,
    /// Most elements in one request.
    pub max_multibulk_len: u64,
    /// Longest inline command.
    pub max_inline_len: usize,
    /// Deepest nesting of a reply the proxy frames (Redis sends some about
    /// 8,000 levels deep).
    pub max_nesting_depth: usize,
    /// Most bytes buffered for one client's unfinished requests (Redis `client-query-buffer-limit`).
    pub max_query_buffer: usize,
    /// Past this many buffered bytes, a client's requests (and the replies on
    /// its own backend connection) are no longer read until it drains.
    pub output_high_water: usize,
    /// Most bytes buffered for one client; past it the client is closed (0: no limit).
    pub max_output_buffer: usize,
    /// Most bytes buffered for all clients together; past it the clients
    /// holding the most are closed (Redis's `maxmemory-clients`; 0: no limit).
    pub max_client_memory: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let f = FrameLimits::default();
        LimitsConfig {
            max_bulk_len: f.max_bulk_len,
            max_multibulk_len: f.max_multibulk_len,
            max_inline_len: f.max_inline_len,
            max_nesting_depth: f.max_nesting_depth,
            max_query_buffer: 1024 * 1024 * 1024,
            output_high_water: 1024 * 1024,
            max_output_buffer: 512 * 1024 * 1024,
            max_client_memory: 256 * 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    /// The framing part of the limits.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_bulk_len: self.max_bulk_len,
            max_multibulk_len: self.max_multibulk_len,
            max_inline_len: self.max_inline_len,
            max_nesting_depth: self.max_nesting_depth,
        }
    }
}

/// `[passthrough]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassthroughConfig {
    /// The backend's URL.
    #[serde(deserialize_with = "url_de")]
    pub url: RedisUrl,
    /// How long opening a backend connection may take.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Pipeline stateless commands of all clients over shared connections; a
    /// client gets its own connection at its first stateful command.
    pub multiplex: bool,
    /// Shared connections per protocol (per master, with a cluster) that
    /// requests may spread over when one stalls, besides the control lane.
    pub max_shared_connections: usize,
    /// A shared connection whose requests have had no reply this long is
    /// stalled: new requests take another one.
    #[serde(with = "duration")]
    pub stall_after: Duration,
    /// The URL is a seed node of a Redis Cluster: commands are routed by hash
    /// slot to the master that serves it.
    pub cluster: bool,
    /// How long a backend connection (to the backend, or a cluster master)
    /// may send nothing back while it owes a reply that should come at once;
    /// past it the connection fails (its requests get an error). Requests
    /// that may wait on purpose (blocking commands, scripts, ...) are exempt.
    #[serde(with = "duration")]
    pub reply_timeout: Duration,
    /// Who the backend sees: the proxy's own identity (the URL's user) on
    /// every connection, or each client's own user (`client`: its
    /// connection logs in to the backend with the client's name and
    /// password, and shares nothing).
    pub identity: Identity,
}

/// `passthrough.identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// The proxy's identity, the backend URL's user.
    #[default]
    Proxy,
    /// The client's own user and password.
    Client,
}

impl Default for PassthroughConfig {
    fn default() -> Self {
        PassthroughConfig {
            #[allow(clippy::expect_used, reason = "a constant URL that parses")]
            url: RedisUrl::parse("redis://127.0.0.1:6379").expect("static URL"),
            connect_timeout: Duration::from_secs(1),
            multiplex: true,
            max_shared_connections: 4,
            stall_after: Duration::from_millis(10),
            cluster: false,
            reply_timeout: Duration::from_secs(5),
            identity: Identity::Proxy,
        }
    }
}

/// `[redlock]`.
#[derive(Debug, Clone, Deserialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent on/off options of the configuration file, each read on its own"
)]
#[serde(deny_unknown_fields, default)]
pub struct RedlockConfig {
    /// The independent masters locks are taken on.
    #[serde(deserialize_with = "urls_de")]
    pub masters: Vec<RedisUrl>,
    /// Voters that are Redis Clusters, each by a seed node: a key's vote is
    /// cast by the shard of its slot. The quorum is over all voters (these and
    /// `masters`).
    #[serde(deserialize_with = "urls_de")]
    pub cluster_masters: Vec<RedisUrl>,
    /// Keys matching any of these Redis globs are lock keys.
    pub lock_patterns: Vec<String>,
    /// How long an acquisition waits for the masters' votes (a safety bound:
    /// the wait eats the lock's validity).
    #[serde(with = "duration")]
    pub node_timeout: Duration,
    /// How long releases, extensions and reads wait for answers that decide them.
    #[serde(with = "duration")]
    pub op_timeout: Duration,
    /// Clock drift allowance, as a fraction of the TTL.
    pub drift_factor: f64,
    /// Clock drift allowance added to the fraction.
    #[serde(with = "duration")]
    pub drift_floor: Duration,
    /// A lock is granted only with at least this much validity left.
    #[serde(with = "duration")]
    pub min_validity: Duration,
    /// Extra acquisition attempts after a refusal (each measured afresh).
    pub retry_count: u32,
    /// Base delay between attempts (plus up to 50% jitter).
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// Refuse `SET key token NX` without an expiry.
    pub require_ttl: bool,
    /// Release a lock without expiry when the connection that took it ends
    /// (off: it stays until released or deleted, from any connection, as on
    /// Redis).
    pub bind_ttl_less_locks: bool,
    /// Longest TTL accepted (0: no limit).
    #[serde(with = "duration")]
    pub max_ttl: Duration,
    /// How often each master's identity (`run_id`) is checked, besides at
    /// every reconnect (the restart guard).
    #[serde(with = "duration")]
    pub health_interval: Duration,
    /// Quarantine every master at proxy start for `max_ttl`, since a master may
    /// have restarted just before (needs `max_ttl`).
    pub quarantine_on_start: bool,
    /// Extra lock scripts, by SHA1.
    pub scripts: Vec<ScriptConfig>,
    /// Set by `redlock-proxy dev`, whose masters run without persistence by
    /// choice (its banner says so once): their start lines are then
    /// information, not warnings. Not a configuration option.
    #[serde(skip)]
    pub volatile_masters: bool,
}

impl Default for RedlockConfig {
    fn default() -> Self {
        RedlockConfig {
            masters: Vec::new(),
            cluster_masters: Vec::new(),
            lock_patterns: vec!["lock:*".into()],
            node_timeout: Duration::from_millis(50),
            op_timeout: Duration::from_secs(1),
            drift_factor: 0.01,
            drift_floor: Duration::from_millis(2),
            min_validity: Duration::from_millis(1),
            retry_count: 0,
            retry_delay: Duration::from_millis(200),
            require_ttl: false,
            bind_ttl_less_locks: false,
            max_ttl: Duration::ZERO,
            health_interval: Duration::from_secs(1),
            quarantine_on_start: false,
            scripts: Vec::new(),
            volatile_masters: false,
        }
    }
}

fn url_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RedisUrl, D::Error> {
    let s = String::deserialize(d)?;
    RedisUrl::parse(&s).map_err(serde::de::Error::custom)
}

fn urls_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<RedisUrl>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| RedisUrl::parse(s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))))
        .collect()
}

/// A configuration error: one line naming the option and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted option name (`redlock.node_timeout`), or the file for syntax errors.
    pub option: String,
    /// Where the bad value came from (`--master`, `REDLOCK_PROXY_MASTERS`, the file).
    pub source: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.option)?;
        if !self.source.is_empty() {
            write!(f, " (from {})", self.source)?;
        }
        write!(f, ": {}", self.message.replace('\n', " "))
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Builds the configuration from a file (if any), the environment and flags,
    /// then validates it.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Flags,
    ) -> Result<Config, ConfigError> {
        let mut prov = Provenance::new();
        let mut table = match file {
            Some(path) => sources::file_table(path, &mut prov)?,
            None => Table::new(),
        };
        merge(&mut table, sources::env_table(env, &mut prov)?);
        merge(&mut table, sources::flag_table(flags, &mut prov));
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                // Unknown fields are reported at their parent; name the field itself.
                let inner = e.into_inner().to_string();
                // The deserializer appends "in `path`" on a second line; the path is said already.
                let inner = inner.lines().next().unwrap_or_default().to_string();
                let option = match unknown_field(&inner) {
                    Some(field) if path == "." => field.to_string(),
                    Some(field) if !path.ends_with(field) => format!("{path}.{field}"),
                    _ => path.clone(),
                };
                let option = option.split('[').next().unwrap_or(&option).to_string();
                ConfigError {
                    source: prov.get(&option).cloned().unwrap_or_default(),
                    option,
                    message: inner,
                }
            })?;
        config.validate().map_err(|(option, message)| ConfigError {
            source: prov.get(option).cloned().unwrap_or_default(),
            option: option.to_string(),
            message,
        })?;
        Ok(config)
    }

    /// Checks that masters are configured (they are required outside dev mode).
    pub fn require_masters(&self) -> Result<(), ConfigError> {
        if self.redlock.masters.is_empty() && self.redlock.cluster_masters.is_empty() {
            return Err(ConfigError {
                option: "redlock.masters".into(),
                source: String::new(),
                message: "at least one master is required (--master URL, REDLOCK_PROXY_MASTERS or [redlock] masters; or --master-cluster for a Redis Cluster voter); try `redlock-proxy dev` to run with local masters".into(),
            });
        }
        Ok(())
    }

    /// The effective configuration as (option, value) pairs, passwords
    /// redacted: for the start line and `PROXY CONFIG`.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let s = &self.server;
        let l = &self.limits;
        let p = &self.passthrough;
        let r = &self.redlock;
        let d = |d: Duration| format!("{d:?}");
        let masters: Vec<String> = r.masters.iter().map(|m| m.to_string()).collect();
        let clusters: Vec<String> = r.cluster_masters.iter().map(|m| m.to_string()).collect();
        let users: Vec<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        vec![
            ("listen", s.listen.clone()),
            ("max_clients", s.max_clients.to_string()),
            ("timeout", d(s.timeout)),
            ("tcp_keepalive", d(s.tcp_keepalive)),
            ("shutdown_timeout", d(s.shutdown_timeout)),
            ("threads", s.threads.to_string()),
            ("log_format", format!("{:?}", s.log_format)),
            ("log_level", s.log_level.clone()),
            ("metrics_listen", s.metrics_listen.clone()),
            ("max_bulk_len", l.max_bulk_len.to_string()),
            ("max_multibulk_len", l.max_multibulk_len.to_string()),
            ("max_inline_len", l.max_inline_len.to_string()),
            ("max_nesting_depth", l.max_nesting_depth.to_string()),
            ("max_query_buffer", l.max_query_buffer.to_string()),
            ("output_high_water", l.output_high_water.to_string()),
            ("max_output_buffer", l.max_output_buffer.to_string()),
            ("max_client_memory", l.max_client_memory.to_string()),
            ("passthrough", p.url.to_string()),
            ("passthrough_connect_timeout", d(p.connect_timeout)),
            ("multiplex", p.multiplex.to_string()),
            (
                "max_shared_connections",
                p.max_shared_connections.to_string(),
            ),
            ("stall_after", d(p.stall_after)),
            ("passthrough_cluster", p.cluster.to_string()),
            ("passthrough_reply_timeout", d(p.reply_timeout)),
            (
                "passthrough_identity",
                format!("{:?}", p.identity).to_lowercase(),
            ),
            ("masters", masters.join(",")),
            ("cluster_masters", clusters.join(",")),
            ("lock_patterns", r.lock_patterns.join(",")),
            ("node_timeout", d(r.node_timeout)),
            ("op_timeout", d(r.op_timeout)),
            ("drift_factor", r.drift_factor.to_string()),
            ("drift_floor", d(r.drift_floor)),
            ("min_validity", d(r.min_validity)),
            ("retry_count", r.retry_count.to_string()),
            ("retry_delay", d(r.retry_delay)),
            ("require_ttl", r.require_ttl.to_string()),
            ("max_ttl", d(r.max_ttl)),
            ("health_interval", d(r.health_interval)),
            ("quarantine_on_start", r.quarantine_on_start.to_string()),
            ("scripts", r.scripts.len().to_string()),
            (
                "requirepass",
                if s.requirepass.is_empty() {
                    "none"
                } else {
                    "***"
                }
                .to_string(),
            ),
            ("users", users.join(",")),
            ("auth_failure_limit", s.auth_failure_limit.to_string()),
            ("auth_failure_window", d(s.auth_failure_window)),
            ("tls_listen", self.tls.listen.clone()),
            ("tls_cert_file", self.tls.cert_file.clone()),
            ("tls_key_file", self.tls.key_file.clone()),
            ("tls_ca_cert_file", self.tls.ca_cert_file.clone()),
            (
                "tls_auth_clients",
                format!("{:?}", self.tls.auth_clients).to_lowercase(),
            ),
            ("tls_client_cert_file", self.tls.client_cert_file.clone()),
            ("tls_client_key_file", self.tls.client_key_file.clone()),
            ("tls_verify_hostname", self.tls.verify_hostname.to_string()),
            ("tls_handshake_timeout", d(self.tls.handshake_timeout)),
        ]
    }

    /// The effective configuration in one line, passwords redacted.
    pub fn summary(&self) -> String {
        let pairs: Vec<String> = self
            .pairs()
            .into_iter()
            .map(|(k, v)| {
                if v.contains(' ') || v.is_empty() {
                    format!("{k}={v:?}")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        pairs.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], flags: &Flags) -> Result<Config, ConfigError> {
        Config::load(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            flags,
        )
    }

    #[test]
    fn defaults() {
        let c = load(&[], &Flags::default()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7379");
        assert_eq!(c.server.max_clients, 10_000);
        assert_eq!(c.redlock.lock_patterns, ["lock:*"]);
        assert_eq!(c.redlock.node_timeout, Duration::from_millis(50));
    }

    #[test]
    fn flags_beat_env() {
        let flags = Flags {
            listen: Some("127.0.0.1:1234".into()),
            ..Flags::default()
        };
        let c = load(
            &[
                ("REDLOCK_PROXY_LISTEN", "127.0.0.1:999"),
                ("REDLOCK_PROXY_NODE_TIMEOUT", "20ms"),
                ("REDLOCK_PROXY_MASTERS", "redis://a:1, redis://b:2"),
            ],
            &flags,
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:1234");
        assert_eq!(c.redlock.node_timeout, Duration::from_millis(20));
        assert_eq!(c.redlock.masters.len(), 2);
    }

    #[test]
    fn errors_name_the_option_and_source() {
        let e = load(&[("REDLOCK_PROXY_NODE_TIMEOUT", "fast")], &Flags::default()).unwrap_err();
        assert_eq!(e.option, "redlock.node_timeout");
        assert_eq!(e.source, "REDLOCK_PROXY_NODE_TIMEOUT");
        let e = load(&[("REDLOCK_PROXY_MAX_CLIENTS", "many")], &Flags::default()).unwrap_err();
        assert_eq!(e.option, "server.max_clients");
        let e = load(&[("REDLOCK_PROXY_NOPE", "1")], &Flags::default()).unwrap_err();
        assert_eq!(e.option, "REDLOCK_PROXY_NOPE");
        let flags = Flags {
            masters: vec!["nope".into()],
            ..Flags::default()
        };
        let e = load(&[], &flags).unwrap_err();
        assert_eq!(
            (e.option.as_str(), e.source.as_str()),
            ("redlock.masters", "--master")
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn declared_scripts_are_typed_at_load() {
        let file = |body: &str| {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, body.as_bytes()).unwrap();
            f
        };
        let good = file(
            "[[redlock.scripts]]\nsha1 = \"0123456789ABCDEF0123456789abcdef01234567\"\nkind = \"extend\"\nttl_arg = 3\n",
        );
        let c = Config::load(Some(good.path()), [], &Flags::default()).unwrap();
        let sc = &c.redlock.scripts[0];
        assert_eq!(sc.sha1.as_str(), "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(
            (sc.kind, sc.ttl_arg.map(|n| n.get())),
            (ScriptKind::Extend, Some(3))
        );
        for (body, needle) in [
            ("sha1 = \"abc\"\nkind = \"release\"", "is not 40 hex digits"),
            (
                "sha1 = \"0123456789abcdef0123456789abcdef01234567\"\nkind = \"unlock\"",
                "unknown variant `unlock`",
            ),
            (
                "sha1 = \"0123456789abcdef0123456789abcdef01234567\"\nkind = \"extend\"\nttl_arg = 0",
                "nonzero",
            ),
        ] {
            let f = file(&format!("[[redlock.scripts]]\n{body}\n"));
            let e = Config::load(Some(f.path()), [], &Flags::default()).unwrap_err();
            assert_eq!(e.option, "redlock.scripts", "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
    }
}
