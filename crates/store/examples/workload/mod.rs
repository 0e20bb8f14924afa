//! A realistic ingest workload for the store's measurement examples: parcels moving through
//! sorting centres, five scans each spread over time, so one batch holds events of many parcels at
//! different stages (as a depot's batch does). Deterministic: event `i` is always the same.

use rempart_domain::{Event, EventCode, EventId, Timestamp, TrackingNumber};

/// Scans per parcel.
const STAGES: u64 = 5;
/// Parcels in flight at once: the stages of one parcel are this many parcels apart.
const WINDOW: u64 = 200_000;
const START: i64 = 1_764_547_200_000_000; // 2025-12-01T00:00:00Z in microseconds
const CODES: [EventCode; STAGES as usize] = [
    EventCode::Pc1,
    EventCode::Et1,
    EventCode::Et1,
    EventCode::Md2,
    EventCode::Di1,
];
const SITES: &[&str] = &[
    "Paris Nord PFC (Gonesse)",
    "Lyon Corbas PFC",
    "Marseille Vitrolles PFC",
    "Bordeaux Cestas PFC",
    "Lille Lesquin PFC",
    "Paris 15 Vaugirard",
    "Relais Pickup, Paris 18",
    "Rennes Le Rheu PFC",
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tracking number of parcel `p`: spread over the key space, like real numbers.
pub fn parcel_number(p: u64) -> TrackingNumber {
    if p % 7 == 3 {
        TrackingNumber::s10("LA", (mix(p) % 100_000_000) as u32, "DE")
    } else {
        TrackingNumber::domestic(6, 'A', mix(p) % 10_000_000_000)
    }
    .expect("valid by construction")
}

/// Event number `i` of the workload.
pub fn event(i: u64) -> Event {
    let stage = i % STAGES;
    // Stage `s` of parcel `p` happens at step `p + s * WINDOW`; the first steps scan parcels
    // whose earlier stages came before the workload began.
    let step = i / STAGES;
    let parcel = step
        .checked_sub(stage * WINDOW)
        .unwrap_or(step + (1 << 40) + stage);
    let site = SITES[(mix(parcel ^ stage) % SITES.len() as u64) as usize];
    Event {
        event_id: EventId::parse(&format!("depot-{:03}:2025-12:{i:012}", mix(parcel) % 400))
            .expect("valid id"),
        tracking_number: parcel_number(parcel),
        code: CODES[stage as usize],
        occurred_at: Timestamp(START + (i as i64) * 1_000),
        location: Some(site.to_owned()),
        product: Some("colissimo".to_owned()),
    }
}

/// Events `from..to` as one batch.
pub fn batch(from: u64, to: u64) -> Vec<Event> {
    (from..to).map(event).collect()
}

/// This process's resident memory in bytes (Linux), or 0 when unknown.
pub fn rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Bytes of files under `dir`.
pub fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
