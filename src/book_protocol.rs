//! The book's wire protocol (`GETROOM` / `ENTERROOM` / `WRONGROOM` / relay), with no I/O.
//!
//! Parsing is done once per frame, borrowing from it: the kind of a message is decided while serde
//! walks the object, so a relayed `offer` costs one validating pass and no allocation. What is
//! relayed is the frame itself, never a re-encoding (the contract says "verbatim").
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The highest room number, as the original's `random:uniform(999999)`.
pub const MAX_ROOM: u32 = 999_999;

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage {
    /// `{"type":"GETROOM", ...}`: other fields ignored.
    GetRoom,
    /// `{"type":"ENTERROOM","value":N}`; `None` when `value` is missing or not a room number.
    EnterRoom(Option<u32>),
    /// Anything else that is a JSON object: relayed verbatim.
    Relay,
}

/// A text frame that is not a JSON object (the contract answers it with close 1007).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJson(pub String);

impl fmt::Display for InvalidJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON: {}", self.0)
    }
}

impl std::error::Error for InvalidJson {}

/// Classifies one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, InvalidJson> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| InvalidJson(e.to_string()))?;
    Ok(match envelope.kind {
        Kind::GetRoom => ClientMessage::GetRoom,
        Kind::EnterRoom => ClientMessage::EnterRoom(envelope.value.and_then(|v| v.0)),
        Kind::Other => ClientMessage::Relay,
    })
}

/// `{"type":"GETROOM","value":N}`, byte for byte as the original's jsonerl produced it.
pub fn getroom_reply(room: u32) -> String {
    format!("{{\"type\":\"GETROOM\",\"value\":{room}}}")
}

/// `{"type":"WRONGROOM"}`.
pub const WRONGROOM_REPLY: &str = "{\"type\":\"WRONGROOM\"}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GetRoom,
    EnterRoom,
    Other,
}

struct Envelope {
    kind: Kind,
    value: Option<RoomValue>,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // deserialize_map: a JSON array or scalar is an error here, not a struct in disguise.
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope {
            kind: Kind::Other,
            value: None,
        };
        // `type` is looked up by name wherever it stands (the original only saw it first).
        // A repeated key takes its last value, as JavaScript's JSON.parse does.
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => envelope.kind = map.next_value::<TypeField>()?.0,
                "value" => envelope.value = Some(map.next_value::<RoomValue>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// `type`: only the two exact strings matter; any other value (string or not) means "relay".
struct TypeField(Kind);

impl<'de> Deserialize<'de> for TypeField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(TypeField(match string(raw).as_deref() {
            Some("GETROOM") => Kind::GetRoom,
            Some("ENTERROOM") => Kind::EnterRoom,
            _ => Kind::Other,
        }))
    }
}

/// `value` of ENTERROOM: a JSON integer or a string of decimal digits naming 1..=999999;
/// anything else is `None` (answered with WRONGROOM, never a crash).
struct RoomValue(Option<u32>);

impl<'de> Deserialize<'de> for RoomValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        let digits =
            |v: &str| !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
        // An integer literal as written (JSON has no leading zeros or `+`); a fraction, an
        // exponent or a sign is not a room number.
        let number = if digits(text) {
            text.parse::<u64>().ok()
        } else {
            string(raw)
                .filter(|v| digits(v))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok(RoomValue(number.and_then(room_number)))
    }
}

fn room_number(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|n| (1..=MAX_ROOM).contains(n))
}

/// The value as text when it is a JSON string (borrowed unless it holds escapes).
///
/// `type` and `value` are taken raw, already checked as JSON, and only read when they are a string
/// or a plain integer: read through `deserialize_any`, a number beyond f64 (`1e999`, JSON by the
/// grammar) was an error, so the frame was closed with 1007 instead of being relayed or answered
/// WRONGROOM (found by fuzz/; tests/fuzz_regressions.rs).
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(text) {
        Ok(plain) => Some(Cow::Borrowed(plain)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClientMessage::*;

    #[test]
    fn replies_are_byte_for_byte_the_originals() {
        assert_eq!(getroom_reply(123), r#"{"type":"GETROOM","value":123}"#);
        assert_eq!(WRONGROOM_REPLY, r#"{"type":"WRONGROOM"}"#);
    }

    #[test]
    fn getroom_ignores_other_fields() {
        assert_eq!(parse(r#"{"type":"GETROOM","value":""}"#), Ok(GetRoom));
        assert_eq!(parse(r#"{"type":"GETROOM"}"#), Ok(GetRoom));
        assert_eq!(parse(r#"{"x":[1,{"y":2}],"type":"GETROOM"}"#), Ok(GetRoom));
    }

    #[test]
    fn type_is_found_by_name_not_position() {
        assert_eq!(
            parse(r#"{"value":5,"type":"ENTERROOM"}"#),
            Ok(EnterRoom(Some(5)))
        );
    }

    #[test]
    fn enterroom_values() {
        assert_eq!(
            parse(r#"{"type":"ENTERROOM","value":42}"#),
            Ok(EnterRoom(Some(42)))
        );
        assert_eq!(
            parse(r#"{"type":"ENTERROOM","value":"42"}"#),
            Ok(EnterRoom(Some(42)))
        );
        assert_eq!(
            parse(r#"{"type":"ENTERROOM","value":999999}"#),
            Ok(EnterRoom(Some(999_999)))
        );
        for bad in [
            r#"{"type":"ENTERROOM"}"#,
            r#"{"type":"ENTERROOM","value":0}"#,
            r#"{"type":"ENTERROOM","value":1000000}"#,
            r#"{"type":"ENTERROOM","value":-3}"#,
            r#"{"type":"ENTERROOM","value":4.5}"#,
            r#"{"type":"ENTERROOM","value":""}"#,
            r#"{"type":"ENTERROOM","value":"4a"}"#,
            r#"{"type":"ENTERROOM","value":" 4"}"#,
            r#"{"type":"ENTERROOM","value":null}"#,
            r#"{"type":"ENTERROOM","value":[4]}"#,
            r#"{"type":"ENTERROOM","value":{"n":4}}"#,
            r#"{"type":"ENTERROOM","value":"99999999999999999999999"}"#,
        ] {
            assert_eq!(parse(bad), Ok(EnterRoom(None)), "{bad}");
        }
    }

    #[test]
    fn everything_else_that_is_an_object_is_relayed() {
        for relay in [
            r#"{"type":"offer","sdp":"v=0"}"#,
            r#"{"type":"candidate","label":0,"id":"audio","candidate":"c"}"#,
            r#"{"type":"CHATMSG","value":"hi"}"#,
            r#"{"type":"getroom"}"#,
            r#"{"type":7}"#,
            r#"{"type":null}"#,
            r#"{"type":["GETROOM"]}"#,
            r#"{"sdp":"no type"}"#,
            r#"{}"#,
        ] {
            assert_eq!(parse(relay), Ok(Relay), "{relay}");
        }
    }

    #[test]
    fn escaped_type_strings_are_understood() {
        assert_eq!(parse(r#"{"type":"GET\u0052OOM"}"#), Ok(GetRoom));
        assert_eq!(
            parse(r#"{"type":"ENTERROOM","value":"\u0031\u0032"}"#),
            Ok(EnterRoom(Some(12)))
        );
    }

    #[test]
    fn numbers_beyond_f64_are_json_like_any_other() {
        assert_eq!(parse(r#"{"type":1e999}"#), Ok(Relay));
        assert_eq!(parse(r#"{"type":"offer","n":-1e999}"#), Ok(Relay));
        for value in ["1e999", "-1e999", "1e2", "100000000000000000000000"] {
            let frame = format!(r#"{{"type":"ENTERROOM","value":{value}}}"#);
            assert_eq!(parse(&frame), Ok(EnterRoom(None)), "{frame}");
        }
    }

    #[test]
    fn non_objects_and_broken_json_are_invalid() {
        for bad in [
            "",
            "null",
            "[]",
            r#"["type","GETROOM"]"#,
            "42",
            r#""GETROOM""#,
            "{",
            r#"{"type":}"#,
            "{} {}",
            "{'a':1}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
