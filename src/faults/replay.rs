//! Replaying a fault log (docs/faults.md, "Replay"): the recorded actions, at the recorded
//! indices of the recorded streams, take the place of the rules' decisions; the first message
//! that is not the one recorded at its index ends the replay with a divergence. No I/O.
use super::rule::{RuleError, MAX_COPIES, MAX_DELAY_MS};
use super::stream::Fired;
use super::wire::{WireAction, WireFired};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

impl Fired {
    /// The action a log record names, with what was drawn for it (`delay_ms`), as the rule's
    /// stream would have decided it: the one way back from a record to an action, so that a
    /// replayed action goes down the same path as a drawn one. The error names the field.
    pub fn from_logged(action: &str, params: &Value) -> Result<Fired, RuleError> {
        let uint = |key: &str| {
            params
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| RuleError::new(format!("params.{key}"), "is required (a count)"))
        };
        match action {
            "drop" => Ok(Fired::Drop),
            "delay" => {
                let ms = uint("delay_ms")?;
                if ms > 2 * MAX_DELAY_MS {
                    return Err(RuleError::new("params.delay_ms", "is beyond any rule's"));
                }
                Ok(Fired::Delay(Duration::from_millis(ms)))
            }
            "duplicate" => {
                let copies = uint("copies")?;
                if !(1..=MAX_COPIES).contains(&copies) {
                    return Err(RuleError::new(
                        "params.copies",
                        format!("must be 1 to {MAX_COPIES}"),
                    ));
                }
                // Late copies log when they come (`after_messages` / `after_ms`).
                if params.get("after_messages").is_some() || params.get("after_ms").is_some() {
                    Ok(Fired::Late(copies))
                } else {
                    Ok(Fired::Duplicate(copies))
                }
            }
            "reorder" => Ok(Fired::Held("reorder")),
            "hold" => Ok(Fired::Held("hold")),
            "cross" => Ok(Fired::Held("cross")),
            "corrupt" => Ok(Fired::Wire(WireFired::CorruptAt { at: uint("at")? })),
            wire if super::wire::NAMES.contains(&wire) => {
                let map = params
                    .as_object()
                    .ok_or_else(|| RuleError::new("params", "must be an object"))?;
                Ok(Fired::Wire(WireFired::Other(WireAction::parse(wire, map)?)))
            }
            other => Err(RuleError::new(
                "action",
                format!("{other:?} cannot be replayed by this server"),
            )),
        }
    }
}

/// One recorded action: the message it was taken on, and the action.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    kind: String,
    digest: String,
    fired: Fired,
    /// As logged (with what was drawn): the replay logs them again as they were.
    params: Value,
}

/// The first message of a replay that was not the one recorded at its index.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub rule: String,
    pub key: String,
    pub index: u64,
    pub expected_kind: String,
    pub expected_digest: String,
    pub kind: String,
    pub digest: String,
    /// Milliseconds since the server started.
    pub t_ms: u64,
}

impl Divergence {
    pub fn to_json(&self) -> Value {
        json!({
            "rule": self.rule, "key": self.key, "index": self.index,
            "expected": { "type": self.expected_kind, "digest": self.expected_digest },
            "got": { "type": self.kind, "digest": self.digest },
            "t_ms": self.t_ms,
        })
    }
}

/// What the script says about one message.
pub enum Outcome {
    /// Nothing was done to the message at this index (or the replay has ended).
    Pass,
    /// The recorded action, and the params to log it with.
    Fire(Fired, Value),
    /// This message is not the recorded one: the replay ends here (reported once).
    Diverged(Box<Divergence>),
}

/// A recorded log, ready to replay, and how far the replay got.
pub struct Script {
    /// Per rule, per stream key: the recorded actions by index (nested, so that a message's
    /// lookup borrows its names instead of building a key).
    steps: HashMap<String, HashMap<String, BTreeMap<u64, Step>>>,
    /// Each rule the log names, with the place of its first record (for the error), in the
    /// log's order.
    rules: Vec<(String, usize)>,
    records: u64,
    applied: AtomicU64,
    diverged: Mutex<Option<Divergence>>,
}

/// Why a replay was refused, beyond a malformed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRule {
    /// The place of the first record naming it.
    pub at: usize,
    pub rule: String,
}

impl fmt::Display for UnknownRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "records[{}].rule: no rule named {:?} is set; a replay selects messages with the recorded run's rules (set them first)",
            self.at, self.rule
        )
    }
}

impl std::error::Error for UnknownRule {}

fn text<'a>(map: &'a Map<String, Value>, key: &str, at: usize) -> Result<&'a str, RuleError> {
    map.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| RuleError::new(format!("records[{at}].{key}"), "is required (a string)"))
}

impl Script {
    /// The body of `POST /faults/replay`: the JSON lines of `GET /faults/log`, a JSON array of
    /// its records, or `{"records": [...]}`. Fields a record has beyond those a replay reads
    /// (`seq`, `t_ms`, ...) are ignored, so that a log is replayed as it was saved.
    pub fn parse(body: &[u8]) -> Result<Script, RuleError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| RuleError::new("records", "the body is not UTF-8"))?;
        let records: Vec<Value> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(list)) => list,
            Ok(Value::Object(mut map))
                if map.contains_key("records") || map.contains_key("rules") =>
            {
                match map.remove("records") {
                    Some(Value::Array(list)) => list,
                    _ => return Err(RuleError::new("records", "must be an array of log records")),
                }
            }
            // One object, or several lines: JSON lines.
            _ => text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, l)| {
                    serde_json::from_str(l).map_err(|e| {
                        RuleError::new("records", format!("line {} is not JSON: {e}", n + 1))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Self::from_records(&records)
    }

    fn from_records(records: &[Value]) -> Result<Script, RuleError> {
        let mut steps: HashMap<String, HashMap<String, BTreeMap<u64, Step>>> = HashMap::new();
        let mut rules: Vec<(String, usize)> = Vec::new();
        for (at, record) in records.iter().enumerate() {
            let map = record
                .as_object()
                .ok_or_else(|| RuleError::new(format!("records[{at}]"), "must be an object"))?;
            let rule = text(map, "rule", at)?;
            let key = text(map, "key", at)?;
            let index = map
                .get("index")
                .and_then(Value::as_u64)
                .filter(|i| *i >= 1)
                .ok_or_else(|| {
                    RuleError::new(format!("records[{at}].index"), "must be a count from 1")
                })?;
            let kind = text(map, "type", at)?;
            let digest = text(map, "digest", at).map_err(|_| {
                RuleError::new(
                    format!("records[{at}].digest"),
                    "is required: a log written before digests cannot be checked",
                )
            })?;
            if digest.len() != 16 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RuleError::new(
                    format!("records[{at}].digest"),
                    "must be 16 hex digits",
                ));
            }
            let action = text(map, "action", at)?;
            let params = match map.get("params") {
                None | Some(Value::Null) => json!({}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(RuleError::new(
                        format!("records[{at}].params"),
                        "must be an object",
                    ))
                }
            };
            let fired = Fired::from_logged(action, &params)
                .map_err(|e| RuleError::new(format!("records[{at}].{}", e.field), e.message))?;
            let stream = steps
                .entry(rule.to_owned())
                .or_default()
                .entry(key.to_owned())
                .or_default();
            if stream.contains_key(&index) {
                return Err(RuleError::new(
                    format!("records[{at}].index"),
                    "a second record of one rule at one index of one stream",
                ));
            }
            stream.insert(
                index,
                Step {
                    kind: kind.to_owned(),
                    digest: digest.to_ascii_lowercase(),
                    fired,
                    params,
                },
            );
            if !rules.iter().any(|(r, _)| r == rule) {
                rules.push((rule.to_owned(), at));
            }
        }
        Ok(Script {
            steps,
            rules,
            records: records.len() as u64,
            applied: AtomicU64::new(0),
            diverged: Mutex::new(None),
        })
    }

    /// The rules the log names, each with the place of its first record.
    pub fn rules(&self) -> impl Iterator<Item = (&str, usize)> {
        self.rules.iter().map(|(r, at)| (r.as_str(), *at))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Divergence>> {
        // Set once; read for a check.
        self.diverged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the script does to the message at `index` of `rule`'s stream `key`, whose type is
    /// `kind` and digest `digest()` (computed only at a recorded index).
    pub fn at(
        &self,
        rule: &str,
        key: &str,
        index: u64,
        kind: &str,
        digest: impl FnOnce() -> String,
        t_ms: u64,
    ) -> Outcome {
        let Some(step) = self
            .steps
            .get(rule)
            .and_then(|streams| streams.get(key))
            .and_then(|s| s.get(&index))
        else {
            return Outcome::Pass;
        };
        let mut diverged = self.lock();
        if diverged.is_some() {
            return Outcome::Pass;
        }
        let digest = digest();
        if step.kind != kind || step.digest != digest {
            let d = Divergence {
                rule: rule.to_owned(),
                key: key.to_owned(),
                index,
                expected_kind: step.kind.clone(),
                expected_digest: step.digest.clone(),
                kind: kind.to_owned(),
                digest,
                t_ms,
            };
            *diverged = Some(d.clone());
            return Outcome::Diverged(Box::new(d));
        }
        self.applied.fetch_add(1, Ordering::Relaxed);
        Outcome::Fire(step.fired, step.params.clone())
    }

    /// `{"records": N, "applied": N, "diverged": null | divergence}`.
    pub fn status(&self) -> Value {
        json!({
            "records": self.records,
            "applied": self.applied.load(Ordering::Relaxed),
            "diverged": self.lock().as_ref().map(Divergence::to_json),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"seq":1,"rule":"lossy","key":"book/#1/#1>#2/downstream","index":3,"type":"candidate","digest":"00000000000000aa","action":"drop","params":{},"t_ms":5}
{"seq":2,"rule":"late","key":"book/#1/#1>#2/downstream","index":1,"type":"answer","digest":"00000000000000bb","action":"delay","params":{"ms":40,"jitter_ms":30,"delay_ms":57},"t_ms":9}
"#;

    #[test]
    fn a_log_reads_as_lines_or_as_an_array() {
        let lines = Script::parse(LOG.as_bytes()).unwrap();
        let array: Vec<Value> = LOG
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let array = Script::parse(serde_json::to_string(&array).unwrap().as_bytes()).unwrap();
        for s in [&lines, &array] {
            assert_eq!(s.status()["records"], 2);
            assert_eq!(s.rules().collect::<Vec<_>>(), [("lossy", 0), ("late", 1)]);
        }
    }

    #[test]
    fn the_recorded_action_at_the_recorded_index_else_a_divergence() {
        let s = Script::parse(LOG.as_bytes()).unwrap();
        let key = "book/#1/#1>#2/downstream";
        let d = |h: &'static str| move || h.to_owned();
        assert!(matches!(
            s.at("lossy", key, 2, "candidate", d("x"), 0),
            Outcome::Pass
        ));
        assert!(matches!(
            s.at("lossy", key, 3, "candidate", d("00000000000000aa"), 0),
            Outcome::Fire(Fired::Drop, _)
        ));
        match s.at("late", key, 1, "answer", d("00000000000000bb"), 0) {
            Outcome::Fire(Fired::Delay(ms), params) => {
                assert_eq!(ms, Duration::from_millis(57));
                assert_eq!(params["delay_ms"], 57);
            }
            _ => panic!("the delay drawn in the recorded run"),
        }
        assert_eq!(s.status()["applied"], 2);
        let other = Script::parse(LOG.as_bytes()).unwrap();
        let Outcome::Diverged(div) =
            other.at("lossy", key, 3, "candidate", d("00000000000000cc"), 7)
        else {
            panic!("another message at a recorded index")
        };
        assert_eq!(
            (div.index, div.expected_digest.as_str()),
            (3, "00000000000000aa")
        );
        // Reported once; the replay has ended.
        assert!(matches!(
            other.at("late", key, 1, "answer", d("00000000000000bb"), 0),
            Outcome::Pass
        ));
        assert_eq!(other.status()["diverged"]["index"], 3);
    }

    #[test]
    fn a_bad_record_is_named() {
        let field = |body: &str| Script::parse(body.as_bytes()).err().map(|e| e.field);
        assert_eq!(field("[1]").as_deref(), Some("records[0]"));
        assert_eq!(
            field(r#"[{"rule":"a","key":"k","index":1,"type":"t","action":"drop"}]"#).as_deref(),
            Some("records[0].digest")
        );
        assert_eq!(
            field(r#"[{"rule":"a","key":"k","index":0,"type":"t","digest":"0000000000000000","action":"drop"}]"#)
                .as_deref(),
            Some("records[0].index")
        );
        assert_eq!(
            field(r#"[{"rule":"a","key":"k","index":1,"type":"t","digest":"0000000000000000","action":"delay","params":{"ms":3}}]"#)
                .as_deref(),
            Some("records[0].params.delay_ms")
        );
        assert_eq!(
            field(r#"[{"rule":"a","key":"k","index":1,"type":"t","digest":"0000000000000000","action":"explode"}]"#)
                .as_deref(),
            Some("records[0].action")
        );
        assert_eq!(field("not json\n").as_deref(), Some("records"));
        assert_eq!(field("").as_deref(), None, "an empty log replays nothing");
    }

    /// Every action a rule can take must come back from its record: a new `Fired` fails to
    /// compile here until `from_logged` reads it back (and this list names it).
    #[test]
    fn every_action_comes_back_from_its_record() {
        let close =
            WireAction::parse("close", &Map::from_iter([("reason".into(), json!("bye"))])).unwrap();
        for fired in [
            Fired::Drop,
            Fired::Delay(Duration::from_millis(12)),
            Fired::Duplicate(2),
            Fired::Late(3),
            Fired::Held("reorder"),
            Fired::Held("hold"),
            Fired::Held("cross"),
            Fired::Wire(WireFired::CorruptAt { at: 7 }),
            Fired::Wire(WireFired::Other(WireAction::Truncate { bytes: 9 })),
            Fired::Wire(WireFired::Other(close)),
        ] {
            let (action, params) = match fired {
                Fired::Drop => ("drop", json!({})),
                // A bursty drop is logged, and replayed, as a drop.
                Fired::BurstDrop(_) => ("drop", json!({"model": "gilbert_elliott"})),
                Fired::Delay(d) => ("delay", json!({"ms": 10, "delay_ms": d.as_millis() as u64})),
                Fired::Duplicate(n) => ("duplicate", json!({ "copies": n })),
                Fired::Late(n) => ("duplicate", json!({ "copies": n, "after_messages": 2 })),
                Fired::Held(action) => (action, json!({"max_hold_ms": 100})),
                Fired::Wire(WireFired::CorruptAt { at }) => ("corrupt", json!({ "at": at })),
                Fired::Wire(WireFired::Corrupt { .. }) => unreachable!("replayed as CorruptAt"),
                Fired::Wire(WireFired::Other(w)) => (w.name(), w.params()),
            };
            assert_eq!(Fired::from_logged(action, &params).unwrap(), fired);
        }
    }
}
