//! What a newcomer meets at the command line: `token create` run twice, errors that name their
//! cause without a backtrace, a port in use reported before anything is written, and logs
//! without colour codes when they go to a file.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rempart(args: &[&str], data: &Path) -> Output {
    Command::new(common::binary())
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_BACKTRACE", "1")
        .env_remove("REMPART_DATA")
        .output()
        .expect("run rempart")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An error ends stderr as one line, `Error: ` and its causes, each once, even with RUST_BACKTRACE=1 in
/// the environment (returned from `main`, anyhow printed a backtrace of 20 frames). Log lines
/// may come before it.
fn assert_plain_error(out: &Output, expected: &str) {
    assert!(!out.status.success(), "succeeded: {out:?}");
    let text = stderr(out);
    let last = text.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("Error: "), "{text}");
    assert!(last.contains(expected), "expected {expected:?} in: {text}");
    assert!(!text.to_lowercase().contains("backtrace"), "{text}");
    // Each cause once ("cannot listen on A: Address in use: Address in use" repeated the cause
    // that the library's message already holds).
    let parts: Vec<&str> = last.split(": ").collect();
    let unique: std::collections::HashSet<&&str> = parts.iter().collect();
    assert_eq!(unique.len(), parts.len(), "a cause is repeated: {last}");
}

/// README's "Trying it" runs `token create NAME --replace`: pasted twice, it gives a token both
/// times (the second replaces the first) instead of refusing the name and leaving `TOKEN` empty.
#[test]
fn token_create_replace_gives_a_new_token_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let create = ["token", "create", "depot-paris-15", "--replace"];
    let first = rempart(&create, &data);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = rempart(&create, &data);
    assert!(second.status.success(), "{}", stderr(&second));
    let (first, second) = (stdout(&first), stdout(&second));
    assert!(first.starts_with("rmp_") && second.starts_with("rmp_"));
    assert_ne!(first, second);
    let list = rempart(&["token", "list"], &data);
    assert_eq!(stdout(&list), "depot-paris-15");
    let stored = std::fs::read_to_string(data.join("tokens")).unwrap();
    assert!(!stored.contains(&second[4..]), "only the digest is stored");

    // Without --replace, the name taken is refused, plainly.
    let again = rempart(&["token", "create", "depot-paris-15"], &data);
    assert_plain_error(&again, "a token named \"depot-paris-15\" exists already");
    assert!(stdout(&again).is_empty());
}

/// `serve` on ports the system chooses.
const SERVE_ANY_PORT: [&str; 5] = [
    "serve",
    "--public",
    "127.0.0.1:0",
    "--ingest",
    "127.0.0.1:0",
];

/// A data directory that cannot be created, or a store that cannot be opened in it, is named
/// with what was being done (it was "storage: I/O error: …" without a path). The store names
/// its paths; this checks what the binary prints.
#[test]
fn an_unusable_data_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path under a regular file cannot be a directory (permissions would not do: tests may run
    // as root).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let data = file.join("data");
    let out = rempart(&SERVE_ANY_PORT, &data);
    assert_plain_error(
        &out,
        &format!("the store directory {}", data.join("events").display()),
    );

    // The store's own directory is a file.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("events"), "").unwrap();
    let out = rempart(&SERVE_ANY_PORT, &data);
    assert_plain_error(
        &out,
        &format!("the store directory {}", data.join("events").display()),
    );
}

/// A port in use is reported before the data directory is created (it was created first, then
/// the bind failed).
#[test]
fn a_port_in_use_is_reported_before_anything_is_written() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        ["serve", "--public", &addr, "--ingest", "127.0.0.1:0"],
        ["serve", "--public", "127.0.0.1:0", "--ingest", &addr],
    ] {
        let out = rempart(&args, &data);
        assert_plain_error(&out, &format!("cannot listen on {addr}"));
        assert!(!data.exists(), "the data directory was created");
    }
}

/// Logs written to a file (stderr not a terminal) carry no ANSI colour codes.
#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rempart.log");
    let mut child = Command::new(common::binary())
        .args([
            "serve",
            "--public",
            "127.0.0.1:0",
            "--ingest",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("REMPART_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rempart serve");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines
        .map_while(Result::ok)
        .any(|l| l.starts_with("rempart listening "));
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());
    assert!(listening, "the node did not start");
    let text = std::fs::read_to_string(&log).unwrap();
    // The node logged at info level (the warning about tokens, "serving", "stopped")…
    assert!(text.contains("serving"), "{text}");
    // …without escape sequences.
    assert!(!text.contains('\u{1b}'), "{text:?}");
}
