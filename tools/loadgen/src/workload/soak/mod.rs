//! `soak`: minutes of mixed traffic on both endpoints at once — well-behaved numbered pairs, churn, call
//! setups, garbage, stalled readers — while the server's RSS and open file descriptors are watched. Passes
//! when no well-behaved pair lost or reordered a message, nothing was answered with 1011, and once the
//! traffic has stopped the server is back within `--tolerance-percent` of where it started.
//!
//! "Where it started" is measured after a short warm-up of the same traffic (and its settling), so that
//! what a server allocates once (thread pools, lazily built tables, the allocator's arenas) is not taken
//! for a leak; the cold reading before the warm-up is reported too.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::Env;
use crate::adapter::book::Book;
use crate::adapter::envelope::Names;
use crate::adapter::rooms::Rooms;
use crate::adapter::Adapter;
use crate::limits;
use crate::target::Target;

pub mod garbage;
pub mod traffic;
pub mod watch;

use traffic::Tally;
use watch::Sample;

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// The server's pid: its RSS and descriptors are read from /proc/PID.
    #[arg(long)]
    pub server_pid: u32,
    /// Seconds of mixed traffic.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Seconds of the same traffic before the start is measured.
    #[arg(long, default_value_t = 10.0)]
    pub warmup: f64,
    /// Well-behaved numbered pairs per endpoint, open for the whole run.
    #[arg(long, default_value_t = 4)]
    pub pairs: u64,
    /// Connect/join/leave loops per endpoint.
    #[arg(long, default_value_t = 2)]
    pub churners: u64,
    /// Call-setup loops per endpoint.
    #[arg(long, default_value_t = 1)]
    pub setups: u64,
    /// Garbage loops (each cycles through every kind of bad input on both endpoints).
    #[arg(long, default_value_t = 1)]
    pub garbage: u64,
    /// Stalled-reader loops per endpoint.
    #[arg(long, default_value_t = 1)]
    pub slow_readers: u64,
    /// Bytes pushed at a stalled reader per round, at most: more than the server's outbound limit (8 MiB)
    /// plus what the kernel buffers on loopback.
    #[arg(long, default_value_t = 32 << 20)]
    pub slow_bytes: u64,
    /// Bytes of the oversized message (over the server's --max-message-bytes, 1 MiB by default).
    #[arg(long, default_value_t = (1 << 20) + 1)]
    pub oversize: usize,
    /// Bytes of a numbered pair's messages.
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// How far above the start RSS and descriptors may be once the traffic has stopped.
    #[arg(long, default_value_t = 10)]
    pub tolerance_percent: u64,
    /// Longest wait, after the traffic, for the server to settle.
    #[arg(long, default_value_t = 120.0)]
    pub settle: f64,
}

/// A reading that has not moved for this long has settled, wherever it is.
const QUIET: Duration = Duration::from_secs(15);
/// Past the end of a phase, its loops have this long to finish the step they are in.
const WIND_DOWN: Duration = Duration::from_secs(60);

/// The longest a soak with these arguments can take: both phases, their wind-downs, and the settling.
pub fn bound(args: &SoakArgs) -> Duration {
    Duration::from_secs_f64(args.duration + args.warmup + args.settle) + 2 * WIND_DOWN + 2 * QUIET
}

pub async fn run(
    target: &Target,
    sources: Arc<[IpAddr]>,
    args: &SoakArgs,
) -> Result<(Value, String)> {
    if !(0.5..=86_400.0).contains(&args.duration)
        || !(0.0..=600.0).contains(&args.warmup)
        || !(1.0..=3600.0).contains(&args.settle)
        || args.pairs == 0
        || args.size < 64
        || args.size > 60_000
        || args.pairs + args.churners + args.setups + args.slow_readers > 1000
        || args.garbage > 100
    {
        bail!(
            "need --duration within 0.5..=86400 s, --warmup within 0..=600 s, --settle within 1..=3600 s, \
             --pairs ≥ 1, --size within 64..=60000, at most 1000 loops per endpoint and 100 garbage loops"
        );
    }
    // Every loop holds at most two connections at a time, on each endpoint.
    let loops = args.pairs + args.churners + args.setups + args.slow_readers;
    limits::require_nofile(4 * loops + 2 * args.garbage + 256)?;
    let book = Env::new(Book::new(target.clone()), sources.clone());
    let rooms = Env::new(Rooms::new(target.clone()), sources);
    let names = Arc::new(Names::new());
    let pid = args.server_pid;
    let percent = args.tolerance_percent;

    let counters = Counters::default();
    let cold = Sample::read(pid)?;
    let warm = Duration::from_secs_f64(args.warmup);
    let warmup = phase(&book, &rooms, target, &names, &counters, args, warm).await;
    let start = if warm.is_zero() {
        cold
    } else {
        // A bound of 0 % is never met: this waits until the readings stop moving (at most QUIET).
        watch::settle(pid, &cold, 0, Duration::from_secs(3), QUIET)
            .await?
            .0
    };

    let (stop_tx, stop_rx) = watch_channel();
    let peak = tokio::spawn(watch::peak(pid, start, stop_rx));
    let began = Instant::now();
    let length = Duration::from_secs_f64(args.duration);
    let tally = phase(&book, &rooms, target, &names, &counters, args, length).await;
    let elapsed = began.elapsed();
    let _ = stop_tx.send(true);
    let (peak, server_gone) = peak
        .await
        .unwrap_or((start, Some("the sampler panicked".into())));
    let settle_limit = Duration::from_secs_f64(args.settle);
    let (after, settled_in) = watch::settle(pid, &start, percent, QUIET, settle_limit).await?;

    let get = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let report = tally.json();
    let lost = get(&report, "pair_messages_lost");
    let broken = get(&report, "pairs_broken");
    let crashes =
        get(&report, "internal_errors_1011") + get(&warmup.json(), "internal_errors_1011");
    let back = after.within(&start, percent);
    let passed = lost == 0 && broken == 0 && crashes == 0 && back && server_gone.is_none();
    let result = json!({
        "workload": "soak",
        "duration_seconds": crate::report::round2(elapsed.as_secs_f64()),
        "server": {
            "cold": cold.json(),
            "start": start.json(),
            "peak": peak.json(),
            "after": after.json(),
            "settled_in_seconds": crate::report::round2(settled_in.as_secs_f64()),
            "rss_after_over_start_percent": over(after.rss_kib, start.rss_kib),
            "fds_after_over_start_percent": over(after.fds, start.fds),
            "sampling_stopped": server_gone,
        },
        "traffic": report,
        "warmup": warmup.json(),
        "tolerance_percent": percent,
        "back_within_tolerance": back,
        "no_message_lost": lost == 0 && broken == 0,
        "passed": passed,
    });
    let summary = format!(
        "soak: {:.0} s on both endpoints: {} numbered messages relayed, {lost} lost, {broken} pairs broken; \
         {} churned connections, {} setups, {} garbage connections, {} stalled-reader rounds; {crashes} closes with 1011\n  \
         server RSS {} → peak {} → {} KiB, descriptors {} → peak {} → {} (after {:.0} s): {} within {percent} % of the start\n  \
         {}",
        elapsed.as_secs_f64(),
        get(&report, "pair_messages_received"),
        get(&report, "churned_connections"),
        get(&report, "setups"),
        get(&report, "garbage_connections"),
        get(&report, "slow_reader_rounds"),
        start.rss_kib,
        peak.rss_kib,
        after.rss_kib,
        start.fds,
        peak.fds,
        after.fds,
        settled_in.as_secs_f64(),
        if back { "back" } else { "NOT back" },
        if passed { "PASSED" } else { "FAILED" },
    );
    Ok((result, summary))
}

fn over(after: u64, start: u64) -> f64 {
    crate::report::round2(100.0 * (after as f64 - start as f64) / start.max(1) as f64)
}

fn watch_channel() -> (
    tokio::sync::watch::Sender<bool>,
    tokio::sync::watch::Receiver<bool>,
) {
    tokio::sync::watch::channel(false)
}

/// Pair numbers, never reused within a run: a room named after one (`/socket/<name>`) may outlive a pair
/// that dropped its sockets by a moment.
struct Counters {
    numbered: Arc<AtomicU64>,
    /// The other loops', far above the numbered pairs'.
    others: Arc<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            numbered: Arc::new(AtomicU64::new(0)),
            others: Arc::new(AtomicU64::new(1 << 32)),
        }
    }
}

/// Every kind of traffic on both endpoints for `length`; returns once every loop has ended (each ends at
/// its next step past the deadline, all of them within [`WIND_DOWN`]).
async fn phase(
    book: &Env<Book>,
    rooms: &Env<Rooms>,
    target: &Target,
    names: &Arc<Names>,
    counters: &Counters,
    args: &SoakArgs,
    length: Duration,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    if length.is_zero() {
        return tally;
    }
    let stop = Instant::now() + length;
    let mut tasks = JoinSet::new();
    spawn_endpoint(&mut tasks, book, counters, args, stop, &tally);
    spawn_endpoint(&mut tasks, rooms, counters, args, stop, &tally);
    let cycle = Arc::new(AtomicU64::new(0));
    for _ in 0..args.garbage {
        let (target, names, cycle, t) =
            (target.clone(), names.clone(), cycle.clone(), tally.clone());
        let oversize = args.oversize;
        tasks.spawn(
            async move { garbage::garbage(&target, &names, &cycle, oversize, stop, &t).await },
        );
    }
    let all = async { while tasks.join_next().await.is_some() {} };
    if timeout(length + WIND_DOWN, all).await.is_err() {
        // Dropping the set aborts what is left; counted as broken pairs would be a guess, so say it.
        let mut first = tally.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| {
            format!("loops still running {WIND_DOWN:?} past the phase; aborted")
        });
    }
    tally
}

fn spawn_endpoint<A: Adapter>(
    tasks: &mut JoinSet<()>,
    env: &Env<A>,
    counters: &Counters,
    args: &SoakArgs,
    stop: Instant,
    tally: &Arc<Tally>,
) {
    use std::sync::atomic::Ordering;
    for _ in 0..args.pairs {
        let (env, t) = (env.clone(), tally.clone());
        let index = counters.numbered.fetch_add(1, Ordering::Relaxed);
        let size = args.size;
        tasks.spawn(async move { traffic::numbered(env, index, size, stop, &t).await });
    }
    let shared = &counters.others;
    for _ in 0..args.churners {
        let (env, t, i) = (env.clone(), tally.clone(), shared.clone());
        tasks.spawn(async move { traffic::churn(env, &i, stop, &t).await });
    }
    for _ in 0..args.setups {
        let (env, t, i) = (env.clone(), tally.clone(), shared.clone());
        let size = args.size;
        tasks.spawn(async move { traffic::setups(env, &i, size, stop, &t).await });
    }
    for _ in 0..args.slow_readers {
        let (env, t, i) = (env.clone(), tally.clone(), shared.clone());
        let max = args.slow_bytes;
        tasks.spawn(async move { traffic::slow_reader(env, &i, max, stop, &t).await });
    }
}
