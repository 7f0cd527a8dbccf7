//! Redis away for 10 s, then back empty (docs/cluster.md, "When Redis is away"): nobody who
//! stayed connected is told `left`, same-node relaying never stops, cross-node relaying resumes
//! within 5 s, and room numbers stay unique.
mod common;
use async_tungstenite::tungstenite::Message;
use common::cluster::{book_pair, Node, Redis};
use common::{relay_numbered, run, within, Client, WAIT};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// GETROOM, or `None` when the node refuses it for now (close 1013 while the cluster is away
/// or re-forming).
async fn try_get_room(addr: SocketAddr) -> Option<(Client, u32)> {
    let mut c = Client::connect(addr, "/").await;
    c.send(r#"{"type":"GETROOM","value":""}"#).await;
    match c.recv().await {
        Message::Text(t) => {
            let n = t
                .as_str()
                .strip_prefix(r#"{"type":"GETROOM","value":"#)
                .and_then(|r| r.strip_suffix('}'))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a GETROOM reply: {t}"));
            Some((c, n))
        }
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1013, "{frame:?}");
            None
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn join(addr: SocketAddr, room: &str) -> (Client, String) {
    let mut c = Client::connect(addr, &format!("/socket/{room}")).await;
    let data = c.expect_event("authenticated").await;
    (c, data["peer_id"].as_str().expect("id").to_owned())
}

#[test]
fn redis_away_ten_seconds_then_back_empty() {
    let mut redis = Redis::start();
    let port = redis.port;
    let args = [
        "--max-room-number",
        "400",
        "--max-peers",
        "4",
        "--log-level",
        "debug",
    ];
    let a = Node::start_with(&redis, "a", &args);
    let b = Node::start_with(&redis, "b", &args);
    struct Dump<'a>(&'a mut Node, &'a mut Node);
    impl Drop for Dump<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                for n in [&mut *self.0, &mut *self.1] {
                    eprintln!("--- node {} ---\n{}", n.id, n.bin.log_so_far().join("\n"));
                }
            }
        }
    }
    let back_again = std::cell::RefCell::new(None);
    let (mut node_a, mut node_b) = (a, b);
    let dump = Dump(&mut node_a, &mut node_b);
    let (a, b) = (&*dump.0, &*dump.1);
    run(async {
        // A named room and a book room across the nodes, a book room within A.
        let (mut pa, _) = join(a.addr, "o").await;
        let (mut pb, idb) = join(b.addr, "o").await;
        assert_eq!(pa.expect_event("joined").await["peer_id"], idb);
        let (mut caller, mut callee, cross) = book_pair(a, b).await;
        let mut local1 = Client::connect(a.addr, "/").await;
        let mut local2 = Client::connect(a.addr, "/").await;
        let within_a = local1.get_room().await;
        local2.enter(within_a, &mut local1).await;
        // 50 rooms held through the outage.
        let mut held = Vec::new();
        let mut numbers = std::collections::HashSet::from([cross, within_a]);
        for i in 0..50 {
            let node = if i % 2 == 0 { a.addr } else { b.addr };
            let (c, n) = try_get_room(node).await.expect("GETROOM before the outage");
            assert!(numbers.insert(n));
            held.push(c);
        }

        redis.stop();
        let down = Instant::now();
        // Same-node relaying never stops; GETROOM is refused, not left hanging.
        relay_numbered(&mut local1, &mut local2, 200, |_| {}).await;
        within(WAIT, "a refused GETROOM", async {
            while try_get_room(a.addr).await.is_some() {}
        })
        .await;
        // A message across nodes meanwhile is dropped (and counted), never queued for later.
        caller.send(r#"{"type":"during","note":"dropped"}"#).await;
        async_io::Timer::after(Duration::from_secs(10).saturating_sub(down.elapsed())).await;

        *back_again.borrow_mut() = Some(Redis::start_on(port));
        let back = Instant::now();
        // Cross-node relaying resumes within 5 s: probes until one arrives.
        let mut i = 0;
        let first = within(
            Duration::from_secs(5),
            "cross-node relay to resume",
            async {
                loop {
                    i += 1;
                    caller.send(&format!(r#"{{"type":"probe","i":{i}}}"#)).await;
                    let got =
                        futures_lite::future::or(async { Some(callee.recv_text().await) }, async {
                            async_io::Timer::after(Duration::from_millis(100)).await;
                            None
                        })
                        .await;
                    if let Some(text) = got {
                        return text;
                    }
                }
            },
        )
        .await;
        assert!(
            first.starts_with(r#"{"type":"probe""#),
            "{first}: the message sent while Redis was away must not come late"
        );
        eprintln!(
            "cross-node relay resumed {:?} after Redis came back",
            back.elapsed()
        );
        // Probes already on their way may still arrive: drain them by a marker.
        caller.send(r#"{"type":"marker"}"#).await;
        while callee.recv_text().await != r#"{"type":"marker"}"# {}
        // GETROOM again: numbers unique with the rooms held through the outage.
        let mut fresh = Vec::new();
        let deadline = Instant::now() + WAIT;
        while fresh.len() < 150 {
            let node = if fresh.len() % 2 == 0 { a.addr } else { b.addr };
            match try_get_room(node).await {
                Some((c, n)) => {
                    assert!(numbers.insert(n), "room {n} handed out twice");
                    fresh.push(c);
                }
                None => {
                    assert!(Instant::now() < deadline, "GETROOM refused for too long");
                    async_io::Timer::after(Duration::from_millis(200)).await;
                }
            }
        }
        // Once joins are back the cluster has read every room again: still nobody `left`.
        relay_numbered(&mut caller, &mut callee, 200, |_| {}).await;
        relay_numbered(&mut callee, &mut caller, 200, |_| {}).await;
        pb.send(&json!({"event": "after", "data": {}, "to": "all"}).to_string())
            .await;
        let m = pa.recv_json().await;
        assert_eq!(m["event"], "after", "no left, no joined: {m}");
        pa.send(&json!({"event": "after", "data": {}, "to": "all"}).to_string())
            .await;
        let m = pb.recv_json().await;
        assert_eq!(m["event"], "after", "no left, no joined: {m}");
        for c in [pa, pb, caller, callee, local1, local2]
            .into_iter()
            .chain(held)
            .chain(fresh)
        {
            c.close().await;
        }
    });
    drop(dump);
    node_a.stop();
    node_b.stop();
    back_again
        .into_inner()
        .expect("Redis started again")
        .assert_clean();
}
