//! The built `rtcserver` binary: it listens, serves, and stops cleanly on SIGTERM.
mod common;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_rtcserver"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // simple_logger may write to either stream: read both for the "listening on" line.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let out = server.stdout.take().expect("stdout");
    let err = server.stderr.take().expect("stderr");
    for stream in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ] {
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
    }
    let addr: std::net::SocketAddr = loop {
        let line = lines
            .recv_timeout(WAIT)
            .expect("a log line within the wait");
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().parse().expect("an address");
        }
    };
    let pid = server.id();
    run(async {
        let page = raw_http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page:.80}");
        let mut a = Client::connect(addr, "/").await;
        let mut b = Client::connect(addr, "/").await;
        let room = a.get_room().await;
        b.enter(room, &mut a).await;
        let killed = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        assert!(killed.expect("kill runs").success());
        assert_eq!(a.expect_close().await, CloseCode::Away);
        assert_eq!(b.expect_close().await, CloseCode::Away);
    });
    let (exited_tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited_tx.send(server.wait());
    });
    let status = exited.recv_timeout(WAIT).unwrap_or_else(|_| {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the server did not exit within {WAIT:?} of SIGTERM")
    });
    assert_eq!(status.expect("wait").code(), Some(0));
    let log: Vec<String> = lines.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("connected from 127.0.0.1")),
        "{log:?}"
    );
}
