//! A member held by another node, as this node's registry holds it: a [`PeerRef`] whose
//! mailbox publishes to the room's channel (the node that holds the member's connection
//! delivers it there) instead of queueing for a socket.
//!
//! Every message of a node leaves through one [`Publisher`] queue and one Redis connection,
//! so that what one sender sends one receiver arrives in the order it was sent.
//!
//! [`PeerRef`]: crate::mailbox::PeerRef
use super::wire::{self, Kind};
use crate::mailbox::{Mailbox, PeerRef};
use crate::registry::PeerId;
use std::sync::Arc;

/// What a node sends to Redis, in order, on its one publishing connection.
#[derive(Debug)]
pub enum Outbound {
    Publish {
        channel: Arc<str>,
        payload: Vec<u8>,
    },
    /// A member left: after everything it sent (same queue, same connection).
    Leave {
        room: String,
        peer: PeerId,
    },
}

/// The sending end of a node's publishing queue.
#[derive(Clone)]
pub struct Publisher(async_channel::Sender<Outbound>);

impl Publisher {
    pub fn new() -> (Publisher, async_channel::Receiver<Outbound>) {
        let (tx, rx) = async_channel::unbounded();
        (Publisher(tx), rx)
    }

    /// False when the node's publishing task is gone (the node is stopping).
    pub fn send(&self, out: Outbound) -> bool {
        self.0.try_send(out).is_ok()
    }
}

/// Where a proxy's messages go.
pub struct Remote {
    channel: Arc<str>,
    publisher: Publisher,
}

impl Remote {
    /// Publishes a message for the member `to`.
    pub fn forward(&self, to: PeerId, kind: Kind, text: &str) -> bool {
        self.publisher.send(Outbound::Publish {
            channel: Arc::clone(&self.channel),
            payload: wire::message(to, kind, text),
        })
    }
}

/// A proxy for member `peer` of the room whose channel is `channel`.
pub fn proxy(peer: PeerId, channel: Arc<str>, publisher: Publisher) -> PeerRef {
    Mailbox::proxy(peer, Arc::new(Remote { channel, publisher }))
}
