//! A small multi-producer, single-consumer inbox: a locked queue and a waker.
//! Lighter than a channel for the few items an operation or a client collects
//! (the masters' replies to one lock operation; a client's replies from a shared
//! backend connection).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Items pushed by any task, taken in order by one.
#[derive(Debug)]
pub struct Inbox<T> {
    items: Mutex<VecDeque<T>>,
    waker: AtomicWaker,
    /// The consumer is gone: items pushed from now on are dropped.
    closed: AtomicBool,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<T> Inbox<T> {
    /// An inbox with room for `n` items before it grows.
    pub fn with_capacity(n: usize) -> Self {
        Inbox {
            items: Mutex::new(VecDeque::with_capacity(n)),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Adds an item and wakes the consumer (drops it if the consumer is gone).
    pub fn push(&self, item: T) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut items) = self.items.lock() {
            items.push_back(item);
        }
        self.waker.wake();
    }

    /// Adds several items together (one lock, one wake-up).
    pub fn push_all(&self, items: impl Iterator<Item = T>) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut queue) = self.items.lock() {
            queue.extend(items);
        }
        self.waker.wake();
    }

    /// The consumer is gone: drops what is waiting, and whatever comes later.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if let Ok(mut items) = self.items.lock() {
            items.clear();
        }
    }

    /// The next item, if one is there.
    pub fn try_pop(&self) -> Option<T> {
        self.items.lock().ok()?.pop_front()
    }

    /// Moves every item there is to `out` (one lock); whether there was any.
    pub fn take_all(&self, out: &mut Vec<T>) -> bool {
        match self.items.lock() {
            Ok(mut items) if !items.is_empty() => {
                out.extend(items.drain(..));
                true
            }
            _ => false,
        }
    }

    /// The next item, waiting for it.
    pub async fn pop(&self) -> T {
        std::future::poll_fn(|cx| {
            if let Some(item) = self.try_pop() {
                return Poll::Ready(item);
            }
            self.waker.register(cx.waker());
            // An item pushed between the check and the registration is seen here.
            match self.try_pop() {
                Some(item) => Poll::Ready(item),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn items_arrive_in_order_across_tasks() {
        let inbox = Arc::new(Inbox::with_capacity(2));
        let producer = Arc::clone(&inbox);
        let t = tokio::spawn(async move {
            for i in 0..100 {
                producer.push(i);
                tokio::task::yield_now().await;
            }
        });
        for i in 0..100 {
            assert_eq!(inbox.pop().await, i);
        }
        t.await.unwrap();
        assert_eq!(inbox.try_pop(), None);
    }

    #[test]
    fn items_pushed_together_are_taken_together_in_order() {
        let inbox = Inbox::with_capacity(4);
        inbox.push(1);
        inbox.push_all([2, 3].into_iter());
        let mut out = vec![0];
        assert!(inbox.take_all(&mut out));
        assert_eq!(out, [0, 1, 2, 3]);
        assert!(!inbox.take_all(&mut out), "nothing left");
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_closed_inbox_keeps_nothing() {
        let inbox = Inbox::with_capacity(1);
        inbox.push(1);
        inbox.close();
        inbox.push(2);
        assert_eq!(inbox.try_pop(), None);
    }
}
