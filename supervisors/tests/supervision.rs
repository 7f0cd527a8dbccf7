//! Panics injected into children of both supervisor kinds, checked through the events the
//! supervisors report and through `which_children`.
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use supervisors::{
    ChildKind, ChildSpec, DynamicSupervisor, Exit, FixedChildSpec, FixedSupervisor,
    RestartIntensity, StopReason, SupervisorEvent,
};

const WAIT: Duration = Duration::from_secs(10);

fn recorder() -> (
    supervisors::Observer,
    async_channel::Receiver<SupervisorEvent>,
) {
    let (tx, rx) = async_channel::unbounded();
    (
        Arc::new(move |e: &SupervisorEvent| drop(tx.try_send(e.clone()))),
        rx,
    )
}

/// Waits (bounded) for the first event matching `want`, skipping others.
fn expect(
    rx: &async_channel::Receiver<SupervisorEvent>,
    want: impl Fn(&SupervisorEvent) -> bool,
) -> SupervisorEvent {
    futures_lite::future::block_on(async {
        let deadline = async_io::Timer::after(WAIT);
        futures_lite::pin!(deadline);
        loop {
            let next = futures_lite::future::or(async { rx.recv().await.ok() }, async {
                (&mut deadline).await;
                None
            })
            .await;
            match next {
                Some(e) if want(&e) => return e,
                Some(_) => continue,
                None => panic!("expected event did not come within {WAIT:?}"),
            }
        }
    })
}

fn body(
    f: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync
        + 'static,
) -> supervisors::fixed::BodyFn {
    Arc::new(f)
}

fn pending_forever() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(futures_lite::future::pending())
}

#[test]
fn fixed_child_is_restarted_after_each_panic_and_counted() {
    let (observer, rx) = recorder();
    let starts = Arc::new(AtomicU32::new(0));
    let s = starts.clone();
    let sup = FixedSupervisor::start(
        "root",
        RestartIntensity::new(5, Duration::from_secs(10)),
        vec![FixedChildSpec {
            id: "worker".into(),
            kind: ChildKind::Permanent,
            body: body(move || {
                let n = s.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    if n < 3 {
                        panic!("injected {n}");
                    }
                    futures_lite::future::pending::<()>().await
                })
            }),
            nested: None,
        }],
        observer,
    )
    .unwrap();
    expect(&rx, |e| {
        matches!(e, SupervisorEvent::Restarted { restarts: 3, .. })
    });
    let rows = sup.which_children();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "worker");
    assert_eq!(rows[0].restarts, 3);
    assert_eq!(sup.outcome(), None, "3 restarts are within 5 in 10 s");
    sup.stop();
    assert_eq!(futures_lite::future::block_on(sup.wait()), Ok(()));
}

#[test]
fn one_restart_more_than_the_intensity_escalates() {
    let (observer, rx) = recorder();
    let sup = FixedSupervisor::start(
        "root",
        RestartIntensity::new(5, Duration::from_secs(10)),
        vec![
            FixedChildSpec {
                id: "crasher".into(),
                kind: ChildKind::Permanent,
                body: body(|| Box::pin(async { panic!("always") })),
                nested: None,
            },
            FixedChildSpec {
                id: "bystander".into(),
                kind: ChildKind::Permanent,
                body: body(pending_forever),
                nested: None,
            },
        ],
        observer,
    )
    .unwrap();
    let escalation = futures_lite::future::block_on(sup.wait()).unwrap_err();
    assert_eq!(escalation.supervisor, "root");
    assert!(escalation.reason.contains("crasher"), "{escalation}");
    expect(&rx, |e| matches!(e, SupervisorEvent::Escalated { .. }));
    let crasher = &sup.which_children()[0];
    assert_eq!(
        crasher.restarts, 5,
        "five restarts allowed, the sixth refused"
    );
}

#[test]
fn fixed_kinds_decide_what_a_normal_return_means() {
    let (observer, rx) = recorder();
    let permanent_starts = Arc::new(AtomicU32::new(0));
    let p = permanent_starts.clone();
    let sup = FixedSupervisor::start(
        "root",
        RestartIntensity::new(50, Duration::from_secs(10)),
        vec![
            FixedChildSpec {
                id: "transient".into(),
                kind: ChildKind::Transient,
                body: body(|| Box::pin(async {})),
                nested: None,
            },
            FixedChildSpec {
                id: "permanent".into(),
                kind: ChildKind::Permanent,
                body: body(move || {
                    let n = p.fetch_add(1, Ordering::SeqCst);
                    Box::pin(async move {
                        if n > 0 {
                            futures_lite::future::pending::<()>().await
                        }
                    })
                }),
                nested: None,
            },
        ],
        observer,
    )
    .unwrap();
    expect(
        &rx,
        |e| matches!(e, SupervisorEvent::Restarted { child, .. } if child == "permanent"),
    );
    let rows = sup.which_children();
    assert_eq!(rows[0].status, supervisors::ChildStatus::Stopped);
    assert_eq!(rows[0].restarts, 0);
    assert_eq!(rows[1].restarts, 1);
    sup.stop();
}

/// A dynamic child whose instances panic while `crashes` > 0 and otherwise wait for a stop.
fn spec(
    id: &str,
    kind: ChildKind,
    crashes: u32,
    exits: async_channel::Sender<(Exit, bool)>,
) -> ChildSpec {
    let left = Arc::new(AtomicU32::new(crashes));
    let (stop_tx, stop_rx) = async_channel::unbounded::<StopReason>();
    ChildSpec {
        id: id.into(),
        kind,
        start: Box::new(move || {
            let left = left.clone();
            let stop_rx = stop_rx.clone();
            Box::pin(async move {
                if left.load(Ordering::SeqCst) > 0 {
                    left.fetch_sub(1, Ordering::SeqCst);
                    panic!("injected");
                }
                let _ = stop_rx.recv().await;
            })
        }),
        stop: Box::new(move |reason| {
            let _ = stop_tx.try_send(reason);
        }),
        on_exit: Some(Box::new(move |exit, restarting| {
            drop(exits.try_send((exit.clone(), restarting)))
        })),
    }
}

fn with_manager(dynamic: &DynamicSupervisor, observer: supervisors::Observer) -> FixedSupervisor {
    let d = dynamic.clone();
    FixedSupervisor::start(
        "root",
        RestartIntensity::new(5, Duration::from_secs(10)),
        vec![FixedChildSpec {
            id: dynamic.name().to_owned(),
            kind: ChildKind::Permanent,
            body: body(move || {
                let d = d.clone();
                Box::pin(async move { d.run().await })
            }),
            nested: Some(dynamic.clone()),
        }],
        observer,
    )
    .unwrap()
}

fn next_exit(rx: &async_channel::Receiver<(Exit, bool)>) -> (Exit, bool) {
    futures_lite::future::block_on(futures_lite::future::or(
        async { rx.recv().await.ok() },
        async {
            async_io::Timer::after(WAIT).await;
            None
        },
    ))
    .expect("exit reported in time")
}

#[test]
fn dynamic_temporary_child_is_not_restarted_after_a_panic() {
    let (observer, _rx) = recorder();
    let dynamic = DynamicSupervisor::new(
        "peers_sup",
        RestartIntensity::new(5, Duration::from_secs(10)),
        observer.clone(),
    );
    let root = with_manager(&dynamic, observer);
    let (tx, exits) = async_channel::unbounded();
    dynamic
        .start_child(spec("peer:1", ChildKind::Temporary, 1, tx))
        .unwrap();
    assert_eq!(next_exit(&exits), (Exit::Panic("injected".into()), false));
    futures_lite::future::block_on(dynamic.until_empty());
    assert_eq!(dynamic.count(), 0);
    root.stop();
}

#[test]
fn dynamic_transient_child_restarts_after_panic_and_not_after_normal_stop() {
    let (observer, _rx) = recorder();
    let dynamic = DynamicSupervisor::new(
        "rooms_sup",
        RestartIntensity::new(5, Duration::from_secs(10)),
        observer.clone(),
    );
    let root = with_manager(&dynamic, observer);
    let (tx, exits) = async_channel::unbounded();
    let key = dynamic
        .start_child(spec("room:1", ChildKind::Transient, 2, tx))
        .unwrap();
    assert_eq!(next_exit(&exits), (Exit::Panic("injected".into()), true));
    assert_eq!(next_exit(&exits), (Exit::Panic("injected".into()), true));
    let rows = dynamic.which_children();
    assert_eq!((rows[0].id.as_str(), rows[0].restarts), ("room:1", 2));
    assert!(dynamic.terminate_child(key, StopReason::Shutdown));
    assert_eq!(next_exit(&exits), (Exit::Normal, false));
    futures_lite::future::block_on(dynamic.until_empty());
    root.stop();
}

#[test]
fn dynamic_supervisor_escalates_to_its_parent_and_restarts_empty_then_runs_init() {
    let (observer, rx) = recorder();
    let dynamic = DynamicSupervisor::new(
        "rooms_sup",
        RestartIntensity::new(5, Duration::from_secs(10)),
        observer.clone(),
    );
    let (init_tx, inits) = async_channel::unbounded::<()>();
    dynamic.set_init(Arc::new(move |_| {
        let _ = init_tx.try_send(());
    }));
    let root = with_manager(&dynamic, observer);
    let (tx, exits) = async_channel::unbounded();
    dynamic
        .start_child(spec("room:crashy", ChildKind::Transient, 100, tx.clone()))
        .unwrap();
    dynamic
        .start_child(spec("room:calm", ChildKind::Transient, 0, tx))
        .unwrap();
    expect(
        &rx,
        |e| matches!(e, SupervisorEvent::Escalated { supervisor, .. } if supervisor == "rooms_sup"),
    );
    expect(
        &rx,
        |e| matches!(e, SupervisorEvent::Restarted { child, .. } if child == "rooms_sup"),
    );
    futures_lite::future::block_on(dynamic.until_empty());
    // The calm room went down with its supervisor, as OTP links them.
    let mut saw_calm_terminated = false;
    while let Ok((exit, restarting)) = exits.try_recv() {
        if exit == Exit::Normal && !restarting {
            saw_calm_terminated = true;
        }
    }
    assert!(saw_calm_terminated);
    assert_eq!(root.which_children()[0].restarts, 1);
    // init runs after the restart, once the old children are gone.
    let init_ran = futures_lite::future::block_on(futures_lite::future::or(
        async { inits.recv().await.is_ok() },
        async {
            async_io::Timer::after(WAIT).await;
            false
        },
    ));
    assert!(init_ran);
    assert!(inits.try_recv().is_err(), "init runs once per restart");
    assert_eq!(
        root.outcome(),
        None,
        "one escalation is one restart at the root"
    );
    root.stop();
}

#[test]
fn shutdown_stops_every_child_and_refuses_new_ones() {
    let (observer, _rx) = recorder();
    let dynamic = DynamicSupervisor::new(
        "peers_sup",
        RestartIntensity::new(5, Duration::from_secs(10)),
        observer.clone(),
    );
    let root = with_manager(&dynamic, observer);
    let (tx, exits) = async_channel::unbounded();
    for i in 0..100 {
        dynamic
            .start_child(spec(
                &format!("peer:{i}"),
                ChildKind::Temporary,
                0,
                tx.clone(),
            ))
            .unwrap();
    }
    let left = futures_lite::future::block_on(dynamic.shutdown(Duration::from_secs(5)));
    assert_eq!(left, 0);
    assert_eq!(exits.len(), 100);
    assert!(dynamic
        .start_child(spec("late", ChildKind::Temporary, 0, tx))
        .is_err());
    root.stop();
}
