//! The event loop: one mio `Poll`, one listener, every connection in a `Slab`, the timers.
//!
//! Owns readiness dispatch and everything that touches `Poll`, the slab or the timer lists:
//! accepting (until `WouldBlock`; on EMFILE/ENFILE it stops accepting for a moment instead of
//! spinning, and keeps serving open connections), registering each socket once for readable and
//! writable edges (so backpressure never costs an `epoll_ctl`), fairness (see [`Reactor::turn`]:
//! every connection with something to read gets one read budget per turn, in a FIFO order, and one
//! that used it all waits for the others before its next), timeouts, and removal. It never
//! inspects bytes: protocol work is `conn`'s.
//!
//! Graceful shutdown: when its [`Control`] is triggered the reactor drops its listener, sends
//! close 1001 to every open connection (at most [`SHUTDOWN_WINDOW`] outstanding at once), closes
//! those still in the handshake, and returns from [`Reactor::run`] once every connection is gone
//! or the shutdown timeout has passed.

use crate::close::CloseCode;
use crate::config::Config;
use crate::conn::{Connection, Next};
use crate::metrics::MetricsBoard;
use crate::notify::Notifier;
use crate::shared::Shared;
use crate::timer::{TimerKind, Timers};
use crate::tls::config::TlsSource;
use crate::tls::session::Tls;
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Token of the listening socket; connections use their slab key.
const LISTENER: Token = Token(usize::MAX - 1);

/// Token of the waker that delivers shutdown requests.
const WAKER: Token = Token(usize::MAX - 2);

/// How often a reactor publishes its counters to a shared [`MetricsBoard`].
const PUBLISH_MS: u32 = 100;

/// Shutdown switch shared by the reactors of a process and whoever handles signals.
#[derive(Debug, Default)]
pub struct Control {
    shutdown: AtomicBool,
    wakers: Mutex<Vec<Arc<Waker>>>,
}

impl Control {
    /// A switch with no reactor attached yet.
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// Asks every attached reactor to shut down gracefully.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Ok(ws) = self.wakers.lock() {
            for w in ws.iter() {
                let _ = w.wake();
            }
        }
    }

    /// Whether shutdown was requested.
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// Graceful shutdown: close frames (1001) outstanding at once per reactor. The rest wait for
/// earlier connections to finish their close handshake (or time out), so a reactor with many
/// connections does not queue a close frame on every socket at once: on a host with a million
/// connections that is a million receive buffers charged at once, over `tcp_mem`, and the
/// kernel then drops the close replies (docs/million.md).
pub const SHUTDOWN_WINDOW: usize = 1024;

/// How long accepting pauses after EMFILE/ENFILE.
const ACCEPT_PAUSE_MS: u32 = 100;

/// Connections accepted per wakeup before serving the others.
const ACCEPTS_PER_WAKEUP: usize = 256;

/// One bit per slab key: the connections in the read queue ([`Reactor::turn`]), so that none is
/// queued twice.
#[derive(Debug, Default)]
struct KeySet(Vec<u64>);

impl KeySet {
    /// Makes room for key `k` (called on accept, so the per-message path never grows it).
    fn reserve(&mut self, k: usize) {
        let words = k / 64 + 1;
        if self.0.len() < words {
            self.0.resize(words.next_power_of_two(), 0);
        }
    }

    /// Adds `k`; false when it was already in.
    fn insert(&mut self, k: usize) -> bool {
        self.reserve(k);
        let (w, bit) = (&mut self.0[k / 64], 1u64 << (k % 64));
        let new = *w & bit == 0;
        *w |= bit;
        new
    }

    /// Removes `k`; false when it was not in.
    fn remove(&mut self, k: usize) -> bool {
        let Some(w) = self.0.get_mut(k / 64) else { return false };
        let bit = 1u64 << (k % 64);
        let had = *w & bit != 0;
        *w &= !bit;
        had
    }
}

/// A single-threaded WebSocket echo reactor.
#[derive(Debug)]
pub struct Reactor {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local: SocketAddr,
    conns: Slab<Connection>,
    shared: Shared,
    timers: Timers,
    start: Instant,
    max_connections: usize,
    /// Accepting is paused (fd exhaustion) until this time (ms since start).
    accept_paused_until: Option<u32>,
    /// The accept burst was cut short: accept again without waiting for an edge.
    accept_again: bool,
    /// This turn's read queue: the connections that used their whole read budget last turn (in the
    /// order they used it), then those that became readable this turn (in event order).
    ready: Vec<usize>,
    /// Connections that used their whole read budget this turn (more to read): the head of the
    /// next turn's `ready`.
    again: Vec<usize>,
    /// TLS handshakes put off for lack of this turn's handshake budget, oldest first: each turn
    /// takes its budget from the head before the read queue, so a burst of N handshakes costs N
    /// visits, not one per deferred connection per turn.
    deferred: VecDeque<usize>,
    /// The keys in `ready`, `again` or `deferred`: each connection is queued at most once.
    queued: KeySet,
    control: Arc<Control>,
    /// Idle/ping timer configured.
    idle: bool,
    /// Shutdown in progress: return once empty or at this deadline (ms).
    draining_until: Option<u32>,
    shutdown_ms: u32,
    /// Connections still to be sent their 1001 (shutdown), at most [`SHUTDOWN_WINDOW`] ahead.
    to_close: Vec<usize>,
    /// Next housekeeping (metrics publication, watchdog) and the watchdog interval.
    next_tick: Option<u32>,
    watchdog_ms: Option<u32>,
    next_watchdog: u32,
    watchdog: Notifier,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Reactor {
    /// Binds `cfg.listen` as the server does (`listener::bind_listener`) and prepares the loop.
    pub fn bind(cfg: &Config) -> io::Result<Reactor> {
        let listener = crate::listener::bind_listener(cfg.listen, cfg.reuse_port)?;
        let mut r = Reactor::with_listener(cfg, listener, Control::new(), None)?;
        if let Some(files) = &cfg.tls {
            r.set_tls(TlsSource::open(files.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?);
        }
        Ok(r)
    }

    /// Makes the listener speak TLS with the configuration `source` holds (re-read when it is
    /// reloaded). The configuration must have been built with `tls` set (buffer sizes).
    pub fn set_tls(&mut self, source: Arc<TlsSource>) {
        let staging = self.shared.staging();
        self.shared.tls = Some(Box::new(Tls::new(source, staging, self.conns.capacity())));
    }

    /// Prepares the loop around an already bound, listening, non-blocking socket (socket
    /// activation, `SO_REUSEPORT`), attached to `control`, publishing to `board` slot.
    pub fn with_listener(
        cfg: &Config,
        mut listener: TcpListener,
        control: Arc<Control>,
        board: Option<(Arc<MetricsBoard>, usize)>,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        if let Ok(mut ws) = control.wakers.lock() {
            ws.push(waker);
        }
        let local = listener.local_addr()?;
        // The idle list ticks at a quarter of the shorter of ping interval and idle timeout, so
        // either fires at most 25% late, with O(1) work per tick and no per-message timer update.
        let idle_ms = cfg.ping_interval.into_iter().chain(cfg.idle_timeout).map(millis).min();
        let tick = idle_ms.map_or(u32::MAX, |m| (m / 4).max(10));
        let timers = Timers::new([millis(cfg.handshake_timeout), millis(cfg.close_timeout), tick]);
        let shared = Shared::new(cfg, board);
        let watchdog_ms = None;
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            listener: Some(listener),
            local,
            // Reserve the slab up front: pages are only touched as connections arrive, and the
            // table never reallocates (no copy of 100k entries at a doubling). With several
            // reactors each reserves its share; an uneven spread only costs a rare doubling.
            conns: Slab::with_capacity(cfg.max_connections.min(1 << 20).div_ceil(cfg.threads.max(1))),
            next_tick: shared.board.as_ref().map(|_| PUBLISH_MS),
            shared,
            timers,
            start: Instant::now(),
            max_connections: cfg.max_connections,
            accept_paused_until: None,
            accept_again: false,
            ready: Vec::with_capacity(1024),
            again: Vec::with_capacity(1024),
            deferred: VecDeque::new(),
            queued: KeySet::default(),
            control,
            idle: idle_ms.is_some(),
            draining_until: None,
            shutdown_ms: millis(cfg.shutdown_timeout),
            to_close: Vec::new(),
            watchdog_ms,
            next_watchdog: 0,
            watchdog: Notifier::default(),
        })
    }

    /// The shutdown switch this reactor obeys.
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Sends `WATCHDOG=1` through `notifier` every `interval` from this reactor's loop.
    pub fn set_watchdog(&mut self, interval: Duration, notifier: Notifier) {
        let ms = millis(interval).max(1);
        self.watchdog_ms = Some(ms);
        self.watchdog = notifier;
        self.next_watchdog = self.now();
        self.next_tick = Some(self.now());
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// This reactor's counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    fn now(&self) -> u32 {
        millis(self.start.elapsed())
    }

    /// Runs until a graceful shutdown completes (or an unrecoverable poll error).
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            self.turn(None)?;
            if let Some(until) = self.draining_until {
                if self.conns.is_empty() || self.now() >= until {
                    if !self.conns.is_empty() {
                        info!("shutdown timeout: dropping {} connections", self.conns.len());
                    }
                    self.publish();
                    return Ok(());
                }
            }
        }
    }

    fn publish(&mut self) {
        if let Some((b, i)) = &self.shared.board {
            b.publish(*i, &self.shared.metrics);
        }
    }

    /// Stop accepting, close 1001 to every open connection, drop those not upgraded.
    fn begin_shutdown(&mut self) {
        let now = self.now();
        self.draining_until = Some(now.saturating_add(self.shutdown_ms));
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.accept_paused_until = None;
        self.accept_again = false;
        // Last key first out of the stack: closes go out in accept order.
        self.to_close = self.conns.iter().map(|(k, _)| k).collect();
        self.to_close.reverse();
        info!("shutting down: closing {} connections (1001)", self.to_close.len());
        self.close_more(now);
    }

    /// Sends 1001 to the next connections in `to_close` while fewer than [`SHUTDOWN_WINDOW`] of
    /// those already sent one are still open. (The listener is gone, so no key is reused; a key
    /// whose connection ended by itself is skipped.)
    fn close_more(&mut self, now: u32) {
        while let Some(&k) = self.to_close.last() {
            if self.conns.len() - self.to_close.len().min(self.conns.len()) >= SHUTDOWN_WINDOW {
                return;
            }
            self.to_close.pop();
            self.shared.now_ms = now;
            let Some(conn) = self.conns.get_mut(k) else { continue };
            let before = conn.timer_kind(self.idle);
            let next = conn.start_close(&mut self.shared, CloseCode::GOING_AWAY, "server shutting down");
            let after = conn.timer_kind(self.idle);
            self.finish(k, next, before, after);
        }
    }
    /// One iteration: wait for events (at most `max_wait`), dispatch them, read, expire timers.
    ///
    /// Fairness under deep backlogs: events only flush output and queue the connection for reading;
    /// reads happen after all events, one read budget (`conn`'s `READS_PER_WAKEUP` reads) per
    /// queued connection, in queue order: first those that used their whole budget last turn, in
    /// the order they used it, then those that became readable this turn. A connection that uses
    /// its whole budget again goes to the back, for the next turn: each busy connection is read
    /// once per turn, at an even spacing. (Serving such a connection again in the same turn, as
    /// before, in LIFO order, and a second time when it also had an event, gave some connections
    /// two services a turn and others one, unevenly spaced: per-connection echo rates 2x apart
    /// under 200 x 16 x 16 KiB in flight, and round trips of up to two turns; see docs/fairness.md.)
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = self.now();
        let mut timeout = self.timers.next_due(&mut self.conns, now).map(|ms| Duration::from_millis(ms.into()));
        for until in [self.accept_paused_until, self.next_tick, self.draining_until].into_iter().flatten() {
            let d = Duration::from_millis(until.saturating_sub(now).into());
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
        if !self.again.is_empty() || !self.deferred.is_empty() || self.accept_again {
            timeout = Some(Duration::ZERO);
        }
        if let Some(m) = max_wait {
            timeout = Some(timeout.map_or(m, |t| t.min(m)));
        }
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        self.shared.now_ms = self.now();
        let mut accept = std::mem::take(&mut self.accept_again);
        // Last turn's unfinished readers first (an empty `ready` takes `again`'s place: no allocation).
        std::mem::swap(&mut self.ready, &mut self.again);
        // Index loop: `self.events` is borrowed only per event so handlers can take `&mut self`.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            match ev.token() {
                LISTENER => accept = true,
                WAKER => {}
                Token(k) => {
                    let hup = ev.is_read_closed() || ev.is_error();
                    if hup {
                        if let Some(c) = self.conns.get_mut(k) {
                            c.note_hangup();
                        }
                    }
                    let readable = ev.is_readable() || hup;
                    let writable = ev.is_writable() || ev.is_write_closed();
                    self.dispatch(k, readable, writable);
                }
            }
        }
        self.events = events;
        // The read phase: one read budget per queued connection, in queue order, after this
        // turn's share of the put-off TLS handshakes (oldest first).
        if let Some(t) = self.shared.tls.as_mut() {
            t.new_turn();
        }
        while self.shared.tls.as_ref().is_some_and(|t| t.budget_left() > 0) {
            let Some(k) = self.deferred.pop_front() else { break };
            if self.queued.remove(k) {
                self.read(k);
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        for &k in &ready {
            // Not in the set any more: closed since it was queued (its key may be reused).
            if self.queued.remove(k) {
                self.read(k);
            }
        }
        ready.clear();
        self.ready = ready;
        let now = self.now();
        self.shared.now_ms = now;
        while let Some((k, kind)) = self.timers.pop_expired(&mut self.conns, now) {
            self.on_timeout(k, kind);
        }
        if self.control.is_shutdown() && self.draining_until.is_none() {
            self.begin_shutdown();
        } else if !self.to_close.is_empty() {
            self.close_more(now);
        }
        if self.next_tick.is_some_and(|t| now >= t) {
            self.housekeeping(now);
        }
        if let Some(until) = self.accept_paused_until {
            if now >= until {
                self.accept_paused_until = None;
                accept = true;
            }
        }
        if accept && self.accept_paused_until.is_none() && self.listener.is_some() {
            self.accept_burst();
        }
        Ok(())
    }

    fn housekeeping(&mut self, now: u32) {
        let mut next = u32::MAX;
        if self.shared.board.is_some() {
            self.publish();
            next = now + PUBLISH_MS;
        }
        if let Some(w) = self.watchdog_ms {
            if now >= self.next_watchdog {
                let _ = self.watchdog.notify("WATCHDOG=1");
                self.next_watchdog = now + w;
            }
            next = next.min(self.next_watchdog);
        }
        self.next_tick = (next != u32::MAX).then_some(next);
    }

    /// Handles one event: writes queued output now, queues the connection for this turn's read
    /// phase (unless it is queued already, or resuming from backpressure already read it).
    fn dispatch(&mut self, k: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        let before = conn.timer_kind(self.idle);
        let sh = &mut self.shared;
        let mut next = Next::Keep;
        let mut read_done = false;
        if writable {
            let was_paused = conn.is_paused();
            next = contained(sh, |sh| conn.on_writable(sh));
            read_done = was_paused && !conn.is_paused();
        }
        if next == Next::Keep && readable && !read_done && self.queued.insert(k) {
            self.ready.push(k);
        }
        let after = conn.timer_kind(self.idle);
        self.finish(k, next, before, after);
    }

    /// Gives connection `k` one read budget.
    fn read(&mut self, k: usize) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        let before = conn.timer_kind(self.idle);
        let next = contained(&mut self.shared, |sh| conn.on_readable(sh));
        let after = conn.timer_kind(self.idle);
        self.finish(k, next, before, after);
    }

    /// Acts on a handler's verdict and moves the connection to the timer list of its phase.
    fn finish(&mut self, k: usize, next: Next, before: TimerKind, after: TimerKind) {
        match next {
            Next::Close => self.close(k),
            Next::Again => {
                if self.queued.insert(k) {
                    self.again.push(k);
                }
                self.sync_timer(k, before, after);
            }
            Next::Defer => {
                if self.queued.insert(k) {
                    self.deferred.push_back(k);
                }
                self.sync_timer(k, before, after);
            }
            Next::Keep => self.sync_timer(k, before, after),
        }
    }

    fn sync_timer(&mut self, k: usize, before: TimerKind, after: TimerKind) {
        if before != after {
            let now = self.now();
            self.timers.arm(&mut self.conns, k, after, now);
        }
    }

    fn on_timeout(&mut self, k: usize, kind: TimerKind) {
        let m = &mut self.shared.metrics;
        match kind {
            TimerKind::Handshake => {
                m.timed_out(kind);
                debug!("connection {k}: handshake timeout");
            }
            TimerKind::Close => {
                m.timed_out(kind);
                debug!("connection {k}: close timeout");
            }
            TimerKind::Idle => {
                // A tick, not necessarily a timeout: the connection decides (ping, close 1001).
                let Some(conn) = self.conns.get_mut(k) else { return };
                let next = conn.on_idle_tick(&mut self.shared);
                let after = conn.timer_kind(self.idle);
                self.finish(k, next, TimerKind::None, after);
                return;
            }
            TimerKind::None => return,
        }
        self.close(k);
    }

    /// Drops connection `k`: its socket closes (which also removes it from epoll) and its pooled
    /// buffers go back.
    fn close(&mut self, k: usize) {
        if !self.conns.contains(k) {
            return;
        }
        self.timers.cancel(&mut self.conns, k);
        self.queued.remove(k);
        let mut c = self.conns.remove(k);
        c.release(&mut self.shared);
        self.shared.metrics.open -= 1;
        if self.accept_paused_until.is_some() {
            // A descriptor is free again: retry accepting on the next turn.
            self.accept_paused_until = Some(0);
        }
    }

    fn accept_burst(&mut self) {
        for _ in 0..ACCEPTS_PER_WAKEUP {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
                        self.shared.metrics.accept_emfile += 1;
                        if self.shared.metrics.accept_emfile.is_power_of_two() {
                            warn!(
                                "accept: {e}; pausing accepts for {ACCEPT_PAUSE_MS} ms (occurrence {})",
                                self.shared.metrics.accept_emfile
                            );
                        }
                        self.accept_paused_until = Some(self.now() + ACCEPT_PAUSE_MS);
                        return;
                    }
                    Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO) => continue,
                    _ => {
                        warn!("accept: {e}");
                        return;
                    }
                },
            }
        }
        self.accept_again = true;
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let tls = match self.shared.tls.as_mut() {
            Some(t) => match t.start() {
                Some(slot) => Some(slot),
                None => return,
            },
            None => None,
        };
        let entry = self.conns.vacant_entry();
        let k = entry.key();
        self.queued.reserve(k);
        if let Err(e) = self.poll.registry().register(&mut stream, Token(k), Interest::READABLE | Interest::WRITABLE) {
            warn!("register {peer}: {e}");
            if let (Some(t), Some(mut slot)) = (self.shared.tls.as_mut(), tls) {
                t.release(&mut slot);
            }
            return;
        }
        let overloaded = self.conns.len() >= self.max_connections;
        let mut conn = Connection::new(stream, overloaded);
        if let Some(slot) = tls {
            conn.set_tls(slot);
        }
        self.conns.insert(conn);
        let now = self.shared.now_ms;
        self.timers.arm(&mut self.conns, k, TimerKind::Handshake, now);
        self.shared.metrics.accepted += 1;
        self.shared.metrics.open += 1;
    }
}

/// Runs one connection's handler so that a panic in it (a bug: ours, or in rustls or zlib-rs
/// underneath) closes that connection instead of the reactor and every other connection on it:
/// the panic is logged, the staging buffers are cleared, and the connection is closed.
/// (`catch_unwind` costs nothing while nothing panics.)
fn contained(sh: &mut Shared, f: impl FnOnce(&mut Shared) -> Next) -> Next {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *sh))) {
        Ok(next) => next,
        Err(_) => {
            sh.out.clear();
            if let Some(t) = sh.tls.as_mut() {
                t.sealed.clear();
            }
            warn!("a connection handler panicked (a bug, please report it): closing that connection");
            Next::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{contained, KeySet};
    use crate::config::Config;
    use crate::conn::Next;
    use crate::shared::Shared;

    #[test]
    fn a_panicking_handler_closes_its_connection_not_the_reactor() {
        let mut sh = Shared::new(&Config::default(), None);
        sh.out.extend_from_slice(b"half staged");
        let next = contained(&mut sh, |_| panic!("a bug in a handler"));
        assert_eq!(next, Next::Close);
        assert!(sh.out.is_empty(), "staged bytes of the failed connection must not go to the next");
        assert_eq!(contained(&mut sh, |_| Next::Keep), Next::Keep);
    }

    #[test]
    fn keyset_holds_each_key_once() {
        let mut s = KeySet::default();
        assert!(!s.remove(5), "empty");
        assert!(s.insert(5));
        assert!(!s.insert(5), "already queued");
        assert!(s.insert(64) && s.insert(1000));
        assert!(s.remove(5) && !s.remove(5));
        assert!(s.remove(64) && s.remove(1000));
        assert!(!s.remove(1 << 20), "beyond the reserved words");
    }
}
