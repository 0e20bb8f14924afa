//! Per-source connection caps. An entry exists only while its source has a connection open, and
//! a connection is only admitted after the listener's global cap let it in, so the table never
//! holds more entries than the global cap: bounded whatever the number of sources.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

pub struct SourceConnections {
    per_source: u32,
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
}

/// Holds a source's connection slot; released on drop.
pub struct ConnectionGuard {
    table: Arc<SourceConnections>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut shard = self
            .table
            .shard(&self.ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = shard.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

impl SourceConnections {
    pub fn new(per_source: u32) -> Arc<SourceConnections> {
        Arc::new(SourceConnections {
            per_source: per_source.max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => (u128::from(*v6) as usize) ^ ((u128::from(*v6) >> 64) as usize),
        };
        &self.shards[h.wrapping_mul(0x9E37_79B9) % SHARDS]
    }

    /// Admits one more connection from `ip`, or `None` when it holds its cap already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let ip = crate::canonical(ip);
        let mut shard = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        let n = shard.entry(ip).or_insert(0);
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            table: self.clone(),
            ip,
        })
    }

    /// Sources with a connection open now.
    pub fn sources(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_cap_and_slots_come_back() {
        let table = SourceConnections::new(2);
        let a: IpAddr = "127.1.2.3".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let g1 = table.admit(a).unwrap();
        let _g2 = table.admit(a).unwrap();
        assert!(
            table.admit(a).is_none(),
            "a third connection from one source is refused"
        );
        let _g3 = table.admit(b).unwrap();
        drop(g1);
        assert!(
            table.admit(a).is_some(),
            "a closed connection frees its slot"
        );
        assert_eq!(table.sources(), 2);
    }

    #[test]
    fn an_ipv4_client_has_one_cap_whichever_form_its_address_takes() {
        let table = SourceConnections::new(1);
        let _g = table.admit("127.1.2.3".parse().unwrap()).unwrap();
        assert!(table.admit("::ffff:127.1.2.3".parse().unwrap()).is_none());
        assert!(table.admit("::ffff:127.1.2.4".parse().unwrap()).is_some());
    }

    #[test]
    fn entries_go_away_with_their_connections() {
        let table = SourceConnections::new(4);
        for i in 0..100_000u32 {
            let ip = IpAddr::V4((0x7F00_0000 | i).into());
            let guard = table.admit(ip).unwrap();
            drop(guard);
        }
        assert_eq!(table.sources(), 0);
    }
}
