//! `ceiling`: the least a book-protocol server can do — numbered rooms of two and verbatim relay, one task
//! per connection, no JSON re-encoding. Its figures are the practical upper bound rtcserver is compared with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::transport::ws_config;

pub mod rooms;
pub mod wire;

use rooms::{lock, Member, Outbox, Partner, Rooms};
use wire::Frame;

/// Frames queued for one peer. When the queue is full the sender waits (while still draining its own queue),
/// which pushes back on the fast side instead of growing memory.
const OUTBOX: usize = 64;
/// A client that has not finished the WebSocket handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (typically EMFILE) the loop waits instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type Ws = WebSocketStream<TcpStream>;

/// Accepts connections until the process ends.
pub async fn serve(listener: TcpListener, rooms: Arc<Rooms>) {
    let ids = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(peer(stream, id, rooms.clone()));
            }
            Err(e) => {
                eprintln!("ceiling: accept failed: {e}");
                sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One connection from handshake to end; whatever ends it, the peer leaves its room.
async fn peer(stream: TcpStream, id: u64, rooms: Arc<Rooms>) {
    // Best effort: without it only latency suffers.
    let _ = stream.set_nodelay(true);
    let Ok(Ok(mut ws)) = timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())),
    )
    .await
    else {
        return;
    };
    let (outbox, mut inbox) = mpsc::channel(OUTBOX);
    let me = Member {
        id,
        outbox,
        partner: Partner::default(),
    };
    let mut room = None;
    // Errors only end this peer; the benchmark server logs nothing per connection to stay out of the hot path.
    let _ = serve_peer(&mut ws, &mut inbox, &me, &mut room, &rooms).await;
    if let Some(room) = room {
        rooms.leave(room, id);
    }
}

async fn serve_peer(
    ws: &mut Ws,
    inbox: &mut mpsc::Receiver<Message>,
    me: &Member,
    room: &mut Option<u32>,
    rooms: &Rooms,
) -> Result<(), WsError> {
    loop {
        tokio::select! {
            incoming = ws.next() => {
                let msg = match incoming {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                };
                let text = match msg {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        relay(ws, inbox, me, msg).await?;
                        continue;
                    }
                    // Pings and closes are answered by tungstenite on the next read.
                    _ => continue,
                };
                match wire::classify(&text) {
                    Frame::Relay => relay(ws, inbox, me, Message::Text(text)).await?,
                    Frame::GetRoom => match rooms.create(me, *room) {
                        Some(n) => {
                            *room = Some(n);
                            ws.send(Message::text(wire::getroom_answer(n))).await?;
                        }
                        None => {
                            *room = None;
                            let reason = CloseFrame { code: CloseCode::Again, reason: "no free room number".into() };
                            return ws.close(Some(reason)).await;
                        }
                    },
                    Frame::EnterRoom(Some(n)) if rooms.join(n, me, *room) => *room = Some(n),
                    Frame::EnterRoom(_) => ws.send(Message::text(wire::WRONGROOM)).await?,
                }
            }
            Some(out) = inbox.recv() => ws.send(out).await?,
        }
    }
}

/// Forwards a frame as received to the other peer; with nobody there it is dropped, as the book does.
async fn relay(
    ws: &mut Ws,
    inbox: &mut mpsc::Receiver<Message>,
    me: &Member,
    msg: Message,
) -> Result<(), WsError> {
    let to: Option<Outbox> = lock(&me.partner).clone();
    let Some(to) = to else { return Ok(()) };
    match to.try_send(msg) {
        // Closed: the partner left between the lookup and the send; same as nobody there.
        Ok(()) | Err(TrySendError::Closed(_)) => Ok(()),
        Err(TrySendError::Full(msg)) => {
            // Waiting without draining our own outbox could deadlock two peers flooding each other.
            loop {
                tokio::select! {
                    permit = to.reserve() => {
                        if let Ok(permit) = permit {
                            permit.send(msg);
                        }
                        return Ok(());
                    }
                    Some(out) = inbox.recv() => ws.send(out).await?,
                }
            }
        }
    }
}
