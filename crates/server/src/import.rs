//! `rempart import FILE`: a bulk path into the store for large fills (benchmarks, migrations),
//! with the ingest API's rules and none of its HTTP. Each line is an ingest line, validated by
//! the same parser (`parse_event_line`); events go to `EventStore::append` in batches of
//! [`MAX_BATCH_EVENTS`], so `event_id` idempotency holds as for ingest: importing a file twice,
//! or resuming after an interruption or an error, stores nothing twice.
//!
//! Unlike one ingest batch, a file is not all or nothing: batches before an invalid line stay
//! stored, and the error names the line; fix it and import the file again (what was stored
//! counts as duplicates). Run it while no node serves the data directory: it removes the
//! existence filter's snapshot first (the next start rebuilds the filter, see docs/shield.md).

use std::io::BufRead;

use rempart_domain::{Event, parse_event_line};
use rempart_store::{EventStore, MAX_BATCH_EVENTS};

use crate::guard::snapshot;
use crate::node::{ServeError, StoreOpener};
use crate::settings::Settings;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(
        "line {line}: {message} (the {stored} lines before it are stored; importing again is safe)"
    )]
    Invalid {
        line: u64,
        message: String,
        stored: u64,
    },
    #[error("cannot read the input: {0}")]
    Read(std::io::Error),
    #[error("cannot remove the existence filter's snapshot: {0}")]
    Snapshot(std::io::Error),
}

/// Imports every line of `input` into the store `open` gives.
pub fn run(
    settings: Settings,
    open: StoreOpener,
    input: impl BufRead,
) -> Result<Imported, ImportError> {
    snapshot::discard(&settings.store.data).map_err(ImportError::Snapshot)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| ImportError::Serve(ServeError::Runtime(e)))?;
    rt.block_on(async move {
        let store = open(settings).await.map_err(ServeError::Store)?;
        import(store.events.as_ref(), input).await
    })
}

async fn import(store: &dyn EventStore, input: impl BufRead) -> Result<Imported, ImportError> {
    let mut done = Imported::default();
    let mut batch: Vec<Event> = Vec::with_capacity(MAX_BATCH_EVENTS);
    let now = crate::clock::now();
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line.map_err(ImportError::Read)?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = parse_event_line(line, now).map_err(|e| ImportError::Invalid {
            line: i as u64 + 1,
            message: e.to_string(),
            stored: done.lines,
        })?;
        batch.push(event);
        if batch.len() == MAX_BATCH_EVENTS {
            append(store, std::mem::take(&mut batch), &mut done).await?;
        }
    }
    append(store, batch, &mut done).await?;
    Ok(done)
}

async fn append(
    store: &dyn EventStore,
    batch: Vec<Event>,
    done: &mut Imported,
) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    let lines = batch.len() as u64;
    let outcome = store.append(batch).await.map_err(ServeError::Store)?;
    done.lines += lines;
    done.accepted += outcome.accepted as u64;
    done.duplicates += outcome.duplicates as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn line(id: &str, tn: &str) -> String {
        format!(
            "{{\"event_id\":\"{id}\",\"tracking_number\":\"{tn}\",\"code\":\"PC1\",\"occurred_at\":\"2025-12-22T07:02:11+01:00\"}}\n"
        )
    }

    #[tokio::test]
    async fn lines_are_imported_once_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = rempart_store::embedded::EmbeddedStore::open(
            dir.path(),
            rempart_store::embedded::EmbeddedOptions::default(),
        )
        .unwrap();
        let store: Arc<dyn EventStore> = Arc::new(store);
        let mut input = String::new();
        for i in 0..25_000 {
            input.push_str(&line(&format!("e{i}"), "RR123456785FR"));
        }
        input.push_str("\r\n");
        input.push_str(&line("e0", "6A12345678905"));
        let done = import(store.as_ref(), input.as_bytes()).await.unwrap();
        assert_eq!(
            (done.lines, done.accepted, done.duplicates),
            (25_001, 25_000, 1)
        );
        let again = import(store.as_ref(), input.as_bytes()).await.unwrap();
        assert_eq!(
            (again.accepted, again.duplicates),
            (0, 25_001),
            "idempotent"
        );

        let bad = format!(
            "{}{}",
            line("x1", "6A12345678905"),
            line("x2", "RR123456789FR")
        );
        match import(store.as_ref(), bad.as_bytes()).await {
            Err(ImportError::Invalid {
                line: 2, stored: 0, ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
