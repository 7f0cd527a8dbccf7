//! Joins of named rooms racing with departures, against a real server over real sockets (README
//! "Named rooms", the order of events; `rooms-protocol.md` "Events": `joined` reaches every other
//! peer when a peer joins, `left` every remaining peer when one's connection ends).
mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// `--max-peers 2`: O is in the room, X joins, J connects and X goes 0-4 ms later. However the
/// race falls, O never hears of J before it has heard X leave (no three people in a room of
/// two), and J never hears of X, whom it was not told was there (README "Named rooms").
#[test]
fn a_member_that_died_is_announced_gone_before_the_next_joined() {
    run(async {
        let server = server();
        let (mut admitted, mut refused) = (0, 0);
        for attempt in 0..100u64 {
            let room = format!("race-{attempt}");
            let mut o = RoomPeer::join(&server, &room).await;
            let x = RoomPeer::join(&server, &room).await;
            assert_eq!(o.expect_event("joined").await, json!({ "peer_id": x.id }));
            let x_id = x.id.clone();
            let path = format!("/socket/{room}");
            let connect = Client::connect(server.addr(), &path);
            let leave = async move {
                // Jitter to land X's end on either side of J's join, not a synchronisation.
                async_io::Timer::after(Duration::from_millis(attempt % 5)).await;
                if attempt % 2 == 0 {
                    drop(x.client); // the network goes
                } else {
                    x.client.close().await;
                }
            };
            let (mut j, ()) = futures_lite::future::zip(connect, leave).await;
            let first = j.recv_json().await;
            match first["event"].as_str() {
                Some("authenticated") => {
                    admitted += 1;
                    let j_id = first["data"]["peer_id"].as_str().unwrap_or_default();
                    assert_eq!(first["data"]["peers"], json!([o.id]), "try {attempt}");
                    assert_eq!(
                        o.recv_json().await,
                        json!({"event": "left", "data": {"peer_id": x_id}}),
                        "try {attempt}: X's left comes first"
                    );
                    assert_eq!(
                        o.recv_json().await,
                        json!({"event": "joined", "data": {"peer_id": j_id}}),
                        "try {attempt}"
                    );
                    // Nothing else reached J before this marker: no `left` of X.
                    o.send(json!({"event": "mark", "to": [j_id]})).await;
                    assert_eq!(j.recv_json().await["event"], "mark", "try {attempt}");
                }
                Some("error") => {
                    refused += 1;
                    assert_eq!(first["data"]["description"], "room_is_full");
                    assert_eq!(u16::from(j.expect_close().await), 4000);
                    assert_eq!(
                        o.recv_json().await,
                        json!({"event": "left", "data": {"peer_id": x_id}}),
                        "try {attempt}"
                    );
                }
                _ => panic!("try {attempt}: {first}"),
            }
            // And nothing more reached O: the next thing it sees is its own marker.
            o.send(json!({"event": "mark", "to": [o.id]})).await;
            assert_eq!(o.recv_json().await["event"], "mark", "try {attempt}");
            j.close().await;
            o.client.close().await;
        }
        eprintln!("J admitted {admitted} times, refused {refused} times");
        server.assert_clean().await;
    });
}
