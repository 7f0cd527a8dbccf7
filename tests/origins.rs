//! docs/flags.md, `--allowed-origins`: an upgrade from a page whose `Origin` is not listed gets
//! HTTP 403 before any WebSocket exists, on both endpoints (over TLS: tests/tls.rs).
mod common;
use common::admin::*;
use common::*;
use rtcserver::origins::AllowedOrigins;

fn listed() -> AllowedOrigins {
    "https://a.example,http://localhost:30000"
        .parse()
        .expect("origins")
}

fn upgrade(path: &str, origin: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Origin: {origin}\r\n\r\n")
}

/// Listed (in any case, with the default port written out) and missing Origins get the
/// WebSocket; unlisted, `null` and malformed ones get 403 and a reason, and the server keeps
/// nothing of them. Plain HTTP is not checked: the page itself loads from anywhere.
#[test]
fn only_listed_origins_open_a_websocket_on_both_endpoints() {
    run(async {
        let s = server_with(|c| c.allowed_origins = listed());
        for path in ["/", "/socket/lobby"] {
            for origin in [
                "https://a.example",
                "HTTPS://A.Example:443",
                "http://localhost:30000",
            ] {
                let header = format!("Origin: {origin}\r\n");
                drop(raw_ws_with(s.addr(), path, &header).await);
            }
            drop(raw_ws_with(s.addr(), path, "").await);
            for (origin, why) in [
                ("https://b.example", "origin not allowed"),
                ("http://localhost:30001", "origin not allowed"),
                ("https://a.example.evil.example", "origin not allowed"),
                ("null", "origin not allowed"),
                ("https://a.example/", "malformed Origin header"),
                ("a.example", "malformed Origin header"),
                ("", "malformed Origin header"),
            ] {
                let answer = raw_http(s.addr(), &upgrade(path, origin)).await;
                assert!(
                    answer.starts_with("HTTP/1.1 403 Forbidden\r\n") && answer.contains(why),
                    "{path} from {origin:?}: {answer:.120}"
                );
                assert!(!answer.contains("101"), "{answer}");
            }
        }
        let page = raw_http(
            s.addr(),
            "GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://b.example\r\n\r\n",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200 "), "{page:.80}");
        // Each refusal is counted by reason (docs/admin-api.md, metrics); a 404 beside them.
        let missing = raw_http(s.addr(), "GET /static/nope.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing:.80}"
        );
        let metrics = get(admin(&s), "/metrics").await.expect(200).body;
        for line in [
            r#"rtcserver_http_rejections_total{reason="origin_not_allowed",status="403"} 8"#,
            r#"rtcserver_http_rejections_total{reason="malformed_origin",status="403"} 6"#,
            r#"rtcserver_http_rejections_total{reason="not_found",status="404"} 1"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
        // A refused upgrade leaves no peer behind, and the listed ones still call.
        let (a, b, _) = pair(&s).await;
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

/// Without the flag every origin is let in, as the original did.
#[test]
fn by_default_any_origin_opens_a_websocket() {
    run(async {
        let s = server();
        for origin in ["https://b.example", "null", "junk"] {
            let header = format!("Origin: {origin}\r\n");
            drop(raw_ws_with(s.addr(), "/", &header).await);
        }
        s.assert_clean().await;
    });
}

/// The flag's list is checked at start: an entry that is not an origin stops the binary.
#[test]
fn an_invalid_list_stops_the_start() {
    for list in ["ftp://a.example", "https://a.example/path", ""] {
        let (code, err) = common::refused_start(&["--allowed-origins", list]);
        assert_eq!(code, Some(2), "{list:?}: {err}");
        assert!(err.contains("--allowed-origins"), "{err}");
    }
}
