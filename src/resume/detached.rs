//! The detached task: while a resumable peer has no connection, it holds the peer's mailbox,
//! numbers and keeps every frame that arrives for it (as the connection would have sent it),
//! and ends the session at the window's end (`left`, reason `timeout`) or at once past the
//! bounds (`overflow`), unless a resume takes the peer first.
use super::{kept, wire::Failure, Parked, Sessions, MAX_DETACHED_BYTES};
use crate::hooks::TerminateReason;
use crate::mailbox::{Control, Delivered};
use crate::registry::PeerId;
use futures_lite::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use supervisors::StopReason;

enum Wake {
    Delivered(Option<Delivered>),
    Takeover(Option<async_channel::Sender<Parked>>),
    Deadline,
}

pub(super) fn spawn(
    sessions: Arc<Sessions>,
    peer: PeerId,
    generation: u64,
    deadline: Instant,
    parked: Parked,
    requests: async_channel::Receiver<async_channel::Sender<Parked>>,
    frames: Arc<AtomicUsize>,
) {
    drop(bastion::executor::spawn(async move {
        hold(
            sessions, peer, generation, deadline, parked, requests, frames,
        )
        .await;
    }));
}

async fn hold(
    sessions: Arc<Sessions>,
    peer: PeerId,
    generation: u64,
    deadline: Instant,
    mut parked: Parked,
    requests: async_channel::Receiver<async_channel::Sender<Parked>>,
    frames: Arc<AtomicUsize>,
) {
    // What this session adds to the bytes kept across all detached peers, given back on exit.
    let mut charged = parked.handler.kept_bytes();
    sessions.detached_bytes.fetch_add(charged, Ordering::AcqRel);
    frames.store(parked.handler.kept_frames(), Ordering::Relaxed);
    let mut timer = crate::deadline::after(deadline.saturating_duration_since(Instant::now()));
    let mut ending: Option<Failure> = None;
    loop {
        if let Some(failure) = ending.take() {
            if sessions.expire(peer, generation, failure) {
                sessions.detached_bytes.fetch_sub(charged, Ordering::AcqRel);
                let reason = match failure {
                    Failure::Expired => {
                        sessions.counters.expired.fetch_add(1, Ordering::Relaxed);
                        Some("timeout")
                    }
                    Failure::Overflow => {
                        sessions.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                        Some("overflow")
                    }
                    _ => None,
                };
                log::info!(
                    "peer {peer}: resume window ended ({})",
                    reason.unwrap_or("left")
                );
                let terminate = match failure {
                    Failure::Overflow => TerminateReason::Server(1008, "resume overflow".into()),
                    _ => TerminateReason::Closed,
                };
                sessions.finish(peer, parked, reason, terminate);
                return;
            }
            // A resume came first: its request is on its way, and is served below. Nothing
            // more is kept meanwhile.
        }
        let wake = {
            let rx = parked.inbox.receiver();
            let delivered = async { Wake::Delivered(rx.get_mut().next().await) };
            let takeover = async { Wake::Takeover(requests.recv().await.ok()) };
            let expired = async {
                (&mut timer).await;
                Wake::Deadline
            };
            futures_lite::future::or(takeover, futures_lite::future::or(expired, delivered)).await
        };
        match wake {
            Wake::Takeover(Some(to)) => {
                sessions.detached_bytes.fetch_sub(charged, Ordering::AcqRel);
                if let Err(e) = to.try_send(parked) {
                    // The resume gave up waiting: detached again, by a task of its own.
                    sessions.requeue(peer, e.into_inner());
                }
                return;
            }
            Wake::Takeover(None) => {}
            Wake::Deadline => ending = Some(Failure::Expired),
            Wake::Delivered(None) => ending = Some(Failure::Left),
            Wake::Delivered(Some(Delivered::Control(control))) => match control {
                Control::Overflow => ending = Some(Failure::Overflow),
                Control::Stop(StopReason::Shutdown) | Control::Stop(StopReason::SupervisorDown) => {
                    ending = Some(Failure::Left)
                }
                // Nothing to crash or replace while no connection serves the peer.
                Control::Crash | Control::Replaced => {}
            },
            Wake::Delivered(Some(Delivered::Message(msg))) => {
                parked.inbox.taken(&msg);
                parked.handler.keep(msg);
                let now = parked.handler.kept_bytes();
                let total = if now >= charged {
                    sessions
                        .detached_bytes
                        .fetch_add(now - charged, Ordering::AcqRel)
                        + (now - charged)
                } else {
                    sessions
                        .detached_bytes
                        .fetch_sub(charged - now, Ordering::AcqRel)
                        - (charged - now)
                };
                charged = now;
                frames.store(parked.handler.kept_frames(), Ordering::Relaxed);
                sessions
                    .counters
                    .frames_kept
                    .fetch_add(1, Ordering::Relaxed);
                if parked.handler.kept_over_bounds() || total > MAX_DETACHED_BYTES {
                    log::warn!(
                        "peer {peer}: {} frames, {} bytes kept while detached: over the bound of {} frames or {} bytes",
                        parked.handler.kept_frames(),
                        now,
                        kept::MAX_FRAMES,
                        kept::MAX_BYTES
                    );
                    ending = Some(Failure::Overflow);
                }
            }
        }
    }
}
