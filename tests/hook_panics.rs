//! Hooks that panic (README "Named rooms", hooks): a panic costs at most one room restart and
//! the joiner that met it an `error` `room_crashed` and close 4000, never the server. Real
//! server, real sockets; the hooks come in through `rtcserver::Server`.
mod common;

use common::*;
use rtcserver::auth::Accounts;
use rtcserver::hooks::{AuthData, PeerHooks, Refusal, RoomContext, RoomHooks};
use rtcserver::{Config, Event, PeerId};
use serde_json::json;
use supervisors::SupervisorEvent;

fn start(build: impl FnOnce(rtcserver::Server) -> rtcserver::Server) -> TestServer {
    let handle = build(rtcserver::Server::new(Config::ephemeral()))
        .start()
        .expect("server starts");
    let events = handle.events();
    TestServer { handle, events }
}

/// Rooms whose name starts with `boom` panic in the hook named by the variant.
enum Boom {
    OnJoinOfSecond,
    OnInit,
}

impl RoomHooks for Boom {
    fn on_init(&self, room: &RoomContext, _members: &[PeerId]) {
        if matches!(self, Boom::OnInit) && room.name.starts_with("boom") {
            panic!("on_init of {} fails", room.name);
        }
    }

    fn on_join(
        &self,
        room: &RoomContext,
        members: &[PeerId],
        _peer: &AuthData,
    ) -> Result<(), Refusal> {
        if matches!(self, Boom::OnJoinOfSecond)
            && room.name.starts_with("boom")
            && !members.is_empty()
        {
            panic!("on_join of {} fails", room.name);
        }
        Ok(())
    }
}

struct BoomPeer;

impl PeerHooks for BoomPeer {
    fn parse_request(
        &self,
        request: &rtcserver::http::Request,
        room: &str,
    ) -> Result<rtcserver::hooks::ParsedRequest, Refusal> {
        if room.starts_with("boom-parse") {
            panic!("parse_request for {room} fails");
        }
        rtcserver::hooks::DefaultPeer.parse_request(request, room)
    }

    fn on_init(&self, auth: &mut AuthData, _accounts: &Accounts) -> Result<(), Refusal> {
        if auth.room.starts_with("boom") {
            panic!("peer on_init for {} fails", auth.room);
        }
        Ok(())
    }
}

/// Escalations seen so far on the event stream (none is the point).
fn escalations(server: &TestServer) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(e) = server.events.try_recv() {
        if let Event::Supervision(SupervisorEvent::Escalated { supervisor, reason }) = e {
            seen.push(format!("{supervisor}: {reason}"));
        }
    }
    seen
}

/// The joiner's view of a join that crashed its room.
async fn join_crashes(server: &TestServer, room: &str) {
    let mut j = Client::connect(server.addr(), &format!("/socket/{room}")).await;
    assert_eq!(
        j.expect_event("error").await,
        json!({"description": "room_crashed"})
    );
    assert_eq!(u16::from(j.expect_close().await), 4000);
}

/// The server still takes a new peer into a fresh room and relays.
async fn still_serves(server: &TestServer) {
    let mut a = RoomPeer::join(server, "calm").await;
    let mut b = RoomPeer::join(server, "calm").await;
    a.expect_event("joined").await;
    a.send(json!({"event": "hi", "to": [b.id]})).await;
    assert_eq!(b.expect_event("hi").await, serde_json::Value::Null);
    for p in [a, b] {
        p.client.close().await;
    }
}

#[test]
fn a_panicking_on_join_costs_its_room_one_restart_and_the_joiner_gets_room_crashed() {
    run(async {
        let server = start(|s| s.room_hooks(Boom::OnJoinOfSecond));
        let mut o = RoomPeer::join(&server, "boom").await;
        for _ in 0..4 {
            join_crashes(&server, "boom").await;
        }
        // The joiner hears of the crash before rooms_sup has restarted the room: wait for
        // the fourth restart itself (an escalation on the way fails the test).
        let fourth = server
            .event("the room's fourth restart", |e| match e {
                Event::Supervision(SupervisorEvent::Escalated { supervisor, reason }) => {
                    panic!("{supervisor} escalated: {reason}")
                }
                Event::Supervision(SupervisorEvent::Restarted {
                    child, restarts, ..
                }) => child == "named:boom" && *restarts >= 4,
                _ => false,
            })
            .await;
        drop(fourth);
        let rooms_sup = &server.handle.tree().children[2];
        assert_eq!(rooms_sup.restarts, 0, "rooms_sup never restarted");
        let room = rooms_sup.children.iter().find(|c| c.id == "named:boom");
        assert_eq!(room.map(|r| r.restarts), Some(4), "one restart per join");
        // The member saw nothing of it and its room still works.
        o.send(json!({"event": "mark", "to": [o.id]})).await;
        assert_eq!(o.recv_json().await["event"], "mark");
        still_serves(&server).await;
        assert_eq!(escalations(&server), Vec::<String>::new());
        o.client.close().await;
        server.assert_clean().await;
    });
}

#[test]
fn a_panicking_room_on_init_is_logged_and_the_room_serves_without_it() {
    run(async {
        let server = start(|s| s.room_hooks(Boom::OnInit));
        for attempt in 0..8 {
            let room = format!("boom-{attempt}");
            let mut a = RoomPeer::join(&server, &room).await;
            let mut b = RoomPeer::join(&server, &room).await;
            a.expect_event("joined").await;
            a.send(json!({"event": "hi", "to": [b.id]})).await;
            assert_eq!(b.expect_event("hi").await, serde_json::Value::Null);
            for p in [a, b] {
                p.client.close().await;
            }
        }
        assert_eq!(server.handle.tree().children[2].restarts, 0);
        still_serves(&server).await;
        assert_eq!(escalations(&server), Vec::<String>::new());
        server.assert_clean().await;
    });
}

/// A peer hook that panics before the upgrade (`on_init`, `parse_request`) is answered 500, as a
/// crash after the upgrade closes with 1011; the peer's process crashes (temporary: no restart).
#[test]
fn a_panicking_peer_hook_before_the_upgrade_answers_500_and_never_the_server() {
    run(async {
        let server = start(|s| s.peer_hooks(BoomPeer));
        for attempt in 0..8 {
            let hook = if attempt % 2 == 0 { "init" } else { "parse" };
            let answer = raw_http(
                server.addr(),
                &format!("GET /socket/boom-{hook}-{attempt} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n"),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 500 "), "{answer:?}");
        }
        still_serves(&server).await;
        assert_eq!(escalations(&server), Vec::<String>::new());
        server.assert_clean().await;
        let started = std::time::Instant::now();
        within(WAIT, "shutdown", server.handle.shutdown()).await;
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    });
}
