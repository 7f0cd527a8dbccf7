//! What the id-addressed protocols (`rooms`, `matchbox`, `peerjs`) share: payloads travel inside a JSON
//! envelope as a JSON *string*, so every server hands them back byte for byte (a server that parsed an
//! object payload could reorder its keys), and the envelopes the servers send are parsed here.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::{Error as WsError, Utf8Bytes};

use crate::transport::Peer;

/// `text` as a JSON string literal, quotes included. The runs between characters that need an escape
/// are copied whole: this runs once per message sent, and a character at a time it was loadgen's largest
/// function in a rooms relay (8.7 % of its profile).
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 2);
    out.push('"');
    let mut rest = text;
    // Every byte that needs an escape is ASCII, so the split points are character boundaries.
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        let (plain, escaped) = rest.split_at(at);
        out.push_str(plain);
        let mut chars = escaped.chars();
        match chars.next() {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
    out
}

/// What a payload is, for protocols whose envelopes name it (PeerJS's `type`, the rooms' `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Answer,
    Candidate,
    Other,
}

/// Read from the payload's leading `{"type":...` as loadgen builds it ([`crate::payload`]); anything else is
/// `Other`, which only changes a label on the wire.
pub fn kind(payload: &str) -> Kind {
    match payload.strip_prefix(r#"{"type":""#) {
        Some(rest) if rest.starts_with("offer\"") => Kind::Offer,
        Some(rest) if rest.starts_with("answer\"") => Kind::Answer,
        Some(rest) if rest.starts_with("candidate\"") => Kind::Candidate,
        _ => Kind::Other,
    }
}

/// A server's text frame as a JSON object.
pub fn object(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(anyhow!(
            "server sent {:?}, expected a JSON object",
            clip(text)
        )),
    }
}

/// The string field `key` of an envelope.
pub fn string_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// A payload taken out of an envelope.
pub fn payload(value: Option<Value>) -> Result<Utf8Bytes> {
    match value {
        Some(Value::String(text)) => Ok(text.into()),
        other => Err(anyhow!(
            "relayed payload is {:?}, expected the string loadgen sent",
            other.map(|v| clip(&v.to_string()).to_string())
        )),
    }
}

/// The other peer's id, set by `pair`; sending before it is a programming error of the workload.
pub fn partner(peer: &Peer) -> Result<&str> {
    peer.partner
        .as_deref()
        .ok_or_else(|| anyhow!("send before the pair was formed (no partner id)"))
}

/// Error messages quote what the server sent; a relayed SDP would drown the message.
pub fn clip(text: &str) -> &str {
    match text.char_indices().nth(120) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// `base` (the `--url` path) joined with `rest`, with exactly one `/` between them.
pub fn join_path(base: &str, rest: &str) -> String {
    format!("{}/{rest}", base.trim_end_matches('/'))
}

/// Names (rooms, peer ids) unique to this run, so runs against a long-lived server never collide with the
/// leftovers of an earlier one: `lg<nonce>-<n>`.
pub struct Names {
    nonce: String,
    next: AtomicU64,
}

impl Names {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Self {
            nonce: format!("{:x}", nanos ^ std::process::id().rotate_left(16)),
            next: AtomicU64::new(0),
        }
    }

    /// The name of pair `n`'s room.
    pub fn room(&self, n: u64) -> String {
        format!("lg{}-{n}", self.nonce)
    }

    /// A fresh name, never handed out before in this run.
    pub fn fresh(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("lg{}-{n}", self.nonce)
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a connect failed because the server answered the upgrade with HTTP `status`.
pub fn http_status(e: &anyhow::Error) -> Option<u16> {
    e.chain()
        .find_map(|cause| match cause.downcast_ref::<WsError>() {
            Some(WsError::Http(response)) => Some(response.status().as_u16()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload;

    #[test]
    fn quoted_payloads_parse_back_to_themselves() {
        for text in [
            payload::sdp_message("offer", 7, 300),
            payload::candidate(3),
            "tab\t nl\n cr\r bell\u{7} quote\" backslash\\ é ✓".to_string(),
            // Empty, and escapes at either end or alone.
            String::new(),
            "\"".to_string(),
            "\"\\\n\u{1f}".to_string(),
            "\u{0}é plain ✓".to_string(),
            "plain\\".to_string(),
        ] {
            let quoted = quote(&text);
            let back: String = serde_json::from_str(&quoted).unwrap();
            assert_eq!(back, text);
            assert_eq!(quoted, serde_json::to_string(&text).unwrap());
        }
    }

    #[test]
    fn kinds_are_read_from_loadgen_payloads() {
        assert_eq!(kind(&payload::sdp_message("offer", 1, 300)), Kind::Offer);
        assert_eq!(kind(&payload::sdp_message("answer", 1, 300)), Kind::Answer);
        assert_eq!(kind(&payload::candidate(1)), Kind::Candidate);
        assert_eq!(kind(r#"{"type":"ping","seq":1}"#), Kind::Other);
        assert_eq!(kind("offer"), Kind::Other);
    }

    #[test]
    fn payloads_must_be_strings() {
        assert_eq!(payload(Some(Value::from("x"))).unwrap().as_str(), "x");
        assert!(payload(Some(serde_json::json!({"a": 1}))).is_err());
        assert!(payload(None).is_err());
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(join_path("/", "peerjs"), "/peerjs");
        assert_eq!(join_path("/base/", "x"), "/base/x");
        assert_eq!(join_path("", "x"), "/x");
        let names = Names::new();
        assert_ne!(names.fresh(), names.fresh());
        assert!(names.room(3).ends_with("-3"));
        let name = names.room(12);
        assert!(name.len() <= 64);
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
