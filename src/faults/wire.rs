//! The wire actions: what a receiver's connection does with one message instead of writing it
//! as one text frame at once (docs/faults.md, "Wire actions"). No I/O: the rule's parameters,
//! what one firing decided, and the [`Plan`] a receiver's connection carries out
//! (`connection/faulted.rs`).
//!
//! `stall` with `direction: upstream` is the exception: it stops reading the sender
//! ([`Plan::is_for_sender`]).
use super::rule::RuleError;
use rand::Rng;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The most frames `fragment` may cut one message into.
pub const MAX_FRAMES: u64 = 1024;
/// The longest `stall`: as a delay, "late by minutes", not forever.
pub const MAX_STALL_MS: u64 = 600_000;
/// The code `close` sends when the rule names none: in the range RFC 6455 leaves to
/// applications, and used by nothing else in rtcserver (docs/close-codes.md).
pub const DEFAULT_CLOSE_CODE: u16 = 4100;
pub const DEFAULT_CLOSE_REASON: &str = "fault injected";
/// RFC 6455 §5.5: a close frame's payload is at most 125 bytes, two of them the code.
const MAX_REASON: usize = 123;
/// The character a corrupted message gets in place of one of its own: SUB, ASCII's "this
/// character was garbled". A control character is invalid everywhere in JSON (in a string
/// unescaped, and between tokens), so the result is never valid JSON, and it is valid UTF-8.
pub const CORRUPT_CHAR: char = '\u{1a}';

pub const NAMES: [&str; 7] = [
    "corrupt", "truncate", "fragment", "throttle", "stall", "close", "reset",
];

/// A close reason kept inline (at most [`MAX_REASON`] bytes, checked on input), so that the
/// rule's action stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    len: u8,
    bytes: [u8; MAX_REASON],
}

impl Reason {
    fn new(text: &str) -> Option<Reason> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|n| usize::from(*n) <= MAX_REASON)?;
        let mut bytes = [0; MAX_REASON];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Reason { len, bytes })
    }

    pub fn as_str(&self) -> &str {
        // Built from a `&str` of `len` bytes: always valid.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// A wire action as the rule gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireAction {
    Corrupt,
    Truncate {
        bytes: u64,
    },
    Fragment {
        frames: u64,
    },
    Throttle {
        bytes_per_s: u64,
    },
    Stall {
        ms: u64,
    },
    Close {
        code: u16,
        reason: Reason,
        after: bool,
    },
    Reset,
}

/// Close codes a rule may send: those RFC 6455 (§7.4) lets an endpoint put in a close frame.
fn sendable(code: u64) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn uint(p: &Map<String, Value>, key: &str) -> Result<Option<u64>, RuleError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            RuleError::new(format!("params.{key}"), "must be a non-negative integer")
        }),
    }
}

fn required(p: &Map<String, Value>, key: &str, range: (u64, u64)) -> Result<u64, RuleError> {
    let field = format!("params.{key}");
    let v = uint(p, key)?.ok_or_else(|| RuleError::new(&*field, "is required"))?;
    if !(range.0..=range.1).contains(&v) {
        return Err(RuleError::new(
            field,
            format!("must be {} to {}", range.0, range.1),
        ));
    }
    Ok(v)
}

impl WireAction {
    /// `params` already checked to hold only `known` keys by the caller.
    pub fn parse(action: &str, p: &Map<String, Value>) -> Result<WireAction, RuleError> {
        Ok(match action {
            "corrupt" => WireAction::Corrupt,
            "truncate" => WireAction::Truncate {
                bytes: required(p, "bytes", (0, u64::MAX))?,
            },
            "fragment" => WireAction::Fragment {
                frames: required(p, "frames", (2, MAX_FRAMES))?,
            },
            "throttle" => WireAction::Throttle {
                bytes_per_s: required(p, "bytes_per_s", (1, u64::MAX))?,
            },
            "stall" => WireAction::Stall {
                ms: required(p, "ms", (0, MAX_STALL_MS))?,
            },
            "close" => {
                let code = uint(p, "code")?.unwrap_or(u64::from(DEFAULT_CLOSE_CODE));
                let code = u16::try_from(code).ok().filter(|c| sendable(u64::from(*c)));
                let code = code.ok_or_else(|| {
                    RuleError::new(
                        "params.code",
                        "must be a code a close frame may carry: 1000-1003, 1007-1014 or 3000-4999",
                    )
                })?;
                let reason = match p.get("reason") {
                    None | Some(Value::Null) => DEFAULT_CLOSE_REASON,
                    Some(Value::String(s)) => s.as_str(),
                    Some(_) => return Err(RuleError::new("params.reason", "must be a string")),
                };
                let reason = Reason::new(reason).ok_or_else(|| {
                    RuleError::new(
                        "params.reason",
                        format!("at most {MAX_REASON} bytes (RFC 6455)"),
                    )
                })?;
                let after = match p.get("after") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(RuleError::new("params.after", "must be true or false")),
                };
                WireAction::Close {
                    code,
                    reason,
                    after,
                }
            }
            _ => WireAction::Reset,
        })
    }

    /// The keys each action's `params` may hold.
    pub fn known(action: &str) -> &'static [&'static str] {
        match action {
            "truncate" => &["bytes"],
            "fragment" => &["frames"],
            "throttle" => &["bytes_per_s"],
            "stall" => &["ms"],
            "close" => &["code", "reason", "after"],
            _ => &[],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            WireAction::Corrupt => "corrupt",
            WireAction::Truncate { .. } => "truncate",
            WireAction::Fragment { .. } => "fragment",
            WireAction::Throttle { .. } => "throttle",
            WireAction::Stall { .. } => "stall",
            WireAction::Close { .. } => "close",
            WireAction::Reset => "reset",
        }
    }

    pub fn params(&self) -> Value {
        match self {
            WireAction::Corrupt | WireAction::Reset => json!({}),
            WireAction::Truncate { bytes } => json!({ "bytes": bytes }),
            WireAction::Fragment { frames } => json!({ "frames": frames }),
            WireAction::Throttle { bytes_per_s } => json!({ "bytes_per_s": bytes_per_s }),
            WireAction::Stall { ms } => json!({ "ms": ms }),
            WireAction::Close {
                code,
                reason,
                after,
            } => json!({ "code": code, "reason": reason.as_str(), "after": after }),
        }
    }

    /// What this firing does. `corrupt` draws once from the stream's generator (after the
    /// probability draw): the character to replace, as a fraction of the message's length.
    pub fn fire(&self, rng: &mut impl Rng) -> WireFired {
        match *self {
            WireAction::Corrupt => WireFired::Corrupt {
                draw: rng.next_u64(),
            },
            other => WireFired::Other(other),
        }
    }
}

/// What one firing of a wire action decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFired {
    /// The character at `draw / 2^64` of the message's length is replaced.
    Corrupt {
        draw: u64,
    },
    /// A replayed `corrupt`: the character the log names (`params.at`).
    CorruptAt {
        at: u64,
    },
    Other(WireAction),
}

impl WireFired {
    pub fn name(&self) -> &'static str {
        match self {
            WireFired::Corrupt { .. } | WireFired::CorruptAt { .. } => "corrupt",
            WireFired::Other(a) => a.name(),
        }
    }

    /// The log's `params`: the rule's, and for `corrupt` the character it replaces in `text`
    /// (`at`, counted in characters from 0).
    pub fn log_params(&self, mut base: Value, text: &str) -> Value {
        let at = match self {
            WireFired::Corrupt { draw } => corrupt_at(*draw, text.chars().count()),
            WireFired::CorruptAt { at } => *at,
            WireFired::Other(_) => return base,
        };
        if let Value::Object(map) = &mut base {
            map.insert("at".into(), at.into());
        }
        base
    }
}

/// The character index a draw picks in a text of `chars` characters (0 for an empty one).
fn corrupt_at(draw: u64, chars: usize) -> u64 {
    let chars = u64::try_from(chars).unwrap_or(u64::MAX);
    ((u128::from(draw) * u128::from(chars)) >> 64) as u64
}

/// What a receiver's connection does with one message: every wire action that fired on it
/// (later rules' values replace earlier ones' of the same kind). Applied in this order: stall,
/// reset, close before, the text's changes (truncate, then corrupt), the write (fragmented,
/// throttled), close after.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub stall: Option<Duration>,
    pub reset: bool,
    /// Code, reason, after the message (else instead of it).
    pub close: Option<(u16, Reason, bool)>,
    pub truncate: Option<u64>,
    /// The character to replace, counted on the text the rule saw.
    pub corrupt_at: Option<u64>,
    pub frames: Option<u64>,
    pub bytes_per_s: Option<u64>,
    /// `stall` on an upstream rule: the sender stops being read.
    pub(super) sender_stall: Option<Duration>,
}

impl Plan {
    /// Adds what `fired` decided on a message whose text (as the rule saw it) is `text`.
    pub fn add(&mut self, fired: WireFired, text: &str, upstream: bool) {
        match fired {
            WireFired::Corrupt { draw } => {
                self.corrupt_at = Some(corrupt_at(draw, text.chars().count()));
            }
            WireFired::CorruptAt { at } => self.corrupt_at = Some(at),
            WireFired::Other(a) => match a {
                WireAction::Truncate { bytes } => self.truncate = Some(bytes),
                WireAction::Fragment { frames } => self.frames = Some(frames),
                WireAction::Throttle { bytes_per_s } => self.bytes_per_s = Some(bytes_per_s),
                WireAction::Stall { ms } if upstream => {
                    self.sender_stall = Some(Duration::from_millis(ms));
                }
                WireAction::Stall { ms } => self.stall = Some(Duration::from_millis(ms)),
                WireAction::Close {
                    code,
                    reason,
                    after,
                } => self.close = Some((code, reason, after)),
                WireAction::Reset => self.reset = true,
                WireAction::Corrupt => {}
            },
        }
    }

    /// The sender's stall, taken out of the plan (it is not the receivers').
    pub fn take_sender_stall(&mut self) -> Option<Duration> {
        self.sender_stall.take()
    }

    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }

    /// The text as the receiver gets it: cut to `truncate` bytes (back to a character
    /// boundary), then one character replaced by [`CORRUPT_CHAR`] (at `corrupt_at`, or the
    /// last one if the text got shorter; an empty text becomes that one character).
    pub fn change_text(&self, text: &str) -> Option<String> {
        if self.truncate.is_none() && self.corrupt_at.is_none() {
            return None;
        }
        let mut end = self
            .truncate
            .map_or(text.len(), |n| usize::try_from(n).unwrap_or(usize::MAX))
            .min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let kept = text.get(..end).unwrap_or("");
        let Some(at) = self.corrupt_at else {
            return Some(kept.to_owned());
        };
        let count = kept.chars().count();
        let at = usize::try_from(at)
            .unwrap_or(usize::MAX)
            .min(count.saturating_sub(1));
        let mut out = String::with_capacity(kept.len() + 1);
        let mut replaced = false;
        for (i, c) in kept.chars().enumerate() {
            if i == at {
                out.push(CORRUPT_CHAR);
                replaced = true;
            } else {
                out.push(c);
            }
        }
        if !replaced {
            out.push(CORRUPT_CHAR);
        }
        Some(out)
    }
}

/// Where `fragment` cuts a text of `len` bytes into `frames` parts: near-equal in bytes, each
/// cut moved back to a character boundary so that every frame is valid UTF-8 on its own (some
/// may be empty when the text is short).
pub fn cuts(text: &str, frames: u64) -> Vec<usize> {
    let len = text.len() as u128;
    let n = u128::from(frames.max(1));
    (1..n)
        .map(|i| {
            let mut at = usize::try_from(len * i / n).unwrap_or(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(f: impl FnOnce(&mut Plan)) -> Plan {
        let mut p = Plan::default();
        f(&mut p);
        p
    }

    #[test]
    fn corruption_is_never_json_and_always_utf8() {
        let texts = [
            r#"{"type":"answer","sdp":"v=0\r\n"}"#,
            r#"{"type":"x","é":"ü"}"#,
            "{}",
            "",
            r#"{"a":1}"#,
        ];
        for text in texts {
            for at in 0..(text.chars().count() as u64 + 2) {
                let out = plan(|p| p.corrupt_at = Some(at))
                    .change_text(text)
                    .expect("changed");
                assert!(
                    serde_json::from_str::<Value>(&out).is_err(),
                    "{out:?} parses"
                );
                assert_eq!(out.chars().filter(|c| *c == CORRUPT_CHAR).count(), 1);
            }
        }
    }

    #[test]
    fn truncation_stays_on_a_character_boundary() {
        let p = plan(|p| p.truncate = Some(3));
        assert_eq!(p.change_text("aéb").as_deref(), Some("aé"));
        let p = plan(|p| p.truncate = Some(2));
        assert_eq!(p.change_text("aéb").as_deref(), Some("a"));
        let p = plan(|p| p.truncate = Some(100));
        assert_eq!(p.change_text("abc").as_deref(), Some("abc"));
        assert_eq!(Plan::default().change_text("abc"), None);
    }

    #[test]
    fn truncation_comes_before_corruption() {
        let p = plan(|p| {
            p.truncate = Some(3);
            p.corrupt_at = Some(7);
        });
        assert_eq!(p.change_text("abcdefgh").as_deref(), Some("ab\u{1a}"));
        let p = plan(|p| {
            p.truncate = Some(0);
            p.corrupt_at = Some(0);
        });
        assert_eq!(p.change_text("abc").as_deref(), Some("\u{1a}"));
    }

    #[test]
    fn fragments_cover_the_text_on_boundaries() {
        assert_eq!(cuts("abcdefgh", 4), [2, 4, 6]);
        assert_eq!(cuts("ab", 4), [0, 1, 1]);
        let text = "éééé";
        for at in cuts(text, 3) {
            assert!(text.is_char_boundary(at));
        }
    }

    #[test]
    fn the_corrupted_character_is_a_fraction_of_the_length() {
        assert_eq!(corrupt_at(0, 10), 0);
        assert_eq!(corrupt_at(u64::MAX, 10), 9);
        assert_eq!(corrupt_at(1 << 63, 10), 5);
        assert_eq!(corrupt_at(123, 0), 0);
    }

    #[test]
    fn a_plan_is_small_enough_to_charge_as_stated() {
        // docs/faults.md, "Wire actions": a faulted message is charged its plan too.
        assert!(std::mem::size_of::<crate::mailbox::Faulted>() <= 320);
    }

    #[test]
    fn close_codes_are_those_a_frame_may_carry() {
        let parse = |v: Value| {
            let Value::Object(p) = v else { unreachable!() };
            WireAction::parse("close", &p)
        };
        assert!(parse(json!({"code": 1006})).is_err());
        assert!(parse(json!({"code": 5000})).is_err());
        assert!(parse(json!({"reason": "x".repeat(124)})).is_err());
        let Ok(WireAction::Close {
            code,
            reason,
            after,
        }) = parse(json!({}))
        else {
            panic!("defaults")
        };
        assert_eq!(
            (code, reason.as_str(), after),
            (4100, "fault injected", true)
        );
    }
}
