//! Helpers for the fault-rule tests (docs/faults.md): set a rule, read the log and the metric,
//! and the control pair that must see nothing.
use super::admin::{admin, get, post};
use super::{pair, Client, TestServer};
use serde_json::Value;
use std::time::{Duration, Instant};

pub async fn add_rule(s: &TestServer, rule: Value) {
    post(admin(s), "/faults", &rule.to_string())
        .await
        .expect(201);
}

/// `GET /faults/log`, one JSON object per line.
pub async fn fault_log(s: &TestServer) -> Vec<Value> {
    let reply = get(admin(s), "/faults/log").await.expect(200);
    reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a log line is JSON"))
        .collect()
}

/// The log without what differs between two runs (`seq`, `t_ms`).
pub fn timeless(log: &[Value]) -> Vec<Value> {
    log.iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(m) = r.as_object_mut() {
                m.remove("t_ms");
                m.remove("seq");
            }
            r
        })
        .collect()
}

/// The value of `rtcserver_faults_injected_total{rule,action}` in `GET /metrics` (0 if absent).
pub async fn injected_metric(s: &TestServer, rule: &str, action: &str) -> u64 {
    let text = get(admin(s), "/metrics").await.expect(200).body;
    let sample = format!("rtcserver_faults_injected_total{{rule=\"{rule}\",action=\"{action}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&sample))
        .map_or(0, |v| v.parse().expect("a counter"))
}

/// Two book pairs: the one under test (room `#1`, created first) and a control pair (`#2`).
pub async fn two_pairs(s: &TestServer) -> ((Client, Client), (Client, Client)) {
    let (a, b, _) = pair(s).await;
    let (c, d, _) = pair(s).await;
    for client in [&a, &b, &c, &d] {
        client.ws.get_ref().set_nodelay(true).expect("nodelay");
    }
    ((a, b), (c, d))
}

/// Under it, a message was not held up (see tests/faults.rs, NOT_DELAYED).
pub const NOT_DELAYED: Duration = Duration::from_millis(300);

/// The control pair exchanges one of each type the rules aim at, both ways: each arrives at
/// once and unchanged.
pub async fn control_sees_nothing(c: &mut Client, d: &mut Client) {
    for kind in ["offer", "answer", "candidate"] {
        let text = format!(r#"{{"type":"{kind}","control":true}}"#);
        for forth in [true, false] {
            let (from, to) = if forth {
                (&mut *c, &mut *d)
            } else {
                (&mut *d, &mut *c)
            };
            let sent = Instant::now();
            from.send(&text).await;
            assert_eq!(to.recv_text().await, text);
            assert!(
                sent.elapsed() < NOT_DELAYED,
                "the control pair's {kind} took {:?}",
                sent.elapsed()
            );
        }
    }
}
