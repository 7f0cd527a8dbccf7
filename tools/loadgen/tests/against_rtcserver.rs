//! A small smoke run of every workload against rtcserver itself, started in-process on 127.0.0.1:0: the
//! benchmark's client and the server agree on the protocol, and nothing is left behind on the server.
//! (bench/run is the benchmark; this only checks that it can run.)

use std::sync::Arc;
use std::time::Duration;

use loadgen::adapter::book::Book;
use loadgen::target::Target;
use loadgen::workload::{hold, rate, relay, setup, Env};
use rtcserver::{Config, ServerHandle};

fn start() -> (ServerHandle, Env<Book>) {
    let server = rtcserver::start(Config::ephemeral()).expect("rtcserver starts");
    let target = Target::parse(&format!("ws://{}/", server.local_addr())).unwrap();
    let env = Env::new(Book::new(target), Arc::from(Vec::new()));
    (server, env)
}

/// The server's leak check: no peer, room or registration once every client has closed.
async fn assert_clean(server: &ServerHandle) {
    tokio::time::timeout(Duration::from_secs(20), server.until_idle())
        .await
        .expect("rtcserver becomes idle");
    let stats = server.stats();
    assert_eq!(
        (stats.peers, stats.rooms, stats.registrations),
        (0, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_against_rtcserver() {
    let (server, env) = start();

    let (held, _) = hold::run(
        &env,
        &hold::HoldArgs {
            connections: 40,
            server_pid: Some(std::process::id()),
            hold_seconds: 0.2,
            concurrency: 8,
        },
    )
    .await
    .unwrap();
    assert_eq!(held["failed_pairs"], 0, "{held}");
    assert_eq!(held["alive_pairs_after_hold"], 20, "{held}");
    assert_eq!(held["closed_clean"], 40, "{held}");
    assert_clean(&server).await;

    let relay_args = relay::RelayArgs {
        pairs: 3,
        duration: 0.3,
        size: 300,
        server_pid: None,
        concurrency: 3,
    };
    let (relayed, _) = relay::run(&env, &relay_args).await.unwrap();
    assert_eq!(relayed["errors"], 0, "{relayed}");
    assert!(relayed["round_trips"].as_u64().unwrap() > 0, "{relayed}");

    let setup_args = setup::SetupArgs {
        workers: 2,
        duration: 0.3,
        size: 300,
        server_pid: None,
    };
    let (setups, _) = setup::run(&env, &setup_args).await.unwrap();
    assert_eq!(setups["failures"], 0, "{setups}");
    assert_eq!(setups["unclean_closes"], 0, "{setups}");
    assert!(setups["setups"].as_u64().unwrap() > 0, "{setups}");

    let rate_args = rate::RateArgs {
        rate: 200.0,
        duration: 0.5,
        pairs: 4,
        size: 300,
        server_pid: None,
        concurrency: 4,
    };
    let (rated, _) = rate::run(&env, &rate_args).await.unwrap();
    assert_eq!(rated["lost"], 0, "{rated}");
    assert_clean(&server).await;
}
