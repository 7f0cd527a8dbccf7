//! Resume tokens: 256 random bits, base64url on the wire, only their SHA-256 kept, compared in
//! constant time. A token is bound to its session (room, peer, identity) by where its hash is
//! stored, and a new one replaces it on every resume.
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// What the session keeps of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<hidden>)")
    }
}

/// A fresh token for the client, and the hash the server keeps of it.
pub fn issue() -> (String, TokenHash) {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    let token = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    TokenHash(out)
}

impl TokenHash {
    /// Whether `token` is the one this hash was made of, in time independent of where they differ.
    pub fn matches(&self, token: &str) -> bool {
        bool::from(hash(token).0.ct_eq(&self.0))
    }
}

/// The authenticated identity a session is bound to: the username, or a hash of a bearer token,
/// or nobody (open rooms). Kept hashed: it may hold a secret.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Identity(TokenHash);

impl Identity {
    pub fn of(credentials: &crate::auth::Credentials) -> Self {
        use crate::auth::Credentials;
        let text = match credentials {
            Credentials::Password { username, .. } => format!("user:{username}"),
            Credentials::Token(token) => format!("token:{token}"),
            Credentials::None => String::new(),
        };
        Identity(hash(&text))
    }

    pub fn matches(&self, other: &Identity) -> bool {
        bool::from(self.0 .0.ct_eq(&other.0 .0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credentials;

    #[test]
    fn a_token_is_256_bits_of_base64url_and_matches_only_itself() {
        let (token, hash) = issue();
        assert_eq!(token.len(), 43, "32 bytes, base64url without padding");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(hash.matches(&token));
        let (other, _) = issue();
        assert_ne!(token, other);
        assert!(!hash.matches(&other));
        assert!(!hash.matches(""));
    }

    #[test]
    fn identities_differ_by_user_and_token() {
        let alice = Identity::of(&Credentials::Password {
            username: "alice".into(),
            password: "a".into(),
        });
        let alice_other_password = Identity::of(&Credentials::Password {
            username: "alice".into(),
            password: "b".into(),
        });
        let bob = Identity::of(&Credentials::Password {
            username: "bob".into(),
            password: "a".into(),
        });
        assert!(alice.matches(&alice_other_password));
        assert!(!alice.matches(&bob));
        assert!(!alice.matches(&Identity::of(&Credentials::None)));
        assert!(!Identity::of(&Credentials::Token("t1".into()))
            .matches(&Identity::of(&Credentials::Token("t2".into()))));
    }
}
