//! The admin API's JSON: the live tree (`GET /tree`) and one event of the stream (`GET /events`).
use crate::events::Event;
use crate::registry::PeerId;
use crate::rtcserver_app::{CrashTarget, ServerHandle};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use supervisors::{ChildInfo, Exit, SupervisorEvent};

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a `room:<N>`, `named:<name>` or `peer:<id>` row of the tree is annotated with.
#[derive(Default)]
struct Annotations {
    by_child: HashMap<String, Map<String, Value>>,
}

/// `GET /tree`: the supervision tree, every room with its members, every peer with its room and
/// client address, and the server's own facts.
pub fn tree(handle: &ServerHandle) -> Value {
    let mut notes = Annotations::default();
    let mut rooms = Vec::new();
    for key in handle.rooms() {
        let members = handle.room_members(&key);
        let child = key.child_id();
        rooms.push(json!({ "key": key.to_string(), "child": child, "members": members }));
        let mut note = Map::new();
        note.insert("room".into(), json!(key.to_string()));
        note.insert("members".into(), json!(members));
        notes.by_child.insert(child, note);
    }
    let mut peers = Vec::new();
    for peer in handle.peers() {
        let room = handle.rooms_of(peer.id).first().map(ToString::to_string);
        let child = format!("peer:{}", peer.id);
        peers.push(json!({
            "id": peer.id,
            "child": child,
            "room": room,
            "client": peer.client,
            "addr": peer.addr.to_string(),
        }));
        let mut note = Map::new();
        note.insert("peer".into(), json!(peer.id));
        note.insert("room".into(), json!(room));
        note.insert("client".into(), json!(peer.client));
        note.insert("addr".into(), json!(peer.addr.to_string()));
        notes.by_child.insert(child, note);
    }
    let root = handle.tree();
    let now = SystemTime::now();
    json!({
        "server": {
            "listen": handle.local_addr().to_string(),
            "admin": handle.admin_addr().map(|a| a.to_string()),
            "running": root.status == supervisors::ChildStatus::Running,
            "uptime_ms": u64::try_from(handle.metrics().uptime().as_millis()).unwrap_or(u64::MAX),
        },
        "tree": node(&root, now, &notes),
        "rooms": rooms,
        "peers": peers,
        "cluster": handle.shared.redis.as_deref().map(crate::cluster::admin::tree),
        "resume": crate::resume::admin::tree(&handle.shared.resume),
        "chaos": handle.chaos().map(|c| json!({
            "spec": c.spec().to_string(),
            "seed": c.seed(),
            "crashes": c.recent().len(),
        })),
    })
}

fn node(info: &ChildInfo, now: SystemTime, notes: &Annotations) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(info.id));
    v.insert("kind".into(), json!(info.kind.as_str()));
    v.insert("status".into(), json!(info.status.as_str()));
    v.insert("restarts".into(), json!(info.restarts));
    v.insert("started_at_ms".into(), json!(unix_ms(info.started_at)));
    v.insert(
        "uptime_ms".into(),
        json!(now
            .duration_since(info.started_at)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
    );
    v.insert("supervisor".into(), json!(info.supervisor));
    if let Some(note) = notes.by_child.get(&info.id) {
        v.extend(note.clone());
    }
    if info.supervisor {
        let children: Vec<Value> = info.children.iter().map(|c| node(c, now, notes)).collect();
        v.insert("children".into(), Value::Array(children));
    }
    Value::Object(v)
}

/// The kind of child a target is, and its supervisor (none for the root), as `/tree` says.
pub fn target_kind(
    handle: &ServerHandle,
    target: &CrashTarget,
) -> (&'static str, Option<&'static str>) {
    match target {
        CrashTarget::Room(key) if handle.is_configured_room(key) => {
            ("permanent", Some("rooms_sup"))
        }
        CrashTarget::Root => ("permanent", None),
        CrashTarget::Listener
        | CrashTarget::Registry
        | CrashTarget::RoomsSup
        | CrashTarget::PeersSup => ("permanent", Some("rtcserver_sup")),
        CrashTarget::Room(_) => ("transient", Some("rooms_sup")),
        CrashTarget::Peer(_) => ("temporary", Some("peers_sup")),
    }
}

fn peer_json(kind: &str, peer: PeerId) -> Value {
    json!({ "type": kind, "peer": peer })
}

/// One event of `GET /events`; `type` says which.
pub fn event(e: &Event) -> Value {
    let mut v = match e {
        Event::Connected { peer, client } => {
            json!({ "type": "connected", "peer": peer, "client": client })
        }
        Event::Disconnected { peer } => peer_json("disconnected", *peer),
        // `child` tells book room 7 from a room named "7", whose `room` is the same.
        Event::Joined { room, peer } => json!({
            "type": "joined", "room": room.to_string(), "child": room.child_id(), "peer": peer,
        }),
        Event::Left { room, peer } => json!({
            "type": "left", "room": room.to_string(), "child": room.child_id(), "peer": peer,
        }),
        Event::RoomStarted { room } => json!({
            "type": "room_started", "room": room.to_string(), "child": room.child_id(),
        }),
        Event::RoomStopped { room } => json!({
            "type": "room_stopped", "room": room.to_string(), "child": room.child_id(),
        }),
        Event::Supervision(s) => supervision(s),
        Event::ChaosCrash(c) => json!({
            "type": "chaos",
            "target": c.target.to_string(),
            "trigger": c.trigger.to_string(),
        }),
        Event::Fault(record) => {
            let mut v = record.to_json();
            // `type` is the event's; the message's type goes under `message_type`.
            if let Value::Object(map) = &mut v {
                let kind = map.remove("type").unwrap_or_default();
                map.insert("message_type".into(), kind);
                map.insert("type".into(), "fault".into());
            }
            v
        }
        Event::NodeUp { node } => json!({ "type": "node_up", "node": node }),
        Event::NodeDown { node } => json!({ "type": "node_down", "node": node }),
        Event::Detached { peer, room } => json!({ "type": "detached", "peer": peer, "room": room }),
        Event::Resumed { peer, room } => json!({ "type": "resumed", "peer": peer, "room": room }),
        Event::FaultDivergence(d) => {
            let mut v = d.to_json();
            if let Value::Object(map) = &mut v {
                map.insert("type".into(), "fault_divergence".into());
            }
            v
        }
    };
    if let Value::Object(map) = &mut v {
        map.insert("at_ms".into(), json!(unix_ms(SystemTime::now())));
    }
    v
}

fn supervision(e: &SupervisorEvent) -> Value {
    match e {
        SupervisorEvent::Started {
            supervisor,
            child,
            kind,
        } => json!({
            "type": "started", "supervisor": supervisor, "child": child, "kind": kind.as_str(),
        }),
        SupervisorEvent::Exited {
            supervisor,
            child,
            kind,
            exit,
            restarting,
        } => json!({
            "type": if matches!(exit, Exit::Panic(_)) { "crashed" } else { "exited" },
            "supervisor": supervisor,
            "child": child,
            "kind": kind.as_str(),
            "exit": exit.to_string(),
            "restarting": restarting,
        }),
        SupervisorEvent::Restarted {
            supervisor,
            child,
            kind,
            restarts,
        } => json!({
            "type": "restarted", "supervisor": supervisor, "child": child,
            "kind": kind.as_str(), "restarts": restarts,
        }),
        SupervisorEvent::Escalated { supervisor, reason } => json!({
            "type": "escalated", "supervisor": supervisor, "reason": reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RoomKey;
    use supervisors::ChildKind;

    #[test]
    fn events_carry_their_type_and_fields() {
        let crashed = event(&Event::Supervision(SupervisorEvent::Exited {
            supervisor: "rooms_sup".into(),
            child: "room:7".into(),
            kind: ChildKind::Transient,
            exit: Exit::Panic("boom".into()),
            restarting: true,
        }));
        assert_eq!(crashed["type"], "crashed");
        assert_eq!(crashed["kind"], "transient");
        assert_eq!(crashed["exit"], "panic: boom");
        assert_eq!(crashed["restarting"], true);
        let joined = event(&Event::Joined {
            room: RoomKey::Book(7),
            peer: 3,
        });
        assert_eq!(joined["type"], "joined");
        assert_eq!(joined["room"], "7");
        assert_eq!(joined["child"], "room:7");
        let named = event(&Event::RoomStarted {
            room: RoomKey::Named("7".into()),
        });
        assert_eq!(
            (&named["room"], &named["child"]),
            (&json!("7"), &json!("named:7"))
        );
        assert_eq!(joined["peer"], 3);
        assert!(joined["at_ms"].as_u64().is_some());
    }
}
