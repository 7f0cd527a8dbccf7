//! Fault rules on the server's own replies (docs/faults.md, "The server's replies"): `GETROOM`'s
//! answer and `WRONGROOM` on the book endpoint, `authenticated` and `error` on `/socket/:room`,
//! are messages `from: "server"` like a room's `joined` and `left`.
mod common;
use common::fault_checks::*;
use common::*;
use serde_json::json;
use std::time::Instant;

/// A late `GETROOM` answer and a doubled `WRONGROOM`; a control pair in room #2 gets both at
/// once and once.
#[test]
fn getroom_and_wrongroom_replies_obey_the_rules() {
    run(async {
        let s = server();
        add_rule(
            &s,
            json!({"name": "late-room", "action": "delay", "params": {"ms": 300},
                   "match": {"endpoint": "book", "room": "#1", "from": "server", "type": "GETROOM"}}),
        )
        .await;
        add_rule(
            &s,
            json!({"name": "again", "action": "duplicate",
                   "match": {"endpoint": "book", "room": "777", "from": "server", "type": "WRONGROOM"}}),
        )
        .await;
        let mut a = s.client().await;
        let asked = Instant::now();
        let room = a.get_room().await;
        let took = asked.elapsed();
        assert!(
            took >= NOT_DELAYED && took < NOT_DELAYED + SLACK,
            "the GETROOM answer took {took:?}"
        );
        // Room 777 does not exist: WRONGROOM twice, then nothing more.
        let mut b = s.client().await;
        b.send(r#"{"type":"ENTERROOM","value":777}"#).await;
        for _ in 0..2 {
            assert_eq!(b.recv_text().await, r#"{"type":"WRONGROOM"}"#);
        }
        // The rules scope holds: b still joins room #1, and the call relays both ways.
        b.enter(room, &mut a).await;
        a.send(r#"{"type":"offer"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"offer"}"#);
        let (mut c, mut d, _) = pair(&s).await;
        let mut e = s.client().await;
        e.send(r#"{"type":"ENTERROOM","value":778}"#).await;
        assert_eq!(e.recv_text().await, r#"{"type":"WRONGROOM"}"#);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[0]["rule"], "late-room");
        assert_eq!(log[0]["key"], "book/#1/server>#1/downstream");
        assert_eq!(log[0]["type"], "GETROOM");
        assert_eq!(log[0]["index"], 1);
        assert_eq!(log[1]["rule"], "again");
        // Outside every room: room #0, the receiver by its peer id.
        let key = log[1]["key"].as_str().expect("a key");
        assert!(
            key.starts_with("book/#0/server>") && key.ends_with("/downstream"),
            "{key}"
        );
        assert_eq!(log[1]["type"], "WRONGROOM");
        assert_eq!(injected_metric(&s, "late-room", "delay").await, 1);
        assert_eq!(injected_metric(&s, "again", "duplicate").await, 1);
        // e's WRONGROOM came once: the next frame is its own GETROOM answer.
        e.get_room().await;
        for client in [a, b, c, d, e] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// A late `authenticated` (the peer is a member meanwhile) and a dropped `error`.
#[test]
fn authenticated_and_error_replies_obey_the_rules() {
    run(async {
        let s = server();
        add_rule(
            &s,
            json!({"name": "late-welcome", "action": "delay", "params": {"ms": 300},
                   "match": {"endpoint": "rooms", "room": "slow", "from": "server",
                             "type": "authenticated"}}),
        )
        .await;
        add_rule(
            &s,
            json!({"name": "mute", "action": "drop",
                   "match": {"endpoint": "rooms", "from": "server", "type": "error",
                             "field": {"/data/description": "invalid_message"}}}),
        )
        .await;
        let asked = Instant::now();
        let mut a = RoomPeer::join(&s, "slow").await;
        let took = asked.elapsed();
        assert!(
            took >= NOT_DELAYED && took < NOT_DELAYED + SLACK,
            "authenticated took {took:?}"
        );
        // Another room's welcome is not late.
        let asked = Instant::now();
        let mut b = RoomPeer::join(&s, "quick").await;
        assert!(asked.elapsed() < NOT_DELAYED, "{:?}", asked.elapsed());
        // The invalid message's error is dropped: the next thing `a` gets is its own mark.
        a.client.send("not json").await;
        a.send(json!({"event": "mark", "to": [a.id]})).await;
        assert_eq!(a.recv_json().await["event"], "mark");
        // An error the rule does not select still comes.
        b.send(json!({"event": "x", "to": ["12345"]})).await;
        assert_eq!(b.expect_event("error").await["description"], "unknown_peer");
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[0]["key"], "rooms/#1/server>#1/downstream");
        assert_eq!(log[0]["type"], "authenticated");
        assert_eq!(log[1]["rule"], "mute");
        assert_eq!(log[1]["type"], "error");
        assert_eq!(injected_metric(&s, "mute", "drop").await, 1);
        for p in [a, b] {
            p.client.close().await;
        }
        s.assert_clean().await;
    });
}
