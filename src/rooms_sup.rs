//! `rooms_sup`: the table of live rooms and the supervisor of their processes.
//!
//! A room is a transient child (a configured one is permanent): restarted after a crash (same
//! mailbox, same members: they are in the registry), not after it empties and stops. If `rooms_sup` itself goes down, its rooms' processes
//! go with it (OTP links them) but their table entries and mailboxes stay: its next instance
//! starts a process per entry on the same mailbox, which serves what was queued meanwhile, so a
//! restart of `rooms_sup` is invisible to clients (no join refused, no `left` lost).
use crate::book_protocol::MAX_ROOM;
use crate::cluster::{Claim, Cluster, Rule};
use crate::events::{Event, Events};
use crate::hooks::{AuthData, Refusal, RoomContext, RoomHooks};
use crate::mailbox::PeerRef;
use crate::registry::{PeerId, Registry, RoomKey};
use crate::room::{JoinRefused, NamedRefusal, NamedRoom, Room, RoomKind, RoomMsg};
use crate::rooms_protocol::description;
use rand::RngExt;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use supervisors::{ChildKey, ChildKind, ChildSpec, DynamicSupervisor, StartChildError};

struct RoomEntry {
    mailbox: crate::channel::Sender<RoomMsg>,
    /// Kept so that a process started by a restarted `rooms_sup` takes over what is queued.
    inbox: crate::channel::Receiver<RoomMsg>,
    /// Changes when a new process takes the entry over: which process serves it.
    serial: u64,
    kind: RoomKind,
    /// The process's child in `rooms_sup` (None only while it is being started).
    child: Option<ChildKey>,
}

/// How named rooms come to be.
pub struct NamedRooms {
    /// From the config file: started with the server, they stay when empty.
    pub configured: Vec<RoomContext>,
    /// Start a room for an unknown name (else 404).
    pub auto_rooms: bool,
    /// `max_peers` of a room started on demand.
    pub default_max_peers: usize,
    pub hooks: Arc<dyn RoomHooks>,
}

impl Default for NamedRooms {
    fn default() -> Self {
        NamedRooms {
            configured: Vec::new(),
            auto_rooms: true,
            default_max_peers: 2,
            hooks: Arc::new(crate::hooks::DefaultRoom),
        }
    }
}

pub struct Rooms {
    table: Mutex<HashMap<RoomKey, RoomEntry>>,
    sup: DynamicSupervisor,
    registry: Arc<Registry>,
    events: Arc<Events>,
    serial: AtomicU64,
    max_room: u32,
    named: NamedRooms,
    faults: crate::faults::Faults,
    cluster: Arc<dyn Cluster>,
}

/// Why a named join failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedJoinError {
    /// No such room, and rooms are not started on demand: HTTP 404 before the upgrade.
    NoSuchRoom,
    /// The room's hooks said no (`room_is_full`, ...): `error`, then close 4000.
    Refused(Refusal),
    ShuttingDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// Every room number is taken (close 1013, try again later).
    NoFreeNumber,
    ShuttingDown,
    /// The cluster's engine cannot be reached (close 1013, try again later).
    Unavailable,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::NoFreeNumber => f.write_str("every room number is taken"),
            CreateError::ShuttingDown => f.write_str("server is shutting down"),
            CreateError::Unavailable => f.write_str("the cluster cannot be reached"),
        }
    }
}

impl std::error::Error for CreateError {}

impl From<StartChildError> for CreateError {
    fn from(_: StartChildError) -> Self {
        CreateError::ShuttingDown
    }
}

fn lock(m: &Mutex<HashMap<RoomKey, RoomEntry>>) -> MutexGuard<'_, HashMap<RoomKey, RoomEntry>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rooms {
    pub fn new(
        sup: DynamicSupervisor,
        registry: Arc<Registry>,
        events: Arc<Events>,
        max_room: u32,
        named: NamedRooms,
        faults: crate::faults::Faults,
        cluster: Arc<dyn Cluster>,
    ) -> Arc<Self> {
        let rooms = Arc::new(Rooms {
            table: Mutex::new(HashMap::new()),
            sup,
            registry,
            events,
            serial: AtomicU64::new(0),
            max_room: max_room.clamp(1, MAX_ROOM),
            named,
            faults,
            cluster,
        });
        let weak: Weak<Rooms> = Arc::downgrade(&rooms);
        rooms.sup.set_init(Arc::new(move |_| {
            if let Some(rooms) = weak.upgrade() {
                rooms.rebuild();
            }
        }));
        rooms
    }

    pub fn supervisor(&self) -> &DynamicSupervisor {
        &self.sup
    }

    /// GETROOM: a fresh number no live room holds (on any node of a cluster), with `creator`
    /// already in it.
    pub async fn create_book_room(self: &Arc<Self>, creator: &PeerRef) -> Result<u32, CreateError> {
        // A number another node holds is refused by the cluster: draw again, a bounded number of
        // times (the table here only knows this node's rooms).
        for _ in 0..32 {
            let n = self.free_number().ok_or(CreateError::NoFreeNumber)?;
            let key = RoomKey::Book(n);
            if let Err(e) = self.cluster.watch(&key).await {
                log::warn!("peer {}: GETROOM refused: {e}", creator.id());
                return Err(CreateError::Unavailable);
            }
            let claim = self
                .cluster
                .claim(&key, creator.id(), Rule::Create, 0)
                .await;
            match claim {
                Ok(Claim::Admitted { .. }) => {}
                Ok(Claim::Refused) => {
                    if !self.contains(&key) {
                        self.cluster.unwatch(&key);
                    }
                    continue;
                }
                Err(e) => {
                    log::warn!("peer {}: GETROOM refused: {e}", creator.id());
                    if !self.contains(&key) {
                        self.cluster.unwatch(&key);
                    }
                    return Err(CreateError::Unavailable);
                }
            }
            let mut table = lock(&self.table);
            // Another peer of this node drew the same number meanwhile.
            if table.contains_key(&key) {
                drop(table);
                self.cluster.leave(&key, creator.id());
                continue;
            }
            if !self.registry.reg(&key, creator) {
                drop(table);
                self.cluster.leave(&key, creator.id());
                self.cluster.unwatch(&key);
                return Err(CreateError::ShuttingDown);
            }
            if let Err(e) = self.start_room(&mut table, key.clone(), RoomKind::Book) {
                self.registry.unreg(&key, creator.id());
                drop(table);
                self.cluster.leave(&key, creator.id());
                self.cluster.unwatch(&key);
                return Err(e.into());
            }
            drop(table);
            self.events.publish(Event::Joined {
                room: key,
                peer: creator.id(),
            });
            return Ok(n);
        }
        Err(CreateError::NoFreeNumber)
    }

    /// A number no room of this node holds: uniform like `random:uniform(999999)` while there is
    /// room, a scan when it is crowded.
    fn free_number(&self) -> Option<u32> {
        let table = lock(&self.table);
        let taken = |n: u32| table.contains_key(&RoomKey::Book(n));
        let mut rng = rand::rng();
        for _ in 0..32 {
            let n = rng.random_range(1..=self.max_room);
            if !taken(n) {
                return Some(n);
            }
        }
        let start = rng.random_range(1..=self.max_room);
        (start..=self.max_room).chain(1..start).find(|n| !taken(*n))
    }

    /// ENTERROOM: asks the room; unknown rooms and rooms that stop meanwhile refuse.
    pub async fn join(self: &Arc<Self>, key: &RoomKey, peer: &PeerRef) -> Result<(), JoinRefused> {
        let mailbox = {
            let mut table = lock(&self.table);
            // In a cluster the room may live on other nodes: a process here asks the cluster.
            if !table.contains_key(key) && self.cluster.is_distributed() {
                if let Err(e) = self.start_room(&mut table, key.clone(), RoomKind::Book) {
                    log::warn!("rooms_sup: could not start room {key}: {e}");
                }
            }
            table.get(key).map(|e| e.mailbox.clone())
        };
        let Some(mailbox) = mailbox else {
            return Err(JoinRefused::NotJoinable);
        };
        let (reply, answer) = async_channel::bounded(1);
        if mailbox
            .try_send(RoomMsg::Join {
                peer: peer.clone(),
                reply,
            })
            .is_err()
        {
            return Err(JoinRefused::NotJoinable);
        }
        drop(mailbox);
        answer.recv().await.unwrap_or(Err(JoinRefused::NotJoinable))
    }

    /// Whether `name` is a room of the rooms file (a permanent child: it stays when empty).
    pub fn is_configured(&self, name: &str) -> bool {
        self.named.configured.iter().any(|c| c.name == name)
    }

    /// Whether `/socket/<name>` leads somewhere: a live or configured room, or any name when
    /// rooms start on demand.
    pub fn named_room_exists(&self, name: &str) -> bool {
        self.named.auto_rooms || self.is_configured(name)
    }

    /// Joins `peer` to the named room, starting it if it is not live (and may be). Answers the
    /// room's configuration and the members that were there before.
    pub async fn join_named(
        self: &Arc<Self>,
        name: &str,
        peer: &PeerRef,
        auth: &AuthData,
    ) -> Result<(Arc<RoomContext>, Vec<PeerId>), NamedJoinError> {
        let key = RoomKey::Named(name.into());
        // A room that stops (its last peer left) while we ask says so: ask anew, which starts a
        // fresh room. Bounded, though each retry needs a room to stop again. Nothing else is
        // retried: a join that crashed its room would crash it again.
        for _ in 0..8 {
            let (mailbox, context) = {
                let mut table = lock(&self.table);
                if !table.contains_key(&key) {
                    let context = self.named_context(name).ok_or(NamedJoinError::NoSuchRoom)?;
                    let kind = RoomKind::Named(NamedRoom {
                        context,
                        hooks: Arc::clone(&self.named.hooks),
                    });
                    self.start_room(&mut table, key.clone(), kind)
                        .map_err(|_| NamedJoinError::ShuttingDown)?;
                }
                match table.get(&key) {
                    Some(RoomEntry {
                        mailbox,
                        kind: RoomKind::Named(named),
                        ..
                    }) => (mailbox.clone(), Arc::clone(&named.context)),
                    _ => return Err(NamedJoinError::NoSuchRoom),
                }
            };
            let (reply, answer) = async_channel::bounded(1);
            let asked = mailbox.try_send(RoomMsg::JoinNamed {
                peer: peer.clone(),
                auth: Box::new(auth.clone()),
                reply,
            });
            drop(mailbox);
            if asked.is_err() {
                continue;
            }
            match answer.recv().await {
                Ok(Ok(members)) => return Ok((context, members)),
                Ok(Err(NamedRefusal::Hooks(refusal))) => {
                    return Err(NamedJoinError::Refused(refusal))
                }
                Ok(Err(NamedRefusal::Stopping)) => continue,
                Err(_) => {
                    log::warn!("peer {}: room {name} crashed during its join", peer.id());
                    let crashed = Refusal::new(description::ROOM_CRASHED);
                    return Err(NamedJoinError::Refused(crashed));
                }
            }
        }
        let unavailable = Refusal::new(description::ROOM_UNAVAILABLE);
        Err(NamedJoinError::Refused(unavailable))
    }

    /// A named room's configuration: the config file's, or the defaults when rooms start on
    /// demand.
    fn named_context(&self, name: &str) -> Option<Arc<RoomContext>> {
        if let Some(c) = self.named.configured.iter().find(|c| c.name == name) {
            return Some(Arc::new(c.clone()));
        }
        self.named.auto_rooms.then(|| {
            Arc::new(RoomContext {
                name: name.to_owned(),
                max_peers: self.named.default_max_peers,
                metadata: Value::Null,
                configured: false,
            })
        })
    }

    /// Starts the config file's rooms (at start-up, and again after a restart of rooms_sup).
    pub fn start_configured(self: &Arc<Self>) {
        let mut table = lock(&self.table);
        for context in &self.named.configured {
            let key = RoomKey::Named(context.name.as_str().into());
            if table.contains_key(&key) {
                continue;
            }
            let kind = RoomKind::Named(NamedRoom {
                context: Arc::new(context.clone()),
                hooks: Arc::clone(&self.named.hooks),
            });
            if let Err(e) = self.start_room(&mut table, key, kind) {
                log::warn!("rooms_sup: could not start room {}: {e}", context.name);
            }
        }
    }

    pub fn named_hooks(&self) -> &Arc<dyn RoomHooks> {
        &self.named.hooks
    }

    /// How many rooms are configured (they stay when empty).
    pub fn configured_count(&self) -> usize {
        self.named.configured.len()
    }

    /// The shared hooks of named rooms, with a room's configuration when it is live.
    pub fn named_room(&self, name: &str) -> Option<NamedRoom> {
        match lock(&self.table).get(&RoomKey::Named(name.into())) {
            Some(RoomEntry {
                kind: RoomKind::Named(named),
                ..
            }) => Some(named.clone()),
            _ => None,
        }
    }

    /// Tells a room that one of its peers is gone from the registry.
    /// The engine that decides membership (for a resume that reached another node than the
    /// one holding its session).
    pub fn cluster(&self) -> &Arc<dyn Cluster> {
        &self.cluster
    }

    pub fn peer_left(&self, key: &RoomKey, peer: PeerId) {
        if let Some(entry) = lock(&self.table).get(key) {
            let _ = entry.mailbox.try_send(RoomMsg::Leave { peer });
        }
    }

    /// Injects a crash into one room; false when no such room is live.
    pub fn crash(&self, key: &RoomKey) -> bool {
        lock(&self.table)
            .get(key)
            .is_some_and(|e| e.mailbox.try_send(RoomMsg::Crash).is_ok())
    }

    pub fn contains(&self, key: &RoomKey) -> bool {
        lock(&self.table).contains_key(key)
    }

    pub fn len(&self) -> usize {
        lock(&self.table).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<RoomKey> {
        let mut keys: Vec<RoomKey> = lock(&self.table).keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Called by a room that stops: drops its entry if it is still the one it served (true).
    pub(crate) fn forget(&self, key: &RoomKey, serial: u64) -> bool {
        let mut table = lock(&self.table);
        let served = table.get(key).is_some_and(|e| e.serial == serial);
        if served {
            table.remove(key);
        }
        served
    }

    /// Whether the process with `serial` still serves the room `key`.
    pub(crate) fn is_served_by(&self, key: &RoomKey, serial: u64) -> bool {
        lock(&self.table)
            .get(key)
            .is_some_and(|e| e.serial == serial)
    }

    /// After the final shutdown of `rooms_sup`: what no process serves any more (a room left to
    /// a restart that the shutdown overtook) is dropped, its queued joins refused.
    pub(crate) fn close_all(&self) {
        let entries: Vec<(RoomKey, RoomEntry)> = lock(&self.table).drain().collect();
        for (key, entry) in entries {
            entry.inbox.close();
            // Dropping a join's reply refuses it.
            while entry.inbox.try_recv().is_ok() {}
            self.events.publish(Event::RoomStopped { room: key });
        }
    }

    /// After a restart of `rooms_sup`: every room in the table gets a process again, on its own
    /// mailbox (what was queued while it had none is served in order), and a key that has live
    /// members but no room (none is expected) gets a fresh one.
    fn rebuild(self: &Arc<Self>) {
        let mut table = lock(&self.table);
        let unserved: Vec<RoomKey> = table
            .iter()
            .filter(|(_, e)| !e.child.is_some_and(|c| self.sup.is_current(c)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in unserved {
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            if let Some(entry) = table.get_mut(&key) {
                entry.serial = serial;
            }
            if let Err(e) = self.spawn_room(&mut table, &key, true) {
                log::warn!("rooms_sup: could not restart room {key}: {e}");
            }
        }
        for key in self.registry.keys() {
            if table.contains_key(&key) || self.registry.count_local(&key) == 0 {
                continue;
            }
            let kind = match &key {
                RoomKey::Book(_) => RoomKind::Book,
                RoomKey::Named(name) => match self.named_context(name) {
                    Some(context) => RoomKind::Named(NamedRoom {
                        context,
                        hooks: Arc::clone(&self.named.hooks),
                    }),
                    None => continue,
                },
            };
            if let Err(e) = self.start_room(&mut table, key.clone(), kind) {
                log::warn!("rooms_sup: could not restart room {key}: {e}");
            }
        }
        drop(table);
        self.start_configured();
    }

    fn start_room(
        self: &Arc<Self>,
        table: &mut HashMap<RoomKey, RoomEntry>,
        key: RoomKey,
        kind: RoomKind,
    ) -> Result<(), StartChildError> {
        let (mailbox, inbox) = crate::channel::unbounded();
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        // In the table before the process exists, so that it always finds its own entry.
        table.insert(
            key.clone(),
            RoomEntry {
                mailbox,
                inbox,
                serial,
                kind,
                child: None,
            },
        );
        if let Err(e) = self.spawn_room(table, &key, false) {
            table.remove(&key);
            return Err(e);
        }
        self.events.publish(Event::RoomStarted { room: key });
        Ok(())
    }

    /// Starts a process serving the table entry of `key`, as it is now (its serial, mailbox).
    fn spawn_room(
        self: &Arc<Self>,
        table: &mut HashMap<RoomKey, RoomEntry>,
        key: &RoomKey,
        restarted: bool,
    ) -> Result<(), StartChildError> {
        let Some(entry) = table.get_mut(key) else {
            return Ok(());
        };
        let serial = entry.serial;
        let inbox = entry.inbox.clone();
        let stop_mailbox = entry.mailbox.clone();
        let room_kind = entry.kind.clone();
        let child_kind = match &entry.kind {
            RoomKind::Named(named) if named.context.configured => ChildKind::Permanent,
            _ => ChildKind::Transient,
        };
        let rooms = Arc::clone(self);
        let room_key = key.clone();
        let mut restarted = restarted;
        let child = self.sup.start_child(ChildSpec {
            id: key.child_id(),
            kind: child_kind,
            start: Box::new(move || {
                let room = Room {
                    key: room_key.clone(),
                    kind: room_kind.clone(),
                    serial,
                    restarted,
                    inbox: inbox.clone(),
                    registry: Arc::clone(&rooms.registry),
                    events: Arc::clone(&rooms.events),
                    rooms: Arc::clone(&rooms),
                    faults: rooms.faults.clone(),
                    cluster: Arc::clone(&rooms.cluster),
                };
                // Any later instance of this child is a restart after its crash.
                restarted = true;
                Box::pin(room.run())
            }),
            stop: Box::new(move |reason| {
                let _ = stop_mailbox.try_send(RoomMsg::Stop { serial, reason });
            }),
            on_exit: None,
        })?;
        entry.child = Some(child);
        Ok(())
    }
}
