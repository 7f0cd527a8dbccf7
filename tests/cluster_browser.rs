//! The demo call with its two browsers on different nodes of a cluster, then through nginx
//! round-robin in front of both (README "Several nodes"; `deploy/nginx-cluster.conf`).
mod common;
use common::cluster::{Node, Redis};
use common::nginx::Nginx;

fn call(base_a: &str, base_b: &str) {
    common::browser::run_script(
        "cluster_call.mjs",
        &[
            "--base-a".into(),
            base_a.into(),
            "--base-b".into(),
            base_b.into(),
        ],
    );
}

#[test]
fn the_demo_call_works_with_its_pages_on_two_nodes_and_through_nginx() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a");
    let b = Node::start(&redis, "b");
    call(&format!("http://{}", a.addr), &format!("http://{}", b.addr));
    let nginx = Nginx::in_front_of([a.addr, b.addr]);
    let through = format!("http://{}", nginx.addr);
    call(&through, &through);
    drop(nginx);
    a.stop();
    b.stop();
    redis.assert_clean();
}
