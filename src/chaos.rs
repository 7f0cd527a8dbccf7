//! Chaos mode: crash children at random, at given rates, reproducibly for a seed.
//!
//! A decision is drawn where input arrives: one per message a peer relays (crash the sender's
//! room? crash the sender?) and one per accepted connection (crash the listener?). Each of the
//! three targets draws from its own stream derived from the seed, so that the timing of accepts
//! cannot shift the decisions about relays: the same seed and the same order of messages and
//! accepts give the same crashes. The generator is xoshiro256++, a named algorithm whose output
//! does not change between versions of `rand` (its `StdRng` may). The crash itself goes through
//! [`ServerHandle::crash`](crate::ServerHandle::crash), the same path the admin API takes.
use crate::config::Config;
use crate::events::Event;
use crate::registry::{PeerId, RoomKey};
use crate::rtcserver_app::{CrashTarget, ServerHandle, Shared};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// Crash probabilities: `room` and `peer` per relayed message, `listener` per accepted connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChaosSpec {
    pub room: f64,
    pub peer: f64,
    pub listener: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosSpecError(String);

impl fmt::Display for ChaosSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected e.g. room=0.01,peer=0.001,listener=0.0001)",
            self.0
        )
    }
}

impl std::error::Error for ChaosSpecError {}

impl FromStr for ChaosSpec {
    type Err = ChaosSpecError;

    fn from_str(s: &str) -> Result<Self, ChaosSpecError> {
        let mut spec = ChaosSpec::default();
        let mut seen = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| ChaosSpecError(format!("{part:?} is not target=probability")))?;
            let name = name.trim();
            let p: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=1.0).contains(p))
                .ok_or_else(|| {
                    ChaosSpecError(format!("{name}: {value:?} is not a probability in [0, 1]"))
                })?;
            let slot = match name {
                "room" => &mut spec.room,
                "peer" => &mut spec.peer,
                "listener" => &mut spec.listener,
                _ => {
                    return Err(ChaosSpecError(format!(
                        "unknown target {name:?} (room, peer or listener)"
                    )))
                }
            };
            if seen.contains(&name) {
                return Err(ChaosSpecError(format!("{name} is given twice")));
            }
            seen.push(name);
            *slot = p;
        }
        if seen.is_empty() {
            return Err(ChaosSpecError("no target given".into()));
        }
        Ok(spec)
    }
}

impl fmt::Display for ChaosSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("room", self.room),
            ("peer", self.peer),
            ("listener", self.listener),
        ]
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(name, p)| format!("{name}={p}"))
        .collect();
        f.write_str(&parts.join(","))
    }
}

/// What made chaos mode crash something: the n-th relayed message or accepted connection
/// (counted from 1 since the server started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Relay(u64),
    Accept(u64),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Relay(n) => write!(f, "relayed message #{n}"),
            Trigger::Accept(n) => write!(f, "accepted connection #{n}"),
        }
    }
}

/// One crash chaos mode injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosCrash {
    pub target: CrashTarget,
    pub trigger: Trigger,
}

/// How many of the latest chaos crashes [`Chaos::recent`] keeps.
const RECENT: usize = 1000;

struct Stream {
    rng: Xoshiro256PlusPlus,
    /// `p` scaled to the generator's range: a draw below it is a hit.
    threshold: u64,
    always: bool,
}

impl Stream {
    fn new(seed: u64, salt: u64, p: f64) -> Self {
        Stream {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ salt),
            // `as` saturates, and p = 1 is handled by `always`.
            threshold: (p * 18_446_744_073_709_551_616.0) as u64,
            always: p >= 1.0,
        }
    }

    /// `None` when the target is off (no draw, so it costs nothing).
    fn draw(&mut self) -> Option<bool> {
        if self.threshold == 0 && !self.always {
            return None;
        }
        let x = self.rng.next_u64();
        Some(self.always || x < self.threshold)
    }
}

struct Streams {
    room: Stream,
    peer: Stream,
    listener: Stream,
    relays: u64,
    accepts: u64,
}

/// The chaos of one server.
pub struct Chaos {
    spec: ChaosSpec,
    seed: u64,
    streams: Mutex<Streams>,
    server: OnceLock<Weak<Shared>>,
    recent: Mutex<VecDeque<ChaosCrash>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Chaos {
    /// Without a seed, one is drawn (and logged, so that the run can be repeated).
    pub fn new(spec: ChaosSpec, seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| rand::rng().next_u64());
        Chaos {
            spec,
            seed,
            streams: Mutex::new(Streams {
                room: Stream::new(seed, 0x726f_6f6d, spec.room),
                peer: Stream::new(seed, 0x7065_6572, spec.peer),
                listener: Stream::new(seed, 0x6c69_7374_656e_6572, spec.listener),
                relays: 0,
                accepts: 0,
            }),
            server: OnceLock::new(),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn spec(&self) -> ChaosSpec {
        self.spec
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn attach(&self, server: Weak<Shared>) {
        let _ = self.server.set(server);
    }

    /// The latest crashes, oldest first (at most the last 1000).
    pub fn recent(&self) -> Vec<ChaosCrash> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Draws the decisions for the next relayed message: (its number, crash the room, crash
    /// the sender).
    pub fn decide_relay(&self) -> (u64, bool, bool) {
        let mut s = lock(&self.streams);
        s.relays += 1;
        let room = s.room.draw().unwrap_or(false);
        let peer = s.peer.draw().unwrap_or(false);
        (s.relays, room, peer)
    }

    /// Draws the decision for the next accepted connection: (its number, crash the listener).
    pub fn decide_accept(&self) -> (u64, bool) {
        let mut s = lock(&self.streams);
        s.accepts += 1;
        let listener = s.listener.draw().unwrap_or(false);
        (s.accepts, listener)
    }

    /// A peer in `room` relays a message.
    pub fn on_relay(&self, room: &RoomKey, sender: PeerId) {
        if self.spec.room == 0.0 && self.spec.peer == 0.0 {
            return;
        }
        let (n, crash_room, crash_peer) = self.decide_relay();
        if crash_room {
            self.crash(CrashTarget::Room(room.clone()), Trigger::Relay(n));
        }
        if crash_peer {
            self.crash(CrashTarget::Peer(sender), Trigger::Relay(n));
        }
    }

    /// The listener accepted a connection.
    pub fn on_accept(&self) {
        if self.spec.listener == 0.0 {
            return;
        }
        let (n, crash) = self.decide_accept();
        if crash {
            self.crash(CrashTarget::Listener, Trigger::Accept(n));
        }
    }

    fn crash(&self, target: CrashTarget, trigger: Trigger) {
        let Some(shared) = self.server.get().and_then(Weak::upgrade) else {
            return;
        };
        let label = match target {
            CrashTarget::Room(_) => "room",
            CrashTarget::Peer(_) => "peer",
            _ => "listener",
        };
        let crash = ChaosCrash { target, trigger };
        {
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(crash.clone());
        }
        shared.metrics.chaos_crash(label);
        // Published before the crash, so that a subscriber sees the cause before the effect.
        shared.events.publish(Event::ChaosCrash(crash.clone()));
        let handle = ServerHandle { shared };
        let cause = format!("by chaos (seed {}, {trigger})", self.seed);
        if let Err(e) = handle.crash_for(&crash.target, &cause) {
            log::debug!("chaos: {} not crashed: {e}", crash.target);
        }
    }
}

/// The chaos of a server started with `config`, if it asks for any.
pub(crate) fn from_config(config: &Config) -> Option<Arc<Chaos>> {
    let chaos = Chaos::new(config.chaos?, config.chaos_seed);
    log::warn!(
        "chaos mode: {}, seed {} (--chaos-seed {} repeats this run for the same input)",
        chaos.spec,
        chaos.seed,
        chaos.seed
    );
    Some(Arc::new(chaos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        let spec: ChaosSpec = "room=0.01, peer=0.001,listener=0.0001".parse().unwrap();
        assert_eq!(
            spec,
            ChaosSpec {
                room: 0.01,
                peer: 0.001,
                listener: 0.0001
            }
        );
        assert_eq!(spec.to_string(), "room=0.01,peer=0.001,listener=0.0001");
        assert_eq!("peer=1".parse::<ChaosSpec>().unwrap().room, 0.0);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (bad, why) in [
            ("", "no target"),
            ("room", "not target=probability"),
            ("room=2", "not a probability"),
            ("room=-0.1", "not a probability"),
            ("room=NaN", "not a probability"),
            ("room=x", "not a probability"),
            ("rooms=0.1", "unknown target"),
            ("room=0.1,room=0.2", "given twice"),
        ] {
            let err = bad.parse::<ChaosSpec>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    fn relay_hits(chaos: &Chaos, n: usize) -> Vec<(u64, bool, bool)> {
        (0..n)
            .map(|_| chaos.decide_relay())
            .filter(|(_, room, peer)| *room || *peer)
            .collect()
    }

    #[test]
    fn a_seed_gives_the_same_decisions_every_time() {
        let spec: ChaosSpec = "room=0.05,peer=0.02".parse().unwrap();
        let a = relay_hits(&Chaos::new(spec, Some(42)), 2000);
        let b = relay_hits(&Chaos::new(spec, Some(42)), 2000);
        let c = relay_hits(&Chaos::new(spec, Some(43)), 2000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let rooms = a.iter().filter(|h| h.1).count();
        let peers = a.iter().filter(|h| h.2).count();
        assert!(
            (60..=140).contains(&rooms),
            "{rooms} room hits of 2000 at 5%"
        );
        assert!(
            (15..=70).contains(&peers),
            "{peers} peer hits of 2000 at 2%"
        );
    }

    #[test]
    fn accepts_do_not_shift_the_relay_decisions() {
        let spec: ChaosSpec = "room=0.1,listener=0.5".parse().unwrap();
        let quiet = Chaos::new(spec, Some(7));
        let busy = Chaos::new(spec, Some(7));
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..500 {
            a.push(quiet.decide_relay());
            if i % 3 == 0 {
                busy.decide_accept();
            }
            b.push(busy.decide_relay());
        }
        assert_eq!(a, b);
    }

    #[test]
    fn probabilities_zero_and_one_are_never_and_always() {
        let chaos = Chaos::new("room=1,peer=0".parse().unwrap(), None);
        for _ in 0..100 {
            let (_, room, peer) = chaos.decide_relay();
            assert!(room && !peer);
            assert!(!chaos.decide_accept().1);
        }
    }

    #[test]
    fn the_generator_is_pinned() {
        // A crash sequence recorded today must replay with the same seed after an upgrade of
        // `rand`: xoshiro256++ seeded through SplitMix64 is a fixed algorithm.
        assert_eq!(
            Xoshiro256PlusPlus::seed_from_u64(0).next_u64(),
            5_987_356_902_031_041_503
        );
    }
}
