//! The hooks' promises at the edges of a peer's life (README, "Named rooms: hooks"): every peer
//! that `on_init` admitted hears `on_terminate` once, a crash included, and a refusal of any
//! length closes with a valid close frame.
mod common;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use common::*;
use futures_lite::StreamExt;
use rtcserver::auth::Accounts;
use rtcserver::hooks::{
    Action, AuthData, PeerHooks, Refusal, RoomContext, RoomHooks, TerminateReason,
};
use rtcserver::rooms_protocol::RoomMessage;
use rtcserver::{Config, CrashTarget, Event, PeerId};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Records every `on_init` and `on_terminate`; panics on a message whose event is "boom".
#[derive(Clone, Default)]
struct Bookkeeping {
    log: Arc<Mutex<Vec<(PeerId, String)>>>,
}

impl Bookkeeping {
    fn ends_of(&self, peer: PeerId) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .filter(|(p, what)| *p == peer && what != "init")
            .map(|(_, what)| what.clone())
            .collect()
    }
}

impl PeerHooks for Bookkeeping {
    fn on_init(&self, auth: &mut AuthData, _accounts: &Accounts) -> Result<(), Refusal> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push((auth.peer_id, "init".into()));
        Ok(())
    }

    fn on_receive(&self, _peer: &AuthData, message: RoomMessage) -> Action<RoomMessage> {
        assert_ne!(message.event, "boom", "a hook that panics");
        Action::Forward(message)
    }

    fn on_terminate(&self, peer: &AuthData, reason: &TerminateReason) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push((peer.peer_id, format!("{reason:?}")));
    }
}

async fn ended(server: &TestServer, id: PeerId) {
    server
        .event(
            "the peer's end",
            |e| matches!(e, Event::Disconnected { peer } if *peer == id),
        )
        .await;
}

#[test]
fn on_terminate_hears_of_every_end_a_crash_included() {
    run(async {
        let hooks = Bookkeeping::default();
        let server = server_built(Config::ephemeral(), |s| s.peer_hooks(hooks.clone()));
        let crashed_reason = format!(
            "{:?}",
            TerminateReason::Server(1011, "internal error".into())
        );

        // Crashed by the admin API.
        let mut a = RoomPeer::join(&server, "t").await;
        let id: PeerId = a.id.parse().expect("an id");
        server.handle.crash(&CrashTarget::Peer(id)).expect("crash");
        assert_eq!(a.client.expect_close().await, CloseCode::Error);
        ended(&server, id).await;
        assert_eq!(hooks.ends_of(id), std::slice::from_ref(&crashed_reason));

        // Crashed by its own hook.
        let mut b = RoomPeer::join(&server, "t").await;
        let id: PeerId = b.id.parse().expect("an id");
        b.send(json!({"event": "boom"})).await;
        assert_eq!(b.client.expect_close().await, CloseCode::Error);
        ended(&server, id).await;
        assert_eq!(hooks.ends_of(id), [crashed_reason]);

        // An ordinary close, once.
        let c = RoomPeer::join(&server, "t").await;
        let id: PeerId = c.id.parse().expect("an id");
        c.client.close().await;
        ended(&server, id).await;
        assert_eq!(
            hooks.ends_of(id),
            [format!("{:?}", TerminateReason::Closed)]
        );
        server.assert_clean().await;
    });
}

/// Refuses every join with a reason of `len` bytes of 'é' (2 bytes each) and 'x'.
struct LongRefusal(usize);

impl RoomHooks for LongRefusal {
    fn on_join(&self, _: &RoomContext, _: &[PeerId], _: &AuthData) -> Result<(), Refusal> {
        let odd = if self.0 % 2 == 1 { "x" } else { "" };
        Err(Refusal::new(format!("{odd}{}", "é".repeat(self.0 / 2))))
    }
}

#[test]
fn a_refusal_of_any_length_closes_with_4000_and_keeps_its_text_in_the_error() {
    for len in [123, 124, 201] {
        run(async {
            let server = server_built(Config::ephemeral(), |s| s.room_hooks(LongRefusal(len)));
            let mut client = Client::connect(server.addr(), "/socket/r").await;
            let error = client.expect_event("error").await;
            let reason = error["description"].as_str().expect("a description");
            assert_eq!(reason.len(), len, "the error keeps the whole reason");
            let frame = within(WAIT, "the close frame", async {
                loop {
                    match client.ws.next().await {
                        Some(Ok(Message::Close(frame))) => return frame,
                        Some(Ok(_)) => {}
                        other => panic!("no valid close frame, but {other:?}"),
                    }
                }
            })
            .await
            .expect("a close frame with a code");
            assert_eq!(u16::from(frame.code), 4000);
            assert!(frame.reason.len() <= 123, "{} bytes", frame.reason.len());
            assert!(reason.starts_with(frame.reason.as_str()));
            server.assert_clean().await;
        });
    }
}
