//! The PeerJS server's protocol (npm `peer` 1.0): clients pick their own ids and connect to
//! `/peerjs?key=<key>&id=<id>&token=<token>`; the server answers `{"type":"OPEN"}`, and relays
//! `{"type":"OFFER"|"ANSWER"|"CANDIDATE","dst":id,"payload":..}` to `dst` as JSON with `src` added (queued if
//! `dst` is not connected yet). There are no rooms: a "pair" is two ids that address each other.
//!
//! The server drops clients that send no `HEARTBEAT` within `alive_timeout` (60 s for the `peerjs` command);
//! loadgen sends none, so runs that hold connections longer need `--alive_timeout` raised on the server.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::envelope::{self, Kind, Names};
use super::Adapter;
use crate::target::Target;
use crate::transport::{self, Peer};

/// The server's default `--key`.
pub const KEY: &str = "peerjs";
/// Any token does; it only guards an id against takeover by another client.
const TOKEN: &str = "loadgen";
/// How long the upgrade plus `OPEN`, or the first relayed message, may take.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PeerJs {
    target: Target,
    names: Names,
}

impl PeerJs {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            names: Names::new(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Open,
    Relayed(Utf8Bytes),
    /// LEAVE or EXPIRE: the other peer is gone or never read its messages.
    Gone(String),
    /// ERROR or ID-TAKEN, with the server's message.
    Refused(String),
}

impl Adapter for PeerJs {
    fn name(&self) -> &'static str {
        "peerjs"
    }

    /// Connects under a fresh id and waits for `OPEN`.
    async fn connect(&self, _pair: u64, source: Option<IpAddr>) -> Result<Peer> {
        let id = self.names.fresh();
        let path = format!(
            "{}?key={KEY}&id={id}&token={TOKEN}",
            envelope::join_path(&self.target.path, "peerjs")
        );
        let mut peer = transport::connect(&self.target, &path, source).await?;
        let text = timeout(PAIR_TIMEOUT, transport::recv_text(&mut peer.rx))
            .await
            .map_err(|_| anyhow!("no OPEN within {PAIR_TIMEOUT:?}"))?
            .context("waiting for OPEN")?;
        match event(&text)? {
            Event::Open => peer.id = Some(id),
            Event::Refused(why) => bail!("server refused id {id}: {why}"),
            other => bail!("expected OPEN, got {other:?}"),
        }
        Ok(peer)
    }

    /// Both ids are registered once both peers got `OPEN`; the joiner's first message proves the route.
    async fn pair(&self, creator: &mut Peer, joiner: &mut Peer, first: &str) -> Result<()> {
        creator.partner = joiner.id.clone();
        joiner.partner = creator.id.clone();
        self.send(joiner, first.to_string().into()).await?;
        let got = timeout(PAIR_TIMEOUT, self.recv(creator))
            .await
            .map_err(|_| {
                anyhow!("the joiner's first message was not relayed within {PAIR_TIMEOUT:?}")
            })?
            .context("creator waiting for the joiner's first message")?;
        if got.as_str() != first {
            bail!(
                "creator got {:?} instead of the joiner's first message",
                envelope::clip(&got)
            );
        }
        Ok(())
    }

    async fn send(&self, peer: &mut Peer, payload: Utf8Bytes) -> Result<()> {
        let frame = message(envelope::partner(peer)?, &payload);
        transport::send_text(&mut peer.tx, frame).await
    }

    async fn recv(&self, peer: &mut Peer) -> Result<Utf8Bytes> {
        loop {
            let text = transport::recv_text(&mut peer.rx).await?;
            match event(&text)? {
                Event::Relayed(payload) => return Ok(payload),
                Event::Open => continue,
                Event::Gone(what) => bail!("the other peer is gone ({what})"),
                Event::Refused(why) => bail!("server answered ERROR: {why}"),
            }
        }
    }
}

/// The PeerJS message type a payload travels under.
fn message_type(payload: &str) -> &'static str {
    match envelope::kind(payload) {
        Kind::Answer => "ANSWER",
        Kind::Candidate => "CANDIDATE",
        Kind::Offer | Kind::Other => "OFFER",
    }
}

/// `{"type":"OFFER","dst":"<id>","payload":"<payload>"}`.
fn message(dst: &str, payload: &str) -> String {
    format!(
        r#"{{"type":"{}","dst":{},"payload":{}}}"#,
        message_type(payload),
        envelope::quote(dst),
        envelope::quote(payload)
    )
}

fn event(text: &str) -> Result<Event> {
    let mut map = envelope::object(text)?;
    let kind = envelope::string_field(&map, "type").map(str::to_string);
    let msg = |map: &serde_json::Map<String, serde_json::Value>| {
        map.get("payload")
            .and_then(|p| p.get("msg"))
            .and_then(|m| m.as_str())
            .unwrap_or("no message")
            .to_string()
    };
    Ok(match kind.as_deref() {
        Some("OPEN") => Event::Open,
        Some("OFFER") | Some("ANSWER") | Some("CANDIDATE") => {
            Event::Relayed(envelope::payload(map.remove("payload"))?)
        }
        Some(t @ ("LEAVE" | "EXPIRE")) => Event::Gone(t.to_string()),
        Some(t @ ("ERROR" | "ID-TAKEN")) => Event::Refused(format!("{t}: {}", msg(&map))),
        _ => bail!("unexpected message {:?}", envelope::clip(text)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload;

    #[test]
    fn messages_are_peerjs_messages() {
        let answer = payload::sdp_message("answer", 1, 300);
        let v: serde_json::Value = serde_json::from_str(&message("lg1-2", &answer)).unwrap();
        assert_eq!(v["type"], "ANSWER");
        assert_eq!(v["dst"], "lg1-2");
        assert_eq!(v["payload"], answer.as_str());
        assert_eq!(message_type(&payload::candidate(0)), "CANDIDATE");
        assert_eq!(message_type(r#"{"type":"ping","seq":0}"#), "OFFER");
    }

    #[test]
    fn server_messages_are_read() {
        assert_eq!(event(r#"{"type":"OPEN"}"#).unwrap(), Event::Open);
        assert_eq!(
            event(r#"{"type":"OFFER","src":"a","dst":"b","payload":"{\"x\":1}"}"#).unwrap(),
            Event::Relayed(r#"{"x":1}"#.into())
        );
        assert_eq!(
            event(r#"{"type":"LEAVE","src":"a","dst":"b"}"#).unwrap(),
            Event::Gone("LEAVE".into())
        );
        assert_eq!(
            event(r#"{"type":"ERROR","payload":{"msg":"Server has reached its concurrent user limit"}}"#)
                .unwrap(),
            Event::Refused("ERROR: Server has reached its concurrent user limit".into())
        );
        assert!(event(r#"{"type":"OFFER","payload":{"sdp":"x"}}"#).is_err());
        assert!(event(r#"{"type":"WHAT"}"#).is_err());
        assert!(event("[]").is_err());
    }
}
