//! `--max-connections-per-ip`: how many connections one client address may hold at once. The
//! address is the client as `--trusted-proxies` resolves it (behind a proxy, the forwarded one;
//! the proxy itself is not limited), so a count is taken once the request head is read, and
//! given back when the connection ends, however it ends.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The connections each client address holds.
#[derive(Debug)]
pub struct PerIp {
    limit: Option<u32>,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place in its address's count; given back on drop.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

/// The address already holds the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit(pub u32);

impl PerIp {
    /// `None`: no limit (the default), and nothing is counted.
    pub fn new(limit: Option<u32>) -> Arc<Self> {
        Arc::new(PerIp {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Each critical section is one map update.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection from `ip`, or the limit it is at.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Option<IpSlot>, OverLimit> {
        let Some(limit) = self.limit else {
            return Ok(None);
        };
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return Err(OverLimit(limit));
        }
        *count += 1;
        Ok(Some(IpSlot {
            owner: Arc::clone(self),
            ip,
        }))
    }

    /// Addresses holding at least one connection.
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_at_its_edge_and_a_dropped_slot_frees_its_place() {
        let per_ip = PerIp::new(Some(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = per_ip.acquire(a).unwrap();
        let second = per_ip.acquire(mapped).unwrap();
        assert_eq!(per_ip.acquire(a).unwrap_err(), OverLimit(2));
        assert!(per_ip.acquire(b).unwrap().is_some());
        drop(first);
        let third = per_ip.acquire(a).unwrap();
        drop((second, third));
        assert_eq!(
            per_ip.addresses(),
            0,
            "nothing is kept for an address with none"
        );
        assert!(PerIp::new(None).acquire(a).unwrap().is_none());
    }
}
