//! What a named-rooms client may send, and what it is told when it sends what it may not
//! (README "Named rooms: `/socket/<room>`", the list of choices where the contract is silent),
//! against a real server over real sockets.
mod common;

use common::*;
use serde_json::json;

/// A client message named like one of the server's events would pass for the server's own
/// (a forged `error` `room_is_full` to `"all"` ends a call on the demo page): each of the four
/// is answered `error` `invalid_message`, reaches nobody, and the connection stays.
#[test]
fn a_client_cannot_send_the_servers_events() {
    run(async {
        let server = server();
        let mut a = RoomPeer::join(&server, "forge").await;
        let mut b = RoomPeer::join(&server, "forge").await;
        a.expect_event("joined").await;
        for name in ["left", "joined", "error", "authenticated"] {
            for to in [json!("all"), json!([b.id])] {
                a.send(json!({
                    "event": name,
                    "data": {"peer_id": a.id, "description": "room_is_full"},
                    "to": to,
                }))
                .await;
                assert_eq!(
                    a.expect_event("error").await,
                    json!({"description": "invalid_message"}),
                    "{name} to {to}"
                );
            }
        }
        // Nothing reached b: the marker is the next thing it sees.
        a.send(json!({"event": "mark", "to": [b.id]})).await;
        assert_eq!(b.recv_json().await["event"], "mark");
        // Names that merely look alike are the clients' to use.
        for name in ["Left", "errors", "joined ", "leave"] {
            a.send(json!({"event": name, "to": [b.id]})).await;
            assert_eq!(b.recv_json().await["event"], name);
        }
        assert_eq!(server.handle.stats().bad_input_closes, 0);
        for p in [a, b] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}

/// `to` names `n` ids: `first`, then made-up ones.
fn addressed(first: &str, n: usize) -> serde_json::Value {
    let mut to = vec![first.to_owned()];
    to.extend((1..n).map(|i| (10_000 + i).to_string()));
    json!({"event": "x", "to": to})
}

/// A `to` list names at most max(64, the room's `max_peers`) ids (README "Named rooms", the
/// `to` cap): at the bound the message goes out (the made-up ids named back as `unknown_peer`),
/// one more is `invalid_message` and reaches nobody.
#[test]
fn to_names_at_most_64_ids_or_max_peers() {
    run(async {
        let server = server_with(|c| {
            c.rooms = vec![rtcserver::hooks::RoomContext {
                name: "big".into(),
                max_peers: 100,
                metadata: serde_json::Value::Null,
                configured: true,
            }]
        });
        for (room, bound) in [("small", 64), ("big", 100)] {
            let mut a = RoomPeer::join(&server, room).await;
            let mut b = RoomPeer::join(&server, room).await;
            a.expect_event("joined").await;
            a.send(addressed(&b.id, bound)).await;
            assert_eq!(b.expect_event("x").await, serde_json::Value::Null);
            let error = a.expect_event("error").await;
            assert_eq!(error["description"], "unknown_peer");
            assert_eq!(error["peers"].as_array().map(Vec::len), Some(bound - 1));
            a.send(addressed(&b.id, bound + 1)).await;
            assert_eq!(
                a.expect_event("error").await,
                json!({"description": "invalid_message"}),
                "{room}: {} ids",
                bound + 1
            );
            a.send(json!({"event": "mark", "to": [b.id]})).await;
            assert_eq!(b.recv_json().await["event"], "mark", "{room}");
            for p in [a, b] {
                p.client.close().await;
            }
        }
        server.assert_clean_with_rooms(1).await;
    });
}

/// A message naming 80,000 ids (640 KB) is refused at once, not after seconds of CPU spent
/// matching each id against the others, and the sender's connection goes on.
#[test]
fn a_huge_to_list_is_refused_promptly_and_the_connection_stays() {
    run(async {
        let server = server();
        let mut a = RoomPeer::join(&server, "huge").await;
        let mut b = RoomPeer::join(&server, "huge").await;
        a.expect_event("joined").await;
        let text = addressed(&b.id, 80_000).to_string();
        assert!(text.len() < 1 << 20, "under the message size limit");
        let start = std::time::Instant::now();
        a.client.send(&text).await;
        assert_eq!(
            a.expect_event("error").await,
            json!({"description": "invalid_message"})
        );
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
        a.send(json!({"event": "after", "to": [b.id]})).await;
        assert_eq!(b.recv_json().await["event"], "after");
        b.send(json!({"event": "back", "to": [a.id]})).await;
        assert_eq!(a.recv_json().await["event"], "back");
        for p in [a, b] {
            p.client.close().await;
        }
        server.assert_clean().await;
    });
}
