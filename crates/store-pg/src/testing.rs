//! Helpers for tests that need a real PostgreSQL (feature `testing`). The tests never use, stop or
//! reconfigure a cluster they did not start: they run throwaway clusters of their own.
//!
//! - [`Cluster::start`] runs `initdb` (trust authentication, superuser `postgres`) into a new
//!   directory under the system's temporary directory and starts the server with `pg_ctl -w` on a
//!   free port of 127.0.0.1 (nothing else), its unix socket in that directory. The server binaries
//!   are the highest version under `/usr/lib/postgresql/*/bin` (Debian's layout), else those in
//!   `pg_config --bindir` (`scripts/ensure-postgres` installs the package). `fsync` is off: an
//!   immediate stop kills the server's processes, not the machine, and loses nothing acknowledged.
//! - As root (`initdb` and `postgres` refuse to run as root), every server command runs as the OS
//!   user `postgres` (Debian's package creates it), else `nobody`; the directory is given to it.
//! - A watcher process started with each cluster (`sh`, in a process group of its own, so a
//!   Ctrl-C in the terminal does not reach it) waits for the end of a pipe only this process
//!   writes to; when the pipe closes (the [`Cluster`] is dropped, or the test process ends in
//!   any way: a panic, `exit`, SIGKILL) it stops the server (`-m immediate`) and removes the
//!   directory. A `static` value is never dropped: the watcher is what stops the shared cluster.
//! - [`TestDatabase::create`] makes a database of its own in the test process's shared cluster
//!   ([`Cluster::shared`], started on first use). Tests that stop the database start a
//!   [`Cluster`] of their own ([`Cluster::stop`], [`Cluster::restart`]).
//! - Opt-in: with `REMPART_TEST_PG_URL=postgres://user@host:port`, [`TestDatabase::create`] makes
//!   its databases on that server instead (e.g. CockroachDB, docs/postgres-compat.md).

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);
static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);
static SHARED: OnceLock<Cluster> = OnceLock::new();

/// Free ports tried before giving up: another process may take the port between the probe
/// and the server's bind.
const PORT_ATTEMPTS: usize = 5;
/// Connections the server takes (the contract suite opens several pools at once).
const MAX_CONNECTIONS: u32 = 200;
/// Waits until the pipe closes, then stops the server and removes the cluster's directory.
/// `$0` is `pg_ctl`, `$1` the directory.
const WATCHER: &str = r#"cat >/dev/null
"$0" stop -D "$1/data" -m immediate -w >/dev/null 2>&1
rm -rf "$1""#;

/// How [`Cluster::stop`] stops the server (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Sessions are ended, then a clean shutdown.
    Fast,
    /// Every server process is killed at once; the next start runs crash recovery.
    Immediate,
}

/// The OS user the server runs as when the test process is root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// A throwaway PostgreSQL cluster of this test process; stopped and removed when dropped (or
/// when the process ends, by its watcher).
pub struct Cluster {
    bin: PathBuf,
    owner: Option<Owner>,
    dir: PathBuf,
    port: u16,
    watcher: Child,
}

impl Cluster {
    /// Starts a cluster of its own (panics, saying why, when PostgreSQL cannot be started).
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let owner = owner();
        let dir = new_dir(owner);
        let watcher = spawn_watcher(&bin, owner, &dir);
        // From here on, a panic drops the cluster: its watcher cleans up.
        let mut cluster = Cluster {
            bin,
            owner,
            dir,
            port: 0,
            watcher,
        };
        cluster.init();
        cluster.start_on_a_free_port();
        cluster
    }

    /// The cluster every test of this process shares, started on first use.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(Cluster::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data directory, the log and the unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres://postgres@127.0.0.1:PORT` (trust authentication).
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.server_url())
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate -w`); [`Cluster::restart`] starts it again.
    pub fn stop(&self, mode: StopMode) {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let out = self.pg_ctl(&["stop", "-m", mode]);
        check(&out, "pg_ctl stop", &self.log());
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        if let Err(log) = self.pg_ctl_start() {
            panic!("pg_ctl start (restart) failed; server log:\n{log}");
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A server command, run as the owner when this process is root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some(owner) = self.owner {
            cmd.uid(owner.uid).gid(owner.gid);
        }
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.command("pg_ctl")
            .args(args)
            .arg("-D")
            .arg(self.data())
            .arg("-w")
            .output()
            .expect("run pg_ctl")
    }

    fn init(&self) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .expect("run initdb");
        check(&out, "initdb", "");
        let socket_dir = self.dir.display().to_string().replace('\'', "''");
        // fsync off: the cluster is thrown away, and a commit still writes its WAL to the kernel
        // before it is acknowledged, so killed server processes (an immediate stop) lose nothing.
        let settings = format!(
            "\n# rempart tests\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = \
             '{socket_dir}'\nmax_connections = {MAX_CONNECTIONS}\nfsync = off\n"
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        conf.write_all(settings.as_bytes())
            .expect("write postgresql.conf");
    }

    fn start_on_a_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            match self.pg_ctl_start() {
                Ok(()) => return,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("could not bind") => {}
                Err(log) => panic!("pg_ctl start failed; server log:\n{log}"),
            }
        }
    }

    /// Starts the server on `self.port`; `Err` holds the server log.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let out = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &format!("-p {}", self.port)])
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Closing the pipe tells the watcher to stop the server and remove the directory.
        drop(self.watcher.stdin.take());
        let _ = self.watcher.wait();
    }
}

fn check(out: &Output, what: &str, log: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory of `initdb`, `pg_ctl` and `postgres`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|bin| bin.join("initdb").is_file());
    from_pg_config.unwrap_or_else(|| {
        panic!(
            "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed: neither \
             /usr/lib/postgresql/*/bin nor `pg_config --bindir` has them (scripts/ensure-postgres \
             installs them)"
        )
    })
}

/// `None` unless this process is root; then the `postgres` user, else `nobody`.
fn owner() -> Option<Owner> {
    static OWNER: OnceLock<Option<Owner>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        if id(&["-u"]) != Some(0) {
            return None;
        }
        let owner = ["postgres", "nobody"].iter().find_map(|user| {
            Some(Owner {
                uid: id(&["-u", user])?,
                gid: id(&["-g", user])?,
            })
        });
        assert!(
            owner.is_some(),
            "running as root, and neither the `postgres` nor the `nobody` user exists to run \
             PostgreSQL as (initdb and postgres refuse to run as root)"
        );
        owner
    })
}

/// `id ARGS` as a number.
fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A new, empty directory under the system's temporary directory, owned by `owner`.
fn new_dir(owner: Option<Owner>) -> PathBuf {
    let base = std::env::temp_dir();
    loop {
        let dir = base.join(format!(
            "rempart-pg-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                if let Some(owner) = owner {
                    std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid))
                        .unwrap_or_else(|e| {
                            panic!("give {} to the server's user: {e}", dir.display())
                        });
                }
                return dir;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create {}: {e}", dir.display()),
        }
    }
}

fn spawn_watcher(bin: &Path, owner: Option<Owner>, dir: &Path) -> Child {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHER)
        .arg(bin.join("pg_ctl"))
        .arg(dir)
        .current_dir(dir)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(owner) = owner {
        cmd.uid(owner.uid).gid(owner.gid);
    }
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(dir);
            panic!("start the cluster's watcher (sh): {e}");
        }
    }
}

/// A port of 127.0.0.1 nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a free loopback port")
}

/// The server [`TestDatabase::create`] uses: `REMPART_TEST_PG_URL`, else the shared cluster.
pub fn shared_server_url() -> String {
    std::env::var("REMPART_TEST_PG_URL").unwrap_or_else(|_| Cluster::shared().server_url())
}

/// A database of one test's own, on a server the tests started.
pub struct TestDatabase {
    pub name: String,
    server: String,
}

impl TestDatabase {
    /// A new database in the shared cluster (or on `REMPART_TEST_PG_URL`'s server).
    pub async fn create() -> TestDatabase {
        TestDatabase::create_on(shared_server_url()).await
    }

    /// A new database in `cluster`.
    pub async fn create_in(cluster: &Cluster) -> TestDatabase {
        TestDatabase::create_on(cluster.server_url()).await
    }

    async fn create_on(server: String) -> TestDatabase {
        let name = format!(
            "rempart_t_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let client = admin(&format!("{server}/postgres")).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        TestDatabase { name, server }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub async fn admin_client(&self) -> tokio_postgres::Client {
        admin(&self.url()).await
    }

    /// Drops the database (ending its sessions).
    pub async fn drop_now(self) {
        let client = admin(&format!("{}/postgres", self.server)).await;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("drop test database");
    }
}

/// PostgreSQL's plan for `sql` (`EXPLAIN`), one line a node.
pub async fn explain(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0) + "\n")
        .collect()
}

/// A plain connection (its driver runs on the current runtime).
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connect to {url}: {e} ({:?})",
                std::error::Error::source(&e)
            )
        });
    tokio::spawn(connection);
    client
}
