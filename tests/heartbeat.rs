//! docs/flags.md, `--heartbeat-secs`: the server pings every N s and ends a connection from
//! which nothing (a frame or a pong) has come for 3N s, as a departure: the book room's place
//! is free again, a named room's members hear `left`. A client that answers pings stays.
mod common;
use async_net::TcpStream;
use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::time::{Duration, Instant};

const BEAT: Duration = Duration::from_millis(400);

/// The opcode of each server frame until the connection ends (a close frame's code with it);
/// bounded by `limit`.
async fn frames_until_end(tcp: &mut TcpStream, limit: Duration) -> Vec<(u8, Option<u16>)> {
    within(limit, "the connection to end", async {
        let mut seen = Vec::new();
        loop {
            let mut head = [0u8; 2];
            if tcp.read_exact(&mut head).await.is_err() {
                return seen;
            }
            let len = usize::from(head[1] & 0x7f);
            assert!(len < 126, "small control frames only here");
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return seen;
            }
            let opcode = head[0] & 0x0f;
            let code =
                (opcode == 8 && len >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            seen.push((opcode, code));
            if opcode == 8 {
                return seen;
            }
        }
    })
    .await
}

#[test]
fn a_silent_peer_is_pinged_then_closed_and_its_room_place_is_free() {
    run(async {
        let s = server_with(|c| c.heartbeat = Some(BEAT));
        let mut a = s.client().await;
        let room = a.get_room().await;
        // A joiner that sends ENTERROOM, then never a frame again (no pong either).
        let mut silent = raw_ws(s.addr()).await;
        let enter = format!(r#"{{"type":"ENTERROOM","value":{room}}}"#);
        silent
            .write_all(&masked_text(&enter))
            .await
            .expect("ENTERROOM");
        let mut c = s.client().await;
        c.enter_refused(&room.to_string()).await;
        let since = Instant::now();
        // a and c read meanwhile, so that their library answers the pings they get too.
        let others = async {
            let m = futures_lite::future::or(a.recv(), c.recv()).await;
            panic!("nothing comes to a or c: {m:?}")
        };
        // Its place is free once it has left (its close comes first, then up to 1 s of waiting
        // for the close it never answers).
        let ends = async {
            let frames = frames_until_end(&mut silent, Duration::from_secs(10)).await;
            let took = since.elapsed();
            s.event("the silent peer leaves its room", |e| {
                matches!(e, rtcserver::Event::Left { .. })
            })
            .await;
            (frames, took)
        };
        let (frames, took) = futures_lite::future::or(ends, others).await;
        let pings = frames.iter().filter(|(op, _)| *op == 9).count();
        assert!(pings >= 2, "pinged every {BEAT:?} first: {frames:?}");
        assert_eq!(frames.last(), Some(&(8, Some(1001))), "{frames:?}");
        assert!(
            took >= BEAT * 3 - BEAT / 2 && took < BEAT * 3 + Duration::from_secs(2),
            "closed after {took:?}"
        );
        // A new joiner gets in, and relays.
        c.enter(room, &mut a).await;
        for client in [a, c] {
            client.close().await;
        }
        drop(silent);
        s.assert_clean().await;
    });
}

#[test]
fn a_client_that_answers_pings_stays_and_named_rooms_hear_left_for_a_silent_one() {
    run(async {
        let s = server_with(|c| c.heartbeat = Some(BEAT));
        let mut live = RoomPeer::join(&s, "beat").await;
        let mut silent = raw_ws_with(s.addr(), "/socket/beat", "").await;
        live.expect_event("joined").await;
        // `live` reads (so its library answers every ping) for 5 beats past the silent one's end.
        let left = live.expect_event("left").await;
        assert!(left["peer_id"].is_string(), "{left}");
        let until = Instant::now() + BEAT * 5;
        while Instant::now() < until {
            let wait = until.saturating_duration_since(Instant::now());
            let next = futures_lite::future::or(async { Some(live.client.recv().await) }, async {
                async_io::Timer::after(wait).await;
                None
            })
            .await;
            assert!(next.is_none(), "nothing else comes: {next:?}");
        }
        live.send(serde_json::json!({"event": "mark", "to": [live.id]}))
            .await;
        assert_eq!(live.expect_event("mark").await, serde_json::Value::Null);
        let mut buf = [0u8; 64];
        let _ = silent.read(&mut buf).await;
        live.client.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn heartbeat_zero_is_off() {
    run(async {
        let s = server_with(|c| c.heartbeat = None);
        let mut silent = raw_ws(s.addr()).await;
        let quiet = futures_lite::future::or(
            async {
                let mut byte = [0u8; 1];
                let _ = silent.read(&mut byte).await;
                Some(byte[0])
            },
            async {
                async_io::Timer::after(BEAT * 4).await;
                None
            },
        )
        .await;
        assert_eq!(quiet, None, "no ping, no close without the heartbeat");
        drop(silent);
        s.assert_clean().await;
    });
}

/// A masked text frame (a zero key) of a short text.
fn masked_text(text: &str) -> Vec<u8> {
    frame(1, text.as_bytes(), true)
}
