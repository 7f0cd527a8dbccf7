//! What the admin API shows of the cluster: `/tree`'s `cluster` object and the `/metrics`
//! series (docs/admin-api.md, "Cluster").
use super::redis::RedisCluster;
use crate::metrics::series;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// `/tree`'s `cluster`: this node, and every live node with the age of its lease.
pub fn tree(cluster: &RedisCluster) -> Value {
    let nodes: Vec<Value> = cluster
        .nodes()
        .into_iter()
        .map(|n| {
            json!({
                "node": n.node,
                "lease_age_ms": u64::try_from(n.age.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    json!({
        "node": super::Cluster::node_id(cluster),
        "engine": "redis",
        "reachable": cluster.is_reachable(),
        "nodes": nodes,
    })
}

/// The cluster's series, in Prometheus' text format.
pub fn metrics(cluster: &RedisCluster, out: &mut String) {
    let s = &cluster.stats;
    let counters = [
        (
            "rtcserver_cluster_messages_published_total",
            "Messages this node published for members on other nodes.",
            s.published.load(Ordering::Relaxed),
        ),
        (
            "rtcserver_cluster_messages_received_total",
            "Messages this node received on its rooms' channels (joins and leaves included).",
            s.received.load(Ordering::Relaxed),
        ),
        (
            "rtcserver_cluster_messages_dropped_total",
            "Messages for other nodes dropped because Redis could not be reached.",
            s.dropped.load(Ordering::Relaxed),
        ),
        (
            "rtcserver_cluster_engine_errors_total",
            "Failed requests to Redis.",
            s.errors.load(Ordering::Relaxed),
        ),
        (
            "rtcserver_cluster_reconnects_total",
            "Connections to Redis made again after one was lost.",
            s.reconnects.load(Ordering::Relaxed),
        ),
        (
            "rtcserver_cluster_nodes_lost_total",
            "Nodes this node found gone (lease expired) and removed.",
            s.nodes_lost.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        series(out, name, "counter", help, [("", value)]);
    }
    let nodes = cluster.nodes();
    series(
        out,
        "rtcserver_cluster_nodes",
        "gauge",
        "Live nodes of the cluster (leases present), this one included.",
        [("", nodes.len())],
    );
    series(
        out,
        "rtcserver_cluster_lease_age_seconds",
        "gauge",
        "Time since each live node last renewed its lease.",
        nodes.iter().map(|n| {
            (
                format!("{{node=\"{}\"}}", n.node),
                format!("{:.3}", n.age.as_secs_f64()),
            )
        }),
    );
}
