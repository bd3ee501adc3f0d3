//! The checks of values that deserialized but are not sensible, run once at
//! load: each failure names its option.

use std::time::Duration;

use super::{ClientAuth, Config, MAX_LOCK_PATTERN_LEN};

impl Config {
    /// Checks the values that deserialized but are not sensible. Masters may be
    /// empty here (dev mode supplies its own); [`Config::require_masters`] checks them.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let s = &self.server;
        let t = &self.tls;
        if s.listen.is_empty() && t.listen.is_empty() {
            return Err((
                "server.listen",
                "\"\" turns the plain listener off, so tls.listen must be set".into(),
            ));
        }
        if !s.listen.is_empty() {
            check_addr(&s.listen).map_err(|m| ("server.listen", m))?;
        }
        if !t.listen.is_empty() {
            check_addr(&t.listen).map_err(|m| ("tls.listen", m))?;
        }
        if t.auth_clients != ClientAuth::No && t.ca_cert_file.is_empty() {
            return Err((
                "tls.auth_clients",
                "verifying client certificates needs tls.ca_cert_file".into(),
            ));
        }
        if t.handshake_timeout.is_zero() {
            return Err(("tls.handshake_timeout", "must be more than 0".into()));
        }
        // Every file is read and checked now, before anything binds.
        t.server()?;
        if self.upstream_tls()
            || !t.ca_cert_file.is_empty()
            || !t.client_cert_file.is_empty()
            || !t.client_key_file.is_empty()
        {
            t.client()?;
        }
        if !s.metrics_listen.is_empty() {
            check_addr(&s.metrics_listen).map_err(|m| ("server.metrics_listen", m))?;
        }
        if s.max_clients == 0 {
            return Err(("server.max_clients", "must be at least 1".into()));
        }
        if s.threads > 1024 {
            return Err((
                "server.threads",
                "must be between 0 (one per core) and 1024".into(),
            ));
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_bulk_len", l.max_bulk_len),
            ("limits.max_multibulk_len", l.max_multibulk_len),
            ("limits.max_inline_len", l.max_inline_len as u64),
            ("limits.max_nesting_depth", l.max_nesting_depth as u64),
            ("limits.max_query_buffer", l.max_query_buffer as u64),
            ("limits.output_high_water", l.output_high_water as u64),
        ] {
            if v == 0 {
                return Err((name, "must be at least 1".into()));
            }
        }
        if l.max_nesting_depth > 100_000 {
            return Err(("limits.max_nesting_depth", "must be at most 100000".into()));
        }
        if self.passthrough.connect_timeout.is_zero() {
            return Err(("passthrough.connect_timeout", "must be more than 0".into()));
        }
        let p = &self.passthrough;
        if !(1..=64).contains(&p.max_shared_connections) {
            return Err((
                "passthrough.max_shared_connections",
                "must be between 1 and 64".into(),
            ));
        }
        if p.stall_after < Duration::from_millis(1) {
            return Err(("passthrough.stall_after", "must be at least 1ms".into()));
        }
        if self.passthrough.reply_timeout.is_zero() {
            return Err(("passthrough.reply_timeout", "must be more than 0".into()));
        }
        if self.passthrough.cluster && self.passthrough.url.db != 0 {
            return Err((
                "passthrough.url",
                "a cluster has database 0 only: drop the /db from the URL".into(),
            ));
        }
        let r = &self.redlock;
        let voters = r.masters.len() + r.cluster_masters.len();
        if voters > 64 {
            return Err((
                "redlock.masters",
                format!("{voters} voters: at most 64 are supported"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (m, option) in r.masters.iter().map(|m| (m, "redlock.masters")).chain(
            r.cluster_masters
                .iter()
                .map(|m| (m, "redlock.cluster_masters")),
        ) {
            if !seen.insert(m.addr()) {
                return Err((option, format!("{} is listed twice", m.addr())));
            }
        }
        if self.passthrough.identity == super::Identity::Client {
            if self.passthrough.cluster {
                return Err((
                    "passthrough.identity",
                    "'client' needs a single backend: with a cluster, the proxy logs in to every node as itself".into(),
                ));
            }
            if self.users.is_empty() && self.server.requirepass.is_empty() {
                return Err((
                    "passthrough.identity",
                    "'client' passes on the users the proxy logs in: configure [[users]] or requirepass (without them, AUTH already goes to the backend)".into(),
                ));
            }
        }
        if self.passthrough.cluster && self.passthrough.url.sentinel.is_some() {
            return Err((
                "passthrough.url",
                "a cluster is reached through a seed node, not Sentinel: use redis:// with --passthrough-cluster".into(),
            ));
        }
        if let Some(c) = r.cluster_masters.iter().find(|c| c.sentinel.is_some()) {
            return Err((
                "redlock.cluster_masters",
                format!("{c}: a cluster voter is named by a seed node (redis://), not Sentinel"),
            ));
        }
        if let Some(c) = r.cluster_masters.iter().find(|c| c.db != 0) {
            return Err((
                "redlock.cluster_masters",
                format!(
                    "{}: a cluster has database 0 only: drop the /db from the URL",
                    c.addr()
                ),
            ));
        }
        if r.lock_patterns.is_empty() || r.lock_patterns.iter().any(|p| p.is_empty()) {
            return Err((
                "redlock.lock_patterns",
                "needs at least one non-empty pattern".into(),
            ));
        }
        if let Some(p) = r
            .lock_patterns
            .iter()
            .find(|p| p.len() > MAX_LOCK_PATTERN_LEN)
        {
            return Err((
                "redlock.lock_patterns",
                format!(
                    "{} bytes in {p:?}: a pattern has at most {MAX_LOCK_PATTERN_LEN}",
                    p.len()
                ),
            ));
        }
        if r.node_timeout.is_zero() {
            return Err(("redlock.node_timeout", "must be more than 0".into()));
        }
        if r.op_timeout.is_zero() {
            return Err(("redlock.op_timeout", "must be more than 0".into()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.server.log_level) {
            return Err((
                "server.log_level",
                format!("{:?}: {e}", self.server.log_level),
            ));
        }
        if r.health_interval.is_zero() {
            return Err(("redlock.health_interval", "must be more than 0".into()));
        }
        if r.quarantine_on_start && r.max_ttl.is_zero() {
            return Err((
                "redlock.quarantine_on_start",
                "needs max_ttl: without it no quarantine has an end".into(),
            ));
        }
        if !(0.0..0.5).contains(&r.drift_factor) || r.drift_factor.is_nan() {
            return Err((
                "redlock.drift_factor",
                format!("{} is not in [0, 0.5)", r.drift_factor),
            ));
        }
        Ok(())
    }
}

fn check_addr(addr: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{addr:?} resolves to no address")),
        Err(e) => Err(format!("{addr:?} is not a host:port address ({e})")),
    }
}
