//! The messages workloads relay, shaped like what browsers exchange during a call setup (an SDP offer and
//! answer of a few hundred bytes, then ICE candidates), with a `seq` the receiver can read back cheaply.

/// A real offer's opening lines, JSON-escaped, repeated as padding so frames look and compress like SDP.
const SDP: &str = "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n\
a=group:BUNDLE 0 1\\r\\na=extmap-allow-mixed\\r\\na=msid-semantic: WMS stream\\r\\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\\r\\nc=IN IP4 0.0.0.0\\r\\n\
a=rtcp:9 IN IP4 0.0.0.0\\r\\na=ice-ufrag:Xb3k\\r\\na=ice-pwd:4ZcD8yhN2m1kd9NnH1Tq0Z2e\\r\\n\
a=ice-options:trickle\\r\\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35\\r\\n\
a=setup:actpass\\r\\na=mid:0\\r\\na=sendrecv\\r\\na=rtcp-mux\\r\\na=rtpmap:111 opus/48000/2\\r\\n";

/// `{"type":KIND,"seq":SEQ,"sdp":"..."}` padded to exactly `size` bytes (or as short as the fields allow).
pub fn sdp_message(kind: &str, seq: u64, size: usize) -> String {
    let head = format!(r#"{{"type":"{kind}","seq":{seq},"sdp":""#);
    let tail = "\"}";
    let mut out = String::with_capacity(size.max(head.len() + tail.len()));
    out.push_str(&head);
    let mut room = size.saturating_sub(head.len() + tail.len());
    while room > 0 {
        let take = room.min(SDP.len());
        out.push_str(&SDP[..take]);
        room -= take;
    }
    // A cut through an escape would leave a lone backslash that escapes the closing quote.
    if out.ends_with('\\') {
        out.pop();
        out.push('.');
    }
    out.push_str(tail);
    out
}

/// An ICE candidate in the book's shape.
pub fn candidate(seq: u64) -> String {
    format!(
        r#"{{"type":"candidate","seq":{seq},"label":0,"id":"0","candidate":"candidate:842163049 1 udp 1677729535 127.0.0.1 {} typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Xb3k network-cost 999"}}"#,
        50000 + seq % 10000
    )
}

/// The `seq` of a message built here, found without parsing the JSON (the receiver of an open-loop run reads
/// one per message and must not become the bottleneck).
pub fn seq_of(text: &str) -> Option<u64> {
    let at = text.find(r#""seq":"#)? + r#""seq":"#.len();
    let digits = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_messages_have_the_asked_size_and_are_json() {
        for size in 40..1200 {
            for seq in [0, 7, 123_456_789] {
                let m = sdp_message("offer", seq, size);
                let v: serde_json::Value =
                    serde_json::from_str(&m).unwrap_or_else(|e| panic!("{size}: {e}: {m}"));
                assert_eq!(v["type"], "offer");
                assert_eq!(v["seq"], seq);
                if size >= 60 {
                    assert_eq!(m.len(), size);
                }
                assert_eq!(seq_of(&m), Some(seq));
            }
        }
    }

    #[test]
    fn candidates_are_json_with_seq() {
        let c = candidate(3);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["type"], "candidate");
        assert_eq!(seq_of(&c), Some(3));
    }

    #[test]
    fn seq_of_refuses_messages_without_one() {
        assert_eq!(seq_of(r#"{"type":"ping"}"#), None);
        assert_eq!(seq_of(r#"{"seq":}"#), None);
    }
}
