//! An open connection to a Redis server: the socket, what is still to be
//! written, and what has been read but not yet taken as replies.
//!
//! The owner drives it: queue requests into [`out`](Connection::out), call
//! [`flush`](Connection::flush) to write what the socket takes now, wait on
//! [`poll_io`](Connection::poll_io) for progress, and take replies off the front
//! with [`next_reply`](Connection::next_reply). Replies are framed, not decoded.

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;

use super::error::{BackendError, ErrorKind};
use crate::protocol::{FrameInfo, ProtocolError, ReplyScanner};
use crate::stream::Stream;

/// An open, handshaken connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Stream,
    peer: String,
    out: BytesMut,
    inbuf: BytesMut,
    scanner: ReplyScanner,
    writes: Writes,
    /// Which of a Sentinel-managed master's generations it was opened to.
    generation: u64,
    /// Its id on the server, if the handshake asked (`CLIENT ID`).
    server_id: Option<u64>,
}

/// Whether the proxy still writes to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Requests may follow.
    Open,
    /// No more requests: once `out` is written, the write side is shut down.
    Ending,
    /// The server has seen the end of the stream.
    Ended,
}

impl Connection {
    pub(super) fn new(stream: Stream, peer: String, max_depth: usize) -> Self {
        Connection {
            stream,
            peer,
            out: BytesMut::new(),
            inbuf: BytesMut::new(),
            scanner: ReplyScanner::new(max_depth),
            writes: Writes::Open,
            generation: 0,
            server_id: None,
        }
    }

    /// Records the Sentinel generation the connection was opened at.
    pub(super) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    pub(super) fn set_server_id(&mut self, id: Option<u64>) {
        self.server_id = id;
    }

    /// Its id on the server, if its handshake asked for it.
    pub(crate) fn server_id(&self) -> Option<u64> {
        self.server_id
    }

    /// The Sentinel generation it was opened at (0 otherwise): see
    /// [`Endpoint::moved`](super::Endpoint::moved).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// A connection over an in-memory pipe, for unit tests above this layer.
    #[cfg(test)]
    pub(crate) fn in_memory(pipe: tokio::io::DuplexStream) -> Self {
        Connection::new(Stream::Memory(pipe), "memory:0".into(), 128)
    }

    /// The server, `host:port`.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Requests waiting to be written; append encoded commands here.
    pub(crate) fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Whether requests are waiting to be written.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty() || self.stream.wants_write()
    }

    /// No request follows what is queued: once it is written, the write side
    /// is shut down, and the server sees the end of the stream as from a
    /// client that left (Redis then drops whatever it still had blocked, a
    /// transaction, subscriptions), while the replies to what was sent can
    /// still be read.
    pub(crate) fn end_writes(&mut self) {
        if self.writes == Writes::Open {
            self.writes = Writes::Ending;
        }
    }

    /// Writes what the socket takes now, without waiting.
    pub(crate) fn flush(&mut self) -> Result<(), BackendError> {
        self.stream
            .write_now(&mut self.out)
            .map(|_| ())
            .map_err(|e| self.io_error(e))
    }

    /// Waits for progress: output written (when there is some), or bytes read
    /// (up to `read` of them; 0: none). `Ready(Ok(()))` after any progress; the
    /// end of the stream is an error of kind [`ErrorKind::Closed`].
    pub(crate) fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        read: usize,
    ) -> Poll<Result<(), BackendError>> {
        let mut progress = false;
        if self.has_output() {
            let (before, records) = (self.out.len(), self.stream.wants_write());
            match self.stream.poll_write_out(cx, &mut self.out) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_error(e))),
                Poll::Ready(Ok(())) => progress |= self.out.len() < before || records,
                Poll::Pending => progress |= self.out.len() < before,
            }
        }
        if self.writes == Writes::Ending && !self.has_output() {
            match std::pin::Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_error(e))),
                Poll::Ready(Ok(())) => {
                    self.writes = Writes::Ended;
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if read > 0 {
            match self.stream.poll_read_at_most(cx, &mut self.inbuf, read) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(self.closed())),
                Poll::Ready(Ok(_)) => progress = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_error(e))),
                Poll::Pending => {}
            }
        }
        if progress {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// [`poll_io`](Self::poll_io) as a future, reading (if `read`) as much as
    /// is there.
    pub(crate) async fn io(&mut self, read: bool) -> Result<(), BackendError> {
        let max = if read { usize::MAX } else { 0 };
        poll_fn(|cx| self.poll_io(cx, max)).await
    }

    /// [`poll_io`](Self::poll_io) as a future, reading at most `max` bytes.
    pub(crate) async fn io_at_most(&mut self, max: usize) -> Result<(), BackendError> {
        poll_fn(|cx| self.poll_io(cx, max)).await
    }

    /// The next complete reply at the front of the input, if one is there: its
    /// bytes are `frame(info.len)` until [`consume`](Self::consume)d or
    /// [`take`](Self::take)n.
    pub(crate) fn next_reply(&mut self) -> Result<Option<FrameInfo>, BackendError> {
        if self.inbuf.is_empty() {
            return Ok(None);
        }
        self.scanner.scan(&self.inbuf).map_err(|e| match e {
            ProtocolError::TooDeep(n) => BackendError::new(
                ErrorKind::Limit,
                &self.peer,
                format_args!("nested deeper than {n} levels, limits.max_nesting_depth"),
            ),
            e => BackendError::new(ErrorKind::Protocol, &self.peer, e),
        })
    }

    /// While the reply at the front of the input is incomplete: the part of it
    /// already in and scanned, which may be passed on before the rest arrives.
    pub(crate) fn partial(&self) -> &[u8] {
        &self.inbuf[..self.scanner.processed()]
    }

    /// Drops [`partial`](Self::partial) from the input: the reply's rest follows.
    pub(crate) fn consume_partial(&mut self) {
        let n = self.scanner.processed();
        let _ = self.inbuf.split_to(n);
        self.scanner.consumed(n);
    }

    /// Whether an idle connection is still open: nothing to read, no end of
    /// stream (a server that closed it, by `timeout` or `CLIENT KILL`, would
    /// fail the first request sent on it). Reads nothing when it is.
    pub(crate) fn idle_and_open(&mut self) -> bool {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut probe = BytesMut::with_capacity(1);
        matches!(
            self.stream.poll_read_at_most(&mut cx, &mut probe, 1),
            Poll::Pending
        )
    }

    /// Bytes read and not yet taken.
    pub(crate) fn input_len(&self) -> usize {
        self.inbuf.len()
    }

    /// The first `len` bytes of the input (a reply [`next_reply`](Self::next_reply) found).
    pub(crate) fn frame(&self, len: usize) -> &[u8] {
        &self.inbuf[..len]
    }

    /// Drops the first `len` bytes of the input.
    pub(crate) fn consume(&mut self, len: usize) {
        let _ = self.inbuf.split_to(len);
    }

    /// Takes the first `len` bytes of the input.
    pub(crate) fn take(&mut self, len: usize) -> BytesMut {
        self.inbuf.split_to(len)
    }

    /// Writes everything queued and reads until a whole reply is in, then takes it.
    pub(crate) async fn read_reply(&mut self) -> Result<BytesMut, BackendError> {
        loop {
            if let Some(info) = self.next_reply()? {
                return Ok(self.take(info.len));
            }
            self.io(true).await?;
        }
    }

    fn io_error(&self, e: std::io::Error) -> BackendError {
        // With TLS 1.3 a server that refuses the proxy's certificate says so
        // after the handshake, on the first read: still a TLS failure.
        let tls = e
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        let kind = if tls { ErrorKind::Tls } else { ErrorKind::Io };
        BackendError::new(kind, &self.peer, e)
    }

    fn closed(&self) -> BackendError {
        BackendError::new(ErrorKind::Closed, &self.peer, "")
    }
}
