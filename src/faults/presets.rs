//! Presets: named rule sets for the classic client bugs (docs/faults.md, "Presets"). They are
//! data (`presets.json`, part of the binary), turned into rules named `<preset>.<rule>` when
//! switched on, or `client-<peer>.<preset>.<rule>` aimed at one client (`?faults=`).
use super::rule::{Direction, PeerSel, Rule, RuleError};
use crate::registry::PeerId;
use serde_json::{Map, Value};
use std::sync::OnceLock;

const PRESETS: &str = include_str!("presets.json");

/// The prefix of the rules `?faults=` set for one client: every rule of that peer's starts
/// with it.
pub fn client_prefix(peer: PeerId) -> String {
    format!("client-{peer}.")
}

pub struct Preset {
    pub name: String,
    pub description: String,
    /// As written in the file: the rules' own names, unprefixed.
    pub rules: Vec<Value>,
}

/// Every preset, in the file's order. The file is checked by this module's tests; a broken one
/// would list no presets rather than stop the server.
pub fn all() -> &'static [Preset] {
    static ALL: OnceLock<Vec<Preset>> = OnceLock::new();
    ALL.get_or_init(|| {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(PRESETS) else {
            return Vec::new();
        };
        map.into_iter()
            .map(|(name, v)| Preset {
                name,
                description: v
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                rules: v
                    .get("rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    })
}

pub fn get(name: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.name == name)
}

impl Preset {
    /// The prefix of its rules' names when switched on for everyone.
    pub fn prefix(&self) -> String {
        format!("{}.", self.name)
    }

    /// Its rules, named `<prefix><rule>`; with `to`, aimed at that peer only (what it
    /// receives). The error names the field as a populate would: `rules[0].action`.
    pub fn rules(&self, prefix: &str, to: Option<PeerId>) -> Result<Vec<Rule>, RuleError> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut v = v.clone();
                if let Value::Object(map) = &mut v {
                    let own = map.get("name").and_then(Value::as_str).unwrap_or("");
                    let name = format!("{prefix}{own}");
                    map.insert("name".into(), name.into());
                }
                let mut rule = Rule::from_json(&v)
                    .map_err(|e| RuleError::new(format!("rules[{i}].{}", e.field), e.message))?;
                if let Some(peer) = to {
                    rule.matcher.to = Some(PeerSel::Id(peer));
                    rule.matcher.direction = Direction::Downstream;
                }
                Ok(rule)
            })
            .collect()
    }

    /// `{"name", "description", "rules"}`, plus `available: false` and the `error` when this
    /// build refuses one of its rules.
    pub fn to_json(&self) -> Value {
        let mut v = Map::new();
        v.insert("name".into(), self.name.clone().into());
        v.insert("description".into(), self.description.clone().into());
        v.insert("rules".into(), Value::Array(self.rules.clone()));
        match self.rules(&self.prefix(), None) {
            Ok(_) => {
                v.insert("available".into(), true.into());
            }
            Err(e) => {
                v.insert("available".into(), false.into());
                v.insert("error".into(), e.to_string().into());
            }
        }
        Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The six, in this order.
    const NAMES: [&str; 6] = [
        "candidates-first",
        "duplicate-answer",
        "glare",
        "late-answer",
        "lossy-signaling",
        "slow-signaling",
    ];

    #[test]
    fn the_file_holds_the_six_presets_and_every_rule_is_valid() {
        let v: Value = serde_json::from_str(PRESETS).expect("presets.json is JSON");
        let map = v.as_object().expect("an object of presets");
        assert_eq!(map.keys().map(String::as_str).collect::<Vec<_>>(), NAMES);
        assert_eq!(all().len(), NAMES.len());
        for preset in all() {
            assert!(!preset.description.is_empty(), "{}", preset.name);
            assert!(!preset.rules.is_empty(), "{}", preset.name);
            // The longest names they get: aimed at the peer with the largest id.
            let prefix = format!("{}{}", client_prefix(u64::MAX), preset.prefix());
            for (i, raw) in preset.rules.iter().enumerate() {
                let keys: Vec<&str> = raw
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                assert!(keys.contains(&"name"), "{} rules[{i}]", preset.name);
                let rules = preset
                    .rules(&prefix, Some(7))
                    .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
                let rule = &rules[i];
                assert!(rule.name.starts_with(&prefix));
                assert_eq!(rule.matcher.to, Some(PeerSel::Id(7)));
                let back = Rule::from_json(&rule.to_json()).expect("writes back");
                assert_eq!(&back, rule);
            }
        }
    }

    #[test]
    fn glare_crosses_offers() {
        let glare = get("glare").expect("glare");
        assert_eq!(glare.rules[0]["action"], "cross");
        assert_eq!(glare.rules[0]["match"]["type"], "offer");
    }
}
