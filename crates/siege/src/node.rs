//! What the node says about itself during a run: its `/metrics` (on the ingest listener),
//! polled once a second from 127.0.0.1 — attack mode, resident memory, open public
//! connections — and its refusals by reason over the run. The exposition is untrusted bytes
//! like any answer: parsed line by line, bounded by the client's body cap.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{self, Connection};
use crate::target::Endpoint;

/// Pause between two polls.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one poll's answer.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// Most samples kept (one a second: an hour).
pub const MAX_SAMPLES: usize = crate::scenario::MAX_DURATION_S as usize + 10;

pub const ATTACK_MODE: &str = "rempart_shield_attack_mode";
pub const RSS: &str = "rempart_process_resident_memory_bytes";
pub const PUBLIC_CONNECTIONS: &str = "rempart_connections_open{listener=\"public\"}";
pub const REFUSED: &str = "rempart_shield_refused_total";

/// The value of sample `name` (the exact text before the value, labels included).
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.trim().parse::<f64>().ok())?
    })
}

/// Every sample of `family` with a `label`: (label value, sample value).
pub fn labelled(text: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let open = format!("{family}{{{label}=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&open)?;
            let (value_of_label, rest) = rest.split_once('"')?;
            let (_, value) = rest.rsplit_once(' ')?;
            Some((value_of_label.to_owned(), value.trim().parse::<f64>().ok()?))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub attack_mode: Option<bool>,
    pub rss_bytes: Option<u64>,
    pub public_connections: Option<u64>,
}

impl Sample {
    fn of(text: &str, t_s: f64) -> Sample {
        Sample {
            t_s,
            attack_mode: sample(text, ATTACK_MODE).map(|v| v >= 1.0),
            rss_bytes: sample(text, RSS).map(|v| v as u64),
            public_connections: sample(text, PUBLIC_CONNECTIONS).map(|v| v as u64),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct NodeReport {
    pub polls: u64,
    pub polls_failed: u64,
    /// Whether the node exports attack mode at all (not with the shield off).
    pub attack_mode_exported: bool,
    /// First poll that saw attack mode on, in seconds since the run started.
    pub attack_mode_first_on_s: Option<f64>,
    /// Polls that saw it on.
    pub attack_mode_on_polls: u64,
    pub rss_max_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub public_connections_max: Option<u64>,
    /// `rempart_shield_refused_total` by reason, over the run.
    pub refused: BTreeMap<String, u64>,
    pub samples: Vec<Sample>,
}

impl NodeReport {
    fn add(&mut self, s: Sample) {
        self.polls += 1;
        if let Some(on) = s.attack_mode {
            self.attack_mode_exported = true;
            if on {
                self.attack_mode_on_polls += 1;
                self.attack_mode_first_on_s.get_or_insert(s.t_s);
            }
        }
        self.rss_max_bytes = self.rss_max_bytes.max(s.rss_bytes);
        self.rss_end_bytes = s.rss_bytes.or(self.rss_end_bytes);
        self.public_connections_max = self.public_connections_max.max(s.public_connections);
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(s);
        }
    }
}

async fn poll(conn: &mut Option<Connection>, endpoint: &Endpoint) -> Option<String> {
    if conn.is_none() {
        let c = tokio::time::timeout(
            POLL_TIMEOUT,
            client::connect(IpAddr::V4(Ipv4Addr::LOCALHOST), endpoint.addr),
        )
        .await
        .ok()?
        .ok()?;
        *conn = Some(c);
    }
    let request = client::request("GET", &endpoint.host, "/metrics", "", b"", false);
    let answer = tokio::time::timeout(POLL_TIMEOUT, conn.as_mut()?.exchange(&request)).await;
    match answer {
        Ok(Ok(resp)) if resp.status == 200 => {
            if resp.close {
                *conn = None;
            }
            String::from_utf8(resp.body).ok()
        }
        _ => {
            *conn = None;
            None
        }
    }
}

/// The node's refusals by reason now (before a run: the baseline of `watch`).
pub async fn refused_now(endpoint: &Endpoint) -> Option<BTreeMap<String, f64>> {
    let text = poll(&mut None, endpoint).await?;
    Some(labelled(&text, REFUSED, "reason"))
}

/// Polls the node's `/metrics` every second from `started` until `done`, then once more;
/// refusals are counted from `baseline` (taken before the run), else from the first poll.
pub async fn watch(
    endpoint: Endpoint,
    started: Instant,
    done: Arc<AtomicBool>,
    baseline: Option<BTreeMap<String, f64>>,
) -> NodeReport {
    let mut report = NodeReport::default();
    let mut conn = None;
    let mut first_refused = baseline;
    let mut last_refused = BTreeMap::new();
    let mut tick = 0u32;
    loop {
        let finished = done.load(Relaxed);
        match poll(&mut conn, &endpoint).await {
            Some(text) => {
                let refused = labelled(&text, REFUSED, "reason");
                first_refused.get_or_insert_with(|| refused.clone());
                last_refused = refused;
                report.add(Sample::of(&text, started.elapsed().as_secs_f64()));
            }
            None => report.polls_failed += 1,
        }
        if finished {
            break;
        }
        tick += 1;
        let next = started + POLL_EVERY * tick;
        while !done.load(Relaxed) && Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(50).min(next - Instant::now())).await;
        }
    }
    let first = first_refused.unwrap_or_default();
    report.refused = last_refused
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - first.get(k).copied().unwrap_or(0.0)).max(0.0) as u64,
            )
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP rempart_shield_attack_mode 1 while attack mode is on.\n\
# TYPE rempart_shield_attack_mode gauge\n\
rempart_shield_attack_mode 1\n\
rempart_process_resident_memory_bytes 3.5e7\n\
rempart_connections_open{listener=\"public\"} 12\n\
rempart_connections_open{listener=\"ingest\"} 2\n\
rempart_shield_refused_total{reason=\"challenge\"} 40\n\
rempart_shield_refused_total{reason=\"rate_limited\"} 7\n";

    #[test]
    fn samples_are_found_by_their_exact_name() {
        assert_eq!(sample(TEXT, ATTACK_MODE), Some(1.0));
        assert_eq!(sample(TEXT, RSS), Some(35_000_000.0));
        assert_eq!(sample(TEXT, PUBLIC_CONNECTIONS), Some(12.0));
        assert_eq!(sample(TEXT, "rempart_connections_open"), None);
        let refused = labelled(TEXT, REFUSED, "reason");
        assert_eq!(refused.len(), 2);
        assert_eq!(refused["challenge"], 40.0);
        let s = Sample::of(TEXT, 3.0);
        assert_eq!(
            (s.attack_mode, s.rss_bytes, s.public_connections),
            (Some(true), Some(35_000_000), Some(12))
        );
    }

    #[test]
    fn hostile_expositions_give_nothing_rather_than_nonsense() {
        for text in [
            "",
            "rempart_shield_attack_mode",
            "rempart_shield_attack_mode x",
            "rempart_shield_attack_mode  ",
            "\u{0}\u{ff}rempart_shield_attack_mode 1",
            "rempart_shield_attack_mode{} 1",
        ] {
            assert_eq!(sample(text, ATTACK_MODE), None, "{text:?}");
        }
        for text in [
            "rempart_shield_refused_total{reason=\"a 1",
            "rempart_shield_refused_total{reason=\"a\"} x",
            "rempart_shield_refused_total 3",
        ] {
            assert!(labelled(text, REFUSED, "reason").is_empty(), "{text:?}");
        }
    }

    #[test]
    fn the_report_keeps_the_first_switch_and_the_peaks() {
        let mut r = NodeReport::default();
        let at = |t: f64, on: Option<bool>, rss: u64| Sample {
            t_s: t,
            attack_mode: on,
            rss_bytes: Some(rss),
            public_connections: Some(rss / 10),
        };
        r.add(at(0.0, Some(false), 10));
        r.add(at(1.0, Some(true), 30));
        r.add(at(2.0, Some(true), 20));
        assert!(r.attack_mode_exported);
        assert_eq!(
            (r.attack_mode_first_on_s, r.attack_mode_on_polls),
            (Some(1.0), 2)
        );
        assert_eq!(
            (r.rss_max_bytes, r.rss_end_bytes, r.public_connections_max),
            (Some(30), Some(20), Some(3))
        );
        let mut off = NodeReport::default();
        off.add(at(0.0, None, 1));
        assert!(!off.attack_mode_exported && off.attack_mode_first_on_s.is_none());
    }
}
