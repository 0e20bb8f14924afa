//! Resident memory during a long full-rate ingest through the embedded store.
//!
//! `cargo run --release -p rempart-store --example ingest_rss -- DIR SECONDS [APPENDERS]`
//!
//! APPENDERS tasks (default 8) append batches of 1,000 realistic events (see `workload`) as fast
//! as the store acknowledges them; every 5 s a line shows the events stored, the rate, the
//! process's resident memory, the data directory's size and each memory consumer the store
//! reports (`EventStore::memory_use`), with the default bounds of `EmbeddedOptions`.

mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rempart_store::EventStore;
use rempart_store::embedded::{EmbeddedOptions, EmbeddedStore};

const BATCH_EVENTS: u64 = 1_000;
const REPORT_EVERY: Duration = Duration::from_secs(5);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seconds)) = (args.get(1), args.get(2)) else {
        return Err("usage: ingest_rss DIR SECONDS [APPENDERS]".into());
    };
    let seconds: u64 = seconds.parse()?;
    let appenders: u64 = args.get(3).map_or(Ok(8), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(dir.into(), Duration::from_secs(seconds), appenders))
}

async fn run(
    dir: std::path::PathBuf,
    length: Duration,
    appenders: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(EmbeddedStore::open(&dir, EmbeddedOptions::default())?);
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let (store, next, stored) = (store.clone(), next.clone(), stored.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < length {
                let from = next.fetch_add(BATCH_EVENTS, Ordering::Relaxed);
                match store
                    .append(workload::batch(from, from + BATCH_EVENTS))
                    .await
                {
                    Ok(o) => {
                        stored.fetch_add(o.accepted as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("append: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    let bounds: Vec<String> = store
        .memory_use()
        .iter()
        .filter_map(|m| Some(format!("{}={}MiB", m.consumer, m.bound_bytes? >> 20)))
        .collect();
    let bound_sum: u64 = store
        .memory_use()
        .iter()
        .filter_map(|m| m.bound_bytes)
        .sum();
    println!("bounds: {} (sum {} MiB)", bounds.join(" "), bound_sum >> 20);
    println!("seconds\tevents\tevents/s\trss_MiB\tdisk_MiB\tconsumers_MiB");
    let mut last = (Instant::now(), 0u64);
    let mut peak_rss = 0;
    while started.elapsed() < length {
        tokio::time::sleep(REPORT_EVERY).await;
        let now = stored.load(Ordering::Relaxed);
        let rate = (now - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), now);
        let rss = workload::rss_bytes();
        peak_rss = peak_rss.max(rss);
        let consumers: Vec<String> = store
            .memory_use()
            .iter()
            .map(|m| format!("{}={}", m.consumer, m.bytes >> 20))
            .collect();
        println!(
            "{}\t{now}\t{rate:.0}\t{}\t{}\t{}",
            started.elapsed().as_secs(),
            rss >> 20,
            workload::disk_bytes(&dir) >> 20,
            consumers.join(" "),
        );
    }
    for t in tasks {
        t.await?;
    }
    println!(
        "done: {} events in {:.0} s, peak RSS {} MiB",
        stored.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        peak_rss >> 20
    );
    Ok(())
}
