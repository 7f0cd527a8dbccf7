//! Fault replay, presets and client faults (docs/faults.md, "Replay", "Presets", "Client
//! faults"), through the real server: a recorded log replayed on another seed gives the clients
//! exactly what they saw; one extra message gives `fault_divergence` at its index; presets switch
//! on and off; `?faults=<preset>` acts on one client's messages only.
mod common;
use common::admin::*;
use common::fault_checks::*;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The recorded run's rules: a p = 0.3 drop on candidates and a 40 ± 30 ms delay on answers.
fn recorded_rules() -> Value {
    json!([
        {"name": "lossy", "action": "drop", "probability": 0.3,
         "match": {"room": "#1", "type": "candidate"}},
        {"name": "jitter", "action": "delay", "params": {"ms": 40, "jitter_ms": 30},
         "match": {"room": "#1", "type": "answer"}},
    ])
}

const BLOCKS: usize = 20;
const PER_BLOCK: usize = 10;

/// What the receiver saw, and how late each answer was.
struct Seen {
    texts: Vec<String>,
    answer_took: Vec<Duration>,
}

/// `BLOCKS` blocks of `PER_BLOCK` numbered candidates then one answer; the receiver reads each
/// block up to its answer (candidates are not delayed, so they all come first). With `extra`,
/// one more candidate goes right before candidate number `extra` (it takes that index).
async fn traffic(a: &mut Client, b: &mut Client, extra: Option<usize>) -> Seen {
    let mut seen = Seen {
        texts: Vec::new(),
        answer_took: Vec::new(),
    };
    for block in 0..BLOCKS {
        for i in 1..=PER_BLOCK {
            let n = block * PER_BLOCK + i;
            if extra == Some(n) {
                a.send(r#"{"type":"candidate","n":"extra"}"#).await;
            }
            a.send(&format!(r#"{{"type":"candidate","n":{n}}}"#)).await;
        }
        let answer = format!(r#"{{"type":"answer","block":{block}}}"#);
        let sent = Instant::now();
        a.send(&answer).await;
        loop {
            let text = b.recv_text().await;
            let is_answer = text == answer;
            seen.texts.push(text);
            if is_answer {
                seen.answer_took.push(sent.elapsed());
                break;
            }
        }
    }
    seen
}

/// One run on a fresh server with `seed`: the recorded rules set (then `replay`, if given), the
/// traffic, and the checks every run gets: each answer at least as late as its logged delay (and
/// not far past it), the metric against the log, the control pair. Returns what was seen and
/// the log, as text.
async fn run_once(seed: u64, replay: Option<&str>, extra: Option<usize>) -> (Seen, String) {
    let s = server_with(|c| c.fault_seed = Some(seed));
    let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
    post(admin(&s), "/faults/populate", &recorded_rules().to_string())
        .await
        .expect(200);
    if let Some(log) = replay {
        let armed = post(admin(&s), "/faults/replay", log)
            .await
            .expect(200)
            .json();
        assert_eq!(armed["replay"]["applied"], 0, "{armed}");
        assert_eq!(armed["replay"]["diverged"], Value::Null);
    }
    let seen = traffic(&mut a, &mut b, extra).await;
    let text = fault_log_text(&s).await;
    let log: Vec<Value> = log_records(&text);
    for r in log.iter().filter(|r| r["rule"] == "jitter") {
        let block = r["index"].as_u64().expect("index") as usize - 1;
        let drawn = Duration::from_millis(r["params"]["delay_ms"].as_u64().expect("delay_ms"));
        let took = seen.answer_took[block];
        assert!(
            took >= drawn && took < drawn + SLACK,
            "answer {block}: {took:?} for a {drawn:?} delay"
        );
    }
    metric_matches_log(&s, &log).await;
    control_sees_nothing(&mut c, &mut d).await;
    for client in [a, b, c, d] {
        client.close().await;
    }
    s.assert_clean().await;
    (seen, text)
}

fn timeless_lines(text: &str) -> Vec<Value> {
    log_records(text).iter().map(timeless).collect()
}

/// docs/faults.md, "Replay": a randomized run (drops at p = 0.3, delays with jitter) recorded
/// twice with one seed gives one log; replayed on a fresh server with another seed, the clients
/// see exactly the same messages, each answer as late, and the replay logs the same records.
#[test]
fn a_replay_reproduces_a_recorded_run_on_another_seed() {
    run(async {
        let (recorded, log) = run_once(5, None, None).await;
        let (again, log_again) = run_once(5, None, None).await;
        assert_eq!(
            timeless_lines(&log_again),
            timeless_lines(&log),
            "one seed, one log"
        );
        assert_eq!(again.texts, recorded.texts);
        let records = timeless_lines(&log);
        let drops = records.iter().filter(|r| r["action"] == "drop").count();
        assert_eq!(records.len(), drops + BLOCKS, "{records:?}");
        assert!(
            (30..=90).contains(&drops),
            "{drops} of 200 dropped at p = 0.3"
        );
        for r in &records {
            assert_eq!(r["key"], "book/#1/#1>#2/downstream");
            assert!(r["digest"].as_str().is_some_and(|d| d.len() == 16), "{r}");
        }
        // The log's digest is the message's.
        let first_drop = records
            .iter()
            .find(|r| r["action"] == "drop")
            .expect("a drop");
        let n = first_drop["index"].as_u64().expect("index");
        assert_eq!(
            first_drop["digest"],
            digest(&format!(r#"{{"type":"candidate","n":{n}}}"#))
        );

        let (other_seed, other_log) = run_once(6, None, None).await;
        assert_ne!(
            other_seed.texts, recorded.texts,
            "seed 6 alone drops others"
        );
        assert_ne!(timeless_lines(&other_log), records);

        let (replayed, replay_log) = run_once(6, Some(&log), None).await;
        assert_eq!(
            replayed.texts, recorded.texts,
            "the clients see the same thing"
        );
        assert_eq!(
            timeless_lines(&replay_log),
            records,
            "the same actions, logged"
        );
        eprintln!(
            "{} records ({drops} drops); answers late by {:?} recorded, {:?} replayed",
            records.len(),
            &recorded.answer_took[..5],
            &replayed.answer_took[..5]
        );
    });
}

/// docs/faults.md, "Replay": the replay's state in `GET /faults` and `GET /faults/replay`, the
/// whole log applied; a log in a JSON array works as its lines do; `DELETE` ends the replay.
#[test]
fn a_replay_reports_what_it_applied_and_ends_on_delete() {
    run(async {
        let (_, log) = run_once(5, None, None).await;
        let records: Vec<Value> = log_records(&log);
        let s = server_with(|c| c.fault_seed = Some(6));
        let ((mut a, mut b), (c, d)) = two_pairs(&s).await;
        let at = admin(&s);
        // No rules set: the log's rules are unknown here.
        let refused = post(at, "/faults/replay", &log).await.expect(409).json();
        assert_eq!(refused["field"], "records[0].rule", "{refused}");
        post(at, "/faults/populate", &recorded_rules().to_string())
            .await
            .expect(200);
        let bad = post(at, "/faults/replay", r#"[{"rule":"lossy"}]"#)
            .await
            .expect(400)
            .json();
        assert_eq!(bad["field"], "records[0].key", "{bad}");
        let array = Value::Array(records.clone()).to_string();
        post(at, "/faults/replay", &array).await.expect(200);
        get(at, "/faults/replay").await.expect(200);
        traffic(&mut a, &mut b, None).await;
        let status = get(at, "/faults").await.expect(200).json();
        assert_eq!(
            status["replay"],
            json!({"records": records.len(), "applied": records.len(), "diverged": null})
        );
        assert_eq!(
            status["injected"]["jitter"]["delay"], BLOCKS,
            "per-rule counters: {status}"
        );
        // The observer page's view of the log: its tail.
        let all = fault_log(&s).await;
        let tail = log_records(&get(at, "/faults/log?tail=2").await.expect(200).body);
        assert_eq!(tail, all[all.len() - 2..]);
        let refused = get(at, "/faults/log?tail=x").await.expect(400).json();
        assert_eq!(refused["field"], "tail");
        let ended = http(at, "DELETE", "/faults/replay", &[], "")
            .await
            .expect(200)
            .json();
        assert_eq!(ended["ended"]["applied"], records.len());
        get(at, "/faults/replay").await.expect(404);
        assert_eq!(
            get(at, "/faults").await.expect(200).json()["replay"],
            Value::Null
        );
        // The rules may come with the log, set in the same step; a bad one changes nothing.
        post(at, "/faults/populate", "[]").await.expect(200);
        let mut bad_rules = recorded_rules();
        bad_rules[1]["match"]["every"] = json!(0);
        let refused = post(
            at,
            "/faults/replay",
            &json!({"rules": bad_rules, "records": records}).to_string(),
        )
        .await
        .expect(400)
        .json();
        assert_eq!(refused["field"], "rules[1].match.every");
        assert_eq!(
            get(at, "/faults").await.expect(200).json()["rules"],
            json!([])
        );
        let both = json!({"rules": recorded_rules(), "records": records}).to_string();
        post(at, "/faults/replay", &both).await.expect(200);
        let status = get(at, "/faults").await.expect(200).json();
        assert_eq!(status["rules"].as_array().map(Vec::len), Some(2));
        assert_eq!(status["replay"]["records"], records.len());
        // A saved log may pass the 64 KiB of other admin bodies (docs/admin-api.md).
        let big: String = (1..=800)
            .map(|i| {
                format!(
                    r#"{{"rule":"lossy","key":"book/#1/#1>#2/downstream","index":{i},"type":"candidate","digest":"0000000000000000","action":"drop"}}"#
                ) + "\n"
            })
            .collect();
        assert!(big.len() > 64 * 1024, "{} bytes", big.len());
        let armed = post(at, "/faults/replay", &big).await.expect(200).json();
        assert_eq!(armed["replay"]["records"], 800);
        post(at, "/faults/populate", &big).await.expect(413);
        // A populate is a new run: it ends the replay.
        post(at, "/faults/populate", "[]").await.expect(200);
        assert_eq!(
            get(at, "/faults").await.expect(200).json()["replay"],
            Value::Null
        );
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Replay" (divergence): one extra message, sent right before a message the
/// log dropped, takes its index: `fault_divergence` names that stream and index, with both
/// digests; the replay applies nothing after it, and says so in `GET /faults`.
#[test]
fn one_extra_message_gives_a_divergence_at_its_index() {
    run(async {
        let (_, log) = run_once(5, None, None).await;
        let records: Vec<Value> = log_records(&log);
        // The third drop: some records are applied before it, some are left after.
        let target = records
            .iter()
            .filter(|r| r["action"] == "drop")
            .nth(2)
            .expect("three drops")
            .clone();
        let k = target["index"].as_u64().expect("index") as usize;
        let s = server_with(|c| c.fault_seed = Some(6));
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        let mut sse = Sse::open(admin(&s)).await;
        post(admin(&s), "/faults/populate", &recorded_rules().to_string())
            .await
            .expect(200);
        post(admin(&s), "/faults/replay", &log).await.expect(200);
        let seen = traffic(&mut a, &mut b, Some(k)).await;
        let event = sse
            .until("fault_divergence", |e| e["type"] == "fault_divergence")
            .await;
        let extra = r#"{"type":"candidate","n":"extra"}"#;
        assert_eq!(event["rule"], "lossy");
        assert_eq!(event["key"], "book/#1/#1>#2/downstream");
        assert_eq!(event["index"], k);
        assert_eq!(event["expected"]["digest"], target["digest"]);
        assert_eq!(
            event["got"],
            json!({"type": "candidate", "digest": digest(extra)})
        );
        let status = get(admin(&s), "/faults").await.expect(200).json();
        assert_eq!(status["replay"]["diverged"]["index"], k, "{status}");
        // Applied: every record before the divergence, in the recorded order; none after.
        let before: Vec<Value> = records
            .iter()
            .take_while(|r| r["seq"] != target["seq"])
            .map(timeless)
            .collect();
        let replay_log = fault_log(&s).await;
        assert_eq!(replay_log.iter().map(timeless).collect::<Vec<_>>(), before);
        assert_eq!(status["replay"]["applied"], before.len());
        metric_matches_log(&s, &replay_log).await;
        // The extra message and everything after it arrive.
        let pos = seen
            .texts
            .iter()
            .position(|t| t == extra)
            .expect("the extra one");
        let after: Vec<&String> = seen.texts[pos + 1..]
            .iter()
            .filter(|t| t.contains("candidate"))
            .collect();
        assert_eq!(after.len(), BLOCKS * PER_BLOCK - k + 1, "no drop after it");
        control_sees_nothing(&mut c, &mut d).await;
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Presets": the six are listed; switching one on sets its rules under its
/// name (`duplicate-answer.answers`), they act and are logged; switching it off removes them.
#[test]
fn presets_switch_on_and_off() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        let at = admin(&s);
        let listed = get(at, "/faults/presets").await.expect(200).json();
        let names: Vec<&str> = listed["presets"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "candidates-first",
                "duplicate-answer",
                "glare",
                "late-answer",
                "lossy-signaling",
                "slow-signaling"
            ]
        );
        for p in listed["presets"].as_array().expect("a list") {
            let name = p["name"].as_str().unwrap_or("");
            assert_eq!(p["on"], false);
            assert_eq!(p["available"], true, "{name}: every preset can be set");
        }
        let on = post(at, "/faults/presets/duplicate-answer", "")
            .await
            .expect(200)
            .json();
        assert_eq!(on["rules"][0]["name"], "duplicate-answer.answers");
        // Switching on again starts over; the rules are not doubled.
        post(at, "/faults/presets/duplicate-answer", "")
            .await
            .expect(200);
        let rules = get(at, "/faults").await.expect(200).json()["rules"].clone();
        assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
        a.send(r#"{"type":"answer","x":1}"#).await;
        a.send(r#"{"type":"candidate"}"#).await;
        for _ in 0..2 {
            assert_eq!(b.recv_text().await, r#"{"type":"answer","x":1}"#);
        }
        assert_eq!(b.recv_json().await["type"], "candidate");
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["rule"], "duplicate-answer.answers");
        metric_matches_log(&s, &log).await;
        let listed = get(at, "/faults/presets").await.expect(200).json();
        assert_eq!(listed["presets"][1]["on"], true);
        let off = http(at, "DELETE", "/faults/presets/duplicate-answer", &[], "")
            .await
            .expect(200)
            .json();
        assert_eq!(off["removed"], json!(["duplicate-answer.answers"]));
        http(at, "DELETE", "/faults/presets/duplicate-answer", &[], "")
            .await
            .expect(404);
        post(at, "/faults/presets/no-such", "").await.expect(404);
        assert_eq!(
            get(at, "/faults").await.expect(200).json()["rules"],
            json!([])
        );
        // The preset was not aimed at a room: the control pair is checked once it is off.
        control_sees_nothing(&mut c, &mut d).await;
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// The first lines of a raw HTTP answer to a WebSocket upgrade of `path`: status and body.
async fn upgrade_refused(addr: std::net::SocketAddr, path: &str) -> Reply {
    let raw = raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n"),
    )
    .await;
    Reply::parse_raw(&raw)
}

/// docs/faults.md, "Client faults", and docs/flags.md (`--client-faults`): without the flag a
/// `?faults=` is refused with 400 on both endpoints, and with it an unknown preset is.
#[test]
fn client_faults_are_refused_without_the_flag_or_a_known_preset() {
    run(async {
        let s = server();
        for path in ["/?faults=late-answer", "/socket/lobby?faults=late-answer"] {
            let refused = upgrade_refused(s.addr(), path).await.expect(400);
            assert_eq!(refused.header("content-type"), Some("application/json"));
            let body = refused.json();
            assert_eq!(body["field"], "faults", "{body}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("--client-faults"),
                "{body}"
            );
        }
        let s = server_with(|c| c.client_faults = true);
        for path in ["/?faults=nope", "/socket/lobby?faults=nope", "/?faults"] {
            let body = upgrade_refused(s.addr(), path).await.expect(400).json();
            assert_eq!(body["field"], "faults");
            assert!(
                body["error"].as_str().unwrap_or("").contains("no preset"),
                "{path}: {body}"
            );
        }
        assert_eq!(
            get(admin(&s), "/faults").await.expect(200).json()["rules"],
            json!([])
        );
        s.assert_clean().await;
        // The binary's flag is the config's: with it, a known preset is taken.
        let mut bin = Binary::on_loopback(&["--client-faults"]);
        let (ws, admin_at) = bin.addresses();
        let body = upgrade_refused(ws, "/?faults=nope")
            .await
            .expect(400)
            .json();
        assert!(
            body["error"].as_str().unwrap_or("").contains("no preset"),
            "{body}"
        );
        let mut client = Client::connect(ws, "/?faults=slow-signaling").await;
        let rules = get(admin_at, "/faults").await.expect(200).json()["rules"].clone();
        assert!(
            rules[0]["name"]
                .as_str()
                .unwrap_or("")
                .ends_with(".slow-signaling.all"),
            "{rules}"
        );
        client.send(r#"{"type":"GETROOM","value":""}"#).await;
        client.recv_text().await;
        client.close().await;
    });
}

/// docs/faults.md, "Client faults": `?faults=late-answer` makes the answers *to that client*
/// 3 s late; its own answers and the control pair are untouched; its rules go when it leaves.
#[test]
fn a_client_asks_for_late_answers_on_its_own_url() {
    run(async {
        let s = server_with(|c| c.client_faults = true);
        let mut a = s.client().await;
        let mut b = Client::connect(s.addr(), "/?faults=late-answer").await;
        let room = a.get_room().await;
        b.enter(room, &mut a).await;
        let (mut c, mut d, _) = pair(&s).await;
        for client in [&a, &b, &c, &d] {
            client.ws.get_ref().set_nodelay(true).expect("nodelay");
        }
        let b_id = peer_id_of(&s, &b).await;
        let rule = format!("client-{b_id}.late-answer.answers");
        let rules = get(admin(&s), "/faults").await.expect(200).json()["rules"].clone();
        assert_eq!(rules[0]["name"], rule.as_str(), "{rules}");
        assert_eq!(rules[0]["match"]["to"], b_id.to_string());

        let sent = Instant::now();
        a.send(r#"{"type":"answer","to":"b"}"#).await;
        a.send(r#"{"type":"candidate","to":"b"}"#).await;
        assert_eq!(b.recv_json().await["type"], "candidate");
        let candidate_took = sent.elapsed();
        b.send(r#"{"type":"answer","to":"a"}"#).await;
        assert_eq!(a.recv_json().await["to"], "a");
        let own_answer_took = sent.elapsed();
        assert_eq!(b.recv_json().await["to"], "b");
        let late = sent.elapsed();
        eprintln!("answer to b after {late:?}; candidate {candidate_took:?}; b's answer {own_answer_took:?}");
        assert!(
            (Duration::from_millis(3000)..Duration::from_millis(3000) + SLACK).contains(&late),
            "{late:?}"
        );
        assert!(candidate_took < NOT_DELAYED);
        assert!(
            own_answer_took < NOT_DELAYED,
            "b's own answer is not its traffic to receive"
        );
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["rule"], rule.as_str());
        assert_eq!(log[0]["key"], "book/#1/#1>#2/downstream");
        assert_eq!(log[0]["params"]["delay_ms"], 3000);
        metric_matches_log(&s, &log).await;
        b.close().await;
        s.event(
            "b's end",
            |e| matches!(e, rtcserver::Event::Disconnected { peer } if *peer == b_id),
        )
        .await;
        assert_eq!(
            get(admin(&s), "/faults").await.expect(200).json()["rules"],
            json!([]),
            "the client's rules go with it"
        );
        for client in [a, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}
