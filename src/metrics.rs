//! Counters for the admin API's `GET /metrics`, rendered in Prometheus' text format.
//!
//! Each counter is bumped where its event happens: relays in the peer's mailbox (a relaxed atomic
//! add, the only cost on the hot path), crashes, restarts and escalations from the supervisors'
//! observer, bad-input closes where a connection ends. Gauges (open connections, rooms, ...) are
//! read from the live server when the page is rendered.
use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use supervisors::{ChildKind, Exit, SupervisorEvent};

/// What the relay path counts; every peer's mailbox holds one shared instance.
#[derive(Debug, Default)]
pub struct RelayCounters {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl RelayCounters {
    /// One frame queued for a peer.
    pub fn relayed(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

const KINDS: [ChildKind; 3] = [
    ChildKind::Permanent,
    ChildKind::Transient,
    ChildKind::Temporary,
];

fn kind_index(kind: ChildKind) -> usize {
    match kind {
        ChildKind::Permanent => 0,
        ChildKind::Transient => 1,
        ChildKind::Temporary => 2,
    }
}

#[derive(Default)]
struct ByKind([AtomicU64; 3]);

impl ByKind {
    fn add(&self, kind: ChildKind) {
        self.0[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, kind: ChildKind) -> u64 {
        self.0[kind_index(kind)].load(Ordering::Relaxed)
    }
}

/// The server's counters; one per running server.
pub struct Metrics {
    pub relay: std::sync::Arc<RelayCounters>,
    pub throttle: std::sync::Arc<crate::budget::ThrottleCounters>,
    accepted: AtomicU64,
    crashes: ByKind,
    restarts: ByKind,
    // Rare events with open-ended labels: a lock is cheaper than it looks here.
    escalations: Mutex<BTreeMap<String, u64>>,
    bad_input: Mutex<BTreeMap<(u16, &'static str), u64>>,
    http_rejections: Mutex<BTreeMap<(Option<u16>, &'static str), u64>>,
    chaos: Mutex<BTreeMap<&'static str, u64>>,
    faults: Mutex<BTreeMap<(String, &'static str), u64>>,
    started: Instant,
    started_at: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            relay: Default::default(),
            throttle: Default::default(),
            accepted: AtomicU64::new(0),
            crashes: ByKind::default(),
            restarts: ByKind::default(),
            escalations: Mutex::default(),
            bad_input: Mutex::default(),
            http_rejections: Mutex::default(),
            chaos: Mutex::default(),
            faults: Mutex::default(),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The label of a bad-input close, from its code and the reason sent with it.
pub fn bad_input_reason(code: u16, why: &str) -> &'static str {
    match code {
        1007 if why.contains("UTF-8") => "invalid_utf8",
        1007 => "not_json",
        1009 => "too_big",
        1002 => "protocol",
        1008 if why == crate::budget::OVER_BUDGET => "over_budget",
        1008 => "slow_reader",
        _ => "other",
    }
}

/// What is live when `/metrics` is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub connections: usize,
    pub peers: usize,
    pub rooms: usize,
    pub registrations: usize,
    /// Messages a fault rule delays, not yet delivered.
    pub faults_held: usize,
}

/// One series in Prometheus' text format: its `# HELP` and `# TYPE` lines, then a line per
/// sample (`labels` is `""` or `{name="value",...}`). The cluster and resume series use it too.
pub fn series<L: fmt::Display, V: fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

impl Metrics {
    /// When the server started (the root supervisor's start time).
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed by us for bad input (1002, 1007, 1008, 1009).
    pub fn bad_input(&self, code: u16, why: &str) {
        *lock(&self.bad_input)
            .entry((code, bad_input_reason(code, why)))
            .or_default() += 1;
    }

    /// A request answered with an HTTP error instead of a page or an upgrade (`status`), or
    /// closed without an answer (`None`: a silent connection at the handshake timeout).
    pub fn http_rejected(&self, status: Option<u16>, reason: &'static str) {
        *lock(&self.http_rejections)
            .entry((status, reason))
            .or_default() += 1;
    }

    /// A crash injected by chaos mode, by target (`room`, `peer`, `listener`).
    pub fn chaos_crash(&self, target: &'static str) {
        *lock(&self.chaos).entry(target).or_default() += 1;
    }

    /// A fault rule acted on a message.
    pub fn fault_injected(&self, rule: &str, action: &'static str) {
        *lock(&self.faults)
            .entry((rule.to_owned(), action))
            .or_default() += 1;
    }

    /// `rtcserver_faults_injected_total`'s samples: (rule, action, count).
    pub fn faults_injected(&self) -> Vec<(String, &'static str, u64)> {
        lock(&self.faults)
            .iter()
            .map(|((rule, action), n)| (rule.clone(), *action, *n))
            .collect()
    }

    /// Called from the supervisors' observer for every event.
    pub fn supervision(&self, event: &SupervisorEvent) {
        match event {
            SupervisorEvent::Exited {
                kind,
                exit: Exit::Panic(_),
                ..
            } => self.crashes.add(*kind),
            SupervisorEvent::Restarted { kind, .. } => self.restarts.add(*kind),
            SupervisorEvent::Escalated { supervisor, .. } => {
                *lock(&self.escalations)
                    .entry(supervisor.clone())
                    .or_default() += 1;
            }
            SupervisorEvent::Started { .. } | SupervisorEvent::Exited { .. } => {}
        }
    }

    pub fn crashes(&self, kind: ChildKind) -> u64 {
        self.crashes.get(kind)
    }

    pub fn restarts(&self, kind: ChildKind) -> u64 {
        self.restarts.get(kind)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            series(
                &mut out,
                name,
                kind,
                help,
                samples.iter().map(|(l, v)| (l, v)),
            );
        };
        let plain = |v: u64| vec![(String::new(), v)];
        metric(
            "rtcserver_connections",
            "gauge",
            "Open client connections (HTTP or WebSocket).",
            &plain(gauges.connections as u64),
        );
        metric(
            "rtcserver_connections_accepted_total",
            "counter",
            "Connections accepted by the listener.",
            &plain(self.accepted.load(Ordering::Relaxed)),
        );
        metric(
            "rtcserver_peers",
            "gauge",
            "Live peer processes (children of peers_sup).",
            &plain(gauges.peers as u64),
        );
        metric(
            "rtcserver_rooms",
            "gauge",
            "Live rooms (children of rooms_sup).",
            &plain(gauges.rooms as u64),
        );
        metric(
            "rtcserver_registrations",
            "gauge",
            "Room registrations in the registry.",
            &plain(gauges.registrations as u64),
        );
        metric(
            "rtcserver_messages_relayed_total",
            "counter",
            "Frames queued from one peer to another.",
            &plain(self.relay.messages()),
        );
        metric(
            "rtcserver_relayed_bytes_total",
            "counter",
            "Bytes of the frames queued from one peer to another.",
            &plain(self.relay.bytes()),
        );
        metric(
            "rtcserver_throttled_frames_total",
            "counter",
            "Frames read late because their connection was over its budget \
             (--max-messages-per-sec, --max-bytes-per-sec).",
            &plain(self.throttle.frames()),
        );
        metric(
            "rtcserver_throttled_connections_total",
            "counter",
            "Connections that had at least one frame read late for being over their budget.",
            &plain(self.throttle.connections()),
        );
        let by_kind = |counts: &ByKind| -> Vec<(String, u64)> {
            KINDS
                .iter()
                .map(|k| (format!("{{kind=\"{k}\"}}"), counts.get(*k)))
                .collect()
        };
        metric(
            "rtcserver_crashes_total",
            "counter",
            "Children that panicked, by child kind.",
            &by_kind(&self.crashes),
        );
        metric(
            "rtcserver_restarts_total",
            "counter",
            "Children restarted by their supervisor, by child kind.",
            &by_kind(&self.restarts),
        );
        let escalations: Vec<(String, u64)> = lock(&self.escalations)
            .iter()
            .map(|(sup, n)| (format!("{{supervisor=\"{}\"}}", escape(sup)), *n))
            .collect();
        metric(
            "rtcserver_escalations_total",
            "counter",
            "Supervisors that gave up (restart intensity exceeded), by supervisor.",
            &escalations,
        );
        let bad: Vec<(String, u64)> = lock(&self.bad_input)
            .iter()
            .map(|((code, reason), n)| (format!("{{reason=\"{reason}\",code=\"{code}\"}}"), *n))
            .collect();
        metric(
            "rtcserver_bad_input_closes_total",
            "counter",
            "Connections closed for bad input, by reason and close code.",
            &bad,
        );
        let rejections: Vec<(String, u64)> = lock(&self.http_rejections)
            .iter()
            .map(|((status, reason), n)| {
                let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
                (format!("{{reason=\"{reason}\",status=\"{status}\"}}"), *n)
            })
            .collect();
        metric(
            "rtcserver_http_rejections_total",
            "counter",
            "Requests on the public port answered with an HTTP error instead of a page or an \
             upgrade, by reason and status (status \"none\": closed without an answer).",
            &rejections,
        );
        let chaos: Vec<(String, u64)> = lock(&self.chaos)
            .iter()
            .map(|(target, n)| (format!("{{target=\"{target}\"}}"), *n))
            .collect();
        metric(
            "rtcserver_chaos_crashes_total",
            "counter",
            "Crashes injected by chaos mode, by target.",
            &chaos,
        );
        let faults: Vec<(String, u64)> = lock(&self.faults)
            .iter()
            .map(|((rule, action), n)| {
                (
                    format!("{{rule=\"{}\",action=\"{action}\"}}", escape(rule)),
                    *n,
                )
            })
            .collect();
        metric(
            "rtcserver_faults_held",
            "gauge",
            "Messages delayed by fault rules and not yet delivered.",
            &plain(gauges.faults_held as u64),
        );
        metric(
            "rtcserver_faults_injected_total",
            "counter",
            "Actions of fault rules on messages, by rule and action.",
            &faults,
        );
        metric(
            "rtcserver_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            &plain(self.uptime().as_secs()),
        );
        out
    }
}

/// Label values as the text format wants them.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(kind: ChildKind, exit: Exit) -> SupervisorEvent {
        SupervisorEvent::Exited {
            supervisor: "s".into(),
            child: "c".into(),
            kind,
            exit,
            restarting: true,
        }
    }

    #[test]
    fn crashes_restarts_and_escalations_are_counted_by_label() {
        let m = Metrics::default();
        m.supervision(&exited(ChildKind::Transient, Exit::Panic("x".into())));
        m.supervision(&exited(ChildKind::Transient, Exit::Normal));
        m.supervision(&SupervisorEvent::Restarted {
            supervisor: "rooms_sup".into(),
            child: "room:1".into(),
            kind: ChildKind::Transient,
            restarts: 1,
        });
        m.supervision(&SupervisorEvent::Escalated {
            supervisor: "rooms_sup".into(),
            reason: "too many".into(),
        });
        m.bad_input(1007, "invalid JSON");
        m.bad_input(1007, "invalid UTF-8");
        m.bad_input(1009, "message too big");
        m.relay.relayed(10);
        m.relay.relayed(5);
        let text = m.render(&Gauges {
            connections: 3,
            ..Gauges::default()
        });
        for line in [
            "rtcserver_connections 3",
            "rtcserver_crashes_total{kind=\"transient\"} 1",
            "rtcserver_crashes_total{kind=\"permanent\"} 0",
            "rtcserver_restarts_total{kind=\"transient\"} 1",
            "rtcserver_escalations_total{supervisor=\"rooms_sup\"} 1",
            "rtcserver_bad_input_closes_total{reason=\"not_json\",code=\"1007\"} 1",
            "rtcserver_bad_input_closes_total{reason=\"invalid_utf8\",code=\"1007\"} 1",
            "rtcserver_bad_input_closes_total{reason=\"too_big\",code=\"1009\"} 1",
            "rtcserver_messages_relayed_total 2",
            "rtcserver_relayed_bytes_total 15",
            "# TYPE rtcserver_crashes_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn every_sample_line_is_name_labels_value() {
        let m = Metrics::default();
        m.chaos_crash("room");
        for line in m.render(&Gauges::default()).lines() {
            if line.starts_with('#') {
                continue;
            }
            let (name, value) = line.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<u64>().is_ok(), "{line}");
            assert!(name.starts_with("rtcserver_"), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
