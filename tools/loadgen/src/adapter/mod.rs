//! Signaling protocols, one adapter each. A workload only knows how to open a pair of peers in one room and
//! how to pass a payload from one to the other; everything protocol-specific (room handshakes, envelopes
//! around relayed messages, endpoints) lives behind [`Adapter`].

use std::future::Future;
use std::net::IpAddr;

use anyhow::Result;
use clap::ValueEnum;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::transport::Peer;

pub mod book;
pub mod envelope;
pub mod matchbox;
pub mod peerjs;
pub mod rooms;

/// The protocols loadgen knows by name (`--adapter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdapterKind {
    /// The book's protocol: GETROOM / ENTERROOM / verbatim relay on `/`.
    Book,
    /// Named rooms on `/socket/<room>` with JSON events (shared/spec/rooms-protocol.md).
    Rooms,
    /// matchbox_server's protocol: `/<room>`, IdAssigned / NewPeer / Signal.
    Matchbox,
    /// The PeerJS server's protocol: `/peerjs?key=..&id=..&token=..`, OPEN / OFFER / ANSWER / CANDIDATE.
    Peerjs,
}

impl AdapterKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Book => "book",
            Self::Rooms => "rooms",
            Self::Matchbox => "matchbox",
            Self::Peerjs => "peerjs",
        }
    }
}

/// One signaling protocol. The futures are `Send` so workloads can spread pairs over the runtime's threads.
pub trait Adapter: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Opens one connection. `pair` numbers the pair it will belong to, for protocols whose endpoint names the
    /// room (`/socket/<room>`); `source` is the local address to connect from.
    fn connect(
        &self,
        pair: u64,
        source: Option<IpAddr>,
    ) -> impl Future<Output = Result<Peer>> + Send;

    /// Puts `creator` and `joiner` alone in one fresh room. `first` is the joiner's first relayed payload: it
    /// is sent right after the join request and the call returns once the creator has received it, which is
    /// the only proof of a completed join on protocols that do not acknowledge one.
    fn pair(
        &self,
        creator: &mut Peer,
        joiner: &mut Peer,
        first: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sends `payload` to the other peer of the room (`peer.partner` on protocols that address by id).
    fn send(&self, peer: &mut Peer, payload: Utf8Bytes) -> impl Future<Output = Result<()>> + Send;

    /// The next payload relayed from the other peer, exactly as that peer passed it to [`Adapter::send`].
    /// Protocol events that carry no payload (a peer joined, ids assigned) are skipped; one that ends the
    /// exchange (the other peer left, an error) is an error.
    fn recv(&self, peer: &mut Peer) -> impl Future<Output = Result<Utf8Bytes>> + Send;
}
