//! RFC 6455 framing as close-codes.md states it, from a client that writes its frames by hand:
//! every length encoding, frames cut anywhere by TCP or packed many to a write, fragments with a
//! ping between them and a character split across two, the size limit at its edge, and each
//! violation's close code: the cases the server's reader of frames (src/websocket.rs, which
//! replaced tungstenite's; they passed against both) must get right.
mod common;
use async_net::TcpStream;
use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 100_000;

/// A client frame with any payload length, masked with a non-zero key. `first` is the whole
/// first byte (FIN, RSV bits, opcode).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    f
}

/// A book message of exactly `len` bytes (a JSON object: the book endpoint relays only those).
fn message_of(len: usize, tag: usize) -> String {
    let head = format!(r#"{{"type":"pad","n":{tag},"p":""#);
    let fill = len - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(fill))
}

/// A raw client that entered a room whose creator is a library client.
async fn joined_raw(s: &TestServer) -> (Client, TcpStream) {
    let mut creator = s.client().await;
    let room = creator.get_room().await;
    let mut raw = raw_ws(s.addr()).await;
    raw.set_nodelay(true).expect("nodelay");
    let enter = format!(r#"{{"type":"ENTERROOM","value":{room}}}"#);
    raw.write_all(&masked(0x81, enter.as_bytes()))
        .await
        .expect("write");
    let probe = message_of(40, 0);
    raw.write_all(&masked(0x81, probe.as_bytes()))
        .await
        .expect("write");
    assert_eq!(creator.recv_text().await, probe);
    (creator, raw)
}

/// The next server frame: (first byte, payload).
async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    within(WAIT, "a server frame", async {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).await.expect("frame head");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                tcp.read_exact(&mut ext).await.expect("length");
                usize::from(u16::from_be_bytes(ext))
            }
            127 => panic!("no server frame here is that long"),
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.expect("payload");
        (head[0], payload)
    })
    .await
}

#[test]
fn every_length_encoding_arrives_whole_however_tcp_cuts_it() {
    run(async {
        let s = server_with(|c| c.max_message_bytes = LIMIT);
        let (mut creator, mut raw) = joined_raw(&s).await;
        // 7-bit, 16-bit and 64-bit lengths at their edges, up to the limit exactly.
        let lengths = [125, 126, 127, 4_096, 16_384, 16_385, 65_535, 65_536, LIMIT];
        for (tag, len) in lengths.into_iter().enumerate() {
            let text = message_of(len, tag);
            let frame = masked(0x81, text.as_bytes());
            // Small frames a byte per write; the rest in uneven pieces, the first of them
            // inside the header.
            let piece = if len < 200 { 1 } else { 7_001 };
            let (head, rest) = frame.split_at(3);
            raw.write_all(head).await.expect("write");
            for chunk in rest.chunks(piece) {
                raw.write_all(chunk).await.expect("write");
            }
            assert_eq!(creator.recv_text().await, text, "length {len}");
        }
        drop(raw);
        creator.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn many_frames_in_one_write_arrive_all_and_in_order() {
    run(async {
        let s = server();
        let (mut creator, mut raw) = joined_raw(&s).await;
        let texts: Vec<String> = (0..500).map(|i| message_of(60 + i % 90, i)).collect();
        let mut burst = Vec::new();
        for t in &texts {
            burst.extend_from_slice(&masked(0x81, t.as_bytes()));
        }
        // One write of about 55 KiB: more than one read of the server's, cut mid-frame.
        raw.write_all(&burst).await.expect("write");
        for t in &texts {
            assert_eq!(&creator.recv_text().await, t);
        }
        drop(raw);
        creator.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn fragments_with_a_ping_between_and_a_character_split_across_them_make_one_message() {
    run(async {
        let s = server();
        let (mut creator, mut raw) = joined_raw(&s).await;
        let text = r#"{"type":"offer","sdp":"café"}"#;
        let bytes = text.as_bytes();
        // "é" is C3 A9: the first fragment ends between the two bytes.
        let cut = text.find('é').expect("é") + 1;
        let mut wire = masked(0x01, &bytes[..cut]);
        wire.extend_from_slice(&masked(0x89, b"are you there"));
        wire.extend_from_slice(&masked(0x00, &bytes[cut..cut + 2]));
        wire.extend_from_slice(&masked(0x80, &bytes[cut + 2..]));
        raw.write_all(&wire).await.expect("write");
        assert_eq!(
            read_frame(&mut raw).await,
            (0x8a, b"are you there".to_vec()),
            "the ping's pong, with its payload"
        );
        assert_eq!(creator.recv_text().await, text);
        drop(raw);
        creator.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn one_byte_over_the_limit_is_1009_in_one_frame_or_in_fragments() {
    run(async {
        let s = server_with(|c| c.max_message_bytes = LIMIT);
        let mut one = raw_ws(s.addr()).await;
        one.write_all(&masked(0x81, message_of(LIMIT + 1, 1).as_bytes()))
            .await
            .expect("write");
        assert_eq!(raw_close_code(&mut one).await, 1009);
        let mut pieces = raw_ws(s.addr()).await;
        let text = message_of(LIMIT + 1, 2);
        let (a, b) = text.as_bytes().split_at(LIMIT / 2);
        let mut wire = masked(0x01, a);
        wire.extend_from_slice(&masked(0x80, b));
        pieces.write_all(&wire).await.expect("write");
        assert_eq!(raw_close_code(&mut pieces).await, 1009);
        s.assert_clean().await;
    });
}

#[test]
fn each_violation_closes_with_its_code() {
    run(async {
        let s = server();
        let text = br#"{"type":"x"}"#;
        let mut unmasked = vec![0x81, text.len() as u8];
        unmasked.extend_from_slice(text);
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("RSV1 set", masked(0xc1, text), 1002),
            ("RSV3 set", masked(0x91, text), 1002),
            ("unmasked", unmasked, 1002),
            ("a continuation first", masked(0x80, text), 1002),
            (
                "text inside a fragmented message",
                {
                    let mut w = masked(0x01, b"{");
                    w.extend_from_slice(&masked(0x81, text));
                    w
                },
                1002,
            ),
            ("a fragmented ping", masked(0x09, b"p"), 1002),
            ("a 126-byte ping", masked(0x89, &[b'p'; 126]), 1002),
            ("reserved data opcode", masked(0x83, text), 1002),
            ("reserved control opcode", masked(0x8b, b""), 1002),
            ("a one-byte close", masked(0x88, &[3]), 1002),
            (
                "text not UTF-8",
                masked(0x81, &[b'"', 0xc3, 0x28, b'"']),
                1007,
            ),
            (
                "a close reason not UTF-8",
                masked(0x88, &[0x03, 0xe8, 0xff]),
                1007,
            ),
        ];
        for path in ["/", "/socket/lobby"] {
            for (what, wire, code) in &cases {
                let mut tcp = raw_ws_with(s.addr(), path, "").await;
                tcp.write_all(wire).await.expect("write");
                let got = within(WAIT, what, skip_joins(&mut tcp)).await;
                assert_eq!(got, *code, "{path}: {what}");
            }
        }
        s.assert_clean_with_rooms(0).await;
    });
}

/// Reads past the server's text frames (a named room's `joined`) to its close; its code.
async fn skip_joins(tcp: &mut TcpStream) -> u16 {
    loop {
        let (first, payload) = read_frame(tcp).await;
        if first & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}
