//! The depot's spool: an append-only, segmented log of validated events on local disk.
//!
//! A record is `len u32 · crc32 u32 · seq u64 · spooled_at_ms u64 · payload` (little-endian;
//! the CRC covers seq, time and payload). `append` returns only after `fsync`, so an event the
//! depot said OK to survives a crash of the depot or the machine. The forwarder reads records
//! after the acknowledged cursor (`acked`, replaced atomically: write, fsync, rename, fsync dir)
//! and advances it only after the server acknowledged them; fully acknowledged segments are
//! deleted. On open, a torn or corrupt tail (a crash in the middle of a write) is cut off: those
//! bytes were never acknowledged to anyone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Longest record payload (an event line is far shorter).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Default bound on events waiting in the spool; past it, entry is refused.
pub const DEFAULT_MAX_BACKLOG: u64 = 5_000_000;
const HEADER: usize = 4 + 4 + 8 + 8;
const ACKED_FILE: &str = "acked";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spool holds {0} events, its limit; forward them before spooling more")]
    Full(u64),
    #[error("spool cursor file is corrupt: {0}")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub spooled_at_ms: u64,
    pub payload: Vec<u8>,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
}

pub struct Spool {
    /// Where the last `pending` read stopped: (next sequence number, segment start, byte
    /// offset). Lets the forwarder read on without rescanning a segment for every batch.
    read_from: std::cell::Cell<Option<(u64, u64, u64)>>,
    dir: PathBuf,
    segments: Vec<Segment>,
    current: File,
    current_len: u64,
    next_seq: u64,
    acked: u64,
    max_backlog: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.log")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads records from `file` until the end or the first damaged record; returns them and the
/// offset where the valid data ends.
fn scan(file: &mut File, path: &Path) -> Result<(Vec<Record>, u64), SpoolError> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    file.read_to_end(&mut bytes).map_err(io(path))?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some(record) = decode(&bytes[at..]) {
        at += HEADER + record.payload.len();
        records.push(record);
    }
    Ok((records, at as u64))
}

fn decode(bytes: &[u8]) -> Option<Record> {
    if bytes.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    if len > MAX_PAYLOAD || bytes.len() < HEADER + len {
        return None;
    }
    let body = &bytes[8..HEADER + len];
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some(Record {
        seq: u64::from_le_bytes(body[0..8].try_into().ok()?),
        spooled_at_ms: u64::from_le_bytes(body[8..16].try_into().ok()?),
        payload: body[16..].to_vec(),
    })
}

fn encode(seq: u64, at_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(16 + payload.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&at_ms.to_le_bytes());
    body.extend_from_slice(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Spool {
    pub fn open(dir: &Path, max_backlog: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let acked = match std::fs::read(dir.join(ACKED_FILE)) {
            Ok(bytes) if bytes.len() == 12 => {
                let value = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
                let crc = u32::from_le_bytes(bytes[8..].try_into().expect("4 bytes"));
                if crc32fast::hash(&bytes[..8]) != crc {
                    return Err(SpoolError::Corrupt("checksum mismatch".into()));
                }
                value
            }
            Ok(_) => return Err(SpoolError::Corrupt("wrong length".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(dir)(e)),
        };
        let mut segments: Vec<Segment> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let seq = name
                    .strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some(Segment {
                    first_seq: seq,
                    path: entry.path(),
                })
            })
            .collect();
        segments.sort_by_key(|s| s.first_seq);
        let (current, current_len, next_seq) = match segments.last() {
            Some(last) => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(io(&last.path))?;
                let (records, valid) = scan(&mut file, &last.path)?;
                let len = file.metadata().map_err(io(&last.path))?.len();
                if valid < len {
                    tracing::warn!(segment = %last.path.display(), cut = len - valid, "cutting a torn spool tail");
                    file.set_len(valid).map_err(io(&last.path))?;
                    file.sync_all().map_err(io(&last.path))?;
                }
                file.seek(SeekFrom::End(0)).map_err(io(&last.path))?;
                let next = records.last().map_or(last.first_seq, |r| r.seq + 1);
                (file, valid, next)
            }
            None => {
                let first = acked + 1;
                let path = dir.join(segment_name(first));
                let file = OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?;
                sync_dir(dir)?;
                segments.push(Segment {
                    first_seq: first,
                    path,
                });
                (file, 0, first)
            }
        };
        Ok(Spool {
            read_from: std::cell::Cell::new(None),
            dir: dir.to_owned(),
            segments,
            current,
            current_len,
            next_seq: next_seq.max(acked + 1),
            acked,
            max_backlog,
        })
    }

    /// Events spooled and not yet acknowledged by the server.
    pub fn backlog(&self) -> u64 {
        self.next_seq - 1 - self.acked
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Appends events and makes them durable; returns the sequence numbers given to them.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> Result<std::ops::Range<u64>, SpoolError> {
        if self.backlog() + payloads.len() as u64 > self.max_backlog {
            return Err(SpoolError::Full(self.backlog()));
        }
        if self.current_len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        let first = self.next_seq;
        let at = now_ms();
        let mut bytes = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            assert!(
                payload.len() <= MAX_PAYLOAD,
                "entry validation bounds payloads"
            );
            encode(first + i as u64, at, payload, &mut bytes);
        }
        let path = &self.segments.last().expect("a current segment").path;
        self.current.write_all(&bytes).map_err(io(path))?;
        self.current.sync_data().map_err(io(path))?;
        self.current_len += bytes.len() as u64;
        self.next_seq += payloads.len() as u64;
        Ok(first..self.next_seq)
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        let path = self.dir.join(segment_name(self.next_seq));
        self.current = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first_seq: self.next_seq,
            path,
        });
        self.current_len = 0;
        Ok(())
    }

    /// Up to `max` records after the acknowledged cursor, in order.
    pub fn pending(&self, max: usize) -> Result<Vec<Record>, SpoolError> {
        let mut out = Vec::new();
        let start = self
            .segments
            .iter()
            .rposition(|s| s.first_seq <= self.acked + 1)
            .unwrap_or(0);
        // Resume where the previous read stopped when it stopped right at the cursor.
        let (resume_segment, mut offset) = match self.read_from.get() {
            Some((next, segment, offset)) if next == self.acked + 1 => (Some(segment), offset),
            _ => (None, 0),
        };
        for segment in &self.segments[start..] {
            if resume_segment.is_some_and(|first| first != segment.first_seq) {
                if resume_segment.is_some_and(|first| segment.first_seq < first) {
                    continue;
                }
                offset = 0;
            }
            let mut file = File::open(&segment.path).map_err(io(&segment.path))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(io(&segment.path))?;
            let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
            let mut header = [0u8; HEADER];
            loop {
                if reader.read_exact(&mut header).is_err() {
                    break;
                }
                let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_PAYLOAD {
                    break;
                }
                let mut record = header.to_vec();
                record.resize(HEADER + len, 0);
                if reader.read_exact(&mut record[HEADER..]).is_err() {
                    break;
                }
                let Some(r) = decode(&record) else { break };
                offset += record.len() as u64;
                if r.seq > self.acked {
                    let seq = r.seq;
                    out.push(r);
                    if out.len() == max {
                        self.read_from
                            .set(Some((seq + 1, segment.first_seq, offset)));
                        return Ok(out);
                    }
                }
            }
            offset = 0;
        }
        self.read_from.set(None);
        Ok(out)
    }

    /// Age of the oldest unacknowledged event, in seconds.
    pub fn oldest_age_seconds(&self) -> Result<u64, SpoolError> {
        Ok(self
            .pending(1)?
            .first()
            .map_or(0, |r| now_ms().saturating_sub(r.spooled_at_ms) / 1000))
    }

    /// Records that the server acknowledged everything up to `seq`; deletes spent segments.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        assert!(
            seq < self.next_seq,
            "cannot acknowledge what was never spooled"
        );
        if seq <= self.acked {
            return Ok(());
        }
        let tmp = self.dir.join("acked.tmp");
        let mut bytes = seq.to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        let target = self.dir.join(ACKED_FILE);
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&self.dir)?;
        self.acked = seq;
        // A segment is spent when the next one starts at or before the cursor + 1.
        while self.segments.len() > 1 && self.segments[1].first_seq <= self.acked + 1 {
            let spent = self.segments.remove(0);
            std::fs::remove_file(&spent.path).map_err(io(&spent.path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize, tag: &str) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"e\":\"{tag}{i}\"}}").into_bytes())
            .collect()
    }

    #[test]
    fn records_survive_reopen_and_ack_advances() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 100).unwrap();
            assert_eq!(spool.append(&payloads(3, "a")).unwrap(), 1..4);
            assert_eq!(spool.append(&payloads(2, "b")).unwrap(), 4..6);
            spool.ack(2).unwrap();
        }
        let mut spool = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(spool.backlog(), 3);
        let pending = spool.pending(10).unwrap();
        assert_eq!(pending.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(pending[0].payload, b"{\"e\":\"a2\"}");
        spool.ack(5).unwrap();
        assert!(spool.pending(10).unwrap().is_empty());
        assert_eq!(spool.append(&payloads(1, "c")).unwrap(), 6..7);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_never_forwarded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 100).unwrap();
            let _ = spool.append(&payloads(3, "x")).unwrap();
        }
        let seg = dir.path().join(segment_name(1));
        let full = std::fs::read(&seg).unwrap();
        for cut in [1, 5, HEADER + 2] {
            std::fs::write(&seg, &full[..full.len() - cut]).unwrap();
            let spool = Spool::open(dir.path(), 100).unwrap();
            assert_eq!(spool.backlog(), 2, "cut {cut}");
            assert_eq!(
                std::fs::metadata(&seg).unwrap().len() as usize,
                full.len() / 3 * 2
            );
        }
        // A flipped byte in the last record fails its checksum.
        let mut spool = Spool::open(dir.path(), 100).unwrap();
        let _ = spool.append(&payloads(1, "y")).unwrap();
        drop(spool);
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xFF;
        std::fs::write(&seg, &bytes).unwrap();
        let spool = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(spool.backlog(), 2);
        // Garbage appended after valid records is cut too.
        drop(spool);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0xFF; 40]).unwrap();
        let spool = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(spool.pending(10).unwrap().len(), 2);
    }

    #[test]
    fn the_spool_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 5).unwrap();
        let _ = spool.append(&payloads(4, "a")).unwrap();
        assert!(matches!(
            spool.append(&payloads(2, "b")),
            Err(SpoolError::Full(4))
        ));
        spool.ack(4).unwrap();
        let _ = spool.append(&payloads(5, "c")).unwrap();
    }

    #[test]
    fn spent_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        let big = vec![vec![b'x'; 60_000]; 100];
        for _ in 0..3 {
            let _ = spool.append(&big).unwrap();
        }
        let count = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("seg-")
                })
                .count()
        };
        assert!(count() >= 2);
        spool.ack(300).unwrap();
        assert_eq!(count(), 1);
        assert_eq!(spool.backlog(), 0);
        let spool = Spool::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(spool.backlog(), 0);
    }

    #[test]
    fn reading_on_in_batches_across_segments_sees_every_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        let big = |tag: &str| {
            (0..150)
                .map(|i| format!("{tag}{i:>60000}").into_bytes())
                .collect::<Vec<_>>()
        };
        for tag in ["a", "b", "c"] {
            let _ = spool.append(&big(tag)).unwrap();
        }
        let mut seen = Vec::new();
        loop {
            let batch = spool.pending(7).unwrap();
            let Some(last) = batch.last() else { break };
            let last = last.seq;
            seen.extend(batch.iter().map(|r| r.seq));
            // A failed forward re-reads the same records (no ack in between).
            if last == 70 {
                let again = spool.pending(7).unwrap();
                assert_eq!(again.first().unwrap().seq, 64);
            }
            spool.ack(last).unwrap();
        }
        assert_eq!(seen, (1..=450).collect::<Vec<_>>());
    }

    #[test]
    fn a_corrupt_cursor_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACKED_FILE), [1, 2, 3]).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 10),
            Err(SpoolError::Corrupt(_))
        ));
    }
}

#[cfg(test)]
mod model {
    use super::*;

    /// Random appends, reads (forwarder batches and status peeks), acks and reopens, checked
    /// against the obvious model: the forwarder sees every record once, in order.
    #[test]
    fn the_forwarder_sees_every_record_in_order_whatever_happens() {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
            let mut appended = 0u64;
            let mut forwarded: Vec<u64> = Vec::new();
            for _ in 0..400 {
                match rand(10) {
                    0..=3 => {
                        let n = 1 + rand(50) as usize;
                        let size = if rand(4) == 0 { 40_000 } else { 100 };
                        let batch: Vec<Vec<u8>> =
                            (0..n).map(|i| vec![b'a' + (i % 26) as u8; size]).collect();
                        let range = spool.append(&batch).unwrap();
                        assert_eq!(range.start, appended + 1);
                        appended = range.end - 1;
                    }
                    4..=6 => {
                        let batch = spool.pending(1 + rand(30) as usize).unwrap();
                        if let Some(last) = batch.last().map(|r| r.seq) {
                            let expected: Vec<u64> = (spool.acked() + 1..=last).collect();
                            assert_eq!(
                                batch.iter().map(|r| r.seq).collect::<Vec<_>>(),
                                expected,
                                "round {round}"
                            );
                            if rand(3) > 0 {
                                forwarded.extend(&expected);
                                spool.ack(last).unwrap();
                            }
                        }
                    }
                    7 => {
                        let _ = spool.oldest_age_seconds().unwrap();
                    }
                    8 => {
                        drop(spool);
                        spool = Spool::open(dir.path(), u64::MAX).unwrap();
                    }
                    _ => {
                        let peek = spool.pending(1).unwrap();
                        if let Some(r) = peek.first() {
                            assert_eq!(r.seq, spool.acked() + 1);
                        }
                    }
                }
            }
            let rest = spool.pending(usize::MAX).unwrap();
            forwarded.extend(rest.iter().map(|r| r.seq));
            assert_eq!(
                forwarded,
                (1..=appended).collect::<Vec<_>>(),
                "round {round}"
            );
        }
    }
}
