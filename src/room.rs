//! A room process: one per live room, a transient child of `rooms_sup`.
//!
//! The original had no room process: two peers racing into one room could both pass the
//! "exactly one participant" check. Here every join of a room goes through its mailbox, so the
//! check-and-register is atomic. Membership itself lives in the registry, not here: a room that
//! crashes is restarted with the same mailbox and the same members, and relaying (peer to peer,
//! through the registry, as `reply2peer`) never stops.
use crate::events::{Event, Events};
use crate::mailbox::PeerRef;
use crate::registry::{PeerId, Registry, RoomKey};
use crate::rooms_sup::Rooms;
use std::sync::Arc;
use supervisors::StopReason;

/// The only way into a room process.
pub enum RoomMsg {
    /// Join if the room holds exactly one other peer (the book's rule).
    Join {
        peer: PeerRef,
        reply: async_channel::Sender<Result<(), JoinRefused>>,
    },
    /// A peer was removed from the registry under this room's key.
    Leave {
        peer: PeerId,
    },
    /// Injected fault: the room panics.
    Crash,
    Stop(StopReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    /// Empty, full, unknown, or the peer's own room: the book's WRONGROOM.
    NotJoinable,
}

pub(crate) struct Room {
    pub key: RoomKey,
    /// Which instance of the room table entry this process serves.
    pub serial: u64,
    pub inbox: async_channel::Receiver<RoomMsg>,
    pub registry: Arc<Registry>,
    pub events: Arc<Events>,
    pub rooms: Arc<Rooms>,
}

impl Room {
    pub async fn run(self) {
        while let Ok(msg) = self.inbox.recv().await {
            match msg {
                RoomMsg::Join { peer, reply } => {
                    let result = self.join(&peer);
                    let _ = reply.try_send(result);
                }
                RoomMsg::Leave { .. } => {
                    if self.registry.count(&self.key) == 0 {
                        self.stop();
                        return;
                    }
                }
                RoomMsg::Crash => panic!("injected crash of room {}", self.key),
                RoomMsg::Stop(_) => {
                    self.stop();
                    return;
                }
            }
        }
    }

    fn join(&self, peer: &PeerRef) -> Result<(), JoinRefused> {
        let members = self.registry.lookup(&self.key);
        match members.as_slice() {
            [only] if only.id() != peer.id() => {
                self.registry.reg(&self.key, peer);
                self.events.publish(Event::Joined {
                    room: self.key.clone(),
                    peer: peer.id(),
                });
                Ok(())
            }
            _ => Err(JoinRefused::NotJoinable),
        }
    }

    /// Leaves the room table (its number may be handed out again) and refuses what is still
    /// queued: a join that raced with the last leave finds an empty room.
    fn stop(&self) {
        self.rooms.forget(&self.key, self.serial);
        self.inbox.close();
        while let Ok(msg) = self.inbox.try_recv() {
            if let RoomMsg::Join { reply, .. } = msg {
                let _ = reply.try_send(Err(JoinRefused::NotJoinable));
            }
        }
        self.events.publish(Event::RoomStopped {
            room: self.key.clone(),
        });
    }
}
