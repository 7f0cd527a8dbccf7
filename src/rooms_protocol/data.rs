//! A message's `data`, kept as the JSON text the client sent and parsed only when something asks
//! for it (a hook that reads or changes it). Relaying a message then never builds a `Value` tree
//! of the SDP it carries, nor writes it out again: `data` goes out as it came in.
//!
//! It reads and writes as a [`Value`] (`Deref`/`DerefMut`), and `From<Value>` makes one, so a hook
//! that used `message.data` as a `Value` keeps working; only an assignment needs `.into()`.
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

pub struct Data(State);

enum State {
    /// As received; its `Value` made on the first read.
    Raw(Box<RawValue>, OnceLock<Value>),
    /// Made by the server or changed by a hook.
    Value(Value),
}

impl Data {
    /// `data` as the client wrote it (already checked to be one JSON value).
    pub fn raw(raw: Box<RawValue>) -> Self {
        Data(State::Raw(raw, OnceLock::new()))
    }

    /// The JSON text's length when it is kept as received (a size hint for writing it out).
    pub fn raw_len(&self) -> Option<usize> {
        match &self.0 {
            State::Raw(raw, _) => Some(raw.get().len()),
            State::Value(_) => None,
        }
    }
}

/// A raw value that `Value` cannot hold (a number beyond `f64`): read as `null`, written as sent.
fn parse(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

impl Deref for Data {
    type Target = Value;

    fn deref(&self) -> &Value {
        match &self.0 {
            State::Raw(raw, value) => value.get_or_init(|| parse(raw)),
            State::Value(value) => value,
        }
    }
}

impl DerefMut for Data {
    /// A hook that may change `data`: from now on it is written from the `Value`.
    fn deref_mut(&mut self) -> &mut Value {
        if let State::Raw(raw, value) = &mut self.0 {
            let parsed = value.take().unwrap_or_else(|| parse(raw));
            self.0 = State::Value(parsed);
        }
        match &mut self.0 {
            State::Value(value) => value,
            // Replaced just above.
            State::Raw(..) => unreachable!("data is a Value here"),
        }
    }
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        Data(State::Value(value))
    }
}

impl Default for Data {
    fn default() -> Self {
        Data::from(Value::Null)
    }
}

impl Clone for Data {
    fn clone(&self) -> Self {
        match &self.0 {
            State::Raw(raw, _) => Data::raw(raw.clone()),
            State::Value(value) => Data::from(value.clone()),
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        **self == **other
    }
}

impl PartialEq<Value> for Data {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            State::Raw(raw, _) => write!(f, "Data({})", raw.get()),
            State::Value(value) => write!(f, "Data({value})"),
        }
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            State::Raw(raw, _) => raw.serialize(s),
            State::Value(value) => value.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Data {
        Data::raw(RawValue::from_string(text.to_owned()).expect("JSON"))
    }

    #[test]
    fn raw_data_is_written_as_it_came_and_read_as_a_value() {
        let text = r#"{"sdp": "v=0\r\n", "n": 1.50}"#;
        let d = raw(text);
        assert_eq!(serde_json::to_string(&d).expect("json"), text);
        assert_eq!(d["n"], json!(1.5));
        assert_eq!(d, json!({"sdp": "v=0\r\n", "n": 1.5}));
        assert_eq!(d.raw_len(), Some(text.len()));
    }

    #[test]
    fn a_changed_value_is_written_from_the_value() {
        let mut d = raw(r#"{"a": 1}"#);
        d.as_object_mut()
            .expect("object")
            .insert("b".into(), json!(2));
        assert_eq!(serde_json::to_string(&d).expect("json"), r#"{"a":1,"b":2}"#);
        assert_eq!(d.raw_len(), None);
        let v: Data = json!([1]).into();
        assert_eq!(serde_json::to_string(&v).expect("json"), "[1]");
    }

    #[test]
    fn a_number_beyond_f64_reads_as_null_and_goes_out_as_sent() {
        let d = raw("1e400");
        assert_eq!(*d, Value::Null);
        assert_eq!(serde_json::to_string(&d).expect("json"), "1e400");
    }
}
