//! Graceful shutdown (tokio's pattern): the listener stops accepting, then
//! every connection is told to drain — read no more requests, finish the ones
//! in flight (a lock operation always runs to its end), write the replies,
//! close — and, at the deadline, to close at once.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use super::clients::{Client, Clients};

/// Where shutdown stands: two flags every connection reads on every turn of
/// its loop (an atomic load), and each connection's waker (in the client
/// registry) so an idle one hears it. Cheaper per turn than polling
/// cancellation tokens, which lock.
#[derive(Debug, Default)]
pub(crate) struct ShutdownFlags {
    /// Connections stop reading and finish what is in flight.
    pub(crate) draining: AtomicBool,
    /// Connections close now.
    pub(crate) forced: AtomicBool,
}

impl ShutdownFlags {
    /// Raises `flag` and wakes every connection.
    pub(super) fn set(&self, flag: &AtomicBool, clients: &Clients) {
        flag.store(true, Ordering::SeqCst);
        clients.wake_all();
    }

    /// Ready when shutdown (or the memory guard, a `CLIENT KILL`, lines for
    /// a monitor) has something new for this connection (the loop then reads the flags).
    pub(crate) async fn signal(&self, client: &Client, draining: bool) {
        poll_fn(|cx| {
            client.waker.register(cx.waker());
            if self.forced.load(Ordering::SeqCst)
                || (!draining && self.draining.load(Ordering::SeqCst))
                || client.evicted.load(Ordering::Relaxed)
                || client.killed.load(Ordering::Relaxed)
                || client.lines.swap(false, Ordering::Relaxed)
            {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
