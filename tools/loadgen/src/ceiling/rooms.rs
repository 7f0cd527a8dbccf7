//! The ceiling's rooms: numbered, at most two peers each. Joining and leaving happen under one lock, so a
//! join is atomic ("exactly one peer present, and not me") and a departure unlinks both sides at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::wire::MAX_ROOM;

/// A peer's queue of frames to write to its socket.
pub type Outbox = mpsc::Sender<Message>;

/// Where a peer's relayed frames go: the other peer's outbox. Only the registry writes it, so the relay
/// path takes this small lock and never the registry's.
pub type Partner = Arc<Mutex<Option<Outbox>>>;

/// A connected peer as the registry knows it.
#[derive(Clone)]
pub struct Member {
    pub id: u64,
    pub outbox: Outbox,
    pub partner: Partner,
}

#[derive(Default)]
pub struct Rooms {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<u32, Vec<Member>>,
    last: u32,
}

/// A poisoned lock only means another peer's task panicked mid-update of plain data; carrying on is safer
/// for a benchmark server than taking every other peer down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Rooms {
    /// Moves `me` out of `old` into a fresh room; `None` when all numbers are taken.
    pub fn create(&self, me: &Member, old: Option<u32>) -> Option<u32> {
        let mut inner = lock(&self.inner);
        if let Some(old) = old {
            inner.leave(old, me.id);
        }
        if inner.rooms.len() >= MAX_ROOM as usize {
            return None;
        }
        // Sequential numbers with wrap-around: a number is reused only after every other one was handed out.
        loop {
            inner.last = inner.last % MAX_ROOM + 1;
            let room = inner.last;
            if let std::collections::hash_map::Entry::Vacant(slot) = inner.rooms.entry(room) {
                slot.insert(vec![me.clone()]);
                return Some(room);
            }
        }
    }

    /// Moves `me` from `old` into `room` if `room` holds exactly one other peer; otherwise changes nothing.
    pub fn join(&self, room: u32, me: &Member, old: Option<u32>) -> bool {
        let mut inner = lock(&self.inner);
        match inner.rooms.get(&room) {
            Some(members) if members.len() == 1 && members[0].id != me.id => {}
            _ => return false,
        }
        if let Some(old) = old {
            inner.leave(old, me.id);
        }
        let Some(members) = inner.rooms.get_mut(&room) else {
            return false;
        };
        let other = &members[0];
        *lock(&other.partner) = Some(me.outbox.clone());
        *lock(&me.partner) = Some(other.outbox.clone());
        members.push(me.clone());
        true
    }

    /// Takes peer `id` out of `room` and unlinks whoever stays; an empty room is dropped.
    pub fn leave(&self, room: u32, id: u64) {
        lock(&self.inner).leave(room, id);
    }

    /// Live rooms, for the leak check in tests.
    pub fn len(&self) -> usize {
        lock(&self.inner).rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn leave(&mut self, room: u32, id: u64) {
        let Some(members) = self.rooms.get_mut(&room) else {
            return;
        };
        for m in members.iter() {
            *lock(&m.partner) = None;
        }
        members.retain(|m| m.id != id);
        if members.is_empty() {
            self.rooms.remove(&room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> (Member, mpsc::Receiver<Message>) {
        let (outbox, inbox) = mpsc::channel(4);
        (
            Member {
                id,
                outbox,
                partner: Partner::default(),
            },
            inbox,
        )
    }

    #[test]
    fn join_needs_exactly_one_other_peer() {
        let rooms = Rooms::default();
        let (a, _ia) = member(1);
        let (b, _ib) = member(2);
        let (c, _ic) = member(3);
        let room = rooms.create(&a, None).unwrap();
        assert!(!rooms.join(room, &a, Some(room)), "own room");
        assert!(!rooms.join(room + 1, &b, None), "unknown room");
        assert!(rooms.join(room, &b, None));
        assert!(!rooms.join(room, &c, None), "full room");
        assert!(lock(&a.partner).is_some() && lock(&b.partner).is_some());
        rooms.leave(room, a.id);
        assert!(
            lock(&b.partner).is_none(),
            "the peer left behind is unlinked"
        );
        assert!(
            rooms.join(room, &c, None),
            "a room with one peer left accepts a newcomer"
        );
        rooms.leave(room, b.id);
        rooms.leave(room, c.id);
        assert!(rooms.is_empty());
    }

    #[test]
    fn a_peer_is_in_one_room_at_most() {
        let rooms = Rooms::default();
        let (a, _ia) = member(1);
        let first = rooms.create(&a, None).unwrap();
        let second = rooms.create(&a, Some(first)).unwrap();
        assert_ne!(first, second);
        assert_eq!(rooms.len(), 1);
        rooms.leave(second, a.id);
        assert!(rooms.is_empty());
    }
}
