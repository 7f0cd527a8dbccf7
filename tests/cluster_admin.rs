//! What the admin API shows of a cluster (docs/admin-api.md, "Cluster"): `/tree`'s node and
//! live nodes, the `/metrics` series, `node_up` / `node_down` on `/events`.
mod common;
use common::admin::{get, Sse};
use common::cluster::{book_pair, Node, Redis};
use common::run;

#[test]
fn the_admin_api_shows_the_nodes_the_traffic_and_a_node_going() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a");
    let mut b = Node::start(&redis, "b");
    run(async {
        let mut events = Sse::open(a.admin).await;
        // B is seen through its lease within a reap period.
        events
            .until("node_up b", |e| e["type"] == "node_up" && e["node"] == "b")
            .await;
        let tree = get(a.admin, "/tree").await.expect(200).json();
        let cluster = &tree["cluster"];
        assert_eq!(cluster["node"], "a", "{cluster}");
        assert_eq!(cluster["engine"], "redis");
        assert_eq!(cluster["reachable"], true);
        let nodes: Vec<&str> = cluster["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["node"].as_str().expect("node"))
            .collect();
        assert_eq!(nodes, ["a", "b"]);
        for n in cluster["nodes"].as_array().expect("nodes") {
            assert!(n["lease_age_ms"].as_u64().expect("age") < 6000, "{n}");
        }
        // Traffic across the nodes is counted on both sides.
        let (mut caller, mut callee, _) = book_pair(&a, &b).await;
        for i in 0..10 {
            caller.send(&format!(r#"{{"type":"n","i":{i}}}"#)).await;
            callee.recv_text().await;
        }
        let metric = |text: &str, name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        let on_a = get(a.admin, "/metrics").await.expect(200).body;
        let on_b = get(b.admin, "/metrics").await.expect(200).body;
        assert!(metric(&on_a, "rtcserver_cluster_messages_published_total") >= 10);
        assert!(metric(&on_b, "rtcserver_cluster_messages_received_total") >= 10);
        assert_eq!(metric(&on_a, "rtcserver_cluster_nodes"), 2);
        assert_eq!(metric(&on_a, "rtcserver_cluster_messages_dropped_total"), 0);
        assert!(on_a.contains("rtcserver_cluster_lease_age_seconds{node=\"b\"}"));
        drop(caller);
        callee.close().await;
        // A killed node is reported down once its lease is gone.
        b.kill();
        events
            .until("node_down b", |e| {
                e["type"] == "node_down" && e["node"] == "b"
            })
            .await;
        assert_eq!(
            metric(
                &get(a.admin, "/metrics").await.expect(200).body,
                "rtcserver_cluster_nodes_lost_total"
            ),
            1
        );
    });
    a.stop();
    redis.assert_clean();
}

/// A single node has no cluster: `/tree` says so, `/metrics` has no cluster series.
#[test]
fn a_single_node_shows_no_cluster() {
    let s = common::server();
    run(async {
        let admin = common::admin::admin(&s);
        let tree = get(admin, "/tree").await.expect(200).json();
        assert!(tree["cluster"].is_null(), "{}", tree["cluster"]);
        let metrics = get(admin, "/metrics").await.expect(200).body;
        assert!(!metrics.contains("rtcserver_cluster_"));
    });
}
