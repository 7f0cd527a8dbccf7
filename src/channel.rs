//! A lean unbounded channel for room mailboxes: a `VecDeque` under a mutex and an [`Event`] to
//! wake the receiver, holding only what is queued.
//!
//! async-channel's unbounded queue keeps a 31-slot block once anything passed through it and a
//! cache-padded channel struct: about 1 KiB per room, 0.5 KiB per connection of a held pair.
//! The semantics rooms rely on are async-channel's: `close` refuses new messages but keeps the
//! queued ones for `try_recv`; `recv` ends once the channel is closed and empty; the channel
//! closes when its last sender goes.
use event_listener::Event;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

struct Chan<T> {
    state: Mutex<State<T>>,
    pushed: Event,
    senders: AtomicUsize,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// A queue that a burst grew past this many slots is shrunk once drained.
const KEEP_SLOTS: usize = 8;

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section is one push, pop or flag: a panic cannot leave it half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop(&self) -> Result<T, bool> {
        let mut state = self.lock();
        match state.items.pop_front() {
            Some(item) => {
                if state.items.is_empty() && state.items.capacity() > KEEP_SLOTS {
                    state.items.shrink_to_fit();
                }
                Ok(item)
            }
            None => Err(state.closed),
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.pushed.notify(usize::MAX);
    }
}

/// The sending end; clones share the channel, which closes when the last one is dropped.
pub struct Sender<T>(Arc<Chan<T>>);

/// The receiving end; clones share the queue (a restarted room takes over its mailbox).
pub struct Receiver<T>(Arc<Chan<T>>);

/// The channel is closed (and, for `recv`, empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
        }),
        pushed: Event::new(),
        senders: AtomicUsize::new(1),
    });
    (Sender(Arc::clone(&chan)), Receiver(chan))
}

impl<T> Sender<T> {
    /// Queues `item`, or hands it back when the channel is closed.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        {
            let mut state = self.0.lock();
            if state.closed {
                return Err(item);
            }
            state.items.push_back(item);
        }
        self.0.pushed.notify(1);
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(Arc::clone(&self.0))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.close();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message; `Err` once the channel is closed and empty.
    pub async fn recv(&self) -> Result<T, Closed> {
        loop {
            match self.0.pop() {
                Ok(item) => return Ok(item),
                Err(true) => return Err(Closed),
                Err(false) => {}
            }
            let listener = self.0.pushed.listen();
            match self.0.pop() {
                Ok(item) => return Ok(item),
                Err(true) => return Err(Closed),
                Err(false) => listener.await,
            }
        }
    }

    /// The next message if one is queued (also after `close`).
    pub fn try_recv(&self) -> Result<T, Closed> {
        self.0.pop().map_err(|_| Closed)
    }

    /// Whether nothing is queued right now.
    pub fn is_empty(&self) -> bool {
        self.0.lock().items.is_empty()
    }

    /// Refuses further messages; those already queued stay for `try_recv`.
    pub fn close(&self) {
        self.0.close();
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_in_order_and_close_keeps_what_is_queued() {
        let (tx, rx) = unbounded();
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        tx2.try_send(2).unwrap();
        rx.close();
        assert_eq!(tx.try_send(3), Err(3));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(futures_lite::future::block_on(rx.recv()), Ok(2));
        assert_eq!(futures_lite::future::block_on(rx.recv()), Err(Closed));
    }

    #[test]
    fn the_last_sender_closes_and_recv_wakes() {
        let (tx, rx) = unbounded::<u8>();
        let tx2 = tx.clone();
        drop(tx);
        assert!(tx2.try_send(7).is_ok());
        let waiter = std::thread::spawn(move || {
            let first = futures_lite::future::block_on(rx.recv());
            let second = futures_lite::future::block_on(rx.recv());
            (first, second)
        });
        drop(tx2);
        assert_eq!(waiter.join().unwrap(), (Ok(7), Err(Closed)));
    }
}
