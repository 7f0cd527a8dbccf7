//! Rooms in the admin API (README "Testing your client against crashes"): a book room is
//! `room:<N>`, a named room `named:<name>`, in `/tree` and in `/crash` alike, so that book room 1
//! and a named room called "1" are two rows and two targets.
mod common;
use common::admin::*;
use common::*;
use rtcserver::hooks::RoomContext;
use rtcserver::Event;
use serde_json::{json, Value};
use supervisors::SupervisorEvent;

fn restarted(child_id: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Supervision(SupervisorEvent::Restarted { child, .. }) if child == child_id)
}

/// The ids of `rooms_sup`'s children in a `GET /tree` answer, with their kind and members.
fn room_rows(tree: &Value) -> Vec<(String, String, Value)> {
    node(tree, &["rooms_sup"])["children"]
        .as_array()
        .expect("rooms_sup's children")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["kind"].as_str().unwrap_or_default().to_owned(),
                c["members"].clone(),
            )
        })
        .collect()
}

#[test]
fn book_and_named_rooms_are_distinct_targets_and_every_tree_id_can_be_crashed() {
    run(async {
        let s = server_with(|c| {
            // Book rooms are all number 1, the name of a named room too.
            c.max_room_number = 1;
            c.rooms = vec![RoomContext {
                name: "777".into(),
                max_peers: 2,
                metadata: Value::Null,
                configured: true,
            }];
        });
        let (mut x, mut y, number) = pair(&s).await;
        assert_eq!(number, 1);
        let (x_id, y_id) = (peer_id_of(&s, &x).await, peer_id_of(&s, &y).await);
        let mut a = RoomPeer::join(&s, "1").await;
        let a_id: u64 = a.id.parse().expect("a numeric id");
        let tree = get(admin(&s), "/tree").await.expect(200).json();
        let mut rows = room_rows(&tree);
        rows.sort_by(|p, q| p.0.cmp(&q.0));
        let mut book_members = vec![x_id, y_id];
        book_members.sort_unstable();
        assert_eq!(
            rows,
            [
                ("named:1".into(), "transient".into(), json!([a_id])),
                ("named:777".into(), "permanent".into(), json!([])),
                ("room:1".into(), "transient".into(), json!(book_members)),
            ]
        );
        // Every row's id is a target, answered with the kind `/tree` gives it.
        for (id, kind, _) in &rows {
            let answer = crash(&s, id).await;
            assert_eq!(
                answer,
                json!({"crashed": id, "kind": kind, "supervisor": "rooms_sup"}),
                "{id}"
            );
            s.event("the room's restart", restarted(id)).await;
        }
        let tree = get(admin(&s), "/tree").await.expect(200).json();
        for (id, _, _) in room_rows(&tree) {
            assert_eq!(node(&tree, &["rooms_sup", &id])["restarts"], 1, "{id}");
        }
        // Neither kind stands for the other; a name is not a number.
        let a_admin = admin(&s);
        post(a_admin, "/crash", "room:777").await.expect(404);
        post(a_admin, "/crash", "named:2").await.expect(404);
        post(a_admin, "/crash", "room:lobby").await.expect(400);
        post(a_admin, "/crash", "named:no spaces").await.expect(400);
        post(a_admin, "/crash", "named:").await.expect(400);
        // Both rooms still work after their crashes.
        x.send(r#"{"type":"after"}"#).await;
        assert_eq!(y.recv_text().await, r#"{"type":"after"}"#);
        a.send(json!({"event": "after", "to": [a.id]})).await;
        assert_eq!(a.recv_json().await["event"], "after");
        x.close().await;
        y.close().await;
        a.client.close().await;
        s.assert_clean_with_rooms(1).await;
    });
}

/// `CrashTarget` parses what it prints, one spelling per room kind.
#[test]
fn room_targets_parse_what_they_print() {
    use rtcserver::{CrashTarget, RoomKey};
    for (text, key) in [
        ("room:12", RoomKey::Book(12)),
        ("named:12", RoomKey::Named("12".into())),
        ("named:stand-up.2", RoomKey::Named("stand-up.2".into())),
    ] {
        let target: CrashTarget = text.parse().expect(text);
        assert_eq!(target, CrashTarget::Room(key.clone()));
        assert_eq!(target.to_string(), text);
        assert_eq!(key.child_id(), text);
    }
    for bad in [
        "room:standup",
        "room:",
        "room:-1",
        "named:",
        "named:a/b",
        "named:a b",
    ] {
        assert!(bad.parse::<CrashTarget>().is_err(), "{bad}");
    }
}
