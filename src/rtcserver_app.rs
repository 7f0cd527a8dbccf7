//! `rtcserver_app`: starting and stopping the application, and the handle to a running server.
use crate::config::Config;
use crate::connection::End;
use crate::events::{Event, Events};
use crate::hooks::{DefaultPeer, DefaultRoom, PeerHooks, RoomHooks};
use crate::listener::ListenerMsg;
use crate::mailbox::{Control, Inbox, Mailbox, PeerRef};
use crate::registry::{PeerId, Registry, RegistryMsg, RoomKey};
use crate::rooms_sup::{NamedRooms, Rooms};
use crate::socket::Listening;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::FutureExt;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
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
    /// The peer process serving it: its own id, but another's after a resume.
    process: PeerId,
}

pub(crate) struct Shared {
    pub config: Config,
    pub ws_config: WebSocketConfig,
    pub registry: Arc<Registry>,
    pub rooms: Arc<Rooms>,
    pub peers: DynamicSupervisor,
    pub events: Arc<Events>,
    pub peer_hooks: Arc<dyn PeerHooks>,
    pub listener_inbox: async_channel::Receiver<ListenerMsg>,
    listener_mailbox: async_channel::Sender<ListenerMsg>,
    socket: Mutex<Option<Arc<Listening>>>,
    tls_socket: Mutex<Option<Arc<Listening>>>,
    pub tls: Option<futures_rustls::TlsAcceptor>,
    local_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    open: AtomicUsize,
    capacity: event_listener::Event,
    /// Entries boxed: a hash table keeps up to twice as many slots as entries, and a slot is
    /// then 16 bytes instead of 88, for every connection.
    directory: Mutex<HashMap<PeerId, Box<Connected>>>,
    root: OnceLock<FixedSupervisor>,
    torn_down: AtomicBool,
    teardown_done: Mutex<bool>,
    teardown_event: event_listener::Event,
    bad_inputs: AtomicU64,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub chaos: Option<Arc<crate::chaos::Chaos>>,
    pub faults: crate::faults::Faults,
    /// `--max-connections-per-ip`'s counts.
    pub per_ip: Arc<crate::per_ip::PerIp>,
    pub admin_addr: Option<SocketAddr>,
    /// The Redis engine, when the node is part of a cluster (for the admin API and a clean
    /// departure).
    pub redis: Option<Arc<crate::cluster::redis::RedisCluster>>,
    /// Resume sessions of `/socket/:room` peers (docs/rooms-protocol.md, "Resume").
    pub resume: Arc<crate::resume::Sessions>,
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
    /// The plain and the TLS listening sockets (none once the server stops).
    pub fn listening_sockets(&self) -> (Option<Arc<Listening>>, Option<Arc<Listening>>) {
        (lock(&self.socket).clone(), lock(&self.tls_socket).clone())
    }

    /// A new connection: its peer id and mailbox, in the directory. The id is random, so that a
    /// named-rooms peer's id cannot be guessed, below 2^53 so that JavaScript reads it exactly,
    /// and held by no live peer.
    pub fn connection_opened(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> (PeerRef, Inbox, ConnectionGuard) {
        use rand::RngExt;
        self.open.fetch_add(1, Ordering::AcqRel);
        let guard = ConnectionGuard(Arc::clone(self));
        let mut directory = lock(&self.directory);
        let mut rng = rand::rng();
        let id = loop {
            let id = rng.random_range(1..(1u64 << 53));
            if !directory.contains_key(&id) {
                break id;
            }
        };
        let (peer, inbox) = Mailbox::counted(
            id,
            self.config.outbound_limit_bytes,
            Arc::clone(&self.metrics.relay),
        );
        directory.insert(
            id,
            Box::new(Connected {
                peer: peer.clone(),
                info: PeerInfo {
                    id,
                    addr,
                    client: None,
                },
                process: id,
            }),
        );
        (peer, inbox, guard)
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

    /// A resume: `peer` is served by process `process` from now on (its own entry goes).
    pub fn served_by(&self, peer: &PeerRef, process: PeerId, client: &str) {
        let mut directory = lock(&self.directory);
        let addr = directory.remove(&process).map(|c| c.info.addr);
        if let Some(addr) = addr {
            directory.insert(
                peer.id(),
                Box::new(Connected {
                    peer: peer.clone(),
                    info: PeerInfo {
                        id: peer.id(),
                        addr,
                        client: Some(client.to_owned()),
                    },
                    process,
                }),
            );
        }
    }

    /// The end of a connection that served a resumed `peer` from process `process`.
    pub fn no_longer_served(&self, peer: PeerId, process: PeerId) {
        let mut directory = lock(&self.directory);
        if directory.get(&peer).is_some_and(|c| c.process == process) {
            directory.remove(&peer);
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
        if let End::Server(code, why) = end {
            if matches!(u16::from(*code), 1002 | 1007 | 1008 | 1009) {
                self.bad_inputs.fetch_add(1, Ordering::Relaxed);
                self.metrics.bad_input(u16::from(*code), why);
            }
        }
    }

    /// The supervisor's report that a peer ended: gproc's monitor fires.
    pub fn peer_down(&self, id: PeerId) {
        let was_connected = {
            let mut directory = lock(&self.directory);
            match directory.get(&id) {
                // A resumed peer's entry, served by another process now.
                Some(c) if c.process != id => false,
                _ => directory
                    .remove(&id)
                    .is_some_and(|c| c.info.client.is_some()),
            }
        };
        // A resumable peer's membership is its session's to end (it outlives the process).
        if !self.resume.process_ended(id) {
            self.registry.down(id);
        }
        if self.config.client_faults {
            // Before `Disconnected`: whoever waits for it finds the client's rules gone.
            self.faults.client_gone(id);
        }
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
        lock(&self.tls_socket).take();
        self.listener_mailbox.close();
        // The other nodes of a cluster hear every member of this one leave now, not when its
        // lease runs out, nor after the close handshakes below.
        if let Some(redis) = &self.redis {
            redis.depart().await;
        }
        let grace = self.config.shutdown_grace;
        let left = self.peers.shutdown_with(reason, grace).await;
        if left > 0 {
            log::warn!("{left} connections did not close within {grace:?}");
        }
        // Detached resumable peers have no connection to stop: their sessions end here.
        self.resume.shutdown();
        let ended = async {
            self.resume.until_empty().await;
            true
        };
        let waited = async {
            crate::deadline::after(grace).await;
            false
        };
        if !futures_lite::future::or(ended, waited).await {
            log::warn!(
                "{} resume sessions did not end within {grace:?}",
                self.resume.len()
            );
        }
        self.rooms.supervisor().shutdown_with(reason, grace).await;
        self.rooms.close_all();
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

    pub(crate) async fn until_torn_down(&self) {
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
    Tls(crate::tls::TlsError),
    Supervisor(supervisors::StartError),
    /// The admin API's address could not be bound.
    AdminBind(SocketAddr, std::io::Error),
    /// The admin API was to listen beyond loopback without a token.
    AdminUnprotected(SocketAddr),
    /// The fault rules given at start-up do not go together.
    Faults(crate::faults::RulesError),
    /// `--cluster`'s Redis could not be reached.
    Cluster(crate::cluster::ClusterError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
            StartError::Supervisor(e) => write!(f, "cannot start the supervision tree: {e}"),
            StartError::AdminBind(addr, e) => {
                write!(f, "cannot listen on {addr} for the admin API: {e}")
            }
            StartError::Faults(e) => write!(f, "cannot set the fault rules: {e}"),
            StartError::Cluster(e) => write!(f, "cannot join the cluster: {e}"),
            StartError::AdminUnprotected(addr) => write!(
                f,
                "the admin API would listen on {addr}, beyond loopback, without a token: give --admin-token or bind it to 127.0.0.1"
            ),
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
                // The inverse of `RoomKey::child_id`: one spelling per room, never a guess.
                if let Some(room) = s.strip_prefix("room:") {
                    CrashTarget::Room(RoomKey::Book(
                        room.parse()
                            .map_err(|_| CrashError::UnknownTarget(s.to_owned()))?,
                    ))
                } else if let Some(name) = s.strip_prefix("named:") {
                    if !crate::http::valid_room_name(name) {
                        return Err(CrashError::UnknownTarget(s.to_owned()));
                    }
                    CrashTarget::Room(RoomKey::Named(name.into()))
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
            CrashTarget::Room(key) => f.write_str(&key.child_id()),
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
                "unknown target {t:?} (rtcserver_sup, listener, registry, rooms_sup, peers_sup, room:<N>, named:<name>, peer:<id>)"
            ),
            CrashError::NoSuchRoom(key) => write!(f, "no live {}", key.child_id()),
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
    /// Client addresses counted by `--max-connections-per-ip` (0 without the limit).
    pub client_addresses: usize,
    /// Resume sessions, attached or detached (docs/rooms-protocol.md, "Resume").
    pub resume_sessions: usize,
}

/// A running server; clones share it.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// Starts the application with the default hooks: binds the port, then the supervision tree.
pub fn start(config: Config) -> Result<ServerHandle, StartError> {
    Server::new(config).start()
}

/// A server to start, with the named-rooms hooks of your choice (Membrane's
/// `use Membrane.WebRTC.Server.Peer` / `Room`):
///
/// ```no_run
/// use rtcserver::hooks::{Action, AuthData, PeerHooks};
/// use rtcserver::rooms_protocol::RoomMessage;
///
/// /// Drops every message whose event is "spam".
/// struct NoSpam;
///
/// impl PeerHooks for NoSpam {
///     fn on_receive(&self, _peer: &AuthData, m: RoomMessage) -> Action<RoomMessage> {
///         if m.event == "spam" { Action::Ignore } else { Action::Forward(m) }
///     }
/// }
///
/// let server = rtcserver::Server::new(rtcserver::Config::default())
///     .peer_hooks(NoSpam)
///     .start()
///     .expect("port 30000 is free");
/// ```
pub struct Server {
    config: Config,
    peer_hooks: Arc<dyn PeerHooks>,
    room_hooks: Arc<dyn RoomHooks>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Server {
            config,
            peer_hooks: Arc::new(DefaultPeer),
            room_hooks: Arc::new(DefaultRoom),
        }
    }

    pub fn peer_hooks(mut self, hooks: impl PeerHooks) -> Self {
        self.peer_hooks = Arc::new(hooks);
        self
    }

    pub fn room_hooks(mut self, hooks: impl RoomHooks) -> Self {
        self.room_hooks = Arc::new(hooks);
        self
    }

    /// Binds the port, then starts the supervision tree.
    pub fn start(self) -> Result<ServerHandle, StartError> {
        start_server(self)
    }
}

fn start_server(server: Server) -> Result<ServerHandle, StartError> {
    let Server {
        config,
        peer_hooks,
        room_hooks,
    } = server;
    let tls = match &config.tls {
        Some(files) => Some(crate::tls::acceptor(files).map_err(StartError::Tls)?),
        None => None,
    };
    let bind_at = |addr: SocketAddr| -> Result<(Arc<Listening>, SocketAddr), StartError> {
        let socket = bind(addr).map_err(|e| StartError::Bind(addr, e))?;
        let local = socket.local_addr().map_err(|e| StartError::Bind(addr, e))?;
        Ok((socket, local))
    };
    let (socket, local_addr) = if tls.is_some() && config.tls_only {
        (None, None)
    } else {
        let (s, a) = bind_at(config.socket_addr())?;
        (Some(s), Some(a))
    };
    let (tls_socket, tls_addr) = if tls.is_some() {
        let (s, a) = bind_at(SocketAddr::new(config.bind, config.tls_port))?;
        (Some(s), Some(a))
    } else {
        (None, None)
    };
    let admin_socket = crate::admin::bind(&config)?;
    let admin_addr = admin_socket.as_ref().and_then(|s| s.local_addr().ok());
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let chaos = crate::chaos::from_config(&config);
    let events = Arc::new(Events::default());
    let observer = observer(Arc::clone(&events), Arc::clone(&metrics));
    let intensity = RestartIntensity::new(config.max_restarts, config.restart_period);
    let registry = Arc::new(Registry::new());
    let faults = crate::faults::Faults::new(
        config.fault_seed,
        Arc::clone(&registry),
        Arc::clone(&events),
        Arc::clone(&metrics),
    );
    if !config.faults.is_empty() {
        if let Err(e) = faults.populate(config.faults.clone()) {
            return Err(StartError::Faults(e));
        }
        log::info!("{} fault rules in force", config.faults.len());
    }
    let redis = match &config.cluster {
        Some(c) => {
            // Where the others pass this node a resume of a session it holds.
            let advertise = c.advertise.clone().or_else(|| {
                local_addr.map(|a| {
                    if a.ip().is_unspecified() {
                        format!("127.0.0.1:{}", a.port())
                    } else {
                        a.to_string()
                    }
                })
            });
            let connect = crate::cluster::redis::RedisCluster::connect(
                &c.url,
                c.node_id.as_str(),
                advertise,
                Arc::clone(&registry),
                Arc::clone(&events),
            );
            Some(futures_lite::future::block_on(connect).map_err(StartError::Cluster)?)
        }
        None => None,
    };
    let cluster: Arc<dyn crate::cluster::Cluster> = match &redis {
        Some(r) => Arc::clone(r) as Arc<dyn crate::cluster::Cluster>,
        None => Arc::new(crate::cluster::Embedded),
    };
    let rooms = Rooms::new(
        DynamicSupervisor::new("rooms_sup", intensity.clone(), observer.clone()),
        Arc::clone(&registry),
        Arc::clone(&events),
        config.max_room_number,
        NamedRooms {
            configured: config.rooms.clone(),
            auto_rooms: config.auto_rooms,
            default_max_peers: config.default_max_peers,
            hooks: room_hooks,
        },
        faults.clone(),
        Arc::clone(&cluster),
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
    let resume = crate::resume::Sessions::new(
        config.resume_window,
        Arc::clone(&registry),
        Arc::clone(&events),
    );
    let shared = Arc::new(Shared {
        resume,
        ws_config,
        registry,
        rooms,
        peers: DynamicSupervisor::new("peers_sup", intensity, observer.clone()),
        events,
        peer_hooks,
        listener_inbox,
        listener_mailbox,
        socket: Mutex::new(socket),
        tls_socket: Mutex::new(tls_socket),
        tls,
        local_addr,
        tls_addr,
        open: AtomicUsize::new(0),
        capacity: event_listener::Event::new(),
        directory: Mutex::new(HashMap::new()),
        root: OnceLock::new(),
        torn_down: AtomicBool::new(false),
        teardown_done: Mutex::new(false),
        teardown_event: event_listener::Event::new(),
        bad_inputs: AtomicU64::new(0),
        metrics,
        chaos,
        faults,
        per_ip: crate::per_ip::PerIp::new(config.max_connections_per_ip),
        admin_addr,
        config,
        redis,
    });
    if let Some(chaos) = &shared.chaos {
        chaos.attach(Arc::downgrade(&shared));
    }
    // A restart of rooms_sup or peers_sup gives the old children what a shutdown gives them.
    for sup in [shared.rooms.supervisor(), &shared.peers] {
        sup.set_restart_grace(shared.config.shutdown_grace);
    }
    let root = crate::rtcserver_sup::start(&shared, observer).map_err(StartError::Supervisor)?;
    let _ = shared.root.set(root.clone());
    shared.rooms.start_configured();
    // When the root gives up, the application goes down with it: close what is still open.
    let monitor = Arc::clone(&shared);
    drop(bastion::executor::spawn(async move {
        if root.wait().await.is_err() {
            monitor.teardown(StopReason::SupervisorDown).await;
        }
    }));
    if let Some(addr) = local_addr {
        log::info!("rtcserver listening on {addr}");
    }
    if let Some(addr) = tls_addr {
        log::info!("rtcserver listening with TLS on {addr} (https, wss)");
    }
    let handle = ServerHandle { shared };
    if let Some(socket) = admin_socket {
        crate::admin::spawn(handle.clone(), socket);
    }
    Ok(handle)
}

fn bind(addr: SocketAddr) -> std::io::Result<Arc<Listening>> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    // A deep backlog: browsers and load generators open connections in bursts.
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Listening::new(std::net::TcpListener::from(socket)).map(Arc::new)
}

fn observer(events: Arc<Events>, metrics: Arc<crate::metrics::Metrics>) -> supervisors::Observer {
    let log = supervisors::observer::logging();
    Arc::new(move |event: &SupervisorEvent| {
        // Peers come and go by the thousand; only their crashes are worth a log line.
        log(event);
        metrics.supervision(event);
        events.publish(Event::Supervision(event.clone()));
    })
}

impl ServerHandle {
    /// The plain port's address; the TLS port's in `--tls-only` mode.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .local_addr
            .or(self.shared.tls_addr)
            .unwrap_or_else(|| self.shared.config.socket_addr())
    }

    /// The TLS port's address, when TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_addr
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
            started_at: self.shared.metrics.started_at(),
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
            client_addresses: s.per_ip.addresses(),
            resume_sessions: s.resume.len(),
        }
    }

    /// Whether `key` is a room of the rooms file: a permanent child of `rooms_sup`.
    pub fn is_configured_room(&self, key: &RoomKey) -> bool {
        match key {
            RoomKey::Named(name) => self.shared.rooms.is_configured(name),
            RoomKey::Book(_) => false,
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
        self.crash_for(target, "on request")
    }

    /// [`crash`](Self::crash), saying in the log line why (`on request from ...`, `by chaos ...`).
    pub fn crash_for(&self, target: &CrashTarget, cause: &str) -> Result<(), CrashError> {
        let s = &self.shared;
        let root = s.root.get().ok_or(CrashError::Stopped)?;
        if root.outcome().is_some() {
            return Err(CrashError::Stopped);
        }
        // Checked first so that the log line names only what is really crashed.
        match target {
            CrashTarget::Room(key) if !s.rooms.contains(key) => {
                return Err(CrashError::NoSuchRoom(key.clone()))
            }
            CrashTarget::Peer(id) if !lock(&s.directory).contains_key(id) => {
                return Err(CrashError::NoSuchPeer(*id))
            }
            _ => {}
        }
        log::warn!("crashing {target} {cause}");
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
                    .is_some_and(|c| c.peer.control(Control::Crash));
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
        s.resume.until_empty().await;
        s.peers.until_empty().await;
        // Every DOWN was queued before its peer left the table; the barrier waits for them.
        s.registry.sync().await;
        s.rooms
            .supervisor()
            .until_at_most(s.rooms.configured_count())
            .await;
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
        // Event streams write `stopped` once the teardown is done; give them a moment to, so
        // that a process that exits next does not cut them off (bounded: a reader that does not
        // read is not waited for).
        self.shared
            .events
            .until_streams_end()
            .or(crate::deadline::after(Duration::from_secs(1)))
            .await;
        outcome
    }
}
