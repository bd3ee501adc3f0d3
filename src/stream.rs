//! A connected byte stream, client or server side: plain TCP or TLS, behind
//! one type so the connection code above it does not care which.
//!
//! Writes are non-blocking and partial ("write what the socket takes"); reads go
//! into a growing buffer. Both are poll functions, so a connection loop can wait
//! for either without a task per direction. TLS keeps encrypted bytes of its
//! own: a caller's output is written once it is empty *and*
//! [`wants_write`](Stream::wants_write) is false.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Smallest spare room a read buffer gets before a read.
const MIN_READ_ROOM: usize = 512;
/// First growth step: an idle connection costs little.
const SMALL_READ: usize = 4096;
/// Growth step once a connection has shown it sends a lot.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// A connected socket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, either side.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// An in-memory pipe, for unit tests of the code above sockets.
    #[cfg(test)]
    Memory(tokio::io::DuplexStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Plain(s)
    }
}

impl From<tokio_rustls::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(s))
    }
}

impl Stream {
    /// TLS records are waiting to be written to the socket (the caller's
    /// output may be empty while they are).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(t) => match &**t {
                tokio_rustls::TlsStream::Client(c) => c.get_ref().1.wants_write(),
                tokio_rustls::TlsStream::Server(s) => s.get_ref().1.wants_write(),
            },
            _ => false,
        }
    }

    /// Writes from the front of `out` what the socket takes now, and removes it.
    /// `Ready(Ok(()))`: `out` is empty (and, with TLS, so are its records).
    /// `Pending`: the socket is full (the task is woken when it drains).
    pub(crate) fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
    ) -> Poll<io::Result<()>> {
        while !out.is_empty() {
            match Pin::new(&mut *self).poll_write(cx, out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => out.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.wants_write() {
            return Pin::new(&mut *self).poll_flush(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Like [`poll_write_out`](Self::poll_write_out) without waiting: returns how
    /// many bytes left `out`. The caller waits for writability through the poll
    /// function when `out` is not empty afterwards.
    pub(crate) fn write_now(&mut self, out: &mut BytesMut) -> io::Result<usize> {
        let before = out.len();
        match self {
            Stream::Plain(s) => {
                while !out.is_empty() {
                    match s.try_write(out) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => out.advance(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => {
                // What the socket does not take now stays in `out` or in the
                // TLS records; the caller polls for writability afterwards.
                let waker = futures_util::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                if let Poll::Ready(Err(e)) = self.poll_write_out(&mut cx, out) {
                    return Err(e);
                }
            }
        }
        Ok(before - out.len())
    }

    /// Reads what is there into `buf`, growing it first when it is nearly full.
    /// `Ready(Ok(0))` is the end of the stream.
    pub(crate) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        make_room(buf);
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }

    /// Like [`poll_read_into`](Self::poll_read_into), reading at most `max`
    /// bytes (more than 0), so a buffer kept under a watermark stays there.
    pub(crate) fn poll_read_at_most(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        if max >= READ_CHUNK {
            return self.poll_read_into(cx, buf);
        }
        if buf.capacity() - buf.len() < max {
            buf.reserve(max);
        }
        let mut limited = bytes::BufMut::limit(&mut *buf, max);
        tokio_util::io::poll_read_buf(Pin::new(self), cx, &mut limited)
    }
}

/// Grows a read buffer before a read: small at first (an idle connection costs
/// little), then in big steps for a connection that receives a lot.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_READ_ROOM {
        let grow = if buf.capacity() < READ_CHUNK {
            SMALL_READ
        } else {
            READ_CHUNK
        };
        buf.reserve(grow.max(buf.len()));
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
            #[cfg(test)]
            Stream::Memory(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
            #[cfg(test)]
            Stream::Memory(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
            #[cfg(test)]
            Stream::Memory(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
            #[cfg(test)]
            Stream::Memory(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffers_start_small_and_grow_in_chunks() {
        let mut b = BytesMut::new();
        make_room(&mut b);
        assert!(b.capacity() >= SMALL_READ && b.capacity() < READ_CHUNK);
        let mut big = BytesMut::with_capacity(READ_CHUNK);
        big.resize(READ_CHUNK, 0);
        make_room(&mut big);
        assert!(big.capacity() - big.len() >= READ_CHUNK);
    }
}
