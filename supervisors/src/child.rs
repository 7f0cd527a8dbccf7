//! Children as OTP sees them: restart kinds, how an instance ended, and `which_children` rows.
use std::any::Any;
use std::fmt;
use std::time::SystemTime;

/// OTP's restart types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    /// Always restarted (listener, registry).
    Permanent,
    /// Restarted only after a crash (a room: not after it empties and stops).
    Transient,
    /// Never restarted (a peer: its connection is gone with it).
    Temporary,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Permanent => "permanent",
            ChildKind::Transient => "transient",
            ChildKind::Temporary => "temporary",
        }
    }

    /// Whether a child of this kind that ended with `exit` is started again.
    pub fn restarts_after(self, exit: &Exit) -> bool {
        match (self, exit) {
            (_, Exit::Terminated) => false,
            (ChildKind::Permanent, _) => true,
            (ChildKind::Transient, Exit::Panic(_)) => true,
            (ChildKind::Transient, Exit::Normal) => false,
            (ChildKind::Temporary, _) => false,
        }
    }
}

impl fmt::Display for ChildKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one instance of a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Returned normally.
    Normal,
    /// Panicked; the panic message.
    Panic(String),
    /// Was stopped by its supervisor (shutdown, or the supervisor itself going down), or its task
    /// was dropped before it finished.
    Terminated,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Normal => f.write_str("normal"),
            Exit::Panic(reason) => write!(f, "panic: {reason}"),
            Exit::Terminated => f.write_str("terminated"),
        }
    }
}

/// Why a supervisor asks a child to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Orderly shutdown of the application.
    Shutdown,
    /// The supervisor itself crashed or gave up; its children go with it.
    SupervisorDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Running,
    /// Crashed and about to be started again.
    Restarting,
    /// Asked to stop, not yet gone.
    Terminating,
    /// Ended and not restarted (a fixed child only; dynamic children leave the table).
    Stopped,
}

impl ChildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildStatus::Running => "running",
            ChildStatus::Restarting => "restarting",
            ChildStatus::Terminating => "terminating",
            ChildStatus::Stopped => "stopped",
        }
    }
}

/// One row of `supervisor:which_children/1`, with what OTP keeps elsewhere (restarts, start time)
/// and, for a child that is itself a supervisor, its own rows.
#[derive(Debug, Clone)]
pub struct ChildInfo {
    pub id: String,
    pub kind: ChildKind,
    pub status: ChildStatus,
    pub restarts: u32,
    /// When the current instance started.
    pub started_at: SystemTime,
    pub supervisor: bool,
    pub children: Vec<ChildInfo>,
}

/// The text of a panic payload, as `std`'s default hook would print it.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_kinds_follow_otp() {
        let panic = Exit::Panic("x".into());
        assert!(ChildKind::Permanent.restarts_after(&Exit::Normal));
        assert!(ChildKind::Permanent.restarts_after(&panic));
        assert!(!ChildKind::Transient.restarts_after(&Exit::Normal));
        assert!(ChildKind::Transient.restarts_after(&panic));
        assert!(!ChildKind::Temporary.restarts_after(&panic));
        for kind in [
            ChildKind::Permanent,
            ChildKind::Transient,
            ChildKind::Temporary,
        ] {
            assert!(!kind.restarts_after(&Exit::Terminated), "{kind}");
        }
    }

    #[test]
    fn panic_messages_of_both_payload_kinds() {
        let a = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        let b = std::panic::catch_unwind(|| panic!("formatted {}", 42)).unwrap_err();
        assert_eq!(panic_message(a.as_ref()), "static");
        assert_eq!(panic_message(b.as_ref()), "formatted 42");
    }
}
