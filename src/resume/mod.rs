//! Resume sessions on `/socket/:room` (docs/rooms-protocol.md, "Resume"): a resumable peer whose
//! connection drops stays a member for a window, its frames kept in order, and a new connection
//! that presents its token takes its place, its mailbox and every frame it missed.
//!
//! The map:
//! - [`Sessions`] (here): the table of sessions, the one owner of every transition of a peer
//!   (attach, detach, resume, expiry, end), each taken under its lock.
//! - [`detached`]: the task that holds a detached peer's mailbox, keeps what arrives for it,
//!   and ends the session at the window's end or past the bounds.
//! - [`kept`]: the numbered frames a peer was sent and has not acknowledged.
//! - [`token`]: tokens and identities, hashed, compared in constant time.
//! - [`wire`]: the resume frames, with no I/O.
//!
//! Who holds a peer's [`Inbox`] is who serves it: a connection, or the detached task. It moves
//! between them only through this table, so a peer is never served twice and each drop ends in
//! exactly one of `resumed` or `left`.
pub mod admin;
pub mod detached;
pub mod kept;
pub mod token;
pub mod wire;

use crate::hooks::TerminateReason;
use crate::mailbox::{Control, Inbox, PeerRef};
use crate::named_peer::NamedPeer;
use crate::registry::{PeerId, Registry};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use token::{Identity, TokenHash};
use wire::Failure;

/// `--resume-window-ms` at most.
pub const MAX_WINDOW: Duration = Duration::from_millis(300_000);
/// Bytes kept across all detached peers at most; past it, the session that would pass it ends.
pub const MAX_DETACHED_BYTES: usize = 256 * 1024 * 1024;
/// How long a resume waits for the old connection to hand over (it closes with 4001 first).
const HANDOVER_WAIT: Duration = Duration::from_secs(5);
/// Ended sessions remembered, to answer a late resume with why (`expired`, `overflow`, `left`).
const TOMBSTONES: usize = 4096;
/// Retired tokens remembered per session, to log the reuse of one.
const RETIRED: usize = 4;

/// A peer's mailbox and protocol state, between two connections.
pub struct Parked {
    pub inbox: Inbox,
    pub handler: NamedPeer,
}

/// How a resumable peer's connection ended, as far as its session is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The network went, the client closed with another code than 1000, the connection was
    /// silent, or its process crashed: the peer is kept for the window.
    Detach,
    /// The client left (close 1000), or the server ended the peer: it leaves now.
    Leave,
}

/// What became of a peer when its connection ended.
pub enum AfterEnd {
    /// Kept for the window (or handed to a resume already waiting).
    Kept,
    /// The session is over: the caller drops what it holds and the room hears `left`.
    Over(Box<Parked>),
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct ResumeCounters {
    pub detaches: AtomicU64,
    pub resumed: AtomicU64,
    pub failed: [AtomicU64; 6],
    pub expired: AtomicU64,
    pub overflowed: AtomicU64,
    pub frames_kept: AtomicU64,
}

impl ResumeCounters {
    fn failed(&self, failure: Failure) {
        self.failed[failure as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A detached peer, for `/tree`.
#[derive(Debug, Clone)]
pub struct DetachedView {
    pub peer: PeerId,
    pub room: String,
    pub remaining: Duration,
    pub frames: usize,
}

struct Entry {
    room: String,
    identity: Identity,
    token: TokenHash,
    /// The token before the last rotation: valid until the first frame on the new connection.
    previous: Option<TokenHash>,
    retired: VecDeque<TokenHash>,
    generation: u64,
    state: State,
}

enum State {
    /// A connection holds the inbox; its mailbox takes the order to hand it over.
    Attached { mailbox: PeerRef },
    /// The detached task holds it until `deadline`.
    Detached {
        mailbox: PeerRef,
        deadline: Instant,
        frames: Arc<AtomicUsize>,
        takeover: async_channel::Sender<async_channel::Sender<Parked>>,
    },
    /// A resume waits for it.
    Handing { to: async_channel::Sender<Parked> },
}

struct Tomb {
    peer: PeerId,
    room: String,
    identity: Identity,
    tokens: [Option<TokenHash>; 2],
    failure: Failure,
}

/// The resume sessions of this node.
pub struct Sessions {
    window: Duration,
    table: Mutex<HashMap<PeerId, Entry>>,
    /// Notified when a session leaves the table.
    removed: event_listener::Event,
    tombs: Mutex<VecDeque<Tomb>>,
    detached_bytes: AtomicUsize,
    registry: Arc<Registry>,
    events: Arc<crate::events::Events>,
    pub counters: ResumeCounters,
    me: Weak<Sessions>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few map operations; a panic cannot leave one half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A resume that got its session: the new token, and what the old connection held.
pub struct Resumed {
    pub token: String,
    pub parked: Parked,
}

impl Sessions {
    /// `window` zero turns resume off: `?resumable=1` is then ignored.
    pub fn new(
        window: Duration,
        registry: Arc<Registry>,
        events: Arc<crate::events::Events>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Sessions {
            window: window.min(MAX_WINDOW),
            table: Mutex::new(HashMap::new()),
            removed: event_listener::Event::new(),
            tombs: Mutex::new(VecDeque::new()),
            detached_bytes: AtomicUsize::new(0),
            registry,
            events,
            counters: ResumeCounters::default(),
            me: me.clone(),
        })
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    /// A resumable peer joined: its session, attached to `mailbox`'s connection. The token for
    /// the client.
    pub fn open(&self, peer: PeerId, room: &str, identity: Identity, mailbox: PeerRef) -> String {
        let (token, hash) = token::issue();
        lock(&self.table).insert(
            peer,
            Entry {
                room: room.to_owned(),
                identity,
                token: hash,
                previous: None,
                retired: VecDeque::new(),
                generation: 1,
                state: State::Attached { mailbox },
            },
        );
        token
    }

    /// Whether `peer` has a session: its membership is then the session's to end, not its
    /// process's.
    pub fn holds(&self, peer: PeerId) -> bool {
        lock(&self.table).contains_key(&peer)
    }

    /// `peer`'s process ended (its supervisor's report, after everything the process did):
    /// whether its session still holds its membership. A session left attached to a dead
    /// mailbox (the process died before its connection could hand the peer over, e.g. a hook
    /// panicked during the welcome) ends here, so that nothing is left behind.
    pub fn process_ended(&self, peer: PeerId) -> bool {
        let mut table = lock(&self.table);
        let dead = match table.get(&peer).map(|e| &e.state) {
            None => return false,
            Some(State::Attached { mailbox }) => !mailbox.is_alive(),
            Some(_) => false,
        };
        if dead {
            if let Some(entry) = table.remove(&peer) {
                drop(table);
                self.bury(peer, &entry, Failure::Left);
            }
            return false;
        }
        true
    }

    /// The first frame on a resumed connection came: the token before the rotation is no
    /// longer valid.
    pub fn confirm(&self, peer: PeerId) {
        if let Some(entry) = lock(&self.table).get_mut(&peer) {
            entry.previous = None;
        }
    }

    /// A connection that holds `parked` ended.
    pub fn ended(&self, peer: PeerId, ending: Ending, parked: Parked) -> AfterEnd {
        let mut table = lock(&self.table);
        let Some(entry) = table.get_mut(&peer) else {
            return AfterEnd::Over(Box::new(parked));
        };
        match &entry.state {
            State::Handing { to } => {
                // A resume is waiting for exactly this: the old connection got 4001.
                if let Err(e) = to.try_send(parked) {
                    // The resume gave up waiting: the peer is detached as if nobody came.
                    let parked = e.into_inner();
                    return self.detach(entry, peer, parked);
                }
                AfterEnd::Kept
            }
            State::Attached { .. } if ending == Ending::Detach && self.enabled() => {
                self.detach(entry, peer, parked)
            }
            State::Attached { .. } | State::Detached { .. } => {
                let entry = table.remove(&peer);
                drop(table);
                if let Some(entry) = entry {
                    self.bury(peer, &entry, Failure::Left);
                }
                AfterEnd::Over(Box::new(parked))
            }
        }
    }

    /// Hands `parked` to a new detached task (table locked by the caller).
    fn detach(&self, entry: &mut Entry, peer: PeerId, parked: Parked) -> AfterEnd {
        let (takeover, requests) = async_channel::bounded(1);
        let frames = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + self.window;
        entry.generation += 1;
        entry.state = State::Detached {
            mailbox: parked.inbox.owner().clone(),
            deadline,
            frames: Arc::clone(&frames),
            takeover,
        };
        self.counters.detaches.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "peer {peer} detached from room {}: kept for {} ms",
            entry.room,
            self.window.as_millis()
        );
        self.events.publish(crate::events::Event::Detached {
            peer,
            room: entry.room.clone(),
        });
        if let Some(me) = self.me.upgrade() {
            detached::spawn(
                me,
                peer,
                entry.generation,
                deadline,
                parked,
                requests,
                frames,
            );
        }
        AfterEnd::Kept
    }

    /// The detached task's end of the window or of the bounds: the session ends unless a
    /// resume took it first (then the task hands over instead). True when it ended.
    fn expire(&self, peer: PeerId, generation: u64, failure: Failure) -> bool {
        let mut table = lock(&self.table);
        let current = table.get(&peer).is_some_and(|e| {
            e.generation == generation && matches!(e.state, State::Detached { .. })
        });
        if !current {
            return false;
        }
        if let Some(entry) = table.remove(&peer) {
            drop(table);
            self.bury(peer, &entry, failure);
        }
        true
    }

    /// Sessions in the table (attached or detached).
    pub fn len(&self) -> usize {
        lock(&self.table).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once no session is left (tests' leak check; the server's stop).
    pub async fn until_empty(&self) {
        loop {
            if self.is_empty() {
                return;
            }
            let listener = self.removed.listen();
            if self.is_empty() {
                return;
            }
            listener.await;
        }
    }

    /// The server stops: every detached peer's session ends now (attached ones end with their
    /// connections).
    pub fn shutdown(&self) {
        let detached: Vec<PeerRef> = lock(&self.table)
            .values()
            .filter_map(|e| match &e.state {
                State::Detached { mailbox, .. } => Some(mailbox.clone()),
                _ => None,
            })
            .collect();
        for mailbox in detached {
            mailbox.control(Control::Stop(supervisors::StopReason::Shutdown));
        }
    }

    fn bury(&self, peer: PeerId, entry: &Entry, failure: Failure) {
        self.removed.notify(usize::MAX);
        let mut tombs = lock(&self.tombs);
        if tombs.len() >= TOMBSTONES {
            tombs.pop_front();
        }
        tombs.push_back(Tomb {
            peer,
            room: entry.room.clone(),
            identity: entry.identity,
            tokens: [Some(entry.token), entry.previous],
            failure,
        });
    }

    /// Ends a session for good: the room hears `left` (with `reason` if any), the peer hooks'
    /// `on_terminate` hears of it, and its mailbox closes.
    pub fn finish(
        &self,
        peer: PeerId,
        parked: Parked,
        reason: Option<&'static str>,
        terminate: TerminateReason,
    ) {
        if let Some(reason) = reason {
            self.registry.left_because(peer, reason);
        }
        parked.handler.session_over(&terminate);
        drop(parked);
        self.registry.down(peer);
    }

    /// A resume request for `peer` in `room` by `identity` with `token`: waits for the session
    /// (an old connection still open is closed with 4001 first) and rotates the token.
    pub async fn resume(
        &self,
        peer: PeerId,
        room: &str,
        identity: Identity,
        token: &str,
        last_seq: u64,
    ) -> Result<Resumed, Failure> {
        let (to, handed) = async_channel::bounded(1);
        {
            let mut table = lock(&self.table);
            let Some(entry) = table
                .get_mut(&peer)
                .filter(|e| e.room == room && e.identity.matches(&identity))
            else {
                drop(table);
                return Err(self.failed(self.tomb(peer, room, identity, token)));
            };
            let current = entry.token.matches(token);
            let previous = entry.previous.is_some_and(|p| p.matches(token));
            if !current && !previous {
                if entry.retired.iter().any(|t| t.matches(token)) {
                    log::warn!("peer {peer}: a rotated resume token was presented again");
                }
                return Err(self.failed(Failure::Unknown));
            }
            match &entry.state {
                State::Attached { mailbox } => {
                    if !mailbox.control(Control::Replaced) {
                        return Err(self.failed(Failure::Unknown));
                    }
                }
                State::Detached { takeover, .. } => {
                    if takeover.try_send(to.clone()).is_err() {
                        return Err(self.failed(Failure::Unknown));
                    }
                }
                // Another resume of the same session is under way.
                State::Handing { .. } => return Err(self.failed(Failure::Unknown)),
            }
            entry.state = State::Handing { to };
        }
        let wait = async { handed.recv().await.ok() };
        let timeout = async {
            crate::deadline::after(HANDOVER_WAIT).await;
            None
        };
        let Some(parked) = futures_lite::future::or(wait, timeout).await else {
            // The holder never handed over; whoever holds it keeps it (`ended` detaches it if
            // it ends later).
            return Err(self.failed(Failure::Unknown));
        };
        // The old connection may have ended (a reset) before it saw the order to hand over.
        parked.inbox.withdraw(Control::Replaced);
        if let Err(failure) = parked.handler.can_replay(last_seq) {
            // The client cannot be made whole from here: the session stays detached for the
            // rest of its window, its token unchanged, as before the attempt.
            let mut table = lock(&self.table);
            if let Some(entry) = table.get_mut(&peer) {
                let _ = self.detach(entry, peer, parked);
            }
            return Err(self.failed(failure));
        }
        let (new_token, hash) = token::issue();
        {
            let mut table = lock(&self.table);
            let Some(entry) = table.get_mut(&peer) else {
                return Err(self.failed(Failure::Unknown));
            };
            if entry.retired.len() >= RETIRED {
                entry.retired.pop_front();
            }
            if let Some(old) = entry.previous.take() {
                entry.retired.push_back(old);
            }
            entry.previous = Some(entry.token);
            entry.token = hash;
            entry.generation += 1;
            entry.state = State::Attached {
                mailbox: parked.inbox.owner().clone(),
            };
            self.events.publish(crate::events::Event::Resumed {
                peer,
                room: entry.room.clone(),
            });
        }
        self.counters.resumed.fetch_add(1, Ordering::Relaxed);
        Ok(Resumed {
            token: new_token,
            parked,
        })
    }

    /// A detached task whose handover found nobody waiting (the resume gave up): the peer is
    /// detached again, by a new task.
    fn requeue(&self, peer: PeerId, parked: Parked) {
        let mut table = lock(&self.table);
        if let Some(entry) = table.get_mut(&peer) {
            let _ = self.detach(entry, peer, parked);
        }
    }

    fn failed(&self, failure: Failure) -> Failure {
        self.counters.failed(failure);
        failure
    }

    /// Why a session that is no longer in the table ended, if the token is its own.
    fn tomb(&self, peer: PeerId, room: &str, identity: Identity, token: &str) -> Failure {
        lock(&self.tombs)
            .iter()
            .rev()
            .find(|t| {
                t.peer == peer
                    && t.room == room
                    && t.identity.matches(&identity)
                    && t.tokens.iter().flatten().any(|h| h.matches(token))
            })
            .map_or(Failure::Unknown, |t| t.failure)
    }

    /// Detached peers with their remaining window, for `/tree`.
    pub fn detached(&self) -> Vec<DetachedView> {
        let now = Instant::now();
        let mut out: Vec<DetachedView> = lock(&self.table)
            .iter()
            .filter_map(|(peer, e)| match &e.state {
                State::Detached {
                    deadline, frames, ..
                } => Some(DetachedView {
                    peer: *peer,
                    room: e.room.clone(),
                    remaining: deadline.saturating_duration_since(now),
                    frames: frames.load(Ordering::Relaxed),
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|d| d.peer);
        out
    }

    pub fn detached_bytes(&self) -> usize {
        self.detached_bytes.load(Ordering::Relaxed)
    }
}
