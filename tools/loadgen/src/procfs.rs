//! The server's memory and CPU as the kernel accounts them, read from /proc (Linux only, like the target).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the server running?)"))?;
    parse_vmrss(&status).ok_or_else(|| anyhow!("no VmRSS line in /proc/{pid}/status"))
}

/// Our own RSS, to show what the load side costs.
pub fn self_rss_kib() -> Option<u64> {
    parse_vmrss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// User plus system CPU time consumed so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// CPU used over one measured interval by the server (when its pid is known) and by loadgen itself, so a
/// figure limited by the load side shows as such.
pub struct CpuMeter {
    server: Option<(u32, Duration)>,
    own: Option<Duration>,
    started: Instant,
}

/// Percent of one core, per side; `None` where it could not be read.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub server: Option<f64>,
    pub loadgen: Option<f64>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Result<Self> {
        let server = match server_pid {
            Some(pid) => Some((pid, cpu_time(pid)?)),
            None => None,
        };
        Ok(Self {
            server,
            own: cpu_time(std::process::id()).ok(),
            started: Instant::now(),
        })
    }

    pub fn stop(&self) -> Result<CpuUse> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let percent = |before: Duration, after: Duration| {
            crate::report::round2(100.0 * after.saturating_sub(before).as_secs_f64() / wall)
        };
        let server = match self.server {
            Some((pid, before)) => Some(percent(before, cpu_time(pid)?)),
            None => None,
        };
        let loadgen = self
            .own
            .zip(cpu_time(std::process::id()).ok())
            .map(|(before, after)| percent(before, after));
        Ok(CpuUse { server, loadgen })
    }
}

/// `server CPU 93.1 %, loadgen CPU 88.0 %` (of one core each).
pub fn cpu_line(cpu: &CpuUse) -> String {
    let show = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.1} %"));
    format!(
        "server CPU {}, loadgen CPU {}",
        show(cpu.server),
        show(cpu.loadgen)
    )
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime, fields 14 and 15 of stat(5). The command name (field 2) may hold spaces and parentheses, so
/// counting starts after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss() {
        let status = "Name:\tceiling\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_vmrss(status), Some(5120));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_utime_and_stime_past_odd_command_names() {
        let stat = "1234 (we ird) (name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn reads_our_own_process() {
        assert!(self_rss_kib().unwrap_or(0) > 0);
        assert!(cpu_time(std::process::id()).is_ok());
    }
}
