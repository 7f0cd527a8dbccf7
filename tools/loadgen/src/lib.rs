//! Load generation for rtcserver's signaling endpoints, and `ceiling`, the smallest relay that speaks the
//! book protocol (the practical upper bound any real server is compared with).
//!
//! - `target`    — the loopback-only address a run may send traffic to
//! - `transport` — the only code that opens, reads, writes and closes client WebSockets
//! - `adapter`   — one module per signaling protocol: how two peers get into one room and relay
//! - `payload`   — the SDP-like messages the workloads send, built without I/O
//! - `procfs`    — the server's RSS and CPU time, read from /proc
//! - `limits`    — RLIMIT_NOFILE, raised so tens of thousands of sockets fit
//! - `report`    — the one JSON line on stdout and the latency histograms
//! - `workload`  — one module per subcommand (`hold`, `relay`, `setup`, `rate`, `soak`)
//! - `ceiling`   — the reference relay server
#![forbid(unsafe_code)]

pub mod adapter;
pub mod ceiling;
pub mod limits;
pub mod payload;
pub mod procfs;
pub mod report;
pub mod target;
pub mod transport;
pub mod workload;
