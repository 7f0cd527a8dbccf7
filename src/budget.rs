//! `--max-messages-per-sec` and `--max-bytes-per-sec`: what one connection may send, as two
//! token buckets. A connection over its budget is not read until the buckets refill, so that
//! TCP pushes back on the sender and one peer cannot take the server's time from the others;
//! one that stays over for [`Budget::over_limit`] is closed with 1008.
//!
//! Every frame the client sends counts (text, binary, ping, pong, close): one message, and its
//! payload's bytes. A frame is charged once it is read, and may take a bucket into debt (a
//! message longer than the byte burst still passes); the next read waits until the message
//! bucket holds a whole message again and the byte bucket is out of debt.
use crate::deadline::{self, Deadline};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u64,
    /// What a connection that has been quiet may send at once (the bucket's size; full at the
    /// upgrade).
    pub burst: u64,
}

/// A flag's rate makes a bucket of [`BURST_SECS`] seconds' worth; 0 is no bucket.
pub const BURST_SECS: u64 = 2;

impl Rate {
    /// `--max-...-per-sec N`: `None` for 0 (no limit).
    pub fn per_sec(per_sec: u64) -> Option<Rate> {
        (per_sec > 0).then(|| Rate {
            per_sec,
            burst: per_sec.saturating_mul(BURST_SECS),
        })
    }
}

/// Default `--max-messages-per-sec`: a call setup (an offer, an answer and a few dozen ICE
/// candidates) and a chat stay far below it.
pub const DEFAULT_MESSAGES_PER_SEC: u64 = 1000;
/// Default `--max-bytes-per-sec`: SDP is a few KiB; a message at the default
/// `--max-message-bytes` (1 MiB) still passes at once.
pub const DEFAULT_BYTES_PER_SEC: u64 = 4 << 20;
/// How long a connection may stay over its budget before it is closed.
pub const DEFAULT_OVER_LIMIT: Duration = Duration::from_secs(10);

/// The close reason of a connection over its budget for too long.
pub const OVER_BUDGET: &str = "over budget: sending too fast for too long";

/// Every connection's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub messages: Option<Rate>,
    pub bytes: Option<Rate>,
    /// Over budget without a pause this long: closed with 1008 [`OVER_BUDGET`].
    pub over_limit: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            messages: Rate::per_sec(DEFAULT_MESSAGES_PER_SEC),
            bytes: Rate::per_sec(DEFAULT_BYTES_PER_SEC),
            over_limit: DEFAULT_OVER_LIMIT,
        }
    }
}

impl Budget {
    /// No limit at all.
    pub fn off() -> Self {
        Budget {
            messages: None,
            bytes: None,
            over_limit: DEFAULT_OVER_LIMIT,
        }
    }
}

/// `/metrics`' counts of throttling; one shared by every connection.
#[derive(Debug, Default)]
pub struct ThrottleCounters {
    frames: AtomicU64,
    connections: AtomicU64,
}

impl ThrottleCounters {
    /// Frames read late because their connection was over its budget.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Connections that had at least one frame read late.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Bucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
}

impl Bucket {
    fn new(rate: Rate) -> Self {
        Bucket {
            per_sec: rate.per_sec as f64,
            burst: rate.burst as f64,
            tokens: rate.burst as f64,
        }
    }

    fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_sec).min(self.burst);
    }

    /// How long until the bucket holds `need` tokens; `None` if it does.
    fn short_of(&self, need: f64) -> Option<Duration> {
        (self.tokens < need).then(|| Duration::from_secs_f64((need - self.tokens) / self.per_sec))
    }
}

/// A frame read this soon after a hold ended had waited for it (`rtcserver_throttled_frames_total`).
const RELEASE_GRACE: Duration = Duration::from_millis(250);

/// The connection's budget has been over for [`Budget::over_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTooLong(pub Duration);

/// One connection's buckets. Under budget it costs no timer: the wait's deadline exists only
/// while reads are held back.
pub struct Throttle {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    refilled: Instant,
    over_limit: Duration,
    /// Since when every read has found the budget spent; cleared by a frame that leaves some.
    over_since: Option<Instant>,
    /// Reads are held back now.
    holding: bool,
    /// When the last hold ended: a frame read soon after it had waited for the budget.
    released: Option<Instant>,
    ever_held: bool,
    wait: Option<Wait>,
    counters: Arc<ThrottleCounters>,
}

struct Wait {
    deadline: Deadline,
    due: Instant,
    /// The waker `deadline` holds: the connection polls its throttle with every mailbox
    /// message too, and the deadlines' table is behind a lock every connection shares.
    registered: Option<Waker>,
}

impl Throttle {
    /// `None` when the budget limits nothing.
    pub fn new(budget: &Budget, counters: Arc<ThrottleCounters>) -> Option<Self> {
        if budget.messages.is_none() && budget.bytes.is_none() {
            return None;
        }
        Some(Throttle {
            messages: budget.messages.map(Bucket::new),
            bytes: budget.bytes.map(Bucket::new),
            refilled: Instant::now(),
            over_limit: budget.over_limit,
            over_since: None,
            holding: false,
            released: None,
            ever_held: false,
            wait: None,
            counters,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = now;
        for bucket in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
            bucket.refill(elapsed);
        }
    }

    /// How long until the next frame may be read; `None`: now.
    fn shortfall(&self) -> Option<Duration> {
        let messages = self.messages.as_ref().and_then(|b| b.short_of(1.0));
        let bytes = self.bytes.as_ref().and_then(|b| b.short_of(0.0));
        messages.max(bytes)
    }

    /// Ready when the next frame may be read; pending (and woken then) while the budget refills.
    pub fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OverTooLong>> {
        loop {
            let now = Instant::now();
            self.refill(now);
            let Some(short) = self.shortfall() else {
                self.wait = None;
                if std::mem::take(&mut self.holding) {
                    self.released = Some(now);
                }
                return Poll::Ready(Ok(()));
            };
            let over = now.saturating_duration_since(*self.over_since.get_or_insert(now));
            if over >= self.over_limit {
                return Poll::Ready(Err(OverTooLong(over)));
            }
            self.holding = true;
            // Woken at the limit too, to close the connection then.
            let short = short.min(self.over_limit - over);
            let wait = self.wait.get_or_insert_with(|| Wait {
                deadline: deadline::after(short),
                due: now + short,
                registered: None,
            });
            let armed = wait
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            if armed && now < wait.due {
                return Poll::Pending;
            }
            if Pin::new(&mut wait.deadline).poll(cx).is_pending() {
                wait.registered = Some(cx.waker().clone());
                return Poll::Pending;
            }
            self.wait = None;
        }
    }

    /// A frame of `len` payload bytes was read.
    pub fn charge(&mut self, len: usize) {
        if let Some(b) = &mut self.messages {
            b.tokens -= 1.0;
        }
        if let Some(b) = &mut self.bytes {
            b.tokens -= len as f64;
        }
        let now = Instant::now();
        // The first read after a hold can come back empty although the client's next frame
        // waits in the kernel (the socket's readiness is learnt anew after a time unpolled), so
        // "read soon after the hold" is the test, not "read at the first try".
        let late = self
            .released
            .take()
            .is_some_and(|at| now.saturating_duration_since(at) <= RELEASE_GRACE);
        if late {
            self.counters.frames.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut self.ever_held, true) {
                self.counters.connections.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.refill(now);
        if self.shortfall().is_none() {
            self.over_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(messages: Option<Rate>, bytes: Option<Rate>) -> Throttle {
        let budget = Budget {
            messages,
            bytes,
            over_limit: Duration::from_secs(3600),
        };
        Throttle::new(&budget, Arc::default()).expect("a budget")
    }

    const SLOW: u64 = 1;

    #[test]
    fn the_burst_passes_and_one_more_message_waits() {
        let mut t = throttle(
            Some(Rate {
                per_sec: SLOW,
                burst: 5,
            }),
            None,
        );
        for _ in 0..5 {
            assert_eq!(t.shortfall(), None);
            t.charge(1000);
        }
        assert!(t.shortfall().is_some());
    }

    #[test]
    fn bytes_may_go_into_debt_once_and_then_wait() {
        let mut t = throttle(
            None,
            Some(Rate {
                per_sec: SLOW,
                burst: 100,
            }),
        );
        t.charge(100);
        assert_eq!(t.shortfall(), None, "exactly the burst");
        t.charge(1);
        let short = t.shortfall().expect("in debt");
        assert!(short <= Duration::from_secs(1), "{short:?}");
    }

    #[test]
    fn a_zero_rate_is_no_bucket() {
        assert_eq!(Rate::per_sec(0), None);
        assert!(Throttle::new(&Budget::off(), Arc::default()).is_none());
        assert_eq!(
            Rate::per_sec(u64::MAX).map(|r| r.burst),
            Some(u64::MAX),
            "saturates"
        );
    }
}
