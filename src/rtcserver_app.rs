//! `rtcserver_app`: starting and stopping the application, and the handle to a running server.
use crate::config::Config;
use crate::connection::End;
use crate::events::{Event, Events};
use crate::listener::ListenerMsg;
use crate::mailbox::{PeerMsg, PeerRef};
use crate::registry::{PeerId, Registry, RegistryMsg, RoomKey};
use crate::rooms_sup::Rooms;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use supervisors::{
    ChildInfo, ChildKind, ChildStatus, DynamicSupervisor, Escalation, FixedSupervisor,
    RestartIntensity, StopReason, SupervisorEvent,
};

/// What the registry, the admin API and tests know of a connected peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub client: Option<String>,
}

struct Connected {
    peer: PeerRef,
    info: PeerInfo,
}

pub(crate) struct Shared {
    pub config: Config,
    pub ws_config: WebSocketConfig,
    pub registry: Arc<Registry>,
    pub rooms: Arc<Rooms>,
    pub peers: DynamicSupervisor,
    pub events: Arc<Events>,
    pub listener_inbox: async_channel::Receiver<ListenerMsg>,
    listener_mailbox: async_channel::Sender<ListenerMsg>,
    socket: Mutex<Option<async_net::TcpListener>>,
    local_addr: SocketAddr,
    next_id: AtomicU64,
    open: AtomicUsize,
    capacity: event_listener::Event,
    directory: Mutex<HashMap<PeerId, Connected>>,
    root: OnceLock<FixedSupervisor>,
    torn_down: AtomicBool,
    teardown_done: Mutex<bool>,
    teardown_event: event_listener::Event,
    bad_inputs: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decrements the open-connection count when a connection's task ends, however it ends.
pub(crate) struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.capacity.notify(1);
    }
}

impl Shared {
    pub fn next_peer_id(&self) -> PeerId {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn listening_socket(&self) -> Option<async_net::TcpListener> {
        lock(&self.socket).clone()
    }

    pub fn connection_opened(
        self: &Arc<Self>,
        id: PeerId,
        peer: PeerRef,
        addr: SocketAddr,
    ) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        lock(&self.directory).insert(
            id,
            Connected {
                peer,
                info: PeerInfo {
                    id,
                    addr,
                    client: None,
                },
            },
        );
        ConnectionGuard(Arc::clone(self))
    }

    /// The semaphore taken before accept: no accept while `max_connections` are open.
    pub async fn wait_for_capacity(&self) {
        loop {
            if self.open.load(Ordering::Acquire) < self.config.max_connections {
                return;
            }
            let listener = self.capacity.listen();
            if self.open.load(Ordering::Acquire) < self.config.max_connections {
                return;
            }
            listener.await;
        }
    }

    pub fn connected(&self, id: PeerId, client: &str) {
        if let Some(c) = lock(&self.directory).get_mut(&id) {
            c.info.client = Some(client.to_owned());
        }
        self.events.publish(Event::Connected {
            peer: id,
            client: client.to_owned(),
        });
    }

    pub(crate) fn bad_input(&self, end: &End) {
        if let End::Server(code, _) = end {
            if matches!(u16::from(*code), 1002 | 1007 | 1008 | 1009) {
                self.bad_inputs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The supervisor's report that a peer ended: gproc's monitor fires.
    pub fn peer_down(&self, id: PeerId) {
        let was_connected = lock(&self.directory)
            .remove(&id)
            .is_some_and(|c| c.info.client.is_some());
        self.registry.down(id);
        if was_connected {
            self.events.publish(Event::Disconnected { peer: id });
        }
    }

    fn forget_peer(&self, id: PeerId) {
        for key in self.registry.remove_peer(id) {
            self.events.publish(Event::Left {
                room: key.clone(),
                peer: id,
            });
            self.rooms.peer_left(&key, id);
        }
    }

    /// The registry process: applies the monitors' DOWN messages.
    pub async fn registry_process(&self) {
        while let Ok(msg) = self.registry.inbox().recv().await {
            match msg {
                RegistryMsg::Down(id) => self.forget_peer(id),
                RegistryMsg::Crash => panic!("injected crash of the registry"),
                RegistryMsg::Sync(reply) => {
                    let _ = reply.try_send(());
                }
            }
        }
    }

    async fn teardown(&self, reason: StopReason) {
        if self.torn_down.swap(true, Ordering::AcqRel) {
            return self.until_torn_down().await;
        }
        // The root first: nothing is restarted from here on, and the listener stops accepting.
        if let Some(root) = self.root.get() {
            root.stop();
        }
        lock(&self.socket).take();
        self.listener_mailbox.close();
        let grace = self.config.shutdown_grace;
        let left = self.peers.shutdown_with(reason, grace).await;
        if left > 0 {
            log::warn!("{left} connections did not close within {grace:?}");
        }
        self.rooms.supervisor().shutdown_with(reason, grace).await;
        // What the (stopped) registry process had not applied yet.
        while let Ok(msg) = self.registry.inbox().try_recv() {
            match msg {
                RegistryMsg::Down(id) => self.forget_peer(id),
                RegistryMsg::Sync(reply) => drop(reply.try_send(())),
                RegistryMsg::Crash => {}
            }
        }
        *lock(&self.teardown_done) = true;
        self.teardown_event.notify(usize::MAX);
    }

    async fn until_torn_down(&self) {
        loop {
            if *lock(&self.teardown_done) {
                return;
            }
            let listener = self.teardown_event.listen();
            if *lock(&self.teardown_done) {
                return;
            }
            listener.await;
        }
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    Bind(SocketAddr, std::io::Error),
    Supervisor(supervisors::StartError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Supervisor(e) => write!(f, "cannot start the supervision tree: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A child of the tree to crash on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashTarget {
    /// `rtcserver_sup` itself: the application stops with an error, as when its top supervisor dies.
    Root,
    Listener,
    Registry,
    RoomsSup,
    PeersSup,
    Room(RoomKey),
    Peer(PeerId),
}

impl FromStr for CrashTarget {
    type Err = CrashError;

    fn from_str(s: &str) -> Result<Self, CrashError> {
        Ok(match s {
            "rtcserver_sup" | "root" => CrashTarget::Root,
            "listener" => CrashTarget::Listener,
            "registry" => CrashTarget::Registry,
            "rooms_sup" => CrashTarget::RoomsSup,
            "peers_sup" => CrashTarget::PeersSup,
            _ => {
                if let Some(room) = s.strip_prefix("room:") {
                    match room.parse::<u32>() {
                        Ok(n) => CrashTarget::Room(RoomKey::Book(n)),
                        Err(_) if !room.is_empty() => {
                            CrashTarget::Room(RoomKey::Named(room.into()))
                        }
                        Err(_) => return Err(CrashError::UnknownTarget(s.to_owned())),
                    }
                } else if let Some(peer) = s.strip_prefix("peer:") {
                    CrashTarget::Peer(
                        peer.parse()
                            .map_err(|_| CrashError::UnknownTarget(s.to_owned()))?,
                    )
                } else {
                    return Err(CrashError::UnknownTarget(s.to_owned()));
                }
            }
        })
    }
}

impl fmt::Display for CrashTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashTarget::Root => f.write_str("rtcserver_sup"),
            CrashTarget::Listener => f.write_str("listener"),
            CrashTarget::Registry => f.write_str("registry"),
            CrashTarget::RoomsSup => f.write_str("rooms_sup"),
            CrashTarget::PeersSup => f.write_str("peers_sup"),
            CrashTarget::Room(key) => write!(f, "room:{key}"),
            CrashTarget::Peer(id) => write!(f, "peer:{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashError {
    UnknownTarget(String),
    NoSuchRoom(RoomKey),
    NoSuchPeer(PeerId),
    /// The server has stopped.
    Stopped,
}

impl fmt::Display for CrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashError::UnknownTarget(t) => write!(
                f,
                "unknown target {t:?} (rtcserver_sup, listener, registry, rooms_sup, peers_sup, room:<key>, peer:<id>)"
            ),
            CrashError::NoSuchRoom(key) => write!(f, "no live room {key}"),
            CrashError::NoSuchPeer(id) => write!(f, "no live peer {id}"),
            CrashError::Stopped => f.write_str("server has stopped"),
        }
    }
}

impl std::error::Error for CrashError {}

/// Counts of what is live, for tests' leak checks and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub peers: usize,
    pub rooms: usize,
    pub registrations: usize,
    pub bad_input_closes: u64,
}

/// A running server; clones share it.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

/// Starts the application: binds the port, then the supervision tree.
pub fn start(config: Config) -> Result<ServerHandle, StartError> {
    let addr = config.socket_addr();
    let socket = bind(addr).map_err(|e| StartError::Bind(addr, e))?;
    let local_addr = socket.local_addr().map_err(|e| StartError::Bind(addr, e))?;
    let events = Arc::new(Events::default());
    let observer = observer(Arc::clone(&events));
    let intensity = RestartIntensity::new(config.max_restarts, config.restart_period);
    let registry = Arc::new(Registry::new());
    let rooms = Rooms::new(
        DynamicSupervisor::new("rooms_sup", intensity.clone(), observer.clone()),
        Arc::clone(&registry),
        Arc::clone(&events),
        config.max_room_number,
    );
    // The read buffer is held by every connection, idle or not: 1 KiB rather than 4 KiB is 3 KiB
    // less per connection (loadgen hold: 12.3 -> 9.3 KiB). A longer message is still read whole
    // (the buffer grows to the frame's length), in reads of up to 1 KiB.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let (listener_mailbox, listener_inbox) = async_channel::unbounded();
    let shared = Arc::new(Shared {
        ws_config,
        registry,
        rooms,
        peers: DynamicSupervisor::new("peers_sup", intensity, observer.clone()),
        events,
        listener_inbox,
        listener_mailbox,
        socket: Mutex::new(Some(socket)),
        local_addr,
        next_id: AtomicU64::new(0),
        open: AtomicUsize::new(0),
        capacity: event_listener::Event::new(),
        directory: Mutex::new(HashMap::new()),
        root: OnceLock::new(),
        torn_down: AtomicBool::new(false),
        teardown_done: Mutex::new(false),
        teardown_event: event_listener::Event::new(),
        bad_inputs: AtomicU64::new(0),
        config,
    });
    let root = crate::rtcserver_sup::start(&shared, observer).map_err(StartError::Supervisor)?;
    let _ = shared.root.set(root.clone());
    // When the root gives up, the application goes down with it: close what is still open.
    let monitor = Arc::clone(&shared);
    drop(bastion::executor::spawn(async move {
        if root.wait().await.is_err() {
            monitor.teardown(StopReason::SupervisorDown).await;
        }
    }));
    log::info!("rtcserver listening on {local_addr}");
    Ok(ServerHandle { shared })
}

fn bind(addr: SocketAddr) -> std::io::Result<async_net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    // A deep backlog: browsers and load generators open connections in bursts.
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    async_net::TcpListener::try_from(std::net::TcpListener::from(socket))
}

fn observer(events: Arc<Events>) -> supervisors::Observer {
    let log = supervisors::observer::logging();
    Arc::new(move |event: &SupervisorEvent| {
        // Peers come and go by the thousand; only their crashes are worth a log line.
        log(event);
        events.publish(Event::Supervision(event.clone()));
    })
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn events(&self) -> async_channel::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The live tree: `rtcserver_sup` and everything under it.
    pub fn tree(&self) -> ChildInfo {
        let root = self.shared.root.get();
        ChildInfo {
            id: "rtcserver_sup".into(),
            kind: ChildKind::Permanent,
            status: match root.and_then(FixedSupervisor::outcome) {
                None => ChildStatus::Running,
                Some(_) => ChildStatus::Stopped,
            },
            restarts: 0,
            started_at: std::time::SystemTime::now(),
            supervisor: true,
            children: root
                .map(FixedSupervisor::which_children)
                .unwrap_or_default(),
        }
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            connections: s.open.load(Ordering::Acquire),
            peers: s.peers.count(),
            rooms: s.rooms.len(),
            registrations: s.registry.len(),
            bad_input_closes: s.bad_inputs.load(Ordering::Relaxed),
        }
    }

    /// Live members of a room.
    pub fn room_members(&self, key: &RoomKey) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self
            .shared
            .registry
            .lookup(key)
            .iter()
            .map(PeerRef::id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = lock(&self.shared.directory)
            .values()
            .map(|c| c.info.clone())
            .collect();
        peers.sort_by_key(|p| p.id);
        peers
    }

    /// Makes a child panic exactly as a bug in it would.
    pub fn crash(&self, target: &CrashTarget) -> Result<(), CrashError> {
        let s = &self.shared;
        let root = s.root.get().ok_or(CrashError::Stopped)?;
        if root.outcome().is_some() {
            return Err(CrashError::Stopped);
        }
        log::warn!("crashing {target} on request");
        match target {
            CrashTarget::Root => root.escalate("injected crash of rtcserver_sup"),
            CrashTarget::Listener => {
                let _ = s.listener_mailbox.try_send(ListenerMsg::Crash);
            }
            CrashTarget::Registry => s.registry.crash(),
            CrashTarget::RoomsSup => s.rooms.supervisor().crash("injected crash of rooms_sup"),
            CrashTarget::PeersSup => s.peers.crash("injected crash of peers_sup"),
            CrashTarget::Room(key) => {
                if !s.rooms.crash(key) {
                    return Err(CrashError::NoSuchRoom(key.clone()));
                }
            }
            CrashTarget::Peer(id) => {
                let sent = lock(&s.directory)
                    .get(id)
                    .is_some_and(|c| c.peer.send(PeerMsg::Crash));
                if !sent {
                    return Err(CrashError::NoSuchPeer(*id));
                }
            }
        }
        Ok(())
    }

    /// Resolves once no peer is left and everything they held is cleaned up: no peer process,
    /// no registration, no room. Tests end with it (the leak check).
    pub async fn until_idle(&self) {
        let s = &self.shared;
        if s.torn_down.load(Ordering::Acquire) {
            // The tree is gone; the teardown drains what its processes left.
            return s.until_torn_down().await;
        }
        s.peers.until_empty().await;
        // Every DOWN was queued before its peer left the table; the barrier waits for them.
        s.registry.sync().await;
        s.rooms.supervisor().until_empty().await;
    }

    /// Orderly stop: every connection is closed with 1001, then the tree stops.
    pub async fn shutdown(&self) {
        self.shared.teardown(StopReason::Shutdown).await;
    }

    /// Resolves when the server has stopped and everything is closed: `Err` when the root
    /// supervisor gave up (the binary then exits non-zero).
    pub async fn wait(&self) -> Result<(), Escalation> {
        let outcome = match self.shared.root.get() {
            Some(root) => root.wait().await,
            None => Ok(()),
        };
        self.shared.until_torn_down().await;
        outcome
    }
}
