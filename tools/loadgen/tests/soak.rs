//! A few seconds of `loadgen soak` against rtcserver started in-process: every kind of traffic runs on
//! both endpoints, no well-behaved pair loses a message, and every badly-behaved connection ends the way
//! docs/close-codes.md says. (The resource figures are the benchmark's: in-process, the client's own
//! sockets and memory are in the same /proc entry, so they are reported but not checked here.)

use std::sync::Arc;
use std::time::Duration;

use loadgen::target::Target;
use loadgen::workload::soak::{self, SoakArgs};
use rtcserver::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_loses_nothing_and_every_bad_input_gets_its_answer() {
    let server = rtcserver::start(Config {
        // Small limits keep the oversized message and the stalled reader's flood cheap.
        max_message_bytes: 64 * 1024,
        outbound_limit_bytes: 256 * 1024,
        ..Config::ephemeral()
    })
    .expect("rtcserver starts");
    let target = Target::parse(&format!("ws://{}/", server.local_addr())).unwrap();
    let args = SoakArgs {
        server_pid: std::process::id(),
        duration: 4.0,
        warmup: 0.0,
        pairs: 2,
        churners: 1,
        setups: 1,
        garbage: 3,
        slow_readers: 1,
        slow_bytes: 8 << 20,
        oversize: 64 * 1024 + 1,
        size: 300,
        tolerance_percent: 10,
        settle: 1.0,
    };
    let (result, summary) = tokio::time::timeout(
        Duration::from_secs(120),
        soak::run(&target, Arc::from(Vec::new()), &args),
    )
    .await
    .expect("the soak ends within its bounds")
    .expect("the soak runs");
    eprintln!("{summary}\n{result:#}");
    let traffic = &result["traffic"];
    let count = |k: &str| traffic[k].as_u64().unwrap_or(0);
    assert_eq!(result["no_message_lost"], true, "{result:#}");
    assert_eq!(count("internal_errors_1011"), 0, "{result:#}");
    assert!(count("pair_messages_received") > 0, "{result:#}");
    assert_eq!(
        count("pair_messages_sent"),
        count("pair_messages_received"),
        "{result:#}"
    );
    for k in ["churned_connections", "setups", "slow_reader_rounds"] {
        assert!(count(k) > 0, "no {k}: {result:#}");
    }
    // The loops go through the nine kinds of bad input in turn.
    assert!(count("garbage_connections") >= 9, "{result:#}");
    assert_eq!(
        count("churn_failures") + count("setup_failures"),
        0,
        "{result:#}"
    );
    let endings = traffic["endings"].as_object().expect("endings");
    let expected = [
        ("book-not-json", "1007"),
        ("book-binary", "ignored Clean"),
        ("book-oversize", "1009"),
        ("rooms-invalid-message", "error-event Clean"),
        ("rooms-binary", "ignored Clean"),
        ("http-junk", "400"),
        ("http-half-request", "408"),
        ("ws-reserved-opcode", "1002"),
        ("ws-unmasked", "1002"),
    ];
    for (ending, n) in endings {
        let Some((kind, how)) = ending.split_once(' ') else {
            panic!("{ending}");
        };
        if let Some((_, want)) = expected.iter().find(|(k, _)| *k == kind) {
            assert_eq!(how, *want, "{kind}: {n} ended {how}, not {want}");
        }
        if kind.starts_with("slow-reader") {
            assert!(matches!(how, "1008" | "eof"), "a stalled reader: {ending}");
        }
    }
}
