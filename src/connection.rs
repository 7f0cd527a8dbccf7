//! One connection's I/O: the HTTP request, then the WebSocket loop that carries out the peer
//! handler's commands. This is the only code that touches the socket (ranch's connection
//! process, in the book's stack).
use crate::http::{self, Route};
use crate::mailbox::{Inbox, PeerMsg};
use crate::peer::{BookPeer, Command};
use crate::rtcserver_app::Shared;
use async_net::TcpStream;
use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, Stream};
use futures_util::SinkExt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

type Ws = WebSocketStream<TcpStream>;

/// Relayed frames written before one flush: batching without holding frames back.
const MAX_BATCH: usize = 64;

/// The whole life of an accepted connection.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    addr: SocketAddr,
    inbox: Inbox,
) {
    let id = inbox.owner().id();
    let request = match http::read_request(&mut stream, shared.config.handshake_timeout).await {
        Ok(request) => request,
        Err(http::ReadError::Closed) | Err(http::ReadError::Io(_)) => return,
        Err(e) => {
            log::warn!("{addr}: {e}");
            if !matches!(e, http::ReadError::Timeout) {
                let _ =
                    http::respond(&mut stream, 400, "text/plain", b"bad request\n", false).await;
            }
            return;
        }
    };
    let client = request
        .forwarded_for
        .clone()
        .unwrap_or_else(|| addr.to_string());
    match http::route(&request) {
        Route::Reject(status, why) => {
            log::warn!(
                "{client}: HTTP {status} for {} {}: {why}",
                request.method,
                request.path
            );
            let _ = http::respond(
                &mut stream,
                status,
                "text/plain",
                format!("{why}\n").as_bytes(),
                false,
            )
            .await;
        }
        Route::Static(rel) => {
            let path = shared.config.static_dir.join(&rel);
            let head_only = request.method == "HEAD";
            let _ = match std::fs::read(&path) {
                Ok(body) => {
                    http::respond(&mut stream, 200, http::content_type(&rel), &body, head_only)
                        .await
                }
                Err(_) => {
                    http::respond(&mut stream, 404, "text/plain", b"not found\n", head_only).await
                }
            };
        }
        Route::BookSocket => {
            let key = request.ws_key.as_deref().unwrap_or_default();
            if futures_lite::AsyncWriteExt::write_all(
                &mut stream,
                http::switching_protocols(key).as_bytes(),
            )
            .await
            .is_err()
            {
                return;
            }
            let ws = WebSocketStream::from_partially_read(
                stream,
                request.rest,
                Role::Server,
                Some(shared.ws_config),
            )
            .await;
            shared.connected(id, &client);
            log::info!("peer {id} connected from {client}");
            let handler = BookPeer::new(
                inbox.owner().clone(),
                Arc::clone(&shared.registry),
                Arc::clone(&shared.rooms),
                Arc::clone(&shared.events),
            )
            .with_chaos(shared.chaos.clone());
            let end = run(ws, handler, inbox).await;
            match &end {
                End::Closed => log::info!("peer {id} ({client}) disconnected"),
                End::Server(code, why) if is_bad_input(*code) => {
                    log::warn!(
                        "peer {id} ({client}) closed with {}: {why}",
                        u16::from(*code)
                    )
                }
                End::Server(code, why) => {
                    log::info!(
                        "peer {id} ({client}) closed with {}: {why}",
                        u16::from(*code)
                    )
                }
            }
            shared.bad_input(&end);
        }
    }
}

/// How a WebSocket ended.
#[derive(Debug)]
pub(crate) enum End {
    /// By the client, or the network.
    Closed,
    /// By us, with this close code.
    Server(CloseCode, String),
}

fn is_bad_input(code: CloseCode) -> bool {
    matches!(
        code,
        CloseCode::Invalid | CloseCode::Size | CloseCode::Protocol | CloseCode::Policy
    )
}

enum Input {
    Info(Option<PeerMsg>),
    Frame(Option<Result<Message, WsError>>),
}

async fn run(mut ws: Ws, mut handler: BookPeer, mut inbox: Inbox) -> End {
    // Alternate which side is polled first so that neither a busy socket nor a busy mailbox
    // starves the other.
    let mut inbox_first = false;
    loop {
        inbox_first = !inbox_first;
        let input = futures_lite::future::poll_fn(|cx| {
            let mut rx = inbox.receiver();
            let mut poll_inbox = |cx: &mut std::task::Context<'_>| match rx.as_mut().poll_next(cx) {
                Poll::Ready(m) => Poll::Ready(Input::Info(m)),
                Poll::Pending => Poll::Pending,
            };
            if inbox_first {
                if let Poll::Ready(i) = poll_inbox(cx) {
                    return Poll::Ready(i);
                }
            }
            if let Poll::Ready(f) = Pin::new(&mut ws).poll_next(cx) {
                return Poll::Ready(Input::Frame(f));
            }
            if !inbox_first {
                if let Poll::Ready(i) = poll_inbox(cx) {
                    return Poll::Ready(i);
                }
            }
            Poll::Pending
        })
        .await;
        let command = match input {
            Input::Info(None) => return End::Closed,
            Input::Info(Some(msg)) => {
                inbox.taken(&msg);
                let command = guarded(&mut ws, || handler.handle_info(msg)).await;
                if let Some(Command::Send(frame)) = command {
                    // Take whatever else is already queued, then flush once.
                    if let Err(end) = feed_batch(&mut ws, &mut handler, &mut inbox, frame).await {
                        return end;
                    }
                    continue;
                }
                command
            }
            Input::Frame(None) => return End::Closed,
            Input::Frame(Some(Ok(frame @ Message::Text(_)))) => {
                match AssertUnwindSafe(handler.handle_text(frame))
                    .catch_unwind()
                    .await
                {
                    Ok(command) => command,
                    Err(panic) => crashed(&mut ws, panic).await,
                }
            }
            Input::Frame(Some(Ok(Message::Binary(_)))) => {
                log::debug!("binary frame ignored");
                None
            }
            Input::Frame(Some(Ok(Message::Ping(_)))) => {
                // tungstenite queued the pong; send it now rather than with the next message.
                if ws.flush().await.is_err() {
                    return End::Closed;
                }
                None
            }
            Input::Frame(Some(Ok(_))) => None,
            Input::Frame(Some(Err(e))) => match e {
                WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                    Some(Command::Close(CloseCode::Size, "message too big"))
                }
                WsError::Utf8(_) => Some(Command::Close(CloseCode::Invalid, "invalid UTF-8")),
                WsError::Protocol(p) => {
                    let reason = p.to_string();
                    close(&mut ws, CloseCode::Protocol, "protocol error").await;
                    return End::Server(CloseCode::Protocol, reason);
                }
                _ => return End::Closed,
            },
        };
        match command {
            None => {}
            Some(Command::Send(frame)) => {
                let sent = ws.send(frame).await;
                if sent.is_err() {
                    return End::Closed;
                }
            }
            Some(Command::Close(code, why)) => {
                close(&mut ws, code, why).await;
                return End::Server(code, why.to_owned());
            }
        }
    }
}

/// Feeds `first` and every relay already waiting (bounded), then flushes.
async fn feed_batch(
    ws: &mut Ws,
    handler: &mut BookPeer,
    inbox: &mut Inbox,
    first: Message,
) -> Result<(), End> {
    if ws.feed(first).await.is_err() {
        return Err(End::Closed);
    }
    for _ in 1..MAX_BATCH {
        let Ok(msg) = inbox.receiver().try_recv() else {
            break;
        };
        inbox.taken(&msg);
        match guarded(ws, || handler.handle_info(msg)).await {
            Some(Command::Send(frame)) => {
                let fed = ws.feed(frame).await;
                if fed.is_err() {
                    return Err(End::Closed);
                }
            }
            Some(Command::Close(code, why)) => {
                close(ws, code, why).await;
                return Err(End::Server(code, why.to_owned()));
            }
            None => {}
        }
    }
    ws.flush().await.map_err(|_| End::Closed)
}

/// Runs a synchronous handler callback; a panic in it is a crash of the peer.
async fn guarded(ws: &mut Ws, f: impl FnOnce() -> Option<Command>) -> Option<Command> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(command) => command,
        Err(panic) => crashed(ws, panic).await,
    }
}

/// As cowboy does for a crashed handler: close with 1011, then let the crash go on to the
/// supervisor (which logs it, counts it, and cleans the registry).
async fn crashed(ws: &mut Ws, panic: Box<dyn std::any::Any + Send>) -> ! {
    close(ws, CloseCode::Error, "internal error").await;
    std::panic::resume_unwind(panic)
}

/// Sends a close frame and waits (bounded) for the client's, so that the frame is not lost to a
/// reset of a socket closed with unread data.
async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let handshake = async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = futures_lite::StreamExt::next(ws).await {}
    };
    handshake
        .or(async {
            async_io::Timer::after(Duration::from_secs(1)).await;
        })
        .await;
}
