//! `rate`: open-loop relay at a fixed offered rate. Each message's latency runs from the moment it was *meant*
//! to be sent, so a server that stalls is charged for every message queued behind the stall (no coordinated
//! omission), unlike the closed loop of `relay`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout};

use super::{close_pairs, close_peers, open_pairs, Env};
use crate::adapter::Adapter;
use crate::transport::Peer;
use crate::{limits, payload, procfs, report};

#[derive(Debug, Clone, Args)]
pub struct RateArgs {
    /// Messages per second offered in total, spread evenly over the pairs.
    #[arg(long)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Rooms; in each, the creator sends and the joiner receives.
    #[arg(long, default_value_t = 50)]
    pub pairs: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// The server's pid, to report its CPU use during the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Pairs being opened at the same time.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// After sending stops, receivers wait this long for the messages still in flight; the rest count as lost.
const DRAIN: Duration = Duration::from_secs(5);

/// The schedule of one pair: message `seq` is due at `start + seq × interval`.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    interval_ns: f64,
}

impl Schedule {
    fn due(&self, seq: u64) -> Instant {
        self.start + Duration::from_nanos((seq as f64 * self.interval_ns) as u64)
    }
}

struct Totals {
    sent: u64,
    received: u64,
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    first_error: Option<String>,
}

pub async fn run<A: Adapter>(env: &Env<A>, args: &RateArgs) -> Result<(Value, String)> {
    if !(args.rate > 0.0 && args.rate <= 1_000_000.0) || args.pairs == 0 {
        bail!("need --rate within (0, 1000000] msgs/s and --pairs ≥ 1");
    }
    if !(0.1..=3600.0).contains(&args.duration) || args.size > 60_000 {
        bail!("need --duration within 0.1..=3600 s and --size ≤ 60000");
    }
    limits::require_nofile(2 * args.pairs + 256)?;
    let opened = open_pairs(env, args.pairs, args.concurrency).await;
    if opened.failed > 0 {
        let error = opened.first_error.unwrap_or_default();
        close_pairs(opened.pairs, args.concurrency).await;
        bail!(
            "{} of {} pairs could not be opened: {error}",
            opened.failed,
            args.pairs
        );
    }

    let duration = Duration::from_secs_f64(args.duration);
    let interval_ns = 1e9 * args.pairs as f64 / args.rate;
    let cpu = procfs::CpuMeter::start(args.server_pid)?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut senders = JoinSet::new();
    let mut receivers = JoinSet::new();
    for (k, pair) in opened.pairs.into_iter().enumerate() {
        // Staggered starts spread the pairs' sends over the interval instead of bursting them together.
        let start =
            started + Duration::from_nanos((k as f64 * interval_ns / args.pairs as f64) as u64);
        let schedule = Schedule { start, interval_ns };
        let (done_tx, done_rx) = oneshot::channel();
        let adapter = env.adapter.clone();
        let size = args.size;
        senders.spawn(async move {
            send_loop(&*adapter, pair.creator, schedule, deadline, size, done_tx).await
        });
        let adapter = env.adapter.clone();
        receivers.spawn(async move {
            receive_loop(&*adapter, pair.joiner, schedule, deadline + DRAIN, done_rx).await
        });
    }

    let mut totals = Totals {
        sent: 0,
        received: 0,
        latency: report::latency_histogram(),
        send_lag: report::latency_histogram(),
        first_error: None,
    };
    let mut creators = Vec::new();
    while let Some(done) = senders.join_next().await {
        let (peer, sent, lag, error) = done.map_err(|e| anyhow!("sender task failed: {e}"))?;
        creators.push(peer);
        totals.sent += sent;
        totals
            .send_lag
            .add(&lag)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        if totals.first_error.is_none() {
            totals.first_error = error;
        }
    }
    let mut joiners = Vec::new();
    while let Some(done) = receivers.join_next().await {
        let (peer, received, latency, error) =
            done.map_err(|e| anyhow!("receiver task failed: {e}"))?;
        joiners.push(peer);
        totals.received += received;
        totals
            .latency
            .add(&latency)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        if totals.first_error.is_none() {
            totals.first_error = error;
        }
    }
    let cpu = cpu.stop()?;
    creators.append(&mut joiners);
    close_peers(creators, 2 * args.concurrency).await;

    let sent_rate = totals.sent as f64 / duration.as_secs_f64();
    let lost = totals.sent.saturating_sub(totals.received);
    let result = json!({
        "workload": "rate",
        "adapter": env.adapter.name(),
        "pairs": args.pairs,
        "size": args.size,
        "target_rate": args.rate,
        "duration_seconds": report::round2(duration.as_secs_f64()),
        "sent": totals.sent,
        "received": totals.received,
        "lost": lost,
        "sent_per_sec": report::round2(sent_rate),
        "latency": report::latency_json(&totals.latency),
        "send_lag": report::latency_json(&totals.send_lag),
        "first_error": totals.first_error,
        "server_cpu_percent": cpu.server,
        "loadgen_cpu_percent": cpu.loadgen,
    });
    let summary = format!(
        "rate [{}]: {} msgs/s offered over {} pairs × {} B for {:.1} s: sent {} ({sent_rate:.0}/s), received {}, lost {lost}{}\n  \
         latency from intended send time: {}\n  sender lag behind schedule: {}\n  {}",
        env.adapter.name(),
        args.rate,
        args.pairs,
        args.size,
        duration.as_secs_f64(),
        totals.sent,
        totals.received,
        totals.first_error.as_ref().map(|e| format!(" (first error: {e})")).unwrap_or_default(),
        report::latency_line(&totals.latency),
        report::latency_line(&totals.send_lag),
        procfs::cpu_line(&cpu),
    );
    Ok((result, summary))
}

type LoopResult = (Peer, u64, Histogram<u64>, Option<String>);

/// Sends message `seq` at its due time, or at once when already late (never skipping one), until the deadline;
/// then tells the receiver how many were sent.
async fn send_loop<A: Adapter>(
    adapter: &A,
    mut peer: Peer,
    schedule: Schedule,
    deadline: Instant,
    size: usize,
    done: oneshot::Sender<u64>,
) -> LoopResult {
    let mut lag = report::latency_histogram();
    let mut sent = 0u64;
    let mut error = None;
    loop {
        let due = schedule.due(sent);
        if due >= deadline {
            break;
        }
        sleep_until(due.into()).await;
        report::record(&mut lag, due.elapsed());
        if let Err(e) = adapter
            .send(&mut peer, payload::sdp_message("offer", sent, size).into())
            .await
        {
            error = Some(format!("{e:#}"));
            break;
        }
        sent += 1;
    }
    // The receiver may already have stopped at its own deadline; then nobody needs the count.
    let _ = done.send(sent);
    (peer, sent, lag, error)
}

/// Receives until everything sent has arrived or `hard_stop`, charging each message from its due time.
async fn receive_loop<A: Adapter>(
    adapter: &A,
    mut peer: Peer,
    schedule: Schedule,
    hard_stop: Instant,
    mut done: oneshot::Receiver<u64>,
) -> LoopResult {
    let mut latency = report::latency_histogram();
    let mut received = 0u64;
    let mut sent_total: Option<u64> = None;
    let mut error = None;
    loop {
        if sent_total.is_some_and(|n| received >= n) {
            break;
        }
        tokio::select! {
            n = &mut done, if sent_total.is_none() => sent_total = Some(n.unwrap_or(0)),
            msg = timeout(hard_stop.saturating_duration_since(Instant::now()), adapter.recv(&mut peer)) => {
                match msg {
                    Ok(Ok(text)) => match payload::seq_of(&text) {
                        Some(seq) => {
                            report::record(&mut latency, schedule.due(seq).elapsed());
                            received += 1;
                        }
                        None => {
                            error = Some("relayed message without a seq".to_string());
                            break;
                        }
                    },
                    Ok(Err(e)) => {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    (peer, received, latency, error)
}
