//! `loadgen`: drives a running signaling server on this machine and prints one JSON line of results.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use loadgen::adapter::book::Book;
use loadgen::adapter::matchbox::Matchbox;
use loadgen::adapter::peerjs::PeerJs;
use loadgen::adapter::rooms::Rooms;
use loadgen::adapter::{Adapter, AdapterKind};
use loadgen::target::{self, Target};
use loadgen::workload::{fair, hold, rate, relay, setup, soak, Env};
use loadgen::{limits, report};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for WebRTC signaling servers (loopback only)"
)]
struct Cli {
    /// The server's WebSocket endpoint; must be on loopback (127.0.0.0/8).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:30000/")]
    url: String,
    /// Where each pair's second peer (the joiner) connects, if not to --url: another node of a
    /// cluster, to split every pair across two nodes (loopback only, as --url).
    #[arg(long, global = true)]
    joiner_url: Option<String>,
    /// The signaling protocol the server speaks.
    #[arg(long, global = true, value_enum, default_value_t = AdapterKind::Book)]
    adapter: AdapterKind,
    /// Local loopback addresses to connect from, round-robin (each gives ~28k more connections).
    #[arg(long, global = true, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// Hard limit on the whole run, in seconds, whatever the workload's own bounds.
    #[arg(long, global = true, default_value_t = 900)]
    time_limit: u64,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Open many pairs, hold them idle: RSS per connection, idle CPU, pairs/s, RSS after close.
    Hold(hold::HoldArgs),
    /// Closed-loop ping-pong of SDP-sized messages: msgs/s and round-trip latency.
    Relay(relay::RelayArgs),
    /// Full call setups back to back: setups/s and setup latency.
    Setup(setup::SetupArgs),
    /// Open-loop relay at a fixed rate: latency from the intended send time.
    Rate(rate::RateArgs),
    /// A numbered pair's round trip alone, then beside a flood, a stalled reader and churn.
    Fair(fair::FairArgs),
    /// Minutes of mixed traffic on both endpoints (book `/` and `/socket/:room`; `--adapter` is not
    /// used): RSS and descriptors back within 10 % afterwards, no message lost by a well-behaved pair.
    Soak(soak::SoakArgs),
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Self::Hold(_) => "hold",
            Self::Relay(_) => "relay",
            Self::Setup(_) => "setup",
            Self::Rate(_) => "rate",
            Self::Fair(_) => "fair",
            Self::Soak(_) => "soak",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&cli, &anyhow!(e).context("starting the tokio runtime")),
    };
    match runtime.block_on(run(&cli)) {
        Ok((result, summary)) => {
            report::emit(&result, &summary);
            // A soak reports its figures either way, and fails the command when its checks did not pass.
            if result["passed"] == Value::Bool(false) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(&cli, &e),
    }
}

/// Errors are reported like results, as one JSON line, so a script driving many runs can keep parsing.
fn fail(cli: &Cli, e: &anyhow::Error) -> ExitCode {
    eprintln!("loadgen: error: {e:#}");
    println!(
        "{}",
        json!({"workload": cli.workload.name(), "adapter": cli.adapter.name(), "error": format!("{e:#}")})
    );
    ExitCode::FAILURE
}

async fn run(cli: &Cli) -> Result<(Value, String)> {
    let target = Target::parse(&cli.url)?;
    let sources: Arc<[IpAddr]> = target::parse_sources(&cli.source_addrs, &target)?.into();
    // Raised up front for every workload; `hold` checks again against the count it needs.
    limits::raise_nofile(0);
    if let Workload::Soak(args) = &cli.workload {
        // The soak's own bound, when it is longer than --time-limit's default.
        let limit = Duration::from_secs(cli.time_limit).max(soak::bound(args));
        return tokio::time::timeout(limit, soak::run(&target, sources, args))
            .await
            .map_err(|_| anyhow!("soak stopped after {limit:?}"))?;
    }
    let joiner = cli.joiner_url.as_deref().map(Target::parse).transpose()?;
    match cli.adapter {
        AdapterKind::Book => drive(cli, Book::new(target), joiner.map(Book::new), sources).await,
        AdapterKind::Rooms => drive(cli, Rooms::new(target), joiner.map(Rooms::new), sources).await,
        AdapterKind::Matchbox => {
            drive(
                cli,
                Matchbox::new(target),
                joiner.map(Matchbox::new),
                sources,
            )
            .await
        }
        AdapterKind::Peerjs => {
            drive(cli, PeerJs::new(target), joiner.map(PeerJs::new), sources).await
        }
    }
}

async fn drive<A: Adapter>(
    cli: &Cli,
    adapter: A,
    joiner: Option<A>,
    sources: Arc<[IpAddr]>,
) -> Result<(Value, String)> {
    let adapter = Arc::new(adapter);
    let env = Env {
        joiner: joiner.map_or_else(|| Arc::clone(&adapter), Arc::new),
        adapter,
        sources,
    };
    let limit = Duration::from_secs(cli.time_limit);
    tokio::time::timeout(limit, run_workload(&env, &cli.workload))
        .await
        .map_err(|_| anyhow!("run stopped by --time-limit after {limit:?}"))?
}

async fn run_workload<A: Adapter>(env: &Env<A>, workload: &Workload) -> Result<(Value, String)> {
    match workload {
        Workload::Hold(args) => hold::run(env, args).await,
        Workload::Relay(args) => relay::run(env, args).await,
        Workload::Setup(args) => setup::run(env, args).await,
        Workload::Rate(args) => rate::run(env, args).await,
        Workload::Fair(args) => fair::run(env, args).await,
        Workload::Soak(_) => Err(anyhow!("the soak drives both endpoints itself (see run)")),
    }
}
