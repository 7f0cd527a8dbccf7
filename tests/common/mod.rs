//! Test harness: an in-process server on 127.0.0.1:0 and real WebSocket clients.
#![allow(dead_code)]
pub mod admin;
pub mod browser;
pub mod cluster;
pub mod fault_checks;
pub mod nginx;
pub mod resume;
use async_net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::StreamExt;
use rtcserver::{Config, Event, ServerHandle};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// Every wait in the tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// Runs a test body with an overall bound, so a hang fails instead of blocking CI.
pub fn run<F: Future<Output = ()>>(body: F) {
    futures_lite::future::block_on(within(Duration::from_secs(120), "the test", body))
}

pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    futures_lite::future::or(async { Some(f.await) }, async {
        async_io::Timer::after(limit).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("{what} did not finish within {limit:?}"))
}

/// Runs the built binary with `--port 0 --admin-bind off` and `args`, to be refused before it
/// starts: its exit status and standard error.
pub fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtcserver"))
        .args(["--port", "0", "--admin-bind", "off"])
        .args(args)
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub events: async_channel::Receiver<Event>,
}

pub fn server() -> TestServer {
    server_with(|_| {})
}

/// A server built with hooks: `build` adds them to `rtcserver::Server::new(config)`.
pub fn server_built(
    config: Config,
    build: impl FnOnce(rtcserver::Server) -> rtcserver::Server,
) -> TestServer {
    let handle = build(rtcserver::Server::new(config))
        .start()
        .expect("server starts");
    let events = handle.events();
    TestServer { handle, events }
}

pub fn server_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::ephemeral();
    tweak(&mut config);
    let handle = rtcserver::start(config).expect("server starts");
    let events = handle.events();
    TestServer { handle, events }
}

impl TestServer {
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr(), "/").await
    }

    /// Waits for the first event matching `want`.
    pub async fn event(&self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        within(WAIT, what, async {
            loop {
                match self.events.recv().await {
                    Ok(e) if want(&e) => return e,
                    Ok(_) => {}
                    Err(_) => panic!("event stream ended while waiting for {what}"),
                }
            }
        })
        .await
    }

    /// The leak check every test ends with: nothing is left once the clients are gone.
    pub async fn assert_clean(&self) {
        within(WAIT, "the server to become idle", self.handle.until_idle()).await;
        let stats = self.handle.stats();
        assert_eq!(
            (stats.peers, stats.rooms, stats.registrations),
            (0, 0, 0),
            "{stats:?}"
        );
        for child in self.handle.tree().children {
            assert!(
                child.children.is_empty(),
                "{} still has children: {:?}",
                child.id,
                child.children
            );
        }
    }
}

pub struct Client {
    pub ws: WebSocketStream<TcpStream>,
    pub local: SocketAddr,
}

impl Client {
    pub async fn connect(addr: SocketAddr, path: &str) -> Client {
        Self::connect_with(addr, path, &[]).await
    }

    pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        Self::handshake(tcp, addr, path, headers).await
    }

    /// A client whose receive buffer is a few KiB: once the test stops reading it, the server's
    /// writes to it soon block (a peer that never reads).
    pub async fn stalled(addr: SocketAddr, path: &str) -> Client {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.connect(&addr.into()).expect("tcp connect");
        let tcp = TcpStream::try_from(std::net::TcpStream::from(socket)).expect("async socket");
        Self::handshake(tcp, addr, path, &[]).await
    }

    async fn handshake(
        tcp: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Client {
        let local = tcp.local_addr().expect("local addr");
        let mut request =
            async_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{addr}{path}"),
            )
            .expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                async_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("header name"),
                value.parse().expect("header value"),
            );
        }
        let (ws, _) = within(
            WAIT,
            "the handshake",
            async_tungstenite::client_async(request, tcp),
        )
        .await
        .expect("handshake");
        Client { ws, local }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next frame that is not a ping/pong.
    pub async fn recv(&mut self) -> Message {
        within(WAIT, "a message", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => {}
                    Some(Ok(m)) => return m,
                    other => panic!("connection ended while waiting for a message: {other:?}"),
                }
            }
        })
        .await
    }

    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(t) => t.as_str().to_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Reads until the server's close frame; returns its code.
    pub async fn expect_close(&mut self) -> CloseCode {
        within(WAIT, "a close frame", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code,
                    Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                    Some(Ok(_)) => {}
                    other => panic!("connection ended without a close frame: {other:?}"),
                }
            }
        })
        .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's side is done, so its cleanup has started.
        let _ = within(WAIT, "the close handshake", async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    pub async fn get_room(&mut self) -> u32 {
        self.send(r#"{"type":"GETROOM","value":""}"#).await;
        let reply = self.recv_text().await;
        let n: u32 = reply
            .strip_prefix(r#"{"type":"GETROOM","value":"#)
            .and_then(|r| r.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a GETROOM reply: {reply}"));
        n
    }

    /// ENTERROOM, which has no answer on success: a relay the other side must receive proves it.
    pub async fn enter(&mut self, room: u32, creator: &mut Client) {
        self.send(&format!(r#"{{"type":"ENTERROOM","value":{room}}}"#))
            .await;
        let probe = format!(r#"{{"type":"probe","from":"{}"}}"#, self.local);
        self.send(&probe).await;
        assert_eq!(
            creator.recv_text().await,
            probe,
            "the joiner's first relay reaches the creator"
        );
    }

    /// Expects WRONGROOM in answer to ENTERROOM `value`.
    pub async fn enter_refused(&mut self, value: &str) {
        self.send(&format!(r#"{{"type":"ENTERROOM","value":{value}}}"#))
            .await;
        assert_eq!(
            self.recv_text().await,
            r#"{"type":"WRONGROOM"}"#,
            "ENTERROOM {value}"
        );
    }
}

/// Two clients joined in one room.
pub async fn pair(server: &TestServer) -> (Client, Client, u32) {
    let mut a = server.client().await;
    let mut b = server.client().await;
    let room = a.get_room().await;
    b.enter(room, &mut a).await;
    (a, b, room)
}

/// The server-side id of a client, from the Connected event that names its address.
pub async fn peer_id_of(server: &TestServer, client: &Client) -> u64 {
    let want = client.local.to_string();
    let peers = server.handle.peers();
    if let Some(p) = peers
        .iter()
        .find(|p| p.client.as_deref() == Some(want.as_str()))
    {
        return p.id;
    }
    match server
        .event(
            "the client's Connected event",
            |e| matches!(e, Event::Connected { client, .. } if *client == want),
        )
        .await
    {
        Event::Connected { peer, .. } => peer,
        _ => unreachable!(),
    }
}

/// Raw HTTP: writes `request`, returns everything the server sent until it closed.
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    within(
        WAIT,
        "the server to answer and close",
        tcp.read_to_end(&mut out),
    )
    .await
    .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

pub const UPGRADE_HEADERS: &str =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A WebSocket opened by hand, to send what a library would refuse to.
pub async fn raw_ws(addr: SocketAddr) -> TcpStream {
    raw_ws_with(addr, "/", "").await
}

/// [`raw_ws`] at `path`, with `extra` header lines (each ending in `\r\n`); returns the socket
/// once the 101 is read.
pub async fn raw_ws_with(addr: SocketAddr, path: &str, extra: &str) -> TcpStream {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{extra}\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within(WAIT, "the 101", tcp.read_exact(&mut byte))
            .await
            .expect("read");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// A final frame; `mask` false makes it a protocol violation from a client.
pub fn frame(opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![
        0x80 | opcode,
        payload.len() as u8 | if mask { 0x80 } else { 0 },
    ];
    if mask {
        f.extend_from_slice(&[0, 0, 0, 0]); // a zero key leaves the payload as is
    }
    f.extend_from_slice(payload);
    f
}

/// Reads server frames until a close frame; returns its code.
pub async fn raw_close_code(tcp: &mut TcpStream) -> u16 {
    use futures_lite::AsyncReadExt;
    within(WAIT, "a close frame", async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await.expect("frame head");
            let len = (head[1] & 0x7f) as usize;
            assert!(len < 126, "server frames here are small");
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.expect("payload");
            if head[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    })
    .await
}

/// `from` sends `n` numbered candidates while `to` checks that each arrives once, in order;
/// `before(i)` runs before message `i` is sent (to inject a fault mid-stream).
pub async fn relay_numbered(
    from: &mut Client,
    to: &mut Client,
    n: usize,
    mut before: impl FnMut(usize),
) {
    let send = async {
        for i in 0..n {
            before(i);
            from.send(&format!(r#"{{"type":"candidate","seq":{i}}}"#))
                .await;
        }
    };
    let receive = async {
        for i in 0..n {
            assert_eq!(
                to.recv_text().await,
                format!(r#"{{"type":"candidate","seq":{i}}}"#)
            );
        }
    };
    futures_lite::future::zip(send, receive).await;
}

impl Client {
    /// The next text frame as JSON.
    pub async fn recv_json(&mut self) -> serde_json::Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next named-rooms message, checked to be `event`; returns its `data`.
    pub async fn expect_event(&mut self, event: &str) -> serde_json::Value {
        let m = self.recv_json().await;
        assert_eq!(m["event"], event, "expected {event}, got {m}");
        m["data"].clone()
    }
}

/// A peer of `/socket/<room>`, authenticated: its id and the peers it found there.
pub struct RoomPeer {
    pub client: Client,
    pub id: String,
    pub found: Vec<String>,
}

impl RoomPeer {
    pub async fn join(server: &TestServer, room: &str) -> RoomPeer {
        Self::join_with(server, room, &[]).await
    }

    pub async fn join_with(server: &TestServer, room: &str, headers: &[(&str, &str)]) -> RoomPeer {
        let mut client =
            Client::connect_with(server.addr(), &format!("/socket/{room}"), headers).await;
        let data = client.expect_event("authenticated").await;
        assert_eq!(data["room"], room.trim_end_matches('/'));
        let id = data["peer_id"]
            .as_str()
            .expect("peer_id is a string")
            .to_owned();
        let found = data["peers"]
            .as_array()
            .expect("peers is a list")
            .iter()
            .map(|p| p.as_str().expect("peer ids are strings").to_owned())
            .collect();
        RoomPeer { client, id, found }
    }

    pub async fn send(&mut self, json: serde_json::Value) {
        self.client.send(&json.to_string()).await;
    }

    pub async fn expect_event(&mut self, event: &str) -> serde_json::Value {
        self.client.expect_event(event).await
    }

    /// The next message, whole.
    pub async fn recv_json(&mut self) -> serde_json::Value {
        self.client.recv_json().await
    }
}

impl TestServer {
    /// The leak check, for a server whose `configured` rooms stay when empty.
    pub async fn assert_clean_with_rooms(&self, configured: usize) {
        within(WAIT, "the server to become idle", self.handle.until_idle()).await;
        let stats = self.handle.stats();
        assert_eq!(
            (stats.peers, stats.rooms, stats.registrations),
            (0, configured, 0),
            "{stats:?}"
        );
    }
}
