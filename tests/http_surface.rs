//! The HTTP surface an attacker or an operator meets first: odd requests, the admin listener's
//! slots, `X-Forwarded-For`, the observer page with a token, room pages with accounts, and
//! which credentials win.
mod common;
use common::admin::*;
use common::*;
use rtcserver::auth::{Accounts, User};

/// Every crash the supervisors counted, from `GET /metrics`.
async fn crashes(s: &TestServer) -> u64 {
    let metrics = get(admin(s), "/metrics").await.expect(200).body;
    metrics
        .lines()
        .filter(|l| l.starts_with("rtcserver_crashes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn alice() -> Accounts {
    Accounts {
        users: vec![User {
            username: "alice".into(),
            password: "wonderland".into(),
        }],
        tokens: Vec::new(),
    }
}

/// README "Named rooms: `/socket/<room>`" (anything else 404; a target that is not a path 400): a
/// request target that is not a path (`é`, `?x`, `#x`, `*`, an absolute URL) is
/// HTTP 400; odd paths, headers and cookies get their 4xx. None of them crashes the
/// connection's process (a crash would show in `rtcserver_crashes_total`).
#[test]
fn odd_request_lines_and_headers_get_an_http_answer_never_a_crash() {
    run(async {
        let s = server_with(|c| c.accounts = alice());
        let before = crashes(&s).await;
        let socket = format!("Host: x\r\n{UPGRADE_HEADERS}");
        let cases: Vec<(String, &str)> = vec![
            ("GET é HTTP/1.1\r\n\r\n".into(), "400"),
            ("GET ?x HTTP/1.1\r\n\r\n".into(), "400"),
            ("GET #x HTTP/1.1\r\n\r\n".into(), "400"),
            ("GET * HTTP/1.1\r\n\r\n".into(), "400"),
            ("OPTIONS * HTTP/1.1\r\n\r\n".into(), "400"),
            ("GET http://x/ HTTP/1.1\r\n\r\n".into(), "400"),
            (format!("GET ?x HTTP/1.1\r\n{socket}\r\n"), "400"),
            (format!("GET é HTTP/1.1\r\n{socket}\r\n"), "400"),
            ("GET /é HTTP/1.1\r\n\r\n".into(), "404"),
            ("GET // HTTP/1.1\r\n\r\n".into(), "404"),
            ("GET /%ff HTTP/1.1\r\n\r\n".into(), "404"),
            ("GET /static/é HTTP/1.1\r\n\r\n".into(), "404"),
            ("GET /socket/é HTTP/1.1\r\n\r\n".into(), "404"),
            (format!("GET /socket/é HTTP/1.1\r\n{socket}\r\n"), "400"),
            (format!("GET /socket/r?é#x HTTP/1.1\r\n{socket}\r\n"), "401"),
            (
                format!("GET /socket/r HTTP/1.1\r\n{socket}Cookie: credentials=%\r\n\r\n"),
                "401",
            ),
            (
                format!("GET /socket/r HTTP/1.1\r\n{socket}Cookie: credentials=%e9%8\r\n\r\n"),
                "401",
            ),
            (
                format!("GET /socket/r HTTP/1.1\r\n{socket}Cookie: credentials=%+1%-1\r\n\r\n"),
                "401",
            ),
            (
                format!("GET /socket/r HTTP/1.1\r\n{socket}Cookie: =; ;;credentials\r\n\r\n"),
                "401",
            ),
            (
                format!("GET /socket/r HTTP/1.1\r\n{socket}Authorization: Bearer\r\n\r\n"),
                "401",
            ),
            (
                format!("GET /socket/r HTTP/1.1\r\n{socket}Authorization: é é\r\n\r\n"),
                "401",
            ),
            (
                "GET / HTTP/1.1\r\nX-Forwarded-For: é, ,\u{202e}\r\n\r\n".into(),
                "200",
            ),
        ];
        for (request, status) in &cases {
            let answer = raw_http(s.addr(), request).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{request:?} got {answer:.120?}"
            );
        }
        assert_eq!(crashes(&s).await, before, "no connection crashed");
        s.assert_clean().await;
    });
}

const ALICE_COOKIE: &str = r#"credentials={"username":"alice","password":"wonderland"}"#;

/// README "Named rooms: `/socket/<room>`" (Authentication): an `Authorization` header of another
/// scheme (nginx `auth_basic` in front) leaves the `credentials` cookie in force; only a Bearer
/// token takes precedence over it.
#[test]
fn a_basic_authorization_header_does_not_hide_a_valid_cookie() {
    run(async {
        let s = server_with(|c| c.accounts = alice());
        let peer = RoomPeer::join_with(
            &s,
            "basic",
            &[
                ("Cookie", ALICE_COOKIE),
                ("Authorization", "Basic YWxpY2U6d29uZGVybGFuZA=="),
            ],
        )
        .await;
        assert!(!peer.id.is_empty());
        let bearer_wins = raw_http(
            s.addr(),
            &format!(
                "GET /socket/basic HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Cookie: {ALICE_COOKIE}\r\nAuthorization: Bearer wrong\r\n\r\n"
            ),
        )
        .await;
        assert!(
            bearer_wins.starts_with("HTTP/1.1 401 "),
            "{bearer_wins:.80}"
        );
        peer.client.close().await;
        s.assert_clean().await;
    });
}

/// README "Named rooms: `/socket/<room>`" (`GET /<room>`): with accounts and `--no-auto-rooms`,
/// the room page is the same for a configured room and an unknown one, so the page does not
/// list the rooms; the socket still answers 401 without credentials and 404 with them.
#[test]
fn with_accounts_the_room_page_does_not_tell_which_rooms_exist() {
    run(async {
        let s = server_with(|c| {
            c.accounts = alice();
            c.auto_rooms = false;
            c.rooms = vec![rtcserver::hooks::RoomContext {
                name: "standup".into(),
                max_peers: 4,
                metadata: serde_json::Value::Null,
                configured: true,
            }];
        });
        let page = |name: &str| format!("GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n");
        let known = raw_http(s.addr(), &page("standup")).await;
        let unknown = raw_http(s.addr(), &page("no-such-room")).await;
        assert!(known.starts_with("HTTP/1.1 200 "), "{known:.80}");
        assert_eq!(known, unknown, "the same answer for both names");
        for (room, cookie, status) in [
            ("standup", "", "401"),
            ("no-such-room", "", "401"),
            ("no-such-room", ALICE_COOKIE, "404"),
        ] {
            let answer = raw_http(
                s.addr(),
                &format!(
                    "GET /socket/{room} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Cookie: {cookie}\r\n\r\n"
                ),
            )
            .await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{room} {cookie}: {answer:.80}"
            );
        }
        let open = server_with(|c| c.auto_rooms = false);
        let missing = raw_http(open.addr(), &page("no-such-room")).await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing:.80}");
        s.assert_clean_with_rooms(1).await;
        open.assert_clean().await;
    });
}

/// README "Testing your client against crashes" (Access): with `--admin-token`, a browser loads
/// the observer page without the header (it then asks for the token); every data endpoint still
/// answers 401 without it, and the page keeps the Origin check.
#[test]
fn with_an_admin_token_the_observer_page_loads_without_it_and_the_data_does_not() {
    run(async {
        let s = server_with(|c| c.admin_token = Some("s3cret".parse().expect("token")));
        let a = admin(&s);
        for path in ["/", "/observer.html", "/?from=bookmark"] {
            let page = get(a, path).await.expect(200);
            assert!(page.body.contains("<title>rtcserver observer</title>"));
            assert!(page.body.contains("This admin API needs a token"));
        }
        http(a, "HEAD", "/", &[], "").await.expect(200);
        for path in ["/tree", "/metrics", "/events", "/chaos", "/nope"] {
            get(a, path).await.expect(401);
        }
        post(a, "/crash?target=listener", "").await.expect(401);
        http(a, "GET", "/", &[("Origin", "https://evil.example")], "")
            .await
            .expect(403);
        let bearer = [("Authorization", "Bearer s3cret")];
        http(a, "GET", "/tree", &bearer, "").await.expect(200);
        s.assert_clean().await;
    });
}
