//! Named rooms across the nodes of a cluster, and what users see when a node goes
//! (docs/cluster.md): separate node processes on one redis-server of the test's own.
mod common;
use common::cluster::{stop_all, Node, Redis};
use common::{run, within, Client, WAIT};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Joins `/socket/<room>` on the node at `addr`: the client, its id, the members it was told of.
async fn join(addr: SocketAddr, room: &str) -> (Client, String, Vec<String>) {
    let mut c = Client::connect(addr, &format!("/socket/{room}")).await;
    let data = c.expect_event("authenticated").await;
    let id = data["peer_id"].as_str().expect("peer_id").to_owned();
    let peers = data["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p.as_str().expect("id").to_owned())
        .collect();
    (c, id, peers)
}

/// Members on three nodes: `authenticated` lists them all, `joined` and `left` reach every
/// node once, `to: [ids]` and `"all"` reach members wherever they are, in order, and an id
/// that is nowhere is `unknown_peer`.
#[test]
fn a_named_room_spans_three_nodes_as_one_room() {
    let redis = Redis::start();
    let nodes = [
        Node::start_with(&redis, "a", &["--max-peers", "10"]),
        Node::start_with(&redis, "b", &["--max-peers", "10"]),
        Node::start_with(&redis, "c", &["--max-peers", "10"]),
    ];
    run(async {
        let (mut pa, ida, found) = join(nodes[0].addr, "r").await;
        assert!(found.is_empty());
        let (mut pb, idb, found) = join(nodes[1].addr, "r").await;
        assert_eq!(found, std::slice::from_ref(&ida));
        assert_eq!(pa.expect_event("joined").await["peer_id"], idb);
        let (mut pc, idc, mut found) = join(nodes[2].addr, "r").await;
        found.sort();
        let mut want = vec![ida.clone(), idb.clone()];
        want.sort();
        assert_eq!(found, want, "authenticated lists the members of every node");
        assert_eq!(pa.expect_event("joined").await["peer_id"], idc);
        assert_eq!(pb.expect_event("joined").await["peer_id"], idc);

        // Addressed, across nodes, in order.
        for i in 0..200 {
            let m = json!({"event": "n", "data": {"i": i}, "to": [idc]});
            pa.send(&m.to_string()).await;
        }
        for i in 0..200 {
            let m = pc.recv_json().await;
            assert_eq!(
                (m["event"].as_str(), m["data"]["i"].as_u64()),
                (Some("n"), Some(i))
            );
            assert_eq!(m["from"], ida);
        }
        // "all" reaches the two other nodes once each.
        pb.send(&json!({"event": "hi", "data": {}, "to": "all"}).to_string())
            .await;
        for p in [&mut pa, &mut pc] {
            let m = p.recv_json().await;
            assert_eq!((m["event"].as_str(), &m["from"]), (Some("hi"), &json!(idb)));
        }
        // A peer that is nowhere.
        pa.send(&json!({"event": "x", "data": {}, "to": ["12345"]}).to_string())
            .await;
        let m = pa.recv_json().await;
        assert_eq!(m["event"], "error", "{m}");
        assert_eq!(m["data"]["description"], "unknown_peer", "{m}");
        assert_eq!(m["data"]["peers"], json!(["12345"]), "{m}");
        // A departure is told once on every other node.
        pc.close().await;
        for p in [&mut pa, &mut pb] {
            assert_eq!(p.expect_event("left").await["peer_id"], idc);
        }
        pa.send(&json!({"event": "after", "data": {}, "to": "all"}).to_string())
            .await;
        assert_eq!(
            pb.recv_json().await["event"],
            "after",
            "no second left before it"
        );
        pa.close().await;
        pb.close().await;
    });
    stop_all(&redis, nodes);
}

/// `max_peers` 4, 8 clients racing from 3 nodes: exactly 4 in, 4 `room_is_full`.
#[test]
fn max_peers_holds_across_nodes_under_a_race() {
    let redis = Redis::start();
    let nodes = [
        Node::start_with(&redis, "a", &["--max-peers", "4"]),
        Node::start_with(&redis, "b", &["--max-peers", "4"]),
        Node::start_with(&redis, "c", &["--max-peers", "4"]),
    ];
    run(async {
        for rep in 0..20 {
            let room = format!("race{rep}");
            let joins = (0..8).map(|i| {
                let addr = nodes[i % 3].addr;
                let path = format!("/socket/{room}");
                async move {
                    let mut c = Client::connect(addr, &path).await;
                    let first = c.recv_json().await;
                    (c, first)
                }
            });
            let results = futures_util::future::join_all(joins).await;
            let mut admitted = Vec::new();
            let mut full = 0;
            for (c, first) in results {
                match first["event"].as_str() {
                    Some("authenticated") => admitted.push(c),
                    Some("error") => {
                        assert_eq!(first["data"]["description"], "room_is_full", "{first}");
                        full += 1;
                    }
                    _ => panic!("unexpected first message {first}"),
                }
            }
            assert_eq!((admitted.len(), full), (4, 4), "rep {rep}");
            for c in admitted {
                c.close().await;
            }
        }
    });
    stop_all(&redis, nodes);
}

/// Reads until `want` `left`s arrived (ids returned), failing on anything else but `joined`.
async fn lefts(c: &mut Client, want: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < want {
        let m = c.recv_json().await;
        match m["event"].as_str() {
            Some("left") => ids.push(m["data"]["peer_id"].as_str().expect("id").to_owned()),
            Some("joined") => {}
            _ => panic!("unexpected {m}"),
        }
    }
    ids
}

/// `kill -9` of node B with 10 named peers in rooms shared with A: each of A's peers hears one
/// `left` per lost peer within 8 s, and nothing more; B's book room is free again.
#[test]
fn a_killed_node_s_peers_leave_once_within_eight_seconds() {
    let redis = Redis::start();
    let a = Node::start_with(&redis, "a", &["--max-peers", "10"]);
    let mut b = Node::start_with(&redis, "b", &["--max-peers", "10"]);
    run(async {
        // Two rooms, one peer of A in each; B holds 5 members of each.
        let (mut a1, _, _) = join(a.addr, "k1").await;
        let (mut witness, _, _) = join(a.addr, "k1").await;
        a1.expect_event("joined").await;
        let (mut a2, _, _) = join(a.addr, "k2").await;
        let mut on_b = Vec::new();
        let mut lost = [Vec::new(), Vec::new()];
        for i in 0..10 {
            let room = if i % 2 == 0 { "k1" } else { "k2" };
            let (c, id, _) = join(b.addr, room).await;
            lost[i % 2].push(id);
            on_b.push(c);
        }
        for (p, want) in [(&mut a1, 5), (&mut witness, 5), (&mut a2, 5)] {
            for _ in 0..want {
                p.expect_event("joined").await;
            }
        }
        // A book room created on B, whose creator goes with B.
        let mut creator = Client::connect(b.addr, "/").await;
        let number = creator.get_room().await;

        b.kill();
        let killed = Instant::now();
        for (p, lost) in [
            (&mut a1, &lost[0]),
            (&mut witness, &lost[0]),
            (&mut a2, &lost[1]),
        ] {
            let mut heard = within(Duration::from_secs(9), "the lefts", lefts(p, 5)).await;
            assert!(
                killed.elapsed() < Duration::from_secs(8),
                "{:?}",
                killed.elapsed()
            );
            heard.sort();
            let mut want = lost.clone();
            want.sort();
            assert_eq!(heard, want, "one left per lost peer");
        }
        // Nothing more: the next message is the witness's probe.
        witness
            .send(&json!({"event": "probe", "data": {}, "to": "all"}).to_string())
            .await;
        assert_eq!(a1.recv_json().await["event"], "probe");
        // B's book room number: its only member is gone, so the room is no longer a room
        // (WRONGROOM: nobody to meet), and a new GETROOM on A may get the number again.
        let mut late = Client::connect(a.addr, "/").await;
        late.enter_refused(&number.to_string()).await;
        drop(on_b);
        drop(creator);
        a1.close().await;
        witness.close().await;
        a2.close().await;
        late.close().await;
    });
    a.stop();
    redis.assert_clean();
}

/// SIGTERM of a node: its peers get 1001, the other nodes' peers hear `left` within 1 s.
#[test]
fn a_stopped_node_s_peers_get_1001_and_the_others_hear_left_at_once() {
    let redis = Redis::start();
    let a = Node::start_with(&redis, "a", &["--max-peers", "10"]);
    let mut b = Node::start_with(&redis, "b", &["--max-peers", "10"]);
    run(async {
        let (mut pa, _, _) = join(a.addr, "t").await;
        let (mut pb, idb, _) = join(b.addr, "t").await;
        assert_eq!(pa.expect_event("joined").await["peer_id"], idb);
        b.terminate();
        let stopped = Instant::now();
        let close = within(WAIT, "B's close", pb.expect_close()).await;
        assert_eq!(u16::from(close), 1001);
        assert_eq!(pa.expect_event("left").await["peer_id"], idb);
        assert!(
            stopped.elapsed() < Duration::from_secs(1),
            "left after {:?}",
            stopped.elapsed()
        );
        pa.close().await;
    });
    let (code, log) = b.bin.exit_code(WAIT);
    assert_eq!(code, Some(0), "{log:?}");
    a.stop();
    redis.assert_clean();
}
