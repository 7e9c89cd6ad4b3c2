//! An in-memory [`Socket`]: drive a [`Connection`](crate::conn::Connection) without the kernel.
//!
//! Owns two byte queues and the knobs that make them behave like a non-blocking socket: reads hand
//! out at most `read_chunk` bytes and then `WouldBlock` (or `Ok(0)` once the input is marked
//! closed); writes accept up to `write_room` bytes and then `WouldBlock`. Used by the benchmarks
//! (instructions per message with no syscall noise), the fuzz targets (a whole connection fed a
//! session in arbitrary chunks) and unit tests. It is not used by the server.

use crate::socket::Socket;
use std::cell::RefCell;
use std::io;

#[derive(Debug, Default)]
struct Inner {
    input: Vec<u8>,
    rpos: usize,
    read_chunk: usize,
    input_closed: bool,
    output: Vec<u8>,
    write_room: usize,
    write_shut: bool,
}

/// A socket whose peer is the test or benchmark itself.
#[derive(Debug)]
pub struct MemSocket {
    inner: RefCell<Inner>,
}

impl Default for MemSocket {
    fn default() -> Self {
        MemSocket::new()
    }
}

impl MemSocket {
    /// Empty queues, unlimited chunk and room.
    pub fn new() -> MemSocket {
        MemSocket { inner: RefCell::new(Inner { read_chunk: usize::MAX, write_room: usize::MAX, ..Inner::default() }) }
    }

    /// Queues bytes for the connection to read.
    pub fn push_input(&self, bytes: &[u8]) {
        let mut i = self.inner.borrow_mut();
        if i.rpos == i.input.len() {
            i.input.clear();
            i.rpos = 0;
        }
        i.input.extend_from_slice(bytes);
    }

    /// After the queued input, reads return end of stream.
    pub fn close_input(&self) {
        self.inner.borrow_mut().input_closed = true;
    }

    /// Most bytes one read returns.
    pub fn set_read_chunk(&self, n: usize) {
        self.inner.borrow_mut().read_chunk = n.max(1);
    }

    /// Bytes writes may still take before `WouldBlock`.
    pub fn set_write_room(&self, n: usize) {
        self.inner.borrow_mut().write_room = n;
    }

    /// Bytes queued and not yet read by the connection.
    pub fn unread(&self) -> usize {
        let i = self.inner.borrow();
        i.input.len() - i.rpos
    }

    /// Moves what the connection wrote into `out` (keeps this side's capacity).
    pub fn drain_output(&self, out: &mut Vec<u8>) {
        out.append(&mut self.inner.borrow_mut().output);
    }

    /// Discards what the connection wrote; returns how many bytes that was.
    pub fn discard_output(&self) -> usize {
        let mut i = self.inner.borrow_mut();
        let n = i.output.len();
        i.output.clear();
        n
    }

    /// Whether the connection shut its write side.
    pub fn write_shut(&self) -> bool {
        self.inner.borrow().write_shut
    }
}

impl Socket for MemSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut i = self.inner.borrow_mut();
        let avail = i.input.len() - i.rpos;
        if avail == 0 {
            return if i.input_closed { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = avail.min(buf.len()).min(i.read_chunk);
        let start = i.rpos;
        buf[..n].copy_from_slice(&i.input[start..start + n]);
        i.rpos += n;
        Ok(n)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut i = self.inner.borrow_mut();
        if i.write_shut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(i.write_room);
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        i.write_room -= n;
        i.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.inner.borrow_mut().write_shut = true;
        Ok(())
    }
}
