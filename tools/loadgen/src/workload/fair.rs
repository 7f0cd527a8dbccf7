//! `fair`: one well-behaved numbered pair's round trip, alone and then beside hostile clients — a flooder
//! sending as fast as the server takes it, a client pushing large frames at a reader that never reads, and
//! connections opened and closed as fast as they go. Issue 18's goal: whatever one connection does, an
//! unrelated pair's p99 stays ≤ 20 ms. Each phase is bounded by `--phase-seconds`; every hostile loop also
//! by a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{close_pairs, open_pair, ping, Env, Pair};
use crate::adapter::Adapter;
use crate::transport::{self, Peer};
use crate::{limits, payload, report};

#[derive(Debug, Clone, Args)]
pub struct FairArgs {
    /// Seconds of each phase (baseline, flood, stalled, churn, all).
    #[arg(long, default_value_t = 5.0)]
    pub phase_seconds: f64,
    /// Milliseconds between the numbered pair's round trips (a chat-like pace, under any budget).
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// Bytes of each flood message.
    #[arg(long, default_value_t = 300)]
    pub flood_size: usize,
    /// Bytes of each frame pushed at the stalled reader.
    #[arg(long, default_value_t = 512 * 1024)]
    pub big_size: usize,
    /// Connections being opened and closed at the same time in the churn phase.
    #[arg(long, default_value_t = 32)]
    pub churn_concurrency: usize,
}

/// A message not relayed within this time is lost: the pair's loop ends with an error.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bounds on every hostile loop, whatever the phase's length.
const MAX_FLOOD: u64 = 50_000_000;
const MAX_PUSHES: u64 = 1_000_000;
const MAX_CHURN: u64 = 10_000_000;
/// The goal of issue 18.
const GOAL_P99_US: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    Flood,
    Stalled,
    Churn,
}

const PHASES: [(&str, &[Hostile]); 5] = [
    ("baseline", &[]),
    ("flood", &[Hostile::Flood]),
    ("stalled", &[Hostile::Stalled]),
    ("churn", &[Hostile::Churn]),
    ("all", &[Hostile::Flood, Hostile::Stalled, Hostile::Churn]),
];

/// What the hostile clients got through in a phase.
#[derive(Default)]
struct Pressure {
    flood_messages: AtomicU64,
    pushed_bytes: AtomicU64,
    churned: AtomicU64,
    errors: AtomicU64,
}

pub async fn run<A: Adapter>(env: &Env<A>, args: &FairArgs) -> Result<(Value, String)> {
    if !(0.5..=600.0).contains(&args.phase_seconds)
        || !(1..=1000).contains(&args.interval_ms)
        || !(16..=1_000_000).contains(&args.flood_size)
        || !(16..=1_000_000).contains(&args.big_size)
        || !(1..=1000).contains(&args.churn_concurrency)
    {
        bail!(
            "need --phase-seconds within 0.5..=600, --interval-ms 1..=1000, --flood-size and --big-size \
             16..=1000000, --churn-concurrency 1..=1000"
        );
    }
    limits::require_nofile(2 * args.churn_concurrency as u64 + 256)?;
    let mut pair = open_pair(env, 0, &ping(0)).await?;
    let mut seq = 0u64;
    let mut phases = Vec::new();
    let mut summary = format!("fair [{}]:", env.adapter.name());
    let mut baseline_p99 = None;
    for (index, (name, hostile)) in PHASES.iter().enumerate() {
        let phase = Duration::from_secs_f64(args.phase_seconds);
        let deadline = tokio::time::Instant::now() + phase;
        let pressure = Arc::new(Pressure::default());
        let mut load = JoinSet::new();
        for (n, kind) in hostile.iter().enumerate() {
            let env = env.clone();
            let pressure = pressure.clone();
            let args = args.clone();
            // Pair numbers of their own, so that protocols with named rooms keep them apart.
            let pair_no = 1000 * (index as u64 + 1) + n as u64;
            load.spawn(async move {
                hostile_load(&env, *kind, pair_no, &args, deadline, &pressure).await
            });
        }
        let (rtt, error) = numbered(
            &*env.adapter,
            &mut pair,
            &mut seq,
            args.interval_ms,
            deadline,
        )
        .await;
        while load.join_next().await.is_some() {}
        if let Some(e) = error {
            bail!("the numbered pair failed in the {name} phase: {e}");
        }
        let p99 = (!rtt.is_empty()).then(|| rtt.value_at_quantile(0.99));
        if *name == "baseline" {
            baseline_p99 = p99;
        }
        let ratio = match (p99, baseline_p99) {
            (Some(p), Some(b)) if b > 0 => Some(report::round2(p as f64 / b as f64)),
            _ => None,
        };
        let p = |a: &AtomicU64| a.load(Ordering::Relaxed);
        phases.push(json!({
            "phase": name,
            "rtt": report::latency_json(&rtt),
            "p99_vs_baseline": ratio,
            "goal_met": p99.map(|p| p <= GOAL_P99_US),
            "flood_messages": p(&pressure.flood_messages),
            "pushed_bytes": p(&pressure.pushed_bytes),
            "connections_churned": p(&pressure.churned),
            "hostile_errors": p(&pressure.errors),
        }));
        summary.push_str(&format!(
            "\n  {name:>8}: {} (p99 ÷ baseline: {}); flood {} msgs, pushed {} MiB, churned {} connections",
            report::latency_line(&rtt),
            ratio.map_or("-".into(), |r| format!("{r:.2}")),
            p(&pressure.flood_messages),
            p(&pressure.pushed_bytes) >> 20,
            p(&pressure.churned),
        ));
    }
    close_pairs(vec![pair], 1).await;
    let result = json!({
        "workload": "fair",
        "adapter": env.adapter.name(),
        "phase_seconds": args.phase_seconds,
        "interval_ms": args.interval_ms,
        "numbered_round_trips": seq,
        "goal_p99_us": GOAL_P99_US,
        "phases": phases,
    });
    Ok((result, summary))
}

/// The well-behaved pair: the creator sends message `seq`, the joiner checks it is the next one and echoes
/// it, the creator checks the echo; one round trip every `interval_ms` until `deadline`.
async fn numbered<A: Adapter>(
    adapter: &A,
    pair: &mut Pair,
    seq: &mut u64,
    interval_ms: u64,
    deadline: tokio::time::Instant,
) -> (Histogram<u64>, Option<String>) {
    let mut rtt = report::latency_histogram();
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        let msg: Utf8Bytes = payload::candidate(*seq).into();
        let sent_at = Instant::now();
        let trip = async {
            adapter.send(&mut pair.creator, msg.clone()).await?;
            let there = recv_within(adapter, &mut pair.joiner).await?;
            if there != msg {
                bail!("message {} arrived as {:.60}", *seq, there.as_str());
            }
            adapter.send(&mut pair.joiner, there).await?;
            let back = recv_within(adapter, &mut pair.creator).await?;
            if back != msg {
                bail!(
                    "echo of message {} came back as {:.60}",
                    *seq,
                    back.as_str()
                );
            }
            Ok(())
        };
        if let Err(e) = trip.await {
            return (rtt, Some(format!("{e:#}")));
        }
        report::record(&mut rtt, sent_at.elapsed());
        *seq += 1;
    }
    (rtt, None)
}

async fn recv_within<A: Adapter>(adapter: &A, peer: &mut Peer) -> Result<Utf8Bytes> {
    timeout(RECV_TIMEOUT, adapter.recv(peer))
        .await
        .map_err(|_| anyhow!("no message relayed within {RECV_TIMEOUT:?}"))?
}

/// One hostile client (or set of them) until `deadline`; its connections are dropped without a close
/// handshake at the end (a throttled flooder's close would wait behind its backlog).
async fn hostile_load<A: Adapter>(
    env: &Env<A>,
    kind: Hostile,
    pair_no: u64,
    args: &FairArgs,
    deadline: tokio::time::Instant,
    pressure: &Pressure,
) {
    let failed = match kind {
        Hostile::Flood => flood(env, pair_no, args.flood_size, deadline, pressure).await,
        Hostile::Stalled => push_at_stalled(env, pair_no, args.big_size, deadline, pressure).await,
        Hostile::Churn => churn(env, pair_no, args.churn_concurrency, deadline, pressure).await,
    };
    if failed.is_err() {
        pressure.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The creator sends as fast as the server takes it; the joiner reads everything.
async fn flood<A: Adapter>(
    env: &Env<A>,
    pair_no: u64,
    size: usize,
    deadline: tokio::time::Instant,
    pressure: &Pressure,
) -> Result<()> {
    let Pair {
        mut creator,
        mut joiner,
    } = open_pair(env, pair_no, &ping(pair_no)).await?;
    let adapter = &*env.adapter;
    let msg: Utf8Bytes = payload::sdp_message("offer", 0, size).into();
    let send = async {
        for _ in 0..MAX_FLOOD {
            adapter.send(&mut creator, msg.clone()).await?;
            pressure.flood_messages.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(())
    };
    let drain = async {
        for _ in 0..MAX_FLOOD {
            adapter.recv(&mut joiner).await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    match timeout_at(deadline, async { tokio::try_join!(send, drain) }).await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The creator pushes `size`-byte frames as fast as the server takes them; the joiner never reads (the
/// server closes it once its queue passes the bound, and the pushes then go to nobody, still read).
async fn push_at_stalled<A: Adapter>(
    env: &Env<A>,
    pair_no: u64,
    size: usize,
    deadline: tokio::time::Instant,
    pressure: &Pressure,
) -> Result<()> {
    let Pair {
        mut creator,
        joiner: _stalled,
    } = open_pair(env, pair_no, &ping(pair_no)).await?;
    let adapter = &*env.adapter;
    let big: Utf8Bytes = payload::sdp_message("offer", 0, size).into();
    let push = async {
        for _ in 0..MAX_PUSHES {
            adapter.send(&mut creator, big.clone()).await?;
            pressure
                .pushed_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(())
    };
    match timeout_at(deadline, push).await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// `concurrency` loops, each opening a connection and closing it with a close handshake.
async fn churn<A: Adapter>(
    env: &Env<A>,
    pair_no: u64,
    concurrency: usize,
    deadline: tokio::time::Instant,
    pressure: &Pressure,
) -> Result<()> {
    let loops = (0..concurrency).map(|n| async move {
        for i in 0..MAX_CHURN {
            let source = env.source(i * concurrency as u64 + n as u64);
            let peer = env.adapter.connect(pair_no, source).await?;
            transport::close(peer).await;
            pressure.churned.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(())
    });
    let all = futures_util::future::try_join_all(loops);
    match timeout_at(deadline, all).await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}
