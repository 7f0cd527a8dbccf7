//! Where `reorder`, `hold`, `cross` and `duplicate`'s late copies keep the messages they take
//! aside, and what releases them (docs/faults.md, "Actions" and "Held messages").
//!
//! A message taken aside waits here, in the server's fault state, outside every room and peer
//! process (a room's crash does not lose it), until what it waits for has passed: later
//! messages of its sender → receiver *pair* (`reorder`, `hold`), of its rule's *stream* (late
//! copies), the reverse pair's message under the same `cross` rule, or its time. Each one also
//! has a time bound, after which it is delivered anyway, and `POST /faults/reset` delivers or
//! discards them all at once. They count towards [`MAX_HELD`](super::delivery::MAX_HELD)
//! together with the lanes' delayed messages.
use super::delivery::{HeldCount, Lane, Taken, Via};
use crate::mailbox::{Delivery, PeerRef};
use async_tungstenite::tungstenite::Utf8Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What a held message waits for, besides its time bound.
pub enum Wait {
    /// `left` more messages delivered on `pair` (`book/#1/#1>#2`) of type `kind` (any: `None`).
    Pair {
        pair: String,
        kind: Option<String>,
        left: u64,
    },
    /// `left` more messages of the stream whose lane this is.
    Stream { lane: Arc<Lane>, left: u64 },
    /// The message of the other direction under the same `cross` rule: `key` names the rule
    /// and the unordered pair, `from` this message's sender.
    Cross { key: String, from: String },
    /// Only its time (`after_ms`).
    Time,
}

struct Pending {
    msgs: Vec<Taken>,
    wait: Wait,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// By id, so in the order they were held.
    pending: BTreeMap<u64, Pending>,
    by_pair: HashMap<String, Vec<u64>>,
    /// By the lane's address: the lane is kept alive by the pending's `Wait::Stream`.
    by_lane: HashMap<usize, Vec<u64>>,
    cross: HashMap<String, u64>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Pending> {
        fn unlist<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Vec<u64>>, key: &K, id: u64) {
            if let Some(ids) = index.get_mut(key) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    index.remove(key);
                }
            }
        }
        let pending = self.pending.remove(&id)?;
        match &pending.wait {
            Wait::Pair { pair, .. } => unlist(&mut self.by_pair, pair, id),
            Wait::Stream { lane, .. } => unlist(&mut self.by_lane, &lane_key(lane), id),
            Wait::Cross { key, .. } => {
                if self.cross.get(key) == Some(&id) {
                    self.cross.remove(key);
                }
            }
            Wait::Time => {}
        }
        Some(pending)
    }
}

fn lane_key(lane: &Arc<Lane>) -> usize {
    Arc::as_ptr(lane) as usize
}

/// The messages held aside, and their count in the server's [`HeldCount`].
pub struct Holds {
    count: Arc<HeldCount>,
    state: Mutex<State>,
    /// Pendings waiting on a pair: while any, every message goes through `Faults::send` (with
    /// or without rules) so that the pair's messages are counted.
    on_pairs: AtomicUsize,
    /// Pendings waiting on a stream (late copies): while none, a rule's message does not look.
    on_streams: AtomicUsize,
}

/// One message and its copies, to be held.
#[derive(Clone, Copy)]
pub struct Copies<'a> {
    pub to: &'a PeerRef,
    pub text: &'a Utf8Bytes,
    pub via: Via,
    pub copies: u64,
}

impl Holds {
    pub fn new(count: Arc<HeldCount>) -> Arc<Self> {
        Arc::new(Holds {
            count,
            state: Mutex::default(),
            on_pairs: AtomicUsize::new(0),
            on_streams: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few map operations: a panic cannot leave one half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a held message waits on the messages of some pair.
    pub fn watching(&self) -> bool {
        self.on_pairs.load(Ordering::Relaxed) > 0
    }

    fn taken(&self, c: &Copies<'_>) -> Vec<Taken> {
        (0..c.copies)
            .map(|_| Taken {
                seq: self.count.next_seq(),
                to: c.to.clone(),
                text: c.text.clone(),
                via: c.via,
            })
            .collect()
    }

    /// Holds `c` until `wait` or `bound`; false (nothing held) past the bound on held messages.
    pub fn hold(self: &Arc<Self>, c: &Copies<'_>, wait: Wait, bound: Duration) -> bool {
        if self.count.full() {
            return false;
        }
        let id = self.insert(&mut self.lock(), c, wait);
        self.flush_after(id, bound);
        true
    }

    /// Lists `c` as held, under the caller's lock (so that a `cross` looks and holds at once).
    fn insert(&self, state: &mut State, c: &Copies<'_>, wait: Wait) -> u64 {
        let msgs = self.taken(c);
        self.count.add(msgs.len());
        let id = state.next_id;
        state.next_id += 1;
        match &wait {
            Wait::Pair { pair, .. } => {
                state.by_pair.entry(pair.clone()).or_default().push(id);
                self.on_pairs.fetch_add(1, Ordering::Relaxed);
            }
            Wait::Stream { lane, .. } => {
                state.by_lane.entry(lane_key(lane)).or_default().push(id);
                self.on_streams.fetch_add(1, Ordering::Relaxed);
            }
            Wait::Cross { key, .. } => {
                state.cross.insert(key.clone(), id);
            }
            Wait::Time => {}
        }
        state.pending.insert(id, Pending { msgs, wait });
        id
    }

    /// Delivers what `id` still holds once `bound` has passed.
    fn flush_after(self: &Arc<Self>, id: u64, bound: Duration) {
        let holds = Arc::clone(self);
        drop(bastion::executor::spawn(async move {
            crate::deadline::after(bound).await;
            for m in holds.release(id) {
                m.via.deliver(&m.to, &m.text);
            }
        }));
    }

    /// Takes a pending out: its messages, uncounted.
    fn release(&self, id: u64) -> Vec<Taken> {
        self.release_locked(&mut self.lock(), id)
    }

    fn release_locked(&self, state: &mut State, id: u64) -> Vec<Taken> {
        let Some(pending) = state.remove(id) else {
            return Vec::new();
        };
        match pending.wait {
            Wait::Pair { .. } => {
                self.on_pairs.fetch_sub(1, Ordering::Relaxed);
            }
            Wait::Stream { .. } => {
                self.on_streams.fetch_sub(1, Ordering::Relaxed);
            }
            Wait::Cross { .. } | Wait::Time => {}
        }
        self.count.sub(pending.msgs.len());
        pending.msgs
    }

    /// A message of type `kind` was delivered on `pair`: what it released, in held order.
    pub fn pair_passed(&self, pair: &str, kind: &str) -> Vec<Taken> {
        let done: Vec<u64> = {
            let mut state = self.lock();
            let State {
                by_pair, pending, ..
            } = &mut *state;
            let Some(ids) = by_pair.get(pair) else {
                return Vec::new();
            };
            ids.iter()
                .copied()
                .filter(|id| match pending.get_mut(id).map(|p| &mut p.wait) {
                    Some(Wait::Pair {
                        kind: want, left, ..
                    }) if want.as_deref().is_none_or(|w| w == kind) => {
                        *left = left.saturating_sub(1);
                        *left == 0
                    }
                    _ => false,
                })
                .collect()
        };
        done.into_iter().flat_map(|id| self.release(id)).collect()
    }

    /// A message passed the stream of `lane`: the late copies it released, in held order.
    pub fn stream_passed(&self, lane: &Arc<Lane>) -> Vec<Taken> {
        if self.on_streams.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let done: Vec<u64> = {
            let mut state = self.lock();
            let State {
                by_lane, pending, ..
            } = &mut *state;
            let Some(ids) = by_lane.get(&lane_key(lane)) else {
                return Vec::new();
            };
            ids.iter()
                .copied()
                .filter(|id| match pending.get_mut(id).map(|p| &mut p.wait) {
                    Some(Wait::Stream { left, .. }) => {
                        *left = left.saturating_sub(1);
                        *left == 0
                    }
                    _ => false,
                })
                .collect()
        };
        done.into_iter().flat_map(|id| self.release(id)).collect()
    }

    /// A message under a `cross` rule: when the other direction's is held (`key` the same,
    /// another sender), both are released: its messages are returned, to be delivered now with
    /// `c`. Otherwise `c` joins this direction's held messages, or is held; `None` then. Past
    /// the bound on held messages, `Some` of nothing: `c` goes on alone.
    pub fn cross(
        self: &Arc<Self>,
        key: &str,
        from: &str,
        c: &Copies<'_>,
        bound: Duration,
    ) -> Option<Vec<Taken>> {
        // One lock from the look to the hold: both sides sending at once is what glare is.
        let mut state = self.lock();
        let held = state.cross.get(key).copied();
        let same_side = held.and_then(|id| match state.pending.get(&id).map(|p| &p.wait) {
            Some(Wait::Cross { from: f, .. }) => Some(f == from),
            _ => None,
        });
        match (held, same_side) {
            (Some(id), Some(false)) => return Some(self.release_locked(&mut state, id)),
            _ if self.count.full() => return Some(Vec::new()),
            (Some(id), Some(true)) => {
                let msgs = self.taken(c);
                self.count.add(msgs.len());
                if let Some(p) = state.pending.get_mut(&id) {
                    p.msgs.extend(msgs);
                }
                return None;
            }
            _ => {}
        }
        let wait = Wait::Cross {
            key: key.to_owned(),
            from: from.to_owned(),
        };
        let id = self.insert(&mut state, c, wait);
        drop(state);
        self.flush_after(id, bound);
        None
    }

    /// Empties every hold: what they held, in the order it was held.
    pub fn take_all(&self) -> Vec<Taken> {
        let mut state = self.lock();
        let next_id = state.next_id;
        let pending = std::mem::take(&mut state.pending);
        *state = State {
            next_id,
            ..State::default()
        };
        self.on_pairs.store(0, Ordering::Relaxed);
        self.on_streams.store(0, Ordering::Relaxed);
        let msgs: Vec<Taken> = pending.into_values().flat_map(|p| p.msgs).collect();
        self.count.sub(msgs.len());
        msgs
    }
}

/// What `POST /faults/reset` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// Queued to their receivers.
    pub delivered: usize,
    /// Whose receiver was gone (or being closed as a slow reader).
    pub dropped: usize,
    /// Thrown away, as asked.
    pub discarded: usize,
}

/// Every held message of the lanes and the holds, delivered now in the order they were held, or
/// discarded. Mailbox pushes only: it never waits on a queue.
pub fn reset(count: &HeldCount, holds: &Holds, deliver: bool) -> Reset {
    let mut all = count.take_lanes();
    all.extend(holds.take_all());
    all.sort_by_key(|m| m.seq);
    if !deliver {
        return Reset {
            delivered: 0,
            dropped: 0,
            discarded: all.len(),
        };
    }
    let delivered = all
        .iter()
        .filter(|m| m.via.try_deliver(&m.to, &m.text) == Delivery::Queued)
        .count();
    Reset {
        delivered,
        dropped: all.len() - delivered,
        discarded: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::delivery::MAX_HELD;
    use crate::mailbox::Mailbox;

    fn copies<'a>(to: &'a PeerRef, text: &'a Utf8Bytes) -> Copies<'a> {
        Copies {
            to,
            text,
            via: Via::Relay,
            copies: 1,
        }
    }

    const LONG: Duration = Duration::from_secs(600);

    #[test]
    fn the_bound_on_held_messages_holds_at_n_and_n_plus_1() {
        let count = Arc::new(HeldCount::default());
        let holds = Holds::new(Arc::clone(&count));
        let (to, _inbox) = Mailbox::new(1, 1 << 20);
        let text = Utf8Bytes::from_static("{}");
        count.add(MAX_HELD - 2);
        assert!(holds.hold(&copies(&to, &text), Wait::Time, LONG));
        assert_eq!(count.get(), MAX_HELD - 1);
        assert!(holds.hold(&copies(&to, &text), Wait::Time, LONG));
        assert_eq!(count.get(), MAX_HELD);
        assert!(
            !holds.hold(&copies(&to, &text), Wait::Time, LONG),
            "past the bound"
        );
        assert_eq!(count.get(), MAX_HELD);
        count.sub(MAX_HELD - 2);
        assert_eq!(holds.take_all().len(), 2);
        assert_eq!(count.get(), 0);
    }

    #[test]
    fn a_cross_joins_its_own_side_and_releases_the_other() {
        let count = Arc::new(HeldCount::default());
        let holds = Holds::new(Arc::clone(&count));
        let (a, _ia) = Mailbox::new(1, 1 << 20);
        let (b, _ib) = Mailbox::new(2, 1 << 20);
        let text = Utf8Bytes::from_static("{}");
        assert!(holds.cross("k", "#1", &copies(&b, &text), LONG).is_none());
        assert!(holds.cross("k", "#1", &copies(&b, &text), LONG).is_none());
        assert_eq!(count.get(), 2);
        let released = holds.cross("k", "#2", &copies(&a, &text), LONG);
        let released = released.expect("the other side releases");
        assert_eq!(released.len(), 2);
        assert!(released.iter().all(|m| m.to.id() == 2));
        assert!(released[0].seq < released[1].seq);
        assert_eq!(count.get(), 0);
        assert!(
            holds.cross("k", "#2", &copies(&a, &text), LONG).is_none(),
            "then it starts over"
        );
    }

    #[test]
    fn a_pair_releases_on_its_count_of_its_type() {
        let count = Arc::new(HeldCount::default());
        let holds = Holds::new(Arc::clone(&count));
        let (to, _inbox) = Mailbox::new(1, 1 << 20);
        let text = Utf8Bytes::from_static("{}");
        let wait = Wait::Pair {
            pair: "p".into(),
            kind: Some("candidate".into()),
            left: 2,
        };
        assert!(holds.hold(&copies(&to, &text), wait, LONG));
        assert!(holds.watching());
        assert!(holds.pair_passed("p", "answer").is_empty());
        assert!(holds.pair_passed("q", "candidate").is_empty());
        assert!(holds.pair_passed("p", "candidate").is_empty());
        assert_eq!(holds.pair_passed("p", "candidate").len(), 1);
        assert!(!holds.watching());
        assert_eq!(count.get(), 0);
    }
}
