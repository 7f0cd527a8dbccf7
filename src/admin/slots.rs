//! How many admin connections are held, and by whom.
//!
//! Two pools, so that clients without the token cannot lock the operator out:
//! - *waiting*: accepted, request not yet read and allowed. Anyone can open these, so when
//!   [`MAX_WAITING`] are held a new arrival evicts the oldest (closed without an answer): a
//!   silent client keeps its place only until newer ones come, and an operator's request,
//!   sent right after its connect, is read before it could be pushed out.
//! - *served*: requests that passed [`super::access`] (event streams included), at most
//!   [`MAX_SERVED`]; past it the answer is 503.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Connections whose request is not read and allowed yet.
pub const MAX_WAITING: usize = 64;
/// Allowed requests served at once (event streams included).
pub const MAX_SERVED: usize = 64;

#[derive(Default)]
pub struct Slots {
    served: AtomicUsize,
    waiting: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    /// Oldest first; dropping a sender evicts its connection.
    entries: VecDeque<(u64, async_channel::Sender<()>)>,
}

impl Slots {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection waits for its request; the oldest waiting one is evicted if the pool
    /// is full.
    pub fn arrive(self: &Arc<Self>) -> Waiting {
        let (tx, evicted) = async_channel::bounded(1);
        let mut queue = self.queue();
        let id = queue.next_id;
        queue.next_id += 1;
        while queue.entries.len() >= MAX_WAITING {
            if let Some((old, _)) = queue.entries.pop_front() {
                log::debug!(
                    "admin API: connection {old} evicted: {MAX_WAITING} waiting for their request"
                );
            }
        }
        queue.entries.push_back((id, tx));
        Waiting {
            id,
            slots: Arc::clone(self),
            evicted,
        }
    }

    /// A place for an allowed request, or `None` if [`MAX_SERVED`] are being served.
    pub fn serve(self: &Arc<Self>) -> Option<Served> {
        self.served
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SERVED).then_some(n + 1)
            })
            .ok()
            .map(|_| Served(Arc::clone(self)))
    }

    /// (waiting, served), for tests and logs.
    pub fn held(&self) -> (usize, usize) {
        (
            self.queue().entries.len(),
            self.served.load(Ordering::Acquire),
        )
    }
}

/// A place in the waiting pool, given up when dropped.
pub struct Waiting {
    id: u64,
    slots: Arc<Slots>,
    evicted: async_channel::Receiver<()>,
}

impl Waiting {
    /// Resolves when a newer connection took this one's place.
    pub async fn evicted(&self) {
        // Nothing is ever sent: the sender's drop is the signal.
        let _ = self.evicted.recv().await;
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut queue = self.slots.queue();
        if let Some(at) = queue.entries.iter().position(|(id, _)| *id == self.id) {
            queue.entries.remove(at);
        }
    }
}

/// A place in the served pool, given up when dropped.
pub struct Served(Arc<Slots>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.served.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn the_oldest_waiting_connection_makes_room_for_a_new_one() {
        let slots = Arc::new(Slots::default());
        let waiting: Vec<Waiting> = (0..MAX_WAITING).map(|_| slots.arrive()).collect();
        assert_eq!(slots.held(), (MAX_WAITING, 0));
        let newest = slots.arrive();
        assert_eq!(slots.held(), (MAX_WAITING, 0));
        block_on(async {
            assert!(
                poll_once(waiting[0].evicted()).await.is_some(),
                "the oldest is out"
            );
            assert!(poll_once(waiting[1].evicted()).await.is_none());
            assert!(poll_once(newest.evicted()).await.is_none());
        });
        drop(waiting);
        assert_eq!(slots.held(), (1, 0));
        drop(newest);
        assert_eq!(slots.held(), (0, 0));
    }

    #[test]
    fn served_places_are_bounded_and_given_back() {
        let slots = Arc::new(Slots::default());
        let served: Vec<Served> = (0..MAX_SERVED).filter_map(|_| slots.serve()).collect();
        assert_eq!(served.len(), MAX_SERVED);
        assert!(slots.serve().is_none());
        drop(served);
        assert!(slots.serve().is_some());
        assert_eq!(slots.held(), (0, 0));
    }
}
