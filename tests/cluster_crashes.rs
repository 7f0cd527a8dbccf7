//! The tree's crash guarantees hold on every node of a cluster (docs/cluster.md, "What stays
//! the same"): crashing a room that spans nodes, or a node's registry, loses nothing and tells
//! nobody anything.
mod common;
use common::admin::post;
use common::cluster::{book_pair, stop_all, Node, Redis};
use common::{run, Client};
use serde_json::json;
use std::net::SocketAddr;

async fn crash(admin: SocketAddr, target: &str) {
    post(admin, &format!("/crash?target={target}"), "")
        .await
        .expect(200);
}

/// 1,000 numbered messages from `sender` to `receiver`, one of `crashes` every 200.
async fn numbered_with_crashes(
    sender: &mut Client,
    receiver: &mut Client,
    crashes: &[(SocketAddr, &str)],
) {
    let send = async {
        for i in 0..1000 {
            if i % 200 == 100 {
                let (admin, target) = crashes[(i / 200) % crashes.len()];
                crash(admin, target).await;
            }
            sender
                .send(&format!(r#"{{"type":"candidate","seq":{i}}}"#))
                .await;
        }
    };
    let receive = async {
        for i in 0..1000 {
            assert_eq!(
                receiver.recv_text().await,
                format!(r#"{{"type":"candidate","seq":{i}}}"#)
            );
        }
    };
    futures_lite::future::zip(send, receive).await;
}

/// 1,000 numbered messages each way across nodes while the room is crashed on both nodes and
/// both registries are crashed: each arrives once, in order.
#[test]
fn crashing_a_spanning_book_room_and_the_registries_loses_nothing() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a");
    let b = Node::start(&redis, "b");
    run(async {
        let (mut caller, mut callee, room) = book_pair(&a, &b).await;
        let target = format!("room:{room}");
        let crashes = [
            (a.admin, target.as_str()),
            (b.admin, target.as_str()),
            (a.admin, "registry"),
            (b.admin, "registry"),
        ];
        numbered_with_crashes(&mut caller, &mut callee, &crashes).await;
        numbered_with_crashes(&mut callee, &mut caller, &crashes).await;
        caller.close().await;
        callee.close().await;
    });
    stop_all(&redis, [a, b]);
}

/// A named room on two nodes, crashed on each: its members hear no `left` or `joined`, and
/// messages across keep flowing in order.
#[test]
fn crashing_a_spanning_named_room_tells_nobody_anything() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a");
    let b = Node::start(&redis, "b");
    run(async {
        let mut pa = Client::connect(a.addr, "/socket/c").await;
        pa.expect_event("authenticated").await;
        let mut pb = Client::connect(b.addr, "/socket/c").await;
        let idb = pb.expect_event("authenticated").await["peer_id"].clone();
        assert_eq!(pa.expect_event("joined").await["peer_id"], idb);
        for (round, admin) in [a.admin, b.admin, a.admin].into_iter().enumerate() {
            crash(admin, "named:c").await;
            for i in 0..50 {
                let m = json!({"event": "n", "data": {"round": round, "i": i}, "to": "all"});
                pa.send(&m.to_string()).await;
                pb.send(&m.to_string()).await;
            }
            for p in [&mut pa, &mut pb] {
                for i in 0..50 {
                    let m = p.recv_json().await;
                    assert_eq!(m["event"], "n", "nothing but the messages: {m}");
                    assert_eq!(
                        (m["data"]["round"].as_u64(), m["data"]["i"].as_u64()),
                        (Some(round as u64), Some(i))
                    );
                }
            }
        }
        pa.close().await;
        pb.close().await;
    });
    stop_all(&redis, [a, b]);
}
