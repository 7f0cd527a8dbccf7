//! Who a connection comes from: the socket's peer, or, behind proxies the operator trusts
//! (`--trusted-proxies`), the address they forwarded in `X-Forwarded-For`.
//!
//! A proxy such as nginx *appends* the address it saw, so the header's left part is whatever
//! the client wrote. Only the socket's peer is known for sure; if it is trusted, the entry it
//! appended (the rightmost) is believed, and so on leftwards while the entries are trusted
//! proxies. The first entry that is not one is the client. An entry that is not an IP address
//! ends the walk: nothing left of it can be believed either.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Entries of `X-Forwarded-For` looked at, from the right: more hops than any real chain of
/// proxies, and a bound on the work a long header costs.
pub const MAX_HOPS: usize = 16;

/// An address block, `10.0.0.0/8` or `::1/128`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), 32, self.prefix)
                    == masked(u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
    let drop = width - u32::from(prefix).min(width);
    bits.checked_shr(drop).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not an address block (127.0.0.1/32, 10.0.0.0/8, ::1/128)");
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let network = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(bad)?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `--trusted-proxies`: the proxies whose `X-Forwarded-For` is believed. Empty (the default):
/// nobody's, and a client is its socket's peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .filter(|b| !b.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }

    /// The client of a connection from `peer` that sent these `X-Forwarded-For` values (all of
    /// the request's, in order).
    pub fn client<'a>(
        &self,
        peer: SocketAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> ClientAddr {
        let mut client = ClientAddr {
            socket: peer,
            forwarded: None,
        };
        if !self.is_trusted(peer.ip()) {
            return client;
        }
        let values: Vec<&str> = forwarded_for.into_iter().collect();
        let entries = values.iter().rev().flat_map(|v| v.rsplit(','));
        for entry in entries.take(MAX_HOPS) {
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client.forwarded = Some(ip);
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// `203.0.113.5`, `2001:db8::1`, `[2001:db8::1]`, or either with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Where a connection comes from. Its `Display` is for logs (`203.0.113.5 via 127.0.0.1:5432`);
/// [`ClientAddr::public`] is what `/tree` and events show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The socket's peer: always known, always logged.
    pub socket: SocketAddr,
    /// The address trusted proxies forwarded.
    pub forwarded: Option<IpAddr>,
}

impl ClientAddr {
    /// The forwarded address if there is one, else the socket's peer (at most 47 characters).
    pub fn public(&self) -> String {
        match self.forwarded {
            Some(ip) => ip.to_string(),
            None => self.socket.to_string(),
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.forwarded {
            Some(ip) => write!(f, "{ip} via {}", self.socket),
            None => write!(f, "{}", self.socket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXY: &str = "127.0.0.1:5432";

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn client(trusted: &str, xff: &[&str]) -> String {
        proxies(trusted)
            .client(PROXY.parse().unwrap(), xff.iter().copied())
            .to_string()
    }

    #[test]
    fn blocks_parse_and_contain() {
        let p = proxies("10.0.0.0/8, 192.0.2.1,::1/128,2001:db8::/32");
        for ip in [
            "10.255.0.1",
            "192.0.2.1",
            "::1",
            "2001:db8:ff::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(p.is_trusted(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "192.0.2.2", "::2", "2001:db9::1", "127.0.0.1"] {
            assert!(!p.is_trusted(ip.parse().unwrap()), "{ip}");
        }
        assert!(proxies("0.0.0.0/0").is_trusted("8.8.8.8".parse().unwrap()));
        assert!(!proxies("").is_trusted("127.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "nginx", "10.0.0.0/", "10.0.0.0/-1"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nobody_is_trusted_by_default() {
        assert_eq!(client("", &["203.0.113.5"]), PROXY);
        assert_eq!(client("10.0.0.0/8", &["203.0.113.5"]), PROXY);
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client() {
        let t = "127.0.0.1/32,10.0.0.0/8";
        assert_eq!(
            client(t, &["203.0.113.5"]),
            "203.0.113.5 via 127.0.0.1:5432"
        );
        // the client wrote 198.51.100.1 itself; nginx appended what it saw
        assert_eq!(
            client(t, &["198.51.100.1, 203.0.113.5"]),
            "203.0.113.5 via 127.0.0.1:5432"
        );
        assert_eq!(
            client(t, &["203.0.113.5, 10.0.0.7 ,127.0.0.1"]),
            "203.0.113.5 via 127.0.0.1:5432"
        );
        // two header lines are one list, in order
        assert_eq!(
            client(t, &["198.51.100.1", "203.0.113.5, 10.0.0.7"]),
            "203.0.113.5 via 127.0.0.1:5432"
        );
        assert_eq!(
            client(t, &["[2001:db8::1]:443"]),
            "2001:db8::1 via 127.0.0.1:5432"
        );
        assert_eq!(client(t, &["10.0.0.7"]), "10.0.0.7 via 127.0.0.1:5432");
        assert_eq!(client(t, &[]), PROXY);
    }

    #[test]
    fn garbage_ends_the_walk_and_never_becomes_the_client() {
        let t = "127.0.0.1/32,10.0.0.0/8";
        for xff in [
            "<b>x</b>",
            "\u{202e}1.2.3.4",
            "unknown",
            "",
            "1.2.3.4.5",
            "1.2.3.4,",
        ] {
            assert_eq!(client(t, &[xff]), PROXY, "{xff:?}");
        }
        assert_eq!(
            client(t, &["203.0.113.5, junk, 10.0.0.7"]),
            "10.0.0.7 via 127.0.0.1:5432"
        );
        let long = "10.0.0.1,".repeat(900) + "203.0.113.5";
        assert_eq!(client(t, &[&long]), "203.0.113.5 via 127.0.0.1:5432");
        let all_trusted = "203.0.113.5".to_owned() + &",10.0.0.1".repeat(100);
        assert_eq!(client(t, &[&all_trusted]), "10.0.0.1 via 127.0.0.1:5432");
    }
}
