//! What a resumable peer was sent and has not acknowledged: every frame numbered (`seq`), kept
//! in order until the client's cumulative ack frees it, so that a resume resends exactly what
//! the client may not have received.
use async_tungstenite::tungstenite::Utf8Bytes;
use std::collections::VecDeque;

/// Frames kept for one detached peer at most; past it the session ends (`overflow`).
pub const MAX_FRAMES: usize = 2048;
/// Bytes of frames kept for one detached peer at most; past it the session ends (`overflow`).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// The numbered frames of one session, oldest first.
#[derive(Default)]
pub struct Kept {
    /// The seq the next frame gets minus one: the last seq handed out.
    last: u64,
    frames: VecDeque<(u64, Utf8Bytes)>,
    bytes: usize,
}

/// Why a resume cannot continue from the client's `last_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Frames after `last_seq` were already freed (acked, or dropped while attached).
    Gap,
    /// `last_seq` is past the last frame sent.
    BadSeq,
}

impl Kept {
    /// Numbers `text` (a JSON object the server wrote) and keeps it; returns the numbered text.
    pub fn stamp(&mut self, text: &str) -> Utf8Bytes {
        self.last += 1;
        let numbered = Utf8Bytes::from(with_seq(text, self.last));
        self.bytes += numbered.len();
        self.frames.push_back((self.last, numbered.clone()));
        numbered
    }

    /// The client processed every frame up to `seq`: they are freed. An ack past the last
    /// frame sent frees everything and nothing more.
    pub fn ack(&mut self, seq: u64) {
        while let Some((s, text)) = self.frames.front() {
            if *s > seq {
                break;
            }
            self.bytes -= text.len();
            self.frames.pop_front();
        }
    }

    /// While the client is attached and does not ack: the oldest frames go once past the
    /// bounds (a later resume from before them gets `gap`), so an attached peer costs at most
    /// what a detached one may.
    pub fn trim(&mut self) {
        while self.over_bounds() {
            let Some((_, text)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= text.len();
        }
    }

    pub fn over_bounds(&self) -> bool {
        self.frames.len() > MAX_FRAMES || self.bytes > MAX_BYTES
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// Whether a resume can continue from `last_seq`: every frame after it still kept.
    pub fn check(&self, last_seq: u64) -> Result<(), Replay> {
        if last_seq > self.last {
            return Err(Replay::BadSeq);
        }
        let first_after = self
            .frames
            .iter()
            .find(|(s, _)| *s > last_seq)
            .map_or(self.last + 1, |(s, _)| *s);
        if first_after != last_seq + 1 {
            return Err(Replay::Gap);
        }
        Ok(())
    }

    /// The frames after `last_seq`, in order, to resend on a resume; those up to it are freed.
    pub fn replay(&mut self, last_seq: u64) -> Result<Vec<Utf8Bytes>, Replay> {
        self.check(last_seq)?;
        self.ack(last_seq);
        Ok(self.frames.iter().map(|(_, t)| t.clone()).collect())
    }
}

/// `{"seq":N,` followed by the object's members: the server's own text always starts with `{`.
fn with_seq(text: &str, seq: u64) -> String {
    let rest = text.strip_prefix('{').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 24);
    out.push_str("{\"seq\":");
    out.push_str(&seq.to_string());
    if rest.trim_start().starts_with('}') {
        out.push_str(rest);
    } else {
        out.push(',');
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_numbered_from_one_and_keep_their_members() {
        let mut kept = Kept::default();
        assert_eq!(
            kept.stamp(r#"{"event":"joined","data":{"peer_id":"7"}}"#)
                .as_str(),
            r#"{"seq":1,"event":"joined","data":{"peer_id":"7"}}"#
        );
        assert_eq!(kept.stamp("{}").as_str(), r#"{"seq":2}"#);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.last_seq(), 2);
    }

    #[test]
    fn an_ack_frees_up_to_its_seq_and_a_replay_starts_after_last_seq() {
        let mut kept = Kept::default();
        for i in 0..5 {
            kept.stamp(&format!("{{\"n\":{i}}}"));
        }
        kept.ack(2);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept.replay(1), Err(Replay::Gap), "1..=2 were freed");
        let frames = kept.replay(3).expect("4 and 5 are kept");
        assert_eq!(frames.len(), 2);
        assert!(frames[0].as_str().starts_with("{\"seq\":4,"));
        assert_eq!(kept.replay(6), Err(Replay::BadSeq));
        assert_eq!(kept.replay(5).expect("nothing to resend").len(), 0);
        assert!(kept.is_empty());
        assert_eq!(kept.bytes(), 0);
    }

    #[test]
    fn a_fresh_session_replays_from_zero() {
        let mut kept = Kept::default();
        assert_eq!(kept.replay(0).expect("empty").len(), 0);
        assert_eq!(kept.replay(1), Err(Replay::BadSeq));
    }

    #[test]
    fn the_bounds_hold_at_the_edges() {
        let mut kept = Kept::default();
        for _ in 0..MAX_FRAMES {
            kept.stamp("{}");
        }
        assert!(!kept.over_bounds(), "2,048 frames is within");
        kept.stamp("{}");
        assert!(kept.over_bounds(), "2,049 is over");
        kept.trim();
        assert_eq!(kept.len(), MAX_FRAMES);
        assert_eq!(kept.replay(0), Err(Replay::Gap), "the first was dropped");

        let mut big = Kept::default();
        let body = "x".repeat(MAX_BYTES - 20);
        big.stamp(&format!("{{\"d\":\"{body}\"}}"));
        assert!(big.bytes() <= MAX_BYTES && !big.over_bounds());
        big.stamp(&format!("{{\"d\":\"{}\"}}", "y".repeat(64)));
        assert!(big.over_bounds());
    }
}
