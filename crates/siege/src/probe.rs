//! The generator checks itself, so a figure is not mistaken for the node's when the generator
//! was the limit: its own CPU time over the run, and the scheduling lag of each of its runtimes
//! (a task that asks to sleep 10 ms and measures how late it wakes up). A legitimate user's
//! latency includes the lag of the runtime it runs on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::stats;

/// How much lower the floods' threads are scheduled than the legitimate users' and depots':
/// when both runtimes share a core, a user's request or answer waiting behind flood work is
/// the generator's delay, not the node's.
pub const FLOOD_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`FLOOD_NICE`] (Linux: `setpriority` on a
/// thread id affects that thread only). For the floods' runtime threads.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority and gettid only read their integer arguments.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, FLOOD_NICE);
    }
}

/// CPU time the calling thread has used so far (`None` where the clock is missing).
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `ts` is.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Runs `work` and returns its result with the CPU time it took on this thread (its wall time
/// where the thread clock is missing).
pub fn cpu_timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let wall = std::time::Instant::now();
    let before = thread_cpu_time();
    let out = work();
    let took = match (before, thread_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall.elapsed(),
    };
    (out, took)
}

/// The lag probe's sleep.
pub const LAG_TICK: Duration = Duration::from_millis(10);
/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux whatever the
/// kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds in a `/proc/<pid>/stat` line (every thread, live or gone).
pub fn parse_stat_cpu_s(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses: the
    // fields that follow start after the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// This process's CPU seconds so far (`None` where `/proc` is not there).
pub fn cpu_s() -> Option<f64> {
    parse_stat_cpu_s(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Measures the current runtime's scheduling lag until `stop`.
pub async fn lag(stop: Arc<AtomicBool>) -> Histogram<u64> {
    let mut h = stats::histogram();
    while !stop.load(Relaxed) {
        let asked = Instant::now();
        tokio::time::sleep(LAG_TICK).await;
        let late = asked.elapsed().saturating_sub(LAG_TICK);
        let _ = h.record((late.as_micros() as u64).max(1));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let line =
            "4242 (siege (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0";
        assert_eq!(parse_stat_cpu_s(line), Some(3.0));
        for bad in [
            "",
            "4242 (siege",
            "1 (a) S 1 2",
            "1 (a) S 1 2 3 4 5 6 7 8 9 x y",
        ] {
            assert_eq!(parse_stat_cpu_s(bad), None, "{bad}");
        }
        assert!(cpu_s().is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn cpu_timing_counts_work_not_waiting() {
        let ((), slept) = cpu_timed(|| std::thread::sleep(Duration::from_millis(50)));
        assert!(slept < Duration::from_millis(25), "{slept:?}");
        let (n, worked) = cpu_timed(|| {
            let started = std::time::Instant::now();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_millis(30) {
                n = std::hint::black_box(n + 1);
            }
            n
        });
        assert!(n > 0 && worked > Duration::from_millis(5), "{worked:?}");
    }

    #[tokio::test]
    async fn the_lag_probe_records_until_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let probe = tokio::spawn(lag(stop.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.store(true, Relaxed);
        let h = probe.await.unwrap();
        assert!(!h.is_empty());
    }
}
