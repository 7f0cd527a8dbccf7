//! File-descriptor limits: every connection is a descriptor, and the usual soft limit (1024) stops a run long
//! before the server does.

use anyhow::{bail, Result};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft RLIMIT_NOFILE to at least `wanted` when the hard limit (or privilege) allows, else to the
/// hard limit, and returns the soft limit now in force.
pub fn raise_nofile(wanted: u64) -> u64 {
    let old = getrlimit(Resource::Nofile);
    let hard = old.maximum.unwrap_or(u64::MAX);
    if wanted > hard {
        // Root may lift the hard limit too (up to fs.nr_open); anyone else falls back below.
        let lifted = Rlimit {
            current: Some(wanted),
            maximum: Some(wanted),
        };
        if setrlimit(Resource::Nofile, lifted).is_ok() {
            return wanted;
        }
    }
    let soft = Rlimit {
        current: old.maximum,
        maximum: old.maximum,
    };
    if setrlimit(Resource::Nofile, soft).is_ok() {
        return hard;
    }
    old.current.unwrap_or(u64::MAX)
}

/// Fails with a remedy when `needed` descriptors cannot be had.
pub fn require_nofile(needed: u64) -> Result<u64> {
    let got = raise_nofile(needed);
    if got < needed {
        bail!(
            "need {needed} file descriptors but RLIMIT_NOFILE stays at {got}: raise the hard limit \
             (`ulimit -Hn {needed}` as root, or LimitNOFILE= in a unit) and retry"
        );
    }
    Ok(got)
}

/// How many ephemeral ports one source address has towards one server port (net.ipv4.ip_local_port_range).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut bounds = range.split_whitespace().map(|b| b.parse::<u64>());
            match (bounds.next(), bounds.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if hi >= lo => Some(hi - lo + 1),
                _ => None,
            }
        })
        // Linux's default range, 32768–60999.
        .unwrap_or(28_232)
}
