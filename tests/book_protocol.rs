//! One test per row of the contract's message table (../shared/spec/rtcserver-protocol.md).
mod common;
use common::*;

#[test]
fn getroom_answers_a_fresh_number_byte_for_byte() {
    run(async {
        let s = server();
        let mut a = s.client().await;
        a.send(r#"{"type":"GETROOM","value":"","extra":[1,2]}"#)
            .await;
        let reply = a.recv_text().await;
        let n: u32 = reply[r#"{"type":"GETROOM","value":"#.len()..reply.len() - 1]
            .parse()
            .unwrap();
        assert_eq!(reply, format!(r#"{{"type":"GETROOM","value":{n}}}"#));
        assert!((1..=999_999).contains(&n));
        assert_eq!(s.handle.room_members(&rtcserver::RoomKey::Book(n)).len(), 1);
        a.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn enterroom_into_a_one_peer_room_joins_silently_and_relays_both_ways() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        a.send(r#"{"type":"answer","sdp":"x"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"answer","sdp":"x"}"#);
        assert_eq!(
            s.handle.room_members(&rtcserver::RoomKey::Book(room)).len(),
            2
        );
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn enterroom_refusals_answer_wrongroom() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        let mut c = s.client().await;
        // full (two peers)
        c.enter_refused(&room.to_string()).await;
        // unknown
        let unknown = if room == 1 { 2 } else { room - 1 };
        c.enter_refused(&unknown.to_string()).await;
        // malformed or missing value (the original crashed here)
        for bad in [
            "0", "-1", "1000000", "4.5", "null", "\"\"", "\"12a\"", "[1]", "{}",
        ] {
            c.enter_refused(bad).await;
        }
        c.send(r#"{"type":"ENTERROOM"}"#).await;
        assert_eq!(c.recv_text().await, r#"{"type":"WRONGROOM"}"#);
        // the sender's own room (the original crashed here too)
        a.enter_refused(&room.to_string()).await;
        // nothing changed: a and b still talk
        b.send(r#"{"type":"offer"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"offer"}"#);
        for client in [a, b, c] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn enterroom_into_an_empty_room_answers_wrongroom() {
    run(async {
        let s = server();
        let mut a = s.client().await;
        let room = a.get_room().await;
        a.close().await;
        s.assert_clean().await;
        let mut b = s.client().await;
        b.enter_refused(&room.to_string()).await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn enterroom_value_may_be_a_string_of_digits() {
    run(async {
        let s = server();
        let mut a = s.client().await;
        let mut b = s.client().await;
        let room = a.get_room().await;
        b.send(&format!(r#"{{"value":"{room}","type":"ENTERROOM"}}"#))
            .await;
        b.send(r#"{"type":"hello"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"hello"}"#);
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn every_other_object_is_relayed_verbatim() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        for frame in [
            r#"{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#,
            r#"{"type":"candidate","label":0,"id":"audio","candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host"}"#,
            r#"{"type":"CHATMSG","value":"héllo \u00e9 ☃"}"#,
            "{ \"type\" : \"spaced\" ,\n \"n\" : 1.50 }",
            r#"{"type":42}"#,
            r#"{"type":null,"x":1}"#,
            r#"{"no":"type"}"#,
            "{}",
            r#"{"type":"getroom"}"#,
        ] {
            a.send(frame).await;
            assert_eq!(b.recv_text().await, frame);
            b.send(frame).await;
            assert_eq!(a.recv_text().await, frame);
        }
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn relays_from_a_peer_alone_or_in_no_room_are_dropped() {
    run(async {
        let s = server();
        let mut a = s.client().await;
        a.send(r#"{"type":"lost","n":1}"#).await; // in no room
        let room = a.get_room().await;
        a.send(r#"{"type":"lost","n":2}"#).await; // alone in its room
        let mut b = s.client().await;
        b.send(r#"{"type":"lost","n":3}"#).await; // b in no room
        b.enter(room, &mut a).await; // a's next message is b's probe: nothing lost came first
        a.send(r#"{"type":"kept"}"#).await;
        assert_eq!(
            b.recv_text().await,
            r#"{"type":"kept"}"#,
            "a's earlier messages were not queued for b"
        );
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn a_peer_that_leaves_frees_its_place_and_the_other_is_told_nothing() {
    run(async {
        let s = server();
        let (mut a, b, room) = pair(&s).await;
        let b_id = peer_id_of(&s, &b).await;
        b.close().await;
        s.event(
            "b leaves the room",
            |e| matches!(e, rtcserver::Event::Left { peer, .. } if *peer == b_id),
        )
        .await;
        let mut c = s.client().await;
        c.enter(room, &mut a).await; // a received c's probe, and nothing about b before it
        c.send(r#"{"type":"offer"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"offer"}"#);
        a.close().await;
        c.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn one_room_per_peer_getroom_leaves_the_old_room() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        let second = b.get_room().await;
        assert_ne!(second, room);
        assert_eq!(
            s.handle.room_members(&rtcserver::RoomKey::Book(room)).len(),
            1
        );
        // the old room has one peer again, so it is joinable
        let mut c = s.client().await;
        c.enter(room, &mut a).await;
        // and b no longer hears it
        a.send(r#"{"type":"for-c"}"#).await;
        assert_eq!(c.recv_text().await, r#"{"type":"for-c"}"#);
        let mut d = s.client().await;
        d.enter(second, &mut b).await;
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn one_room_per_peer_enterroom_leaves_the_old_room() {
    run(async {
        let s = server();
        let mut a = s.client().await;
        let mut b = s.client().await;
        let room_a = a.get_room().await;
        let room_b = b.get_room().await;
        b.enter(room_a, &mut a).await;
        assert!(s
            .handle
            .room_members(&rtcserver::RoomKey::Book(room_b))
            .is_empty());
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn the_signaling_path_is_the_same_endpoint() {
    run(async {
        let s = server();
        let mut a = Client::connect(s.addr(), "/signaling").await;
        let mut b = Client::connect(s.addr(), "/").await;
        let room = a.get_room().await;
        b.enter(room, &mut a).await;
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn x_forwarded_for_names_the_client_behind_trusted_proxies() {
    run(async {
        let s = server_with(|c| {
            c.trusted_proxies = "127.0.0.1/32,10.0.0.0/8".parse().expect("blocks");
        });
        let a = Client::connect_with(
            s.addr(),
            "/",
            &[("X-Forwarded-For", "203.0.113.7, 10.0.0.1")],
        )
        .await;
        s.event(
            "Connected with the forwarded address",
            |e| matches!(e, rtcserver::Event::Connected { client, .. } if client == "203.0.113.7"),
        )
        .await;
        a.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn pings_are_answered_and_binary_frames_ignored() {
    run(async {
        use async_tungstenite::tungstenite::Message;
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        a.ws.send(Message::Binary(vec![1, 2, 3].into()))
            .await
            .unwrap();
        a.ws.send(Message::Ping(b"p".to_vec().into()))
            .await
            .unwrap();
        let pong = within(WAIT, "a pong", futures_lite::StreamExt::next(&mut a.ws)).await;
        let Some(Ok(Message::Pong(pong))) = pong else {
            panic!("expected the pong first, got {pong:?}");
        };
        assert_eq!(&pong[..], b"p");
        a.send(r#"{"type":"after-binary"}"#).await;
        assert_eq!(
            b.recv_text().await,
            r#"{"type":"after-binary"}"#,
            "the binary frame was not relayed"
        );
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}
