//! The listener: cowboy/ranch's acceptor, a permanent child of `rtcserver_sup`.
//!
//! The listening socket belongs to the server, not to this process, so a crash of the listener
//! neither closes the port nor drops the connections waiting in its backlog; the next instance
//! goes on accepting from the same socket. Each accepted socket becomes a peer child at once;
//! the handshake happens there, so a slow client never holds up the accept loop.
use crate::rtcserver_app::Shared;
use crate::socket::Listening;
use std::sync::Arc;
use std::time::Duration;

/// The only way into the listener process.
pub enum ListenerMsg {
    /// Injected fault: the listener panics.
    Crash,
}

enum Next {
    /// From the plain port, or (`true`) the TLS port.
    Accepted(
        std::io::Result<(std::net::TcpStream, std::net::SocketAddr)>,
        bool,
    ),
    Msg(ListenerMsg),
    Closed,
}

/// Accepts made before the listener gives its thread back to the connections it started.
const ACCEPTS_IN_A_ROW: u32 = 16;

pub(crate) async fn run(shared: Arc<Shared>) {
    let (plain, tls) = shared.listening_sockets();
    if plain.is_none() && tls.is_none() {
        return;
    }
    let mut in_a_row: u32 = 0;
    loop {
        shared.wait_for_capacity().await;
        let accept_on = |socket: &Option<Arc<Listening>>, is_tls: bool| {
            let socket = socket.clone();
            async move {
                match socket {
                    Some(s) => Next::Accepted(s.accept().await, is_tls),
                    None => std::future::pending().await,
                }
            }
        };
        let accept = futures_lite::future::or(accept_on(&plain, false), accept_on(&tls, true));
        let control = async {
            match shared.listener_inbox.recv().await {
                Ok(msg) => Next::Msg(msg),
                Err(_) => Next::Closed,
            }
        };
        match futures_lite::future::or(control, accept).await {
            Next::Accepted(Ok((stream, addr)), is_tls) => {
                let _ = stream.set_nodelay(true);
                crate::peers_sup::start_peer(&shared, stream, addr, is_tls);
                shared.metrics.accepted();
                // After the hand-over: a chaos crash of the listener never takes this connection.
                if let Some(chaos) = &shared.chaos {
                    chaos.on_accept();
                }
                // On the scheduler, a backlog that is never empty would keep this loop running
                // and the connections it starts waiting: give the thread back now and then.
                in_a_row = in_a_row.wrapping_add(1);
                if in_a_row.is_multiple_of(ACCEPTS_IN_A_ROW) {
                    futures_lite::future::yield_now().await;
                }
            }
            Next::Accepted(Err(e), _) => {
                // EMFILE and friends: back off instead of spinning on the error.
                log::warn!("listener: accept failed: {e}");
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
            Next::Msg(ListenerMsg::Crash) => panic!("injected crash of the listener"),
            Next::Closed => return,
        }
    }
}
