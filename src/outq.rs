//! A connection's output queue: what the socket did not take, in one pooled buffer.
//!
//! Owns the write side of a connection: the output one read staged in the reactor's shared
//! buffer (`Shared::out`) goes to the socket in one call, and only the part the socket refuses is
//! copied into a buffer borrowed from `Shared::out_pool`, which goes back to the pool as soon as it
//! drains. An idle connection holds no buffer. Reads are budgeted by the caller (`conn`) so that
//! the queue never needs more than one buffer; if it ever would (a re-compressed echo can be longer
//! than its input), the connection is dropped rather than the buffer grown. It knows nothing of frames or phases.

use crate::shared::Shared;
use crate::socket::{Io, Socket};

/// The socket is broken (or took nothing): the connection must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// Output not yet taken by the socket: `buf[start..end]`.
#[derive(Debug, Default)]
pub struct OutQueue {
    buf: Option<Box<[u8]>>,
    start: u32,
    end: u32,
}

impl OutQueue {
    /// An empty queue holding no buffer.
    pub const fn new() -> OutQueue {
        OutQueue { buf: None, start: 0, end: 0 }
    }

    /// Bytes queued.
    #[inline]
    pub fn pending(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether a buffer is held (something is queued).
    #[inline]
    pub fn is_holding(&self) -> bool {
        self.buf.is_some()
    }

    /// Writes the staged output `sh.out` (behind anything already queued) and clears it; what
    /// the socket refuses is queued.
    pub fn send_staged<S: Socket>(&mut self, stream: &S, sh: &mut Shared) -> Result<(), Broken> {
        if sh.out.is_empty() {
            return Ok(());
        }
        let mut off = 0;
        if self.buf.is_none() {
            while off < sh.out.len() {
                match Io::of(stream.send(&sh.out[off..])) {
                    Io::Done(n) => off += n,
                    Io::Blocked => break,
                    Io::Retry => {}
                    Io::End | Io::Failed => {
                        sh.out.clear();
                        return Err(Broken);
                    }
                }
            }
            sh.metrics.bytes_out += off as u64;
        }
        let res = if off < sh.out.len() { self.queue(off, sh) } else { Ok(()) };
        sh.out.clear();
        res
    }

    /// Appends `sh.out[off..]` to the queue.
    fn queue(&mut self, off: usize, sh: &mut Shared) -> Result<(), Broken> {
        let rest = &sh.out[off..];
        let buf = self.buf.get_or_insert_with(|| sh.out_pool.get());
        let (s, e) = (self.start as usize, self.end as usize);
        if buf.len() - e < rest.len() {
            // Make room at the front (rare: the read budget keeps output within bounds).
            buf.copy_within(s..e, 0);
            self.start = 0;
            self.end = (e - s) as u32;
        }
        let e = self.end as usize;
        if buf.len() - e < rest.len() {
            // Read budgets keep uncompressed and passed-through output within the buffer. Only a
            // re-compressed echo can outgrow what was read (our deflate against the client's);
            // under backpressure such a connection is dropped rather than the buffer grown.
            log::debug!("output queue full ({} + {} bytes): dropping the connection", e, rest.len());
            return Err(Broken);
        }
        buf[e..e + rest.len()].copy_from_slice(rest);
        self.end += rest.len() as u32;
        Ok(())
    }

    /// Writes queued output; `Ok(true)` when all of it is out (the buffer goes back to the pool).
    pub fn flush<S: Socket>(&mut self, stream: &S, sh: &mut Shared) -> Result<bool, Broken> {
        let Some(buf) = self.buf.as_ref() else { return Ok(true) };
        while self.start < self.end {
            match Io::of(stream.send(&buf[self.start as usize..self.end as usize])) {
                Io::Done(n) => {
                    self.start += n as u32;
                    sh.metrics.bytes_out += n as u64;
                }
                Io::Blocked => return Ok(false),
                Io::Retry => {}
                Io::End | Io::Failed => return Err(Broken),
            }
        }
        self.release(sh);
        Ok(true)
    }

    /// Gives the buffer back and forgets what was queued.
    pub fn release(&mut self, sh: &mut Shared) {
        if let Some(b) = self.buf.take() {
            sh.out_pool.put(b);
        }
        self.start = 0;
        self.end = 0;
    }
}
