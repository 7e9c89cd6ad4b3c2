//! `--mode soak`: one event loop driving its share of the connections through ramp-up, the soak
//! (warm-up + measured window) and the closing handshakes, then returning its [`Stats`].
//!
//! During the soak, connections take turns: at most `--active` of them (split over the loops)
//! have a message in flight at once, handed out round robin from a queue of idle open
//! connections, so all of them send over time while latency and the per-message echo timeout stay
//! meaningful. A connection that ends (planned clean close or abrupt drop, lost, or dropped after
//! a mismatch) is reconnected under the same index at once; a failed reconnect is retried after
//! [`RETRY_NS`]. The number of connections therefore stays at `--connections`.
//!
//! Owns scheduling and timing (slots, queue, reconnects, deadlines, phases, live counters), not
//! frames (see `soak_conn`) or payloads (see `payload`). Bounded like `worker`: the ramp by
//! `--ramp-timeout`, the rest by `--warmup`, `--duration` and `--close-timeout`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::cli::Config;
use crate::net::{self, Plan};
use crate::payload::Gen;
use crate::soak_conn::{Ctx, End, SoakConn, State, TxParams, WRITE_CHUNK};
use crate::stats::Stats;
use crate::worker::{now_ns, Live, Phase, Share};

/// Delay before retrying a reconnect that failed.
const RETRY_NS: u64 = 250_000_000;
const TICK_NS: u64 = 100_000_000;
const SWEEP_NS: u64 = 250_000_000;

struct SoakLoop<'a> {
    cfg: &'a Config,
    plan: &'a Plan,
    share: &'a Share,
    poll: Poll,
    conns: Slab<SoakConn>,
    ctx: Ctx<'a>,
    rbuf: Vec<u8>,
    pending: usize,
    open: usize,
    peak_open: usize,
    next_index: usize,
    started: usize,
    phase: Phase,
    start: u64,
    phase_until: u64,
    /// Messages flow (warm-up and measured window), since `window_start`.
    active: bool,
    window_start: u64,
    /// Activity slots not in use.
    slots: usize,
    /// Open idle connections waiting for a slot (slab keys; stale entries are skipped).
    queue: VecDeque<usize>,
    /// Reconnects due: (time, index, incarnation).
    retry: BinaryHeap<Reverse<(u64, u32, u32)>>,
    keys: Vec<usize>,
}

/// Runs one soak loop to the end; `tick` is called about every 100 ms after `live` was updated.
pub fn run(
    cfg: &Config,
    plan: &Plan,
    gen: &Gen,
    share: &Share,
    live: &Live,
    tick: &mut dyn FnMut(),
) -> io::Result<Stats> {
    let now = now_ns();
    let rbuf_len = 256 * 1024;
    let mut lp = SoakLoop {
        cfg,
        plan,
        share,
        poll: Poll::new()?,
        conns: Slab::with_capacity(share.conns),
        ctx: Ctx {
            cfg,
            gen,
            params: TxParams { ping_p: (cfg.ping_prob.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32 },
            now,
            stats: Stats::default(),
            msgs_total: 0,
            bytes_total: 0,
            counting: false,
            shutting_down: false,
            close_timeout_ns: cfg.close_timeout.as_nanos() as u64,
            echo_timeout_ns: cfg.echo_timeout.as_nanos() as u64,
            became_open: false,
            freed: false,
            scratch: Vec::with_capacity(512),
            txbuf: vec![0u8; WRITE_CHUNK],
            vbuf: vec![0u8; rbuf_len],
            mismatch_logs: 0,
        },
        rbuf: vec![0u8; rbuf_len],
        pending: 0,
        open: 0,
        peak_open: 0,
        next_index: share.first,
        started: 0,
        phase: Phase::Ramp,
        start: now,
        phase_until: 0,
        active: false,
        window_start: 0,
        slots: share.active.max(1),
        queue: VecDeque::new(),
        retry: BinaryHeap::new(),
        keys: Vec::new(),
    };
    lp.ctx.stats.target = share.conns as u64;
    live.target.store(share.conns as u64, std::sync::atomic::Ordering::Relaxed);
    lp.run_loop(live, tick)?;
    let mut stats = lp.ctx.stats;
    stats.elapsed_ns = now_ns() - lp.start;
    stats.peak_open = lp.peak_open as u64;
    stats.interrupted = crate::proc::stop_requested();
    Ok(stats)
}

impl SoakLoop<'_> {
    fn run_loop(&mut self, live: &Live, tick: &mut dyn FnMut()) -> io::Result<()> {
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
            let timeout = std::time::Duration::from_millis(wake.saturating_sub(now).div_ceil(1_000_000).min(100));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                let key = ev.token().0;
                let hup = ev.is_read_closed() || ev.is_error();
                let readable = ev.is_readable() || hup;
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                self.ctx.now = now_ns();
                self.ctx.became_open = false;
                self.ctx.freed = false;
                let Some(c) = self.conns.get_mut(key) else { continue };
                let r = c.on_event(&mut self.ctx, readable, writable, hup, &mut self.rbuf);
                self.after_call(key, r);
            }

            let now = now_ns();
            self.ctx.now = now;
            if crate::proc::stop_requested() && self.phase < Phase::Closing {
                self.begin_shutdown(now);
            }
            match self.phase {
                Phase::Ramp => {
                    self.start_connects(now);
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
            if self.phase < Phase::Closing {
                self.reconnect(now);
            }
            if self.active {
                self.dispatch();
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP_NS;
                self.sweep(now);
            }
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
            Phase::Warmup | Phase::Measure | Phase::Closing => t = t.min(self.phase_until),
            Phase::Done => t = now,
        }
        if self.pending < self.cfg.max_pending {
            if let Some(Reverse((due, _, _))) = self.retry.peek() {
                t = t.min(*due);
            }
        }
        t
    }

    /// Bookkeeping after a connection call.
    fn after_call(&mut self, key: usize, r: Result<(), End>) {
        if self.ctx.became_open {
            self.pending -= 1;
            self.open += 1;
            self.peak_open = self.peak_open.max(self.open);
        }
        if self.ctx.freed {
            self.slots += 1;
        }
        match r {
            Err(end) => self.end(key, end),
            Ok(()) => {
                if (self.ctx.became_open || self.ctx.freed) && self.active && !self.ctx.shutting_down {
                    self.enqueue(key);
                }
            }
        }
    }

    fn enqueue(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if !c.queued {
            c.queued = true;
            self.queue.push_back(key);
        }
    }

    /// Removes an ended connection and schedules its reconnect.
    fn end(&mut self, key: usize, end: End) {
        let c = self.conns.remove(key);
        if c.has_slot {
            self.slots += 1;
        }
        if c.upgraded {
            self.open -= 1;
        } else {
            self.pending -= 1;
        }
        if self.ctx.shutting_down {
            return;
        }
        let due = match end {
            End::Reconnect => self.ctx.now,
            // A reconnect attempt failed: try again a little later. Initial attempts that fail
            // are not retried (like the other modes, the ramp-up counts them and moves on).
            End::Failed if c.incarnation > 0 => self.ctx.now + RETRY_NS,
            End::Failed => return,
        };
        self.retry.push(Reverse((due, c.index, c.incarnation + 1)));
        // Dropping `c` closes the socket (RST when SO_LINGER 0 was set for an abrupt drop).
    }

    /// Starts a TCP connect for `index`; false when it failed at once (counted).
    fn connect(&mut self, index: usize, incarnation: u32, now: u64) -> bool {
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
        self.ctx.now = now;
        let timeout = self.cfg.connect_timeout.as_nanos() as u64;
        entry.insert(SoakConn::new(stream, index as u32, incarnation, self.cfg.seed, &self.ctx, timeout));
        self.pending += 1;
        true
    }

    fn start_connects(&mut self, now: u64) {
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
            self.connect(index, 0, now);
        }
    }

    /// Starts the reconnects that are due (within `--max-pending`).
    fn reconnect(&mut self, now: u64) {
        while self.pending < self.cfg.max_pending {
            match self.retry.peek() {
                Some(Reverse((due, _, _))) if *due <= now => {}
                _ => break,
            }
            let Reverse((_, index, incarnation)) = self.retry.pop().expect("peeked");
            if !self.connect(index as usize, incarnation, now) {
                self.retry.push(Reverse((now + RETRY_NS, index, incarnation + 1)));
            }
        }
    }

    fn ramp_done(&mut self, now: u64, live: &Live) {
        live.settled.store(true, std::sync::atomic::Ordering::Relaxed);
        self.next_index = self.share.first + self.share.conns;
        self.publish(live);
        if self.open == 0 {
            self.begin_shutdown(now);
            return;
        }
        // Messages flow from now on; the result covers warm-up and measured window.
        self.active = true;
        self.ctx.stats.reset_window();
        self.ctx.counting = true;
        self.keys.clear();
        self.keys.extend(self.conns.iter().filter(|(_, c)| c.state == State::Open).map(|(k, _)| k));
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            self.enqueue(k);
        }
        self.keys = keys;
        if self.cfg.warmup.is_zero() {
            self.begin_measure(now);
        } else {
            self.phase = Phase::Warmup;
            self.phase_until = now + self.cfg.warmup.as_nanos() as u64;
        }
        self.window_start = now;
    }

    fn begin_measure(&mut self, now: u64) {
        self.phase = Phase::Measure;
        self.phase_until = now + self.cfg.duration.as_nanos() as u64;
    }

    fn begin_shutdown(&mut self, now: u64) {
        if self.active {
            self.ctx.stats.close_window(now.saturating_sub(self.window_start));
        }
        self.active = false;
        self.ctx.counting = false;
        self.ctx.shutting_down = true;
        self.phase = Phase::Closing;
        self.phase_until = now + self.cfg.close_timeout.as_nanos() as u64;
        self.queue.clear();
        self.retry.clear();
        self.keys.clear();
        self.keys.extend(self.conns.iter().map(|(k, _)| k));
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            self.ctx.now = now;
            if let Err(e) = self.conns[k].start_close(&mut self.ctx) {
                self.end(k, e);
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
            let e = self.conns[k].timed_out(&mut self.ctx);
            self.end(k, e);
        }
        self.keys = keys;
        self.phase = Phase::Done;
    }

    /// Hands free activity slots to waiting connections, round robin.
    fn dispatch(&mut self) {
        while self.slots > 0 {
            let Some(key) = self.queue.pop_front() else { break };
            let Some(c) = self.conns.get_mut(key) else { continue };
            if !c.queued {
                continue;
            }
            c.queued = false;
            if !c.can_start() {
                continue;
            }
            self.slots -= 1;
            self.ctx.now = now_ns();
            self.ctx.became_open = false;
            self.ctx.freed = false;
            let r = c.start_message(&mut self.ctx);
            self.after_call(key, r);
        }
    }

    /// Ends connections whose deadline passed: connect/upgrade, echo progress, close reply.
    fn sweep(&mut self, now: u64) {
        self.ctx.now = now;
        self.keys.clear();
        self.keys.extend(
            self.conns
                .iter()
                .filter(|(_, c)| c.deadline <= now && (c.state != State::Open || c.has_slot))
                .map(|(k, _)| k),
        );
        let keys = std::mem::take(&mut self.keys);
        for &k in &keys {
            let e = self.conns[k].timed_out(&mut self.ctx);
            self.end(k, e);
        }
        self.keys = keys;
    }

    fn publish(&self, live: &Live) {
        use std::sync::atomic::Ordering::Relaxed;
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
