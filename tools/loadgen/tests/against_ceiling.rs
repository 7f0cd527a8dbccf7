//! Every workload end to end against an in-process ceiling on 127.0.0.1:0, each ending with the ceiling's
//! registry empty: a workload that leaves connections behind, or a ceiling that leaks rooms, fails here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::adapter::book::Book;
use loadgen::adapter::Adapter;
use loadgen::ceiling::{self, rooms::Rooms};
use loadgen::target::Target;
use loadgen::transport;
use loadgen::workload::{hold, rate, relay, setup, Env};
use tokio::net::TcpListener;

async fn start_ceiling() -> (Env<Book>, Arc<Rooms>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rooms = Arc::new(Rooms::default());
    tokio::spawn(ceiling::serve(listener, rooms.clone()));
    let target = Target::parse(&format!("ws://{addr}/")).unwrap();
    let env = Env::new(Book::new(target), Arc::from(Vec::new()));
    (env, rooms)
}

/// Peers leave their rooms when the ceiling notices the close, a moment after the client's close returns.
async fn assert_registry_empties(rooms: &Rooms) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rooms.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} rooms left behind",
            rooms.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_opens_verifies_and_closes_every_pair() {
    let (env, rooms) = start_ceiling().await;
    let args = hold::HoldArgs {
        connections: 40,
        server_pid: Some(std::process::id()),
        hold_seconds: 0.0,
        concurrency: 8,
    };
    let (result, _) = hold::run(&env, &args).await.unwrap();
    assert_eq!(result["connections_open"], 40);
    assert_eq!(result["failed_pairs"], 0);
    assert_eq!(result["alive_pairs_after_hold"], 20);
    assert_eq!(result["closed_clean"], 40);
    assert!(result["rss_per_conn_kib"].is_number());
    assert_registry_empties(&rooms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_counts_round_trips() {
    let (env, rooms) = start_ceiling().await;
    let args = relay::RelayArgs {
        pairs: 3,
        duration: 0.3,
        size: 300,
        server_pid: None,
        concurrency: 3,
    };
    let (result, _) = relay::run(&env, &args).await.unwrap();
    assert_eq!(result["errors"], 0);
    assert!(result["round_trips"].as_u64().unwrap() > 0);
    assert_eq!(
        result["messages"].as_u64().unwrap(),
        2 * result["round_trips"].as_u64().unwrap()
    );
    assert!(result["rtt"]["p99_us"].is_u64());
    assert_registry_empties(&rooms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_completes_call_setups() {
    let (env, rooms) = start_ceiling().await;
    let args = setup::SetupArgs {
        workers: 2,
        duration: 0.3,
        size: 300,
        server_pid: None,
    };
    let (result, _) = setup::run(&env, &args).await.unwrap();
    assert_eq!(result["failures"], 0, "{result}");
    assert!(result["setups"].as_u64().unwrap() > 0);
    assert_registry_empties(&rooms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_delivers_everything_it_sends() {
    let (env, rooms) = start_ceiling().await;
    let args = rate::RateArgs {
        rate: 200.0,
        duration: 0.5,
        pairs: 4,
        size: 300,
        server_pid: None,
        concurrency: 4,
    };
    let (result, _) = rate::run(&env, &args).await.unwrap();
    assert_eq!(result["lost"], 0, "{result}");
    let sent = result["sent"].as_u64().unwrap();
    assert!((90..=110).contains(&sent), "sent {sent} at 200/s for 0.5 s");
    assert_registry_empties(&rooms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterroom_into_an_unknown_room_is_refused() {
    let (env, rooms) = start_ceiling().await;
    let mut creator = env.adapter.connect(0, None).await.unwrap();
    let mut joiner = env.adapter.connect(0, None).await.unwrap();
    transport::send_text(&mut joiner.tx, r#"{"type":"ENTERROOM","value":424242}"#)
        .await
        .unwrap();
    let answer = transport::recv_text(&mut joiner.rx).await.unwrap();
    assert_eq!(answer.as_str(), r#"{"type":"WRONGROOM"}"#);
    // A real pair still forms afterwards, and the joiner's first message reaches the creator verbatim.
    env.adapter
        .pair(&mut creator, &mut joiner, r#"{"type":"ping","seq":0}"#)
        .await
        .unwrap();
    assert_eq!(rooms.len(), 1);
    transport::close(creator).await;
    transport::close(joiner).await;
    assert_registry_empties(&rooms).await;
}
