//! The wire format of the named-rooms endpoint (`/socket/:room`), after Membrane WebRTC Server:
//! `{"event": string, "data": any, "from"?: peer_id, "to"?: [peer_id] | "all"}`. No I/O.
//!
//! Client to server, only `event` (a string), `data` and `to` are read; `from` is the server's to
//! set and any other field is dropped. Server to client, the fields go out in the order
//! `event`, `data`, `from`, `to`, and `from`/`to` only when set.
use crate::registry::PeerId;
use async_tungstenite::tungstenite::Utf8Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

mod data;
pub use data::Data;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// Every other peer of the room.
    All,
    /// These peers (a peer id that is not a number cannot be in the room).
    Peers(Vec<String>),
}

/// A message of the named-rooms protocol, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomMessage {
    pub event: String,
    /// As the client sent it, parsed only if read (see [`Data`]).
    pub data: Data,
    pub from: Option<String>,
    pub to: Option<To>,
}

/// Why a client's text is not a message; answered with `error` `invalid_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage(pub String);

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidMessage {}

/// The `description` of an `error` event.
pub mod description {
    pub const ROOM_IS_FULL: &str = "room_is_full";
    pub const UNKNOWN_PEER: &str = "unknown_peer";
    pub const INVALID_MESSAGE: &str = "invalid_message";
    /// The room crashed while taking the peer in (a room hook panicked); it restarts, and the
    /// peer may connect again.
    pub const ROOM_CRASHED: &str = "room_crashed";
    /// The room kept stopping under the join (its last peer leaving each time it was asked).
    pub const ROOM_UNAVAILABLE: &str = "room_unavailable";
}

/// The events only the server sends. A client message with one of these names could pass for
/// the server's own (a forged `error` `room_is_full` ends a call on the demo page), so it is
/// refused as `invalid_message` rather than relayed.
pub const SERVER_EVENTS: [&str; 4] = ["authenticated", "joined", "left", "error"];

/// A `to` list names at most this many ids, or the room's `max_peers` if that is more
/// ([`max_addressees`]); a longer list is `invalid_message`. Without a bound, a 770 KiB message
/// naming 80,000 ids cost seconds of CPU; with it, parsing stops at the first id too many.
pub const MAX_ADDRESSEES: usize = 64;

/// How many ids a `to` list may name in a room of `max_peers`: enough to name every member
/// (repeats included) of any room up to 64, and every member of a bigger one.
pub fn max_addressees(max_peers: usize) -> usize {
    MAX_ADDRESSEES.max(max_peers)
}

/// The close code that follows a refused join (an application code, RFC 6455 §7.4.2).
pub const JOIN_REFUSED_CLOSE: u16 = 4000;

impl RoomMessage {
    /// A message from the server itself (no `from`, no `to`).
    pub fn server(event: &str, data: Value) -> Self {
        RoomMessage {
            event: event.to_owned(),
            data: data.into(),
            from: None,
            to: None,
        }
    }

    pub fn authenticated(peer: PeerId, room: &str, peers: &[PeerId]) -> Self {
        let peers: Vec<String> = peers.iter().map(PeerId::to_string).collect();
        Self::server(
            "authenticated",
            serde_json::json!({ "peer_id": peer.to_string(), "room": room, "peers": peers }),
        )
    }

    pub fn joined(peer: PeerId) -> Self {
        Self::server("joined", serde_json::json!({ "peer_id": peer.to_string() }))
    }

    pub fn left(peer: PeerId) -> Self {
        Self::server("left", serde_json::json!({ "peer_id": peer.to_string() }))
    }

    /// `left` of a resumable peer whose session ended without it (`timeout`, `overflow`).
    pub fn left_because(peer: PeerId, reason: &str) -> Self {
        Self::server(
            "left",
            serde_json::json!({ "peer_id": peer.to_string(), "reason": reason }),
        )
    }

    pub fn error(description: &str) -> Self {
        Self::server("error", serde_json::json!({ "description": description }))
    }

    /// `unknown_peer`, naming the addressees that are not in the room.
    pub fn unknown_peers(peers: &[String]) -> Self {
        Self::server(
            "error",
            serde_json::json!({ "description": description::UNKNOWN_PEER, "peers": peers }),
        )
    }

    /// The wire text.
    pub fn to_text(&self) -> String {
        // Sized up front: growing from serde_json's 128 bytes was a few reallocations per relayed
        // SDP (`perf record`).
        let data = match self.data.raw_len() {
            Some(len) => len,
            None => match &*self.data {
                Value::String(s) => s.len() + s.len() / 8,
                _ => 128,
            },
        };
        let mut text = Vec::with_capacity(64 + self.event.len() + data);
        // Serialising a Value-holding struct into memory cannot fail, and the output is UTF-8.
        if serde_json::to_writer(&mut text, self).is_err() {
            return String::new();
        }
        String::from_utf8(text).unwrap_or_default()
    }

    /// The wire text as shared bytes: serialised once, then queued to every addressee (a parsed
    /// `Value` tree per addressee cost about 14 times the text).
    pub fn to_shared_text(&self) -> Utf8Bytes {
        Utf8Bytes::from(self.to_text())
    }
}

/// Reads back a message the server itself serialised (`from` and `to` kept), for a peer's
/// `on_send` hook.
pub fn parse_sent(text: &str) -> Result<RoomMessage, InvalidMessage> {
    #[derive(Deserialize)]
    struct SentWire {
        event: String,
        data: Option<Box<RawValue>>,
        from: Option<String>,
        to: Option<ToWire>,
    }
    let wire: SentWire = serde_json::from_str(text).map_err(|e| InvalidMessage(e.to_string()))?;
    Ok(RoomMessage {
        event: wire.event,
        data: wire.data.map_or_else(Data::default, Data::raw),
        from: wire.from,
        to: wire.to.map(|t| t.0),
    })
}

/// Parses a client's text: a JSON object with a string `event`; `to` a list of peer ids or
/// `"all"` (absent means `"all"`) of at most `max_to` ids; `data` anything (absent means `null`).
/// An `event` the server sends ([`SERVER_EVENTS`]) is refused.
pub fn parse(text: &str, max_to: usize) -> Result<RoomMessage, InvalidMessage> {
    let invalid = |e: serde_json::Error| InvalidMessage(e.to_string());
    let mut de = serde_json::Deserializer::from_str(text);
    let wire = ClientSeed { max_to }
        .deserialize(&mut de)
        .map_err(invalid)?;
    de.end().map_err(invalid)?;
    if SERVER_EVENTS.contains(&wire.event.as_str()) {
        return Err(InvalidMessage(format!(
            "event {:?} is sent only by the server",
            wire.event
        )));
    }
    Ok(RoomMessage {
        event: wire.event,
        data: wire.data.map_or_else(Data::default, Data::raw),
        from: None,
        to: Some(wire.to),
    })
}

struct ClientWire {
    event: String,
    data: Option<Box<RawValue>>,
    to: To,
}

/// A client's message, with the longest `to` list it may hold.
struct ClientSeed {
    max_to: usize,
}

impl<'de> DeserializeSeed<'de> for ClientSeed {
    type Value = ClientWire;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ClientWire, D::Error> {
        d.deserialize_map(ClientVisitor {
            max_to: self.max_to,
        })
    }
}

struct ClientVisitor {
    max_to: usize,
}

impl<'de> Visitor<'de> for ClientVisitor {
    type Value = ClientWire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with a string \"event\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientWire, A::Error> {
        let (mut event, mut data, mut to) = (None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "event" if event.is_none() => event = Some(map.next_value::<String>()?),
                "data" if data.is_none() => data = Some(map.next_value::<Box<RawValue>>()?),
                "to" if to.is_none() => {
                    to = Some(map.next_value_seed(ToSeed { max: self.max_to })?.0)
                }
                "event" | "data" | "to" => {
                    return Err(de::Error::custom(format!("duplicate field {key:?}")))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ClientWire {
            event: event.ok_or_else(|| de::Error::missing_field("event"))?,
            data,
            to: to.unwrap_or(To::All),
        })
    }
}

struct ToWire(To);

/// The server's own text (`parse_sent`): its `to` was bounded when the client sent it.
impl<'de> Deserialize<'de> for ToWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ToSeed { max: usize::MAX }.deserialize(d)
    }
}

/// A `to` of at most `max` ids.
struct ToSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for ToSeed {
    type Value = ToWire;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ToWire, D::Error> {
        // A visitor rather than `#[serde(untagged)]`, which buffered every `to` and built an
        // error (with a formatted message) for each list before trying the next variant: 2-3 %
        // of a named room's relay in `perf record`.
        d.deserialize_any(ToVisitor { max: self.max })
    }
}

struct ToVisitor {
    max: usize,
}

impl<'de> Visitor<'de> for ToVisitor {
    type Value = ToWire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"all\" or a list of peer ids (strings)")
    }

    fn visit_str<E: de::Error>(self, word: &str) -> Result<ToWire, E> {
        if word == "all" {
            Ok(ToWire(To::All))
        } else {
            Err(E::custom(format!(
                "\"to\" must be \"all\" or a list, not {word:?}"
            )))
        }
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ToWire, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(self.max));
        while let Some(id) = seq.next_element::<String>()? {
            // Stops at the first id too many: the rest of a huge list is never read.
            if ids.len() == self.max {
                return Err(de::Error::custom(format!(
                    "\"to\" names more than {} peers",
                    self.max
                )));
            }
            ids.push(id);
        }
        Ok(ToWire(To::Peers(ids)))
    }
}

impl Serialize for To {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            To::All => s.serialize_str("all"),
            To::Peers(ids) => ids.serialize(s),
        }
    }
}

impl Serialize for RoomMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = 2 + usize::from(self.from.is_some()) + usize::from(self.to.is_some());
        let mut map = s.serialize_map(Some(len))?;
        map.serialize_entry("event", &self.event)?;
        map.serialize_entry("data", &self.data)?;
        if let Some(from) = &self.from {
            map.serialize_entry("from", from)?;
        }
        if let Some(to) = &self.to {
            map.serialize_entry("to", to)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_(text: &str) -> Result<RoomMessage, InvalidMessage> {
        parse(text, MAX_ADDRESSEES)
    }

    #[test]
    fn to_names_at_most_max_to_ids() {
        let list = |n: usize| {
            let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            serde_json::json!({"event": "x", "to": ids}).to_string()
        };
        assert_eq!(max_addressees(2), 64);
        assert_eq!(max_addressees(100), 100);
        for max in [1, 64, 100] {
            let m = parse(&list(max), max).unwrap();
            assert!(matches!(m.to, Some(To::Peers(ids)) if ids.len() == max));
            assert!(parse(&list(max + 1), max).is_err(), "{} of {max}", max + 1);
        }
        assert!(parse(&list(0), 64).is_ok());
        assert!(parse(r#"{"event":"x","to":"all"}"#, 0).is_ok());
    }

    #[test]
    fn a_client_message_keeps_event_data_and_to_and_drops_the_rest() {
        let m =
            parse_(r#"{"from":"forged","x":1,"event":"offer","data":{"sdp":"v=0"},"to":["7"]}"#)
                .unwrap();
        assert_eq!(m.event, "offer");
        assert_eq!(m.from, None);
        assert_eq!(m.to, Some(To::Peers(vec!["7".into()])));
        let sent = RoomMessage {
            from: Some("3".into()),
            ..m
        };
        assert_eq!(
            sent.to_text(),
            r#"{"event":"offer","data":{"sdp":"v=0"},"from":"3","to":["7"]}"#
        );
    }

    #[test]
    fn what_the_server_sent_reads_back_whole() {
        for m in [
            RoomMessage {
                event: "offer".into(),
                data: serde_json::json!({"sdp": "v=0\r\n", "n": [1, 2]}).into(),
                from: Some("3".into()),
                to: Some(To::Peers(vec!["7".into(), "8".into()])),
            },
            RoomMessage {
                from: Some("3".into()),
                to: Some(To::All),
                ..RoomMessage::joined(4)
            },
            RoomMessage::authenticated(5, "lobby", &[3, 4]),
        ] {
            assert_eq!(parse_sent(m.to_shared_text().as_str()), Ok(m));
        }
    }

    #[test]
    fn to_defaults_to_all_and_data_to_null() {
        let m = parse_(r#"{"event":"hello"}"#).unwrap();
        assert_eq!(m.to, Some(To::All));
        assert_eq!(m.data, Value::Null);
        assert_eq!(
            RoomMessage {
                from: Some("1".into()),
                ..m
            }
            .to_text(),
            r#"{"event":"hello","data":null,"from":"1","to":"all"}"#
        );
    }

    #[test]
    fn invalid_messages_are_refused() {
        for bad in [
            "not json",
            "[1,2]",
            "42",
            r#"{"data":1}"#,
            r#"{"event":5}"#,
            r#"{"event":"x","to":"everyone"}"#,
            r#"{"event":"x","to":[1,2]}"#,
            r#"{"event":"x","to":{"a":1}}"#,
            r#"{"event":"x","event":"y"}"#,
            r#"{"event":"left","data":{"peer_id":"1"}}"#,
            r#"{"event":"joined"}"#,
            r#"{"event":"error","data":{"description":"room_is_full"},"to":"all"}"#,
            r#"{"event":"authenticated"}"#,
        ] {
            assert!(parse_(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn server_events_are_byte_exact() {
        assert_eq!(
            RoomMessage::authenticated(5, "lobby", &[3, 4]).to_text(),
            r#"{"event":"authenticated","data":{"peer_id":"5","room":"lobby","peers":["3","4"]}}"#
        );
        assert_eq!(
            RoomMessage::joined(9).to_text(),
            r#"{"event":"joined","data":{"peer_id":"9"}}"#
        );
        assert_eq!(
            RoomMessage::left(9).to_text(),
            r#"{"event":"left","data":{"peer_id":"9"}}"#
        );
        assert_eq!(
            RoomMessage::error(description::ROOM_IS_FULL).to_text(),
            r#"{"event":"error","data":{"description":"room_is_full"}}"#
        );
        assert_eq!(
            RoomMessage::unknown_peers(&["8".into()]).to_text(),
            r#"{"event":"error","data":{"description":"unknown_peer","peers":["8"]}}"#
        );
    }
}
