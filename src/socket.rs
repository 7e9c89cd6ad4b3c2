//! The byte stream under a connection and the outcome of one non-blocking call on it.
//!
//! Owns the [`Socket`] trait (a non-blocking `TcpStream` in the server, an in-memory pipe in
//! benchmarks, fuzz targets and unit tests: see `memsock`) and [`Io`], the five things a
//! non-blocking `read(2)`/`write(2)` can mean, so that every caller handles them the same way. It
//! knows nothing of WebSocket, buffers or readiness.

use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::Shutdown;

/// The byte stream under a connection.
pub trait Socket {
    /// `read(2)`: `Ok(0)` is end of stream, `WouldBlock` means nothing to read now.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// `write(2)`: `WouldBlock` means the peer is not taking more now.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// `shutdown(SHUT_WR)`.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for TcpStream {
    #[inline]
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    #[inline]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// What one non-blocking read or write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Moved this many bytes (never 0).
    Done(usize),
    /// Moved nothing: end of stream on a read, a peer that takes nothing on a write.
    End,
    /// `WouldBlock`: wait for the next readiness edge.
    Blocked,
    /// `Interrupted`: try again at once.
    Retry,
    /// Any other error: the connection is broken.
    Failed,
}

impl Io {
    /// Classifies the result of [`Socket::recv`] or [`Socket::send`].
    #[inline]
    pub fn of(r: io::Result<usize>) -> Io {
        match r {
            Ok(0) => Io::End,
            Ok(n) => Io::Done(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Io::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Retry,
            Err(_) => Io::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_outcome() {
        assert_eq!(Io::of(Ok(3)), Io::Done(3));
        assert_eq!(Io::of(Ok(0)), Io::End);
        assert_eq!(Io::of(Err(io::ErrorKind::WouldBlock.into())), Io::Blocked);
        assert_eq!(Io::of(Err(io::ErrorKind::Interrupted.into())), Io::Retry);
        assert_eq!(Io::of(Err(io::ErrorKind::ConnectionReset.into())), Io::Failed);
    }
}
