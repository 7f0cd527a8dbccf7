//! A named-rooms peer's protocol logic: Membrane's `Membrane.WebRTC.Server.Peer`, without the
//! socket. Like [`crate::peer::BookPeer`], each callback returns what the connection loop must
//! do; messages to other peers go straight into their mailboxes (one hop), after the sender's
//! `on_receive` and the room's `on_forward` hooks.
use crate::chaos::Chaos;
use crate::faults::{rule::Endpoint, Faults, Outgoing, Sender, Via};
use crate::hooks::{Action, AuthData, PeerHooks, RoomContext, RoomHooks, TerminateReason};
use crate::mailbox::{PeerMsg, PeerRef};
use crate::peer::{Command, Handler};
use crate::registry::{PeerId, Registry, RoomKey};
use crate::resume::kept::{Kept, Replay};
use crate::resume::wire::{self, Failure};
use crate::resume::Sessions;
use crate::rooms_protocol::{self, description, RoomMessage, To};
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
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
    /// Set for a peer that asked for resume (`?resumable=1`).
    resume: Option<Box<Resumable>>,
}

/// A resumable peer's side of its session: the frames it was sent, numbered and kept until
/// acknowledged, and the last `cseq` it sent (docs/rooms-protocol.md, "Resume").
struct Resumable {
    sessions: Arc<Sessions>,
    kept: Kept,
    last_cseq: u64,
    /// Whether a frame came on this connection yet: the first one retires the token the
    /// resume rotated.
    heard: bool,
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
            resume: None,
        }
    }

    /// Makes this peer resumable: from now on every frame it is sent is numbered and kept.
    pub fn with_resume(mut self, sessions: Arc<Sessions>) -> Self {
        self.resume = Some(Box::new(Resumable {
            sessions,
            kept: Kept::default(),
            last_cseq: 0,
            heard: false,
        }));
        self
    }

    pub fn id(&self) -> PeerId {
        self.me.id()
    }

    pub fn is_resumable(&self) -> bool {
        self.resume.is_some()
    }

    /// The last `cseq` this peer sent (0 if none), for `resumed`.
    pub fn last_cseq(&self) -> u64 {
        self.resume.as_ref().map_or(0, |r| r.last_cseq)
    }

    /// A resumed connection: its first frame has yet to retire the previous token.
    pub fn resumed(&mut self) {
        if let Some(r) = self.resume.as_mut() {
            r.heard = false;
        }
    }

    /// Whether a resume can continue from the client's `last_seq`.
    pub fn can_replay(&self, last_seq: u64) -> Result<(), Failure> {
        match self.resume.as_ref().map(|r| r.kept.check(last_seq)) {
            Some(Ok(())) => Ok(()),
            Some(Err(Replay::Gap)) => Err(Failure::Gap),
            Some(Err(Replay::BadSeq)) => Err(Failure::BadSeq),
            None => Err(Failure::Unknown),
        }
    }

    /// The frames after `last_seq` to resend, in order (after [`can_replay`](Self::can_replay)).
    pub fn replay(&mut self, last_seq: u64) -> Vec<Utf8Bytes> {
        self.resume
            .as_mut()
            .and_then(|r| r.kept.replay(last_seq).ok())
            .unwrap_or_default()
    }

    /// While detached: what the connection would have sent for `msg`, numbered and kept.
    pub fn keep(&mut self, msg: PeerMsg) {
        let command = self.info(msg);
        self.stamp(command, false);
    }

    pub fn kept_bytes(&self) -> usize {
        self.resume.as_ref().map_or(0, |r| r.kept.bytes())
    }

    pub fn kept_frames(&self) -> usize {
        self.resume.as_ref().map_or(0, |r| r.kept.len())
    }

    pub fn kept_over_bounds(&self) -> bool {
        self.resume.as_ref().is_some_and(|r| r.kept.over_bounds())
    }

    /// The session ended for good (after a detach): the peer hooks hear of it now.
    pub fn session_over(&self, reason: &TerminateReason) {
        self.peer_hooks.on_terminate(&self.auth, reason);
    }

    /// Numbers and keeps a frame for a resumable peer's socket; `trim` while attached (the
    /// oldest unacknowledged frames go past the bounds), not while detached (the session ends
    /// past them instead).
    fn stamp(&mut self, command: Option<Command>, trim: bool) -> Option<Command> {
        let Some(r) = self.resume.as_mut() else {
            return command;
        };
        match command {
            Some(Command::Send(Message::Text(text))) => {
                let numbered = r.kept.stamp(text.as_str());
                if trim {
                    r.kept.trim();
                }
                Some(Command::Send(Message::Text(numbered)))
            }
            other => other,
        }
    }

    /// A resumable client's `ack` (handled here, never relayed) and `cseq` (a resent duplicate
    /// is dropped); false when the frame is consumed.
    fn resume_extras(&mut self, text: &str) -> bool {
        let id = self.me.id();
        let Some(r) = self.resume.as_mut() else {
            return true;
        };
        if !r.heard {
            r.heard = true;
            r.sessions.confirm(id);
        }
        let extras = wire::extras(text);
        if let Some(seq) = extras.ack {
            r.kept.ack(seq);
            return false;
        }
        if let Some(cseq) = extras.cseq {
            if cseq <= r.last_cseq {
                log::debug!("peer {id}: cseq {cseq} dropped as a resent duplicate");
                return false;
            }
            r.last_cseq = cseq;
        }
        true
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
        let command = match &frame {
            Message::Text(text) if self.resume_extras(text.as_str()) => {
                self.received(text.as_str())
            }
            _ => None,
        };
        self.stamp(command, true)
    }

    fn handle_info(&mut self, msg: PeerMsg) -> Option<Command> {
        let command = self.info(msg);
        self.stamp(command, true)
    }
}

impl NamedPeer {
    fn info(&mut self, msg: PeerMsg) -> Option<Command> {
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
            PeerMsg::Faulted(f) => f.msg.and_then(|m| self.info(m)),
        }
    }
}
