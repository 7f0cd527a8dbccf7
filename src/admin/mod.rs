//! The admin API: Erlang's `observer` and `supervisor:which_children`, over HTTP on a listener
//! of its own (127.0.0.1:30001 by default).
//!
//! - [`request`]: reading a request, writing an answer (one per connection).
//! - [`access`]: loopback only, or a bearer token; cross-site requests refused.
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
pub mod handle;
pub mod request;
pub mod routes;
pub mod sse;
pub mod view;

pub use access::{is_allowed, Access, AdminToken};

use crate::config::Config;
use crate::rtcserver_app::{ServerHandle, StartError};
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, FutureExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Admin connections served at once (event streams included); more get 503.
pub const MAX_CONNECTIONS: usize = 64;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Releases a connection slot however the connection's task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(handle: ServerHandle, socket: TcpListener) {
    let open = Arc::new(AtomicUsize::new(0));
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
                let busy = open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS;
                let slot = Slot(Arc::clone(&open));
                let handle = handle.clone();
                drop(bastion::executor::spawn(async move {
                    let _slot = slot;
                    if busy {
                        let busy = request::Response::error(
                            503,
                            format!("more than {MAX_CONNECTIONS} admin connections"),
                        );
                        write(stream, &busy).await;
                    } else {
                        serve(&handle, stream, client).await;
                    }
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

async fn serve(handle: &ServerHandle, mut stream: TcpStream, client: SocketAddr) {
    let req = match request::read(&mut stream, READ_TIMEOUT).await {
        Ok(req) => req,
        Err(e) => {
            log::debug!("admin API: {client}: {e}");
            if let Some(status) = e.status() {
                write(stream, &request::Response::error(status, e)).await;
            }
            return;
        }
    };
    let token = handle.shared.config.admin_token.as_ref();
    let refusal = match is_allowed(client, &req, token) {
        Access::Allowed => None,
        Access::Unauthorized => Some(
            request::Response::error(401, "this admin API needs Authorization: Bearer <token>")
                .with_header("WWW-Authenticate", "Bearer realm=\"rtcserver admin\""),
        ),
        Access::Forbidden(why) => Some(request::Response::error(403, why)),
    };
    if let Some(refusal) = refusal {
        log::warn!(
            "admin API: refused {} {} from {client} ({})",
            req.method,
            req.path,
            refusal.status
        );
        return write(stream, &refusal).await;
    }
    match routes::route(handle, &req, client) {
        routes::Reply::Response(response) => write(stream, &response).await,
        routes::Reply::Events => sse::stream(handle, stream).await,
    }
}
