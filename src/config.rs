//! What the server is started with: the book's cowboy options plus our own.
use crate::auth::Accounts;
use crate::hooks::RoomContext;
use crate::tls::TlsFiles;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Interface to listen on; all of them by default, as the book's `{port, 30000}`.
    pub bind: IpAddr,
    /// 30000 as in the book; 0 picks a free port (tests).
    pub port: u16,
    /// The book's `{timeout, 500}`: the upgrade request must arrive within it.
    pub handshake_timeout: Duration,
    /// Larger text frames close the connection with 1009.
    pub max_message_bytes: usize,
    /// Bytes queued for one peer and not yet written to its socket, each message charged its text
    /// plus `mailbox::SLOT_OVERHEAD`; past it the peer is closed as a slow consumer (1008, or a
    /// reset when its socket is full).
    pub outbound_limit_bytes: usize,
    /// Accepting stops while this many connections are open.
    pub max_connections: usize,
    /// Where `GET /` and `/static/...` are served from.
    pub static_dir: PathBuf,
    /// `rtcserver_sup`'s `{one_for_one, 5, 10}`; also used by rooms_sup and peers_sup.
    pub max_restarts: u32,
    pub restart_period: Duration,
    /// How long an orderly shutdown waits for connections to close; also how long a restart of
    /// `rooms_sup` or `peers_sup` waits for the children of its previous instance to end.
    pub shutdown_grace: Duration,
    /// GETROOM draws from 1..=this (999999, as the original; smaller only to test exhaustion).
    pub max_room_number: u32,
    /// Named rooms started with the server (from the rooms file); they stay when empty.
    pub rooms: Vec<RoomContext>,
    /// `/socket/<unknown name>` starts a room (else HTTP 404).
    pub auto_rooms: bool,
    /// `max_peers` of a room started on demand.
    pub default_max_peers: usize,
    /// Who may connect to `/socket/:room`; nobody is checked when empty.
    pub accounts: Accounts,
    /// Certificate and key (PEM): HTTPS and WSS on `tls_port` beside the plain port.
    pub tls: Option<TlsFiles>,
    /// 8443 by default; 0 picks a free port.
    pub tls_port: u16,
    /// With `tls`: no plain port at all.
    pub tls_only: bool,
    /// The admin API (live tree, crashes on request, metrics, events); `None`: not started.
    pub admin_bind: Option<SocketAddr>,
    /// Whether a failure to bind `admin_bind` stops the start. Off for the default address, so
    /// that a second server on the machine still starts (it logs why it has no admin API).
    pub admin_bind_required: bool,
    /// Required as `Authorization: Bearer <token>` when set; a non-loopback `admin_bind`
    /// without one is refused.
    pub admin_token: Option<crate::admin::AdminToken>,
    /// `--heartbeat-secs`: a ping this often, and a connection silent for 3 times it ended;
    /// `None` (or zero): off.
    pub heartbeat: Option<Duration>,
    /// `--resume-window-ms`: how long a resumable peer whose connection dropped stays a
    /// member (at most 300 s); zero turns resume off.
    pub resume_window: Duration,
    /// How often a resumable peer is pinged; one silent for 3 times as long is detached. 5 s
    /// (docs/rooms-protocol.md, "Detach"); not a flag: tests shorten it.
    pub resume_heartbeat: Duration,
    /// `--max-messages-per-sec` and `--max-bytes-per-sec`: what one connection may send.
    pub budget: crate::budget::Budget,
    /// WebSockets one client address may hold at once; `None`: no limit.
    pub max_connections_per_ip: Option<u32>,
    /// The pages (by `Origin`) that may open a WebSocket: any by default, as the original.
    pub allowed_origins: crate::origins::AllowedOrigins,
    /// Proxies whose `X-Forwarded-For` names the client; nobody's by default.
    pub trusted_proxies: crate::trusted_proxies::TrustedProxies,
    /// Chaos mode: crash children at these rates.
    pub chaos: Option<crate::chaos::ChaosSpec>,
    /// The seed of chaos mode's decisions; drawn (and logged) when `None`.
    pub chaos_seed: Option<u64>,
    /// The seed of the fault rules' generators; drawn (and logged) when `None`.
    pub fault_seed: Option<u64>,
    /// Fault rules in force from the start (`--faults FILE`).
    pub faults: Vec<crate::faults::rule::Rule>,
    /// `--cluster`: the node shares its rooms with the other nodes of this Redis (docs/cluster.md);
    /// `None`: a single node, needing nothing else.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// `?faults=<preset>` on a WebSocket URL sets that preset for that client
    /// (`--client-faults`); refused with 400 without it.
    pub client_faults: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 30000,
            handshake_timeout: Duration::from_millis(500),
            max_message_bytes: 1 << 20,
            outbound_limit_bytes: 8 << 20,
            max_connections: 200_000,
            static_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")),
            max_restarts: 5,
            restart_period: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            max_room_number: crate::book_protocol::MAX_ROOM,
            rooms: Vec::new(),
            auto_rooms: true,
            default_max_peers: 2,
            accounts: Accounts::default(),
            tls: None,
            tls_port: 8443,
            tls_only: false,
            admin_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 30001)),
            admin_bind_required: false,
            admin_token: None,
            allowed_origins: Default::default(),
            max_connections_per_ip: None,
            budget: Default::default(),
            heartbeat: Some(Duration::from_secs(20)),
            resume_window: Duration::from_millis(20_000),
            resume_heartbeat: Duration::from_secs(5),
            trusted_proxies: Default::default(),
            chaos: None,
            chaos_seed: None,
            fault_seed: None,
            faults: Vec::new(),
            client_faults: false,
            cluster: None,
        }
    }
}

impl Config {
    /// A server for tests: loopback, a free port, and no budget (tests that check budgets
    /// set one; the others send thousands of messages as fast as they can).
    pub fn ephemeral() -> Self {
        Config {
            budget: crate::budget::Budget::off(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            tls_port: 0,
            admin_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            admin_bind_required: true,
            ..Config::default()
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}
