//! One event loop: a mio `Poll` driving this loop's share of the connections through ramp-up,
//! warm-up, the measured window (or the idle hold) and the closing handshakes, then returning
//! its [`Stats`].
//!
//! Owns timing and scheduling: the connect pacing (`--connect-rate`, `--max-pending`), the
//! per-connection deadlines, the phases, the open-loop rate scheduler (a backlog of scheduled
//! send times dispatched round robin to connections with room, timed by a timerfd so sends are
//! not rounded to epoll's millisecond), and the live counters read by the progress monitor.
//! Everything is bounded: the ramp by `--ramp-timeout` and per-connection timeouts, the rest by
//! `--warmup`, `--duration` and `--close-timeout`. It does not parse frames or handshakes (see
//! `client`), print anything except fatal setup errors (see `monitor`, `stats`) or fork (see
//! `proc`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::cli::{Config, Mode};
use crate::client::{Conn, Ctx, State};
use crate::net::{self, Plan};
use crate::stats::Stats;
use crate::wire::{self, Rng, Workload};

/// Token of the rate timer (connections use slab keys, far below this).
const TIMER: Token = Token(usize::MAX - 1);
/// Scheduled messages that may wait for a connection with room before new ones are dropped.
const BACKLOG_CAP: usize = 1 << 20;
/// How often live counters are published and the monitor is ticked.
const TICK_NS: u64 = 100_000_000;
/// How often per-connection deadlines are checked.
const SWEEP_NS: u64 = 250_000_000;

static EPOCH_NS: OnceLock<u64> = OnceLock::new();

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fixes the process's time origin (call once at start; later calls are harmless).
pub fn init_clock() {
    EPOCH_NS.get_or_init(monotonic_ns);
}

/// Nanoseconds since the process's time origin (CLOCK_MONOTONIC).
#[inline]
pub fn now_ns() -> u64 {
    monotonic_ns() - *EPOCH_NS.get_or_init(monotonic_ns)
}

/// One loop's part of the run.
#[derive(Debug, Clone)]
pub struct Share {
    /// Global index of this loop (for seeds).
    pub loop_id: usize,
    /// Global index of the first connection.
    pub first: usize,
    pub conns: usize,
    /// The first `active` of this loop's connections send messages.
    pub active: usize,
    /// Rate mode: messages per second for this loop.
    pub rate: f64,
    /// New connections per second for this loop.
    pub connect_rate: Option<f64>,
}

/// Splits the run over `processes` x `threads` loops: connections, active connections, rates.
pub fn split(cfg: &Config) -> Vec<Vec<Share>> {
    let loops = cfg.processes * cfg.threads;
    let part = |total: usize, i: usize| total / loops + usize::from(i < total % loops);
    let mut out = Vec::with_capacity(cfg.processes);
    let mut first = 0;
    for p in 0..cfg.processes {
        let mut v = Vec::with_capacity(cfg.threads);
        for t in 0..cfg.threads {
            let i = p * cfg.threads + t;
            let conns = part(cfg.connections, i);
            let active = part(cfg.active, i);
            let frac = if cfg.active > 0 { active as f64 / cfg.active as f64 } else { 0.0 };
            v.push(Share {
                loop_id: i,
                first,
                conns,
                active,
                rate: cfg.rate * frac,
                connect_rate: cfg.connect_rate.map(|r| r * conns as f64 / cfg.connections as f64),
            });
            first += conns;
        }
        out.push(v);
    }
    out
}

/// Loop phase, as published to the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Ramp = 0,
    Warmup = 1,
    Measure = 2,
    Closing = 3,
    Done = 4,
}

impl Phase {
    pub fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Ramp,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Closing,
            _ => Phase::Done,
        }
    }

    pub fn name(self, mode: Mode) -> &'static str {
        match self {
            Phase::Ramp => "ramp-up",
            Phase::Warmup => "warm-up",
            Phase::Measure if mode == Mode::Idle => "holding",
            Phase::Measure if mode == Mode::Soak => "soaking",
            Phase::Measure => "measuring",
            Phase::Closing => "closing",
            Phase::Done => "done",
        }
    }
}

/// Counters a loop publishes for the progress monitor (updated every 100 ms).
#[derive(Default)]
pub struct Live {
    pub target: AtomicU64,
    pub open: AtomicU64,
    pub pending: AtomicU64,
    pub upgraded: AtomicU64,
    /// Connect and handshake failures.
    pub failed: AtomicU64,
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    /// Echo mismatches + lost connections.
    pub errors: AtomicU64,
    pub phase: AtomicU8,
    /// Ramp-up over (every connection upgraded, failed or given up).
    pub settled: AtomicBool,
}

struct Loop<'a> {
    cfg: &'a Config,
    plan: &'a Plan,
    share: &'a Share,
    poll: Poll,
    conns: Slab<Conn>,
    ctx: Ctx<'a>,
    rbuf: Vec<u8>,
    rng: Rng,
    /// Connections connecting or upgrading.
    pending: usize,
    /// Connections upgraded and not ended.
    open: usize,
    peak_open: usize,
    next_index: usize,
    started: usize,
    phase: Phase,
    start: u64,
    ramp_end: u64,
    phase_until: u64,
    measure_start: Option<u64>,
    /// Rate mode: connections that may have room, round robin.
    ready: VecDeque<usize>,
    /// Rate mode: scheduled send times not yet given to a connection.
    backlog: VecDeque<u64>,
    sched_base: u64,
    sched_count: u64,
    sched_interval: f64,
    timerfd: Option<RawFd>,
    timer_armed_for: u64,
    keys: Vec<usize>,
}

/// Runs one loop to the end. `tick` is called about every 100 ms after `live` was updated (the
/// single-loop case drives the progress monitor from here).
pub fn run(
    cfg: &Config,
    plan: &Plan,
    work: &Workload,
    share: &Share,
    live: &Live,
    tick: &mut dyn FnMut(),
) -> io::Result<Stats> {
    let now = now_ns();
    let in_flight = match cfg.mode {
        Mode::Idle => 0,
        _ => cfg.pipeline,
    };
    let poll = Poll::new()?;
    let timerfd = if cfg.mode == Mode::Rate { Some(new_timerfd(&poll)?) } else { None };
    let mut lp = Loop {
        cfg,
        plan,
        share,
        poll,
        conns: Slab::with_capacity(share.conns),
        ctx: Ctx {
            cfg,
            work,
            now,
            stats: Stats::default(),
            msgs_total: 0,
            bytes_total: 0,
            counting: false,
            refill: cfg.mode == Mode::Echo,
            shutting_down: false,
            close_timeout_ns: cfg.close_timeout.as_nanos() as u64,
            became_open: false,
            freed: false,
            scratch: Vec::with_capacity(512),
            mismatch_logs: 0,
        },
        rbuf: vec![0u8; 256 * 1024],
        rng: Rng::from_os(share.loop_id as u64),
        pending: 0,
        open: 0,
        peak_open: 0,
        next_index: share.first,
        started: 0,
        phase: Phase::Ramp,
        start: now,
        ramp_end: 0,
        phase_until: 0,
        measure_start: None,
        ready: VecDeque::new(),
        backlog: VecDeque::new(),
        sched_base: 0,
        sched_count: 0,
        sched_interval: if share.rate > 0.0 { 1e9 / share.rate } else { f64::INFINITY },
        timerfd,
        timer_armed_for: 0,
        keys: Vec::new(),
    };
    lp.ctx.stats.target = share.conns as u64;
    live.target.store(share.conns as u64, Relaxed);
    let res = lp.run_loop(in_flight, live, tick);
    if let Some(fd) = lp.timerfd {
        // SAFETY: our own timerfd, closed once.
        unsafe { libc::close(fd) };
    }
    res?;
    let now = now_ns();
    let mut stats = lp.ctx.stats;
    stats.elapsed_ns = now - lp.start;
    stats.peak_open = lp.peak_open as u64;
    stats.interrupted = crate::proc::stop_requested();
    Ok(stats)
}

fn new_timerfd(poll: &Poll) -> io::Result<RawFd> {
    // SAFETY: plain syscall; the fd is owned by the loop and closed at its end.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // mio's `os-ext` feature (SourceFd) is not enabled, so add the timerfd to mio's epoll set
    // directly; mio reports it like any source, with the token in the event's data.
    let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: TIMER.0 as u64 };
    // SAFETY: both fds are valid; ev is a valid epoll_event.
    if unsafe { libc::epoll_ctl(poll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    // Sub-millisecond send times: ask for little timer slack (default 50 µs).
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    Ok(fd)
}

impl<'a> Loop<'a> {
    fn run_loop(&mut self, in_flight: usize, live: &Live, tick: &mut dyn FnMut()) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = self.start;
        let mut next_sweep = self.start + SWEEP_NS;
        let mut last_phase = self.phase;
        let connect_timeout_ns = self.cfg.connect_timeout.as_nanos() as u64;
        let ramp_deadline = self.start
            + self.cfg.ramp_timeout.as_nanos() as u64
            + self.share.connect_rate.map_or(0, |r| (self.share.conns as f64 / r * 1e9) as u64);
        loop {
            let now = now_ns();
            let timeout_ns = self.next_wake(now, next_tick).saturating_sub(now);
            // Round up to whole ms so we do not wake just before a deadline; the rate timer
            // (timerfd) takes care of sub-ms precision.
            let timeout = std::time::Duration::from_millis(timeout_ns.div_ceil(1_000_000).min(100));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    self.drain_timer();
                    continue;
                }
                let key = ev.token().0;
                let hup = ev.is_read_closed() || ev.is_error();
                let readable = ev.is_readable() || hup;
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                self.ctx.now = now_ns();
                self.ctx.became_open = false;
                self.ctx.freed = false;
                let Some(c) = self.conns.get_mut(key) else { continue };
                let r = c.on_event(&mut self.ctx, readable, writable, hup, &mut self.rbuf);
                self.after_call(key, r.is_err());
            }

            let now = now_ns();
            self.ctx.now = now;
            if crate::proc::stop_requested() && self.phase < Phase::Closing {
                self.begin_shutdown(now);
            }
            match self.phase {
                Phase::Ramp => {
                    self.start_connects(now, in_flight, connect_timeout_ns);
                    let all_started = self.next_index == self.share.first + self.share.conns;
                    if (all_started && self.pending == 0) || now >= ramp_deadline {
                        self.ramp_done(now, live);
                    }
                }
                Phase::Warmup => {
                    if now >= self.phase_until {
                        self.begin_measure(now);
                    }
                }
                Phase::Measure => {
                    if now >= self.phase_until {
                        self.begin_shutdown(now);
                    }
                }
                Phase::Closing => {
                    if self.conns.is_empty() || now >= self.phase_until {
                        self.finish(now);
                    }
                }
                Phase::Done => {}
            }
            if self.scheduling() {
                self.schedule(now);
                self.dispatch();
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP_NS;
                self.sweep(now);
            }
            // Phase changes are published at once (the MEASURE_* markers time the window).
            if now >= next_tick || self.phase != last_phase {
                last_phase = self.phase;
                next_tick = now + TICK_NS;
                self.publish(live);
                tick();
            }
            if self.phase == Phase::Done {
                return Ok(());
            }
        }
    }

    /// The earliest time something is due (before the next tick).
    fn next_wake(&mut self, now: u64, next_tick: u64) -> u64 {
        let mut t = next_tick;
        match self.phase {
            Phase::Ramp => {
                if let Some(r) = self.share.connect_rate {
                    if self.pending < self.cfg.max_pending && self.next_index < self.share.first + self.share.conns {
                        let due = self.start + (self.started as f64 / r * 1e9) as u64;
                        t = t.min(due.max(now + 1_000_000));
                    }
                }
            }
            Phase::Warmup | Phase::Measure | Phase::Closing => t = t.min(self.phase_until),
            Phase::Done => t = now,
        }
        if self.scheduling() {
            let due = self.next_send();
            if self.backlog.is_empty() || self.ready.is_empty() {
                self.arm_timer(due);
            } else {
                // Work is waiting: come back at once.
                t = now;
            }
        }
        t
    }

    fn next_send(&self) -> u64 {
        self.sched_base + (self.sched_count as f64 * self.sched_interval) as u64
    }

    fn arm_timer(&mut self, at: u64) {
        let Some(fd) = self.timerfd else { return };
        if self.timer_armed_for == at {
            return;
        }
        self.timer_armed_for = at;
        let abs = at + *EPOCH_NS.get().expect("clock initialised");
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: (abs / 1_000_000_000) as _, tv_nsec: (abs % 1_000_000_000) as _ },
        };
        // SAFETY: our timerfd; spec is valid.
        unsafe { libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    }

    fn drain_timer(&mut self) {
        if let Some(fd) = self.timerfd {
            let mut b = [0u8; 8];
            // SAFETY: reads at most 8 bytes into b from our non-blocking timerfd.
            unsafe { libc::read(fd, b.as_mut_ptr().cast(), 8) };
            self.timer_armed_for = 0;
        }
    }

    /// Bookkeeping after a connection call: open/pending counts, ready queue, removal.
    fn after_call(&mut self, key: usize, ended: bool) {
        if self.ctx.became_open {
            self.pending -= 1;
            self.open += 1;
            self.peak_open = self.peak_open.max(self.open);
        }
        if ended {
            self.remove(key);
            return;
        }
        if self.cfg.mode == Mode::Rate && (self.ctx.freed || self.ctx.became_open) {
            let c = &mut self.conns[key];
            if !c.in_ready && c.active && c.room() > 0 && !self.ctx.shutting_down {
                c.in_ready = true;
                self.ready.push_back(key);
            }
        }
    }

    fn remove(&mut self, key: usize) {
        let c = self.conns.remove(key);
        if c.upgraded {
            self.open -= 1;
        } else {
            self.pending -= 1;
        }
        // Dropping the stream closes the fd, which also removes it from the epoll set.
    }

    fn start_connects(&mut self, now: u64, in_flight: usize, connect_timeout_ns: u64) {
        let end = self.share.first + self.share.conns;
        while self.next_index < end && self.pending < self.cfg.max_pending {
            if let Some(r) = self.share.connect_rate {
                let allowed = ((now - self.start) as f64 / 1e9 * r) as usize + 1;
                if self.started >= allowed {
                    break;
                }
            }
            let index = self.next_index;
            self.next_index += 1;
            self.started += 1;
            self.ctx.stats.attempted += 1;
            let mut stream = match net::start_connect(self.plan.target, self.plan.source_for(index)) {
                Ok(s) => s,
                Err(e) => {
                    self.ctx.stats.connect_failed(&net::error_reason(&e));
                    continue;
                }
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) =
                self.poll.registry().register(&mut stream, Token(key), Interest::READABLE | Interest::WRITABLE)
            {
                self.ctx.stats.connect_failed(&net::error_reason(&e));
                continue;
            }
            let active = index - self.share.first < self.share.active;
            let key_b64 = wire::new_key(&mut self.rng);
            self.ctx.now = now;
            entry.insert(Conn::new(stream, index as u32, active, in_flight, key_b64, &self.ctx, connect_timeout_ns));
            self.pending += 1;
        }
    }

    fn ramp_done(&mut self, now: u64, live: &Live) {
        self.ramp_end = now;
        live.settled.store(true, Relaxed);
        // Give up on connections never started (ramp timeout): they are simply not attempted.
        self.next_index = self.share.first + self.share.conns;
        self.publish(live);
        if self.open == 0 {
            // Nothing came up (all refused, failed or timed out): nothing to measure or hold.
            self.begin_shutdown(now);
        } else if self.cfg.mode == Mode::Idle {
            // Hold for --duration, counting from now.
            self.begin_measure(now);
        } else if !self.cfg.warmup.is_zero() {
            self.phase = Phase::Warmup;
            self.phase_until = now + self.cfg.warmup.as_nanos() as u64;
            self.start_schedule(now);
        } else {
            self.start_schedule(now);
            self.begin_measure(now);
        }
    }

    fn start_schedule(&mut self, now: u64) {
        self.sched_base = now;
        self.sched_count = 0;
    }

    fn begin_measure(&mut self, now: u64) {
        self.phase = Phase::Measure;
        self.phase_until = now + self.cfg.duration.as_nanos() as u64;
        self.measure_start = Some(now);
        self.ctx.stats.reset_window();
        self.ctx.counting = true;
    }

    fn begin_shutdown(&mut self, now: u64) {
        if let Some(ms) = self.measure_start {
            self.ctx.stats.close_window(now - ms);
        }
        self.ctx.counting = false;
        self.ctx.refill = false;
        self.ctx.shutting_down = true;
        self.phase = Phase::Closing;
        self.phase_until = now + self.cfg.close_timeout.as_nanos() as u64;
        self.backlog.clear();
        self.ready.clear();
        self.keys.clear();
        self.keys.extend(self.conns.iter().map(|(k, _)| k));
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            self.ctx.now = now;
            let r = self.conns[k].start_close(&mut self.ctx);
            if r.is_err() {
                self.remove(k);
            }
        }
        self.keys = keys;
    }

    fn finish(&mut self, now: u64) {
        self.ctx.now = now;
        self.keys.clear();
        self.keys.extend(self.conns.iter().map(|(k, _)| k));
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            let _ = self.conns[k].timed_out(&mut self.ctx);
            self.remove(k);
        }
        self.keys = keys;
        self.phase = Phase::Done;
    }

    /// Drops connections whose connect/upgrade or close deadline passed.
    fn sweep(&mut self, now: u64) {
        self.ctx.now = now;
        self.keys.clear();
        self.keys
            .extend(self.conns.iter().filter(|(_, c)| c.state != State::Open && c.deadline <= now).map(|(k, _)| k));
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            let _ = self.conns[k].timed_out(&mut self.ctx);
            self.remove(k);
        }
        self.keys = keys;
    }

    /// Rate mode, after ramp-up and before closing, with something to send (a loop can have no
    /// active connection, hence rate 0).
    fn scheduling(&self) -> bool {
        self.cfg.mode == Mode::Rate && self.share.rate > 0.0 && matches!(self.phase, Phase::Warmup | Phase::Measure)
    }

    /// Rate mode: turns due send times into backlog entries.
    fn schedule(&mut self, now: u64) {
        loop {
            let due = self.next_send();
            if due > now {
                break;
            }
            if self.backlog.len() < BACKLOG_CAP {
                self.backlog.push_back(due);
            } else if self.ctx.counting {
                self.ctx.stats.overruns += 1;
            }
            self.sched_count += 1;
        }
        self.ctx.stats.backlog_peak = self.ctx.stats.backlog_peak.max(self.backlog.len() as u64);
    }

    /// Rate mode: hands backlog entries to connections with room, one per connection per round.
    fn dispatch(&mut self) {
        while !self.backlog.is_empty() {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(c) = self.conns.get_mut(key) else { continue };
            if !c.in_ready {
                continue;
            }
            if c.room() == 0 {
                c.in_ready = false;
                continue;
            }
            let stamp = self.backlog.pop_front().expect("non-empty");
            c.enqueue(stamp);
            if c.room() > 0 {
                self.ready.push_back(key);
            } else {
                c.in_ready = false;
            }
            self.ctx.now = now_ns();
            self.ctx.became_open = false;
            self.ctx.freed = false;
            if c.flush(&mut self.ctx).is_err() {
                self.remove(key);
            }
        }
    }

    fn publish(&self, live: &Live) {
        let s = &self.ctx.stats;
        live.open.store(self.open as u64, Relaxed);
        live.pending.store(self.pending as u64, Relaxed);
        live.upgraded.store(s.upgraded, Relaxed);
        live.failed.store(s.total_connect_failures() + s.total_handshake_failures(), Relaxed);
        live.msgs.store(self.ctx.msgs_total, Relaxed);
        live.bytes.store(self.ctx.bytes_total, Relaxed);
        live.errors.store(s.mismatches + s.total_lost(), Relaxed);
        live.phase.store(self.phase as u8, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_from, Parsed};

    fn cfg(args: &[&str]) -> Config {
        match parse_from(args.iter().copied()) {
            Ok(Parsed::Run(c)) => *c,
            _ => panic!(),
        }
    }

    #[test]
    fn split_covers_every_connection_once() {
        let c = cfg(&["-m", "rate", "-r", "1000", "-c", "10", "--active", "3", "-p", "2", "-t", "2", "ws://h:1/"]);
        let s = split(&c);
        assert_eq!(s.len(), 2);
        let all: Vec<&Share> = s.iter().flatten().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().map(|x| x.conns).sum::<usize>(), 10);
        assert_eq!(all.iter().map(|x| x.active).sum::<usize>(), 3);
        let mut next = 0;
        for x in &all {
            assert_eq!(x.first, next);
            next += x.conns;
            assert!(x.active <= x.conns);
        }
        let rate: f64 = all.iter().map(|x| x.rate).sum();
        assert!((rate - 1000.0).abs() < 1e-6);
        // The fourth loop has no active connection, hence no rate.
        assert_eq!((all[3].active, all[3].rate), (0, 0.0));
    }
}
