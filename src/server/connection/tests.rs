//! The connection state machine without sockets: requests go in as bytes, the
//! backend is an in-memory pipe the test answers, lock operations are completed
//! by hand in any order, and the client's output is read back.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::backend::BackendLink;
use super::queue::{ReplyQueue, Slot};
use super::replies::Output;
use super::resync::Counting;
use super::route::Route;
use super::{Close, Flow, Input, State};
use crate::backend::Connection;
use crate::config::Config;
use crate::protocol::{ArgList, Proto, Reply, RequestParser};
use crate::redlock::{Engine, EngineConfig, Outcome};
use crate::server::Shared;
use crate::server::session::Session;

/// A connection's state with its backend on a pipe.
struct Fixture {
    st: State,
    parser: RequestParser,
    /// Requests read but not handled yet (a handler asked to retry).
    inbuf: BytesMut,
    /// The backend's side of the pipe.
    backend: DuplexStream,
}

fn profile() -> crate::server::client_list::Profile {
    let a = "127.0.0.1:1".parse().unwrap();
    crate::server::client_list::Profile::new(a, a, 0, 0)
}

fn fixture() -> Fixture {
    let config = Config::default();
    let engine = Engine::start(
        EngineConfig::from(&config.redlock),
        Vec::new(),
        &Default::default(),
        &Default::default(),
    );
    let users = crate::acl::Users::from_config(&config.server.requirepass, &config.users);
    let shared = Arc::new(Shared::new(
        config,
        Arc::new(users.expect("no users")),
        engine,
        None,
        Default::default(),
        Default::default(),
    ));
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let live = shared.live.load_full();
    let settings = live.settings;
    Fixture {
        st: State {
            session: Session::new(1, 0, true),
            queue: ReplyQueue::default(),
            output: Output::default(),
            ops: Default::default(),
            backend: BackendLink::open(Connection::in_memory(ours)),
            counting: Counting::Counted,
            route: Route::new(false, false),
            input: Input::Open,
            close: Close::No,
            bound: Vec::new(),
            shared_hooks: Vec::new(),
            arrived: Vec::new(),
            wake: false,
            pin: None,
            tx_slot: None,
            tx_held: None,
            own_conns: None,
            link_barrier: false,
            now: None,
            me: shared.registry.register(1, profile()),
            origin: "127.0.0.1:1".into(),
            last_cmd: "NULL",
            changed: Default::default(),
            published_state: 0,
            feed: None,
            settings,
            live,
            generation: 0,
            shared,
        },
        parser: RequestParser::new(Default::default()),
        inbuf: BytesMut::new(),
        backend: theirs,
    }
}

impl Fixture {
    /// The client sends `bytes`: every request the state machine will take now
    /// is handled (the rest waits, as in the read loop).
    fn client_sends(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        self.handle_buffered();
    }

    fn handle_buffered(&mut self) {
        while let Some(n) = self.parser.parse(&self.inbuf).unwrap() {
            let args = self.parser.args(&self.inbuf);
            if !args.is_empty() {
                if let Flow::Retry = self.st.handle(args, &self.inbuf[..n], false) {
                    return;
                }
            }
            let _ = self.inbuf.split_to(n);
        }
    }

    /// What the proxy forwarded to the backend so far.
    async fn backend_receives(&mut self) -> String {
        self.st.flush_backend();
        let mut buf = vec![0u8; 1 << 16];
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.backend.read(&mut buf),
        )
        .await
        .expect("something was forwarded")
        .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The backend answers `bytes`; the state machine reads and routes them.
    async fn backend_answers(&mut self, bytes: &[u8]) {
        self.backend.write_all(bytes).await.unwrap();
        self.pump_backend().await;
    }

    async fn pump_backend(&mut self) {
        let ev = self.st.backend.event(usize::MAX).await;
        self.st.on_backend(ev);
        self.advance();
    }

    fn advance(&mut self) {
        self.st.advance();
        if std::mem::take(&mut self.st.wake) {
            self.handle_buffered();
            self.st.advance();
        }
    }

    /// A lock operation, `seq`, finished with `reply`.
    fn lock_finishes(&mut self, seq: u64, reply: Reply) {
        let outcome = Outcome { reply, lease: None };
        self.st.complete(Some(seq), Proto::Resp2, outcome);
        self.advance();
    }

    /// What the client has been sent since the last call.
    fn client_receives(&mut self) -> String {
        let out = self.st.output.buf().split();
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = BytesMut::new();
    crate::protocol::encode_command(&mut out, args.iter().map(|a| a.as_bytes()));
    out.to_vec()
}

#[tokio::test]
async fn forwards_pipelined_around_a_lock_keep_their_order_when_the_lock_finishes_last() {
    let mut f = fixture();
    let mut pipeline = cmd(&["GET", "a"]);
    pipeline.extend(cmd(&["SET", "lock:x", "t", "NX", "PX", "10000"]));
    pipeline.extend(cmd(&["GET", "b"]));
    f.client_sends(&pipeline);
    assert_eq!(f.st.ops.len(), 1, "the lock runs beside the forwards");
    let forwarded = f.backend_receives().await;
    assert_eq!(
        forwarded,
        "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
    );
    f.backend_answers(b"$1\r\nA\r\n$1\r\nB\r\n").await;
    assert_eq!(
        f.client_receives(),
        "$1\r\nA\r\n",
        "B waits behind the lock"
    );
    f.lock_finishes(1, Reply::OK);
    assert_eq!(f.client_receives(), "+OK\r\n$1\r\nB\r\n");
    assert!(f.st.queue.is_empty());
}

#[tokio::test]
async fn a_backend_failure_mid_queue_fails_its_slots_in_place() {
    let mut f = fixture();
    let mut pipeline = cmd(&["GET", "a"]);
    pipeline.extend(cmd(&["SET", "lock:x", "t", "NX", "PX", "10000"]));
    pipeline.extend(cmd(&["GET", "b"]));
    f.client_sends(&pipeline);
    f.backend_receives().await;
    drop(std::mem::replace(&mut f.backend, tokio::io::duplex(1).0));
    f.pump_backend().await;
    let first = f.client_receives();
    assert!(
        first.starts_with("-ERR passthrough backend unavailable"),
        "{first}"
    );
    assert_eq!(
        first.matches("\r\n").count(),
        1,
        "the second error waits behind the lock"
    );
    f.lock_finishes(1, Reply::OK);
    let rest = f.client_receives();
    assert!(
        rest.starts_with("+OK\r\n-ERR passthrough backend unavailable"),
        "{rest}"
    );
    assert!(!f.st.backend.attached(), "the next forward reconnects");
}

/// The argument of the `PING` a resynchronisation sent.
fn marker_of(forwarded: &str) -> String {
    let parts: Vec<&str> = forwarded.split("\r\n").collect();
    let ping = parts.iter().position(|p| *p == "PING").expect("a PING");
    parts[ping + 2].to_string()
}

#[tokio::test]
async fn a_resync_finds_a_resp2_client_still_subscribed() {
    let mut f = fixture();
    f.client_sends(&cmd(&["SUBSCRIBE", "c"]));
    f.backend_receives().await;
    f.backend_answers(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")
        .await;
    assert_eq!(
        f.client_receives(),
        "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    f.client_sends(&cmd(&["SET", "lock:x", "t", "NX"]));
    assert!(
        f.st.counting.paused(),
        "a lock reply needs a slot: resynchronise first"
    );
    let marker = marker_of(&f.backend_receives().await);
    // A message published meanwhile goes through; then the marker, in its
    // subscribed shape.
    let message = "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
    let reply = format!(
        "{message}*2\r\n$4\r\npong\r\n${}\r\n{marker}\r\n",
        marker.len()
    );
    f.backend_answers(reply.as_bytes()).await;
    let got = f.client_receives();
    assert!(got.starts_with(message), "{got}");
    assert!(got.ends_with("only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"), "{got}");
    assert!(f.st.ops.is_empty() && !f.st.counting.counted());
}

#[tokio::test]
async fn a_resync_finds_a_client_that_unsubscribed() {
    let mut f = fixture();
    f.client_sends(&cmd(&["SUBSCRIBE", "c"]));
    f.client_sends(&cmd(&["UNSUBSCRIBE", "c"]));
    f.client_sends(&cmd(&["SET", "lock:x", "t", "NX"]));
    let marker = marker_of(&f.backend_receives().await);
    let reply = format!(
        "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n${}\r\n{marker}\r\n",
        marker.len()
    );
    f.backend_answers(reply.as_bytes()).await;
    assert!(
        f.st.counting.counted(),
        "the marker's bulk shape: not subscribed"
    );
    assert_eq!(
        f.st.ops.len(),
        1,
        "the lock went ahead once counting resumed"
    );
    assert!(matches!(f.st.queue.front(), Some(Slot::Pending)));
    f.lock_finishes(1, Reply::OK);
    assert!(f.client_receives().ends_with(":0\r\n+OK\r\n"));
}

#[tokio::test]
async fn a_refusal_inside_multi_makes_exec_abort_and_the_backend_discard() {
    let mut f = fixture();
    f.client_sends(&cmd(&["MULTI"]));
    f.client_sends(&cmd(&["SET", "lock:x", "t", "NX"]));
    f.client_sends(&cmd(&["EXEC"]));
    let forwarded = f.backend_receives().await;
    assert_eq!(forwarded, "*1\r\n$5\r\nMULTI\r\n*1\r\n$7\r\nDISCARD\r\n");
    f.backend_answers(b"+OK\r\n+OK\r\n").await;
    let got = f.client_receives();
    assert!(
        got.starts_with("+OK\r\n-ERR 'set' on a lock key is not allowed inside MULTI"),
        "{got}"
    );
    assert!(got.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"));
    assert!(!f.st.session.transaction.in_multi());
}

#[tokio::test]
async fn client_reply_off_swallows_backend_and_lock_replies() {
    let mut f = fixture();
    f.client_sends(&cmd(&["CLIENT", "REPLY", "OFF"]));
    f.client_sends(&cmd(&["SET", "k", "v"]));
    f.client_sends(&cmd(&["SET", "lock:x", "t", "NX"]));
    f.client_sends(&cmd(&["CLIENT", "REPLY", "ON"]));
    f.client_sends(&cmd(&["GET", "k"]));
    f.backend_receives().await;
    f.backend_answers(b"+OK\r\n$1\r\nv\r\n").await;
    assert_eq!(
        f.client_receives(),
        "+OK\r\n$1\r\nv\r\n",
        "only ON's OK and GET's reply"
    );
    assert_eq!(f.st.ops.len(), 1, "the silenced lock still runs");
}
