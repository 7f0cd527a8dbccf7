//! Supervision events: what `error_logger` / SASL reports are for OTP.
use crate::child::{ChildKind, Exit};
use std::sync::Arc;

/// Something that happened in a supervisor. `supervisor` and `child` are the ids shown by
/// `which_children` (e.g. `rooms_sup`, `room:123456`).
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    Started {
        supervisor: String,
        child: String,
        kind: ChildKind,
    },
    Exited {
        supervisor: String,
        child: String,
        kind: ChildKind,
        exit: Exit,
        /// The supervisor will start the child again.
        restarting: bool,
    },
    Restarted {
        supervisor: String,
        child: String,
        kind: ChildKind,
        restarts: u32,
    },
    /// The supervisor gave up (restart intensity exceeded) and terminates, as OTP's `shutdown`.
    Escalated { supervisor: String, reason: String },
}

/// Receives every event of the supervisors it is given to; called on the supervisor's task,
/// so it must be quick and must not block.
pub type Observer = Arc<dyn Fn(&SupervisorEvent) + Send + Sync>;

/// An observer that only logs; each event is logged once, here.
pub fn logging() -> Observer {
    Arc::new(|event: &SupervisorEvent| match event {
        SupervisorEvent::Started { .. } => {}
        SupervisorEvent::Exited {
            supervisor,
            child,
            exit: Exit::Panic(reason),
            restarting,
            ..
        } => log::error!(
            "{supervisor}: child {child} crashed: {reason}{}",
            if *restarting { "; restarting" } else { "" }
        ),
        SupervisorEvent::Exited { .. } => {}
        SupervisorEvent::Restarted {
            supervisor,
            child,
            restarts,
            ..
        } => log::warn!("{supervisor}: restarted {child} (restart #{restarts})"),
        SupervisorEvent::Escalated { supervisor, reason } => {
            log::error!("{supervisor}: {reason}; shutting down")
        }
    })
}
