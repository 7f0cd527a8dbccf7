//! The built `rtcserver` binary: it listens, serves, and stops cleanly on SIGTERM.
mod common;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use common::*;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;

/// The built binary with `args`, its log lines, and the address it says it listens on.
fn spawn(args: &[&str]) -> (Child, Receiver<String>, SocketAddr) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_rtcserver"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--log-level", "info"])
        .args(args)
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
    let addr: SocketAddr = loop {
        let line = lines
            .recv_timeout(WAIT)
            .expect("a log line within the wait");
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().parse().expect("an address");
        }
    };
    (server, lines, addr)
}

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let (mut server, lines, addr) = spawn(&[]);
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

#[test]
fn the_rooms_file_sets_rooms_and_accounts() {
    let dir = std::env::temp_dir().join(format!("rtcserver-rooms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("rooms.toml");
    std::fs::write(
        &file,
        "auto_rooms = false\n[[rooms]]\nname = \"standup\"\nmax_peers = 3\n\n[[users]]\nusername = \"alice\"\npassword = \"wonderland\"\n",
    )
    .expect("write the rooms file");
    let (mut server, _lines, addr) = spawn(&["--rooms", file.to_str().expect("utf-8 path")]);
    run(async {
        let upgrade = |path: &str, extra: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{extra}\r\n")
        };
        let no_auth = raw_http(addr, &upgrade("/socket/standup", "")).await;
        assert!(no_auth.starts_with("HTTP/1.1 401 "), "{no_auth}");
        let cookie = r#"credentials={"username":"alice","password":"wonderland"}"#;
        let unknown = raw_http(
            addr,
            &upgrade("/socket/adhoc", &format!("Cookie: {cookie}\r\n")),
        )
        .await;
        assert!(unknown.starts_with("HTTP/1.1 404 "), "{unknown}");
        let mut a = Client::connect_with(addr, "/socket/standup", &[("cookie", cookie)]).await;
        let data = a.expect_event("authenticated").await;
        assert_eq!(data["room"], "standup");
        a.close().await;
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CPUs in a `Cpus_allowed_list` line of `/proc/.../status` ("0-3,6").
fn cpu_list(status: &str) -> Vec<u32> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_else(|| panic!("no Cpus_allowed_list in {status}"))
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (u32, u32) = (
            first.parse().expect("a CPU number"),
            last.parse().expect("a CPU number"),
        );
        cpus.extend(first..=last);
    }
    cpus
}

/// README, "The supervision tree": peers and rooms run on one scheduler thread per CPU the
/// process may use, none of them pinned. The scheduler is started by the first connection, from
/// one of bastion's threads (each pinned to one CPU); it used to take that thread's single CPU.
#[test]
fn the_scheduler_has_one_unpinned_thread_per_cpu_of_the_process() {
    let (mut server, _lines, addr) = spawn(&["--admin-bind", "127.0.0.1:0"]);
    let pid = server.id();
    let proc_dir = format!("/proc/{pid}");
    let process_cpus = cpu_list(
        &std::fs::read_to_string(format!("{proc_dir}/status")).expect("the process's status"),
    );
    run(async {
        // The first peer starts the scheduler.
        let mut a = Client::connect(addr, "/").await;
        a.get_room().await;
        a.close().await;
    });
    let mut schedulers = Vec::new();
    for task in std::fs::read_dir(format!("{proc_dir}/task")).expect("the process's threads") {
        let task = task.expect("a thread").path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if name.trim().starts_with("scheduler-") {
            let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
            schedulers.push((name.trim().to_owned(), cpu_list(&status)));
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        schedulers.len(),
        process_cpus.len(),
        "one scheduler thread per CPU of the process {process_cpus:?}: {schedulers:?}"
    );
    for (name, cpus) in &schedulers {
        assert_eq!(
            cpus, &process_cpus,
            "{name} may run on every CPU of the process"
        );
    }
}
