//! Helpers of the message-level fault tests (docs/faults.md): rules on the admin API, the fault
//! log, the metric, and the control pair that must see nothing.
use super::admin::*;
use super::*;
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
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a log line is JSON"))
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
    // Timed sends back to back: without it, Nagle holds the second frame until the server's
    // delayed ACK of the first (40 ms), which a browser's socket would not.
    for client in [&a, &b, &c, &d] {
        client.ws.get_ref().set_nodelay(true).expect("nodelay");
    }
    ((a, b), (c, d))
}

/// Under the 300 ms of the delay rules these tests set: a message that took less was not
/// delayed. (Alone, undelayed messages take 0.7-1.7 ms and delayed answers 301-305 ms; the
/// bounds are wide because CI's 2 cores run this binary's tests at once and other work besides.)
pub const NOT_DELAYED: Duration = Duration::from_millis(300);
/// How late past its delay a delayed message may be on a loaded machine.
pub const SLACK: Duration = Duration::from_millis(700);

/// The control pair exchanges one of each type the rules aim at; all arrive at once.
pub async fn control_sees_nothing(c: &mut Client, d: &mut Client) {
    for kind in ["offer", "answer", "candidate"] {
        let text = format!(r#"{{"type":"{kind}","control":true}}"#);
        let sent = Instant::now();
        c.send(&text).await;
        assert_eq!(d.recv_text().await, text);
        assert!(
            sent.elapsed() < NOT_DELAYED,
            "the control pair's {kind} took {:?}",
            sent.elapsed()
        );
    }
}
