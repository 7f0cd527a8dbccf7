//! The parameters of the actions that change when and in what order messages arrive:
//! `reorder`, `hold`, `cross` and `duplicate`'s late copies (docs/faults.md, "Actions"). Read
//! and written back here, carried out in [`super::hold`]. No I/O.
use super::rule::{object, uint, RuleError, MAX_COPIES, MAX_DELAY_MS};
use serde_json::{json, Map, Value};

/// How long a held message waits for what it waits for, unless the rule says.
pub const DEFAULT_MAX_HOLD_MS: u64 = 10_000;
/// The most messages a held message may wait for (`gap`, `until.count`, `after_messages`).
pub const MAX_WAIT_MESSAGES: u64 = 10_000;

/// When `duplicate`'s copies come, if not at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    /// After this many more messages of the same stream; at `max_hold_ms` if they do not come.
    Messages { n: u64, max_hold_ms: u64 },
    /// After this many milliseconds.
    Ms(u64),
}

/// `hold`: until `count` messages of type `kind` (any when `None`) of the same sender → receiver
/// pair have been delivered after it, or `max_hold_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Until {
    pub kind: Option<String>,
    pub count: u64,
    pub max_hold_ms: u64,
}

fn max_hold(p: &Map<String, Value>) -> Result<u64, RuleError> {
    let ms = uint(p, "max_hold_ms", "params.max_hold_ms")?.unwrap_or(DEFAULT_MAX_HOLD_MS);
    if !(1..=MAX_DELAY_MS).contains(&ms) {
        return Err(RuleError::new(
            "params.max_hold_ms",
            format!("must be 1 to {MAX_DELAY_MS}"),
        ));
    }
    Ok(ms)
}

fn messages(p: &Map<String, Value>, key: &str, default: Option<u64>) -> Result<u64, RuleError> {
    let field = format!("params.{key}");
    let n = match (uint(p, key, &field)?, default) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err(RuleError::new(field, "is required")),
    };
    if !(1..=MAX_WAIT_MESSAGES).contains(&n) {
        return Err(RuleError::new(
            field,
            format!("must be 1 to {MAX_WAIT_MESSAGES}"),
        ));
    }
    Ok(n)
}

/// `reorder`: `{gap, max_hold_ms}`, `gap` 1 by default.
pub fn reorder(params: &Value) -> Result<(u64, u64), RuleError> {
    let p = object(params, "params", &["gap", "max_hold_ms"])?;
    Ok((messages(p, "gap", Some(1))?, max_hold(p)?))
}

/// `hold`: `{until: {type, count}, max_hold_ms}`; without `until`, held for `max_hold_ms`.
pub fn hold(params: &Value) -> Result<Until, RuleError> {
    let p = object(params, "params", &["until", "max_hold_ms"])?;
    let max_hold_ms = max_hold(p)?;
    let (kind, count) = match p.get("until") {
        None | Some(Value::Null) => (None, 0),
        Some(u) => {
            let u = object(u, "params.until", &["type", "count"])?;
            let kind = match u.get("type") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s == "*" => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(RuleError::new("params.until.type", "must be a string")),
            };
            let count = uint(u, "count", "params.until.count")?.unwrap_or(1);
            if !(1..=MAX_WAIT_MESSAGES).contains(&count) {
                return Err(RuleError::new(
                    "params.until.count",
                    format!("must be 1 to {MAX_WAIT_MESSAGES}"),
                ));
            }
            (kind, count)
        }
    };
    Ok(Until {
        kind,
        count,
        max_hold_ms,
    })
}

impl Until {
    pub fn params(&self) -> Value {
        let until = (self.count > 0)
            .then(|| json!({"type": self.kind.as_deref().unwrap_or("*"), "count": self.count}));
        json!({"until": until, "max_hold_ms": self.max_hold_ms})
    }
}

/// `cross`: `{max_hold_ms}`.
pub fn cross(params: &Value) -> Result<u64, RuleError> {
    max_hold(object(params, "params", &["max_hold_ms"])?)
}

/// `duplicate`: `{copies, after_messages | after_ms, max_hold_ms}`; `None` for late when the
/// copies come at once.
pub fn duplicate(params: &Value) -> Result<(u64, Option<Late>), RuleError> {
    let p = object(
        params,
        "params",
        &["copies", "after_messages", "after_ms", "max_hold_ms"],
    )?;
    let copies = uint(p, "copies", "params.copies")?.unwrap_or(1);
    if !(1..=MAX_COPIES).contains(&copies) {
        return Err(RuleError::new(
            "params.copies",
            format!("must be 1 to {MAX_COPIES}"),
        ));
    }
    let has = |key: &str| p.get(key).is_some_and(|v| !v.is_null());
    let late = match (has("after_messages"), has("after_ms")) {
        (true, true) => {
            return Err(RuleError::new(
                "params.after_ms",
                "give after_messages or after_ms, not both",
            ))
        }
        (true, false) => Some(Late::Messages {
            n: messages(p, "after_messages", None)?,
            max_hold_ms: max_hold(p)?,
        }),
        (false, true) => {
            let ms = uint(p, "after_ms", "params.after_ms")?.unwrap_or(0);
            if !(1..=MAX_DELAY_MS).contains(&ms) {
                return Err(RuleError::new(
                    "params.after_ms",
                    format!("must be 1 to {MAX_DELAY_MS}"),
                ));
            }
            Some(Late::Ms(ms))
        }
        (false, false) => None,
    };
    if has("max_hold_ms") && !matches!(late, Some(Late::Messages { .. })) {
        return Err(RuleError::new(
            "params.max_hold_ms",
            "only with after_messages",
        ));
    }
    Ok((copies, late))
}

impl Late {
    pub fn params(&self, copies: u64) -> Value {
        match self {
            Late::Messages { n, max_hold_ms } => {
                json!({"copies": copies, "after_messages": n, "max_hold_ms": max_hold_ms})
            }
            Late::Ms(ms) => json!({"copies": copies, "after_ms": ms}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_fields() {
        assert_eq!(reorder(&json!({})).unwrap(), (1, DEFAULT_MAX_HOLD_MS));
        assert_eq!(reorder(&json!({"gap": 0})).unwrap_err().field, "params.gap");
        let until =
            hold(&json!({"until": {"type": "candidate", "count": 2}, "max_hold_ms": 500})).unwrap();
        assert_eq!(until.kind.as_deref(), Some("candidate"));
        assert_eq!((until.count, until.max_hold_ms), (2, 500));
        assert_eq!(hold(&until.params()).unwrap(), until);
        assert_eq!(
            hold(&json!({"until": {"cnt": 2}})).unwrap_err().field,
            "params.until.cnt"
        );
        assert_eq!(
            duplicate(&json!({"after_messages": 2, "after_ms": 5}))
                .unwrap_err()
                .field,
            "params.after_ms"
        );
        assert_eq!(
            duplicate(&json!({"after_ms": 5, "max_hold_ms": 9}))
                .unwrap_err()
                .field,
            "params.max_hold_ms"
        );
        let (copies, late) = duplicate(&json!({"after_messages": 3})).unwrap();
        let late = late.unwrap();
        assert_eq!(duplicate(&late.params(copies)).unwrap(), (1, Some(late)));
        assert_eq!(
            cross(&json!({"max_hold_ms": 0})).unwrap_err().field,
            "params.max_hold_ms"
        );
    }
}
