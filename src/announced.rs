//! What a named room has told its members about who is in it, so that it never tells them out
//! of order: a newcomer's `joined` must not go out while a member that already died has not
//! had its `left`, and no member may hear of a departure it was never told was a member.
//!
//! A member's death reaches its room late: the registry process learns of it, removes the
//! registration and only then queues a `Leave` behind whatever the room was already asked (a
//! join, say). So a join first retires the announced members that are not alive any more; their
//! `left` goes out before the newcomer's `joined`, and the `Leave` that comes later is a no-op.
//! No lock: the state belongs to the room's process.
use crate::registry::PeerId;
use std::collections::HashSet;

#[derive(Debug, Default)]
pub(crate) struct Announced {
    /// Told to the room (or in it when this process started) and not yet announced as gone.
    present: HashSet<PeerId>,
    /// Announced as gone by a join while the registry process's `Leave` was on its way.
    retired: HashSet<PeerId>,
}

impl Announced {
    /// A room process starting with these peers registered (live or not).
    pub fn new(registered: impl IntoIterator<Item = PeerId>) -> Self {
        Announced {
            present: registered.into_iter().collect(),
            retired: HashSet::new(),
        }
    }

    pub fn joined(&mut self, peer: PeerId) {
        self.present.insert(peer);
    }

    /// The announced members that are no longer among the `alive`: to retire before a join.
    pub fn gone(&self, alive: &[PeerId]) -> Vec<PeerId> {
        let alive: HashSet<PeerId> = alive.iter().copied().collect();
        let mut gone: Vec<PeerId> = self.present.difference(&alive).copied().collect();
        gone.sort_unstable();
        gone
    }

    /// `peer`'s `left` goes out now; `leave_pending` when the registry process removed it (its
    /// `Leave` is queued or about to be), so that that `Leave` is then ignored.
    pub fn retire(&mut self, peer: PeerId, leave_pending: bool) {
        self.present.remove(&peer);
        if leave_pending {
            self.retired.insert(peer);
        }
    }

    /// The registry process's `Leave` for `peer`: whether its `left` must still go out.
    pub fn leave(&mut self, peer: PeerId) -> bool {
        self.present.remove(&peer);
        !self.retired.remove(&peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_member_is_announced_once() {
        let mut a = Announced::new([1, 2]);
        a.joined(3);
        assert_eq!(a.gone(&[1, 3]), vec![2]);
        a.retire(2, true);
        assert!(a.gone(&[1, 3]).is_empty());
        assert!(!a.leave(2), "the late Leave of a retired member is a no-op");
        assert!(a.leave(1));
        // Retired without a pending Leave: nothing to swallow later.
        a.retire(3, false);
        assert!(a.leave(3));
        assert!(a.gone(&[]).is_empty());
    }

    #[test]
    fn a_leave_for_a_peer_this_process_never_knew_is_announced() {
        // After a restart, a Leave queued before it still goes out.
        let mut a = Announced::new([]);
        assert!(a.leave(9));
    }
}
