//! What the push outbox costs durable ingest: the same workload into a store without
//! subscriptions and into one where 100,000 of the parcels being scanned are subscribed (their
//! status changes become outbox rows in the same commit), alternating, in one run.
//!
//! `cargo run --release -p rempart-store --example push_ingest -- DIR SECONDS [ROUNDS] [SUBSCRIBED]`
//!
//! Each round ingests for SECONDS into a fresh store without subscriptions, then into a fresh
//! store with SUBSCRIBED parcels (default 100,000) subscribed to one endpoint, 8 appenders of
//! 1,000-event batches (see `workload`; each parcel's first 100,000 numbers are scanned in the
//! first seconds, so the subscribed parcels do change during the run). Prints events/s and the
//! deliveries written for each, and the ratio.

mod workload;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rempart_domain::Timestamp;
use rempart_store::EventStore;
use rempart_store::embedded::{EmbeddedOptions, EmbeddedStore};
use rempart_store::push::{
    KeyId, MAX_SUBSCRIBE_BATCH, NewEndpoint, PushStore, SALT_LEN, SecretRef,
};

const BATCH_EVENTS: u64 = 1_000;
const APPENDERS: u64 = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seconds)) = (args.get(1), args.get(2)) else {
        return Err("usage: push_ingest DIR SECONDS [ROUNDS] [SUBSCRIBED]".into());
    };
    let seconds = Duration::from_secs(seconds.parse()?);
    let rounds: u32 = args.get(3).map_or(Ok(2), |a| a.parse())?;
    let subscribed: u64 = args.get(4).map_or(Ok(100_000), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut rates = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (i, watched) in [0, subscribed].into_iter().enumerate() {
                let path = Path::new(dir).join(format!("round{round}-watched{watched}"));
                let (rate, deliveries) = run(&path, seconds, watched).await?;
                println!(
                    "round {round}\tsubscribed {watched}\t{rate:.0} events/s\t{deliveries} deliveries\
                     \tdisk {} MiB\trss {} MiB",
                    workload::disk_bytes(&path) >> 20,
                    workload::rss_bytes() >> 20,
                );
                rates[i].push(rate);
                std::fs::remove_dir_all(&path)?;
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "mean: without {:.0} events/s, with {subscribed} subscribed {:.0} events/s, ratio {:.2}",
            mean(&rates[0]),
            mean(&rates[1]),
            mean(&rates[1]) / mean(&rates[0])
        );
        Ok(())
    })
}

async fn subscribe(store: &EmbeddedStore, parcels: u64) -> Result<(), Box<dyn std::error::Error>> {
    let new = NewEndpoint {
        owner: KeyId(1),
        url: "https://shop.example/hook".into(),
        secret: SecretRef {
            key_version: 1,
            salt: [1; SALT_LEN],
        },
    };
    let ep = store.create_endpoint(new, Timestamp(0)).await?;
    let numbers: Vec<_> = (0..parcels).map(workload::parcel_number).collect();
    for chunk in numbers.chunks(MAX_SUBSCRIBE_BATCH) {
        let _ = store
            .subscribe(KeyId(1), ep.id, chunk, Timestamp(0))
            .await?;
    }
    Ok(())
}

/// Ingests for `length` into a fresh store with `watched` parcels subscribed; returns events/s
/// and the deliveries written.
async fn run(
    dir: &Path,
    length: Duration,
    watched: u64,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let store = Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default())?);
    if watched > 0 {
        subscribe(&store, watched).await?;
    }
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..APPENDERS {
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
    for t in tasks {
        t.await?;
    }
    let rate = stored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let stats = store.outbox_stats().await?;
    let store = Arc::into_inner(store).ok_or("store still shared")?;
    store.close()?;
    Ok((rate, stats.pending + stats.dead + stats.overflowed))
}
