//! A peer's mailbox: what others (rooms, other peers, supervisors) may send to its process, the
//! `Pid ! Msg` of the book's `reply2peer`.
//!
//! Unbounded in count (bounded queues preallocate every slot, too dear per idle connection) but
//! bounded in bytes: a peer whose queue of relayed frames passes the limit is a slow consumer
//! and is told to close (1008), so that it never holds up, nor costs the memory of, the peers
//! that talk to it. Control messages are never refused.
use crate::metrics::RelayCounters;
use crate::registry::PeerId;
use crate::rooms_protocol::RoomMessage;
use async_tungstenite::tungstenite::Message;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
    tx: async_channel::Sender<PeerMsg>,
    alive: AtomicBool,
    overflowed: AtomicBool,
    queued_bytes: AtomicUsize,
    limit_bytes: usize,
    counters: Arc<RelayCounters>,
}

/// Where to send a peer messages; cheap to clone (the registry holds one per registration).
#[derive(Clone)]
pub struct PeerRef(Arc<Shared>);

/// The receiving end, owned by the peer process.
pub struct Inbox {
    // Pinned so that the connection loop can poll it as a stream (it is !Unpin).
    rx: std::pin::Pin<Box<async_channel::Receiver<PeerMsg>>>,
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
        let (tx, rx) = async_channel::unbounded();
        let peer = PeerRef(Arc::new(Shared {
            id,
            tx,
            alive: AtomicBool::new(true),
            overflowed: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            limit_bytes,
            counters,
        }));
        (
            peer.clone(),
            Inbox {
                rx: Box::pin(rx),
                owner: peer,
            },
        )
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
                let _ = self.0.tx.try_send(PeerMsg::Overflow);
            }
            return Delivery::Dropped;
        }
        match self.0.tx.try_send(msg()) {
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
        self.0.tx.try_send(msg).is_ok()
    }
}

impl Inbox {
    pub fn receiver(&mut self) -> std::pin::Pin<&mut async_channel::Receiver<PeerMsg>> {
        self.rx.as_mut()
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
        self.rx.close();
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
        let rx = (*inbox.receiver()).clone();
        let kinds: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| {
                inbox.taken(&m);
                format!("{m:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(kinds, ["Relay", "Relay", "Overflow"]);
    }

    #[test]
    fn dropping_the_inbox_marks_the_peer_dead() {
        let (peer, inbox) = Mailbox::new(1, 10);
        drop(inbox);
        assert!(!peer.is_alive());
        assert_eq!(peer.relay(Message::text("x")), Delivery::Dropped);
    }
}
