//! `peers_sup`: one temporary child per connection, as ranch's connection supervisor.
//!
//! A peer is never restarted (its socket dies with it). When it ends, for any reason, its
//! supervisor tells the registry (`down`), which drops the peer's keys: gproc's monitor.
use crate::mailbox::Control;
use crate::rtcserver_app::Shared;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use supervisors::{ChildKind, ChildSpec};

pub(crate) fn start_peer(shared: &Arc<Shared>, stream: TcpStream, addr: SocketAddr, tls: bool) {
    let (peer, inbox, guard) = shared.connection_opened(addr);
    let id = peer.id();
    let mut once = Some((Arc::clone(shared), stream, inbox, guard));
    let stop_peer = peer.clone();
    let down = Arc::clone(shared);
    let started = shared.peers.start_child(ChildSpec {
        id: format!("peer:{id}"),
        kind: ChildKind::Temporary,
        start: Box::new(move || match once.take() {
            Some((shared, stream, inbox, guard)) => Box::pin(async move {
                let _guard = guard;
                crate::connection::serve(shared, stream, addr, tls, inbox).await
            }),
            // A temporary child is started once; nothing to do if asked again.
            None => Box::pin(async {}),
        }),
        stop: Box::new(move |reason| {
            stop_peer.control(Control::Stop(reason));
        }),
        on_exit: Some(Box::new(move |_exit, _restarting| down.peer_down(id))),
    });
    if started.is_err() {
        log::debug!("peer {id} refused: shutting down");
    }
}
