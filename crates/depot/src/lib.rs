//! `rempart depot`: store-and-forward scanning for depots and delivery rounds.
//!
//! Scans come in on stdin or a watched file (NDJSON or CSV) and on a local HTTP endpoint; each is
//! validated with the domain's rules and written durably to a local spool (`spool.rs`) before the
//! depot says OK. A forwarder (`forward.rs`) sends the spool to the central ingest API in order,
//! in batches, with backoff, and moves the spool's cursor only after the server acknowledged.
//! A crash of either side loses nothing: the depot resumes from its spool, and the server's
//! idempotency by `event_id` makes resends harmless.

pub mod entry;
pub mod forward;
pub mod http;
pub mod spool;

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use rempart_domain::Timestamp;
use tokio::sync::{Mutex, Notify};

use crate::forward::ForwardStats;
use crate::spool::Spool;

/// Lines read from stdin or the input file before one fsync.
pub const INPUT_CHUNK: usize = 1_000;
/// How often the backlog is logged.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Input format of stdin or the input file.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

/// Arguments of `rempart depot`.
#[derive(clap::Args, Debug, Clone)]
pub struct DepotArgs {
    /// Spool directory (created if needed)
    #[arg(long, env = "REMPART_DEPOT_SPOOL", default_value = "rempart-spool")]
    pub spool: PathBuf,
    /// Ingest API of the central service, e.g. http://10.0.0.5:8081
    #[arg(long, env = "REMPART_DEPOT_INGEST")]
    pub ingest: Option<String>,
    /// Ingest bearer token
    #[arg(long, env = "REMPART_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Local HTTP endpoint for scanner software (loopback only), e.g. 127.0.0.1:8090
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Read scans from this file (and keep following it), or `-` for stdin
    #[arg(long)]
    pub input: Option<String>,
    /// Format of --input
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: Format,
    /// Prefix of the event ids this depot assigns
    #[arg(long, env = "REMPART_DEPOT_ID", default_value = "depot")]
    pub depot_id: String,
    /// Events per forwarded batch (1 to 10000)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub batch: u16,
    /// Batches forwarded at once (1 to 16): the node makes concurrent batches durable together
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub in_flight: u8,
    /// Most events the spool holds; entry is refused past it
    #[arg(long, default_value_t = spool::DEFAULT_MAX_BACKLOG)]
    pub max_backlog: u64,
    /// Exit once the input is read and the spool is empty (scripts, tests)
    #[arg(long)]
    pub once: bool,
    /// Print the spool's backlog and exit
    #[arg(long)]
    pub status: bool,
}

/// The shared state of a running depot.
pub struct Depot {
    pub depot_id: String,
    spool: Arc<Mutex<Spool>>,
    wake: Arc<Notify>,
    stats: Arc<ForwardStats>,
    spooled: std::sync::atomic::AtomicU64,
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc())
}

impl Depot {
    /// Spools validated lines durably.
    pub async fn spool(&self, lines: &[Vec<u8>]) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let spool = self.spool.clone();
        let lines = lines.to_vec();
        let n = lines.len() as u64;
        // The fsync blocks: keep it off the async workers.
        tokio::task::spawn_blocking(move || spool.blocking_lock().append(&lines).map(|_| ()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.spooled.fetch_add(n, Relaxed);
        self.wake.notify_one();
        Ok(())
    }

    pub async fn status(&self) -> serde_json::Value {
        let spool = self.spool.lock().await;
        serde_json::json!({
            "backlog_events": spool.backlog(),
            "oldest_seconds": spool.oldest_age_seconds().unwrap_or(0),
            "acked_up_to": spool.acked(),
            "spooled": self.spooled.load(Relaxed),
            "forwarded": self.stats.forwarded.load(Relaxed),
            "duplicates": self.stats.duplicates.load(Relaxed),
            "rejected": self.stats.rejected.load(Relaxed),
            "forward_failures": self.stats.failures.load(Relaxed),
        })
    }

    pub async fn metrics(&self) -> String {
        let s = self.status().await;
        let mut out = String::new();
        for (name, key, kind, help) in [
            (
                "rempart_depot_backlog_events",
                "backlog_events",
                "gauge",
                "Events spooled and not yet acknowledged by the server.",
            ),
            (
                "rempart_depot_backlog_oldest_seconds",
                "oldest_seconds",
                "gauge",
                "Age of the oldest unacknowledged event.",
            ),
            (
                "rempart_depot_spooled_total",
                "spooled",
                "counter",
                "Events accepted durably into the spool.",
            ),
            (
                "rempart_depot_forwarded_total",
                "forwarded",
                "counter",
                "Events the server stored.",
            ),
            (
                "rempart_depot_duplicates_total",
                "duplicates",
                "counter",
                "Events the server already had (resends).",
            ),
            (
                "rempart_depot_rejected_total",
                "rejected",
                "counter",
                "Events the server refused, parked in rejected.ndjson.",
            ),
            (
                "rempart_depot_forward_failures_total",
                "forward_failures",
                "counter",
                "Forwarding attempts that failed and were retried.",
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                s[key]
            ));
        }
        out
    }
}

/// Reads the input (stdin or a followed file), spooling valid lines in chunks and reporting each
/// line's fate on stdout (`ok N` after fsync, `error N: why`).
fn read_input(
    depot: Arc<Depot>,
    source: String,
    format: Format,
    follow: bool,
    rt: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let mut reader: Box<dyn BufRead> = if source == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&source).with_context(|| format!("cannot open {source}"))?,
        ))
    };
    let mut number = 0usize;
    let mut header_seen = format == Format::Ndjson;
    let mut chunk = Chunk::default();
    let mut out = std::io::stdout();
    let mut line = Vec::new();
    loop {
        let Some(too_long) = read_line(&mut reader, &mut line)? else {
            chunk.spool(&depot, &rt, &mut out)?;
            if !follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) && !too_long {
            continue;
        }
        if !header_seen {
            header_seen = true;
            let checked = std::str::from_utf8(text)
                .map_err(|_| entry::EntryError::NotUtf8)
                .and_then(entry::csv_header);
            if let Err(e) = checked {
                anyhow::bail!("line {number}: {e}");
            }
            continue;
        }
        let parsed = if too_long {
            Err(entry::EntryError::TooLong)
        } else {
            match format {
                Format::Ndjson => entry::ndjson(text, &depot.depot_id, now()),
                Format::Csv => entry::csv(text, &depot.depot_id, now()),
            }
        };
        match parsed {
            Ok((_, spooled)) => {
                chunk.events.push(spooled);
                chunk.lines.push(number);
                if chunk.events.len() == INPUT_CHUNK {
                    chunk.spool(&depot, &rt, &mut out)?;
                }
            }
            Err(e) => {
                writeln!(out, "error {number}: {e}")?;
                tracing::warn!(line = number, error = %e, "scan refused at entry");
            }
        }
    }
}

/// Reads the next line into `line`, at most `entry::MAX_LINE_BYTES` of it (the rest of a longer
/// line is skipped): `None` at the end of the input, else whether the line was too long.
fn read_line(reader: &mut dyn BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    line.clear();
    let read = std::io::Read::take(&mut *reader, entry::MAX_LINE_BYTES as u64 + 2)
        .read_until(b'\n', line)?;
    if read == 0 {
        return Ok(None);
    }
    let too_long = !line.ends_with(b"\n") && line.len() > entry::MAX_LINE_BYTES;
    if too_long {
        let mut rest = Vec::new();
        reader.read_until(b'\n', &mut rest)?;
    }
    Ok(Some(too_long))
}

/// Entries read but not spooled yet, with their line numbers.
#[derive(Default)]
struct Chunk {
    events: Vec<Vec<u8>>,
    lines: Vec<usize>,
}

impl Chunk {
    /// Spools the chunk durably, then says `ok N` for each of its lines: only then is a scan
    /// acknowledged to whoever feeds the depot.
    fn spool(
        &mut self,
        depot: &Depot,
        rt: &tokio::runtime::Handle,
        out: &mut std::io::Stdout,
    ) -> anyhow::Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        rt.block_on(depot.spool(&self.events))
            .map_err(|e| anyhow::anyhow!("spool: {e}"))?;
        for n in &self.lines {
            writeln!(out, "ok {n}")?;
        }
        out.flush()?;
        self.events.clear();
        self.lines.clear();
        Ok(())
    }
}

/// The ingest API to forward to, from `--ingest` and `--token`.
fn target(args: &DepotArgs) -> anyhow::Result<forward::Target> {
    let ingest = args
        .ingest
        .clone()
        .context("--ingest URL is required (the central ingest API)")?;
    let token = args
        .token
        .clone()
        .context("--token (or REMPART_INGEST_TOKEN) is required")?;
    forward::Target::parse(&ingest, token).map_err(anyhow::Error::msg)
}

/// Logs the backlog every `REPORT_EVERY`.
async fn report_backlog(depot: Arc<Depot>) {
    loop {
        tokio::time::sleep(REPORT_EVERY).await;
        let s = depot.status().await;
        tracing::info!(backlog = %s["backlog_events"], oldest_seconds = %s["oldest_seconds"], forwarded = %s["forwarded"], "depot backlog");
    }
}

/// Runs `rempart depot`.
pub fn run(args: DepotArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REMPART_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let spool = Spool::open(&args.spool, args.max_backlog)
        .with_context(|| format!("cannot open the spool in {}", args.spool.display()))?;
    if args.status {
        println!(
            "backlog {} events, oldest {} s, acknowledged up to #{}",
            spool.backlog(),
            spool.oldest_age_seconds()?,
            spool.acked()
        );
        return Ok(());
    }
    if let Some(addr) = args.listen {
        http::check_loopback(addr).map_err(anyhow::Error::msg)?;
    }
    let target = target(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let depot = Arc::new(Depot {
        depot_id: args.depot_id.clone(),
        spool: Arc::new(Mutex::new(spool)),
        wake: Arc::new(Notify::new()),
        stats: Arc::new(ForwardStats::default()),
        spooled: Default::default(),
    });
    if let Some(addr) = args.listen {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr}"))?;
        println!("rempart depot listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        rt.spawn(http::serve(listener, depot.clone()));
    }
    let forwarder = rt.spawn(forward::run(
        depot.spool.clone(),
        target,
        usize::from(args.batch),
        usize::from(args.in_flight),
        depot.stats.clone(),
        depot.wake.clone(),
        args.once,
        args.spool.join("rejected.ndjson"),
    ));
    rt.spawn(report_backlog(depot.clone()));
    if let Some(source) = args.input.clone() {
        let follow = source != "-" && !args.once;
        let handle = rt.handle().clone();
        let depot = depot.clone();
        std::thread::spawn(move || read_input(depot, source, args.format, follow, handle))
            .join()
            .map_err(|_| anyhow::anyhow!("input reader panicked"))??;
    }
    if args.once {
        rt.block_on(forwarder)?.map_err(anyhow::Error::msg)?;
        let s = rt.block_on(depot.status());
        eprintln!(
            "depot: forwarded {} events, backlog {}",
            s["forwarded"], s["backlog_events"]
        );
        return Ok(());
    }
    rt.block_on(async {
        tokio::select! {
            r = forwarder => r.map_err(anyhow::Error::from)?.map_err(anyhow::Error::msg),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
