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

/// The `client` of the next connection, as its Connected event and `GET /tree` show it.
async fn client_of(s: &TestServer, path: &str, forwarded_for: &str) -> (String, String) {
    let tcp = raw_ws_with(
        s.addr(),
        path,
        &format!("X-Forwarded-For: {forwarded_for}\r\n"),
    )
    .await;
    let socket = tcp.local_addr().expect("local addr").to_string();
    let (peer, client) = match s
        .event("the Connected event", |e| {
            matches!(e, rtcserver::Event::Connected { .. })
        })
        .await
    {
        rtcserver::Event::Connected { peer, client } => (peer, client),
        _ => unreachable!(),
    };
    let tree = http(admin(s), "GET", "/tree", &[], "")
        .await
        .expect(200)
        .json();
    let shown = tree["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["id"] == peer))
        .and_then(|p| p["client"].as_str())
        .unwrap_or_else(|| panic!("peer {peer} not in {tree}"))
        .to_owned();
    assert_eq!(shown, client, "/tree and the event agree");
    drop(tcp);
    s.event(
        "the Disconnected event",
        |e| matches!(e, rtcserver::Event::Disconnected { peer: p } if *p == peer),
    )
    .await;
    (client, socket)
}

/// README "Running" (`--trusted-proxies`): `X-Forwarded-For` is believed only from a trusted
/// proxy, its rightmost untrusted entry is the client, only a parsed IP address reaches `/tree`
/// and events, and markup or an 8 KB header never does.
#[test]
fn x_forwarded_for_counts_only_from_trusted_proxies_and_only_as_an_address() {
    run(async {
        let untrusting = server();
        let (client, socket) = client_of(&untrusting, "/", "203.0.113.5").await;
        assert_eq!(client, socket, "an untrusted sender's header is ignored");
        untrusting.assert_clean().await;

        let s = server_with(|c| {
            c.trusted_proxies = "127.0.0.1/32,10.0.0.0/8".parse().expect("blocks");
        });
        let big = "a".repeat(7 * 1024);
        let big_list = format!("203.0.113.9{}", ",10.0.0.1".repeat(700));
        let cases = [
            ("/", "198.51.100.1, 203.0.113.5", Some("203.0.113.5")),
            ("/", "203.0.113.5, 10.0.0.7", Some("203.0.113.5")),
            (
                "/socket/r",
                "198.51.100.1, 2001:db8::5",
                Some("2001:db8::5"),
            ),
            ("/", "<img src=x onerror=alert(1)>", None),
            ("/", "\u{202e}1.2.3.4", None),
            ("/", big.as_str(), None),
            ("/", big_list.as_str(), Some("10.0.0.1")),
        ];
        for (path, header, want) in cases {
            let (client, socket) = client_of(&s, path, header).await;
            assert_eq!(client, want.unwrap_or(&socket), "{header:.60}");
            assert!(client.len() <= 47, "{client:.80}");
        }
        s.assert_clean().await;
    });
}

/// README "Running" (`--trusted-proxies`): the flag of the binary, and its log line naming both
/// the forwarded address and the socket's peer; a malformed block stops the start.
#[test]
fn the_binary_takes_trusted_proxies_and_logs_the_socket_address_too() {
    let mut bin = Binary::start(&[
        "--port",
        "0",
        "--admin-bind",
        "127.0.0.1:0",
        "--trusted-proxies",
        "127.0.0.1/32, ::1/128",
    ]);
    let (addr, _) = bin.addresses();
    run(async {
        let tcp = raw_ws_with(addr, "/", "X-Forwarded-For: 203.0.113.5\r\n").await;
        let socket = tcp.local_addr().expect("local addr");
        let line = bin.wait_for_line(" connected from ");
        assert_eq!(line, format!("203.0.113.5 via {socket}"));
    });
    let mut refused = Binary::start(&["--port", "0", "--trusted-proxies", "10.0.0.0/33"]);
    let (code, log) = refused.exit_code(WAIT);
    assert_eq!(code, Some(2), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("10.0.0.0/33")), "{log:#?}");
}

/// README "Testing your client against crashes" (Access): connections that send nothing cannot
/// lock the operator out of the admin API. Each must send its request within 1 s (else 408), and
/// past `MAX_WAITING` of them a new connection takes the place of the oldest, so the operator's
/// request, sent right after its connect, is read and served.
#[test]
fn silent_connections_do_not_lock_the_operator_out_of_the_admin_api() {
    use futures_lite::AsyncReadExt;
    run(async {
        let s = server_with(|c| c.admin_token = Some("s3cret".parse().expect("token")));
        let a = admin(&s);
        let mut silent = Vec::new();
        for _ in 0..rtcserver::admin::MAX_WAITING + 36 {
            silent.push(async_net::TcpStream::connect(a).await.expect("connect"));
        }
        let bearer = [("Authorization", "Bearer s3cret")];
        http(a, "GET", "/tree", &bearer, "").await.expect(200);
        http(a, "GET", "/metrics", &bearer, "").await.expect(200);
        for mut tcp in silent {
            let mut answer = Vec::new();
            within(
                WAIT,
                "a silent connection to be closed",
                tcp.read_to_end(&mut answer),
            )
            .await
            .expect("read");
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
                "evicted without an answer, or timed out: {answer:.80}"
            );
        }
        s.assert_clean().await;
    });
}

/// README "Testing your client against crashes" (Access): at most `MAX_SERVED` allowed requests
/// (event streams included) are served at once; one more is a 503 with the JSON error.
#[test]
fn past_the_served_places_an_admin_request_gets_503() {
    run(async {
        let s = server();
        let a = admin(&s);
        let mut streams = Vec::new();
        for _ in 0..rtcserver::admin::MAX_SERVED {
            streams.push(Sse::open(a).await);
        }
        let busy = get(a, "/tree").await.expect(503);
        assert_eq!(busy.json()["status"], 503);
        drop(streams);
        s.assert_clean().await;
    });
}
