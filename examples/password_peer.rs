//! The guide's authenticated peer: credentials come in a `credentials` cookie holding
//! `{"username": .., "password": ..}`, and `on_init` lets only the right pair in, before any
//! WebSocket is opened (anyone else gets HTTP 401).
//!
//!     cargo run --example password_peer
//!     # in the browser console of http://localhost:30000/, before opening a room:
//!     document.cookie = 'credentials=' + encodeURIComponent('{"username":"USERNAME","password":"PASSWORD"}')
//!
//! `parse_request` is the default one (cookie or `Authorization: Bearer`); only `on_init` is
//! ours. The comparison is constant-time, as a password check must be.
use rtcserver::auth::{Accounts, Credentials};
use rtcserver::hooks::{AuthData, PeerHooks, Refusal};
use rtcserver::{Config, Server};
use subtle::ConstantTimeEq;

struct PasswordPeer {
    username: String,
    password: String,
}

impl PeerHooks for PasswordPeer {
    fn on_init(&self, auth: &mut AuthData, _accounts: &Accounts) -> Result<(), Refusal> {
        let Credentials::Password { username, password } = &auth.credentials else {
            return Err(Refusal::new("wrong_credentials"));
        };
        let same_user = self.username.as_bytes().ct_eq(username.as_bytes());
        let same_password = self.password.as_bytes().ct_eq(password.as_bytes());
        if bool::from(same_user & same_password) {
            // The peer's state from here on, as the guide's `{:ok, %{}}`.
            auth.metadata = serde_json::json!({ "username": username });
            Ok(())
        } else {
            Err(Refusal::new("wrong_credentials"))
        }
    }
}

fn main() {
    simple_logger::init_with_level(log::Level::Info).expect("a logger");
    let server = Server::new(Config::default())
        .peer_hooks(PasswordPeer {
            username: "USERNAME".into(),
            password: "PASSWORD".into(),
        })
        .start()
        .expect("port 30000 is free");
    log::info!("only USERNAME/PASSWORD may join a room on ws://localhost:30000/socket/<room>");
    let _ = futures_lite::future::block_on(server.wait());
}
