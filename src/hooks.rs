//! The named-rooms endpoint's extension points, after Membrane WebRTC Server's `Peer` and `Room`
//! behaviours: traits whose default methods give the documented behaviour, so a user overrides
//! only what they need and hands the objects to [`crate::Server`].
//!
//! One object serves every peer (and one every room), as a Membrane callback module does; the
//! per-peer state is the [`AuthData`] that `on_init` may fill in (its `metadata`), the per-room
//! state the room's configuration and its members, which the server keeps so that a crashed room
//! restarts with them. Methods take `&self` and may run concurrently (`on_receive`,
//! `on_forward` and `on_send` run in the sending or receiving peer's task, so a message costs
//! one hop); `on_init`, `on_join` and `on_leave` of one room run one at a time, in its process.
//!
//! Hooks run on the scheduler's threads (one per CPU the process may use, which also poll the sockets), so they must
//! not block: no blocking I/O, no sleeping. A hook that blocks holds up every peer on its thread;
//! hand slow work to a thread of your own and answer from what it has already produced.
//!
//! ```
//! use rtcserver::hooks::{AuthData, Refusal, RoomContext, RoomHooks};
//! use rtcserver::PeerId;
//!
//! /// The guide's room that admits at most N peers.
//! struct AtMost(usize);
//!
//! impl RoomHooks for AtMost {
//!     fn on_join(&self, _room: &RoomContext, members: &[PeerId], _peer: &AuthData) -> Result<(), Refusal> {
//!         if members.len() < self.0 { Ok(()) } else { Err(Refusal::new("room_is_full")) }
//!     }
//! }
//! ```
use crate::auth::{Accounts, Credentials};
use crate::http::Request;
use crate::registry::PeerId;
use crate::rooms_protocol::{description, RoomMessage};
use serde_json::Value;
use std::fmt;

/// What a hook decides about a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<T> {
    /// Pass it on, possibly changed.
    Forward(T),
    /// Drop it silently.
    Ignore,
}

/// A hook's "no", with the reason the client is told (`error`'s `description`, the close
/// reason of a refused join) and that is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl Refusal {
    pub fn new(reason: impl Into<String>) -> Self {
        Refusal(reason.into())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// `parse_request`'s answer: who the client says it is and which room it wants.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub credentials: Credentials,
    pub metadata: Value,
    pub room: String,
}

/// A peer as the hooks see it; `metadata` is the peer's state, set by `on_init`.
#[derive(Debug, Clone)]
pub struct AuthData {
    pub peer_id: PeerId,
    pub room: String,
    pub credentials: Credentials,
    pub metadata: Value,
}

/// Why a named peer's connection ended (`on_terminate`'s argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateReason {
    /// The client closed, or the network went.
    Closed,
    /// The server closed it with this code and reason.
    Server(u16, String),
}

/// A room as the hooks see it.
#[derive(Debug, Clone)]
pub struct RoomContext {
    pub name: String,
    pub max_peers: usize,
    pub metadata: Value,
    /// From the config file (stays when empty), or started on demand (stops when empty).
    pub configured: bool,
}

/// `Membrane.WebRTC.Server.Peer`'s callbacks.
pub trait PeerHooks: Send + Sync + 'static {
    /// Credentials, metadata and the room's name from the upgrade request. The default reads
    /// the `credentials` cookie (JSON) or `Authorization: Bearer`, and takes the room from the
    /// path; unreadable credentials count as none. A refusal answers HTTP 400.
    fn parse_request(&self, request: &Request, room: &str) -> Result<ParsedRequest, Refusal> {
        // Unreadable credentials are no credentials: `on_init` then refuses them with 401
        // when the server checks who connects, and ignores them when it does not.
        let credentials =
            crate::auth::from_headers(request.header("cookie"), request.header("authorization"))
                .unwrap_or_else(|e| {
                    log::debug!("{}: {e}", request.path);
                    Credentials::None
                });
        Ok(ParsedRequest {
            credentials,
            metadata: Value::Null,
            room: room.to_owned(),
        })
    }

    /// Authentication, before the upgrade: a refusal answers HTTP 401 and no WebSocket is
    /// opened. The default admits what the config file's users and tokens admit (anyone when
    /// it has none). `auth.metadata` may be set here; every later hook sees it.
    fn on_init(&self, auth: &mut AuthData, accounts: &Accounts) -> Result<(), Refusal> {
        if accounts.admits(&auth.credentials) {
            Ok(())
        } else {
            Err(Refusal::new("wrong_credentials"))
        }
    }

    /// A message from this peer, before the room sees it.
    fn on_receive(&self, _peer: &AuthData, message: RoomMessage) -> Action<RoomMessage> {
        Action::Forward(message)
    }

    /// A message about to be written to this peer (forwarded ones and the server's events); for
    /// messages queued by others, only when [`uses_on_send`](Self::uses_on_send) says so.
    fn on_send(&self, _peer: &AuthData, message: RoomMessage) -> Action<RoomMessage> {
        Action::Forward(message)
    }

    /// Whether [`on_send`](Self::on_send) may change or drop a message. A message is queued to
    /// its addressees as text, serialised once; the text is parsed back for `on_send` only when
    /// this says so. Answer false only if `on_send` is left as the default (forward unchanged).
    fn uses_on_send(&self) -> bool {
        true
    }

    /// The peer's connection ended, however it ended (a crash is `Server(1011, ...)`); called
    /// once for every peer that `on_init` admitted and that found its room (not after an HTTP
    /// 404 for an unknown room).
    fn on_terminate(&self, _peer: &AuthData, _reason: &TerminateReason) {}
}

/// `Membrane.WebRTC.Server.Room`'s callbacks.
pub trait RoomHooks: Send + Sync + 'static {
    /// The room's process started, or restarted after a crash with these `members`.
    fn on_init(&self, _room: &RoomContext, _members: &[PeerId]) {}

    /// Whether `peer` may join; `members` are the peers already in. The default admits up to
    /// `max_peers`. A refusal sends `error` with its reason and closes with 4000.
    fn on_join(
        &self,
        room: &RoomContext,
        members: &[PeerId],
        _peer: &AuthData,
    ) -> Result<(), Refusal> {
        if members.len() < room.max_peers {
            Ok(())
        } else {
            Err(Refusal::new(description::ROOM_IS_FULL))
        }
    }

    /// `peer` left (its connection ended for any reason).
    fn on_leave(&self, _room: &RoomContext, _peer: PeerId) {}

    /// A message on its way from one member to others, after the sender's `on_receive`.
    fn on_forward(&self, _room: &RoomContext, message: RoomMessage) -> Action<RoomMessage> {
        Action::Forward(message)
    }
}

/// The behaviour documented in `rooms-protocol.md`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPeer;

impl PeerHooks for DefaultPeer {
    fn uses_on_send(&self) -> bool {
        false
    }
}

/// The behaviour documented in `rooms-protocol.md`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultRoom;

impl RoomHooks for DefaultRoom {}
