//! The layers of the configuration as TOML tables: the file, the
//! `REDLOCK_PROXY_*` environment and the command-line flags, each recording
//! where every option it sets came from (for one-line errors).

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// Values given on the command line, which override everything else.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--passthrough`.
    pub passthrough: Option<String>,
    /// `--passthrough-cluster`.
    pub passthrough_cluster: bool,
    /// `--master`, repeated.
    pub masters: Vec<String>,
    /// `--master-cluster`, repeated.
    pub cluster_masters: Vec<String>,
    /// `--lock-pattern`, repeated.
    pub lock_patterns: Vec<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--requirepass`.
    pub requirepass: Option<String>,
    /// `--tls-listen`.
    pub tls_listen: Option<String>,
    /// `--tls-cert-file`.
    pub tls_cert_file: Option<String>,
    /// `--tls-key-file`.
    pub tls_key_file: Option<String>,
    /// `--tls-ca-cert-file`.
    pub tls_ca_cert_file: Option<String>,
    /// `--tls-auth-clients`.
    pub tls_auth_clients: Option<String>,
    /// `--tls-client-cert-file`.
    pub tls_client_cert_file: Option<String>,
    /// `--tls-client-key-file`.
    pub tls_client_key_file: Option<String>,
}

/// What kind of value an option takes, for reading it from an environment variable.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    List,
}

/// Every option: environment name (after `REDLOCK_PROXY_`), TOML path, kind.
const OPTIONS: &[(&str, &str, &str, Kind)] = &[
    ("LISTEN", "server", "listen", Kind::Str),
    ("MAX_CLIENTS", "server", "max_clients", Kind::Int),
    ("TIMEOUT", "server", "timeout", Kind::Str),
    ("TCP_KEEPALIVE", "server", "tcp_keepalive", Kind::Str),
    ("SHUTDOWN_TIMEOUT", "server", "shutdown_timeout", Kind::Str),
    ("THREADS", "server", "threads", Kind::Int),
    ("LOG_FORMAT", "server", "log_format", Kind::Str),
    ("LOG_LEVEL", "server", "log_level", Kind::Str),
    ("METRICS_LISTEN", "server", "metrics_listen", Kind::Str),
    ("REQUIREPASS", "server", "requirepass", Kind::Str),
    (
        "AUTH_FAILURE_LIMIT",
        "server",
        "auth_failure_limit",
        Kind::Int,
    ),
    (
        "AUTH_FAILURE_WINDOW",
        "server",
        "auth_failure_window",
        Kind::Str,
    ),
    ("MAX_BULK_LEN", "limits", "max_bulk_len", Kind::Int),
    (
        "MAX_MULTIBULK_LEN",
        "limits",
        "max_multibulk_len",
        Kind::Int,
    ),
    ("MAX_INLINE_LEN", "limits", "max_inline_len", Kind::Int),
    (
        "MAX_NESTING_DEPTH",
        "limits",
        "max_nesting_depth",
        Kind::Int,
    ),
    ("MAX_QUERY_BUFFER", "limits", "max_query_buffer", Kind::Int),
    (
        "OUTPUT_HIGH_WATER",
        "limits",
        "output_high_water",
        Kind::Int,
    ),
    (
        "MAX_OUTPUT_BUFFER",
        "limits",
        "max_output_buffer",
        Kind::Int,
    ),
    (
        "MAX_CLIENT_MEMORY",
        "limits",
        "max_client_memory",
        Kind::Int,
    ),
    ("PASSTHROUGH", "passthrough", "url", Kind::Str),
    (
        "PASSTHROUGH_CONNECT_TIMEOUT",
        "passthrough",
        "connect_timeout",
        Kind::Str,
    ),
    (
        "PASSTHROUGH_MULTIPLEX",
        "passthrough",
        "multiplex",
        Kind::Bool,
    ),
    (
        "MAX_SHARED_CONNECTIONS",
        "passthrough",
        "max_shared_connections",
        Kind::Int,
    ),
    ("STALL_AFTER", "passthrough", "stall_after", Kind::Str),
    ("PASSTHROUGH_CLUSTER", "passthrough", "cluster", Kind::Bool),
    (
        "PASSTHROUGH_REPLY_TIMEOUT",
        "passthrough",
        "reply_timeout",
        Kind::Str,
    ),
    ("PASSTHROUGH_IDENTITY", "passthrough", "identity", Kind::Str),
    ("MASTERS", "redlock", "masters", Kind::List),
    ("CLUSTER_MASTERS", "redlock", "cluster_masters", Kind::List),
    ("LOCK_PATTERNS", "redlock", "lock_patterns", Kind::List),
    ("NODE_TIMEOUT", "redlock", "node_timeout", Kind::Str),
    ("OP_TIMEOUT", "redlock", "op_timeout", Kind::Str),
    ("DRIFT_FACTOR", "redlock", "drift_factor", Kind::Float),
    ("DRIFT_FLOOR", "redlock", "drift_floor", Kind::Str),
    ("MIN_VALIDITY", "redlock", "min_validity", Kind::Str),
    ("RETRY_COUNT", "redlock", "retry_count", Kind::Int),
    ("RETRY_DELAY", "redlock", "retry_delay", Kind::Str),
    ("REQUIRE_TTL", "redlock", "require_ttl", Kind::Bool),
    (
        "BIND_TTL_LESS_LOCKS",
        "redlock",
        "bind_ttl_less_locks",
        Kind::Bool,
    ),
    ("MAX_TTL", "redlock", "max_ttl", Kind::Str),
    ("HEALTH_INTERVAL", "redlock", "health_interval", Kind::Str),
    ("TLS_LISTEN", "tls", "listen", Kind::Str),
    ("TLS_CERT_FILE", "tls", "cert_file", Kind::Str),
    ("TLS_KEY_FILE", "tls", "key_file", Kind::Str),
    ("TLS_CA_CERT_FILE", "tls", "ca_cert_file", Kind::Str),
    ("TLS_AUTH_CLIENTS", "tls", "auth_clients", Kind::Str),
    ("TLS_CLIENT_CERT_FILE", "tls", "client_cert_file", Kind::Str),
    ("TLS_CLIENT_KEY_FILE", "tls", "client_key_file", Kind::Str),
    ("TLS_VERIFY_HOSTNAME", "tls", "verify_hostname", Kind::Bool),
    (
        "TLS_HANDSHAKE_TIMEOUT",
        "tls",
        "handshake_timeout",
        Kind::Str,
    ),
    (
        "QUARANTINE_ON_START",
        "redlock",
        "quarantine_on_start",
        Kind::Bool,
    ),
];

/// The environment variables that set options (without the prefix), in file order.
pub fn env_names() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().map(|o| o.0)
}

/// The prefix of every environment variable the proxy reads.
pub const ENV_PREFIX: &str = "REDLOCK_PROXY_";

/// Environment variables that are not options but are still ours.
const ENV_OTHER: &[&str] = &["CONFIG"];

/// One layer of options.
pub(super) type Table = toml::Table;

/// Where each set option came from, by dotted path.
pub(super) type Provenance = BTreeMap<String, String>;

fn set(
    table: &mut Table,
    prov: &mut Provenance,
    section: &str,
    key: &str,
    value: toml::Value,
    from: &str,
) {
    let sec = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(Table::new()));
    if let toml::Value::Table(t) = sec {
        t.insert(key.to_string(), value);
    }
    prov.insert(format!("{section}.{key}"), from.to_string());
}

/// Merges `over` into `base`, `over` winning.
pub(super) fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn env_value(name: &str, kind: Kind, raw: &str) -> Result<toml::Value, String> {
    let raw = raw.trim();
    Ok(match kind {
        Kind::Str => toml::Value::String(raw.to_string()),
        Kind::Int => toml::Value::Integer(
            raw.parse()
                .map_err(|_| format!("{name}={raw:?} is not an integer"))?,
        ),
        Kind::Float => toml::Value::Float(
            raw.parse()
                .map_err(|_| format!("{name}={raw:?} is not a number"))?,
        ),
        Kind::Bool => toml::Value::Boolean(match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(format!("{name}={raw:?} is not a boolean (true/false)")),
        }),
        Kind::List => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

/// The file's options.
pub(super) fn file_table(path: &Path, prov: &mut Provenance) -> Result<Table, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        option: "--config".into(),
        source: source.clone(),
        message: format!("cannot read the file: {e}"),
    })?;
    let table = text.parse::<Table>().map_err(|e| ConfigError {
        option: source.clone(),
        source: String::new(),
        message: toml_error_line(&text, &e),
    })?;
    for (section, v) in &table {
        if let toml::Value::Table(t) = v {
            for key in t.keys() {
                prov.insert(format!("{section}.{key}"), source.clone());
            }
        }
    }
    Ok(table)
}

/// The options set by `REDLOCK_PROXY_*` variables; an unknown one is an error.
pub(super) fn env_table(
    env: impl IntoIterator<Item = (String, String)>,
    prov: &mut Provenance,
) -> Result<Table, ConfigError> {
    let mut env_table = Table::new();
    for (name, value) in env {
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if ENV_OTHER.contains(&suffix) {
            continue;
        }
        let Some(&(_, section, key, kind)) = OPTIONS.iter().find(|o| o.0 == suffix) else {
            return Err(ConfigError {
                option: name.clone(),
                source: "the environment".into(),
                message: "unknown option (see config/redlock-proxy.toml for the list)".into(),
            });
        };
        let v = env_value(&name, kind, &value).map_err(|message| ConfigError {
            option: format!("{section}.{key}"),
            source: name.clone(),
            message,
        })?;
        set(&mut env_table, prov, section, key, v, &name);
    }
    Ok(env_table)
}

/// The options set by command-line flags.
pub(super) fn flag_table(flags: &Flags, prov: &mut Provenance) -> Table {
    let mut flag_table = Table::new();
    let s = |v: &str| toml::Value::String(v.to_string());
    let list = |v: &[String]| toml::Value::Array(v.iter().map(|x| s(x)).collect());
    if let Some(v) = &flags.listen {
        set(&mut flag_table, prov, "server", "listen", s(v), "--listen");
    }
    if let Some(v) = &flags.passthrough {
        set(
            &mut flag_table,
            prov,
            "passthrough",
            "url",
            s(v),
            "--passthrough",
        );
    }
    if flags.passthrough_cluster {
        let v = toml::Value::Boolean(true);
        let flag = "--passthrough-cluster";
        set(&mut flag_table, prov, "passthrough", "cluster", v, flag);
    }
    if !flags.masters.is_empty() {
        set(
            &mut flag_table,
            prov,
            "redlock",
            "masters",
            list(&flags.masters),
            "--master",
        );
    }
    if !flags.cluster_masters.is_empty() {
        let v = list(&flags.cluster_masters);
        let flag = "--master-cluster";
        set(&mut flag_table, prov, "redlock", "cluster_masters", v, flag);
    }
    if !flags.lock_patterns.is_empty() {
        let v = list(&flags.lock_patterns);
        set(
            &mut flag_table,
            prov,
            "redlock",
            "lock_patterns",
            v,
            "--lock-pattern",
        );
    }
    if let Some(v) = &flags.metrics_listen {
        set(
            &mut flag_table,
            prov,
            "server",
            "metrics_listen",
            s(v),
            "--metrics-listen",
        );
    }
    if let Some(v) = &flags.requirepass {
        set(
            &mut flag_table,
            prov,
            "server",
            "requirepass",
            s(v),
            "--requirepass",
        );
    }
    if let Some(v) = &flags.log_format {
        set(
            &mut flag_table,
            prov,
            "server",
            "log_format",
            s(v),
            "--log-format",
        );
    }
    for (value, key, flag) in [
        (&flags.tls_listen, "listen", "--tls-listen"),
        (&flags.tls_cert_file, "cert_file", "--tls-cert-file"),
        (&flags.tls_key_file, "key_file", "--tls-key-file"),
        (
            &flags.tls_ca_cert_file,
            "ca_cert_file",
            "--tls-ca-cert-file",
        ),
        (
            &flags.tls_auth_clients,
            "auth_clients",
            "--tls-auth-clients",
        ),
        (
            &flags.tls_client_cert_file,
            "client_cert_file",
            "--tls-client-cert-file",
        ),
        (
            &flags.tls_client_key_file,
            "client_key_file",
            "--tls-client-key-file",
        ),
    ] {
        if let Some(v) = value {
            set(&mut flag_table, prov, "tls", key, s(v), flag);
        }
    }
    flag_table
}

/// The field an "unknown field" message names.
pub(super) fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn toml_error_line(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("TOML syntax error on line {line}: {msg}")
        }
        None => format!("TOML syntax error: {msg}"),
    }
}
