//! Saturation seen where it happens, for attack mode and `/metrics`: how late the public
//! runtime runs what is ready (a probe task that asks to wake every [`LAG_PROBE_EVERY`] and
//! measures how late it is woken), and how much of its CPU allowance the node uses (its own CPU
//! time against the cgroup's quota, or the machine's CPUs when there is none). A request's own
//! latency cannot show this: a request waiting in a socket or in the run queue has not started.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How often the lag probe asks to be woken.
pub const LAG_PROBE_EVERY: Duration = Duration::from_millis(10);

/// The largest scheduling lag seen since it was last taken, in microseconds.
#[derive(Default)]
pub struct Lag {
    max_micros: AtomicU64,
    /// Lag observed by the probe, ever (for `/metrics`).
    total_micros: AtomicU64,
    probes: AtomicU64,
}

impl Lag {
    /// Runs on the runtime it measures until `stop`.
    pub async fn probe(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let due = Instant::now() + LAG_PROBE_EVERY;
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.changed() => return,
            }
            let late = Instant::now().saturating_duration_since(due);
            let micros = late.as_micros().min(u128::from(u64::MAX)) as u64;
            self.max_micros.fetch_max(micros, Relaxed);
            self.total_micros.fetch_add(micros, Relaxed);
            self.probes.fetch_add(1, Relaxed);
        }
    }

    /// The largest lag since the last call.
    pub fn take_max(&self) -> Duration {
        Duration::from_micros(self.max_micros.swap(0, Relaxed))
    }

    /// (probes, summed lag in seconds) since start.
    pub fn totals(&self) -> (u64, f64) {
        (
            self.probes.load(Relaxed),
            self.total_micros.load(Relaxed) as f64 / 1e6,
        )
    }
}

/// The node's CPU use against its allowance.
pub struct CpuMeter {
    last: Option<(Instant, f64)>,
    ticks_per_second: f64,
}

impl Default for CpuMeter {
    fn default() -> Self {
        // SAFETY: sysconf only reads its integer argument.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        CpuMeter {
            last: None,
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }
}

impl CpuMeter {
    /// The share of the allowance used since the last call (0 on the first call, or when the
    /// process's CPU time cannot be read).
    pub fn sample(&mut self) -> f64 {
        let Some(cpu) = process_cpu_seconds(self.ticks_per_second) else {
            return 0.0;
        };
        let now = Instant::now();
        let share = match self.last {
            Some((at, before)) => {
                let wall = now.duration_since(at).as_secs_f64();
                if wall <= 0.0 {
                    0.0
                } else {
                    (cpu - before) / wall / allowance_cores()
                }
            }
            None => 0.0,
        };
        self.last = Some((now, cpu));
        share
    }
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`).
fn process_cpu_seconds(ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

/// CPUs' worth of time the node may use: its cgroup's quota (v1 `cpu.cfs_quota_us` /
/// `cpu.cfs_period_us`, v2 `cpu.max`), else the CPUs it can run on. Read at each sample: a node
/// may be moved into a cgroup while it runs.
pub fn allowance_cores() -> f64 {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let quota = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_quota(&text, Path::new("/sys/fs/cgroup")));
    quota.map_or(cpus, |q| q.min(cpus))
}

/// The quota, in CPUs, of the cgroup named in `/proc/self/cgroup`'s text, under `root`.
fn cgroup_quota(proc_cgroup: &str, root: &Path) -> Option<f64> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            let text = std::fs::read_to_string(root.join(relative).join("cpu.max")).ok()?;
            let mut v = text.split_whitespace();
            let (quota, period) = (v.next()?, v.next()?);
            return ratio(quota, period);
        }
        if controllers.split(',').any(|c| c == "cpu") {
            let dir = [controllers, "cpu", "cpu,cpuacct"]
                .iter()
                .map(|m| root.join(m).join(relative))
                .find(|d| d.join("cpu.cfs_quota_us").exists())?;
            let read = |name: &str| -> Option<String> {
                std::fs::read_to_string(PathBuf::from(&dir).join(name)).ok()
            };
            return ratio(
                read("cpu.cfs_quota_us")?.trim(),
                read("cpu.cfs_period_us")?.trim(),
            );
        }
    }
    None
}

fn ratio(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.parse().ok().filter(|q: &f64| *q > 0.0)?;
    let period: f64 = period.parse().ok().filter(|p: &f64| *p > 0.0)?;
    Some(quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_read_from_v1_and_v2_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("cpu/bench/node");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("cpu.cfs_quota_us"), "2500\n").unwrap();
        std::fs::write(v1.join("cpu.cfs_period_us"), "10000\n").unwrap();
        assert_eq!(
            cgroup_quota("2:cpuacct:/\n1:cpu:/bench/node\n", root.path()),
            Some(0.25)
        );
        let v2 = root.path().join("node");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(cgroup_quota("0::/node\n", root.path()), Some(0.5));
        std::fs::write(v2.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cgroup_quota("0::/node\n", root.path()), None, "no quota");
        std::fs::write(v1.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        assert_eq!(cgroup_quota("1:cpu:/bench/node\n", root.path()), None);
    }

    #[test]
    fn the_process_cpu_time_is_read_and_grows() {
        let mut meter = CpuMeter::default();
        assert_eq!(meter.sample(), 0.0);
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(meter.sample() > 0.0);
    }
}
