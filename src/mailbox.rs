//! A peer's mailbox: what others (rooms, other peers, supervisors) may send to its process, the
//! `Pid ! Msg` of the book's `reply2peer`.
//!
//! Unbounded in count (bounded queues preallocate every slot, too dear per idle connection) but
//! bounded in bytes: a peer whose queue of relayed messages passes the limit is a slow consumer
//! and is told to close (1008), so that it never holds up, nor costs the memory of, the peers
//! that talk to it.
//!
//! The bound counts what a queued message really holds: its text plus [`SLOT_OVERHEAD`] (the
//! queue slot, the allocation's header and rounding), and the text is always an allocation of
//! its own or one shared by every addressee of a message, never a slice that keeps a larger
//! read buffer alive.
//!
//! Control messages (overflow, stop, crash) are not queued behind the data: they are flags that
//! the connection loop sees first, also while it waits on a write to a peer that stopped
//! reading ([`Inbox::control`]).
//!
//! The queue is a `VecDeque` under a mutex with an [`AtomicWaker`] to wake the receiver: it holds
//! only what is queued, and gives back what a burst grew. The receiver is one task, the peer's
//! connection, so a waker slot is all it needs: an `event_listener::Event`, used before, made an
//! allocation of its own on the first listen and a listener box per wait, 0.13 KiB that every
//! idle connection kept (bench/README.md, issue 20). (async-channel's unbounded queue, used
//! before, keeps a 31-slot block per peer once anything passed through it, and its channel
//! struct is cache-padded: about 1.7 KiB per connection of the 12.3 KiB measured by
//! `loadgen hold`; see bench/README.md.)
use crate::faults::wire::Plan;
use crate::metrics::RelayCounters;
use crate::registry::PeerId;
use async_tungstenite::tungstenite::Utf8Bytes;
use atomic_waker::AtomicWaker;
use futures_lite::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use supervisors::StopReason;

/// What the byte bound charges a queued message beyond its text: the queue slot (twice
/// `size_of::<PeerMsg>()`, as a `VecDeque` grows by doubling), the text allocation's minimum size
/// and, for a message shared by several addressees, its share of the reference count. Measured
/// in `the_overhead_covers_a_slot` below; stated in the README ("Slow readers").
pub const SLOT_OVERHEAD: usize = 128;

/// A queue that grew past this many slots during a burst is shrunk again once drained. Freeing
/// the slots at every drain saved an idle peer 0.1 KiB, but the churn left glibc's heap holding
/// more after traffic than it saved: tools/loadgen/tests/soak.rs then failed 2 runs in 3 (RSS not
/// back within 10 %).
const KEEP_SLOTS: usize = 8;

/// `websocket_info`: what a peer process receives besides its socket.
#[derive(Debug)]
pub enum PeerMsg {
    /// A book frame from another peer of the room, to send verbatim.
    Relay(Utf8Bytes),
    /// A named-rooms message for this peer (from another peer or the room), serialised once and
    /// shared by all its addressees; it goes through this peer's `on_send` hook.
    Event(Utf8Bytes),
    /// A message a fault rule's wire action changes on its way out (docs/faults.md, "Wire
    /// actions"): the connection carries out the plan itself. Boxed: rare, and the plan is
    /// larger than a queue slot should be.
    Faulted(Box<Faulted>),
}

/// A message and what the receiver's connection does with it instead of a plain write.
#[derive(Debug)]
pub struct Faulted {
    /// A [`PeerMsg::Relay`] or [`PeerMsg::Event`]; none for a plan that is the connection's
    /// own (a sender's stall).
    pub msg: Option<PeerMsg>,
    pub plan: Plan,
}

impl PeerMsg {
    /// What the byte bound charges for this message.
    pub fn charge(&self) -> usize {
        match self {
            PeerMsg::Relay(text) | PeerMsg::Event(text) => text.len() + SLOT_OVERHEAD,
            PeerMsg::Faulted(f) => {
                f.msg.as_ref().map_or(SLOT_OVERHEAD, PeerMsg::charge)
                    + std::mem::size_of::<Faulted>()
            }
        }
    }
}

/// Orders that end the peer's connection; they overtake every queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Injected fault: the peer process panics.
    Crash,
    /// The supervisor asks the peer to end.
    Stop(StopReason),
    /// The outbound queue passed its byte limit: close as a slow consumer (1008).
    Overflow,
    /// A resume took this peer's session: close with 4001 and hand the mailbox over
    /// (docs/rooms-protocol.md, "Resume").
    Replaced,
}

// One bit per control order, so that none is lost and none needs a queue slot.
const CRASH: u8 = 1;
const STOP_SUPERVISOR_DOWN: u8 = 2;
const STOP_SHUTDOWN: u8 = 4;
const OVERFLOW: u8 = 8;
const REPLACED: u8 = 16;

impl Control {
    fn bit(self) -> u8 {
        match self {
            Control::Crash => CRASH,
            Control::Stop(StopReason::SupervisorDown) => STOP_SUPERVISOR_DOWN,
            Control::Stop(StopReason::Shutdown) => STOP_SHUTDOWN,
            Control::Overflow => OVERFLOW,
            Control::Replaced => REPLACED,
        }
    }

    /// The order a set of bits stands for, the most severe first.
    fn from_bits(bits: u8) -> Option<Control> {
        [
            Control::Crash,
            Control::Stop(StopReason::SupervisorDown),
            Control::Stop(StopReason::Shutdown),
            Control::Overflow,
            Control::Replaced,
        ]
        .into_iter()
        .find(|c| bits & c.bit() != 0)
    }
}

struct Shared {
    id: PeerId,
    queue: Queue,
    alive: AtomicBool,
    /// Pending [`Control`] orders, as bits.
    control: AtomicU8,
    /// Woken when a control bit is set (the loop may be waiting on a write, not the queue).
    controlled: AtomicWaker,
    queued_bytes: AtomicUsize,
    limit_bytes: usize,
    counters: Arc<RelayCounters>,
    /// Set for a member held by another node (docs/cluster.md): what is sent to it is
    /// published to its room's channel instead of queued here.
    remote: Option<Arc<crate::cluster::proxy::Remote>>,
}

/// A mailbox's queue. Closed by the receiver's drop; nothing is queued after that.
struct Queue {
    items: Mutex<Items>,
    /// Woken on every push (and every control order): the receiver's task, registered while
    /// the queue is empty.
    pushed: AtomicWaker,
}

struct Items {
    messages: VecDeque<PeerMsg>,
    closed: bool,
}

impl Queue {
    fn new() -> Self {
        Queue {
            items: Mutex::new(Items {
                messages: VecDeque::new(),
                closed: false,
            }),
            pushed: AtomicWaker::new(),
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
        self.pushed.wake();
        Ok(())
    }

    fn pop(&self) -> Option<PeerMsg> {
        self.pop_if(|_| true)
    }

    /// The first message, if `wanted` takes it.
    fn pop_if(&self, wanted: impl FnOnce(&PeerMsg) -> bool) -> Option<PeerMsg> {
        let mut items = self.lock();
        if !items.messages.front().is_some_and(wanted) {
            return None;
        }
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

/// What the connection loop takes from its mailbox.
#[derive(Debug)]
pub enum Delivered {
    Message(PeerMsg),
    Control(Control),
}

/// The receiving end of a mailbox, polled as a stream by the connection loop.
pub struct Receiver {
    shared: Arc<Shared>,
}

/// The mailbox is empty (or closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl Shared {
    fn new(
        id: PeerId,
        limit_bytes: usize,
        counters: Arc<RelayCounters>,
        remote: Option<Arc<crate::cluster::proxy::Remote>>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            id,
            queue: Queue::new(),
            alive: AtomicBool::new(true),
            control: AtomicU8::new(0),
            controlled: AtomicWaker::new(),
            queued_bytes: AtomicUsize::new(0),
            limit_bytes,
            counters,
            remote,
        })
    }

    /// Takes the most severe pending control order.
    fn take_control(&self) -> Option<Control> {
        let bits = self.control.load(Ordering::Acquire);
        let control = Control::from_bits(bits)?;
        self.control.fetch_and(!control.bit(), Ordering::AcqRel);
        Some(control)
    }
}

impl Stream for Receiver {
    type Item = Delivered;

    /// Control orders first, then messages in order. Ends (`None`) only once the mailbox is
    /// closed, which its own inbox's drop does.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivered>> {
        let mut registered = false;
        loop {
            if let Some(control) = self.shared.take_control() {
                return Poll::Ready(Some(Delivered::Control(control)));
            }
            if let Some(msg) = self.shared.queue.pop() {
                return Poll::Ready(Some(Delivered::Message(msg)));
            }
            if self.shared.queue.lock().closed {
                return Poll::Ready(None);
            }
            if registered {
                return Poll::Pending;
            }
            // Register, then look again before waiting: a push between the look and the
            // registration is seen by the second look, one after it wakes this task.
            self.shared.queue.pushed.register(cx.waker());
            registered = true;
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

/// Whether a relayed message was queued.
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

    /// As [`new`](Self::new), counting every relayed message into the server's `counters`.
    pub fn counted(
        id: PeerId,
        limit_bytes: usize,
        counters: Arc<RelayCounters>,
    ) -> (PeerRef, Inbox) {
        let peer = PeerRef(Shared::new(id, limit_bytes, counters, None));
        let rx = Receiver {
            shared: Arc::clone(&peer.0),
        };
        (peer.clone(), Inbox { rx, owner: peer })
    }
}

impl Mailbox {
    /// A member held by another node: no queue, no socket; what is sent to it is published
    /// through `remote` (see [`crate::cluster::proxy`]).
    pub fn proxy(id: PeerId, remote: Arc<crate::cluster::proxy::Remote>) -> PeerRef {
        let peer = PeerRef(Shared::new(id, 0, Arc::default(), Some(remote)));
        peer.0.queue.close();
        peer
    }
}

impl PeerRef {
    pub fn id(&self) -> PeerId {
        self.0.id
    }

    /// Whether this is a member held by another node of the cluster.
    pub fn is_proxy(&self) -> bool {
        self.0.remote.is_some()
    }

    /// A proxy's forwarding, or `None` for a local peer.
    fn forwarded(&self, kind: crate::cluster::wire::Kind, text: &str) -> Option<Delivery> {
        let remote = self.0.remote.as_ref()?;
        Some(
            if self.is_alive() && remote.forward(self.0.id, kind, text) {
                Delivery::Queued
            } else {
                Delivery::Dropped
            },
        )
    }

    pub fn is_alive(&self) -> bool {
        self.0.alive.load(Ordering::Acquire)
    }

    pub fn mark_dead(&self) {
        self.0.alive.store(false, Ordering::Release);
    }

    /// Queues a book frame from another peer, unless that would pass the byte limit. The text
    /// is copied: a received frame is a slice of its connection's read buffer, which it would
    /// otherwise keep alive whole for as long as it is queued.
    pub fn relay(&self, text: &Utf8Bytes) -> Delivery {
        if let Some(d) = self.forwarded(crate::cluster::wire::Kind::Relay, text) {
            return d;
        }
        self.enqueue(text.len() + SLOT_OVERHEAD, || {
            PeerMsg::Relay(Utf8Bytes::from(text.as_str().to_owned()))
        })
    }

    /// Queues a named-rooms message, serialised once by the sender (see
    /// [`crate::rooms_protocol::RoomMessage::to_shared_text`]) and shared by every addressee.
    pub fn deliver(&self, text: &Utf8Bytes) -> Delivery {
        if let Some(d) = self.forwarded(crate::cluster::wire::Kind::Event, text) {
            return d;
        }
        self.enqueue(text.len() + SLOT_OVERHEAD, || PeerMsg::Event(text.clone()))
    }

    /// Queues a message with a fault rule's wire plan: `msg` (of `charge` bytes of text) as
    /// [`relay`](Self::relay) or [`deliver`](Self::deliver) would have queued it, bound and all.
    pub fn faulted(
        &self,
        msg: impl FnOnce() -> Option<PeerMsg>,
        charge: usize,
        plan: Plan,
    ) -> Delivery {
        if self.is_proxy() {
            // Wire faults act on a socket, which is the other node's: the message goes on
            // as it is (docs/cluster.md).
            return match msg() {
                Some(PeerMsg::Relay(t)) => self.relay(&t),
                Some(PeerMsg::Event(t)) => self.deliver(&t),
                _ => Delivery::Dropped,
            };
        }
        let charge = charge + SLOT_OVERHEAD + std::mem::size_of::<Faulted>();
        self.enqueue(charge, || {
            PeerMsg::Faulted(Box::new(Faulted { msg: msg(), plan }))
        })
    }

    fn enqueue(&self, charge: usize, msg: impl FnOnce() -> PeerMsg) -> Delivery {
        if !self.is_alive() || self.0.control.load(Ordering::Relaxed) & OVERFLOW != 0 {
            return Delivery::Dropped;
        }
        let queued = self.0.queued_bytes.fetch_add(charge, Ordering::AcqRel) + charge;
        if queued > self.0.limit_bytes {
            self.0.queued_bytes.fetch_sub(charge, Ordering::AcqRel);
            // Nothing more is queued from now on: the connection is closed as soon as its loop
            // sees the order, whatever it is doing.
            self.control(Control::Overflow);
            return Delivery::Dropped;
        }
        match self.0.queue.push(msg()) {
            Ok(()) => {
                self.0.counters.relayed(charge - SLOT_OVERHEAD);
                Delivery::Queued
            }
            Err(_) => {
                self.0.queued_bytes.fetch_sub(charge, Ordering::AcqRel);
                Delivery::Dropped
            }
        }
    }

    /// Gives the peer an order that overtakes its queue; false when the peer is gone.
    pub fn control(&self, control: Control) -> bool {
        if self.0.queue.lock().closed {
            return false;
        }
        self.0.control.fetch_or(control.bit(), Ordering::AcqRel);
        self.0.controlled.wake();
        self.0.queue.pushed.wake();
        true
    }
}

impl Inbox {
    pub fn receiver(&mut self) -> Pin<&mut Receiver> {
        Pin::new(&mut self.rx)
    }

    /// The next queued message, if any, without waiting (control orders are not taken here).
    pub fn try_recv(&self) -> Result<PeerMsg, Empty> {
        let msg = self.owner.0.queue.pop().ok_or(Empty)?;
        self.taken(&msg);
        Ok(msg)
    }

    /// Resolves with the next control order: raced against writes to the socket, so that a
    /// peer that stopped reading still obeys overflow, stop and crash.
    pub async fn control(&self) -> Control {
        futures_lite::future::poll_fn(|cx| {
            if let Some(control) = self.owner.0.take_control() {
                return Poll::Ready(control);
            }
            self.owner.0.controlled.register(cx.waker());
            // An order between the first look and the registration woke nobody: look again.
            match self.owner.0.take_control() {
                Some(control) => Poll::Ready(control),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// As [`try_recv`](Self::try_recv), but leaves a [`PeerMsg::Faulted`] at the head of the
    /// queue: a batch of plain writes stops before it.
    pub fn try_recv_plain(&self) -> Result<PeerMsg, Empty> {
        let msg = self
            .owner
            .0
            .queue
            .pop_if(|m| !matches!(m, PeerMsg::Faulted(_)))
            .ok_or(Empty)?;
        self.taken(&msg);
        Ok(msg)
    }

    /// To be called for each message taken from the receiver: releases its bytes.
    pub fn taken(&self, msg: &PeerMsg) {
        self.owner
            .0
            .queued_bytes
            .fetch_sub(msg.charge(), Ordering::AcqRel);
    }

    pub fn owner(&self) -> &PeerRef {
        &self.owner
    }

    /// Withdraws a pending order that no longer applies: a `Replaced` the old connection ended
    /// before it saw, which must not close the connection that took its place.
    pub fn withdraw(&self, control: Control) {
        self.owner
            .0
            .control
            .fetch_and(!control.bit(), Ordering::AcqRel);
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

    fn text(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_owned())
    }

    #[test]
    fn the_byte_limit_counts_the_overhead_and_overflow_overtakes_the_queue() {
        let (peer, mut inbox) = Mailbox::new(1, 2 * (5 + SLOT_OVERHEAD));
        assert_eq!(peer.relay(&text("12345")), Delivery::Queued);
        assert_eq!(peer.relay(&text("12345")), Delivery::Queued);
        // One byte of text more than the bound holds: a 1-byte message is charged 129 bytes.
        assert_eq!(peer.relay(&text("1")), Delivery::Dropped);
        assert_eq!(peer.relay(&text("1")), Delivery::Dropped);
        let mut seen = Vec::new();
        while let Some(d) = futures_lite::future::block_on(futures_lite::future::poll_once(async {
            futures_lite::StreamExt::next(&mut *inbox.receiver()).await
        }))
        .flatten()
        {
            if let Delivered::Message(m) = &d {
                inbox.taken(m);
            }
            seen.push(match d {
                Delivered::Control(c) => format!("{c:?}"),
                Delivered::Message(PeerMsg::Relay(t) | PeerMsg::Event(t)) => t.as_str().to_owned(),
                Delivered::Message(PeerMsg::Faulted(_)) => "faulted".to_owned(),
            });
        }
        assert_eq!(seen, ["Overflow", "12345", "12345"]);
    }

    #[test]
    fn the_overhead_covers_a_slot() {
        // A slot of a `VecDeque` that doubled, plus jemalloc's smallest allocation (8 bytes).
        assert!(2 * std::mem::size_of::<PeerMsg>() + 8 <= SLOT_OVERHEAD);
    }

    #[test]
    fn a_relayed_frame_does_not_keep_its_read_buffer() {
        let (peer, inbox) = Mailbox::new(1, 1 << 20);
        let buffer = bytes_of(&"x".repeat(64 * 1024));
        let slice = Utf8Bytes::try_from(buffer.slice(0..2)).expect("utf-8");
        assert_eq!(peer.relay(&slice), Delivery::Queued);
        let Ok(PeerMsg::Relay(queued)) = inbox.try_recv() else {
            panic!("a relay is queued");
        };
        assert_eq!(queued.as_str(), "xx");
        assert_ne!(queued.as_str().as_ptr(), slice.as_str().as_ptr());
    }

    fn bytes_of(s: &str) -> async_tungstenite::tungstenite::Bytes {
        async_tungstenite::tungstenite::Bytes::from(s.to_owned())
    }

    #[test]
    fn the_receiver_wakes_on_a_push_and_keeps_order() {
        let (peer, mut inbox) = Mailbox::new(1, 1 << 20);
        let woken = futures_lite::future::block_on(async {
            let first = async { futures_lite::StreamExt::next(&mut *inbox.receiver()).await };
            let push = async {
                async_io::Timer::after(std::time::Duration::from_millis(20)).await;
                assert_eq!(peer.relay(&text("a")), Delivery::Queued);
                assert_eq!(peer.relay(&text("b")), Delivery::Queued);
            };
            futures_lite::future::zip(first, push).await.0
        });
        assert!(matches!(woken, Some(Delivered::Message(PeerMsg::Relay(m))) if m.as_str() == "a"));
        assert!(matches!(inbox.try_recv(), Ok(PeerMsg::Relay(m)) if m.as_str() == "b"));
        assert_eq!(inbox.try_recv().err(), Some(Empty));
    }

    #[test]
    fn a_control_order_wakes_a_loop_that_waits_on_something_else() {
        let (peer, inbox) = Mailbox::new(1, 1 << 20);
        let got = futures_lite::future::block_on(async {
            let wait = inbox.control();
            let order = async {
                async_io::Timer::after(std::time::Duration::from_millis(20)).await;
                assert!(peer.control(Control::Crash));
            };
            futures_lite::future::zip(wait, order).await.0
        });
        assert_eq!(got, Control::Crash);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (peer, inbox) = Mailbox::new(1, 1 << 20);
        for _ in 0..100 {
            assert_eq!(peer.relay(&text("x")), Delivery::Queued);
        }
        while inbox.try_recv().is_ok() {}
        assert!(peer.0.queue.lock().messages.capacity() <= KEEP_SLOTS);
        assert_eq!(peer.0.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dropping_the_inbox_marks_the_peer_dead() {
        let (peer, inbox) = Mailbox::new(1, 10);
        drop(inbox);
        assert!(!peer.is_alive());
        assert_eq!(peer.relay(&text("x")), Delivery::Dropped);
        assert!(
            !peer.control(Control::Crash),
            "nothing is ordered once the inbox is gone"
        );
    }
}
