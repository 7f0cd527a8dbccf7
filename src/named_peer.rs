//! A named-rooms peer's protocol logic: Membrane's `Membrane.WebRTC.Server.Peer`, without the
//! socket. Like [`crate::peer::BookPeer`], each callback returns what the connection loop must
//! do; messages to other peers go straight into their mailboxes (one hop), after the sender's
//! `on_receive` and the room's `on_forward` hooks.
use crate::chaos::Chaos;
use crate::faults::{rule::Endpoint, Faults, Outgoing, Sender, Via};
use crate::hooks::{Action, AuthData, PeerHooks, RoomContext, RoomHooks};
use crate::mailbox::{PeerMsg, PeerRef};
use crate::peer::{Command, Handler};
use crate::registry::{PeerId, Registry, RoomKey};
use crate::rooms_protocol::{self, description, RoomMessage, To};
use async_tungstenite::tungstenite::Message;
use std::collections::HashSet;
use std::sync::Arc;

pub struct NamedPeer {
    me: PeerRef,
    key: RoomKey,
    auth: AuthData,
    room: Arc<RoomContext>,
    registry: Arc<Registry>,
    peer_hooks: Arc<dyn PeerHooks>,
    room_hooks: Arc<dyn RoomHooks>,
    chaos: Option<Arc<Chaos>>,
    faults: Option<Faults>,
}

impl NamedPeer {
    pub fn new(
        me: PeerRef,
        auth: AuthData,
        room: Arc<RoomContext>,
        registry: Arc<Registry>,
        peer_hooks: Arc<dyn PeerHooks>,
        room_hooks: Arc<dyn RoomHooks>,
    ) -> Self {
        NamedPeer {
            me,
            key: RoomKey::Named(room.name.as_str().into()),
            auth,
            room,
            registry,
            peer_hooks,
            room_hooks,
            chaos: None,
            faults: None,
        }
    }

    /// Chaos mode draws its room and peer decisions for each message this peer sends on.
    pub fn with_chaos(mut self, chaos: Option<Arc<Chaos>>) -> Self {
        self.chaos = chaos;
        self
    }

    /// Message-level faults: what this peer sends on passes the fault rules, when any is set.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Queues `text` for `to`, through the fault rules when any is set.
    fn send_to(&self, text: &async_tungstenite::tungstenite::Utf8Bytes, to: &[PeerRef]) {
        let Some(faults) = self.faults.as_ref().filter(|f| f.is_active()) else {
            for peer in to {
                peer.deliver(text);
            }
            return;
        };
        let out = Outgoing {
            endpoint: Endpoint::Rooms,
            room: &self.key,
            from: Sender::Peer(self.me.id()),
            text,
            via: Via::Event,
        };
        faults.send(&out, to);
    }

    pub fn auth(&self) -> &AuthData {
        &self.auth
    }

    /// A message for this peer's own socket, through its `on_send` hook.
    pub fn outgoing(&self, message: RoomMessage) -> Option<Command> {
        match self.peer_hooks.on_send(&self.auth, message) {
            Action::Forward(m) => Some(Command::Send(Message::text(m.to_text()))),
            Action::Ignore => None,
        }
    }

    /// The server's own reply to this peer (`authenticated`, `error`), after its `on_send`
    /// hook: through the fault rules when any is set (docs/faults.md, "The server's replies").
    pub fn reply(&self, message: RoomMessage) -> Option<Command> {
        let command = self.outgoing(message)?;
        let Some(faults) = self.faults.as_ref().filter(|f| f.is_active()) else {
            return Some(command);
        };
        let Command::Send(Message::Text(text)) = &command else {
            return Some(command);
        };
        let out = Outgoing {
            endpoint: Endpoint::Rooms,
            room: &self.key,
            from: Sender::Server,
            text,
            // Past `on_send` already: queued as written.
            via: Via::Relay,
        };
        if faults.reply(&out, &self.me) {
            None
        } else {
            Some(command)
        }
    }

    fn received(&self, text: &str) -> Option<Command> {
        let max_to = rooms_protocol::max_addressees(self.room.max_peers);
        let message = match rooms_protocol::parse(text, max_to) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("peer {}: invalid message: {e}", self.me.id());
                return self.reply(RoomMessage::error(description::INVALID_MESSAGE));
            }
        };
        let Action::Forward(message) = self.peer_hooks.on_receive(&self.auth, message) else {
            return None;
        };
        let Action::Forward(mut message) = self.room_hooks.on_forward(&self.room, message) else {
            return None;
        };
        // The server's `from`, whatever a client or a hook put there.
        message.from = Some(self.me.id().to_string());
        if let Some(chaos) = &self.chaos {
            chaos.on_relay(&self.key, self.me.id());
        }
        // Serialised once, shared by every addressee's queue.
        let shared = message.to_shared_text();
        match message.to.unwrap_or(To::All) {
            To::All => {
                if self.faults.as_ref().is_some_and(Faults::is_active) {
                    let others: Vec<PeerRef> = self
                        .registry
                        .lookup(&self.key)
                        .into_iter()
                        .filter(|p| p.id() != self.me.id())
                        .collect();
                    self.send_to(&shared, &others);
                } else {
                    self.registry
                        .for_each_other(&self.key, self.me.id(), |other| {
                            other.deliver(&shared);
                        });
                }
                None
            }
            To::Peers(ids) => {
                let wanted: HashSet<PeerId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
                let found = self.registry.find(&self.key, &wanted);
                self.send_to(&shared, &found);
                let unknown = unreached(ids, &found);
                if unknown.is_empty() {
                    None
                } else {
                    self.reply(RoomMessage::unknown_peers(&unknown))
                }
            }
        }
    }
}

/// The ids of `to` that name none of the peers `found`, each once, in the order given. Sets,
/// not list scans: `to` may be as long as the room is big.
fn unreached(to: Vec<String>, found: &[PeerRef]) -> Vec<String> {
    let reached: HashSet<PeerId> = found.iter().map(PeerRef::id).collect();
    let mut named = HashSet::new();
    to.into_iter()
        .filter(|id| !id.parse::<PeerId>().is_ok_and(|n| reached.contains(&n)))
        .filter(|id| named.insert(id.clone()))
        .collect()
}

impl Handler for NamedPeer {
    async fn handle_text(&mut self, frame: Message) -> Option<Command> {
        match &frame {
            Message::Text(text) => self.received(text.as_str()),
            _ => None,
        }
    }

    fn handle_info(&mut self, msg: PeerMsg) -> Option<Command> {
        match msg {
            PeerMsg::Event(text) if self.peer_hooks.uses_on_send() => {
                match rooms_protocol::parse_sent(text.as_str()) {
                    Ok(message) => self.outgoing(message),
                    // The server wrote this text itself: unreadable would be our bug, not the
                    // peer's; it still gets the message as written.
                    Err(e) => {
                        log::error!(
                            "peer {}: a queued message does not read back: {e}",
                            self.me.id()
                        );
                        Some(Command::Send(Message::Text(text)))
                    }
                }
            }
            PeerMsg::Event(text) => Some(Command::Send(Message::Text(text))),
            // Nothing relays raw frames to a named peer; pass one on should that change.
            PeerMsg::Relay(text) => Some(Command::Send(Message::Text(text))),
            // The connection carries out the plan and hands over only the message inside.
            PeerMsg::Faulted(f) => f.msg.and_then(|m| self.handle_info(m)),
        }
    }
}
