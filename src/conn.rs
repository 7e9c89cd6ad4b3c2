//! One client connection: the upgrade, then RFC 6455 frames decoded and echoed as they arrive.
//!
//! Owns a connection's protocol state: its phase (handshake, open, closing, lingering), the frame
//! decoder state that must survive between reads (bytes left in the current frame, the rotated
//! masking key, how the frame is being echoed, the message in progress, its length and an
//! incomplete UTF-8 code point), and the buffers it borrows from the pools only while it has
//! something to carry: a partial request head, a partial frame header or control frame, a text
//! frame cut by a read, output the socket did not take. An idle open connection holds no buffer.
//!
//! Reads go into the reactor's single shared read buffer ([`Shared::rbuf`]) after
//! [`PAD`] bytes of headroom, where a carried partial header is copied back in front of the new
//! bytes so the decoder always sees contiguous input. Payloads are unmasked in place, validated,
//! and copied with their new headers into the shared staging buffer ([`Shared::out`]), which is
//! written to the socket once per read; only what the socket refuses is copied into the
//! connection's pooled output buffer.
//!
//! The echo contract is frame for frame: every data frame comes back as one frame with the same
//! FIN, opcode and payload length, however TCP cut it (`Echo` says how). A binary frame's echo
//! header goes out as soon as its header is read and its payload streams after it, so binary
//! frames of any size keep their framing in O(read) memory. A text frame of at most
//! [`FRAME_BOUND`] bytes that a read cuts is validated as it arrives and held in a pooled buffer
//! until it is complete (so invalid UTF-8 fails with 1007 before any of it is echoed). Only a text
//! frame above [`FRAME_BOUND`] that a read cuts is echoed as several fragments of its message
//! (RFC 6455 §5.4 lets an intermediary do so), which is what lets a 16 MiB text message stream
//! through without being held.
//!
//! Architecture invariant: this module never touches `Poll`, the slab or timers. It reports what
//! it wants through [`Next`] and [`Connection::timer_kind`]; the reactor acts on it.

use crate::close::{encode_close, parse_close_payload, CloseCode, MAX_CLOSE_FRAME};
use crate::deflate::negotiate::{self, Negotiated};
use crate::frame::{
    decode_header_with, encode_header, OpCode, ProtocolError, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1,
};
use crate::handshake::{self, HandshakeError, Request, MAX_HEAD};
use crate::mask::apply_mask;
use crate::outq::OutQueue;
use crate::plain;
use crate::pmd::NO_SLOT;
use crate::shared::{Shared, CARRY_SIZE, FRAME_BOUND, MIN_READ, OUT_SLACK, PAD};
use crate::socket::{Io, Socket};
use crate::timer::{Linked, Links, TimerKind};
use crate::tls::session::NO_TLS;
use crate::utf8::Utf8Validator;
use core::ops::Range;
use log::debug;
use mio::net::TcpStream;

/// Reads of a full buffer handled per connection per wakeup before moving on to others (plus, at
/// most, one read that finishes the data frame the last of them ended in: see `read_frames`).
const READS_PER_WAKEUP: usize = 4;

/// What the reactor should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next readiness event.
    Keep,
    /// The per-wakeup budget ran out with more to read: come back after the others.
    Again,
    /// A TLS handshake waits for the handshake budget of a later turn (nothing was read).
    Defer,
    /// Done: drop it (closes the socket).
    Close,
}

/// Connection phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the upgrade request.
    Handshake,
    /// Upgraded: echoing.
    Open,
    /// A close frame or an HTTP error response is queued: flush it, then shut the write side.
    Closing,
    /// Write side shut: discard input until the peer closes or the close timeout fires.
    Linger,
    /// The peer closed its side: flush what is queued, then close.
    Flush,
}

/// One client connection: 104 bytes (`size_of`, held to that by a unit test), and no buffer
/// while idle (see the module doc).
#[derive(Debug)]
pub struct Connection<S: Socket = TcpStream> {
    stream: S,
    /// Carried input: a partial request head (handshake), a partial frame header or control
    /// frame (open, between frames), or a held text frame ([`Echo::Hold`], inside a frame).
    inbuf: Option<Box<[u8]>>,
    /// Output the socket has not taken.
    out: OutQueue,
    in_len: u16,
    phase: Phase,
    /// How the data frame being read is echoed (meaningful while `in_frame`).
    echo: Echo,
    /// Opcode of the message in progress (Text or Binary), or Continuation when none.
    msg: OpCode,
    /// Inside a data frame's payload.
    in_frame: bool,
    /// FIN of the data frame being read.
    frame_fin: bool,
    /// A frame of the current message has been (or is being) echoed: later ones are
    /// continuations.
    out_started: bool,
    /// The message in progress is compressed (RSV1 on its first frame, permessage-deflate).
    compressed: bool,
    /// The rarely changed yes/no state, one bit each (see [`Flags`]); the four bools above change
    /// on every frame and stay bytes (a bit costs a read-modify-write per change).
    flags: Flags,
    /// The permessage-deflate agreement (`Negotiated::pack`); 0: not negotiated.
    pmd: u16,
    /// The compression states borrowed from `Shared::codecs` (`pmd::NO_SLOT`: none).
    codec: u32,
    /// The TLS session in `Shared::tls` (`NO_TLS`: plain TCP).
    tls: u32,
    /// Masking key, rotated to the next payload byte.
    mask: [u8; 4],
    utf8: Utf8Validator,
    /// Payload bytes left in the current data frame (at most `--max-message-size`, < 4 GiB).
    remaining: u32,
    /// Bytes of the message in progress so far.
    msg_len: u32,
    /// When bytes last arrived (ms, reactor clock).
    last_rx: u32,
    /// When the server last pinged (ms, reactor clock).
    last_ping: u32,
    /// Timer links (owned by the reactor's timer lists).
    pub links: Links,
}

impl<S: Socket> Linked for Connection<S> {
    fn links(&mut self) -> &mut Links {
        &mut self.links
    }
}

impl<S: Socket> Connection<S> {
    /// A freshly accepted connection, waiting for its upgrade request.
    pub fn new(stream: S, overloaded: bool) -> Connection<S> {
        Connection {
            stream,
            inbuf: None,
            out: OutQueue::new(),
            in_len: 0,
            phase: Phase::Handshake,
            echo: Echo::Stream,
            msg: OpCode::Continuation,
            in_frame: false,
            frame_fin: false,
            out_started: false,
            compressed: false,
            flags: if overloaded { Flags(Flags::OVERLOADED) } else { Flags(0) },
            pmd: 0,
            codec: NO_SLOT,
            tls: NO_TLS,
            mask: [0; 4],
            utf8: Utf8Validator::new(),
            remaining: 0,
            msg_len: 0,
            last_rx: 0,
            last_ping: 0,
            links: Links::default(),
        }
    }

    /// Makes this (fresh) connection speak TLS through session `slot` of `Shared::tls`.
    pub fn set_tls(&mut self, slot: u32) {
        self.tls = slot;
    }

    /// The socket (for registration).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes of output queued and not yet taken by the socket.
    pub fn pending_out(&self) -> usize {
        self.out.pending()
    }

    /// Which timeout applies in the current phase (`idle`: ping or idle timeout configured).
    pub fn timer_kind(&self, idle: bool) -> TimerKind {
        match self.phase {
            Phase::Handshake => TimerKind::Handshake,
            Phase::Open if idle => TimerKind::Idle,
            Phase::Open => TimerKind::None,
            Phase::Closing | Phase::Linger | Phase::Flush => TimerKind::Close,
        }
    }

    /// Returns the pooled buffers before the connection is dropped.
    pub fn release(&mut self, sh: &mut Shared) {
        self.drop_inbuf(sh);
        self.out.release(sh);
        sh.codecs.release(&mut self.codec);
        if let Some(t) = sh.tls.as_mut() {
            t.release(&mut self.tls);
        }
    }

    /// Whether permessage-deflate was agreed in the upgrade.
    pub fn deflate(&self) -> Option<Negotiated> {
        (self.pmd != 0).then(|| Negotiated::unpack(self.pmd))
    }

    /// Starts a server-initiated close (shutdown: 1001; idle: 1001). Does nothing unless open.
    pub fn start_close(&mut self, sh: &mut Shared, code: CloseCode, reason: &str) -> Next {
        match self.phase {
            Phase::Open if self.streaming_out() => {
                // The echo of a frame is half out: a close frame now would land inside its payload.
                self.flags.set(Flags::CLOSE_DEFERRED, true);
                Next::Keep
            }
            Phase::Open => {
                self.queue_close(sh, code, reason);
                self.flush_staged(sh)
            }
            Phase::Handshake => Next::Close,
            _ => Next::Keep,
        }
    }

    /// The idle timer ticked: close a silent connection (1001), or ping a quiet one.
    pub fn on_idle_tick(&mut self, sh: &mut Shared) -> Next {
        if self.phase != Phase::Open {
            return Next::Keep;
        }
        let quiet = sh.now_ms.saturating_sub(self.last_rx);
        if sh.idle_ms.is_some_and(|t| quiet >= t) {
            sh.metrics.timed_out(TimerKind::Idle);
            if self.streaming_out() {
                // Silent in the middle of a frame whose echo is half out: no close frame can be
                // sent without breaking that frame, so the connection is dropped.
                debug!("idle timeout after {quiet} ms inside a frame: dropping the connection");
                return Next::Close;
            }
            debug!("idle timeout after {quiet} ms");
            return self.start_close(sh, CloseCode::GOING_AWAY, "idle timeout");
        }
        if let Some(p) = sh.ping_ms {
            if quiet >= p && !self.streaming_out() && sh.now_ms.saturating_sub(self.last_ping) >= p {
                self.last_ping = sh.now_ms;
                sh.metrics.pings += 1;
                sh.out.extend_from_slice(&[0x89, 0x00]);
                return self.flush_staged(sh);
            }
        }
        Next::Keep
    }

    /// Handles a readable (or error / hang-up) event: at most [`READS_PER_WAKEUP`] full reads,
    /// then [`Next::Again`] if there may be more.
    pub fn on_readable(&mut self, sh: &mut Shared) -> Next {
        if self.tls != NO_TLS && self.phase == Phase::Handshake {
            // A TLS handshake costs real CPU: a bounded number per turn (`tls::session`).
            if sh.tls.as_ref().is_some_and(|t| !t.may_proceed(self.tls)) {
                sh.metrics.tls_deferred += 1;
                return Next::Defer;
            }
        }
        for i in 0..READS_PER_WAKEUP {
            let step = match self.phase {
                Phase::Handshake => self.read_handshake(sh),
                Phase::Open => self.read_frames(sh, i + 1 == READS_PER_WAKEUP),
                Phase::Closing | Phase::Linger => self.read_discard(sh),
                Phase::Flush => return Next::Keep,
            };
            match step {
                Step::More => continue,
                Step::Done(n) => return n,
            }
        }
        Next::Again
    }

    /// Handles a writable event: flushes queued output, and resumes reading if it was paused.
    pub fn on_writable(&mut self, sh: &mut Shared) -> Next {
        if !self.out.is_holding() {
            return Next::Keep;
        }
        match self.out.flush(&self.stream, sh) {
            Err(_) => return Next::Close,
            Ok(false) => return Next::Keep,
            Ok(true) => {}
        }
        match self.phase {
            Phase::Closing => self.shut_write(sh),
            Phase::Flush => Next::Close,
            _ if self.flags.has(Flags::PAUSED) => {
                self.flags.set(Flags::PAUSED, false);
                self.on_readable(sh)
            }
            _ => Next::Keep,
        }
    }

    /// Records that the peer hung up (or the socket reported an error), so that reads go on until
    /// they see the end of stream or the error.
    pub fn note_hangup(&mut self) {
        self.flags.set(Flags::HUP, true);
    }

    /// Whether reading is paused for backpressure.
    pub fn is_paused(&self) -> bool {
        self.flags.has(Flags::PAUSED)
    }

    /// The echo of the frame being read is partly written: nothing else may be staged until the
    /// rest of its payload arrives.
    #[inline]
    fn streaming_out(&self) -> bool {
        self.in_frame && self.echo == Echo::Stream
    }

    /// Returns the carried input buffer, whichever kind it is, to its pool.
    fn drop_inbuf(&mut self, sh: &mut Shared) {
        if let Some(b) = self.inbuf.take() {
            match b.len() {
                MAX_HEAD => sh.head_pool.put(b),
                CARRY_SIZE => sh.carry_pool.put(b),
                _ => sh.frame_pool.put(b),
            }
        }
        self.in_len = 0;
    }

    // ----- reading -----

    fn read_handshake(&mut self, sh: &mut Shared) -> Step {
        // Where the head accumulates: the pooled head buffer when a previous read left a partial
        // head, else the shared read buffer (most requests arrive whole: no copy at all).
        let res = match self.inbuf.as_mut() {
            Some(hb) if self.tls == NO_TLS => {
                recv_plain(&self.stream, &mut hb[self.in_len as usize..], &mut sh.read_full, &mut sh.metrics.bytes_in)
            }
            Some(hb) => {
                // TLS decrypts in the shared buffer: the plaintext is then appended to the head.
                let want = hb.len() - self.in_len as usize;
                let r = recv(&self.stream, self.tls, sh, PAD, want);
                if let Io::Done(n) = r {
                    let at = self.in_len as usize;
                    if let Some(hb) = self.inbuf.as_mut() {
                        hb[at..at + n].copy_from_slice(&sh.rbuf[PAD..PAD + n]);
                    }
                }
                r
            }
            None => recv(&self.stream, self.tls, sh, PAD, MAX_HEAD),
        };
        // rustls' handshake output (TLS), sent at once (before anything sealed).
        if !sh.out.is_empty() && self.out.send_staged(&self.stream, sh).is_err() {
            return Step::Done(Next::Close);
        }
        let n = match res {
            Io::Done(n) => n,
            Io::Blocked => return Step::Done(Next::Keep),
            Io::Retry => return Step::More,
            Io::End | Io::Failed => return Step::Done(Next::Close),
        };
        let filled = match self.inbuf.as_ref() {
            Some(hb) => {
                self.in_len += n as u16;
                self.in_len as usize == hb.len() || sh.read_full
            }
            None => sh.read_full,
        };
        // A short read proves the socket drained, unless the peer also hung up: then read on
        // until the end of stream is seen (edge-triggered: no further event will announce it).
        let short = !filled && !self.flags.has(Flags::HUP);
        // Parse from wherever the head is.
        let (head, total): (&[u8], usize) = match self.inbuf.as_ref() {
            Some(hb) => (&hb[..self.in_len as usize], self.in_len as usize),
            None => (&sh.rbuf[PAD..PAD + n], n),
        };
        match handshake::parse_request(head) {
            Ok(None) => {
                if self.inbuf.is_none() {
                    let mut hb = sh.head_pool.get();
                    hb[..n].copy_from_slice(&sh.rbuf[PAD..PAD + n]);
                    self.inbuf = Some(hb);
                    self.in_len = n as u16;
                }
                if short {
                    Step::Done(Next::Keep)
                } else {
                    Step::More
                }
            }
            Err(e) => {
                self.reject(sh, e);
                self.after_answer(sh)
            }
            Ok(Some(Request::Plain { path, .. })) => {
                let ep = plain::route(sh, path);
                if ep.is_some_and(|ep| plain::serve(sh, ep)) {
                    self.phase = Phase::Closing;
                } else {
                    self.reject(sh, HandshakeError::BadUpgrade);
                }
                self.after_answer(sh)
            }
            Ok(Some(Request::Upgrade(up))) => {
                if self.flags.has(Flags::OVERLOADED) {
                    self.reject(sh, HandshakeError::Overloaded);
                    return self.after_answer(sh);
                }
                let head_len = up.head_len;
                // permessage-deflate: the first acceptable offer, answered in the 101.
                let agreed = if sh.deflate.enabled { negotiate::negotiate(&sh.deflate, up.extensions()) } else { None };
                let mut ext = [0u8; negotiate::MAX_RESPONSE_HEADER];
                let ext_len = agreed.map_or(0, |n| negotiate::write_response_header(&n, &mut ext));
                self.pmd = agreed.map_or(0, |n| n.pack());
                let start = sh.out.len();
                sh.out.resize(start + handshake::MAX_RESPONSE, 0);
                let m = handshake::write_accept_with(up.key, &ext[..ext_len], &mut sh.out[start..]);
                sh.out.truncate(start + m);
                sh.metrics.upgrades += 1;
                self.phase = Phase::Open;
                self.last_rx = sh.now_ms;
                self.last_ping = sh.now_ms;
                // Bytes after the head are frames: move them to the read position and decode.
                let rest = total - head_len;
                if let Some(hb) = self.inbuf.take() {
                    sh.rbuf[PAD..PAD + rest].copy_from_slice(&hb[head_len..total]);
                    sh.head_pool.put(hb);
                    self.in_len = 0;
                    self.decode(sh, PAD, PAD + rest);
                } else {
                    self.decode(sh, PAD + head_len, PAD + total);
                }
                match self.flush_staged(sh) {
                    Next::Keep if short && self.phase == Phase::Open => Step::Done(Next::Keep),
                    Next::Keep => Step::More,
                    other => Step::Done(other),
                }
            }
        }
    }

    /// After an HTTP answer that ends the connection: flush it and go on reading to discard.
    fn after_answer(&mut self, sh: &mut Shared) -> Step {
        match self.flush_staged(sh) {
            Next::Keep => Step::More,
            other => Step::Done(other),
        }
    }

    fn reject(&mut self, sh: &mut Shared, e: HandshakeError) {
        debug!("handshake refused: {} {}", e.status(), e.reason());
        sh.metrics.upgrade_failed(e);
        let start = sh.out.len();
        sh.out.resize(start + 512, 0);
        let n = handshake::write_reject(e, &mut sh.out[start..]);
        sh.out.truncate(start + n);
        self.phase = Phase::Closing;
        self.drop_inbuf(sh);
    }

    /// Bytes this connection may read now without its output exceeding the write buffer. A held
    /// text frame counts as output already: it goes out whole when its last byte arrives.
    #[inline]
    fn read_budget(&self, sh: &Shared) -> usize {
        let held = self.in_len as usize;
        let room = sh.write_buffer().saturating_sub(self.pending_out() + OUT_SLACK + held);
        room.min(sh.read_buffer)
    }

    /// One read (at most the read budget), decoded and echoed; `last`: the last of the wakeup's.
    fn read_frames(&mut self, sh: &mut Shared, last: bool) -> Step {
        let budget = self.read_budget(sh);
        if budget < MIN_READ.min(sh.read_buffer) {
            if !self.flags.has(Flags::PAUSED) {
                self.flags.set(Flags::PAUSED, true);
                sh.metrics.backpressure += 1;
            }
            return Step::Done(Next::Keep);
        }
        let n = match recv(&self.stream, self.tls, sh, PAD, budget) {
            Io::Done(n) => n,
            Io::End => return Step::Done(self.on_eof(sh)),
            Io::Blocked => return Step::Done(Next::Keep),
            Io::Retry => return Step::More,
            Io::Failed => return Step::Done(Next::Close),
        };
        self.last_rx = sh.now_ms;
        let mut start = PAD;
        if !self.in_frame {
            // A carried partial header or control frame goes back in front of the new bytes.
            if let Some(c) = self.inbuf.take() {
                let l = self.in_len as usize;
                sh.rbuf[PAD - l..PAD].copy_from_slice(&c[..l]);
                sh.carry_pool.put(c);
                self.in_len = 0;
                start = PAD - l;
            }
        }
        self.decode(sh, start, PAD + n);
        let mut full = sh.read_full;
        let mut end = None;
        if last && full && self.phase == Phase::Open && self.in_frame {
            // The wakeup's budget ends inside a data frame. Read the rest of that frame now, when
            // one read can take it and its echo fits the write budget beside this read's (both go
            // out in the one write below). Otherwise the message would complete only at this
            // connection's next turn, after every other busy connection's: a closed-loop client
            // whose window is a little over the budget (16 x 16 KiB frames = 262,272 bytes
            // against 4 x 64 KiB) saw one message in 16 take two turns instead of one (p99 twice
            // p50; docs/fairness.md). One more recv per used-up budget, no more writes.
            let staged = sh.out.len() + self.in_len as usize;
            let room = sh.write_buffer().saturating_sub(self.pending_out() + OUT_SLACK + staged);
            let rest = self.remaining as usize;
            // (and the staging buffer keeps its capacity: no allocation)
            let cap = sh.out.capacity().saturating_sub(staged + OUT_SLACK);
            if rest <= room.min(sh.read_buffer).min(cap) {
                match recv(&self.stream, self.tls, sh, PAD, rest) {
                    Io::Done(m) => {
                        self.decode(sh, PAD, PAD + m);
                        full = sh.read_full;
                    }
                    Io::Blocked => full = false,
                    Io::Retry => {}
                    Io::End => end = Some(false),
                    Io::Failed => end = Some(true),
                }
            }
        }
        match self.flush_staged(sh) {
            Next::Keep if end == Some(true) => Step::Done(Next::Close),
            Next::Keep if end == Some(false) => Step::Done(self.on_eof(sh)),
            Next::Keep if full && self.phase == Phase::Open => Step::More,
            Next::Keep if self.phase == Phase::Open && !self.flags.has(Flags::HUP) => Step::Done(Next::Keep), // short read: drained
            Next::Keep => Step::More, // closing: go on reading (to discard) until WouldBlock
            other => Step::Done(other),
        }
    }

    /// After our close (or an HTTP error response): read and drop input until EOF, so that the
    /// peer never gets a reset while our last bytes are in flight.
    fn read_discard(&mut self, sh: &mut Shared) -> Step {
        let cap = sh.read_buffer;
        match recv(&self.stream, self.tls, sh, PAD, cap) {
            Io::Done(_) => {
                if !sh.read_full && !self.flags.has(Flags::HUP) {
                    Step::Done(Next::Keep)
                } else {
                    Step::More
                }
            }
            Io::End => Step::Done(self.on_eof(sh)),
            Io::Blocked => Step::Done(Next::Keep),
            Io::Retry => Step::More,
            Io::Failed => Step::Done(Next::Close),
        }
    }

    /// The peer closed its sending side.
    fn on_eof(&mut self, _sh: &mut Shared) -> Next {
        if self.out.is_holding() && self.phase != Phase::Linger {
            // Deliver what is queued (the peer may still read), then close.
            self.phase = Phase::Flush;
            Next::Keep
        } else {
            Next::Close
        }
    }

    // ----- frames -----

    /// Decodes `sh.rbuf[start..end]`, staging the output in `sh.out`. Leaves a partial header or
    /// control frame in `inbuf`, or the received part of a held text frame.
    fn decode(&mut self, sh: &mut Shared, start: usize, end: usize) {
        let mut pos = start;
        // RSV1 is meaningful only with permessage-deflate (RFC 7692 §6).
        let allowed = if self.pmd != 0 { RSV1 } else { 0 };
        while self.phase == Phase::Open {
            if self.in_frame {
                if pos == end {
                    break;
                }
                let n = (end - pos).min(self.remaining as usize);
                self.mask = apply_mask(&mut sh.rbuf[pos..pos + n], self.mask);
                self.remaining -= n as u32;
                pos += n;
                let done = self.remaining == 0;
                if let Err(e) = self.frame_piece(sh, pos - n, pos, done) {
                    self.fail(sh, e);
                    break;
                }
                if done {
                    self.in_frame = false;
                    self.frame_done(sh);
                }
                continue;
            }
            let hdr = match decode_header_with(&sh.rbuf[pos..end], allowed) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.keep_partial(sh, pos, end);
                    break;
                }
                Err(e) => {
                    self.fail(sh, e);
                    break;
                }
            };
            let (h, hl) = hdr;
            let Some(mask) = h.mask else {
                self.fail(sh, ProtocolError::Unmasked);
                break;
            };
            let rsv1 = h.rsv & RSV1 != 0;
            if rsv1 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
                // RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
                self.fail(sh, ProtocolError::Rsv1Misplaced);
                break;
            }
            if h.opcode.is_control() {
                debug_assert!(h.len <= MAX_CONTROL_PAYLOAD);
                let total = hl + h.len as usize;
                if end - pos < total {
                    self.keep_partial(sh, pos, end);
                    break;
                }
                let payload = &mut sh.rbuf[pos + hl..pos + total];
                apply_mask(payload, mask);
                pos += total;
                match h.opcode {
                    OpCode::Ping => {
                        let mut hb = [0u8; MAX_HEADER_LEN];
                        let n = encode_header(true, OpCode::Pong, None, h.len, &mut hb);
                        sh.out.extend_from_slice(&hb[..n]);
                        sh.out.extend_from_slice(&sh.rbuf[pos - h.len as usize..pos]);
                    }
                    OpCode::Close => match parse_close_payload(&sh.rbuf[pos - h.len as usize..pos]) {
                        Ok(code) => {
                            // RFC 6455 §5.5.1: reply with a close frame; later data is ignored.
                            self.queue_close(sh, code, "");
                        }
                        Err(e) => self.fail(sh, e),
                    },
                    _ => {} // unsolicited pong: ignored (§5.5.3)
                }
                continue;
            }
            // Data frame: check the fragmentation rules of §5.4 and the message size.
            match (h.opcode, self.msg) {
                (OpCode::Continuation, OpCode::Continuation) => {
                    self.fail(sh, ProtocolError::UnexpectedContinuation);
                    break;
                }
                (OpCode::Continuation, _) => {}
                (_, OpCode::Continuation) => {
                    self.msg = h.opcode;
                    self.msg_len = 0;
                    self.out_started = false;
                    self.compressed = rsv1;
                    self.utf8.reset();
                    if rsv1 {
                        let n = Negotiated::unpack(self.pmd);
                        if let Err(e) = sh.codecs.begin(&mut self.codec, &n) {
                            self.fail(sh, e);
                            break;
                        }
                    }
                }
                _ => {
                    self.fail(sh, ProtocolError::ExpectedContinuation);
                    break;
                }
            }
            // `--max-message-size` is at most 4 GiB - 1 (config), so a length within it fits a u32.
            let msg_len = u64::from(self.msg_len).saturating_add(h.len);
            self.msg_len = msg_len.min(u64::from(u32::MAX)) as u32;
            if msg_len > sh.max_message_size {
                self.fail(sh, ProtocolError::MessageTooBig);
                break;
            }
            pos += hl;
            self.frame_fin = h.fin;
            self.mask = mask;
            // Within --max-message-size (checked above), so below 4 GiB.
            self.remaining = h.len as u32;
            let avail = (end - pos) as u64;
            let compressed = self.compressed;
            if self.msg == OpCode::Binary && !compressed {
                // The echo's header now, the payload as it arrives: framing kept at any length.
                self.echo = Echo::Stream;
                self.stage_header(&mut sh.out, h.fin, h.len);
            } else if h.len <= avail {
                // A whole text (or compressed) frame in this read, the common case: validate, echo
                // in one piece.
                let l = h.len as usize;
                apply_mask(&mut sh.rbuf[pos..pos + l], mask);
                pos += l;
                self.remaining = 0;
                let res = if compressed {
                    self.echo_whole(sh, &[], pos - l..pos, h.fin)
                } else {
                    // Plain text, the hot path: kept free of the compressed cases.
                    match self.utf8.feed(&sh.rbuf[pos - l..pos]) {
                        Ok(_) if !(h.fin && self.utf8.is_incomplete()) => {
                            self.stage_header(&mut sh.out, h.fin, h.len);
                            sh.out.extend_from_slice(&sh.rbuf[pos - l..pos]);
                            Ok(())
                        }
                        _ => Err(ProtocolError::InvalidUtf8),
                    }
                };
                if let Err(e) = res {
                    self.fail(sh, e);
                    break;
                }
                self.frame_done(sh);
                continue;
            } else if h.len <= FRAME_BOUND as u64 {
                // A text (or compressed) frame cut by this read: hold it until its last byte
                // arrives.
                self.echo = Echo::Hold;
                self.inbuf = Some(sh.frame_pool.get());
                self.in_len = 0;
            } else {
                self.echo = Echo::Fragment;
            }
            if h.len == 0 {
                self.frame_done(sh);
            } else {
                self.in_frame = true;
            }
        }
    }

    /// Echoes (or holds) `sh.rbuf[a..b]`, unmasked payload bytes of the current data frame;
    /// `done` when they end the frame.
    #[inline]
    fn frame_piece(&mut self, sh: &mut Shared, a: usize, b: usize, done: bool) -> Result<(), ProtocolError> {
        let last = done && self.frame_fin;
        match self.echo {
            Echo::Stream => sh.out.extend_from_slice(&sh.rbuf[a..b]),
            Echo::Hold => {
                let held = self.in_len as usize;
                if done {
                    // The last piece completes the frame: echo it whole, the held part first.
                    let mut hb = self.inbuf.take();
                    let head = hb.as_deref().map_or(&[][..], |h| &h[..held]);
                    let res = self.echo_whole(sh, head, a..b, self.frame_fin);
                    if let Some(h) = hb.take() {
                        sh.frame_pool.put(h);
                    }
                    self.in_len = 0;
                    return res;
                }
                if !self.recompressing(sh) {
                    // Validated as it arrives: fail fast, with nothing of the frame echoed.
                    self.check_payload(sh, a..b, false)?;
                }
                // Still short of the frame's length (at most FRAME_BOUND), so `held` fits a u16.
                let dst = self.inbuf.as_mut().and_then(|h| h.get_mut(held..held + (b - a)));
                let Some(dst) = dst else {
                    debug_assert!(false, "held frame over the bound");
                    return Err(ProtocolError::MessageTooBig);
                };
                dst.copy_from_slice(&sh.rbuf[a..b]);
                self.in_len = (held + b - a) as u16;
            }
            Echo::Fragment => self.echo_whole(sh, &[], a..b, last)?,
        }
        Ok(())
    }

    /// Whether the message in progress is compressed and echoed re-compressed.
    #[inline]
    fn recompressing(&self, sh: &Shared) -> bool {
        self.compressed && sh.codecs.recompresses(&Negotiated::unpack(self.pmd))
    }

    /// Validates and stages the echo of one frame (or, for [`Echo::Fragment`], one fragment) whose
    /// payload is `head` followed by `sh.rbuf[r]`, with FIN `fin` (which then also ends the
    /// message). Held pieces (`head`) were validated as they arrived, unless the message is
    /// re-compressed; `sh.rbuf[r]` is validated here. Nothing is staged on error.
    #[inline(never)]
    fn echo_whole(&mut self, sh: &mut Shared, head: &[u8], r: Range<usize>, fin: bool) -> Result<(), ProtocolError> {
        if self.recompressing(sh) {
            // The echo's length is known once it is deflated: room for the longest header first.
            let start = sh.out.len();
            sh.out.extend_from_slice(&[0; MAX_HEADER_LEN]);
            let utf8 = (self.msg == OpCode::Text).then_some(&mut self.utf8);
            let res =
                sh.codecs.recompress(self.codec, [head, &sh.rbuf[r]], fin, utf8, sh.max_message_size, &mut sh.out);
            if let Err(e) = res.and_then(|()| self.text_complete(fin)) {
                sh.out.truncate(start);
                return Err(e);
            }
            let len = sh.out.len() - start - MAX_HEADER_LEN;
            let mut hb = [0u8; MAX_HEADER_LEN];
            let hl = self.header(fin, len as u64, &mut hb);
            sh.out.copy_within(start + MAX_HEADER_LEN.., start + hl);
            sh.out.truncate(start + hl + len);
            sh.out[start..start + hl].copy_from_slice(&hb[..hl]);
            return Ok(());
        }
        self.check_payload(sh, r.clone(), fin)?;
        self.stage_header(&mut sh.out, fin, (head.len() + r.len()) as u64);
        sh.out.extend_from_slice(head);
        sh.out.extend_from_slice(&sh.rbuf[r]);
        Ok(())
    }

    /// Validates `sh.rbuf[r]`, the next unmasked piece of the message: inflated when compressed
    /// (its inflated size counts against `--max-message-size`), checked as UTF-8 when text. `last`
    /// when it ends the message.
    #[inline]
    fn check_payload(&mut self, sh: &mut Shared, r: Range<usize>, last: bool) -> Result<(), ProtocolError> {
        let text = self.msg == OpCode::Text;
        if self.compressed {
            let utf8 = text.then_some(&mut self.utf8);
            sh.codecs.inflate(self.codec, &sh.rbuf[r], last, utf8, sh.max_message_size)?;
        } else if text {
            self.utf8.feed(&sh.rbuf[r]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.text_complete(last)
    }

    /// At the end of a text message, no code point may be left incomplete.
    #[inline]
    fn text_complete(&self, last: bool) -> Result<(), ProtocolError> {
        if last && self.msg == OpCode::Text && self.utf8.is_incomplete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    /// Encodes the echo header of the current frame into `hb`: the message's opcode on its first
    /// frame (with RSV1 when compressed), continuation after.
    #[inline]
    fn header(&mut self, fin: bool, len: u64, hb: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let first = !self.out_started;
        let op = if first { self.msg } else { OpCode::Continuation };
        let n = encode_header(fin, op, None, len, hb);
        if first && self.compressed {
            hb[0] |= RSV1 << 4;
        }
        self.out_started = true;
        n
    }

    /// Stages the echo header of the current frame (see [`Connection::header`]).
    #[inline]
    fn stage_header(&mut self, out: &mut Vec<u8>, fin: bool, len: u64) {
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = self.header(fin, len, &mut hb);
        out.extend_from_slice(&hb[..n]);
    }

    /// The current data frame has been read and echoed.
    #[inline]
    fn frame_done(&mut self, sh: &mut Shared) {
        if self.frame_fin {
            self.msg = OpCode::Continuation;
            self.out_started = false;
            if self.compressed {
                self.compressed = false;
                sh.codecs.end(&mut self.codec, &Negotiated::unpack(self.pmd));
            }
            sh.metrics.messages_in += 1;
            sh.metrics.messages_out += 1;
        }
        if self.flags.has(Flags::CLOSE_DEFERRED) {
            self.flags.set(Flags::CLOSE_DEFERRED, false);
            self.queue_close(sh, CloseCode::GOING_AWAY, "server shutting down");
        }
    }

    /// Keeps `rbuf[pos..end]` (a partial header or control frame, at most [`CARRY_SIZE`] bytes).
    fn keep_partial(&mut self, sh: &mut Shared, pos: usize, end: usize) {
        let l = end - pos;
        if l == 0 {
            return;
        }
        debug_assert!(l <= CARRY_SIZE, "partial frame of {l} bytes");
        let mut c = sh.carry_pool.get();
        c[..l].copy_from_slice(&sh.rbuf[pos..end]);
        self.inbuf = Some(c);
        self.in_len = l as u16;
    }

    /// Fails the connection (RFC 6455 §7.1.7): stage a close frame with the error's code.
    fn fail(&mut self, sh: &mut Shared, e: ProtocolError) {
        debug!("protocol error, closing with {}: {}", e.close_code().0, e.reason());
        self.queue_close(sh, e.close_code(), e.reason());
    }

    fn queue_close(&mut self, sh: &mut Shared, code: CloseCode, reason: &str) {
        let mut f = [0u8; MAX_CLOSE_FRAME];
        let n = encode_close(code, reason, &mut f);
        sh.out.extend_from_slice(&f[..n]);
        sh.metrics.close_sent(code.0);
        self.phase = Phase::Closing;
        self.in_frame = false;
        self.flags.set(Flags::CLOSE_DEFERRED, false);
        self.compressed = false;
        self.drop_inbuf(sh);
        sh.codecs.release(&mut self.codec);
    }

    // ----- writing -----

    /// Writes the staged output (or queues it behind pending output), then moves on from
    /// `Closing` once everything is out.
    fn flush_staged(&mut self, sh: &mut Shared) -> Next {
        if self.tls != NO_TLS && !sh.out.is_empty() {
            // TLS: the staged plaintext becomes records (in the TLS staging buffer, swapped in).
            let Some(t) = sh.tls.as_mut() else { return Next::Close };
            if let Err(e) = t.seal(self.tls, &sh.out) {
                debug!("TLS: cannot seal output ({}): closing", e.reason());
                sh.out.clear();
                return Next::Close;
            }
            std::mem::swap(&mut sh.out, &mut t.sealed);
            t.sealed.clear();
        }
        if self.out.send_staged(&self.stream, sh).is_err() {
            return Next::Close;
        }
        if !self.out.is_holding() {
            match self.phase {
                Phase::Closing => return self.shut_write(sh),
                Phase::Flush => return Next::Close,
                _ => {}
            }
        }
        Next::Keep
    }

    /// Everything is sent after our close: shut the write side (after TLS `close_notify`) and
    /// linger for the peer's EOF.
    fn shut_write(&mut self, sh: &mut Shared) -> Next {
        self.phase = Phase::Linger;
        if self.tls != NO_TLS {
            if let Some(t) = sh.tls.as_mut() {
                t.close_notify(self.tls, &self.stream);
            }
        }
        match self.stream.shutdown_write() {
            Ok(()) => Next::Keep,
            Err(_) => Next::Close,
        }
    }
}

/// One read of plaintext into `sh.rbuf[lo..lo + want]`, from the socket or through the
/// connection's TLS session (`tls`); sets [`Shared::read_full`] and counts the bytes read.
#[inline]
fn recv<S: Socket>(stream: &S, tls: u32, sh: &mut Shared, lo: usize, want: usize) -> Io {
    if tls == NO_TLS {
        return recv_plain(stream, &mut sh.rbuf[lo..lo + want], &mut sh.read_full, &mut sh.metrics.bytes_in);
    }
    let Some(t) = sh.tls.as_mut() else { return Io::Failed };
    let r = t.recv(tls, stream, &mut sh.rbuf, lo, want, &mut sh.out, &mut sh.metrics);
    sh.read_full = r.full;
    r.io
}

/// One read from the socket into `buf`: whether it filled `buf` goes to `read_full`, the bytes to
/// `bytes_in`.
#[inline]
fn recv_plain<S: Socket>(stream: &S, buf: &mut [u8], read_full: &mut bool, bytes_in: &mut u64) -> Io {
    let r = Io::of(stream.recv(buf));
    *read_full = matches!(r, Io::Done(n) if n == buf.len());
    if let Io::Done(n) = r {
        *bytes_in += n as u64;
    }
    r
}

/// A connection's rarely changed yes/no state in one byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags(u8);

impl Flags {
    /// Reading stopped until output drains.
    const PAUSED: u8 = 1;
    /// The peer hung up (EPOLLRDHUP / error seen): read until end of stream even after a short
    /// read.
    const HUP: u8 = 1 << 1;
    /// Refuse the upgrade with 503 (accepted beyond `--max-connections`).
    const OVERLOADED: u8 = 1 << 2;
    /// A server-initiated close (shutdown) waits for the streamed frame's echo to complete.
    const CLOSE_DEFERRED: u8 = 1 << 3;

    #[inline]
    fn has(self, f: u8) -> bool {
        self.0 & f != 0
    }

    #[inline]
    fn set(&mut self, f: u8, on: bool) {
        if on {
            self.0 |= f;
        } else {
            self.0 &= !f;
        }
    }
}

/// How the data frame being read is echoed (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Echo {
    /// Binary: the echo's header (same FIN, opcode, length) is out; the payload follows as it
    /// arrives.
    Stream,
    /// Text of at most [`FRAME_BOUND`] bytes cut by a read: validated as it arrives and held in a
    /// pooled buffer (`inbuf`), echoed whole when complete.
    Hold,
    /// Text above [`FRAME_BOUND`] cut by a read: echoed as fragments at read boundaries.
    Fragment,
}

/// Outcome of one read step.
enum Step {
    /// Read again (the buffer was filled).
    More,
    /// Stop for this wakeup.
    Done(Next),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::frame::decode_header;
    use crate::memsock::MemSocket;

    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn masked(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(true, OpCode::from_u8(op).unwrap(), Some([9, 8, 7, 6]), payload.len() as u64, &mut h);
        let mut f = h[..n].to_vec();
        let mut p = payload.to_vec();
        apply_mask(&mut p, [9, 8, 7, 6]);
        f.extend(p);
        f
    }

    #[test]
    fn backpressure_bounds_output_and_stops_reading() {
        let write_buffer = 64 << 10;
        let mut sh = Shared::new(&Config { write_buffer, ..Config::default() }, None);
        let mut c = Connection::new(MemSocket::new(), false);
        c.stream.push_input(REQ);
        assert_eq!(c.on_readable(&mut sh), Next::Keep);
        assert_eq!(c.phase(), Phase::Open);
        // The peer stops reading: 10 MB of 1 KiB messages arrive, the socket takes nothing.
        c.stream.set_write_room(0);
        let frame = masked(2, &[7u8; 1024]);
        for _ in 0..10_000 {
            c.stream.push_input(&frame);
        }
        for _ in 0..100 {
            if c.on_readable(&mut sh) != Next::Again {
                break;
            }
        }
        assert!(c.is_paused(), "reading must pause");
        let bound = write_buffer.max(crate::shared::MIN_OUT_BUFFER);
        assert_eq!(sh.write_buffer(), bound);
        assert!(c.pending_out() <= bound, "pending {} over the bound", c.pending_out());
        assert!(c.stream.unread() > 9 << 20, "the rest stays in the socket");
        // The peer reads again: everything is echoed, in order.
        c.stream.set_write_room(usize::MAX);
        let mut rounds = 0;
        while c.stream.unread() > 0 || c.pending_out() > 0 {
            let _ = c.on_writable(&mut sh);
            let _ = c.on_readable(&mut sh);
            rounds += 1;
            assert!(rounds < 100_000);
        }
        let mut out = Vec::new();
        c.stream.drain_output(&mut out);
        let head = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let msgs = messages(&out[head..]);
        assert_eq!(msgs.len(), 10_000);
        assert!(msgs.iter().all(|(op, p)| *op == OpCode::Binary && p.len() == 1024 && p.iter().all(|&b| b == 7)));
    }

    #[test]
    fn a_read_budget_that_ends_inside_a_frame_finishes_that_frame() {
        // 17 binary frames of 16 KiB are waiting: the first 16 are 262,272 bytes, 128 more than the
        // READS_PER_WAKEUP full reads of 64 KiB. The wakeup reads just those 128 bytes more, so
        // all 16 echoes go out now, and stops at the frame boundary: the 17th is left for the next
        // turn (Again).
        let mut sh = Shared::new(&Config::default(), None);
        assert_eq!(sh.read_buffer, 64 << 10);
        let mut c = Connection::new(MemSocket::new(), false);
        c.stream.push_input(REQ);
        assert_eq!(c.on_readable(&mut sh), Next::Keep);
        let mut out = Vec::new();
        c.stream.drain_output(&mut out);
        let frame = masked(2, &[3u8; 16 << 10]);
        assert_eq!(16 * frame.len(), READS_PER_WAKEUP * (64 << 10) + 128);
        for _ in 0..17 {
            c.stream.push_input(&frame);
        }
        assert_eq!(c.on_readable(&mut sh), Next::Again);
        assert_eq!(c.stream.unread(), frame.len(), "only the 17th frame is left");
        out.clear();
        c.stream.drain_output(&mut out);
        let msgs = messages(&out);
        assert_eq!(msgs.len(), 16);
        assert!(msgs.iter().all(|(op, p)| *op == OpCode::Binary && p.len() == 16 << 10));
    }

    #[test]
    fn shutdown_inside_a_streamed_frame_waits_for_its_end() {
        let mut sh = Shared::new(&Config::default(), None);
        let mut c = Connection::new(MemSocket::new(), false);
        c.stream.push_input(REQ);
        assert_eq!(c.on_readable(&mut sh), Next::Keep);
        let mut out = Vec::new();
        c.stream.drain_output(&mut out);
        // Half of a 1000-byte binary frame: its echo header and those 500 bytes go out at once.
        let frame = masked(2, &[5u8; 1000]);
        let cut = frame.len() - 500;
        c.stream.push_input(&frame[..cut]);
        assert_eq!(c.on_readable(&mut sh), Next::Keep);
        // Neither a close nor a ping may land inside the frame's payload.
        assert_eq!(c.start_close(&mut sh, CloseCode::GOING_AWAY, "server shutting down"), Next::Keep);
        sh.ping_ms = Some(0);
        assert_eq!(c.on_idle_tick(&mut sh), Next::Keep);
        out.clear();
        c.stream.drain_output(&mut out);
        assert_eq!(&out[..4], &[0x82, 126, 0x03, 0xe8]);
        assert_eq!(out.len(), 4 + 500);
        // The rest arrives: the frame's echo completes, then the 1001.
        c.stream.push_input(&frame[cut..]);
        let _ = c.on_readable(&mut sh);
        out.clear();
        c.stream.drain_output(&mut out);
        assert_eq!(out.len(), 500 + 2 + 2 + "server shutting down".len());
        assert_eq!(&out[500..504], &[0x88, 22, 0x03, 0xe9]);
        assert_eq!(c.phase(), Phase::Linger);
    }

    #[test]
    fn a_compressed_message_cut_by_a_disconnect_gives_its_state_back() {
        use crate::deflate::codec::{DeflateParams, Deflater};
        let mut cfg = Config::default();
        cfg.deflate.enabled = true;
        let mut sh = Shared::new(&cfg, None);
        let mut c = Connection::new(MemSocket::new(), false);
        let req = String::from_utf8(REQ.to_vec()).unwrap().replace(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        );
        c.stream.push_input(req.as_bytes());
        assert_eq!(c.on_readable(&mut sh), Next::Keep);
        assert!(c.deflate().is_some(), "negotiated");
        // A compressed message of ~40 KB (pseudo-random bytes: they do not shrink), half sent.
        let msg: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut d = Deflater::new(DeflateParams::new(15, true)).unwrap();
        let mut z = vec![0u8; 64 << 10];
        let p = d.compress(&msg, &mut z).unwrap();
        let f = d.finish(&mut z[p.produced..]).unwrap();
        z.truncate(p.produced + f.produced);
        let mut frame = masked(2, &z);
        frame[0] |= 0x40; // RSV1
        c.stream.push_input(&frame[..frame.len() / 2]);
        let _ = c.on_readable(&mut sh);
        assert_eq!(sh.codecs.outstanding(), (1, 0), "an inflater is borrowed while the message is in flight");
        assert_eq!(sh.frame_pool.outstanding, 1, "and the frame is held");
        c.stream.close_input();
        assert_eq!(c.on_readable(&mut sh), Next::Close);
        c.release(&mut sh);
        assert_eq!(sh.codecs.outstanding(), (0, 0), "given back");
        assert_eq!(sh.frame_pool.outstanding, 0);
    }

    /// Reassembles the server's (unmasked) frames into messages.
    fn messages(mut wire: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cur: Option<(OpCode, Vec<u8>)> = None;
        while let Some((h, hl)) = decode_header(wire).unwrap() {
            assert!(h.mask.is_none());
            let p = &wire[hl..hl + h.len as usize];
            wire = &wire[hl + h.len as usize..];
            if h.opcode.is_control() {
                out.push((h.opcode, p.to_vec()));
                continue;
            }
            let m = cur.get_or_insert_with(|| (h.opcode, Vec::new()));
            assert!(h.opcode == OpCode::Continuation || m.1.is_empty());
            m.1.extend_from_slice(p);
            if h.fin {
                out.push(cur.take().unwrap());
            }
        }
        assert!(wire.is_empty() && cur.is_none());
        out
    }

    #[test]
    fn idle_connection_state_is_small() {
        // The idle cost of a connection is this struct plus its slab slot (~108 B measured with
        // 10,000 idle connections); a field that grows it must be worth 10 MB per 100k connections.
        let size = std::mem::size_of::<Connection>();
        println!("size_of::<Connection>() = {size}");
        assert!(size <= 104, "Connection grew to {size} bytes");
    }
}
