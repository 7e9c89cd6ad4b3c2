//! The event loop: one mio `Poll`, one listener, every connection in a `Slab`, the timers.
//!
//! Owns readiness dispatch and everything that touches `Poll`, the slab or the timer lists:
//! accepting (until `WouldBlock`; on EMFILE/ENFILE it stops accepting for a moment instead of
//! spinning, and keeps serving open connections), registering each socket once for readable and
//! writable edges (so backpressure never costs an `epoll_ctl`), fairness (a connection that used
//! its per-wakeup read budget is revisited after the others), timeouts, and removal. It never
//! inspects bytes: protocol work is `conn`'s.

use crate::config::Config;
use crate::conn::{Connection, Next, Shared};
use crate::timer::{TimerKind, Timers};
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Token of the listening socket; connections use their slab key.
const LISTENER: Token = Token(usize::MAX - 1);

/// How long accepting pauses after EMFILE/ENFILE.
const ACCEPT_PAUSE_MS: u32 = 100;

/// Connections accepted per wakeup before serving the others.
const ACCEPTS_PER_WAKEUP: usize = 256;

/// A single-threaded WebSocket echo reactor.
#[derive(Debug)]
pub struct Reactor {
    poll: Poll,
    events: Events,
    listener: TcpListener,
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
    /// Connections that used their read budget and have more to read.
    again: Vec<usize>,
    again_next: Vec<usize>,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Reactor {
    /// Binds `cfg.listen` (with `SO_REUSEADDR`) and prepares the loop.
    pub fn bind(cfg: &Config) -> io::Result<Reactor> {
        let listener = TcpListener::bind(cfg.listen)?;
        Reactor::with_listener(cfg, listener)
    }

    /// Prepares the loop around an already bound, listening, non-blocking socket (socket
    /// activation, `SO_REUSEPORT`).
    pub fn with_listener(cfg: &Config, mut listener: TcpListener) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let local = listener.local_addr()?;
        let timers = Timers::new([millis(cfg.handshake_timeout), millis(cfg.close_timeout), u32::MAX]);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            listener,
            local,
            // Reserve the slab up front: pages are only touched as connections arrive, and the
            // table never reallocates (no copy of 100k entries at a doubling).
            conns: Slab::with_capacity(cfg.max_connections.min(1 << 20)),
            shared: Shared::new(cfg.read_buffer, cfg.write_buffer, cfg.max_message_size),
            timers,
            start: Instant::now(),
            max_connections: cfg.max_connections,
            accept_paused_until: None,
            accept_again: false,
            again: Vec::with_capacity(1024),
            again_next: Vec::with_capacity(1024),
        })
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

    /// Runs forever (until an unrecoverable poll error).
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            self.turn(None)?;
        }
    }

    /// One iteration: wait for events (at most `max_wait`), dispatch them, expire timers.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = self.now();
        let mut timeout = self.timers.next_due(&mut self.conns, now).map(|ms| Duration::from_millis(ms.into()));
        if let Some(until) = self.accept_paused_until {
            let d = Duration::from_millis(until.saturating_sub(now).into());
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
        if !self.again.is_empty() || self.accept_again {
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
        let mut accept = std::mem::take(&mut self.accept_again);
        // Index loop: `self.events` is borrowed only per event so handlers can take `&mut self`.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            match ev.token() {
                LISTENER => accept = true,
                Token(k) => {
                    let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    let writable = ev.is_writable() || ev.is_write_closed();
                    self.dispatch(k, readable, writable);
                }
            }
        }
        self.events = events;
        // Connections that had more to read than one wakeup's budget.
        if !self.again.is_empty() {
            std::mem::swap(&mut self.again, &mut self.again_next);
            while let Some(k) = self.again_next.pop() {
                self.dispatch(k, true, false);
            }
        }
        let now = self.now();
        while let Some((k, kind)) = self.timers.pop_expired(&mut self.conns, now) {
            self.on_timeout(k, kind);
        }
        if let Some(until) = self.accept_paused_until {
            if now >= until {
                self.accept_paused_until = None;
                accept = true;
            }
        }
        if accept && self.accept_paused_until.is_none() {
            self.accept_burst();
        }
        Ok(())
    }

    fn dispatch(&mut self, k: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        let before = conn.timer_kind();
        let sh = &mut self.shared;
        let mut next = Next::Keep;
        let mut read_done = false;
        if writable {
            let was_paused = conn.is_paused();
            next = conn.on_writable(sh);
            read_done = was_paused && !conn.is_paused();
        }
        if next == Next::Keep && readable && !read_done {
            next = conn.on_readable(sh);
        }
        let after = conn.timer_kind();
        match next {
            Next::Close => self.close(k),
            Next::Again => {
                self.again.push(k);
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
                m.timeouts[0] += 1;
                debug!("connection {k}: handshake timeout");
            }
            TimerKind::Close => {
                m.timeouts[1] += 1;
                debug!("connection {k}: close timeout");
            }
            TimerKind::Idle => m.timeouts[2] += 1,
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
            match self.listener.accept() {
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
        let entry = self.conns.vacant_entry();
        let k = entry.key();
        if let Err(e) = self.poll.registry().register(&mut stream, Token(k), Interest::READABLE | Interest::WRITABLE) {
            warn!("register {peer}: {e}");
            return;
        }
        let overloaded = k >= self.max_connections || self.conns.len() >= self.max_connections;
        self.conns.insert(Connection::new(stream, overloaded));
        let now = self.now();
        self.timers.arm(&mut self.conns, k, TimerKind::Handshake, now);
        self.shared.metrics.accepted += 1;
        self.shared.metrics.open += 1;
    }
}
