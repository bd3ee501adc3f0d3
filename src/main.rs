//! The `redlock-proxy` binary: parses the command line, loads the configuration,
//! and runs the proxy (or `dev` mode) until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redlock_proxy::Proxy;
use redlock_proxy::config::{Config, Flags, LogFormat};
use redlock_proxy::dev::{DevCluster, find_redis_server};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// mimalloc: faster small allocations across threads, and freed memory goes back
/// to the system after a burst (glibc's arenas keep it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t` (the same in v2 and
/// v3; the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the process before it goes back to the
/// system, in ms. mimalloc v3 waits 1 s (v2: 10 ms), and only purges when the
/// thread that freed allocates again: a burst of client buffers closed by
/// `max_client_memory` stayed in RSS for as long as the process was quiet,
/// twice the cap in `tests/memory`. 10 ms costs nothing measurable on the hot path.
const PURGE_DELAY_MS: std::os::raw::c_long = 10;

fn tune_allocator() {
    #[allow(unsafe_code, reason = "mimalloc's C API: sets an option, no pointers")]
    // SAFETY: `mi_option_set` takes plain integers and is thread-safe.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

/// A RESP proxy that runs Redis lock operations as RedLock across independent
/// masters and passes every other command through to a Redis backend.
#[derive(Parser, Debug)]
#[command(name = "redlock-proxy", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (see config/redlock-proxy.toml).
    #[arg(long, value_name = "FILE", env = "REDLOCK_PROXY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7379].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Passthrough backend: redis://[user:password@]host:port[/db].
    #[arg(long, value_name = "URL")]
    passthrough: Option<String>,
    /// The passthrough URL is a seed node of a Redis Cluster.
    #[arg(long)]
    passthrough_cluster: bool,
    /// A lock master (repeat for each): redis://[user:password@]host:port[/db].
    #[arg(long = "master", value_name = "URL")]
    masters: Vec<String>,
    /// A lock voter that is a Redis Cluster, by a seed node (repeat for each).
    #[arg(long = "master-cluster", value_name = "URL")]
    cluster_masters: Vec<String>,
    /// Lock key pattern, Redis glob syntax (repeatable; replaces the default lock:*).
    #[arg(long = "lock-pattern", value_name = "GLOB")]
    lock_patterns: Vec<String>,
    /// Address for the Prometheus /metrics endpoint.
    #[arg(long, value_name = "ADDR", global = true)]
    metrics_listen: Option<String>,
    /// Log format.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"], global = true)]
    log_format: Option<String>,
    /// Password clients must AUTH with (better set in the file or REDLOCK_PROXY_REQUIREPASS).
    #[arg(long, value_name = "PASSWORD", global = true)]
    requirepass: Option<String>,
    /// Address of the TLS listener.
    #[arg(long, value_name = "ADDR", global = true)]
    tls_listen: Option<String>,
    /// The TLS listener's certificate (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    tls_cert_file: Option<String>,
    /// The TLS listener's private key (PEM: PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", global = true)]
    tls_key_file: Option<String>,
    /// CA that verifies client certificates and rediss:// servers (default for servers: system roots).
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca_cert_file: Option<String>,
    /// Whether TLS clients must present a certificate signed by the CA.
    #[arg(long, value_name = "no|optional|yes", global = true)]
    tls_auth_clients: Option<String>,
    /// Certificate presented to rediss:// servers that require one (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    tls_client_cert_file: Option<String>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    tls_client_key_file: Option<String>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Start local redis-server masters and a passthrough backend, and the proxy in front of them.
    Dev {
        /// Number of masters (with --cluster-masters: of cluster voters).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=15))]
        masters: u16,
        /// Each voter is a small Redis Cluster (3 shards) instead of one master.
        #[arg(long)]
        cluster_masters: bool,
        /// Address to listen on [default: 127.0.0.1:7379].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// The redis-server binary [default: from PATH].
        #[arg(long, value_name = "PATH", env = "REDIS_SERVER")]
        redis_server: Option<PathBuf>,
    },
    /// Exit 0 if a running proxy's health endpoint answers 200 (for container
    /// health checks: the image needs no HTTP client).
    Healthcheck {
        /// The endpoint to ask.
        #[arg(
            long,
            value_name = "URL",
            default_value = "http://127.0.0.1:9121/healthz"
        )]
        url: String,
    },
    /// Check the configuration (file, environment, flags), print it and exit:
    /// 0 when valid, 2 with the usual one-line error when not.
    CheckConfig,
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(Sub::Healthcheck { url }) = &cli.command {
        return healthcheck(url);
    }
    let mut flags = Flags {
        listen: cli.listen.clone(),
        passthrough: cli.passthrough.clone(),
        passthrough_cluster: cli.passthrough_cluster,
        masters: cli.masters.clone(),
        cluster_masters: cli.cluster_masters.clone(),
        lock_patterns: cli.lock_patterns.clone(),
        metrics_listen: cli.metrics_listen.clone(),
        log_format: cli.log_format.clone(),
        requirepass: cli.requirepass.clone(),
        tls_listen: cli.tls_listen.clone(),
        tls_cert_file: cli.tls_cert_file.clone(),
        tls_key_file: cli.tls_key_file.clone(),
        tls_ca_cert_file: cli.tls_ca_cert_file.clone(),
        tls_auth_clients: cli.tls_auth_clients.clone(),
        tls_client_cert_file: cli.tls_client_cert_file.clone(),
        tls_client_key_file: cli.tls_client_key_file.clone(),
    };
    let dev = match &cli.command {
        Some(Sub::Dev {
            masters,
            cluster_masters,
            listen,
            redis_server,
        }) => {
            if listen.is_some() {
                flags.listen = listen.clone();
            }
            Some((*masters as usize, *cluster_masters, redis_server.clone()))
        }
        Some(Sub::Healthcheck { .. } | Sub::CheckConfig) | None => None,
    };
    let is_dev = dev.is_some();
    let config_path = cli.config.clone();
    let load = move || {
        Config::load(config_path.as_deref(), std::env::vars(), &flags)
            .and_then(|c| {
                if is_dev {
                    Ok(c)
                } else {
                    c.require_masters().map(|_| c)
                }
            })
            .and_then(|c| {
                // The users' rules need the command table: checked here,
                // so a bad rule fails `check-config`, a start and a reload alike.
                redlock_proxy::acl::validate(&c).map(|_| c).map_err(|e| {
                    redlock_proxy::config::ConfigError {
                        option: "users".into(),
                        source: String::new(),
                        message: e.0,
                    }
                })
            })
    };
    let config = load();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redlock-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Sub::CheckConfig) = cli.command {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }
    let log = init_logging(config.server.log_format, &config.server.log_level);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(config.server.worker_threads());
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redlock-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match dev {
            Some((masters, clusters, redis_server)) => {
                run_dev(config, (masters, clusters), redis_server).await
            }
            None => run(config, load, log).await,
        }
    })
}

/// `redlock-proxy healthcheck`: one GET, within 2 s.
fn healthcheck(url: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return ExitCode::FAILURE,
    };
    let status = rt.block_on(async {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().ok_or("no host")?.to_string();
        let port = uri.port_u16().unwrap_or(80);
        let get = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let io = hyper_util::rt::TokioIo::new(tcp);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            let req = hyper::Request::get(uri.path())
                .header(hyper::header::HOST, host.as_str())
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(std::io::Error::other)?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(resp.status())
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), get).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(format!("{url}: {e}")),
            Err(_) => Err(format!("{url}: no answer within 2 s")),
        }
    });
    match status {
        Ok(s) if s.is_success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("redlock-proxy healthcheck: {url}: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("redlock-proxy healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Changes what is logged, on a reload (`None` when `RUST_LOG` decides).
type LogLevel = Option<reload::Handle<EnvFilter, Registry>>;

/// Logs to stderr at `level`, unless `RUST_LOG` is set (it then decides, for good).
fn init_logging(format: LogFormat, level: &str) -> LogLevel {
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (EnvFilter::new(level), false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    // Colours only for a person at a terminal, never in a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(redlock_proxy::warnings::RecentWarnings);
    match format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
    (!from_env).then_some(handle)
}

/// On SIGHUP: reads the configuration again and applies what can change
/// live; an invalid one is logged and the running one kept.
async fn reload_on_sighup(
    shared: std::sync::Arc<redlock_proxy::server::Shared>,
    load: impl Fn() -> Result<Config, redlock_proxy::config::ConfigError>,
    log: LogLevel,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: no live reload");
        return;
    };
    while hup.recv().await.is_some() {
        let config = match load() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration is invalid; keeping the running one");
                continue;
            }
        };
        let level = config.server.log_level.clone();
        let report = shared.reload(config);
        if report.changed.contains(&"log_level") {
            match &log {
                Some(handle) => {
                    let _ = handle.reload(EnvFilter::new(&level));
                }
                None => tracing::warn!("SIGHUP: log_level ignored: RUST_LOG is set"),
            }
        }
        if !report.needs_restart.is_empty() {
            tracing::warn!(options = ?report.needs_restart, "SIGHUP: these options change only with a restart; their running values stay");
        }
        tracing::info!(changed = ?report.changed, config = %shared.config().summary(), "configuration reloaded");
    }
}

/// Cancels the returned token on the first SIGTERM or SIGINT; a second one exits at once.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        t.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    token
}

/// Binds the proxy and logs the one start line with the effective configuration.
async fn start(config: Config, who: &str) -> Result<(Proxy, String), ExitCode> {
    let summary = config.summary();
    let proxy = Proxy::bind(config).await.map_err(|e| {
        eprintln!("{who}: cannot listen: {e}");
        ExitCode::FAILURE
    })?;
    let addr = proxy
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), %addr, config = %summary, "{who} started");
    Ok((proxy, addr))
}

async fn run(
    config: Config,
    load: impl Fn() -> Result<Config, redlock_proxy::config::ConfigError> + Send + 'static,
    log: LogLevel,
) -> ExitCode {
    let shutdown = shutdown_on_signals();
    let (proxy, _) = match start(config, "redlock-proxy").await {
        Ok(p) => p,
        Err(code) => return code,
    };
    tokio::spawn(reload_on_sighup(proxy.shared(), load, log));
    proxy.run(shutdown).await;
    ExitCode::SUCCESS
}

async fn run_dev(
    mut config: Config,
    (masters, clusters): (usize, bool),
    redis_server: Option<PathBuf>,
) -> ExitCode {
    let shutdown = shutdown_on_signals();
    let binary = match find_redis_server(redis_server.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("redlock-proxy dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = tokio::select! {
        c = DevCluster::start_with(masters, clusters, &binary) => c,
        _ = shutdown.cancelled() => return ExitCode::FAILURE,
    };
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redlock-proxy dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.redlock.masters = cluster.masters.clone();
    config.redlock.cluster_masters = cluster.cluster_voters.clone();
    config.passthrough.url = cluster.backend.clone();
    // Said once in the banner, not as a warning per master.
    config.redlock.volatile_masters = true;
    let (proxy, addr) = match start(config, "redlock-proxy dev").await {
        Ok(p) => p,
        Err(code) => {
            cluster.stop().await;
            return code;
        }
    };
    let ports = cluster.ports();
    let (host, port) = addr.rsplit_once(':').unwrap_or(("127.0.0.1", "7379"));
    let host_flag = if host == "127.0.0.1" {
        String::new()
    } else {
        format!("-h {host} ")
    };
    let (voters, backend) = ports.split_at(ports.len() - 1);
    let kind = if clusters {
        format!(
            "cluster voters of {} shards each",
            redlock_proxy::dev::SHARDS
        )
    } else {
        "masters".to_string()
    };
    println!(
        "redlock-proxy dev: {masters} {kind} on ports {voters:?}, passthrough backend on port {}.\nThe masters run without persistence (appendonly no): a restarted one forgets its locks, which a real deployment avoids with appendonly yes.\nReady. Try: redis-cli {host_flag}-p {port}",
        backend[0]
    );
    proxy.run(shutdown).await;
    cluster.stop().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code, reason = "mimalloc's C API: reads an option")]
    fn the_purge_delay_option_is_the_one_named() {
        // SAFETY: plain integers.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc v3's documented default for purge_delay.
            assert_eq!(default, 1000);
        }
        tune_allocator();
        // SAFETY: plain integers.
        let now = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(now, PURGE_DELAY_MS);
    }
}
