//! close-codes.md (WebSocket close codes) and book-protocol.md (Differences from the original):
//! a close the client starts is answered with its code and an empty reason, byte for byte, as
//! the Erlang original's cowboy does; a close the server starts keeps its reason.
mod common;
use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// The next whole frame the server sends (head and payload; server frames are unmasked).
async fn server_frame(tcp: &mut async_net::TcpStream) -> Vec<u8> {
    let mut frame = vec![0u8; 2];
    tcp.read_exact(&mut frame).await.expect("frame head");
    let len = match frame[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.expect("length");
            frame.extend_from_slice(&ext);
            usize::from(u16::from_be_bytes(ext))
        }
        127 => panic!("server frames here are small"),
        len => usize::from(len),
    };
    let start = frame.len();
    frame.resize(start + len, 0);
    tcp.read_exact(&mut frame[start..]).await.expect("payload");
    frame
}

/// Reads past text frames to the server's close frame, returns it whole, and checks that the
/// server then ends the connection with nothing more (no second close, no echo).
async fn close_frame_then_end(tcp: &mut async_net::TcpStream) -> Vec<u8> {
    within(WAIT, "the close frame and the end", async {
        loop {
            let frame = server_frame(tcp).await;
            if frame[0] & 0x0f == 0x8 {
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
                assert!(rest.is_empty(), "after the close: {rest:?}");
                return frame;
            }
        }
    })
    .await
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Opens `path`, sends a close frame with `payload` and returns the server's close frame.
async fn answer_to(s: &TestServer, path: &str, payload: &[u8]) -> Vec<u8> {
    let mut tcp = raw_ws_with(s.addr(), path, "").await;
    tcp.write_all(&frame(0x8, payload, true))
        .await
        .expect("write");
    close_frame_then_end(&mut tcp).await
}

const ENDPOINTS: [&str; 3] = ["/", "/signaling", "/socket/lobby"];

#[test]
fn a_client_close_is_answered_with_its_code_and_no_reason_on_both_endpoints() {
    run(async {
        let s = server();
        for path in ENDPOINTS {
            for (code, reason) in [(1000, "bye"), (1001, "going away"), (4321, "")] {
                let [hi, lo] = u16::to_be_bytes(code);
                let answer = answer_to(&s, path, &close_payload(code, reason)).await;
                assert_eq!(answer, [0x88, 0x02, hi, lo], "{path} {code} {reason:?}");
            }
            // A close without a code is answered with an empty close, as cowboy does.
            assert_eq!(answer_to(&s, path, &[]).await, [0x88, 0x00], "{path}");
            // A code a client may not send (1005 is "no code", never on the wire) is a
            // protocol violation: 1002, no reason either.
            let answer = answer_to(&s, path, &close_payload(1005, "x")).await;
            assert_eq!(answer, [0x88, 0x02, 0x03, 0xea], "{path}");
        }
        s.assert_clean_with_rooms(0).await;
    });
}

#[test]
fn a_client_close_in_a_room_is_a_departure_and_the_room_takes_a_newcomer() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        let a_id = peer_id_of(&s, &a).await;
        a.ws.close(Some(async_tungstenite::tungstenite::protocol::CloseFrame {
            code: async_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "going away".into(),
        }))
        .await
        .expect("close");
        let answer = within(WAIT, "the answer", answer_reason(&mut a)).await;
        assert_eq!(answer.as_deref(), Some(""), "the reason of the answer");
        s.event(
            "a leaves its room",
            |e| matches!(e, rtcserver::Event::Left { peer, .. } if *peer == a_id),
        )
        .await;
        let mut c = s.client().await;
        c.enter(room, &mut b).await;
        b.close().await;
        c.close().await;
        s.assert_clean().await;
    });
}

/// The reason of the close frame that answers `client`'s close, as a library reads it.
async fn answer_reason(client: &mut Client) -> Option<String> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    loop {
        match client.ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => return Some(frame.reason.as_str().to_owned()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[test]
fn a_close_the_server_starts_keeps_its_reason() {
    run(async {
        let s = server();
        for path in ["/", "/socket/lobby"] {
            let mut tcp = raw_ws_with(s.addr(), path, "").await;
            tcp.write_all(&frame(0x1, &[0xff, 0xfe], true))
                .await
                .expect("write");
            let mut want = vec![0x88, 15];
            want.extend_from_slice(&close_payload(1007, "invalid UTF-8"));
            let got = within(WAIT, "the close frame", async {
                loop {
                    let f = server_frame(&mut tcp).await;
                    if f[0] & 0x0f == 0x8 {
                        return f;
                    }
                }
            })
            .await;
            assert_eq!(got, want, "{path}");
        }
        s.assert_clean_with_rooms(0).await;
    });
}
