//! The property registry: what gproc's `{p, l, Room}` keys are to the book's `handler_websocket`.
//!
//! `reg(key, peer)`, `unreg(key, peer)`, `lookup(key)`, like gproc, and cleanup done *by the
//! registry*: a peer that ends for any reason (close, error, panic, abort) is reported to the
//! registry process by its supervisor ([`Registry::down`]), which drops all its keys. Between the
//! death and that cleanup, reads already skip it: its mailbox is marked dead by the peer's own
//! drop guard, the fast path. The table lives outside the registry process, as gproc's ETS table
//! outlives a crash of the gproc server, so a registry restart loses nothing.
use crate::mailbox::PeerRef;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// A peer's id, unique within one server for its lifetime.
pub type PeerId = u64;

/// A room, as the registry keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomKey {
    /// A numbered room of the book protocol.
    Book(u32),
    /// A named room of `/socket/:room`.
    Named(Arc<str>),
}

impl RoomKey {
    /// The id of the room's process in the supervision tree, which is also its admin crash
    /// target: `room:<N>` for a book room, `named:<name>` for a named one, so that book room 7
    /// and a named room called "7" are never taken for each other.
    pub fn child_id(&self) -> String {
        match self {
            RoomKey::Book(n) => format!("room:{n}"),
            RoomKey::Named(name) => format!("named:{name}"),
        }
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Book(n) => write!(f, "{n}"),
            RoomKey::Named(name) => f.write_str(name),
        }
    }
}

#[derive(Default)]
struct Table {
    by_key: HashMap<RoomKey, Vec<PeerRef>>,
    by_peer: HashMap<PeerId, Vec<RoomKey>>,
    order: HashMap<RoomKey, Order>,
    /// Rooms that got a first member so far.
    rooms_seen: u64,
}

/// Where a room stands in the order in which rooms got their first member, and its members in
/// the order they joined, counted from 1: what fault rules call a room and a peer (`#1`, `#2`),
/// so that a rule and its seed mean the same thing in every run, whatever the random ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    pub room: u64,
    next_peer: u32,
    pub peers: HashMap<PeerId, u32>,
}

impl Order {
    /// Where a peer outside every room stands: room `#0`, no members (fault rules then name
    /// the peer by its id).
    pub fn outside() -> Self {
        Order {
            room: 0,
            next_peer: 0,
            peers: HashMap::new(),
        }
    }
}

/// A message to the registry process.
pub enum RegistryMsg {
    /// A peer ended (gproc's `'DOWN'` from its monitor).
    Down(PeerId),
    /// Injected fault: the process panics.
    Crash,
    /// Answered once everything queued before it is applied (a barrier for leak checks).
    Sync(async_channel::Sender<()>),
}

pub struct Registry {
    table: Mutex<Table>,
    mailbox: async_channel::Sender<RegistryMsg>,
    inbox: async_channel::Receiver<RegistryMsg>,
    /// Why a peer left, when its room's `left` says it (a resume session that ended:
    /// `timeout`, `overflow`); taken by the room that announces it.
    left_reasons: Mutex<HashMap<PeerId, &'static str>>,
}

/// Reasons held at most (one per peer whose `left` is still to be announced); past it the
/// oldest are forgotten and those `left` go without a reason.
const MAX_LEFT_REASONS: usize = 65_536;

fn lock(m: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Every mutation is a few map operations; a panic elsewhere cannot leave them half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let (mailbox, inbox) = async_channel::unbounded();
        Registry {
            table: Mutex::new(Table::default()),
            mailbox,
            inbox,
            left_reasons: Mutex::new(HashMap::new()),
        }
    }

    /// `peer`'s coming `left` says `reason`.
    pub fn left_because(&self, peer: PeerId, reason: &'static str) {
        let mut reasons = self.left_reasons.lock().unwrap_or_else(|p| p.into_inner());
        if reasons.len() >= MAX_LEFT_REASONS {
            reasons.clear();
        }
        reasons.insert(peer, reason);
    }

    /// Why `peer` left, if its session said (once).
    pub fn take_left_reason(&self, peer: PeerId) -> Option<&'static str> {
        self.left_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer)
    }

    /// Registers `peer` under `key`; registering twice is a no-op. A peer already dead is
    /// refused (false): its DOWN may have been applied already, and nothing would remove it.
    pub fn reg(&self, key: &RoomKey, peer: &PeerRef) -> bool {
        let mut t = lock(&self.table);
        // Under the lock: a death marked before the DOWN is applied is seen here.
        if !peer.is_alive() {
            return false;
        }
        let peers = t.by_key.entry(key.clone()).or_default();
        if peers.iter().any(|p| p.id() == peer.id()) {
            return true;
        }
        peers.push(peer.clone());
        // A peer is in one room nearly always: a `Vec`'s first push would make room for four
        // keys, kept for the peer's life.
        t.by_peer
            .entry(peer.id())
            .or_insert_with(|| Vec::with_capacity(1))
            .push(key.clone());
        let Table {
            order, rooms_seen, ..
        } = &mut *t;
        let order = order.entry(key.clone()).or_insert_with(|| {
            *rooms_seen += 1;
            Order {
                room: *rooms_seen,
                ..Order::default()
            }
        });
        order.next_peer += 1;
        order.peers.insert(peer.id(), order.next_peer);
        true
    }

    /// The order of the room under `key` and of its members (see [`Order`]).
    pub fn order(&self, key: &RoomKey) -> Option<Order> {
        lock(&self.table).order.get(key).cloned()
    }

    /// The live peers under `key` whose ids are in `ids`, each once.
    pub fn find(&self, key: &RoomKey, ids: &HashSet<PeerId>) -> Vec<PeerRef> {
        lock(&self.table)
            .by_key
            .get(key)
            .map(|peers| {
                peers
                    .iter()
                    .filter(|p| p.is_alive() && ids.contains(&p.id()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The registration of `peer` under `key`, live or not.
    pub fn get(&self, key: &RoomKey, peer: PeerId) -> Option<PeerRef> {
        lock(&self.table)
            .by_key
            .get(key)?
            .iter()
            .find(|p| p.id() == peer)
            .cloned()
    }

    /// How many live peers under `key` are this node's own (not members held by other nodes
    /// of a cluster): a room with none has no reason to run here.
    pub fn count_local(&self, key: &RoomKey) -> usize {
        lock(&self.table).by_key.get(key).map_or(0, |peers| {
            peers
                .iter()
                .filter(|p| p.is_alive() && !p.is_proxy())
                .count()
        })
    }

    /// Removes `peer` from `key`; true when it was there.
    pub fn unreg(&self, key: &RoomKey, peer: PeerId) -> bool {
        let mut t = lock(&self.table);
        let removed = remove_from_key(&mut t, key, peer);
        if let Some(keys) = t.by_peer.get_mut(&peer) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                t.by_peer.remove(&peer);
            }
        }
        removed
    }

    /// The live peers under `key`.
    pub fn lookup(&self, key: &RoomKey) -> Vec<PeerRef> {
        lock(&self.table)
            .by_key
            .get(key)
            .map(|peers| peers.iter().filter(|p| p.is_alive()).cloned().collect())
            .unwrap_or_default()
    }

    /// The ids under `key`, live or dead (not yet cleaned up).
    pub fn registered(&self, key: &RoomKey) -> Vec<PeerId> {
        lock(&self.table)
            .by_key
            .get(key)
            .map(|peers| peers.iter().map(PeerRef::id).collect())
            .unwrap_or_default()
    }

    /// How many live peers are under `key`.
    pub fn count(&self, key: &RoomKey) -> usize {
        lock(&self.table)
            .by_key
            .get(key)
            .map_or(0, |peers| peers.iter().filter(|p| p.is_alive()).count())
    }

    /// `reply2peer`: calls `f` for every live peer under `key` but `except`, without copying the
    /// list (the hot path). `f` runs under the registry lock: it must only enqueue.
    pub fn for_each_other(&self, key: &RoomKey, except: PeerId, mut f: impl FnMut(&PeerRef)) {
        if let Some(peers) = lock(&self.table).by_key.get(key) {
            for peer in peers.iter().filter(|p| p.id() != except && p.is_alive()) {
                f(peer);
            }
        }
    }

    /// Keys that have at least one registration (dead or alive), sorted.
    pub fn keys(&self) -> Vec<RoomKey> {
        let mut keys: Vec<RoomKey> = lock(&self.table).by_key.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The keys of one peer.
    pub fn keys_of(&self, peer: PeerId) -> Vec<RoomKey> {
        lock(&self.table)
            .by_peer
            .get(&peer)
            .cloned()
            .unwrap_or_default()
    }

    /// Number of (key, peer) registrations; 0 when the server is clean.
    pub fn len(&self) -> usize {
        lock(&self.table).by_key.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The monitor's `'DOWN'`: queues the peer's cleanup for the registry process.
    pub fn down(&self, peer: PeerId) {
        let _ = self.mailbox.try_send(RegistryMsg::Down(peer));
    }

    /// Injects a crash into the registry process.
    pub fn crash(&self) {
        let _ = self.mailbox.try_send(RegistryMsg::Crash);
    }

    /// Resolves once every DOWN queued so far is applied.
    pub async fn sync(&self) {
        let (tx, rx) = async_channel::bounded(1);
        if self.mailbox.try_send(RegistryMsg::Sync(tx)).is_ok() {
            let _ = rx.recv().await;
        }
    }

    /// Drops every key of `peer`; returns them so that their rooms can be told.
    pub fn remove_peer(&self, peer: PeerId) -> Vec<RoomKey> {
        let mut t = lock(&self.table);
        let keys = t.by_peer.remove(&peer).unwrap_or_default();
        for key in &keys {
            remove_from_key(&mut t, key, peer);
        }
        keys
    }

    /// The registry process's inbox (outlives the process, so nothing queued is lost on a crash).
    pub fn inbox(&self) -> &async_channel::Receiver<RegistryMsg> {
        &self.inbox
    }
}

fn remove_from_key(t: &mut Table, key: &RoomKey, peer: PeerId) -> bool {
    let Some(peers) = t.by_key.get_mut(key) else {
        return false;
    };
    let before = peers.len();
    peers.retain(|p| p.id() != peer);
    let removed = peers.len() != before;
    if peers.is_empty() {
        t.by_key.remove(key);
        t.order.remove(key);
    } else if let Some(order) = t.order.get_mut(key) {
        order.peers.remove(&peer);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Mailbox;

    #[test]
    fn reg_lookup_unreg() {
        let r = Registry::new();
        let (a, _ra) = Mailbox::new(1, 1 << 20);
        let (b, _rb) = Mailbox::new(2, 1 << 20);
        let key = RoomKey::Book(7);
        r.reg(&key, &a);
        r.reg(&key, &a);
        r.reg(&key, &b);
        assert_eq!(r.count(&key), 2);
        let mut others = Vec::new();
        r.for_each_other(&key, 1, |p| others.push(p.id()));
        assert_eq!(others, vec![2]);
        assert!(r.unreg(&key, 1));
        assert!(!r.unreg(&key, 1));
        assert_eq!(r.keys_of(2), vec![key.clone()]);
        assert_eq!(
            r.order(&key).map(|o| (o.room, o.peers.get(&2).copied())),
            Some((1, Some(2)))
        );
        assert_eq!(r.remove_peer(2), vec![key.clone()]);
        assert!(r.is_empty());
        assert_eq!(r.order(&key), None, "the order goes with the last member");
        assert!(r.keys().is_empty());
    }

    #[test]
    fn dead_peers_are_skipped_before_cleanup() {
        let r = Registry::new();
        let (a, _ra) = Mailbox::new(1, 1 << 20);
        let key = RoomKey::Named("x".into());
        r.reg(&key, &a);
        a.mark_dead();
        assert_eq!(r.count(&key), 0);
        assert!(r.lookup(&key).is_empty());
        assert_eq!(r.len(), 1, "still there until the registry cleans up");
        r.remove_peer(1);
        assert!(r.is_empty());
    }
}
