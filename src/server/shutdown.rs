//! Graceful shutdown (tokio's pattern): the listener stops accepting, then
//! every connection is told to drain — read no more requests, finish the ones
//! in flight (a lock operation always runs to its end), write the replies,
//! close — and, at the deadline, to close at once.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Where shutdown stands, and how it reaches the connections: two flags they
/// read on every turn of their loop (an atomic load), and a waker each registers
/// so an idle one hears it. Cheaper per turn than polling cancellation tokens,
/// which lock.
#[derive(Debug, Default)]
pub(crate) struct ShutdownFlags {
    /// Connections stop reading and finish what is in flight.
    pub(crate) draining: AtomicBool,
    /// Connections close now.
    pub(crate) forced: AtomicBool,
    wakers: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl ShutdownFlags {
    /// A connection's waker, woken at each shutdown step.
    pub(crate) fn register(&self, id: u64) -> Arc<AtomicWaker> {
        let w = Arc::new(AtomicWaker::new());
        if let Ok(mut m) = self.wakers.lock() {
            m.insert(id, Arc::clone(&w));
        }
        w
    }

    /// The connection is gone.
    pub(crate) fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.wakers.lock() {
            m.remove(&id);
        }
    }

    /// Raises `flag` and wakes every connection.
    pub(super) fn set(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst);
        if let Ok(m) = self.wakers.lock() {
            for w in m.values() {
                w.wake();
            }
        }
    }

    /// Ready when shutdown has something new for this connection (the loop then
    /// reads the flags).
    pub(crate) async fn signal(&self, waker: &AtomicWaker, draining: bool) {
        poll_fn(|cx| {
            waker.register(cx.waker());
            if self.forced.load(Ordering::SeqCst)
                || (!draining && self.draining.load(Ordering::SeqCst))
            {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
