//! `setup`: whole call setups back to back — two connections, a room, the offer/answer exchange, six ICE
//! candidates each way, both hang up. Measures what a burst of people starting calls costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{open_pair, Env};
use crate::adapter::Adapter;
use crate::transport::{self, Closed, Peer};
use crate::{limits, payload, procfs, report};

#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// Setups in flight at a time, each worker starting the next as soon as its last one ended.
    #[arg(long, default_value_t = 10)]
    pub workers: u64,
    /// Seconds to keep starting setups.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of the offer and of the answer.
    #[arg(long, default_value_t = 300)]
    pub size: usize,
    /// The server's pid, to report its CPU use during the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// ICE candidates each side trickles, about what a browser with one interface gathers.
const CANDIDATES: u64 = 6;
/// One setup taking longer than this counts as failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// After a failure a worker waits this long, so a refusing server is not hammered in a tight loop.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Default)]
struct WorkerResult {
    setups: u64,
    failures: u64,
    unclean_closes: u64,
    first_error: Option<String>,
}

pub async fn run<A: Adapter>(env: &Env<A>, args: &SetupArgs) -> Result<(Value, String)> {
    if args.workers == 0
        || args.workers > 10_000
        || !(0.1..=3600.0).contains(&args.duration)
        || args.size > 60_000
    {
        bail!("need --workers within 1..=10000, --duration within 0.1..=3600 s and --size ≤ 60000");
    }
    limits::require_nofile(2 * args.workers + 256)?;
    let duration = Duration::from_secs_f64(args.duration);
    let cpu = procfs::CpuMeter::start(args.server_pid)?;
    let started = Instant::now();
    let deadline = started + duration;
    let next_index = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..args.workers {
        let env = env.clone();
        let next_index = next_index.clone();
        let size = args.size;
        tasks.spawn(async move {
            let mut latency = report::latency_histogram();
            let mut result = WorkerResult::default();
            while Instant::now() < deadline {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match timeout(SETUP_TIMEOUT, one_setup(&env, index, size)).await {
                    Ok(Ok(clean)) => {
                        report::record(&mut latency, t.elapsed());
                        result.setups += 1;
                        result.unclean_closes += u64::from(!clean);
                    }
                    failed => {
                        let e = match failed {
                            Ok(Err(e)) => format!("{e:#}"),
                            _ => format!("setup timed out after {SETUP_TIMEOUT:?}"),
                        };
                        result.failures += 1;
                        result.first_error.get_or_insert(e);
                        sleep(FAILURE_BACKOFF).await;
                    }
                }
            }
            (result, latency)
        });
    }
    let mut latency = report::latency_histogram();
    let mut total = WorkerResult::default();
    while let Some(done) = tasks.join_next().await {
        let Ok((r, h)) = done else {
            total.failures += 1;
            continue;
        };
        latency
            .add(&h)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        total.setups += r.setups;
        total.failures += r.failures;
        total.unclean_closes += r.unclean_closes;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu.stop()?;
    let per_sec = total.setups as f64 / elapsed.as_secs_f64();
    let result = json!({
        "workload": "setup",
        "adapter": env.adapter.name(),
        "workers": args.workers,
        "duration_seconds": report::round2(elapsed.as_secs_f64()),
        "setups": total.setups,
        "setups_per_sec": report::round2(per_sec),
        "latency": report::latency_json(&latency),
        "failures": total.failures,
        "unclean_closes": total.unclean_closes,
        "first_error": total.first_error,
        "server_cpu_percent": cpu.server,
        "loadgen_cpu_percent": cpu.loadgen,
    });
    let summary = format!(
        "setup [{}]: {} workers for {:.1} s: {} setups = {per_sec:.0} setups/s, {} failed, {} unclean closes{}\n  \
         setup latency: {}\n  {}",
        env.adapter.name(),
        args.workers,
        elapsed.as_secs_f64(),
        total.setups,
        total.failures,
        total.unclean_closes,
        total.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        report::latency_line(&latency),
        procfs::cpu_line(&cpu),
    );
    Ok((result, summary))
}

/// One call setup as the book's client does it: the joiner sends the offer right after ENTERROOM, the creator
/// answers, both trickle candidates, both hang up. Returns whether both closes were clean.
pub async fn one_setup<A: Adapter>(env: &Env<A>, index: u64, size: usize) -> Result<bool> {
    let adapter = &*env.adapter;
    let offer = payload::sdp_message("offer", index, size);
    let mut pair = open_pair(env, index, &offer).await?;
    let answer: Utf8Bytes = payload::sdp_message("answer", index, size).into();
    adapter.send(&mut pair.creator, answer.clone()).await?;
    expect(adapter, &mut pair.joiner, &answer).await?;
    let candidates: Vec<Utf8Bytes> = (0..CANDIDATES)
        .map(|i| payload::candidate(i).into())
        .collect();
    for c in &candidates {
        adapter.send(&mut pair.creator, c.clone()).await?;
        adapter.send(&mut pair.joiner, c.clone()).await?;
    }
    for c in &candidates {
        expect(adapter, &mut pair.joiner, c).await?;
        expect(adapter, &mut pair.creator, c).await?;
    }
    let (a, b) = tokio::join!(
        transport::close(pair.creator),
        transport::close(pair.joiner)
    );
    Ok(a == Closed::Clean && b == Closed::Clean)
}

async fn expect<A: Adapter>(adapter: &A, peer: &mut Peer, want: &Utf8Bytes) -> Result<()> {
    let got = adapter.recv(peer).await?;
    if &got != want {
        bail!("relayed message differs from the one sent");
    }
    Ok(())
}
