//! A live fuzz (issue 18.6): clients send mutated frames of both protocols at the running server
//! while a numbered pair relays. The server never answers 1011 (an internal error), never dies,
//! and the pair loses nothing. The mutations are seeded (`FUZZ_SEED`, printed) so that a failure
//! can be run again.
mod common;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use common::*;
use futures_lite::StreamExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Valid messages of both protocols, the mutations' starting points.
const SEEDS: [&str; 10] = [
    r#"{"type":"GETROOM","value":""}"#,
    r#"{"type":"ENTERROOM","value":1}"#,
    r#"{"type":"ENTERROOM","value":"12"}"#,
    r#"{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#,
    r#"{"type":"candidate","label":0,"id":"0","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}"#,
    r#"{"type":"CHATMSG","value":"hello"}"#,
    r#"{"event":"offer","to":["1"],"data":{"sdp":"v=0"}}"#,
    r#"{"event":"chat","data":{"text":"hi"},"to":"all"}"#,
    r#"{"event":"joined","data":{"peer_id":"1"},"from":"2"}"#,
    r#"{"event":"error","data":{"description":"room_is_full"}}"#,
];

/// One mutated message: bytes flipped, cut, repeated, or spliced with another seed; JSON nested
/// deep; numbers huge. May not be UTF-8 (sent as binary then).
fn mutate(rng: &mut Xoshiro256PlusPlus) -> Vec<u8> {
    let pick = |rng: &mut Xoshiro256PlusPlus, n: usize| (rng.next_u64() % n as u64) as usize;
    let mut m = SEEDS[pick(rng, SEEDS.len())].as_bytes().to_vec();
    for _ in 0..1 + pick(rng, 4) {
        match pick(rng, 8) {
            0 if !m.is_empty() => {
                let i = pick(rng, m.len());
                m[i] ^= 1 << pick(rng, 8);
            }
            1 if !m.is_empty() => m.truncate(pick(rng, m.len())),
            2 => {
                let other = SEEDS[pick(rng, SEEDS.len())].as_bytes();
                let at = pick(rng, m.len() + 1);
                m.splice(at..at, other.iter().copied());
            }
            3 => {
                let depth = 1 + pick(rng, 2000);
                let mut deep = "[".repeat(depth).into_bytes();
                deep.extend_from_slice(&m);
                deep.extend(std::iter::repeat_n(b']', depth));
                m = deep;
            }
            // Past the 64 KiB limit now and then (1009), not far: every client runs on the
            // test's one thread.
            4 => m = m.repeat(1 + pick(rng, ((80 << 10) / m.len().max(1)).max(1))),
            5 => m.extend_from_slice("\u{feff}\u{0}é€😀".as_bytes()),
            6 => {
                let text = String::from_utf8_lossy(&m).replace('1', "1e999999999999999999");
                m = text.into_bytes();
            }
            _ => m.insert(pick(rng, m.len() + 1), (rng.next_u64() & 0xff) as u8),
        }
    }
    m
}

/// One fuzzing client: `rounds` connections, each sending up to 50 mutated frames; panics on a
/// 1011. Returns the close codes it saw.
async fn fuzzer(s: &TestServer, seed: u64, rounds: usize) -> Vec<u16> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut codes = Vec::new();
    for round in 0..rounds {
        let path = if round % 2 == 0 { "/" } else { "/socket/fuzz" };
        let mut c = Client::connect(s.addr(), path).await;
        for _ in 0..50 {
            let m = mutate(&mut rng);
            let frame = match String::from_utf8(m) {
                Ok(text) => Message::text(text),
                Err(e) => Message::binary(e.into_bytes()),
            };
            if c.ws.send(frame).await.is_err() {
                break;
            }
        }
        let _ = c.ws.send(Message::Close(None)).await;
        // What the server says until the end: relays, replies, and maybe its own close.
        let end = within(WAIT, "the fuzzed connection to end", async {
            loop {
                match c.ws.next().await {
                    Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                    Some(Ok(_)) => {}
                    _ => return None,
                }
            }
        })
        .await;
        if let Some(code) = end {
            assert_ne!(
                code,
                u16::from(CloseCode::Error),
                "1011 (seed {seed}, round {round})"
            );
            codes.push(code);
        }
    }
    codes
}

#[test]
fn mutated_frames_never_get_1011_and_a_numbered_pair_loses_nothing() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().next_u64());
    eprintln!("FUZZ_SEED={seed}");
    run(async {
        let s = server_with(|c| {
            c.max_message_bytes = 64 << 10;
            // The fuzzers share the test's one thread: one may be a while between its
            // connect and its request.
            c.handshake_timeout = Duration::from_secs(10);
        });
        let (mut a, mut b, _) = pair(&s).await;
        let fuzz =
            futures_util::future::join_all((0..4).map(|i| fuzzer(&s, seed.wrapping_add(i), 25)));
        let relay = async {
            relay_numbered(&mut a, &mut b, 2000, |_| {}).await;
            relay_numbered(&mut b, &mut a, 2000, |_| {}).await;
        };
        let (codes, ()) = futures_lite::future::zip(fuzz, relay).await;
        let mut seen: Vec<u16> = codes.into_iter().flatten().collect();
        seen.sort_unstable();
        seen.dedup();
        eprintln!("close codes the fuzzers saw: {seen:?}");
        // Still serving, and nothing left behind.
        let (c, d, _) = pair(&s).await;
        for client in [a, b, c, d] {
            client.close().await;
        }
        within(
            Duration::from_secs(30),
            "the server to be clean",
            s.assert_clean(),
        )
        .await;
    });
}
