//! Debian's nginx, run by the test itself from the repository's `deploy/nginx-cluster.conf`
//! with only its ports changed, on loopback, in a prefix folder of its own; killed on drop.
use super::WAIT;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    prefix: PathBuf,
}

impl Nginx {
    /// nginx on a free port in front of `upstreams` (the config's two nodes, in order).
    pub fn in_front_of(upstreams: [SocketAddr; 2]) -> Nginx {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx-cluster.conf");
        let text = std::fs::read_to_string(&conf).expect("deploy/nginx-cluster.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut changed = text.clone();
        for (from, to) in [
            (
                "server 127.0.0.1:30000;",
                format!("server {};", upstreams[0]),
            ),
            (
                "server 127.0.0.1:30010;",
                format!("server {};", upstreams[1]),
            ),
            (
                "listen 127.0.0.1:8080;",
                format!("listen 127.0.0.1:{port};"),
            ),
        ] {
            assert!(
                changed.contains(from),
                "{from} in deploy/nginx-cluster.conf"
            );
            changed = changed.replace(from, &to);
        }
        let prefix = std::env::temp_dir().join(format!("rtc-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, changed).expect("write nginx.conf");
        let bin = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
        let child = Command::new(&bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts (apt-get install nginx): {e}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nginx listens on {addr}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Nginx {
            child,
            addr,
            prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}
