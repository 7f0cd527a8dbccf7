//! The admin API: Erlang's `observer` and `supervisor:which_children`, over HTTP on a listener
//! of its own (127.0.0.1:30001 by default).
//!
//! - [`request`]: reading a request, writing an answer (one per connection).
//! - [`access`]: loopback only, or a bearer token; cross-site requests refused.
//! - [`slots`]: how many connections are held, so that clients without the token cannot hold
//!   them all.
//! - [`routes`]: `GET /tree`, `POST /crash`, `GET /metrics`, `GET /events`, `GET /chaos`, and
//!   the observer page at `/`.
//! - [`view`]: the JSON of the tree and of events; [`sse`]: the event stream.
//! - [`handle`]: what the API reads of the server, as [`ServerHandle`] methods; [`cli`]: flags.
//!
//! It is not a child of the tree it shows: like `observer`, it watches from outside, so crashing
//! any child (the root included) leaves it answering until the server stops. A crash it asks for
//! goes through [`ServerHandle::crash_for`], the one fault-injection path.
pub mod access;
pub mod cli;
pub mod faults;
pub mod handle;
pub mod request;
pub mod routes;
pub mod slots;
pub mod sse;
pub mod view;

pub use access::{is_allowed, Access, AdminToken};
pub use slots::{MAX_SERVED, MAX_WAITING};

use crate::config::Config;
use crate::rtcserver_app::{ServerHandle, StartError};
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, FutureExt};
use slots::{Slots, Waiting};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The whole request (head and body) must arrive within this: a client has nothing to wait for
/// before sending it, and a silent connection holds a waiting place until then.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how many reads, a closing connection waits for the client to finish sending.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_READS: usize = 64;

/// Binds the admin listener, before the tree starts, so that a refusal stops the start cleanly.
pub(crate) fn bind(config: &Config) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = config.admin_bind else {
        return Ok(None);
    };
    if !addr.ip().to_canonical().is_loopback() && config.admin_token.is_none() {
        return Err(StartError::AdminUnprotected(addr));
    }
    let bound = std::net::TcpListener::bind(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        TcpListener::try_from(l)
    });
    match bound {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if config.admin_bind_required => Err(StartError::AdminBind(addr, e)),
        Err(e) => {
            log::warn!(
                "no admin API: cannot listen on {addr}: {e} (--admin-bind ADDR chooses another address)"
            );
            Ok(None)
        }
    }
}

/// Serves the admin API on `socket` until the server stops.
pub(crate) fn spawn(handle: ServerHandle, socket: TcpListener) {
    if let Ok(addr) = socket.local_addr() {
        log::info!("admin API and observer page on http://{addr}/");
    }
    drop(bastion::executor::spawn(accept_loop(handle, socket)));
}

async fn accept_loop(handle: ServerHandle, socket: TcpListener) {
    let slots = Arc::new(Slots::default());
    loop {
        let next = async { Some(socket.accept().await) }
            .or(async {
                handle.shared.until_torn_down().await;
                None
            })
            .await;
        match next {
            None => break,
            Some(Ok((stream, client))) => {
                let waiting = slots.arrive();
                let slots = Arc::clone(&slots);
                let handle = handle.clone();
                drop(bastion::executor::spawn(async move {
                    serve(&handle, stream, client, waiting, &slots).await;
                }));
            }
            Some(Err(e)) => {
                log::warn!("admin API: accept failed: {e}");
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
    log::debug!("admin API closed");
}

/// Writes the answer and closes at once: for a client that is not owed a linger (it sent
/// nothing more we left unread, or it is one too many).
async fn write_and_close(mut stream: TcpStream, response: &request::Response) {
    let _ = async { response.write(&mut stream).await.is_ok() }
        .or(async {
            async_io::Timer::after(WRITE_TIMEOUT).await;
            false
        })
        .await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Writes the answer, then closes gracefully: a socket closed with unread input (a body we
/// refused to read) is reset, and the reset can destroy the answer before the client reads it.
async fn write(mut stream: TcpStream, response: &request::Response) {
    let written = async { response.write(&mut stream).await.is_ok() }
        .or(async {
            async_io::Timer::after(WRITE_TIMEOUT).await;
            false
        })
        .await;
    if !written || stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    let drain = async {
        for _ in 0..LINGER_READS {
            if !matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {
                break;
            }
        }
    };
    drain
        .or(async {
            async_io::Timer::after(LINGER).await;
        })
        .await;
}

async fn serve(
    handle: &ServerHandle,
    mut stream: TcpStream,
    client: SocketAddr,
    waiting: Waiting,
    slots: &Arc<Slots>,
) {
    // Until its request is allowed, a connection may lose its place to a newer one.
    let admitted = async { admit(handle, &mut stream, client).await }
        .or(async {
            waiting.evicted().await;
            None
        })
        .await;
    let Some(req) = admitted else {
        return;
    };
    drop(waiting);
    let Some(_served) = slots.serve() else {
        log::debug!("admin API: {client}: more than {MAX_SERVED} requests being served");
        let busy = request::Response::error(
            503,
            format!("more than {MAX_SERVED} admin requests being served"),
        );
        return write_and_close(stream, &busy).await;
    };
    match routes::route(handle, &req, client) {
        routes::Reply::Response(response) => write(stream, &response).await,
        routes::Reply::Events => sse::stream(handle, stream).await,
    }
}

/// Reads the request and checks who may make it; `None` once a refusal has been answered.
async fn admit(
    handle: &ServerHandle,
    stream: &mut TcpStream,
    client: SocketAddr,
) -> Option<request::Request> {
    let req = match request::read(stream, READ_TIMEOUT).await {
        Ok(req) => req,
        Err(e) => {
            log::debug!("admin API: {client}: {e}");
            match e.status() {
                Some(408) => {
                    write_and_close(stream.clone(), &request::Response::error(408, e)).await
                }
                Some(status) => write(stream.clone(), &request::Response::error(status, e)).await,
                None => {}
            }
            return None;
        }
    };
    let token = handle.shared.config.admin_token.as_ref();
    let refusal = match is_allowed(client, &req, token) {
        Access::Allowed => return Some(req),
        Access::Unauthorized => {
            request::Response::error(401, "this admin API needs Authorization: Bearer <token>")
                .with_header("WWW-Authenticate", "Bearer realm=\"rtcserver admin\"")
        }
        Access::Forbidden(why) => request::Response::error(403, why),
    };
    log::warn!(
        "admin API: refused {} {:?} from {client} ({})",
        req.method,
        crate::http::Shown(&req.path),
        refusal.status
    );
    write(stream.clone(), &refusal).await;
    None
}
