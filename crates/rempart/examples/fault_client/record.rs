//! What the fault client writes down while it sends, for the verify and summary steps to read:
//!
//! - `acks.log`, append-only and fsync'd, one line per acknowledged batch. With the run's shape
//!   on its first line, `ack C B ACCEPTED DUPLICATES` stands for the `parcels · events` event ids
//!   of batch `B` of client `C` (see `batch.rs`); `end C NEXT` closes a client: it attempted
//!   batches `0..NEXT` and no other.
//! - `answers.tsv`, one line per attempt, whatever came back: time, client, batch, attempt, HTTP
//!   status (0 when there was no answer), error code (`ok` for a 2xx; `connect_refused`,
//!   `connect_error`, `no_answer` or `timeout` without an answer), `Retry-After`, the counts of a
//!   2xx, and the latency.
//!
//! One writer thread owns both files; clients hand it lines over a bounded channel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::batch::Shape;

/// Lines waiting for the writer at most (clients block beyond it).
pub const QUEUE_LINES: usize = 16_384;
pub const ACKS_FILE: &str = "acks.log";
pub const ANSWERS_FILE: &str = "answers.tsv";
const ACKS_MAGIC: &str = "rempart-fault-acks v1";
/// The columns of `answers.tsv`.
pub const ANSWERS_HEADER: &str =
    "unix_ms\tclient\tbatch\tattempt\tstatus\tcode\tretry_after\taccepted\tduplicates\tlatency_ms";

pub enum Line {
    Ack(String),
    Answer(String),
}

/// One attempt at sending a batch, as `answers.tsv` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub unix_ms: u64,
    pub client: u64,
    pub batch: u64,
    pub attempt: u32,
    pub status: u16,
    pub code: String,
    pub retry_after: Option<String>,
    pub accepted: u64,
    pub duplicates: u64,
    pub latency_ms: f64,
}

impl Attempt {
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.1}",
            self.unix_ms,
            self.client,
            self.batch,
            self.attempt,
            self.status,
            self.code,
            self.retry_after.as_deref().unwrap_or("-"),
            self.accepted,
            self.duplicates,
            self.latency_ms
        )
    }

    pub fn parse(line: &str) -> Option<Attempt> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 10 {
            return None;
        }
        Some(Attempt {
            unix_ms: f[0].parse().ok()?,
            client: f[1].parse().ok()?,
            batch: f[2].parse().ok()?,
            attempt: f[3].parse().ok()?,
            status: f[4].parse().ok()?,
            code: f[5].to_owned(),
            retry_after: (f[6] != "-").then(|| f[6].to_owned()),
            accepted: f[7].parse().ok()?,
            duplicates: f[8].parse().ok()?,
            latency_ms: f[9].parse().ok()?,
        })
    }
}

/// Starts the writer of `dir/acks.log` and `dir/answers.tsv`; it ends once every sender is gone,
/// after a last fsync of the acks.
pub fn writer(
    dir: &Path,
    shape: Shape,
    clients: u64,
) -> io::Result<(mpsc::SyncSender<Line>, JoinHandle<io::Result<()>>)> {
    let acks = File::create(dir.join(ACKS_FILE))?;
    let mut answers = BufWriter::new(File::create(dir.join(ANSWERS_FILE))?);
    writeln!(answers, "{ANSWERS_HEADER}")?;
    let mut acks_out = BufWriter::new(acks.try_clone()?);
    writeln!(
        acks_out,
        "{ACKS_MAGIC} run={} parcels={} events={} clients={clients}",
        shape.run, shape.parcels, shape.events
    )?;
    acks_out.flush()?;
    acks.sync_all()?;
    let (tx, rx) = mpsc::sync_channel::<Line>(QUEUE_LINES);
    let handle = std::thread::spawn(move || -> io::Result<()> {
        // Block for one line, then take whatever else is waiting: one fsync per group.
        while let Ok(first) = rx.recv() {
            let mut acked = false;
            for line in std::iter::once(first).chain(rx.try_iter()) {
                match line {
                    Line::Ack(l) => {
                        writeln!(acks_out, "{l}")?;
                        acked = true;
                    }
                    Line::Answer(l) => writeln!(answers, "{l}")?,
                }
            }
            answers.flush()?;
            if acked {
                acks_out.flush()?;
                acks.sync_data()?;
            }
        }
        acks_out.flush()?;
        acks.sync_all()?;
        answers.flush()
    });
    Ok((tx, handle))
}

/// What `acks.log` says.
#[derive(Debug, Default)]
pub struct Acks {
    pub shape: Option<Shape>,
    pub clients: u64,
    /// `(client, batch)` → (accepted, duplicates) of its acknowledgement.
    pub acked: HashMap<(u64, u64), (u64, u64)>,
    /// Per client, one past the last batch it attempted (from its `end` line).
    pub next: HashMap<u64, u64>,
}

impl Acks {
    pub fn read(dir: &Path) -> Result<Acks, String> {
        let path = dir.join(ACKS_FILE);
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut acks = Acks::default();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            acks.take(&line)
                .ok_or_else(|| format!("{}:{}: cannot read {line:?}", path.display(), i + 1))?;
        }
        if acks.shape.is_none() {
            return Err(format!("{}: no header line", path.display()));
        }
        Ok(acks)
    }

    fn take(&mut self, line: &str) -> Option<()> {
        if let Some(rest) = line.strip_prefix(ACKS_MAGIC) {
            let field = |name: &str| -> Option<u64> {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            let shape = Shape::new(field("run")?, field("parcels")?, field("events")?).ok()?;
            self.shape = Some(shape);
            self.clients = field("clients")?;
            return Some(());
        }
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|s| s.parse().ok())
            .collect::<Option<_>>()?;
        match (line.split_whitespace().next()?, f.as_slice()) {
            ("ack", &[c, b, accepted, duplicates]) => {
                self.acked.insert((c, b), (accepted, duplicates));
            }
            ("end", &[c, next]) => {
                self.next.insert(c, next);
            }
            _ => return None,
        }
        Some(())
    }

    /// One past the last batch client `c` attempted: from its `end` line, else (a client that
    /// did not finish) one past the batch after its last acknowledged one.
    pub fn attempted(&self, c: u64) -> u64 {
        self.next.get(&c).copied().unwrap_or_else(|| {
            self.acked
                .keys()
                .filter(|(client, _)| *client == c)
                .map(|(_, b)| b + 2)
                .max()
                .unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(9, 10, 5).unwrap();
        let (tx, handle) = writer(dir.path(), shape, 2).unwrap();
        let attempt = Attempt {
            unix_ms: 1,
            client: 1,
            batch: 3,
            attempt: 2,
            status: 503,
            code: "storage_unavailable".into(),
            retry_after: Some("1".into()),
            accepted: 0,
            duplicates: 0,
            latency_ms: 1.5,
        };
        tx.send(Line::Answer(attempt.to_line())).unwrap();
        tx.send(Line::Ack("ack 1 3 40 10".into())).unwrap();
        tx.send(Line::Ack("end 1 5".into())).unwrap();
        drop(tx);
        handle.join().unwrap().unwrap();
        let acks = Acks::read(dir.path()).unwrap();
        assert_eq!(acks.shape, Some(shape));
        assert_eq!(acks.acked[&(1, 3)], (40, 10));
        assert_eq!((acks.attempted(1), acks.attempted(0)), (5, 1));
        let text = std::fs::read_to_string(dir.path().join(ANSWERS_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], ANSWERS_HEADER);
        assert_eq!(Attempt::parse(lines[1]), Some(attempt));
    }

    #[test]
    fn a_damaged_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(ACKS_FILE),
            format!("{ACKS_MAGIC} run=1 parcels=2 events=3 clients=1\nack 0 x 1 1\n"),
        )
        .unwrap();
        assert!(Acks::read(dir.path()).unwrap_err().contains(":2:"));
    }
}
