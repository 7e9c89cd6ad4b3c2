//! One soak-mode connection: TCP connect → upgrade → open (random messages, fragmented, with pings,
//! every echo and pong verified as it arrives) → sometimes a planned disconnect (clean close 1000,
//! or an abrupt FIN/RST drop in the middle of a message) → ended, after which the loop reconnects
//! the same connection index.
//!
//! Nothing is stored per message: the message being sent is described by a small [`Tx`] cursor
//! (payload seed, size, type, fragment and ping plan drawn from a per-message PRNG) and the bytes
//! are regenerated from it ([`crate::payload`]) whenever the socket takes more; the expected echo
//! is regenerated at the receive offset and compared. To send, a copy of the cursor generates up
//! to one write's worth of frames into the loop's scratch buffer, and the real cursor is then
//! advanced by what the socket took, making the same random draws. The frame fidelity check
//! (`frag`) learns the shape of each frame sent the same way: the receiver replays a copy of the
//! message's [`Plan`] (its draws) as echoed frames arrive. A connection is a few hundred bytes; a
//! server ping (rare) boxes a 125-byte payload.
//!
//! It owns the soak message logic only ([`SoakHooks`]), composed with the shared transport's
//! `Link` into a [`SoakConn`]: the connect, upgrade, read loop, frame splitting and error
//! classification live in `transport`. It does not own the event loop, the activity slots or
//! reconnect scheduling (see `soak`).

use crate::frag::{self, Data, Fidelity, Shape};
use crate::payload::{apply_mask, mix, Gen};
use crate::tls::Stream;
use crate::transport::{self, write_some, Hooks, Link, State};
use crate::wire::{self, Rng, MAX_HEADER};

/// Most pings one message may carry (they are answered before the echo ends).
const PINGS_PER_MSG: u8 = 3;
/// Pongs we can wait for at once.
const PING_RING: usize = 4;
/// "Not planned" for `Tx::close_at` and `Tx::drop_at`.
const NONE16: u16 = u16::MAX;
const NONE32: u32 = u32::MAX;
/// Most bytes generated for one `write`.
pub const WRITE_CHUNK: usize = 128 * 1024;

/// Why a connection call says the connection is over. Everything worth counting is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Connect or upgrade failed.
    Failed,
    /// Was open: disconnected on purpose, lost, or dropped after a mismatch. Reconnect.
    Reconnect,
}

/// What the current part of the message stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// No message being sent (none, or all of it is written).
    Idle,
    /// A data frame's header.
    Hdr,
    /// A data frame's payload.
    Pay,
    Ping,
    Close,
    /// Our close frame is written: nothing more is ever sent.
    Closed,
}

/// Per-run constants of the sender.
pub struct TxParams {
    /// Probability (of 2^32) of a ping at each boundary before a fragment.
    pub ping_p: u32,
}

/// Things the real (not simulated) cursor did, applied by the connection afterwards.
#[derive(Default)]
struct TxEvents {
    frames: u32,
    pings: [(u32, u8); PINGS_PER_MSG as usize + 1],
    n_pings: usize,
    close_written: bool,
}

/// The draws that decide one message's frame sequence, in order: at each frame boundary a
/// planned close, the end, a ping, or the next fragment (length by [`frag::random_len`], mask).
/// `Copy` and small: the sender's cursor ([`Tx`]) embeds one, and the receiver replays a copy
/// made at the message's start to learn the shape of each frame sent (frame fidelity) without
/// storing anything.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rng: Rng,
    size: u32,
    text: bool,
    nfrags: u16,
    /// Fragments drawn so far, and the message offset of the next one.
    drawn: u16,
    offset: u32,
    pings_left: u8,
    /// Planned clean close before fragment `close_at` (0 = before the first), or NONE16.
    close_at: u16,
}

/// What comes next in a message, by [`Plan::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The planned clean close (the caller draws its reason).
    Close,
    /// Every fragment is drawn.
    Done,
    Ping {
        seed: u32,
        len: u8,
        mask: [u8; 4],
    },
    /// Fragment `k`.
    Frame {
        k: u16,
        len: u32,
        mask: [u8; 4],
    },
}

impl Plan {
    fn new(rng: Rng, size: u32, text: bool, nfrags: u16) -> Plan {
        Plan { rng, size, text, nfrags, drawn: 0, offset: 0, pings_left: PINGS_PER_MSG, close_at: NONE16 }
    }

    fn opcode(&self) -> u8 {
        if self.text {
            wire::OP_TEXT
        } else {
            wire::OP_BINARY
        }
    }

    /// Draws what comes at the next frame boundary.
    fn step(&mut self, ping_p: u32) -> Step {
        if self.close_at == self.drawn {
            return Step::Close;
        }
        if self.drawn == self.nfrags {
            return Step::Done;
        }
        if self.pings_left > 0 && (self.rng.next_u64() as u32) < ping_p {
            self.pings_left -= 1;
            let r = self.rng.next_u64();
            let mask = ((r >> 40) as u32 ^ self.rng.next_u64() as u32).to_le_bytes();
            return Step::Ping { seed: r as u32, len: ((r >> 32) % 126) as u8, mask };
        }
        let after = u32::from(self.nfrags - self.drawn - 1);
        let len = frag::random_len(&mut self.rng, self.size - self.offset, after);
        let mask = (self.rng.next_u64() as u32).to_le_bytes();
        let k = self.drawn;
        self.drawn += 1;
        self.offset += len;
        Step::Frame { k, len, mask }
    }

    /// The receiver's replay: the shape of the next data frame sent, `None` when the message has
    /// no more (all drawn, or the planned close comes first).
    fn next_shape(&mut self, ping_p: u32) -> Option<Shape> {
        loop {
            match self.step(ping_p) {
                Step::Ping { .. } => {}
                Step::Frame { k, len, .. } => {
                    return Some(Shape::of(self.opcode(), k.into(), self.nfrags.into(), len.into()))
                }
                Step::Close | Step::Done => return None,
            }
        }
    }
}

/// The sending side's cursor over the frames of one message (see the module doc). `Copy`, so a
/// copy can run ahead to generate bytes without committing anything.
#[derive(Debug, Clone, Copy)]
struct Tx {
    /// The message's size, type, fragment count and draws.
    plan: Plan,
    /// Payload seed.
    seed: u64,
    item: Item,
    /// Bytes of the current item written.
    off: u32,
    /// Message offset of the current frame's payload, and its length.
    frame_start: u32,
    frame_len: u32,
    /// Fragments completely written.
    frags_done: u16,
    hdr: [u8; MAX_HEADER],
    hdr_len: u8,
    mask: [u8; 4],
    /// Current ping/close frame: payload seed, payload length, mask.
    ctl_seed: u32,
    ctl_len: u8,
    ctl_mask: [u8; 4],
    /// Close at the next frame boundary (end of the run).
    close_req: bool,
    /// Wire bytes of this message written, and the planned drop point (NONE32: none).
    wire: u32,
    drop_at: u32,
}

impl Tx {
    fn new(plan: Plan, seed: u64) -> Tx {
        Tx {
            plan,
            seed,
            item: Item::Idle,
            off: 0,
            frame_start: 0,
            frame_len: 0,
            frags_done: 0,
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            mask: [0; 4],
            ctl_seed: 0,
            ctl_len: 0,
            ctl_mask: [0; 4],
            close_req: false,
            wire: 0,
            drop_at: NONE32,
        }
    }

    fn idle() -> Tx {
        Tx::new(Plan::new(Rng::new(0), 0, false, 0), 0)
    }

    fn item_len(&self) -> u32 {
        match self.item {
            Item::Hdr => u32::from(self.hdr_len),
            Item::Pay => self.frame_len,
            Item::Ping | Item::Close => 6 + u32::from(self.ctl_len),
            Item::Idle | Item::Closed => 0,
        }
    }

    /// Not inside a frame: a control frame (a pong) may be written now.
    fn at_boundary(&self) -> bool {
        self.off == 0 && self.item != Item::Pay
    }

    /// Every fragment of the message is written.
    fn all_sent(&self) -> bool {
        self.frags_done == self.plan.nfrags
    }

    /// Called at every frame boundary of the message: picks what comes next.
    fn boundary(&mut self, p: &TxParams, ev: &mut TxEvents) {
        self.off = 0;
        if self.close_req {
            self.enter_close(false);
            return;
        }
        match self.plan.step(p.ping_p) {
            Step::Close => self.enter_close(true),
            Step::Done => self.item = Item::Idle,
            Step::Ping { seed, len, mask } => {
                self.ctl_seed = seed;
                self.ctl_len = len;
                self.ctl_mask = mask;
                self.item = Item::Ping;
                if ev.n_pings < ev.pings.len() {
                    ev.pings[ev.n_pings] = (seed, len);
                    ev.n_pings += 1;
                }
            }
            Step::Frame { k, len, mask } => {
                self.frame_len = len;
                self.mask = mask;
                let (op, n) = (self.plan.opcode(), self.plan.nfrags.into());
                self.hdr_len = frag::masked_header(op, k.into(), n, len.into(), mask, &mut self.hdr) as u8;
                self.item = Item::Hdr;
            }
        }
    }

    /// Our close frame: code 1000, with a random UTF-8 reason when planned.
    fn enter_close(&mut self, with_reason: bool) {
        let r = self.plan.rng.next_u64();
        self.ctl_seed = r as u32;
        self.ctl_len = 2 + if with_reason { ((r >> 32) % 124) as u8 } else { 0 };
        self.ctl_mask = ((r >> 40) as u32 ^ 0x5a5a_0000).to_le_bytes();
        self.item = Item::Close;
        self.off = 0;
    }

    /// The current item is complete: move on.
    fn next(&mut self, p: &TxParams, ev: &mut TxEvents) {
        match self.item {
            Item::Hdr if self.frame_len > 0 => {
                self.item = Item::Pay;
                self.off = 0;
            }
            Item::Hdr | Item::Pay => {
                self.frags_done += 1;
                self.frame_start += self.frame_len;
                self.frame_len = 0;
                ev.frames += 1;
                self.boundary(p, ev);
            }
            Item::Ping => self.boundary(p, ev),
            Item::Close => {
                ev.close_written = true;
                self.item = Item::Closed;
                self.off = 0;
            }
            Item::Idle | Item::Closed => {}
        }
    }

    /// Writes the whole current control frame into `buf`; returns its length.
    fn control_frame(&self, gen: &Gen, buf: &mut [u8; 131]) -> usize {
        let len = self.ctl_len as usize;
        let (op, hl) = if self.item == Item::Ping { (wire::OP_PING, 0) } else { (wire::OP_CLOSE, 2) };
        buf[0] = 0x80 | op;
        buf[1] = 0x80 | self.ctl_len;
        buf[2..6].copy_from_slice(&self.ctl_mask);
        let payload = &mut buf[6..6 + len];
        if op == wire::OP_PING {
            gen.fill(ping_seed(self.ctl_seed), len, false, 0, payload);
        } else {
            payload[..hl].copy_from_slice(&1000u16.to_be_bytes());
            gen.fill(ping_seed(self.ctl_seed), len - hl, true, 0, &mut payload[hl..]);
        }
        apply_mask(payload, self.ctl_mask, 0);
        6 + len
    }

    /// Produces up to `max` bytes of the stream, into `out` when given (a simulation generates,
    /// the real cursor only advances). Stops at the planned drop point, at the end of the message
    /// and, with `stop_at_boundary`, at the next frame boundary.
    fn emit(
        &mut self,
        gen: &Gen,
        p: &TxParams,
        mut out: Option<&mut [u8]>,
        max: usize,
        stop_at_boundary: bool,
        ev: &mut TxEvents,
    ) -> usize {
        let mut n = 0usize;
        let mut ctl = [0u8; 131];
        while n < max && !matches!(self.item, Item::Idle | Item::Closed) {
            if stop_at_boundary && self.at_boundary() && n > 0 {
                break;
            }
            let mut take = ((self.item_len() - self.off) as usize).min(max - n);
            if self.drop_at != NONE32 {
                if self.wire >= self.drop_at {
                    break;
                }
                take = take.min((self.drop_at - self.wire) as usize);
            }
            if let Some(o) = out.as_deref_mut() {
                let dst = &mut o[n..n + take];
                let off = self.off as usize;
                match self.item {
                    Item::Hdr => dst.copy_from_slice(&self.hdr[off..off + take]),
                    Item::Pay => {
                        let (size, text) = (self.plan.size as usize, self.plan.text);
                        gen.fill(self.seed, size, text, (self.frame_start + self.off) as usize, dst);
                        apply_mask(dst, self.mask, off);
                    }
                    Item::Ping | Item::Close => {
                        self.control_frame(gen, &mut ctl);
                        dst.copy_from_slice(&ctl[off..off + take]);
                    }
                    Item::Idle | Item::Closed => unreachable!(),
                }
            }
            self.off += take as u32;
            self.wire += take as u32;
            n += take;
            if self.off == self.item_len() {
                self.next(p, ev);
            }
        }
        n
    }
}

/// The payload seed of a ping or close frame from its 32-bit draw.
fn ping_seed(s: u32) -> u64 {
    mix(u64::from(s) ^ 0x9195_0000_0000)
}

/// The soak part of the per-loop context.
pub struct Soak<'a> {
    pub gen: &'a Gen,
    pub params: TxParams,
    pub echo_timeout_ns: u64,
    /// Send-side scratch ([`WRITE_CHUNK`] bytes).
    pub txbuf: Vec<u8>,
    /// Expected-echo scratch (as large as the read buffer).
    pub vbuf: Vec<u8>,
}

/// Per-loop context handed to every call.
pub type Ctx<'a> = transport::Ctx<'a, Soak<'a>>;

/// Rare, boxed on first use: a server ping to answer.
struct Extra {
    /// Payload of the server ping being read.
    ping_in: [u8; 125],
    /// Latest complete server ping payload not yet answered.
    pong_pending: Option<([u8; 125], u8)>,
    /// The pong frame being written.
    pong_tx: [u8; 131],
    pong_len: u8,
    pong_off: u8,
}

impl Extra {
    fn new() -> Box<Extra> {
        Box::new(Extra { ping_in: [0; 125], pong_pending: None, pong_tx: [0; 131], pong_len: 0, pong_off: 0 })
    }

    fn pong_busy(&self) -> bool {
        self.pong_off < self.pong_len || self.pong_pending.is_some()
    }
}

/// Receive-side frame parser state.
#[derive(Debug, Clone, Copy)]
struct Rx {
    frame_op: u8,
    frame_fin: bool,
    /// An echoed data message is being received.
    in_msg: bool,
    msg_off: u32,
    /// Control payload bytes received so far.
    ctl_off: u8,
    close_code: [u8; 2],
    /// The current message's draws, replayed to know the shape of each frame sent.
    replay: Plan,
    /// Which sent frame the next echoed frame must match.
    fid: Fidelity,
}

/// A soak connection: the shared transport state composed with [`SoakHooks`]. Its index
/// (`link.index`) fixes the source address and the seeds.
pub type SoakConn = transport::Conn<SoakHooks>;

/// The soak part of a connection.
pub struct SoakHooks {
    /// How many times this index has connected before.
    pub incarnation: u32,
    /// Waiting in the loop's queue for an activity slot.
    pub queued: bool,
    /// Holds an activity slot: a message (or a planned disconnect) is under way.
    pub has_slot: bool,
    /// We sent (or will send) a close at the end of the run.
    shutdown_close: bool,
    /// A planned clean close is under way (close frame written or planned in this message).
    planned_close: bool,
    /// A planned abrupt drop is under way: with RST (SO_LINGER 0) instead of FIN.
    drop_rst: bool,
    close_rcvd: bool,
    /// The echo of the current message is still expected.
    awaiting: bool,
    msg_started: u64,
    rng: Rng,
    tx: Tx,
    rx: Rx,
    /// Pings sent and not yet answered: (seed, length), oldest at `ping_head`.
    pings: [(u32, u8); PING_RING],
    ping_head: u8,
    ping_len: u8,
    extra: Option<Box<Extra>>,
}

impl SoakConn {
    /// A connection whose TCP connect was just started.
    pub fn new(stream: Stream, index: u32, incarnation: u32, seed: u64, ctx: &Ctx<'_>, timeout_ns: u64) -> SoakConn {
        let mut rng = Rng::new(mix(seed ^ mix((u64::from(index) << 32) | u64::from(incarnation))));
        let key = wire::new_key(&mut rng);
        SoakConn {
            link: Link::new(stream, index, key, ctx.now, timeout_ns),
            hooks: SoakHooks {
                incarnation,
                queued: false,
                has_slot: false,
                shutdown_close: false,
                planned_close: false,
                drop_rst: false,
                close_rcvd: false,
                awaiting: false,
                msg_started: 0,
                rng,
                tx: Tx::idle(),
                rx: Rx {
                    frame_op: 0,
                    frame_fin: false,
                    in_msg: false,
                    msg_off: 0,
                    ctl_off: 0,
                    close_code: [0; 2],
                    replay: Tx::idle().plan,
                    fid: Fidelity::default(),
                },
                pings: [(0, 0); PING_RING],
                ping_head: 0,
                ping_len: 0,
                extra: None,
            },
        }
    }

    /// Open, idle and able to start a message.
    pub fn can_start(&self) -> bool {
        self.link.state == State::Open
            && !self.hooks.has_slot
            && self.hooks.tx.item == Item::Idle
            && !self.hooks.awaiting
    }

    /// Starts a message (the caller gave this connection an activity slot): draws its size,
    /// type, fragments and whether this message ends in a planned disconnect, then writes.
    pub fn start_message(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        debug_assert!(self.can_start());
        self.hooks.has_slot = true;
        let max = ctx.cfg.max_size as u64;
        let r = self.hooks.rng.next_u64();
        let a = self.hooks.rng.next_u64();
        let size = match r % 100 {
            0..=1 => max,
            2..=26 => a % (max.min(125) + 1),
            27..=51 if max > 125 => 126 + ((a % (max - 125)) >> ((a >> 59) % 12)),
            _ => a % (max + 1),
        } as u32;
        let text = (r >> 8) & 1 == 1;
        let nfrags = 1 + ((r >> 16) % ctx.cfg.max_fragments as u64) as u16;
        let mut tx =
            Tx::new(Plan::new(Rng::new(self.hooks.rng.next_u64()), size, text, nfrags), self.hooks.rng.next_u64());
        let d = self.hooks.rng.next_u64();
        if ((d >> 11) as f64 / (1u64 << 53) as f64) < ctx.cfg.disconnect_prob {
            let where_ = self.hooks.rng.next_u64();
            match d % 4 {
                0 | 1 => {
                    tx.plan.close_at = (where_ % u64::from(nfrags)) as u16;
                    self.hooks.planned_close = true;
                }
                k => {
                    // Somewhere in the message's bytes (headers included), or right after it.
                    tx.drop_at = (where_ % (u64::from(size) + 14 * u64::from(nfrags) + 1)) as u32;
                    self.hooks.drop_rst = k == 3;
                }
            }
        }
        // The receiver replays the draws from here to know each frame sent.
        self.hooks.rx.replay = tx.plan;
        let mut ev = TxEvents::default();
        tx.boundary(&ctx.m.params, &mut ev);
        self.hooks.tx = tx;
        self.apply(ctx, &ev);
        self.hooks.awaiting = true;
        self.hooks.msg_started = ctx.now;
        self.link.deadline = ctx.now + ctx.m.echo_timeout_ns;
        self.flush(ctx)
    }

    /// Applies what the real cursor did.
    fn apply(&mut self, ctx: &mut Ctx<'_>, ev: &TxEvents) {
        ctx.stats.fragments += u64::from(ev.frames);
        for &(s, l) in &ev.pings[..ev.n_pings] {
            ctx.stats.pings += 1;
            if (self.hooks.ping_len as usize) < PING_RING {
                let at = (self.hooks.ping_head as usize + self.hooks.ping_len as usize) % PING_RING;
                self.hooks.pings[at] = (s, l);
                self.hooks.ping_len += 1;
            }
        }
        if ev.close_written {
            self.link.state = State::Closing;
            self.link.deadline =
                ctx.now + if self.hooks.shutdown_close { ctx.close_timeout_ns } else { ctx.m.echo_timeout_ns };
        }
    }

    /// Counts a mismatch, describes the first few, and says to drop the connection: after a
    /// wrong echo the two sides no longer agree on where messages start.
    fn mismatch(&mut self, ctx: &mut Ctx<'_>, what: &str) -> End {
        ctx.stats.mismatches += 1;
        if ctx.mismatch_logs < 5 {
            ctx.mismatch_logs += 1;
            eprintln!(
                "wsbench: echo mismatch on connection #{} (connection {} of this index, message of {} B {}, {} fragments): {what}",
                self.link.index,
                self.hooks.incarnation + 1,
                self.hooks.tx.plan.size,
                if self.hooks.tx.plan.text { "text" } else { "binary" },
                self.hooks.tx.plan.nfrags
            );
        }
        End::Reconnect
    }

    /// Checks an echoed data frame's header against the frame sent (replaying the message's
    /// draws); a fidelity error is counted at once, once per message, and described for the
    /// first few. The bytes still agree, so the connection goes on.
    fn check_frame(&mut self, ctx: &mut Ctx<'_>, h: &wire::Header) {
        let (replay, ping_p) = (&mut self.hooks.rx.replay, ctx.m.params.ping_p);
        if let Err(what) = self.hooks.rx.fid.check(h, self.hooks.tx.plan.text, false, |_| replay.next_shape(ping_p)) {
            ctx.stats.fidelity_errors += 1;
            if ctx.mismatch_logs < 5 {
                ctx.mismatch_logs += 1;
                eprintln!(
                    "wsbench: frame fidelity error on connection #{} (message of {} B {}, {} fragments): {what}",
                    self.link.index,
                    self.hooks.tx.plan.size,
                    if self.hooks.tx.plan.text { "text" } else { "binary" },
                    self.hooks.tx.plan.nfrags
                );
            }
        }
    }

    fn check_payload(&mut self, ctx: &mut Ctx<'_>, chunk: &[u8]) -> Result<(), End> {
        let start = self.hooks.rx.msg_off as usize;
        let exp = &mut ctx.m.vbuf[..chunk.len()];
        ctx.m.gen.fill(self.hooks.tx.seed, self.hooks.tx.plan.size as usize, self.hooks.tx.plan.text, start, exp);
        if *exp != *chunk {
            let k = exp.iter().zip(chunk).position(|(a, b)| a != b).unwrap_or(0);
            let what = format!(
                "byte {} of {}: expected 0x{:02x}, got 0x{:02x}",
                start + k,
                self.hooks.tx.plan.size,
                exp[k],
                chunk[k]
            );
            return Err(self.mismatch(ctx, &what));
        }
        self.hooks.rx.msg_off += chunk.len() as u32;
        Ok(())
    }

    fn control_bytes(&mut self, ctx: &mut Ctx<'_>, chunk: &[u8]) -> Result<(), End> {
        let at = self.hooks.rx.ctl_off as usize;
        match self.hooks.rx.frame_op {
            wire::OP_PONG => {
                let (seed, len) = self.hooks.pings[self.hooks.ping_head as usize];
                let mut exp = [0u8; 125];
                ctx.m.gen.fill(ping_seed(seed), len as usize, false, 0, &mut exp[..len as usize]);
                if exp[at..at + chunk.len()] != *chunk {
                    return Err(self.mismatch(ctx, "pong payload differs from the ping's"));
                }
            }
            wire::OP_PING => {
                let x = self.hooks.extra.get_or_insert_with(Extra::new);
                x.ping_in[at..at + chunk.len()].copy_from_slice(chunk);
            }
            _ => {
                for (k, &b) in chunk.iter().enumerate() {
                    if at + k < 2 {
                        self.hooks.rx.close_code[at + k] = b;
                    }
                }
            }
        }
        self.hooks.rx.ctl_off += chunk.len() as u8;
        Ok(())
    }

    fn end_message(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        self.hooks.rx.in_msg = false;
        if self.hooks.rx.msg_off != self.hooks.tx.plan.size {
            let what = format!("echo of {} bytes, {} sent", self.hooks.rx.msg_off, self.hooks.tx.plan.size);
            return Err(self.mismatch(ctx, &what));
        }
        if !self.hooks.tx.all_sent() {
            return Err(self.mismatch(ctx, "the echo ended before the last fragment was sent"));
        }
        if self.hooks.ping_len > 0 {
            let what = format!("the echo ended with {} pong(s) missing", self.hooks.ping_len);
            return Err(self.mismatch(ctx, &what));
        }
        self.hooks.awaiting = false;
        let size = u64::from(self.hooks.tx.plan.size);
        // A fidelity error (counted when found) fails the message: it is not counted as echoed.
        let good = !self.hooks.rx.fid.is_bad();
        if good {
            ctx.msgs_total += 1;
            ctx.bytes_total += size;
        }
        if good && ctx.counting {
            ctx.stats.msgs += 1;
            ctx.stats.bytes += size;
            ctx.stats.latency.saturating_record(ctx.now.saturating_sub(self.hooks.msg_started).max(1));
        }
        if self.hooks.has_slot && self.link.state == State::Open {
            self.hooks.has_slot = false;
            ctx.freed = true;
        }
        Ok(())
    }

    fn on_close_frame(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let code = match self.hooks.rx.ctl_off {
            0 => 1005,
            1 => return Err(self.protocol_error(ctx, "close frame with a 1-byte payload")),
            _ => u16::from_be_bytes(self.hooks.rx.close_code),
        };
        let we_closed = self.hooks.tx.item == Item::Closed;
        if !we_closed {
            // The server closed on its own (or answered a close we have not finished writing).
            ctx.stats.server_close(code);
            if !ctx.shutting_down {
                self.lose(ctx, &format!("server close {code}"));
            }
            return Err(End::Reconnect);
        }
        self.hooks.close_rcvd = true;
        if code != 1000 {
            return Err(self.mismatch(ctx, &format!("close reply with code {code} to our 1000")));
        }
        if self.hooks.ping_len > 0 {
            let what = format!("close reply with {} pong(s) missing", self.hooks.ping_len);
            return Err(self.mismatch(ctx, &what));
        }
        if self.hooks.shutdown_close {
            ctx.stats.clean_closes += 1;
        } else if self.hooks.planned_close {
            ctx.stats.clean_disconnects += 1;
        }
        // Now wait for the server's EOF (TIME_WAIT lands on its side).
        Ok(())
    }

    /// Performs the planned abrupt drop: RST (SO_LINGER 0) or a plain close (FIN).
    fn abrupt_drop(&mut self, ctx: &mut Ctx<'_>) -> End {
        if self.hooks.drop_rst {
            let _ = socket2::SockRef::from(self.link.stream.tcp()).set_linger(Some(std::time::Duration::ZERO));
            ctx.stats.drops_rst += 1;
        }
        ctx.stats.drops += 1;
        End::Reconnect
    }

    /// Writes the pong for the latest server ping; Ok(true) when it is completely written.
    fn write_pong(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        let mask = (self.hooks.rng.next_u64() as u32).to_le_bytes();
        let x = self.hooks.extra.as_mut().expect("pong pending");
        if x.pong_off >= x.pong_len {
            let (payload, len) = x.pong_pending.take().expect("pong pending");
            let n = wire::masked_control_frame(wire::OP_PONG, &payload[..len as usize], mask, &mut x.pong_tx);
            x.pong_len = n as u8;
            x.pong_off = 0;
        }
        loop {
            match write_some(&mut self.link.stream, &x.pong_tx[x.pong_off as usize..x.pong_len as usize]) {
                Ok(Some(0)) => return Err(self.write_zero(ctx)),
                Ok(Some(n)) => {
                    x.pong_off += n as u8;
                    if x.pong_off == x.pong_len {
                        x.pong_off = 0;
                        x.pong_len = 0;
                        return Ok(true);
                    }
                }
                Ok(None) => return Ok(false),
                Err(e) => return Err(self.on_io_error(ctx, &e)),
            }
        }
    }
}

impl<'a> Hooks<'a> for SoakHooks {
    type X = Soak<'a>;
    type End = End;

    const FAILED: End = End::Failed;
    const DROPPED: End = End::Reconnect;

    fn on_upgrade(c: &mut SoakConn, ctx: &mut Ctx<'a>) {
        if c.hooks.incarnation == 0 {
            ctx.stats.upgraded += 1;
        } else {
            ctx.stats.reconnects += 1;
        }
    }

    fn after_upgrade(_c: &mut SoakConn, _ctx: &mut Ctx<'a>) -> Result<(), End> {
        Ok(())
    }

    fn on_frame_data(c: &mut SoakConn, ctx: &mut Ctx<'a>) {
        if c.hooks.has_slot && c.link.state == State::Open {
            c.link.deadline = ctx.now + ctx.m.echo_timeout_ns;
        }
    }

    fn start_frame(c: &mut SoakConn, ctx: &mut Ctx<'a>, h: &wire::Header) -> Result<(), End> {
        match h.opcode {
            wire::OP_TEXT | wire::OP_BINARY | wire::OP_CONTINUATION => {
                match frag::classify(h.opcode, c.hooks.rx.in_msg) {
                    Err(e) => return Err(c.protocol_error(ctx, e)),
                    Ok(Data::First) => {
                        if !c.hooks.awaiting {
                            return Err(c.mismatch(ctx, "a message arrived with none in flight"));
                        }
                        let want = c.hooks.tx.plan.opcode();
                        if h.opcode != want {
                            return Err(c.mismatch(ctx, &format!("opcode {} instead of {want}", h.opcode)));
                        }
                        c.hooks.rx.in_msg = true;
                        c.hooks.rx.msg_off = 0;
                        c.hooks.rx.fid.start_message();
                    }
                    Ok(Data::Continuation) => {}
                }
                if ctx.cfg.fidelity {
                    c.check_frame(ctx, h);
                }
            }
            _ => {
                c.hooks.rx.ctl_off = 0;
                if h.opcode == wire::OP_PONG && c.hooks.ping_len == 0 {
                    return Err(c.mismatch(ctx, "a pong arrived with no ping outstanding"));
                }
                if h.opcode == wire::OP_PONG {
                    let (_, want) = c.hooks.pings[c.hooks.ping_head as usize];
                    if h.len != u64::from(want) {
                        return Err(c.mismatch(ctx, &format!("pong of {} bytes for a ping of {want}", h.len)));
                    }
                }
            }
        }
        if h.opcode & 0x8 == 0 && u64::from(c.hooks.rx.msg_off) + h.len > u64::from(c.hooks.tx.plan.size) {
            let what = format!(
                "echo frame of {} bytes at offset {} goes past the {} sent",
                h.len, c.hooks.rx.msg_off, c.hooks.tx.plan.size
            );
            return Err(c.mismatch(ctx, &what));
        }
        c.hooks.rx.frame_op = h.opcode;
        c.hooks.rx.frame_fin = h.fin;
        Ok(())
    }

    fn frame_bytes(c: &mut SoakConn, ctx: &mut Ctx<'a>, chunk: &[u8]) -> Result<(), End> {
        if c.hooks.rx.frame_op & 0x8 == 0 {
            c.check_payload(ctx, chunk)
        } else {
            c.control_bytes(ctx, chunk)
        }
    }

    fn end_frame(c: &mut SoakConn, ctx: &mut Ctx<'a>) -> Result<(), End> {
        match c.hooks.rx.frame_op {
            wire::OP_CLOSE => c.on_close_frame(ctx),
            wire::OP_PING => {
                ctx.stats.server_pings += 1;
                let len = c.hooks.rx.ctl_off;
                let x = c.hooks.extra.get_or_insert_with(Extra::new);
                x.pong_pending = Some((x.ping_in, len));
                Ok(())
            }
            wire::OP_PONG => {
                ctx.stats.pongs += 1;
                c.hooks.ping_head = ((c.hooks.ping_head as usize + 1) % PING_RING) as u8;
                c.hooks.ping_len -= 1;
                Ok(())
            }
            _ => {
                if c.hooks.rx.frame_fin {
                    c.end_message(ctx)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Writes: a pending pong at a frame boundary, then the message's frames, until the socket
    /// is full, the message is written, or its planned drop point is reached.
    fn flush(c: &mut SoakConn, ctx: &mut Ctx<'a>) -> Result<(), End> {
        if !matches!(c.link.state, State::Open | State::Closing) {
            return Ok(());
        }
        loop {
            if c.hooks.tx.drop_at != NONE32 && (c.hooks.tx.wire >= c.hooks.tx.drop_at || c.hooks.tx.item == Item::Idle)
            {
                return Err(c.abrupt_drop(ctx));
            }
            let pong = c.hooks.extra.as_ref().is_some_and(|x| x.pong_busy());
            if pong && c.hooks.tx.at_boundary() && c.hooks.tx.item != Item::Closed {
                match c.write_pong(ctx) {
                    Ok(true) => continue,
                    Ok(false) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            if matches!(c.hooks.tx.item, Item::Idle | Item::Closed) {
                return Ok(());
            }
            let mut sim = c.hooks.tx;
            let mut ev = TxEvents::default();
            let mut buf = std::mem::take(&mut ctx.m.txbuf);
            let n = sim.emit(ctx.m.gen, &ctx.m.params, Some(&mut buf[..]), WRITE_CHUNK, pong, &mut ev);
            let res = write_some(&mut c.link.stream, &buf[..n]);
            ctx.m.txbuf = buf;
            match res {
                Ok(Some(0)) => return Err(c.write_zero(ctx)),
                Ok(Some(k)) => {
                    let mut ev = TxEvents::default();
                    let done = c.hooks.tx.emit(ctx.m.gen, &ctx.m.params, None, k, pong, &mut ev);
                    debug_assert_eq!(done, k);
                    c.apply(ctx, &ev);
                    if c.hooks.has_slot && c.link.state == State::Open {
                        c.link.deadline = ctx.now + ctx.m.echo_timeout_ns;
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(c.on_io_error(ctx, &e)),
            }
        }
    }

    /// Counts this connection as lost unless the run is ending.
    fn lose(c: &mut SoakConn, ctx: &mut Ctx<'a>, reason: &str) {
        if !ctx.shutting_down && !c.hooks.shutdown_close {
            ctx.stats.lost_connection(reason);
        }
    }

    fn broken_while_closing(c: &mut SoakConn, ctx: &mut Ctx<'a>, what: &str) {
        if !c.hooks.close_rcvd && c.hooks.planned_close && !ctx.shutting_down {
            c.lose(ctx, &format!("{what} before the close reply"));
        }
    }

    /// The end of the run: close (1000) after the frame being written. Connections not yet open
    /// just end.
    fn start_close(c: &mut SoakConn, ctx: &mut Ctx<'a>) -> Result<(), End> {
        match c.link.state {
            State::Connecting | State::Upgrading => Err(End::Failed),
            State::Closing => Ok(()),
            State::Open => {
                if c.hooks.tx.drop_at != NONE32 {
                    // A planned drop was under way: drop now.
                    return Err(End::Reconnect);
                }
                c.hooks.shutdown_close = true;
                c.hooks.planned_close = false;
                c.link.state = State::Closing;
                c.link.deadline = ctx.now + ctx.close_timeout_ns;
                match c.hooks.tx.item {
                    Item::Closed | Item::Close => {}
                    Item::Idle => {
                        c.hooks.tx.close_req = true;
                        c.hooks.tx.enter_close(false);
                    }
                    _ => {
                        c.hooks.tx.close_req = true;
                        if c.hooks.tx.at_boundary() {
                            c.hooks.tx.enter_close(false);
                        }
                    }
                }
                c.flush(ctx)
            }
        }
    }

    fn open_timeout(c: &mut SoakConn, ctx: &mut Ctx<'a>) -> End {
        if c.link.state == State::Open {
            if c.hooks.has_slot {
                c.lose(ctx, "echo timeout");
            }
        } else if !c.hooks.close_rcvd {
            if c.hooks.shutdown_close {
                ctx.stats.close_timeouts += 1;
            } else {
                c.lose(ctx, "no close reply (timeout)");
            }
        }
        End::Reconnect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a Tx over a whole message, writing in pieces of `step` bytes, and parses the frames.
    fn drive(size: u32, text: bool, nfrags: u16, ping_p: u32, step: usize, seed: u64) -> (Vec<u8>, usize, usize) {
        let gen = Gen::new();
        let p = TxParams { ping_p };
        let mut tx = Tx::new(Plan::new(Rng::new(seed), size, text, nfrags), seed ^ 77);
        // The receiver's replay of the draws, as `start_message` sets it up.
        let mut replay = tx.plan;
        let mut ev = TxEvents::default();
        tx.boundary(&p, &mut ev);
        let mut wire_bytes = Vec::new();
        let mut buf = vec![0u8; WRITE_CHUNK];
        let mut frames = ev.frames as usize;
        let mut pings = ev.n_pings;
        while tx.item != Item::Idle {
            let mut sim = tx;
            let mut e1 = TxEvents::default();
            let n = sim.emit(&gen, &p, Some(&mut buf[..]), step, false, &mut e1);
            wire_bytes.extend_from_slice(&buf[..n]);
            // The socket takes only part of it.
            let k = n.div_ceil(2).max(1).min(n);
            wire_bytes.truncate(wire_bytes.len() - (n - k));
            let mut e2 = TxEvents::default();
            assert_eq!(tx.emit(&gen, &p, None, k, false, &mut e2), k);
            frames += e2.frames as usize;
            pings += e2.n_pings;
        }
        assert!(tx.all_sent());
        // Parse: unmask and reassemble.
        let mut msg = Vec::new();
        let mut i = 0;
        let mut seen_frames = 0;
        let mut seen_pings = 0;
        while i < wire_bytes.len() {
            let b0 = wire_bytes[i];
            let b1 = wire_bytes[i + 1];
            assert!(b1 & 0x80 != 0, "client frames are masked");
            let (len, hl) = match b1 & 0x7f {
                126 => (u16::from_be_bytes([wire_bytes[i + 2], wire_bytes[i + 3]]) as usize, 4),
                127 => (u64::from_be_bytes(wire_bytes[i + 2..i + 10].try_into().unwrap()) as usize, 10),
                n => (n as usize, 2),
            };
            let mask: [u8; 4] = wire_bytes[i + hl..i + hl + 4].try_into().unwrap();
            let mut payload = wire_bytes[i + hl + 4..i + hl + 4 + len].to_vec();
            apply_mask(&mut payload, mask, 0);
            match b0 & 0x0f {
                0x9 => {
                    seen_pings += 1;
                    assert!(b0 & 0x80 != 0);
                }
                op => {
                    assert_eq!(
                        op,
                        if seen_frames == 0 {
                            if text {
                                1
                            } else {
                                2
                            }
                        } else {
                            0
                        }
                    );
                    seen_frames += 1;
                    assert_eq!(b0 & 0x80 != 0, seen_frames == nfrags as usize, "FIN only on the last");
                    msg.extend_from_slice(&payload);
                    let sent = Shape { fin: b0 & 0x80 != 0, opcode: op, len: len as u64 };
                    assert_eq!(replay.next_shape(ping_p), Some(sent), "the replay knows frame {seen_frames}");
                }
            }
            i += hl + 4 + len;
        }
        assert_eq!(seen_frames, frames);
        assert_eq!(replay.next_shape(ping_p), None);
        assert_eq!(seen_pings, pings);
        (msg, frames, pings)
    }

    #[test]
    fn connection_state_is_small() {
        // 50,000 connections: no per-message buffers, a few hundred bytes each.
        let size = std::mem::size_of::<SoakConn>();
        println!("size_of::<SoakConn>() = {size}");
        assert!(size <= 320, "SoakConn grew to {size} bytes");
    }

    #[test]
    fn simulated_and_real_cursors_agree() {
        let gen = Gen::new();
        for (size, text, nfrags, step) in [
            (0u32, false, 1u16, 7usize),
            (0, true, 5, 3),
            (10, true, 3, 1),
            (65536, false, 8, 5000),
            (70000, true, 4, 65536),
        ] {
            for seed in 0..5 {
                let (msg, frames, pings) = drive(size, text, nfrags, u32::MAX / 2, step, seed);
                assert_eq!(frames, nfrags as usize);
                assert!(pings <= PINGS_PER_MSG as usize);
                let mut want = vec![0u8; size as usize];
                gen.fill(seed ^ 77, size as usize, text, 0, &mut want);
                assert_eq!(msg, want, "size {size} text {text} frags {nfrags} seed {seed}");
            }
        }
    }
}
