//! Message-level faults (docs/faults.md), through the real server: rules set on the admin API
//! act on what real clients send each other; the fault log matches what the clients saw, the
//! metric matches the log, and a control pair in another room sees nothing.
mod common;
use common::admin::*;
use common::fault_checks::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// docs/faults.md, "Actions" (delay) and "Admin API" (log, metric, events): a 300 ms delay on
/// answers; other types overtake them, answers keep their order, the log and the metric say 5.
#[test]
fn delayed_answers_arrive_late_others_do_not() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        let mut sse = Sse::open(admin(&s)).await;
        add_rule(
            &s,
            json!({"name": "late-answers", "action": "delay", "params": {"ms": 300, "jitter_ms": 0},
                   "match": {"endpoint": "book", "room": "#1", "type": "answer",
                             "field": {"/sdp/type": "answer"}}}),
        )
        .await;
        let mut late = Vec::new();
        let mut others = Vec::new();
        for i in 0..5 {
            let answer = format!(r#"{{"type":"answer","sdp":{{"type":"answer","n":{i}}}}}"#);
            let candidate = format!(r#"{{"type":"candidate","n":{i}}}"#);
            let sent = Instant::now();
            a.send(&answer).await;
            a.send(&candidate).await;
            assert_eq!(b.recv_text().await, candidate, "the candidate overtakes");
            others.push(sent.elapsed());
            assert_eq!(b.recv_text().await, answer);
            late.push(sent.elapsed());
        }
        eprintln!("answers late by {late:?}; candidates after {others:?}");
        for t in &late {
            assert!(
                (Duration::from_millis(300)..Duration::from_millis(300) + SLACK).contains(t),
                "an answer {t:?} late"
            );
        }
        for t in &others {
            assert!(*t < NOT_DELAYED, "a candidate took {t:?}");
        }
        // Three answers back to back: held in one lane, delivered in the order sent.
        for i in 0..3 {
            a.send(&format!(
                r#"{{"type":"answer","sdp":{{"type":"answer"}},"burst":{i}}}"#
            ))
            .await;
        }
        for i in 0..3 {
            assert_eq!(b.recv_json().await["burst"], i);
        }
        // An answer whose `/sdp/type` differs is not the rule's.
        let sent = Instant::now();
        a.send(r#"{"type":"answer","sdp":{"type":"pranswer"}}"#)
            .await;
        b.recv_text().await;
        assert!(sent.elapsed() < NOT_DELAYED);
        control_sees_nothing(&mut c, &mut d).await;

        let log = fault_log(&s).await;
        assert_eq!(log.len(), 8, "{log:?}");
        for (i, record) in log.iter().enumerate() {
            assert_eq!(record["seq"], i + 1);
            assert_eq!(record["rule"], "late-answers");
            assert_eq!(record["key"], "book/#1/#1>#2/downstream");
            assert_eq!(record["index"], i + 1);
            assert_eq!(record["type"], "answer");
            assert_eq!(record["action"], "delay");
            assert_eq!(record["params"]["delay_ms"], 300);
            assert!(record["t_ms"].is_u64());
        }
        assert_eq!(injected_metric(&s, "late-answers", "delay").await, 8);
        let event = sse.until("a fault event", |e| e["type"] == "fault").await;
        assert_eq!(event["rule"], "late-answers");
        assert_eq!(event["message_type"], "answer");
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// Sends `n` numbered candidates from `from`, then a `done` marker no rule aims at; returns the
/// numbers `to` received, in order.
async fn candidates_through(from: &mut Client, to: &mut Client, n: usize) -> Vec<u64> {
    let send = async {
        for i in 1..=n {
            from.send(&format!(r#"{{"type":"candidate","n":{i}}}"#))
                .await;
        }
        from.send(r#"{"type":"done"}"#).await;
    };
    let receive = numbered_until_done(to, |_| {});
    futures_lite::future::zip(send, receive).await.1
}

/// docs/faults.md, "Rule format" (`every`): `every: 5` drops exactly messages 5, 10, 15, ...
#[test]
fn every_fifth_candidate_is_dropped() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "fifth", "action": "drop",
                   "match": {"room": "#1", "from": "creator", "to": "joiner",
                             "type": "candidate", "every": 5}}),
        )
        .await;
        let got = candidates_through(&mut a, &mut b, 50).await;
        let want: Vec<u64> = (1..=50).filter(|i| i % 5 != 0).collect();
        assert_eq!(got, want);
        // The other direction is another stream, which the rule does not match (`from`).
        assert_eq!(candidates_through(&mut b, &mut a, 10).await.len(), 10);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let indices: Vec<u64> = log
            .iter()
            .map(|r| r["index"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(indices, (1..=10).map(|i| i * 5).collect::<Vec<u64>>());
        assert_eq!(injected_metric(&s, "fifth", "drop").await, 10);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// One run of 1,000 candidates under a p = 0.3 drop rule with `seed`: the dropped indices, as
/// the log gives them, checked against what the receiver saw.
async fn lossy_run(seed: u64) -> Vec<u64> {
    let s = server_with(|c| c.fault_seed = Some(seed));
    let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
    let seen = get(admin(&s), "/faults").await.expect(200).json();
    assert_eq!(seen["seed"], seed);
    add_rule(
        &s,
        json!({"name": "lossy", "action": "drop", "probability": 0.3,
               "match": {"room": "#1", "type": "candidate"}}),
    )
    .await;
    let got = candidates_through(&mut a, &mut b, 1000).await;
    let log = fault_log(&s).await;
    let dropped: Vec<u64> = log
        .iter()
        .map(|r| r["index"].as_u64().unwrap_or(0))
        .collect();
    for r in &log {
        assert_eq!(r["key"], "book/#1/#1>#2/downstream");
    }
    let dropped_set: BTreeSet<u64> = dropped.iter().copied().collect();
    let want: Vec<u64> = (1..=1000).filter(|i| !dropped_set.contains(i)).collect();
    assert_eq!(got, want, "received = sent - logged drops");
    assert_eq!(
        injected_metric(&s, "lossy", "drop").await,
        dropped.len() as u64
    );
    control_sees_nothing(&mut c, &mut d).await;
    for client in [a, b, c, d] {
        client.close().await;
    }
    s.assert_clean().await;
    dropped
}

/// docs/faults.md, "Determinism": the same seed drops the same messages; seed + 1 others.
#[test]
fn random_drops_repeat_with_the_seed() {
    run(async {
        let first = lossy_run(42).await;
        assert!(
            (255..=345).contains(&first.len()),
            "{} of 1,000 dropped at p = 0.3",
            first.len()
        );
        assert_eq!(lossy_run(42).await, first, "the same seed, the same drops");
        let other = lossy_run(43).await;
        eprintln!(
            "seed 42: {} dropped, first {:?}; seed 43: {} dropped, first {:?}",
            first.len(),
            &first[..5],
            other.len(),
            &other[..5]
        );
        assert_ne!(other, first, "another seed, other drops");
    });
}

/// docs/faults.md, "Actions" (duplicate), on both endpoints: a book answer arrives three times;
/// on `/socket/:room`, the room's own `joined` twice, and a peer's `offer` dropped.
#[test]
fn duplicates_and_the_rooms_endpoint() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "twice", "action": "duplicate", "params": {"copies": 2},
                   "match": {"endpoint": "book", "room": "#1", "type": "answer"}}),
        )
        .await;
        a.send(r#"{"type":"answer","x":1}"#).await;
        a.send(r#"{"type":"candidate"}"#).await;
        for _ in 0..3 {
            assert_eq!(b.recv_text().await, r#"{"type":"answer","x":1}"#);
        }
        assert_eq!(b.recv_json().await["type"], "candidate");
        control_sees_nothing(&mut c, &mut d).await;

        let mut p1 = RoomPeer::join(&s, "lobby").await;
        add_rule(
            &s,
            json!({"name": "joined-twice", "action": "duplicate",
                   "match": {"endpoint": "rooms", "from": "server", "type": "joined"}}),
        )
        .await;
        add_rule(
            &s,
            json!({"name": "no-offers", "action": "drop",
                   "match": {"endpoint": "rooms", "from": "#1", "type": "offer"}}),
        )
        .await;
        let mut p2 = RoomPeer::join(&s, "lobby").await;
        assert_eq!(p1.expect_event("joined").await["peer_id"], p2.id.as_str());
        assert_eq!(p1.expect_event("joined").await["peer_id"], p2.id.as_str());
        p1.send(json!({"event": "offer", "data": {}})).await;
        p1.send(json!({"event": "ping", "data": {}})).await;
        assert_eq!(p2.recv_json().await["event"], "ping");
        let log = fault_log(&s).await;
        let keys: Vec<(&str, &str)> = log
            .iter()
            .map(|r| {
                (
                    r["rule"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("twice", "book/#1/#1>#2/downstream"),
                ("joined-twice", "rooms/#3/server>#1/downstream"),
                ("no-offers", "rooms/#3/#1>#2/downstream"),
            ]
        );
        assert_eq!(injected_metric(&s, "twice", "duplicate").await, 1);
        assert_eq!(injected_metric(&s, "joined-twice", "duplicate").await, 1);
        assert_eq!(injected_metric(&s, "no-offers", "drop").await, 1);
        for client in [a, b, c, d, p1.client, p2.client] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Admin API": add, list, read, replace, remove, populate (all or nothing),
/// and the 400 naming the field, the 404 and the 409; "Rule format": `enabled` and `window`.
#[test]
fn rules_are_managed_on_the_admin_api() {
    run(async {
        let s = server();
        let at = admin(&s);
        let rule = json!({"name": "a", "action": "drop"});
        post(at, "/faults", &rule.to_string()).await.expect(201);
        let conflict = post(at, "/faults", &rule.to_string())
            .await
            .expect(409)
            .json();
        assert_eq!(conflict["status"], 409);
        let listed = get(at, "/faults").await.expect(200).json();
        assert_eq!(listed["rules"][0]["name"], "a");
        assert_eq!(listed["rules"][0]["probability"], 1.0);
        assert_eq!(listed["rules"][0]["match"]["every"], 1);
        let one = get(at, "/faults/a").await.expect(200).json();
        assert_eq!(one["action"], "drop");
        let replaced = post(at, "/faults/a", r#"{"action":"delay","params":{"ms":5}}"#)
            .await
            .expect(200)
            .json();
        assert_eq!(replaced["params"], json!({"ms": 5, "jitter_ms": 0}));
        for (body, field) in [
            (r#"{"name":"b","action":"delay"}"#, "params.ms"),
            (r#"{"name":"b","action":"teleport"}"#, "action"),
            (
                r#"{"name":"b","action":"drop","match":{"every":0}}"#,
                "match.every",
            ),
            (
                r#"{"name":"b","action":"drop","match":{"tpye":"offer"}}"#,
                "match.tpye",
            ),
            (
                r#"{"name":"b","action":"drop","probability":2}"#,
                "probability",
            ),
            (r#"{"name":"b/c","action":"drop"}"#, "name"),
        ] {
            let refused = post(at, "/faults", body).await.expect(400).json();
            assert_eq!(refused["field"], field, "{body}: {refused}");
            assert_eq!(refused["status"], 400);
            assert!(
                refused["error"].as_str().unwrap_or("").starts_with(field),
                "{refused}"
            );
        }
        // Populate replaces everything, or nothing when one rule is bad.
        let two = json!([{"name": "x", "action": "drop"}, {"name": "y", "action": "duplicate"}]);
        post(at, "/faults/populate", &two.to_string())
            .await
            .expect(200);
        let names = |v: Value| -> Vec<String> {
            v["rules"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .map(|r| r["name"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            names(get(at, "/faults").await.expect(200).json()),
            ["x", "y"]
        );
        let bad = json!([{"name": "z", "action": "drop"}, {"name": "w", "action": "drop", "match": {"every": 0}}]);
        let refused = post(at, "/faults/populate", &bad.to_string())
            .await
            .expect(400)
            .json();
        assert_eq!(refused["field"], "rules[1].match.every");
        let dup = json!([{"name": "z", "action": "drop"}, {"name": "z", "action": "drop"}]);
        post(at, "/faults/populate", &dup.to_string())
            .await
            .expect(400);
        assert_eq!(
            names(get(at, "/faults").await.expect(200).json()),
            ["x", "y"]
        );
        http(at, "DELETE", "/faults/x", &[], "").await.expect(200);
        http(at, "DELETE", "/faults/x", &[], "").await.expect(404);
        get(at, "/faults/x").await.expect(404);
        post(at, "/faults/populate", "[]").await.expect(200);
        assert_eq!(
            names(get(at, "/faults").await.expect(200).json()),
            Vec::<String>::new()
        );
        // With no rule left, a pair talks untouched and the log stays empty.
        let (mut a, mut b, _) = pair(&s).await;
        assert_eq!(candidates_through(&mut a, &mut b, 20).await.len(), 20);
        assert!(fault_log(&s).await.is_empty());
        // Nor do a disabled rule and one whose window opens in an hour act.
        let idle = json!([
            {"name": "off", "action": "drop", "enabled": false},
            {"name": "later", "action": "drop", "window": {"start_ms": 3_600_000}},
        ]);
        post(at, "/faults/populate", &idle.to_string())
            .await
            .expect(200);
        assert_eq!(candidates_through(&mut a, &mut b, 20).await.len(), 20);
        assert!(fault_log(&s).await.is_empty());
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

/// One run of 20 answers under a 40 ± 30 ms delay with `seed`: the delays drawn, from the log.
async fn jitter_run(seed: u64) -> Vec<u64> {
    let s = server_with(|c| c.fault_seed = Some(seed));
    let ((mut a, mut b), (c, d)) = two_pairs(&s).await;
    add_rule(
        &s,
        json!({"name": "jitter", "action": "delay", "params": {"ms": 40, "jitter_ms": 30},
               "match": {"room": "#1", "type": "answer"}}),
    )
    .await;
    for i in 0..20 {
        let sent = Instant::now();
        a.send(&format!(r#"{{"type":"answer","n":{i}}}"#)).await;
        assert_eq!(b.recv_json().await["n"], i, "in order");
        let took = sent.elapsed();
        assert!(took >= Duration::from_millis(10), "{took:?}");
    }
    let delays: Vec<u64> = fault_log(&s)
        .await
        .iter()
        .map(|r| r["params"]["delay_ms"].as_u64().expect("delay_ms"))
        .collect();
    for client in [a, b, c, d] {
        client.close().await;
    }
    s.assert_clean().await;
    delays
}

/// docs/faults.md, "Actions" (delay's jitter) and "Determinism": the drawn delays stay within
/// ms ± jitter_ms, and repeat exactly with the seed.
#[test]
fn jitter_stays_in_bounds_and_repeats_with_the_seed() {
    run(async {
        let first = jitter_run(9).await;
        assert_eq!(first.len(), 20);
        assert!(first.iter().all(|d| (10..=70).contains(d)), "{first:?}");
        assert!(first.iter().any(|d| *d != first[0]), "drawn: {first:?}");
        assert_eq!(jitter_run(9).await, first);
    });
}

/// docs/faults.md, "Rule format" (`direction`): an upstream rule decides once per message, for
/// every receiver; its stream's receiver is `*`.
#[test]
fn an_upstream_rule_decides_once_for_all_receivers() {
    run(async {
        let s = server_with(|c| c.default_max_peers = 3);
        let (mut p1, mut p2, mut p3) = trio(&s, "trio").await;
        add_rule(
            &s,
            json!({"name": "up", "action": "drop", "match": {"from": "#1", "direction": "upstream",
                                                            "type": "candidate", "every": 2}}),
        )
        .await;
        for i in 1..=4 {
            p1.send(json!({"event": "candidate", "data": {"n": i}}))
                .await;
        }
        p1.send(json!({"event": "done", "data": {}})).await;
        for p in [&mut p2, &mut p3] {
            assert_eq!(p.recv_json().await["data"]["n"], 1);
            assert_eq!(p.recv_json().await["data"]["n"], 3);
            assert_eq!(p.recv_json().await["event"], "done");
        }
        let log = fault_log(&s).await;
        let got: Vec<(&str, u64)> = log
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().unwrap_or(""),
                    r["index"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("rooms/#1/#1>*/upstream", 2), ("rooms/#1/#1>*/upstream", 4)]
        );
        // `to` has no meaning before the message is addressed.
        let refused = post(
            admin(&s),
            "/faults",
            r##"{"name":"x","action":"drop","match":{"direction":"upstream","to":"#2"}}"##,
        )
        .await
        .expect(400)
        .json();
        assert_eq!(refused["field"], "match.to");
        for p in [p1, p2, p3] {
            p.client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Order": a delayed message waits outside the room's process: crashing the
/// room while an answer is held still delivers it, once.
#[test]
fn a_held_answer_survives_a_crash_of_its_room() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        add_rule(
            &s,
            json!({"name": "late", "action": "delay", "params": {"ms": 400},
                   "match": {"type": "answer"}}),
        )
        .await;
        a.send(r#"{"type":"answer","held":true}"#).await;
        s.event("the answer's delay", |e| {
            matches!(e, rtcserver::Event::Fault(_))
        })
        .await;
        let held = get(admin(&s), "/faults").await.expect(200).json();
        assert_eq!(held["held"], 1, "{held}");
        let metrics = get(admin(&s), "/metrics").await.expect(200).body;
        assert!(metrics.contains("\nrtcserver_faults_held 1\n"), "{metrics}");
        crash(&s, &format!("room:{room}")).await;
        s.event("the room's restart", |e| {
            matches!(e, rtcserver::Event::Supervision(supervisors::SupervisorEvent::Restarted { child, .. }) if *child == format!("room:{room}"))
        })
        .await;
        assert_eq!(b.recv_text().await, r#"{"type":"answer","held":true}"#);
        a.send(r#"{"type":"candidate","after":true}"#).await;
        assert_eq!(
            b.recv_json().await["after"],
            true,
            "one answer, then what follows"
        );
        assert_eq!(
            get(admin(&s), "/faults").await.expect(200).json()["held"],
            0
        );
        let metrics = get(admin(&s), "/metrics").await.expect(200).body;
        assert!(metrics.contains("\nrtcserver_faults_held 0\n"), "{metrics}");
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

/// docs/flags.md (`--faults`, `--fault-seed`) and docs/faults.md, "Start-up": rules from a file
/// are in force from the start; a drawn seed is logged; a bad file stops the start with the field.
#[test]
fn the_binary_takes_a_rules_file_and_a_seed() {
    let dir = std::env::temp_dir().join(format!("rtcserver-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"[{"name":"late","action":"delay","params":{"ms":10}}]"#,
    )
    .expect("write");
    let mut bin = Binary::on_loopback(&["--faults", good.to_str().expect("utf-8 path")]);
    let seed_line = bin.wait_for_line("fault seed ");
    let seed: u64 = seed_line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{seed_line}"));
    let (_, admin) = bin.addresses();
    let faults = futures_lite::future::block_on(get(admin, "/faults"))
        .expect(200)
        .json();
    assert_eq!(faults["seed"], seed);
    assert_eq!(faults["rules"][0]["name"], "late");
    let mut seeded = Binary::on_loopback(&["--fault-seed", "77"]);
    let (_, admin) = seeded.addresses();
    let faults = futures_lite::future::block_on(get(admin, "/faults"))
        .expect(200)
        .json();
    assert_eq!(faults["seed"], 77);
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"name":"a","action":"drop"},{"name":"b","action":"drop","match":{"every":0}}]"#,
    )
    .expect("write");
    let mut refused = Binary::start(&["--port", "0", "--faults", bad.to_str().expect("utf-8")]);
    let (code, log) = refused.exit_code(WAIT);
    assert_eq!(code, Some(1), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("rules[1].match.every: must be at least 1")),
        "{log:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/faults.md, "Order": a later message of the same stream that the rule does not delay
/// still waits behind a delayed one; a message of another stream does not.
#[test]
fn a_delayed_message_is_not_overtaken_on_its_stream() {
    run(async {
        let s = server();
        let ((mut a, mut b), (c, d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "second", "action": "delay", "params": {"ms": 200},
                   "match": {"room": "#1", "type": "answer", "after": 1, "count": 1}}),
        )
        .await;
        let sent = Instant::now();
        for n in 1..=3 {
            a.send(&format!(r#"{{"type":"answer","n":{n}}}"#)).await;
        }
        a.send(r#"{"type":"candidate","n":4}"#).await;
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(b.recv_json().await["n"].as_u64().unwrap_or(0));
        }
        assert_eq!(
            order,
            [1, 4, 2, 3],
            "answer 3 waits behind answer 2; the candidate does not"
        );
        assert!(sent.elapsed() >= Duration::from_millis(200));
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["index"], 2);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}
