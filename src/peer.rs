//! A peer's protocol logic: the book's `handler_websocket`, without the socket.
//!
//! Like a cowboy websocket handler, each callback returns what the connection loop must do
//! ([`Command`]); the loop in `connection.rs` owns the socket. A panic in here is a crash of the
//! peer: the loop closes the socket with 1011 and lets the panic reach the supervisor.
use crate::book_protocol::{self, ClientMessage};
use crate::chaos::Chaos;
use crate::events::{Event, Events};
use crate::faults::{rule::Endpoint, Faults, Outgoing, Sender, Via};
use crate::mailbox::{PeerMsg, PeerRef};
use crate::registry::{Registry, RoomKey};
use crate::rooms_sup::{CreateError, Rooms};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use std::sync::Arc;

/// What the connection loop does for the handler.
#[derive(Debug, PartialEq)]
pub enum Command {
    Send(Message),
    /// Close the WebSocket with this code and reason, then end.
    Close(CloseCode, &'static str),
}

/// A cowboy websocket handler's callbacks, which the connection loop drives.
pub(crate) trait Handler {
    /// `websocket_handle({text, Data})`; `frame` is the received frame itself, so that a relay
    /// can send the very bytes that came in.
    async fn handle_text(&mut self, frame: Message) -> Option<Command>;
    /// `websocket_info`: a message from another process.
    fn handle_info(&mut self, msg: PeerMsg) -> Option<Command>;
}

pub struct BookPeer {
    me: PeerRef,
    room: Option<RoomKey>,
    registry: Arc<Registry>,
    rooms: Arc<Rooms>,
    events: Arc<Events>,
    chaos: Option<Arc<Chaos>>,
    faults: Option<Faults>,
}

impl BookPeer {
    pub fn new(
        me: PeerRef,
        registry: Arc<Registry>,
        rooms: Arc<Rooms>,
        events: Arc<Events>,
    ) -> Self {
        BookPeer {
            me,
            room: None,
            registry,
            rooms,
            events,
            chaos: None,
            faults: None,
        }
    }

    /// Chaos mode: every relayed message may crash the sender or its room.
    pub fn with_chaos(mut self, chaos: Option<Arc<Chaos>>) -> Self {
        self.chaos = chaos;
        self
    }

    /// Message-level faults: what this peer relays passes the fault rules, when any is set.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    pub fn room(&self) -> Option<&RoomKey> {
        self.room.as_ref()
    }

    /// One room per peer: the old registration goes once the new one holds.
    /// The server's own reply to this peer (`GETROOM`'s answer, `WRONGROOM`), about `room`:
    /// through the fault rules when any is set (docs/faults.md, "The server's replies").
    fn reply(&self, room: &RoomKey, text: String) -> Option<Command> {
        let text = Utf8Bytes::from(text);
        if let Some(faults) = self.faults.as_ref().filter(|f| f.is_active()) {
            let out = Outgoing {
                endpoint: Endpoint::Book,
                room,
                from: Sender::Server,
                text: &text,
                via: Via::Relay,
            };
            if faults.reply(&out, &self.me) {
                return None;
            }
        }
        Some(Command::Send(Message::Text(text)))
    }

    fn move_to(&mut self, key: RoomKey) {
        if let Some(old) = self.room.replace(key) {
            if self.registry.unreg(&old, self.me.id()) {
                self.events.publish(Event::Left {
                    room: old.clone(),
                    peer: self.me.id(),
                });
                self.rooms.peer_left(&old, self.me.id());
            }
        }
    }
}

impl Handler for BookPeer {
    async fn handle_text(&mut self, frame: Message) -> Option<Command> {
        let parsed = match &frame {
            Message::Text(text) => book_protocol::parse(text.as_str()),
            _ => return None,
        };
        match parsed {
            Err(_) => Some(Command::Close(CloseCode::Invalid, "invalid JSON")),
            Ok(ClientMessage::GetRoom) => match self.rooms.create_book_room(&self.me).await {
                Ok(n) => {
                    self.move_to(RoomKey::Book(n));
                    self.reply(&RoomKey::Book(n), book_protocol::getroom_reply(n))
                }
                Err(CreateError::NoFreeNumber) => {
                    Some(Command::Close(CloseCode::Again, "no free room number"))
                }
                Err(CreateError::ShuttingDown) => {
                    Some(Command::Close(CloseCode::Away, "server shutting down"))
                }
                Err(CreateError::Unavailable) => {
                    Some(Command::Close(CloseCode::Again, "cluster unavailable"))
                }
            },
            Ok(ClientMessage::EnterRoom(number)) => {
                let key = number.map(RoomKey::Book);
                match key {
                    Some(key) if self.room.as_ref() != Some(&key) => {
                        if self.rooms.join(&key, &self.me).await.is_ok() {
                            self.move_to(key);
                            return None;
                        }
                        self.reply(&key, book_protocol::WRONGROOM_REPLY.into())
                    }
                    // No number: as in no room (`#0` for the fault rules).
                    _ => self.reply(
                        &key.unwrap_or(RoomKey::Book(0)),
                        book_protocol::WRONGROOM_REPLY.into(),
                    ),
                }
            }
            Ok(ClientMessage::Relay) => {
                let Message::Text(text) = &frame else {
                    return None;
                };
                match &self.room {
                    Some(room) => {
                        match self.faults.as_ref().filter(|f| f.is_active()) {
                            Some(faults) => {
                                let others: Vec<PeerRef> = self
                                    .registry
                                    .lookup(room)
                                    .into_iter()
                                    .filter(|p| p.id() != self.me.id())
                                    .collect();
                                let out = Outgoing {
                                    endpoint: Endpoint::Book,
                                    room,
                                    from: Sender::Peer(self.me.id()),
                                    text,
                                    via: Via::Relay,
                                };
                                faults.send(&out, &others);
                            }
                            None => self.registry.for_each_other(room, self.me.id(), |other| {
                                other.relay(text);
                            }),
                        }
                        if let Some(chaos) = &self.chaos {
                            chaos.on_relay(room, self.me.id());
                        }
                    }
                    None => log::debug!("peer {}: not in a room, message dropped", self.me.id()),
                }
                None
            }
        }
    }

    fn handle_info(&mut self, msg: PeerMsg) -> Option<Command> {
        match msg {
            // Book peers only get frames; a named-rooms message is passed on as its text.
            PeerMsg::Relay(text) | PeerMsg::Event(text) => Some(Command::Send(Message::Text(text))),
            // The connection carries out the plan and hands over only the message inside.
            PeerMsg::Faulted(f) => f.msg.and_then(|m| self.handle_info(m)),
        }
    }
}
