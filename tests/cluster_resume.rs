//! A resume that reaches another node of the cluster than the one holding the session
//! (docs/cluster.md, "Resume across nodes"; docs/rooms-protocol.md, "Resume"): separate node
//! processes on one redis-server of the test's own.
mod common;
use common::cluster::{stop_all, Node, Redis};
use common::resume::{close_code, ResumablePeer};
use common::run;
use serde_json::json;

/// Issue 19 with two nodes: A holds its session on node a; B, on node b, streams 1,000 numbered
/// messages to A; A's connection is reset at message 300 and A resumes through node b (as a
/// load balancer may send it): all 1,000 once, in order; B hears nothing of it; then a resume
/// through node b while the old connection (to node b) is still open replaces it with 4001;
/// A's close 1000 is B's `left`.
#[test]
fn a_resume_through_another_node_reaches_the_session_and_loses_nothing() {
    let redis = Redis::start();
    let nodes = [
        Node::start_with(&redis, "a", &["--max-peers", "4"]),
        Node::start_with(&redis, "b", &["--max-peers", "4"]),
    ];
    run(async {
        let mut a = ResumablePeer::join_at(nodes[0].addr, "span", &[]).await;
        let mut b = common::Client::connect(nodes[1].addr, "/socket/span").await;
        let b_id = b.expect_event("authenticated").await["peer_id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(a.expect_event("joined").await["peer_id"], b_id);
        for n in 0..1000 {
            b.send(&json!({"event": "n", "data": n, "to": [a.id]}).to_string())
                .await;
        }
        let mut next = 0;
        while next < 300 {
            assert_eq!(a.recv_json().await["data"], next);
            next += 1;
        }
        a.reset();
        a.addr = nodes[1].addr;
        let mut a = a.resumed().await;
        while next < 1000 {
            let m = a.recv_json().await;
            assert_eq!(
                (m["event"].as_str(), m["data"].as_u64()),
                (Some("n"), Some(next))
            );
            next += 1;
        }
        // The session stayed on node a; node b only carries its frames.
        let sessions = |tree: serde_json::Value| tree["resume"]["sessions"].as_u64();
        let on_a = common::admin::get(nodes[0].admin, "/tree")
            .await
            .expect(200)
            .json();
        let on_b = common::admin::get(nodes[1].admin, "/tree")
            .await
            .expect(200)
            .json();
        assert_eq!((sessions(on_a), sessions(on_b)), (Some(1), Some(0)));
        // Through node b, A is a member as before: what it sends reaches B from A's id.
        a.send(json!({"event": "back", "to": [b_id]})).await;
        let m = b.recv_json().await;
        assert_eq!(
            (m["event"].as_str(), m["from"].as_str()),
            (Some("back"), Some(a.id.as_str()))
        );
        // Half-open: the connection through node b is still open when A resumes again there.
        let mut old = a.take_connection().expect("connected");
        b.send(&json!({"event": "n", "data": 1000, "to": [a.id]}).to_string())
            .await;
        let mut a = a.resumed().await;
        assert_eq!(
            close_code(&mut old).await,
            4001,
            "the old connection is replaced"
        );
        let m = a.recv_json().await;
        assert_eq!(m["data"], 1000, "{m}");
        a.leave().await;
        let left = b.expect_event("left").await;
        assert_eq!(left, json!({"peer_id": a.id}));
        b.close().await;
    });
    stop_all(&redis, nodes);
}
