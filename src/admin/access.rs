//! Who may use the admin API.
//!
//! Without a token it answers loopback clients only, and only requests that name a loopback
//! host: a web page the user has open elsewhere can reach 127.0.0.1 too, through the browser, so
//! a request whose `Host` is another name (DNS rebinding) or whose `Origin` is another site is
//! refused. With a token, every request must carry it as `Authorization: Bearer <token>`,
//! loopback included (behind a proxy on the same host, every client looks like loopback),
//! except the observer page itself: a browser's navigation cannot send the header, and the page
//! holds no data (it asks for the token and sends it with each of its requests).
use super::request::Request;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The admin API's shared secret; shown as `AdminToken(..)` so that it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl FromStr for AdminToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("an admin token is a non-empty word without spaces".into());
        }
        Ok(AdminToken(s.to_owned()))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401: no token, or the wrong one.
    Unauthorized,
    /// 403, with the reason.
    Forbidden(&'static str),
}

/// Whether the client at `peer` may make `request`, `token` being the configured one.
pub fn is_allowed(peer: SocketAddr, request: &Request, token: Option<&AdminToken>) -> Access {
    let host = request.header("host");
    if let Some(origin) = request.header("origin") {
        let same = host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(h)
        });
        if !same {
            return Access::Forbidden("cross-origin requests are refused");
        }
    }
    match token {
        Some(_) if super::routes::is_page(request) => Access::Allowed,
        Some(token) => {
            let given = request.header("authorization").and_then(|v| {
                let (scheme, value) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
            });
            if given.is_some_and(|t| token.matches(t)) {
                Access::Allowed
            } else {
                Access::Unauthorized
            }
        }
        None if !peer.ip().to_canonical().is_loopback() => Access::Forbidden(
            "the admin API answers loopback clients only unless it has a token (--admin-token)",
        ),
        None if !host.is_some_and(is_loopback_host) => {
            Access::Forbidden("the Host header must name a loopback address")
        }
        None => Access::Allowed,
    }
}

/// `localhost`, `127.0.0.1`, `[::1]`, ..., with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::request::parse_head;

    fn request(headers: &str) -> Request {
        let text = format!("POST /crash HTTP/1.1\r\n{headers}\r\n");
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LOCAL: &str = "127.0.0.1:5000";
    const REMOTE: &str = "192.0.2.7:5000";

    #[test]
    fn without_a_token_only_loopback_clients_naming_a_loopback_host() {
        let token = None;
        let local_host = request("Host: 127.0.0.1:30001\r\n");
        assert_eq!(is_allowed(addr(LOCAL), &local_host, token), Access::Allowed);
        assert_eq!(
            is_allowed(addr("[::1]:5000"), &request("Host: [::1]:30001\r\n"), token),
            Access::Allowed
        );
        assert_eq!(
            is_allowed(
                addr("[::ffff:127.0.0.1]:5000"),
                &request("Host: localhost:30001\r\n"),
                token
            ),
            Access::Allowed
        );
        assert!(matches!(
            is_allowed(addr(REMOTE), &local_host, token),
            Access::Forbidden(_)
        ));
        // DNS rebinding: a page of evil.example resolved to 127.0.0.1
        assert!(matches!(
            is_allowed(addr(LOCAL), &request("Host: evil.example:30001\r\n"), token),
            Access::Forbidden(_)
        ));
        assert!(matches!(
            is_allowed(addr(LOCAL), &request(""), token),
            Access::Forbidden(_)
        ));
    }

    #[test]
    fn a_cross_origin_request_is_refused_and_a_same_origin_one_allowed() {
        let same = request("Host: 127.0.0.1:30001\r\nOrigin: http://127.0.0.1:30001\r\n");
        let other = request("Host: 127.0.0.1:30001\r\nOrigin: https://evil.example\r\n");
        assert_eq!(is_allowed(addr(LOCAL), &same, None), Access::Allowed);
        assert!(matches!(
            is_allowed(addr(LOCAL), &other, None),
            Access::Forbidden(_)
        ));
    }

    #[test]
    fn with_a_token_every_client_must_present_it() {
        let token: AdminToken = "s3cret".parse().unwrap();
        let token = Some(&token);
        for peer in [LOCAL, REMOTE] {
            let peer = addr(peer);
            assert_eq!(
                is_allowed(peer, &request("Host: h\r\n"), token),
                Access::Unauthorized
            );
            assert_eq!(
                is_allowed(
                    peer,
                    &request("Host: h\r\nAuthorization: Bearer wrong\r\n"),
                    token
                ),
                Access::Unauthorized
            );
            assert_eq!(
                is_allowed(
                    peer,
                    &request("Host: h\r\nAuthorization: Basic s3cret\r\n"),
                    token
                ),
                Access::Unauthorized
            );
            assert_eq!(
                is_allowed(
                    peer,
                    &request("Host: h\r\nAuthorization: bearer s3cret\r\n"),
                    token
                ),
                Access::Allowed
            );
        }
    }

    #[test]
    fn with_a_token_the_page_needs_none_but_keeps_the_origin_check() {
        let token: AdminToken = "s3cret".parse().unwrap();
        let token = Some(&token);
        let page = |line: &str, headers: &str| {
            let text = format!("{line} HTTP/1.1\r\nHost: h\r\n{headers}\r\n");
            parse_head(text.as_bytes()).unwrap().unwrap().0
        };
        for line in ["GET /", "HEAD /", "GET /observer.html", "GET /?x=1"] {
            assert_eq!(
                is_allowed(addr(REMOTE), &page(line, ""), token),
                Access::Allowed,
                "{line}"
            );
        }
        for line in ["GET /tree", "GET /events", "POST /", "GET /nope"] {
            assert_eq!(
                is_allowed(addr(REMOTE), &page(line, ""), token),
                Access::Unauthorized,
                "{line}"
            );
        }
        assert!(matches!(
            is_allowed(
                addr(REMOTE),
                &page("GET /", "Origin: https://evil\r\n"),
                token
            ),
            Access::Forbidden(_)
        ));
        assert!(matches!(
            is_allowed(addr(REMOTE), &page("GET /", ""), None),
            Access::Forbidden(_)
        ));
    }

    #[test]
    fn tokens_are_words_and_never_printed() {
        assert!("".parse::<AdminToken>().is_err());
        assert!("a b".parse::<AdminToken>().is_err());
        let t: AdminToken = "abc".parse().unwrap();
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
        assert!(t.matches("abc") && !t.matches("abd") && !t.matches("ab"));
    }
}
