//! The soak's well-behaved and badly-behaved clients. Every loop runs until the phase's `stop` instant and
//! every wait in it is bounded, so a server that stops answering ends a loop with a counted failure rather
//! than a hang.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::super::{open_pair, ping, setup, Env, Pair};
use crate::adapter::Adapter;
use crate::payload;
use crate::transport::{self, Closed, Peer, PeerRx};

/// What one phase of traffic did, counted by every task at once.
#[derive(Default)]
pub struct Tally {
    pub pair_sent: AtomicU64,
    pub pair_received: AtomicU64,
    /// Messages of a well-behaved pair that never came, or came out of order.
    pub pair_lost: AtomicU64,
    /// Well-behaved pairs that could not be opened or ended before the phase did.
    pub pair_broken: AtomicU64,
    pub churned: AtomicU64,
    pub churn_failed: AtomicU64,
    pub setups: AtomicU64,
    pub setups_failed: AtomicU64,
    pub garbage: AtomicU64,
    pub slow_rounds: AtomicU64,
    pub slow_bytes: AtomicU64,
    /// How each badly-behaved connection ended, by kind: `book-text 1007`, `http-junk 400`, ...
    pub endings: Mutex<BTreeMap<String, u64>>,
    /// Closes with 1011 (a crash in the server) seen by anyone.
    pub internal_errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, what: &str, e: &anyhow::Error) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{what}: {e:#}"));
    }

    pub fn ended(&self, kind: &str, how: &str) {
        if how == "1011" {
            Self::add(&self.internal_errors, 1);
        }
        let mut endings = self.endings.lock().unwrap_or_else(|p| p.into_inner());
        *endings.entry(format!("{kind} {how}")).or_default() += 1;
    }

    pub fn json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let endings = self
            .endings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "pair_messages_sent": get(&self.pair_sent),
            "pair_messages_received": get(&self.pair_received),
            "pair_messages_lost": get(&self.pair_lost),
            "pairs_broken": get(&self.pair_broken),
            "churned_connections": get(&self.churned),
            "churn_failures": get(&self.churn_failed),
            "setups": get(&self.setups),
            "setup_failures": get(&self.setups_failed),
            "garbage_connections": get(&self.garbage),
            "slow_reader_rounds": get(&self.slow_rounds),
            "slow_reader_bytes_sent": get(&self.slow_bytes),
            "endings": endings,
            "internal_errors_1011": get(&self.internal_errors),
            "first_error": self.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }
}

/// Messages each side of a numbered pair sends before it waits for them all to arrive.
const BURST: u64 = 8;
/// The pause between bursts: a pair relays about 2 × BURST messages per pause, a chat's pace rather than a
/// flood (the floods are the slow readers').
const PACE: Duration = Duration::from_millis(100);
/// A numbered message not relayed within this time counts as lost.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Opening a pair, one setup, one badly-behaved connection: each is given up after this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// A well-behaved pair for the whole phase: each side sends numbered messages in bursts and the other
/// checks that every one arrives, in order.
pub async fn numbered<A: Adapter>(env: Env<A>, index: u64, size: usize, stop: Instant, t: &Tally) {
    let mut pair = match timeout(STEP_TIMEOUT, open_pair(&env, index, &ping(index))).await {
        Ok(Ok(pair)) => pair,
        failed => {
            Tally::add(&t.pair_broken, 1);
            t.error("opening a numbered pair", &flatten(failed));
            return;
        }
    };
    let adapter = &*env.adapter;
    // The next number each way: creator to joiner, joiner to creator.
    let (mut down, mut up) = (0u64, 0u64);
    while Instant::now() < stop {
        let trip = async {
            burst(
                adapter,
                &mut pair.creator,
                &mut pair.joiner,
                &mut down,
                size,
                t,
            )
            .await?;
            burst(
                adapter,
                &mut pair.joiner,
                &mut pair.creator,
                &mut up,
                size,
                t,
            )
            .await
        };
        if let Err(e) = trip.await {
            Tally::add(&t.pair_broken, 1);
            t.error("a numbered pair", &e);
            return;
        }
        sleep(PACE).await;
    }
    close_pair(pair).await;
}

async fn burst<A: Adapter>(
    adapter: &A,
    from: &mut Peer,
    to: &mut Peer,
    next: &mut u64,
    size: usize,
    t: &Tally,
) -> Result<()> {
    let first = *next;
    for seq in first..first + BURST {
        adapter
            .send(from, payload::sdp_message("offer", seq, size).into())
            .await?;
        Tally::add(&t.pair_sent, 1);
    }
    for want in first..first + BURST {
        let got = match timeout(RECV_TIMEOUT, adapter.recv(to)).await {
            Ok(got) => got?,
            Err(_) => {
                Tally::add(&t.pair_lost, first + BURST - want);
                bail!("message {want} not relayed within {RECV_TIMEOUT:?}");
            }
        };
        match payload::seq_of(&got) {
            Some(seq) if seq == want => Tally::add(&t.pair_received, 1),
            seq => {
                Tally::add(&t.pair_lost, first + BURST - want);
                bail!("expected message {want}, got {seq:?}");
            }
        }
    }
    *next = first + BURST;
    Ok(())
}

/// Connect, join, leave, over and over; one round in four drops both sockets without a close handshake,
/// as a phone losing its network would.
pub async fn churn<A: Adapter>(env: Env<A>, indices: &AtomicU64, stop: Instant, t: &Tally) {
    while Instant::now() < stop {
        let index = indices.fetch_add(1, Ordering::Relaxed);
        match timeout(STEP_TIMEOUT, open_pair(&env, index, &ping(index))).await {
            Ok(Ok(pair)) if index % 4 == 0 => drop(pair),
            Ok(Ok(pair)) => {
                close_pair(pair).await;
            }
            failed => {
                Tally::add(&t.churn_failed, 1);
                t.error("churn", &flatten(failed));
                sleep(PACE).await;
                continue;
            }
        }
        Tally::add(&t.churned, 2);
        sleep(PACE / 4).await;
    }
}

/// Whole call setups back to back (tools/loadgen's `setup` workload, one worker).
pub async fn setups<A: Adapter>(
    env: Env<A>,
    indices: &AtomicU64,
    size: usize,
    stop: Instant,
    t: &Tally,
) {
    while Instant::now() < stop {
        let index = indices.fetch_add(1, Ordering::Relaxed);
        match timeout(STEP_TIMEOUT, setup::one_setup(&env, index, size)).await {
            Ok(Ok(_)) => Tally::add(&t.setups, 1),
            failed => {
                Tally::add(&t.setups_failed, 1);
                t.error("a call setup", &flatten(failed));
                sleep(PACE).await;
            }
        }
        sleep(PACE / 4).await;
    }
}

/// A pair whose joiner stops reading while the creator sends large messages to it: the server must cut the
/// stalled reader off (1008, or a reset when its socket is full) without the well-behaved pairs noticing.
pub async fn slow_reader<A: Adapter>(
    env: Env<A>,
    indices: &AtomicU64,
    max_bytes: u64,
    stop: Instant,
    t: &Tally,
) {
    const SIZE: usize = 32 * 1024;
    /// How long one round may push at the stalled reader.
    const PUSH_FOR: Duration = Duration::from_secs(20);
    while Instant::now() < stop {
        let index = indices.fetch_add(1, Ordering::Relaxed);
        let mut pair = match timeout(STEP_TIMEOUT, open_pair(&env, index, &ping(index))).await {
            Ok(Ok(pair)) => pair,
            failed => {
                t.error("opening a slow reader's pair", &flatten(failed));
                sleep(PACE).await;
                continue;
            }
        };
        let adapter = &*env.adapter;
        let began = Instant::now();
        let (mut sent, mut seq) = (0u64, 0u64);
        while sent < max_bytes && began.elapsed() < PUSH_FOR {
            let msg: Utf8Bytes = payload::sdp_message("offer", seq, SIZE).into();
            // A send that blocks this long means the server stopped reading the sender: TCP pushing back.
            match timeout(RECV_TIMEOUT, adapter.send(&mut pair.creator, msg)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            sent += SIZE as u64;
            seq += 1;
        }
        Tally::add(&t.slow_bytes, sent);
        // A send returns once the kernel holds the bytes: the server may not have read them yet.
        // Reading now would drain the stalled reader while the server still relays, and the
        // bound might never be reached. The server answers a ping after every frame sent before
        // it, so its pong means the whole push was read and relayed towards the joiner.
        if let Err(e) = read_up_to_pong(&mut pair.creator, PUSH_FOR).await {
            t.error("waiting for the server to read a slow reader's push", &e);
        }
        // What the stalled reader finds when it reads again: the backlog, then how the server ended it.
        let max_frames = max_bytes / SIZE as u64 + 64;
        let how = ending(&mut pair.joiner.rx, max_frames, PUSH_FOR).await;
        t.ended(&format!("slow-reader-{}", adapter.name()), &how);
        transport::close(pair.creator).await;
        Tally::add(&t.slow_rounds, 1);
    }
}

/// Sends a ping and reads until its pong (other messages are dropped), within `limit`.
async fn read_up_to_pong(peer: &mut Peer, limit: Duration) -> Result<()> {
    let wait = async {
        peer.tx
            .send(Message::Ping(Vec::from(*b"pushed").into()))
            .await?;
        loop {
            match peer.rx.next().await {
                Some(Ok(Message::Pong(_))) => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before the pong"),
            }
        }
    };
    timeout(limit, wait)
        .await
        .map_err(|_| anyhow!("no pong within {limit:?}"))?
}

/// How a connection ends as seen by its reader: the close code, `eof` (a reset or a close without a
/// frame), or `open` if it was still open after `max_frames` frames or `limit`.
pub async fn ending(rx: &mut PeerRx, max_frames: u64, limit: Duration) -> String {
    let read = async {
        for _ in 0..max_frames {
            match rx.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code).to_string(),
                Some(Ok(Message::Close(None))) => return "close-without-code".to_string(),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return "eof".to_string(),
            }
        }
        "open".to_string()
    };
    timeout(limit, read)
        .await
        .unwrap_or_else(|_| "open".to_string())
}

async fn close_pair(pair: Pair) -> (Closed, Closed) {
    tokio::join!(
        transport::close(pair.creator),
        transport::close(pair.joiner)
    )
}

fn flatten<T>(failed: Result<Result<T>, tokio::time::error::Elapsed>) -> anyhow::Error {
    match failed {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => anyhow!("no error"),
        Err(_) => anyhow!("timed out after {STEP_TIMEOUT:?}"),
    }
}
