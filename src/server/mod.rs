//! The listener and what all connections share.
//!
//! Shutdown (`shutdown.rs`): the token stops the accept loop and every
//! connection drains; connections still open at the deadline are cut; then the
//! master connections flush their queues (releases included) and the proxy
//! returns.

mod client_list;
mod clients;
mod cluster;
mod connection;
mod health;
mod http;
mod info;
mod live;
mod monitor;
mod multiplex;
mod prometheus;
mod session;
mod shutdown;
mod status;
mod warm;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arc_swap::ArcSwap;

use self::shutdown::ShutdownFlags;
use crate::backend::{Endpoint, Handshake};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::redlock::scripts::ScriptRegistry;
use crate::redlock::voter::VoterSpec;
use crate::redlock::{Engine, EngineConfig};
use crate::stream::Stream;
use crate::tls::TlsClient;

pub use live::{Live, Reload};

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// What a reload replaces: configuration, classification, engine, limits.
    pub(crate) live: ArcSwap<Live>,
    /// Bumped at each reload, so connections know to take the new [`Live`].
    pub(crate) generation: AtomicU64,
    /// Counters.
    pub(crate) metrics: Metrics,
    /// `ACL LOG` and the failed-login counts (the users are in [`Live`]).
    pub(crate) acl: crate::acl::AclState,
    /// The passthrough backend.
    pub(crate) backend: Endpoint,
    /// The shared backend connections, when multiplexing.
    pub(crate) multiplex: Option<multiplex::MultiplexPool>,
    /// A backend connection for the proxy's own requests (the data parts of
    /// split lock scripts), opened at first use.
    pub(crate) side: multiplex::MultiplexPool,
    /// The cluster router, when the backend is a Redis Cluster.
    pub(crate) cluster: Option<Arc<cluster::Cluster>>,
    /// A backend connection ready per protocol for the next client that
    /// needs one of its own (single backend only; see `warm.rs`).
    pub(crate) warm: Option<Arc<warm::Warm>>,
    /// The passthrough backend's version, once known (reported by HELLO).
    pub(crate) backend_version: RwLock<String>,
    /// A random value that makes resynchronisation markers unguessable.
    pub(crate) nonce: u64,
    /// Until when the backend holds writes (`CLIENT PAUSE ms WRITE`
    /// forwarded; [`multiplex::clock`] nanoseconds, 0: no pause known).
    writes_paused_until: AtomicU64,
    /// Shutdown state, read by every connection on every turn of its loop.
    pub(crate) shutdown: ShutdownFlags,
    /// The connected clients and their buffers.
    pub(crate) registry: Arc<clients::Clients>,
    /// The clients in `MONITOR`.
    pub(crate) monitors: Arc<monitor::Monitors>,
    /// What the health probes found.
    pub(crate) health: health::Health,
    /// When the proxy started (for `INFO`).
    pub(crate) started: Instant,
    /// What the status page's rates are computed from.
    pub(crate) status: status::Rates,
    /// The TLS client configuration of `rediss://` connections (a reload re-reads its files).
    pub(crate) tls_client: Option<TlsClient>,
    /// Stops the masters' connection tasks (after the clients, at shutdown).
    masters_shutdown: CancellationToken,
    /// The masters' connection tasks (a reload may add some).
    masters_tracker: TaskTracker,
    clients: AtomicUsize,
    next_id: AtomicU64,
}

/// A bound proxy, ready to run.
pub struct Proxy {
    /// The plain listener (none with `listen = ""`).
    listener: Option<TcpListener>,
    /// The TLS listener, when configured.
    tls_listener: Option<TcpListener>,
    /// The operations endpoint (`/metrics`, `/healthz`, `/readyz`), when configured.
    ops: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds the listener and starts the master connections (needs a Tokio runtime).
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        let users = crate::acl::Users::from_config(&config.server.requirepass, &config.users)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.0))?;
        let bind = |addr: &str| {
            let addr = addr.to_string();
            async move {
                match addr.as_str() {
                    "" => Ok(None),
                    a => TcpListener::bind(a).await.map(Some),
                }
            }
        };
        let listener = bind(&config.server.listen).await?;
        let tls_listener = bind(&config.tls.listen).await?;
        // Every rediss:// connection uses it; built even when none is
        // configured yet, since a reload may add one.
        let tls_client = config.tls.client().ok().map(TlsClient::new);
        let ops = match config.server.metrics_listen.as_str() {
            "" => None,
            addr => Some(http::bind(addr).await?),
        };
        let r = &config.redlock;
        let masters_shutdown = CancellationToken::new();
        let masters_tracker = TaskTracker::new();
        let depth = config.limits.max_nesting_depth;
        let voters = VoterSpec::from_config(r, depth, tls_client.as_ref());
        let engine = Engine::start(
            EngineConfig::from(r),
            voters,
            &masters_shutdown,
            &masters_tracker,
        );
        let shared = Arc::new(Shared::new(
            config,
            Arc::new(users),
            engine,
            tls_client,
            masters_shutdown,
            masters_tracker,
        ));
        Ok(Proxy {
            listener,
            tls_listener,
            ops,
            shared,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::other("the plain listener is off")),
        }
    }

    /// The address of the TLS listener, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address of the operations endpoint, when there is one.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What the connections share (for tests and the metrics endpoint).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Serves clients until `shutdown` is cancelled, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Proxy {
            listener,
            tls_listener,
            ops,
            shared,
        } = self;
        let tracker = TaskTracker::new();
        tokio::spawn(learn_backend_version(Arc::clone(&shared), shutdown.clone()));
        let cap = shared.config().limits.max_client_memory;
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
        tokio::spawn(health::probe_backend(Arc::clone(&shared), shutdown.clone()));
        if let Some(warm) = &shared.warm {
            warm.fill(crate::protocol::Proto::Resp2);
        }
        if let Some(cluster) = &shared.cluster {
            tokio::spawn(Arc::clone(cluster).maintain(shutdown.clone()));
        }
        if let Some(ops) = ops {
            tracker.spawn(http::serve(ops, Arc::clone(&shared), shutdown.clone()));
        }
        loop {
            let (accepted, tls) = tokio::select! {
                r = accept_on(&listener) => (r, false),
                r = accept_on(&tls_listener) => (r, true),
                _ = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, peer)) => accept(stream, peer, tls, &shared, &tracker),
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        drop(tls_listener);
        let timeout = shared.config().server.shutdown_timeout;
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
        shared.masters_shutdown.cancel();
        for v in shared.engine().voters() {
            v.stop();
        }
        shared.masters_tracker.close();
        let _ = tokio::time::timeout_at(started + timeout, shared.masters_tracker.wait()).await;
        tracing::info!("shutdown complete");
    }
}

async fn accept_on(l: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
) {
    let m = &shared.metrics;
    let live = shared.live.load();
    let max = live.config.server.max_clients;
    if shared.clients.fetch_add(1, Ordering::AcqRel) >= max {
        shared.clients.fetch_sub(1, Ordering::AcqRel);
        m.rejected.fetch_add(1, Ordering::Relaxed);
        // Like Redis: one error line, then close, without waiting for the
        // client (a TLS client just sees the connection close).
        if !tls {
            let mut buf = bytes::BytesMut::new();
            crate::errors::max_clients().encode(crate::protocol::Proto::Resp2, &mut buf);
            let _ = stream.try_write(&buf);
        }
        return;
    }
    m.accepted.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let keepalive = live.config.server.tcp_keepalive;
    if !keepalive.is_zero() {
        let ka = socket2::TcpKeepalive::new()
            .with_time(keepalive)
            .with_interval(keepalive / 3);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let profile = {
        use std::os::fd::AsRawFd;
        let local = stream.local_addr().unwrap_or(peer);
        client_list::Profile::new(peer, local, stream.as_raw_fd(), live.settings.default_db)
    };
    let acceptor = tls.then(|| live.tls_acceptor.clone()).flatten();
    let timeout = live.config.tls.handshake_timeout;
    let shared = Arc::clone(shared);
    tracker.spawn(async move {
        // The handshake runs in the client's own task, with a deadline: one
        // that stalls delays nobody else.
        let stream = match acceptor {
            None if tls => None,
            None => Some(Stream::from(stream)),
            Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => Some(Stream::from(tokio_rustls::TlsStream::Server(s))),
                Ok(Err(e)) => {
                    shared
                        .metrics
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(id, %peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    shared
                        .metrics
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(id, %peer, "TLS handshake timed out");
                    None
                }
            },
        };
        if let Some(stream) = stream {
            tracing::debug!(id, %peer, tls, "client connected");
            connection::serve(stream, id, Arc::clone(&shared), profile).await;
            tracing::debug!(id, %peer, "client closed");
        }
        shared.clients.fetch_sub(1, Ordering::AcqRel);
    });
}

impl Shared {
    /// The proxy-wide state for `config`, over masters already started.
    fn new(
        config: Config,
        users: Arc<crate::acl::Users>,
        engine: Engine,
        tls_client: Option<TlsClient>,
        masters_shutdown: CancellationToken,
        masters_tracker: TaskTracker,
    ) -> Shared {
        let backend = Endpoint::new(
            config.passthrough.url.clone(),
            config.passthrough.connect_timeout,
            config.limits.max_nesting_depth,
        )
        .with_tls(tls_client.clone());
        let acceptor = live::acceptor(&config, None);
        let p = &config.passthrough;
        let lanes = (p.max_shared_connections, p.stall_after);
        let multiplex = p
            .multiplex
            .then(|| multiplex::MultiplexPool::new(backend.clone(), lanes, p.reply_timeout));
        let scripts = Arc::new(ScriptRegistry::new(&config.redlock.scripts));
        let cluster = config.passthrough.cluster.then(|| {
            cluster::Cluster::new(
                config.passthrough.url.clone(),
                (
                    config.passthrough.connect_timeout,
                    config.passthrough.reply_timeout,
                ),
                config.limits.max_nesting_depth,
                tls_client.clone(),
                lanes,
            )
        });
        let warm = cluster.is_none().then(|| warm::Warm::new(backend.clone()));
        Shared {
            side: multiplex::MultiplexPool::new(backend.clone(), (1, lanes.1), p.reply_timeout),
            warm,
            cluster,
            backend,
            multiplex,
            acl: crate::acl::AclState::default(),
            live: ArcSwap::from_pointee(Live::new(
                config,
                Arc::new(engine),
                scripts,
                acceptor,
                users,
            )),
            tls_client,
            generation: AtomicU64::new(0),
            metrics: Metrics::default(),
            backend_version: RwLock::new("7.0.0".into()),
            nonce: fastrand::u64(..),
            writes_paused_until: AtomicU64::new(0),
            shutdown: ShutdownFlags::default(),
            registry: Arc::default(),
            monitors: Arc::default(),
            health: health::Health::default(),
            started: Instant::now(),
            status: status::Rates::default(),
            masters_shutdown,
            masters_tracker,
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// The configuration the proxy runs with (the live one: a reload replaces it).
    pub fn config(&self) -> LiveConfig {
        LiveConfig(self.live.load_full())
    }

    /// The proxy's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The lock engine and its masters (the live one).
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.live.load().engine)
    }

    /// A client paused the backend's writes for `ms` (`None`: unpaused).
    pub(crate) fn pause_writes(&self, ms: Option<u64>) {
        let until = ms.map_or(0, |ms| {
            multiplex::clock::now().saturating_add(ms.saturating_mul(1_000_000))
        });
        self.writes_paused_until.store(until, Ordering::Relaxed);
    }

    /// Whether a write pause a client asked for is in effect.
    pub(crate) fn writes_paused(&self) -> bool {
        let until = self.writes_paused_until.load(Ordering::Relaxed);
        until != 0 && multiplex::clock::now() < until
    }

    /// The shared backend connections' lanes, summed.
    pub(crate) fn lane_stats(&self) -> multiplex::LaneStats {
        let mut stats = multiplex::LaneStats::default();
        if let Some(pool) = &self.multiplex {
            pool.all().for_each(|l| stats.add(l));
        }
        if let Some(cluster) = &self.cluster {
            cluster.lane_stats(&mut stats);
        }
        stats
    }
}

/// Reads the backend's version once it answers, for HELLO replies (through
/// the backend's endpoint: a Sentinel-managed backend's master, a cluster's
/// seed node).
async fn learn_backend_version(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let attempt = async {
            let mut conn = shared.backend.connect(&Handshake::new()).await.ok()?;
            let args = [&b"INFO"[..], b"server"];
            crate::protocol::encode_command(conn.out(), args.into_iter());
            let reply = conn.read_reply().await.ok()?;
            let text = String::from_utf8_lossy(&reply).into_owned();
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

/// The configuration in effect, held for as long as the caller needs it.
#[derive(Debug)]
pub struct LiveConfig(Arc<Live>);

impl std::ops::Deref for LiveConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0.config
    }
}
