//! Message-level faults: rules that drop, delay or duplicate signaling messages on their way
//! from a sender to its receivers, seeded and logged (docs/faults.md).
//!
//! - [`rule`]: the rule format, read and validated (no I/O).
//! - [`stream`]: a (rule, room, sender, receiver, direction) stream, its counter and generator.
//! - [`delivery`]: lanes, where delayed messages wait outside every room and peer process.
//! - [`order`], [`hold`], `aside`: `reorder`, `hold`, `cross` and late copies: their
//!   parameters, where the messages they take aside wait (and `POST /faults/reset`, which
//!   empties them and the lanes), and the glue to `apply`.
//! - [`bursty`]: Gilbert-Elliott loss for `drop`.
//! - [`log`]: the fault log.
//! - [`wire`]: the wire actions (corrupt ... reset) and the [`wire::Plan`] a receiver's
//!   connection carries out.
//! - [`replay`]: a recorded log in place of the rules' decisions.
//! - [`presets`]: named rule sets for classic client bugs.
//! - [`client`]: a preset a client asks for on its own URL (`?faults=`).
//! - `apply`: one message through the rules (the hot path while rules are set).
//!
//! The rest of the server holds a [`Faults`] (a cheap clone): the peers and rooms ask
//! [`Faults::is_active`] (two atomic loads) and, only when a rule is set, hand their message to
//! [`Faults::send`] instead of queueing it themselves.
mod apply;
mod aside;
pub mod bursty;
pub mod client;
pub mod delivery;
pub mod hold;
pub mod log;
pub mod order;
pub mod presets;
pub mod replay;
pub mod rule;
pub mod stream;
pub mod wire;

use crate::events::Events;
use crate::metrics::Metrics;
use crate::registry::{PeerId, Registry, RoomKey};
use async_tungstenite::tungstenite::Utf8Bytes;
use delivery::HeldCount;
pub use delivery::Via;
pub use log::Injected;
use replay::{Script, UnknownRule};
use rule::{Endpoint, Rule};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use stream::Stream;

/// Streams one rule keeps at most; a message on a stream past it is passed on untouched (and
/// the first such is logged).
pub const MAX_STREAMS: usize = 65_536;

/// The rules of a `--faults` file: a JSON array of rules, or `{"rules": [...]}`.
pub fn rules_file(path: &std::path::Path) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --faults {}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("--faults {}: not JSON: {e}", path.display()))?;
    let list = match &v {
        Value::Array(list) => list,
        Value::Object(map) => match map.get("rules") {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(format!(
                    "--faults {}: rules: must be an array",
                    path.display()
                ))
            }
        },
        _ => {
            return Err(format!(
                "--faults {}: must be an array of rules",
                path.display()
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            Rule::from_json(r).map_err(|e| format!("--faults {}: rules[{i}].{e}", path.display()))
        })
        .collect()
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Peer(PeerId),
    /// The room itself: `joined`, `left`.
    Server,
}

/// A message leaving its sender.
pub struct Outgoing<'a> {
    pub endpoint: Endpoint,
    pub room: &'a RoomKey,
    pub from: Sender,
    pub text: &'a Utf8Bytes,
    pub via: Via,
}

/// A rule as installed: when, and its streams.
struct Installed {
    rule: Rule,
    /// The replay in force when the rule was installed: it decides instead of the streams'
    /// generators.
    script: Option<Arc<Script>>,
    since: Instant,
    streams: Mutex<HashMap<String, Stream>>,
    /// The stream bound was reported (once per rule).
    full: AtomicBool,
}

impl Installed {
    fn new(rule: Rule, script: Option<Arc<Script>>) -> Arc<Self> {
        Arc::new(Installed {
            rule,
            script,
            since: Instant::now(),
            streams: Mutex::new(HashMap::new()),
            full: AtomicBool::new(false),
        })
    }

    fn in_window(&self, now: Instant) -> bool {
        let w = &self.rule.window;
        let elapsed = now.saturating_duration_since(self.since);
        let start = Duration::from_millis(w.start_ms);
        elapsed >= start
            && w.duration_ms
                .is_none_or(|d| elapsed < start + Duration::from_millis(d))
    }
}

/// Why a change to the rules was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesError {
    /// A rule of that name exists (POST /faults): 409.
    Exists(String),
    NotFound(String),
    /// Two rules of one populate share a name: 400.
    Duplicate(String),
    /// More than [`rule::MAX_RULES`]: 400.
    TooMany,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesError::Exists(n) => write!(f, "a rule named {n:?} exists"),
            RulesError::NotFound(n) => write!(f, "no rule named {n:?}"),
            RulesError::Duplicate(n) => write!(f, "two rules are named {n:?}"),
            RulesError::TooMany => write!(f, "at most {} rules", rule::MAX_RULES),
        }
    }
}

impl std::error::Error for RulesError {}

/// Why a replay was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayRefused {
    /// The rules given with it are not a valid list (400, as a populate's).
    Rules(RulesError),
    /// The log names a rule that is not set (409).
    UnknownRule(UnknownRule),
}

struct Inner {
    seed: u64,
    active: AtomicBool,
    rules: Mutex<Arc<Vec<Arc<Installed>>>>,
    /// The replay in force; changed only under the `rules` lock (taken first).
    replay: Mutex<Option<Arc<Script>>>,
    registry: Arc<Registry>,
    events: Arc<Events>,
    metrics: Arc<Metrics>,
    log: log::FaultLog,
    held: Arc<HeldCount>,
    holds: Arc<hold::Holds>,
    started: Instant,
}

/// The fault rules of one server, and what they did.
#[derive(Clone)]
pub struct Faults(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section swaps an Arc or touches one map entry.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Faults {
    /// Without a seed, one is drawn and logged, so that the run can be repeated.
    pub fn new(
        seed: Option<u64>,
        registry: Arc<Registry>,
        events: Arc<Events>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let seed = seed.unwrap_or_else(|| {
            use rand::Rng;
            let seed = rand::rng().next_u64();
            ::log::info!("fault seed {seed} (--fault-seed {seed} repeats this run's faults)");
            seed
        });
        let held: Arc<HeldCount> = Arc::default();
        Faults(Arc::new(Inner {
            seed,
            active: AtomicBool::new(false),
            rules: Mutex::new(Arc::new(Vec::new())),
            replay: Mutex::new(None),
            registry,
            events,
            metrics,
            log: log::FaultLog::default(),
            holds: hold::Holds::new(Arc::clone(&held)),
            held,
            started: Instant::now(),
        }))
    }

    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// Whether any rule is set, or a held message waits on its pair's messages: the one check
    /// on the relay path when neither.
    pub fn is_active(&self) -> bool {
        self.0.active.load(Ordering::Acquire) || self.0.holds.watching()
    }

    /// Messages delayed or held aside and not yet delivered.
    pub fn held(&self) -> usize {
        self.0.held.get()
    }

    /// `POST /faults/reset`: every held message delivered now (in the order held) or discarded.
    pub fn reset_held(&self, deliver: bool) -> hold::Reset {
        hold::reset(&self.0.held, &self.0.holds, deliver)
    }

    pub fn rules(&self) -> Vec<Rule> {
        lock(&self.0.rules).iter().map(|i| i.rule.clone()).collect()
    }

    pub fn rule(&self, name: &str) -> Option<Rule> {
        lock(&self.0.rules)
            .iter()
            .find(|i| i.rule.name == name)
            .map(|i| i.rule.clone())
    }

    fn set(&self, rules: &mut MutexGuard<'_, Arc<Vec<Arc<Installed>>>>, new: Vec<Arc<Installed>>) {
        self.0.active.store(!new.is_empty(), Ordering::Release);
        **rules = Arc::new(new);
    }

    /// Adds a rule at the end of the list.
    pub fn add(&self, rule: Rule) -> Result<(), RulesError> {
        let mut rules = lock(&self.0.rules);
        if rules.iter().any(|i| i.rule.name == rule.name) {
            return Err(RulesError::Exists(rule.name));
        }
        if rules.len() >= rule::MAX_RULES {
            return Err(RulesError::TooMany);
        }
        let mut new = rules.as_ref().clone();
        new.push(Installed::new(rule, lock(&self.0.replay).clone()));
        self.set(&mut rules, new);
        Ok(())
    }

    /// Replaces the rule of that name in its place (its streams start over).
    pub fn replace(&self, rule: Rule) -> Result<(), RulesError> {
        let mut rules = lock(&self.0.rules);
        let mut new = rules.as_ref().clone();
        let slot = new
            .iter_mut()
            .find(|i| i.rule.name == rule.name)
            .ok_or_else(|| RulesError::NotFound(rule.name.clone()))?;
        *slot = Installed::new(rule, lock(&self.0.replay).clone());
        self.set(&mut rules, new);
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), RulesError> {
        let mut rules = lock(&self.0.rules);
        let mut new = rules.as_ref().clone();
        let before = new.len();
        new.retain(|i| i.rule.name != name);
        if new.len() == before {
            return Err(RulesError::NotFound(name.to_owned()));
        }
        self.set(&mut rules, new);
        Ok(())
    }

    /// Replaces every rule at once: a message sees the old set or the new one, never a mix.
    pub fn populate(&self, rules: Vec<Rule>) -> Result<(), RulesError> {
        Self::check_list(&rules)?;
        let mut installed = lock(&self.0.rules);
        // New rules are a new run: a replay of the old one ends.
        *lock(&self.0.replay) = None;
        let new = rules.into_iter().map(|r| Installed::new(r, None)).collect();
        self.set(&mut installed, new);
        Ok(())
    }

    /// Sets `rules` at the end of the list in place of every rule whose name starts with
    /// `prefix` (a preset switched on again starts over), all at once.
    pub fn set_prefixed(&self, prefix: &str, rules: Vec<Rule>) -> Result<(), RulesError> {
        let mut installed = lock(&self.0.rules);
        let mut new: Vec<Arc<Installed>> = installed
            .iter()
            .filter(|i| !i.rule.name.starts_with(prefix))
            .cloned()
            .collect();
        if new.len() + rules.len() > rule::MAX_RULES {
            return Err(RulesError::TooMany);
        }
        if let Some(taken) = rules
            .iter()
            .find(|r| new.iter().any(|i| i.rule.name == r.name))
        {
            return Err(RulesError::Exists(taken.name.clone()));
        }
        let script = lock(&self.0.replay).clone();
        new.extend(rules.into_iter().map(|r| Installed::new(r, script.clone())));
        self.set(&mut installed, new);
        Ok(())
    }

    /// Removes every rule whose name starts with `prefix`, all at once; returns their names.
    pub fn remove_prefixed(&self, prefix: &str) -> Vec<String> {
        let mut installed = lock(&self.0.rules);
        let (gone, kept): (Vec<_>, Vec<_>) = installed
            .iter()
            .cloned()
            .partition(|i| i.rule.name.starts_with(prefix));
        if !gone.is_empty() {
            self.set(&mut installed, kept);
        }
        gone.iter().map(|i| i.rule.name.clone()).collect()
    }

    /// A whole list of rules, as populate takes it: no more than the bound, no name twice.
    fn check_list(rules: &[Rule]) -> Result<(), RulesError> {
        if rules.len() > rule::MAX_RULES {
            return Err(RulesError::TooMany);
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                return Err(RulesError::Duplicate(r.name.clone()));
            }
        }
        Ok(())
    }

    /// Starts a replay of `script` (in place of any other): every rule starts its streams over
    /// and decides by the script from now on. With `rules`, they replace the rules first, in
    /// the same step (a populate and a replay that no message can fall between). Every rule
    /// the log names must then be set.
    pub fn replay(&self, script: Script, rules: Option<Vec<Rule>>) -> Result<Value, ReplayRefused> {
        if let Some(list) = &rules {
            Self::check_list(list).map_err(ReplayRefused::Rules)?;
        }
        let mut installed = lock(&self.0.rules);
        let rules: Vec<Rule> =
            rules.unwrap_or_else(|| installed.iter().map(|i| i.rule.clone()).collect());
        for (name, at) in script.rules() {
            if !rules.iter().any(|r| r.name == name) {
                return Err(ReplayRefused::UnknownRule(UnknownRule {
                    at,
                    rule: name.to_owned(),
                }));
            }
        }
        let script = Arc::new(script);
        *lock(&self.0.replay) = Some(Arc::clone(&script));
        let new = rules
            .into_iter()
            .map(|r| Installed::new(r, Some(Arc::clone(&script))))
            .collect();
        self.set(&mut installed, new);
        Ok(script.status())
    }

    /// Ends the replay in force, if any: the rules start their streams over and decide by
    /// their generators again. Returns the replay's last status.
    pub fn end_replay(&self) -> Option<Value> {
        let mut rules = lock(&self.0.rules);
        let ended = lock(&self.0.replay).take()?;
        let new = rules
            .iter()
            .map(|i| Installed::new(i.rule.clone(), None))
            .collect();
        self.set(&mut rules, new);
        Some(ended.status())
    }

    /// The replay in force: `{"records", "applied", "diverged"}`, or `None`.
    pub fn replay_status(&self) -> Option<Value> {
        lock(&self.0.replay).as_ref().map(|s| s.status())
    }

    /// Actions taken so far per rule and action, as `/metrics` counts them (rules removed
    /// included).
    pub fn injected(&self) -> Vec<(String, &'static str, u64)> {
        self.0.metrics.faults_injected()
    }

    /// The log's latest `n` records.
    pub fn log_tail(&self, n: usize) -> Vec<Injected> {
        self.0.log.tail(n)
    }

    /// The log's records numbered above `since`.
    pub fn log_since(&self, since: u64) -> Vec<Injected> {
        self.0.log.since(since)
    }
}
