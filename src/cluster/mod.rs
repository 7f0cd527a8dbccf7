//! Several nodes, one set of rooms (docs/cluster.md).
//!
//! Membership is decided by an engine behind the [`Cluster`] trait. A single node runs the
//! [`Embedded`] engine: the node's own room processes and registry are the whole truth, exactly
//! as before clusters existed, with no I/O. With `--cluster redis://...`, the [`redis`] engine
//! makes membership authoritative in Redis: each join is one atomic script there, and a room
//! process asks it before it lets a peer in. Everything else stays the node's: its room processes
//! serialise local joins, its registry holds the local members, and a member on another node is
//! present in the local registry as a *proxy* (an Erlang remote pid, in effect): a [`PeerRef`]
//! whose mailbox publishes to the room's channel instead of queueing for a socket
//! ([`proxy`]). Relaying, `to: [ids]`, `"all"`, the capacity count and the fault rules then work
//! on remote members through the code paths they use for local ones.
//!
//! [`PeerRef`]: crate::mailbox::PeerRef
pub mod admin;
pub mod embedded;
pub mod proxy;
pub mod redis;
pub mod scripts;
pub mod wire;

use crate::registry::{PeerId, RoomKey};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use embedded::Embedded;

/// How a node joins a cluster (`--cluster`, `--node-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// Unique among the nodes; random when not given.
    pub node_id: NodeId,
    /// `--advertise-addr`: where the other nodes reach this node's WebSocket port, to pass it a
    /// resume of a session it holds (docs/cluster.md, "Resume across nodes"). Default: the
    /// listening address, or 127.0.0.1 and its port when listening on every interface.
    pub advertise: Option<String>,
}

/// A node's id: 1 to 64 of `A-Z a-z 0-9 . _ -` (it is part of Redis keys and channel messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

impl NodeId {
    /// A random id, for a node started without `--node-id`.
    pub fn random() -> Self {
        use rand::RngExt;
        NodeId(format!("node-{:08x}", rand::rng().random::<u32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NodeId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(format!(
                "a node id is 1 to 64 of A-Z a-z 0-9 . _ - (got {s:?})"
            ))
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a `--cluster` URL: Redis, loopback or not (a cluster spans machines).
pub fn parse_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("--cluster takes redis://HOST:PORT[/DB] (got {url:?})"))?;
    if rest.is_empty() {
        return Err(format!("--cluster: no host in {url:?}"));
    }
    ::redis::Client::open(url).map_err(|e| format!("--cluster {url:?}: {e}"))?;
    Ok(url.to_owned())
}

/// A boxed future: the trait is used as `dyn Cluster`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// When a peer may enter a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// GETROOM: the room must hold nobody (its number is fresh cluster-wide).
    Create,
    /// ENTERROOM: the book's rule, exactly one other peer in.
    Book,
    /// A named room: fewer than this many members.
    Capacity(usize),
}

/// A member of a room as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub peer: PeerId,
    /// The node holding its connection.
    pub node: Arc<str>,
}

/// The engine's answer to a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// In. `members` is the room as of `version` (the newcomer among them), for the caller to
    /// learn the members that other nodes hold.
    Admitted { version: u64, members: Vec<Member> },
    /// The rule said no.
    Refused,
}

/// Why the engine could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterError {
    /// The engine (Redis) cannot be reached; the join is refused, never guessed.
    Unavailable(String),
    /// The engine answered something this node cannot read (another version of rtcserver?).
    Protocol(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Unavailable(e) => write!(f, "cluster engine unavailable: {e}"),
            ClusterError::Protocol(e) => write!(f, "cluster engine protocol error: {e}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// What a node's room processes ask of the engine that decides membership.
pub trait Cluster: Send + Sync {
    /// This node's id (`--node-id`, or random).
    fn node_id(&self) -> &str;

    /// Whether other nodes may hold members (false: every member is local).
    fn is_distributed(&self) -> bool;

    /// Starts hearing the room's joins, leaves and messages from other nodes; resolves once
    /// nothing published from now on can be missed. Called before the first local join.
    fn watch<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Stops hearing the room (no local member is left) and drops its proxies.
    fn unwatch(&self, room: &RoomKey);

    /// Lets `peer` into `room` if `rule` holds, atomically across the cluster. `local` is the
    /// number of members this node's registry holds there (all of them, for a single node).
    fn claim<'a>(
        &'a self,
        room: &'a RoomKey,
        peer: PeerId,
        rule: Rule,
        local: usize,
    ) -> BoxFuture<'a, Result<Claim, ClusterError>>;

    /// `peer` (a local member) left `room`: the other nodes hear it after everything it sent.
    fn leave(&self, room: &RoomKey, peer: PeerId);

    /// Where to reach the node that holds member `peer` of `room` (its advertised address),
    /// when it is another node: a resume that reached this node goes there.
    fn holder<'a>(&'a self, _room: &'a RoomKey, _peer: PeerId) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// The rule a room applies, checked against a count of members.
pub fn admits(rule: Rule, members: usize) -> bool {
    match rule {
        Rule::Create => members == 0,
        Rule::Book => members == 1,
        Rule::Capacity(max) => members < max,
    }
}
