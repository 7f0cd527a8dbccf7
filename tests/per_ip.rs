//! docs/flags.md, `--max-connections-per-ip`: one WebSocket more than the limit from one client
//! address gets HTTP 429 before the upgrade; a closed one frees its place; pages are not
//! counted; behind trusted proxies each forwarded client has its own count.
mod common;
use common::admin::*;
use common::*;

fn upgrade(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{extra}\r\n")
}

#[test]
fn the_connection_past_the_limit_gets_429_and_a_closed_one_frees_its_place() {
    run(async {
        let s = server_with(|c| c.max_connections_per_ip = Some(2));
        let a = s.client().await;
        let b = RoomPeer::join(&s, "lobby").await;
        for path in ["/", "/socket/lobby"] {
            let answer = raw_http(s.addr(), &upgrade(path, "")).await;
            assert!(
                answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n")
                    && answer.contains("too many connections from 127.0.0.1 (at most 2)"),
                "{path}: {answer:.160}"
            );
        }
        // Pages still load at the limit.
        let page = raw_http(s.addr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 "), "{page:.80}");
        a.close().await;
        s.event("a's connection ended", |e| {
            matches!(e, rtcserver::Event::Disconnected { .. })
        })
        .await;
        let mut c = s.client().await;
        c.get_room().await;
        let metrics = get(admin(&s), "/metrics").await.expect(200).body;
        let line =
            r#"rtcserver_http_rejections_total{reason="too_many_connections",status="429"} 2"#;
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        c.close().await;
        b.client.close().await;
        s.assert_clean().await;
        assert_eq!(s.handle.stats().client_addresses, 0, "no count is left");
    });
}

#[test]
fn behind_trusted_proxies_each_forwarded_client_has_its_own_count() {
    run(async {
        let s = server_with(|c| {
            c.max_connections_per_ip = Some(1);
            c.trusted_proxies = "127.0.0.1/32".parse().expect("proxies");
        });
        let first = raw_ws_with(s.addr(), "/", "X-Forwarded-For: 203.0.113.5\r\n").await;
        let second = raw_ws_with(s.addr(), "/", "X-Forwarded-For: 203.0.113.6\r\n").await;
        let third = raw_http(s.addr(), &upgrade("/", "X-Forwarded-For: 203.0.113.5\r\n")).await;
        assert!(
            third.starts_with("HTTP/1.1 429 ") && third.contains("203.0.113.5"),
            "{third:.160}"
        );
        drop((first, second));
        s.assert_clean().await;
    });
}
