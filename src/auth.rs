//! Credentials from an upgrade request, and checking them against the configured users and
//! tokens, before any WebSocket exists.
//!
//! The guide sends them in a `credentials` cookie holding JSON (`{"username":..,"password":..}`);
//! API clients prefer `Authorization: Bearer <token>`. Secrets are compared in constant time
//! and never reach a log: `Credentials`' `Debug` hides them.
use serde::Deserialize;
use std::fmt;
use subtle::ConstantTimeEq;

/// What a client presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// From the `credentials` cookie.
    Password {
        username: String,
        password: String,
    },
    /// From `Authorization: Bearer`.
    Token(String),
    None,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password { username, .. } => {
                write!(
                    f,
                    "Password {{ username: {username:?}, password: <hidden> }}"
                )
            }
            Credentials::Token(_) => f.write_str("Token(<hidden>)"),
            Credentials::None => f.write_str("None"),
        }
    }
}

impl Credentials {
    /// The username, if any: the only part of credentials that may be logged.
    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::Password { username, .. } => Some(username),
            _ => None,
        }
    }
}

/// Why credentials could not be read: a 401 like a wrong password, but a clearer log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    /// The `credentials` cookie is not a JSON object with string `username` and `password`.
    MalformedCookie,
    /// `Authorization: Bearer` without a token.
    MalformedAuthorization,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::MalformedCookie => {
                f.write_str("the credentials cookie is not {\"username\":..,\"password\":..} JSON")
            }
            CredentialsError::MalformedAuthorization => {
                f.write_str("the Authorization header is \"Bearer\" without a token")
            }
        }
    }
}

impl std::error::Error for CredentialsError {}

/// Reads credentials from the `Cookie` and `Authorization` header values; a bearer token wins
/// over a cookie. Another scheme (`Basic`, from an `auth_basic` proxy in front) is not ours and
/// is ignored, so that the cookie still counts. The cookie may be raw JSON or percent-encoded
/// JSON (what `encodeURIComponent` makes, the safe way to put JSON in `document.cookie`).
pub fn from_headers(
    cookie: Option<&str>,
    authorization: Option<&str>,
) -> Result<Credentials, CredentialsError> {
    if let Some(value) = authorization {
        let value = value.trim();
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = token.trim();
            if token.is_empty() {
                return Err(CredentialsError::MalformedAuthorization);
            }
            return Ok(Credentials::Token(token.to_owned()));
        }
    }
    let Some(raw) = cookie.and_then(|c| cookie_value(c, "credentials")) else {
        return Ok(Credentials::None);
    };
    #[derive(Deserialize)]
    struct Wire {
        username: String,
        password: String,
    }
    let raw = raw.trim_matches('"');
    let wire: Wire = serde_json::from_str(raw)
        .or_else(|_| {
            let decoded = percent_decode(raw).ok_or(CredentialsError::MalformedCookie)?;
            serde_json::from_str(&decoded).map_err(|_| CredentialsError::MalformedCookie)
        })
        .map_err(|_: CredentialsError| CredentialsError::MalformedCookie)?;
    Ok(Credentials::Password {
        username: wire.username,
        password: wire.password,
    })
}

/// The value of cookie `name` in a `Cookie:` header (`a=1; b=2`). JSON values hold `;`-free
/// text in practice; a value with `;` must be percent-encoded, as RFC 6265 asks.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(crate::http::hex_byte(bytes.get(i + 1..i + 3)?)?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Users and tokens allowed in. Empty: anyone may connect (the demo default).
#[derive(Clone, Default, Deserialize)]
pub struct Accounts {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub tokens: Vec<String>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|u| u.username.as_str()).collect();
        write!(
            f,
            "Accounts {{ users: {names:?}, tokens: <{} hidden> }}",
            self.tokens.len()
        )
    }
}

#[derive(Clone, Deserialize)]
pub struct User {
    pub username: String,
    pub password: String,
}

impl Accounts {
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }

    /// Whether `credentials` let their holder in. Every entry is compared, and each comparison
    /// takes the same time whether it matches or not, so timing tells neither which user exists
    /// nor how much of a secret was right.
    pub fn admits(&self, credentials: &Credentials) -> bool {
        if self.is_open() {
            return true;
        }
        match credentials {
            Credentials::Password { username, password } => {
                let mut ok = subtle::Choice::from(0);
                for user in &self.users {
                    ok |= secret_eq(&user.username, username) & secret_eq(&user.password, password);
                }
                ok.into()
            }
            Credentials::Token(token) => {
                let mut ok = subtle::Choice::from(0);
                for known in &self.tokens {
                    ok |= secret_eq(known, token);
                }
                ok.into()
            }
            Credentials::None => false,
        }
    }
}

/// Constant time in the contents; a length mismatch is still a mismatch (lengths of secrets
/// are not worth hiding at the cost of padding every comparison).
fn secret_eq(a: &str, b: &str) -> subtle::Choice {
    a.as_bytes().ct_eq(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts {
            users: vec![User {
                username: "alice".into(),
                password: "s3cret".into(),
            }],
            tokens: vec!["tok-123".into()],
        }
    }

    #[test]
    fn a_json_cookie_raw_or_percent_encoded_gives_a_password() {
        let want = Credentials::Password {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let raw = r#"theme=dark; credentials={"username":"alice","password":"s3cret"}"#;
        assert_eq!(from_headers(Some(raw), None), Ok(want.clone()));
        let encoded =
            "credentials=%7B%22username%22%3A%22alice%22%2C%22password%22%3A%22s3cret%22%7D";
        assert_eq!(from_headers(Some(encoded), None), Ok(want));
        assert_eq!(
            from_headers(Some("credentials=nope"), None),
            Err(CredentialsError::MalformedCookie)
        );
        assert_eq!(from_headers(Some("a=1"), None), Ok(Credentials::None));
    }

    #[test]
    fn a_bearer_token_wins_other_schemes_leave_the_cookie_and_an_empty_bearer_is_an_error() {
        assert_eq!(
            from_headers(Some("credentials={}"), Some("Bearer tok-123")),
            Ok(Credentials::Token("tok-123".into()))
        );
        assert_eq!(
            from_headers(None, Some("Basic YWxpY2U6eA==")),
            Ok(Credentials::None)
        );
        assert_eq!(
            from_headers(
                Some(r#"credentials={"username":"alice","password":"s3cret"}"#),
                Some("Basic YWxpY2U6eA==")
            ),
            Ok(Credentials::Password {
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            from_headers(None, Some("Bearer ")),
            Err(CredentialsError::MalformedAuthorization)
        );
    }

    #[test]
    fn accounts_admit_only_matching_credentials() {
        let a = accounts();
        let pw = |u: &str, p: &str| Credentials::Password {
            username: u.into(),
            password: p.into(),
        };
        assert!(a.admits(&pw("alice", "s3cret")));
        assert!(!a.admits(&pw("alice", "s3cre")));
        assert!(!a.admits(&pw("bob", "s3cret")));
        assert!(a.admits(&Credentials::Token("tok-123".into())));
        assert!(!a.admits(&Credentials::Token("tok-12".into())));
        assert!(!a.admits(&Credentials::None));
        assert!(Accounts::default().admits(&Credentials::None));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Credentials::Password {
                username: "alice".into(),
                password: "s3cret".into()
            },
            Credentials::Token("tok-123".into()),
            accounts()
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok-123"),
            "{shown}"
        );
        assert!(shown.contains("alice"));
    }
}
