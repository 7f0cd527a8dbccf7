//! The wire actions of the fault rules (docs/faults.md, "Wire actions"), through the real
//! server: what a receiver gets on the wire (`corrupt`, `truncate`, `fragment`, `throttle`) and
//! what becomes of the connections (`stall`, `close`, `reset`). Each test checks the log against
//! what the clients saw, the metric against the log, and a control pair in another room.
mod common;
use async_net::TcpStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use common::admin::*;
use common::fault_checks::*;
use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rtcserver::hooks::{Action, AuthData, PeerHooks};
use rtcserver::rooms_protocol::RoomMessage;
use rtcserver::Config;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How late past its due time a held-up message may be on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(700);

/// Reads until the server's close frame: its code and reason.
async fn close_frame(client: &mut Client) -> (u16, String) {
    within(WAIT, "a close frame", async {
        loop {
            match client.ws.next().await {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return (u16::from(code), reason.as_str().to_owned())
                }
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(Message::Text(t))) => panic!("a message before the close: {t}"),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
}

/// One run of `corrupt` on answers with `seed`: what the receiver got, and the log.
async fn corrupt_run(seed: u64) -> (Vec<String>, Vec<Value>) {
    let s = server_with(|c| c.fault_seed = Some(seed));
    let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
    add_rule(
        &s,
        json!({"name": "garble", "action": "corrupt",
               "match": {"room": "#1", "type": "answer"}}),
    )
    .await;
    let mut got = Vec::new();
    for i in 0..5 {
        let answer = format!(r#"{{"type":"answer","sdp":"v=0 é {i}","n":{i}}}"#);
        a.send(&answer).await;
        a.send(r#"{"type":"candidate"}"#).await;
        // A text frame: tungstenite checked it is UTF-8.
        let text = b.recv_text().await;
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "{text:?} is JSON"
        );
        let diff: Vec<(char, char)> = answer
            .chars()
            .zip(text.chars())
            .filter(|(x, y)| x != y)
            .collect();
        assert_eq!(
            diff.len(),
            1,
            "one character replaced: {answer:?} → {text:?}"
        );
        assert_eq!(diff[0].1, '\u{1a}');
        assert_eq!(text.chars().count(), answer.chars().count());
        assert_eq!(b.recv_text().await, r#"{"type":"candidate"}"#);
        got.push(text);
    }
    control_sees_nothing(&mut c, &mut d).await;
    let log = fault_log(&s).await;
    assert_eq!(log.len(), 5, "{log:?}");
    for (i, (record, text)) in log.iter().zip(&got).enumerate() {
        assert_eq!(record["action"], "corrupt");
        assert_eq!(record["key"], "book/#1/#1>#2/downstream");
        assert_eq!(record["index"], i + 1);
        assert_eq!(record["type"], "answer");
        let at = record["params"]["at"].as_u64().expect("at") as usize;
        assert_eq!(text.chars().nth(at), Some('\u{1a}'), "the log's `at`");
    }
    assert_eq!(injected_metric(&s, "garble", "corrupt").await, 5);
    for client in [a, b, c, d] {
        client.close().await;
    }
    s.assert_clean().await;
    (got, log.iter().map(timeless).collect())
}

/// docs/faults.md, "Wire actions" (corrupt) and "Determinism": one character replaced by
/// U+001A, never JSON, always UTF-8; the same seed replaces the same characters.
#[test]
fn corrupt_garbles_one_character_the_same_with_the_seed() {
    run(async {
        let first = corrupt_run(5).await;
        let again = corrupt_run(5).await;
        assert_eq!(first, again, "the same seed, the same corruption");
        let other = corrupt_run(6).await;
        assert_ne!(first.0, other.0, "seed 6 picks other characters");
    });
}

/// docs/faults.md, "Wire actions" (truncate): the first `bytes` bytes, cut back to a character
/// boundary; a shorter message passes whole (and is logged).
#[test]
fn truncate_cuts_on_a_character_boundary() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "cut", "action": "truncate", "params": {"bytes": 22},
                   "match": {"room": "#1", "from": "creator", "type": "offer"}}),
        )
        .await;
        // `é` takes bytes 21 and 22: the cut moves back to 21.
        let offer = r#"{"type":"offer","x":"éé"}"#;
        a.send(offer).await;
        assert_eq!(b.recv_text().await, offer[..21]);
        let short = r#"{"type":"offer"}"#;
        a.send(short).await;
        assert_eq!(b.recv_text().await, short);
        // The other direction is not the rule's (`from: creator`).
        b.send(offer).await;
        assert_eq!(a.recv_text().await, offer);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 2, "{log:?}");
        for (i, r) in log.iter().enumerate() {
            assert_eq!(r["action"], "truncate");
            assert_eq!(r["params"]["bytes"], 22);
            assert_eq!(r["index"], i + 1);
            assert_eq!(r["key"], "book/#1/#1>#2/downstream");
        }
        assert_eq!(injected_metric(&s, "cut", "truncate").await, 2);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// One server frame read by hand: FIN, opcode, payload.
async fn read_frame(tcp: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    within(WAIT, "a frame", async {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).await.expect("frame head");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                tcp.read_exact(&mut l).await.expect("length");
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                tcp.read_exact(&mut l).await.expect("length");
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        tcp.read_exact(&mut payload).await.expect("payload");
        (head[0] & 0x80 != 0, head[0] & 0x0f, payload)
    })
    .await
}

/// docs/faults.md, "Wire actions" (fragment): `frames: 4` is a text frame and 3 continuation
/// frames on the wire (RFC 6455 §5.4); a real client reassembles the same text.
#[test]
fn fragment_sends_one_message_as_n_frames() {
    run(async {
        let s = server();
        let (mut c, mut d, _) = pair(&s).await;
        // Room #2 is the raw client's: the control pair (room #1 here) comes first.
        let mut a = s.client().await;
        let room = a.get_room().await;
        let mut raw = raw_ws(s.addr()).await;
        let enter = format!(r#"{{"type":"ENTERROOM","value":{room}}}"#);
        raw.write_all(&frame(0x1, enter.as_bytes(), true))
            .await
            .expect("write");
        let probe = r#"{"type":"probe"}"#;
        raw.write_all(&frame(0x1, probe.as_bytes(), true))
            .await
            .expect("write");
        assert_eq!(a.recv_text().await, probe);
        add_rule(
            &s,
            json!({"name": "shards", "action": "fragment", "params": {"frames": 4},
                   "match": {"room": "#2", "type": "offer"}}),
        )
        .await;
        let offer = r#"{"type":"offer","sdp":"v=0 o=- 4611731400430051336 2 IN IP4 é"}"#;
        a.send(offer).await;
        let mut frames = Vec::new();
        let mut text = Vec::new();
        loop {
            let (fin, opcode, payload) = read_frame(&mut raw).await;
            frames.push((fin, opcode));
            text.extend_from_slice(&payload);
            if fin {
                break;
            }
        }
        assert_eq!(
            frames,
            [(false, 0x1), (false, 0x0), (false, 0x0), (true, 0x0)],
            "1 + 3 frames"
        );
        assert_eq!(String::from_utf8(text).expect("utf-8"), offer);
        // The raw client's offer, fragmented towards the real client: reassembled.
        raw.write_all(&frame(0x1, offer.as_bytes(), true))
            .await
            .expect("write");
        assert_eq!(a.recv_text().await, offer);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let keys: Vec<&Value> = log.iter().map(|r| &r["key"]).collect();
        assert_eq!(
            keys,
            ["book/#2/#1>#2/downstream", "book/#2/#2>#1/downstream"],
            "{log:?}"
        );
        for r in &log {
            assert_eq!(r["action"], "fragment");
            assert_eq!(r["params"]["frames"], 4);
            assert_eq!(r["index"], 1);
        }
        assert_eq!(injected_metric(&s, "shards", "fragment").await, 2);
        raw.write_all(&frame(0x8, &1000u16.to_be_bytes(), true))
            .await
            .expect("write");
        drop(raw);
        for client in [a, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Wire actions" (throttle): 1 MiB at 64 KiB/s takes 16 s (15.5-17 s allowed);
/// the next message waits behind it, other receivers do not.
#[test]
fn throttle_writes_at_the_rate() {
    run(async {
        let s = server_with(|c| c.max_message_bytes = 2 << 20);
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "slow", "action": "throttle", "params": {"bytes_per_s": 65536},
                   "match": {"room": "#1", "type": "big"}}),
        )
        .await;
        let head = r#"{"type":"big","pad":""#;
        let pad = "x".repeat((1 << 20) - head.len() - 2);
        let big = format!("{head}{pad}\"}}");
        assert_eq!(big.len(), 1 << 20);
        let sent = Instant::now();
        a.send(&big).await;
        a.send(r#"{"type":"after"}"#).await;
        // Meanwhile the control pair is not held up.
        control_sees_nothing(&mut c, &mut d).await;
        let got = b.recv_text().await;
        let took = sent.elapsed();
        eprintln!("1 MiB at 64 KiB/s took {took:?}");
        assert_eq!(got.len(), big.len());
        assert!(got == big, "the text is unchanged");
        assert!(
            (Duration::from_millis(15_500)..Duration::from_millis(17_000)).contains(&took),
            "1 MiB at 64 KiB/s took {took:?}"
        );
        assert_eq!(b.recv_text().await, r#"{"type":"after"}"#);
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["action"], "throttle");
        assert_eq!(log[0]["params"]["bytes_per_s"], 65536);
        assert_eq!(log[0]["type"], "big");
        assert_eq!(injected_metric(&s, "slow", "throttle").await, 1);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Wire actions" (stall): downstream, the receiver's connection writes nothing
/// for `ms` (what follows waits behind); upstream, the sender is not read for `ms`.
#[test]
fn stall_holds_up_a_receiver_or_a_sender() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "nap", "action": "stall", "params": {"ms": 500},
                   "match": {"room": "#1", "to": "joiner", "type": "offer"}}),
        )
        .await;
        let sent = Instant::now();
        a.send(r#"{"type":"offer"}"#).await;
        a.send(r#"{"type":"candidate"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"offer"}"#);
        let offer = sent.elapsed();
        assert_eq!(b.recv_text().await, r#"{"type":"candidate"}"#);
        let candidate = sent.elapsed();
        eprintln!("receiver stalled: offer after {offer:?}, candidate after {candidate:?}");
        let ms500 = Duration::from_millis(500);
        assert!((ms500..ms500 + SLACK).contains(&offer), "{offer:?}");
        assert!(candidate >= ms500, "{candidate:?}");
        // The other direction is not stalled.
        let sent = Instant::now();
        b.send(r#"{"type":"offer"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"offer"}"#);
        assert!(sent.elapsed() < NOT_DELAYED, "{:?}", sent.elapsed());

        add_rule(
            &s,
            json!({"name": "deaf", "action": "stall", "params": {"ms": 500},
                   "match": {"room": "#1", "from": "creator", "type": "answer",
                             "direction": "upstream"}}),
        )
        .await;
        let sent = Instant::now();
        a.send(r#"{"type":"answer"}"#).await;
        a.send(r#"{"type":"candidate","n":2}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"answer"}"#);
        let answer = sent.elapsed();
        assert_eq!(b.recv_text().await, r#"{"type":"candidate","n":2}"#);
        let candidate = sent.elapsed();
        eprintln!("sender stalled: answer after {answer:?}, candidate after {candidate:?}");
        assert!(answer < NOT_DELAYED, "{answer:?}");
        assert!((ms500..ms500 + SLACK).contains(&candidate), "{candidate:?}");
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let seen: Vec<(&Value, &Value, &Value)> = log
            .iter()
            .map(|r| (&r["rule"], &r["key"], &r["action"]))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    &json!("nap"),
                    &json!("book/#1/#1>#2/downstream"),
                    &json!("stall")
                ),
                (
                    &json!("deaf"),
                    &json!("book/#1/#1>*/upstream"),
                    &json!("stall")
                ),
            ]
        );
        assert_eq!(injected_metric(&s, "nap", "stall").await, 1);
        assert_eq!(injected_metric(&s, "deaf", "stall").await, 1);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Wire actions" (stall) and docs/close-codes.md, "Slow readers": a long stall
/// of a receiver that is sent more than its queue's bound ends in 1008 `outbound queue full`.
#[test]
fn a_long_stall_ends_in_the_slow_reader_close() {
    run(async {
        let s = server_with(|c| c.outbound_limit_bytes = 64 * 1024);
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "coma", "action": "stall", "params": {"ms": 600000},
                   "match": {"room": "#1", "type": "offer", "count": 1}}),
        )
        .await;
        a.send(r#"{"type":"offer"}"#).await;
        let pad = "x".repeat(1000);
        let started = Instant::now();
        for i in 0..100 {
            a.send(&format!(r#"{{"type":"candidate","n":{i},"pad":"{pad}"}}"#))
                .await;
        }
        let (code, reason) = close_frame(&mut b).await;
        eprintln!("stalled receiver closed after {:?}", started.elapsed());
        assert_eq!((code, reason.as_str()), (1008, "outbound queue full"));
        assert!(started.elapsed() < Duration::from_secs(10));
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["action"], "stall");
        assert_eq!(log[0]["params"]["ms"], 600000);
        assert_eq!(injected_metric(&s, "coma", "stall").await, 1);
        // Counted once the connection ends: b answers the close as it reads on.
        b.close().await;
        let sample = r#"rtcserver_bad_input_closes_total{reason="slow_reader",code="1008"} 1"#;
        within(WAIT, "the slow-reader close counted", async {
            while !get(admin(&s), "/metrics").await.body.contains(sample) {
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await;
        for client in [a, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Wire actions" (close) and docs/close-codes.md: the receiver's connection
/// closed with the rule's code and reason, after the message (`after: true`) or instead of it.
#[test]
fn close_ends_the_receivers_connection_with_the_code() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        let (mut c, mut d, _) = pair(&s).await;
        add_rule(
            &s,
            json!({"name": "hangup", "action": "close",
                   "params": {"code": 4321, "reason": "bye now", "after": true},
                   "match": {"room": "#1", "type": "answer"}}),
        )
        .await;
        a.send(r#"{"type":"candidate"}"#).await;
        a.send(r#"{"type":"answer"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"candidate"}"#);
        assert_eq!(b.recv_text().await, r#"{"type":"answer"}"#);
        assert_eq!(close_frame(&mut b).await, (4321, "bye now".to_owned()));
        // `after: false`, and the default code: the receiver is closed instead of getting it.
        let (mut e, mut f, _) = pair(&s).await;
        post(
            admin(&s),
            "/faults/hangup",
            &json!({"action": "close", "params": {"after": false},
                    "match": {"room": "#3", "type": "answer"}})
            .to_string(),
        )
        .await
        .expect(200);
        e.send(r#"{"type":"answer"}"#).await;
        assert_eq!(
            close_frame(&mut f).await,
            (4100, "fault injected".to_owned())
        );
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(
            log[0]["params"],
            json!({"code": 4321, "reason": "bye now", "after": true})
        );
        assert_eq!(
            log[1]["params"],
            json!({"code": 4100, "reason": "fault injected", "after": false})
        );
        assert_eq!(log[0]["key"], "book/#1/#1>#2/downstream");
        assert_eq!(log[1]["key"], "book/#3/#1>#2/downstream");
        // The rule was replaced: its counter goes on.
        assert_eq!(injected_metric(&s, "hangup", "close").await, 2);
        let metrics = get(admin(&s), "/metrics").await.expect(200).body;
        assert!(
            !metrics.contains("rtcserver_bad_input_closes_total{"),
            "an injected close is not bad input"
        );
        for client in [a, b, c, d, e, f] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Wire actions" (reset): the receiver's TCP connection is reset, with no
/// close frame, and the message is not delivered.
#[test]
fn reset_drops_the_receivers_connection_without_a_close_frame() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "cable", "action": "reset",
                   "match": {"room": "#1", "to": "joiner", "type": "offer"}}),
        )
        .await;
        a.send(r#"{"type":"candidate"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"candidate"}"#);
        a.send(r#"{"type":"offer"}"#).await;
        let end = within(WAIT, "the reset", b.ws.next()).await;
        match end {
            // A reset, not an end of stream: no FIN came first.
            Some(Err(async_tungstenite::tungstenite::Error::Io(e))) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}")
            }
            other => panic!("got {other:?} instead of a reset"),
        }
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["action"], "reset");
        assert_eq!(log[0]["key"], "book/#1/#1>#2/downstream");
        assert_eq!(injected_metric(&s, "cable", "reset").await, 1);
        drop(b);
        for client in [a, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/faults.md, "Wire actions", on the rooms endpoint: a corrupted event and a close after
/// an offer; the others in the room get `left` for the closed peer, as for any other end.
#[test]
fn wire_actions_on_the_rooms_endpoint() {
    run(async {
        let s = server();
        let (mut c, mut d, _) = pair(&s).await;
        let mut p1 = RoomPeer::join(&s, "lobby").await;
        let mut p2 = RoomPeer::join(&s, "lobby").await;
        assert_eq!(p1.expect_event("joined").await["peer_id"], p2.id.as_str());
        add_rule(
            &s,
            json!({"name": "garble-pings", "action": "corrupt",
                   "match": {"endpoint": "rooms", "from": "#1", "type": "ping"}}),
        )
        .await;
        add_rule(
            &s,
            json!({"name": "offer-then-gone", "action": "close",
                   "params": {"code": 4444, "reason": "gone"},
                   "match": {"endpoint": "rooms", "from": "#1", "type": "offer"}}),
        )
        .await;
        p1.send(json!({"event": "ping", "data": {"n": 1}})).await;
        let garbled = p2.client.recv_text().await;
        assert!(
            serde_json::from_str::<Value>(&garbled).is_err(),
            "{garbled}"
        );
        assert_eq!(garbled.matches('\u{1a}').count(), 1);
        p1.send(json!({"event": "offer", "data": {"sdp": "x"}}))
            .await;
        assert_eq!(p2.expect_event("offer").await["sdp"], "x");
        assert_eq!(close_frame(&mut p2.client).await, (4444, "gone".to_owned()));
        assert_eq!(p1.expect_event("left").await["peer_id"], p2.id.as_str());
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        let seen: Vec<(&Value, &Value, &Value)> = log
            .iter()
            .map(|r| (&r["key"], &r["type"], &r["action"]))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    &json!("rooms/#2/#1>#2/downstream"),
                    &json!("ping"),
                    &json!("corrupt")
                ),
                (
                    &json!("rooms/#2/#1>#2/downstream"),
                    &json!("offer"),
                    &json!("close")
                ),
            ]
        );
        let at = log[0]["params"]["at"].as_u64().expect("at") as usize;
        assert_eq!(garbled.chars().nth(at), Some('\u{1a}'));
        assert_eq!(injected_metric(&s, "garble-pings", "corrupt").await, 1);
        assert_eq!(injected_metric(&s, "offer-then-gone", "close").await, 1);
        for client in [c, d, p1.client, p2.client] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/close-codes.md, "Control is never stuck behind a write": a crash order ends a
/// receiver in the middle of a throttled write (a reset, as for any pending write), and a
/// shutdown ends a stalled one with 1001, without waiting for the stall.
#[test]
fn control_orders_overtake_a_throttled_write_and_a_stall() {
    run(async {
        let s = server();
        let ((mut a, mut b), (mut c, mut d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "trickle", "action": "throttle", "params": {"bytes_per_s": 1024},
                   "match": {"room": "#1", "type": "big"}}),
        )
        .await;
        let b_id = peer_id_of(&s, &b).await;
        // 64 KiB at 1 KiB/s: a minute, unless the crash order overtakes it.
        let big = format!(r#"{{"type":"big","pad":"{}"}}"#, "x".repeat(64 * 1024));
        a.send(&big).await;
        let fault_seen = Instant::now();
        within(WAIT, "the throttle to start", async {
            while fault_log(&s).await.is_empty() {
                async_io::Timer::after(Duration::from_millis(10)).await;
            }
        })
        .await;
        crash(&s, &format!("peer:{b_id}")).await;
        match within(WAIT, "the reset", b.ws.next()).await {
            None | Some(Err(_)) => {}
            Some(Ok(m)) => panic!("got {m:?} instead of a reset"),
        }
        let took = fault_seen.elapsed();
        eprintln!("a throttled write crashed after {took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        control_sees_nothing(&mut c, &mut d).await;
        assert_eq!(injected_metric(&s, "trickle", "throttle").await, 1);
        drop(b);
        for client in [a, c, d] {
            client.close().await;
        }
        s.assert_clean().await;

        let s = server();
        let ((mut a, mut b), (c, d)) = two_pairs(&s).await;
        add_rule(
            &s,
            json!({"name": "coma", "action": "stall", "params": {"ms": 600000},
                   "match": {"room": "#1", "type": "offer"}}),
        )
        .await;
        a.send(r#"{"type":"offer"}"#).await;
        within(WAIT, "the stall to start", async {
            while fault_log(&s).await.is_empty() {
                async_io::Timer::after(Duration::from_millis(10)).await;
            }
        })
        .await;
        let started = Instant::now();
        let (_, closed) = futures_lite::future::zip(s.handle.shutdown(), close_frame(&mut b)).await;
        eprintln!("a stalled receiver shut down after {:?}", started.elapsed());
        assert_eq!(closed, (1001, "server shutting down".to_owned()));
        assert!(started.elapsed() < Duration::from_secs(10));
        drop((a, b, c, d));
    });
}

/// docs/faults.md, "Actions" and "Admin API" (errors): each wire action's parameters are
/// checked, and a 400 names the field.
#[test]
fn wire_params_are_checked() {
    run(async {
        let s = server();
        let cases = [
            (json!({"action": "truncate"}), "params.bytes"),
            (
                json!({"action": "truncate", "params": {"bytes": -1}}),
                "params.bytes",
            ),
            (
                json!({"action": "fragment", "params": {"frames": 1}}),
                "params.frames",
            ),
            (
                json!({"action": "fragment", "params": {"frames": 1025}}),
                "params.frames",
            ),
            (
                json!({"action": "throttle", "params": {"bytes_per_s": 0}}),
                "params.bytes_per_s",
            ),
            (
                json!({"action": "stall", "params": {"ms": 600001}}),
                "params.ms",
            ),
            (
                json!({"action": "close", "params": {"code": 1006}}),
                "params.code",
            ),
            (
                json!({"action": "close", "params": {"code": 999}}),
                "params.code",
            ),
            (
                json!({"action": "close", "params": {"reason": "x".repeat(124)}}),
                "params.reason",
            ),
            (
                json!({"action": "close", "params": {"after": 1}}),
                "params.after",
            ),
            (
                json!({"action": "corrupt", "params": {"at": 3}}),
                "params.at",
            ),
            (
                json!({"action": "reset", "params": {"code": 1}}),
                "params.code",
            ),
        ];
        for (mut rule, field) in cases {
            rule["name"] = json!("r");
            let reply = post(admin(&s), "/faults", &rule.to_string())
                .await
                .expect(400);
            assert_eq!(reply.json()["field"], field, "{rule}");
        }
        let ok = json!({"name": "ok", "action": "close",
                        "params": {"code": 1000, "reason": "é".repeat(61), "after": false}});
        let set = post(admin(&s), "/faults", &ok.to_string())
            .await
            .expect(201)
            .json();
        assert_eq!(set["params"], ok["params"]);
        assert!(fault_log(&s).await.is_empty());
        s.assert_clean().await;
    });
}

/// Adds `"hooked": true` to every `data` object a peer is sent.
struct Stamp;

impl PeerHooks for Stamp {
    fn on_send(&self, _peer: &AuthData, mut m: RoomMessage) -> Action<RoomMessage> {
        if let Some(data) = m.data.as_object_mut() {
            data.insert("hooked".into(), json!(true));
        }
        Action::Forward(m)
    }
}

/// docs/faults.md, "Wire actions": a wire action acts on the text the receiver would get, after
/// its `on_send` hook.
#[test]
fn a_wire_action_acts_after_the_on_send_hook() {
    run(async {
        let s = server_built(Config::ephemeral(), |b| b.peer_hooks(Stamp));
        let (mut c, mut d, _) = pair(&s).await;
        let mut p1 = RoomPeer::join(&s, "lobby").await;
        let mut p2 = RoomPeer::join(&s, "lobby").await;
        p1.expect_event("joined").await;
        add_rule(
            &s,
            json!({"name": "cut", "action": "truncate", "params": {"bytes": 30},
                   "match": {"endpoint": "rooms", "type": "offer", "after": 1}}),
        )
        .await;
        let offer = json!({"event": "offer", "data": {"sdp": "v=0"}});
        p1.send(offer.clone()).await;
        let whole = p2.client.recv_text().await;
        assert!(whole.contains(r#""hooked":true"#), "{whole}");
        p1.send(offer).await;
        assert_eq!(p2.client.recv_text().await, whole[..30]);
        control_sees_nothing(&mut c, &mut d).await;
        let log = fault_log(&s).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["index"], 2);
        assert_eq!(log[0]["key"], "rooms/#2/#1>#2/downstream");
        assert_eq!(injected_metric(&s, "cut", "truncate").await, 1);
        for client in [c, d, p1.client, p2.client] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}
