//! Chaos mode: seeded random crashes, the same for the same seed and input.
mod common;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use common::admin::*;
use common::*;
use rtcserver::Event;
use serde_json::Value;

/// One run of a fixed, sequential input under chaos: 8 connections accepted one after the other,
/// then a pair that relays 300 numbered messages. Returns the crashes from `GET /chaos`, with the
/// (randomly numbered) room shown as `room`.
async fn chaos_run(seed: u64) -> Vec<(String, String)> {
    let s = server_with(|c| {
        c.chaos = Some("room=0.03,listener=0.25".parse().expect("spec"));
        c.chaos_seed = Some(seed);
        // Every crash is restarted: the run is about the sequence, not about escalation.
        c.max_restarts = 10_000;
    });
    for _ in 0..8 {
        let mut c = s.client().await;
        c.get_room().await;
        c.close().await;
    }
    let (mut a, mut b, room) = pair(&s).await;
    relay_numbered(&mut a, &mut b, 300, |_| {}).await;
    // A question to a's own process, answered after it has handled (and drawn for) every relay.
    a.enter_refused(&room.to_string()).await;
    let chaos = get(admin(&s), "/chaos").await.expect(200).json();
    assert_eq!(chaos["seed"], seed);
    assert_eq!(chaos["spec"], "room=0.03,listener=0.25");
    let crashes: Vec<(String, String)> = chaos["crashes"]
        .as_array()
        .expect("crashes")
        .iter()
        .map(|c| {
            let target = c["target"].as_str().unwrap_or_default();
            let target = if target == format!("room:{room}") {
                "room"
            } else {
                target
            };
            (
                target.to_owned(),
                c["trigger"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    a.close().await;
    b.close().await;
    s.assert_clean().await;
    crashes
}

#[test]
fn the_same_seed_and_input_give_the_same_crash_sequence() {
    run(async {
        let first = chaos_run(42).await;
        let second = chaos_run(42).await;
        assert_eq!(first, second);
        for kind in ["room", "listener"] {
            assert!(
                first.iter().any(|(t, _)| t == kind),
                "no {kind} crash in {first:?}"
            );
        }
        assert!(
            first.iter().all(|(t, _)| t == "room" || t == "listener"),
            "{first:?}"
        );
        assert_ne!(
            first,
            chaos_run(4242).await,
            "another seed, another sequence"
        );
    });
}

#[test]
fn a_chaos_crash_of_a_peer_closes_only_the_sender_with_1011() {
    run(async {
        let s = server_with(|c| {
            c.chaos = Some("peer=1".parse().expect("spec"));
            c.chaos_seed = Some(1);
        });
        let (mut a, mut b, _) = pair(&s).await;
        let b_id = peer_id_of(&s, &b).await;
        // b's probe in `pair` was relayed, then b crashed: a is untouched.
        assert_eq!(b.expect_close().await, CloseCode::Error);
        let chaos = s
            .event("the chaos event", |e| matches!(e, Event::ChaosCrash(_)))
            .await;
        assert!(
            matches!(&chaos, Event::ChaosCrash(c) if c.target == rtcserver::CrashTarget::Peer(b_id)),
            "{chaos:?}"
        );
        s.event(
            "b forgotten",
            |e| matches!(e, Event::Left { peer, .. } if *peer == b_id),
        )
        .await;
        let metrics = get(admin(&s), "/metrics").await.body;
        assert!(
            metrics
                .lines()
                .any(|l| l == r#"rtcserver_chaos_crashes_total{target="peer"} 1"#),
            "{metrics}"
        );
        // a relays nothing (alone), so chaos leaves it be; it still answers.
        a.enter_refused("0").await;
        a.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn the_binary_takes_the_chaos_flags_and_logs_the_seed() {
    let mut bin = Binary::on_loopback(&["--chaos", "room=0.5,listener=0.001", "--chaos-seed", "7"]);
    let seed_line = bin.wait_for_line("chaos mode: ");
    assert!(
        seed_line.starts_with("room=0.5,listener=0.001, seed 7 "),
        "{seed_line}"
    );
    let (_, admin) = bin.addresses();
    let chaos: Value = futures_lite::future::block_on(get(admin, "/chaos"))
        .expect(200)
        .json();
    assert_eq!(chaos["seed"], 7);
    assert_eq!(chaos["crashes"], serde_json::json!([]));
    let mut refused = Binary::start(&["--port", "0", "--chaos", "rooms=0.5"]);
    let (code, log) = refused.exit_code(WAIT);
    assert_eq!(code, Some(2), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("unknown target \"rooms\"")),
        "{log:#?}"
    );
}
