//! The fuzz corpora as regression tests, on stable: every file of `fuzz/corpus/<target>/` (the
//! committed seeds) and `fuzz/regressions/<target>/` (inputs that once crashed a target) goes
//! through the same target body the fuzzer runs (`fuzz/src/lib.rs`, compiled here as a module),
//! so a fixed crash stays fixed without nightly or libFuzzer. `scripts/fuzz` does the fuzzing.

#[path = "../../../fuzz/src/lib.rs"]
mod bodies;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the directory does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let mut failures = Vec::new();
    for (target, body) in bodies::TARGETS {
        let seeds = inputs("corpus", target);
        assert!(seeds.len() >= 5, "{target}: seed corpus missing or tiny");
        for file in seeds.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(file).expect("read a corpus file");
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
}

/// A directory under `fuzz/corpus/` or `fuzz/regressions/` that names no target would never be
/// replayed: a renamed target must take its corpus along.
#[test]
fn every_corpus_directory_names_a_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                bodies::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} is not a target"
            );
        }
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("corpus").join(target).join(name)).expect("the seed exists")
}

/// The fuzzer reaches the deep paths by mutating valid inputs: these seeds must stay accepted as
/// the parsers evolve (a seed that is refused at the first byte explores nothing).
#[test]
fn the_valid_seeds_are_accepted() {
    use rempart_server::listener::{MAX_HEAD_BYTES, MAX_HEADERS};
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let head = seed("http_head", "get_lookup");
    assert!(matches!(
        rempart_server::edge::parse_head(&head, &mut slots, MAX_HEAD_BYTES),
        Ok(Some(_))
    ));
    let batch = seed("ingest_batch", "two_lines");
    let events = rempart_server::ingest::events::parse_batch(&batch, bodies::NOW);
    assert_eq!(events.map(|e| e.len()), Ok(2));
    let line = seed("event_line", "full");
    assert!(rempart_domain::parse_event_line(&line, bodies::NOW).is_ok());
    let typed = seed("tracking_number", "typed_groups");
    assert!(rempart_domain::TrackingNumber::parse_typed_bytes(&typed).is_ok());
    let pass = String::from_utf8(seed("shield_challenge", "pass")).expect("hex");
    assert!(bodies::issued_pass_checks(&pass));
    let csv = seed("depot_entry", "csv_plain");
    assert!(rempart_depot::entry::csv(&csv[1..], "d", bodies::NOW).is_ok());
}
