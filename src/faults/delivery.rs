//! Delivery through a lane: a stream's messages in the order they were sent, each at its due
//! time. A delayed message waits here, outside every room and peer process, in a task of its
//! own that ends once its lane is empty; the messages behind it on the stream wait with it.
use super::wire::Plan;
use crate::mailbox::{Delivery, PeerMsg, PeerRef};
use async_tungstenite::tungstenite::Utf8Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Messages held by all lanes together at most; past it, messages go on undelayed (and the
/// first one past it is logged).
pub const MAX_HELD: usize = 100_000;

/// How a message reaches a peer's mailbox, as its endpoint does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A book frame, passed on verbatim.
    Relay,
    /// A named-rooms message, through the receiver's `on_send` hook.
    Event,
}

impl Via {
    pub fn deliver(self, to: &PeerRef, text: &Utf8Bytes) {
        let _ = self.try_deliver(to, text);
    }

    /// As [`deliver`](Self::deliver), saying whether the receiver was there to queue it.
    pub fn try_deliver(self, to: &PeerRef, text: &Utf8Bytes) -> Delivery {
        match self {
            Via::Relay => to.relay(text),
            Via::Event => to.deliver(text),
        }
    }

    /// As [`deliver`](Self::deliver), with a wire plan for the receiver's connection, if any.
    pub fn deliver_planned(self, to: &PeerRef, text: &Utf8Bytes, plan: Option<&Plan>) {
        let Some(plan) = plan else {
            return self.deliver(to, text);
        };
        let msg = || {
            Some(match self {
                // Copied, as `PeerRef::relay` does: not a slice of the sender's read buffer.
                Via::Relay => PeerMsg::Relay(Utf8Bytes::from(text.as_str().to_owned())),
                Via::Event => PeerMsg::Event(text.clone()),
            })
        };
        let _ = to.faulted(msg, text.len(), plan.clone());
    }
}

struct Held {
    /// Its place among every message held (see [`HeldCount::next_seq`]).
    seq: u64,
    due: Instant,
    to: PeerRef,
    text: Utf8Bytes,
    via: Via,
    plan: Option<Plan>,
}

#[derive(Default)]
struct Queue {
    held: VecDeque<Held>,
    /// A task is draining the queue.
    draining: bool,
}

#[derive(Default)]
pub struct Lane {
    queue: Mutex<Queue>,
}

/// Counts what every lane and every hold ([`super::hold`]) holds, for the bound; and knows the
/// lanes that hold something, for `POST /faults/reset`.
#[derive(Default)]
pub struct HeldCount(AtomicUsize, AtomicBool, Busy);

/// The lanes holding something, by address; and the order messages were held in.
#[derive(Default)]
pub struct Busy {
    lanes: Mutex<HashMap<usize, Weak<Lane>>>,
    seq: AtomicU64,
}

/// A message held by a hold ([`super::hold`]), or taken out of a lane by `POST /faults/reset`.
#[derive(Clone)]
pub struct Taken {
    pub seq: u64,
    pub to: PeerRef,
    pub text: Utf8Bytes,
    pub via: Via,
}

impl HeldCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub(super) fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether the bound is reached (warned once): then nothing more is held.
    pub(super) fn full(&self) -> bool {
        let over = self.get() >= MAX_HELD;
        if over && !self.1.swap(true, Ordering::Relaxed) {
            log::warn!("faults: {MAX_HELD} messages held; delays and holds are skipped past that");
        }
        over
    }

    /// Numbers messages in the order they are held, so that a reset delivers lanes and holds
    /// together in the order their messages were sent.
    pub(super) fn next_seq(&self) -> u64 {
        self.2.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn busy(&self, lane: &Arc<Lane>) {
        lock(&self.2.lanes).insert(Arc::as_ptr(lane) as usize, Arc::downgrade(lane));
    }

    fn idle(&self, lane: &Lane) {
        lock(&self.2.lanes).remove(&(std::ptr::from_ref(lane) as usize));
    }

    /// Empties every lane: what they held, in the order it was held.
    pub(super) fn take_lanes(&self) -> Vec<Taken> {
        let lanes: Vec<Arc<Lane>> = lock(&self.2.lanes)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let mut taken = Vec::new();
        for lane in lanes {
            let mut queue = lane.lock();
            self.sub(queue.held.len());
            taken.extend(queue.held.drain(..).map(|h| Taken {
                seq: h.seq,
                to: h.to,
                text: h.text,
                via: h.via,
            }));
        }
        taken
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one map insert, remove or copy.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Each critical section is a push or a pop and a mailbox push.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds nothing: a message sent now would not overtake one of its stream.
    pub fn is_idle(&self) -> bool {
        self.lock().held.is_empty()
    }

    /// Delivers `copies` of `text` to `to` after `delay`, behind what the lane holds already.
    /// With nothing held and no delay, delivered now: the lane costs nothing then.
    // One more than clippy's bound since the wire plan; bundling them would rewrite every
    // caller that the other actions are being added to.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        self: &Arc<Self>,
        delay: Duration,
        copies: u64,
        to: &PeerRef,
        text: &Utf8Bytes,
        via: Via,
        count: &Arc<HeldCount>,
        plan: Option<&Plan>,
    ) {
        let mut queue = self.lock();
        let over = count.get() >= MAX_HELD;
        if queue.held.is_empty() && (delay.is_zero() || over) {
            if over && !delay.is_zero() && !count.1.swap(true, Ordering::Relaxed) {
                log::warn!("faults: {MAX_HELD} messages held; delays are skipped past that");
            }
            // Under the lane's lock: a drain finishing meanwhile cannot slip in between.
            for _ in 0..copies {
                via.deliver_planned(to, text, plan);
            }
            return;
        }
        let now = Instant::now();
        let due = queue
            .held
            .back()
            .map_or(now + delay, |last| last.due.max(now + delay));
        for _ in 0..copies {
            queue.held.push_back(Held {
                seq: count.next_seq(),
                due,
                to: to.clone(),
                text: text.clone(),
                via,
                plan: plan.cloned(),
            });
        }
        count.0.fetch_add(
            usize::try_from(copies).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        if !queue.draining {
            queue.draining = true;
            count.busy(self);
            let lane = Arc::clone(self);
            let count = Arc::clone(count);
            drop(bastion::executor::spawn(async move {
                lane.drain(&count).await;
            }));
        }
    }

    async fn drain(&self, count: &HeldCount) {
        loop {
            let wait = {
                let mut queue = self.lock();
                loop {
                    let Some(head) = queue.held.front() else {
                        queue.draining = false;
                        count.idle(self);
                        return;
                    };
                    let now = Instant::now();
                    if head.due > now {
                        break head.due - now;
                    }
                    if let Some(held) = queue.held.pop_front() {
                        count.0.fetch_sub(1, Ordering::Relaxed);
                        // A receiver gone meanwhile drops it, as its mailbox would.
                        held.via
                            .deliver_planned(&held.to, &held.text, held.plan.as_ref());
                    }
                }
            };
            crate::deadline::after(wait).await;
        }
    }
}
