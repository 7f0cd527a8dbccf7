//! The workloads, one per subcommand, and what they share: opening many pairs at bounded concurrency and
//! closing them again.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use crate::adapter::Adapter;
use crate::report;
use crate::transport::{self, Closed, Peer};

pub mod fair;
pub mod hold;
pub mod rate;
pub mod relay;
pub mod setup;
pub mod soak;

/// What every workload gets from the command line besides its own flags.
pub struct Env<A> {
    pub adapter: Arc<A>,
    /// The joiner's: the same as `adapter`, or one for another node (`--joiner-url`).
    pub joiner: Arc<A>,
    /// Local addresses to connect from, used round-robin; empty lets the kernel choose.
    pub sources: Arc<[IpAddr]>,
}

impl<A> Clone for Env<A> {
    fn clone(&self) -> Self {
        Self {
            adapter: self.adapter.clone(),
            joiner: self.joiner.clone(),
            sources: self.sources.clone(),
        }
    }
}

impl<A> Env<A> {
    /// Both peers of every pair on `adapter`'s server.
    pub fn new(adapter: A, sources: Arc<[IpAddr]>) -> Self {
        let adapter = Arc::new(adapter);
        Env {
            joiner: Arc::clone(&adapter),
            adapter,
            sources,
        }
    }

    /// The source address of the `conn`-th connection of a run.
    pub fn source(&self, conn: u64) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let at = usize::try_from(conn % self.sources.len() as u64).unwrap_or(0);
        self.sources.get(at).copied()
    }
}

/// Two peers alone in one room.
pub struct Pair {
    pub creator: Peer,
    pub joiner: Peer,
}

/// The first payload a joiner sends: it only proves that the join went through.
pub fn ping(seq: u64) -> String {
    format!(r#"{{"type":"ping","seq":{seq}}}"#)
}

/// Connects both peers of pair `index` and puts them in one room.
pub async fn open_pair<A: Adapter>(env: &Env<A>, index: u64, first: &str) -> Result<Pair> {
    let (creator, joiner) = tokio::try_join!(
        env.adapter.connect(index, env.source(2 * index)),
        env.joiner.connect(index, env.source(2 * index + 1)),
    )?;
    let (mut creator, mut joiner) = (creator, joiner);
    env.adapter.pair(&mut creator, &mut joiner, first).await?;
    Ok(Pair { creator, joiner })
}

/// The outcome of opening many pairs.
pub struct Opened {
    pub pairs: Vec<Pair>,
    pub failed: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Connect + join time of each successful pair.
    pub latency: Histogram<u64>,
}

fn collect(opened: &mut Opened, done: Result<Result<(Pair, Duration)>, JoinError>) {
    match done.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok((pair, took)) => {
            report::record(&mut opened.latency, took);
            opened.pairs.push(pair);
        }
        Err(e) => {
            opened.failed += 1;
            opened.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
}

/// Past this many failures the server is clearly refusing; going on would only add timeouts.
fn failure_budget(count: u64) -> u64 {
    10 + count / 100
}

/// Opens `count` pairs, at most `concurrency` at a time, each in its own task so the handshakes spread over
/// the runtime's threads.
pub async fn open_pairs<A: Adapter>(env: &Env<A>, count: u64, concurrency: usize) -> Opened {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut opened = Opened {
        pairs: Vec::with_capacity(usize::try_from(count).unwrap_or(0)),
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency: report::latency_histogram(),
    };
    for index in 0..count {
        if opened.failed > failure_budget(count) {
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let env = env.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let pair = open_pair(&env, index, &ping(index)).await?;
            drop(permit);
            Ok((pair, t.elapsed()))
        });
        while let Some(done) = tasks.try_join_next() {
            collect(&mut opened, done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(&mut opened, done);
    }
    opened.elapsed = started.elapsed();
    opened
}

/// Closes every pair with a WebSocket close handshake; returns (clean, unclean) connection counts.
pub async fn close_pairs(pairs: Vec<Pair>, concurrency: usize) -> (u64, u64) {
    let peers = pairs
        .into_iter()
        .flat_map(|p| [p.creator, p.joiner])
        .collect();
    close_peers(peers, 2 * concurrency).await
}

/// Closes connections, at most `concurrency` at a time; returns (clean, unclean) counts.
pub async fn close_peers(peers: Vec<Peer>, concurrency: usize) -> (u64, u64) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let (mut clean, mut unclean) = (0u64, 0u64);
    let mut count = |closed: Result<Closed, JoinError>| match closed {
        Ok(Closed::Clean) => clean += 1,
        _ => unclean += 1,
    };
    for peer in peers {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        tasks.spawn(async move {
            let closed = transport::close(peer).await;
            drop(permit);
            closed
        });
        while let Some(done) = tasks.try_join_next() {
            count(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        count(done);
    }
    (clean, unclean)
}
