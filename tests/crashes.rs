//! Faults injected through `ServerHandle::crash`, and what must hold after each (design.md).
mod common;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use common::*;
use futures_lite::AsyncReadExt;
use rtcserver::{CrashTarget, Event, RoomKey};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use supervisors::{Exit, SupervisorEvent};

fn restarted(child_id: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Supervision(SupervisorEvent::Restarted { child, .. }) if child == child_id)
}

fn child_restarts(s: &TestServer, path: &[&str]) -> u32 {
    let mut node = s.handle.tree();
    for id in path {
        node = node
            .children
            .into_iter()
            .find(|c| c.id == *id)
            .unwrap_or_else(|| panic!("no {id} in the tree"));
    }
    node.restarts
}

#[test]
fn a_crashed_peer_closes_its_connection_with_1011_and_nothing_else() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        let (mut c, mut d, _) = pair(&s).await;
        let a_id = peer_id_of(&s, &a).await;
        s.handle.crash(&CrashTarget::Peer(a_id)).unwrap();
        assert_eq!(a.expect_close().await, CloseCode::Error);
        s.event("the crash reported by peers_sup", |e| {
            matches!(e, Event::Supervision(SupervisorEvent::Exited { child, exit: Exit::Panic(_), restarting: false, .. })
                if *child == format!("peer:{a_id}"))
        })
        .await;
        s.event(
            "a forgotten by the registry",
            |e| matches!(e, Event::Left { peer, .. } if *peer == a_id),
        )
        .await;
        // b is still connected, alone in its room, which a newcomer may join
        let mut e = s.client().await;
        e.enter(room, &mut b).await;
        b.send(r#"{"type":"offer"}"#).await;
        assert_eq!(e.recv_text().await, r#"{"type":"offer"}"#);
        // the other room never noticed
        c.send(r#"{"type":"answer"}"#).await;
        assert_eq!(d.recv_text().await, r#"{"type":"answer"}"#);
        for client in [b, c, d, e] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn a_crashed_room_restarts_and_its_members_lose_nothing() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        const N: usize = 3000;
        relay_numbered(&mut a, &mut b, N, |i| {
            if i == N / 3 {
                s.handle
                    .crash(&CrashTarget::Room(RoomKey::Book(room)))
                    .unwrap();
            }
        })
        .await;
        s.event("the room restarted", restarted(&format!("room:{room}")))
            .await;
        assert_eq!(
            child_restarts(&s, &["rooms_sup", &format!("room:{room}")]),
            1
        );
        // membership survived: the room is still full, and still relays both ways
        let mut c = s.client().await;
        c.enter_refused(&room.to_string()).await;
        b.send(r#"{"type":"back"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"back"}"#);
        for client in [a, b, c] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn a_crashed_listener_restarts_and_open_connections_live_on() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        s.handle.crash(&CrashTarget::Listener).unwrap();
        s.event("the listener restarted", restarted("listener"))
            .await;
        let mut c = s.client().await;
        c.get_room().await;
        a.send(r#"{"type":"still"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"still"}"#);
        assert_eq!(child_restarts(&s, &["listener"]), 1);
        for client in [a, b, c] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn a_crashed_registry_restarts_with_its_table_intact() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        s.handle.crash(&CrashTarget::Registry).unwrap();
        s.event("the registry restarted", restarted("registry"))
            .await;
        assert_eq!(s.handle.room_members(&RoomKey::Book(room)).len(), 2);
        a.send(r#"{"type":"still"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"still"}"#);
        // the restarted registry still cleans up after the dead
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}

#[test]
fn six_room_crashes_in_ten_seconds_escalate_to_rooms_sup_and_the_room_is_rebuilt() {
    run(async {
        let s = server();
        let (mut a, mut b, room) = pair(&s).await;
        for _ in 0..6 {
            s.handle
                .crash(&CrashTarget::Room(RoomKey::Book(room)))
                .unwrap();
        }
        s.event("rooms_sup gives up", |e| {
            matches!(e, Event::Supervision(SupervisorEvent::Escalated { supervisor, .. }) if supervisor == "rooms_sup")
        })
        .await;
        s.event("rtcserver_sup restarts rooms_sup", restarted("rooms_sup"))
            .await;
        // The room keeps its table entry and mailbox (no room_stopped, no room_started): the
        // restarted rooms_sup gives it a process again.
        let child_id = format!("room:{room}");
        s.event("the room's process started again", |e| {
            matches!(e, Event::Supervision(SupervisorEvent::Started { supervisor, child, .. })
                if supervisor == "rooms_sup" && *child == child_id)
        })
        .await;
        assert_eq!(child_restarts(&s, &["rooms_sup"]), 1);
        assert_eq!(
            s.handle
                .tree()
                .children
                .iter()
                .map(|c| c.restarts)
                .sum::<u32>(),
            1,
            "one restart at the root"
        );
        let mut c = s.client().await;
        c.enter_refused(&room.to_string()).await;
        a.send(r#"{"type":"survived"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"survived"}"#);
        for client in [a, b, c] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn six_listener_crashes_escalate_at_the_root_and_the_server_stops_with_an_error() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        for _ in 0..6 {
            s.handle.crash(&CrashTarget::Listener).unwrap();
        }
        let escalation = within(WAIT, "the server to stop", s.handle.wait())
            .await
            .unwrap_err();
        assert_eq!(escalation.supervisor, "rtcserver_sup");
        assert!(escalation.reason.contains("listener"), "{escalation}");
        assert_eq!(a.expect_close().await, CloseCode::Error);
        assert_eq!(b.expect_close().await, CloseCode::Error);
        assert_eq!(
            s.handle.crash(&CrashTarget::Listener),
            Err(rtcserver::CrashError::Stopped)
        );
        s.assert_clean().await;
    });
}

#[test]
fn crashing_the_root_stops_the_server_with_an_error() {
    run(async {
        let s = server();
        let mut a = s.client().await;
        a.get_room().await;
        s.handle.crash(&CrashTarget::Root).unwrap();
        assert!(within(WAIT, "the server to stop", s.handle.wait())
            .await
            .is_err());
        assert_eq!(a.expect_close().await, CloseCode::Error);
        s.assert_clean().await;
    });
}

#[test]
fn an_orderly_shutdown_closes_every_connection_with_1001() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        let mut c = s.client().await;
        let (_, codes) = futures_lite::future::zip(s.handle.shutdown(), async {
            [
                a.expect_close().await,
                b.expect_close().await,
                c.expect_close().await,
            ]
        })
        .await;
        assert_eq!(codes, [CloseCode::Away; 3]);
        assert_eq!(within(WAIT, "wait", s.handle.wait()).await, Ok(()));
        s.assert_clean().await;
        assert!(
            async_net::TcpStream::connect(s.addr()).await.is_err(),
            "the port is closed"
        );
    });
}

#[test]
fn unknown_targets_are_refused_with_a_reason() {
    let s = server();
    assert!("nothing".parse::<CrashTarget>().is_err());
    assert_eq!(
        "room:12".parse::<CrashTarget>(),
        Ok(CrashTarget::Room(RoomKey::Book(12)))
    );
    assert_eq!("peer:3".parse::<CrashTarget>(), Ok(CrashTarget::Peer(3)));
    assert_eq!(
        s.handle.crash(&CrashTarget::Room(RoomKey::Book(5))),
        Err(rtcserver::CrashError::NoSuchRoom(RoomKey::Book(5)))
    );
    assert_eq!(
        s.handle.crash(&CrashTarget::Peer(99)),
        Err(rtcserver::CrashError::NoSuchPeer(99))
    );
}

/// Supervision `Started` events of `peers_sup`, counted until `n` have come.
async fn peers_started(s: &TestServer, n: usize) {
    for _ in 0..n {
        s.event("a peer started", |e| {
            matches!(e, Event::Supervision(SupervisorEvent::Started { supervisor, .. }) if supervisor == "peers_sup")
        })
        .await;
    }
}

/// README, "Testing your client against crashes" (the `peers_sup` row): its connections close
/// with 1011 and nothing is left behind, even when clients reconnect while it restarts and one
/// of its old connections is slow to end. A connection still in its handshake ends only at the
/// handshake timeout (6 s here): the restart used to wait 5 s for *every* child, new ones
/// included, then forget them all while they ran, so that their ends cleaned nothing up.
#[test]
fn a_peers_sup_crash_while_clients_reconnect_leaves_nothing_behind() {
    run(async {
        let s = server_with(|c| {
            c.handshake_timeout = Duration::from_secs(6);
            c.shutdown_grace = Duration::from_millis(300);
        });
        let mut pairs = Vec::new();
        for _ in 0..3 {
            pairs.push(pair(&s).await);
        }
        let mut silent = async_net::TcpStream::connect(s.addr())
            .await
            .expect("tcp connect");
        peers_started(&s, 7).await;
        s.handle.crash(&CrashTarget::PeersSup).unwrap();
        // Each client is closed with 1011 and reconnects at once, as the demo page does.
        let mut again = Vec::new();
        for (mut a, mut b, _) in pairs {
            assert_eq!(a.expect_close().await, CloseCode::Error);
            assert_eq!(b.expect_close().await, CloseCode::Error);
            again.push(pair(&s).await);
        }
        // The old silent connection ends at its handshake timeout, past the restart's grace.
        let mut buf = [0u8; 1024];
        within(WAIT, "the silent connection to end", async {
            while matches!(silent.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        for (a, b, _) in &mut again {
            a.send(r#"{"type":"after"}"#).await;
            assert_eq!(b.recv_text().await, r#"{"type":"after"}"#);
        }
        for (a, b, _) in again {
            a.close().await;
            b.close().await;
        }
        s.assert_clean().await;
        assert!(s.handle.peers().is_empty(), "{:?}", s.handle.peers());
    });
}

/// ENTERROOM into a room that holds one peer: let in (its probe reaches `creator`), never
/// answered WRONGROOM.
async fn enter_live_room(joiner: &mut Client, room: u32, creator: &mut Client) {
    joiner
        .send(&format!(r#"{{"type":"ENTERROOM","value":{room}}}"#))
        .await;
    let probe = format!(r#"{{"type":"probe","from":"{}"}}"#, joiner.local);
    joiner.send(&probe).await;
    let outcome = futures_lite::future::or(async { Ok(creator.recv_text().await) }, async {
        Err(joiner.recv_text().await)
    })
    .await;
    match outcome {
        Ok(relayed) => assert_eq!(relayed, probe),
        Err(answer) => panic!("ENTERROOM {room} into a live room answered {answer}"),
    }
}

/// README, "Testing your client against crashes" (the `rooms_sup` row): a crash of rooms_sup is
/// invisible to clients. Under GETROOM/ENTERROOM load, a book room made before each crash is
/// entered after it, once its process is gone, and a named-room member leaves meanwhile: the
/// room's mailbox and table entry outlive its process, so the join is served (it used to be
/// WRONGROOM) and the `left` reaches the other member (it used to be lost).
#[test]
fn a_rooms_sup_crash_under_load_refuses_no_valid_enterroom_and_loses_no_left() {
    run(async {
        let s = server();
        let done = AtomicBool::new(false);
        let load = || async {
            let mut a = s.client().await;
            let mut b = s.client().await;
            for _ in 0..300 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let room = a.get_room().await;
                enter_live_room(&mut b, room, &mut a).await;
            }
            a.close().await;
            b.close().await;
        };
        let crashes = async {
            let mut o = RoomPeer::join(&s, "lobby").await;
            let mut a = s.client().await;
            let mut b = s.client().await;
            for _ in 0..3 {
                let room = a.get_room().await;
                let x = RoomPeer::join(&s, "lobby").await;
                assert_eq!(o.expect_event("joined").await["peer_id"], x.id.as_str());
                s.handle.crash(&CrashTarget::RoomsSup).unwrap();
                s.event("rooms_sup restarted", restarted("rooms_sup")).await;
                let child_id = format!("room:{room}");
                s.event("the room's process gone with rooms_sup", |e| {
                    matches!(e, Event::Supervision(SupervisorEvent::Exited { child, .. }) if *child == child_id)
                })
                .await;
                enter_live_room(&mut b, room, &mut a).await;
                x.client.close().await;
                assert_eq!(o.expect_event("left").await["peer_id"], x.id.as_str());
            }
            done.store(true, Ordering::Relaxed);
            for client in [o.client, a, b] {
                client.close().await;
            }
        };
        futures_lite::future::zip(crashes, futures_lite::future::zip(load(), load())).await;
        s.assert_clean().await;
    });
}
