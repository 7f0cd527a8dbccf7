//! Checks shared by the fault tests (docs/faults.md): rules on the admin API, the fault log, the
//! metric, the held count, and the two pairs (one under test, one control).
use super::admin::*;
use super::*;
use serde_json::Value;
use std::time::Instant;

/// Under the delays these tests set: a message that took less was not held.
pub const NOT_DELAYED: Duration = Duration::from_millis(300);
/// How late past its due time a held message may be on a loaded machine.
pub const SLACK: Duration = Duration::from_millis(700);

pub async fn add_rule(s: &TestServer, rule: Value) {
    post(admin(s), "/faults", &rule.to_string())
        .await
        .expect(201);
}

/// `GET /faults/log`, one JSON object per line.
pub async fn fault_log(s: &TestServer) -> Vec<Value> {
    log_records(&get(admin(s), "/faults/log").await.expect(200).body)
}

/// The records of a fault log's text (JSON lines).
pub fn log_records(text: &str) -> Vec<Value> {
    text.lines()
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

/// `held` in `GET /faults`.
async fn held_now(s: &TestServer) -> u64 {
    get(admin(s), "/faults").await.expect(200).json()["held"]
        .as_u64()
        .expect("held is a count")
}

/// `held` in `GET /faults`, checked against `rtcserver_faults_held` in `GET /metrics` (so only
/// where it does not change meanwhile).
pub async fn held(s: &TestServer) -> u64 {
    let n = held_now(s).await;
    let metrics = get(admin(s), "/metrics").await.expect(200).body;
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtcserver_faults_held "))
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(gauge, Some(n), "the gauge and GET /faults agree");
    n
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

/// The control pair exchanges one of each type the rules aim at, both ways; all arrive at once.
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

/// The `(key, index, action)` of each log record.
pub fn log_entries(log: &[Value]) -> Vec<(String, u64, String)> {
    log.iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or("").to_owned(),
                r["index"].as_u64().unwrap_or(0),
                r["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Waits (at most 500 looks, 10 ms apart) until `held` is `n`: a message is taken aside just
/// after its fault record and event, and no event marks the moment it is held.
pub async fn until_held(s: &TestServer, n: u64) {
    let mut last = 0;
    for _ in 0..500 {
        last = held_now(s).await;
        if last == n {
            assert_eq!(held(s).await, n);
            return;
        }
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    panic!("held stayed {last}, not {n}");
}

/// `GET /faults/log` as it was sent: JSON lines.
pub async fn fault_log_text(s: &TestServer) -> String {
    let reply = get(admin(s), "/faults/log").await.expect(200);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    reply.body
}

/// The metric against the log: per (rule, action), as many as the log has records.
pub async fn metric_matches_log(s: &TestServer, log: &[Value]) {
    let mut counts = std::collections::BTreeMap::new();
    for r in log {
        let key = (
            r["rule"].as_str().unwrap_or("").to_owned(),
            r["action"].as_str().unwrap_or("").to_owned(),
        );
        *counts.entry(key).or_insert(0u64) += 1;
    }
    for ((rule, action), n) in counts {
        assert_eq!(
            injected_metric(s, &rule, &action).await,
            n,
            "{rule} {action}"
        );
    }
}

/// A log record without what differs from run to run (`seq`, `t_ms`).
pub fn timeless(record: &Value) -> Value {
    let mut r = record.clone();
    if let Value::Object(map) = &mut r {
        map.remove("seq");
        map.remove("t_ms");
    }
    r
}

/// docs/faults.md's digest: FNV-1a 64 of the text, 16 lowercase hex digits.
pub fn digest(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Reads `{"n": N}` messages until `{"type": "done"}`; their numbers, in arrival order.
/// `each` sees every number as it comes.
pub async fn numbered_until_done(to: &mut Client, mut each: impl FnMut(u64)) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let m = to.recv_json().await;
        if m["type"] == "done" {
            return got;
        }
        let n = m["n"].as_u64().expect("numbered");
        each(n);
        got.push(n);
    }
}

/// Three peers in the named room `name` (at most 3 members), each told of the others.
pub async fn trio(
    s: &TestServer,
    name: &str,
) -> (super::RoomPeer, super::RoomPeer, super::RoomPeer) {
    let mut p1 = super::RoomPeer::join(s, name).await;
    let mut p2 = super::RoomPeer::join(s, name).await;
    p1.expect_event("joined").await;
    let p3 = super::RoomPeer::join(s, name).await;
    p1.expect_event("joined").await;
    p2.expect_event("joined").await;
    (p1, p2, p3)
}
