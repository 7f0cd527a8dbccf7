//! Message-level faults that change when and in what order messages arrive (docs/faults.md,
//! "Actions": late `duplicate`, bursty `drop`, `reorder`, `hold`, `cross`; "Held messages";
//! `POST /faults/reset`), through the real server: the arrival order each rule defines, the
//! fault log against what the clients saw, the metric against the log, the held count, and a
//! control pair in another room that sees nothing.
mod common;
use common::admin::*;
use common::fault_checks::*;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Receives `n` book messages and gives the `n` field of each (`"done"` markers as -1).
async fn numbers(to: &mut Client, n: usize) -> Vec<i64> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let m = to.recv_json().await;
        got.push(m["n"].as_i64().unwrap_or(-1));
    }
    got
}

/// docs/faults.md, "Actions" (`duplicate`'s late copies): a stale replay of an answer after two
/// more answers of its stream (candidates, another type, do not count), and one 300 ms late.
#[test]
fn late_duplicates_replay_after_messages_and_after_ms() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "stale", "action": "duplicate", "params": {"after_messages": 2},
                   "match": {"room": "#1", "type": "answer", "count": 1}}),
        )
        .await;
        for (kind, n) in [
            ("answer", 1),
            ("candidate", 2),
            ("answer", 3),
            ("candidate", 4),
        ] {
            a.send(&format!(r#"{{"type":"{kind}","n":{n}}}"#)).await;
        }
        assert_eq!(numbers(&mut b, 4).await, [1, 2, 3, 4]);
        assert_eq!(held(&s).await, 1, "the copy waits for one more answer");
        a.send(r#"{"type":"answer","n":5}"#).await;
        a.send(r#"{"type":"candidate","n":6}"#).await;
        assert_eq!(
            numbers(&mut b, 3).await,
            [5, 1, 6],
            "the copy of answer 1 right after answer 5, the second answer after it"
        );
        assert_eq!(held(&s).await, 0);

        add_rule(
            &s,
            json!({"name": "echo", "action": "duplicate", "params": {"copies": 2, "after_ms": 300},
                   "match": {"room": "#1", "type": "offer"}}),
        )
        .await;
        let sent = Instant::now();
        a.send(r#"{"type":"offer","n":7}"#).await;
        a.send(r#"{"type":"candidate","n":8}"#).await;
        assert_eq!(numbers(&mut b, 2).await, [7, 8], "the original at once");
        assert!(sent.elapsed() < NOT_DELAYED, "{:?}", sent.elapsed());
        assert_eq!(held(&s).await, 2);
        assert_eq!(numbers(&mut b, 2).await, [7, 7]);
        let late = sent.elapsed();
        eprintln!("the after_ms copies came {late:?} after the offer");
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(300) + SLACK).contains(&late),
            "{late:?}"
        );
        assert_eq!(held(&s).await, 0);
        control_sees_nothing(&mut c, &mut d).await;

        let log = fault_log(&s).await;
        assert_eq!(
            log_entries(&log),
            [
                ("book/#1/#1>#2/downstream".into(), 1, "duplicate".into()),
                ("book/#1/#1>#2/downstream".into(), 1, "duplicate".into()),
            ]
        );
        assert_eq!(log[0]["rule"], "stale");
        assert_eq!(
            log[0]["params"],
            json!({"copies": 1, "after_messages": 2, "max_hold_ms": 10_000})
        );
        assert_eq!(log[1]["params"], json!({"copies": 2, "after_ms": 300}));
        assert_eq!(injected_metric(&s, "stale", "duplicate").await, 1);
        assert_eq!(injected_metric(&s, "echo", "duplicate").await, 1);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// One run of 1,000 candidates under a Gilbert-Elliott drop rule with `seed`: the log (without
/// its times) and the dropped indices, checked against what the receiver saw.
async fn bursty_run(seed: u64) -> (Vec<Value>, Vec<u64>) {
    let s = server_with(|c| c.fault_seed = Some(seed));
    let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
    add_rule(
        &s,
        json!({"name": "bursty", "action": "drop",
               "params": {"model": "gilbert_elliott", "p": 0.1, "r": 0.3},
               "match": {"room": "#1", "type": "candidate"}}),
    )
    .await;
    let rule = get(admin(&s), "/faults/bursty").await.expect(200).json();
    assert_eq!(
        rule["params"],
        json!({"model": "gilbert_elliott", "p": 0.1, "r": 0.3, "h": 0.0, "k": 1.0}),
        "netem's defaults written out"
    );
    let send = async {
        for i in 1..=1000 {
            a.send(&format!(r#"{{"type":"candidate","n":{i}}}"#)).await;
        }
        a.send(r#"{"type":"done"}"#).await;
    };
    let receive = numbered_until_done(&mut b, |_| {});
    let got = futures_lite::future::zip(send, receive).await.1;
    let log = fault_log(&s).await;
    let dropped: Vec<u64> = log
        .iter()
        .map(|r| r["index"].as_u64().unwrap_or(0))
        .collect();
    for r in &log {
        assert_eq!(r["key"], "book/#1/#1>#2/downstream");
        assert_eq!(r["action"], "drop");
        // h = 0, k = 1: only the bad state loses, and it loses everything.
        assert_eq!(r["params"]["state"], "bad", "{r}");
    }
    let want: Vec<u64> = (1..=1000).filter(|i| !dropped.contains(i)).collect();
    assert_eq!(got, want, "received = sent - logged drops");
    assert_eq!(
        injected_metric(&s, "bursty", "drop").await,
        dropped.len() as u64
    );
    control_sees_nothing(&mut c, &mut d).await;
    for client in [a, b, c, d] {
        client.close().await;
    }
    s.assert_clean().await;
    let timeless = log
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().map(|m| m.remove("t_ms"));
            r
        })
        .collect();
    (timeless, dropped)
}

/// Runs of consecutive indices: their lengths.
fn bursts(indices: &[u64]) -> Vec<u64> {
    let mut runs: Vec<u64> = Vec::new();
    for (i, x) in indices.iter().enumerate() {
        if i > 0 && indices[i - 1] + 1 == *x {
            if let Some(last) = runs.last_mut() {
                *last += 1;
            }
        } else {
            runs.push(1);
        }
    }
    runs
}

/// docs/faults.md, "Bursty drops" and "Determinism": Gilbert-Elliott loss drops about
/// p / (p + r) = 25 % in bursts of about 1 / r = 3.3 (independent loss at 25 % would give
/// bursts of 1.3); the same seed drops the same messages, seed + 1 others.
#[test]
fn bursty_drops_come_in_bursts_and_repeat_with_the_seed() {
    run(async {
        let (first_log, first) = bursty_run(42).await;
        let runs = bursts(&first);
        let mean = first.len() as f64 / runs.len() as f64;
        eprintln!(
            "seed 42: {} of 1,000 dropped in {} bursts (mean {mean:.2}, longest {:?})",
            first.len(),
            runs.len(),
            runs.iter().max()
        );
        // The stationary rate's spread with bursts is about 4 times the independent one's.
        assert!((150..=350).contains(&first.len()), "{}", first.len());
        assert!(mean > 2.0, "mean burst {mean}");
        assert_eq!(
            bursty_run(42).await.0,
            first_log,
            "the same seed, the same log"
        );
        assert_ne!(bursty_run(43).await.1, first, "another seed, other drops");
        // Bursty loss is a drop model, not an action of its own.
        let s = server();
        let refused = post(
            admin(&s),
            "/faults",
            r#"{"name":"g","action":"gilbert_elliott"}"#,
        )
        .await
        .expect(400)
        .json();
        assert_eq!(refused["field"], "action");
        let refused = post(
            admin(&s),
            "/faults",
            r#"{"name":"g","action":"drop","params":{"model":"gilbert_elliott","p":1.5}}"#,
        )
        .await
        .expect(400)
        .json();
        assert_eq!(refused["field"], "params.p");
    });
}

/// docs/faults.md, "Actions" (`reorder`): every third candidate is held until two later
/// messages of its pair have been delivered; the last one waits for the `done` markers.
#[test]
fn reorder_delivers_each_selected_message_gap_messages_later() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "shuffle", "action": "reorder", "params": {"gap": 2},
                   "match": {"room": "#1", "type": "candidate", "every": 3}}),
        )
        .await;
        for n in 1..=12 {
            a.send(&format!(r#"{{"type":"candidate","n":{n}}}"#)).await;
        }
        // The other direction is another pair: it does not release anything.
        until_held(&s, 1).await;
        b.send(r#"{"type":"candidate","n":100}"#).await;
        assert_eq!(a.recv_json().await["n"], 100);
        assert_eq!(held(&s).await, 1, "candidate 12 still waits");
        a.send(r#"{"type":"done"}"#).await;
        a.send(r#"{"type":"done"}"#).await;
        let got = numbers(&mut b, 14).await;
        assert_eq!(got, [1, 2, 4, 5, 3, 7, 8, 6, 10, 11, 9, -1, -1, 12]);
        assert_eq!(held(&s).await, 0);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let want: Vec<(String, u64, String)> = [3, 6, 9, 12]
            .into_iter()
            .map(|i| ("book/#1/#1>#2/downstream".into(), i, "reorder".into()))
            .collect();
        assert_eq!(log_entries(&log), want);
        assert_eq!(log[0]["params"], json!({"gap": 2, "max_hold_ms": 10_000}));
        assert_eq!(injected_metric(&s, "shuffle", "reorder").await, 4);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Actions" (`hold`): the offer is held until two candidates of its pair have
/// overtaken it (`candidate, candidate, offer`); an answer (another type) and the other
/// direction's candidates do not count; with no candidates, it is flushed at `max_hold_ms`.
#[test]
fn hold_lets_two_candidates_overtake_the_offer_or_flushes_it() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "candidates-first", "action": "hold",
                   "params": {"until": {"type": "candidate", "count": 2}, "max_hold_ms": 500},
                   "match": {"room": "#1", "type": "offer"}}),
        )
        .await;
        a.send(r#"{"type":"offer","n":1}"#).await;
        a.send(r#"{"type":"answer","n":2}"#).await;
        assert_eq!(b.recv_json().await["n"], 2, "the answer overtakes");
        b.send(r#"{"type":"candidate","n":3}"#).await;
        assert_eq!(a.recv_json().await["n"], 3);
        assert_eq!(held(&s).await, 1, "neither counted");
        a.send(r#"{"type":"candidate","n":4}"#).await;
        a.send(r#"{"type":"candidate","n":5}"#).await;
        a.send(r#"{"type":"candidate","n":6}"#).await;
        assert_eq!(numbers(&mut b, 4).await, [4, 5, 1, 6]);
        assert_eq!(held(&s).await, 0);

        let mut flushed = Vec::new();
        for n in [7, 8] {
            let sent = Instant::now();
            a.send(&format!(r#"{{"type":"offer","n":{n}}}"#)).await;
            assert_eq!(b.recv_json().await["n"], n);
            flushed.push(sent.elapsed());
        }
        eprintln!("offers flushed after {flushed:?} (max_hold_ms 500)");
        for t in &flushed {
            assert!(
                (Duration::from_millis(500)..Duration::from_millis(500) + SLACK).contains(t),
                "{t:?}"
            );
        }
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let want: Vec<(String, u64, String)> = [1, 2, 3]
            .into_iter()
            .map(|i| ("book/#1/#1>#2/downstream".into(), i, "hold".into()))
            .collect();
        assert_eq!(log_entries(&log), want);
        assert_eq!(
            log[0]["params"],
            json!({"until": {"type": "candidate", "count": 2}, "max_hold_ms": 500})
        );
        assert_eq!(injected_metric(&s, "candidates-first", "hold").await, 3);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Actions" (`cross`): A's offer is held until B's comes, then both are
/// delivered at once: each client sent its offer before it received the other's (glare). An
/// offer no one crosses is flushed at `max_hold_ms`.
#[test]
fn crossed_offers_are_released_together() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "glare", "action": "cross", "params": {"max_hold_ms": 1000},
                   "match": {"room": "#1", "type": "offer"}}),
        )
        .await;
        a.send(r#"{"type":"offer","from":"a"}"#).await;
        s.event("A's offer held", |e| {
            matches!(e, rtcserver::Event::Fault(_))
        })
        .await;
        until_held(&s, 1).await;
        // Held: B has not received A's offer.
        let crossed = Instant::now();
        b.send(r#"{"type":"offer","from":"b"}"#).await;
        assert_eq!(b.recv_json().await["from"], "a");
        assert_eq!(a.recv_json().await["from"], "b");
        assert!(crossed.elapsed() < NOT_DELAYED, "{:?}", crossed.elapsed());
        assert_eq!(held(&s).await, 0);
        // Other types pass.
        a.send(r#"{"type":"answer","n":1}"#).await;
        assert_eq!(b.recv_json().await["n"], 1);

        let sent = Instant::now();
        a.send(r#"{"type":"offer","from":"a","n":2}"#).await;
        assert_eq!(b.recv_json().await["n"], 2);
        let flushed = sent.elapsed();
        eprintln!("an uncrossed offer flushed after {flushed:?} (max_hold_ms 1000)");
        assert!(
            (Duration::from_millis(1000)..Duration::from_millis(1000) + SLACK).contains(&flushed),
            "{flushed:?}"
        );
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(
            log_entries(&log),
            [
                ("book/#1/#1>#2/downstream".into(), 1, "cross".into()),
                ("book/#1/#2>#1/downstream".into(), 1, "cross".into()),
                ("book/#1/#1>#2/downstream".into(), 2, "cross".into()),
            ]
        );
        assert_eq!(injected_metric(&s, "glare", "cross").await, 3);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// Sends `n` candidates and a `done` marker no rule aims at, and waits for the marker: by then
/// the server has taken every candidate through the rules.
async fn candidates_then_marker(from: &mut Client, to: &mut Client, n: usize) {
    let send = async {
        for i in 1..=n {
            from.send(&format!(r#"{{"type":"candidate","n":{i}}}"#))
                .await;
        }
        from.send(r#"{"type":"done"}"#).await;
    };
    let receive = async {
        assert_eq!(
            to.recv_json().await["type"],
            "done",
            "the candidates are held"
        );
    };
    futures_lite::future::zip(send, receive).await;
}

/// docs/faults.md, "Admin API" (`POST /faults/reset`): every held message (delayed in a lane,
/// held by `hold`, `reorder`, `cross` or as a late copy) is delivered at once in the order held,
/// or discarded; the answer comes at once with the counts, also with 10,000 held.
#[test]
fn reset_delivers_or_discards_every_held_message_at_once() {
    run(async {
        let s = server();
        let at = admin(&s);
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        let rules = json!([
            {"name": "slow", "action": "delay", "params": {"ms": 60_000},
             "match": {"room": "#1", "type": "answer"}},
            {"name": "aside", "action": "hold", "params": {"max_hold_ms": 60_000},
             "match": {"room": "#1", "type": "offer"}},
            {"name": "shuffle", "action": "reorder", "params": {"gap": 100},
             "match": {"room": "#1", "type": "pranswer"}},
            {"name": "glare", "action": "cross", "match": {"room": "#1", "type": "rollback"}},
            {"name": "stale", "action": "duplicate", "params": {"after_messages": 10},
             "match": {"room": "#1", "type": "bye"}},
        ]);
        post(at, "/faults/populate", &rules.to_string())
            .await
            .expect(200);
        for (n, kind) in ["answer", "offer", "pranswer", "rollback", "bye", "answer"]
            .iter()
            .enumerate()
        {
            a.send(&format!(r#"{{"type":"{kind}","n":{n}}}"#)).await;
        }
        // The bye itself, at once.
        assert_eq!(b.recv_json().await["n"], 4);
        until_held(&s, 6).await;
        let done = post(at, "/faults/reset", "").await.expect(200).json();
        assert_eq!(
            done,
            json!({"held": "deliver", "delivered": 6, "dropped": 0, "discarded": 0})
        );
        assert_eq!(
            numbers(&mut b, 6).await,
            [0, 1, 2, 3, 4, 5],
            "in the order held"
        );
        assert_eq!(held(&s).await, 0);
        a.send(r#"{"type":"offer","n":6}"#).await;
        until_held(&s, 1).await;
        let done = post(at, "/faults/reset", r#"{"held":"discard"}"#)
            .await
            .expect(200)
            .json();
        assert_eq!(done["discarded"], 1);

        // 10,000 held: the answer does not wait on them, either way.
        post(
            at,
            "/faults/populate",
            &json!([{"name": "many", "action": "hold", "params": {"max_hold_ms": 60_000},
                     "match": {"room": "#1", "type": "candidate"}}])
            .to_string(),
        )
        .await
        .expect(200);
        let mut took = Vec::new();
        for (body, field) in [(r#"{"held":"discard"}"#, "discarded"), ("{}", "delivered")] {
            candidates_then_marker(&mut a, &mut b, 10_000).await;
            assert_eq!(held(&s).await, 10_000);
            let asked = Instant::now();
            let done = post(at, "/faults/reset", body).await.expect(200).json();
            took.push(asked.elapsed());
            assert_eq!(done[field], 10_000, "{done}");
            assert_eq!(held(&s).await, 0);
        }
        eprintln!(
            "reset of 10,000 held: discard {:?}, deliver {:?}",
            took[0], took[1]
        );
        for t in &took {
            assert!(*t < Duration::from_secs(2), "{t:?}");
        }
        let got = numbers(&mut b, 10_000).await;
        assert!(
            got.iter().copied().eq(1..=10_000),
            "the delivered ones in order"
        );
        // Nothing of the discarded ones: the next message is the next one sent.
        a.send(r#"{"type":"done","n":0}"#).await;
        assert_eq!(b.recv_json().await["type"], "done");

        // A held message whose receiver left is dropped, and counted so.
        a.send(r#"{"type":"candidate","n":1}"#).await;
        until_held(&s, 1).await;
        b.close().await;
        s.event("B's leaving", |e| {
            matches!(e, rtcserver::Event::Disconnected { .. })
        })
        .await;
        let done = post(at, "/faults/reset", "").await.expect(200).json();
        assert_eq!(
            done,
            json!({"held": "deliver", "delivered": 0, "dropped": 1, "discarded": 0})
        );

        let refused = post(at, "/faults/reset", r#"{"held":"keep"}"#)
            .await
            .expect(400)
            .json();
        assert_eq!(refused["field"], "held");
        get(at, "/faults/reset").await.expect(405);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let count = |rule: &str| log.iter().filter(|r| r["rule"] == rule).count() as u64;
        assert_eq!(count("many"), 20_001);
        for (rule, action) in [
            ("slow", "delay"),
            ("aside", "hold"),
            ("shuffle", "reorder"),
            ("glare", "cross"),
            ("stale", "duplicate"),
            ("many", "hold"),
        ] {
            assert_eq!(
                injected_metric(&s, rule, action).await,
                count(rule),
                "{rule}"
            );
        }
        assert_eq!(count("aside"), 2);
        for client in [a, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Held messages": a message held by `hold` waits outside the room's process:
/// crashing the room while the offer is held, the candidate that releases it still does, and
/// the offer arrives once.
#[test]
fn a_held_offer_survives_a_crash_of_its_room() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        add_rule(
            &s,
            json!({"name": "first", "action": "hold",
                   "params": {"until": {"type": "candidate", "count": 1}},
                   "match": {"type": "offer"}}),
        )
        .await;
        a.send(r#"{"type":"offer","held":true}"#).await;
        s.event("the offer's hold", |e| {
            matches!(e, rtcserver::Event::Fault(_))
        })
        .await;
        until_held(&s, 1).await;
        crash(&s, &format!("room:{room}")).await;
        s.event("the room's restart", |e| {
            matches!(e, rtcserver::Event::Supervision(supervisors::SupervisorEvent::Restarted { child, .. }) if *child == format!("room:{room}"))
        })
        .await;
        a.send(r#"{"type":"candidate","n":1}"#).await;
        assert_eq!(b.recv_json().await["n"], 1);
        assert_eq!(b.recv_text().await, r#"{"type":"offer","held":true}"#);
        a.send(r#"{"type":"answer","after":true}"#).await;
        assert_eq!(
            b.recv_json().await["after"],
            true,
            "one offer, then what follows"
        );
        assert_eq!(held(&s).await, 0);
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1);
        assert_eq!(injected_metric(&s, "first", "hold").await, 1);
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

/// The log's params of rules written back: every new parameter is there with its default.
#[test]
fn the_new_actions_write_their_params_back() {
    run(async {
        let s = server();
        let at = admin(&s);
        for (rule, params) in [
            (
                json!({"name": "r", "action": "reorder"}),
                json!({"gap": 1, "max_hold_ms": 10_000}),
            ),
            (
                json!({"name": "h", "action": "hold", "params": {"until": {"type": "candidate"}}}),
                json!({"until": {"type": "candidate", "count": 1}, "max_hold_ms": 10_000}),
            ),
            (
                json!({"name": "x", "action": "cross"}),
                json!({"max_hold_ms": 10_000}),
            ),
            (
                json!({"name": "d", "action": "duplicate", "params": {"after_ms": 5}}),
                json!({"copies": 1, "after_ms": 5}),
            ),
        ] {
            let answer: Value = post(at, "/faults", &rule.to_string())
                .await
                .expect(201)
                .json();
            assert_eq!(answer["params"], params, "{rule}");
        }
        for (body, field) in [
            (
                r#"{"name":"b","action":"reorder","params":{"gap":0}}"#,
                "params.gap",
            ),
            (
                r#"{"name":"b","action":"hold","params":{"until":{"count":0}}}"#,
                "params.until.count",
            ),
            (
                r#"{"name":"b","action":"cross","params":{"max_hold_ms":600001}}"#,
                "params.max_hold_ms",
            ),
            (
                r#"{"name":"b","action":"duplicate","params":{"after_ms":1,"after_messages":1}}"#,
                "params.after_ms",
            ),
        ] {
            let refused = post(at, "/faults", body).await.expect(400).json();
            assert_eq!(refused["field"], field, "{body}");
        }
    });
}

/// The arrival order a `reorder {gap}` rule defines, from the indices it selected (the log):
/// a selected message waits until `gap` later messages of its pair have been delivered, and
/// comes right after the one that completes its count; `n` messages then `markers` ones.
fn reorder_order(selected: &[u64], gap: u64, n: u64, markers: u64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut waiting: Vec<(u64, u64)> = Vec::new();
    for i in 1..=n + markers {
        if i <= n && selected.contains(&i) {
            waiting.push((i, gap));
            continue;
        }
        out.push(if i <= n { i as i64 } else { -1 });
        for w in &mut waiting {
            w.1 -= 1;
        }
        out.extend(waiting.iter().filter(|w| w.1 == 0).map(|w| w.0 as i64));
        waiting.retain(|w| w.1 > 0);
    }
    out
}

/// One run of 200 candidates under a p = 0.5 `reorder {gap: 2}` with `seed`: the log without
/// its times, checked against the arrival order it defines.
async fn random_reorder_run(seed: u64) -> Vec<Value> {
    let s = server_with(|c| c.fault_seed = Some(seed));
    let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
    add_rule(
        &s,
        json!({"name": "shuffle", "action": "reorder", "params": {"gap": 2}, "probability": 0.5,
               "match": {"room": "#1", "type": "candidate"}}),
    )
    .await;
    let markers = 2;
    let send = async {
        for i in 1..=200 {
            a.send(&format!(r#"{{"type":"candidate","n":{i}}}"#)).await;
        }
        // Enough later messages to release the last ones held.
        for _ in 0..markers {
            a.send(r#"{"type":"done"}"#).await;
        }
    };
    let (_, got) = futures_lite::future::zip(send, numbers(&mut b, 200 + markers)).await;
    let log = fault_log(&s).await;
    let selected: Vec<u64> = log
        .iter()
        .map(|r| r["index"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(got, reorder_order(&selected, 2, 200, markers as u64));
    assert!((60..=140).contains(&selected.len()), "{}", selected.len());
    assert_eq!(
        injected_metric(&s, "shuffle", "reorder").await,
        selected.len() as u64
    );
    assert_eq!(held(&s).await, 0);
    control_sees_nothing(&mut c, &mut d).await;
    for client in [a, b, c, d] {
        client.close().await;
    }
    s.assert_clean().await;
    log.into_iter()
        .map(|mut r| {
            r.as_object_mut().map(|m| m.remove("t_ms"));
            r
        })
        .collect()
}

/// docs/faults.md, "Actions" (`reorder`) and "Determinism": with a probability, the arrival
/// order equals the one the rule defines from the messages it selected, and the same seed
/// selects the same ones.
#[test]
fn random_reorders_follow_the_rule_and_repeat_with_the_seed() {
    run(async {
        let first = random_reorder_run(7).await;
        assert_eq!(random_reorder_run(7).await, first);
    });
}

/// docs/faults.md, "Rule format" (`direction`) and "Actions" (`hold`), on `/socket/:room`: an
/// upstream rule decides once, and each receiver's copy waits on its own pair.
#[test]
fn an_upstream_hold_on_the_rooms_endpoint_waits_per_receiver() {
    run(async {
        let s = server_with(|c| c.default_max_peers = 3);
        let (mut p1, mut p2, mut p3) = trio(&s, "trio").await;
        let (mut c, mut d, _) = pair(&s).await;
        add_rule(
            &s,
            json!({"name": "offer-last", "action": "hold",
                   "params": {"until": {"type": "candidate", "count": 1}},
                   "match": {"endpoint": "rooms", "from": "#1", "direction": "upstream",
                             "type": "offer"}}),
        )
        .await;
        p1.send(json!({"event": "offer", "data": {}})).await;
        // Not a candidate: it releases nothing, and once it is here the offer was held.
        p1.send(json!({"event": "ping", "data": {}})).await;
        assert_eq!(p2.recv_json().await["event"], "ping");
        assert_eq!(p3.recv_json().await["event"], "ping");
        assert_eq!(held(&s).await, 2, "one copy per receiver");
        // A candidate to p2 alone releases p2's copy only.
        p1.send(json!({"event": "candidate", "to": [p2.id], "data": {"n": 1}}))
            .await;
        assert_eq!(p2.recv_json().await["event"], "candidate");
        assert_eq!(p2.recv_json().await["event"], "offer");
        assert_eq!(held(&s).await, 1);
        p1.send(json!({"event": "candidate", "data": {"n": 2}}))
            .await;
        assert_eq!(p3.recv_json().await["data"]["n"], 2);
        assert_eq!(p3.recv_json().await["event"], "offer");
        assert_eq!(p2.recv_json().await["data"]["n"], 2);
        assert_eq!(held(&s).await, 0);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(
            log_entries(&log),
            [("rooms/#1/#1>*/upstream".into(), 1, "hold".into())]
        );
        assert_eq!(injected_metric(&s, "offer-last", "hold").await, 1);
        for p in [p1, p2, p3] {
            p.client.close().await;
        }
        c.close().await;
        d.close().await;
        s.assert_clean().await;
    });
}
