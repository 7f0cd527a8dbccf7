//! `--heartbeat-secs`: a ping every N seconds, and the end of a connection from which nothing
//! (a frame or a pong) has come for 3N: a peer that vanished without a FIN (power loss, a NAT
//! that forgot the mapping) would otherwise hold its place in its room for ever. Browsers answer
//! pings by themselves, so a live page is never closed by this.
use crate::deadline::{self, Deadline};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Silences this many intervals long end the connection.
pub const MISSED: u32 = 3;

/// Pings are late by less than this (or a quarter of the interval, if shorter): the
/// connections' pings then come together, a wake-up for many (`deadline::after_coarse`).
const GRID: Duration = Duration::from_secs(1);

pub(super) struct Heartbeat {
    every: Duration,
    last_heard: Instant,
    next: Deadline,
    /// The waker `next` holds: the connection's loop polls the heartbeat with every frame and
    /// message, and the deadline's table is behind a lock every connection shares.
    registered: Option<Waker>,
}

/// What a tick asks for.
pub(super) enum Beat {
    Ping,
    /// Silent for [`MISSED`] intervals: gone.
    Dead(Duration),
}

impl Heartbeat {
    /// `None` (or zero): no heartbeat.
    pub fn new(every: Option<Duration>) -> Option<Self> {
        let every = every.filter(|d| !d.is_zero())?;
        Some(Heartbeat {
            every,
            last_heard: Instant::now(),
            next: next_beat(every),
            registered: None,
        })
    }

    /// Something came from the peer.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    pub fn poll_beat(&mut self, cx: &mut Context<'_>) -> Poll<Beat> {
        let armed = self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if armed && Instant::now() < self.next.when() {
            return Poll::Pending;
        }
        if Pin::new(&mut self.next).poll(cx).is_pending() {
            self.registered = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.registered = None;
        let silent = self.last_heard.elapsed();
        if silent >= self.every * MISSED {
            return Poll::Ready(Beat::Dead(silent));
        }
        self.next = next_beat(self.every);
        Poll::Ready(Beat::Ping)
    }
}

/// The deadline of the next ping: `every` from now, on the grid.
fn next_beat(every: Duration) -> Deadline {
    deadline::after_coarse(every, GRID.min(every / 4))
}
