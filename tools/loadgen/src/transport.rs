//! Client WebSockets: the only code that touches a socket on the load side. Adapters decide what to send;
//! this module decides how bytes reach the wire, and keeps every connection small enough that 50k fit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::target::Target;

pub type Ws = WebSocketStream<TcpStream>;
pub type PeerTx = SplitSink<Ws, Message>;
pub type PeerRx = SplitStream<Ws>;

/// How long one TCP connect plus WebSocket handshake may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close handshake may take; past it the socket is simply dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One client connection, split so that one task may send while another receives (open-loop workloads).
pub struct Peer {
    pub tx: PeerTx,
    pub rx: PeerRx,
    /// This peer's id on protocols that address messages by id (set by the adapter, `None` for `book`).
    pub id: Option<String>,
    /// The id of the other peer of the room, where messages must name their addressee.
    pub partner: Option<String>,
}

/// Small buffers: tungstenite's defaults (128 KiB each way) would put 50k idle connections at 12 GiB.
/// Signaling messages are a few KiB at most, so 4 KiB reads cost nothing in throughput.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Opens a WebSocket to `path` on the target, from `source` when given (each source address has its own
/// ~28k ephemeral ports, which is what lets one machine open more connections than that to one port).
pub async fn connect(target: &Target, path: &str, source: Option<IpAddr>) -> Result<Peer> {
    let attempt = async {
        let socket = match target.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .context("socket()")?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind to source address {ip}"))?;
        }
        let stream = socket
            .connect(target.addr)
            .await
            .with_context(|| format!("TCP connect to {}", target.addr))?;
        // Signaling is request/response sized: Nagle would add up to 40 ms to every small frame.
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            target.url(path),
            stream,
            Some(ws_config()),
        )
        .await
        .context("WebSocket handshake")?;
        let (tx, rx) = ws.split();
        Ok(Peer {
            tx,
            rx,
            id: None,
            partner: None,
        })
    };
    timeout(CONNECT_TIMEOUT, attempt).await.map_err(|_| {
        anyhow!(
            "connect to {} timed out after {CONNECT_TIMEOUT:?}",
            target.addr
        )
    })?
}

pub async fn send_text(tx: &mut PeerTx, text: impl Into<Utf8Bytes>) -> Result<()> {
    tx.send(Message::Text(text.into()))
        .await
        .context("WebSocket send")
}

/// The next text frame. Control frames are skipped (tungstenite answers pings itself); a close or the end of
/// the stream is an error because every caller here is waiting for a specific message.
pub async fn recv_text(rx: &mut PeerRx) -> Result<Utf8Bytes> {
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Binary(bytes))) => {
                bail!("unexpected binary frame of {} bytes", bytes.len())
            }
            Some(Ok(Message::Close(frame))) => bail!("server closed the connection: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(anyhow!(e).context("WebSocket receive")),
            None => bail!("connection ended"),
        }
    }
}

/// How a close handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The server answered with its own close frame, as RFC 6455 §5.5.1 asks.
    Clean,
    /// The server dropped the TCP connection, sent an error, or did not answer in time.
    Unclean,
}

/// Sends a close frame and waits for the server's answer, so the server sees an orderly end (and frees the
/// peer through its normal path, which is what the RSS-after-close figure is meant to measure).
pub async fn close(peer: Peer) -> Closed {
    let Peer { mut tx, mut rx, .. } = peer;
    let handshake = async {
        if tx.send(Message::Close(None)).await.is_err() {
            return Closed::Unclean;
        }
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(_))) => return Closed::Clean,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Closed::Unclean,
            }
        }
    };
    timeout(CLOSE_TIMEOUT, handshake)
        .await
        .unwrap_or(Closed::Unclean)
}
