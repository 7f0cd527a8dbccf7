//! A peer's mailbox: what others (rooms, other peers, supervisors) may send to its process, the
//! `Pid ! Msg` of the book's `reply2peer`.
//!
//! Unbounded in count (bounded queues preallocate every slot, too dear per idle connection) but
//! bounded in bytes: a peer whose queue of relayed frames passes the limit is a slow consumer
//! and is told to close (1008), so that it never holds up, nor costs the memory of, the peers
//! that talk to it. Control messages are never refused.
//!
//! The queue is a `VecDeque` under a mutex with an [`Event`] to wake the receiver: it holds only
//! what is queued, and gives back what a burst grew. (async-channel's unbounded queue, used
//! before, keeps a 31-slot block per peer once anything passed through it, and its channel
//! struct is cache-padded: about 1.7 KiB per connection of the 12.3 KiB measured by
//! `loadgen hold`; see bench/README.md.)
use crate::metrics::RelayCounters;
use crate::registry::PeerId;
use crate::rooms_protocol::RoomMessage;
use async_tungstenite::tungstenite::Message;
use event_listener::{Event, EventListener};
use futures_lite::Stream;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use supervisors::StopReason;

/// `websocket_info`: what a peer process receives besides its socket.
#[derive(Debug)]
pub enum PeerMsg {
    /// A frame from another peer of the room, to send verbatim.
    Relay(Message),
    /// A named-rooms message for this peer (from another peer or the room), with the bytes it
    /// counts against the queue limit.
    Event(Box<RoomMessage>, usize),
    /// The outbound queue passed its byte limit.
    Overflow,
    /// Injected fault: the peer's handler panics.
    Crash,
    /// The supervisor asks the peer to end.
    Stop(StopReason),
}

struct Shared {
    id: PeerId,
    queue: Queue,
    alive: AtomicBool,
    overflowed: AtomicBool,
    queued_bytes: AtomicUsize,
    limit_bytes: usize,
    counters: Arc<RelayCounters>,
}

/// A mailbox's queue. Closed by the receiver's drop; nothing is queued after that.
struct Queue {
    items: Mutex<Items>,
    /// Notified on every push; the receiver listens only while the queue is empty.
    pushed: Event,
}

struct Items {
    messages: VecDeque<PeerMsg>,
    closed: bool,
}

/// A queue that grew past this many slots during a burst is shrunk again once drained.
const KEEP_SLOTS: usize = 8;

impl Queue {
    fn new() -> Self {
        Queue {
            items: Mutex::new(Items {
                messages: VecDeque::new(),
                closed: false,
            }),
            pushed: Event::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Items> {
        // Every critical section is one push, pop or clear: a panic cannot leave it half done.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg`, or hands it back when the receiver is gone.
    fn push(&self, msg: PeerMsg) -> Result<(), PeerMsg> {
        {
            let mut items = self.lock();
            if items.closed {
                return Err(msg);
            }
            items.messages.push_back(msg);
        }
        self.pushed.notify(1);
        Ok(())
    }

    fn pop(&self) -> Option<PeerMsg> {
        let mut items = self.lock();
        let msg = items.messages.pop_front();
        if items.messages.is_empty() && items.messages.capacity() > KEEP_SLOTS {
            items.messages.shrink_to_fit();
        }
        msg
    }

    fn close(&self) {
        let dropped = {
            let mut items = self.lock();
            items.closed = true;
            std::mem::take(&mut items.messages)
        };
        // Frames are dropped outside the lock.
        drop(dropped);
    }
}

/// The receiving end of a mailbox, polled as a stream by the connection loop.
pub struct Receiver {
    shared: Arc<Shared>,
    listener: Option<EventListener>,
}

/// The mailbox is empty (or closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl Receiver {
    /// The next message if one is queued, without waiting.
    pub fn try_recv(&self) -> Result<PeerMsg, Empty> {
        self.shared.queue.pop().ok_or(Empty)
    }
}

impl Stream for Receiver {
    type Item = PeerMsg;

    /// Ends (`None`) only once the mailbox is closed, which its own inbox's drop does.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerMsg>> {
        loop {
            if let Some(msg) = self.shared.queue.pop() {
                self.listener = None;
                return Poll::Ready(Some(msg));
            }
            if self.shared.queue.lock().closed {
                return Poll::Ready(None);
            }
            // Listen, then look again before waiting: a push between the look and the listen
            // is seen by the second look, one after it wakes the listener.
            match self.listener.as_mut() {
                None => self.listener = Some(self.shared.queue.pushed.listen()),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }
}

/// Where to send a peer messages; cheap to clone (the registry holds one per registration).
#[derive(Clone)]
pub struct PeerRef(Arc<Shared>);

/// The receiving end, owned by the peer process.
pub struct Inbox {
    rx: Receiver,
    owner: PeerRef,
}

/// Makes the two ends of a peer's mailbox.
pub struct Mailbox;

/// Whether a relayed frame was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The peer is gone, or is being closed as a slow consumer.
    Dropped,
}

impl Mailbox {
    #[allow(clippy::new_ret_no_self)] // a pair of ends, as `async_channel::unbounded`
    pub fn new(id: PeerId, limit_bytes: usize) -> (PeerRef, Inbox) {
        Self::counted(id, limit_bytes, Arc::default())
    }

    /// As [`new`](Self::new), counting every relayed frame into the server's `counters`.
    pub fn counted(
        id: PeerId,
        limit_bytes: usize,
        counters: Arc<RelayCounters>,
    ) -> (PeerRef, Inbox) {
        let peer = PeerRef(Arc::new(Shared {
            id,
            queue: Queue::new(),
            alive: AtomicBool::new(true),
            overflowed: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            limit_bytes,
            counters,
        }));
        let rx = Receiver {
            shared: Arc::clone(&peer.0),
            listener: None,
        };
        (peer.clone(), Inbox { rx, owner: peer })
    }
}

impl PeerRef {
    pub fn id(&self) -> PeerId {
        self.0.id
    }

    pub fn is_alive(&self) -> bool {
        self.0.alive.load(Ordering::Acquire)
    }

    pub fn mark_dead(&self) {
        self.0.alive.store(false, Ordering::Release);
    }

    /// Queues a frame from another peer, unless that would pass the byte limit.
    pub fn relay(&self, frame: Message) -> Delivery {
        let len = frame.len();
        self.enqueue(len, || PeerMsg::Relay(frame))
    }

    /// Queues a named-rooms message, counted as `bytes` (about its length on the wire).
    pub fn deliver(&self, message: RoomMessage, bytes: usize) -> Delivery {
        self.enqueue(bytes, || PeerMsg::Event(Box::new(message), bytes))
    }

    fn enqueue(&self, len: usize, msg: impl FnOnce() -> PeerMsg) -> Delivery {
        if !self.is_alive() || self.0.overflowed.load(Ordering::Relaxed) {
            return Delivery::Dropped;
        }
        let queued = self.0.queued_bytes.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.0.limit_bytes {
            self.0.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            if !self.0.overflowed.swap(true, Ordering::AcqRel) {
                let _ = self.0.queue.push(PeerMsg::Overflow);
            }
            return Delivery::Dropped;
        }
        match self.0.queue.push(msg()) {
            Ok(()) => {
                self.0.counters.relayed(len);
                Delivery::Queued
            }
            Err(_) => {
                self.0.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Delivery::Dropped
            }
        }
    }

    /// Sends a control message (never refused while the peer lives).
    pub fn send(&self, msg: PeerMsg) -> bool {
        self.0.queue.push(msg).is_ok()
    }
}

impl Inbox {
    pub fn receiver(&mut self) -> Pin<&mut Receiver> {
        Pin::new(&mut self.rx)
    }

    /// To be called for each message taken from the receiver: releases its bytes.
    pub fn taken(&self, msg: &PeerMsg) {
        let bytes = match msg {
            PeerMsg::Relay(frame) => frame.len(),
            PeerMsg::Event(_, bytes) => *bytes,
            _ => return,
        };
        self.owner.0.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub fn owner(&self) -> &PeerRef {
        &self.owner
    }
}

impl Drop for Inbox {
    // The fast path of "forget a peer the moment it dies": readers of the registry skip it from
    // now on, even before the registry process has removed its keys. Runs on panic too.
    fn drop(&mut self) {
        self.owner.mark_dead();
        self.owner.0.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_limit_drops_and_reports_overflow_once() {
        let (peer, mut inbox) = Mailbox::new(1, 10);
        assert_eq!(peer.relay(Message::text("12345")), Delivery::Queued);
        assert_eq!(peer.relay(Message::text("12345")), Delivery::Queued);
        assert_eq!(peer.relay(Message::text("1")), Delivery::Dropped);
        assert_eq!(peer.relay(Message::text("1")), Delivery::Dropped);
        let mut kinds = Vec::new();
        while let Ok(m) = inbox.receiver().try_recv() {
            inbox.taken(&m);
            kinds.push(
                format!("{m:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(kinds, ["Relay", "Relay", "Overflow"]);
    }

    #[test]
    fn the_receiver_wakes_on_a_push_and_keeps_order() {
        let (peer, mut inbox) = Mailbox::new(1, 1 << 20);
        let woken = futures_lite::future::block_on(async {
            let first = async { futures_lite::StreamExt::next(&mut *inbox.receiver()).await };
            let push = async {
                async_io::Timer::after(std::time::Duration::from_millis(20)).await;
                assert_eq!(peer.relay(Message::text("a")), Delivery::Queued);
                assert_eq!(peer.relay(Message::text("b")), Delivery::Queued);
            };
            futures_lite::future::zip(first, push).await.0
        });
        assert!(matches!(woken, Some(PeerMsg::Relay(m)) if m == Message::text("a")));
        assert!(
            matches!(inbox.receiver().try_recv(), Ok(PeerMsg::Relay(m)) if m == Message::text("b"))
        );
        assert_eq!(inbox.receiver().try_recv().err(), Some(Empty));
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (peer, mut inbox) = Mailbox::new(1, 1 << 20);
        for _ in 0..100 {
            assert_eq!(peer.relay(Message::text("x")), Delivery::Queued);
        }
        while let Ok(m) = inbox.receiver().try_recv() {
            inbox.taken(&m);
        }
        assert!(peer.0.queue.lock().messages.capacity() <= KEEP_SLOTS);
        assert_eq!(peer.0.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dropping_the_inbox_marks_the_peer_dead() {
        let (peer, inbox) = Mailbox::new(1, 10);
        drop(inbox);
        assert!(!peer.is_alive());
        assert_eq!(peer.relay(Message::text("x")), Delivery::Dropped);
        assert!(
            !peer.send(PeerMsg::Crash),
            "nothing is queued once the inbox is gone"
        );
    }
}
