//! The contract's bad-input table: each answer, and that nobody else is affected.
mod common;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use common::*;
use futures_lite::AsyncWriteExt;

/// `bad` is sent by `a` of a pair; `a` must get `code`, `b` must live on and its room be joinable.
async fn closes_only_the_sender(s: &TestServer, bad: &str, code: CloseCode) {
    let (mut a, mut b, room) = pair(s).await;
    let a_id = peer_id_of(s, &a).await;
    a.send(bad).await;
    assert_eq!(a.expect_close().await, code, "{bad:.40}");
    s.event(
        "a leaves its room",
        |e| matches!(e, rtcserver::Event::Left { peer, .. } if *peer == a_id),
    )
    .await;
    let mut c = s.client().await;
    c.enter(room, &mut b).await;
    b.send(r#"{"type":"still-here"}"#).await;
    assert_eq!(c.recv_text().await, r#"{"type":"still-here"}"#);
    b.close().await;
    c.close().await;
}

#[test]
fn text_that_is_not_json_closes_with_1007() {
    run(async {
        let s = server();
        for bad in ["not json", "{", r#"{"type":"offer""#, "{'a':1}"] {
            closes_only_the_sender(&s, bad, CloseCode::Invalid).await;
        }
        assert!(s.handle.stats().bad_input_closes >= 4);
        s.assert_clean().await;
    });
}

#[test]
fn json_that_is_not_an_object_closes_with_1007() {
    run(async {
        let s = server();
        for bad in ["[]", r#"["type","GETROOM"]"#, "42", "null", r#""GETROOM""#] {
            closes_only_the_sender(&s, bad, CloseCode::Invalid).await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn a_message_over_the_limit_closes_with_1009_and_one_at_it_is_relayed() {
    run(async {
        let s = server_with(|c| c.max_message_bytes = 1024);
        let body = |len: usize| format!(r#"{{"type":"x","p":"{}"}}"#, "a".repeat(len - 19));
        assert_eq!(body(1024).len(), 1024);
        let (mut a, mut b, _) = pair(&s).await;
        a.send(&body(1024)).await;
        assert_eq!(b.recv_text().await, body(1024));
        a.close().await;
        b.close().await;
        closes_only_the_sender(&s, &body(1025), CloseCode::Size).await;
        s.assert_clean().await;
    });
}

#[test]
fn invalid_utf8_closes_with_1007() {
    run(async {
        let s = server();
        let mut raw = raw_ws(s.addr()).await;
        raw.write_all(&frame(0x1, b"{\"a\":\"\xff\xfe\"}", true))
            .await
            .unwrap();
        assert_eq!(raw_close_code(&mut raw).await, 1007);
        s.assert_clean().await;
    });
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error_1002() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        let mut raw = raw_ws(s.addr()).await;
        raw.write_all(&frame(0x1, b"{}", false)).await.unwrap();
        assert_eq!(raw_close_code(&mut raw).await, 1002);
        a.send(r#"{"type":"unaffected"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"unaffected"}"#);
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn an_upgrade_at_another_path_is_404_without_upgrade() {
    run(async {
        let s = server();
        let answer = raw_http(
            s.addr(),
            &format!("GET /elsewhere HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        s.assert_clean().await;
    });
}

#[test]
fn bad_upgrades_are_400() {
    run(async {
        let s = server();
        let no_key = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let old_version = UPGRADE_HEADERS.replace("Version: 13", "Version: 8");
        for request in [
            no_key.to_owned(),
            format!("GET / HTTP/1.1\r\nHost: x\r\n{old_version}\r\n"),
        ] {
            let answer = raw_http(s.addr(), &request).await;
            assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
            assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
        }
        assert!(raw_http(s.addr(), "NONSENSE\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400 "));
        s.assert_clean().await;
    });
}

/// docs/book-protocol.md (the handshake timeout): a silent connection is closed without a word;
/// half a request is answered 408, as the original's cowboy does; both are counted in
/// `rtcserver_http_rejections_total`.
#[test]
fn past_the_handshake_timeout_silence_is_closed_and_half_a_request_gets_408() {
    run(async {
        let s = server_with(|c| c.handshake_timeout = std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert_eq!(raw_http(s.addr(), "").await, "", "closed without an answer");
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let answer = raw_http(s.addr(), "GET / HTTP/1.1\r\nHost: x\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer:.80}"
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        let answer = raw_http(s.addr(), "G").await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:.80}");
        let metrics = common::admin::get(common::admin::admin(&s), "/metrics")
            .await
            .expect(200)
            .body;
        for line in [
            r#"rtcserver_http_rejections_total{reason="handshake_timeout",status="none"} 1"#,
            r#"rtcserver_http_rejections_total{reason="request_timeout",status="408"} 2"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
        s.assert_clean().await;
    });
}

#[test]
fn plain_gets_serve_the_demo_page_and_nothing_else() {
    run(async {
        let s = server();
        let page = raw_http(s.addr(), "GET /?room=12 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page:.80}");
        assert!(page.contains("Content-Type: text/html"));
        assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));
        let missing = raw_http(s.addr(), "GET /static/../Cargo.toml HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing:.80}");
        s.assert_clean().await;
    });
}

#[test]
fn when_every_room_number_is_taken_getroom_closes_with_1013() {
    run(async {
        let s = server_with(|c| c.max_room_number = 3);
        let mut holders = Vec::new();
        let mut numbers = Vec::new();
        for _ in 0..3 {
            let mut c = s.client().await;
            numbers.push(c.get_room().await);
            holders.push(c);
        }
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2, 3]);
        let mut late = s.client().await;
        late.send(r#"{"type":"GETROOM","value":""}"#).await;
        assert_eq!(late.expect_close().await, CloseCode::Again);
        // a number frees up when its room empties
        let freed = holders.remove(0);
        freed.close().await;
        within(WAIT, "the freed room to stop", async {
            while s.handle.stats().rooms == 3 {
                s.events.recv().await.expect("events");
            }
        })
        .await;
        let mut again = s.client().await;
        again.get_room().await;
        holders.push(again);
        for c in holders {
            c.close().await;
        }
        s.assert_clean().await;
    });
}

/// docs/close-codes.md (1009): a client still sending a 16 MiB frame when the server refuses it,
/// and that reads only once it has sent it all, reads the 1009, not a TCP reset: the server stops sending and reads and drops the rest
/// (bounded) before it closes, so that no unread byte makes its kernel reset the connection.
#[test]
fn a_client_still_sending_a_huge_frame_reads_its_1009() {
    run(async {
        use futures_lite::AsyncReadExt;
        let s = server_with(|c| c.max_message_bytes = 1 << 20);
        let mut tcp = raw_ws(s.addr()).await;
        const SIZE: usize = 16 << 20;
        // A masked binary frame of SIZE bytes: the head says so at once, the payload follows.
        let mut head = vec![0x82u8, 0x80 | 127];
        head.extend_from_slice(&(SIZE as u64).to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        let mut writer = tcp.clone();
        let send = async move {
            writer.write_all(&head).await.expect("the head");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < SIZE {
                // The server may close before it all went: that is the point.
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        };
        let receive = async {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) => return Ok(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => return Err((e.kind(), got)),
                }
            }
        };
        // As a client library does: it reads only once its message is written (or failed).
        let sent = within(WAIT, "the send", send).await;
        let got = within(WAIT, "the close", receive).await;
        let got = got.unwrap_or_else(|(kind, got)| panic!("{kind:?} after {got:?} (sent {sent})"));
        assert_eq!(sent, SIZE, "the whole frame was taken, without a reset");
        assert!(got.len() >= 4 && got[0] == 0x88, "{got:?}");
        assert_eq!(u16::from_be_bytes([got[2], got[3]]), 1009, "{got:?}");
        s.assert_clean().await;
    });
}

/// docs/close-codes.md: after the server's close and the client's answer, the server ends the
/// TCP connection at once (a FIN), as RFC 6455 §7.1.1 asks: a client that waits for it is not
/// held for the 1 s the server would wait for a client that never answers.
#[test]
fn a_client_that_answers_the_close_sees_the_end_at_once() {
    run(async {
        use futures_lite::StreamExt;
        let s = server();
        for _ in 0..5 {
            let mut c = s.client().await;
            c.send("not json").await;
            let since = std::time::Instant::now();
            assert_eq!(c.expect_close().await, CloseCode::Invalid);
            // Reading on sends the library's answer to the close, then sees the end.
            while let Some(Ok(_)) = within(WAIT, "the end", c.ws.next()).await {}
            let took = since.elapsed();
            assert!(
                took < std::time::Duration::from_millis(700),
                "the end came {took:?} after the close (the linger is 1 s)"
            );
        }
        s.assert_clean().await;
    });
}
