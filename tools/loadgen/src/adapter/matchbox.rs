//! matchbox_server's protocol (crates matchbox_protocol / matchbox_signaling 0.15): the upgrade path names the
//! room (`/<room>`), the server sends `{"IdAssigned":"<uuid>"}` at once, tells peers already in the room
//! `{"NewPeer":"<uuid>"}` when another arrives, and relays `{"Signal":{"receiver":id,"data":..}}` as
//! `{"Signal":{"sender":id,"data":..}}`; a peer that leaves is announced with `{"PeerLeft":"<uuid>"}`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::envelope::{self, Names};
use super::Adapter;
use crate::target::Target;
use crate::transport::{self, Peer};

/// How long the upgrade plus `IdAssigned`, or the join, may take.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Matchbox {
    target: Target,
    names: Names,
}

impl Matchbox {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            names: Names::new(),
        }
    }
}

/// What a server frame means to a pair.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    IdAssigned(String),
    NewPeer(String),
    PeerLeft(String),
    Signal(Utf8Bytes),
}

impl Adapter for Matchbox {
    fn name(&self) -> &'static str {
        "matchbox"
    }

    /// Connects into pair `pair`'s room (one room per pair, without `?next=`: peers of a room all see each
    /// other) and waits for the id the server assigns.
    async fn connect(&self, pair: u64, source: Option<IpAddr>) -> Result<Peer> {
        let path = envelope::join_path(&self.target.path, &self.names.room(pair));
        let mut peer = transport::connect(&self.target, &path, source).await?;
        let first = timeout(PAIR_TIMEOUT, transport::recv_text(&mut peer.rx))
            .await
            .map_err(|_| anyhow!("no IdAssigned within {PAIR_TIMEOUT:?}"))?
            .context("waiting for IdAssigned")?;
        match event(&first)? {
            Event::IdAssigned(id) => peer.id = Some(id),
            other => bail!("expected IdAssigned first, got {other:?}"),
        }
        Ok(peer)
    }

    /// The server sends `IdAssigned` before it adds the peer to the room (and a signal to a peer not added
    /// yet is dropped), so the pair is complete only once one of the two has been told of the other with
    /// `NewPeer`; whichever of them was added first gets it.
    async fn pair(&self, creator: &mut Peer, joiner: &mut Peer, first: &str) -> Result<()> {
        let (Some(creator_id), Some(joiner_id)) = (creator.id.clone(), joiner.id.clone()) else {
            bail!("pair before both peers got their ids");
        };
        let met = async {
            tokio::select! {
                got = new_peer(creator) => expect_id(got?, &joiner_id),
                got = new_peer(joiner) => expect_id(got?, &creator_id),
            }
        };
        timeout(PAIR_TIMEOUT, met)
            .await
            .map_err(|_| anyhow!("no NewPeer within {PAIR_TIMEOUT:?}"))??;
        creator.partner = Some(joiner_id);
        joiner.partner = Some(creator_id);
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
        let frame = signal(envelope::partner(peer)?, &payload);
        transport::send_text(&mut peer.tx, frame).await
    }

    async fn recv(&self, peer: &mut Peer) -> Result<Utf8Bytes> {
        loop {
            let text = transport::recv_text(&mut peer.rx).await?;
            match event(&text)? {
                Event::Signal(payload) => return Ok(payload),
                Event::NewPeer(_) | Event::IdAssigned(_) => continue,
                Event::PeerLeft(id) => bail!("the other peer ({id}) left"),
            }
        }
    }
}

/// The next `NewPeer` on `peer`'s socket (cancel-safe: only whole frames are taken).
async fn new_peer(peer: &mut Peer) -> Result<String> {
    let text = transport::recv_text(&mut peer.rx).await?;
    match event(&text)? {
        Event::NewPeer(id) => Ok(id),
        Event::PeerLeft(id) => bail!("peer {id} left while pairing"),
        other => bail!("expected NewPeer, got {other:?}"),
    }
}

fn expect_id(got: String, want: &str) -> Result<()> {
    if got != want {
        bail!("NewPeer announced {got}, not the other peer of the pair ({want})");
    }
    Ok(())
}

/// `{"Signal":{"receiver":"<uuid>","data":"<payload>"}}`.
fn signal(receiver: &str, payload: &str) -> String {
    format!(
        r#"{{"Signal":{{"receiver":{},"data":{}}}}}"#,
        envelope::quote(receiver),
        envelope::quote(payload)
    )
}

/// Reads one server frame: serde's externally tagged enum, `{"Variant": content}`.
fn event(text: &str) -> Result<Event> {
    let map = envelope::object(text)?;
    let mut entries = map.into_iter();
    let (Some((tag, content)), None) = (entries.next(), entries.next()) else {
        bail!(
            "server sent {:?}, expected one variant",
            envelope::clip(text)
        );
    };
    let id = |content: Value| match content {
        Value::String(id) => Ok(id),
        _ => Err(anyhow!(
            "{tag} without a peer id: {:?}",
            envelope::clip(text)
        )),
    };
    Ok(match tag.as_str() {
        "IdAssigned" => Event::IdAssigned(id(content)?),
        "NewPeer" => Event::NewPeer(id(content)?),
        "PeerLeft" => Event::PeerLeft(id(content)?),
        "Signal" => match content {
            Value::Object(mut fields) => Event::Signal(envelope::payload(fields.remove("data"))?),
            _ => bail!("Signal without fields: {:?}", envelope::clip(text)),
        },
        _ => bail!("unknown event {:?}", envelope::clip(text)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "5a1cd2a9-4c3f-4c4e-9d55-0c2b1e1f6f10";

    #[test]
    fn signals_are_matchbox_requests() {
        let frame = signal(A, r#"{"type":"offer","sdp":"v=0\r\n"}"#);
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["Signal"]["receiver"], A);
        assert_eq!(v["Signal"]["data"], r#"{"type":"offer","sdp":"v=0\r\n"}"#);
    }

    #[test]
    fn server_events_are_read() {
        assert_eq!(
            event(&format!(r#"{{"IdAssigned":"{A}"}}"#)).unwrap(),
            Event::IdAssigned(A.into())
        );
        assert_eq!(
            event(&format!(r#"{{"NewPeer":"{A}"}}"#)).unwrap(),
            Event::NewPeer(A.into())
        );
        assert_eq!(
            event(&format!(r#"{{"PeerLeft":"{A}"}}"#)).unwrap(),
            Event::PeerLeft(A.into())
        );
        assert_eq!(
            event(&format!(
                r#"{{"Signal":{{"sender":"{A}","data":"{{\"type\":\"x\"}}"}}}}"#
            ))
            .unwrap(),
            Event::Signal(r#"{"type":"x"}"#.into())
        );
        for bad in [
            "\"KeepAlive\"",
            "{}",
            r#"{"NewPeer":1}"#,
            r#"{"Signal":"x"}"#,
            r#"{"Other":"x"}"#,
            r#"{"NewPeer":"a","PeerLeft":"b"}"#,
        ] {
            assert!(event(bad).is_err(), "{bad}");
        }
    }
}
