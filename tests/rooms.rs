//! The named-rooms endpoint `/socket/:room`, row by row of `rooms-protocol.md`, against a real
//! server over real sockets.
mod common;

use common::*;
use rtcserver::auth::{Accounts, User};
use rtcserver::hooks::{Action, AuthData, PeerHooks, Refusal, RoomContext, RoomHooks};
use rtcserver::rooms_protocol::RoomMessage;
use rtcserver::{Config, CrashTarget, Event, PeerId, RoomKey};
use serde_json::json;

fn room(name: &str, max_peers: usize) -> RoomContext {
    RoomContext {
        name: name.into(),
        max_peers,
        metadata: serde_json::Value::Null,
        configured: true,
    }
}

#[test]
fn authenticated_names_the_peers_already_in_and_joined_reaches_exactly_the_others() {
    run(async {
        let server = server_with(|c| c.default_max_peers = 3);
        let mut a = RoomPeer::join(&server, "lobby").await;
        assert!(a.found.is_empty());
        assert!(a.id.parse::<u64>().is_ok(), "{}", a.id);
        let mut b = RoomPeer::join(&server, "lobby").await;
        assert_eq!(b.found, std::slice::from_ref(&a.id));
        assert_ne!(a.id, b.id);
        assert_eq!(a.expect_event("joined").await, json!({ "peer_id": b.id }));
        let mut c = RoomPeer::join(&server, "lobby/").await;
        let mut found = c.found.clone();
        found.sort();
        let mut want = vec![a.id.clone(), b.id.clone()];
        want.sort();
        assert_eq!(found, want);
        assert_eq!(a.expect_event("joined").await, json!({ "peer_id": c.id }));
        assert_eq!(b.expect_event("joined").await, json!({ "peer_id": c.id }));
        // Nobody got anything else: a marker sent now is the next thing each one sees.
        c.send(json!({"event": "mark", "to": "all"})).await;
        assert_eq!(a.expect_event("mark").await, serde_json::Value::Null);
        assert_eq!(b.expect_event("mark").await, serde_json::Value::Null);
        a.send(json!({"event": "mark", "to": [c.id]})).await;
        assert_eq!(c.recv_json().await["from"], a.id.as_str());
        for p in [a, b, c] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn the_authenticated_event_is_byte_exact() {
    run(async {
        let server = server();
        let mut client = Client::connect(server.addr(), "/socket/x.y_z-1").await;
        let text = client.recv_text().await;
        let id = text
            .strip_prefix(r#"{"event":"authenticated","data":{"peer_id":""#)
            .and_then(|r| r.strip_suffix(r#"","room":"x.y_z-1","peers":[]}}"#))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "{text}");
        client.close().await;
        server.assert_clean().await;
    });
}

#[test]
fn left_reaches_every_remaining_peer_whatever_ended_the_connection() {
    run(async {
        let server = server_with(|c| c.default_max_peers = 4);
        let mut a = RoomPeer::join(&server, "r").await;
        let mut b = RoomPeer::join(&server, "r").await;
        a.expect_event("joined").await;
        let c = RoomPeer::join(&server, "r").await;
        let d = RoomPeer::join(&server, "r").await;
        for _ in 0..2 {
            a.expect_event("joined").await;
            b.expect_event("joined").await;
        }
        // A clean close, then a crash of the peer's process.
        let c_id = c.id.clone();
        c.client.close().await;
        assert_eq!(a.expect_event("left").await, json!({ "peer_id": c_id }));
        assert_eq!(b.expect_event("left").await, json!({ "peer_id": c_id }));
        let mut d = d;
        // The left of c reached d too.
        assert_eq!(d.expect_event("left").await, json!({ "peer_id": c_id }));
        let d_id: PeerId = d.id.parse().unwrap();
        server.handle.crash(&CrashTarget::Peer(d_id)).unwrap();
        assert_eq!(u16::from(d.client.expect_close().await), 1011);
        assert_eq!(a.expect_event("left").await, json!({ "peer_id": d.id }));
        assert_eq!(b.expect_event("left").await, json!({ "peer_id": d.id }));
        a.client.close().await;
        assert_eq!(b.expect_event("left").await, json!({ "peer_id": a.id }));
        b.client.close().await;
        server.assert_clean().await;
    });
}

#[test]
fn messages_carry_the_servers_from_and_only_the_four_fields() {
    run(async {
        let server = server_with(|c| c.default_max_peers = 3);
        let mut a = RoomPeer::join(&server, "m").await;
        let mut b = RoomPeer::join(&server, "m").await;
        let mut c = RoomPeer::join(&server, "m").await;
        a.expect_event("joined").await;
        a.expect_event("joined").await;
        b.expect_event("joined").await;
        a.client
            .send(&format!(
                r#"{{"event":"offer","data":{{"sdp":"v=0","n":[1,2]}},"to":["{}"],"from":"forged","extra":true}}"#,
                b.id
            ))
            .await;
        assert_eq!(
            b.client.recv_text().await,
            format!(
                r#"{{"event":"offer","data":{{"sdp":"v=0","n":[1,2]}},"from":"{}","to":["{}"]}}"#,
                a.id, b.id
            )
        );
        // c was not addressed: the next thing it sees is the message to "all".
        a.send(json!({"event": "hello", "data": 1, "to": "all"}))
            .await;
        for p in [&mut b, &mut c] {
            let m = p.recv_json().await;
            assert_eq!(
                m,
                json!({"event": "hello", "data": 1, "from": a.id, "to": "all"})
            );
        }
        // A message without `to` goes to all; the sender never gets its own broadcast.
        b.send(json!({"event": "no-to"})).await;
        assert_eq!(a.recv_json().await["to"], "all");
        assert_eq!(c.recv_json().await["from"], b.id.as_str());
        c.send(json!({"event": "mark", "to": [a.id]})).await;
        assert_eq!(a.expect_event("mark").await, serde_json::Value::Null);
        b.send(json!({"event": "mark", "to": [b.id]})).await;
        assert_eq!(
            b.recv_json().await["from"],
            b.id.as_str(),
            "a peer may address itself"
        );
        for p in [a, b, c] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn a_message_to_all_reaches_every_other_peer_exactly_once() {
    run(async {
        let server = server_with(|c| c.default_max_peers = 5);
        let mut peers = Vec::new();
        for _ in 0..5 {
            peers.push(RoomPeer::join(&server, "all").await);
        }
        // Take every joined event first.
        for (i, p) in peers.iter_mut().enumerate() {
            for _ in i + 1..5 {
                p.expect_event("joined").await;
            }
        }
        for n in 0..20 {
            peers[0]
                .send(json!({"event": "n", "data": n, "to": "all"}))
                .await;
        }
        let second = peers[1].id.clone();
        peers[0].send(json!({"event": "end", "to": [second]})).await;
        for p in &mut peers[2..] {
            for n in 0..20 {
                assert_eq!(p.expect_event("n").await, json!(n));
            }
        }
        for n in 0..20 {
            assert_eq!(peers[1].expect_event("n").await, json!(n));
        }
        peers[1].expect_event("end").await;
        for p in peers {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn unknown_addressees_are_named_back_and_the_others_still_get_the_message() {
    run(async {
        let server = server();
        let mut a = RoomPeer::join(&server, "u").await;
        let mut b = RoomPeer::join(&server, "u").await;
        a.expect_event("joined").await;
        // A peer of another room is as unknown as a made-up id.
        let mut other = RoomPeer::join(&server, "elsewhere").await;
        a.send(json!({"event": "x", "to": [b.id, "nope", other.id, "nope"]}))
            .await;
        assert_eq!(b.expect_event("x").await, serde_json::Value::Null);
        assert_eq!(
            a.expect_event("error").await,
            json!({"description": "unknown_peer", "peers": ["nope", other.id]})
        );
        // The connection is kept.
        a.send(json!({"event": "after", "to": [b.id]})).await;
        b.expect_event("after").await;
        other.send(json!({"event": "ping", "to": [a.id]})).await;
        other.expect_event("error").await;
        for p in [a, b, other] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn invalid_messages_get_an_error_and_keep_the_connection() {
    run(async {
        let server = server();
        let mut a = RoomPeer::join(&server, "i").await;
        let mut b = RoomPeer::join(&server, "i").await;
        a.expect_event("joined").await;
        for bad in [
            "not json",
            "[]",
            r#"{"data":1}"#,
            r#"{"event":7}"#,
            r#"{"event":"x","to":"everyone"}"#,
            r#"{"event":"x","to":[1]}"#,
        ] {
            a.client.send(bad).await;
            assert_eq!(
                a.expect_event("error").await,
                json!({"description": "invalid_message"}),
                "{bad}"
            );
        }
        a.send(json!({"event": "fine"})).await;
        b.expect_event("fine").await;
        assert_eq!(server.handle.stats().bad_input_closes, 0);
        for p in [a, b] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn a_full_room_refuses_the_next_peer_with_error_and_close_4000() {
    run(async {
        let server = server_with(|c| c.rooms = vec![room("trio", 3)]);
        let mut members = Vec::new();
        for _ in 0..3 {
            members.push(RoomPeer::join(&server, "trio").await);
        }
        let mut fourth = Client::connect(server.addr(), "/socket/trio").await;
        assert_eq!(
            fourth.expect_event("error").await,
            json!({"description": "room_is_full"})
        );
        assert_eq!(u16::from(fourth.expect_close().await), 4000);
        // An on-demand room has the default max_peers, 2.
        let _x = RoomPeer::join(&server, "duo").await;
        let _y = RoomPeer::join(&server, "duo").await;
        let mut z = Client::connect(server.addr(), "/socket/duo").await;
        z.expect_event("error").await;
        assert_eq!(u16::from(z.expect_close().await), 4000);
        // A place that frees up is taken again.
        let leaving = members.pop().unwrap();
        leaving.client.close().await;
        members[0].expect_event("joined").await;
        members[0].expect_event("joined").await;
        members[0].expect_event("left").await;
        members.push(RoomPeer::join(&server, "trio").await);
        drop((members, _x, _y));
        server.assert_clean_with_rooms(1).await;
    });
}

#[test]
fn bad_credentials_get_401_and_no_socket() {
    run(async {
        let server = server_with(|c| {
            c.accounts = Accounts {
                users: vec![User {
                    username: "alice".into(),
                    password: "wonderland".into(),
                }],
                tokens: vec!["t0k3n".into()],
            }
        });
        let upgrade = |extra: &str| {
            format!("GET /socket/secure HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{extra}\r\n")
        };
        for extra in [
            "",
            "Cookie: credentials={\"username\":\"alice\",\"password\":\"wrong\"}\r\n",
            "Cookie: credentials={\"username\":\"bob\",\"password\":\"wonderland\"}\r\n",
            "Cookie: credentials=garbage\r\n",
            "Authorization: Bearer t0k3\r\n",
            "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\n",
        ] {
            let answer = raw_http(server.addr(), &upgrade(extra)).await;
            assert!(answer.starts_with("HTTP/1.1 401 "), "{extra}: {answer}");
            assert!(answer.contains("WWW-Authenticate: Bearer"), "{answer}");
            assert!(
                !answer.contains("wonderland") && !answer.contains("t0k3"),
                "{answer}"
            );
        }
        assert!(
            server.handle.peers().iter().all(|p| p.client.is_none()),
            "no WebSocket was opened"
        );
        let cookie = r#"credentials={"username":"alice","password":"wonderland"}"#;
        let a = RoomPeer::join_with(&server, "secure", &[("cookie", cookie)]).await;
        let encoded =
            "credentials=%7B%22username%22%3A%22alice%22%2C%22password%22%3A%22wonderland%22%7D";
        let b = RoomPeer::join_with(&server, "other", &[("cookie", encoded)]).await;
        let c = RoomPeer::join_with(&server, "secure", &[("authorization", "Bearer t0k3n")]).await;
        assert_eq!(c.found, std::slice::from_ref(&a.id));
        for p in [a, b, c] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn unknown_rooms_are_404_without_auto_rooms_and_configured_rooms_stay() {
    run(async {
        let server = server_with(|c| {
            c.auto_rooms = false;
            c.rooms = vec![room("standup", 4)];
        });
        assert_eq!(
            server.handle.stats().rooms,
            1,
            "configured rooms start with the server"
        );
        let answer = raw_http(
            server.addr(),
            &format!("GET /socket/adhoc HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        let page = raw_http(server.addr(), "GET /adhoc HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 404 "), "{page}");
        let bad = raw_http(
            server.addr(),
            &format!("GET /socket/no%20spaces HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n"),
        )
        .await;
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let a = RoomPeer::join(&server, "standup").await;
        a.client.close().await;
        server.assert_clean_with_rooms(1).await;
        assert_eq!(
            server.handle.tree().children[2].children[0].id,
            "named:standup",
            "the empty configured room is still a child of rooms_sup"
        );
        let b = RoomPeer::join(&server, "standup").await;
        assert!(b.found.is_empty());
        b.client.close().await;
        server.assert_clean_with_rooms(1).await;
    });
}

#[test]
fn an_on_demand_room_stops_when_its_last_peer_leaves() {
    run(async {
        let server = server();
        let a = RoomPeer::join(&server, "brief").await;
        let key = RoomKey::Named("brief".into());
        assert_eq!(server.handle.stats().rooms, 1);
        a.client.close().await;
        server
            .event(
                "the room to stop",
                |e| matches!(e, Event::RoomStopped { room } if *room == key),
            )
            .await;
        // The name is free for a new room.
        let b = RoomPeer::join(&server, "brief").await;
        assert!(b.found.is_empty());
        b.client.close().await;
        server.assert_clean().await;
    });
}

#[test]
fn a_crashed_room_keeps_its_members_connected_with_the_same_ids() {
    run(async {
        let server = server_with(|c| c.default_max_peers = 3);
        let mut a = RoomPeer::join(&server, "sturdy").await;
        let mut b = RoomPeer::join(&server, "sturdy").await;
        a.expect_event("joined").await;
        let key = RoomKey::Named("sturdy".into());
        let ids_before = server.handle.room_members(&key);
        server
            .handle
            .crash(&"named:sturdy".parse().unwrap())
            .unwrap();
        server
            .event("the room's restart", |e| {
                matches!(e, Event::Supervision(supervisors::SupervisorEvent::Restarted { child, .. }) if child == "named:sturdy")
            })
            .await;
        assert_eq!(server.handle.room_members(&key), ids_before);
        // Messages flow, joins and leaves work, and the capacity still holds.
        a.send(json!({"event": "still-here", "to": [b.id]})).await;
        assert_eq!(b.recv_json().await["from"], a.id.as_str());
        let c = RoomPeer::join(&server, "sturdy").await;
        assert_eq!(c.found.len(), 2);
        a.expect_event("joined").await;
        b.expect_event("joined").await;
        let mut d = Client::connect(server.addr(), "/socket/sturdy").await;
        d.expect_event("error").await;
        c.client.close().await;
        a.expect_event("left").await;
        let restarts = server.handle.tree().children[2]
            .children
            .iter()
            .find(|c| c.id == "named:sturdy")
            .map(|c| c.restarts);
        assert_eq!(restarts, Some(1));
        for p in [a, b] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

/// A room whose `on_leave` always panics.
struct PanickyLeave;

impl RoomHooks for PanickyLeave {
    fn on_leave(&self, _room: &RoomContext, peer: PeerId) {
        panic!("on_leave of {peer} panics");
    }
}

/// README, "Named rooms": a room started on demand stops when its last peer leaves, even when
/// `on_leave` panics: the room restarts with no live member and stops (it used to live on,
/// empty, for ever). A member that leaves a room that still has others only costs a restart.
#[test]
fn an_on_demand_room_whose_on_leave_panics_still_stops_when_emptied() {
    run(async {
        let server = server_built(
            Config {
                default_max_peers: 3,
                ..Config::ephemeral()
            },
            |s| s.room_hooks(PanickyLeave),
        );
        let key = RoomKey::Named("fragile".into());
        let mut a = RoomPeer::join(&server, "fragile").await;
        let b = RoomPeer::join(&server, "fragile").await;
        a.expect_event("joined").await;
        b.client.close().await;
        assert_eq!(a.expect_event("left").await["peer_id"], b.id.as_str());
        server
            .event("the room's restart after on_leave's panic", |e| {
                matches!(e, Event::Supervision(supervisors::SupervisorEvent::Restarted { child, .. }) if child == "named:fragile")
            })
            .await;
        assert_eq!(server.handle.stats().rooms, 1, "a is still in it");
        a.client.close().await;
        server
            .event(
                "the emptied room to stop",
                |e| matches!(e, Event::RoomStopped { room } if *room == key),
            )
            .await;
        // The name is free for a new room.
        let c = RoomPeer::join(&server, "fragile").await;
        assert!(c.found.is_empty());
        c.client.close().await;
        server.assert_clean().await;
    });
}

/// Drops "spam", stamps what it forwards, and refuses peers named "mallory".
struct Moderated;

impl PeerHooks for Moderated {
    fn on_init(&self, auth: &mut AuthData, _accounts: &Accounts) -> Result<(), Refusal> {
        match auth.credentials.username() {
            Some("mallory") => Err(Refusal::new("banned")),
            name => {
                auth.metadata = json!({ "name": name.unwrap_or("anonymous") });
                Ok(())
            }
        }
    }

    fn on_receive(&self, _peer: &AuthData, m: RoomMessage) -> Action<RoomMessage> {
        if m.event == "spam" {
            Action::Ignore
        } else {
            Action::Forward(m)
        }
    }

    fn on_send(&self, peer: &AuthData, mut m: RoomMessage) -> Action<RoomMessage> {
        if m.event == "chat" {
            m.data = json!({ "text": m.data, "for": peer.metadata["name"] }).into();
        }
        Action::Forward(m)
    }
}

struct NoRedRoom;

impl RoomHooks for NoRedRoom {
    fn on_join(
        &self,
        room: &RoomContext,
        members: &[PeerId],
        _peer: &AuthData,
    ) -> Result<(), Refusal> {
        if room.name == "red" {
            return Err(Refusal::new("red_is_closed"));
        }
        rtcserver::hooks::DefaultRoom.on_join(room, members, _peer)
    }

    fn on_forward(&self, _room: &RoomContext, mut m: RoomMessage) -> Action<RoomMessage> {
        if m.event == "secret" {
            return Action::Ignore;
        }
        m.event = m.event.to_uppercase();
        Action::Forward(m)
    }
}

#[test]
fn hooks_drop_modify_and_refuse() {
    run(async {
        let server = server_built(Config::ephemeral(), |s| {
            s.peer_hooks(Moderated).room_hooks(NoRedRoom)
        });
        let cookie = |u: &str| format!(r#"credentials={{"username":"{u}","password":"x"}}"#);
        let answer = raw_http(
            server.addr(),
            &format!(
                "GET /socket/h HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Cookie: {}\r\n\r\n",
                cookie("mallory")
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
        let mut a = RoomPeer::join_with(&server, "h", &[("cookie", &cookie("ann"))]).await;
        let mut b = RoomPeer::join_with(&server, "h", &[("cookie", &cookie("ben"))]).await;
        a.expect_event("joined").await;
        a.send(json!({"event": "spam", "to": "all"})).await;
        a.send(json!({"event": "secret", "to": "all"})).await;
        a.send(json!({"event": "chat", "data": "hi", "to": "all"}))
            .await;
        // Dropped twice, then the chat: upper-cased by the room, not "chat" any more for on_send.
        assert_eq!(
            b.recv_json().await,
            json!({"event": "CHAT", "data": "hi", "from": a.id, "to": "all"})
        );
        let mut red = Client::connect(server.addr(), "/socket/red").await;
        assert_eq!(
            red.expect_event("error").await,
            json!({"description": "red_is_closed"})
        );
        assert_eq!(u16::from(red.expect_close().await), 4000);
        for p in [a, b] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn on_send_sees_what_reaches_its_peer() {
    run(async {
        let server = server_built(Config::ephemeral(), |s| s.peer_hooks(Moderated));
        let cookie = |u: &str| format!(r#"credentials={{"username":"{u}","password":"x"}}"#);
        let a = RoomPeer::join_with(&server, "s", &[("cookie", &cookie("ann"))]).await;
        let mut b = RoomPeer::join_with(&server, "s", &[("cookie", &cookie("ben"))]).await;
        let mut a = a;
        a.expect_event("joined").await;
        a.send(json!({"event": "chat", "data": "hi", "to": [b.id]}))
            .await;
        assert_eq!(
            b.expect_event("chat").await,
            json!({"text": "hi", "for": "ben"})
        );
        for p in [a, b] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

#[test]
fn book_and_named_peers_share_the_server_without_meeting() {
    run(async {
        let server = server();
        let (mut x, mut y, number) = pair(&server).await;
        let mut a = RoomPeer::join(&server, &number.to_string()).await;
        assert!(
            a.found.is_empty(),
            "named room {number} is not book room {number}"
        );
        x.send(r#"{"type":"offer","sdp":"v=0"}"#).await;
        assert_eq!(y.recv_text().await, r#"{"type":"offer","sdp":"v=0"}"#);
        a.send(json!({"event": "alone"})).await;
        let page = raw_http(server.addr(), "GET /standup HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
        assert!(page.contains("text/html"), "{page}");
        x.close().await;
        y.close().await;
        a.client.close().await;
        server.assert_clean().await;
    });
}
