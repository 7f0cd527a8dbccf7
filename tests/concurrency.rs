//! Races, isolation, ordering and volume.
mod common;
use common::*;
use futures_util::future::join_all;

#[test]
fn two_rooms_are_isolated() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        let (mut c, mut d, _) = pair(&s).await;
        a.send(r#"{"type":"for-b"}"#).await;
        d.send(r#"{"type":"for-c"}"#).await;
        assert_eq!(b.recv_text().await, r#"{"type":"for-b"}"#);
        assert_eq!(
            c.recv_text().await,
            r#"{"type":"for-c"}"#,
            "c heard nothing of room a/b first"
        );
        b.send(r#"{"type":"for-a"}"#).await;
        assert_eq!(a.recv_text().await, r#"{"type":"for-a"}"#);
        for client in [a, b, c, d] {
            client.close().await;
        }
        s.assert_clean().await;
    });
}

#[test]
fn fifty_racing_enterrooms_admit_exactly_one() {
    run(async {
        let s = server();
        let mut host = s.client().await;
        let room = host.get_room().await;
        let mut racers = join_all((0..50).map(|_| s.client())).await;
        join_all(racers.iter_mut().enumerate().map(|(i, c)| async move {
            c.send(&format!(r#"{{"type":"ENTERROOM","value":{room}}}"#))
                .await;
            c.send(&format!(r#"{{"type":"probe","i":{i}}}"#)).await;
        }))
        .await;
        let probe = host.recv_text().await;
        let winner: usize = probe[r#"{"type":"probe","i":"#.len()..probe.len() - 1]
            .parse()
            .unwrap();
        let refused = join_all(
            racers
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| *i != winner)
                .map(|(_, c)| c.recv_text()),
        )
        .await;
        assert!(
            refused.iter().all(|r| r == r#"{"type":"WRONGROOM"}"#),
            "{refused:?}"
        );
        assert_eq!(refused.len(), 49);
        assert_eq!(
            s.handle.room_members(&rtcserver::RoomKey::Book(room)).len(),
            2
        );
        racers[winner].send(r#"{"type":"sentinel"}"#).await;
        assert_eq!(
            host.recv_text().await,
            r#"{"type":"sentinel"}"#,
            "no second probe reached the host"
        );
        host.close().await;
        join_all(racers.into_iter().map(Client::close)).await;
        s.assert_clean().await;
    });
}

#[test]
fn a_thousand_getrooms_give_a_thousand_distinct_numbers() {
    run(async {
        // This checks the numbering. The test's single client thread opens 1000 WebSockets at
        // once; on a loaded machine some requests came later than the book's 500 ms handshake
        // deadline (tested on its own in bad_input.rs), which is not what this test is about.
        let s = server_with(|c| c.handshake_timeout = std::time::Duration::from_secs(10));
        let clients = join_all((0..1000).map(|_| async {
            let mut c = s.client().await;
            let n = c.get_room().await;
            (c, n)
        }))
        .await;
        let mut numbers: Vec<u32> = clients.iter().map(|(_, n)| *n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 1000);
        assert_eq!(s.handle.stats().rooms, 1000);
        join_all(clients.into_iter().map(|(c, _)| c.close())).await;
        s.assert_clean().await;
    });
}

#[test]
fn ten_thousand_relayed_messages_keep_their_order() {
    run(async {
        let s = server();
        let (mut a, mut b, _) = pair(&s).await;
        relay_numbered(&mut a, &mut b, 10_000, |_| {}).await;
        a.close().await;
        b.close().await;
        s.assert_clean().await;
    });
}
