//! The ceiling's view of the book protocol, without I/O: which frames are room commands, and the two
//! answers it sends. Everything else is relayed untouched, so this is all the parsing the ceiling does.

use serde_json::Value;

/// What a client's text frame asks of the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    GetRoom,
    /// ENTERROOM with its room number, `None` when `value` is not a valid one.
    EnterRoom(Option<u32>),
    /// Anything else: forwarded byte for byte to the other peer.
    Relay,
}

pub const MAX_ROOM: u32 = 999_999;
pub const WRONGROOM: &str = r#"{"type":"WRONGROOM"}"#;

/// Relayed frames are the hot path: one substring scan decides, and JSON is parsed only for the rare frame
/// that could be a room command (both command names end in `ROOM"`).
pub fn classify(text: &str) -> Frame {
    if !text.contains("ROOM\"") {
        return Frame::Relay;
    }
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return Frame::Relay;
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("GETROOM") => Frame::GetRoom,
        Some("ENTERROOM") => Frame::EnterRoom(fields.get("value").and_then(room_number)),
        _ => Frame::Relay,
    }
}

/// The book's client sends a number; a string of digits is accepted too (as rtcserver does).
fn room_number(value: &Value) -> Option<u32> {
    let n = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        _ => return None,
    };
    u32::try_from(n).ok().filter(|n| (1..=MAX_ROOM).contains(n))
}

pub fn getroom_answer(room: u32) -> String {
    format!(r#"{{"type":"GETROOM","value":{room}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_commands_are_recognised() {
        assert_eq!(classify(r#"{"type":"GETROOM","value":""}"#), Frame::GetRoom);
        assert_eq!(classify(r#"{"value":"","type":"GETROOM"}"#), Frame::GetRoom);
        assert_eq!(
            classify(r#"{"type":"ENTERROOM","value":42}"#),
            Frame::EnterRoom(Some(42))
        );
        assert_eq!(
            classify(r#"{"type":"ENTERROOM","value":"42"}"#),
            Frame::EnterRoom(Some(42))
        );
        assert_eq!(
            classify(r#"{"type":"ENTERROOM","value":0}"#),
            Frame::EnterRoom(None)
        );
        assert_eq!(
            classify(r#"{"type":"ENTERROOM","value":1000000}"#),
            Frame::EnterRoom(None)
        );
        assert_eq!(classify(r#"{"type":"ENTERROOM"}"#), Frame::EnterRoom(None));
    }

    #[test]
    fn everything_else_is_relayed() {
        for text in [
            r#"{"type":"offer","sdp":"v=0"}"#,
            r#"{"type":"CHATMSG","value":"say \"GETROOM\""}"#,
            r#"{"type":"WRONGROOM"}"#,
            r#"{}"#,
            "not json ROOM\"",
        ] {
            assert_eq!(classify(text), Frame::Relay, "{text}");
        }
    }

    #[test]
    fn answers_are_byte_exact() {
        assert_eq!(getroom_answer(123), r#"{"type":"GETROOM","value":123}"#);
    }
}
