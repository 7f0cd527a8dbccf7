//! One connection's I/O: the HTTP request, then the WebSocket loop that carries out the peer
//! handler's commands. This is the only code that touches the socket (ranch's connection
//! process, in the book's stack).
use crate::budget::{self, OverTooLong, Throttle};
use crate::hooks::{AuthData, TerminateReason};
use crate::http::{self, Route};
use crate::mailbox::{Control, Delivered, Inbox, PeerMsg};
use crate::named_peer::NamedPeer;
use crate::origins::Verdict;
use crate::peer::{BookPeer, Command, Handler};
use crate::per_ip::{IpSlot, OverLimit};
use crate::registry::PeerId;
use crate::resume::wire as resume_wire;
use crate::rooms_protocol::{self, RoomMessage};
use crate::rooms_sup::NamedJoinError;
use crate::rtcserver_app::Shared;
use crate::socket::Socket;
use crate::tls::Stream;
use crate::trusted_proxies::ClientAddr;
use crate::websocket::WebSocket;
use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use futures_lite::{FutureExt, Stream as _};
use futures_util::SinkExt;
use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use supervisors::StopReason;

mod client_close;
mod faulted;
mod heartbeat;
mod resume;

type Ws = WebSocket<Stream>;

/// Relayed frames written before one flush: batching without holding frames back.
const MAX_BATCH: usize = 64;

/// The whole life of an accepted connection; `tls` when it came to the TLS port.
///
/// Two phases, each in a box of its own: the handshake (TLS, HTTP, authentication, the join),
/// then the WebSocket's life. An idle connection then holds only the second, and a book peer
/// does not pay for the named-rooms handshake (a future is as big as its largest state).
///
/// Not an `async fn`, and its arguments in one box: an `async fn` keeps its arguments (the
/// socket, 120 bytes) and the handshake's result (the session, 630 bytes) in every state, the
/// idle one included; here the idle state holds the live phase's box and the `slot`.
pub(crate) fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
    tls: bool,
    inbox: Inbox,
) -> impl Future<Output = ()> {
    let accepted = Box::new((shared, tcp, addr, tls, inbox));
    async move {
        // The client's place under --max-connections-per-ip, held until the connection ends.
        let mut slot = None;
        let live = live_phase(accepted, &mut slot).await;
        if let Some(live) = live {
            live.await;
        }
        drop(slot);
    }
}

type Accepted = Box<(Arc<Shared>, TcpStream, SocketAddr, bool, Inbox)>;

/// The handshake, then the WebSocket's life in a box, ready to run.
async fn live_phase(
    accepted: Accepted,
    slot: &mut Option<IpSlot>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let (shared, tcp, addr, tls, inbox) = *accepted;
    match Box::pin(open(shared, tcp, addr, tls, inbox, slot)).await? {
        Session::Book(s) => Some(boxed_live(s.live())),
        Session::Named(s) => Some(boxed_live(s.live())),
    }
}

/// The most a connection's live phase may take in its box: every connection, idle or not, holds
/// it for its whole life. A buffer kept in one of its states is paid by every connection (a 16 KiB
/// array in `drain` once made it 53 KiB, and an idle connection 62 KiB instead of 9); it is now
/// 1.7 KiB (book) and 1.9 KiB (rooms), the rare paths (close, crash, control orders) boxed apart.
/// Every test that opens a connection in a debug build checks it.
const MAX_LIVE_FUTURE: usize = 3 * 1024;

fn boxed_live<F: Future<Output = ()> + Send + 'static>(
    live: F,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    debug_assert!(
        std::mem::size_of::<F>() <= MAX_LIVE_FUTURE,
        "a connection's live future takes {} bytes, over {MAX_LIVE_FUTURE}",
        std::mem::size_of::<F>()
    );
    Box::pin(live)
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
        let pace = Pace::of(&shared);
        run(ws, handler, inbox, pace, move |end, _, _| {
            log_end(id, &client, &end);
            shared.bad_input(&end);
        })
    }
}

struct NamedSession {
    shared: Arc<Shared>,
    ws: Ws,
    handler: NamedPeer,
    inbox: Inbox,
    client: String,
    /// The id of the peer process serving this session: not the peer's own after a resume.
    process: PeerId,
}

impl NamedSession {
    fn live(self) -> impl Future<Output = ()> {
        let NamedSession {
            shared,
            ws,
            handler,
            inbox,
            client,
            process,
        } = self;
        let id = inbox.owner().id();
        let pace = if handler.is_resumable() {
            Pace::resumable(&shared)
        } else {
            Pace::of(&shared)
        };
        run(ws, handler, inbox, pace, move |end, handler, inbox| {
            if handler.is_resumable() {
                resume::ended(&shared, process, &client, end, handler, inbox);
            } else {
                ended_named(&shared, id, &client, handler.auth(), &end);
            }
        })
    }
}

/// Logs, counts and tells the peer hooks how a named peer's connection ended.
fn ended_named(shared: &Shared, id: PeerId, client: &str, auth: &AuthData, end: &End) {
    log_end(id, client, end);
    shared.bad_input(end);
    shared.peer_hooks.on_terminate(auth, &terminate_reason(end));
}

/// How the peer hooks' `on_terminate` hears of an end.
fn terminate_reason(end: &End) -> TerminateReason {
    match end {
        End::Closed | End::ClientClose(_) => TerminateReason::Closed,
        End::Server(code, why) | End::Injected(code, why) => {
            TerminateReason::Server(u16::from(*code), why.clone())
        }
        End::Silent(why) => TerminateReason::Server(1001, why.clone()),
        End::Replaced => TerminateReason::Server(resume_wire::REPLACED_CLOSE, "replaced".into()),
    }
}

/// The handshake phase: everything before the WebSocket's life, or the whole of a plain HTTP
/// request.
async fn open(
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
    tls: bool,
    inbox: Inbox,
    slot: &mut Option<IpSlot>,
) -> Option<Session> {
    let id = inbox.owner().id();
    let tcp = match Socket::new(tcp) {
        Ok(tcp) => tcp,
        Err(e) => {
            log::warn!("{addr}: cannot watch the socket: {e}");
            return None;
        }
    };
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
            // A silent connection is just closed; half a request is told why, as cowboy does.
            let (status, reason, body): (_, _, &[u8]) = match e {
                http::ReadError::Timeout { partial: false } => (None, "handshake_timeout", b""),
                http::ReadError::Timeout { partial: true } => {
                    (Some(408), "request_timeout", b"request timeout\n")
                }
                _ => (Some(400), "bad_request", b"bad request\n"),
            };
            shared.metrics.http_rejected(status, reason);
            if let Some(status) = status {
                let _ = http::respond(&mut stream, status, "text/plain", body, false).await;
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
    // A one-shot answer is given up on a control order: a client that never reads a large
    // file must not keep its peer process past a stop or a crash.
    let route = http::route(&request);
    if matches!(route, Route::BookSocket | Route::RoomSocket(_)) {
        // Before any hook or room sees the request: a page of another site gets nothing.
        let origin = request.header("origin");
        let why_kind = shared.config.allowed_origins.check(origin);
        let why = match why_kind {
            Verdict::Allowed => None,
            Verdict::NotListed => Some("origin not allowed"),
            Verdict::Malformed => Some("malformed Origin header"),
        };
        if why.is_none() {
            // WebSockets only: a browser loads a page's files over several short connections.
            let ip = from.forwarded.unwrap_or(from.socket.ip());
            match shared.per_ip.acquire(ip) {
                Ok(taken) => *slot = taken,
                Err(OverLimit(limit)) => {
                    let why = format!("too many connections from {ip} (at most {limit})");
                    let rejection = (429, "too_many_connections");
                    refuse(&shared, &mut stream, &request, &client, rejection, why).await;
                    return None;
                }
            }
        }
        if let Some(why) = why {
            let why = format!("{why}: {:?}", http::Shown(origin.unwrap_or_default()));
            let reason = match why_kind {
                Verdict::Malformed => "malformed_origin",
                _ => "origin_not_allowed",
            };
            refuse(&shared, &mut stream, &request, &client, (403, reason), why).await;
            return None;
        }
    }
    let answer = match route {
        Route::Reject(status, why) => {
            shared
                .metrics
                .http_rejected(Some(status), http::rejection_reason(status));
            log::warn!(
                "{client}: HTTP {status} for {} {:?}: {why}",
                request.method,
                http::Shown(&request.path)
            );
            let body = format!("{why}\n");
            let write = http::respond(&mut stream, status, "text/plain", body.as_bytes(), false);
            interruptible(&inbox, write).await
        }
        Route::Static(rel) => {
            let head_only = request.method == "HEAD";
            interruptible(&inbox, serve_file(&shared, &mut stream, &rel, head_only)).await
        }
        Route::RoomPage(name) => {
            let head_only = request.method == "HEAD";
            // With accounts, which rooms exist is for those who authenticate: the page is the
            // same for every name, and the socket answers 401 before it would answer 404.
            let page = !shared.config.accounts.is_open() || shared.rooms.named_room_exists(&name);
            let write = async {
                if page {
                    serve_file(&shared, &mut stream, "room.html", head_only).await
                } else {
                    shared.metrics.http_rejected(Some(404), "no_such_room");
                    let body = b"no such room\n";
                    http::respond(&mut stream, 404, "text/plain", body, head_only).await
                }
            };
            interruptible(&inbox, write).await
        }
        Route::BookSocket | Route::RoomSocket(_)
            if !client_faults(&shared, &mut stream, &request, id).await =>
        {
            return None;
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
            .with_chaos(shared.chaos.clone())
            .with_faults(shared.faults.clone());
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
    };
    if let Written::Interrupted(control) = answer {
        stream.abort();
        if control == Control::Crash {
            panic!("injected crash of peer {id}");
        }
    }
    None
}

/// Sets the preset a WebSocket URL's `?faults=` asks for on this peer; false when it was
/// refused (400 with a JSON body naming the reason, before the upgrade).
async fn client_faults(
    shared: &Shared,
    stream: &mut Stream,
    request: &http::Request,
    id: PeerId,
) -> bool {
    let Err(e) = shared
        .faults
        .for_client(shared.config.client_faults, &request.query, id)
    else {
        return true;
    };
    log::warn!("HTTP 400 for {:?}: {e}", http::Shown(&request.path));
    let body = serde_json::json!({ "error": e.to_string(), "status": 400, "field": "faults" });
    let body = body.to_string();
    let _ = http::respond(stream, 400, "application/json", body.as_bytes(), false).await;
    false
}

async fn serve_file(
    shared: &Shared,
    stream: &mut Stream,
    rel: &str,
    head_only: bool,
) -> std::io::Result<()> {
    match std::fs::read(shared.config.static_dir.join(rel)) {
        Ok(body) => http::respond(stream, 200, http::content_type(rel), &body, head_only).await,
        Err(_) => {
            shared.metrics.http_rejected(Some(404), "not_found");
            http::respond(stream, 404, "text/plain", b"not found\n", head_only).await
        }
    }
}

/// Answers 101 and makes the WebSocket; `None` if the client is gone.
async fn upgrade(shared: &Shared, mut stream: Stream, request: http::Request) -> Option<Ws> {
    let key = request.ws_key.as_deref().unwrap_or_default();
    futures_lite::AsyncWriteExt::write_all(&mut stream, http::switching_protocols(key).as_bytes())
        .await
        .ok()?;
    Some(WebSocket::new(
        stream,
        request.rest,
        shared.config.max_message_bytes,
    ))
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
    let parse = std::panic::catch_unwind(AssertUnwindSafe(|| hooks.parse_request(&request, &name)));
    let parse = match parse {
        Ok(parse) => parse,
        Err(panic) => {
            hook_panicked(
                &shared,
                &mut stream,
                &request,
                client,
                "parse_request",
                panic,
            )
            .await
        }
    };
    let parsed = match parse {
        Ok(parsed) if http::valid_room_name(&parsed.room) => parsed,
        Ok(parsed) => {
            let why = format!("bad room name {:?}", parsed.room);
            refuse(
                &shared,
                &mut stream,
                &request,
                client,
                (400, "bad_room_name"),
                why,
            )
            .await;
            return None;
        }
        Err(refusal) => {
            let rejection = (400, "refused_by_hook");
            refuse(&shared, &mut stream, &request, client, rejection, refusal.0).await;
            return None;
        }
    };
    let mut auth = AuthData {
        peer_id: id,
        room: parsed.room,
        credentials: parsed.credentials,
        metadata: parsed.metadata,
    };
    let init = std::panic::catch_unwind(AssertUnwindSafe(|| {
        hooks.on_init(&mut auth, &shared.config.accounts)
    }));
    let init = match init {
        Ok(init) => init,
        Err(panic) => hook_panicked(&shared, &mut stream, &request, client, "on_init", panic).await,
    };
    if let Err(refusal) = init {
        let who = auth.credentials.username().unwrap_or("-");
        let why = format!("not authenticated (user {who:?}): {refusal}");
        refuse(
            &shared,
            &mut stream,
            &request,
            client,
            (401, "unauthorized"),
            why,
        )
        .await;
        return None;
    }
    if !shared.rooms.named_room_exists(&auth.room) {
        let why = format!("no room {:?}", auth.room);
        refuse(
            &shared,
            &mut stream,
            &request,
            client,
            (404, "no_such_room"),
            why,
        )
        .await;
        return None;
    }
    // From here on the hooks hear of every end, a crash included: `on_terminate` pairs with the
    // `on_init` that admitted the peer.
    let public = from.public();
    let resumable = shared.resume.enabled() && resume::asked(&request.query, "resumable");
    let entered = if shared.resume.enabled() && resume::asked(&request.query, "resume") {
        AssertUnwindSafe(resume::serve(
            &shared, stream, request, &auth, client, &public, inbox,
        ))
        .catch_unwind()
        .await
    } else {
        AssertUnwindSafe(enter_named(
            &shared, stream, request, &auth, client, &public, inbox, resumable,
        ))
        .catch_unwind()
        .await
    };
    match entered {
        Ok(Ok(session)) => Some(Session::Named(session)),
        Ok(Err(end)) => {
            ended_named(&shared, id, client, &auth, &end);
            None
        }
        Err(panic) => {
            let end = End::Server(CloseCode::Error, "internal error".into());
            ended_named(&shared, id, client, &auth, &end);
            std::panic::resume_unwind(panic)
        }
    }
}

/// An admitted named peer: the upgrade, the room's answer, the `authenticated` welcome (with
/// its resume token, for a peer that asked to be `resumable`).
#[allow(clippy::too_many_arguments)]
async fn enter_named(
    shared: &Arc<Shared>,
    stream: Stream,
    request: http::Request,
    auth: &AuthData,
    client: &str,
    public: &str,
    inbox: Inbox,
    resumable: bool,
) -> Result<NamedSession, End> {
    let id = inbox.owner().id();
    let Some(mut ws) = upgrade(shared, stream, request).await else {
        return Err(End::Closed);
    };
    shared.connected(id, public);
    log::info!("peer {id} connected from {client} to room {}", auth.room);
    match shared
        .rooms
        .join_named(&auth.room, inbox.owner(), auth)
        .await
    {
        Ok((room, members)) => {
            let mut handler = NamedPeer::new(
                inbox.owner().clone(),
                auth.clone(),
                Arc::clone(&room),
                Arc::clone(&shared.registry),
                Arc::clone(&shared.peer_hooks),
                Arc::clone(shared.rooms.named_hooks()),
            )
            .with_chaos(shared.chaos.clone())
            .with_faults(shared.faults.clone());
            let mut welcome = RoomMessage::authenticated(id, &room.name, &members);
            if resumable {
                handler = handler.with_resume(Arc::clone(&shared.resume));
                let identity = crate::resume::token::Identity::of(&auth.credentials);
                let token = shared
                    .resume
                    .open(id, &room.name, identity, inbox.owner().clone());
                welcome = resume_wire::with_resume(welcome, &token, shared.resume.window());
            }
            let welcomed = match handler.reply(welcome) {
                Some(Command::Send(frame)) => ws.send(frame).await.is_ok(),
                _ => true,
            };
            if !welcomed {
                // Resumable or not, a peer that never got its welcome has nothing to resume.
                if resumable {
                    let parked = crate::resume::Parked { inbox, handler };
                    if let crate::resume::AfterEnd::Over(parked) =
                        shared
                            .resume
                            .ended(id, crate::resume::Ending::Leave, parked)
                    {
                        drop(parked);
                    }
                }
                return Err(End::Closed);
            }
            Ok(NamedSession {
                shared: Arc::clone(shared),
                ws,
                handler,
                inbox,
                client: client.to_owned(),
                process: id,
            })
        }
        Err(NamedJoinError::Refused(refusal)) => {
            let error = RoomMessage::error(&refusal.0).to_text();
            let code = CloseCode::from(rooms_protocol::JOIN_REFUSED_CLOSE);
            if ws.send(Message::text(error)).await.is_ok() {
                close(&mut ws, code, &refusal.0).await;
            }
            Err(End::Server(code, refusal.0))
        }
        Err(NamedJoinError::NoSuchRoom) => {
            close(&mut ws, CloseCode::Away, "room is gone").await;
            Err(End::Server(CloseCode::Away, "room is gone".into()))
        }
        Err(NamedJoinError::ShuttingDown) => {
            close(&mut ws, CloseCode::Away, "server shutting down").await;
            Err(End::Server(CloseCode::Away, "server shutting down".into()))
        }
    }
}

/// A peer hook panicked before the upgrade: HTTP 500, as a crash after it closes with 1011,
/// then the crash goes on to the supervisor (which logs and counts it).
async fn hook_panicked(
    shared: &Shared,
    stream: &mut Stream,
    request: &http::Request,
    client: &str,
    hook: &str,
    panic: Box<dyn std::any::Any + Send>,
) -> ! {
    let why = format!("internal error (peer hook {hook} panicked)");
    refuse(shared, stream, request, client, (500, "hook_panic"), why).await;
    std::panic::resume_unwind(panic)
}

/// An HTTP error instead of the upgrade, logged once and counted by `reason`.
async fn refuse(
    shared: &Shared,
    stream: &mut Stream,
    request: &http::Request,
    client: &str,
    (status, reason): (u16, &'static str),
    why: String,
) {
    shared.metrics.http_rejected(Some(status), reason);
    log::warn!(
        "{client}: HTTP {status} for {:?}: {why}",
        http::Shown(&request.path)
    );
    let body = format!("{why}\n");
    let _ = http::respond(stream, status, "text/plain", body.as_bytes(), false).await;
}

fn log_end(id: PeerId, client: &str, end: &End) {
    match end {
        End::Closed | End::ClientClose(_) => log::info!("peer {id} ({client}) disconnected"),
        End::Silent(why) => log::info!("peer {id} ({client}) closed with 1001: {why}"),
        End::Replaced => log::info!("peer {id} ({client}) replaced by a resume"),
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
        End::Injected(code, why) => {
            log::info!(
                "peer {id} ({client}) closed by a fault rule with {}: {why}",
                u16::from(*code)
            )
        }
    }
}

/// How a WebSocket ended.
#[derive(Debug)]
pub(crate) enum End {
    /// By the network (or a close the client started, on the book's endpoint).
    Closed,
    /// A close the client started, with its code (none for an empty close frame).
    ClientClose(Option<u16>),
    /// Nothing (frame or pong) came for 3 heartbeats: closed by us with 1001.
    Silent(String),
    /// A resume took the session: closed by us with 4001.
    Replaced,
    /// By us, with this close code.
    Server(CloseCode, String),
    /// By a fault rule's `close` (this code) or `reset` (1006, no close frame): not bad input,
    /// whatever the code.
    Injected(CloseCode, String),
}

fn is_bad_input(code: CloseCode) -> bool {
    matches!(
        code,
        CloseCode::Invalid | CloseCode::Size | CloseCode::Protocol | CloseCode::Policy
    )
}

enum Input {
    Info(Option<Delivered>),
    Frame(Option<Result<Message, WsError>>),
    Beat(heartbeat::Beat),
    OverBudget(OverTooLong),
}

/// What keeps time on a connection: the heartbeat and the budget of what the client sends.
struct Pace {
    heartbeat: Option<heartbeat::Heartbeat>,
    throttle: Option<Throttle>,
}

impl Pace {
    fn of(shared: &Shared) -> Self {
        Pace {
            heartbeat: heartbeat::Heartbeat::new(shared.config.heartbeat),
            throttle: Throttle::new(&shared.config.budget, Arc::clone(&shared.metrics.throttle)),
        }
    }

    /// A resumable peer is pinged every 5 s and detached after 15 s of silence, whatever
    /// `--heartbeat-secs` says: its window starts when the network went, not minutes later.
    fn resumable(shared: &Shared) -> Self {
        Pace {
            heartbeat: heartbeat::Heartbeat::new(Some(shared.config.resume_heartbeat)),
            ..Pace::of(shared)
        }
    }
}

/// Inputs handled in a row without the task giving the thread back: a socket that always has
/// a frame ready (a flood) or a mailbox that is never empty would otherwise keep the task
/// running, and a scheduler thread from every other connection, for as long as it lasts.
const YIELD_EVERY: u32 = 16;

/// A WebSocket's life: the loop, then `finish` with how it ended. Everything the connection
/// holds is this function's own (the loop borrows it), so it is stored once in the future.
///
/// Not an `async fn`: that would keep each argument twice in the future (as an argument and as
/// the local it is moved to), 760 bytes of every connection's state; the block below captures
/// them once.
fn run<H: Handler>(
    ws: Ws,
    handler: H,
    inbox: Inbox,
    pace: Pace,
    finish: impl FnOnce(End, H, Inbox),
) -> impl Future<Output = ()> {
    let (mut ws, mut handler, mut inbox, mut pace) = (ws, handler, inbox, pace);
    async move {
        let end = AssertUnwindSafe(run_loop(&mut ws, &mut handler, &mut inbox, &mut pace))
            .catch_unwind()
            .await;
        drop(ws);
        match end {
            Ok(end) => finish(end, handler, inbox),
            Err(panic) => {
                // A crash is an end too (the hooks' `on_terminate` hears of it as 1011, a
                // resumable peer is detached); then the panic goes on to the supervisor.
                finish(
                    End::Server(CloseCode::Error, "internal error".into()),
                    handler,
                    inbox,
                );
                std::panic::resume_unwind(panic)
            }
        }
    }
}

/// `pace` is borrowed, not owned: the loop's future then holds a pointer to it instead of the
/// value twice (as its argument and as its locals), 600 bytes of every connection's state.
async fn run_loop(
    ws: &mut Ws,
    handler: &mut impl Handler,
    inbox: &mut Inbox,
    pace: &mut Pace,
) -> End {
    let Pace {
        heartbeat: beat,
        throttle,
    } = pace;
    // Alternate which side is polled first so that neither a busy socket nor a busy mailbox
    // starves the other.
    let mut inbox_first = false;
    let mut in_a_row = 0;
    loop {
        inbox_first = !inbox_first;
        let mut waited = false;
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
            // Over budget, the socket is not read: what the client sends waits in the kernel's
            // buffers, and TCP then stops the sender.
            let open = throttle
                .as_mut()
                .map_or(Poll::Ready(Ok(())), |t| t.poll_open(cx));
            match open {
                Poll::Ready(Ok(())) => {
                    if let Poll::Ready(f) = Pin::new(&mut *ws).poll_next(cx) {
                        return Poll::Ready(Input::Frame(f));
                    }
                }
                Poll::Ready(Err(over)) => return Poll::Ready(Input::OverBudget(over)),
                Poll::Pending => {}
            }
            if !inbox_first {
                if let Poll::Ready(i) = poll_inbox(cx) {
                    return Poll::Ready(i);
                }
            }
            let beat = match beat.as_mut().map(|b| b.poll_beat(cx)) {
                Some(Poll::Ready(b)) => Poll::Ready(Input::Beat(b)),
                _ => Poll::Pending,
            };
            waited |= beat.is_pending();
            beat
        })
        .await;
        in_a_row = if waited { 0 } else { in_a_row + 1 };
        if in_a_row >= YIELD_EVERY {
            in_a_row = 0;
            futures_lite::future::yield_now().await;
        }
        if let Input::Frame(Some(Ok(frame))) = &input {
            if let Some(beat) = beat.as_mut() {
                beat.heard();
            }
            if let Some(t) = throttle.as_mut() {
                t.charge(frame.len());
            }
        }
        let command = match input {
            Input::OverBudget(OverTooLong(over)) => {
                let why = budget::OVER_BUDGET;
                log::debug!("over budget for {over:?}");
                Box::pin(close(ws, CloseCode::Policy, why)).await;
                return End::Server(CloseCode::Policy, why.to_owned());
            }
            Input::Beat(heartbeat::Beat::Ping) => {
                Some(Command::Send(Message::Ping(Vec::new().into())))
            }
            Input::Beat(heartbeat::Beat::Dead(silent)) => {
                let why = format!("no frame or pong for {} s", silent.as_secs());
                Box::pin(close(ws, CloseCode::Away, "heartbeat timeout")).await;
                return End::Silent(why);
            }
            Input::Info(None) => return End::Closed,
            Input::Info(Some(Delivered::Control(control))) => {
                return Box::pin(obey(ws, inbox, control, Stuck::No)).await
            }
            Input::Info(Some(Delivered::Message(msg))) => {
                inbox.taken(&msg);
                if let PeerMsg::Faulted(f) = msg {
                    match Box::pin(faulted::carry_out(ws, handler, inbox, *f)).await {
                        Ok(()) => continue,
                        Err(end) => return end,
                    }
                }
                let command = guarded(ws, || handler.handle_info(msg)).await;
                if let Some(Command::Send(frame)) = command {
                    // Take whatever else is already queued, then flush once.
                    let batch = feed_batch(ws, handler, inbox, frame);
                    match interruptible(inbox, batch).await {
                        Written::Done(Ok(())) => continue,
                        Written::Done(Err(end)) => return end,
                        Written::Interrupted(c) => {
                            return Box::pin(obey(ws, inbox, c, Stuck::Yes)).await
                        }
                    }
                }
                command
            }
            Input::Frame(None) => return End::Closed,
            Input::Frame(Some(Ok(frame @ Message::Text(_)))) => {
                // The mailbox first next time: a fault rule's stall of this sender, queued by
                // this very frame, takes hold before the next frame is read.
                inbox_first = false;
                match AssertUnwindSafe(handler.handle_text(frame))
                    .catch_unwind()
                    .await
                {
                    Ok(command) => command,
                    Err(panic) => Box::pin(crashed(ws, panic)).await,
                }
            }
            Input::Frame(Some(Ok(Message::Binary(_)))) => {
                log::debug!("binary frame ignored");
                None
            }
            Input::Frame(Some(Ok(Message::Close(frame)))) => {
                return Box::pin(client_close::answer(ws, frame.as_ref())).await;
            }
            // The pong is queued (src/websocket.rs): send it now, not with the next message.
            Input::Frame(Some(Ok(Message::Ping(_)))) => {
                match interruptible(inbox, ws.flush()).await {
                    Written::Done(Ok(())) => None,
                    Written::Done(Err(_)) => return End::Closed,
                    Written::Interrupted(c) => {
                        return Box::pin(obey(ws, inbox, c, Stuck::Yes)).await
                    }
                }
            }
            Input::Frame(Some(Ok(_))) => None,
            Input::Frame(Some(Err(e))) => match e {
                WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                    Some(Command::Close(CloseCode::Size, "message too big"))
                }
                WsError::Utf8(_) => Some(Command::Close(CloseCode::Invalid, "invalid UTF-8")),
                // A TCP connection that ends without a close frame is a lost network or a
                // closed tab, not a protocol violation.
                WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                    return End::Closed
                }
                WsError::Protocol(p) => {
                    let reason = p.to_string();
                    Box::pin(close(ws, CloseCode::Protocol, "protocol error")).await;
                    return End::Server(CloseCode::Protocol, reason);
                }
                _ => return End::Closed,
            },
        };
        match command {
            None => {}
            Some(Command::Send(frame)) => match interruptible(inbox, ws.send(frame)).await {
                Written::Done(Ok(())) => {}
                Written::Done(Err(_)) => return End::Closed,
                Written::Interrupted(c) => return Box::pin(obey(ws, inbox, c, Stuck::Yes)).await,
            },
            Some(Command::Close(code, why)) => {
                Box::pin(close(ws, code, why)).await;
                return End::Server(code, why.to_owned());
            }
        }
    }
}

/// Feeds `first` and every relay already waiting (bounded), then flushes.
async fn feed_batch(
    ws: &mut Ws,
    handler: &mut impl Handler,
    inbox: &Inbox,
    first: Message,
) -> Result<(), End> {
    if ws.feed(first).await.is_err() {
        return Err(End::Closed);
    }
    for _ in 1..MAX_BATCH {
        let Ok(msg) = inbox.try_recv_plain() else {
            break;
        };
        match guarded(ws, || handler.handle_info(msg)).await {
            Some(Command::Send(frame)) => {
                let fed = ws.feed(frame).await;
                if fed.is_err() {
                    return Err(End::Closed);
                }
            }
            Some(Command::Close(code, why)) => {
                Box::pin(close(ws, code, why)).await;
                return Err(End::Server(code, why.to_owned()));
            }
            None => {}
        }
    }
    ws.flush().await.map_err(|_| End::Closed)
}

/// How a write to the socket ended.
enum Written<T> {
    Done(T),
    /// A control order came first; the write is abandoned, its data still queued.
    Interrupted(Control),
}

/// A write raced against the mailbox's control orders: a peer that stopped reading fills its
/// socket, and the write then waits for as long as it does; overflow, stop and crash must still
/// act. Not an `async fn`: that would hold `write` twice (as its argument and in the race),
/// in every connection's state.
fn interruptible<'a, T: 'a>(
    inbox: &'a Inbox,
    write: impl Future<Output = T> + 'a,
) -> impl Future<Output = Written<T>> + 'a {
    let write = async move { Written::Done(write.await) };
    let control = async move { Written::Interrupted(inbox.control().await) };
    write.or(control)
}

/// Whether the socket holds data the client is not reading.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stuck {
    Yes,
    No,
}

/// Carries out a control order, which ends the connection.
async fn obey(ws: &mut Ws, inbox: &Inbox, control: Control, stuck: Stuck) -> End {
    let id = inbox.owner().id();
    let (code, why) = match control {
        Control::Crash => {
            if stuck == Stuck::Yes {
                abort(ws);
            } else {
                Box::pin(close(ws, CloseCode::Error, "internal error")).await;
            }
            panic!("injected crash of peer {id}");
        }
        Control::Overflow => {
            let why = "outbound queue full";
            // Past the bound: a close frame would queue behind the data the client does not
            // read, and never arrive. The connection is reset instead.
            if stuck == Stuck::Yes {
                abort(ws);
            } else {
                Box::pin(close(ws, CloseCode::Policy, why)).await;
            }
            return End::Server(CloseCode::Policy, why.into());
        }
        Control::Replaced => {
            let code = CloseCode::from(resume_wire::REPLACED_CLOSE);
            if stuck == Stuck::Yes {
                abort(ws);
            } else {
                Box::pin(close(ws, code, "replaced")).await;
            }
            return End::Replaced;
        }
        Control::Stop(StopReason::Shutdown) => (CloseCode::Away, "server shutting down"),
        Control::Stop(StopReason::SupervisorDown) => (CloseCode::Error, "supervisor down"),
    };
    // Bounded: what is still unwritten gets the close's deadline to drain, then a reset.
    Box::pin(close(ws, code, why)).await;
    End::Server(code, why.to_owned())
}

/// Resets the connection: no close frame, and the kernel drops what it still holds for it.
fn abort(ws: &Ws) {
    ws.get_ref().abort();
}

/// Runs a synchronous handler callback; a panic in it is a crash of the peer.
async fn guarded(ws: &mut Ws, f: impl FnOnce() -> Option<Command>) -> Option<Command> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(command) => command,
        Err(panic) => Box::pin(crashed(ws, panic)).await,
    }
}

/// As cowboy does for a crashed handler: close with 1011, then let the crash go on to the
/// supervisor (which logs it, counts it, and cleans the registry).
async fn crashed(ws: &mut Ws, panic: Box<dyn std::any::Any + Send>) -> ! {
    close(ws, CloseCode::Error, "internal error").await;
    std::panic::resume_unwind(panic)
}

/// The longest close reason a close frame carries (RFC 6455 §5.5: a control frame's payload is
/// at most 125 bytes, two of them the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// `reason` cut to [`MAX_CLOSE_REASON`] bytes, on a character boundary.
pub fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Sends a close frame and waits (bounded) for the client's, so that the frame is not lost to a
/// reset of a socket closed with unread data. A close frame that could not even be written
/// within the bound (the client does not read) ends in a reset.
async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: close_reason(reason).to_owned().into(),
    };
    let mut written = false;
    let handshake = async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        written = true;
        // A client still flooding keeps this loop busy for the whole linger: it gives the
        // thread back as the connection's loop does.
        let mut in_a_row = 0;
        while let Some(Ok(_)) = futures_lite::StreamExt::next(ws).await {
            in_a_row += 1;
            if in_a_row % YIELD_EVERY == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        drain(ws.get_mut()).await;
    };
    handshake
        .or(async {
            crate::deadline::after(CLOSE_LINGER).await;
        })
        .await;
    if !written {
        abort(ws);
    }
}

/// The size of the reads that drop what a closing client still sends.
const DRAIN_CHUNK: usize = 16 * 1024;

/// How long a close waits for the client's close and the end of what it still sends.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Stops sending and reads and drops what the client still sends, until it closes too (bounded
/// by the caller). A socket closed with unread bytes makes the kernel reset the connection: a
/// client still writing a message we refused (1009) would then get the reset on its write and
/// never read our close frame.
async fn drain(stream: &mut Stream) {
    stream.shutdown_write().await;
    // On the heap, and only while draining: an array here is kept in every connection's future
    // from its first poll to its end (a 16 KiB array made an idle connection cost 62 KiB instead
    // of 9, loadgen hold).
    let mut sink = vec![0u8; DRAIN_CHUNK];
    let mut in_a_row = 0;
    while let Ok(1..) = futures_lite::AsyncReadExt::read(stream, &mut sink).await {
        in_a_row += 1;
        if in_a_row % YIELD_EVERY == 0 {
            futures_lite::future::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_reason_is_cut_on_a_character_boundary() {
        assert_eq!(close_reason("short"), "short");
        let exact = "x".repeat(MAX_CLOSE_REASON);
        assert_eq!(close_reason(&exact), exact);
        assert_eq!(close_reason(&format!("{exact}y")), exact);
        // 'é' is 2 bytes: 61 of them are 122 bytes, the 62nd would end at 124.
        let accents = "é".repeat(70);
        assert_eq!(close_reason(&accents).len(), 122);
    }
}
