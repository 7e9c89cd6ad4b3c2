//! Streaming permessage-deflate codec (RFC 7692 §7.2) over zlib-rs: an [`Inflater`] and a
//! [`Deflater`] that work on pieces of a message as they arrive, into caller buffers.
//!
//! Owns the zlib streams (through zlib-rs's zlib C API, `libz-rs-sys`: the only `unsafe` of the
//! module, each call commented), the per-message rules of §7.2 — the `00 00 ff ff` tail appended
//! before inflating the end of a message and stripped after deflating it with `Z_SYNC_FLUSH`, a
//! final (BFINAL) block inside a message (§7.2.3.4), the empty message (§7.2.3.6) — and the
//! inflated-size limit. Allocation happens only in `new` (one box per state: the `z_stream` must
//! not move, and zlib-rs allocates its window and tables there once); between messages a state
//! is reset, which keeps every allocation, so steady traffic allocates nothing. It does not own
//! buffers (the caller passes a fixed output chunk, e.g. the reactor's scratch), frames, RSV1,
//! UTF-8 validation (the caller validates what [`Inflater::inflate`] reports, piece by piece) or
//! the decision to compress; pooling is in `pool`, negotiation in `negotiate`.
//!
//! A decompression bomb cannot make the inflater produce more than `max` bytes of a message: the
//! output it is given never exceeds what is left of `max`, and once `max` is reached it probes
//! with a one-byte buffer, so [`CodecError::TooBig`] comes out exactly when byte `max + 1` would.
//! Corrupt input is an error value, never a panic: zlib-rs checks every code and distance, and
//! after an error the state refuses further input until it is reset.
//!
//! Truncation: a message must end on a deflate block boundary (the sender's `Z_SYNC_FLUSH`). After
//! the tail the inflater feeds `03 00`, an empty final block: at a boundary it ends the stream with
//! no output (then `inflateResetKeep` starts the next stream with the window kept); anywhere else
//! it is read as more codes, and that is [`CodecError::Truncated`]. (zlib's `data_type` bit 128
//! is no proof: the tail's bytes can decode as codes that happen to end a block.) Data after a final block: the RFC's own §7.2.3.4 example
//! ends a message with a BFINAL block followed by `0x00` (so that the appended tail makes an empty
//! stored block), so after a final block the inflater starts a new stream that keeps the window
//! (`inflateResetKeep`, so context takeover survives it) and accepts only blocks that produce
//! nothing; any byte of output after a final block is [`CodecError::AfterFinalBlock`].

use libz_rs_sys as z;
use std::os::raw::c_int;

/// The tail a sender's `Z_SYNC_FLUSH` ends with, stripped from every compressed message (§7.2.1)
/// and appended before inflating its end (§7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// An empty final block with fixed codes: ends a deflate stream that is at a block boundary.
const END_PROBE: [u8; 2] = [0x03, 0x00];

/// Smallest output buffer [`Deflater::compress`] and [`Deflater::finish`] accept: it holds back
/// up to 4 bytes (a possible tail) and needs room for progress.
pub const MIN_DEFLATE_OUT: usize = 16;

/// What went wrong in a message. After an error the state must be reset (a pooled state is, when
/// given back) before it is used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// Not valid DEFLATE data (bad block type, code, distance too far back, …).
    Corrupt,
    /// The message did not end on a block boundary: the data was cut.
    Truncated,
    /// Data after a final (BFINAL) block produced output.
    AfterFinalBlock,
    /// The inflated message would exceed the limit (`--max-message-size` counts inflated bytes).
    TooBig,
    /// zlib-rs could not allocate its state.
    NoMemory,
    /// An output buffer below [`MIN_DEFLATE_OUT`] bytes was passed to the deflater.
    BufferTooSmall,
    /// The state failed earlier in this message and has not been reset.
    Failed,
}

impl CodecError {
    /// The WebSocket close code that fits: 1009 for [`CodecError::TooBig`], 1011 for internal
    /// failures ([`CodecError::NoMemory`], [`CodecError::BufferTooSmall`]), 1007 (invalid payload
    /// data: the payload is not what the negotiated extension says) for the rest, as the
    /// connection code (`src/pmd.rs`) maps them.
    pub fn close_code(self) -> u16 {
        match self {
            CodecError::TooBig => 1009,
            CodecError::NoMemory | CodecError::BufferTooSmall => 1011,
            _ => 1007,
        }
    }

    /// A short stable label (logs, metrics).
    pub fn label(self) -> &'static str {
        match self {
            CodecError::Corrupt => "corrupt",
            CodecError::Truncated => "truncated",
            CodecError::AfterFinalBlock => "after_final_block",
            CodecError::TooBig => "too_big",
            CodecError::NoMemory => "no_memory",
            CodecError::BufferTooSmall => "buffer_too_small",
            CodecError::Failed => "failed",
        }
    }
}

/// One call's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Output bytes written at the start of the output buffer.
    pub produced: usize,
    /// The output buffer ran out: use `produced` bytes, then call again (with the rest of the
    /// input, possibly none). When false, all the input was consumed (for `finish`: the message is
    /// complete).
    pub out_full: bool,
}

/// Runs one zlib call on `s` with `input` and `out`; returns (consumed, written, return code).
/// `f` is `inflate` or `deflate`.
///
/// # Safety
/// `s` must have been initialised by the matching `*Init2_` and not ended.
unsafe fn call(
    s: &mut z::z_stream,
    input: &[u8],
    out: &mut [u8],
    flush: c_int,
    f: unsafe extern "C" fn(*mut z::z_stream, c_int) -> c_int,
) -> (usize, usize, c_int) {
    let in_len = input.len().min(u32::MAX as usize);
    let out_len = out.len().min(u32::MAX as usize);
    s.next_in = input.as_ptr();
    s.avail_in = in_len as u32;
    s.next_out = out.as_mut_ptr();
    s.avail_out = out_len as u32;
    // SAFETY: `s` is initialised (caller), `next_in`/`next_out` point to `avail_in`/`avail_out`
    // live bytes borrowed for the duration of the call, and the pointers are cleared before the
    // borrows end.
    let rc = unsafe { f(s, flush) };
    let consumed = in_len - s.avail_in as usize;
    let written = out_len - s.avail_out as usize;
    s.next_in = std::ptr::null();
    s.avail_in = 0;
    s.next_out = std::ptr::null_mut();
    s.avail_out = 0;
    (consumed, written, rc)
}

/// `sizeof(z_stream)` for the init calls' version check.
const STREAM_SIZE: c_int = std::mem::size_of::<z::z_stream>() as c_int;

// ---------------------------------------------------------------------------------------------

struct InflateState {
    strm: z::z_stream,
    /// Inflated bytes of the current message.
    produced: u64,
    /// Tail bytes fed by `finish`.
    tail_fed: u8,
    /// Any payload byte fed in this message.
    fed: bool,
    /// A final block ended the deflate stream inside this message.
    ended: bool,
    /// Payload or tail bytes were fed after that final block.
    after_end: bool,
    /// An error happened in this message.
    failed: bool,
    /// The limit was reached in a call that also produced output: the next call says so.
    too_big: bool,
    /// Reset after each message (the client's `client_no_context_takeover`).
    reset_per_message: bool,
}

/// A raw-deflate inflater for the messages of one direction (client → server).
///
/// Always uses a 32 KiB window: it reads data made with any window (zlib-rs allocates 32 KiB
/// whatever the window bits, so a smaller one would save nothing). 8 bytes, so a connection can
/// hold an `Option<Inflater>` at the cost of a pointer.
pub struct Inflater(Box<InflateState>);

// SAFETY: the z_stream's raw pointers point into zlib-rs's own allocations owned by this state
// (and, only during a call, into borrowed buffers); nothing is shared, so moving the whole state
// to another thread (a reactor built on one thread, run on another) is sound.
unsafe impl Send for Inflater {}

impl Inflater {
    /// A new state (allocates: about 40 KiB, see docs/deflate.md). `reset_per_message`: forget
    /// the window after each message (no context takeover).
    pub fn new(reset_per_message: bool) -> Result<Inflater, CodecError> {
        let mut st = Box::new(InflateState {
            strm: z::z_stream::default(),
            produced: 0,
            tail_fed: 0,
            fed: false,
            ended: false,
            after_end: false,
            failed: false,
            too_big: false,
            reset_per_message,
        });
        // SAFETY: a default `z_stream` (no allocator: zlib-rs installs the Rust one), at its final
        // heap address; the version string is zlib-rs's own.
        let rc = unsafe { z::inflateInit2_(&mut st.strm, -15, z::zlibVersion(), STREAM_SIZE) };
        match rc {
            z::Z_OK => Ok(Inflater(st)),
            z::Z_MEM_ERROR => Err(CodecError::NoMemory),
            _ => Err(CodecError::Failed),
        }
    }

    /// Whether the window is forgotten after each message.
    pub fn resets_per_message(&self) -> bool {
        self.0.reset_per_message
    }

    /// Inflated bytes of the current message so far.
    pub fn message_len(&self) -> u64 {
        self.0.produced
    }

    /// Inflates a piece of a message's compressed payload (already unmasked) into `out`, never
    /// letting the message's inflated size exceed `max`. Loop while `out_full`:
    ///
    /// ```text
    /// let mut pos = 0;
    /// loop {
    ///     let p = inflater.inflate(&payload[pos..], scratch, max)?;
    ///     pos += p.consumed;
    ///     use_bytes(&scratch[..p.produced]);   // validate UTF-8, echo, …
    ///     if !p.out_full { break; }            // all of `payload` consumed
    /// }
    /// ```
    pub fn inflate(&mut self, input: &[u8], out: &mut [u8], max: u64) -> Result<Progress, CodecError> {
        let st = &mut *self.0;
        if st.failed {
            return Err(if st.too_big { CodecError::TooBig } else { CodecError::Failed });
        }
        st.fed |= !input.is_empty();
        let r = st.run(input, out, max);
        st.failed |= r.is_err();
        r
    }

    /// Ends the message: feeds the `00 00 ff ff` tail and checks that the data ended on a block
    /// boundary. Loop while `out_full` (the tail can release buffered output); when it returns
    /// with `out_full == false` the message is complete and the state is ready for the next one
    /// (reset if it resets per message).
    pub fn finish(&mut self, out: &mut [u8], max: u64) -> Result<Progress, CodecError> {
        let st = &mut *self.0;
        if st.failed {
            return Err(if st.too_big { CodecError::TooBig } else { CodecError::Failed });
        }
        // An empty payload (not even the RFC's single 0x00) and a message that ends right after a
        // final block need no tail: feeding one would start a stored block that never completes.
        let skip_tail = !st.fed || (st.ended && !st.after_end);
        let mut produced = 0;
        if !skip_tail {
            let from = st.tail_fed as usize;
            let p = match st.run(&TAIL[from..], out, max) {
                Ok(p) => p,
                Err(e) => {
                    st.failed = true;
                    return Err(e);
                }
            };
            st.tail_fed += p.consumed as u8;
            produced = p.produced;
            if p.out_full {
                return Ok(Progress { consumed: 0, produced, out_full: true });
            }
            // At a block boundary, an empty final block (`03 00`: BFINAL, fixed codes, end of
            // block) ends the stream without output; anywhere else it is read as more codes.
            let mut none = [0u8; 1];
            // SAFETY: initialised in `new`, not ended.
            let (c, w, rc) = unsafe { call(&mut st.strm, &END_PROBE, &mut none, z::Z_SYNC_FLUSH, z::inflate) };
            if (c, w, rc) != (END_PROBE.len(), 0, z::Z_STREAM_END) {
                st.failed = true;
                return Err(CodecError::Truncated);
            }
            // SAFETY: initialised in `new`, not ended. Keeps the window (context takeover).
            unsafe { z::inflateResetKeep(&mut st.strm) };
        }
        st.next_message();
        Ok(Progress { consumed: 0, produced, out_full: false })
    }

    /// Forgets the current message (and the window): ready for a new one, also after an error.
    pub fn reset(&mut self) {
        let st = &mut *self.0;
        // SAFETY: initialised in `new`, not ended (only `Drop` ends it).
        unsafe { z::inflateReset(&mut st.strm) };
        st.clear();
    }
}

impl InflateState {
    fn clear(&mut self) {
        self.produced = 0;
        self.tail_fed = 0;
        self.fed = false;
        self.ended = false;
        self.after_end = false;
        self.failed = false;
        self.too_big = false;
    }

    fn next_message(&mut self) {
        if self.reset_per_message {
            // SAFETY: initialised in `new`, not ended.
            unsafe { z::inflateReset(&mut self.strm) };
        }
        self.clear();
    }

    fn run(&mut self, input: &[u8], out: &mut [u8], max: u64) -> Result<Progress, CodecError> {
        let (mut consumed, mut produced) = (0, 0);
        loop {
            let space = out.len() - produced;
            if space == 0 {
                return Ok(Progress { consumed, produced, out_full: true });
            }
            let room = max.saturating_sub(self.produced);
            let cap = (space as u64).min(room) as usize;
            let rest = &input[consumed..];
            let mut probe = [0u8; 1];
            let dst = if cap == 0 { &mut probe[..] } else { &mut out[produced..produced + cap] };
            let dst_len = dst.len();
            if self.ended && !rest.is_empty() {
                self.after_end = true;
            }
            // SAFETY: initialised in `new`, not ended.
            let (c, w, rc) = unsafe { call(&mut self.strm, rest, dst, z::Z_SYNC_FLUSH, z::inflate) };
            consumed += c;
            if w > 0 {
                if cap == 0 {
                    if produced > 0 {
                        // Hand over what this call produced first; the next call fails.
                        self.failed = true;
                        self.too_big = true;
                        return Ok(Progress { consumed, produced, out_full: true });
                    }
                    return Err(CodecError::TooBig);
                }
                if self.ended {
                    return Err(CodecError::AfterFinalBlock);
                }
                produced += w;
                self.produced += w as u64;
            }
            match rc {
                z::Z_OK | z::Z_BUF_ERROR => {}
                z::Z_STREAM_END => {
                    // A final block (§7.2.3.4): go on with a new stream that keeps the window.
                    self.ended = true;
                    // SAFETY: initialised in `new`, not ended.
                    unsafe { z::inflateResetKeep(&mut self.strm) };
                    continue;
                }
                z::Z_MEM_ERROR => return Err(CodecError::NoMemory),
                _ => return Err(CodecError::Corrupt),
            }
            if w == dst_len && cap > 0 {
                continue; // output (or the room left under `max`) ran out: go round
            }
            // zlib stopped with output space left: it consumed all the input it could.
            if consumed < input.len() {
                // Cannot happen with zlib's contract; never loop on it.
                return Err(CodecError::Corrupt);
            }
            return Ok(Progress { consumed, produced, out_full: false });
        }
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_per_message", &self.0.reset_per_message)
            .field("message_len", &self.0.produced)
            .field("failed", &self.0.failed)
            .finish()
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; ended exactly once, here.
        unsafe { z::inflateEnd(&mut self.0.strm) };
    }
}

// ---------------------------------------------------------------------------------------------

/// How a [`Deflater`] compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// zlib level 0..=9 (see [`DEFAULT_LEVEL`]).
    pub level: u8,
    /// The negotiated `server_max_window_bits`, 8..=15. 8 uses a 512-byte window with
    /// `Z_HUFFMAN_ONLY` (no back-references, valid for any window): zlib cannot make raw deflate
    /// with a 256-byte window.
    pub window_bits: u8,
    /// zlib memLevel 1..=9 (see [`DEFAULT_MEM_LEVEL`]).
    pub mem_level: u8,
    /// Reset after each message (`server_no_context_takeover`).
    pub reset_per_message: bool,
}

/// Level 1: 2.8–4.5x the deflate throughput of level 6 on the bench inputs (357 against 126 MB/s per
/// CPU-second on 1 KiB JSON), for 31–47% more output bytes (2.45:1 against 3.20:1 on that JSON);
/// benches/deflate.rs, docs/deflate.md. A `--deflate-level` flag would make it a choice.
pub const DEFAULT_LEVEL: u8 = 1;

/// memLevel 8, zlib's default (see docs/deflate.md for the memory per state).
pub const DEFAULT_MEM_LEVEL: u8 = 8;

impl DeflateParams {
    /// The defaults for a negotiated server window and context-takeover setting.
    pub fn new(window_bits: u8, reset_per_message: bool) -> DeflateParams {
        DeflateParams { level: DEFAULT_LEVEL, window_bits, mem_level: DEFAULT_MEM_LEVEL, reset_per_message }
    }
}

struct DeflateState {
    strm: z::z_stream,
    params: DeflateParams,
    /// The last bytes produced, held back because they may be the tail to strip.
    held: [u8; 4],
    held_len: u8,
    /// Any output (including held bytes) in this message.
    wrote: bool,
    /// Input or output since the last completed message.
    dirty: bool,
    failed: bool,
}

/// A raw-deflate compressor for the messages of one direction (server → client). 8 bytes.
pub struct Deflater(Box<DeflateState>);

// SAFETY: as for `Inflater`: the state exclusively owns what its pointers reach.
unsafe impl Send for Deflater {}

impl Deflater {
    /// A new state (allocates: see docs/deflate.md for the bytes per window and memLevel).
    pub fn new(params: DeflateParams) -> Result<Deflater, CodecError> {
        let wbits = params.window_bits.clamp(8, 15);
        let (wbits, strategy) = if wbits == 8 { (9, z::Z_HUFFMAN_ONLY) } else { (wbits, z::Z_DEFAULT_STRATEGY) };
        let mut st = Box::new(DeflateState {
            strm: z::z_stream::default(),
            params,
            held: [0; 4],
            held_len: 0,
            wrote: false,
            dirty: false,
            failed: false,
        });
        // SAFETY: a default `z_stream` at its final heap address; zlib-rs's own version string.
        let rc = unsafe {
            z::deflateInit2_(
                &mut st.strm,
                params.level.min(9) as c_int,
                z::Z_DEFLATED,
                -(wbits as c_int),
                params.mem_level.clamp(1, 9) as c_int,
                strategy,
                z::zlibVersion(),
                STREAM_SIZE,
            )
        };
        match rc {
            z::Z_OK => Ok(Deflater(st)),
            z::Z_MEM_ERROR => Err(CodecError::NoMemory),
            _ => Err(CodecError::Failed),
        }
    }

    /// The parameters it was made with.
    pub fn params(&self) -> DeflateParams {
        self.0.params
    }

    /// Compresses a piece of a message into `out` (at least [`MIN_DEFLATE_OUT`] bytes). Output
    /// lags input (zlib buffers up to a block); loop while `out_full`, like
    /// [`Inflater::inflate`], then call [`Deflater::finish`] at the end of the message.
    pub fn compress(&mut self, input: &[u8], out: &mut [u8]) -> Result<Progress, CodecError> {
        self.0.run(input, out, z::Z_NO_FLUSH)
    }

    /// Ends the message: `Z_SYNC_FLUSH`, the `00 00 ff ff` tail stripped. Loop while `out_full`;
    /// when `out_full` is false the message's compressed bytes are complete and the state is
    /// ready for the next message (reset if it resets per message). When the flush ends exactly at
    /// the end of `out`, zlib cannot tell that it is complete and the next call adds one more
    /// empty stored block: five bytes more (`00 00 ff ff 00`), still a valid message.
    pub fn finish(&mut self, out: &mut [u8]) -> Result<Progress, CodecError> {
        let st = &mut *self.0;
        let mut p = st.run(&[], out, z::Z_SYNC_FLUSH)?;
        if p.out_full {
            return Ok(p);
        }
        let held = st.held_len as usize;
        if held == 4 && st.held == TAIL {
            // The flush's empty stored block: strip its LEN/NLEN (§7.2.1).
        } else if !st.wrote {
            // Nothing new since the previous flush (context takeover, empty message): zlib wrote
            // no block. An empty message is the single byte 0x00 (§7.2.3.6).
            out[p.produced] = 0x00;
            p.produced += 1;
        } else {
            st.failed = true;
            return Err(CodecError::Failed);
        }
        st.held_len = 0;
        st.wrote = false;
        st.dirty = false;
        if st.params.reset_per_message {
            // SAFETY: initialised in `new`, not ended.
            unsafe { z::deflateReset(&mut st.strm) };
        }
        Ok(p)
    }

    /// Forgets the current message and the window: ready for a new message, also after an error
    /// or a message abandoned half-way.
    pub fn reset(&mut self) {
        let st = &mut *self.0;
        if st.dirty {
            // zlib-rs 0.6.8's deflateReset does not clear `block_open` (level 1's open static
            // block), so after a message abandoned half-way the next message would start with a
            // stray end-of-block code. Closing the block first (a flush into a sink) avoids it.
            let mut sink = [0u8; 256];
            for _ in 0..100_000 {
                // SAFETY: initialised in `new`, not ended.
                let (_, w, rc) = unsafe { call(&mut st.strm, &[], &mut sink, z::Z_SYNC_FLUSH, z::deflate) };
                if rc != z::Z_OK || w < sink.len() {
                    break;
                }
            }
        }
        // SAFETY: initialised in `new`, not ended.
        unsafe { z::deflateReset(&mut st.strm) };
        st.held_len = 0;
        st.wrote = false;
        st.dirty = false;
        st.failed = false;
    }
}

impl DeflateState {
    fn run(&mut self, input: &[u8], out: &mut [u8], flush: c_int) -> Result<Progress, CodecError> {
        if self.failed {
            return Err(CodecError::Failed);
        }
        if out.len() < MIN_DEFLATE_OUT {
            return Err(CodecError::BufferTooSmall);
        }
        // The held-back bytes go first; zlib writes after them.
        let h = self.held_len as usize;
        out[..h].copy_from_slice(&self.held[..h]);
        // SAFETY: initialised in `new`, not ended.
        let (consumed, written, rc) = unsafe { call(&mut self.strm, input, &mut out[h..], flush, z::deflate) };
        match rc {
            z::Z_OK | z::Z_BUF_ERROR => {}
            _ => {
                self.failed = true;
                return Err(CodecError::Failed);
            }
        }
        self.wrote |= written > 0;
        self.dirty |= consumed > 0 || written > 0;
        let total = h + written;
        let keep = total.min(4);
        self.held[..keep].copy_from_slice(&out[total - keep..total]);
        self.held_len = keep as u8;
        // zlib fills its output completely before returning when it has more: a full buffer means
        // call again; otherwise all input was taken.
        let out_full = h + written == out.len();
        Ok(Progress { consumed, produced: total - keep, out_full })
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("params", &self.0.params).field("failed", &self.0.failed).finish()
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; ended exactly once, here.
        unsafe { z::deflateEnd(&mut self.0.strm) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = u64::MAX;

    fn inflate_all(inf: &mut Inflater, pieces: &[&[u8]], chunk: usize, max: u64) -> Result<Vec<u8>, CodecError> {
        let mut out = vec![0u8; chunk];
        let mut msg = Vec::new();
        for piece in pieces {
            let mut pos = 0;
            loop {
                let p = inf.inflate(&piece[pos..], &mut out, max)?;
                pos += p.consumed;
                msg.extend_from_slice(&out[..p.produced]);
                if !p.out_full {
                    assert_eq!(pos, piece.len());
                    break;
                }
            }
        }
        loop {
            let p = inf.finish(&mut out, max)?;
            msg.extend_from_slice(&out[..p.produced]);
            if !p.out_full {
                return Ok(msg);
            }
        }
    }

    fn deflate_all(def: &mut Deflater, pieces: &[&[u8]], chunk: usize) -> Vec<u8> {
        let mut out = vec![0u8; chunk];
        let mut comp = Vec::new();
        for piece in pieces {
            let mut pos = 0;
            loop {
                let p = def.compress(&piece[pos..], &mut out).unwrap();
                pos += p.consumed;
                comp.extend_from_slice(&out[..p.produced]);
                if !p.out_full {
                    assert_eq!(pos, piece.len());
                    break;
                }
            }
        }
        loop {
            let p = def.finish(&mut out).unwrap();
            comp.extend_from_slice(&out[..p.produced]);
            if !p.out_full {
                return comp;
            }
        }
    }

    #[test]
    fn rfc_hello_examples() {
        let mut inf = Inflater::new(true).unwrap();
        // §7.2.3.1: "Hello" in one compressed block (frame c1 07 + payload).
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&hello], 64, BIG).unwrap(), b"Hello");
        // §7.2.3.2: no compression (a stored block).
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&stored], 64, BIG).unwrap(), b"Hello");
        // §7.2.3.4: a final block, then 0x00.
        let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&fin], 64, BIG).unwrap(), b"Hello");
        // ... and without the 0x00.
        assert_eq!(inflate_all(&mut inf, &[&fin[..7]], 64, BIG).unwrap(), b"Hello");
        // §7.2.3.5: two blocks in one message.
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&two], 64, BIG).unwrap(), b"Hello");
        // §7.2.3.6: the empty message.
        assert_eq!(inflate_all(&mut inf, &[&[0x00]], 64, BIG).unwrap(), b"");
        assert_eq!(inflate_all(&mut inf, &[], 64, BIG).unwrap(), b"");
        // Our deflater makes exactly the RFC's bytes.
        let mut def = Deflater::new(DeflateParams::new(15, true)).unwrap();
        assert_eq!(deflate_all(&mut def, &[b"Hello"], 64), hello);
        assert_eq!(deflate_all(&mut def, &[b""], 64), [0x00]);
    }

    #[test]
    fn rfc_shared_window_example() {
        // §7.2.3.3: the second "Hello" refers back into the first message's window.
        let mut inf = Inflater::new(false).unwrap();
        let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&first], 64, BIG).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut inf, &[&second], 64, BIG).unwrap(), b"Hello");
        // A resetting inflater must refuse the back-reference.
        let mut fresh = Inflater::new(true).unwrap();
        assert_eq!(inflate_all(&mut fresh, &[&first], 64, BIG).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut fresh, &[&second], 64, BIG), Err(CodecError::Corrupt));
        // Our deflater with context takeover refers back too (level 1 codes it as 02 13 00 00,
        // level 6 as the RFC's f2 00 11 00 00).
        for (level, expect) in [(1, &[0x02, 0x13, 0x00, 0x00][..]), (6, &second[..])] {
            let mut def = Deflater::new(DeflateParams { level, ..DeflateParams::new(15, false) }).unwrap();
            let mut inf = Inflater::new(false).unwrap();
            assert_eq!(deflate_all(&mut def, &[b"Hello"], 64), first);
            assert_eq!(inflate_all(&mut inf, &[&first], 64, BIG).unwrap(), b"Hello");
            let again = deflate_all(&mut def, &[b"Hello"], 64);
            assert_eq!(again, expect);
            assert_eq!(inflate_all(&mut inf, &[&again], 64, BIG).unwrap(), b"Hello");
            // An empty message in a context-takeover stream is still 0x00.
            assert_eq!(deflate_all(&mut def, &[b""], 64), [0x00]);
            assert_eq!(inflate_all(&mut inf, &[&[0x00]], 64, BIG).unwrap(), b"");
            let third = deflate_all(&mut def, &[b"Hello"], 64);
            assert!(third.len() <= 5, "{third:02x?}");
            assert_eq!(inflate_all(&mut inf, &[&third], 64, BIG).unwrap(), b"Hello");
        }
    }

    #[test]
    fn context_survives_a_final_block() {
        let mut inf = Inflater::new(false).unwrap();
        let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&fin], 64, BIG).unwrap(), b"Hello");
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&second], 64, BIG).unwrap(), b"Hello");
    }

    #[test]
    fn bad_data_is_an_error_and_sticks_until_reset() {
        let mut inf = Inflater::new(true).unwrap();
        // BTYPE 11 is reserved.
        assert_eq!(inflate_all(&mut inf, &[&[0xff, 0xff, 0xff]], 64, BIG), Err(CodecError::Corrupt));
        assert_eq!(inf.inflate(&[0x00], &mut [0u8; 8], BIG), Err(CodecError::Failed));
        inf.reset();
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&hello], 64, BIG).unwrap(), b"Hello");
        // Truncated: the block is cut before its end.
        assert_eq!(inflate_all(&mut inf, &[&hello[..4]], 64, BIG), Err(CodecError::Truncated));
        inf.reset();
        // A final block followed by another block with data.
        let fin_then_more = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut inf, &[&fin_then_more], 64, BIG), Err(CodecError::AfterFinalBlock));
    }

    #[test]
    fn limit_is_exact() {
        let mut def = Deflater::new(DeflateParams::new(15, true)).unwrap();
        let data = vec![b'a'; 10_000];
        let comp = deflate_all(&mut def, &[&data], 64);
        let mut inf = Inflater::new(true).unwrap();
        assert_eq!(inflate_all(&mut inf, &[&comp], 100, 10_000).unwrap(), data);
        assert_eq!(inflate_all(&mut inf, &[&comp], 100, 9_999), Err(CodecError::TooBig));
        inf.reset();
        assert_eq!(inf.message_len(), 0);
        assert_eq!(inflate_all(&mut inf, &[&comp], 7, 10_000).unwrap(), data);
    }

    #[test]
    fn reset_after_an_abandoned_message_is_clean() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8 ^ (i >> 5) as u8).collect();
        let mut inf = Inflater::new(true).unwrap();
        for level in [1, 6] {
            for cut in [100, 5000, 30_000, 70_000] {
                let mut d = Deflater::new(DeflateParams { level, ..DeflateParams::new(15, true) }).unwrap();
                d.compress(&data[..cut], &mut [0u8; 64]).unwrap();
                d.reset();
                assert_eq!(deflate_all(&mut d, &[b""], 64), [0x00], "level {level} cut {cut}");
                let comp = deflate_all(&mut d, &[&data[..1000]], 64);
                assert_eq!(inflate_all(&mut inf, &[&comp], 64, BIG).unwrap(), &data[..1000]);
            }
        }
    }

    #[test]
    fn small_output_buffer_is_refused() {
        let mut def = Deflater::new(DeflateParams::new(15, true)).unwrap();
        assert_eq!(def.compress(b"x", &mut [0u8; MIN_DEFLATE_OUT - 1]), Err(CodecError::BufferTooSmall));
        assert_eq!(CodecError::TooBig.close_code(), 1009);
        assert_eq!(CodecError::Corrupt.close_code(), 1007);
    }
}
