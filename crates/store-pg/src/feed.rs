//! The change feed (cross-node cache coherence): which parcels other nodes changed.
//!
//! Every event row takes a number from the `rempart_received_seq` sequence when it is inserted
//! (`received`). Numbers are handed out in the order rows are *inserted*, not the order their
//! transactions *commit*, so a reader can see number 12 before 11. The feed reads forward from
//! the highest number it has read (one index range scan of `(received, tracking_number)`, each
//! row about once) and remembers the numbers it skipped ([`PendingChanges`]): each call looks at
//! them again, and drops them once no transaction holding them can still be running (the
//! overlap window, [`crate::PgOptions::change_window`], longer than any append transaction,
//! which the statement timeout bounds). A skipped number is a transaction still running, or one
//! that never commits: a rolled-back append, or an event refused as a duplicate (`ON CONFLICT DO
//! NOTHING` takes its number before finding the conflict).
//!
//! The feed before this one re-read every row of the last 15 s at every poll (every 500 ms):
//! above ~670 parcels changed a second its page overflowed, and every node cleared its cache and
//! its filter answered "maybe" until rebuilt, while the re-reads cost the writer 17-22% of its
//! ingest rate (BENCHMARKS.md, issue 14).
//!
//! Trade-offs: it needs the sequence to hand out numbers in order (PostgreSQL's default, `CACHE
//! 1`; see docs/postgres-compat.md for the others), and one more index on the events table.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rempart_store::{ChangeCursor, Changes, PendingChanges, StoreError};

use crate::error::unavailable;
use crate::tracking_number;

/// Most runs of skipped numbers a cursor follows; past it the oldest are given up and the call
/// says it is not complete (the caller treats every parcel as changed). A run is one range,
/// whatever its length, so only many small interleavings reach it.
pub const MAX_PENDING_RUNS: usize = 10_000;

/// The number of a row visible before now minus twice the window: its number was taken before
/// now minus one window (an append transaction lasts less than one), so before any transaction
/// running now took its numbers. A fresh cursor starts there.
pub const START_SQL: &str = "SELECT received FROM rempart_events \
     WHERE ingested_at < to_timestamp(EXTRACT(EPOCH FROM now()) - $1::FLOAT8) \
     ORDER BY ingested_at DESC LIMIT 1";

/// The highest number taken so far (a resumed cursor must not be past it).
pub const HIGHEST_SQL: &str = "SELECT COALESCE(max(received), 0) FROM rempart_events";

/// The next rows after the cursor, in number order.
pub const FORWARD_SQL: &str = "SELECT received, tracking_number FROM rempart_events \
     WHERE received > $1 ORDER BY received LIMIT $2";

/// Rows whose numbers fall in the pending runs (`$1` firsts, `$2` lasts).
pub const PENDING_SQL: &str = "SELECT e.received, e.tracking_number \
     FROM unnest($1::INT8[], $2::INT8[]) AS p(first, last) \
     JOIN rempart_events e ON e.received >= p.first AND e.received <= p.last";

pub(crate) async fn changes_since(
    client: &deadpool_postgres::Object,
    cursor: &ChangeCursor,
    limit: usize,
    window: Duration,
) -> Result<Changes, StoreError> {
    let now = Instant::now();
    let mut next = cursor.clone();
    let after = match cursor.after {
        Some(after) => after,
        None => {
            let window_s = 2.0 * window.as_secs_f64();
            let start = client
                .query_opt(START_SQL, &[&window_s])
                .await
                .map_err(|e| unavailable("changes", &e))?;
            start.map_or(0, |row| row.get::<_, i64>(0))
        }
    };
    next.after = Some(after);
    if cursor.resumed {
        let highest: i64 = client
            .query_one(HIGHEST_SQL, &[])
            .await
            .map_err(|e| unavailable("changes", &e))?
            .get(0);
        if highest < after {
            // Not this database's position (replaced, or restored from a backup): nothing said
            // about the changes before now can be trusted.
            tracing::warn!(
                position = after,
                highest,
                "a resumed change cursor is ahead of the feed; starting from now"
            );
            return Ok(Changes {
                numbers: Vec::new(),
                next: ChangeCursor::default(),
                more: true,
                complete: false,
            });
        }
        next.resumed = false;
    }
    let mut numbers = HashSet::new();

    next.pending.retain(|p| p.until > now);
    if !next.pending.is_empty() {
        let firsts: Vec<i64> = next.pending.iter().map(|p| p.first).collect();
        let lasts: Vec<i64> = next.pending.iter().map(|p| p.last).collect();
        let rows = client
            .query(PENDING_SQL, &[&firsts, &lasts])
            .await
            .map_err(|e| unavailable("changes", &e))?;
        let mut seen = Vec::with_capacity(rows.len());
        for row in &rows {
            seen.push(row.get::<_, i64>(0));
            numbers.insert(tracking_number(row.get(1))?);
        }
        next.pending = without(&next.pending, &mut seen);
    }

    let rows = client
        .query(FORWARD_SQL, &[&after, &(limit as i64)])
        .await
        .map_err(|e| unavailable("changes", &e))?;
    let more = rows.len() >= limit;
    let mut last = after;
    for row in &rows {
        let received: i64 = row.get(0);
        if received > last + 1 {
            next.pending.push(PendingChanges {
                first: last + 1,
                last: received - 1,
                until: now + window,
            });
        }
        last = received;
        numbers.insert(tracking_number(row.get(1))?);
    }
    next.after = Some(last);

    let complete = next.pending.len() <= MAX_PENDING_RUNS;
    if !complete {
        let excess = next.pending.len() - MAX_PENDING_RUNS;
        next.pending.drain(..excess);
    }
    Ok(Changes {
        numbers: numbers.into_iter().collect(),
        next,
        more,
        complete,
    })
}

/// `pending` (ascending, disjoint) without the numbers in `seen`: a run split around each.
fn without(pending: &[PendingChanges], seen: &mut [i64]) -> Vec<PendingChanges> {
    seen.sort_unstable();
    let mut out = Vec::with_capacity(pending.len());
    let mut seen = seen.iter().copied().peekable();
    for run in pending {
        let mut first = run.first;
        while let Some(&number) = seen.peek() {
            if number > run.last {
                break;
            }
            seen.next();
            if number < first {
                continue;
            }
            if number > first {
                out.push(PendingChanges {
                    last: number - 1,
                    first,
                    ..*run
                });
            }
            first = number + 1;
        }
        if first <= run.last {
            out.push(PendingChanges { first, ..*run });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(ranges: &[(i64, i64)]) -> Vec<PendingChanges> {
        let until = Instant::now();
        ranges
            .iter()
            .map(|&(first, last)| PendingChanges { first, last, until })
            .collect()
    }

    fn ranges(runs: &[PendingChanges]) -> Vec<(i64, i64)> {
        runs.iter().map(|r| (r.first, r.last)).collect()
    }

    #[test]
    fn seen_numbers_split_their_runs() {
        let pending = runs(&[(3, 3), (10, 20), (30, 31)]);
        assert_eq!(
            ranges(&without(&pending, &mut [])),
            [(3, 3), (10, 20), (30, 31)]
        );
        assert_eq!(ranges(&without(&pending, &mut [3])), [(10, 20), (30, 31)]);
        assert_eq!(
            ranges(&without(&pending, &mut [15, 10, 20, 31])),
            [(3, 3), (11, 14), (16, 19), (30, 30)]
        );
        assert_eq!(
            ranges(&without(&pending, &mut [12, 11, 13])),
            [(3, 3), (10, 10), (14, 20), (30, 31)]
        );
        let all: Vec<i64> = (10..=20).collect();
        assert_eq!(
            ranges(&without(&pending, &mut all.clone())),
            [(3, 3), (30, 31)]
        );
    }

    #[test]
    fn a_run_keeps_its_deadline_when_split() {
        let until = Instant::now() + Duration::from_secs(7);
        let pending = [PendingChanges {
            first: 1,
            last: 9,
            until,
        }];
        assert!(without(&pending, &mut [5]).iter().all(|r| r.until == until));
    }
}
