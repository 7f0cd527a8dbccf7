//! The server's resident memory and open file descriptors, read from /proc/PID: sampled through the run for
//! the peak, and polled after it until they settle back (bounded in time).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::sleep;

use crate::procfs;

/// One reading of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub rss_kib: u64,
    pub fds: u64,
}

impl Sample {
    pub fn read(pid: u32) -> Result<Self> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("listing /proc/{pid}/fd (is the server ours and running?)"))?
            .count() as u64;
        Ok(Self {
            rss_kib: procfs::rss_kib(pid)?,
            fds,
        })
    }

    pub fn json(&self) -> Value {
        json!({"rss_kib": self.rss_kib, "fds": self.fds})
    }

    fn max(self, other: Self) -> Self {
        Self {
            rss_kib: self.rss_kib.max(other.rss_kib),
            fds: self.fds.max(other.fds),
        }
    }

    /// Both figures at most `percent` above `start`'s (a count of descriptors rounded up, so that a
    /// server holding 10 may hold 11).
    pub fn within(&self, start: &Self, percent: u64) -> bool {
        let bound = |v: u64| v + (v * percent).div_ceil(100);
        self.rss_kib <= bound(start.rss_kib) && self.fds <= bound(start.fds)
    }
}

/// How often the server is read while traffic runs and while it settles.
pub const PERIOD: Duration = Duration::from_millis(500);

/// Samples `pid` every [`PERIOD`] until `stop` changes; returns the highest readings (and the first error
/// that stopped the sampling, if the server went away).
pub async fn peak(
    pid: u32,
    first: Sample,
    mut stop: watch::Receiver<bool>,
) -> (Sample, Option<String>) {
    let mut peak = first;
    loop {
        tokio::select! {
            _ = stop.changed() => return (peak, None),
            () = sleep(PERIOD) => {}
        }
        match Sample::read(pid) {
            Ok(s) => peak = peak.max(s),
            Err(e) => return (peak, Some(format!("{e:#}"))),
        }
    }
}

/// Polls until the server is back within `percent` of `start`, or has not moved for `quiet` (it has settled
/// somewhere else), or `limit` has passed; returns the last reading and how long it took.
pub async fn settle(
    pid: u32,
    start: &Sample,
    percent: u64,
    quiet: Duration,
    limit: Duration,
) -> Result<(Sample, Duration)> {
    let began = Instant::now();
    let mut last = Sample::read(pid)?;
    let mut unchanged_since = Instant::now();
    while !last.within(start, percent)
        && unchanged_since.elapsed() < quiet
        && began.elapsed() < limit
    {
        sleep(PERIOD).await;
        let now = Sample::read(pid)?;
        if now != last {
            unchanged_since = Instant::now();
        }
        last = now;
    }
    Ok((last, began.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_rounds_the_bound_up() {
        let start = Sample {
            rss_kib: 10_000,
            fds: 10,
        };
        let at = |rss_kib, fds| Sample { rss_kib, fds };
        assert!(at(11_000, 11).within(&start, 10));
        assert!(!at(11_001, 11).within(&start, 10));
        assert!(!at(11_000, 12).within(&start, 10));
        assert!(at(1, 1).within(&start, 10));
    }

    #[test]
    fn reads_our_own_process() {
        let s = Sample::read(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.fds > 0, "{s:?}");
    }
}
