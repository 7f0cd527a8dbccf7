//! The Redis engine: membership in Redis, one channel per room, a lease per node.
//!
//! Three connections per node, each with one job: commands (joins, leases), publishing (every
//! message and leave of the node, in order, pipelined), and subscribing (the channels of the
//! rooms where the node has a local member). Each task reconnects by itself, and what cannot
//! reach Redis meanwhile is refused, counted and logged, never waited for (docs/cluster.md,
//! "When Redis is away").
use super::proxy::{self, Outbound, Publisher};
use super::scripts;
use super::wire::{self, ChannelMsg, Kind, Why};
use super::{BoxFuture, Claim, Cluster, ClusterError, Member, Rule};
use crate::events::{Event, Events};
use crate::registry::{PeerId, Registry, RoomKey};
use crate::rooms_protocol::RoomMessage;
use ::redis::aio::{MultiplexedConnection, PubSubSink};
use async_tungstenite::tungstenite::Utf8Bytes;
use futures_lite::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use std::time::Instant;

/// How often a node renews its lease, and how long the lease lives: a node that stops renewing
/// is found gone by the others within `LEASE_TTL` + `REAP_EVERY`.
pub const LEASE_EVERY: Duration = Duration::from_secs(2);
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// Every other key of a node's lives this long unless renewed (with the lease, by the nodes
/// that have members there): when every node is gone, nothing is left in Redis. Three leases
/// long, so that a surviving node finds a lost one's rooms before they expire.
pub const KEY_TTL: Duration = Duration::from_secs(18);
/// How often a node looks for lost nodes.
pub const REAP_EVERY: Duration = Duration::from_secs(1);
/// After an outage, how long a node refuses joins and GETROOMs: every node notices that Redis
/// is back within `REAP_EVERY` and asserts its members again at once, so a number or a place
/// handed out before then could clash with one that is not back yet.
pub const QUIET: Duration = Duration::from_secs(3);
/// Leaves kept for a retry while Redis cannot be reached (beyond, they are dropped and
/// counted: the lease cleanup or the keys' expiry removes them).
const KEPT_LEAVES: usize = 10_000;
/// Wait between two attempts to reach Redis.
const RETRY: Duration = Duration::from_millis(250);
/// Messages sent to Redis in one pipelined write at most.
const BATCH: usize = 512;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Messages for other nodes refused while Redis could not be reached.
    pub dropped: AtomicU64,
    pub nodes_lost: AtomicU64,
}

/// A live node as the lease keys show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLease {
    pub node: String,
    /// Since its last renewal.
    pub age: Duration,
}

/// A room this node hears.
struct Watched {
    key: RoomKey,
    channel: Arc<str>,
    /// The membership change last applied; `None` until this node's first join there answered.
    version: Option<u64>,
    /// Changes heard before that answer, applied after it if newer.
    pending: Vec<(u64, Change)>,
    /// Remote members, with their node.
    remote: HashMap<PeerId, Arc<str>>,
}

#[derive(Debug, Clone)]
enum Change {
    Joined(PeerId, Arc<str>),
    Left(PeerId),
}

pub struct RedisCluster {
    node: Arc<str>,
    /// Where the other nodes reach this node's WebSocket port.
    advertise: Option<String>,
    client: ::redis::Client,
    commands: Mutex<Option<MultiplexedConnection>>,
    publisher: Publisher,
    sink: Mutex<Option<PubSubSink>>,
    watched: Mutex<HashMap<String, Watched>>,
    registry: Arc<Registry>,
    events: Arc<Events>,
    pub stats: ClusterStats,
    nodes: Mutex<Vec<NodeLease>>,
    health: Mutex<Health>,
    stopping: AtomicBool,
}

/// Where the node stands with Redis.
#[derive(Default)]
struct Health {
    /// A command failed and no lease renewal has succeeded since: joins are refused, and only
    /// the first failure of the outage is logged.
    down: bool,
    /// When the last outage ended.
    back_at: Option<Instant>,
    /// The rooms' membership is read again once every node has had time to assert its own.
    resync_due: bool,
    /// Counts the outages that ended: a connection made before the last one is stale, even if
    /// nothing has used (and so found out) it since.
    epoch: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

impl RedisCluster {
    /// Joins the cluster at `url`: the node's lease and the three connections' tasks.
    pub async fn connect(
        url: &str,
        node: &str,
        advertise: Option<String>,
        registry: Arc<Registry>,
        events: Arc<Events>,
    ) -> Result<Arc<Self>, ClusterError> {
        let client = ::redis::Client::open(url).map_err(unavailable)?;
        let mut commands = open(&client).await.map_err(unavailable)?;
        let (publisher, outbound) = Publisher::new();
        let cluster = Arc::new(RedisCluster {
            node: node.into(),
            advertise,
            client,
            commands: Mutex::new(None),
            publisher,
            sink: Mutex::new(None),
            watched: Mutex::new(HashMap::new()),
            registry,
            events,
            stats: ClusterStats::default(),
            nodes: Mutex::new(Vec::new()),
            health: Mutex::new(Health::default()),
            stopping: AtomicBool::new(false),
        });
        cluster.renew(&mut commands).await.map_err(unavailable)?;
        *lock(&cluster.commands) = Some(commands);
        let (subscribed_tx, subscribed) = async_channel::bounded(1);
        spawn(Arc::downgrade(&cluster), |c| c.publish_loop(outbound));
        spawn(Arc::downgrade(&cluster), move |c| {
            c.subscribe_loop(subscribed_tx)
        });
        spawn(Arc::downgrade(&cluster), |c| c.lease_loop());
        // The first subscription connection, so that the first join can watch its room.
        let _ = subscribed.recv().await;
        log::info!("cluster: node {node} joined through {}", redacted(url));
        Ok(cluster)
    }

    /// Whether Redis answers (as of the last request).
    pub fn is_reachable(&self) -> bool {
        !lock(&self.health).down
    }

    /// The live nodes, this one among them, with their lease age.
    pub fn nodes(&self) -> Vec<NodeLease> {
        lock(&self.nodes).clone()
    }

    /// Leaves the cluster at once: every local member is announced gone (the others need not
    /// wait for the lease), then the lease goes.
    pub async fn depart(&self) {
        self.stopping.store(true, Ordering::Release);
        let Ok(mut conn) = self.connection().await else {
            return;
        };
        let removed: Result<i64, _> = ::redis::cmd("EVAL")
            .arg(scripts::REMOVE_NODE)
            .arg(1)
            .arg(wire::nodes_key())
            .arg(&*self.node)
            .arg(wire::PREFIX)
            .arg("left")
            .arg("0")
            .query_async(&mut conn)
            .await;
        let _: Result<i64, _> = ::redis::cmd("DEL")
            .arg(wire::addr_key(&self.node))
            .query_async(&mut conn)
            .await;
        match removed {
            Ok(n) => log::info!("cluster: node {} left ({n} members announced)", self.node),
            Err(e) => log::warn!("cluster: node {} could not leave cleanly: {e}", self.node),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, ClusterError> {
        if let Some(conn) = lock(&self.commands).clone() {
            return Ok(conn);
        }
        let conn = open(&self.client).await.map_err(|e| self.failed(e))?;
        *lock(&self.commands) = Some(conn.clone());
        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Counts an engine error and drops the commands connection, logging the first of an outage.
    fn failed(&self, e: impl std::fmt::Display) -> ClusterError {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.commands).take();
        let mut health = lock(&self.health);
        if !health.down {
            health.down = true;
            log::error!("cluster: Redis unreachable: {e}; joins and cross-node messages are refused until it is back");
        }
        unavailable(e)
    }

    /// A lease renewal succeeded: an outage, if there was one, is over.
    fn recovered(&self) {
        let mut health = lock(&self.health);
        if health.down {
            health.down = false;
            health.back_at = Some(Instant::now());
            health.resync_due = true;
            health.epoch += 1;
            log::info!("cluster: Redis reachable again; joins resume in {QUIET:?}");
        }
    }

    /// Whether joins may be asked now (see [`QUIET`]).
    fn settled(&self) -> Result<(), ClusterError> {
        let health = lock(&self.health);
        if health.down {
            return Err(unavailable("Redis unreachable"));
        }
        if health.back_at.is_some_and(|at| at.elapsed() < QUIET) {
            return Err(unavailable("the cluster is re-forming after an outage"));
        }
        Ok(())
    }

    /// Renews the lease; true when Redis did not know this node (it restarted, or the others
    /// took the node for lost): the node then asserts its members again.
    async fn renew(&self, conn: &mut MultiplexedConnection) -> Result<bool, ::redis::RedisError> {
        let ttl = KEY_TTL.as_millis() as u64;
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET")
            .arg(wire::lease_key(&self.node))
            .arg(now_ms())
            .arg("PX")
            .arg(LEASE_TTL.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(wire::nodes_key())
            .arg(&*self.node);
        if let Some(addr) = &self.advertise {
            pipe.cmd("SET")
                .arg(wire::addr_key(&self.node))
                .arg(addr)
                .arg("PX")
                .arg(LEASE_TTL.as_millis() as u64)
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(wire::nodes_key())
            .arg(ttl)
            .ignore()
            .cmd("PEXPIRE")
            .arg(wire::node_rooms_key(&self.node))
            .arg(ttl)
            .ignore();
        let rooms: Vec<String> = lock(&self.watched).keys().cloned().collect();
        for room in rooms {
            for key in [wire::members_key(&room), wire::version_key(&room)] {
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
            }
        }
        let (added,): (i64,) = pipe.query_async(conn).await?;
        Ok(added == 1)
    }

    async fn lease_loop(self: Arc<Self>) {
        let mut last_renewal = std::time::Instant::now();
        loop {
            async_io::Timer::after(REAP_EVERY).await;
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let Ok(mut conn) = self.connection().await else {
                continue;
            };
            if last_renewal.elapsed() + REAP_EVERY > LEASE_EVERY {
                match self.renew(&mut conn).await {
                    Ok(unknown) => {
                        last_renewal = std::time::Instant::now();
                        self.recovered();
                        if unknown {
                            self.reassert(&mut conn).await;
                        }
                    }
                    Err(e) => {
                        self.failed(e);
                        continue;
                    }
                }
            }
            if let Err(e) = self.reap(&mut conn).await {
                self.failed(e);
                continue;
            }
            let resync = {
                let mut health = lock(&self.health);
                let due =
                    health.resync_due && health.back_at.is_some_and(|at| at.elapsed() >= QUIET);
                if due {
                    health.resync_due = false;
                }
                due
            };
            if resync {
                self.resync(&mut conn).await;
            }
        }
    }

    /// After an outage: every room's membership as Redis has it now that every live node has
    /// asserted its own. A member that is not back belonged to a node lost meanwhile (or left
    /// unheard): its `left` is told now.
    async fn resync(&self, conn: &mut MultiplexedConnection) {
        let rooms: Vec<String> = lock(&self.watched).keys().cloned().collect();
        for room in rooms {
            let answer: Result<::redis::Value, _> = ::redis::cmd("EVAL")
                .arg(scripts::SNAPSHOT)
                .arg(2)
                .arg(wire::members_key(&room))
                .arg(wire::version_key(&room))
                .query_async(conn)
                .await;
            let snapshot = match answer.map_err(|e| self.failed(e)).and_then(read_claim) {
                Ok(Claim::Admitted { version, members }) => (version, members),
                Ok(Claim::Refused) | Err(_) => {
                    lock(&self.health).resync_due = true;
                    return;
                }
            };
            let (version, members) = snapshot;
            let mut watched = lock(&self.watched);
            if let Some(w) = watched.get_mut(&room) {
                if w.version.is_some_and(|applied| applied > version) {
                    // Newer changes were heard meanwhile: read it again on the next tick.
                    lock(&self.health).resync_due = true;
                    continue;
                }
                w.version = None;
                drop(watched);
                self.learn(&room, version, &members);
            }
        }
    }

    /// Reads every node's lease, and removes the nodes whose lease is gone.
    async fn reap(&self, conn: &mut MultiplexedConnection) -> Result<(), ::redis::RedisError> {
        let nodes: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(wire::nodes_key())
            .query_async(conn)
            .await?;
        let mut live = Vec::new();
        for node in nodes {
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(wire::lease_key(&node))
                .query_async(conn)
                .await?;
            if ttl >= 0 {
                let age = LEASE_TTL.saturating_sub(Duration::from_millis(ttl as u64));
                live.push(NodeLease { node, age });
                continue;
            }
            let removed: i64 = ::redis::cmd("EVAL")
                .arg(scripts::REMOVE_NODE)
                .arg(1)
                .arg(wire::nodes_key())
                .arg(&node)
                .arg(wire::PREFIX)
                .arg("lost")
                .arg("1")
                .query_async(conn)
                .await?;
            if removed >= 0 {
                self.stats.nodes_lost.fetch_add(1, Ordering::Relaxed);
                log::warn!("cluster: node {node} lost (lease expired); {removed} members removed");
            }
        }
        live.sort_by(|a, b| a.node.cmp(&b.node));
        let before: Vec<String> = std::mem::replace(&mut *lock(&self.nodes), live.clone())
            .into_iter()
            .map(|n| n.node)
            .collect();
        for n in &live {
            if !before.contains(&n.node) {
                self.events.publish(Event::NodeUp {
                    node: n.node.clone(),
                });
            }
        }
        for node in before {
            if !live.iter().any(|n| n.node == node) {
                self.events.publish(Event::NodeDown { node });
            }
        }
        Ok(())
    }

    /// After Redis forgot this node: its local members are written back, each announced as
    /// joined, so that the other nodes learn them again.
    async fn reassert(&self, conn: &mut MultiplexedConnection) {
        let rooms: Vec<RoomKey> = lock(&self.watched)
            .values()
            .map(|w| w.key.clone())
            .collect();
        let mut count = 0;
        for key in rooms {
            for peer in self.registry.lookup(&key) {
                if peer.is_proxy() {
                    continue;
                }
                let room = wire::room_id(&key);
                let joined: Result<::redis::Value, _> = ::redis::cmd("EVAL")
                    .arg(scripts::JOIN)
                    .arg(3)
                    .arg(wire::members_key(&room))
                    .arg(wire::version_key(&room))
                    .arg(wire::node_rooms_key(&self.node))
                    .arg(peer.id())
                    .arg(&*self.node)
                    .arg(u32::MAX)
                    .arg(&room)
                    .arg(wire::channel(&room))
                    .arg(KEY_TTL.as_millis() as u64)
                    .query_async(conn)
                    .await;
                if joined.is_ok() {
                    count += 1;
                }
            }
        }
        log::warn!(
            "cluster: Redis did not know node {}; {count} members asserted again",
            self.node
        );
    }

    async fn publish_loop(self: Arc<Self>, outbound: async_channel::Receiver<Outbound>) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut last_attempt: Option<Instant> = None;
        let mut conn_epoch = 0;
        // Leaves that could not be sent: tried again first, in order, once Redis is back.
        let mut kept: Vec<Outbound> = Vec::new();
        loop {
            let next = if kept.is_empty() {
                outbound.recv().await.map(Some)
            } else {
                // Kept leaves are tried again after RETRY even if nothing else comes.
                futures_lite::future::or(async { outbound.recv().await.map(Some) }, async {
                    async_io::Timer::after(RETRY).await;
                    Ok(None)
                })
                .await
            };
            let Ok(next) = next else {
                return;
            };
            let mut batch = std::mem::take(&mut kept);
            batch.extend(next);
            while batch.len() < BATCH {
                match outbound.try_recv() {
                    Ok(out) => batch.push(out),
                    Err(_) => break,
                }
            }
            let epoch = lock(&self.health).epoch;
            if conn_epoch != epoch {
                conn = None;
            }
            // While Redis is away, one attempt to reach it per RETRY, not one per message.
            if conn.is_none() && last_attempt.is_none_or(|at| at.elapsed() >= RETRY) {
                last_attempt = Some(Instant::now());
                match open(&self.client).await {
                    Ok(c) => {
                        conn = Some(c);
                        conn_epoch = epoch;
                    }
                    Err(e) => {
                        self.failed(e);
                    }
                }
            }
            let mut pipe = ::redis::pipe();
            let mut messages = 0;
            for out in &batch {
                match out {
                    Outbound::Publish { channel, payload } => {
                        messages += 1;
                        pipe.cmd("PUBLISH").arg(&**channel).arg(payload).ignore();
                    }
                    Outbound::Leave { room, peer } => {
                        pipe.cmd("EVAL")
                            .arg(scripts::LEAVE)
                            .arg(3)
                            .arg(wire::members_key(room))
                            .arg(wire::version_key(room))
                            .arg(wire::node_rooms_key(&self.node))
                            .arg(*peer)
                            .arg(&*self.node)
                            .arg(room)
                            .arg(wire::channel(room))
                            .ignore();
                    }
                }
            }
            let sent = match conn.as_mut() {
                Some(c) => pipe.query_async::<()>(c).await.map_err(|e| {
                    log::debug!(
                        "cluster: a batch of {} could not be published: {e}",
                        batch.len()
                    );
                    self.failed(e)
                }),
                None => Err(unavailable("no connection")),
            };
            match sent {
                Ok(()) => {
                    self.stats.published.fetch_add(messages, Ordering::Relaxed);
                }
                Err(_) => {
                    conn = None;
                    self.stats.dropped.fetch_add(messages, Ordering::Relaxed);
                    kept = batch
                        .into_iter()
                        .filter(|o| matches!(o, Outbound::Leave { .. }))
                        .collect();
                    if kept.len() > KEPT_LEAVES {
                        let over = kept.len() - KEPT_LEAVES;
                        kept.drain(..over);
                        log::warn!("cluster: {over} leaves dropped while Redis is away");
                    }
                }
            }
        }
    }

    async fn subscribe_loop(self: Arc<Self>, first: async_channel::Sender<()>) {
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let pubsub = match self.client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    self.failed(e);
                    async_io::Timer::after(RETRY).await;
                    continue;
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            let channels: Vec<Arc<str>> = lock(&self.watched)
                .values()
                .map(|w| Arc::clone(&w.channel))
                .collect();
            let mut resubscribed = true;
            for channel in channels {
                if let Err(e) = sink.subscribe(&*channel).await {
                    self.failed(e);
                    resubscribed = false;
                    break;
                }
            }
            if !resubscribed {
                async_io::Timer::after(RETRY).await;
                continue;
            }
            // What was published while this connection was down is lost: changes are taken
            // from here on in the new order (Redis may have restarted, counting from 1 again),
            // and the rooms are read whole once the outage settles (`resync`).
            for w in lock(&self.watched).values_mut() {
                if w.version.is_some() {
                    w.version = Some(0);
                }
            }
            *lock(&self.sink) = Some(sink);
            let _ = first.try_send(());
            while let Some(msg) = stream.next().await {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                self.heard(msg.get_channel_name(), msg.get_payload_bytes());
            }
            lock(&self.sink).take();
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            log::debug!("cluster: the subscription connection ended");
            self.failed("the subscription connection ended");
            async_io::Timer::after(RETRY).await;
        }
    }

    /// One message from a room's channel.
    fn heard(&self, channel: &str, payload: &[u8]) {
        let Some(room) = wire::room_of_channel(channel) else {
            return;
        };
        let Some(msg) = wire::parse(payload) else {
            log::warn!("cluster: unreadable message on {channel}");
            return;
        };
        match msg {
            ChannelMsg::Message { to, kind, text } => {
                let Some(key) = wire::parse_room_id(room) else {
                    return;
                };
                let Some(peer) = self.registry.get(&key, to).filter(|p| !p.is_proxy()) else {
                    return;
                };
                let text = Utf8Bytes::from(text.to_owned());
                match kind {
                    Kind::Relay => peer.relay(&text),
                    Kind::Event => peer.deliver(&text),
                };
            }
            ChannelMsg::Joined {
                version,
                peer,
                node,
            } => self.changed(room, version, Change::Joined(peer, node.into())),
            ChannelMsg::Left {
                version,
                peer,
                node,
                why,
            } => {
                if node == &*self.node && why == Why::Lost {
                    log::warn!("cluster: the others took node {node} for lost (peer {peer})");
                }
                self.changed(room, version, Change::Left(peer));
            }
        }
    }

    /// A membership change heard on a room's channel, applied in version order.
    fn changed(&self, room: &str, version: u64, change: Change) {
        let mut watched = lock(&self.watched);
        let Some(w) = watched.get_mut(room) else {
            return;
        };
        match w.version {
            None => w.pending.push((version, change)),
            Some(applied) if version <= applied => {}
            Some(_) => {
                w.version = Some(version);
                self.apply(w, change);
            }
        }
    }

    /// A join's answer: the room as of `version`, then what was heard since.
    fn learn(&self, room: &str, version: u64, members: &[Member]) {
        let mut watched = lock(&self.watched);
        let Some(w) = watched.get_mut(room) else {
            return;
        };
        if w.version.is_some_and(|applied| applied >= version) {
            return;
        }
        let now: HashMap<PeerId, Arc<str>> = members
            .iter()
            .filter(|m| *m.node != *self.node)
            .map(|m| (m.peer, Arc::clone(&m.node)))
            .collect();
        let gone: Vec<PeerId> = w
            .remote
            .keys()
            .filter(|p| !now.contains_key(p))
            .copied()
            .collect();
        for peer in gone {
            self.apply(w, Change::Left(peer));
        }
        for (peer, node) in now {
            self.apply(w, Change::Joined(peer, node));
        }
        w.version = Some(version);
        let pending = std::mem::take(&mut w.pending);
        for (v, change) in pending {
            if v > version {
                w.version = Some(v);
                self.apply(w, change);
            }
        }
    }

    fn apply(&self, w: &mut Watched, change: Change) {
        match change {
            Change::Joined(peer, node) => {
                if *node == *self.node || w.remote.contains_key(&peer) {
                    return;
                }
                let proxy = proxy::proxy(peer, Arc::clone(&w.channel), self.publisher.clone());
                if self.registry.reg(&w.key, &proxy) {
                    w.remote.insert(peer, node);
                    self.announce(&w.key, RoomMessage::joined(peer));
                }
            }
            Change::Left(peer) => {
                if w.remote.remove(&peer).is_some() {
                    if let Some(proxy) = self.registry.get(&w.key, peer).filter(|p| p.is_proxy()) {
                        proxy.mark_dead();
                        self.registry.unreg(&w.key, peer);
                    }
                    self.announce(&w.key, RoomMessage::left(peer));
                }
            }
        }
    }
}

impl RedisCluster {
    /// Tells this node's members of a named room that a member of another node came or went
    /// (each node tells its own members; a book room has no such messages).
    fn announce(&self, key: &RoomKey, message: RoomMessage) {
        if !matches!(key, RoomKey::Named(_)) {
            return;
        }
        let text = message.to_shared_text();
        for peer in self.registry.lookup(key) {
            if !peer.is_proxy() {
                peer.deliver(&text);
            }
        }
    }
}

impl Cluster for RedisCluster {
    fn node_id(&self) -> &str {
        &self.node
    }

    fn holder<'a>(&'a self, room: &'a RoomKey, peer: PeerId) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut conn = self.connection().await.ok()?;
            let node: Option<String> = ::redis::cmd("HGET")
                .arg(wire::members_key(&wire::room_id(room)))
                .arg(peer)
                .query_async(&mut conn)
                .await
                .ok()?;
            let node = node.filter(|n| *n != *self.node)?;
            ::redis::cmd("GET")
                .arg(wire::addr_key(&node))
                .query_async(&mut conn)
                .await
                .ok()?
        })
    }

    fn is_distributed(&self) -> bool {
        true
    }

    fn watch<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let id = wire::room_id(room);
            let channel: Arc<str> = {
                let mut watched = lock(&self.watched);
                if watched.contains_key(&id) {
                    return Ok(());
                }
                let channel: Arc<str> = wire::channel(&id).into();
                watched.insert(
                    id.clone(),
                    Watched {
                        key: room.clone(),
                        channel: Arc::clone(&channel),
                        version: None,
                        pending: Vec::new(),
                        remote: HashMap::new(),
                    },
                );
                channel
            };
            let sink = lock(&self.sink).clone();
            let subscribed = match sink {
                Some(mut sink) => sink.subscribe(&*channel).await.map_err(|e| self.failed(e)),
                None => Err(unavailable("no subscription connection")),
            };
            if subscribed.is_err() {
                lock(&self.watched).remove(&id);
            }
            subscribed
        })
    }

    fn unwatch(&self, room: &RoomKey) {
        let id = wire::room_id(room);
        let Some(mut w) = lock(&self.watched).remove(&id) else {
            return;
        };
        let remote: Vec<PeerId> = w.remote.keys().copied().collect();
        for peer in remote {
            self.apply(&mut w, Change::Left(peer));
        }
        if let Some(mut sink) = lock(&self.sink).clone() {
            let channel = Arc::clone(&w.channel);
            drop(bastion::executor::spawn(async move {
                let _ = sink.unsubscribe(&*channel).await;
            }));
        }
    }

    fn claim<'a>(
        &'a self,
        room: &'a RoomKey,
        peer: PeerId,
        rule: Rule,
        _local: usize,
    ) -> BoxFuture<'a, Result<Claim, ClusterError>> {
        Box::pin(async move {
            let id = wire::room_id(room);
            let rule = match rule {
                Rule::Create => "create".to_owned(),
                Rule::Book => "book".to_owned(),
                Rule::Capacity(max) => max.to_string(),
            };
            self.settled()?;
            let mut conn = self.connection().await?;
            let answer: ::redis::Value = ::redis::cmd("EVAL")
                .arg(scripts::JOIN)
                .arg(3)
                .arg(wire::members_key(&id))
                .arg(wire::version_key(&id))
                .arg(wire::node_rooms_key(&self.node))
                .arg(peer)
                .arg(&*self.node)
                .arg(rule)
                .arg(&id)
                .arg(wire::channel(&id))
                .arg(KEY_TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            let claim = read_claim(answer)?;
            if let Claim::Admitted { version, members } = &claim {
                self.learn(&id, *version, members);
            }
            Ok(claim)
        })
    }

    fn leave(&self, room: &RoomKey, peer: PeerId) {
        let sent = self.publisher.send(Outbound::Leave {
            room: wire::room_id(room),
            peer,
        });
        if !sent {
            log::warn!("cluster: peer {peer}'s leave of {room} not sent (node stopping)");
        }
    }
}

/// Reads the join script's answer.
fn read_claim(answer: ::redis::Value) -> Result<Claim, ClusterError> {
    use ::redis::Value;
    let bad = || ClusterError::Protocol("unexpected answer to a join".into());
    let Value::Array(items) = answer else {
        return Err(bad());
    };
    let mut items = items.into_iter();
    let status: i64 = match items.next() {
        Some(Value::Int(n)) => n,
        _ => return Err(bad()),
    };
    if status != 1 {
        return Ok(Claim::Refused);
    }
    let version = match items.next() {
        Some(Value::Int(v)) if v >= 0 => v as u64,
        _ => return Err(bad()),
    };
    let Some(Value::Array(flat)) = items.next() else {
        return Err(bad());
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut members = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks(2) {
        let [peer, node] = pair else {
            return Err(bad());
        };
        let peer = text(peer).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let node: Arc<str> = text(node).ok_or_else(bad)?.into();
        members.push(Member { peer, node });
    }
    Ok(Claim::Admitted { version, members })
}

/// Runs `task` for as long as the cluster exists.
fn spawn<F, Fut>(cluster: Weak<RedisCluster>, task: F)
where
    F: FnOnce(Arc<RedisCluster>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    drop(bastion::executor::spawn(async move {
        if let Some(cluster) = cluster.upgrade() {
            task(cluster).await;
        }
    }));
}

/// How long a node waits for Redis's answer to one command before it takes Redis for away. The
/// `redis` crate's default (500 ms) was passed by a loaded machine (several nodes, Redis and the
/// tests on 2 cores): a GETROOM then got 1013 `cluster unavailable` with Redis up. The lease (6 s)
/// still bounds what a slow Redis costs.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A multiplexed connection with the node's response timeout.
async fn open(client: &::redis::Client) -> ::redis::RedisResult<MultiplexedConnection> {
    let config = ::redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}
