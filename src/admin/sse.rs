//! `GET /events`: the server's events as Server-Sent Events, one `data: {json}` per event.
//!
//! The subscription is bounded: a client that falls [`BACKLOG`] events behind is dropped (its
//! stream ends with a comment saying so; an `EventSource` reconnects by itself) rather than
//! making the server buffer for it without bound. A write that stalls for 10 s ends the stream
//! too.
use super::view;
use crate::events::Event;
use crate::rtcserver_app::ServerHandle;
use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use std::time::Duration;

/// Undelivered events one subscriber may have before it is dropped.
pub const BACKLOG: usize = 4096;
/// Events written before one flush.
const BATCH: usize = 64;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

enum Next {
    Event(Result<Event, async_channel::RecvError>),
    KeepAlive,
    ClientGone,
    ServerStopped,
}

async fn write_bounded(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    async { stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok() }
        .or(async {
            async_io::Timer::after(WRITE_TIMEOUT).await;
            false
        })
        .await
}

fn frame(out: &mut String, event: &Event) {
    out.push_str("data: ");
    out.push_str(&view::event(event).to_string());
    out.push_str("\n\n");
}

pub async fn stream(handle: &ServerHandle, mut stream: TcpStream) {
    // Subscribed before the head is sent: a client that has read the head misses nothing.
    let events = handle.shared.events.subscribe_bounded(BACKLOG);
    // The binary waits (bounded) for this stream's `stopped` before it exits.
    let _writing = handle.shared.events.stream_opened();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n: subscribed\n\n";
    if !write_bounded(&mut stream, head.as_bytes()).await {
        return;
    }
    let mut reader = stream.clone();
    let mut scratch = [0u8; 256];
    loop {
        let next = async { Next::Event(events.recv().await) }
            .or(async {
                // A client sends nothing after its request; a read that ends means it left.
                loop {
                    match reader.read(&mut scratch).await {
                        Ok(0) | Err(_) => return Next::ClientGone,
                        Ok(_) => {}
                    }
                }
            })
            .or(async {
                async_io::Timer::after(KEEP_ALIVE).await;
                Next::KeepAlive
            })
            .or(async {
                handle.shared.until_torn_down().await;
                Next::ServerStopped
            })
            .await;
        let mut out = String::new();
        match next {
            Next::Event(Ok(event)) => {
                frame(&mut out, &event);
                for _ in 1..BATCH {
                    let Ok(event) = events.try_recv() else {
                        break;
                    };
                    frame(&mut out, &event);
                }
            }
            Next::Event(Err(_)) => {
                let _ = write_bounded(
                    &mut stream,
                    format!(": dropped: more than {BACKLOG} events behind\n\n").as_bytes(),
                )
                .await;
                return;
            }
            Next::KeepAlive => out.push_str(": keep-alive\n\n"),
            Next::ClientGone => return,
            Next::ServerStopped => {
                out.push_str("data: {\"type\":\"stopped\"}\n\n");
                let _ = write_bounded(&mut stream, out.as_bytes()).await;
                return;
            }
        }
        if !write_bounded(&mut stream, out.as_bytes()).await {
            return;
        }
    }
}
