//! The `rtcserver` binary: `erl -s rtcserver_app`, in one command.
#![forbid(unsafe_code)]
use clap::Parser;
use rtcserver::Config;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The WebRTC signaling server of "WebRTC Blueprints", on an OTP-style supervision tree.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Interface to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port of the WebSocket endpoint and the demo page (0: any free port).
    #[arg(long, default_value_t = 30000)]
    port: u16,
    /// error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: log::LevelFilter,
    /// Larger messages close the connection with 1009.
    #[arg(long, default_value_t = 1 << 20)]
    max_message_bytes: usize,
    /// Where the demo page is served from.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// The book's `{timeout, 500}`: milliseconds for the upgrade request to arrive.
    #[arg(long, default_value_t = 500)]
    handshake_timeout_ms: u64,
    /// Open connections at most; accepting pauses at the limit.
    #[arg(long, default_value_t = 200_000)]
    max_connections: usize,
    /// Restart intensity of every supervisor: at most this many restarts ...
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,
    /// ... within this many seconds.
    #[arg(long, default_value_t = 10)]
    restart_period_secs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(cli.log_level)
        // bastion reports every restart itself; ours are the ones with ids and reasons.
        .with_module_level("bastion", log::LevelFilter::Error)
        .with_module_level("tracing", log::LevelFilter::Error)
        .init()
    {
        eprintln!("rtcserver: cannot start logging: {e}");
    }
    // A panic of a supervised process is logged once, by its supervisor, with the child's id.
    std::panic::set_hook(Box::new(|info| log::debug!("panic: {info}")));
    let mut config = Config {
        bind: cli.bind,
        port: cli.port,
        max_message_bytes: cli.max_message_bytes,
        handshake_timeout: Duration::from_millis(cli.handshake_timeout_ms),
        max_connections: cli.max_connections,
        max_restarts: cli.max_restarts,
        restart_period: Duration::from_secs(cli.restart_period_secs),
        ..Config::default()
    };
    if let Some(dir) = cli.static_dir {
        config.static_dir = dir;
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
