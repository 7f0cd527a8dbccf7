//! OTP supervision over bastion: the parts of Erlang's `supervisor` that bastion 0.4.5 lacks.
//!
//! - [`intensity`] — `{MaxR, MaxT}`: a sliding window of restarts; past it the supervisor escalates.
//! - [`child`] — child kinds (permanent / transient / temporary), exits, and `which_children` rows.
//! - [`dynamic`] — a `simple_one_for_one`-like supervisor of lightweight processes (peers, rooms):
//!   bastion children groups made at run time are never freed, so dynamic children must not be groups.
//! - [`fixed`] — a `one_for_one` supervisor of a fixed list of bastion children (listener, registry, ...),
//!   adding restart intensity, escalation and introspection on top of bastion's own restarts.
//! - `scheduler` — runs the dynamic children: bastion lightprocs on threads that also drive the I/O
//!   reactor, so that a socket's event and the process it wakes share a thread.
//! - [`reactor`] — that reactor: connections' sockets in an edge-triggered epoll set (Linux).
//! - [`observer`] — supervision events (start, exit, restart, escalation) for logs, metrics and tests.
#![forbid(unsafe_code)]

// The reactor is an epoll set: rtcserver runs on Linux (README.md, Running, "Platform").
#[cfg(not(target_os = "linux"))]
compile_error!(
    "rtcserver's reactor (supervisors/src/reactor.rs) uses epoll: it builds on Linux only"
);

pub mod child;
pub mod dynamic;
pub mod fixed;
pub mod intensity;
pub mod observer;
pub mod reactor;
mod scheduler;

pub use child::{panic_message, ChildInfo, ChildKind, ChildStatus, Exit, StopReason};
pub use dynamic::{ChildKey, ChildSpec, DynamicSupervisor, StartChildError};
pub use fixed::{Escalation, FixedChildSpec, FixedSupervisor, StartError};
pub use intensity::{IntensityExceeded, RestartIntensity};
pub use observer::{Observer, SupervisorEvent};
pub use scheduler::{on_scheduler, OnScheduler};
