//! The single-node engine: this node's room processes and registry are the whole truth.
use super::{admits, BoxFuture, Claim, Cluster, ClusterError, Rule};
use crate::registry::{PeerId, RoomKey};

/// One node, no I/O: every answer is ready at once.
pub struct Embedded;

impl Cluster for Embedded {
    fn node_id(&self) -> &str {
        "local"
    }

    fn is_distributed(&self) -> bool {
        false
    }

    fn watch<'a>(&'a self, _room: &'a RoomKey) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unwatch(&self, _room: &RoomKey) {}

    fn claim<'a>(
        &'a self,
        _room: &'a RoomKey,
        _peer: PeerId,
        rule: Rule,
        local: usize,
    ) -> BoxFuture<'a, Result<Claim, ClusterError>> {
        // The room process that asks serialises its room's joins: the local count is exact.
        let claim = if admits(rule, local) {
            Claim::Admitted {
                version: 0,
                members: Vec::new(),
            }
        } else {
            Claim::Refused
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn leave(&self, _room: &RoomKey, _peer: PeerId) {}
}
