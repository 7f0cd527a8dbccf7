//! flags.md (`--max-messages-per-sec`, `--max-bytes-per-sec`) and close-codes.md (1008
//! `over budget`): what one connection may send, against the real server over real sockets.
//! Speed is not asserted here (bench/README.md measures it); only lower bounds the budget
//! itself guarantees, the metrics, loss and order.
mod common;
use async_tungstenite::tungstenite::Message;
use common::admin::{admin, get};
use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rtcserver::budget::{Budget, Rate, OVER_BUDGET};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// A relay of exactly `len` bytes: `{"type":"x","p":"aaa..."}`.
fn relay_of(len: usize) -> String {
    let head = r#"{"type":"x","p":""}"#.len();
    format!(r#"{{"type":"x","p":"{}"}}"#, "a".repeat(len - head))
}

/// GETROOM, what a pair's creator sends before anything else.
const GETROOM_BYTES: usize = r#"{"type":"GETROOM","value":""}"#.len();

async fn metric(s: &TestServer, name: &str) -> u64 {
    let text = get(admin(s), "/metrics").await.expect(200).body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().expect("a counter"))
}

const THROTTLED_CONNECTIONS: &str = "rtcserver_throttled_connections_total";

async fn throttled_frames(s: &TestServer) -> u64 {
    metric(s, "rtcserver_throttled_frames_total").await
}

fn budget(messages: Option<Rate>, bytes: Option<Rate>) -> Budget {
    Budget {
        messages,
        bytes,
        over_limit: Duration::from_secs(3600),
    }
}

/// Refills so slowly that a frame held back is held for about a second: long enough that the
/// frames a test sends together are all read within the burst, whatever the machine's load.
const SLOW: u64 = 1;

/// `a` (the creator) sends `relays` to `b`, one after the other without waiting; `b` reads
/// them all, in order.
async fn relay_all(a: &mut Client, b: &mut Client, relays: &[String]) {
    for r in relays {
        a.send(r).await;
    }
    for r in relays {
        assert_eq!(&b.recv_text().await, r);
    }
}

#[test]
fn exactly_the_message_burst_is_read_at_once_and_one_more_waits() {
    run(async {
        const BURST: usize = 10;
        let rate = Rate {
            per_sec: SLOW,
            burst: BURST as u64,
        };
        let s = server_with(|c| c.budget = budget(Some(rate), None));
        // GETROOM is the creator's first message of its burst.
        let (mut a, mut b, _) = pair(&s).await;
        let relays: Vec<String> = (0..BURST - 1).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        relay_all(&mut a, &mut b, &relays).await;
        assert_eq!(throttled_frames(&s).await, 0, "the burst, exactly");
        assert_eq!(metric(&s, THROTTLED_CONNECTIONS).await, 0);
        // Its close frame, sent at once, is read after the wait: it counts.
        a.close().await;
        b.close().await;

        let (mut a, mut b, _) = pair(&s).await;
        let before = throttled_frames(&s).await;
        let relays: Vec<String> = (0..BURST).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        relay_all(&mut a, &mut b, &relays).await;
        assert_eq!(
            throttled_frames(&s).await,
            before + 1,
            "the burst and one more"
        );
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn exactly_the_byte_burst_is_read_at_once_and_one_byte_more_makes_the_next_frame_wait() {
    run(async {
        const BURST: usize = 1000;
        let rate = Rate {
            per_sec: SLOW,
            burst: BURST as u64,
        };
        let s = server_with(|c| c.budget = budget(None, Some(rate)));
        for (over, held) in [(0, 0), (1, 1)] {
            let (mut a, mut b, _) = pair(&s).await;
            // The burst (plus `over`) in two relays, then an empty ping (no bytes) that is read
            // at once within the budget and held back past it; its pong says it was read.
            let rest = BURST + over - GETROOM_BYTES;
            let relays = [relay_of(rest / 2), relay_of(rest - rest / 2)];
            relay_all(&mut a, &mut b, &relays).await;
            a.ws.send(Message::Ping(Vec::new().into()))
                .await
                .expect("ping");
            within(WAIT, "the pong", async {
                while !matches!(a.ws.next().await, Some(Ok(Message::Pong(_)))) {}
            })
            .await;
            assert_eq!(
                throttled_frames(&s).await,
                held,
                "{over} byte(s) over the burst"
            );
            a.close().await;
            b.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn a_flood_reaches_its_partner_no_faster_than_the_budget() {
    run(async {
        const PER_SEC: u64 = 50;
        const FLOOD: usize = 150;
        let rate = Rate {
            per_sec: PER_SEC,
            burst: PER_SEC,
        };
        let s = server_with(|c| c.budget = budget(Some(rate), None));
        let start = Instant::now();
        let (mut a, mut b, _) = pair(&s).await;
        let relays: Vec<String> = (0..FLOOD).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        futures_lite::future::zip(
            async {
                for r in &relays {
                    a.send(r).await;
                }
            },
            async {
                for r in &relays {
                    assert_eq!(&b.recv_text().await, r);
                }
            },
        )
        .await;
        // GETROOM and the flood: at most the burst, then PER_SEC a second, since the upgrade.
        let least = (FLOOD + 1 - PER_SEC as usize - 1) as f64 / PER_SEC as f64;
        let took = start.elapsed().as_secs_f64();
        assert!(took >= least * 0.9, "{took:.2} s < {least:.2} s");
        // Every frame past the burst waited.
        let held = throttled_frames(&s).await;
        assert!(held >= (FLOOD - PER_SEC as usize) as u64 - 5, "{held}");
        assert_eq!(metric(&s, THROTTLED_CONNECTIONS).await, 1);
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

/// Sends masked text frames on `tcp` as fast as the server takes them (at most `n`) while
/// reading what the server sends; returns the server's close frame's payload.
async fn flood_until_closed(tcp: async_net::TcpStream, n: usize) -> Vec<u8> {
    let mut writer = tcp.clone();
    let mut reader = tcp;
    let flood = async {
        let frames = frame(0x1, br#"{"type":"x"}"#, true).repeat(64);
        for _ in 0..n / 64 {
            if writer.write_all(&frames).await.is_err() {
                break;
            }
        }
        // Whatever the server does, the answer is awaited below.
        std::future::pending::<Vec<u8>>().await
    };
    let answer = async {
        loop {
            let mut head = [0u8; 2];
            reader.read_exact(&mut head).await.expect("a frame's head");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    reader.read_exact(&mut ext).await.expect("a length");
                    usize::from(u16::from_be_bytes(ext))
                }
                127 => panic!("server frames here are small"),
                len => usize::from(len),
            };
            let mut payload = vec![0u8; len];
            reader.read_exact(&mut payload).await.expect("a payload");
            if head[0] & 0x0f == 0x8 {
                return payload;
            }
        }
    };
    within(
        WAIT,
        "the close of a flood",
        futures_lite::future::or(answer, flood),
    )
    .await
}

#[test]
fn a_client_over_budget_for_the_limit_is_closed_with_1008_on_both_endpoints() {
    run(async {
        let s = server_with(|c| {
            c.budget = Budget {
                messages: Some(Rate {
                    per_sec: 20,
                    burst: 20,
                }),
                bytes: None,
                over_limit: Duration::from_secs(1),
            }
        });
        let mut want = 1008u16.to_be_bytes().to_vec();
        want.extend_from_slice(OVER_BUDGET.as_bytes());
        for path in ["/", "/socket/lobby"] {
            let tcp = raw_ws_with(s.addr(), path, "").await;
            let start = Instant::now();
            let answer = flood_until_closed(tcp, 1_000_000).await;
            assert_eq!(
                String::from_utf8_lossy(&answer),
                String::from_utf8_lossy(&want)
            );
            assert!(start.elapsed() >= Duration::from_millis(900), "{path}");
        }
        // Counted where the connection ends, after the close's linger.
        s.assert_clean_with_rooms(0).await;
        let closes = "rtcserver_bad_input_closes_total{reason=\"over_budget\",code=\"1008\"}";
        assert_eq!(metric(&s, closes).await, 2);
    });
}

#[test]
fn a_client_that_pauses_before_the_limit_is_not_closed() {
    run(async {
        let over_limit = Duration::from_secs(1);
        let rate = Rate {
            per_sec: 20,
            burst: 20,
        };
        let s = server_with(|c| {
            c.budget = Budget {
                messages: Some(rate),
                bytes: None,
                over_limit,
            }
        });
        let (mut a, mut b, _) = pair(&s).await;
        // Three times: over budget (the burst and 10 more, read over half a second), then a
        // pause that refills the bucket: never over for the whole second.
        for round in 0..3 {
            let relays: Vec<String> = (0..30)
                .map(|i| format!(r#"{{"r":{round},"n":{i}}}"#))
                .collect();
            relay_all(&mut a, &mut b, &relays).await;
            async_io::Timer::after(over_limit + Duration::from_millis(200)).await;
        }
        b.send(r#"{"type":"still-here"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"still-here"}"#);
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn a_numbered_pair_beside_a_flood_and_a_stalled_reader_loses_nothing() {
    run(async {
        let s = server_with(|c| c.budget = Budget::default());
        let (mut flooder, mut flooded, _) = pair(&s).await;
        let mut pusher = s.client().await;
        let room = pusher.get_room().await;
        let mut stalled = Client::stalled(s.addr(), "/").await;
        stalled.enter(room, &mut pusher).await;
        let (mut a, mut b, _) = pair(&s).await;
        let done = Cell::new(false);
        let flood = async {
            let text = relay_of(200);
            for _ in 0..50_000 {
                if done.get() {
                    break;
                }
                flooder.send(&text).await;
            }
        };
        let drain = async {
            while !done.get() {
                let _ = futures_lite::future::or(
                    async {
                        flooded.recv().await;
                    },
                    async {
                        async_io::Timer::after(Duration::from_millis(100)).await;
                    },
                )
                .await;
            }
        };
        let push = async {
            let big = relay_of(64 * 1024);
            for _ in 0..2_000 {
                let sent = pusher.ws.send(Message::text(big.clone())).await;
                if done.get() || sent.is_err() {
                    break;
                }
            }
        };
        let numbered = async {
            relay_numbered(&mut a, &mut b, 500, |_| {}).await;
            relay_numbered(&mut b, &mut a, 500, |_| {}).await;
            done.set(true);
        };
        futures_lite::future::zip(
            futures_lite::future::zip(flood, drain),
            futures_lite::future::zip(push, numbered),
        )
        .await;
        a.close().await;
        b.close().await;
        // Dropped: their backlogs would be read at their budgets before their closes.
        drop((flooder, flooded, pusher, stalled));
        s.assert_clean().await;
    });
}

#[test]
fn the_binary_takes_the_flags() {
    let mut server = common::admin::Binary::on_loopback(&[
        "--max-messages-per-sec",
        "5",
        "--max-bytes-per-sec",
        "0",
    ]);
    let (addr, admin_addr) = server.addresses();
    run(async {
        // The burst is 2 s worth: 10 frames; of 20, the last 10 wait.
        let mut tcp = raw_ws_with(addr, "/", "").await;
        let frames = frame(0x1, br#"{"type":"x"}"#, true).repeat(20);
        tcp.write_all(&frames).await.expect("write");
        let held = within(WAIT, "10 frames held back", async {
            loop {
                let text = get(admin_addr, "/metrics").await.expect(200).body;
                let held: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("rtcserver_throttled_frames_total "))
                    .map_or(0, |v| v.parse().expect("a counter"));
                if held >= 10 {
                    return held;
                }
                async_io::Timer::after(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert_eq!(held, 10);
    });
}
