//! `--mode soak`: the soak hooks plugged into the shared loop skeleton (`mioloop`), which drives
//! this loop's share of the connections through ramp-up, the soak (warm-up + measured window) and
//! the closing handshakes, then returns its [`Stats`].
//!
//! During the soak, connections take turns: at most `--active` of them (split over the loops)
//! have a message in flight at once, handed out round robin from a queue of idle open
//! connections, so all of them send over time while latency and the per-message echo timeout stay
//! meaningful. A connection that ends (planned clean close or abrupt drop, lost, or dropped after
//! a mismatch) is reconnected under the same index at once; a failed reconnect is retried after
//! [`RETRY_NS`]. The number of connections therefore stays at `--connections`.
//!
//! Owns the soak's scheduling (activity slots, the queue, reconnects and their retry delay, the
//! echo-progress deadline while a message is under way), not the event dispatch, phases, ramp-up
//! or close-out (see `mioloop`), frames (see `transport`, `soak_conn`) or payloads (see `payload`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;

use crate::cli::Config;
use crate::mioloop::{self, RBUF_LEN};
use crate::net::Plan;
use crate::payload::Gen;
use crate::run::{Live, Phase, Share};
use crate::soak_conn::{Ctx, End, Soak, SoakConn, SoakHooks, TxParams, WRITE_CHUNK};
use crate::stats::Stats;
use crate::sys::now_ns;
use crate::tls::Stream;
use crate::transport::State;

/// Delay before retrying a reconnect that failed.
const RETRY_NS: u64 = 250_000_000;

/// The soak parts of a loop: activity slots, the queue of idle connections, reconnects.
struct Soaker {
    seed: u64,
    connect_timeout_ns: u64,
    /// Messages flow (warm-up and measured window), since `window_start`.
    active: bool,
    window_start: u64,
    /// Activity slots not in use.
    slots: usize,
    /// Open idle connections waiting for a slot (slab keys; stale entries are skipped).
    queue: VecDeque<usize>,
    /// Reconnects due: (time, index, incarnation).
    retry: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

type Core<'a> = mioloop::Core<'a, SoakHooks>;

/// Runs one soak loop to the end; `tick` is called about every 100 ms after `live` was updated.
pub fn run(
    cfg: &Config,
    plan: &Plan,
    gen: &Gen,
    share: &Share,
    live: &Live,
    tick: &mut dyn FnMut(),
) -> io::Result<Stats> {
    let soak = Soak {
        gen,
        params: TxParams { ping_p: (cfg.ping_prob.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32 },
        echo_timeout_ns: cfg.echo_timeout.as_nanos() as u64,
        txbuf: vec![0u8; WRITE_CHUNK],
        vbuf: vec![0u8; RBUF_LEN],
    };
    let core = Core::new(cfg, plan, share, Ctx::new(cfg, now_ns(), soak))?;
    let mut soaker = Soaker {
        seed: cfg.seed,
        connect_timeout_ns: cfg.connect_timeout.as_nanos() as u64,
        active: false,
        window_start: 0,
        slots: share.active.max(1),
        queue: VecDeque::new(),
        retry: BinaryHeap::new(),
    };
    core.run(&mut soaker, live, tick)
}

impl<'a> mioloop::Mode<'a> for Soaker {
    type H = SoakHooks;

    fn new_conn(&mut self, ctx: &Ctx<'a>, stream: Stream, index: usize, incarnation: u32) -> SoakConn {
        SoakConn::new(stream, index as u32, incarnation, self.seed, ctx, self.connect_timeout_ns)
    }

    fn after_call(&mut self, core: &mut Core<'a>, key: usize, ended: bool) {
        if core.ctx.freed {
            self.slots += 1;
        }
        if !ended && (core.ctx.became_open || core.ctx.freed) && self.active && !core.ctx.shutting_down {
            self.enqueue(core, key);
        }
    }

    /// Schedules the reconnect of an ended connection.
    fn ended(&mut self, core: &mut Core<'a>, c: &SoakConn, end: End) {
        if c.hooks.has_slot {
            self.slots += 1;
        }
        if core.ctx.shutting_down {
            return;
        }
        let due = match end {
            End::Reconnect => core.ctx.now,
            // A reconnect attempt failed: try again a little later. Initial attempts that fail
            // are not retried (like the other modes, the ramp-up counts them and moves on).
            End::Failed if c.hooks.incarnation > 0 => core.ctx.now + RETRY_NS,
            End::Failed => return,
        };
        self.retry.push(Reverse((due, c.link.index, c.hooks.incarnation + 1)));
        // Dropping `c` closes the socket (RST when SO_LINGER 0 was set for an abrupt drop).
    }

    fn pending_reopens(&self) -> usize {
        self.retry.len()
    }

    fn on_ramp_done(&mut self, core: &mut Core<'a>, now: u64) -> bool {
        // Messages flow from now on; the result covers warm-up and measured window.
        self.active = true;
        core.ctx.stats.reset_window();
        core.ctx.counting = true;
        core.keys.clear();
        core.keys.extend(core.conns.iter().filter(|(_, c)| c.link.state == State::Open).map(|(k, _)| k));
        let keys = std::mem::take(&mut core.keys);
        for &k in &keys {
            self.enqueue(core, k);
        }
        core.keys = keys;
        self.window_start = now;
        false
    }

    fn on_shutdown(&mut self, core: &mut Core<'a>, now: u64) {
        if self.active {
            core.ctx.stats.close_window(self.window_start, now);
        }
        self.active = false;
        self.queue.clear();
        self.retry.clear();
    }

    fn each_round(&mut self, core: &mut Core<'a>, now: u64) {
        if core.phase < Phase::Closing {
            self.reconnect(core, now);
        }
        if self.active {
            self.dispatch(core);
        }
    }

    fn next_wake(&mut self, core: &mut Core<'a>, _now: u64, mut t: u64) -> u64 {
        if core.pending < core.cfg.max_pending {
            if let Some(Reverse((due, _, _))) = self.retry.peek() {
                t = t.min(*due);
            }
        }
        t
    }

    /// Echo progress is watched while a message is under way.
    fn deadline_when_open(c: &SoakConn) -> bool {
        c.hooks.has_slot
    }
}

impl Soaker {
    fn enqueue(&mut self, core: &mut Core<'_>, key: usize) {
        let c = &mut core.conns[key];
        if !c.hooks.queued {
            c.hooks.queued = true;
            self.queue.push_back(key);
        }
    }

    /// Starts the reconnects that are due (within `--max-pending`).
    fn reconnect(&mut self, core: &mut Core<'_>, now: u64) {
        while core.pending < core.cfg.max_pending {
            match self.retry.peek() {
                Some(Reverse((due, _, _))) if *due <= now => {}
                _ => break,
            }
            let Reverse((_, index, incarnation)) = self.retry.pop().expect("peeked");
            if !core.connect(self, index as usize, incarnation, now) {
                self.retry.push(Reverse((now + RETRY_NS, index, incarnation + 1)));
            }
        }
    }

    /// Hands free activity slots to waiting connections, round robin.
    fn dispatch(&mut self, core: &mut Core<'_>) {
        while self.slots > 0 {
            let Some(key) = self.queue.pop_front() else { break };
            let Some(c) = core.conns.get_mut(key) else { continue };
            if !c.hooks.queued {
                continue;
            }
            c.hooks.queued = false;
            if !c.can_start() {
                continue;
            }
            self.slots -= 1;
            core.begin_call(now_ns());
            let r = core.conns[key].start_message(&mut core.ctx);
            core.after_call(self, key, r);
        }
    }
}
