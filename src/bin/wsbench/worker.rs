//! The echo/rate/idle loop: the mode hooks plugged into the shared loop skeleton (`mioloop`).
//!
//! Owns the mode-specific scheduling: building a connection (payload variant, active or not,
//! pipeline depth), the open-loop rate scheduler (a backlog of scheduled send times dispatched
//! round robin to connections with room, timed by a timerfd so sends are not rounded to epoll's
//! millisecond) and the measured window's start and end. The event dispatch, connect pacing,
//! phases, deadlines, close-out and live counters are `mioloop`'s. It does not parse frames or
//! handshakes (see `transport`, `client`), print anything except fatal setup errors (see
//! `monitor`, `stats`) or fork (see `proc`), and the vocabulary every loop shares (clock, phases,
//! shares, live counters) is in the leaves `sys` and `run`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use mio::Poll;

use crate::cli::{Config, Mode};
use crate::client::{Conn, Ctx, Echo, EchoHooks};
use crate::mioloop::{self, TIMER};
use crate::net::Plan;
use crate::run::{Live, Phase, Share};
use crate::stats::Stats;
use crate::sys::{epoch_ns, now_ns};
use crate::tls::Stream;
use crate::transport::State;
use crate::wire::{self, Rng};
use crate::workload::Workload;

/// Scheduled messages that may wait for a connection with room before new ones are dropped.
const BACKLOG_CAP: usize = 1 << 20;

/// The echo/rate/idle parts of a loop: the message pipeline depth and, in rate mode, the
/// open-loop scheduler.
struct Fixed {
    /// Global index of this loop's first connection; the first `active` of them send.
    first: usize,
    active: usize,
    /// Messages a connection may have in flight.
    in_flight: usize,
    connect_timeout_ns: u64,
    rng: Rng,
    /// Rate mode: connections that may have room, round robin.
    ready: VecDeque<usize>,
    /// Rate mode: scheduled send times not yet given to a connection.
    backlog: VecDeque<u64>,
    sched_base: u64,
    sched_count: u64,
    sched_interval: f64,
    measure_start: Option<u64>,
    timerfd: Option<RawFd>,
    timer_armed_for: u64,
}

type Core<'a> = mioloop::Core<'a, EchoHooks>;

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
    // Echo mode sends from each upgrade on, unless --start-at holds the messages back.
    let ctx = Ctx::new(cfg, now_ns(), Echo::new(work, cfg.mode == Mode::Echo && cfg.start_at_unix_ns.is_none()));
    let core = Core::new(cfg, plan, share, ctx)?;
    let timerfd = if cfg.mode == Mode::Rate { Some(new_timerfd(&core.poll)?) } else { None };
    let mut fixed = Fixed {
        first: share.first,
        active: share.active,
        in_flight: match cfg.mode {
            Mode::Idle => 0,
            _ => cfg.pipeline,
        },
        connect_timeout_ns: cfg.connect_timeout.as_nanos() as u64,
        rng: Rng::from_os(share.loop_id as u64),
        ready: VecDeque::new(),
        backlog: VecDeque::new(),
        sched_base: 0,
        sched_count: 0,
        sched_interval: if share.rate > 0.0 { 1e9 / share.rate } else { f64::INFINITY },
        measure_start: None,
        timerfd,
        timer_armed_for: 0,
    };
    core.run(&mut fixed, live, tick)
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

impl Drop for Fixed {
    fn drop(&mut self) {
        if let Some(fd) = self.timerfd.take() {
            // SAFETY: our own timerfd, closed once.
            unsafe { libc::close(fd) };
        }
    }
}

impl<'a> mioloop::Mode<'a> for Fixed {
    type H = EchoHooks;

    fn new_conn(&mut self, ctx: &Ctx<'a>, stream: Stream, index: usize, _incarnation: u32) -> Conn {
        let active = index - self.first < self.active;
        let key_b64 = wire::new_key(&mut self.rng);
        Conn::new(stream, index as u32, active, self.in_flight, key_b64, ctx, self.connect_timeout_ns)
    }

    fn after_call(&mut self, core: &mut Core<'a>, key: usize, ended: bool) {
        if ended {
            return;
        }
        if core.cfg.mode == Mode::Rate && (core.ctx.freed || core.ctx.became_open) {
            let c = &mut core.conns[key];
            if !c.hooks.in_ready && c.hooks.active && c.room() > 0 && !core.ctx.shutting_down {
                c.hooks.in_ready = true;
                self.ready.push_back(key);
            }
        }
    }

    fn on_ramp_done(&mut self, core: &mut Core<'a>, now: u64) -> bool {
        if core.cfg.mode == Mode::Echo && !core.ctx.m.refill {
            // --start-at held the messages back: every open active connection starts now.
            core.ctx.m.refill = true;
            core.keys.clear();
            core.keys.extend(
                core.conns.iter().filter(|(_, c)| c.link.state == State::Open && c.hooks.active).map(|(k, _)| k),
            );
            let keys = std::mem::take(&mut core.keys);
            for &k in &keys {
                core.begin_call(now);
                let c = &mut core.conns[k];
                while c.enqueue(now) {}
                let r = c.flush(&mut core.ctx);
                core.after_call(self, k, r);
            }
            core.keys = keys;
        }
        if core.cfg.mode == Mode::Idle {
            // Hold for --duration, counting from now.
            return true;
        }
        self.sched_base = now;
        self.sched_count = 0;
        false
    }

    fn on_measure(&mut self, core: &mut Core<'a>, now: u64) {
        self.measure_start = Some(now);
        core.ctx.stats.reset_window();
        core.ctx.counting = true;
    }

    fn on_shutdown(&mut self, core: &mut Core<'a>, now: u64) {
        if let Some(ms) = self.measure_start {
            core.ctx.stats.close_window(ms, now);
        }
        core.ctx.m.refill = false;
        self.backlog.clear();
        self.ready.clear();
    }

    fn each_round(&mut self, core: &mut Core<'a>, now: u64) {
        if scheduling(core) {
            self.schedule(core, now);
            self.dispatch(core);
        }
    }

    fn next_wake(&mut self, core: &mut Core<'a>, now: u64, mut t: u64) -> u64 {
        if scheduling(core) {
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

    fn on_timer(&mut self, _core: &mut Core<'a>) {
        if let Some(fd) = self.timerfd {
            let mut b = [0u8; 8];
            // SAFETY: reads at most 8 bytes into b from our non-blocking timerfd.
            unsafe { libc::read(fd, b.as_mut_ptr().cast(), 8) };
            self.timer_armed_for = 0;
        }
    }
}

/// Rate mode, after ramp-up and before closing, with something to send (a loop can have no
/// active connection, hence rate 0).
fn scheduling(core: &Core<'_>) -> bool {
    core.cfg.mode == Mode::Rate && core.share.rate > 0.0 && matches!(core.phase, Phase::Warmup | Phase::Measure)
}

impl Fixed {
    fn next_send(&self) -> u64 {
        self.sched_base + (self.sched_count as f64 * self.sched_interval) as u64
    }

    fn arm_timer(&mut self, at: u64) {
        let Some(fd) = self.timerfd else { return };
        if self.timer_armed_for == at {
            return;
        }
        self.timer_armed_for = at;
        let abs = at + epoch_ns();
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: (abs / 1_000_000_000) as _, tv_nsec: (abs % 1_000_000_000) as _ },
        };
        // SAFETY: our timerfd; spec is valid.
        unsafe { libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    }

    /// Rate mode: turns due send times into backlog entries.
    fn schedule(&mut self, core: &mut Core<'_>, now: u64) {
        loop {
            let due = self.next_send();
            if due > now {
                break;
            }
            if self.backlog.len() < BACKLOG_CAP {
                self.backlog.push_back(due);
            } else if core.ctx.counting {
                core.ctx.stats.overruns += 1;
            }
            self.sched_count += 1;
        }
        core.ctx.stats.backlog_peak = core.ctx.stats.backlog_peak.max(self.backlog.len() as u64);
    }

    /// Rate mode: hands backlog entries to connections with room, one per connection per round.
    fn dispatch(&mut self, core: &mut Core<'_>) {
        while !self.backlog.is_empty() {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(c) = core.conns.get_mut(key) else { continue };
            if !c.hooks.in_ready {
                continue;
            }
            if c.room() == 0 {
                c.hooks.in_ready = false;
                continue;
            }
            let stamp = self.backlog.pop_front().expect("non-empty");
            c.enqueue(stamp);
            if c.room() > 0 {
                self.ready.push_back(key);
            } else {
                c.hooks.in_ready = false;
            }
            core.begin_call(now_ns());
            let r = core.conns[key].flush(&mut core.ctx);
            if let Err(e) = r {
                core.end(self, key, e);
            }
        }
    }
}
