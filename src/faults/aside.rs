//! Taking a message aside as its rule says (`reorder`, `hold`, `cross`, late copies), and what a
//! delivered message releases: the glue between [`super::apply`]'s per-receiver decision and
//! the store of held messages, [`super::hold`] (docs/faults.md, "Held messages").
use super::delivery::{Lane, Taken};
use super::hold::{Copies, Wait};
use super::order::Late;
use super::rule::Action;
use super::Faults;
use std::sync::Arc;
use std::time::Duration;

/// A sender → receiver pair of a room, by order, as in stream keys.
pub struct Pair<'a> {
    pub endpoint: &'a str,
    pub room: u64,
    pub from: &'a str,
    pub to: &'a str,
}

impl Pair<'_> {
    /// `book/#1/#1>#2`.
    fn key(&self) -> String {
        format!("{}/#{}/{}>{}", self.endpoint, self.room, self.from, self.to)
    }

    /// The same for both directions, and per rule: `glare\0book/#1/#1<>#2`.
    fn cross_key(&self, rule: &str) -> String {
        let (a, b) = if self.from <= self.to {
            (self.from, self.to)
        } else {
            (self.to, self.from)
        };
        format!("{rule}\0{}/#{}/{a}<>{b}", self.endpoint, self.room)
    }
}

/// Until when `reorder`, `hold` or `cross` takes a message aside.
#[derive(Clone)]
pub enum Aside {
    Pair {
        kind: Option<String>,
        left: u64,
        bound: Duration,
    },
    Time(Duration),
    Cross {
        rule: String,
        bound: Duration,
    },
}

impl Aside {
    pub fn of(action: &Action, rule: &str) -> Option<Aside> {
        Some(match action {
            Action::Reorder { gap, max_hold_ms } => Aside::Pair {
                kind: None,
                left: *gap,
                bound: Duration::from_millis(*max_hold_ms),
            },
            Action::Hold(until) if until.count == 0 => {
                Aside::Time(Duration::from_millis(until.max_hold_ms))
            }
            Action::Hold(until) => Aside::Pair {
                kind: until.kind.clone(),
                left: until.count,
                bound: Duration::from_millis(until.max_hold_ms),
            },
            Action::Cross { max_hold_ms } => Aside::Cross {
                rule: rule.to_owned(),
                bound: Duration::from_millis(*max_hold_ms),
            },
            _ => return None,
        })
    }
}

/// `duplicate`'s late copies of one message, and the lane of the stream they count on.
#[derive(Clone)]
pub struct LateCopies {
    copies: u64,
    late: Late,
    lane: Arc<Lane>,
}

impl LateCopies {
    pub fn of(action: &Action, lane: Arc<Lane>) -> Option<LateCopies> {
        match action {
            Action::DuplicateLate { copies, late } => Some(LateCopies {
                copies: *copies,
                late: *late,
                lane,
            }),
            _ => None,
        }
    }
}

impl Faults {
    /// Takes `c` aside as `aside` says; false when it goes on now (a `cross` that released the
    /// other side, which is then delivered too; or the bound on held messages).
    pub(super) fn aside(&self, aside: &Aside, pair: &Pair<'_>, c: &Copies<'_>) -> bool {
        let holds = &self.0.holds;
        match aside {
            Aside::Pair { kind, left, bound } => {
                let wait = Wait::Pair {
                    pair: pair.key(),
                    kind: kind.clone(),
                    left: *left,
                };
                holds.hold(c, wait, *bound)
            }
            Aside::Time(bound) => holds.hold(c, Wait::Time, *bound),
            Aside::Cross { rule, bound } => {
                match holds.cross(&pair.cross_key(rule), pair.from, c, *bound) {
                    None => true,
                    Some(released) => {
                        // Both sides at once: the other side's first, as it was held first.
                        for m in released {
                            m.via.deliver(&m.to, &m.text);
                        }
                        false
                    }
                }
            }
        }
    }

    /// After a copy of a message of type `kind` was delivered (or queued in `lane`) on `pair`:
    /// what it released (`after`, and what waited on the pair) follows it, and its late copies
    /// are held.
    pub(super) fn after_copy(
        &self,
        pair: &Pair<'_>,
        kind: &str,
        c: &Copies<'_>,
        lane: Option<&Arc<Lane>>,
        late: &[LateCopies],
        mut after: Vec<Taken>,
    ) {
        let holds = &self.0.holds;
        if holds.watching() {
            after.extend(holds.pair_passed(&pair.key(), kind));
        }
        self.deliver_after(lane, after);
        for l in late {
            let copies = Copies {
                copies: l.copies,
                ..*c
            };
            let held = match l.late {
                Late::Messages { n, max_hold_ms } => holds.hold(
                    &copies,
                    Wait::Stream {
                        lane: Arc::clone(&l.lane),
                        left: n,
                    },
                    Duration::from_millis(max_hold_ms),
                ),
                Late::Ms(ms) => holds.hold(&copies, Wait::Time, Duration::from_millis(ms)),
            };
            if !held {
                for _ in 0..l.copies {
                    c.via.deliver(c.to, c.text);
                }
            }
        }
    }

    /// Delivers released messages behind what `lane` holds (so behind the message that
    /// released them), or now.
    pub(super) fn deliver_after(&self, lane: Option<&Arc<Lane>>, msgs: Vec<Taken>) {
        for m in msgs {
            match lane {
                Some(lane) => {
                    lane.send(Duration::ZERO, 1, &m.to, &m.text, m.via, &self.0.held, None)
                }
                None => m.via.deliver(&m.to, &m.text),
            }
        }
    }
}
