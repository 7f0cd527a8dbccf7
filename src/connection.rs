//! One connection's I/O: the HTTP request, then the WebSocket loop that carries out the peer
//! handler's commands. This is the only code that touches the socket (ranch's connection
//! process, in the book's stack).
use crate::hooks::{AuthData, TerminateReason};
use crate::http::{self, Route};
use crate::mailbox::{Inbox, PeerMsg};
use crate::named_peer::NamedPeer;
use crate::peer::{BookPeer, Command, Handler};
use crate::registry::PeerId;
use crate::rooms_protocol::{self, RoomMessage};
use crate::rooms_sup::NamedJoinError;
use crate::rtcserver_app::Shared;
use crate::socket::Socket;
use crate::tls::Stream;
use crate::trusted_proxies::ClientAddr;
use async_net::TcpStream;
use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, Stream as _};
use futures_util::SinkExt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

type Ws = WebSocketStream<Stream>;

/// Relayed frames written before one flush: batching without holding frames back.
const MAX_BATCH: usize = 64;

/// The whole life of an accepted connection; `tls` when it came to the TLS port.
///
/// Two phases, each in a box of its own: the handshake (TLS, HTTP, authentication, the join),
/// then the WebSocket's life. An idle connection then holds only the second, and a book peer
/// does not pay for the named-rooms handshake (a future is as big as its largest state).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
    tls: bool,
    inbox: Inbox,
) {
    let session = Box::pin(open(shared, tcp, addr, tls, inbox)).await;
    match session {
        Some(Session::Book(s)) => Box::pin(s.live()).await,
        Some(Session::Named(s)) => Box::pin(s.live()).await,
        None => {}
    }
}

/// A WebSocket past its handshake, with its peer's handler.
enum Session {
    Book(BookSession),
    Named(NamedSession),
}

struct BookSession {
    shared: Arc<Shared>,
    ws: Ws,
    handler: BookPeer,
    inbox: Inbox,
    client: String,
}

impl BookSession {
    fn live(self) -> impl Future<Output = ()> {
        let BookSession {
            shared,
            ws,
            handler,
            inbox,
            client,
        } = self;
        let id = inbox.owner().id();
        run(ws, handler, inbox, move |end, _| {
            log_end(id, &client, end);
            shared.bad_input(end);
        })
    }
}

struct NamedSession {
    shared: Arc<Shared>,
    ws: Ws,
    handler: NamedPeer,
    inbox: Inbox,
    client: String,
}

impl NamedSession {
    fn live(self) -> impl Future<Output = ()> {
        let NamedSession {
            shared,
            ws,
            handler,
            inbox,
            client,
        } = self;
        let id = inbox.owner().id();
        run(ws, handler, inbox, move |end, handler| {
            ended_named(&shared, id, &client, handler.auth(), end);
        })
    }
}

/// Logs, counts and tells the peer hooks how a named peer's connection ended.
fn ended_named(shared: &Shared, id: PeerId, client: &str, auth: &AuthData, end: &End) {
    log_end(id, client, end);
    shared.bad_input(end);
    let reason = match end {
        End::Closed => TerminateReason::Closed,
        End::Server(code, why) => TerminateReason::Server(u16::from(*code), why.clone()),
    };
    shared.peer_hooks.on_terminate(auth, &reason);
}

/// The handshake phase: everything before the WebSocket's life, or the whole of a plain HTTP
/// request.
async fn open(
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
    tls: bool,
    inbox: Inbox,
) -> Option<Session> {
    let id = inbox.owner().id();
    let tcp = Socket::from(tcp);
    let mut stream = match (tls, &shared.tls) {
        (false, _) => Stream::Plain(tcp),
        (true, Some(acceptor)) => {
            // The TLS handshake counts against the handshake timeout, as the request does.
            let handshake = async { Some(acceptor.accept(tcp).await) };
            let timeout = async {
                crate::deadline::after(shared.config.handshake_timeout).await;
                None
            };
            match futures_lite::future::or(handshake, timeout).await {
                Some(Ok(tls)) => Stream::Tls(Box::new(tls)),
                Some(Err(e)) => {
                    log::warn!("{addr}: TLS handshake failed: {e}");
                    return None;
                }
                None => {
                    log::warn!("{addr}: no TLS handshake within the handshake timeout");
                    return None;
                }
            }
        }
        (true, None) => return None,
    };
    let request = match http::read_request(&mut stream, shared.config.handshake_timeout).await {
        Ok(request) => request,
        Err(http::ReadError::Closed) | Err(http::ReadError::Io(_)) => return None,
        Err(e) => {
            log::warn!("{addr}: {e}");
            if !matches!(e, http::ReadError::Timeout) {
                let _ =
                    http::respond(&mut stream, 400, "text/plain", b"bad request\n", false).await;
            }
            return None;
        }
    };
    let from = shared
        .config
        .trusted_proxies
        .client(addr, request.header_values("x-forwarded-for"));
    // Logs name the socket's peer too; `/tree` and events get only a parsed address.
    let client = from.to_string();
    match http::route(&request) {
        Route::Reject(status, why) => {
            log::warn!(
                "{client}: HTTP {status} for {} {:?}: {why}",
                request.method,
                http::Shown(&request.path)
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
            let head_only = request.method == "HEAD";
            let _ = serve_file(&shared, &mut stream, &rel, head_only).await;
        }
        Route::RoomPage(name) => {
            let head_only = request.method == "HEAD";
            // With accounts, which rooms exist is for those who authenticate: the page is the
            // same for every name, and the socket answers 401 before it would answer 404.
            let page = !shared.config.accounts.is_open() || shared.rooms.named_room_exists(&name);
            let _ = if page {
                serve_file(&shared, &mut stream, "room.html", head_only).await
            } else {
                http::respond(&mut stream, 404, "text/plain", b"no such room\n", head_only).await
            };
        }
        Route::BookSocket => {
            let ws = upgrade(&shared, stream, request).await?;
            shared.connected(id, &from.public());
            log::info!("peer {id} connected from {client}");
            let handler = BookPeer::new(
                inbox.owner().clone(),
                Arc::clone(&shared.registry),
                Arc::clone(&shared.rooms),
                Arc::clone(&shared.events),
            )
            .with_chaos(shared.chaos.clone());
            return Some(Session::Book(BookSession {
                shared,
                ws,
                handler,
                inbox,
                client,
            }));
        }
        Route::RoomSocket(name) => {
            return serve_named(shared, stream, request, name, from, inbox).await;
        }
    }
    None
}

async fn serve_file(
    shared: &Shared,
    stream: &mut Stream,
    rel: &str,
    head_only: bool,
) -> std::io::Result<()> {
    match std::fs::read(shared.config.static_dir.join(rel)) {
        Ok(body) => http::respond(stream, 200, http::content_type(rel), &body, head_only).await,
        Err(_) => http::respond(stream, 404, "text/plain", b"not found\n", head_only).await,
    }
}

/// Answers 101 and makes the WebSocket; `None` if the client is gone.
async fn upgrade(shared: &Shared, mut stream: Stream, request: http::Request) -> Option<Ws> {
    let key = request.ws_key.as_deref().unwrap_or_default();
    futures_lite::AsyncWriteExt::write_all(&mut stream, http::switching_protocols(key).as_bytes())
        .await
        .ok()?;
    Some(
        WebSocketStream::from_partially_read(
            stream,
            request.rest,
            Role::Server,
            Some(shared.ws_config),
        )
        .await,
    )
}

/// `/socket/<room>`: the peer hooks parse and authenticate the request before the upgrade
/// (400 / 401, no socket), then the room decides on the join (`error` and close 4000 if no).
async fn serve_named(
    shared: Arc<Shared>,
    mut stream: Stream,
    request: http::Request,
    name: String,
    from: ClientAddr,
    inbox: Inbox,
) -> Option<Session> {
    let client = from.to_string();
    let client = client.as_str();
    let id = inbox.owner().id();
    let hooks = Arc::clone(&shared.peer_hooks);
    let parsed = match hooks.parse_request(&request, &name) {
        Ok(parsed) if http::valid_room_name(&parsed.room) => parsed,
        Ok(parsed) => {
            let why = format!("bad room name {:?}", parsed.room);
            refuse(&mut stream, &request, client, 400, why).await;
            return None;
        }
        Err(refusal) => {
            refuse(&mut stream, &request, client, 400, refusal.0).await;
            return None;
        }
    };
    let mut auth = AuthData {
        peer_id: id,
        room: parsed.room,
        credentials: parsed.credentials,
        metadata: parsed.metadata,
    };
    if let Err(refusal) = hooks.on_init(&mut auth, &shared.config.accounts) {
        let who = auth.credentials.username().unwrap_or("-");
        let why = format!("not authenticated (user {who:?}): {refusal}");
        refuse(&mut stream, &request, client, 401, why).await;
        return None;
    }
    if !shared.rooms.named_room_exists(&auth.room) {
        let why = format!("no room {:?}", auth.room);
        refuse(&mut stream, &request, client, 404, why).await;
        return None;
    }
    let mut ws = upgrade(&shared, stream, request).await?;
    shared.connected(id, &from.public());
    log::info!("peer {id} connected from {client} to room {}", auth.room);
    let end = match shared
        .rooms
        .join_named(&auth.room, inbox.owner(), &auth)
        .await
    {
        Ok((room, members)) => {
            let handler = NamedPeer::new(
                inbox.owner().clone(),
                auth.clone(),
                Arc::clone(&room),
                Arc::clone(&shared.registry),
                Arc::clone(&hooks),
                Arc::clone(shared.rooms.named_hooks()),
            )
            .with_chaos(shared.chaos.clone());
            let welcome = RoomMessage::authenticated(id, &room.name, &members);
            let welcomed = match handler.outgoing(welcome) {
                Some(Command::Send(frame)) => ws.send(frame).await.is_ok(),
                _ => true,
            };
            if welcomed {
                return Some(Session::Named(NamedSession {
                    shared: Arc::clone(&shared),
                    ws,
                    handler,
                    inbox,
                    client: client.to_owned(),
                }));
            }
            End::Closed
        }
        Err(NamedJoinError::Refused(refusal)) => {
            let error = RoomMessage::error(&refusal.0).to_text();
            let code = CloseCode::from(rooms_protocol::JOIN_REFUSED_CLOSE);
            if ws.send(Message::text(error)).await.is_ok() {
                close(&mut ws, code, &refusal.0).await;
            }
            End::Server(code, refusal.0)
        }
        Err(NamedJoinError::NoSuchRoom) => {
            close(&mut ws, CloseCode::Away, "room is gone").await;
            End::Server(CloseCode::Away, "room is gone".into())
        }
        Err(NamedJoinError::ShuttingDown) => {
            close(&mut ws, CloseCode::Away, "server shutting down").await;
            End::Server(CloseCode::Away, "server shutting down".into())
        }
    };
    ended_named(&shared, id, client, &auth, &end);
    None
}

/// An HTTP error instead of the upgrade, logged once.
async fn refuse(
    stream: &mut Stream,
    request: &http::Request,
    client: &str,
    status: u16,
    why: String,
) {
    log::warn!(
        "{client}: HTTP {status} for {:?}: {why}",
        http::Shown(&request.path)
    );
    let body = format!("{why}\n");
    let _ = http::respond(stream, status, "text/plain", body.as_bytes(), false).await;
}

fn log_end(id: PeerId, client: &str, end: &End) {
    match end {
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

/// A WebSocket's life: the loop, then `finish` with how it ended. Everything the connection
/// holds is this function's own (the loop borrows it), so it is stored once in the future.
async fn run<H: Handler>(
    mut ws: Ws,
    mut handler: H,
    mut inbox: Inbox,
    finish: impl FnOnce(&End, &H),
) {
    let end = run_loop(&mut ws, &mut handler, &mut inbox).await;
    finish(&end, &handler);
}

async fn run_loop(ws: &mut Ws, handler: &mut impl Handler, inbox: &mut Inbox) -> End {
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
            if let Poll::Ready(f) = Pin::new(&mut *ws).poll_next(cx) {
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
                let command = guarded(ws, || handler.handle_info(msg)).await;
                if let Some(Command::Send(frame)) = command {
                    // Take whatever else is already queued, then flush once.
                    if let Err(end) = feed_batch(ws, handler, inbox, frame).await {
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
                    Err(panic) => crashed(ws, panic).await,
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
            Input::Frame(Some(Ok(Message::Close(_)))) => {
                // tungstenite queued the close reply: send it before anything else can be
                // written (a `left` arriving now would fail on the closing socket, and the
                // client would never see its close answered).
                let _ = ws.flush().await;
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
                    close(ws, CloseCode::Protocol, "protocol error").await;
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
                close(ws, code, why).await;
                return End::Server(code, why.to_owned());
            }
        }
    }
}

/// Feeds `first` and every relay already waiting (bounded), then flushes.
async fn feed_batch(
    ws: &mut Ws,
    handler: &mut impl Handler,
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
            crate::deadline::after(Duration::from_secs(1)).await;
        })
        .await;
}
