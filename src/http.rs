//! The HTTP side of a connection before (or instead of) the WebSocket: reading the request head
//! within the handshake timeout, routing, the upgrade response, and the static demo page.
//!
//! The upgrade is answered here rather than by tungstenite's `accept_hdr`, because a plain
//! `GET /` must get the page and a bad request must get a precise status, both before any
//! WebSocket exists.
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::fmt;
use std::path::{Component, Path};
use std::time::Duration;

/// Longest request head accepted (browsers send well under 2 KiB).
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// The parts of an upgrade request the server uses.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// What follows the `?` (without a fragment), or empty.
    pub query: String,
    pub upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    pub connection_upgrade: bool,
    /// Every header, names lowercased (for the hooks; freed with the request).
    pub headers: Vec<(String, String)>,
    /// Bytes read past the head (a client may send its first frame right behind it).
    pub rest: Vec<u8>,
}

#[derive(Debug)]
pub enum ReadError {
    /// The handshake timeout passed; `partial`: part of a request had come (answered 408, as
    /// cowboy does), or nothing (just closed).
    Timeout {
        partial: bool,
    },
    Closed,
    TooLarge,
    Malformed(String),
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout { partial: false } => {
                f.write_str("no request within the handshake timeout")
            }
            ReadError::Timeout { partial: true } => {
                f.write_str("an incomplete request at the handshake timeout")
            }
            ReadError::Closed => f.write_str("closed before a request"),
            ReadError::TooLarge => f.write_str("request head too large"),
            ReadError::Malformed(e) => write!(f, "malformed request: {e}"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads one request head, bounded in size and time.
pub async fn read_request<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Request, ReadError> {
    // Shared by the two racing futures of one task; atomic only because the task may move.
    let partial = std::sync::atomic::AtomicBool::new(false);
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            partial.store(true, std::sync::atomic::Ordering::Relaxed);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(request) = parse_head(&buf)? {
                return Ok(request);
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::TooLarge);
            }
        }
    };
    futures_lite::future::or(read, async {
        crate::deadline::after(timeout).await;
        Err(ReadError::Timeout {
            partial: partial.load(std::sync::atomic::Ordering::Relaxed),
        })
    })
    .await
}

/// `Ok(None)` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let target = req.path.unwrap_or("");
    // Only the origin form (RFC 9112 §3.2.1) names a resource here: `*`, `http://host/...`,
    // `?x` or a bare word are not requests this server can route.
    if !target.starts_with('/') {
        return Err(ReadError::Malformed(format!(
            "the request target {:?} does not start with /",
            Shown(target)
        )));
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    let query = target
        .split('#')
        .next()
        .and_then(|t| t.split_once('?'))
        .map_or_else(String::new, |(_, q)| q.to_owned());
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_owned(),
        path,
        query,
        upgrade: header("upgrade").is_some() || header("sec-websocket-key").is_some(),
        ws_key: header("sec-websocket-key").map(str::to_owned),
        ws_version: header("sec-websocket-version").map(str::to_owned),
        connection_upgrade: has_token("connection", "upgrade") && has_token("upgrade", "websocket"),
        headers: req
            .headers
            .iter()
            .filter_map(|h| {
                let value = std::str::from_utf8(h.value).ok()?;
                Some((h.name.to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect(),
        rest: buf[len..].to_vec(),
    }))
}

/// Two hex digits (`from_str_radix` alone would also take `+1`).
pub fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match digits {
        [hi, lo] => u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok(),
        _ => None,
    }
}

/// Peer-written text for a log line: its first 64 characters, escaped.
pub struct Shown<'a>(pub &'a str);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(64).collect();
        write!(f, "{head:?}")?;
        if chars.next().is_some() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl Request {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of this name, in order (a list header may come in several lines).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The book protocol's WebSocket (`/` and `/signaling`).
    BookSocket,
    /// The named-rooms WebSocket, `/socket/<room>`.
    RoomSocket(String),
    /// `GET /<room>`: the named-rooms page for that room.
    RoomPage(String),
    /// A file of the static directory, relative to it.
    Static(String),
    /// An HTTP error answer, with a reason for the log.
    Reject(u16, &'static str),
}

pub fn route(req: &Request) -> Route {
    if req.upgrade {
        let room = match req.path.as_str() {
            "/" | "/signaling" => None,
            p => match p.strip_prefix("/socket/") {
                Some(name) => {
                    let name = name.strip_suffix('/').unwrap_or(name);
                    if !valid_room_name(name) {
                        return Route::Reject(400, "a room name is 1-64 of [A-Za-z0-9._-]");
                    }
                    Some(name.to_owned())
                }
                None => return Route::Reject(404, "no WebSocket endpoint at this path"),
            },
        };
        if req.method != "GET" {
            return Route::Reject(400, "upgrade must be a GET");
        }
        if !req.connection_upgrade {
            return Route::Reject(400, "missing Connection: Upgrade / Upgrade: websocket");
        }
        if req.ws_version.as_deref() != Some("13") {
            return Route::Reject(400, "unsupported Sec-WebSocket-Version");
        }
        match &req.ws_key {
            Some(key) if valid_ws_key(key) => {
                return room.map_or(Route::BookSocket, Route::RoomSocket)
            }
            _ => return Route::Reject(400, "missing or malformed Sec-WebSocket-Key"),
        }
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Route::Reject(405, "method not allowed");
    }
    match req.path.as_str() {
        "/" | "/index.html" => Route::Static("index.html".into()),
        "/favicon.ico" => Route::Reject(404, "not found"),
        p => match p.strip_prefix("/static/") {
            Some(rel) if safe_relative(rel) => Route::Static(rel.to_owned()),
            Some(_) => Route::Reject(404, "not found"),
            None => {
                let name = p.strip_prefix('/').unwrap_or(p);
                let name = name.strip_suffix('/').unwrap_or(name);
                if valid_room_name(name) {
                    Route::RoomPage(name.to_owned())
                } else {
                    Route::Reject(404, "not found")
                }
            }
        },
    }
}

/// `rooms-protocol.md`: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// RFC 6455 §4.1: the key is 16 random bytes, base64-encoded (24 characters).
fn valid_ws_key(key: &str) -> bool {
    key.strip_suffix("==").is_some_and(|nonce| {
        nonce.len() == 22
            && nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

/// No `..`, no absolute paths, only plain file-name characters.
fn safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && rel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The 101 answer to a valid upgrade.
pub fn switching_protocols(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// The `reason` label of a rejected request in `/metrics`, by its status.
pub fn rejection_reason(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        429 => "too_many_requests",
        _ => "other",
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a complete response and closes (one request per connection).
pub async fn respond<S: futures_lite::AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut extra = String::new();
    if status == 400 {
        // RFC 6455 §4.4: tell the client which version we speak.
        extra.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    if status == 401 {
        extra.push_str("WWW-Authenticate: Bearer realm=\"rtcserver\"\r\n");
    }
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    // Over TLS this sends close_notify, so the client knows the body is whole.
    stream.close().await
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request {
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    const UPGRADE: &str = "GET /signaling?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 10.1.2.3, 10.0.0.1\r\n\r\nXYZ";

    #[test]
    fn an_upgrade_request_is_parsed_and_routed() {
        let r = req(UPGRADE);
        assert_eq!(r.path, "/signaling");
        assert_eq!(r.query, "x=1");
        assert_eq!(
            req("GET /?faults=glare#top HTTP/1.1\r\n\r\n").query,
            "faults=glare"
        );
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n").query, "");
        assert_eq!(r.header("x-forwarded-for"), Some("10.1.2.3, 10.0.0.1"));
        assert_eq!(r.rest, b"XYZ");
        assert_eq!(route(&r), Route::BookSocket);
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert!(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==")
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn bad_upgrades_get_400_and_unknown_paths_404() {
        assert_eq!(
            route(&req(&UPGRADE.replace("/signaling?x=1", "/nope"))),
            Route::Reject(404, "no WebSocket endpoint at this path")
        );
        assert!(matches!(
            route(&req(&UPGRADE.replace("Version: 13", "Version: 8"))),
            Route::Reject(400, _)
        ));
        assert!(matches!(
            route(&req(&UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"))),
            Route::Reject(400, _)
        ));
    }

    #[test]
    fn plain_gets_serve_static_files_safely() {
        assert_eq!(
            route(&req("GET /?room=5 HTTP/1.1\r\n\r\n")),
            Route::Static("index.html".into())
        );
        assert_eq!(
            route(&req("GET /static/app.js HTTP/1.1\r\n\r\n")),
            Route::Static("app.js".into())
        );
        assert!(matches!(
            route(&req("GET /static/../Cargo.toml HTTP/1.1\r\n\r\n")),
            Route::Reject(404, _)
        ));
        assert!(matches!(
            route(&req("GET /etc/passwd HTTP/1.1\r\n\r\n")),
            Route::Reject(404, _)
        ));
        assert_eq!(
            route(&req("GET /lobby HTTP/1.1\r\n\r\n")),
            Route::RoomPage("lobby".into())
        );
    }

    #[test]
    fn named_room_upgrades_check_the_name() {
        assert_eq!(
            route(&req(
                &UPGRADE.replace("/signaling?x=1", "/socket/my-room_1.x/")
            )),
            Route::RoomSocket("my-room_1.x".into())
        );
        let long = format!("/socket/{}", "a".repeat(65));
        for bad in ["/socket/", "/socket/a%20b", "/socket/a/b", long.as_str()] {
            assert!(
                matches!(
                    route(&req(&UPGRADE.replace("/signaling?x=1", bad))),
                    Route::Reject(400, _)
                ),
                "{bad}"
            );
        }
        let r = req(&UPGRADE.replace("Host: a", "Host: a\r\nCookie: x=1"));
        assert_eq!(r.header("COOKIE"), Some("x=1"));
    }

    #[test]
    fn a_target_that_is_not_a_path_is_malformed() {
        for line in ["GET ?x", "GET #x", "GET *", "GET http://h/", "GET \u{e9}"] {
            let text = format!("{line} HTTP/1.1\r\n\r\n");
            assert!(
                matches!(parse_head(text.as_bytes()), Err(ReadError::Malformed(_))),
                "{line}"
            );
        }
        let long = format!("GET {} HTTP/1.1\r\n\r\n", "x".repeat(200));
        let Err(e) = parse_head(long.as_bytes()) else {
            panic!("accepted");
        };
        assert!(e.to_string().len() < 150, "{e}");
        assert_eq!(
            format!("{:?}", Shown("/a\u{202e}b<i>")),
            "\"/a\\u{202e}b<i>\""
        );
        assert_eq!(hex_byte(b"e9"), Some(0xe9));
        assert_eq!(hex_byte(b"+1"), None);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n")
            .unwrap()
            .is_none());
    }
}
