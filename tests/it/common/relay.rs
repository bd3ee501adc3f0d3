//! A TCP relay (between the proxy and a master, or a client and the proxy)
//! that can add latency, blackhole the link in both directions or one
//! (holding the bytes, as a network partition does to a live TCP
//! connection), cut it in the middle of a reply, or sever its connections
//! (closed, or reset).

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
    /// Hold what goes to the target (requests); let replies through.
    HoldRequests,
    /// Hold what comes back (replies); let requests through.
    HoldReplies,
}

/// A running relay.
pub struct Relay {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped to close every connection relayed so far (how: the latest
    /// [`Cut`]).
    severed: watch::Sender<(u64, Cut)>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let (severed, cut) = watch::channel((0u64, Cut::Close));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut cut = cut.clone();
                cut.mark_unchanged();
                tokio::spawn(pump(cr, sw, rx.clone(), cut.clone(), Way::Requests));
                tokio::spawn(pump(sr, cw, rx.clone(), cut, Way::Replies));
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
        self.cut(Cut::Close);
    }

    /// Ends every connection relayed so far as `how` says.
    pub fn cut(&self, how: Cut) {
        self.severed.send_modify(|(n, c)| {
            *n += 1;
            *c = how;
        });
    }
}

/// How [`Relay::cut`] ends connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Closed (FIN), bytes held are lost.
    Close,
    /// Reset (RST), as a crashed host or a firewall does.
    Reset,
    /// The next reply (or what is held of one) passes in part, then the
    /// connection closes: a reply cut in the middle.
    MidReply,
}

/// Which way a pump carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Requests,
    Replies,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    mut cut: watch::Receiver<(u64, Cut)>,
    way: Way,
) {
    tokio::select! {
        _ = forward(&mut from, &mut to, mode, way) => return,
        _ = cut.changed() => {}
    }
    let how = cut.borrow().1;
    match how {
        // Dropping both halves closes the connection.
        Cut::Close => {}
        Cut::Reset => {
            let _ = socket2::SockRef::from(to.as_ref()).set_linger(Some(Duration::ZERO));
        }
        Cut::MidReply if way == Way::Replies => {
            // Part of what comes next, then the end.
            let mut buf = vec![0u8; 64 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(1), from.read(&mut buf)).await;
            if let Ok(Ok(n)) = read {
                let _ = to.write_all(&buf[..n.div_ceil(2)]).await;
            }
        }
        Cut::MidReply => {}
    }
}

async fn forward(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    way: Way,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let m = *mode.borrow_and_update();
            let held = match m {
                Mode::Pass => false,
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    false
                }
                Mode::Blackhole => true,
                Mode::HoldRequests => way == Way::Requests,
                Mode::HoldReplies => way == Way::Replies,
            };
            if !held {
                break;
            }
            if mode.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
