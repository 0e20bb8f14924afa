//! The gate: new public connections judged in the kernel when the accept queue fills.
//!
//! A flood that opens connections faster than the node accepts them keeps the listen queue full.
//! A customer's new connection then waits behind thousands of flood connections, or its SYN is
//! dropped and the browser tries again a second later: that second is the customers' p99 under
//! such floods, whatever the node does once a connection is accepted (BENCHMARKS.md, issue 18).
//! No accept loop can be fast enough at a fraction of a core, so the choice is made before the
//! accept: a classic BPF program on the listening socket, run by the kernel on each incoming
//! packet, lets every SYN from an address the shield knows through (a pass, an API key, a
//! person's pace: `guard/trust.rs`) and only a share of other sources' SYNs; the rest are dropped
//! as if lost, at no cost to the node (on loopback the sender's CPU pays; on a real network, the
//! kernel's receive path before any process). Packets of established connections always pass.
//!
//! The share halves (or more: see [`next_level`]) at each look while the queue is longer than
//! [`QUEUE_HIGH`] and growing, and doubles back once it has stayed under [`QUEUE_LOW`] for
//! [`RELAX_AFTER`]; at 1 the program is removed. New customers
//! still get in (a dropped SYN is retried, each time with the same chance), more slowly under a
//! flood of new connections; the time to their first answer is then theirs to pay, like a
//! challenge's.
//!
//! Trade-offs: classic BPF has no maps, so the known addresses are compiled into the program (a
//! search tree of sorted addresses, rebuilt at most every [`KNOWN_REFRESH`]) and their number is
//! bounded by the program's size: 4,096 instructions, and the socket option memory
//! (`net.core.optmem_max`) the kernel charges it to — about 3,200 addresses with the default
//! 128 KiB, about 900 with 20 KiB. Those that do not fit (the soonest to expire) take their
//! chance like newcomers. eBPF with a hash map would lift the bound but needs `CAP_BPF`; classic
//! BPF on one's own socket needs no privilege. IPv6 SYNs are not judged (the program lets them
//! through). The accepted connection drops the program it inherited from the listener, so old
//! programs do not stay alive with long connections.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::guard::Guard;

/// How often the listen queue is looked at.
pub const GATE_EVERY: Duration = Duration::from_millis(10);
/// A queue longer than this (connections waiting for `accept`) halves the share of unknown
/// sources' SYNs let through: at a few thousand accepts a second, ~64 queued is ~20 ms of wait.
pub const QUEUE_HIGH: u32 = 64;
/// A queue this short for [`RELAX_AFTER`] doubles the share back.
pub const QUEUE_LOW: u32 = 16;
/// How long the queue must stay short before the gate opens a step.
pub const RELAX_AFTER: Duration = Duration::from_millis(250);
/// The narrowest the gate gets: one unknown SYN in 2^MAX_LEVEL.
pub const MAX_LEVEL: u8 = 12;
/// How often, at most, a closed gate relearns the known addresses.
pub const KNOWN_REFRESH: Duration = Duration::from_secs(1);
/// Most instructions in a classic BPF program (the kernel's `BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;
/// Addresses compared one after another at a leaf of the search tree.
const BUCKET: usize = 16;

/// `SO_ATTACH_FILTER` / `SO_DETACH_FILTER` (asm-generic, x86, arm).
const SO_ATTACH_FILTER: libc::c_int = 26;
const SO_DETACH_FILTER: libc::c_int = 27;

// Classic BPF opcodes (linux/filter.h): class | size | mode. BPF_LD and BPF_W are 0.
const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x10 | 0x20;
const ALU_AND_K: u16 = 0x04 | 0x50;
const ALU_RSH_K: u16 = 0x04 | 0x70;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06;
/// Offset of the network header for loads (`SKF_NET_OFF`); plain offsets start at the TCP header.
const NET: u32 = (-0x10_0000i32) as u32;
/// The kernel's random number (`SKF_AD_OFF + SKF_AD_RANDOM`).
const RANDOM: u32 = (-0x1000i32 + 56) as u32;
/// "Keep the whole packet" and "drop it".
const PASS: u32 = u32::MAX;
const DROP: u32 = 0;

/// What the gate is doing, for `/metrics` and the accept loop.
#[derive(Default)]
pub struct GateState {
    /// 0: open (no program); n: one unknown SYN in 2^n let through.
    pub level: AtomicU32,
    /// The listen queue at the last look.
    pub queue: AtomicU32,
    /// Known addresses in the program in force.
    pub known: AtomicU32,
    /// Programs put in place.
    pub programs: AtomicU64,
    /// Whether a program is attached (accepted connections then drop the copy they inherit).
    pub engaged: AtomicBool,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// How many known addresses a program may hold, for `optmem_max` bytes of socket option memory
/// (the kernel charges each socket holding the program its converted size: at most about two
/// 8-byte instructions per classic one, plus a header).
pub fn known_capacity(optmem_max: usize) -> usize {
    let insns = (optmem_max.saturating_sub(1024) / 16).min(MAX_INSNS);
    // 13 fixed instructions; a bucket costs BUCKET + 2 and the tree node above it 2.
    insns.saturating_sub(13) / (BUCKET + 4) * BUCKET
}

/// This machine's `net.core.optmem_max` (20 KiB, the old default, when unreadable).
pub fn optmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/optmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(20 * 1024)
}

/// The program: non-SYN packets and IPv6 pass; a SYN from one of `known` (sorted IPv4 addresses
/// as numbers) passes; any other SYN passes with probability 2^-level.
pub fn program(known: &[u32], level: u8) -> Vec<libc::sock_filter> {
    let mut p = vec![
        insn(LD_B_ABS, 0, 0, 13), // TCP flags
        insn(ALU_AND_K, 0, 0, 0x12),
        insn(JMP_JEQ_K, 1, 0, 0x02), // a SYN without ACK is judged
        insn(RET_K, 0, 0, PASS),
        insn(LD_B_ABS, 0, 0, NET), // IP version
        insn(ALU_RSH_K, 0, 0, 4),
        insn(JMP_JEQ_K, 1, 0, 4),
        insn(RET_K, 0, 0, PASS),
        insn(LD_W_ABS, 0, 0, NET + 12), // IPv4 source address
    ];
    let buckets: Vec<&[u32]> = known.chunks(BUCKET).collect();
    let mut to_unknown = Vec::new();
    tree(&mut p, &buckets, &mut to_unknown);
    let unknown = p.len();
    for at in to_unknown {
        p[at].k = (unknown - at - 1) as u32;
    }
    let threshold = u32::MAX >> level.min(31);
    p.extend([
        insn(LD_W_ABS, 0, 0, RANDOM),
        insn(JMP_JGT_K, 0, 1, threshold),
        insn(RET_K, 0, 0, DROP),
        insn(RET_K, 0, 0, PASS),
    ]);
    p
}

/// Emits the search over `buckets` (sorted, each sorted); a miss jumps to the unknown-source
/// block (positions to patch in `to_unknown`). Conditional jumps reach 255 instructions, so the
/// tree's far branches go through `ja`.
fn tree(p: &mut Vec<libc::sock_filter>, buckets: &[&[u32]], to_unknown: &mut Vec<usize>) {
    match buckets {
        [] => {
            to_unknown.push(p.len());
            p.push(insn(JMP_JA, 0, 0, 0));
        }
        [bucket] => {
            let n = bucket.len();
            for (i, &address) in bucket.iter().enumerate() {
                // Found: jump over the rest of the bucket and its `ja` to the `ret`.
                p.push(insn(JMP_JEQ_K, (n - i) as u8, 0, address));
            }
            to_unknown.push(p.len());
            p.push(insn(JMP_JA, 0, 0, 0));
            p.push(insn(RET_K, 0, 0, PASS));
        }
        _ => {
            let mid = buckets.len() / 2;
            // At or above the right half's first address: take the `ja` to the right half.
            p.push(insn(JMP_JGE_K, 0, 1, buckets[mid][0]));
            let ja = p.len();
            p.push(insn(JMP_JA, 0, 0, 0));
            tree(p, &buckets[..mid], to_unknown);
            p[ja].k = (p.len() - ja - 1) as u32;
            tree(p, &buckets[mid..], to_unknown);
        }
    }
}

/// The gate's next level, from the queue at this look and the last, and how long since the level
/// last moved and since the queue was last long. A long queue that still grows narrows the gate
/// by as many steps as it holds doublings of [`QUEUE_HIGH`] (a flood fills thousands of places in
/// one look); a long queue that shrinks is being worked off: the level holds.
pub fn next_level(
    level: u8,
    queue: u32,
    previous: u32,
    since_change: Duration,
    short_for: Duration,
) -> u8 {
    if queue > QUEUE_HIGH {
        if queue < previous {
            return level;
        }
        let doublings = (queue / QUEUE_HIGH).ilog2().max(1) as u8;
        return level.saturating_add(doublings).min(MAX_LEVEL);
    }
    if level > 0 && queue < QUEUE_LOW && short_for >= RELAX_AFTER && since_change >= RELAX_AFTER {
        return level - 1;
    }
    level
}

/// Connections waiting in `listener`'s accept queue (`TCP_INFO` of a listening socket reports
/// it as `tcpi_unacked`).
pub fn queue_len(listener: BorrowedFd<'_>) -> std::io::Result<u32> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid fd, a buffer and its length.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.tcpi_unacked)
}

/// Puts `program` on the socket `fd` in place of any other.
pub fn attach(fd: RawFd, program: &[libc::sock_filter]) -> std::io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?,
        filter: program.as_ptr().cast_mut(),
    };
    // The kernel copies the program during the call; `program` outlives it.
    socket_option(fd, SO_ATTACH_FILTER, &fprog)
}

/// Removes the program from socket `fd`, if it has one (a socket without one answers ENOENT,
/// which is what was wanted).
pub fn detach(fd: RawFd) {
    // SO_DETACH_FILTER ignores its value.
    let _ = socket_option(fd, SO_DETACH_FILTER, &0 as &libc::c_int);
}

/// `setsockopt(fd, SOL_SOCKET, name, value)`.
fn socket_option<T>(fd: RawFd, name: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a live `T` and the length passed is its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A second descriptor of `listener`, for the gate's task (the socket stays open until both
/// are closed: the gate drops its own when the node stops).
pub fn dup(listener: &tokio::net::TcpListener) -> std::io::Result<OwnedFd> {
    // SAFETY: dup of a valid descriptor; the new one is owned here.
    let fd = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches the public listener's queue every [`GATE_EVERY`] and keeps its program in step,
/// until `stop`. Gives up (logging once) if the kernel refuses programs.
pub async fn run(listener: OwnedFd, guard: Arc<Guard>, mut stop: watch::Receiver<bool>) {
    let Some(shield) = guard.shield() else {
        return;
    };
    let state = &shield.gate;
    let capacity = known_capacity(optmem_max());
    let (mut level, mut known, mut previous) = (0u8, Vec::new(), 0u32);
    let (mut changed_at, mut short_since, mut learned_at) =
        (Instant::now(), Instant::now(), Instant::now());
    let mut tick = tokio::time::interval(GATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let queue = match queue_len(listener.as_fd()) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "the gate cannot read the listen queue; it stays open");
                break;
            }
        };
        state.queue.store(queue, Relaxed);
        let now = Instant::now();
        if queue >= QUEUE_LOW {
            short_since = now;
        }
        let next = next_level(level, queue, previous, now - changed_at, now - short_since);
        previous = queue;
        // The known addresses are read when the gate closes, then at most every KNOWN_REFRESH.
        let due = next > 0 && (level == 0 || now - learned_at >= KNOWN_REFRESH);
        if due {
            learned_at = now;
        }
        let relearned = due
            .then(|| shield.trust.known_v4(crate::clock::unix_now(), capacity))
            .filter(|fresh| *fresh != known);
        if next == level && relearned.is_none() {
            continue;
        }
        if next != level {
            changed_at = now;
            tracing::info!(queue, "gate: one unknown SYN in {} let in", 1u32 << next);
        }
        level = next;
        if let Some(fresh) = relearned {
            known = fresh;
        }
        if level == 0 {
            state.engaged.store(false, Relaxed);
            detach(listener.as_raw_fd());
        } else if let Err(e) = attach(listener.as_raw_fd(), &program(&known, level)) {
            tracing::warn!(error = %e, "the kernel refused the gate's program; it stays open");
            break;
        } else {
            state.engaged.store(true, Relaxed);
            state.programs.fetch_add(1, Relaxed);
        }
        state.level.store(u32::from(level), Relaxed);
        state.known.store(known.len() as u32, Relaxed);
    }
    detach(listener.as_raw_fd());
    state.engaged.store(false, Relaxed);
    state.level.store(0, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};

    /// A packet as the program sees it.
    struct Packet {
        flags: u8,
        ipv4: bool,
        source: u32,
        random: u32,
    }

    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;

    /// Runs a program the way the kernel does, for the instructions `program` emits.
    fn interpret(p: &[libc::sock_filter], pkt: &Packet) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        for _ in 0..10_000 {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_B_ABS if i.k == 13 => a = u32::from(pkt.flags),
                LD_B_ABS if i.k == NET => a = if pkt.ipv4 { 0x45 } else { 0x60 },
                LD_W_ABS if i.k == NET + 12 => a = pkt.source,
                LD_W_ABS if i.k == RANDOM => a = pkt.random,
                ALU_AND_K => a &= i.k,
                ALU_RSH_K => a >>= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                    let yes = match i.code {
                        JMP_JEQ_K => a == i.k,
                        JMP_JGT_K => a > i.k,
                        _ => a >= i.k,
                    };
                    pc += usize::from(if yes { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("instruction {other:#x} k={:#x} not expected", i.k),
            }
        }
        panic!("the program loops");
    }

    fn syn(source: u32, random: u32) -> Packet {
        Packet {
            flags: SYN,
            ipv4: true,
            source,
            random,
        }
    }

    fn spread(n: u32) -> Vec<u32> {
        // Distinct, sorted, with gaps so that neighbours are unknown.
        (0..n).map(|i| 0x7F00_0000 + i * 7 + 3).collect()
    }

    #[test]
    fn known_sources_pass_and_others_take_their_chance() {
        for n in [
            0,
            1,
            2,
            15,
            16,
            17,
            100,
            1000,
            known_capacity(128 * 1024) as u32,
        ] {
            let known = spread(n);
            let p = program(&known, MAX_LEVEL);
            assert!(
                p.len() <= MAX_INSNS,
                "{n} addresses: {} instructions",
                p.len()
            );
            for &k in &known {
                assert_eq!(interpret(&p, &syn(k, u32::MAX)), PASS, "{n}: known {k:#x}");
                assert_eq!(
                    interpret(&p, &syn(k + 1, u32::MAX)),
                    DROP,
                    "{n}: unknown {:#x}",
                    k + 1
                );
                assert_eq!(
                    interpret(&p, &syn(k - 1, u32::MAX)),
                    DROP,
                    "{n}: unknown {:#x}",
                    k - 1
                );
            }
            for unknown in [0, 1, 0x7F00_0000, u32::MAX] {
                assert_eq!(interpret(&p, &syn(unknown, u32::MAX)), DROP);
                assert_eq!(interpret(&p, &syn(unknown, 0)), PASS, "its chance");
                assert_eq!(interpret(&p, &syn(unknown, u32::MAX >> MAX_LEVEL)), PASS);
                assert_eq!(
                    interpret(&p, &syn(unknown, (u32::MAX >> MAX_LEVEL) + 1)),
                    DROP
                );
            }
        }
    }

    #[test]
    fn only_ipv4_syns_are_judged_and_an_open_gate_lets_all_in() {
        let p = program(&spread(40), 31);
        for flags in [ACK, SYN_ACK, 0x18, 0x11, 0x04] {
            let pkt = Packet {
                flags,
                ..syn(1, u32::MAX)
            };
            assert_eq!(interpret(&p, &pkt), PASS, "flags {flags:#x}");
        }
        let v6 = Packet {
            ipv4: false,
            ..syn(1, u32::MAX)
        };
        assert_eq!(interpret(&p, &v6), PASS);
        let open = program(&[], 0);
        assert_eq!(interpret(&open, &syn(1, u32::MAX)), PASS);
    }

    #[test]
    fn the_level_narrows_fast_and_opens_slowly() {
        let long = Duration::from_secs(1);
        let zero = Duration::ZERO;
        assert_eq!(next_level(0, QUEUE_HIGH + 1, 0, zero, zero), 1);
        assert_eq!(
            next_level(0, 4 * QUEUE_HIGH, 0, zero, zero),
            2,
            "two doublings"
        );
        assert_eq!(next_level(1, 4000, 10, zero, zero), 6);
        assert_eq!(next_level(MAX_LEVEL - 1, 4000, 10, long, zero), MAX_LEVEL);
        assert_eq!(next_level(4, 900, 1000, zero, zero), 4, "worked off: holds");
        assert_eq!(
            next_level(3, QUEUE_HIGH, 0, long, long),
            3,
            "between the marks"
        );
        assert_eq!(next_level(3, 0, 0, long, long), 2);
        assert_eq!(next_level(3, 0, 0, zero, long), 3, "just moved");
        assert_eq!(next_level(3, 0, 0, long, zero), 3, "just got short");
        assert_eq!(next_level(0, 0, 0, long, long), 0);
    }

    #[test]
    fn the_capacity_follows_the_option_memory() {
        assert_eq!(known_capacity(128 * 1024), 3264);
        assert_eq!(known_capacity(20 * 1024), 960);
        assert_eq!(known_capacity(0), 0);
    }

    /// A connection from `source` to `to`, or the error when the handshake does not finish
    /// within `wait` (a dropped SYN is retried only after a second).
    fn connect_from(
        source: Ipv4Addr,
        to: SocketAddr,
        wait: Duration,
    ) -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(source.into(), 0).into())?;
        socket.connect_timeout(&to.into(), wait)?;
        Ok(socket.into())
    }

    #[test]
    fn the_kernel_runs_the_program_on_a_listening_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let fd = listener.as_raw_fd();
        let known_one = Ipv4Addr::new(127, 0, 0, 2);
        // As many known addresses as fit, all but one outside loopback.
        let mut known: Vec<u32> = (0..known_capacity(optmem_max()) as u32 - 1)
            .map(|i| 0x0A00_0000 + i * 7)
            .collect();
        known.push(u32::from(known_one));
        known.sort_unstable();
        attach(fd, &program(&known, 31)).expect("the kernel takes the largest program");
        let wait = Duration::from_millis(300);
        let mut kept = connect_from(known_one, to, wait).expect("a known source gets in");
        let stranger = Ipv4Addr::new(127, 0, 0, 3);
        let err = connect_from(stranger, to, wait).expect_err("an unknown SYN is dropped");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        // SAFETY: a valid descriptor, borrowed for the call.
        let queued = queue_len(unsafe { BorrowedFd::borrow_raw(fd) }).unwrap();
        assert_eq!(
            queued, 1,
            "the known connection waits to be accepted, alone"
        );
        let (mut served, _) = listener.accept().unwrap();
        detach(served.as_raw_fd());
        use std::io::{Read, Write};
        kept.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).unwrap();
        served.write_all(b"pong").unwrap();
        kept.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong", "an established connection's packets pass");
        attach(fd, &program(&known, 0)).unwrap();
        connect_from(stranger, to, wait).expect("an open gate lets anyone in");
        attach(fd, &program(&known, 31)).unwrap();
        detach(fd);
        connect_from(stranger, to, wait).expect("no program: anyone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_queue_closes_the_gate_to_strangers_and_a_short_one_opens_it() {
        let listener = super::super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = listener.local_addr().unwrap();
        let guard = Arc::new(Guard::new(&crate::settings::ShieldSettings::defaults()));
        let known = Ipv4Addr::new(127, 0, 0, 2);
        guard.mark_known(known.into());
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(dup(&listener).unwrap(), guard.clone(), stop));
        let state = &guard.shield().unwrap().gate;
        // A flood of connections nobody accepts: more than the gate tolerates, fewer than the
        // backlog (a full queue drops every SYN, known or not: what the gate is there to avoid).
        let flood = tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for i in 0..(4 * QUEUE_HIGH) {
                let source = Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
                match connect_from(source, to, Duration::from_millis(20)) {
                    Ok(s) => held.push(s),
                    Err(_) if held.len() > QUEUE_HIGH as usize => break,
                    Err(e) => panic!("{e}"),
                }
            }
            held
        });
        let held = flood.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.level.load(Relaxed) == 0 && Instant::now() < deadline {
            tokio::time::sleep(GATE_EVERY).await;
        }
        assert!(state.level.load(Relaxed) > 0, "{} queued", held.len());
        assert!(state.engaged.load(Relaxed));
        assert_eq!(
            state.known.load(Relaxed),
            1,
            "the known address is in the program"
        );
        let wait = Duration::from_millis(300);
        tokio::task::spawn_blocking(move || connect_from(known, to, wait))
            .await
            .unwrap()
            .expect("a known source passes a closed gate");
        // The node catches up: the queue empties and the gate opens step by step.
        let accepting = tokio::spawn(async move {
            let mut accepted = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                accepted.push(s);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while state.level.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(GATE_EVERY).await;
        }
        assert_eq!(state.level.load(Relaxed), 0, "open again");
        assert!(!state.engaged.load(Relaxed), "no program left");
        let stranger = Ipv4Addr::new(127, 0, 9, 9);
        tokio::task::spawn_blocking(move || connect_from(stranger, to, wait))
            .await
            .unwrap()
            .expect("anyone gets in again");
        let _ = stop_tx.send(true);
        task.await.unwrap();
        accepting.abort();
        drop(held);
    }
}
