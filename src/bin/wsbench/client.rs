//! One client connection as a state machine: TCP connect → upgrade request and verified 101
//! response → open (send queued messages, parse and verify echoes) → closing (close handshake)
//! → ended.
//!
//! Owns the per-connection state, which is kept small: a few counters, a ring of send
//! timestamps sized to the messages allowed in flight, the partial-frame-header bytes, and a
//! lazily boxed [`Extra`] for the rare things (a handshake response split over reads, control
//! frame payloads, a pending pong/close). Echoes are verified incrementally against the known
//! payload as bytes arrive; nothing is buffered per message and nothing is allocated per
//! message. It does not own the event loop, timers or scheduling (see `worker`): the worker
//! calls [`Conn::on_event`], [`Conn::enqueue`], [`Conn::start_close`] and [`Conn::timed_out`].

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::cli::Config;
use crate::net::error_reason;
use crate::stats::Stats;
use crate::wire::{self, Workload, MAX_HEADER};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Non-blocking connect in progress.
    Connecting,
    /// Request being written / response being read.
    Upgrading,
    /// Upgraded: messages flow.
    Open,
    /// A close frame is queued or sent (ours or a reply to the server's); waiting for the
    /// server's close frame and its EOF.
    Closing,
}

/// The connection is over and should be dropped; everything worth counting has been counted.
#[derive(Debug)]
pub struct Ended;

/// Per-loop context handed to every connection call: the read-only workload and configuration
/// plus the loop's counters.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub work: &'a Workload,
    /// Nanoseconds since the loop's epoch; refreshed by the worker before each call.
    pub now: u64,
    pub stats: Stats,
    /// Messages/bytes echoed since the start, warm-up included (for progress lines).
    pub msgs_total: u64,
    pub bytes_total: u64,
    /// Record completed messages in `stats` (inside the measured window).
    pub counting: bool,
    /// Echo mode and not shutting down: queue a new message when one completes.
    pub refill: bool,
    /// The loop is closing every connection: closes and EOFs from now on are not "lost".
    pub shutting_down: bool,
    pub close_timeout_ns: u64,
    /// Set by a call when the connection just became open (upgraded).
    pub became_open: bool,
    /// Set by a call when a message completed (a slot in flight was freed).
    pub freed: bool,
    /// Request-building scratch space, reused.
    pub scratch: Vec<u8>,
    /// How many mismatches were described on stderr so far (the first few are).
    pub mismatch_logs: u32,
}

/// The rarely needed parts of a connection, boxed on first use.
struct Extra {
    /// Handshake response bytes while it is incomplete.
    hs_buf: Vec<u8>,
    /// Payload of the control frame being read.
    ctl_rx: [u8; 125],
    ctl_rx_len: u8,
    /// A complete control frame (pong or close) waiting to be written at a frame boundary.
    ctl_tx: [u8; 131],
    ctl_tx_len: u8,
    ctl_tx_off: u8,
}

impl Extra {
    fn new() -> Box<Extra> {
        Box::new(Extra {
            hs_buf: Vec::new(),
            ctl_rx: [0; 125],
            ctl_rx_len: 0,
            ctl_tx: [0; 131],
            ctl_tx_len: 0,
            ctl_tx_off: 0,
        })
    }
}

pub struct Conn {
    pub stream: TcpStream,
    pub state: State,
    /// Global connection index (over all processes and loops).
    pub index: u32,
    /// Payload variant used by this connection.
    variant: u16,
    /// Sends messages (see `--active`).
    pub active: bool,
    /// Rate mode: the connection is (possibly) in the worker's ready queue.
    pub in_ready: bool,
    /// Upgrade verified (counted in `stats.upgraded`; counts as open until it ends).
    pub upgraded: bool,
    /// We started the close handshake (end of run).
    we_closed: bool,
    close_queued: bool,
    close_sent: bool,
    close_rcvd: bool,
    /// Connect start, ns.
    started: u64,
    /// Connect/upgrade deadline, or close deadline, ns.
    pub deadline: u64,
    key: [u8; 24],
    hs_sent: u16,
    /// Bytes of the first queued frame already written.
    tx_off: u32,
    /// Frames queued and not completely written (the newest `tx_pending` ring entries).
    tx_pending: u32,
    /// Send timestamps of the messages in flight, oldest first.
    ring: Box<[u64]>,
    ring_head: u32,
    ring_len: u32,
    /// Bytes of a frame header split over reads.
    hdr: [u8; MAX_HEADER],
    hdr_len: u8,
    in_payload: bool,
    frame_left: u64,
    frame_op: u8,
    frame_fin: bool,
    /// A data message is being received.
    in_msg: bool,
    msg_off: u64,
    msg_bad: bool,
    extra: Option<Box<Extra>>,
}

impl Conn {
    /// A connection whose TCP connect was just started.
    pub fn new(
        stream: TcpStream,
        index: u32,
        active: bool,
        in_flight: usize,
        key: [u8; 24],
        ctx: &Ctx<'_>,
        connect_timeout_ns: u64,
    ) -> Conn {
        let nvar = ctx.work.variants.len().max(1);
        Conn {
            stream,
            state: State::Connecting,
            index,
            variant: (index as usize % nvar) as u16,
            active,
            in_ready: false,
            upgraded: false,
            we_closed: false,
            close_queued: false,
            close_sent: false,
            close_rcvd: false,
            started: ctx.now,
            deadline: ctx.now + connect_timeout_ns,
            key,
            hs_sent: 0,
            tx_off: 0,
            tx_pending: 0,
            ring: if active && in_flight > 0 { vec![0u64; in_flight].into_boxed_slice() } else { Box::new([]) },
            ring_head: 0,
            ring_len: 0,
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            in_payload: false,
            frame_left: 0,
            frame_op: 0,
            frame_fin: false,
            in_msg: false,
            msg_off: 0,
            msg_bad: false,
            extra: None,
        }
    }

    /// Messages that may still be queued.
    #[inline]
    pub fn room(&self) -> usize {
        if self.state != State::Open || self.close_queued {
            0
        } else {
            self.ring.len() - self.ring_len as usize
        }
    }

    /// Queues one message stamped `stamp` (ns); false when the connection has no room. The
    /// caller flushes (see [`Conn::flush`]).
    #[inline]
    pub fn enqueue(&mut self, stamp: u64) -> bool {
        if self.room() == 0 {
            return false;
        }
        let cap = self.ring.len() as u32;
        let mut slot = self.ring_head + self.ring_len;
        if slot >= cap {
            slot -= cap;
        }
        self.ring[slot as usize] = stamp;
        self.ring_len += 1;
        self.tx_pending += 1;
        true
    }

    /// Handles a readiness event. `hup`: the peer shut its side (EPOLLRDHUP) or the socket has
    /// an error, so reading goes on to EOF instead of stopping at a short read.
    pub fn on_event(
        &mut self,
        ctx: &mut Ctx<'_>,
        readable: bool,
        writable: bool,
        hup: bool,
        rbuf: &mut [u8],
    ) -> Result<(), Ended> {
        if self.state == State::Connecting {
            if !self.check_connected(ctx)? {
                return Ok(());
            }
            // Connected: write the request now (the socket is writable), then read if there is
            // anything (the response cannot have come before the request; harmless to try).
            self.send_request(ctx)?;
            if readable {
                self.on_readable(ctx, hup, rbuf)?;
            }
            return Ok(());
        }
        if writable {
            if self.state == State::Upgrading {
                self.send_request(ctx)?;
            } else {
                self.flush(ctx)?;
            }
        }
        if readable {
            self.on_readable(ctx, hup, rbuf)?;
            if self.state != State::Upgrading {
                // Echoes completed by this read may have queued new messages or a pong.
                self.flush(ctx)?;
            }
        }
        Ok(())
    }

    /// Connect finished? Err when it failed.
    fn check_connected(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Ended> {
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                ctx.stats.connect_failed(&error_reason(&e));
                return Err(Ended);
            }
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.state = State::Upgrading;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) || e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => {
                ctx.stats.connect_failed(&error_reason(&e));
                Err(Ended)
            }
        }
    }

    fn send_request(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ended> {
        ctx.scratch.clear();
        wire::write_request(&mut ctx.scratch, &ctx.cfg.host_header, &ctx.cfg.path, &self.key);
        while (self.hs_sent as usize) < ctx.scratch.len() {
            match self.stream.write(&ctx.scratch[self.hs_sent as usize..]) {
                Ok(0) => {
                    ctx.stats.handshake_failed("write returned 0");
                    return Err(Ended);
                }
                Ok(n) => self.hs_sent += n as u16,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ctx.stats.handshake_failed(&error_reason(&e));
                    return Err(Ended);
                }
            }
        }
        Ok(())
    }

    fn on_readable(&mut self, ctx: &mut Ctx<'_>, hup: bool, rbuf: &mut [u8]) -> Result<(), Ended> {
        loop {
            match self.stream.read(rbuf) {
                Ok(0) => return Err(self.on_eof(ctx)),
                Ok(n) => {
                    ctx.now = crate::worker::now_ns();
                    if self.state == State::Upgrading {
                        self.on_response_bytes(ctx, &rbuf[..n])?;
                    } else {
                        self.on_frame_bytes(ctx, &rbuf[..n])?;
                    }
                    // A short read drained the socket; with edge-triggered epoll, data that
                    // arrives later raises a new event. Not so a FIN already queued (it came
                    // with this event's RDHUP): then read on until EOF.
                    if n < rbuf.len() && !hup {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.on_io_error(ctx, &e)),
            }
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>) -> Ended {
        match self.state {
            State::Connecting | State::Upgrading => ctx.stats.handshake_failed("eof before response"),
            State::Open => self.lose(ctx, "eof without close frame"),
            // Closing: the server ended TCP after (or instead of) answering our close. Either
            // way nothing is lost; a clean close was already counted when its frame arrived.
            State::Closing => {}
        }
        Ended
    }

    fn on_io_error(&mut self, ctx: &mut Ctx<'_>, e: &io::Error) -> Ended {
        let reason = error_reason(e);
        match self.state {
            State::Connecting => ctx.stats.connect_failed(&reason),
            State::Upgrading => ctx.stats.handshake_failed(&reason),
            State::Open => self.lose(ctx, &reason),
            State::Closing => {}
        }
        Ended
    }

    /// Counts this connection as lost unless we are the ones closing.
    fn lose(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        if !self.we_closed && !ctx.shutting_down {
            ctx.stats.lost_connection(reason);
        }
    }

    fn on_response_bytes(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> Result<(), Ended> {
        let buffered = self.extra.as_ref().is_some_and(|x| !x.hs_buf.is_empty());
        let mut owned;
        let bytes: &[u8] = if buffered {
            owned = std::mem::take(&mut self.extra.as_mut().expect("buffered").hs_buf);
            owned.extend_from_slice(data);
            &owned
        } else {
            owned = Vec::new();
            data
        };
        match wire::check_response(bytes, &self.key) {
            Ok(None) => {
                let x = self.extra.get_or_insert_with(Extra::new);
                if buffered {
                    x.hs_buf = owned;
                } else {
                    x.hs_buf.extend_from_slice(data);
                }
                Ok(())
            }
            Err(e) => {
                ctx.stats.handshake_failed(&e.label());
                Err(Ended)
            }
            Ok(Some(head)) => {
                self.state = State::Open;
                self.upgraded = true;
                ctx.stats.upgraded += 1;
                let _ = ctx.stats.handshake.record(ctx.now.saturating_sub(self.started).max(1));
                ctx.became_open = true;
                if self.extra.as_ref().is_some_and(|x| x.ctl_tx_len == 0) {
                    self.extra = None;
                }
                if self.active && ctx.refill {
                    while self.enqueue(ctx.now) {}
                }
                let rest = &bytes[head..];
                if !rest.is_empty() {
                    self.on_frame_bytes(ctx, rest)?;
                }
                drop(owned);
                self.flush(ctx)
            }
        }
    }

    /// Parses server frames in `data`, verifying data payloads as they arrive.
    fn on_frame_bytes(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> Result<(), Ended> {
        let mut i = 0;
        while i < data.len() {
            if !self.in_payload {
                let h = if self.hdr_len > 0 {
                    let have = self.hdr_len as usize;
                    let take = (MAX_HEADER - have).min(data.len() - i);
                    self.hdr[have..have + take].copy_from_slice(&data[i..i + take]);
                    match wire::decode_header(&self.hdr[..have + take]) {
                        Ok(Some(h)) => {
                            i += h.hlen - have;
                            self.hdr_len = 0;
                            h
                        }
                        Ok(None) => {
                            self.hdr_len += take as u8;
                            i += take;
                            continue;
                        }
                        Err(e) => return Err(self.protocol_error(ctx, e.name())),
                    }
                } else {
                    match wire::decode_header(&data[i..]) {
                        Ok(Some(h)) => {
                            i += h.hlen;
                            h
                        }
                        Ok(None) => {
                            let rest = data.len() - i;
                            self.hdr[..rest].copy_from_slice(&data[i..]);
                            self.hdr_len = rest as u8;
                            i = data.len();
                            continue;
                        }
                        Err(e) => return Err(self.protocol_error(ctx, e.name())),
                    }
                };
                self.start_frame(ctx, h)?;
            } else {
                let n = (self.frame_left.min((data.len() - i) as u64)) as usize;
                let chunk = &data[i..i + n];
                if self.frame_op & 0x8 == 0 {
                    self.check_payload(ctx, chunk);
                } else {
                    let x = self.extra.get_or_insert_with(Extra::new);
                    let at = x.ctl_rx_len as usize;
                    x.ctl_rx[at..at + n].copy_from_slice(chunk);
                    x.ctl_rx_len += n as u8;
                }
                self.frame_left -= n as u64;
                i += n;
                if self.frame_left == 0 {
                    self.in_payload = false;
                    self.end_frame(ctx)?;
                }
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, ctx: &mut Ctx<'_>, h: wire::Header) -> Result<(), Ended> {
        match h.opcode {
            wire::OP_TEXT | wire::OP_BINARY => {
                if self.in_msg {
                    return Err(self.protocol_error(ctx, "new message inside a fragmented one"));
                }
                self.in_msg = true;
                self.msg_off = 0;
                self.msg_bad = false;
                if self.ring_len == 0 {
                    self.mismatch(ctx, "a message arrived with none in flight".into());
                } else if h.opcode != ctx.work.opcode {
                    self.mismatch(ctx, format!("opcode {} instead of {}", h.opcode, ctx.work.opcode));
                }
            }
            wire::OP_CONTINUATION => {
                if !self.in_msg {
                    return Err(self.protocol_error(ctx, "continuation without a message"));
                }
            }
            _ => {
                if let Some(x) = self.extra.as_mut() {
                    x.ctl_rx_len = 0;
                }
            }
        }
        if h.opcode & 0x8 == 0 {
            // Remember data frames as "data", whatever their opcode, for the payload check.
            self.frame_op = wire::OP_BINARY;
        } else {
            self.frame_op = h.opcode;
        }
        self.frame_fin = h.fin;
        self.frame_left = h.len;
        if h.len == 0 {
            self.end_frame(ctx)
        } else {
            self.in_payload = true;
            Ok(())
        }
    }

    #[inline]
    fn check_payload(&mut self, ctx: &mut Ctx<'_>, chunk: &[u8]) {
        if !self.msg_bad {
            let p = &ctx.work.variants[self.variant as usize].payload;
            let start = self.msg_off as usize;
            let end = start.saturating_add(chunk.len());
            if end > p.len() {
                self.mismatch(ctx, format!("echo longer than the {} bytes sent", p.len()));
            } else if p[start..end] != *chunk {
                let k = p[start..end].iter().zip(chunk).position(|(a, b)| a != b).unwrap_or(0);
                let what = format!(
                    "byte {} of {}: expected 0x{:02x}, got 0x{:02x}",
                    start + k,
                    p.len(),
                    p[start + k],
                    chunk[k]
                );
                self.mismatch(ctx, what);
            }
        }
        self.msg_off += chunk.len() as u64;
    }

    /// Marks the current message bad (counted when it ends); describes the first few.
    fn mismatch(&mut self, ctx: &mut Ctx<'_>, what: String) {
        if !self.msg_bad {
            self.msg_bad = true;
            if ctx.mismatch_logs < 5 {
                ctx.mismatch_logs += 1;
                eprintln!("wsbench: echo mismatch on connection #{}: {what}", self.index);
            }
        }
    }

    fn end_frame(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ended> {
        match self.frame_op {
            wire::OP_CLOSE => self.on_close_frame(ctx),
            wire::OP_PING => {
                if !self.close_queued {
                    let x = self.extra.get_or_insert_with(Extra::new);
                    if x.ctl_tx_len == 0 {
                        let len = x.ctl_rx_len as usize;
                        let payload = x.ctl_rx;
                        let mask = (ctx.now as u32 ^ self.index.rotate_left(13)).to_le_bytes();
                        let n = wire::masked_control_frame(wire::OP_PONG, &payload[..len], mask, &mut x.ctl_tx);
                        x.ctl_tx_len = n as u8;
                        x.ctl_tx_off = 0;
                    }
                }
                Ok(())
            }
            wire::OP_PONG => Ok(()),
            _ => {
                if self.frame_fin {
                    self.end_message(ctx);
                }
                Ok(())
            }
        }
    }

    fn end_message(&mut self, ctx: &mut Ctx<'_>) {
        let size = ctx.work.size as u64;
        if !self.msg_bad && self.msg_off != size {
            self.mismatch(ctx, format!("echo of {} bytes, {} sent", self.msg_off, size));
        }
        self.in_msg = false;
        let stamp = if self.ring_len > 0 {
            let s = self.ring[self.ring_head as usize];
            self.ring_head += 1;
            if self.ring_head as usize == self.ring.len() {
                self.ring_head = 0;
            }
            self.ring_len -= 1;
            Some(s)
        } else {
            None
        };
        if self.msg_bad {
            ctx.stats.mismatches += 1;
        } else if let Some(stamp) = stamp {
            ctx.msgs_total += 1;
            ctx.bytes_total += size;
            if ctx.counting {
                ctx.stats.msgs += 1;
                ctx.stats.bytes += size;
                ctx.stats.latency.saturating_record(ctx.now.saturating_sub(stamp).max(1));
            }
        }
        if stamp.is_some() {
            ctx.freed = true;
            if ctx.refill && self.active {
                self.enqueue(ctx.now);
            }
        }
    }

    fn on_close_frame(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ended> {
        let (len, b0, b1) = match self.extra.as_ref() {
            Some(x) => (x.ctl_rx_len, x.ctl_rx[0], x.ctl_rx[1]),
            None => (0, 0, 0),
        };
        let code = match len {
            0 => 1005,
            1 => return Err(self.protocol_error(ctx, "close frame with a 1-byte payload")),
            _ => u16::from_be_bytes([b0, b1]),
        };
        self.close_rcvd = true;
        if self.we_closed {
            ctx.stats.clean_closes += 1;
        } else {
            ctx.stats.server_close(code);
            let reason = format!("server close {code}");
            self.lose(ctx, &reason);
            self.queue_close(ctx, if len == 0 { None } else { Some(code) });
        }
        self.state = State::Closing;
        self.deadline = ctx.now + ctx.close_timeout_ns;
        Ok(())
    }

    /// Server broke the protocol: count it and drop the connection.
    fn protocol_error(&mut self, ctx: &mut Ctx<'_>, what: &str) -> Ended {
        self.lose(ctx, &format!("protocol error: {what}"));
        if ctx.mismatch_logs < 5 {
            ctx.mismatch_logs += 1;
            eprintln!("wsbench: protocol error on connection #{}: {what}", self.index);
        }
        Ended
    }

    /// Starts our close handshake (code 1000): unsent messages are dropped, a partly written
    /// frame is finished first. Connections not yet open just end.
    pub fn start_close(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ended> {
        match self.state {
            State::Connecting | State::Upgrading => Err(Ended),
            State::Closing => Ok(()),
            State::Open => {
                self.we_closed = true;
                self.state = State::Closing;
                self.deadline = ctx.now + ctx.close_timeout_ns;
                self.queue_close(ctx, Some(1000));
                self.flush(ctx)
            }
        }
    }

    fn queue_close(&mut self, ctx: &mut Ctx<'_>, code: Option<u16>) {
        if self.close_queued {
            return;
        }
        self.close_queued = true;
        // Keep only a frame that is partly written; forget the rest of the queue.
        let keep = u32::from(self.tx_off > 0);
        self.ring_len -= self.tx_pending - keep;
        self.tx_pending = keep;
        let x = self.extra.get_or_insert_with(Extra::new);
        let n = match code {
            Some(1000) => {
                x.ctl_tx[..8].copy_from_slice(&ctx.work.close_frame);
                8
            }
            Some(c) => {
                let mask = (ctx.now as u32 ^ self.index).to_le_bytes();
                wire::masked_control_frame(wire::OP_CLOSE, &c.to_be_bytes(), mask, &mut x.ctl_tx)
            }
            None => wire::masked_control_frame(wire::OP_CLOSE, &[], [1, 2, 3, 4], &mut x.ctl_tx),
        };
        x.ctl_tx_len = n as u8;
        x.ctl_tx_off = 0;
    }

    /// Writes what is queued: the rest of a partly written frame, then a pending control frame,
    /// then queued data frames (all in one `write` when possible), until the socket is full.
    pub fn flush(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ended> {
        let flen = ctx.work.frame_len;
        loop {
            let ctl_pending = self.extra.as_ref().is_some_and(|x| x.ctl_tx_off < x.ctl_tx_len);
            let res;
            let is_data;
            if self.tx_pending > 0 && (self.tx_off > 0 || !ctl_pending) {
                let frames = &ctx.work.variants[self.variant as usize].frames;
                let end = if ctl_pending { flen } else { self.tx_pending as usize * flen };
                res = self.stream.write(&frames[self.tx_off as usize..end]);
                is_data = true;
            } else if ctl_pending {
                let x = self.extra.as_ref().expect("ctl pending");
                res = self.stream.write(&x.ctl_tx[x.ctl_tx_off as usize..x.ctl_tx_len as usize]);
                is_data = false;
            } else {
                return Ok(());
            }
            match res {
                Ok(0) => return Err(self.on_io_error(ctx, &io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => {
                    if is_data {
                        let total = self.tx_off as usize + n;
                        self.tx_pending -= (total / flen) as u32;
                        self.tx_off = (total % flen) as u32;
                    } else {
                        let x = self.extra.as_mut().expect("ctl pending");
                        x.ctl_tx_off += n as u8;
                        if x.ctl_tx_off == x.ctl_tx_len {
                            x.ctl_tx_len = 0;
                            x.ctl_tx_off = 0;
                            if self.close_queued {
                                // Now the server closes TCP (we wait for EOF so TIME_WAIT
                                // lands on its side, not on our ports).
                                self.close_sent = true;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.on_io_error(ctx, &e)),
            }
        }
    }

    /// The deadline passed: counts the failure and says the connection should be dropped.
    pub fn timed_out(&mut self, ctx: &mut Ctx<'_>) -> Ended {
        match self.state {
            State::Connecting => ctx.stats.connect_failed("timeout"),
            State::Upgrading => ctx.stats.handshake_failed("timeout"),
            State::Open => {}
            State::Closing => {
                if self.we_closed && !self.close_rcvd {
                    ctx.stats.close_timeouts += 1;
                }
            }
        }
        Ended
    }
}
