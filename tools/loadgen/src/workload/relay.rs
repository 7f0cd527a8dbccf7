//! `relay`: closed-loop ping-pong of SDP-sized messages through many rooms at once — the server's relay
//! throughput and the round-trip latency it adds.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{close_pairs, open_pairs, Env, Pair};
use crate::adapter::Adapter;
use crate::transport::Peer;
use crate::{limits, payload, procfs, report};

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Rooms, each with one message in flight at a time.
    #[arg(long, default_value_t = 50)]
    pub pairs: u64,
    /// Seconds of ping-pong.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes per message (an SDP-like offer padded to this size).
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// The server's pid, to report its CPU use during the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Pairs being opened at the same time.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// A message not relayed within this time counts as lost and ends its pair's loop.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

struct PairResult {
    pair: Pair,
    rtt: Histogram<u64>,
    round_trips: u64,
    error: Option<String>,
}

pub async fn run<A: Adapter>(env: &Env<A>, args: &RelayArgs) -> Result<(Value, String)> {
    if args.pairs == 0 || !(0.1..=3600.0).contains(&args.duration) || args.size > 60_000 {
        bail!("need --pairs ≥ 1, --duration within 0.1..=3600 s and --size ≤ 60000");
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
    let cpu = procfs::CpuMeter::start(args.server_pid)?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for pair in opened.pairs {
        let adapter = env.adapter.clone();
        let size = args.size;
        tasks.spawn(async move { ping_pong(&*adapter, pair, size, deadline).await });
    }
    let mut rtt = report::latency_histogram();
    let (mut round_trips, mut errors, mut first_error) = (0u64, 0u64, None);
    let mut pairs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let Ok(result) = done else {
            errors += 1;
            continue;
        };
        rtt.add(&result.rtt)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        round_trips += result.round_trips;
        if let Some(e) = result.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
        pairs.push(result.pair);
    }
    let elapsed = started.elapsed();
    let cpu = cpu.stop()?;
    close_pairs(pairs, args.concurrency).await;

    // Every round trip is two relayed messages, one each way.
    let messages = 2 * round_trips;
    let msgs_per_sec = messages as f64 / elapsed.as_secs_f64();
    let result = json!({
        "workload": "relay",
        "adapter": env.adapter.name(),
        "pairs": args.pairs,
        "size": args.size,
        "duration_seconds": report::round2(elapsed.as_secs_f64()),
        "round_trips": round_trips,
        "messages": messages,
        "msgs_per_sec": report::round2(msgs_per_sec),
        "round_trips_per_sec": report::round2(round_trips as f64 / elapsed.as_secs_f64()),
        "rtt": report::latency_json(&rtt),
        "errors": errors,
        "first_error": first_error,
        "server_cpu_percent": cpu.server,
        "loadgen_cpu_percent": cpu.loadgen,
    });
    let summary = format!(
        "relay [{}]: {} pairs × {} B for {:.1} s: {messages} messages = {msgs_per_sec:.0} msgs/s\n  \
         round trip: {}\n  errors: {errors}{}; {}",
        env.adapter.name(),
        args.pairs,
        args.size,
        elapsed.as_secs_f64(),
        report::latency_line(&rtt),
        first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        procfs::cpu_line(&cpu),
    );
    Ok((result, summary))
}

/// The creator sends, the joiner echoes the exact frame back, and the creator checks it: one round trip
/// through the server in each direction, with the next message only after the last one came back.
async fn ping_pong<A: Adapter>(
    adapter: &A,
    mut pair: Pair,
    size: usize,
    deadline: Instant,
) -> PairResult {
    let mut rtt = report::latency_histogram();
    let mut round_trips = 0u64;
    let mut error = None;
    while Instant::now() < deadline {
        let msg: Utf8Bytes = payload::sdp_message("offer", round_trips, size).into();
        let sent_at = Instant::now();
        let trip = async {
            adapter.send(&mut pair.creator, msg.clone()).await?;
            let there = recv_within(adapter, &mut pair.joiner).await?;
            if there != msg {
                bail!("joiner received a different message than the creator sent");
            }
            adapter.send(&mut pair.joiner, there).await?;
            let back = recv_within(adapter, &mut pair.creator).await?;
            if back != msg {
                bail!("creator received a different message than the joiner echoed");
            }
            Ok(())
        };
        if let Err(e) = trip.await {
            error = Some(format!("{e:#}"));
            break;
        }
        report::record(&mut rtt, sent_at.elapsed());
        round_trips += 1;
    }
    PairResult {
        pair,
        rtt,
        round_trips,
        error,
    }
}

async fn recv_within<A: Adapter>(adapter: &A, peer: &mut Peer) -> Result<Utf8Bytes> {
    timeout(RECV_TIMEOUT, adapter.recv(peer))
        .await
        .map_err(|_| anyhow!("no message relayed within {RECV_TIMEOUT:?}"))?
}
