//! The address a run drives. Load is only ever sent to this machine: anything off loopback is refused here,
//! before a single socket is opened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};
use tokio_tungstenite::tungstenite::http::Uri;

/// A `ws://` endpoint on loopback.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the TCP connections go.
    pub addr: SocketAddr,
    /// The request path of the endpoint (`/` for the book protocol).
    pub path: String,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH`; HOST must be a loopback address or `localhost`.
    pub fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some(other) => bail!("`{url}`: scheme `{other}` is not supported, use ws://"),
            None => bail!("`{url}`: missing scheme, use ws://HOST:PORT/"),
        }
        let host = uri.host().context("URL has no host")?;
        let ip = parse_host(host)?;
        let port = uri.port_u16().unwrap_or(80);
        let path = match uri.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            path,
        })
    }

    /// The URL of `path` on this target, as the WebSocket handshake wants it.
    pub fn url(&self, path: &str) -> String {
        match self.addr.ip() {
            IpAddr::V6(ip) => format!("ws://[{ip}]:{}{path}", self.addr.port()),
            IpAddr::V4(ip) => format!("ws://{ip}:{}{path}", self.addr.port()),
        }
    }
}

fn parse_host(host: &str) -> Result<IpAddr> {
    // Names are not resolved: a resolver could hand back an address off this machine.
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| {
                format!("host `{host}` must be a loopback IP address (127.0.0.0/8) or localhost")
            })?
    };
    require_loopback(ip)?;
    Ok(ip)
}

/// Refuses any address that is not loopback (127.0.0.0/8, or ::1).
pub fn require_loopback(ip: IpAddr) -> Result<()> {
    if !ip.is_loopback() {
        bail!("refusing {ip}: loadgen only sends traffic to loopback addresses (127.0.0.0/8)");
    }
    Ok(())
}

/// Parses `--source-addrs`: every address must be loopback and of the target's family.
pub fn parse_sources(list: &[IpAddr], target: &Target) -> Result<Vec<IpAddr>> {
    for ip in list {
        require_loopback(*ip).context("--source-addrs")?;
        if ip.is_ipv4() != target.addr.is_ipv4() {
            bail!(
                "--source-addrs: {ip} is not of the same IP family as the target {}",
                target.addr
            );
        }
    }
    Ok(list.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_urls() {
        let t = Target::parse("ws://127.0.0.1:30000/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:30000".parse().unwrap());
        assert_eq!(t.path, "/");
        assert_eq!(
            Target::parse("ws://localhost:1/").unwrap().addr.ip(),
            Ipv4Addr::LOCALHOST
        );
        assert_eq!(Target::parse("ws://127.9.8.7:5").unwrap().path, "/");
        assert_eq!(
            Target::parse("ws://[::1]:5/socket/a").unwrap().path,
            "/socket/a"
        );
    }

    #[test]
    fn refuses_everything_off_loopback() {
        for url in [
            "ws://10.0.0.1:30000/",
            "ws://192.168.1.1:30000/",
            "ws://8.8.8.8/",
            "ws://example.com:30000/",
            "ws://0.0.0.0:30000/",
            "wss://127.0.0.1:30000/",
            "http://127.0.0.1:30000/",
        ] {
            assert!(Target::parse(url).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn url_round_trips() {
        let t = Target::parse("ws://127.0.0.1:30000/").unwrap();
        assert_eq!(t.url("/socket/x"), "ws://127.0.0.1:30000/socket/x");
    }
}
