//! The rule format (docs/faults.md, "Rule format"): read from JSON with every error naming its
//! field, and written back in the same shape. No I/O.
use super::bursty::GilbertElliott;
use super::order::{self, Late, Until};
use super::wire::{self, WireAction};
use serde_json::{json, Map, Value};
use std::fmt;

/// Rules a server holds at most.
pub const MAX_RULES: usize = 100;
/// The longest delay or jitter a rule may ask for: "late by minutes", not forever.
pub const MAX_DELAY_MS: u64 = 600_000;
/// The most copies `duplicate` may add to one message.
pub const MAX_COPIES: u64 = 100;

/// A rule the user gave, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub probability: f64,
    pub matcher: Match,
    pub window: Window,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Drop,
    Delay {
        ms: u64,
        jitter_ms: u64,
    },
    Duplicate {
        copies: u64,
    },
    /// `drop` with `params.model: "gilbert_elliott"`.
    DropBursty(GilbertElliott),
    /// `duplicate` with `after_messages` or `after_ms`.
    DuplicateLate {
        copies: u64,
        late: Late,
    },
    Reorder {
        gap: u64,
        max_hold_ms: u64,
    },
    Hold(Until),
    Cross {
        max_hold_ms: u64,
    },
    /// `corrupt`, `truncate`, `fragment`, `throttle`, `stall`, `close`, `reset`.
    Wire(WireAction),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Delay { .. } => "delay",
            Action::Duplicate { .. } => "duplicate",
            Action::DropBursty(_) => "drop",
            Action::DuplicateLate { .. } => "duplicate",
            Action::Reorder { .. } => "reorder",
            Action::Hold(_) => "hold",
            Action::Cross { .. } => "cross",
            Action::Wire(w) => w.name(),
        }
    }

    pub fn params(&self) -> Value {
        match self {
            Action::Drop => json!({}),
            Action::Delay { ms, jitter_ms } => json!({ "ms": ms, "jitter_ms": jitter_ms }),
            Action::Duplicate { copies } => json!({ "copies": copies }),
            Action::DropBursty(ge) => ge.params(),
            Action::DuplicateLate { copies, late } => late.params(*copies),
            Action::Reorder { gap, max_hold_ms } => {
                json!({ "gap": gap, "max_hold_ms": max_hold_ms })
            }
            Action::Hold(until) => until.params(),
            Action::Cross { max_hold_ms } => json!({ "max_hold_ms": max_hold_ms }),
            Action::Wire(w) => w.params(),
        }
    }
}

/// The actions a rule may name, for the 400's message.
const IMPLEMENTED: &str = "drop, delay, duplicate, reorder, hold, cross, corrupt, truncate, \
                           fragment, throttle, stall, close, reset";

/// The actions of the issue that this version does not carry out yet: named in the 400.
const NOT_YET: [&str; 0] = [];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Book,
    /// `/socket/:room`.
    Rooms,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Book => "book",
            Endpoint::Rooms => "rooms",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// One decision per message as the sender sent it, applied to every receiver.
    Upstream,
    /// One decision per receiver's copy.
    #[default]
    Downstream,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

/// A room in a rule: its creation order (`#1`) or its name or number as clients know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomSel {
    Order(u64),
    Named(String),
}

/// A peer in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSel {
    /// The first to join (the book's GETROOM caller).
    Creator,
    /// Anyone who joined after the first.
    Joiner,
    /// The n-th to join the room.
    Order(u32),
    Id(u64),
    /// The room itself (`joined`, `left`): a sender only.
    Server,
}

/// Every key is optional; `None` means any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Match {
    pub endpoint: Option<Endpoint>,
    pub room: Option<RoomSel>,
    pub from: Option<PeerSel>,
    pub to: Option<PeerSel>,
    /// Absent or `*`: downstream (every message passes both points; acting at both would act
    /// twice).
    pub direction: Direction,
    pub kind: Option<String>,
    /// JSON pointer → the value it must equal.
    pub field: Vec<(String, Value)>,
    pub after: u64,
    pub every: u64,
    pub count: Option<u64>,
}

/// When a rule acts, from the moment it was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub start_ms: u64,
    pub duration_ms: Option<u64>,
}

/// A rule that cannot be taken, and the field at fault (`match.every`, `params.ms`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

impl RuleError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuleError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for RuleError {}

type Result<T> = std::result::Result<T, RuleError>;

/// An object's keys, each one known: a misspelt key is an error, not a rule that matches more
/// than its author meant.
pub(super) fn object<'a>(
    v: &'a Value,
    field: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>> {
    let map = v
        .as_object()
        .ok_or_else(|| RuleError::new(field, "must be an object"))?;
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            let at = if field.is_empty() {
                key.clone()
            } else {
                format!("{field}.{key}")
            };
            return Err(RuleError::new(
                at,
                format!("unknown key (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(map)
}

/// A non-negative integer, or `None` when absent or null.
pub(super) fn uint(map: &Map<String, Value>, key: &str, field: &str) -> Result<Option<u64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| RuleError::new(field, "must be a non-negative integer")),
    }
}

fn string<'a>(map: &'a Map<String, Value>, key: &str, field: &str) -> Result<Option<&'a str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RuleError::new(field, "must be a string")),
    }
}

/// Paths under `/faults/` that are not rules.
const RESERVED: [&str; 5] = ["populate", "log", "replay", "presets", "reset"];

/// A name that can stand in a URL path (`/faults/{name}`) as it is.
fn valid_name(name: &str) -> bool {
    !RESERVED.contains(&name)
        && !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Rule {
    pub fn from_json(v: &Value) -> Result<Rule> {
        let map = object(
            v,
            "",
            &[
                "name",
                "action",
                "params",
                "probability",
                "match",
                "window",
                "enabled",
            ],
        )
        .map_err(|e| {
            if e.field.is_empty() {
                RuleError::new("rule", "must be a JSON object")
            } else {
                e
            }
        })?;
        let name =
            string(map, "name", "name")?.ok_or_else(|| RuleError::new("name", "is required"))?;
        if !valid_name(name) {
            return Err(RuleError::new(
                "name",
                "must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.', and not populate, log, replay, presets or reset",
            ));
        }
        let action = string(map, "action", "action")?
            .ok_or_else(|| RuleError::new("action", "is required"))?;
        let null = Value::Object(Map::new());
        let params = match map.get("params") {
            None | Some(Value::Null) => &null,
            Some(p) => p,
        };
        let action = parse_action(action, params)?;
        let probability = match map.get("probability") {
            None | Some(Value::Null) => 1.0,
            Some(v) => v
                .as_f64()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| RuleError::new("probability", "must be a number in [0, 1]"))?,
        };
        let matcher = match map.get("match") {
            None | Some(Value::Null) => Match {
                every: 1,
                direction: Direction::Downstream,
                ..Match::default()
            },
            Some(m) => parse_match(m)?,
        };
        let window = match map.get("window") {
            None | Some(Value::Null) => Window::default(),
            Some(w) => {
                let w = object(w, "window", &["start_ms", "duration_ms"])?;
                Window {
                    start_ms: uint(w, "start_ms", "window.start_ms")?.unwrap_or(0),
                    duration_ms: uint(w, "duration_ms", "window.duration_ms")?,
                }
            }
        };
        let enabled = match map.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(RuleError::new("enabled", "must be true or false")),
        };
        Ok(Rule {
            name: name.to_owned(),
            action,
            probability,
            matcher,
            window,
            enabled,
        })
    }

    /// The rule in the format it was given in, every key written out.
    pub fn to_json(&self) -> Value {
        let m = &self.matcher;
        let field: Map<String, Value> = m.field.iter().cloned().collect();
        json!({
            "name": self.name,
            "action": self.action.name(),
            "params": self.action.params(),
            "probability": self.probability,
            "match": {
                "endpoint": m.endpoint.map_or("*", Endpoint::as_str),
                "room": m.room.as_ref().map_or("*".to_owned(), |r| match r {
                    RoomSel::Order(n) => format!("#{n}"),
                    RoomSel::Named(s) => s.clone(),
                }),
                "from": peer_text(m.from.as_ref()),
                "to": peer_text(m.to.as_ref()),
                "direction": m.direction.as_str(),
                "type": m.kind.as_deref().unwrap_or("*"),
                "field": field,
                "after": m.after,
                "every": m.every,
                "count": m.count,
            },
            "window": { "start_ms": self.window.start_ms, "duration_ms": self.window.duration_ms },
            "enabled": self.enabled,
        })
    }
}

fn peer_text(p: Option<&PeerSel>) -> String {
    match p {
        None => "*".into(),
        Some(PeerSel::Creator) => "creator".into(),
        Some(PeerSel::Joiner) => "joiner".into(),
        Some(PeerSel::Order(n)) => format!("#{n}"),
        Some(PeerSel::Id(id)) => id.to_string(),
        Some(PeerSel::Server) => "server".into(),
    }
}

fn parse_action(action: &str, params: &Value) -> Result<Action> {
    match action {
        "drop" => Ok(match GilbertElliott::from_params(params)? {
            None => Action::Drop,
            Some(ge) => Action::DropBursty(ge),
        }),
        "delay" => {
            let p = object(params, "params", &["ms", "jitter_ms"])?;
            let ms = uint(p, "ms", "params.ms")?
                .ok_or_else(|| RuleError::new("params.ms", "is required"))?;
            let jitter_ms = uint(p, "jitter_ms", "params.jitter_ms")?.unwrap_or(0);
            for (value, field) in [(ms, "params.ms"), (jitter_ms, "params.jitter_ms")] {
                if value > MAX_DELAY_MS {
                    return Err(RuleError::new(
                        field,
                        format!("must be at most {MAX_DELAY_MS}"),
                    ));
                }
            }
            Ok(Action::Delay { ms, jitter_ms })
        }
        "duplicate" => Ok(match order::duplicate(params)? {
            (copies, None) => Action::Duplicate { copies },
            (copies, Some(late)) => Action::DuplicateLate { copies, late },
        }),
        "reorder" => {
            let (gap, max_hold_ms) = order::reorder(params)?;
            Ok(Action::Reorder { gap, max_hold_ms })
        }
        "hold" => Ok(Action::Hold(order::hold(params)?)),
        "cross" => Ok(Action::Cross {
            max_hold_ms: order::cross(params)?,
        }),
        "gilbert_elliott" => Err(RuleError::new(
            "action",
            "bursty loss is a drop model: {\"action\": \"drop\", \"params\": {\"model\": \"gilbert_elliott\", \"p\": ...}}",
        )),
        a if wire::NAMES.contains(&a) => {
            let p = object(params, "params", WireAction::known(a))?;
            Ok(Action::Wire(WireAction::parse(a, p)?))
        }
        a if NOT_YET.contains(&a) => Err(RuleError::new(
            "action",
            format!("{a:?} is not implemented yet ({IMPLEMENTED})"),
        )),
        a => Err(RuleError::new(
            "action",
            format!("unknown action {a:?} ({IMPLEMENTED})"),
        )),
    }
}

fn any(s: Option<&str>) -> Option<&str> {
    s.filter(|s| *s != "*")
}

fn parse_match(v: &Value) -> Result<Match> {
    let m = object(
        v,
        "match",
        &[
            "endpoint",
            "room",
            "from",
            "to",
            "direction",
            "type",
            "field",
            "after",
            "every",
            "count",
        ],
    )?;
    let endpoint = match any(string(m, "endpoint", "match.endpoint")?) {
        None => None,
        Some("book") => Some(Endpoint::Book),
        Some("rooms") => Some(Endpoint::Rooms),
        Some(_) => {
            return Err(RuleError::new(
                "match.endpoint",
                "must be \"book\", \"rooms\" or \"*\"",
            ))
        }
    };
    let room = match m.get("room") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(RoomSel::Named(n.to_string())),
        Some(Value::String(s)) if s == "*" => None,
        Some(Value::String(s)) => Some(match s.strip_prefix('#') {
            Some(n) => RoomSel::Order(
                n.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| RuleError::new("match.room", "#N counts from #1"))?,
            ),
            None if s.is_empty() => return Err(RuleError::new("match.room", "is empty")),
            None => RoomSel::Named(s.clone()),
        }),
        Some(_) => return Err(RuleError::new("match.room", "must be a string")),
    };
    let from = peer(m, "from")?;
    let to = peer(m, "to")?;
    if to == Some(PeerSel::Server) {
        return Err(RuleError::new("match.to", "the server only sends"));
    }
    let direction = match any(string(m, "direction", "match.direction")?) {
        None | Some("downstream") => Direction::Downstream,
        Some("upstream") => Direction::Upstream,
        Some(_) => {
            return Err(RuleError::new(
                "match.direction",
                "must be \"upstream\", \"downstream\" or \"*\"",
            ))
        }
    };
    if direction == Direction::Upstream && to.is_some() {
        return Err(RuleError::new(
            "match.to",
            "an upstream rule acts before the message is addressed: use \"downstream\"",
        ));
    }
    let kind = any(string(m, "type", "match.type")?).map(str::to_owned);
    let field = match m.get("field") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(f)) => {
            let mut pairs = Vec::new();
            for (pointer, value) in f {
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    return Err(RuleError::new(
                        "match.field",
                        format!("{pointer:?} is not a JSON pointer (it starts with '/')"),
                    ));
                }
                pairs.push((pointer.clone(), value.clone()));
            }
            pairs
        }
        Some(_) => {
            return Err(RuleError::new(
                "match.field",
                "must be an object of JSON pointer → value",
            ))
        }
    };
    let every = uint(m, "every", "match.every")?.unwrap_or(1);
    if every == 0 {
        return Err(RuleError::new("match.every", "must be at least 1"));
    }
    Ok(Match {
        endpoint,
        room,
        from,
        to,
        direction,
        kind,
        field,
        after: uint(m, "after", "match.after")?.unwrap_or(0),
        every,
        count: uint(m, "count", "match.count")?,
    })
}

fn peer(m: &Map<String, Value>, key: &str) -> Result<Option<PeerSel>> {
    let field = format!("match.{key}");
    let text = match m.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(RuleError::new(field, "must be a string")),
    };
    Ok(Some(match text.as_str() {
        "*" => return Ok(None),
        "creator" => PeerSel::Creator,
        "joiner" => PeerSel::Joiner,
        "server" => PeerSel::Server,
        t => match t.strip_prefix('#') {
            Some(n) => PeerSel::Order(
                n.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| RuleError::new(&*field, "#N counts from #1"))?,
            ),
            None => PeerSel::Id(t.parse().map_err(|_| {
                RuleError::new(
                    &*field,
                    "must be \"*\", \"creator\", \"joiner\", \"server\", \"#N\" or a peer id",
                )
            })?),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_reads_and_writes_back() {
        let v: Value = serde_json::from_str(
            r#"{"name": "late-answers", "action": "delay", "params": {"ms": 300, "jitter_ms": 0}, "probability": 1.0,
   "match": {"endpoint": "book", "room": "*", "from": "*", "to": "*", "direction": "downstream",
             "type": "answer", "field": {"/sdp/type": "answer"}, "after": 0, "every": 1, "count": null},
   "window": {"start_ms": 0, "duration_ms": null}, "enabled": true}"#,
        )
        .unwrap();
        let rule = Rule::from_json(&v).unwrap();
        assert_eq!(
            rule.action,
            Action::Delay {
                ms: 300,
                jitter_ms: 0
            }
        );
        assert_eq!(rule.matcher.kind.as_deref(), Some("answer"));
        assert_eq!(rule.to_json(), v);
        assert_eq!(Rule::from_json(&rule.to_json()).unwrap(), rule);
    }

    #[test]
    fn errors_name_the_field() {
        let field = |text: &str| {
            Rule::from_json(&serde_json::from_str(text).unwrap())
                .unwrap_err()
                .field
        };
        assert_eq!(field(r#"{"action":"drop"}"#), "name");
        assert_eq!(field(r#"{"name":"a b","action":"drop"}"#), "name");
        assert_eq!(field(r#"{"name":"a","action":"explode"}"#), "action");
        assert_eq!(field(r#"{"name":"a","action":"teleport"}"#), "action");
        assert_eq!(field(r#"{"name":"a","action":"delay"}"#), "params.ms");
        assert_eq!(
            field(r#"{"name":"a","action":"delay","params":{"ms":-1}}"#),
            "params.ms"
        );
        assert_eq!(
            field(r#"{"name":"a","action":"drop","match":{"evry":2}}"#),
            "match.evry"
        );
        assert_eq!(
            field(r#"{"name":"a","action":"drop","match":{"every":0}}"#),
            "match.every"
        );
        assert_eq!(
            field(r#"{"name":"a","action":"drop","probability":1.5}"#),
            "probability"
        );
        assert_eq!(
            field(r#"{"name":"a","action":"drop","match":{"from":"boss"}}"#),
            "match.from"
        );
        assert_eq!(
            field(r#"{"name":"a","action":"drop","match":{"field":{"sdp":1}}}"#),
            "match.field"
        );
        assert_eq!(
            field(r#"{"name":"a","action":"drop","window":{"start_ms":"soon"}}"#),
            "window.start_ms"
        );
        assert_eq!(field(r#"[1]"#), "rule");
    }
}
