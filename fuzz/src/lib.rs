//! The bodies of the fuzz targets, one function per parser of untrusted bytes, each checking
//! properties beyond "does not panic" where one is cheap (accepted input round-trips, a refusal
//! is one the caller expects, corrupted storage never yields data that was not written).
//!
//! Compiled twice: by the fuzz crate (`fuzz_targets/*.rs` call these functions under libFuzzer)
//! and, through `#[path]`, by the stable regression test `crates/rempart/tests/fuzz_corpus.rs`,
//! which replays every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through
//! [`TARGETS`]. So this file uses only what both places have: the Rempart crates, `tempfile`
//! and `std`.

use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::OnceLock;

use rempart_depot::entry;
use rempart_depot::spool::{Record, Spool};
use rempart_domain::{
    LOCATION_MAX_CHARS, PRODUCT_MAX_CHARS, Timestamp, TrackingNumber, is_invisible_format,
    parse_event_line,
};
use rempart_server::edge::{MAX_BODY, parse_head};
use rempart_server::ingest::events::{BatchError, MAX_BATCH_LINES, parse_batch};
use rempart_server::listener::{MAX_HEAD_BYTES, MAX_HEADERS};
use rempart_shield::Challenges;

/// A target's body: one input, panics when a property fails.
pub type Body = fn(&[u8]);

/// Every target by name: the name is its `fuzz_targets/<name>.rs` and its corpus directories.
pub const TARGETS: &[(&str, Body)] = &[
    ("http_head", http_head),
    ("ingest_batch", ingest_batch),
    ("event_line", event_line),
    ("tracking_number", tracking_number),
    ("shield_challenge", shield_challenge),
    ("depot_entry", depot_entry),
    ("depot_spool", depot_spool),
];

/// The receiver's clock for every parser that reads one: 2025-12-29T09:20:00Z.
pub const NOW: Timestamp = Timestamp(1_767_000_000_000_000);

/// The public listener's request-head parser, with the listener's own limits.
pub fn http_head(data: &[u8]) {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let (req, framing) = match parse_head(data, &mut slots, MAX_HEAD_BYTES) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(data.len() < MAX_HEAD_BYTES, "a partial head is bounded");
            return;
        }
        Err(refusal) => {
            let status = refusal.status.as_u16();
            assert!(matches!(status, 400 | 411 | 413 | 417 | 431), "{status}");
            return;
        }
    };
    assert!(framing.head_len <= data.len() && framing.head_len <= MAX_HEAD_BYTES);
    assert!(framing.body_len <= MAX_BODY);
    assert_eq!(framing.head_only, req.method == "HEAD");
    assert!(!framing.expect_continue || framing.body_len > 0);
    let body = data.get(framing.head_len..framing.request_len());
    assert_eq!(
        req.body,
        body.unwrap_or_default(),
        "the body is all there or not yet"
    );
    assert!(!req.path.contains(['?', '#']) && !req.query.contains('#'));
    let (method, path, query) = (req.method, req.path, req.query);
    // Framing depends on the request alone, never on the bytes pipelined after it.
    let own = &data[..framing.request_len().min(data.len())];
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let (again, framing_again) = parse_head(own, &mut slots, MAX_HEAD_BYTES)
        .expect("the request alone is accepted")
        .expect("the request alone is complete");
    assert_eq!(framing_again, framing);
    assert_eq!(
        (again.method, again.path, again.query),
        (method, path, query)
    );
}

/// The ingest batch splitter: lines are numbered as sent, every accepted batch re-encodes to
/// itself, and a refusal names the first bad line.
pub fn ingest_batch(data: &[u8]) {
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    match parse_batch(data, NOW) {
        Ok(events) => {
            assert!(events.len() <= MAX_BATCH_LINES);
            let sent: Vec<&[u8]> = lines.iter().copied().filter(|l| !is_blank(l)).collect();
            assert_eq!(events.len(), sent.len());
            for (event, line) in events.iter().zip(&sent) {
                assert_eq!(parse_event_line(line, NOW).as_ref(), Ok(event));
            }
            let canonical: Vec<String> = events.iter().map(|e| e.to_json_line()).collect();
            let again = parse_batch(canonical.join("\n").as_bytes(), NOW);
            assert_eq!(again.as_ref(), Ok(&events), "a batch re-encodes to itself");
        }
        Err(BatchError::Invalid { line, .. }) => {
            assert!(
                line >= 1 && line <= lines.len(),
                "line {line} of {}",
                lines.len()
            );
            let bad = lines[line - 1];
            assert!(!is_blank(bad) && parse_event_line(bad, NOW).is_err());
            for earlier in lines[..line - 1].iter().filter(|l| !is_blank(l)) {
                assert!(
                    parse_event_line(earlier, NOW).is_ok(),
                    "not the first bad line"
                );
            }
        }
        Err(BatchError::TooManyLines) => {
            assert!(lines.iter().filter(|l| !is_blank(l)).count() > MAX_BATCH_LINES);
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// One ingest line: an accepted event serialises to a line that parses back to itself, within
/// the documented bounds.
pub fn event_line(data: &[u8]) {
    let Ok(event) = parse_event_line(data, NOW) else {
        return;
    };
    let id = event.event_id.as_str();
    assert!((1..=128).contains(&id.len()) && id.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    for (text, max) in [
        (&event.location, LOCATION_MAX_CHARS),
        (&event.product, PRODUCT_MAX_CHARS),
    ] {
        if let Some(text) = text {
            assert!(!text.is_empty() && text.trim() == text && text.chars().count() <= max);
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() || is_invisible_format(c))
            );
        }
    }
    assert!(event.occurred_at.micros() >= 946_684_800_000_000);
    let line = event.to_json_line();
    assert_eq!(parse_event_line(line.as_bytes(), NOW), Ok(event));
}

/// Tracking numbers, strict and typed: what parses is canonical (13 upper-case ASCII letters
/// and digits) and parses again to itself; a typed number that parses normalises to one the
/// strict parser accepts; whatever the strict parser accepts, the typed one does too.
pub fn tracking_number(data: &[u8]) {
    let strict = TrackingNumber::parse_bytes(data);
    if let Ok(tn) = &strict {
        assert_canonical(tn);
        let trimmed = data.trim_ascii().to_ascii_uppercase();
        assert_eq!(tn.as_bytes().as_slice(), trimmed.as_slice());
    }
    let typed = TrackingNumber::parse_typed_bytes(data);
    if let Ok(tn) = &typed {
        assert_canonical(tn);
    }
    if strict.is_ok() && data.len() <= rempart_domain::TYPED_MAX_BYTES {
        assert_eq!(typed, strict, "typing is a superset of the strict form");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(TrackingNumber::parse(text), strict);
        assert_eq!(TrackingNumber::parse_typed(text), typed);
    }
}

fn assert_canonical(tn: &TrackingNumber) {
    let bytes = tn.as_bytes();
    assert!(
        bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    assert_eq!(TrackingNumber::parse(tn.as_str()).as_ref(), Ok(tn));
    assert_eq!(TrackingNumber::from_bytes(bytes).as_ref(), Ok(tn));
}

/// The network a fixed challenge and pass are bound to.
const NET: &[u8] = &[192, 0, 2, 0];
/// When the fixed challenge was issued, and when the fuzzer's answers arrive (within its TTL).
const ISSUED_AT: u64 = 1_000_000;
const ANSWERED_AT: u64 = ISSUED_AT + 10;

struct Issued {
    challenges: Challenges,
    seed: String,
    pass: String,
}

/// One node's challenges with a fixed secret, a challenge it issued and the pass it earned.
fn issued() -> &'static Issued {
    static ISSUED: OnceLock<Issued> = OnceLock::new();
    ISSUED.get_or_init(|| {
        let challenges = Challenges::new(Some([7; 32]), 8, 60, 3_600);
        let seed = challenges.issue(NET, ISSUED_AT).seed;
        let nonce = rempart_shield::solve(&seed, 8);
        let (pass, _) = challenges
            .redeem(NET, &seed, &nonce, ANSWERED_AT)
            .expect("a solved challenge earns a pass");
        Issued {
            challenges,
            seed,
            pass,
        }
    })
}

/// Whether the fixed node accepts `pass` now (for the test that keeps the seeds valid).
pub fn issued_pass_checks(pass: &str) -> bool {
    issued().challenges.check_pass(NET, pass, ANSWERED_AT)
}

/// The proof-of-work parsers: a pass (cookie or header value) and a challenge answer (seed and
/// nonce, split at the first newline). Only the exact issued pass is accepted (hex, any case);
/// an answer is accepted only for the issued seed, and earns a pass that checks.
pub fn shield_challenge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let issued = issued();
    let c = &issued.challenges;
    if c.check_pass(NET, text, ANSWERED_AT) {
        assert_eq!(
            text.to_ascii_lowercase(),
            issued.pass,
            "only the issued pass"
        );
    }
    let (seed, nonce) = text.split_once('\n').unwrap_or((text, "0"));
    if let Ok((pass, expires)) = c.redeem(NET, seed, nonce, ANSWERED_AT) {
        assert_eq!(
            seed.to_ascii_lowercase(),
            issued.seed,
            "only the issued seed"
        );
        assert!((1..=32).contains(&nonce.len()));
        assert_eq!(expires, ANSWERED_AT + 3_600);
        assert!(c.check_pass(NET, &pass, ANSWERED_AT));
        assert!(!c.check_pass(&[198, 51, 100, 0], &pass, ANSWERED_AT));
    }
}

/// The depot's entry, NDJSON or CSV (the first byte chooses): what is accepted is spooled as the
/// event's canonical line, which parses back to the same event; CSV fields split and rejoin.
pub fn depot_entry(data: &[u8]) {
    let Some((&mode, line)) = data.split_first() else {
        return;
    };
    let accepted = match mode % 3 {
        0 => entry::ndjson(line, "depot-17", NOW),
        1 => entry::csv(line, "depot-17", NOW),
        _ => {
            csv_line(line);
            return;
        }
    };
    if let Ok((event, spooled)) = accepted {
        assert!(spooled.len() <= rempart_depot::spool::MAX_PAYLOAD);
        assert_eq!(parse_event_line(&spooled, NOW), Ok(event));
    }
}

/// CSV splitting: at most as many fields as the header has, and fields quoted back and split
/// again are the same fields.
fn csv_line(line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    if let Ok(fields) = entry::csv_fields(text) {
        assert!(
            fields.len() <= entry::CSV_HEADER.len(),
            "{} fields",
            fields.len()
        );
        let quoted: Vec<String> = fields
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        assert_eq!(entry::csv_fields(&quoted.join(",")), Ok(fields));
    }
    if entry::csv_header(text).is_ok() {
        let fields = entry::csv_fields(text.trim_end_matches('\r')).expect("a header splits");
        let names: Vec<&str> = fields.iter().map(|f| f.trim()).collect();
        assert_eq!(names, entry::CSV_HEADER[..names.len()]);
    }
}

/// Events in the spool segment the corruptions start from.
const SPOOLED: u64 = 6;

/// A valid spool: its segment's name and bytes, written by `Spool::append`, and what it holds.
fn written() -> &'static (String, Vec<u8>, Vec<Record>) {
    static WRITTEN: OnceLock<(String, Vec<u8>, Vec<Record>)> = OnceLock::new();
    WRITTEN.get_or_init(|| {
        let dir = scratch_dir();
        let mut spool = Spool::open(dir.path(), 1_000).expect("a fresh spool opens");
        let payloads: Vec<Vec<u8>> = (1..=SPOOLED)
            .map(|i| {
                format!(
                    "{{\"event_id\":\"d:{i}\",\"n\":\"{}\"}}",
                    "x".repeat(i as usize)
                )
            })
            .map(String::into_bytes)
            .collect();
        spool.append(&payloads[..2]).expect("append");
        spool.append(&payloads[2..]).expect("append");
        let records = spool.pending(usize::MAX).expect("read back");
        let entry = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .expect("one segment");
        let bytes = std::fs::read(entry.path()).expect("read the segment");
        let name = entry.file_name().to_string_lossy().into_owned();
        (name, bytes, records)
    })
}

/// A directory for one spool: in memory where the machine has /dev/shm (the fsyncs are cheap).
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    made.expect("a scratch directory")
}

/// The spool reader fed a corrupted segment: the valid segment, then (from the input) a cut
/// length, a cursor file, zeros after the end, and bytes XORed in at some offset. Opening and
/// reading must not panic, must return only records that were written, in order, from the
/// cursor on, and the spool must keep working: a new record lands after them.
pub fn depot_spool(data: &[u8]) {
    let [cut_lo, cut_hi, flags, at_lo, at_hi, mask @ ..] = data else {
        return;
    };
    let (name, valid, records) = written();
    let mut segment = valid.clone();
    segment.truncate(usize::from(u16::from_le_bytes([*cut_lo, *cut_hi])));
    if flags & 1 != 0 {
        segment.extend_from_slice(&[0; 64]);
    }
    if !segment.is_empty() {
        let at = usize::from(u16::from_le_bytes([*at_lo, *at_hi])) % segment.len();
        for (b, m) in segment[at..].iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    let dir = scratch_dir();
    std::fs::write(dir.path().join(name), &segment).expect("write the segment");
    let acked = u64::from(flags >> 2) % (SPOOLED + 2);
    if flags & 2 != 0 {
        let mut cursor = acked.to_le_bytes().to_vec();
        cursor.extend_from_slice(&crc32(&acked.to_le_bytes()).to_le_bytes());
        std::fs::write(dir.path().join("acked"), cursor).expect("write the cursor");
    }
    let Ok(mut spool) = Spool::open(dir.path(), 1_000) else {
        return;
    };
    let cursor = if flags & 2 != 0 { acked } else { 0 };
    let read = spool
        .pending(usize::MAX)
        .expect("a spool that opened reads");
    let same = |r: &Record, w: &Record| (r.seq, &r.payload) == (w.seq, &w.payload);
    for (i, r) in read.iter().enumerate() {
        let w = &records[(cursor + i as u64) as usize];
        assert!(same(r, w), "record {i}: {r:?} was never written as such");
    }
    let next = spool
        .append(&[b"after".to_vec()])
        .expect("append after a cut")
        .start;
    assert!(next > cursor && read.last().is_none_or(|r| next == r.seq + 1));
    drop(spool);
    let reopened = Spool::open(dir.path(), 1_000).expect("reopen");
    let again = reopened.pending(usize::MAX).expect("read again");
    assert_eq!(again.len(), read.len() + 1);
    assert!(again.iter().zip(&read).all(|(a, r)| same(a, r)));
    let last = again.last().expect("the new record");
    assert_eq!(
        (last.seq, last.payload.as_slice()),
        (next, b"after".as_slice())
    );
}

/// CRC-32 (IEEE), as the spool's cursor file uses: bitwise, the fuzz crate adds no dependency.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
