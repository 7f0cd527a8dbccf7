//! Restart intensity: OTP's `{MaxR, MaxT}`, which bastion's lifetime `RestartPolicy::Tries` is not.
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// At most `max_restarts` restarts within any `period`; one more and the supervisor gives up.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max_restarts: u32,
    period: Duration,
    // Instants of the restarts still inside the window; never longer than max_restarts + 1.
    window: VecDeque<Instant>,
}

/// More restarts than the intensity allows happened within the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntensityExceeded {
    pub max_restarts: u32,
    pub period: Duration,
}

impl fmt::Display for IntensityExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reached max restart intensity ({} restarts in {:?})",
            self.max_restarts, self.period
        )
    }
}

impl std::error::Error for IntensityExceeded {}

impl RestartIntensity {
    /// `rtcserver_sup`'s `{one_for_one, 5, 10}`.
    pub const BOOK: (u32, Duration) = (5, Duration::from_secs(10));

    pub fn new(max_restarts: u32, period: Duration) -> Self {
        RestartIntensity {
            max_restarts,
            period,
            window: VecDeque::new(),
        }
    }

    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Records one restart at `now`. OTP terminates the supervisor when the restart would be the
    /// (MaxR+1)th within MaxT, so that is the one that is refused.
    pub fn record(&mut self, now: Instant) -> Result<(), IntensityExceeded> {
        while let Some(&oldest) = self.window.front() {
            if now.saturating_duration_since(oldest) >= self.period {
                self.window.pop_front();
            } else {
                break;
            }
        }
        self.window.push_back(now);
        if self.window.len() as u64 > u64::from(self.max_restarts) {
            return Err(IntensityExceeded {
                max_restarts: self.max_restarts,
                period: self.period,
            });
        }
        Ok(())
    }

    /// Forgets every restart: the history of a supervisor that is itself restarted (OTP starts
    /// a fresh process, whose history is empty).
    pub fn reset(&mut self) {
        self.window.clear();
    }

    /// Restarts counted in the window ending at `now`.
    pub fn recent(&self, now: Instant) -> usize {
        self.window
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < self.period)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_restart_within_ten_seconds_exceeds_five_in_ten() {
        let (max, period) = RestartIntensity::BOOK;
        let mut intensity = RestartIntensity::new(max, period);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(
                intensity.record(t0 + Duration::from_secs(i)).is_ok(),
                "restart {i}"
            );
        }
        assert!(intensity.record(t0 + Duration::from_secs(9)).is_err());
    }

    #[test]
    fn restarts_older_than_the_period_no_longer_count() {
        let mut intensity = RestartIntensity::new(5, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..5 {
            intensity.record(t0 + Duration::from_secs(i)).unwrap();
        }
        // The first restart (t0) left the window at t0 + 10 s exactly.
        assert!(intensity.record(t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(intensity.recent(t0 + Duration::from_secs(10)), 5);
    }

    #[test]
    fn a_reset_history_allows_max_restarts_again() {
        let mut intensity = RestartIntensity::new(5, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..5 {
            intensity.record(t0).unwrap();
        }
        assert!(intensity.record(t0).is_err());
        intensity.reset();
        assert_eq!(intensity.recent(t0), 0);
        for _ in 0..5 {
            assert!(intensity.record(t0).is_ok());
        }
    }

    #[test]
    fn zero_restarts_allowed_refuses_the_first() {
        let mut intensity = RestartIntensity::new(0, Duration::from_secs(1));
        assert!(intensity.record(Instant::now()).is_err());
    }
}
