//! rtcserver's named rooms (shared/spec/rooms-protocol.md): `GET /socket/<room>` upgrades straight into the
//! room, the server answers `authenticated` with the peer's id and the peers already there, and messages
//! `{"event","data","to":[ids]}` are delivered as `{"event","data","from","to"}`.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::value::RawValue;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::envelope::{self, Kind, Names};
use super::Adapter;
use crate::target::Target;
use crate::transport::{self, Peer};

/// How long the upgrade plus the `authenticated` event, or the first relayed message, may take.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Rooms {
    target: Target,
    names: Names,
}

impl Rooms {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            names: Names::new(),
        }
    }

    /// `/socket/<room>` under the `--url` path.
    fn path(&self, room: &str) -> String {
        envelope::join_path(&self.target.path, &format!("socket/{room}"))
    }
}

impl Adapter for Rooms {
    fn name(&self) -> &'static str {
        "rooms"
    }

    /// Connects into pair `pair`'s room and waits for `authenticated`, which means the join went through.
    async fn connect(&self, pair: u64, source: Option<IpAddr>) -> Result<Peer> {
        let path = self.path(&self.names.room(pair));
        let mut peer = match transport::connect(&self.target, &path, source).await {
            Ok(peer) => peer,
            Err(e) if envelope::http_status(&e) == Some(404) => {
                bail!("rooms endpoint not available (404) at {path}")
            }
            Err(e) => return Err(e),
        };
        let id = timeout(PAIR_TIMEOUT, authenticated(&mut peer))
            .await
            .map_err(|_| anyhow!("no `authenticated` event within {PAIR_TIMEOUT:?}"))??;
        peer.id = Some(id);
        Ok(peer)
    }

    /// Both peers are in the room once both have been authenticated; each learns the other's id from its own
    /// side, and the joiner's first message proves the route.
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
            if let Some(payload) = delivered(&text)? {
                return Ok(payload);
            }
        }
    }
}

/// The event name a payload travels under, after what it is.
fn event_name(payload: &str) -> &'static str {
    match envelope::kind(payload) {
        Kind::Offer => "offer",
        Kind::Answer => "answer",
        Kind::Candidate => "candidate",
        Kind::Other => "message",
    }
}

/// `{"event":..,"data":"<payload>","to":["<id>"]}`.
fn message(to: &str, payload: &str) -> String {
    format!(
        r#"{{"event":"{}","data":{},"to":[{}]}}"#,
        event_name(payload),
        envelope::quote(payload),
        envelope::quote(to)
    )
}

/// Waits for `authenticated` and returns the peer id it assigns.
async fn authenticated(peer: &mut Peer) -> Result<String> {
    let text = transport::recv_text(&mut peer.rx)
        .await
        .context("waiting for `authenticated`")?;
    let mut map = envelope::object(&text)?;
    match envelope::string_field(&map, "event") {
        Some("authenticated") => {}
        Some("error") => bail!("join refused: {}", describe(map.remove("data"))),
        _ => bail!("expected `authenticated`, got {:?}", envelope::clip(&text)),
    }
    map.get("data")
        .and_then(|d| d.get("peer_id"))
        .and_then(|id| id.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "`authenticated` without data.peer_id: {:?}",
                envelope::clip(&text)
            )
        })
}

/// A server's frame as `delivered` reads it: borrowed from the frame, `data` left as it stands. The
/// relay workload reads one of these per message, and building a `serde_json::Value` of each (a map, a
/// string per key, the `to` array) made loadgen, not the server, the bottleneck of the rooms relay.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
}

/// The payload of a relayed message; `None` for the events that carry none and change nothing for a pair
/// (`joined`, a late `authenticated`); an error for those that end it (`left`, `error`).
fn delivered(text: &str) -> Result<Option<Utf8Bytes>> {
    let unexpected = || anyhow!("unexpected message {:?}", envelope::clip(text));
    let envelope: Envelope = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(_) => return Err(unexpected()),
    };
    let data = || {
        envelope
            .data
            .and_then(|d| serde_json::from_str(d.get()).ok())
    };
    match &*envelope.event {
        "joined" | "authenticated" => Ok(None),
        "left" => bail!("the other peer left the room"),
        "error" => bail!("server answered error: {}", describe(data())),
        _ if envelope.from.is_some() => match envelope.data {
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(payload) => Ok(Some(payload.into())),
                Err(_) => bail!(
                    "relayed payload is {:?}, expected the string loadgen sent",
                    envelope::clip(raw.get())
                ),
            },
            None => Err(unexpected()),
        },
        _ => Err(unexpected()),
    }
}

fn describe(data: Option<serde_json::Value>) -> String {
    data.as_ref()
        .and_then(|d| d.get("description"))
        .and_then(|d| d.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{data:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload;

    #[test]
    fn messages_follow_the_contract() {
        let offer = payload::sdp_message("offer", 1, 300);
        let frame = message("p-1", &offer);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["event"], "offer");
        assert_eq!(v["to"], serde_json::json!(["p-1"]));
        assert_eq!(v["data"], offer.as_str());
        assert_eq!(event_name(&payload::candidate(2)), "candidate");
        assert_eq!(event_name(r#"{"type":"ping","seq":0}"#), "message");
    }

    #[test]
    fn delivered_messages_give_their_payload_back() {
        let got =
            delivered(r#"{"event":"offer","data":"{\"type\":\"offer\"}","from":"a","to":["b"]}"#)
                .unwrap()
                .unwrap();
        assert_eq!(got.as_str(), r#"{"type":"offer"}"#);
        assert!(delivered(r#"{"event":"joined","data":{"peer_id":"b"}}"#)
            .unwrap()
            .is_none());
        let left = delivered(r#"{"event":"left","data":{"peer_id":"b"}}"#).unwrap_err();
        assert!(left.to_string().contains("left"));
        let error =
            delivered(r#"{"event":"error","data":{"description":"unknown_peer"}}"#).unwrap_err();
        assert!(error.to_string().contains("unknown_peer"), "{error}");
        assert!(delivered("[1]").is_err());
        assert!(delivered(r#"{"event":"offer","data":{"sdp":1},"from":"a"}"#).is_err());
    }
}
