//! The listener: cowboy/ranch's acceptor, a permanent child of `rtcserver_sup`.
//!
//! The listening socket belongs to the server, not to this process, so a crash of the listener
//! neither closes the port nor drops the connections waiting in its backlog; the next instance
//! goes on accepting from the same socket. Each accepted socket becomes a peer child at once;
//! the handshake happens there, so a slow client never holds up the accept loop.
use crate::rtcserver_app::Shared;
use std::sync::Arc;
use std::time::Duration;

/// The only way into the listener process.
pub enum ListenerMsg {
    /// Injected fault: the listener panics.
    Crash,
}

enum Next {
    Accepted(std::io::Result<(async_net::TcpStream, std::net::SocketAddr)>),
    Msg(ListenerMsg),
    Closed,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(socket) = shared.listening_socket() else {
        return;
    };
    loop {
        shared.wait_for_capacity().await;
        let accept = async { Next::Accepted(socket.accept().await) };
        let control = async {
            match shared.listener_inbox.recv().await {
                Ok(msg) => Next::Msg(msg),
                Err(_) => Next::Closed,
            }
        };
        match futures_lite::future::or(control, accept).await {
            Next::Accepted(Ok((stream, addr))) => {
                let _ = stream.set_nodelay(true);
                crate::peers_sup::start_peer(&shared, stream, addr);
                shared.metrics.accepted();
                // After the hand-over: a chaos crash of the listener never takes this connection.
                if let Some(chaos) = &shared.chaos {
                    chaos.on_accept();
                }
            }
            Next::Accepted(Err(e)) => {
                // EMFILE and friends: back off instead of spinning on the error.
                log::warn!("listener: accept failed: {e}");
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
            Next::Msg(ListenerMsg::Crash) => panic!("injected crash of the listener"),
            Next::Closed => return,
        }
    }
}
