//! The fault log: one record per action a rule took, numbered, the latest [`KEEP`] kept.
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Records kept; older ones are forgotten (their `seq` numbers are not reused).
pub const KEEP: usize = 100_000;

/// One action of one rule on one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    /// From 1, in the order the actions were taken, over the server's life.
    pub seq: u64,
    pub rule: String,
    /// The stream: `endpoint/room>…` (see [`super::stream::key`]).
    pub key: String,
    /// The message's number on its stream, from 1.
    pub index: u64,
    /// The message's `type` (book) or `event` (rooms); empty when it has none.
    pub kind: String,
    /// The message's text, hashed ([`super::stream::digest`]): what a replay compares.
    pub digest: String,
    pub action: &'static str,
    /// The rule's parameters and what was drawn (`delay_ms`).
    pub params: Value,
    /// Milliseconds since the server started.
    pub t_ms: u64,
}

impl Injected {
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq, "rule": self.rule, "key": self.key, "index": self.index,
            "type": self.kind, "digest": self.digest, "action": self.action, "params": self.params, "t_ms": self.t_ms,
        })
    }
}

#[derive(Default)]
pub struct FaultLog {
    records: Mutex<(u64, VecDeque<Injected>)>,
}

impl FaultLog {
    fn lock(&self) -> MutexGuard<'_, (u64, VecDeque<Injected>)> {
        // One push or one copy under the lock: a panic cannot leave it half done.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers `record` and keeps it; returns it numbered.
    pub fn push(&self, mut record: Injected) -> Injected {
        let mut guard = self.lock();
        let (seq, records) = &mut *guard;
        *seq += 1;
        record.seq = *seq;
        if records.len() == KEEP {
            records.pop_front();
        }
        records.push_back(record.clone());
        record
    }

    /// The latest `n` records, oldest first.
    pub fn tail(&self, n: usize) -> Vec<Injected> {
        let guard = self.lock();
        let start = guard.1.len().saturating_sub(n);
        guard.1.range(start..).cloned().collect()
    }

    /// The records numbered above `since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<Injected> {
        let guard = self.lock();
        let start = guard.1.partition_point(|r| r.seq <= since);
        guard.1.range(start..).cloned().collect()
    }
}
