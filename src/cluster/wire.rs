//! What the nodes of a cluster write into Redis: key names and the messages on a room's
//! channel. Plain text, one message per PUBLISH, so that `redis-cli monitor` and `subscribe`
//! show what happens (docs/cluster.md, "What is in Redis").
//!
//! - `J <version> <peer> <node>`: a peer joined (published by the join script itself, so the
//!   membership change and its announcement are one atomic step).
//! - `L <version> <peer> <node> <why>`: a peer left (`left`), or its node was lost (`lost`).
//! - `M <to> <kind> <text>`: a message for member `to`, of `kind` `r` (a book relay, sent as
//!   is) or `e` (a named-rooms event, through the receiver's `on_send` hook).
use crate::registry::{PeerId, RoomKey};

/// Every key and channel starts with this, so that one Redis database can be inspected and
/// cleaned by prefix.
pub const PREFIX: &str = "rtc:";

/// A room as the keys name it: `b:<number>` or `n:<name>` (a name may hold any character but
/// is the last part of every key, so nothing is ambiguous).
pub fn room_id(key: &RoomKey) -> String {
    match key {
        RoomKey::Book(n) => format!("b:{n}"),
        RoomKey::Named(name) => format!("n:{name}"),
    }
}

/// The room a `room_id` names.
pub fn parse_room_id(id: &str) -> Option<RoomKey> {
    if let Some(n) = id.strip_prefix("b:") {
        return n.parse().ok().map(RoomKey::Book);
    }
    id.strip_prefix("n:")
        .map(|name| RoomKey::Named(name.into()))
}

/// The hash of a room's members: peer id → node id.
pub fn members_key(room: &str) -> String {
    format!("{PREFIX}room:{room}")
}

/// The counter of a room's membership changes.
pub fn version_key(room: &str) -> String {
    format!("{PREFIX}ver:{room}")
}

/// The room's channel.
pub fn channel(room: &str) -> String {
    format!("{PREFIX}ch:{room}")
}

/// The room id a channel carries.
pub fn room_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix(PREFIX)?.strip_prefix("ch:")
}

/// A node's lease: present while the node lives.
pub fn lease_key(node: &str) -> String {
    format!("{PREFIX}lease:{node}")
}

/// Where a node's WebSocket port is reached (`--advertise-addr`); expires with its lease.
pub fn addr_key(node: &str) -> String {
    format!("{PREFIX}addr:{node}")
}

/// The set of every node that joined and has not been removed.
pub fn nodes_key() -> String {
    format!("{PREFIX}nodes")
}

/// The rooms where a node holds members: what the others clean when it is lost.
pub fn node_rooms_key(node: &str) -> String {
    format!("{PREFIX}rooms:{node}")
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Left,
    /// Its node stopped renewing its lease.
    Lost,
}

/// What a room's channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMsg<'a> {
    Joined {
        version: u64,
        peer: PeerId,
        node: &'a str,
    },
    Left {
        version: u64,
        peer: PeerId,
        node: &'a str,
        why: Why,
    },
    Message {
        to: PeerId,
        kind: Kind,
        text: &'a str,
    },
}

/// How a message reaches its addressee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Relay,
    Event,
}

/// A message for member `to` on its room's channel.
pub fn message(to: PeerId, kind: Kind, text: &str) -> Vec<u8> {
    let kind = match kind {
        Kind::Relay => 'r',
        Kind::Event => 'e',
    };
    let mut out = Vec::with_capacity(text.len() + 24);
    out.extend_from_slice(format!("M {to} {kind} ").as_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads a channel message; `None` for anything else (logged by the caller).
pub fn parse(payload: &[u8]) -> Option<ChannelMsg<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (tag, rest) = text.split_once(' ')?;
    match tag {
        "M" => {
            let (to, rest) = rest.split_once(' ')?;
            let (kind, text) = rest.split_once(' ')?;
            let kind = match kind {
                "r" => Kind::Relay,
                "e" => Kind::Event,
                _ => return None,
            };
            Some(ChannelMsg::Message {
                to: to.parse().ok()?,
                kind,
                text,
            })
        }
        "J" => {
            let mut parts = rest.splitn(3, ' ');
            let version = parts.next()?.parse().ok()?;
            let peer = parts.next()?.parse().ok()?;
            let node = parts.next()?;
            Some(ChannelMsg::Joined {
                version,
                peer,
                node,
            })
        }
        "L" => {
            let mut parts = rest.splitn(4, ' ');
            let version = parts.next()?.parse().ok()?;
            let peer = parts.next()?.parse().ok()?;
            let node = parts.next()?;
            let why = match parts.next()? {
                "left" => Why::Left,
                "lost" => Why::Lost,
                _ => return None,
            };
            Some(ChannelMsg::Left {
                version,
                peer,
                node,
                why,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_read_back() {
        for key in [
            RoomKey::Book(7),
            RoomKey::Named("a b:c".into()),
            RoomKey::Named("".into()),
        ] {
            assert_eq!(parse_room_id(&room_id(&key)), Some(key.clone()));
            let ch = channel(&room_id(&key));
            assert_eq!(room_of_channel(&ch), Some(room_id(&key).as_str()));
        }
        assert_eq!(parse_room_id("b:x"), None);
        assert_eq!(parse_room_id("x:1"), None);
    }

    #[test]
    fn messages_read_back_with_spaces_in_the_text() {
        let m = message(42, Kind::Event, "{\"a\": \"b c\"}");
        assert_eq!(
            parse(&m),
            Some(ChannelMsg::Message {
                to: 42,
                kind: Kind::Event,
                text: "{\"a\": \"b c\"}"
            })
        );
        assert_eq!(
            parse(b"J 3 17 na"),
            Some(ChannelMsg::Joined {
                version: 3,
                peer: 17,
                node: "na"
            })
        );
        assert_eq!(
            parse(b"L 4 17 n1 lost"),
            Some(ChannelMsg::Left {
                version: 4,
                peer: 17,
                node: "n1",
                why: Why::Lost
            })
        );
        for bad in [
            &b"M 1 x hi"[..],
            b"J 1",
            b"L 1 2 n why",
            b"Q 1",
            b"",
            b"\xff",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
