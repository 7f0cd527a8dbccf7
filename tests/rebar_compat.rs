//! The book's "Compiling and running the signaling server", end to end:
//! `rebar compile`, then `erl -pa deps/*/ebin apps/*/ebin -sasl errlog_type
//! error -s rtcserver_app`, a GETROOM over a real WebSocket, and `q().`.
//!
//! `rebar compile` builds the release binary (minutes from scratch). The test
//! runs the same commands with `RTCSERVER_PROFILE=dev`, so that they build and
//! start the dev binary that `cargo test` has already built: the scripts'
//! path is the same, and CI stays within its time budget. Set
//! `RTCSERVER_TEST_PROFILE=release` to run the book's sequence on the release
//! build.
use async_net::TcpStream;
use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// The Cargo profile `rebar compile` builds and `erl` runs here (see the module comment).
fn profile() -> String {
    std::env::var("RTCSERVER_TEST_PROFILE").unwrap_or_else(|_| "dev".into())
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now. Another process could take it before
/// the server binds, but on a test machine that race is remote.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    probe.local_addr().expect("local addr").port()
}

/// Collects a child's output on a thread, so that a full pipe can never
/// stall the server and the text is at hand for failure messages.
fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let sink = Arc::new(Mutex::new(String::new()));
    let writer = Arc::clone(&sink);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            writer
                .lock()
                .expect("output lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    sink
}

/// The running `erl`; on drop (a failed assertion) it is asked to stop with
/// SIGTERM, which makes it stop the server too, rather than SIGKILLed, which
/// would orphan the server.
struct Erl {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Erl {
    fn output(&self) -> String {
        format!(
            "--- erl stdout ---\n{}\n--- erl stderr ---\n{}",
            self.stdout.lock().expect("output lock"),
            self.stderr.lock().expect("output lock")
        )
    }

    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Erl {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            if self.wait_timeout(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn listening_per_ss(port: u16) -> Option<bool> {
    let out = Command::new("ss").arg("-ltn").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .any(|local| local.rsplit(':').next() == Some(&port.to_string())),
    )
}

async fn getroom(addr: SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let (mut ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("WebSocket handshake");
    ws.send(Message::text(r#"{"type":"GETROOM","value":""}"#))
        .await
        .expect("send GETROOM");
    let reply = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("no GETROOM reply: {other:?}"),
        }
    };
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    reply
}

fn within<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(futures_lite::future::or(async { Some(f.await) }, async {
        async_io::Timer::after(limit).await;
        None
    }))
    .unwrap_or_else(|| panic!("{what} did not finish within {limit:?}"))
}

fn write_sys_config(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtcserver-rebar-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("sys.config");
    std::fs::write(
        &path,
        format!(
            "%% written by tests/rebar_compat.rs\n\
             [{{sasl, [{{errlog_type, error}}]}},\n \
              {{rtcserver, [{{port, {port}}}, {{bind, \"127.0.0.1\"}}]}}].\n"
        ),
    )
    .expect("write sys.config");
    path
}

fn rebar_compile(root: &Path) {
    let mut rebar = Command::new(root.join("rebar-compat/rebar"));
    // cargo sets these for this test only; ring's build script reruns when one of them
    // changes, which would rebuild ring and all above it here and again in the next
    // `cargo test`. A user's shell has none of them.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
        if set_for_tests {
            rebar.env_remove(&*name);
        }
    }
    let status = rebar
        .arg("compile")
        .env("RTCSERVER_PROFILE", profile())
        .current_dir(root)
        .status()
        .expect("run rebar-compat/rebar");
    assert!(status.success(), "rebar compile failed: {status}");
}

#[test]
fn book_commands_start_serve_and_stop_the_server() {
    let root = workspace();
    rebar_compile(&root);

    let port = free_port();
    let config = write_sys_config(port);
    let mut child = Command::new(root.join("rebar-compat/erl"))
        .env("RTCSERVER_PROFILE", profile())
        // The book's command line; the globs stay unexpanded without a shell,
        // just as bash leaves them when deps/ and apps/ hold no ebin folders.
        .args([
            "-pa",
            "deps/*/ebin",
            "apps/*/ebin",
            "-sasl",
            "errlog_type",
            "error",
        ])
        .args(["-s", "rtcserver_app", "-config"])
        .arg(&config)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rebar-compat/erl");
    let stdin = child.stdin.take();
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let mut erl = Erl {
        child,
        stdin,
        stdout,
        stderr,
    };

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = erl.child.try_wait().expect("try_wait") {
            panic!(
                "erl exited ({status}) before the server listened\n{}",
                erl.output()
            );
        }
        assert!(
            start.elapsed() < WAIT,
            "nothing listens on {addr}\n{}",
            erl.output()
        );
        thread::sleep(Duration::from_millis(50));
    }

    // The book checks with `netstat -na | grep 30000`; ss is today's netstat.
    match listening_per_ss(port) {
        Some(listening) => assert!(
            listening,
            "ss -ltn does not list port {port}\n{}",
            erl.output()
        ),
        // .ci/run installs ss; only a developer's machine without it may skip the check.
        None if std::env::var_os("CI").is_some() => {
            panic!("ss is not installed (apt-get install iproute2)")
        }
        None => eprintln!("ss is not installed; skipping the ss -ltn check"),
    }

    let reply = within(WAIT, "GETROOM", getroom(addr));
    let room = reply
        .strip_prefix(r#"{"type":"GETROOM","value":"#)
        .and_then(|r| r.strip_suffix('}'))
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        room.is_some(),
        "not a GETROOM reply: {reply}\n{}",
        erl.output()
    );

    let mut stdin = erl.stdin.take().expect("stdin");
    stdin.write_all(b"q().\n").expect("write q().");
    stdin.flush().expect("flush");
    let status = erl.wait_timeout(WAIT);
    let output = erl.output();
    let status = status.unwrap_or_else(|| panic!("erl did not exit after q().\n{output}"));
    drop(stdin);
    assert!(status.success(), "erl exited with {status}\n{output}");
    assert!(output.contains("Eshell V"), "no banner\n{output}");
    // The server's log shares erl's stdout, as it shares the console in Erlang,
    // so the answer may not directly follow the prompt.
    assert!(
        output.lines().any(|l| l == "ok" || l.ends_with("> ok")),
        "q(). was not answered\n{output}"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "the server still listens on {addr} after q().\n{output}"
    );
    let _ = std::fs::remove_dir_all(config.parent().expect("temp dir"));
}

#[test]
fn erl_refuses_other_modules() {
    let out = Command::new(workspace().join("rebar-compat/erl"))
        .args(["-pa", "deps/*/ebin", "-s", "foo"])
        .stdin(Stdio::null())
        .output()
        .expect("run rebar-compat/erl");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "erl: module 'foo' is not available in rtcserver (only -s rtcserver_app)\n"
    );
}

#[test]
fn rebar_refuses_unknown_commands() {
    let root = workspace();
    let out = Command::new(root.join("rebar-compat/rebar"))
        .arg("generate")
        .current_dir(&root)
        .output()
        .expect("run rebar-compat/rebar");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "rebar: unknown command 'generate' (this is rtcserver's rebar-compat; known: get-deps, compile, clean)\n"
    );
}

#[test]
fn rebar_and_erl_refuse_an_unknown_profile() {
    let root = workspace();
    let out = Command::new(root.join("rebar-compat/rebar"))
        .arg("compile")
        .env("RTCSERVER_PROFILE", "fast")
        .current_dir(&root)
        .output()
        .expect("run rebar-compat/rebar");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "rebar: RTCSERVER_PROFILE must be release or dev, not fast\n"
    );
    let out = Command::new(root.join("rebar-compat/erl"))
        .args(["-s", "rtcserver_app"])
        .env("RTCSERVER_PROFILE", "fast")
        .env_remove("RTCSERVER_BIN")
        .stdin(Stdio::null())
        .output()
        .expect("run rebar-compat/erl");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "erl: RTCSERVER_PROFILE must be release or dev, not fast\n"
    );
}
