//! What happens in the server, as a stream anyone may subscribe to (tests await these instead of
//! sleeping; the admin API streams them).
use crate::registry::{PeerId, RoomKey};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use supervisors::SupervisorEvent;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A WebSocket was opened; `client` is X-Forwarded-For or the socket's peer address.
    Connected {
        peer: PeerId,
        client: String,
    },
    /// A peer's process ended (its connection is closed).
    Disconnected {
        peer: PeerId,
    },
    Joined {
        room: RoomKey,
        peer: PeerId,
    },
    Left {
        room: RoomKey,
        peer: PeerId,
    },
    RoomStarted {
        room: RoomKey,
    },
    RoomStopped {
        room: RoomKey,
    },
    Supervision(SupervisorEvent),
}

/// A broadcast of [`Event`]s to unbounded subscriber queues; free when nobody listens.
#[derive(Default)]
pub struct Events {
    subscribers: Mutex<Vec<async_channel::Sender<Event>>>,
    count: AtomicUsize,
}

impl Events {
    pub fn subscribe(&self) -> async_channel::Receiver<Event> {
        let (tx, rx) = async_channel::unbounded();
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.push(tx);
        self.count.store(subs.len(), Ordering::Release);
        rx
    }

    pub fn publish(&self, event: Event) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| s.try_send(event.clone()).is_ok());
        self.count.store(subs.len(), Ordering::Release);
    }
}
