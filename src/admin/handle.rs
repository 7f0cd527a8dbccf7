//! What the admin API reads of a running server, as methods of [`ServerHandle`].
use crate::chaos::Chaos;
use crate::metrics::{Gauges, Metrics};
use crate::registry::{PeerId, RoomKey};
use crate::rtcserver_app::ServerHandle;
use std::net::SocketAddr;

impl ServerHandle {
    /// Where the admin API listens; `None` when it was not started.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin_addr
    }

    /// The live rooms, sorted.
    pub fn rooms(&self) -> Vec<RoomKey> {
        self.shared.rooms.keys()
    }

    /// The rooms a peer is registered in (one at most, by the book protocol).
    pub fn rooms_of(&self, peer: PeerId) -> Vec<RoomKey> {
        self.shared.registry.keys_of(peer)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// `GET /metrics`: the counters and what is live now, in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let stats = self.stats();
        let mut text = self.shared.metrics.render(&Gauges {
            connections: stats.connections,
            peers: stats.peers,
            rooms: stats.rooms,
            registrations: stats.registrations,
            faults_held: self.shared.faults.held(),
        });
        if let Some(redis) = &self.shared.redis {
            crate::cluster::admin::metrics(redis, &mut text);
        }
        crate::resume::admin::metrics(&self.shared.resume, &mut text);
        text
    }

    /// Chaos mode, when it is on.
    pub fn chaos(&self) -> Option<&Chaos> {
        self.shared.chaos.as_deref()
    }
}
