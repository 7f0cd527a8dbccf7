//! The resume frames on `/socket/:room` (docs/rooms-protocol.md, "Resume"), with no I/O: what a
//! resumable client adds to its messages (`cseq`, `ack`), the `resume` request, and the server's
//! `resumed` / `resume_failed` answers.
use crate::registry::PeerId;
use crate::rooms_protocol::RoomMessage;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;

/// The close code after `resume_failed`.
pub const RESUME_FAILED_CLOSE: u16 = 4002;
/// The close code of an old connection whose session a resume took over.
pub const REPLACED_CLOSE: u16 = 4001;
/// The close code of a resume connection that sent no `resume` frame in time.
pub const NO_RESUME_CLOSE: u16 = 4003;

/// What a resumable client's frame carries besides the message itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// `{"event":"ack","data":{"seq":n}}`: the client processed every frame up to `n`.
    pub ack: Option<u64>,
    /// The client's own number for this message, to drop a resent duplicate.
    pub cseq: Option<u64>,
}

/// Reads `ack` and `cseq` from a client's text; a frame that is not a JSON object, or whose
/// `cseq` is not a number, has none (it is then read as any other message).
pub fn extras(text: &str) -> Extras {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(borrow)]
        event: Option<std::borrow::Cow<'a, str>>,
        cseq: Option<u64>,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct AckData {
        seq: u64,
    }
    let Ok(wire) = serde_json::from_str::<Wire>(text) else {
        return Extras::default();
    };
    let ack = match (wire.event.as_deref(), wire.data) {
        (Some("ack"), Some(data)) => serde_json::from_str::<AckData>(data.get())
            .ok()
            .map(|d| d.seq),
        _ => None,
    };
    Extras {
        ack,
        cseq: wire.cseq,
    }
}

/// The first frame of a resume connection.
#[derive(Debug, PartialEq, Eq)]
pub struct ResumeRequest {
    pub peer_id: PeerId,
    pub token: String,
    pub last_seq: u64,
}

/// Reads a `resume` request; `None` for anything else (answered `unknown`).
pub fn resume_request(text: &str) -> Option<ResumeRequest> {
    #[derive(Deserialize)]
    struct Wire {
        event: String,
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        peer_id: String,
        token: String,
        last_seq: u64,
    }
    let wire: Wire = serde_json::from_str(text).ok()?;
    if wire.event != "resume" {
        return None;
    }
    Some(ResumeRequest {
        peer_id: wire.data.peer_id.parse().ok()?,
        token: wire.data.token,
        last_seq: wire.data.last_seq,
    })
}

/// `authenticated`'s `data.resume`, for a peer that asked for it.
pub fn with_resume(mut welcome: RoomMessage, token: &str, window: Duration) -> RoomMessage {
    if let Some(data) = welcome.data.as_object_mut() {
        data.insert(
            "resume".into(),
            serde_json::json!({ "token": token, "window_ms": window.as_millis() as u64 }),
        );
    }
    welcome
}

pub fn resumed(peer: PeerId, token: &str, last_cseq: u64, window: Duration) -> RoomMessage {
    RoomMessage::server(
        "resumed",
        serde_json::json!({
            "peer_id": peer.to_string(),
            "token": token,
            "last_cseq": last_cseq,
            "window_ms": window.as_millis() as u64,
        }),
    )
}

/// Why a resume failed (`resume_failed`'s `data.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No such session for this room, peer, token and identity (one answer for all four).
    Unknown,
    /// The window ended before the resume.
    Expired,
    /// The session ended because its kept frames passed the bounds.
    Overflow,
    /// The peer left (a close 1000, or the server ended it).
    Left,
    /// Frames after `last_seq` were freed.
    Gap,
    /// `last_seq` is past the last frame sent.
    BadSeq,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Unknown => "unknown",
            Failure::Expired => "expired",
            Failure::Overflow => "overflow",
            Failure::Left => "left",
            Failure::Gap => "gap",
            Failure::BadSeq => "bad_seq",
        }
    }
}

pub fn resume_failed(failure: Failure) -> RoomMessage {
    RoomMessage::server(
        "resume_failed",
        serde_json::json!({ "reason": failure.reason() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_cseqs_are_read_and_anything_else_is_not() {
        assert_eq!(
            extras(r#"{"event":"ack","data":{"seq":12},"to":[]}"#),
            Extras {
                ack: Some(12),
                cseq: None
            }
        );
        assert_eq!(
            extras(r#"{"event":"offer","data":{"seq":12},"cseq":3}"#),
            Extras {
                ack: None,
                cseq: Some(3)
            }
        );
        assert_eq!(extras(r#"{"event":"x","cseq":"3"}"#), Extras::default());
        assert_eq!(extras("[1]"), Extras::default());
        assert_eq!(extras(r#"{"event":"ack","data":{"seq":-1}}"#).ack, None);
    }

    #[test]
    fn a_resume_request_needs_every_field() {
        assert_eq!(
            resume_request(
                r#"{"event":"resume","data":{"peer_id":"42","token":"t","last_seq":0}}"#
            ),
            Some(ResumeRequest {
                peer_id: 42,
                token: "t".into(),
                last_seq: 0
            })
        );
        for bad in [
            r#"{"event":"resume","data":{"peer_id":"x","token":"t","last_seq":0}}"#,
            r#"{"event":"resume","data":{"peer_id":"1","last_seq":0}}"#,
            r#"{"event":"join","data":{"peer_id":"1","token":"t","last_seq":0}}"#,
            r#"{"event":"resume","data":{"peer_id":"1","token":"t","last_seq":-1}}"#,
            "",
        ] {
            assert_eq!(resume_request(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_answers_byte_for_byte() {
        assert_eq!(
            resumed(7, "T2", 4, Duration::from_millis(20000)).to_text(),
            r#"{"event":"resumed","data":{"peer_id":"7","token":"T2","last_cseq":4,"window_ms":20000}}"#
        );
        assert_eq!(
            resume_failed(Failure::Gap).to_text(),
            r#"{"event":"resume_failed","data":{"reason":"gap"}}"#
        );
        let welcome = with_resume(
            RoomMessage::authenticated(5, "lobby", &[3]),
            "T",
            Duration::from_secs(20),
        );
        assert_eq!(
            welcome.to_text(),
            r#"{"event":"authenticated","data":{"peer_id":"5","room":"lobby","peers":["3"],"resume":{"token":"T","window_ms":20000}}}"#
        );
    }
}
