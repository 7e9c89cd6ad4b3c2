//! One echo/rate/idle-mode connection: what it sends (copies of the workload's prepared frames)
//! and how it checks what comes back — [`EchoHooks`], composed with the shared transport's
//! `Link` into a [`Conn`] (`transport` does the connect, the upgrade, the read loop, frame
//! splitting and error classification).
//!
//! Owns the per-connection message state, which is kept small: a few counters, a ring of send
//! timestamps sized to the messages allowed in flight, the frame fidelity cursor (`frag`), and a
//! lazily boxed [`Extra`] for the rare things (control frame payloads, a pending pong/close).
//! Echoes are verified incrementally against the known payload as bytes arrive, and each echoed
//! frame against the shape of the frame sent (computed from the workload, see
//! [`Workload::shape`]); nothing is buffered per message and nothing is allocated per message.
//! With `--deflate` a compressed echo (RSV1 on its first frame) is inflated as it arrives, with an
//! inflate state taken from the loop's free list for that message and given back, reset, at its
//! end, into the loop's one scratch buffer, and compared with the payload; its compressed bytes
//! are also compared with those sent (a verbatim echo: a pass-through server). It
//! does not own the socket plumbing (see `transport`) nor the event loop, timers or scheduling
//! (see `worker`): the worker calls `Conn::on_event`, [`Conn::enqueue`], `Conn::start_close` and
//! `Conn::timed_out`.

use flate2::{Decompress, FlushDecompress, Status};

use crate::frag::{self, Data, Fidelity};
use crate::tls::Stream;
use crate::transport::{self, write_some, Hooks, Link, State};
use crate::wire;
use crate::workload::Workload;

/// The connection is over and should be dropped; everything worth counting has been counted.
#[derive(Debug)]
pub struct Ended;

/// Bytes inflated per step into [`Echo::inflated`].
const INFLATE_CHUNK: usize = 16 << 10;

/// The RFC 7692 §7.2.2 tail appended to a compressed message before inflating its end.
const DEFLATE_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// The echo/rate/idle part of the per-loop context.
pub struct Echo<'a> {
    pub work: &'a Workload,
    /// Echo mode and not shutting down: queue a new message when one completes.
    pub refill: bool,
    /// `--deflate`: inflate states not in use; a connection takes one for each compressed echo it
    /// receives and gives it back, reset, at the end (so they are reused, never re-created).
    /// Boxed on purpose: a state moves into a connection and back, 8 bytes in every connection.
    #[allow(clippy::vec_box)]
    inflaters: Vec<Box<Decompress>>,
    /// `--deflate`: where echoes are inflated, [`INFLATE_CHUNK`] bytes at a time (else empty).
    inflated: Box<[u8]>,
}

impl<'a> Echo<'a> {
    pub fn new(work: &'a Workload, refill: bool) -> Echo<'a> {
        let inflated = if work.deflate { vec![0u8; INFLATE_CHUNK].into_boxed_slice() } else { Box::default() };
        Echo { work, refill, inflaters: Vec::new(), inflated }
    }
}

/// Compares `chunk` with `payload[start..]`; `Err` describes the first difference.
#[inline]
fn compare(payload: &[u8], start: usize, chunk: &[u8]) -> Result<(), String> {
    let end = start.saturating_add(chunk.len());
    if end > payload.len() {
        return Err(format!("echo longer than the {} bytes sent", payload.len()));
    }
    if payload[start..end] != *chunk {
        let k = payload[start..end].iter().zip(chunk).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!(
            "byte {} of {}: expected 0x{:02x}, got 0x{:02x}",
            start + k,
            payload.len(),
            payload[start + k],
            chunk[k]
        ));
    }
    Ok(())
}

/// Inflates `input` into `buf`, a chunk at a time, comparing the bytes with `payload` from
/// `*off` on (advanced by what came out). `Ok(true)` when the deflate stream ended (a final
/// block); input after that is an error.
fn inflate_compare(
    d: &mut Decompress,
    mut input: &[u8],
    flush: FlushDecompress,
    buf: &mut [u8],
    payload: &[u8],
    off: &mut u64,
) -> Result<bool, String> {
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        let st = d.decompress(input, buf, flush).map_err(|e| format!("echo is not valid deflate data ({e})"))?;
        let used = (d.total_in() - in0) as usize;
        let made = (d.total_out() - out0) as usize;
        compare(payload, *off as usize, &buf[..made])?;
        *off += made as u64;
        input = &input[used..];
        if st == Status::StreamEnd {
            return if input.is_empty() { Ok(true) } else { Err("bytes after the final deflate block".into()) };
        }
        // zlib stops when the input is used up or the output is full; with neither, no progress.
        if made < buf.len() && (input.is_empty() || used == 0) {
            return Ok(false);
        }
    }
}

/// Per-loop context handed to every connection call.
pub type Ctx<'a> = transport::Ctx<'a, Echo<'a>>;

/// The rarely needed parts of a connection, boxed on first use.
struct Extra {
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
        Box::new(Extra { ctl_rx: [0; 125], ctl_rx_len: 0, ctl_tx: [0; 131], ctl_tx_len: 0, ctl_tx_off: 0 })
    }
}

/// An echo/rate/idle connection: the shared transport state composed with [`EchoHooks`].
pub type Conn = transport::Conn<EchoHooks>;

/// The echo/rate/idle part of a connection.
pub struct EchoHooks {
    /// Payload variant used by this connection.
    variant: u16,
    /// Sends messages (see `--active`).
    pub active: bool,
    /// Rate mode: the connection is (possibly) in the worker's ready queue.
    pub in_ready: bool,
    /// We started the close handshake (end of run).
    we_closed: bool,
    close_queued: bool,
    close_sent: bool,
    close_rcvd: bool,
    /// Bytes of the first queued frame already written.
    tx_off: u32,
    /// Frames queued and not completely written (the newest `tx_pending` ring entries).
    tx_pending: u32,
    /// Send timestamps of the messages in flight, oldest first.
    ring: Box<[u64]>,
    ring_head: u32,
    ring_len: u32,
    frame_op: u8,
    frame_fin: bool,
    /// A data message is being received.
    in_msg: bool,
    msg_off: u64,
    msg_bad: bool,
    /// Which sent frame the next echoed frame must match (`--no-fidelity`: unused).
    fid: Fidelity,
    /// The message being received is compressed (RSV1 on its first frame).
    z_msg: bool,
    /// Its compressed bytes so far equal the bytes sent (a verbatim echo).
    z_same: bool,
    /// Its inflate stream ended (a final block): nothing may follow.
    z_ended: bool,
    /// Compressed bytes of it received so far.
    z_off: u64,
    /// The inflate state of the compressed message being received (from [`Echo::inflaters`]).
    zin: Option<Box<Decompress>>,
    extra: Option<Box<Extra>>,
}

impl Conn {
    /// A connection whose TCP connect was just started.
    pub fn new(
        stream: Stream,
        index: u32,
        active: bool,
        in_flight: usize,
        key: [u8; 24],
        ctx: &Ctx<'_>,
        connect_timeout_ns: u64,
    ) -> Conn {
        let nvar = ctx.m.work.variants.len().max(1);
        Conn {
            link: Link::new(stream, index, key, ctx.now, connect_timeout_ns),
            hooks: EchoHooks {
                variant: (index as usize % nvar) as u16,
                active,
                in_ready: false,
                we_closed: false,
                close_queued: false,
                close_sent: false,
                close_rcvd: false,
                tx_off: 0,
                tx_pending: 0,
                ring: if active && in_flight > 0 { vec![0u64; in_flight].into_boxed_slice() } else { Box::new([]) },
                ring_head: 0,
                ring_len: 0,
                frame_op: 0,
                frame_fin: false,
                in_msg: false,
                msg_off: 0,
                msg_bad: false,
                fid: Fidelity::default(),
                z_msg: false,
                z_same: false,
                z_ended: false,
                z_off: 0,
                zin: None,
                extra: None,
            },
        }
    }

    /// Messages that may still be queued.
    #[inline]
    pub fn room(&self) -> usize {
        if self.link.state != State::Open || self.hooks.close_queued {
            0
        } else {
            self.hooks.ring.len() - self.hooks.ring_len as usize
        }
    }

    /// Queues one message stamped `stamp` (ns); false when the connection has no room. The
    /// caller flushes (see [`Conn::flush`]).
    #[inline]
    pub fn enqueue(&mut self, stamp: u64) -> bool {
        if self.room() == 0 {
            return false;
        }
        let cap = self.hooks.ring.len() as u32;
        let mut slot = self.hooks.ring_head + self.hooks.ring_len;
        if slot >= cap {
            slot -= cap;
        }
        self.hooks.ring[slot as usize] = stamp;
        self.hooks.ring_len += 1;
        self.hooks.tx_pending += 1;
        true
    }

    #[inline]
    fn check_payload(&mut self, ctx: &mut Ctx<'_>, chunk: &[u8]) {
        if !self.hooks.msg_bad {
            let p = &ctx.m.work.variants[self.hooks.variant as usize].payload;
            if let Err(what) = compare(p, self.hooks.msg_off as usize, chunk) {
                self.mismatch(ctx, what);
            }
        }
        self.hooks.msg_off += chunk.len() as u64;
    }

    /// A piece of a compressed echo (`last`: the tail appended at the message's end instead):
    /// compared with the compressed bytes sent (verbatim or not), inflated and compared with the
    /// payload.
    fn check_compressed(&mut self, ctx: &mut Ctx<'_>, chunk: &[u8], last: bool) {
        let work: &Workload = ctx.m.work;
        let v = &work.variants[self.hooks.variant as usize];
        let h = &mut self.hooks;
        if !last {
            if h.z_same {
                let sent = work.sent(v);
                let at = h.z_off as usize;
                h.z_same = sent.get(at..at + chunk.len()).is_some_and(|s| s == chunk);
            }
            h.z_off += chunk.len() as u64;
        }
        if h.msg_bad {
            return;
        }
        let res = match h.zin.as_mut() {
            Some(_) if h.z_ended && last => Ok(true),
            Some(_) if h.z_ended => Err("bytes after the final deflate block".to_string()),
            Some(d) => {
                let (input, flush) =
                    if last { (&DEFLATE_TAIL[..], FlushDecompress::Sync) } else { (chunk, FlushDecompress::None) };
                inflate_compare(d, input, flush, &mut ctx.m.inflated, &v.payload, &mut h.msg_off)
            }
            None => Err("compressed echo without an inflate state".to_string()),
        };
        match res {
            Ok(ended) => self.hooks.z_ended |= ended,
            Err(what) => self.mismatch(ctx, what),
        }
    }

    /// Gives the inflate state of the message just received back to the loop, reset.
    fn give_back_inflater(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(mut d) = self.hooks.zin.take() {
            d.reset(false);
            ctx.m.inflaters.push(d);
        }
    }

    /// Marks the current message bad (counted when it ends); describes the first few.
    fn mismatch(&mut self, ctx: &mut Ctx<'_>, what: String) {
        if !self.hooks.msg_bad {
            self.hooks.msg_bad = true;
            if ctx.mismatch_logs < 5 {
                ctx.mismatch_logs += 1;
                eprintln!("wsbench: echo mismatch on connection #{}: {what}", self.link.index);
            }
        }
    }

    /// Checks an echoed data frame's header against the frame sent (the fidelity error, if any,
    /// is counted when the message ends); describes the first few errors.
    fn check_frame(&mut self, ctx: &mut Ctx<'_>, h: &wire::Header) {
        let work = ctx.m.work;
        let v = &work.variants[self.hooks.variant as usize];
        if let Err(what) = self.hooks.fid.check(h, work.opcode == wire::OP_TEXT, work.deflate, |k| work.shape(v, k)) {
            if ctx.mismatch_logs < 5 {
                ctx.mismatch_logs += 1;
                eprintln!("wsbench: frame fidelity error on connection #{}: {what}", self.link.index);
            }
        }
    }

    fn end_message(&mut self, ctx: &mut Ctx<'_>) {
        let size = ctx.m.work.size as u64;
        let z_msg = self.hooks.z_msg;
        if z_msg {
            self.check_compressed(ctx, &[], true);
            self.give_back_inflater(ctx);
            self.hooks.z_msg = false;
        }
        if !self.hooks.msg_bad && self.hooks.msg_off != size {
            self.mismatch(ctx, format!("echo of {} bytes, {} sent", self.hooks.msg_off, size));
        }
        self.hooks.in_msg = false;
        let stamp = if self.hooks.ring_len > 0 {
            let s = self.hooks.ring[self.hooks.ring_head as usize];
            self.hooks.ring_head += 1;
            if self.hooks.ring_head as usize == self.hooks.ring.len() {
                self.hooks.ring_head = 0;
            }
            self.hooks.ring_len -= 1;
            Some(s)
        } else {
            None
        };
        // A fidelity error fails the message like a byte mismatch: counted, not echoed.
        ctx.stats.mismatches += u64::from(self.hooks.msg_bad);
        ctx.stats.fidelity_errors += u64::from(self.hooks.fid.is_bad());
        let good = !self.hooks.msg_bad && !self.hooks.fid.is_bad();
        if let Some(stamp) = stamp.filter(|_| good) {
            ctx.msgs_total += 1;
            ctx.bytes_total += size;
            if ctx.counting {
                ctx.stats.msgs += 1;
                ctx.stats.bytes += size;
                ctx.stats.latency.saturating_record(ctx.now.saturating_sub(stamp).max(1));
                if z_msg {
                    let work = ctx.m.work;
                    let sent = work.sent(&work.variants[self.hooks.variant as usize]).len() as u64;
                    ctx.stats.z_msgs += 1;
                    ctx.stats.z_sent_bytes += sent;
                    ctx.stats.z_echo_bytes += self.hooks.z_off;
                    ctx.stats.z_verbatim += u64::from(self.hooks.z_same && self.hooks.z_off == sent);
                }
            }
        }
        if stamp.is_some() {
            ctx.freed = true;
            if ctx.m.refill && self.hooks.active {
                self.enqueue(ctx.now);
            }
        }
    }

    fn on_close_frame(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Ended> {
        let (len, b0, b1) = match self.hooks.extra.as_ref() {
            Some(x) => (x.ctl_rx_len, x.ctl_rx[0], x.ctl_rx[1]),
            None => (0, 0, 0),
        };
        let code = match len {
            0 => 1005,
            1 => return Err(self.protocol_error(ctx, "close frame with a 1-byte payload")),
            _ => u16::from_be_bytes([b0, b1]),
        };
        self.hooks.close_rcvd = true;
        if self.hooks.we_closed {
            ctx.stats.clean_closes += 1;
        } else {
            ctx.stats.server_close(code);
            let reason = format!("server close {code}");
            self.lose(ctx, &reason);
            self.queue_close(ctx, if len == 0 { None } else { Some(code) });
        }
        self.link.state = State::Closing;
        self.link.deadline = ctx.now + ctx.close_timeout_ns;
        Ok(())
    }

    fn queue_close(&mut self, ctx: &mut Ctx<'_>, code: Option<u16>) {
        if self.hooks.close_queued {
            return;
        }
        self.hooks.close_queued = true;
        // Keep only a frame that is partly written; forget the rest of the queue.
        let keep = u32::from(self.hooks.tx_off > 0);
        self.hooks.ring_len -= self.hooks.tx_pending - keep;
        self.hooks.tx_pending = keep;
        let x = self.hooks.extra.get_or_insert_with(Extra::new);
        let n = match code {
            Some(1000) => {
                x.ctl_tx[..8].copy_from_slice(&ctx.m.work.close_frame);
                8
            }
            Some(c) => {
                let mask = (ctx.now as u32 ^ self.link.index).to_le_bytes();
                wire::masked_control_frame(wire::OP_CLOSE, &c.to_be_bytes(), mask, &mut x.ctl_tx)
            }
            None => wire::masked_control_frame(wire::OP_CLOSE, &[], [1, 2, 3, 4], &mut x.ctl_tx),
        };
        x.ctl_tx_len = n as u8;
        x.ctl_tx_off = 0;
    }
}

impl<'a> Hooks<'a> for EchoHooks {
    type X = Echo<'a>;
    type End = Ended;

    const FAILED: Ended = Ended;
    const DROPPED: Ended = Ended;

    fn on_upgrade(c: &mut Conn, ctx: &mut Ctx<'a>) {
        ctx.stats.upgraded += 1;
        if c.hooks.active && ctx.m.refill {
            while c.enqueue(ctx.now) {}
        }
    }

    fn after_upgrade(c: &mut Conn, ctx: &mut Ctx<'a>) -> Result<(), Ended> {
        c.flush(ctx)
    }

    fn start_frame(c: &mut Conn, ctx: &mut Ctx<'a>, h: &wire::Header) -> Result<(), Ended> {
        if h.rsv1 && (h.opcode & 0x8 != 0 || h.opcode == wire::OP_CONTINUATION) {
            // RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
            return Err(c.protocol_error(ctx, "RSV1 on a control or continuation frame"));
        }
        if h.opcode & 0x8 == 0 {
            match frag::classify(h.opcode, c.hooks.in_msg) {
                Err(e) => return Err(c.protocol_error(ctx, e)),
                Ok(Data::First) => {
                    c.hooks.in_msg = true;
                    c.hooks.msg_off = 0;
                    c.hooks.msg_bad = false;
                    c.hooks.fid.start_message();
                    if h.rsv1 {
                        c.hooks.z_msg = true;
                        c.hooks.z_same = true;
                        c.hooks.z_ended = false;
                        c.hooks.z_off = 0;
                        if c.hooks.zin.is_none() {
                            let d = ctx.m.inflaters.pop().unwrap_or_else(|| Box::new(Decompress::new(false)));
                            c.hooks.zin = Some(d);
                        }
                    }
                    if c.hooks.ring_len == 0 {
                        c.mismatch(ctx, "a message arrived with none in flight".into());
                    } else if h.opcode != ctx.m.work.opcode {
                        c.mismatch(ctx, format!("opcode {} instead of {}", h.opcode, ctx.m.work.opcode));
                    } else if ctx.m.work.deflate && !h.rsv1 {
                        c.mismatch(ctx, "echo not compressed (RSV1 clear on its first frame)".into());
                    }
                }
                Ok(Data::Continuation) => {}
            }
            if ctx.cfg.fidelity && c.hooks.ring_len > 0 {
                c.check_frame(ctx, h);
            }
        } else if let Some(x) = c.hooks.extra.as_mut() {
            x.ctl_rx_len = 0;
        }
        if h.opcode & 0x8 == 0 {
            // Remember data frames as "data", whatever their opcode, for the payload check.
            c.hooks.frame_op = wire::OP_BINARY;
        } else {
            c.hooks.frame_op = h.opcode;
        }
        c.hooks.frame_fin = h.fin;
        Ok(())
    }

    #[inline]
    fn frame_bytes(c: &mut Conn, ctx: &mut Ctx<'a>, chunk: &[u8]) -> Result<(), Ended> {
        if c.hooks.frame_op & 0x8 == 0 {
            if c.hooks.z_msg {
                c.check_compressed(ctx, chunk, false);
            } else {
                c.check_payload(ctx, chunk);
            }
        } else {
            let x = c.hooks.extra.get_or_insert_with(Extra::new);
            let at = x.ctl_rx_len as usize;
            x.ctl_rx[at..at + chunk.len()].copy_from_slice(chunk);
            x.ctl_rx_len += chunk.len() as u8;
        }
        Ok(())
    }

    fn end_frame(c: &mut Conn, ctx: &mut Ctx<'a>) -> Result<(), Ended> {
        match c.hooks.frame_op {
            wire::OP_CLOSE => c.on_close_frame(ctx),
            wire::OP_PING => {
                if !c.hooks.close_queued {
                    let x = c.hooks.extra.get_or_insert_with(Extra::new);
                    if x.ctl_tx_len == 0 {
                        let len = x.ctl_rx_len as usize;
                        let payload = x.ctl_rx;
                        let mask = (ctx.now as u32 ^ c.link.index.rotate_left(13)).to_le_bytes();
                        let n = wire::masked_control_frame(wire::OP_PONG, &payload[..len], mask, &mut x.ctl_tx);
                        x.ctl_tx_len = n as u8;
                        x.ctl_tx_off = 0;
                    }
                }
                Ok(())
            }
            wire::OP_PONG => Ok(()),
            _ => {
                if c.hooks.frame_fin {
                    c.end_message(ctx);
                }
                Ok(())
            }
        }
    }

    /// Writes what is queued: the rest of a partly written frame, then a pending control frame,
    /// then queued data frames (all in one `write` when possible), until the socket is full.
    fn flush(c: &mut Conn, ctx: &mut Ctx<'a>) -> Result<(), Ended> {
        let flen = ctx.m.work.variants[c.hooks.variant as usize].msg_len;
        loop {
            let ctl_pending = c.hooks.extra.as_ref().is_some_and(|x| x.ctl_tx_off < x.ctl_tx_len);
            let res;
            let is_data;
            if c.hooks.tx_pending > 0 && (c.hooks.tx_off > 0 || !ctl_pending) {
                let frames = &ctx.m.work.variants[c.hooks.variant as usize].frames;
                let end = if ctl_pending { flen } else { c.hooks.tx_pending as usize * flen };
                res = write_some(&mut c.link.stream, &frames[c.hooks.tx_off as usize..end]);
                is_data = true;
            } else if ctl_pending {
                let x = c.hooks.extra.as_ref().expect("ctl pending");
                res = write_some(&mut c.link.stream, &x.ctl_tx[x.ctl_tx_off as usize..x.ctl_tx_len as usize]);
                is_data = false;
            } else {
                return Ok(());
            }
            match res {
                Ok(Some(0)) => return Err(c.write_zero(ctx)),
                Ok(Some(n)) => {
                    if is_data {
                        let total = c.hooks.tx_off as usize + n;
                        c.hooks.tx_pending -= (total / flen) as u32;
                        c.hooks.tx_off = (total % flen) as u32;
                    } else {
                        let x = c.hooks.extra.as_mut().expect("ctl pending");
                        x.ctl_tx_off += n as u8;
                        if x.ctl_tx_off == x.ctl_tx_len {
                            x.ctl_tx_len = 0;
                            x.ctl_tx_off = 0;
                            if c.hooks.close_queued {
                                // Now the server closes TCP (we wait for EOF so TIME_WAIT
                                // lands on its side, not on our ports).
                                c.hooks.close_sent = true;
                            }
                        }
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(c.on_io_error(ctx, &e)),
            }
        }
    }

    /// Counts this connection as lost unless we are the ones closing.
    fn lose(c: &mut Conn, ctx: &mut Ctx<'a>, reason: &str) {
        if !c.hooks.we_closed && !ctx.shutting_down {
            ctx.stats.lost_connection(reason);
        }
    }

    /// Starts our close handshake (code 1000): unsent messages are dropped, a partly written
    /// frame is finished first. Connections not yet open just end.
    fn start_close(c: &mut Conn, ctx: &mut Ctx<'a>) -> Result<(), Ended> {
        match c.link.state {
            State::Connecting | State::Upgrading => Err(Ended),
            State::Closing => Ok(()),
            State::Open => {
                c.hooks.we_closed = true;
                c.link.state = State::Closing;
                c.link.deadline = ctx.now + ctx.close_timeout_ns;
                c.queue_close(ctx, Some(1000));
                c.flush(ctx)
            }
        }
    }

    fn open_timeout(c: &mut Conn, ctx: &mut Ctx<'a>) -> Ended {
        if c.link.state == State::Closing && c.hooks.we_closed && !c.hooks.close_rcvd {
            ctx.stats.close_timeouts += 1;
        }
        Ended
    }
}
