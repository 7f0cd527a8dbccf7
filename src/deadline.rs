//! Per-connection timeouts that cost the reactor nothing.
//!
//! async-io's `Timer` tells the reactor thread of every timer it arms: an eventfd write, a
//! context switch onto the reactor thread, and two `epoll_ctl` to re-arm its eventfd and timerfd.
//! With one handshake timeout per connection, that was every one of the reactor's wake-ups that
//! no socket caused in a call setup (`perf record` on `loadgen setup`, bench/README.md). The
//! timeouts here almost never fire, so they are kept in one table watched by a thread of their
//! own, which is woken only when the earliest deadline moves earlier.
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Ready once `timeout` has passed.
pub fn after(timeout: Duration) -> Deadline {
    Deadline {
        when: Instant::now() + timeout,
        id: None,
    }
}

/// Ready once `timeout` has passed, late by less than `grid`: the instant is rounded up to a
/// multiple of `grid` counted from the watcher's start, so that the deadlines of many
/// connections fall on the same instants and one wake-up serves them all. A heartbeat's
/// deadlines need no precision, and with a wake-up for each of them 19,600 idle connections
/// pinged every 20 s took 2.75 % of a core, against 1.42 % on a 1 s grid (bench/README.md).
pub fn after_coarse(timeout: Duration, grid: Duration) -> Deadline {
    let watcher = watcher();
    let exact = watcher.tick(Instant::now() + timeout);
    let grid = u64::try_from(grid.as_nanos()).unwrap_or(u64::MAX).max(1);
    let rounded = exact.div_ceil(grid).saturating_mul(grid);
    Deadline {
        when: watcher.base + Duration::from_nanos(rounded),
        id: None,
    }
}

/// A future that is ready at an instant; registered with the watcher while it waits.
pub struct Deadline {
    when: Instant,
    /// Set while this deadline is in the watcher's table.
    id: Option<u64>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.when {
            self.unregister();
            return Poll::Ready(());
        }
        let watcher = watcher();
        let mut table = watcher.lock();
        match self.id {
            Some(id) => {
                let key = (watcher.tick(self.when), id);
                if let Some(waker) = table.entries.get_mut(&key) {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
            }
            None => {
                let id = table.next_id;
                table.next_id += 1;
                let when = watcher.tick(self.when);
                let earlier = table
                    .entries
                    .first_key_value()
                    .is_none_or(|((first, _), _)| when < *first);
                table.entries.insert((when, id), cx.waker().clone());
                self.id = Some(id);
                if earlier {
                    watcher.changed.notify_one();
                }
            }
        }
        Poll::Pending
    }
}

impl Deadline {
    /// When it is ready: a wake-up from the watcher never comes before this.
    pub fn when(&self) -> Instant {
        self.when
    }

    fn unregister(&mut self) {
        if let Some(id) = self.id.take() {
            let watcher = watcher();
            let key = (watcher.tick(self.when), id);
            watcher.lock().entries.remove(&key);
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}

struct Watcher {
    table: Mutex<Table>,
    /// What the table's instants count from.
    base: Instant,
    /// Signalled when a deadline earlier than every other is added.
    changed: Condvar,
}

#[derive(Default)]
struct Table {
    /// By nanoseconds since [`Watcher::base`], not `Instant`: a heartbeat's entry is 32 bytes
    /// instead of 40, in every idle connection's share of the tree.
    entries: BTreeMap<(u64, u64), Waker>,
    next_id: u64,
}

impl Watcher {
    /// `when` in the table's unit (nanoseconds from `base`: 584 years of range).
    fn tick(&self, when: Instant) -> u64 {
        u64::try_from(when.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing in here can panic while the lock is held but a waker; the table stays valid.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut table = self.lock();
        loop {
            let now = Instant::now();
            let now_tick = self.tick(now);
            let mut due = Vec::new();
            while let Some(entry) = table.entries.first_entry() {
                if entry.key().0 > now_tick {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(table);
                due.into_iter().for_each(Waker::wake);
                table = self.lock();
                continue;
            }
            let first = table
                .entries
                .first_key_value()
                .map(|((first, _), _)| *first);
            table = match first {
                None => self.changed.wait(table).unwrap_or_else(|e| e.into_inner()),
                Some(first) => {
                    let wait = Duration::from_nanos(first.saturating_sub(now_tick));
                    match self.changed.wait_timeout(table, wait) {
                        Ok((table, _)) => table,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
    }
}

fn watcher() -> &'static Watcher {
    static WATCHER: OnceLock<&'static Watcher> = OnceLock::new();
    WATCHER.get_or_init(|| {
        let watcher: &'static Watcher = Box::leak(Box::new(Watcher {
            table: Mutex::new(Table::default()),
            base: Instant::now(),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("rtcserver-timeouts".into())
            .spawn(move || watcher.run())
            .expect("cannot start the timeouts thread");
        watcher
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, or};

    #[test]
    fn fires_after_its_time_and_leaves_the_table() {
        let start = Instant::now();
        let mut deadline = Box::pin(after(Duration::from_millis(30)));
        block_on(deadline.as_mut());
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(deadline.id, None, "unregistered once fired");
    }

    #[test]
    fn an_earlier_deadline_added_later_fires_first() {
        let start = Instant::now();
        let later = async {
            after(Duration::from_secs(5)).await;
            "later"
        };
        let sooner = async {
            // Polled after `later` has been registered, so the watcher must wake up early.
            futures_lite::future::yield_now().await;
            after(Duration::from_millis(20)).await;
            "sooner"
        };
        assert_eq!(block_on(or(later, sooner)), "sooner");
        assert!(start.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn coarse_deadlines_fall_on_the_grid_and_never_early() {
        let grid = Duration::from_millis(250);
        let timeout = Duration::from_millis(1100);
        let earliest = Instant::now() + timeout;
        let deadlines: Vec<_> = (0..50).map(|_| after_coarse(timeout, grid)).collect();
        let latest = Instant::now() + timeout + grid;
        let grid_ns = grid.as_nanos() as u64;
        for d in &deadlines {
            assert!(
                d.when >= earliest && d.when <= latest,
                "within one grid step"
            );
            assert_eq!(watcher().tick(d.when) % grid_ns, 0, "on the grid");
        }
        // Made within a few microseconds of each other: one instant (or two, across a step).
        let mut instants: Vec<_> = deadlines.iter().map(|d| d.when).collect();
        instants.dedup();
        assert!(instants.len() <= 2, "{} instants", instants.len());
        let start = Instant::now();
        block_on(after_coarse(
            Duration::from_millis(20),
            Duration::from_millis(30),
        ));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_dropped_deadline_is_forgotten() {
        let mut deadline = Box::pin(after(Duration::from_secs(60)));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(deadline.as_mut().poll(&mut cx).is_pending());
        let key = (
            watcher().tick(deadline.when),
            deadline.id.expect("registered"),
        );
        assert!(watcher().lock().entries.contains_key(&key));
        drop(deadline);
        assert!(!watcher().lock().entries.contains_key(&key));
    }
}
