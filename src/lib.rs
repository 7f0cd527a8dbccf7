//! rtcserver: the signaling server of "WebRTC Blueprints" as an OTP-style application on bastion.
//!
//! One module per process kind, named after the Erlang module it replaces:
//! - [`rtcserver_app`] ← `rtcserver_app`: start, stop, the handle to a running server.
//! - [`rtcserver_sup`] ← `rtcserver_sup`: the root supervisor, `{one_for_one, 5, 10}`.
//! - [`registry`] ← gproc: `{p, l, Room}` properties that vanish when their peer dies.
//! - [`listener`] ← cowboy/ranch's acceptor.
//! - [`peers_sup`] ← ranch's connection supervisor: one temporary child per connection.
//! - [`peer`] ← `handler_websocket`: the book protocol's logic, returning commands.
//! - [`connection`]: the socket loop that carries out a peer's commands.
//! - [`rooms_sup`] / [`room`]: room processes, so that joins are atomic (the original raced);
//!   `announced`: what a named room has told its members, so that a `left` precedes a `joined`.
//! - [`named_peer`] ← `Membrane.WebRTC.Server.Peer`: a `/socket/:room` peer, with [`hooks`].
//! - [`resume`]: resume sessions of `/socket/:room` peers, and the task that holds a detached one.
//!
//! And the pieces without a process: [`book_protocol`] and [`rooms_protocol`] (the wire
//! formats, no I/O), [`auth`] (credentials, checked before the upgrade), [`http`]
//! (upgrade and static files), [`mailbox`] (a peer's bounded inbox), [`trusted_proxies`] (who a client is behind a proxy), [`budget`] (what one connection may send), [`channel`] (a room's), [`events`], [`config`].
//!
//! Fault injection and introspection: [`admin`] (the admin API and observer page, on a listener
//! of its own), [`metrics`] (Prometheus counters), [`chaos`] (seeded random crashes), [`faults`]
//! (seeded message-level faults: drop, delay, duplicate).
#![forbid(unsafe_code)]

pub mod admin;
mod announced;
pub mod app_env;
pub mod auth;
pub mod book_protocol;
pub mod budget;
pub mod channel;
pub mod chaos;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod deadline;
pub mod erlang_term;
pub mod events;
pub mod faults;
pub mod hooks;
pub mod http;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod named_peer;
pub mod origins;
pub mod peer;
pub mod peers_sup;
pub mod per_ip;
pub mod registry;
pub mod resume;
pub mod room;
pub mod rooms_file;
pub mod rooms_protocol;
pub mod rooms_sup;
pub mod rtcserver_app;
pub mod rtcserver_sup;
pub mod socket;
pub mod tls;
pub mod trusted_proxies;
pub mod websocket;

pub use config::Config;
pub use events::Event;
pub use registry::{PeerId, RoomKey};
pub use rtcserver_app::{
    start, CrashError, CrashTarget, PeerInfo, Server, ServerHandle, StartError, Stats,
};
