//! Applying the rules to one message: which rules select it, on which streams it is counted,
//! and what becomes of each receiver's copy (docs/faults.md, "Several rules on one message").
use super::aside::{Aside, LateCopies, Pair};
use super::delivery::{Lane, Taken};
use super::hold::Copies;
use super::log::Injected;
use super::replay::Outcome;
use super::rule::{Direction, Endpoint, PeerSel, RoomSel};
use super::stream::{self, Fired, Stream};
use super::wire::Plan;
use super::{lock, Faults, Installed, Outgoing, Sender, MAX_STREAMS};
use crate::events::Event;
use crate::mailbox::PeerRef;
use crate::registry::{Order, RoomKey};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Faults {
    /// Sends `out` to `receivers` through the rules; called only when [`is_active`](Self::is_active).
    pub fn send(&self, out: &Outgoing<'_>, receivers: &[PeerRef]) {
        self.route(out, receivers, false);
    }

    /// The server's own reply to `to`, the peer that asked (`GETROOM`'s answer, `WRONGROOM`,
    /// `authenticated`, `error`), through the rules: true when they took it (dropped it, or
    /// queued it in `to`'s mailbox, late or not); false when none acted, and the caller writes
    /// it at once, exactly as without rules (so that, e.g., `authenticated` still comes first).
    /// A peer outside every room gets it as in room `#0`, named by its id.
    pub fn reply(&self, out: &Outgoing<'_>, to: &PeerRef) -> bool {
        self.route(out, std::slice::from_ref(to), true)
    }

    fn route(&self, out: &Outgoing<'_>, receivers: &[PeerRef], reply: bool) -> bool {
        let rules = Arc::clone(&lock(&self.0.rules));
        let order = match self.0.registry.order(out.room) {
            None if reply => Some(Order::outside()),
            order => order,
        };
        let Some(order) = order.filter(|_| !rules.is_empty() || self.0.holds.watching()) else {
            if reply {
                return false;
            }
            for to in receivers {
                out.via.deliver(to, out.text);
            }
            return false;
        };
        let parsed: Option<Value> = serde_json::from_str(out.text.as_str()).ok();
        let kind_key = match out.endpoint {
            Endpoint::Book => "type",
            Endpoint::Rooms => "event",
        };
        let kind = parsed
            .as_ref()
            .and_then(|v| v.get(kind_key))
            .and_then(Value::as_str)
            .unwrap_or("");
        let now = Instant::now();
        let from_ord = match out.from {
            Sender::Peer(id) => order.peers.get(&id).copied(),
            Sender::Server => None,
        };
        let from_label = label(out.from, from_ord);
        let candidates: Vec<&Arc<Installed>> = rules
            .iter()
            .filter(|i| {
                let r = &i.rule;
                let m = &r.matcher;
                r.enabled
                    && i.in_window(now)
                    && m.endpoint.is_none_or(|e| e == out.endpoint)
                    && m.room
                        .as_ref()
                        .is_none_or(|s| room_matches(s, out.room, &order))
                    && m.from
                        .as_ref()
                        .is_none_or(|s| peer_matches(s, out.from, from_ord))
                    && m.kind.as_deref().is_none_or(|k| k == kind)
                    && m.field.iter().all(|(pointer, want)| {
                        parsed.as_ref().and_then(|v| v.pointer(pointer)) == Some(want)
                    })
            })
            .collect();
        let ctx = Context {
            faults: self,
            out,
            order: &order,
            kind,
            from_label: &from_label,
        };
        let mut upstream = Effect::default();
        for installed in candidates
            .iter()
            .filter(|i| i.rule.matcher.direction == Direction::Upstream)
        {
            if !ctx.step(installed, "*", &mut upstream) {
                return true;
            }
        }
        // Released by this message on an upstream stream: after it reached every receiver.
        let upstream_after = std::mem::take(&mut upstream.after);
        if let Some(stall) = upstream.plan.as_mut().and_then(Plan::take_sender_stall) {
            self.stall_sender(out, stall);
        }
        for to in receivers {
            let mut effect = upstream.clone();
            let to_ord = order.peers.get(&to.id()).copied();
            let to_label = label(Sender::Peer(to.id()), to_ord);
            let mut delivered = true;
            for installed in candidates.iter().filter(|i| {
                i.rule.matcher.direction == Direction::Downstream
                    && i.rule
                        .matcher
                        .to
                        .as_ref()
                        .is_none_or(|s| peer_matches(s, Sender::Peer(to.id()), to_ord))
            }) {
                if !ctx.step(installed, &to_label, &mut effect) {
                    delivered = false;
                    break;
                }
            }
            if !delivered {
                continue;
            }
            // A reply no rule touched (and no hold waits on) is written by the caller at once.
            let untouched = effect.delay.is_zero()
                && effect.copies == 0
                && effect.plan.as_ref().is_none_or(Plan::is_empty)
                && effect.aside.is_none()
                && effect.late.is_empty()
                && effect.after.is_empty()
                && upstream_after.is_empty()
                && !self.0.holds.watching()
                && effect.lane.as_ref().is_none_or(|lane| lane.is_idle());
            if reply && untouched {
                return false;
            }
            let pair = Pair {
                endpoint: out.endpoint.as_str(),
                room: order.room,
                from: &from_label,
                to: &to_label,
            };
            let copy = Copies {
                to,
                text: out.text,
                via: out.via,
                copies: 1 + effect.copies,
            };
            // Taken aside, a copy is delivered later as it was sent: the wire actions of other
            // rules on it are not carried out (docs/faults.md, "Several rules on one message").
            if effect
                .aside
                .as_ref()
                .is_some_and(|aside| self.aside(aside, &pair, &copy))
            {
                continue;
            }
            let plan = effect.plan.as_ref().filter(|p| !p.is_empty());
            match &effect.lane {
                Some(lane) => lane.send(
                    effect.delay,
                    1 + effect.copies,
                    to,
                    out.text,
                    out.via,
                    &self.0.held,
                    plan,
                ),
                None => out.via.deliver_planned(to, out.text, plan),
            }
            let after = std::mem::take(&mut effect.after);
            self.after_copy(
                &pair,
                kind,
                &copy,
                effect.lane.as_ref(),
                &effect.late,
                after,
            );
        }
        self.deliver_after(upstream.lane.as_ref(), upstream_after);
        true
    }

    /// `stall` on an upstream rule: the sender's own connection stops reading for `stall`
    /// (a plan without a message, queued to the sender).
    fn stall_sender(&self, out: &Outgoing<'_>, stall: Duration) {
        let Sender::Peer(id) = out.from else {
            return;
        };
        let me = std::collections::HashSet::from([id]);
        for sender in self.0.registry.find(out.room, &me) {
            let plan = Plan {
                stall: Some(stall),
                ..Plan::default()
            };
            let _ = sender.faulted(|| None, 0, plan);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        rule: &str,
        key: String,
        index: u64,
        kind: &str,
        digest: String,
        fired: Fired,
        base: Value,
    ) {
        let (action, params) = match fired {
            Fired::Drop => ("drop", base),
            Fired::Delay(d) => {
                let mut params = base;
                if let Value::Object(map) = &mut params {
                    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    map.insert("delay_ms".into(), ms.into());
                }
                ("delay", params)
            }
            Fired::Duplicate(_) | Fired::Late(_) => ("duplicate", base),
            Fired::BurstDrop(state) => ("drop", state.logged(base)),
            Fired::Held(action) => (action, base),
            Fired::Wire(w) => (w.name(), base),
        };
        let record = self.0.log.push(Injected {
            seq: 0,
            rule: rule.to_owned(),
            key,
            index,
            kind: kind.to_owned(),
            digest,
            action,
            params,
            t_ms: self.now_ms(),
        });
        self.0.metrics.fault_injected(rule, action);
        self.0.events.publish(Event::Fault(Box::new(record)));
    }
}

/// What the rules that acted do to one copy of a message, together.
#[derive(Clone, Default)]
struct Effect {
    delay: Duration,
    copies: u64,
    /// The lane of the first stream the message was counted on: the order it keeps.
    lane: Option<Arc<Lane>>,
    /// Taken aside by `reorder`, `hold` or `cross`: the first such rule says until when.
    aside: Option<Aside>,
    /// Late copies to hold once the message is delivered.
    late: Vec<LateCopies>,
    /// Late copies released by this message passing their stream: delivered after it.
    after: Vec<Taken>,
    /// What the wire actions that fired ask of the receiver's connection.
    plan: Option<Plan>,
}

struct Context<'a> {
    faults: &'a Faults,
    out: &'a Outgoing<'a>,
    order: &'a Order,
    kind: &'a str,
    from_label: &'a str,
}

impl Context<'_> {
    /// Counts the message on `installed`'s stream towards `to` and adds what the rule does to
    /// `effect`; false when the rule dropped it.
    fn step(&self, installed: &Installed, to: &str, effect: &mut Effect) -> bool {
        let rule = &installed.rule;
        let key = stream::key(
            self.out.endpoint.as_str(),
            self.order.room,
            self.from_label,
            to,
            rule.matcher.direction.as_str(),
        );
        let (index, fired, lane) = {
            let mut streams = lock(&installed.streams);
            if !streams.contains_key(&key) && streams.len() >= MAX_STREAMS {
                if !installed.full.swap(true, Ordering::Relaxed) {
                    ::log::warn!(
                        "faults: rule {} has {MAX_STREAMS} streams; new ones pass untouched",
                        rule.name
                    );
                }
                return true;
            }
            let stream = streams
                .entry(key.clone())
                .or_insert_with(|| Stream::new(self.faults.0.seed, &rule.name, &key));
            let decided = match &installed.script {
                None => {
                    let (index, fired) = stream.next(rule);
                    (index, fired.map(|f| (f, rule.action.params())))
                }
                Some(script) => {
                    let index = stream.count();
                    let digest = || stream::digest(self.out.text.as_str());
                    let t_ms = self.faults.now_ms();
                    match script.at(&rule.name, &key, index, self.kind, digest, t_ms) {
                        Outcome::Pass => (index, None),
                        Outcome::Fire(fired, params) => (index, Some((fired, params))),
                        Outcome::Diverged(d) => {
                            ::log::warn!(
                                "faults: the replay diverged at {} index {}: {} {} where the log has {} {}",
                                d.key, d.index, d.kind, d.digest, d.expected_kind, d.expected_digest
                            );
                            self.faults.0.events.publish(Event::FaultDivergence(d));
                            (index, None)
                        }
                    }
                }
            };
            (decided.0, decided.1, Arc::clone(&stream.lane))
        };
        effect
            .after
            .extend(self.faults.0.holds.stream_passed(&lane));
        effect.lane.get_or_insert_with(|| Arc::clone(&lane));
        let Some((fired, params)) = fired else {
            return true;
        };
        let text = self.out.text.as_str();
        let params = match fired {
            Fired::Wire(w) => w.log_params(params, text),
            _ => params,
        };
        self.faults.record(
            &rule.name,
            key,
            index,
            self.kind,
            stream::digest(text),
            fired,
            params,
        );
        match fired {
            Fired::Drop => return false,
            Fired::Delay(d) => effect.delay += d,
            Fired::Duplicate(n) => effect.copies += n,
            Fired::BurstDrop(_) => return false,
            Fired::Late(_) => effect.late.extend(LateCopies::of(&rule.action, lane)),
            Fired::Held(_) => {
                if effect.aside.is_none() {
                    effect.aside = Aside::of(&rule.action, &rule.name);
                }
            }
            Fired::Wire(w) => effect.plan.get_or_insert_with(Plan::default).add(
                w,
                text,
                rule.matcher.direction == Direction::Upstream,
            ),
        }
        true
    }
}

/// `#n` by join order; a peer the order does not know by its id; the room as `server`.
fn label(who: Sender, ord: Option<u32>) -> String {
    match (who, ord) {
        (Sender::Server, _) => "server".into(),
        (_, Some(n)) => format!("#{n}"),
        (Sender::Peer(id), None) => id.to_string(),
    }
}

fn room_matches(sel: &RoomSel, room: &RoomKey, order: &Order) -> bool {
    match sel {
        RoomSel::Order(n) => *n == order.room,
        RoomSel::Named(name) => room.to_string() == *name,
    }
}

fn peer_matches(sel: &PeerSel, who: Sender, ord: Option<u32>) -> bool {
    match (sel, who) {
        (PeerSel::Server, Sender::Server) => true,
        (_, Sender::Server) | (PeerSel::Server, _) => false,
        (PeerSel::Creator, _) => ord == Some(1),
        (PeerSel::Joiner, _) => ord.is_some_and(|n| n >= 2),
        (PeerSel::Order(n), _) => ord == Some(*n),
        (PeerSel::Id(id), Sender::Peer(p)) => *id == p,
    }
}
