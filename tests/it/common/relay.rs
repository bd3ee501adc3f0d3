//! A TCP relay between the proxy and a master that can add latency, blackhole
//! the link (stop forwarding in both directions, holding the bytes, as a network
//! partition does to a live TCP connection), or sever its connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does with bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Forward after a delay.
    Delay(Duration),
    /// Hold everything until the mode changes.
    Blackhole,
}

/// A running relay.
pub struct Relay {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped to close every connection relayed so far.
    severed: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let (severed, cut) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut cut = cut.clone();
                cut.mark_unchanged();
                tokio::spawn(pump(cr, sw, rx.clone(), cut.clone()));
                tokio::spawn(pump(sr, cw, rx.clone(), cut));
            }
        });
        Relay {
            port,
            mode,
            severed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }

    /// Closes every connection relayed so far; bytes held are lost, as when a
    /// middlebox drops a connection. New connections are relayed as before.
    pub fn sever(&self) {
        self.severed.send_modify(|n| *n += 1);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    mut cut: watch::Receiver<u64>,
) {
    tokio::select! {
        _ = forward(from, to, mode) => {}
        _ = cut.changed() => {} // dropping both halves closes the connection
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let m = *mode.borrow_and_update();
            match m {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
