//! The book protocol across the nodes of a cluster (docs/cluster.md): separate node processes
//! on one redis-server of the test's own, loopback only.
mod common;
use common::cluster::{book_pair, stop_all, Node, Redis};
use common::{relay_numbered, run, within, Client, WAIT};

/// GETROOM on A, ENTERROOM on B, then 1,000 numbered messages each way: each arrives once, in
/// order; and nothing is left in Redis once the nodes are gone.
#[test]
fn a_room_spans_two_nodes_and_relays_in_order_both_ways() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a");
    let b = Node::start(&redis, "b");
    run(async {
        let (mut caller, mut callee, _) = book_pair(&a, &b).await;
        relay_numbered(&mut caller, &mut callee, 1000, |_| {}).await;
        relay_numbered(&mut callee, &mut caller, 1000, |_| {}).await;
        caller.close().await;
        callee.close().await;
    });
    stop_all(&redis, [a, b]);
}

/// 10 clients on 3 nodes race ENTERROOM into one room: exactly one gets in, 9 get WRONGROOM;
/// 200 times.
#[test]
fn racing_enterrooms_from_three_nodes_admit_exactly_one() {
    let redis = Redis::start();
    let nodes = [
        Node::start(&redis, "a"),
        Node::start(&redis, "b"),
        Node::start(&redis, "c"),
    ];
    run(async {
        let mut racers = Vec::new();
        for i in 0..10 {
            racers.push(Client::connect(nodes[i % 3].addr, "/").await);
        }
        for rep in 0..200 {
            let mut creator = Client::connect(nodes[rep % 3].addr, "/").await;
            let room = creator.get_room().await;
            let enter = format!(r#"{{"type":"ENTERROOM","value":{room}}}"#);
            let sends = racers.iter_mut().enumerate().map(|(i, r)| {
                let enter = enter.clone();
                async move {
                    r.send(&enter).await;
                    r.send(&format!(r#"{{"type":"probe","racer":{i}}}"#)).await;
                }
            });
            futures_util::future::join_all(sends).await;
            // The one that got in: its probe is the creator's first frame.
            let probe: serde_json::Value =
                serde_json::from_str(&creator.recv_text().await).expect("JSON");
            let winner = probe["racer"].as_u64().expect("a racer's probe") as usize;
            let mut refused = 0;
            for (i, r) in racers.iter_mut().enumerate() {
                if i == winner {
                    continue;
                }
                assert_eq!(r.recv_text().await, r#"{"type":"WRONGROOM"}"#, "rep {rep}");
                refused += 1;
            }
            // And the winner got no WRONGROOM: the creator's next frame is its first.
            creator.send(r#"{"type":"check"}"#).await;
            assert_eq!(
                racers[winner].recv_text().await,
                r#"{"type":"check"}"#,
                "rep {rep}"
            );
            assert_eq!(refused, 9);
            creator.close().await;
        }
        for r in racers {
            r.close().await;
        }
    });
    stop_all(&redis, nodes);
}

/// 1,000 GETROOMs spread over 3 nodes, numbers drawn from 1..=2000 (a node alone would clash
/// with the others in most runs): 1,000 distinct numbers.
#[test]
fn getrooms_on_three_nodes_give_distinct_numbers() {
    let redis = Redis::start();
    let nodes = [
        Node::start_with(&redis, "a", &["--max-room-number", "2000"]),
        Node::start_with(&redis, "b", &["--max-room-number", "2000"]),
        Node::start_with(&redis, "c", &["--max-room-number", "2000"]),
    ];
    run(async {
        let mut clients = Vec::new();
        let mut numbers = std::collections::HashSet::new();
        for i in 0..1000 {
            let mut c = Client::connect(nodes[i % 3].addr, "/").await;
            let n = within(WAIT, "GETROOM", c.get_room()).await;
            assert!(numbers.insert(n), "room {n} handed out twice (GETROOM {i})");
            clients.push(c);
        }
        assert_eq!(numbers.len(), 1000);
        for c in clients {
            c.close().await;
        }
    });
    stop_all(&redis, nodes);
}
