//! Time to open the embedded store after a clean close and after a `kill -9`, in one run.
//!
//! `cargo run --release -p rempart-store --example reopen -- DIR EVENTS`
//! (`-- --open DIR` times one open of an existing store.)
//!
//! Fills two stores of EVENTS realistic events each (see `workload`) in child processes: one child
//! closes its store and exits, the other is killed with SIGKILL once its last append is
//! acknowledged. Then opens each store, timing `EmbeddedStore::open`, and opens the killed one a
//! second time (after this process closed it cleanly).

mod workload;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use rempart_store::EventStore;
use rempart_store::embedded::{EmbeddedOptions, EmbeddedStore};

const BATCH_EVENTS: u64 = 1_000;
const APPENDERS: u64 = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--fill") => fill(Path::new(&args[2]), args[3].parse()?, &args[4]),
        Some("--open") => report("open", Path::new(args.get(2).ok_or("usage: --open DIR")?)),
        Some(dir) => {
            let events: u64 = args.get(2).ok_or("usage: reopen DIR EVENTS")?.parse()?;
            measure(Path::new(dir), events)
        }
        None => Err("usage: reopen DIR EVENTS".into()),
    }
}

fn measure(dir: &Path, events: u64) -> Result<(), Box<dyn std::error::Error>> {
    let clean = dir.join("clean");
    let killed = dir.join("killed");
    let exe = std::env::current_exe()?;
    let status = Command::new(&exe)
        .args([
            "--fill",
            &clean.display().to_string(),
            &events.to_string(),
            "close",
        ])
        .status()?;
    if !status.success() {
        return Err("the filling child failed".into());
    }
    let mut child = Command::new(&exe)
        .args([
            "--fill",
            &killed.display().to_string(),
            &events.to_string(),
            "hang",
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next().transpose()? {
        if line == "filled" {
            break;
        }
    }
    child.kill()?;
    child.wait()?;
    println!("store\tdata_MiB\tjournal_MiB\topen_ms\trss_after_open_MiB");
    report("after a clean close", &clean)?;
    report("after kill -9", &killed)?;
    report("killed, then opened and closed once", &killed)?;
    Ok(())
}

/// Opens the store in `dir`, prints the time it took, and closes it.
fn report(what: &str, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let data = workload::disk_bytes(dir);
    let journals = journal_bytes(&dir.join("db"));
    let started = Instant::now();
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default())?;
    let took = started.elapsed();
    println!(
        "{what}\t{}\t{}\t{:.0}\t{}",
        data >> 20,
        journals >> 20,
        took.as_secs_f64() * 1000.0,
        workload::rss_bytes() >> 20
    );
    drop(store);
    Ok(())
}

fn journal_bytes(db: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(db) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Child: appends `events` events from several tasks, then closes the store or waits to be killed.
fn fill(dir: &Path, events: u64, then: &str) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default())?);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..APPENDERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut from = t * BATCH_EVENTS;
                while from < events {
                    let to = (from + BATCH_EVENTS).min(events);
                    if let Err(e) = store.append(workload::batch(from, to)).await {
                        return Err(e.to_string());
                    }
                    from += APPENDERS * BATCH_EVENTS;
                }
                Ok(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<_, String>(())
    })?;
    if then == "hang" {
        println!("filled");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
    drop(store);
    Ok(())
}
