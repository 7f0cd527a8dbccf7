//! Peers that stop reading (README, "Slow readers"): the outbound bound holds in memory, and a
//! connection whose socket is full still obeys overflow, crash, a `peers_sup` crash and shutdown.
//!
//! A stalled reader here is a real client with a 4 KiB receive buffer that the test stops
//! reading; the server's writes to it block once the kernel's buffers are full.
mod common;

use async_tungstenite::tungstenite::Message;
use common::admin::{Binary, Sse};
use common::*;
use futures_util::SinkExt;
use rtcserver::{CrashTarget, Event};
use std::time::Duration;

/// A 1000-byte relayed message of the book protocol.
fn filler() -> String {
    format!(r#"{{"type":"x","pad":"{}"}}"#, "x".repeat(978))
}

/// A book room: a partner that reads, and a stalled reader that joined it. Returns the partner,
/// the stalled reader and its id.
async fn book_pair_with_a_stalled_reader(s: &TestServer) -> (Client, Client, u64) {
    let mut partner = s.client().await;
    let room = partner.get_room().await;
    let mut stalled = Client::stalled(s.addr(), "/").await;
    let id = peer_id_of(s, &stalled).await;
    stalled
        .send(&format!(r#"{{"type":"ENTERROOM","value":{room}}}"#))
        .await;
    s.event(
        "the stalled reader's join",
        |e| matches!(e, Event::Joined { peer, .. } if *peer == id),
    )
    .await;
    (partner, stalled, id)
}

/// Sends `count` filler messages, flushing every 64.
async fn send_filler(client: &mut Client, count: usize) {
    let text = filler();
    for i in 0..count {
        client
            .ws
            .feed(Message::text(text.clone()))
            .await
            .expect("feed");
        if i % 64 == 63 {
            client.ws.flush().await.expect("flush");
        }
    }
    client.ws.flush().await.expect("flush");
}

/// Fills the stalled reader's socket and part of its queue (below the bound), so that its
/// connection loop is waiting on a write: 16 MB relayed, of which the kernel holds a few.
async fn stall(partner: &mut Client) {
    send_filler(partner, 16_000).await;
}

fn disconnected(id: u64) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Disconnected { peer } if *peer == id)
}

#[test]
fn a_reader_that_never_reads_is_reset_once_its_queue_passes_the_bound() {
    run(async {
        // The default bound, 8 MiB: more than the kernel holds for the stalled socket, so that
        // the bound is passed while the connection waits on a write.
        let s = server();
        let (mut partner, mut stalled, id) = book_pair_with_a_stalled_reader(&s).await;
        // 40 MB at most: the kernel holds a few, the queue 8 MiB; the stalled peer must be
        // closed long before the end.
        let sending = async {
            send_filler(&mut partner, 40_000).await;
            None
        };
        let closed = async { Some(s.event("the slow reader's end", disconnected(id)).await) };
        let closed = futures_lite::future::or(closed, sending).await;
        let closed = match closed {
            Some(e) => e,
            None => s.event("the slow reader's end", disconnected(id)).await,
        };
        assert!(matches!(closed, Event::Disconnected { .. }));
        assert_eq!(
            s.handle.stats().bad_input_closes,
            1,
            "counted as slow_reader"
        );
        // Reset, not a close frame queued behind 8 MiB it would never read: reading on, the
        // client finds the stream's end.
        within(WAIT, "the stalled client to see the end", async {
            while let Some(Ok(_)) = futures_lite::StreamExt::next(&mut stalled.ws).await {}
        })
        .await;
        // The partner lost nothing of its own.
        assert!(partner.get_room().await > 0);
        partner.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn a_stalled_reader_obeys_a_crash_order() {
    run(async {
        let s = server_with(|c| c.outbound_limit_bytes = 64 << 20);
        let (mut partner, _stalled, id) = book_pair_with_a_stalled_reader(&s).await;
        stall(&mut partner).await;
        s.handle
            .crash(&CrashTarget::Peer(id))
            .expect("the peer exists");
        s.event("the crashed peer's end", disconnected(id)).await;
        partner.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn a_peers_sup_crash_ends_a_stalled_reader_too() {
    run(async {
        let s = server_with(|c| c.outbound_limit_bytes = 64 << 20);
        let (mut partner, _stalled, id) = book_pair_with_a_stalled_reader(&s).await;
        stall(&mut partner).await;
        s.handle.crash(&CrashTarget::PeersSup).expect("crash");
        s.event("the stalled peer's end", disconnected(id)).await;
        assert_eq!(
            partner.expect_close().await,
            async_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Error
        );
        s.assert_clean().await;
    });
}

#[test]
fn shutdown_does_not_wait_for_a_stalled_reader() {
    run(async {
        // A grace longer than the test's bound: only a shutdown that acts on the stalled peer
        // finishes in time.
        let s = server_with(|c| {
            c.outbound_limit_bytes = 64 << 20;
            c.shutdown_grace = Duration::from_secs(120);
        });
        let (mut partner, _stalled, _) = book_pair_with_a_stalled_reader(&s).await;
        stall(&mut partner).await;
        within(WAIT, "the shutdown", s.handle.shutdown()).await;
    });
}

/// The binary with its default bound (8 MiB), for its memory as the kernel reports it.
fn binary(extra: &[&str]) -> (Binary, std::net::SocketAddr, std::net::SocketAddr) {
    let mut bin = Binary::on_loopback(extra);
    let (addr, admin) = bin.addresses();
    (bin, addr, admin)
}

const MIB: u64 = 1024;

#[test]
fn small_relays_do_not_keep_big_ignored_frames_alive() {
    // 200 MB sent as fast as the server reads: at the default byte budget, 50 s.
    let (bin, addr, admin) = binary(&["--max-bytes-per-sec", "0"]);
    run(async {
        let mut events = Sse::open(admin).await;
        let mut partner = Client::connect(addr, "/").await;
        let room = partner.get_room().await;
        let mut stalled = Client::stalled(addr, "/").await;
        stalled
            .send(&format!(r#"{{"type":"ENTERROOM","value":{room}}}"#))
            .await;
        let room_name = room.to_string();
        for _ in 0..2 {
            events
                .until("a join", |e| {
                    e["type"] == "joined" && e["room"] == room_name
                })
                .await;
        }
        let before = bin.status_kib("VmRSS");
        // Fill the stalled reader's socket, and its queue to less than the 8 MiB bound.
        send_filler(&mut partner, 6_000).await;
        // Then 1 MB binary frames (ignored) each followed by a 2-byte relay: each relay used to
        // be a slice of the read buffer that held the megabyte before it.
        let big = vec![0u8; 1_000_000];
        for _ in 0..200 {
            partner
                .ws
                .send(Message::binary(big.clone()))
                .await
                .expect("send");
            partner.ws.send(Message::text("{}")).await.expect("send");
        }
        // A reply means the server read everything sent before it.
        assert!(partner.get_room().await > 0);
        let grown = bin.status_kib("VmHWM").saturating_sub(before);
        eprintln!("peak RSS growth: {grown} KiB");
        // The bound (8 MiB) plus the read buffer of a 1 MB frame and slack for the allocator.
        assert!(
            grown < 24 * MIB,
            "the server grew by {grown} KiB for 8 MiB of queue"
        );
        drop(stalled);
    });
}

#[test]
fn a_named_room_of_readers_that_never_read_costs_at_most_the_bound_each() {
    let (bin, addr, admin) = binary(&["--max-peers", "5"]);
    run(async {
        let mut events = Sse::open(admin).await;
        let mut sender = Client::connect(addr, "/socket/big").await;
        let me = sender.expect_event("authenticated").await["peer_id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let mut stalled = Vec::new();
        for _ in 0..4 {
            stalled.push(Client::stalled(addr, "/socket/big").await);
        }
        for _ in 0..5 {
            events
                .until("a join", |e| e["type"] == "joined" && e["room"] == "big")
                .await;
        }
        let before = bin.status_kib("VmRSS");
        // 1 MB of small numbers: as a parsed tree, 16 bytes of text are a 32-byte `Value`.
        let numbers = vec![0u8; 500_000];
        let blob = serde_json::json!({ "event": "blob", "data": numbers }).to_string();
        assert!(blob.len() < 1 << 20, "within the message limit");
        for _ in 0..12 {
            sender.send(&blob).await;
        }
        // Addressed to itself: its arrival means the twelve before it were delivered.
        sender
            .send(&serde_json::json!({ "event": "sync", "to": [me] }).to_string())
            .await;
        within(WAIT, "the sync message", async {
            loop {
                if sender.recv_json().await["event"] == "sync" {
                    break;
                }
            }
        })
        .await;
        let grown = bin.status_kib("VmHWM").saturating_sub(before);
        eprintln!("peak RSS growth: {grown} KiB");
        // 4 readers × (8 MiB bound + a 1 MB message in the write buffer), plus the sender's own
        // message while it is parsed (500,000 `Value`s, once, not per reader). A parsed tree per
        // addressee, as before, was 1.2 GB here.
        assert!(
            grown < 4 * 9 * MIB + 40 * MIB,
            "the server grew by {grown} KiB for 12 MB sent to 4 readers"
        );
        drop(stalled);
    });
}

/// README, "Bad input": a connection that ends without a close frame is a departure.
#[test]
fn a_tcp_close_without_a_close_frame_is_not_bad_input() {
    run(async {
        let s = server();
        let tcp = raw_ws(s.addr()).await;
        let id = match s
            .event("the connection", |e| matches!(e, Event::Connected { .. }))
            .await
        {
            Event::Connected { peer, .. } => peer,
            _ => unreachable!(),
        };
        drop(tcp);
        s.event("the departure", disconnected(id)).await;
        assert_eq!(s.handle.stats().bad_input_closes, 0);
        s.assert_clean().await;
    });
}

/// A sibling of the stalled WebSocket: a plain HTTP client that never reads a large file.
#[test]
fn shutdown_does_not_wait_for_a_client_that_never_reads_a_file() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("rtcserver-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a static dir");
    std::fs::write(dir.join("big.bin"), vec![0u8; 16 << 20]).expect("a big file");
    run(async {
        let s = server_with(|c| {
            c.static_dir = dir.clone();
            c.shutdown_grace = Duration::from_secs(120);
        });
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.connect(&s.addr().into()).expect("connect");
        let mut tcp = std::net::TcpStream::from(socket);
        tcp.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        // The first byte of the answer: the server is writing it, and will soon wait on us.
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut first = [0u8; 1];
        tcp.read_exact(&mut first).expect("the answer starts");
        within(WAIT, "the shutdown", s.handle.shutdown()).await;
        drop(tcp);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
