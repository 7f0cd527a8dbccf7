//! Test helpers for the admin API: a small HTTP client, an SSE reader, the built binary.
use super::{within, TestServer, WAIT};
use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An answer of the admin API.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// Parses a whole answer as [`raw_http`](super::raw_http) returns it.
    pub fn parse_raw(raw: &str) -> Reply {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {raw:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Reply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Asserts the status; on a mismatch shows the whole answer.
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "{self:?}");
        self
    }
}

fn request_text(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    Reply::parse_raw(&super::raw_http(addr, &request_text(addr, method, path, headers, body)).await)
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, &[], "").await
}

pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    http(addr, "POST", path, &[], body).await
}

/// A POST from a plain thread-blocking socket: for hooks that cannot await (`relay_numbered`).
pub fn post_blocking(addr: SocketAddr, path: &str, body: &str) -> Reply {
    let mut tcp = std::net::TcpStream::connect(addr).expect("tcp connect");
    tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
    tcp.write_all(request_text(addr, "POST", path, &[], body).as_bytes())
        .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).expect("read");
    Reply::parse_raw(&out)
}

/// The admin API's address of an in-process server.
pub fn admin(s: &TestServer) -> SocketAddr {
    s.handle.admin_addr().expect("the admin API is on")
}

/// Crashes `target` through the admin API; returns the answer's JSON.
pub async fn crash(s: &TestServer, target: &str) -> Value {
    post(admin(s), &format!("/crash?target={target}"), "")
        .await
        .expect(200)
        .json()
}

/// The children of the node at `path` in a `GET /tree` answer (`[]`: the root's).
pub fn node<'a>(tree: &'a Value, path: &[&str]) -> &'a Value {
    let mut node = &tree["tree"];
    for id in path {
        node = node["children"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == *id))
            .unwrap_or_else(|| panic!("no {id} in {node}"));
    }
    node
}

/// A reader of `GET /events`.
pub struct Sse {
    tcp: TcpStream,
    buf: String,
}

impl Sse {
    /// Subscribes; once this returns, no later event is missed.
    pub async fn open(addr: SocketAddr) -> Sse {
        let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
        tcp.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut sse = Sse {
            tcp,
            buf: String::new(),
        };
        within(WAIT, "the event stream's head", async {
            while !sse.buf.contains(": subscribed\n\n") {
                sse.fill().await;
            }
        })
        .await;
        assert!(
            sse.buf.starts_with("HTTP/1.1 200 OK\r\n") && sse.buf.contains("text/event-stream"),
            "{}",
            sse.buf
        );
        let at = sse.buf.find(": subscribed\n\n").unwrap_or(0) + ": subscribed\n\n".len();
        sse.buf.drain(..at);
        sse
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the event stream ended; unread: {:?}", self.buf);
        self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }

    /// The next `data:` event, skipping comments.
    pub async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).expect("an event is JSON");
                }
                continue;
            }
            self.fill().await;
        }
    }

    /// Reads events until one matches; returns it.
    pub async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        within(WAIT, what, async {
            loop {
                let event = self.next().await;
                if want(&event) {
                    return event;
                }
            }
        })
        .await
    }
}

/// The built `rtcserver` binary, killed on drop.
pub struct Binary {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Binary {
    pub fn start(args: &[&str]) -> Binary {
        Binary::start_with_env(args, &[])
    }

    /// The binary with `args` and these environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtcserver"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
        }
        Binary {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The binary on loopback: an ephemeral port and an ephemeral admin port, then `extra`.
    pub fn on_loopback(extra: &[&str]) -> Binary {
        Binary::on_loopback_with_env(extra, &[])
    }

    /// [`Binary::on_loopback`] with these environment variables set.
    pub fn on_loopback_with_env(extra: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut args = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--admin-bind",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Binary::start_with_env(&args, env)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process logged so far (without waiting for more).
    pub fn log_so_far(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.clone()
    }

    /// Sends the process a signal (`TERM`, `KILL`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// A line of the process's `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// Reads the log until a line contains `marker`; returns what follows it.
    pub fn wait_for_line(&mut self, marker: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!("no line with {marker:?} within {WAIT:?}: {:?}", self.log)
            });
            self.log.push(line.clone());
            if let Some(rest) = line.split(marker).nth(1) {
                return rest.to_owned();
            }
        }
    }

    /// The addresses of the server and of its admin API, from the start-up log.
    pub fn addresses(&mut self) -> (SocketAddr, SocketAddr) {
        let server = self
            .wait_for_line("listening on ")
            .trim()
            .parse()
            .expect("an address");
        let admin = self
            .wait_for_line("observer page on http://")
            .trim()
            .trim_end_matches('/')
            .parse()
            .expect("an address");
        (server, admin)
    }

    /// Waits (bounded) for the process to exit; returns its exit code and the whole log.
    pub fn exit_code(&mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader threads end with the pipes; take what they still have.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return (status.code(), self.log.clone());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the binary did not exit within {limit:?}: {:?}",
                self.log
            );
            for _ in 0..1000 {
                match self.lines.recv_timeout(Duration::from_millis(50)) {
                    Ok(line) => self.log.push(line),
                    Err(_) => break,
                }
            }
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
