//! Several nodes on one Redis: a `redis-server` of the test's own on an ephemeral loopback
//! port, and the built binary as separate node processes.
use super::admin::Binary;
use super::WAIT;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// A server on `port` (again on the same port after [`Redis::stop`]).
    pub fn start_on(port: u16) -> Redis {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts (apt-get install redis-server): {e}"));
        let redis = Redis {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + WAIT;
        while redis.try_connection().is_none() {
            assert!(Instant::now() < deadline, "redis-server on {port} answers");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }

    /// Every key of rtcserver's (`rtc:*`), sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.try_connection().expect("redis answers");
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("rtc:*")
            .query(&mut conn)
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// The leak check: once the nodes are gone, nothing of theirs is left (bounded wait: a node
    /// stopped in order cleans up as it goes; a killed one's keys expire within 18 s when no
    /// other node is left to remove them).
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            let keys = self.keys();
            if keys.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left in Redis: {keys:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL: what it holds is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A node of the cluster: the binary on loopback with `--cluster`.
pub struct Node {
    pub bin: Binary,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub id: String,
}

impl Node {
    pub fn start(redis: &Redis, id: &str) -> Node {
        Node::start_with(redis, id, &[])
    }

    pub fn start_with(redis: &Redis, id: &str, extra: &[&str]) -> Node {
        let url = redis.url();
        // Several node processes per test share 2 cores with the other tests: the book's 0.5 s
        // handshake timeout would fail a slow accept, which is not what these tests are about.
        let mut args = vec![
            "--cluster",
            url.as_str(),
            "--node-id",
            id,
            "--handshake-timeout-ms",
            "10000",
        ];
        args.extend_from_slice(extra);
        let mut bin = Binary::on_loopback(&args);
        let (addr, admin) = bin.addresses();
        Node {
            bin,
            addr,
            admin,
            id: id.to_owned(),
        }
    }

    /// SIGKILL: no goodbye, the others find out through the lease.
    pub fn kill(&mut self) {
        self.bin.signal("KILL");
    }

    /// SIGTERM: an orderly stop.
    pub fn terminate(&mut self) {
        self.bin.signal("TERM");
    }

    /// SIGTERM, then waits for the process to end; it must exit 0.
    pub fn stop(mut self) {
        self.terminate();
        let (code, log) = self.bin.exit_code(WAIT);
        assert_eq!(code, Some(0), "node {} stops cleanly: {log:?}", self.id);
    }
}

/// A book room across two nodes: its creator on `creator`, the one who entered on `joiner`
/// (the joiner's first relay has reached the creator).
pub async fn book_pair(creator: &Node, joiner: &Node) -> (super::Client, super::Client, u32) {
    let mut a = super::Client::connect(creator.addr, "/").await;
    let mut b = super::Client::connect(joiner.addr, "/").await;
    let room = a.get_room().await;
    b.enter(room, &mut a).await;
    (a, b, room)
}

/// Stops every node in order (SIGTERM, exit 0), then checks Redis holds nothing of theirs.
pub fn stop_all(redis: &Redis, nodes: impl IntoIterator<Item = Node>) {
    for node in nodes {
        node.stop();
    }
    redis.assert_clean();
}
