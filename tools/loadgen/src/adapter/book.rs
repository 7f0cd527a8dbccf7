//! The book's protocol (shared/spec/rtcserver-protocol.md): GETROOM creates a numbered room, ENTERROOM joins
//! it with no answer on success, and every other frame is relayed byte for byte to the other peer.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Adapter;
use crate::target::Target;
use crate::transport::{self, Peer};

/// How long creating and joining a room may take once both sockets are open.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(10);

const GETROOM: &str = r#"{"type":"GETROOM","value":""}"#;
const WRONGROOM: &str = r#"{"type":"WRONGROOM"}"#;

pub struct Book {
    target: Target,
}

impl Book {
    pub fn new(target: Target) -> Self {
        Self { target }
    }
}

impl Adapter for Book {
    fn name(&self) -> &'static str {
        "book"
    }

    async fn connect(&self, _pair: u64, source: Option<IpAddr>) -> Result<Peer> {
        transport::connect(&self.target, &self.target.path, source).await
    }

    async fn pair(&self, creator: &mut Peer, joiner: &mut Peer, first: &str) -> Result<()> {
        timeout(PAIR_TIMEOUT, pair(creator, joiner, first))
            .await
            .map_err(|_| anyhow!("creating and joining a room timed out after {PAIR_TIMEOUT:?}"))?
    }

    async fn send(&self, peer: &mut Peer, payload: Utf8Bytes) -> Result<()> {
        transport::send_text(&mut peer.tx, payload).await
    }

    async fn recv(&self, peer: &mut Peer) -> Result<Utf8Bytes> {
        transport::recv_text(&mut peer.rx).await
    }
}

async fn pair(creator: &mut Peer, joiner: &mut Peer, first: &str) -> Result<()> {
    transport::send_text(&mut creator.tx, GETROOM).await?;
    let reply = transport::recv_text(&mut creator.rx)
        .await
        .context("waiting for the GETROOM answer")?;
    let room = parse_getroom(&reply)?;
    transport::send_text(&mut joiner.tx, enterroom(room)).await?;
    transport::send_text(&mut joiner.tx, first.to_string()).await?;
    // A refused join is answered on the joiner's socket while the creator would wait forever, so both are
    // watched; receiving is cancel-safe, so the loser of the race loses nothing.
    tokio::select! {
        got = transport::recv_text(&mut creator.rx) => {
            let got = got.context("creator waiting for the joiner's first message")?;
            if got.as_str() != first {
                bail!("creator of room {room} got {:?} instead of the joiner's first message", clip(&got));
            }
            Ok(())
        }
        answer = transport::recv_text(&mut joiner.rx) => {
            let answer = answer.context("joiner waiting for its first message to be relayed")?;
            if answer.as_str() == WRONGROOM {
                bail!("ENTERROOM {room} answered WRONGROOM");
            }
            bail!("joiner of room {room} got unexpected {:?}", clip(&answer))
        }
    }
}

fn enterroom(room: u32) -> String {
    format!(r#"{{"type":"ENTERROOM","value":{room}}}"#)
}

/// The answer must be exactly `{"type":"GETROOM","value":N}`: loadgen doubles as a check of the wire contract.
fn parse_getroom(reply: &str) -> Result<u32> {
    let digits = reply
        .strip_prefix(r#"{"type":"GETROOM","value":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| {
            anyhow!(
                "GETROOM answered {:?}, expected {{\"type\":\"GETROOM\",\"value\":N}}",
                clip(reply)
            )
        })?;
    let canonical = !digits.is_empty()
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    match digits.parse::<u32>() {
        Ok(n) if canonical && (1..=999_999).contains(&n) => Ok(n),
        _ => bail!("GETROOM answered room number {digits:?}, expected an integer in 1..=999999"),
    }
}

/// Error messages quote what the server sent; a relayed SDP would drown the message.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(120) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getroom_answer_is_parsed_byte_for_byte() {
        assert_eq!(parse_getroom(r#"{"type":"GETROOM","value":1}"#).unwrap(), 1);
        assert_eq!(
            parse_getroom(r#"{"type":"GETROOM","value":999999}"#).unwrap(),
            999_999
        );
        for bad in [
            r#"{"type":"GETROOM","value":0}"#,
            r#"{"type":"GETROOM","value":1000000}"#,
            r#"{"type":"GETROOM","value":012}"#,
            r#"{"type":"GETROOM","value":"12"}"#,
            r#"{"type":"GETROOM","value":-3}"#,
            r#"{"type":"GETROOM","value":}"#,
            r#"{"type": "GETROOM","value":12}"#,
            r#"{"value":12,"type":"GETROOM"}"#,
            r#"{"type":"WRONGROOM"}"#,
        ] {
            assert!(parse_getroom(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn enterroom_is_the_books_message() {
        assert_eq!(enterroom(42), r#"{"type":"ENTERROOM","value":42}"#);
    }

    #[test]
    fn clip_keeps_short_text() {
        assert_eq!(clip("abc"), "abc");
        assert_eq!(clip(&"x".repeat(500)).len(), 120);
    }
}
