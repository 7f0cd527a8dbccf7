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
