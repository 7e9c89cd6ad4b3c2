//! Processes and threads: running one process's event loops (on the calling thread when there is
//! one, else one thread each), and `--processes`: forking the workers before any thread or poller
//! exists, collecting their progress and results over one pipe each, forwarding a stop to them,
//! and reaping them.
//!
//! Owns the pipe protocol's framing (lines: `p ...` progress snapshots, then `r` followed by
//! [`Stats::encode`] lines up to `end`). It does not decide what the lines contain (see
//! `monitor::Snapshot` and `stats::Stats`), does not touch sockets (see `worker`) and does not own
//! the signal handlers or the stop flag (see `sys`): it only forwards a stop to the workers.

use std::os::fd::RawFd;
use std::time::Duration;

use crate::cli::{Config, Mode};
use crate::monitor::{Monitor, Sink, Snapshot};
use crate::net::Plan;
use crate::payload::Gen;
use crate::run::{Live, Phase, Share};
use crate::stats::Stats;
use crate::sys::{now_ns, stop_requested, write_all_fd};
use crate::wire::Rng;
use crate::worker;
use crate::workload::Workload;

/// Runs this process's loops and merges their results. One loop runs on the calling thread
/// (and drives the monitor itself); more run on one thread each while this thread monitors.
pub fn run_loops(cfg: &Config, plan: &Plan, shares: &[Share], monitor: &mut Monitor) -> Result<Stats, String> {
    let in_flight = if cfg.mode == Mode::Idle { 0 } else { cfg.pipeline };
    let mut rng = Rng::from_os(shares.first().map_or(0, |s| s.loop_id as u64) ^ 0x5eed);
    // Soak mode generates its payloads; the other modes precompute theirs.
    let work = if cfg.mode == Mode::Soak {
        Work::Soak(Gen::new())
    } else {
        Work::Fixed(Workload::new(
            cfg.size,
            cfg.text.then_some(cfg.text_kind),
            cfg.deflate,
            cfg.fragments,
            in_flight,
            &mut rng,
        ))
    };
    let lives: Vec<Live> = shares.iter().map(|_| Live::default()).collect();
    if shares.len() == 1 {
        let stats = work
            .run(cfg, plan, &shares[0], &lives[0], &mut || monitor.update(&Snapshot::of(&lives)))
            .map_err(|e| format!("event loop failed: {e}"))?;
        monitor.update(&Snapshot::of(&lives));
        return Ok(stats);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter()
            .zip(&lives)
            .enumerate()
            .map(|(i, (sh, live))| {
                let work = &work;
                std::thread::Builder::new()
                    .name(format!("wsbench-loop-{i}"))
                    .spawn_scoped(s, move || work.run(cfg, plan, sh, live, &mut || {}))
                    .map_err(|e| format!("cannot start a thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            monitor.update(&Snapshot::of(&lives));
        }
        monitor.update(&Snapshot::of(&lives));
        let mut total = Stats::default();
        for h in handles {
            match h.join() {
                Ok(Ok(st)) => total.merge(&st),
                Ok(Err(e)) => return Err(format!("event loop failed: {e}")),
                Err(_) => return Err("an event loop panicked".into()),
            }
        }
        Ok(total)
    })
}

/// What a process's loops send: precomputed messages, or soak mode's generated ones.
enum Work {
    Fixed(Workload),
    Soak(Gen),
}

impl Work {
    fn run(
        &self,
        cfg: &Config,
        plan: &Plan,
        sh: &Share,
        live: &Live,
        tick: &mut dyn FnMut(),
    ) -> std::io::Result<Stats> {
        match self {
            Work::Fixed(w) => worker::run(cfg, plan, w, sh, live, tick),
            Work::Soak(g) => crate::soak::run(cfg, plan, g, sh, live, tick),
        }
    }
}

struct Child {
    pid: libc::pid_t,
    fd: RawFd,
    target: u64,
    buf: Vec<u8>,
    snap: Snapshot,
    stats: Stats,
    in_result: bool,
    done: bool,
    eof: bool,
}

/// Forks one worker per entry of `shares`, each running [`run_loops`] on its share, and merges
/// their results while the parent's `monitor` prints aggregated progress.
pub fn run_forked(cfg: &Config, plan: &Plan, shares: &[Vec<Share>], monitor: &mut Monitor) -> Result<Stats, String> {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut children: Vec<Child> = Vec::with_capacity(shares.len());
    for (i, sh) in shares.iter().enumerate() {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills fds.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            kill_all(&children, libc::SIGKILL);
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the process is single-threaded here (no loops, pollers or threads yet), so the
        // child may do anything the parent could.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            kill_all(&children, libc::SIGKILL);
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // Child: keep only our pipe's write end.
            // SAFETY: closing fds this process owns and no longer uses.
            unsafe {
                libc::close(fds[0]);
                for c in &children {
                    libc::close(c.fd);
                }
            }
            let mut mon = Monitor::new(Sink::Pipe(fds[1]), cfg.mode, true, None);
            let code = match run_loops(cfg, plan, sh, &mut mon) {
                Ok(st) => {
                    let mut s = String::from("r\n");
                    st.encode(&mut s);
                    write_all_fd(fds[1], s.as_bytes());
                    0
                }
                Err(e) => {
                    eprintln!("wsbench: worker {i}: {e}");
                    3
                }
            };
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        // SAFETY: the parent does not write to the pipe.
        unsafe { libc::close(fds[1]) };
        let target: u64 = sh.iter().map(|s| s.conns as u64).sum();
        let mut snap = Snapshot::empty();
        snap.target = target;
        snap.phase = Phase::Ramp;
        snap.settled = false;
        children.push(Child {
            pid,
            fd: fds[0],
            target,
            buf: Vec::new(),
            snap,
            stats: Stats::default(),
            in_result: false,
            done: false,
            eof: false,
        });
    }

    // Safety net on top of the workers' own bounds.
    let ramp = cfg.ramp_timeout
        + cfg.connect_timeout
        + cfg.connect_rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(cfg.connections as f64 / r));
    let limit = ramp + cfg.warmup + cfg.duration + cfg.close_timeout + Duration::from_secs(30);
    // The hold until --start-at comes on top (the ramp-up may end long before it).
    let wait = cfg.start_at_unix_ns.map_or(0, |t| crate::sys::mono_of_unix_ns(t).saturating_sub(now_ns()));
    let deadline = now_ns() + limit.as_nanos() as u64 + wait;
    let mut forwarded = false;
    let mut killed = false;
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut protocol_error: Option<String> = None;
    while children.iter().any(|c| !c.eof) {
        if stop_requested() && !forwarded {
            forwarded = true;
            kill_all(&children, libc::SIGTERM);
        }
        if now_ns() > deadline && !killed {
            killed = true;
            eprintln!("wsbench: workers still running {:.0} s after the planned end; killing them", 30.0);
            kill_all(&children, libc::SIGKILL);
        }
        let mut pfds: Vec<libc::pollfd> = children
            .iter()
            .filter(|c| !c.eof)
            .map(|c| libc::pollfd { fd: c.fd, events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: pfds is a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        if n > 0 {
            for p in pfds.iter().filter(|p| p.revents != 0) {
                let c = children.iter_mut().find(|c| c.fd == p.fd).expect("polled child");
                // SAFETY: reads into rbuf from our pipe.
                let r = unsafe { libc::read(c.fd, rbuf.as_mut_ptr().cast(), rbuf.len()) };
                if r == 0 || (r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted) {
                    c.eof = true;
                    continue;
                }
                if r < 0 {
                    continue;
                }
                c.buf.extend_from_slice(&rbuf[..r as usize]);
                if let Err(e) = take_lines(c) {
                    protocol_error.get_or_insert(e);
                }
            }
        }
        let mut agg = Snapshot::empty();
        for c in &children {
            agg.add(&c.snap);
        }
        monitor.update(&agg);
    }
    let mut total = Stats::default();
    let mut failed_workers = Vec::new();
    for (i, c) in children.iter().enumerate() {
        let mut status = 0;
        // SAFETY: reaping our own child; closing our pipe end.
        unsafe {
            libc::waitpid(c.pid, &mut status, 0);
            libc::close(c.fd);
        }
        if c.done {
            total.merge(&c.stats);
        } else {
            failed_workers.push(i);
            let mut lost = Stats { target: c.target, ..Stats::default() };
            lost.lost.insert("worker process died".into(), c.target);
            total.merge(&lost);
            eprintln!("wsbench: worker {i} (pid {}) ended without a result (wait status {status})", c.pid);
        }
    }
    if let Some(e) = protocol_error {
        eprintln!("wsbench: {e}");
    }
    if failed_workers.len() == children.len() {
        return Err("no worker produced a result".into());
    }
    Ok(total)
}

fn kill_all(children: &[Child], sig: libc::c_int) {
    for c in children {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.pid, sig) };
    }
}

/// Consumes the complete lines in a child's buffer.
fn take_lines(c: &mut Child) -> Result<(), String> {
    let mut start = 0;
    let mut result = Ok(());
    while let Some(nl) = c.buf[start..].iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&c.buf[start..start + nl]).into_owned();
        start += nl + 1;
        if c.in_result {
            match c.stats.decode_line(&line) {
                Ok(true) => {
                    c.in_result = false;
                    c.done = true;
                }
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        } else if line == "r" {
            c.in_result = true;
        } else if let Some(f) = line.strip_prefix("p ") {
            if let Some(s) = Snapshot::decode(f) {
                c.snap = s;
            }
        } else {
            result = Err(format!("unexpected line from a worker: '{line}'"));
        }
    }
    c.buf.drain(..start);
    result
}
