//! The listener and what all connections share.
//!
//! Shutdown (`shutdown.rs`): the token stops the accept loop and every
//! connection drains; connections still open at the deadline are cut; then the
//! master connections flush their queues (releases included) and the proxy
//! returns.

mod clients;
mod connection;
mod metrics_endpoint;
mod multiplex;
mod session;
mod shutdown;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::shutdown::ShutdownFlags;
use crate::backend::Endpoint;
use crate::command::{Classifier, LockPatterns, LockRules};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::FrameLimits;
use crate::redlock::master;
use crate::redlock::scripts::ScriptRegistry;
use crate::redlock::{Engine, EngineConfig};

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub(crate) config: Config,
    /// Request classification.
    pub(crate) classifier: Classifier,
    /// The lock engine.
    pub(crate) engine: Engine,
    /// Counters.
    pub(crate) metrics: Metrics,
    /// Framing limits.
    pub(crate) limits: FrameLimits,
    /// Client authentication.
    pub(crate) auth: crate::auth::Authenticator,
    /// What each connection takes from the configuration.
    pub(crate) settings: connection::Settings,
    /// The passthrough backend.
    pub(crate) backend: Endpoint,
    /// The shared backend connections, when multiplexing.
    pub(crate) multiplex: Option<multiplex::MultiplexPool>,
    /// The passthrough backend's version, once known (reported by HELLO).
    pub(crate) backend_version: RwLock<String>,
    /// A random value that makes resynchronisation markers unguessable.
    pub(crate) nonce: u64,
    /// Shutdown state, read by every connection on every turn of its loop.
    pub(crate) shutdown: ShutdownFlags,
    /// The connected clients and their buffers.
    pub(crate) registry: Arc<clients::Clients>,
    clients: AtomicUsize,
    next_id: AtomicU64,
}

/// A bound proxy, ready to run.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    masters_shutdown: CancellationToken,
    masters_tracker: TaskTracker,
}

impl Proxy {
    /// Binds the listener and starts the master connections (needs a Tokio runtime).
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(&config.server.listen).await?;
        let r = &config.redlock;
        let masters_shutdown = CancellationToken::new();
        let masters_tracker = TaskTracker::new();
        let depth = config.limits.max_nesting_depth;
        let endpoints = r
            .masters
            .iter()
            .map(|url| Endpoint::new(url.clone(), master::CONNECT_TIMEOUT, depth))
            .collect();
        let engine = Engine::start(
            EngineConfig::from(r),
            endpoints,
            &masters_shutdown,
            &masters_tracker,
        );
        let shared = Arc::new(Shared::new(config, engine));
        Ok(Proxy {
            listener,
            shared,
            masters_shutdown,
            masters_tracker,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the connections share (for tests and the metrics endpoint).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Serves clients until `shutdown` is cancelled, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Proxy {
            listener,
            shared,
            masters_shutdown,
            masters_tracker,
        } = self;
        let tracker = TaskTracker::new();
        tokio::spawn(learn_backend_version(Arc::clone(&shared), shutdown.clone()));
        let cap = shared.config.limits.max_client_memory;
        if cap > 0 {
            let s = Arc::clone(&shared);
            tokio::spawn(clients::guard_memory(
                Arc::clone(&shared.registry),
                cap,
                move |n, bytes| {
                    s.metrics
                        .client_memory_evictions
                        .fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(
                        clients = n,
                        bytes,
                        cap,
                        "clients closed: their buffers passed max_client_memory"
                    );
                },
                shutdown.clone(),
            ));
        }
        if !shared.config.server.metrics_listen.is_empty() {
            let addr = shared.config.server.metrics_listen.clone();
            tracker.spawn(metrics_endpoint::serve(
                addr,
                Arc::clone(&shared),
                shutdown.clone(),
            ));
        }
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, peer)) => accept(stream, peer, &shared, &tracker),
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        let timeout = shared.config.server.shutdown_timeout;
        let started = Instant::now();
        // Most of the budget for clients, the rest for the masters' queues.
        let client_deadline = started + timeout.mul_f64(0.8);
        shared
            .shutdown
            .set(&shared.shutdown.draining, &shared.registry);
        tracker.close();
        tracing::info!(
            clients = shared.clients.load(Ordering::Relaxed),
            "shutting down: draining connections"
        );
        if tokio::time::timeout_at(client_deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                clients = shared.clients.load(Ordering::Relaxed),
                "shutdown deadline reached: closing the remaining connections"
            );
            shared
                .shutdown
                .set(&shared.shutdown.forced, &shared.registry);
            tracker.wait().await;
        }
        masters_shutdown.cancel();
        for m in shared.engine.masters() {
            m.stop();
        }
        masters_tracker.close();
        let _ = tokio::time::timeout_at(started + timeout, masters_tracker.wait()).await;
        tracing::info!("shutdown complete");
    }
}

fn accept(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, tracker: &TaskTracker) {
    let m = &shared.metrics;
    let max = shared.config.server.max_clients;
    if shared.clients.fetch_add(1, Ordering::AcqRel) >= max {
        shared.clients.fetch_sub(1, Ordering::AcqRel);
        m.rejected.fetch_add(1, Ordering::Relaxed);
        // Like Redis: one error line, then close, without waiting for the client.
        let mut buf = bytes::BytesMut::new();
        crate::errors::max_clients().encode(crate::protocol::Proto::Resp2, &mut buf);
        let _ = stream.try_write(&buf);
        return;
    }
    m.accepted.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let keepalive = shared.config.server.tcp_keepalive;
    if !keepalive.is_zero() {
        let ka = socket2::TcpKeepalive::new()
            .with_time(keepalive)
            .with_interval(keepalive / 3);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    tracker.spawn(async move {
        tracing::debug!(id, %peer, "client connected");
        connection::serve(stream, id, Arc::clone(&shared)).await;
        shared.clients.fetch_sub(1, Ordering::AcqRel);
        tracing::debug!(id, %peer, "client closed");
    });
}

impl Shared {
    /// The proxy-wide state for `config`, over masters already started.
    fn new(config: Config, engine: Engine) -> Shared {
        let r = &config.redlock;
        let depth = config.limits.max_nesting_depth;
        let classifier = Classifier {
            patterns: LockPatterns::new(&r.lock_patterns),
            scripts: Arc::new(ScriptRegistry::new(&r.scripts)),
            lock_rules: LockRules {
                require_ttl: r.require_ttl,
                max_ttl: (!r.max_ttl.is_zero()).then_some(r.max_ttl),
            },
        };
        let backend = Endpoint::new(
            config.passthrough.url.clone(),
            config.passthrough.connect_timeout,
            depth,
        );
        let multiplex = config
            .passthrough
            .multiplex
            .then(|| multiplex::MultiplexPool::new(backend.clone()));
        let settings = connection::Settings {
            default_db: config.passthrough.url.db,
            idle_timeout: config.server.timeout,
            max_output_buffer: config.limits.max_output_buffer,
            output_high_water: config.limits.output_high_water,
            max_query_buffer: config.limits.max_query_buffer,
            auth_required: !config.server.requirepass.is_empty() || !config.users.is_empty(),
            multiplex: config.passthrough.multiplex,
        };
        Shared {
            settings,
            backend,
            multiplex,
            auth: crate::auth::Authenticator::new(&config.server.requirepass, &config.users),
            limits: config.limits.frame_limits(),
            config,
            classifier,
            engine,
            metrics: Metrics::default(),
            backend_version: RwLock::new("7.0.0".into()),
            nonce: fastrand::u64(..),
            shutdown: ShutdownFlags::default(),
            registry: Arc::default(),
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// The configuration the proxy runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The proxy's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The lock engine and its masters.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Reads the backend's version once it answers, for HELLO replies.
async fn learn_backend_version(shared: Arc<Shared>, shutdown: CancellationToken) {
    let url = shared.config.passthrough.url.to_url_string();
    loop {
        let attempt = async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let text: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await
                .ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_string())
        };
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
            if let Ok(mut w) = shared.backend_version.write() {
                *w = v;
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
