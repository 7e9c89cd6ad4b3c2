//! The driver: runs one `Connection` over a `MemSocket` the way the reactor does (edge-triggered
//! readiness, segments arriving in chunks, write room, shutdown, idle ticks) and checks the
//! invariants after every handler call (bounded pending output, termination, no stranded output).
//!
//! Owns the event loop only; it knows nothing of what the bytes mean (`gen`, `model`, `output`).
//! Imports only `wsecho`, no checks module.

use wsecho::close::CloseCode;
use wsecho::config::Config;
use wsecho::conn::{Connection, Next};
use wsecho::memsock::MemSocket;
use wsecho::shared::{Shared, MIN_OUT_BUFFER};

/// Drives one connection over a [`MemSocket`] the way the reactor does (edge-triggered events,
/// `Again` re-queued, a writable event first and no read after a read it resumed).
///
/// The client's bytes travel through a "network" queue and arrive in the socket in segments of
/// `chunk` bytes, one readable edge per segment, the FIN (with EPOLLRDHUP) together with the last
/// one. A read returns everything that has arrived (as `read(2)` on TCP does), so a connection that
/// stops reading early waits for an edge that never comes, and the final checks catch it. The
/// socket's write room is tracked so that writable edges come only when a full socket gets room.
pub(super) struct Driver {
    sh: Shared,
    pub(super) conn: Connection<MemSocket>,
    write_buffer: usize,
    pub(super) out: Vec<u8>,
    pub(super) closed: bool,
    /// Pending readable / writable edges.
    rd: bool,
    wr: bool,
    /// Write room left (usize::MAX: unlimited).
    room: usize,
    /// The peer shut its side: nothing it sends later arrives.
    pub(super) eof: bool,
    /// Bytes sent and not yet arrived, the segment size, and a FIN to deliver after them.
    net: Vec<u8>,
    net_pos: usize,
    chunk: usize,
    fin: bool,
    pub(super) steps: usize,
    kicks: usize,
    pushed: usize,
    /// States reached (for WSECHO_FUZZ_DEBUG): paused, and each phase.
    pub(super) seen: Vec<String>,
}

impl Driver {
    pub(super) fn new(read: usize, write_buffer: usize, max_message: u64, overloaded: bool) -> Driver {
        Driver {
            sh: Shared::new(&limits(read, write_buffer, max_message), None),
            conn: Connection::new(MemSocket::new(), overloaded),
            write_buffer,
            out: Vec::new(),
            closed: false,
            rd: false,
            wr: false,
            room: usize::MAX,
            eof: false,
            net: Vec::new(),
            net_pos: 0,
            chunk: usize::MAX,
            fin: false,
            steps: 0,
            kicks: 0,
            pushed: 0,
            seen: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, b: &[u8]) {
        if b.is_empty() || self.closed || self.eof {
            return;
        }
        self.pushed += b.len();
        self.net.extend_from_slice(b);
    }

    pub(super) fn set_chunk(&mut self, n: usize) {
        self.chunk = n.max(1);
    }

    /// Delivers the next segment (and the FIN after the last one): a readable edge.
    fn deliver(&mut self) -> bool {
        if self.closed || (self.net_pos == self.net.len() && !self.fin) {
            return false;
        }
        let n = (self.net.len() - self.net_pos).min(self.chunk);
        let seg = self.net_pos..self.net_pos + n;
        self.conn.stream_mut().push_input(&self.net[seg]);
        self.net_pos += n;
        if self.net_pos == self.net.len() {
            self.net.clear();
            self.net_pos = 0;
            if std::mem::take(&mut self.fin) {
                self.conn.stream_mut().close_input();
                self.conn.note_hangup();
            }
        }
        self.kicks += 1;
        self.rd = true;
        true
    }

    pub(super) fn set_room(&mut self, n: usize) {
        if self.closed {
            return;
        }
        // A writable edge only when a full socket gets room again (edge-triggered).
        if n > 0 && self.room == 0 && self.conn.pending_out() > 0 {
            self.wr = true;
        }
        self.kicks += 1;
        self.room = n;
        self.conn.stream_mut().set_write_room(n);
    }

    /// One readiness event, as `Reactor::dispatch` handles it.
    fn dispatch(&mut self, readable: bool, writable: bool) {
        self.act(|c, sh| {
            let mut next = Next::Keep;
            let mut read_done = false;
            if writable {
                let was_paused = c.is_paused();
                next = c.on_writable(sh);
                read_done = was_paused && !c.is_paused();
            }
            if next == Next::Keep && readable && !read_done {
                next = c.on_readable(sh);
            }
            next
        });
    }

    /// Runs one handler, collects its output and checks the invariants.
    fn act(&mut self, f: impl FnOnce(&mut Connection<MemSocket>, &mut Shared) -> Next) {
        let next = f(&mut self.conn, &mut self.sh);
        self.steps += 1;
        let before = self.out.len();
        self.conn.stream_mut().drain_output(&mut self.out);
        let written = self.out.len() - before;
        if self.room < usize::MAX / 2 {
            self.room -= written;
        }
        let pending = self.conn.pending_out();
        if self.seen.len() < 64 {
            let state = if self.conn.is_paused() { "Paused".to_string() } else { format!("{:?}", self.conn.phase()) };
            if !self.seen.contains(&state) {
                self.seen.push(state);
            }
        }
        let bound = self.write_buffer.max(MIN_OUT_BUFFER);
        assert!(pending <= bound, "pending output {pending} over the write buffer {bound}");
        let limit = 4 * (self.pushed + self.out.len() + self.kicks) + 64;
        assert!(self.steps <= limit, "no termination: {} events for {} bytes in", self.steps, self.pushed);
        match next {
            Next::Close => {
                self.closed = true;
                self.conn.release(&mut self.sh);
                return;
            }
            Next::Again | Next::Defer => self.rd = true,
            Next::Keep => {}
        }
        if pending > 0 && self.room > 0 && !self.wr {
            // Output queued although the socket has room: no writable edge will ever come for it.
            panic!("{pending} bytes queued while the socket has room");
        }
    }

    /// Handles events until none is pending, then lets the next segment arrive, until everything
    /// sent has arrived.
    pub(super) fn pump(&mut self) {
        loop {
            while !self.closed && (self.rd || self.wr) {
                let (r, w) = (std::mem::take(&mut self.rd), std::mem::take(&mut self.wr));
                self.dispatch(r, w);
            }
            if !self.deliver() {
                break;
            }
        }
    }

    pub(super) fn spurious(&mut self) {
        if !self.closed {
            self.kicks += 1;
            self.dispatch(true, true);
        }
    }

    /// Whether the connection has handled everything that was sent.
    pub(super) fn caught_up(&mut self) -> bool {
        !self.closed
            && self.net.is_empty()
            && !self.fin
            && self.conn.stream_mut().unread() == 0
            && !self.conn.is_paused()
    }

    /// The server shuts down: close 1001 (`Reactor` on SIGTERM).
    pub(super) fn shutdown(&mut self) {
        self.kicks += 1;
        self.act(|c, sh| c.start_close(sh, CloseCode::GOING_AWAY, "server shutdown"));
    }

    /// The idle timer ticks with a zero ping interval: the server pings.
    pub(super) fn ping_tick(&mut self) {
        if !self.closed {
            self.kicks += 1;
            self.sh.ping_ms = Some(0);
            self.act(|c, sh| c.on_idle_tick(sh));
            self.sh.ping_ms = None;
        }
    }

    /// The peer shuts its sending side: a FIN follows what it sent (EPOLLIN | EPOLLRDHUP).
    pub(super) fn close_input(&mut self) {
        if !self.eof && !self.closed {
            self.eof = true;
            self.fin = true;
        }
    }

    /// The peer reads everything (and, with `eof`, shuts its side); pumps until nothing moves.
    pub(super) fn finish(&mut self, eof: bool) {
        self.set_room(usize::MAX);
        if eof {
            self.close_input();
        }
        self.pump();
        if self.closed {
            return;
        }
        assert!(!self.eof, "the peer closed and the server never closed the connection");
        let unread = self.conn.stream_mut().unread();
        assert_eq!(unread, 0, "reading stalled with {unread} bytes unread (phase {:?})", self.conn.phase());
        assert_eq!(self.conn.pending_out(), 0, "output stuck in the buffer");
    }
}

/// A configuration with these limits (`Config` is non-exhaustive: built by assignment).
fn limits(read: usize, write_buffer: usize, max_message: u64) -> Config {
    let mut cfg = Config::default();
    cfg.read_buffer = read;
    cfg.write_buffer = write_buffer;
    cfg.max_message_size = max_message;
    cfg
}
