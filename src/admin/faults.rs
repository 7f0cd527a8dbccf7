//! `/faults`: the fault rules and their log (docs/faults.md, "Admin API"). Every answer is
//! built from the rules' and the log's state at once: nothing here waits on a message queue.
use super::request::{Request, Response};
use crate::faults::presets;
use crate::faults::replay::Script;
use crate::faults::rule::{Rule, RuleError};
use crate::faults::{Faults, ReplayRefused, RulesError};
use serde_json::{json, Value};

/// The answer to a request under `/faults`, or `None` when the path is not one of them.
pub fn route(faults: &Faults, req: &Request) -> Option<Response> {
    let method = req.method.as_str();
    let get = matches!(method, "GET" | "HEAD");
    let rest = req.path.strip_prefix("/faults")?;
    if let Some(preset) = rest.strip_prefix("/presets/").filter(|p| !p.is_empty()) {
        return Some(match method {
            "POST" | "DELETE" => switch_preset(faults, preset, method == "POST"),
            _ => Response::error(405, format!("{} takes POST, DELETE", req.path))
                .with_header("Allow", "POST, DELETE"),
        });
    }
    Some(match (rest, method) {
        ("" | "/", _) if get => list(faults),
        ("" | "/", "POST") => add(faults, req),
        ("/populate", "POST") => populate(faults, req),
        ("/reset", "POST") => reset(faults, req),
        ("/log", _) if get => log(faults, req),
        ("/replay", _) if get => match faults.replay_status() {
            Some(status) => Response::json(200, &json!({ "replay": status })),
            None => Response::error(404, "no replay in force"),
        },
        ("/replay", "POST") => replay(faults, req),
        ("/replay", "DELETE") => match faults.end_replay() {
            Some(status) => Response::json(200, &json!({ "ended": status })),
            None => Response::error(404, "no replay in force"),
        },
        ("/presets" | "/presets/", _) if get => list_presets(faults),
        ("" | "/" | "/populate" | "/reset" | "/log" | "/replay" | "/presets" | "/presets/", _) => {
            let allowed = match rest {
                "/populate" | "/reset" => "POST",
                "/log" | "/presets" | "/presets/" => "GET",
                "/replay" => "GET, POST, DELETE",
                _ => "GET, POST",
            };
            Response::error(405, format!("{} takes {allowed}", req.path))
                .with_header("Allow", allowed)
        }
        (name, _) => {
            let name = name.strip_prefix('/')?;
            match method {
                _ if get => match faults.rule(name) {
                    Some(rule) => Response::json(200, &rule.to_json()),
                    None => refused(&RulesError::NotFound(name.to_owned())),
                },
                "POST" => replace(faults, req, name),
                "DELETE" => match faults.remove(name) {
                    Ok(()) => Response::json(200, &json!({ "removed": name })),
                    Err(e) => refused(&e),
                },
                _ => Response::error(405, format!("{} takes GET, POST, DELETE", req.path))
                    .with_header("Allow", "GET, POST, DELETE"),
            }
        }
    })
}

fn list(faults: &Faults) -> Response {
    let rules: Vec<Value> = faults.rules().iter().map(Rule::to_json).collect();
    let mut injected = serde_json::Map::new();
    for (rule, action, n) in faults.injected() {
        let per_rule = injected.entry(rule).or_insert_with(|| json!({}));
        per_rule[action] = json!(n);
    }
    Response::json(
        200,
        &json!({
            "seed": faults.seed(), "held": faults.held(), "rules": rules,
            "injected": injected, "replay": faults.replay_status(),
        }),
    )
}

/// The body is a saved log: its JSON lines, an array of its records, or `{"records": [...]}`,
/// which may also hold the `rules` to set with it.
fn replay(faults: &Faults, req: &Request) -> Response {
    let script = match Script::parse(&req.body) {
        Ok(script) => script,
        Err(e) => return invalid(&e),
    };
    // Only an object body can carry rules; the lines of a log are not one JSON value.
    let rules = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(map)) => match map.get("rules") {
            None => None,
            Some(Value::Array(list)) => match rule_list(list) {
                Ok(rules) => Some(rules),
                Err(refusal) => return refusal,
            },
            Some(_) => {
                return invalid(&RuleError {
                    field: "rules".into(),
                    message: "must be an array of rules".into(),
                })
            }
        },
        _ => None,
    };
    match faults.replay(script, rules) {
        Ok(status) => Response::json(200, &json!({ "replay": status })),
        Err(ReplayRefused::Rules(e)) => refused(&e),
        Err(ReplayRefused::UnknownRule(e)) => Response::json(
            409,
            &json!({ "error": e.to_string(), "status": 409, "field": format!("records[{}].rule", e.at) }),
        ),
    }
}

/// Rules read from a list; an error names the rule by its place (`rules[1].match.every`).
fn rule_list(list: &[Value]) -> Result<Vec<Rule>, Response> {
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            Rule::from_json(r).map_err(|e| {
                invalid(&RuleError {
                    field: format!("rules[{i}].{}", e.field),
                    message: e.message,
                })
            })
        })
        .collect()
}

/// Every preset, with `on`: whether its rules are set.
fn list_presets(faults: &Faults) -> Response {
    let rules = faults.rules();
    let list: Vec<Value> = presets::all()
        .iter()
        .map(|p| {
            let mut v = p.to_json();
            let prefix = p.prefix();
            v["on"] = json!(rules.iter().any(|r| r.name.starts_with(&prefix)));
            v
        })
        .collect();
    Response::json(200, &json!({ "presets": list }))
}

fn switch_preset(faults: &Faults, name: &str, on: bool) -> Response {
    let Some(preset) = presets::get(name) else {
        let known: Vec<&str> = presets::all().iter().map(|p| p.name.as_str()).collect();
        return Response::json(
            404,
            &json!({ "error": format!("no preset {name:?}"), "status": 404, "presets": known }),
        );
    };
    let prefix = preset.prefix();
    if !on {
        let removed = faults.remove_prefixed(&prefix);
        if removed.is_empty() {
            return Response::error(404, format!("preset {name:?} is not on"));
        }
        return Response::json(200, &json!({ "removed": removed }));
    }
    let rules = match preset.rules(&prefix, None) {
        Ok(rules) => rules,
        Err(e) => return invalid(&e),
    };
    let answer: Vec<Value> = rules.iter().map(Rule::to_json).collect();
    match faults.set_prefixed(&prefix, rules) {
        Ok(()) => Response::json(200, &json!({ "preset": name, "rules": answer })),
        Err(e) => refused(&e),
    }
}

fn body(req: &Request) -> Result<Value, Response> {
    serde_json::from_slice(&req.body).map_err(|e| {
        Response::json(
            400,
            &json!({ "error": format!("the body is not JSON: {e}"), "status": 400, "field": "" }),
        )
    })
}

fn invalid(e: &RuleError) -> Response {
    Response::json(
        400,
        &json!({ "error": e.to_string(), "status": 400, "field": e.field }),
    )
}

fn refused(e: &RulesError) -> Response {
    let status = match e {
        RulesError::Exists(_) => 409,
        RulesError::NotFound(_) => 404,
        RulesError::Duplicate(_) | RulesError::TooMany => 400,
    };
    let mut v = json!({ "error": e.to_string(), "status": status });
    if status == 400 {
        v["field"] = json!(match e {
            RulesError::Duplicate(_) => "name",
            _ => "rules",
        });
    }
    Response::json(status, &v)
}

fn add(faults: &Faults, req: &Request) -> Response {
    let rule = match body(req).and_then(|v| Rule::from_json(&v).map_err(|e| invalid(&e))) {
        Ok(rule) => rule,
        Err(refusal) => return refusal,
    };
    let answer = rule.to_json();
    match faults.add(rule) {
        Ok(()) => Response::json(201, &answer),
        Err(e) => refused(&e),
    }
}

fn replace(faults: &Faults, req: &Request, name: &str) -> Response {
    let mut v = match body(req) {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    // The name is the path's; a body may repeat it, not contradict it.
    if let Value::Object(map) = &mut v {
        match map.get("name") {
            None => {
                map.insert("name".into(), name.into());
            }
            Some(n) if n == name => {}
            Some(_) => {
                return invalid(&RuleError {
                    field: "name".into(),
                    message: format!("differs from the path's {name:?}"),
                })
            }
        }
    }
    let rule = match Rule::from_json(&v) {
        Ok(rule) => rule,
        Err(e) => return invalid(&e),
    };
    let answer = rule.to_json();
    match faults.replace(rule) {
        Ok(()) => Response::json(200, &answer),
        Err(e) => refused(&e),
    }
}

/// The body is the new list, or `{"rules": [...]}`; an error names the rule by its place.
fn populate(faults: &Faults, req: &Request) -> Response {
    let v = match body(req) {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    let list = match &v {
        Value::Array(list) => list,
        Value::Object(map) => match map.get("rules") {
            Some(Value::Array(list)) => list,
            _ => {
                return invalid(&RuleError {
                    field: "rules".into(),
                    message: "must be an array of rules".into(),
                })
            }
        },
        _ => {
            return invalid(&RuleError {
                field: "rules".into(),
                message: "the body must be an array of rules".into(),
            })
        }
    };
    let rules = match rule_list(list) {
        Ok(rules) => rules,
        Err(refusal) => return refusal,
    };
    let answer: Vec<Value> = rules.iter().map(Rule::to_json).collect();
    match faults.populate(rules) {
        Ok(()) => Response::json(200, &json!({ "rules": answer })),
        Err(e) => refused(&e),
    }
}

/// JSON lines, oldest first; `?since=SEQ` gives the records after that one, `?tail=N` the
/// latest N (the observer page's view, which must not fetch 100,000 records to show 20).
fn log(faults: &Faults, req: &Request) -> Response {
    let tail = match req.query_param("tail").map(|t| t.parse::<usize>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return invalid(&RuleError {
                field: "tail".into(),
                message: "must be a count of records".into(),
            })
        }
    };
    let since = match req.query_param("since") {
        None => 0,
        Some(s) => match s.parse() {
            Ok(n) => n,
            Err(_) => {
                return invalid(&RuleError {
                    field: "since".into(),
                    message: "must be a log seq number".into(),
                })
            }
        },
    };
    let records = match tail {
        Some(n) => faults
            .log_tail(n)
            .into_iter()
            .filter(|r| r.seq > since)
            .collect(),
        None => faults.log_since(since),
    };
    let mut out = String::new();
    for record in records {
        out.push_str(&record.to_json().to_string());
        out.push('\n');
    }
    Response::new(200, "application/x-ndjson", out)
}

/// Every held message delivered now or discarded (`{"held": "deliver" | "discard"}`, deliver
/// when the body is empty): the counts, at once.
fn reset(faults: &Faults, req: &Request) -> Response {
    let deliver = if req.body.iter().all(u8::is_ascii_whitespace) {
        true
    } else {
        let v = match body(req) {
            Ok(v) => v,
            Err(refusal) => return refusal,
        };
        let held = match &v {
            Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| *k != "held") {
                    return invalid(&RuleError {
                        field: key.clone(),
                        message: "unknown key (known: held)".into(),
                    });
                }
                map.get("held")
            }
            _ => {
                return invalid(&RuleError {
                    field: "held".into(),
                    message: "the body must be {\"held\": \"deliver\" | \"discard\"}".into(),
                })
            }
        };
        match held.and_then(Value::as_str) {
            None if held.is_none_or(Value::is_null) => true,
            Some("deliver") => true,
            Some("discard") => false,
            _ => {
                return invalid(&RuleError {
                    field: "held".into(),
                    message: "must be \"deliver\" or \"discard\"".into(),
                })
            }
        }
    };
    let done = faults.reset_held(deliver);
    Response::json(
        200,
        &json!({
            "held": if deliver { "deliver" } else { "discard" },
            "delivered": done.delivered,
            "dropped": done.dropped,
            "discarded": done.discarded,
        }),
    )
}
