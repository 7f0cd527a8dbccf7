//! Resume on `/socket/:room` (docs/rooms-protocol.md, "Resume"), black-box over real sockets.
mod common;
#[allow(unused_imports)]
use common::resume::resume_raw;
use common::resume::{close_code, Outcome, ResumablePeer};
use common::{run, RoomPeer};
use serde_json::json;
use std::time::Duration;

/// A server whose rooms are started on demand and hold up to 8 peers.
fn rooms_server() -> common::TestServer {
    common::server_with(|c| c.default_max_peers = 8)
}

/// Acceptance 1: B streams 1,000 numbered messages to A; A's TCP connection is reset at
/// message 300; A resumes 2 s later and gets all 1,000 exactly once, in order; C, in the same
/// room, sees no `left` and no `joined` for it.
#[test]
fn a_reset_peer_resumes_and_gets_every_message_once_in_order() {
    run(async {
        let server = rooms_server();
        let mut a = ResumablePeer::join(&server, "call").await;
        let mut b = RoomPeer::join(&server, "call").await;
        let mut c = RoomPeer::join(&server, "call").await;
        assert_eq!(a.expect_event("joined").await["peer_id"], b.id);
        assert_eq!(a.expect_event("joined").await["peer_id"], c.id);
        b.expect_event("joined").await;
        for n in 0..1000 {
            b.send(json!({"event": "n", "data": n, "to": [a.id]})).await;
        }
        let mut next = 0;
        while next < 300 {
            let m = a.recv_json().await;
            assert_eq!(m["data"], next, "{m}");
            assert_eq!(m["from"], b.id);
            next += 1;
        }
        a.reset();
        async_io::Timer::after(Duration::from_secs(2)).await;
        let mut a = a.resumed().await;
        while next < 1000 {
            let m = a.recv_json().await;
            assert_eq!(m["event"], "n", "{m}");
            assert_eq!(m["data"], next, "{m}");
            next += 1;
        }
        // C heard nothing of A's drop: the next thing it gets is B's marker.
        b.send(json!({"event": "marker", "to": [c.id]})).await;
        let m = c.recv_json().await;
        assert_eq!(m["event"], "marker", "C got {m} before the marker");
        // A resumed peer is a member as before: it sends, and B gets it from A's id.
        a.send(json!({"event": "back", "to": [b.id]})).await;
        let m = b.recv_json().await;
        assert_eq!(
            (m["event"].as_str(), m["from"].as_str()),
            (Some("back"), Some(a.id.as_str()))
        );
        a.conn().ws.close(None).await.expect("close");
        let left = b.expect_event("left").await;
        assert_eq!(
            left,
            json!({"peer_id": a.id}),
            "a close 1000 is a plain leave"
        );
        assert_eq!(c.expect_event("left").await["peer_id"], a.id);
        drop((b, c));
        server.assert_clean().await;
    });
}

/// Acceptance 2: A's old connection is still open when A resumes: the old one gets 4001
/// `replaced`, the new one every frame.
#[test]
fn a_resume_replaces_a_connection_still_open_with_4001() {
    run(async {
        let server = rooms_server();
        let mut a = ResumablePeer::join(&server, "half").await;
        let mut b = RoomPeer::join(&server, "half").await;
        a.expect_event("joined").await;
        for n in 0..10 {
            b.send(json!({"event": "n", "data": n, "to": [a.id]})).await;
        }
        for n in 0..4 {
            assert_eq!(a.recv_json().await["data"], n);
        }
        let mut old = a.take_connection().expect("connected");
        let mut a = a.resumed().await;
        assert_eq!(
            close_code(&mut old).await,
            4001,
            "the old connection is replaced"
        );
        for n in 4..10 {
            assert_eq!(a.recv_json().await["data"], n);
        }
        b.send(json!({"event": "n", "data": 10, "to": [a.id]}))
            .await;
        assert_eq!(a.recv_json().await["data"], 10, "live traffic follows");
        a.conn().ws.close(None).await.expect("close");
        assert_eq!(b.expect_event("left").await["peer_id"], a.id);
        drop(b);
        server.assert_clean().await;
    });
}

/// Acceptance 4: 20 resumes in a row of one session, each with the token the last one gave;
/// a token already rotated out fails with `unknown`.
#[test]
fn twenty_resumes_in_a_row_rotate_the_token_and_an_old_one_fails() {
    run(async {
        let server = rooms_server();
        let mut a = ResumablePeer::join(&server, "rotate").await;
        let mut b = RoomPeer::join(&server, "rotate").await;
        a.expect_event("joined").await;
        let first_token = a.token.clone();
        let mut tokens = vec![first_token.clone()];
        for n in 0..20 {
            b.send(json!({"event": "n", "data": n, "to": [a.id]})).await;
            assert_eq!(a.recv_json().await["data"], n);
            a.reset();
            a = a.resumed().await;
            assert!(
                !tokens.contains(&a.token),
                "a token is never handed out twice"
            );
            tokens.push(a.token.clone());
            // The first frame on the new connection retires the token before the rotation.
            a.ack().await;
        }
        let peer = a.id.clone();
        let room = a.room.clone();
        let addr = a.addr;
        let outcome = ResumablePeer {
            client: None,
            id: peer.clone(),
            token: String::new(),
            window_ms: a.window_ms,
            last_seq: a.last_seq,
            room,
            addr,
            headers: Vec::new(),
        }
        .resume_as(&peer, &first_token, a.last_seq)
        .await;
        match outcome {
            Outcome::Failed(reason, code) => assert_eq!((reason.as_str(), code), ("unknown", 4002)),
            Outcome::Resumed(_) => panic!("a rotated token resumed the session"),
        }
        // The failed attempt did not disturb the session.
        b.send(json!({"event": "n", "data": 20, "to": [a.id]}))
            .await;
        assert_eq!(a.recv_json().await["data"], 20);
        a.conn().ws.close(None).await.expect("close");
        b.expect_event("left").await;
        drop(b);
        server.assert_clean().await;
    });
}
