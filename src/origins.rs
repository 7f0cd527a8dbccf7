//! `--allowed-origins`: which web pages may open a WebSocket to this server (cross-site WebSocket
//! hijacking: a page on another site could otherwise open one with the visitor's cookies). The
//! browser names the page's origin in the upgrade's `Origin` header, and a page cannot forge it.
//!
//! Origins are compared as browsers serialise them (RFC 6454): `scheme://host[:port]`, scheme and
//! host in lower case, no default port, no path. A request without `Origin` does not come from a
//! browser page (native apps, test tools and servers do not send it) and is not what the list
//! guards against: it is let through. A header that is not an origin is refused.
use std::fmt;
use std::str::FromStr;

/// Origins listed at most: a bound on the work one upgrade costs.
pub const MAX_ORIGINS: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Every origin, as the original server (the default).
    #[default]
    Any,
    /// Only these, serialised (see [`serialise`]).
    Only(Vec<String>),
}

/// What the list says of one upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Listed nowhere: 403.
    NotListed,
    /// The header is not an origin: 403.
    Malformed,
}

impl AllowedOrigins {
    /// The verdict on an upgrade whose `Origin` header is `origin`.
    pub fn check(&self, origin: Option<&str>) -> Verdict {
        let AllowedOrigins::Only(list) = self else {
            return Verdict::Allowed;
        };
        let Some(origin) = origin else {
            return Verdict::Allowed;
        };
        match serialise(origin.trim()) {
            Some(o) if list.contains(&o) => Verdict::Allowed,
            Some(_) => Verdict::NotListed,
            None => Verdict::Malformed,
        }
    }

    /// A list from single entries (the app env's list of strings).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut list = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            let origin = serialise(entry).ok_or_else(|| {
                format!("{entry:?} is not an origin (scheme://host[:port], or null)")
            })?;
            if !list.contains(&origin) {
                list.push(origin);
            }
        }
        if list.is_empty() {
            return Err("an empty list of origins would refuse every browser".into());
        }
        if list.len() > MAX_ORIGINS {
            return Err(format!("at most {MAX_ORIGINS} origins"));
        }
        Ok(AllowedOrigins::Only(list))
    }
}

impl FromStr for AllowedOrigins {
    type Err = String;

    /// `https://a.example,https://b.example`, or `*` for any.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(AllowedOrigins::Any);
        }
        AllowedOrigins::from_entries(s.split(','))
    }
}

impl fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedOrigins::Any => f.write_str("*"),
            AllowedOrigins::Only(list) => f.write_str(&list.join(",")),
        }
    }
}

/// An origin as a browser writes it, or `None` if `text` is not one. `null` (a sandboxed or
/// `file:` page) is an origin of its own: only a list that names it lets it in.
pub fn serialise(text: &str) -> Option<String> {
    if text == "null" {
        return Some(text.to_owned());
    }
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 host's colons are inside its brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        && (host.starts_with('[') == host.ends_with(']'));
    if !host_ok || (!host.starts_with('[') && host.contains(':')) {
        return None;
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        Some(p) => {
            let n: u16 = p.parse().ok()?;
            if n.to_string() == default_port {
                Some(format!("{scheme}://{host}"))
            } else {
                Some(format!("{scheme}://{host}:{n}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_serialised_as_browsers_do() {
        for (given, want) in [
            ("https://a.example", Some("https://a.example")),
            ("HTTPS://A.Example", Some("https://a.example")),
            ("https://a.example:443", Some("https://a.example")),
            ("http://a.example:80", Some("http://a.example")),
            ("http://localhost:30000", Some("http://localhost:30000")),
            ("http://[::1]:8080", Some("http://[::1]:8080")),
            ("http://[::1]", Some("http://[::1]")),
            ("null", Some("null")),
            ("https://a.example/", None),
            ("https://a.example/path", None),
            ("ftp://a.example", None),
            ("a.example", None),
            ("https://", None),
            ("https://a.example:", None),
            ("https://a.example:99999", None),
            ("https://a.example:12a", None),
            ("https://user@a.example", None),
            ("http://::1", None),
            ("", None),
        ] {
            assert_eq!(serialise(given).as_deref(), want, "{given:?}");
        }
    }

    #[test]
    fn a_list_allows_its_own_and_lets_headerless_requests_through() {
        let list: AllowedOrigins = "https://a.example, http://localhost:30000".parse().unwrap();
        assert_eq!(list.check(Some("https://a.example")), Verdict::Allowed);
        assert_eq!(list.check(Some("https://A.EXAMPLE:443")), Verdict::Allowed);
        assert_eq!(list.check(Some("https://b.example")), Verdict::NotListed);
        assert_eq!(list.check(Some("null")), Verdict::NotListed);
        assert_eq!(list.check(Some("not an origin")), Verdict::Malformed);
        assert_eq!(list.check(None), Verdict::Allowed);
        assert_eq!(AllowedOrigins::Any.check(Some("junk")), Verdict::Allowed);
        assert_eq!("*".parse(), Ok(AllowedOrigins::Any));
        assert!("".parse::<AllowedOrigins>().is_err());
        assert!("https://a.example,ftp://b"
            .parse::<AllowedOrigins>()
            .is_err());
    }
}
