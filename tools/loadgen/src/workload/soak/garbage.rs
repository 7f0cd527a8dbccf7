//! Badly-behaved clients: junk in place of HTTP, half a request, frames that break the WebSocket
//! framing or the protocols, a message over the size limit. Each connection's ending is recorded by kind;
//! none may be a 1011 (a crash in the server).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::traffic::{ending, Tally};
use crate::adapter::envelope::{self, Names};
use crate::target::Target;
use crate::transport;

/// One badly-behaved connection is given up after this long.
const LIMIT: Duration = Duration::from_secs(10);
/// Frames read while waiting for the end of a connection that should end now.
const MAX_FRAMES: u64 = 64;
/// The pause between two badly-behaved connections of one worker.
const PACE: Duration = Duration::from_millis(50);

const KINDS: u64 = 9;

/// Cycles through every kind of bad input until `stop`.
pub async fn garbage(
    target: &Target,
    names: &Names,
    cycle: &AtomicU64,
    oversize: usize,
    stop: Instant,
    t: &Tally,
) {
    while Instant::now() < stop {
        let n = cycle.fetch_add(1, Ordering::Relaxed);
        let (kind, how) = match timeout(LIMIT, one(target, names, n % KINDS, oversize)).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => (kind_name(n % KINDS), format!("error ({e:#})")),
            Err(_) => (kind_name(n % KINDS), "timeout".to_string()),
        };
        t.ended(kind, &how);
        t.garbage.fetch_add(1, Ordering::Relaxed);
        sleep(PACE).await;
    }
}

fn kind_name(kind: u64) -> &'static str {
    match kind {
        0 => "book-not-json",
        1 => "book-binary",
        2 => "book-oversize",
        3 => "rooms-invalid-message",
        4 => "rooms-binary",
        5 => "http-junk",
        6 => "http-half-request",
        7 => "ws-reserved-opcode",
        _ => "ws-unmasked",
    }
}

async fn one(
    target: &Target,
    names: &Names,
    kind: u64,
    oversize: usize,
) -> Result<(&'static str, String)> {
    let name = kind_name(kind);
    let book = &target.path;
    let room = envelope::join_path(&target.path, &format!("socket/{}", names.fresh()));
    let how = match kind {
        0 => ws_sends(target, book, Message::text("{not json")).await?,
        // Binary frames are ignored (book-protocol.md): the connection goes on as if none had come.
        1 => {
            let mut peer = transport::connect(target, book, None).await?;
            peer.tx
                .send(Message::Binary(Bytes::from_static(&[0, 1, 2, 3])))
                .await?;
            transport::send_text(&mut peer.tx, r#"{"type":"GETROOM"}"#).await?;
            let answer = transport::recv_text(&mut peer.rx).await?;
            let closed = transport::close(peer).await;
            let ignored = answer.contains("GETROOM");
            format!(
                "{}{closed:?}",
                if ignored { "ignored " } else { "answered " }
            )
        }
        2 => ws_sends(target, book, Message::text("x".repeat(oversize))).await?,
        3 => {
            // Refused with an `error` event, and the connection stays usable: it then leaves properly.
            let mut peer = transport::connect(target, &room, None).await?;
            transport::recv_text(&mut peer.rx)
                .await
                .context("authenticated")?;
            transport::send_text(&mut peer.tx, "[\"not an object\"]").await?;
            let answer = transport::recv_text(&mut peer.rx).await?;
            let refused = answer.contains("invalid_message");
            let closed = transport::close(peer).await;
            format!(
                "{}{closed:?}",
                if refused {
                    "error-event "
                } else {
                    "no-error-event "
                }
            )
        }
        4 => {
            let mut peer = transport::connect(target, &room, None).await?;
            transport::recv_text(&mut peer.rx)
                .await
                .context("authenticated")?;
            peer.tx
                .send(Message::Binary(Bytes::from_static(b"\xff\xfe")))
                .await?;
            transport::send_text(&mut peer.tx, "[1]").await?;
            // The first answer is the refusal of "[1]": the binary frame before it got none.
            let answer = transport::recv_text(&mut peer.rx).await?;
            let closed = transport::close(peer).await;
            let ignored = answer.contains("invalid_message");
            format!(
                "{}{closed:?}",
                if ignored { "ignored " } else { "answered " }
            )
        }
        5 => {
            raw(
                target,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
            )
            .await?
        }
        6 => {
            raw(
                target,
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs",
            )
            .await?
        }
        // A valid upgrade, then a frame with a reserved opcode (3), masked as a client must.
        7 => upgraded_then(target, b"\x83\x84abcd\x00\x00\x00\x00").await?,
        // A valid upgrade, then an unmasked text frame.
        _ => upgraded_then(target, b"\x81\x02hi").await?,
    };
    Ok((name, how))
}

/// Opens a WebSocket at `path`, sends `message`, and returns how the server ended the connection.
async fn ws_sends(target: &Target, path: &str, message: Message) -> Result<String> {
    let mut peer = transport::connect(target, path, None).await?;
    if path.contains("/socket/") {
        transport::recv_text(&mut peer.rx)
            .await
            .context("authenticated")?;
    }
    // The server may close before a large message is all sent; how it ended is what counts.
    let _ = peer.tx.send(message).await;
    Ok(ending(&mut peer.rx, MAX_FRAMES, LIMIT).await)
}

/// Sends `bytes` on a bare TCP connection and returns the status of the HTTP answer (`408`, `400`), or
/// `eof` when the server closed without one.
async fn raw(target: &Target, bytes: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(target.addr).await?;
    stream.write_all(bytes).await?;
    let answer = read_to_end(&mut stream).await;
    Ok(status(&answer).map_or_else(|| "eof".to_string(), |s| s.to_string()))
}

/// A WebSocket upgrade done by hand, then `frame` as it is: returns the close code the server sends.
async fn upgraded_then(target: &Target, frame: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(target.addr).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.addr
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // The 101 head, byte by byte so that nothing of the frames behind it is taken.
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        if stream.read(&mut byte).await? == 0 {
            return Ok("eof-before-101".to_string());
        }
        head.push(byte[0]);
    }
    if status(&head) != Some(101) {
        return Ok(format!("upgrade-refused-{:?}", status(&head)));
    }
    stream.write_all(frame).await?;
    let answer = read_to_end(&mut stream).await;
    Ok(close_code(&answer).map_or_else(|| "eof".to_string(), |c| c.to_string()))
}

/// Everything the server sends until it closes, at most 64 KiB.
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    out
}

/// The status of `HTTP/1.1 NNN ...`.
fn status(answer: &[u8]) -> Option<u16> {
    let line = answer.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(line.get(..3)?).ok()?.parse().ok()
}

/// The code of a server's (unmasked, short) close frame at the start of `frames`.
fn close_code(frames: &[u8]) -> Option<u16> {
    match frames {
        [0x88, len, hi, lo, ..] if *len >= 2 && *len < 126 => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_statuses_and_close_codes() {
        assert_eq!(status(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
        assert_eq!(status(b"HTTP/1.1 4"), None);
        assert_eq!(status(b""), None);
        assert_eq!(close_code(b"\x88\x10\x03\xeaprotocol error"), Some(1002));
        assert_eq!(close_code(b"\x88\x00"), None);
        assert_eq!(close_code(b"\x81\x02hi"), None);
    }
}
