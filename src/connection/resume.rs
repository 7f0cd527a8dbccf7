//! A resumable peer's connection at its two ends (docs/rooms-protocol.md, "Resume"): a resume
//! connection's handshake (the `resume` request, the session, `resumed` and the frames the
//! client missed), and what the session makes of a connection's end.
use super::{close, upgrade, End, NamedSession, Ws};
use crate::hooks::AuthData;
use crate::http;
use crate::mailbox::Inbox;
use crate::named_peer::NamedPeer;
use crate::registry::PeerId;
use crate::resume::token::Identity;
use crate::resume::wire::{self, Failure, NO_RESUME_CLOSE, RESUME_FAILED_CLOSE};
use crate::resume::{AfterEnd, Ending, Parked};
use crate::rtcserver_app::Shared;
use crate::tls::Stream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Duration;

mod remote;

/// How long a resume connection has to send its `resume` request.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// Whether the query string turns `flag` on (`flag=1`, `flag=true`, or `flag` alone).
pub(super) fn asked(query: &str, flag: &str) -> bool {
    query.split('&').any(|pair| {
        pair == flag
            || pair
                .strip_prefix(flag)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| v == "1" || v == "true")
    })
}

/// `?resume=1`: after the upgrade, the `resume` request within 5 s, then the session it names
/// (never a join: a failed resume is `resume_failed` and close 4002).
pub(super) async fn serve(
    shared: &Arc<Shared>,
    stream: Stream,
    request: http::Request,
    auth: &AuthData,
    client: &str,
    public: &str,
    inbox: Inbox,
) -> Result<NamedSession, End> {
    let process = inbox.owner().id();
    // What the node that holds the session needs to authenticate the same user, if the resume
    // has to go there.
    let credentials = remote::credentials(&request);
    let Some(mut ws) = upgrade(shared, stream, request).await else {
        return Err(End::Closed);
    };
    shared.connected(process, public);
    let first = async { Some(ws.next().await) };
    let timeout = async {
        crate::deadline::after(REQUEST_WAIT).await;
        None
    };
    let mut first_text = None;
    let asked = match futures_lite::future::or(first, timeout).await {
        Some(Some(Ok(Message::Text(text)))) => {
            let asked = wire::resume_request(text.as_str());
            first_text = Some(text.as_str().to_owned());
            asked
        }
        Some(_) => None,
        None => {
            let code = CloseCode::from(NO_RESUME_CLOSE);
            close(&mut ws, code, "no resume request").await;
            return Err(End::Server(code, "no resume request within 5 s".into()));
        }
    };
    let Some(asked) = asked else {
        return Err(fail(&mut ws, Failure::Unknown).await);
    };
    let identity = Identity::of(&auth.credentials);
    let resumed = shared
        .resume
        .resume(
            asked.peer_id,
            &auth.room,
            identity,
            &asked.token,
            asked.last_seq,
        )
        .await;
    let mut resumed = match resumed {
        Ok(resumed) => resumed,
        Err(Failure::Unknown) if !shared.resume.holds(asked.peer_id) => {
            // Not a session of this node: perhaps of another node of the cluster.
            let key = crate::registry::RoomKey::Named(auth.room.as_str().into());
            let cluster = Arc::clone(shared.rooms.cluster());
            if let Some(node) = cluster.holder(&key, asked.peer_id).await {
                let first = first_text.unwrap_or_default();
                return Err(remote::pipe(
                    shared,
                    ws,
                    &inbox,
                    &node,
                    &auth.room,
                    &credentials,
                    &first,
                )
                .await);
            }
            log::info!(
                "{client}: resume of peer {} in room {} failed: unknown",
                asked.peer_id,
                auth.room
            );
            return Err(fail(&mut ws, Failure::Unknown).await);
        }
        Err(failure) => {
            log::info!(
                "{client}: resume of peer {} in room {} failed: {}",
                asked.peer_id,
                auth.room,
                failure.reason()
            );
            return Err(fail(&mut ws, failure).await);
        }
    };
    let peer = resumed.parked.inbox.owner().clone();
    shared.served_by(&peer, process, public);
    let handler = &mut resumed.parked.handler;
    handler.resumed();
    let window = shared.resume.window();
    let answer = wire::resumed(peer.id(), &resumed.token, handler.last_cseq(), window);
    let missed = handler.replay(asked.last_seq);
    log::info!(
        "peer {} resumed in room {} from {client} ({} frames resent)",
        peer.id(),
        auth.room,
        missed.len()
    );
    let mut sent = ws.feed(Message::text(answer.to_text())).await.is_ok();
    for frame in missed {
        sent = sent && ws.feed(Message::Text(frame)).await.is_ok();
    }
    sent = sent && ws.flush().await.is_ok();
    if !sent {
        // Dropped again before the frames went out: they are still kept, for the next resume.
        let Parked { inbox, handler } = resumed.parked;
        ended(shared, process, client, End::Closed, handler, inbox);
        return Err(End::Closed);
    }
    Ok(NamedSession {
        shared: Arc::clone(shared),
        ws,
        handler: resumed.parked.handler,
        inbox: resumed.parked.inbox,
        client: client.to_owned(),
        process,
    })
}

/// `resume_failed` and close 4002; the end to log.
async fn fail(ws: &mut Ws, failure: Failure) -> End {
    let text = wire::resume_failed(failure).to_text();
    let code = CloseCode::from(RESUME_FAILED_CLOSE);
    if ws.send(Message::text(text)).await.is_ok() {
        close(ws, code, failure.reason()).await;
    }
    End::Server(code, format!("resume failed: {}", failure.reason()))
}

/// Whether an end keeps the peer for its window: anything but the client's own close 1000 (or
/// an empty close, which a page's `close()` sends) and the server's ends for cause.
fn ending(end: &End) -> Ending {
    match end {
        End::Closed | End::Silent(_) | End::Replaced | End::Injected(..) => Ending::Detach,
        End::ClientClose(None) | End::ClientClose(Some(1000)) => Ending::Leave,
        End::ClientClose(Some(_)) => Ending::Detach,
        // A crash of the peer's process, or of its supervisor.
        End::Server(CloseCode::Error, _) => Ending::Detach,
        // Shutdown (1001), bad input (1002, 1007, 1008, 1009), a refused join (4000).
        End::Server(..) => Ending::Leave,
    }
}

/// A resumable peer's connection ended: detached for its window, handed to a waiting resume,
/// or its session ends (the room hears `left`).
pub(super) fn ended(
    shared: &Shared,
    process: PeerId,
    client: &str,
    end: End,
    handler: NamedPeer,
    inbox: Inbox,
) {
    let id = handler.id();
    super::log_end(id, client, &end);
    shared.bad_input(&end);
    if process != id {
        shared.no_longer_served(id, process);
    }
    let how = ending(&end);
    match shared.resume.ended(id, how, Parked { inbox, handler }) {
        AfterEnd::Kept => {}
        AfterEnd::Over(parked) => {
            let terminate = super::terminate_reason(&end);
            shared.resume.finish(id, *parked, None, terminate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_is_on_by_name_one_or_true() {
        assert!(asked("resumable=1", "resumable"));
        assert!(asked("a=b&resumable", "resumable"));
        assert!(asked("resumable=true&x", "resumable"));
        assert!(!asked("resumable=0", "resumable"));
        assert!(!asked("resumablex=1", "resumable"));
        assert!(!asked("", "resumable"));
        assert!(!asked("resume=1", "resumable"));
        assert!(asked("resume=1", "resume"));
    }

    #[test]
    fn only_a_deliberate_leave_or_a_server_end_for_cause_ends_a_session() {
        assert_eq!(ending(&End::Closed), Ending::Detach);
        assert_eq!(ending(&End::ClientClose(Some(1001))), Ending::Detach);
        assert_eq!(ending(&End::ClientClose(Some(1000))), Ending::Leave);
        assert_eq!(ending(&End::ClientClose(None)), Ending::Leave);
        assert_eq!(ending(&End::Silent("x".into())), Ending::Detach);
        assert_eq!(
            ending(&End::Server(CloseCode::Error, "internal error".into())),
            Ending::Detach
        );
        assert_eq!(
            ending(&End::Server(CloseCode::Away, "server shutting down".into())),
            Ending::Leave
        );
        assert_eq!(
            ending(&End::Server(CloseCode::Policy, "x".into())),
            Ending::Leave
        );
    }
}
