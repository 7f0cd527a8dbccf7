//! A room process: one per live room, a transient child of `rooms_sup`.
//!
//! The original had no room process: two peers racing into one room could both pass the
//! "exactly one participant" check. Here every join of a room goes through its mailbox, so the
//! check-and-register is atomic. Membership itself lives in the registry, not here: a room that
//! crashes is restarted with the same mailbox and the same members, and relaying (peer to peer,
//! through the registry, as `reply2peer`) never stops. When `rooms_sup` itself restarts, its next
//! instance takes over every room's mailbox the same way: what was queued is served, in order.
use crate::announced::Announced;
use crate::cluster::{Claim, Cluster, Rule};
use crate::events::{Event, Events};
use crate::faults::{Faults, Outgoing, Sender, Via};
use crate::hooks::{AuthData, Refusal, RoomContext, RoomHooks};
use crate::mailbox::PeerRef;
use crate::registry::{PeerId, Registry, RoomKey};
use crate::rooms_protocol::{description, RoomMessage};
use crate::rooms_sup::Rooms;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use supervisors::StopReason;

/// The only way into a room process.
pub enum RoomMsg {
    /// Join if the room holds exactly one other peer (the book's rule).
    Join {
        peer: PeerRef,
        reply: async_channel::Sender<Result<(), JoinRefused>>,
    },
    /// A named-rooms peer asks in; the answer is the members it found there.
    JoinNamed {
        peer: PeerRef,
        auth: Box<AuthData>,
        /// Dropped unanswered only when the join crashed the room (a hook panicked).
        reply: async_channel::Sender<Result<Vec<PeerId>, NamedRefusal>>,
    },
    /// A peer was removed from the registry under this room's key.
    Leave { peer: PeerId },
    /// Injected fault: the room panics.
    Crash,
    /// From `rooms_sup`, for the process serving the table entry `serial` (a process that took
    /// over the mailbox since ignores it).
    Stop { serial: u64, reason: StopReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    /// Empty, full, unknown, or the peer's own room: the book's WRONGROOM.
    NotJoinable,
}

/// Why a named room did not take a peer in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedRefusal {
    /// The room's hooks said no: `error` with the reason, then close 4000.
    Hooks(Refusal),
    /// The room was stopping (its last peer had left) when the join reached it: ask again, and
    /// a fresh room answers. The only answer worth a retry.
    Stopping,
}

/// How a claim on a place in the room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claimed {
    In,
    /// The room's rule said no (cluster-wide).
    Refused,
    /// The peer died while it was being let in.
    Gone,
    /// The cluster's engine could not be asked.
    Unavailable,
}

/// What kind of room a process serves.
#[derive(Clone)]
pub(crate) enum RoomKind {
    /// The book's: two peers at most, joined only when exactly one is in.
    Book,
    /// `/socket/:room`: the room hooks decide.
    Named(NamedRoom),
}

/// A named room's configuration; it outlives the room's process (a restart keeps it).
#[derive(Clone)]
pub struct NamedRoom {
    pub context: Arc<RoomContext>,
    pub hooks: Arc<dyn RoomHooks>,
}

pub(crate) struct Room {
    pub key: RoomKey,
    pub kind: RoomKind,
    /// Which instance of the room table entry this process serves.
    pub serial: u64,
    /// Started again (after its crash, or by a restarted `rooms_sup`), not for the first time.
    pub restarted: bool,
    pub inbox: crate::channel::Receiver<RoomMsg>,
    pub registry: Arc<Registry>,
    pub events: Arc<Events>,
    pub rooms: Arc<Rooms>,
    /// The room's own messages (`joined`, `left`) pass the fault rules too.
    pub faults: Faults,
    /// Decides membership across nodes (on a single node: this room's own count).
    pub cluster: Arc<dyn Cluster>,
}

impl Room {
    /// Not an `async fn`: one keeps its argument twice in its future (the argument and the
    /// local it is moved into), 112 bytes more in every room's process for its whole life.
    #[allow(clippy::manual_async_fn)] // on purpose, as said above
    pub fn run(self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            if let RoomKind::Named(named) = &self.kind {
                // Not a crash: a restart would only run it again, and again, until the panics
                // escalated to the root and stopped the server.
                let init =
                    AssertUnwindSafe(|| named.hooks.on_init(&named.context, &self.members()));
                if std::panic::catch_unwind(init).is_err() {
                    log::error!(
                        "room {}: on_init panicked; the room runs without it",
                        self.key
                    );
                }
            }
            // Started again with nobody in it and nothing asked of it (its last member's leave was
            // what crashed it, say): nothing would ever stop it.
            if self.restarted && self.is_idle() && self.inbox.is_empty() {
                self.stop();
                return;
            }
            let mut announced = Announced::new(self.registry.registered(&self.key));
            while let Ok(msg) = self.inbox.recv().await {
                match msg {
                    RoomMsg::Join { peer, reply } => {
                        let result = match self.kind {
                            // Boxed: a join's state would otherwise be in every room's future.
                            RoomKind::Book => Box::pin(self.join(&peer)).await,
                            RoomKind::Named(_) => Err(JoinRefused::NotJoinable),
                        };
                        let refused = result.is_err();
                        let _ = reply.try_send(result);
                        // Started here for a room of another node (a cluster), and refused.
                        if refused && self.registry.count_local(&self.key) == 0 {
                            self.stop();
                            return;
                        }
                    }
                    RoomMsg::JoinNamed { peer, auth, reply } => {
                        let (result, configured) = match &self.kind {
                            RoomKind::Named(named) => (
                                Box::pin(self.join_named(named, &peer, &auth, &mut announced))
                                    .await
                                    .map_err(NamedRefusal::Hooks),
                                named.context.configured,
                            ),
                            RoomKind::Book => (
                                Err(NamedRefusal::Hooks(Refusal::new("not_a_named_room"))),
                                false,
                            ),
                        };
                        let refused = result.is_err();
                        let _ = reply.try_send(result);
                        // A room started on demand for a peer it then refused would stay empty.
                        if refused && !configured && self.registry.count_local(&self.key) == 0 {
                            self.stop();
                            return;
                        }
                    }
                    RoomMsg::Leave { peer } => {
                        self.cluster.leave(&self.key, peer);
                        let configured = match &self.kind {
                            RoomKind::Named(named) => {
                                if announced.leave(peer) {
                                    self.left(named, peer);
                                }
                                named.context.configured
                            }
                            RoomKind::Book => false,
                        };
                        if !configured && self.registry.count_local(&self.key) == 0 {
                            self.stop();
                            return;
                        }
                    }
                    RoomMsg::Crash => panic!("injected crash of room {}", self.key),
                    RoomMsg::Stop { serial, .. } if serial != self.serial => {}
                    // rooms_sup restarts: its next instance takes over this mailbox, with what is
                    // queued behind this message, and the table entry.
                    RoomMsg::Stop {
                        reason: StopReason::SupervisorDown,
                        ..
                    } if self.rooms.supervisor().is_accepting() => return,
                    RoomMsg::Stop { .. } => {
                        self.stop();
                        return;
                    }
                }
                if !self.rooms.is_served_by(&self.key, self.serial) {
                    // This process outlived a restart of rooms_sup past its grace (a blocking hook)
                    // and another one serves the mailbox now: two would break the atomic joins.
                    return;
                }
            }
        }
    }

    async fn join(&self, peer: &PeerRef) -> Result<(), JoinRefused> {
        let members = self.registry.lookup(&self.key);
        if members.iter().any(|m| m.id() == peer.id()) {
            return Err(JoinRefused::NotJoinable);
        }
        if self.claim(peer, Rule::Book, members.len()).await != Claimed::In {
            return Err(JoinRefused::NotJoinable);
        }
        self.events.publish(Event::Joined {
            room: self.key.clone(),
            peer: peer.id(),
        });
        Ok(())
    }

    /// Asks the cluster to let `peer` in under `rule` (`local`: the members this node holds
    /// there), then registers it.
    async fn claim(&self, peer: &PeerRef, rule: Rule, local: usize) -> Claimed {
        if let Err(e) = self.cluster.watch(&self.key).await {
            log::warn!("room {}: peer {} refused: {e}", self.key, peer.id());
            return Claimed::Unavailable;
        }
        match self.cluster.claim(&self.key, peer.id(), rule, local).await {
            Ok(Claim::Admitted { .. }) => {
                if self.registry.reg(&self.key, peer) {
                    return Claimed::In;
                }
                // Gone meanwhile: the other nodes must not keep it.
                self.cluster.leave(&self.key, peer.id());
                Claimed::Gone
            }
            Ok(Claim::Refused) => Claimed::Refused,
            Err(e) => {
                log::warn!("room {}: peer {} refused: {e}", self.key, peer.id());
                Claimed::Unavailable
            }
        }
    }

    /// Started on demand and without a live member: such a room has no reason to run.
    fn is_idle(&self) -> bool {
        let configured = match &self.kind {
            RoomKind::Named(named) => named.context.configured,
            RoomKind::Book => false,
        };
        !configured && self.registry.count_local(&self.key) == 0
    }

    fn members(&self) -> Vec<PeerId> {
        self.registry
            .lookup(&self.key)
            .iter()
            .map(PeerRef::id)
            .collect()
    }

    /// The room's hooks decide; the newcomer's `joined` reaches the others before anything the
    /// newcomer can send, and the members it is told of are exactly those that were told of it.
    /// Members that died first get their `left` (and leave the hooks' count) before that.
    async fn join_named(
        &self,
        named: &NamedRoom,
        peer: &PeerRef,
        auth: &AuthData,
        announced: &mut Announced,
    ) -> Result<Vec<PeerId>, Refusal> {
        // One look at who is alive, for both the retiring and the hooks: a member that dies
        // between two looks would be neither announced gone nor counted (and its `left` would
        // then reach the others after the newcomer's `joined`).
        let members = self.members();
        self.retire_dead(named, announced, &members);
        named.hooks.on_join(&named.context, &members, auth)?;
        // Across nodes the hooks' count may be behind: the cluster's own check is atomic.
        let rule = Rule::Capacity(named.context.max_peers.max(members.len() + 1));
        match self.claim(peer, rule, members.len()).await {
            Claimed::In => {}
            Claimed::Refused => return Err(Refusal::new(description::ROOM_IS_FULL)),
            Claimed::Gone => return Err(Refusal::new("peer_gone")),
            Claimed::Unavailable => return Err(Refusal::new(description::ROOM_UNAVAILABLE)),
        }
        // The members of other nodes the cluster's answer taught this node are members too.
        let members: Vec<PeerId> = self
            .members()
            .into_iter()
            .filter(|m| *m != peer.id())
            .collect();
        announced.joined(peer.id());
        let joined = RoomMessage::joined(peer.id()).to_shared_text();
        self.announce(&joined, peer.id());
        self.events.publish(Event::Joined {
            room: self.key.clone(),
            peer: peer.id(),
        });
        Ok(members)
    }

    /// Announces the departure of the members that died but whose `Leave` has not been served.
    /// Whoever removes a registration reports it: the room here (the registry process then
    /// finds nothing to remove and sends no `Leave`), or the registry process, whose `Leave`
    /// is then ignored.
    fn retire_dead(&self, named: &NamedRoom, announced: &mut Announced, alive: &[PeerId]) {
        for gone in announced.gone(alive) {
            let removed_here = self.registry.unreg(&self.key, gone);
            if removed_here {
                self.events.publish(Event::Left {
                    room: self.key.clone(),
                    peer: gone,
                });
            }
            announced.retire(gone, !removed_here);
            self.left(named, gone);
        }
    }

    fn left(&self, named: &NamedRoom, peer: PeerId) {
        let left = match self.registry.take_left_reason(peer) {
            Some(reason) => RoomMessage::left_because(peer, reason),
            None => RoomMessage::left(peer),
        }
        .to_shared_text();
        self.announce(&left, peer);
        named.hooks.on_leave(&named.context, peer);
    }

    /// The room's own message to every member of this node but `about` (the other nodes of a
    /// cluster tell their own members, from the room's channel).
    fn announce(&self, text: &async_tungstenite::tungstenite::Utf8Bytes, about: PeerId) {
        if self.faults.is_active() {
            let others: Vec<PeerRef> = self
                .registry
                .lookup(&self.key)
                .into_iter()
                .filter(|p| p.id() != about && !p.is_proxy())
                .collect();
            let out = Outgoing {
                endpoint: crate::faults::rule::Endpoint::Rooms,
                room: &self.key,
                from: Sender::Server,
                text,
                via: Via::Event,
            };
            self.faults.send(&out, &others);
            return;
        }
        self.registry.for_each_other(&self.key, about, |other| {
            if !other.is_proxy() {
                other.deliver(text);
            }
        });
    }

    /// Leaves the room table (its number may be handed out again) and refuses what is still
    /// queued: a join that raced with the last leave finds an empty room.
    fn stop(&self) {
        self.cluster.unwatch(&self.key);
        if !self.rooms.forget(&self.key, self.serial) {
            // Another process serves the mailbox now (this one outlived a restart of rooms_sup),
            // or the table was cleared at shutdown: the mailbox is not this process's to close.
            return;
        }
        self.inbox.close();
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                RoomMsg::Join { reply, .. } => {
                    let _ = reply.try_send(Err(JoinRefused::NotJoinable));
                }
                // The peer asks again, and a fresh room answers.
                RoomMsg::JoinNamed { reply, .. } => {
                    let _ = reply.try_send(Err(NamedRefusal::Stopping));
                }
                _ => {}
            }
        }
        self.events.publish(Event::RoomStopped {
            room: self.key.clone(),
        });
    }
}
