//! The guide's `Server.Room`: a room that lets at most N peers in ("mesh WebRTC can't scale").
//!
//!     cargo run --example limited_room -- 3        # at most 3 peers per room, on :30000
//!
//! The guide counts peers in the room's state (`number_of_peers`, +1 on join, -1 on leave);
//! here the server hands `on_join` the members it knows, which stays right across a crash and
//! restart of the room, where a counter kept in the room would start again from 0.
use rtcserver::hooks::{AuthData, Refusal, RoomContext, RoomHooks};
use rtcserver::{Config, PeerId, Server};

struct LimitedRoom {
    max_peers: usize,
}

impl RoomHooks for LimitedRoom {
    fn on_init(&self, room: &RoomContext, members: &[PeerId]) {
        log::info!("room {} up with {} peers", room.name, members.len());
    }

    fn on_join(
        &self,
        _room: &RoomContext,
        members: &[PeerId],
        _peer: &AuthData,
    ) -> Result<(), Refusal> {
        if members.len() < self.max_peers {
            Ok(())
        } else {
            Err(Refusal::new("room_is_full"))
        }
    }

    fn on_leave(&self, room: &RoomContext, peer: PeerId) {
        log::info!("peer {peer} left room {}", room.name);
    }
}

fn main() {
    simple_logger::init_with_level(log::Level::Info).expect("a logger");
    let max_peers = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    // The per-room limit is this hook's alone: lift the server's own default out of its way.
    let config = Config {
        default_max_peers: usize::MAX,
        ..Config::default()
    };
    let server = Server::new(config)
        .room_hooks(LimitedRoom { max_peers })
        .start()
        .expect("port 30000 is free");
    log::info!("at most {max_peers} peers per room: open http://localhost:30000/<room>");
    let _ = futures_lite::future::block_on(server.wait());
}
