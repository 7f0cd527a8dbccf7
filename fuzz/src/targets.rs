//! One function per parser that a peer or a file reaches. Each must not panic on any input, and
//! asserts what the parser promises: a round trip where the server writes what it reads, and the
//! bounds it claims. The input is bytes; a parser that takes text gets the UTF-8 ones.
use rtcserver::admin::request as admin_request_head;
use rtcserver::book_protocol::{self, ClientMessage, MAX_ROOM};
use rtcserver::erlang_term::{consult, parse_term};
use rtcserver::faults::replay::Script;
use rtcserver::faults::rule::Rule;
use rtcserver::http::{self, Route};
use rtcserver::origins::{self, AllowedOrigins};
use rtcserver::rooms_protocol::{self, To, SERVER_EVENTS};
use rtcserver::trusted_proxies::TrustedProxies;
use rtcserver::{app_env, auth, faults, rooms_file};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The upgrade request reader (`http::parse_head`), its router, and what the server reads from
/// the head's fields next.
pub fn http_head(data: &[u8]) {
    let Ok(Some(req)) = http::parse_head(data) else {
        return;
    };
    assert!(req.rest.len() < data.len(), "the head is not empty");
    assert!(req.path.starts_with('/'), "path {:?}", req.path);
    assert!(!req.path.contains(['?', '#']), "path {:?}", req.path);
    assert!(!req.query.contains('#'), "query {:?}", req.query);
    for (name, _) in &req.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
    }
    match http::route(&req) {
        Route::RoomSocket(name) | Route::RoomPage(name) => {
            assert!(http::valid_room_name(&name), "room {name:?}")
        }
        Route::Static(rel) => {
            assert!(!rel.starts_with('/'), "static {rel:?}");
            assert!(!rel.split('/').any(|c| c == ".."), "static {rel:?}");
            let _ = http::content_type(&rel);
        }
        Route::Reject(status, _) => assert!(matches!(status, 400 | 404 | 405), "{status}"),
        Route::BookSocket => {}
    }
    if let Some(key) = &req.ws_key {
        let _ = http::switching_protocols(key);
    }
    fields(
        req.header("cookie"),
        req.header("authorization"),
        req.header("origin"),
        req.header_values("x-forwarded-for").collect(),
        &req.query,
    );
}

/// The same readers of header values and the query, fed directly (lines: cookie, authorization,
/// origin, x-forwarded-for, query), so that the fuzzer need not first build a valid head.
pub fn head_fields(data: &[u8]) {
    let Some(text) = text(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let mut next = || lines.next();
    let (cookie, authorization, origin, xff, query) = (next(), next(), next(), next(), next());
    fields(
        cookie,
        authorization,
        origin,
        xff.map(|x| x.split('\r').collect()).unwrap_or_default(),
        query.unwrap_or(""),
    );
}

fn fields(
    cookie: Option<&str>,
    authorization: Option<&str>,
    origin: Option<&str>,
    forwarded_for: Vec<&str>,
    query: &str,
) {
    if let Ok(auth::Credentials::Token(token)) = auth::from_headers(cookie, authorization) {
        assert!(
            !token.is_empty() && token.trim() == token,
            "token {token:?}"
        );
    }
    if let Some(origin) = origin {
        if let Some(canonical) = origins::serialise(origin) {
            assert_eq!(
                origins::serialise(&canonical).as_deref(),
                Some(canonical.as_str()),
                "serialising {origin:?} is not idempotent"
            );
        }
    }
    let allowed: AllowedOrigins = "https://a.example,http://localhost:8080"
        .parse()
        .expect("a valid list");
    let _ = allowed.check(origin);
    let proxies: TrustedProxies = "127.0.0.0/8,::1/128".parse().expect("a valid list");
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let _ = proxies.client(peer, forwarded_for).public();
    if let Some(name) = faults::client::requested(query) {
        assert!(!name.contains('&'), "preset {name:?}");
        let _ = faults::presets::get(name);
    }
}

/// The book protocol: a frame is accepted exactly when it is a JSON object, and a room number
/// taken from it is one GETROOM could have given.
///
/// A number beyond f64 (`1e999`) is JSON by the grammar (RFC 8259 §6 leaves the range to
/// implementations; a browser's `JSON.parse` reads Infinity) but not to `serde_json::Value`: the
/// server relays such a frame verbatim without reading the number (regressions/book_frame/), so
/// there the reference has no answer and only "no panic" is checked.
pub fn book_frame(data: &[u8]) {
    let Some(text) = text(data) else {
        return;
    };
    let parsed = book_protocol::parse(text);
    let reference = serde_json::from_str::<Value>(text);
    if matches!(&reference, Err(e) if e.to_string().starts_with("number out of range")) {
        return;
    }
    let object = matches!(reference, Ok(Value::Object(_)));
    assert_eq!(parsed.is_ok(), object, "{parsed:?} for {text:?}");
    if let Ok(ClientMessage::EnterRoom(Some(n))) = parsed {
        assert!((1..=MAX_ROOM).contains(&n), "room {n}");
    }
}

/// The named-rooms protocol: the first byte is the room's `to` bound. What the server accepts
/// it writes out and reads back unchanged; a forged server event is never accepted.
pub fn rooms_frame(data: &[u8]) {
    let Some((&bound, rest)) = data.split_first() else {
        return;
    };
    let Some(text) = text(rest) else {
        return;
    };
    let max_to = usize::from(bound);
    if let Ok(msg) = rooms_protocol::parse(text, max_to) {
        assert!(!SERVER_EVENTS.contains(&msg.event.as_str()), "{msg:?}");
        assert!(msg.from.is_none());
        if let Some(To::Peers(peers)) = &msg.to {
            assert!(peers.len() <= max_to, "{} > {max_to}", peers.len());
        }
        round_trip(&msg);
    }
    if let Ok(msg) = rooms_protocol::parse_sent(text) {
        round_trip(&msg);
    }
}

fn round_trip(msg: &rooms_protocol::RoomMessage) {
    let wire = msg.to_text();
    let back = rooms_protocol::parse_sent(&wire)
        .unwrap_or_else(|e| panic!("cannot read back {wire:?}: {e}"));
    assert_eq!(&back, msg, "through {wire:?}");
}

/// The Erlang term reader: a term written back in Erlang syntax reads as the same term.
pub fn erlang_term(data: &[u8]) {
    let Some(text) = text(data) else {
        return;
    };
    if let Ok(term) = parse_term(text) {
        let shown = term.to_string();
        let back = parse_term(&shown).unwrap_or_else(|e| panic!("cannot read back {shown:?}: {e}"));
        assert_eq!(back, term, "through {shown:?}");
    }
    if let Ok(terms) = consult(text) {
        let shown: String = terms.iter().map(|t| format!("{t}.\n")).collect();
        let back = consult(&shown).unwrap_or_else(|e| panic!("cannot read back {shown:?}: {e}"));
        assert_eq!(back, terms, "through {shown:?}");
    }
}

/// The application environment (`--config`: an `.app.src` or a `sys.config`), read as
/// `app_env::load` reads a file: UTF-8, else Latin-1.
pub fn app_env(data: &[u8]) {
    let text = match std::str::from_utf8(data) {
        Ok(t) => t.to_owned(),
        Err(_) => data.iter().map(|&b| char::from(b)).collect(),
    };
    if let Ok(env) = app_env::from_text(&text) {
        if let Some(bind) = &env.bind {
            assert!(bind.parse::<IpAddr>().is_ok(), "bind {bind:?}");
        }
        if let Some(level) = &env.log_level {
            assert!(
                level.parse::<log::LevelFilter>().is_ok(),
                "log level {level:?}"
            );
        }
        assert!(env.acceptors.is_none_or(|a| a >= 1), "{env:?}");
    }
}

/// The rooms file (`--rooms`): the first byte picks JSON (odd) or TOML (even).
pub fn rooms_file(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Some(text) = text(rest) else {
        return;
    };
    if let Ok(file) = rooms_file::parse(text, kind % 2 == 1) {
        assert!(file.max_peers.is_none_or(|m| m >= 1));
        for (i, room) in file.rooms.iter().enumerate() {
            assert!(http::valid_room_name(&room.name), "room {:?}", room.name);
            assert!(room.max_peers >= 1, "room {:?}", room.name);
            assert!(
                file.rooms[..i].iter().all(|r| r.name != room.name),
                "room {:?} twice",
                room.name
            );
        }
    }
}

/// Fault rules (`--faults FILE`, `POST /faults`): a rule written out as JSON reads back as
/// the same rule.
pub fn fault_rules(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let list = match &value {
        Value::Array(list) => list.clone(),
        Value::Object(map) => match map.get("rules") {
            Some(Value::Array(list)) => list.clone(),
            _ => vec![value.clone()],
        },
        _ => return,
    };
    for v in &list {
        let Ok(rule) = Rule::from_json(v) else {
            continue;
        };
        assert!((0.0..=1.0).contains(&rule.probability), "{rule:?}");
        let written = rule.to_json();
        let back =
            Rule::from_json(&written).unwrap_or_else(|e| panic!("cannot read back {written}: {e}"));
        assert_eq!(back.to_json(), written);
    }
}

/// A saved fault log given to `POST /faults/replay`.
pub fn fault_replay(data: &[u8]) {
    if let Ok(script) = Script::parse(data) {
        for (_name, first) in script.rules() {
            assert!(first < data.len(), "a record {first} past the input");
        }
        let _ = script.status();
    }
}

/// The admin API's request reader and its query strings.
pub fn admin_request(data: &[u8]) {
    let Ok(Some((req, len))) = admin_request_head::parse_head(data) else {
        return;
    };
    assert!(
        0 < len && len <= data.len(),
        "head of {len} in {}",
        data.len()
    );
    assert!(req.path.starts_with('/') && !req.path.contains('?'));
    for name in ["target", "tail", "since", ""] {
        if let Some(value) = req.query_param(name) {
            assert!(
                value.len() <= req.query.len(),
                "{value:?} from {:?}",
                req.query
            );
        }
    }
    if let Some(decoded) = admin_request_head::percent_decode(&req.query) {
        assert!(decoded.len() <= req.query.len());
    }
}
