//! `ceiling`: a minimal book-protocol relay on 127.0.0.1, the practical upper bound for rtcserver's figures.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::{TcpListener, TcpSocket};

use loadgen::ceiling::{self, rooms::Rooms};
use loadgen::limits;

#[derive(Debug, Parser)]
#[command(
    name = "ceiling",
    version,
    about = "Minimal book-protocol relay (GETROOM/ENTERROOM/verbatim relay) on 127.0.0.1"
)]
struct Cli {
    /// TCP port on 127.0.0.1.
    #[arg(long, default_value_t = 30000)]
    port: u16,
    /// Seconds after which the server exits by itself, so a forgotten benchmark server does not linger.
    #[arg(long, default_value_t = 3600)]
    lifetime: u64,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bursts of thousands of connects would overflow tokio's default backlog (1024) and cost a 1 s SYN
/// retransmit each; the kernel still caps this at net.core.somaxconn.
const BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // A restarted ceiling must not wait for the previous one's TIME_WAIT sockets to expire.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn run(cli: &Cli) -> Result<()> {
    let nofile = limits::raise_nofile(1 << 20);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        // Loopback only: this server is for benchmarks on this machine.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, cli.port));
        let listener = listen(addr).with_context(|| format!("binding {addr}"))?;
        eprintln!(
            "ceiling: listening on ws://{addr}/ (pid {}, RLIMIT_NOFILE {nofile})",
            std::process::id()
        );
        let lifetime = Duration::from_secs(cli.lifetime);
        if tokio::time::timeout(
            lifetime,
            ceiling::serve(listener, Arc::new(Rooms::default())),
        )
        .await
        .is_err()
        {
            eprintln!("ceiling: --lifetime of {lifetime:?} reached, exiting");
        }
        Ok(())
    })
}
