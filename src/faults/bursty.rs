//! Bursty loss: `drop` with `params.model: "gilbert_elliott"`, the two-state Markov model of
//! netem's `loss gemodel p r 1-h 1-k` (docs/faults.md, "Bursty drops"). No I/O.
use super::rule::{object, RuleError};
use rand::rngs::Xoshiro256PlusPlus;
use rand::Rng;
use serde_json::{json, Map, Value};

/// The model's four chances, each in [0, 1], named as netem names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Good → bad, per message.
    pub p: f64,
    /// Bad → good, per message.
    pub r: f64,
    /// That a message is delivered in the bad state (netem's `1-h` is the loss).
    pub h: f64,
    /// That a message is delivered in the good state (netem's `1-k` is the loss).
    pub k: f64,
}

impl GilbertElliott {
    /// `params` of a `drop` rule: `{}` or `{"model": "independent"}` give `None` (every selected
    /// message is dropped); `{"model": "gilbert_elliott", "p", "r", "h", "k"}` the model, with
    /// netem's defaults: `r = 1 - p`, `h = 0`, `k = 1` (the simple Gilbert model).
    pub fn from_params(params: &Value) -> Result<Option<Self>, RuleError> {
        let p = object(params, "params", &["model", "p", "r", "h", "k"])?;
        match p.get("model") {
            None | Some(Value::Null) => {}
            Some(Value::String(m)) if m == "independent" => {}
            Some(Value::String(m)) if m == "gilbert_elliott" => {
                let chance = |key: &str| -> Result<Option<f64>, RuleError> {
                    match p.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(v) => v
                            .as_f64()
                            .filter(|x| (0.0..=1.0).contains(x))
                            .map(Some)
                            .ok_or_else(|| {
                                RuleError::new(
                                    format!("params.{key}"),
                                    "must be a number in [0, 1]",
                                )
                            }),
                    }
                };
                let good_to_bad =
                    chance("p")?.ok_or_else(|| RuleError::new("params.p", "is required"))?;
                return Ok(Some(GilbertElliott {
                    p: good_to_bad,
                    r: chance("r")?.unwrap_or(1.0 - good_to_bad),
                    h: chance("h")?.unwrap_or(0.0),
                    k: chance("k")?.unwrap_or(1.0),
                }));
            }
            Some(_) => {
                return Err(RuleError::new(
                    "params.model",
                    "must be \"independent\" or \"gilbert_elliott\"",
                ))
            }
        }
        if let Some(key) = ["p", "r", "h", "k"].iter().find(|k| p.contains_key(**k)) {
            return Err(RuleError::new(
                format!("params.{key}"),
                "belongs to \"model\": \"gilbert_elliott\"",
            ));
        }
        Ok(None)
    }

    pub fn params(&self) -> Value {
        json!({"model": "gilbert_elliott", "p": self.p, "r": self.r, "h": self.h, "k": self.k})
    }

    /// One selected message: whether it is lost, judged in the state the stream is in when it
    /// comes (`bad`), which then moves on. Two draws, always, in this order: the transition,
    /// then the loss (netem's order); so a stream's draws depend only on its message count.
    pub fn next(&self, bad: &mut bool, rng: &mut Xoshiro256PlusPlus) -> Option<State> {
        let state = if *bad { State::Bad } else { State::Good };
        let flip = unit(rng) < if *bad { self.r } else { self.p };
        let lost = unit(rng) >= if *bad { self.h } else { self.k };
        if flip {
            *bad = !*bad;
        }
        lost.then_some(state)
    }
}

/// The state a message was lost in, written in its log record (`params.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Good,
    Bad,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Good => "good",
            State::Bad => "bad",
        }
    }

    /// `base` (the rule's params) with the state added.
    pub fn logged(self, base: Value) -> Value {
        let mut map = match base {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        map.insert("state".into(), self.as_str().into());
        Value::Object(map)
    }
}

/// Uniform in [0, 1) from the top 53 bits.
fn unit(rng: &mut Xoshiro256PlusPlus) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn netem_defaults_and_refusals() {
        let ge = GilbertElliott::from_params(&json!({"model": "gilbert_elliott", "p": 0.1}))
            .unwrap()
            .unwrap();
        assert_eq!((ge.r, ge.h, ge.k), (0.9, 0.0, 1.0));
        assert_eq!(GilbertElliott::from_params(&json!({})).unwrap(), None);
        let field = |v: Value| GilbertElliott::from_params(&v).unwrap_err().field;
        assert_eq!(field(json!({"model": "gilbert_elliott"})), "params.p");
        assert_eq!(
            field(json!({"model": "gilbert_elliott", "p": 2})),
            "params.p"
        );
        assert_eq!(field(json!({"model": "gemodel"})), "params.model");
        assert_eq!(field(json!({"p": 0.1})), "params.p");
    }

    #[test]
    fn losses_come_in_bursts_at_the_stationary_rate() {
        let ge = GilbertElliott {
            p: 0.1,
            r: 0.3,
            h: 0.0,
            k: 1.0,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let mut bad = false;
        let lost: Vec<bool> = (0..100_000)
            .map(|_| ge.next(&mut bad, &mut rng).is_some())
            .collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        // p / (p + r) = 0.25 of the time in the bad state, where every message is lost.
        assert!((0.23..0.27).contains(&rate), "{rate}");
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let mean_burst = rate * lost.len() as f64 / bursts;
        // A burst lasts 1 / r = 3.3 messages on average.
        assert!((3.0..3.7).contains(&mean_burst), "{mean_burst}");
    }
}
