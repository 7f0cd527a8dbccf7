//! A stream: the messages one rule sees from one sender to one receiver of one room, in one
//! direction. Each has its own message counter and its own generator, seeded from the server's
//! fault seed and the stream's key, so that what a rule does on a stream depends only on the
//! seed and the messages of that stream (docs/faults.md, "Determinism").
use super::bursty;
use super::delivery::Lane;
use super::rule::{Action, Rule};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;

/// The stream's name in the log: `book/#1/#1>#2/downstream`.
pub fn key(endpoint: &str, room: u64, from: &str, to: &str, direction: &str) -> String {
    format!("{endpoint}/#{room}/{from}>{to}/{direction}")
}

/// FNV-1a: a hash that is the same in every build and version (std's `DefaultHasher` is not
/// promised to be).
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A message's text as the log names it (`digest`): FNV-1a 64 in 16 lowercase hex digits, so
/// that a replay can tell whether the message at a logged index is the one that was there.
pub fn digest(text: &str) -> String {
    format!("{:016x}", stable_hash(text.as_bytes()))
}

/// What a rule does to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Drop,
    Delay(Duration),
    Duplicate(u64),
    /// A bursty drop, in the state the stream was in.
    BurstDrop(bursty::State),
    /// Copies that come later (the rule's `after_messages` / `after_ms`).
    Late(u64),
    /// Taken aside by `reorder`, `hold` or `cross` (named; the rule says until when).
    Held(&'static str),
    Wire(super::wire::WireFired),
}

pub struct Stream {
    /// Messages seen, so the index of the last one.
    seen: u64,
    /// Messages acted on, for `count`.
    acted: u64,
    rng: Xoshiro256PlusPlus,
    /// Gilbert-Elliott's state: in the bad one.
    bad: bool,
    /// Where its messages wait their turn, so that a delayed one is not overtaken.
    pub lane: Arc<Lane>,
}

impl Stream {
    pub fn new(seed: u64, rule: &str, key: &str) -> Self {
        let salt = stable_hash(format!("{rule}\0{key}").as_bytes());
        Stream {
            seen: 0,
            acted: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ salt),
            bad: false,
            lane: Arc::new(Lane::default()),
        }
    }

    /// Counts the next message without deciding (a replay decides instead): its index.
    pub fn count(&mut self) -> u64 {
        self.seen += 1;
        self.seen
    }

    /// Counts the next message and decides: its index, and what the rule does to it. The
    /// generator is drawn only for messages that `after`/`every`/`count` let through, and in a
    /// fixed order (probability, then jitter or corrupt's character), so that the same messages
    /// give the same draws.
    pub fn next(&mut self, rule: &Rule) -> (u64, Option<Fired>) {
        self.seen += 1;
        let index = self.seen;
        let m = &rule.matcher;
        if index <= m.after || !(index - m.after).is_multiple_of(m.every) {
            return (index, None);
        }
        if m.count.is_some_and(|count| self.acted >= count) {
            return (index, None);
        }
        if rule.probability < 1.0 {
            // `as` saturates; p = 1 never draws.
            let threshold = (rule.probability * 18_446_744_073_709_551_616.0) as u64;
            if self.rng.next_u64() >= threshold {
                return (index, None);
            }
        }
        let fired = match &rule.action {
            Action::Drop => Fired::Drop,
            &Action::Delay { ms, jitter_ms } => {
                let ms = if jitter_ms == 0 {
                    ms
                } else {
                    // Uniform in [ms - jitter, ms + jitter], floored at 0.
                    let span = 2 * jitter_ms + 1;
                    let r = ((u128::from(self.rng.next_u64()) * u128::from(span)) >> 64) as u64;
                    (ms + r).saturating_sub(jitter_ms)
                };
                Fired::Delay(Duration::from_millis(ms))
            }
            Action::Duplicate { copies } => Fired::Duplicate(*copies),
            // The model's draws come after the probability's: a message the probability lets
            // go does not move the chain.
            Action::DropBursty(ge) => match ge.next(&mut self.bad, &mut self.rng) {
                Some(state) => Fired::BurstDrop(state),
                None => return (index, None),
            },
            Action::DuplicateLate { copies, .. } => Fired::Late(*copies),
            Action::Reorder { .. } | Action::Hold(_) | Action::Cross { .. } => {
                Fired::Held(rule.action.name())
            }
            Action::Wire(w) => Fired::Wire(w.fire(&mut self.rng)),
        };
        self.acted += 1;
        (index, Some(fired))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: serde_json::Value) -> Rule {
        Rule::from_json(&v).unwrap()
    }

    #[test]
    fn every_five_is_five_ten_fifteen() {
        let r = rule(json!({"name": "d", "action": "drop", "match": {"every": 5}}));
        let mut s = Stream::new(1, "d", "k");
        let hit: Vec<u64> = (0..20)
            .map(|_| s.next(&r))
            .filter(|(_, f)| f.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hit, [5, 10, 15, 20]);
    }

    #[test]
    fn after_and_count_bound_the_acted_on() {
        let r = rule(json!({"name": "d", "action": "drop", "match": {"after": 2, "count": 3}}));
        let mut s = Stream::new(1, "d", "k");
        let hit: Vec<u64> = (0..10)
            .map(|_| s.next(&r))
            .filter(|(_, f)| f.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hit, [3, 4, 5]);
    }

    #[test]
    fn the_seed_and_the_key_decide_the_draws() {
        let r = rule(json!({"name": "p", "action": "drop", "probability": 0.3}));
        let draws = |seed, key| {
            let mut s = Stream::new(seed, "p", key);
            (0..200).map(|_| s.next(&r).1.is_some()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, "a"), draws(7, "a"));
        assert_ne!(draws(7, "a"), draws(8, "a"));
        assert_ne!(draws(7, "a"), draws(7, "b"));
        let hits = draws(7, "a").iter().filter(|h| **h).count();
        assert!((30..=90).contains(&hits), "{hits} of 200 at p = 0.3");
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let r =
            rule(json!({"name": "j", "action": "delay", "params": {"ms": 100, "jitter_ms": 20}}));
        let mut s = Stream::new(3, "j", "k");
        for _ in 0..1000 {
            let Some(Fired::Delay(d)) = s.next(&r).1 else {
                panic!("a delay rule with p = 1 delays")
            };
            assert!((80..=120).contains(&d.as_millis()), "{d:?}");
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest("a"), "af63dc4c8601ec8c");
    }
}
