//! The event-loop skeleton shared by every mode: a mio `Poll` over a slab of connections, driven
//! through the phases ramp-up → warm-up → measured window (or hold/soak) → closing → done.
//!
//! Owns what every loop does the same way: dispatching readiness events to the connections, the
//! connect pacing of the ramp-up (`--connect-rate`, `--max-pending`, `--ramp-timeout`), the hold
//! until `--start-at` after it, phase changes and their deadlines, stop-signal handling, the
//! per-connection deadline sweep, the close-out (close handshakes, then dropping what is left),
//! open/pending bookkeeping and the live counters for the progress monitor. What differs per mode plugs in through [`Mode`]:
//! building a connection, what happens after a connection call, when a phase begins, extra work
//! each round (rate scheduling, soak slots and reconnects) and extra wake-ups. It does not parse
//! frames (see `transport`, `client`, `soak_conn`) nor print anything.

use std::io;
use std::sync::atomic::Ordering::Relaxed;

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::cli::Config;
use crate::net::{self, Plan};
use crate::run::{Live, Phase, Share};
use crate::stats::Stats;
use crate::sys::{now_ns, stop_requested};
use crate::tls::Stream;
use crate::transport::{Conn, Ctx, Hooks, State};

/// Token of a mode's timer (connections use slab keys, far below this).
pub const TIMER: Token = Token(usize::MAX - 1);
/// Size of the loop's read buffer.
pub const RBUF_LEN: usize = 256 * 1024;
/// How often live counters are published and the monitor is ticked.
const TICK_NS: u64 = 100_000_000;
/// How often per-connection deadlines are checked.
const SWEEP_NS: u64 = 250_000_000;

/// The state every loop has.
pub struct Core<'a, H: Hooks<'a>> {
    pub cfg: &'a Config,
    pub plan: &'a Plan,
    pub share: &'a Share,
    pub poll: Poll,
    pub conns: Slab<Conn<H>>,
    pub ctx: Ctx<'a, H::X>,
    rbuf: Vec<u8>,
    /// Connections connecting or upgrading.
    pub pending: usize,
    /// Connections upgraded and not ended.
    pub open: usize,
    peak_open: usize,
    next_index: usize,
    started: usize,
    pub phase: Phase,
    start: u64,
    phase_until: u64,
    /// `--start-at` as a [`now_ns`] value.
    start_at: Option<u64>,
    /// Reused list of slab keys.
    pub keys: Vec<usize>,
}

/// The mode-specific parts of a loop.
pub trait Mode<'a>: Sized {
    /// The mode's part of its connections.
    type H: Hooks<'a>;

    /// A connection object for `index` whose TCP connect was just started (`ctx.now` is set).
    fn new_conn(
        &mut self,
        ctx: &Ctx<'a, <Self::H as Hooks<'a>>::X>,
        stream: Stream,
        index: usize,
        incarnation: u32,
    ) -> Conn<Self::H>;
    /// After a connection call (`became_open`/`freed` are in the context); the connection has
    /// already been ended when `ended`.
    fn after_call(&mut self, core: &mut Core<'a, Self::H>, key: usize, ended: bool);
    /// A connection was removed (`end`: why, from its call).
    fn ended(&mut self, _core: &mut Core<'a, Self::H>, _c: &Conn<Self::H>, _end: <Self::H as Hooks<'a>>::End) {}
    /// Ramp-up is over with something open (or due to reopen). True: go to the measured window at once.
    fn on_ramp_done(&mut self, core: &mut Core<'a, Self::H>, now: u64) -> bool;
    /// Connections this mode will open again (soak reconnects): with none open but some due, the
    /// run goes on instead of ending at ramp-up.
    fn pending_reopens(&self) -> usize {
        0
    }
    /// The measured window begins.
    fn on_measure(&mut self, _core: &mut Core<'a, Self::H>, _now: u64) {}
    /// Closing begins (before every connection is asked to close).
    fn on_shutdown(&mut self, core: &mut Core<'a, Self::H>, now: u64);
    /// Each round, after phase changes.
    fn each_round(&mut self, core: &mut Core<'a, Self::H>, now: u64);
    /// The earliest time the mode needs to run, given the loop's `t`.
    fn next_wake(&mut self, core: &mut Core<'a, Self::H>, now: u64, t: u64) -> u64;
    /// An event on [`TIMER`].
    fn on_timer(&mut self, _core: &mut Core<'a, Self::H>) {}
    /// The connection's deadline also applies while it is open.
    fn deadline_when_open(_c: &Conn<Self::H>) -> bool {
        false
    }
}

impl<'a, H: Hooks<'a>> Core<'a, H> {
    pub fn new(cfg: &'a Config, plan: &'a Plan, share: &'a Share, ctx: Ctx<'a, H::X>) -> io::Result<Self> {
        let now = ctx.now;
        Ok(Core {
            cfg,
            plan,
            share,
            poll: Poll::new()?,
            conns: Slab::with_capacity(share.conns),
            ctx,
            rbuf: vec![0u8; RBUF_LEN],
            pending: 0,
            open: 0,
            peak_open: 0,
            next_index: share.first,
            started: 0,
            phase: Phase::Ramp,
            start: now,
            phase_until: 0,
            start_at: cfg.start_at_unix_ns.map(crate::sys::mono_of_unix_ns),
            keys: Vec::new(),
        })
    }

    /// Runs the loop to the end and returns its statistics. `tick` is called about every 100 ms
    /// after `live` was updated (the single-loop case drives the progress monitor from here).
    pub fn run<M: Mode<'a, H = H>>(mut self, m: &mut M, live: &Live, tick: &mut dyn FnMut()) -> io::Result<Stats> {
        self.ctx.stats.target = self.share.conns as u64;
        live.target.store(self.share.conns as u64, Relaxed);
        self.run_loop(m, live, tick)?;
        let mut stats = self.ctx.stats;
        stats.elapsed_ns = now_ns() - self.start;
        stats.peak_open = self.peak_open as u64;
        stats.interrupted = stop_requested();
        Ok(stats)
    }

    fn run_loop<M: Mode<'a, H = H>>(&mut self, m: &mut M, live: &Live, tick: &mut dyn FnMut()) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = self.start;
        let mut next_sweep = self.start + SWEEP_NS;
        let mut last_phase = self.phase;
        let ramp_deadline = self.start
            + self.cfg.ramp_timeout.as_nanos() as u64
            + self.share.connect_rate.map_or(0, |r| (self.share.conns as f64 / r * 1e9) as u64);
        loop {
            let now = now_ns();
            let wake = self.next_wake(now, next_tick);
            let wake = m.next_wake(self, now, wake);
            // Round up to whole ms so we do not wake just before a deadline; a mode's timer
            // (timerfd) takes care of sub-ms precision.
            let timeout = std::time::Duration::from_millis(wake.saturating_sub(now).div_ceil(1_000_000).min(100));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    m.on_timer(self);
                    continue;
                }
                let key = ev.token().0;
                let hup = ev.is_read_closed() || ev.is_error();
                let readable = ev.is_readable() || hup;
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                self.begin_call(now_ns());
                let Some(c) = self.conns.get_mut(key) else { continue };
                let r = c.on_event(&mut self.ctx, readable, writable, hup, &mut self.rbuf);
                self.after_call(m, key, r);
            }

            let now = now_ns();
            self.ctx.now = now;
            if stop_requested() && self.phase < Phase::Closing {
                self.begin_shutdown(m, now);
            }
            match self.phase {
                Phase::Ramp => {
                    self.start_connects(m, now);
                    let all_started = self.next_index == self.share.first + self.share.conns;
                    if (all_started && self.pending == 0) || now >= ramp_deadline {
                        self.ramp_done(m, now, live);
                    }
                }
                Phase::Wait => {
                    if now >= self.phase_until {
                        self.begin_flow(m, now);
                    }
                }
                Phase::Warmup => {
                    if now >= self.phase_until {
                        self.begin_measure(m, now);
                    }
                }
                Phase::Measure => {
                    if now >= self.phase_until {
                        self.begin_shutdown(m, now);
                    }
                }
                Phase::Closing => {
                    if self.conns.is_empty() || now >= self.phase_until {
                        self.finish(m, now);
                    }
                }
                Phase::Done => {}
            }
            m.each_round(self, now);
            if now >= next_sweep {
                next_sweep = now + SWEEP_NS;
                self.sweep(m, now);
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

    /// The earliest time something of the loop's own is due (before the next tick).
    fn next_wake(&self, now: u64, next_tick: u64) -> u64 {
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
            Phase::Wait | Phase::Warmup | Phase::Measure | Phase::Closing => t = t.min(self.phase_until),
            Phase::Done => t = now,
        }
        t
    }

    /// Prepares the context for a connection call at `now`.
    pub fn begin_call(&mut self, now: u64) {
        self.ctx.now = now;
        self.ctx.became_open = false;
        self.ctx.freed = false;
    }

    /// Bookkeeping after a connection call: open/pending counts, then the mode's, and removal.
    pub fn after_call<M: Mode<'a, H = H>>(&mut self, m: &mut M, key: usize, r: Result<(), H::End>) {
        if self.ctx.became_open {
            self.pending -= 1;
            self.open += 1;
            self.peak_open = self.peak_open.max(self.open);
        }
        let ended = r.is_err();
        if let Err(e) = r {
            self.end(m, key, e);
        }
        m.after_call(self, key, ended);
    }

    /// Removes an ended connection (dropping it closes the socket, which also takes it out of
    /// the epoll set).
    pub fn end<M: Mode<'a, H = H>>(&mut self, m: &mut M, key: usize, e: H::End) {
        let c = self.conns.remove(key);
        if c.link.upgraded {
            self.open -= 1;
        } else {
            self.pending -= 1;
        }
        m.ended(self, &c, e);
    }

    /// Starts a TCP connect for `index`; false when it failed at once (counted).
    pub fn connect<M: Mode<'a, H = H>>(&mut self, m: &mut M, index: usize, incarnation: u32, now: u64) -> bool {
        let mut stream = match net::start_connect(self.plan.target, self.plan.source_for(index)) {
            Ok(s) => s,
            Err(e) => {
                self.ctx.stats.connect_failed(&net::error_reason(&e));
                return false;
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(&mut stream, Token(key), Interest::READABLE | Interest::WRITABLE)
        {
            self.ctx.stats.connect_failed(&net::error_reason(&e));
            return false;
        }
        let stream = match Stream::new(stream, self.plan.tls.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                self.ctx.stats.connect_failed(&format!("tls: {e}"));
                return false;
            }
        };
        self.ctx.now = now;
        entry.insert(m.new_conn(&self.ctx, stream, index, incarnation));
        self.pending += 1;
        true
    }

    fn start_connects<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64) {
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
            self.connect(m, index, 0, now);
        }
    }

    fn ramp_done<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64, live: &Live) {
        live.settled.store(true, Relaxed);
        // Give up on connections never started (ramp timeout): they are simply not attempted.
        self.next_index = self.share.first + self.share.conns;
        self.publish(live);
        if self.open == 0 && m.pending_reopens() == 0 {
            // Nothing came up (all refused, failed or timed out): nothing to measure or hold.
            self.begin_shutdown(m, now);
        } else if let Some(at) = self.start_at.filter(|&at| at > now) {
            // Hold what is open, sending nothing, until the shards start together.
            self.phase = Phase::Wait;
            self.phase_until = at;
        } else {
            if let Some(at) = self.start_at {
                self.ctx.stats.start_late_ns = now - at;
            }
            self.begin_flow(m, now);
        }
    }

    /// Messages start flowing: warm-up, or the measured window at once.
    fn begin_flow<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64) {
        if m.on_ramp_done(self, now) || self.cfg.warmup.is_zero() {
            self.begin_measure(m, now);
        } else {
            self.phase = Phase::Warmup;
            self.phase_until = now + self.cfg.warmup.as_nanos() as u64;
        }
    }

    fn begin_measure<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64) {
        self.phase = Phase::Measure;
        self.phase_until = now + self.cfg.duration.as_nanos() as u64;
        m.on_measure(self, now);
    }

    fn begin_shutdown<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64) {
        m.on_shutdown(self, now);
        self.ctx.counting = false;
        self.ctx.shutting_down = true;
        self.phase = Phase::Closing;
        self.phase_until = now + self.cfg.close_timeout.as_nanos() as u64;
        self.keys.clear();
        self.keys.extend(self.conns.iter().map(|(k, _)| k));
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            self.ctx.now = now;
            if let Err(e) = self.conns[k].start_close(&mut self.ctx) {
                self.end(m, k, e);
            }
        }
        self.keys = keys;
    }

    fn finish<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64) {
        self.ctx.now = now;
        self.keys.clear();
        self.keys.extend(self.conns.iter().map(|(k, _)| k));
        self.time_out_keys(m);
        self.phase = Phase::Done;
    }

    /// Ends connections whose deadline passed: connect/upgrade, close reply, and whatever the
    /// mode watches while open.
    fn sweep<M: Mode<'a, H = H>>(&mut self, m: &mut M, now: u64) {
        self.ctx.now = now;
        self.keys.clear();
        self.keys.extend(
            self.conns
                .iter()
                .filter(|(_, c)| {
                    let link = &c.link;
                    link.deadline <= now && (link.state != State::Open || M::deadline_when_open(c))
                })
                .map(|(k, _)| k),
        );
        self.time_out_keys(m);
    }

    fn time_out_keys<M: Mode<'a, H = H>>(&mut self, m: &mut M) {
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            let e = self.conns[k].timed_out(&mut self.ctx);
            self.end(m, k, e);
        }
        self.keys = keys;
    }

    fn publish(&self, live: &Live) {
        let s = &self.ctx.stats;
        live.open.store(self.open as u64, Relaxed);
        live.pending.store(self.pending as u64, Relaxed);
        live.upgraded.store(s.upgraded, Relaxed);
        live.failed.store(s.total_connect_failures() + s.total_handshake_failures(), Relaxed);
        live.msgs.store(self.ctx.msgs_total, Relaxed);
        live.bytes.store(self.ctx.bytes_total, Relaxed);
        live.errors.store(s.mismatches + s.fidelity_errors + s.total_lost(), Relaxed);
        live.phase.store(self.phase as u8, Relaxed);
    }
}
