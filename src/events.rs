//! What happens in the server, as a stream anyone may subscribe to (tests await these instead of
//! sleeping; the admin API streams them).
use crate::registry::{PeerId, RoomKey};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use supervisors::SupervisorEvent;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A WebSocket was opened; `client` is the socket's peer address, or the IP address a trusted
    /// proxy forwarded (`--trusted-proxies`).
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
    /// Chaos mode decided to crash a child (published just before the crash).
    ChaosCrash(crate::chaos::ChaosCrash),
    /// A fault rule acted on a message (the record is also in the fault log).
    Fault(Box<crate::faults::Injected>),
    /// A replay met a message other than the one its log recorded at that index (the first
    /// such; the replay acts no more).
    FaultDivergence(Box<crate::faults::replay::Divergence>),
    /// A resumable peer's connection dropped: it stays a member for its window
    /// (docs/rooms-protocol.md, "Resume").
    Detached {
        peer: PeerId,
        room: String,
    },
    /// A detached (or replaced) peer was resumed by a new connection.
    Resumed {
        peer: PeerId,
        room: String,
    },
    /// A node of the cluster appeared (its lease, seen by this node).
    NodeUp {
        node: String,
    },
    /// A node of the cluster is gone: it left, or its lease expired.
    NodeDown {
        node: String,
    },
}

/// A broadcast of [`Event`]s to unbounded subscriber queues; free when nobody listens.
#[derive(Default)]
pub struct Events {
    subscribers: Mutex<Vec<async_channel::Sender<Event>>>,
    count: AtomicUsize,
    /// Streams to outside readers (`GET /events`) still writing; see [`Events::stream_opened`].
    streams: AtomicUsize,
    stream_ended: event_listener::Event,
}

/// Held by a stream of events to an outside reader for as long as it writes.
pub struct StreamGuard<'a>(&'a Events);

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
        self.0.stream_ended.notify(usize::MAX);
    }
}

impl Events {
    pub fn subscribe(&self) -> async_channel::Receiver<Event> {
        let (tx, rx) = async_channel::unbounded();
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.push(tx);
        self.count.store(subs.len(), Ordering::Release);
        rx
    }

    /// A subscription of at most `capacity` undelivered events: a subscriber that falls that far
    /// behind is dropped (its receiver ends) instead of making the server buffer without bound.
    pub fn subscribe_bounded(&self, capacity: usize) -> async_channel::Receiver<Event> {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.push(tx);
        self.count.store(subs.len(), Ordering::Release);
        rx
    }

    /// A stream to an outside reader starts: the process does not exit before it has written
    /// its last words (the `stopped` event), see [`until_streams_end`](Self::until_streams_end).
    pub fn stream_opened(&self) -> StreamGuard<'_> {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self)
    }

    /// Resolves once no stream to an outside reader is writing.
    pub async fn until_streams_end(&self) {
        loop {
            if self.streams.load(Ordering::Acquire) == 0 {
                return;
            }
            let listener = self.stream_ended.listen();
            if self.streams.load(Ordering::Acquire) == 0 {
                return;
            }
            listener.await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_subscriber_that_falls_behind_is_dropped() {
        let events = Events::default();
        let slow = events.subscribe_bounded(2);
        let fast = events.subscribe();
        for peer in 0..3 {
            events.publish(Event::Disconnected { peer });
        }
        assert_eq!(slow.try_recv(), Ok(Event::Disconnected { peer: 0 }));
        assert_eq!(slow.try_recv(), Ok(Event::Disconnected { peer: 1 }));
        assert!(slow.try_recv().is_err());
        assert!(slow.is_closed(), "dropped, not left to catch up");
        assert_eq!(fast.len(), 3);
    }
}
