//! `--heartbeat-secs`: a ping every N seconds, and the end of a connection from which nothing
//! (a frame or a pong) has come for 3N: a peer that vanished without a FIN (power loss, a NAT
//! that forgot the mapping) would otherwise hold its place in its room for ever. Browsers answer
//! pings by themselves, so a live page is never closed by this.
use crate::deadline::{self, Deadline};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Silences this many intervals long end the connection.
pub const MISSED: u32 = 3;

pub(super) struct Heartbeat {
    every: Duration,
    last_heard: Instant,
    next: Deadline,
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
            next: deadline::after(every),
        })
    }

    /// Something came from the peer.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    pub fn poll_beat(&mut self, cx: &mut Context<'_>) -> Poll<Beat> {
        if Pin::new(&mut self.next).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let silent = self.last_heard.elapsed();
        if silent >= self.every * MISSED {
            return Poll::Ready(Beat::Dead(silent));
        }
        self.next = deadline::after(self.every);
        Poll::Ready(Beat::Ping)
    }
}
