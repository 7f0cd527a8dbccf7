//! The rooms file (`--rooms FILE`, TOML or JSON by its extension): named rooms started up front,
//! and who may connect to `/socket/:room`.
//!
//! ```toml
//! max_peers = 2                 # of rooms started on demand
//! auto_rooms = true             # false: unknown room names get 404
//! tokens = ["a-long-random-token"]
//!
//! [[rooms]]
//! name = "standup"
//! max_peers = 6
//! metadata = { topic = "daily" }
//!
//! [[users]]
//! username = "alice"
//! password = "wonderland"
//! ```
use crate::auth::{Accounts, User};
use crate::hooks::RoomContext;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a rooms file sets; `None` leaves the flag or default in place.
#[derive(Debug, Clone, Default)]
pub struct RoomsFile {
    pub rooms: Vec<RoomContext>,
    pub auto_rooms: Option<bool>,
    pub max_peers: Option<usize>,
    pub accounts: Accounts,
}

#[derive(Debug)]
pub enum RoomsFileError {
    Read(PathBuf, std::io::Error),
    Parse(PathBuf, String),
    Invalid(PathBuf, String),
}

impl fmt::Display for RoomsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomsFileError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            RoomsFileError::Parse(p, e) => write!(f, "{}: {e}", p.display()),
            RoomsFileError::Invalid(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for RoomsFileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(default)]
    rooms: Vec<RoomWire>,
    auto_rooms: Option<bool>,
    max_peers: Option<usize>,
    #[serde(default)]
    users: Vec<UserWire>,
    #[serde(default)]
    tokens: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomWire {
    name: String,
    max_peers: Option<usize>,
    #[serde(default)]
    metadata: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserWire {
    username: String,
    password: String,
}

/// Reads and checks a rooms file. Errors name the file, and the line for TOML.
pub fn load(path: &Path) -> Result<RoomsFile, RoomsFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| RoomsFileError::Read(path.to_owned(), e))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse(&text, is_json).map_err(|e| match e {
        ParseError::Syntax(e) => RoomsFileError::Parse(path.to_owned(), e),
        ParseError::Invalid(e) => RoomsFileError::Invalid(path.to_owned(), e),
    })
}

#[derive(Debug)]
pub enum ParseError {
    Syntax(String),
    Invalid(String),
}

pub fn parse(text: &str, json: bool) -> Result<RoomsFile, ParseError> {
    let wire: Wire = if json {
        serde_json::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?
    } else {
        toml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?
    };
    let default_max = wire.max_peers.unwrap_or(2);
    if default_max == 0 {
        return Err(ParseError::Invalid("max_peers must be at least 1".into()));
    }
    let mut rooms: Vec<RoomContext> = Vec::new();
    for room in wire.rooms {
        if !crate::http::valid_room_name(&room.name) {
            return Err(ParseError::Invalid(format!(
                "room name {:?}: 1-64 characters of [A-Za-z0-9._-]",
                room.name
            )));
        }
        if rooms.iter().any(|r| r.name == room.name) {
            return Err(ParseError::Invalid(format!(
                "room {:?} is listed twice",
                room.name
            )));
        }
        let max_peers = room.max_peers.unwrap_or(default_max);
        if max_peers == 0 {
            return Err(ParseError::Invalid(format!(
                "room {:?}: max_peers must be at least 1",
                room.name
            )));
        }
        rooms.push(RoomContext {
            name: room.name,
            max_peers,
            metadata: room.metadata,
            configured: true,
        });
    }
    if wire.tokens.iter().any(String::is_empty) {
        return Err(ParseError::Invalid(
            "an empty token would admit anyone".into(),
        ));
    }
    Ok(RoomsFile {
        rooms,
        auto_rooms: wire.auto_rooms,
        max_peers: wire.max_peers,
        accounts: Accounts {
            users: wire
                .users
                .into_iter()
                .map(|u| User {
                    username: u.username,
                    password: u.password,
                })
                .collect(),
            tokens: wire.tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
max_peers = 3
auto_rooms = false
tokens = ["t0k"]

[[rooms]]
name = "standup"
max_peers = 6
metadata = { topic = "daily" }

[[rooms]]
name = "pair"

[[users]]
username = "alice"
password = "wonderland"
"#;

    #[test]
    fn toml_and_json_give_the_same_settings() {
        let t = parse(TOML, false).unwrap();
        let j = parse(
            r#"{"max_peers":3,"auto_rooms":false,"tokens":["t0k"],
                "rooms":[{"name":"standup","max_peers":6,"metadata":{"topic":"daily"}},{"name":"pair"}],
                "users":[{"username":"alice","password":"wonderland"}]}"#,
            true,
        )
        .unwrap();
        for f in [&t, &j] {
            assert_eq!(f.auto_rooms, Some(false));
            assert_eq!(f.max_peers, Some(3));
            let rooms: Vec<(&str, usize)> = f
                .rooms
                .iter()
                .map(|r| (r.name.as_str(), r.max_peers))
                .collect();
            assert_eq!(rooms, [("standup", 6), ("pair", 3)]);
            assert_eq!(f.rooms[0].metadata["topic"], "daily");
            assert!(f.rooms.iter().all(|r| r.configured));
            assert_eq!(f.accounts.users[0].username, "alice");
            assert_eq!(f.accounts.tokens, ["t0k"]);
        }
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("[[rooms]]\nname = \"a b\"\n", "room name"),
            (
                "[[rooms]]\nname = \"x\"\n[[rooms]]\nname = \"x\"\n",
                "twice",
            ),
            ("[[rooms]]\nname = \"x\"\nmax_peers = 0\n", "at least 1"),
            ("tokens = [\"\"]\n", "empty token"),
            ("colour = \"red\"\n", "unknown field"),
            ("[[rooms]\n", "line 1"),
        ] {
            let e = match parse(text, false) {
                Err(ParseError::Syntax(e)) | Err(ParseError::Invalid(e)) => e,
                Ok(_) => panic!("{text:?} was accepted"),
            };
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
