//! `hold`: many idle pairs at once — what a connection costs the server in memory and idle CPU, how fast
//! pairs can be set up, and whether the memory comes back once they are gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

use super::{close_pairs, open_pairs, ping, Env, Pair};
use crate::adapter::Adapter;
use crate::{limits, procfs, report};

#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    /// Connections to open, joined two by two into rooms (must be even).
    #[arg(long)]
    pub connections: u64,
    /// The server's pid, to read its RSS and CPU time from /proc; without it only rates are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// How long to hold all connections idle while measuring the server's CPU.
    #[arg(long, default_value_t = 5.0)]
    pub hold_seconds: f64,
    /// Pairs being opened (or closed) at the same time.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
}

/// Time for the server to finish whatever the burst of joins left behind before its RSS is read.
const SETTLE: Duration = Duration::from_secs(2);
/// RSS after close is polled this often, until it has made no new low for `RSS_FLAT_POLLS`
/// polls in a row (allocators that purge in the background give memory back in steps) or
/// `RSS_POLLS` polls have passed.
const RSS_POLL: Duration = Duration::from_millis(500);
const RSS_FLAT_POLLS: u32 = 4;
const RSS_POLLS: u32 = 24;

pub async fn run<A: Adapter>(env: &Env<A>, args: &HoldArgs) -> Result<(Value, String)> {
    if args.connections < 2 || args.connections % 2 != 0 {
        bail!("--connections must be an even number ≥ 2 (connections are joined in pairs)");
    }
    if !(0.0..=3600.0).contains(&args.hold_seconds) {
        bail!("--hold-seconds must be within 0..=3600");
    }
    limits::require_nofile(args.connections + 256)?;
    let ports = limits::ephemeral_ports() * env.sources.len().max(1) as u64;
    if args.connections > ports {
        bail!(
            "{} connections need more than the {ports} ephemeral ports of {} source address(es): \
             pass --source-addrs 127.0.0.1,127.0.0.2,... (one per ~{} connections)",
            args.connections,
            env.sources.len().max(1),
            limits::ephemeral_ports()
        );
    }
    let pid = args.server_pid;
    let rss_before = pid.map(procfs::rss_kib).transpose()?;

    let opened = open_pairs(env, args.connections / 2, args.concurrency).await;
    if opened.pairs.is_empty() {
        bail!(
            "no pair could be opened: {}",
            opened.first_error.as_deref().unwrap_or("unknown error")
        );
    }
    let open_conns = 2 * opened.pairs.len() as u64;
    let pairs_per_sec = opened.pairs.len() as f64 / opened.elapsed.as_secs_f64().max(1e-9);

    sleep(SETTLE).await;
    let rss_held = pid.map(procfs::rss_kib).transpose()?;
    let client_rss = procfs::self_rss_kib();

    let cpu_before = pid.map(procfs::cpu_time).transpose()?;
    let hold_started = Instant::now();
    sleep(Duration::from_secs_f64(args.hold_seconds)).await;
    let held_for = hold_started.elapsed();
    let cpu_after = pid.map(procfs::cpu_time).transpose()?;
    let idle_cpu_percent = cpu_before.zip(cpu_after).map(|(a, b)| {
        report::round2(100.0 * b.saturating_sub(a).as_secs_f64() / held_for.as_secs_f64().max(1e-9))
    });

    let (pairs, alive) = verify_pairs(env, opened.pairs, args.concurrency).await;
    let (closed_clean, closed_unclean) = close_pairs(pairs, args.concurrency).await;
    let rss_after_close = match pid {
        Some(pid) => Some(settled_rss(pid).await?),
        None => None,
    };

    let rss_per_conn = rss_before.zip(rss_held).map(|(before, held)| {
        report::round2(held.saturating_sub(before) as f64 / open_conns as f64)
    });
    let result = json!({
        "workload": "hold",
        "adapter": env.adapter.name(),
        "connections_requested": args.connections,
        "connections_open": open_conns,
        "pairs": open_conns / 2,
        "failed_pairs": opened.failed,
        "first_error": opened.first_error,
        "connect_join_seconds": report::round2(opened.elapsed.as_secs_f64()),
        "pairs_per_sec": report::round2(pairs_per_sec),
        "pair_latency": report::latency_json(&opened.latency),
        "rss_before_kib": rss_before,
        "rss_held_kib": rss_held,
        "rss_per_conn_kib": rss_per_conn,
        "rss_after_close_kib": rss_after_close,
        "hold_seconds": report::round2(held_for.as_secs_f64()),
        "idle_cpu_percent": idle_cpu_percent,
        "alive_pairs_after_hold": alive,
        "closed_clean": closed_clean,
        "closed_unclean": closed_unclean,
        "client_rss_kib": client_rss,
    });
    let mut summary = format!(
        "hold [{}]: {open_conns}/{} connections open in {:.2} s = {pairs_per_sec:.0} pairs/s ({} failed{})\n  \
         pair connect+join: {}\n",
        env.adapter.name(),
        args.connections,
        opened.elapsed.as_secs_f64(),
        opened.failed,
        opened.first_error.as_ref().map(|e| format!(", first: {e}")).unwrap_or_default(),
        report::latency_line(&opened.latency),
    );
    if let (Some(before), Some(held), Some(per), Some(after)) =
        (rss_before, rss_held, rss_per_conn, rss_after_close)
    {
        summary += &format!(
            "  server RSS: {before} KiB before, {held} KiB held = {per:.2} KiB/connection, {after} KiB after close\n"
        );
    }
    if let Some(cpu) = idle_cpu_percent {
        summary += &format!(
            "  server CPU while idle-holding {:.1} s: {cpu:.2} %\n",
            held_for.as_secs_f64()
        );
    }
    summary += &format!(
        "  {alive}/{} pairs still relaying after the hold; closed {closed_clean} cleanly, {closed_unclean} not; \
         loadgen RSS {} KiB",
        open_conns / 2,
        client_rss.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
    );
    Ok((result, summary))
}

/// Sends one relayed message through every pair: a server that dropped idle peers shows up here.
async fn verify_pairs<A: Adapter>(
    env: &Env<A>,
    pairs: Vec<Pair>,
    concurrency: usize,
) -> (Vec<Pair>, u64) {
    const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (i, mut pair) in pairs.into_iter().enumerate() {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let adapter = env.adapter.clone();
        tasks.spawn(async move {
            let msg = ping(i as u64);
            let check = async {
                adapter.send(&mut pair.joiner, msg.clone().into()).await?;
                let got = adapter.recv(&mut pair.creator).await?;
                anyhow::Ok(got.as_str() == msg)
            };
            let ok = matches!(timeout(VERIFY_TIMEOUT, check).await, Ok(Ok(true)));
            drop(permit);
            (pair, ok)
        });
    }
    let mut kept = Vec::new();
    let mut alive = 0;
    while let Some(done) = tasks.join_next().await {
        if let Ok((pair, ok)) = done {
            alive += u64::from(ok);
            kept.push(pair);
        }
    }
    (kept, alive)
}

/// The server's RSS once it has stopped falling after the closes (allocators return memory lazily).
async fn settled_rss(pid: u32) -> Result<u64> {
    let mut low = procfs::rss_kib(pid)?;
    let mut flat = 0;
    for _ in 0..RSS_POLLS {
        sleep(RSS_POLL).await;
        let now = procfs::rss_kib(pid)?;
        if now < low {
            low = now;
            flat = 0;
        } else {
            flat += 1;
            if flat == RSS_FLAT_POLLS {
                return Ok(now);
            }
        }
    }
    procfs::rss_kib(pid)
}
