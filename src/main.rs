//! The `rtcserver` binary: `erl -s rtcserver_app`, in one command.
#![forbid(unsafe_code)]
use clap::Parser;
use rtcserver::Config;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// glibc's malloc kept all of a 10,000-connection burst after the connections closed (freed, but
/// spread over its arenas); jemalloc, with the background purging thread set in
/// `.cargo/config.toml`, gives it back within seconds (bench/README.md has the figures).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The WebRTC signaling server of "WebRTC Blueprints", on an OTP-style supervision tree.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The book's rtcserver.app.src, or a sys.config with an rtcserver section; the flags
    /// below override what it sets.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interface to listen on [default: 0.0.0.0].
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Port of the WebSocket endpoint and the demo page (0: any free port) [default: 30000].
    #[arg(long)]
    port: Option<u16>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(long)]
    log_level: Option<log::LevelFilter>,
    /// Larger messages close the connection with 1009 [default: 1048576].
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// Where the demo page is served from.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// The book's `{timeout, 500}`: milliseconds for the upgrade request to arrive [default: 500].
    #[arg(long)]
    handshake_timeout_ms: Option<u64>,
    /// Open connections at most; accepting pauses at the limit.
    #[arg(long, default_value_t = 200_000)]
    max_connections: usize,
    /// Restart intensity of every supervisor: at most this many restarts ...
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,
    /// ... within this many seconds.
    #[arg(long, default_value_t = 10)]
    restart_period_secs: u64,
    /// Named rooms and the users/tokens of /socket/:room (TOML, or JSON if it ends in .json).
    #[arg(long)]
    rooms: Option<PathBuf>,
    /// /socket/<unknown room> is HTTP 404 instead of starting the room.
    #[arg(long)]
    no_auto_rooms: bool,
    /// max_peers of a room started on demand [default: 2, or the rooms file's].
    #[arg(long)]
    max_peers: Option<usize>,
    /// Certificate chain (PEM): serve HTTPS and WSS on --tls-port too.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Port of HTTPS and WSS.
    #[arg(long, default_value_t = 8443)]
    tls_port: u16,
    /// Serve only TLS: no plain port.
    #[arg(long, requires = "tls_cert")]
    tls_only: bool,
    /// Proxies whose X-Forwarded-For names the client (e.g. 127.0.0.1/32,10.0.0.0/8); the
    /// rightmost address they did not add is taken [default: none, the socket's peer is the
    /// client].
    #[arg(long, value_name = "CIDR,...")]
    trusted_proxies: Option<rtcserver::trusted_proxies::TrustedProxies>,
    /// Ping every WebSocket this often, and end one from which nothing (a frame or a pong) has
    /// come for 3 times as long, as a departure; 0: off.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    heartbeat_secs: u64,
    /// How long a `/socket/:room` peer that joined with ?resumable=1 stays a member after its
    /// connection drops, for a resume to take its place (docs/rooms-protocol.md, "Resume");
    /// 0: resume off.
    #[arg(long, value_name = "MS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(0..=300_000))]
    resume_window_ms: u64,
    /// WebSockets one client address may hold at once (behind --trusted-proxies, the forwarded
    /// address); one more gets HTTP 429 before the upgrade [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_ip: Option<u32>,
    /// Pages allowed to open a WebSocket, by their Origin (e.g. https://a.example,https://b.example);
    /// others get HTTP 403 before the upgrade; a request without Origin (not a browser page)
    /// is let through [default: * (any), as the original].
    #[arg(long, value_name = "ORIGIN,...")]
    allowed_origins: Option<rtcserver::origins::AllowedOrigins>,
    /// GETROOM draws room numbers from 1 to this (the original's 999999); a smaller range
    /// makes a full server, or a clash between nodes, easy to test.
    #[arg(long, value_name = "N", default_value_t = rtcserver::book_protocol::MAX_ROOM,
          value_parser = clap::value_parser!(u32).range(1..=rtcserver::book_protocol::MAX_ROOM as i64))]
    max_room_number: u32,
    /// Join a cluster of nodes sharing one set of rooms through this Redis
    /// (redis://HOST:PORT[/DB]; docs/cluster.md) [default: a single node, no Redis].
    #[arg(long, value_name = "URL", value_parser = rtcserver::cluster::parse_url)]
    cluster: Option<String>,
    /// This node's id in the cluster (1 to 64 of A-Z a-z 0-9 . _ -) [default: random, logged].
    #[arg(long, value_name = "ID", requires = "cluster")]
    node_id: Option<rtcserver::cluster::NodeId>,
    /// Where the other nodes reach this node's WebSocket port (HOST:PORT), to pass it a resume
    /// of a session it holds [default: the listening address; 127.0.0.1:PORT when listening on
    /// every interface].
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    advertise_addr: Option<String>,
    /// Frames one WebSocket may send per second, with a burst of 2 s worth; over it the
    /// socket is not read until the budget refills, and a client over it for 10 s is closed
    /// with 1008; 0: no limit [default: 1000].
    #[arg(long, value_name = "N")]
    max_messages_per_sec: Option<u64>,
    /// Bytes (frame payloads) one WebSocket may send per second, with a burst of 2 s worth;
    /// as --max-messages-per-sec; 0: no limit [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    max_bytes_per_sec: Option<u64>,
    #[command(flatten)]
    admin: rtcserver::admin::cli::AdminArgs,
}

use rtcserver::cluster::NodeId;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match &cli.config {
        Some(path) => match rtcserver::app_env::load(path) {
            Ok(env) => env,
            Err(e) => {
                eprintln!("rtcserver: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => rtcserver::app_env::AppEnv::default(),
    };
    // app_env normalises levels to names LevelFilter parses.
    let log_level = cli
        .log_level
        .or_else(|| env.log_level.as_deref().and_then(|l| l.parse().ok()))
        .unwrap_or(log::LevelFilter::Info);
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(log_level)
        // bastion reports every restart itself; ours are the ones with ids and reasons.
        .with_module_level("bastion", log::LevelFilter::Error)
        .with_module_level("tracing", log::LevelFilter::Error)
        .init()
    {
        eprintln!("rtcserver: cannot start logging: {e}");
    }
    // A panic of a supervised process is logged once, by its supervisor, with the child's id.
    std::panic::set_hook(Box::new(|info| log::debug!("panic: {info}")));
    for warning in &env.warnings {
        log::warn!("{warning}");
    }
    let defaults = Config::default();
    let mut config = Config {
        // app_env has validated `bind` as an IP address.
        bind: cli
            .bind
            .or_else(|| env.bind.as_deref().and_then(|b| b.parse().ok()))
            .unwrap_or(defaults.bind),
        port: cli.port.or(env.port).unwrap_or(defaults.port),
        max_message_bytes: cli
            .max_message_bytes
            .or(env.max_message_bytes)
            .unwrap_or(defaults.max_message_bytes),
        handshake_timeout: cli
            .handshake_timeout_ms
            .or(env.timeout_ms)
            .map_or(defaults.handshake_timeout, Duration::from_millis),
        max_connections: cli.max_connections,
        max_restarts: cli.max_restarts,
        restart_period: Duration::from_secs(cli.restart_period_secs),
        max_room_number: cli.max_room_number,
        ..Config::default()
    };
    if let Err(e) = cli.admin.apply(&mut config) {
        log::error!("{e}");
        return ExitCode::FAILURE;
    }
    if let Some(dir) = cli.static_dir.or_else(|| env.static_dir.map(PathBuf::from)) {
        config.static_dir = dir;
    }
    if env.acceptors.is_some() || env.max_keepalive.is_some() {
        log::debug!(
            "acceptors and max_keepalive are cowboy settings with no equivalent here; ignored"
        );
    }
    if let Some(path) = &cli.rooms {
        match rtcserver::rooms_file::load(path) {
            Ok(file) => {
                config.rooms = file.rooms;
                config.accounts = file.accounts;
                config.auto_rooms = file.auto_rooms.unwrap_or(config.auto_rooms);
                config.default_max_peers = file.max_peers.unwrap_or(config.default_max_peers);
            }
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let (Some(cert), Some(key)) = (cli.tls_cert, cli.tls_key) {
        config.tls = Some(rtcserver::tls::TlsFiles { cert, key });
    }
    config.tls_port = cli.tls_port;
    config.tls_only = cli.tls_only;
    config.max_connections_per_ip = cli.max_connections_per_ip;
    if let Some(n) = cli.max_messages_per_sec.or(env.max_messages_per_sec) {
        config.budget.messages = rtcserver::budget::Rate::per_sec(n);
    }
    if let Some(n) = cli.max_bytes_per_sec.or(env.max_bytes_per_sec) {
        config.budget.bytes = rtcserver::budget::Rate::per_sec(n);
    }
    config.heartbeat = Some(Duration::from_secs(cli.heartbeat_secs)).filter(|d| !d.is_zero());
    config.resume_window = Duration::from_millis(cli.resume_window_ms);
    if let Some(origins) = cli.allowed_origins.or(env.allowed_origins) {
        config.allowed_origins = origins;
    }
    if let Some(proxies) = cli.trusted_proxies {
        config.trusted_proxies = proxies;
    }
    if let Some(url) = cli.cluster.or(env.cluster) {
        let node_id = cli.node_id.or(env.node_id).unwrap_or_else(NodeId::random);
        config.cluster = Some(rtcserver::cluster::ClusterConfig {
            url,
            node_id,
            advertise: cli.advertise_addr,
        });
    }
    if cli.no_auto_rooms {
        config.auto_rooms = false;
    }
    if let Some(n) = cli.max_peers {
        if n == 0 {
            log::error!("--max-peers must be at least 1");
            return ExitCode::FAILURE;
        }
        config.default_max_peers = n;
    }
    let server = match rtcserver::start(config) {
        Ok(server) => server,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let on_signal = server.clone();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!("signal {signal}: closing every connection and stopping");
                    futures_lite::future::block_on(on_signal.shutdown());
                }
            });
        }
        Err(e) => log::warn!("no signal handling: {e}"),
    }
    match futures_lite::future::block_on(server.wait()) {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(escalation) => {
            log::error!("application rtcserver exited: shutdown of {escalation}");
            ExitCode::FAILURE
        }
    }
}
