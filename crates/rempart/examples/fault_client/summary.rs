//! The summary step: what the node said, from `answers.tsv`.
//!
//! - every answer by status and error code, with the `Retry-After` values that came with it;
//! - per mark (a moment a script names, e.g. `freed=<unix ms>`), the delay to the first
//!   acknowledgement at or after it;
//! - from each batch's history, the answers that were not true: a batch answered "not stored"
//!   (a refusal that is not the outcome-unknown kind) on every attempt before the one whose
//!   answer counts it as `duplicates` was in fact stored by one of those attempts. A batch whose
//!   resend finds only some of its events counts as partly stored.

use std::collections::BTreeMap;
use std::path::Path;

use crate::record::{ANSWERS_FILE, Attempt};

/// Whether an answer leaves the batch's fate unknown: no answer at all, a 500 (whose message
/// says the batch may be stored), or an error code that says the outcome is unknown (SPEC: its
/// own code; any code containing `unknown` counts).
pub fn outcome_unknown(a: &Attempt) -> bool {
    matches!(a.code.as_str(), "no_answer" | "timeout")
        || a.status == 500
        || a.code.contains("unknown")
}

/// An answer that says, by SPEC, that nothing of the batch was stored: any refusal with an
/// answer that is not of the outcome-unknown kind.
pub fn says_not_stored(a: &Attempt) -> bool {
    a.status >= 400 && !outcome_unknown(a)
}

#[derive(Debug, Default, PartialEq)]
pub struct Truth {
    /// Batches answered "not stored" on every earlier attempt, then found stored.
    pub false_not_stored_batches: u64,
    /// The "not stored" answers those batches got.
    pub false_not_stored_answers: u64,
    /// The error codes of those answers.
    pub false_codes: BTreeMap<String, u64>,
    /// Batches a resend found stored after an attempt without a known outcome (as it should).
    pub stored_before_unknown: u64,
    /// Batches a resend found partly stored (0 < duplicates < batch size).
    pub partly_stored_before: u64,
    /// Batches counted duplicate on their first attempt (ids reused: a set-up error).
    pub duplicate_first_time: u64,
}

/// Reads the truthfulness of the answers out of every batch's attempts (`attempts` in file
/// order; a batch's attempts outside them are not looked at).
pub fn truth(attempts: &[&Attempt], batch_events: u64) -> Truth {
    let mut truth = Truth::default();
    let mut history: BTreeMap<(u64, u64), Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        history.entry((a.client, a.batch)).or_default().push(a);
    }
    for tries in history.values() {
        let Some((ok, earlier)) = tries
            .iter()
            .position(|a| a.code == "ok")
            .map(|i| (tries[i], &tries[..i]))
        else {
            continue;
        };
        if ok.duplicates == 0 {
            continue;
        }
        if earlier.is_empty() {
            truth.duplicate_first_time += 1;
        } else if ok.duplicates < batch_events {
            truth.partly_stored_before += 1;
        }
        // An attempt that never reached the node (connection refused) stored nothing.
        let reached: Vec<_> = earlier
            .iter()
            .filter(|a| !a.code.starts_with("connect_"))
            .collect();
        if reached.iter().any(|a| outcome_unknown(a)) {
            truth.stored_before_unknown += 1;
        } else if !reached.is_empty() && reached.iter().all(|a| says_not_stored(a)) {
            truth.false_not_stored_batches += 1;
            for a in reached {
                truth.false_not_stored_answers += 1;
                *truth.false_codes.entry(a.code.clone()).or_default() += 1;
            }
        }
    }
    truth
}

pub fn read(dir: &Path) -> Result<Vec<Attempt>, String> {
    let path = dir.join(ANSWERS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| {
            Attempt::parse(l).ok_or_else(|| format!("{}:{}: {l:?}", path.display(), i + 2))
        })
        .collect()
}

/// Answers by `status code`, each with its `Retry-After` values.
pub fn by_kind(attempts: &[&Attempt]) -> BTreeMap<String, (u64, BTreeMap<String, u64>)> {
    let mut kinds: BTreeMap<String, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for a in attempts {
        let kind = kinds.entry(format!("{} {}", a.status, a.code)).or_default();
        kind.0 += 1;
        if let Some(r) = &a.retry_after {
            *kind.1.entry(r.clone()).or_default() += 1;
        }
    }
    kinds
}

/// Prints the summary of the answers inside `window`; `marks` are `(name, unix ms)`.
pub fn print(attempts: &[Attempt], batch_events: u64, window: (u64, u64), marks: &[(String, u64)]) {
    let inside: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.unix_ms >= window.0 && a.unix_ms < window.1)
        .collect();
    println!("answers: {} in the window", inside.len());
    for (kind, (count, retry)) in by_kind(&inside) {
        let retry: Vec<String> = retry.iter().map(|(v, n)| format!("{v}s×{n}")).collect();
        let retry = if retry.is_empty() {
            String::new()
        } else {
            format!("  Retry-After {}", retry.join(" "))
        };
        println!("  {count:>8}  {kind}{retry}");
    }
    for (name, at) in marks {
        match attempts
            .iter()
            .filter(|a| a.code == "ok" && a.unix_ms >= *at)
            .map(|a| a.unix_ms)
            .min()
        {
            Some(ok) => println!("mark {name}: first_ack_after_ms={}", ok - at),
            None => println!("mark {name}: first_ack_after_ms=none"),
        }
    }
    let t = truth(&inside, batch_events);
    let codes: Vec<String> = t
        .false_codes
        .iter()
        .map(|(c, n)| format!("{c}×{n}"))
        .collect();
    println!(
        "truth: false_not_stored_batches={} false_not_stored_answers={} ({}) stored_before_unknown={} partly_stored_before={} duplicate_first_time={}",
        t.false_not_stored_batches,
        t.false_not_stored_answers,
        codes.join(" "),
        t.stored_before_unknown,
        t.partly_stored_before,
        t.duplicate_first_time
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(batch: u64, status: u16, code: &str, duplicates: u64) -> Attempt {
        Attempt {
            unix_ms: 0,
            client: 0,
            batch,
            attempt: 1,
            status,
            code: code.into(),
            retry_after: None,
            accepted: 10 - duplicates,
            duplicates,
            latency_ms: 0.0,
        }
    }

    #[test]
    fn a_refusal_then_duplicates_is_a_false_not_stored() {
        let attempts = [
            // Refused twice, then found stored: both refusals were false.
            a(0, 503, "storage_unavailable", 0),
            a(0, 0, "connect_refused", 0),
            a(0, 503, "storage_unavailable", 0),
            a(0, 200, "ok", 10),
            // No answer, then found stored: as it should be.
            a(1, 0, "no_answer", 0),
            a(1, 200, "ok", 10),
            // The outcome-unknown code, then found stored: true.
            a(2, 503, "commit_outcome_unknown", 0),
            a(2, 200, "ok", 10),
            // Refused, then stored by the resend: true.
            a(3, 503, "storage_unavailable", 0),
            a(3, 200, "ok", 0),
            // Half there before the resend.
            a(4, 0, "no_answer", 0),
            a(4, 200, "ok", 5),
            // Duplicates at the first attempt.
            a(5, 200, "ok", 10),
        ];
        let t = truth(&attempts.iter().collect::<Vec<_>>(), 10);
        assert_eq!(
            t,
            Truth {
                false_not_stored_batches: 1,
                false_not_stored_answers: 2,
                false_codes: [("storage_unavailable".to_owned(), 2)].into(),
                stored_before_unknown: 3,
                partly_stored_before: 1,
                duplicate_first_time: 1,
            }
        );
    }
}
