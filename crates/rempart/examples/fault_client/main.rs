//! The fault tests' client (`scripts/fault/*`): it ingests at full rate and remembers every
//! acknowledgement while a script breaks the node, then checks every acknowledged event in the
//! store. Loopback targets only.
//!
//! ```text
//! fault_client ingest --to ADDR --out DIR [--clients 4] [--parcels 100] [--events 10] [--stop-file F]
//! fault_client summary --out DIR [--mark NAME=UNIX_MS]…   what the node answered
//! fault_client verify --out DIR --store embedded:DIR|postgres://…   lost, duplicated, partial
//! fault_client probe --public ADDR --ingest ADDR --out DIR --stop-file F   readiness over time
//! fault_client wait-ready --addr ADDR --since-ns NS   time to ready after a start
//! ```
//!
//! `batch.rs` says what is sent, `record.rs` what is written down, `ingest.rs` how it is sent,
//! `summary.rs` and `verify.rs` what is checked.

mod batch;
#[path = "../support/http1.rs"]
mod http1;
mod ingest;
mod probe;
mod record;
mod summary;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fault_client",
    about = "Ingest, remember every ack, verify them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send batches at full rate from several connections, resending refused ones, until the
    /// time is up or the stop file appears. Writes DIR/acks.log and DIR/answers.tsv.
    Ingest {
        /// Ingest listener (or depot endpoint), e.g. 127.0.0.1:8081
        #[arg(long)]
        to: SocketAddr,
        /// Bearer token
        #[arg(long, env = "REMPART_INGEST_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Connections, each sending its own batches one after another (at most 26)
        #[arg(long, default_value_t = 4)]
        clients: u64,
        /// Parcels per batch
        #[arg(long, default_value_t = 100)]
        parcels: u64,
        /// Events per parcel (at most 200)
        #[arg(long, default_value_t = 10)]
        events: u64,
        /// Longest delay before a resend (full-jitter exponential backoff from 10 ms)
        #[arg(long, default_value_t = 500)]
        backoff_cap_ms: u64,
        #[arg(long)]
        seconds: Option<u64>,
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// While this file exists, hold between attempts (`<file>.held` appears once every
        /// client holds: nothing is in flight)
        #[arg(long)]
        pause_file: Option<PathBuf>,
        /// Run number, part of every event id [default: the Unix time]
        #[arg(long)]
        run: Option<u64>,
    },
    /// Check every acknowledged event in the store: lost, duplicated, partly stored batches.
    Verify {
        #[arg(long)]
        out: PathBuf,
        /// `embedded:DIR` (an embedded store's directory, the node stopped) or a postgres:// URL
        #[arg(long)]
        store: String,
    },
    /// What the node answered: by status and error code, delays after marks, untrue answers.
    Summary {
        #[arg(long)]
        out: PathBuf,
        /// Only answers at or after this Unix time (ms) in the table
        #[arg(long, default_value_t = 0)]
        from_ms: u64,
        /// Only answers before this Unix time (ms) in the table
        #[arg(long, default_value_t = u64::MAX)]
        to_ms: u64,
        /// NAME=UNIX_MS: report the delay to the first acknowledgement after it
        #[arg(long = "mark")]
        marks: Vec<String>,
    },
    /// Ask the readiness endpoints and a lookup once a period until the stop file appears;
    /// writes DIR/probes.tsv.
    Probe {
        #[arg(long)]
        public: SocketAddr,
        #[arg(long)]
        ingest: SocketAddr,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        stop_file: PathBuf,
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
    },
    /// Poll GET PATH until it answers 200; print the milliseconds since --since-ns.
    WaitReady {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/readyz")]
        path: String,
        /// Unix time in ns when the node was started [default: now]
        #[arg(long)]
        since_ns: Option<u128>,
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fault_client: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<bool, String> {
    match command {
        Command::Ingest {
            to,
            token,
            out,
            clients,
            parcels,
            events,
            backoff_cap_ms,
            seconds,
            stop_file,
            pause_file,
            run,
        } => {
            if clients == 0 || clients > batch::MAX_CLIENTS {
                return Err(format!("1 to {} clients", batch::MAX_CLIENTS));
            }
            let run = run.unwrap_or_else(|| ingest::unix_ms() / 1000);
            let options = ingest::Options {
                to,
                token,
                clients,
                shape: batch::Shape::new(run, parcels, events)?,
                backoff_cap: Duration::from_millis(backoff_cap_ms),
                seconds,
                stop_file,
                pause_file,
            };
            ingest_and_report(options, &out)
        }
        Command::Verify { out, store } => {
            let acks = record::Acks::read(&out)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            verify::timed(&acks, &store, &runtime)
        }
        Command::Summary {
            out,
            from_ms,
            to_ms,
            marks,
        } => {
            let shape = record::Acks::read(&out)?.shape.ok_or("no shape")?;
            let marks = marks
                .iter()
                .map(|m| {
                    let (name, ms) = m.split_once('=').ok_or("a mark is NAME=UNIX_MS")?;
                    Ok((
                        name.to_owned(),
                        ms.parse().map_err(|_| "a mark is NAME=UNIX_MS")?,
                    ))
                })
                .collect::<Result<Vec<_>, &str>>()?;
            let attempts = summary::read(&out)?;
            summary::print(&attempts, shape.batch_events(), (from_ms, to_ms), &marks);
            Ok(true)
        }
        Command::Probe {
            public,
            ingest,
            out,
            stop_file,
            every_ms,
        } => {
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let file = out.join("probes.tsv");
            let every = Duration::from_millis(every_ms);
            probe::probe(public, ingest, &out, &file, every, &stop_file)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            Ok(true)
        }
        Command::WaitReady {
            addr,
            path,
            since_ns,
            timeout_s,
        } => {
            let since = since_ns.unwrap_or_else(|| u128::from(ingest::unix_ms()) * 1_000_000);
            match probe::wait_ready(addr, &path, since, Duration::from_secs(timeout_s)) {
                Some(ms) => println!("ready_ms={ms:.0}"),
                None => println!("ready_ms=none"),
            }
            Ok(true)
        }
    }
}

fn ingest_and_report(options: ingest::Options, out: &std::path::Path) -> Result<bool, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let shape = options.shape;
    let (log, writer) = record::writer(out, shape, options.clients)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let started = std::time::Instant::now();
    let next = ingest::run(Arc::new(options), log);
    writer
        .join()
        .map_err(|_| "the record writer panicked")?
        .map_err(|e| format!("writing the record: {e}"))?;
    let acks = record::Acks::read(out)?;
    let acked = acks.acked.len() as u64 * shape.batch_events();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ingest: run={} batches_attempted={} batches_acked={} events_acked={acked} seconds={seconds:.1} acked_events_per_s={:.0}",
        shape.run,
        next.iter().sum::<u64>(),
        acks.acked.len(),
        acked as f64 / seconds
    );
    Ok(true)
}
