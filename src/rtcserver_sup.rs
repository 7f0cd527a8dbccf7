//! `rtcserver_sup`: the root of the tree, `{one_for_one, 5, 10}` as in the book.
//!
//! ```text
//! rtcserver_sup            one_for_one, 5 restarts / 10 s
//! ├── registry             permanent (gproc)
//! ├── listener             permanent (ranch acceptor)
//! ├── rooms_sup            permanent; transient room children
//! └── peers_sup            permanent; temporary peer children
//! ```
use crate::rtcserver_app::Shared;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use supervisors::{
    ChildKind, FixedChildSpec, FixedSupervisor, Observer, RestartIntensity, StartError,
};

/// A static child: supervised by bastion, run on the scheduler with the peers and rooms. An
/// accept and the connection it starts then stay on the thread that read the socket's event,
/// as do a peer's end and its supervisor's bookkeeping; on bastion's pool a call setup took
/// three thread hops (bench/README.md, "the setup profile"). A panic comes back to bastion,
/// which restarts the child as before.
fn child<F, Fut>(
    id: &str,
    nested: Option<supervisors::DynamicSupervisor>,
    shared: &Arc<Shared>,
    body: F,
) -> FixedChildSpec
where
    F: Fn(Arc<Shared>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shared = Arc::clone(shared);
    FixedChildSpec {
        id: id.to_owned(),
        kind: ChildKind::Permanent,
        body: Arc::new(move || -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(supervisors::on_scheduler(body(Arc::clone(&shared))))
        }),
        nested,
    }
}

pub(crate) fn start(
    shared: &Arc<Shared>,
    observer: Observer,
) -> Result<FixedSupervisor, StartError> {
    let config = &shared.config;
    FixedSupervisor::start(
        "rtcserver_sup",
        RestartIntensity::new(config.max_restarts, config.restart_period),
        vec![
            child("registry", None, shared, |s| async move {
                s.registry_process().await
            }),
            child("listener", None, shared, crate::listener::run),
            child(
                "rooms_sup",
                Some(shared.rooms.supervisor().clone()),
                shared,
                |s| async move { s.rooms.supervisor().run().await },
            ),
            child(
                "peers_sup",
                Some(shared.peers.clone()),
                shared,
                |s| async move { s.peers.run().await },
            ),
        ],
        observer,
    )
}
