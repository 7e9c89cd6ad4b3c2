//! Listening sockets, made the one way production makes them: socket2 with `SO_REUSEADDR`
//! (`SO_REUSEPORT` on request, `IPV6_V6ONLY` for v6), a backlog of [`BACKLOG`], non-blocking; or
//! taken over from systemd socket activation (fd 3).
//!
//! Owns only socket creation. It does not accept connections (see `reactor`) and does not decide
//! how many listeners a server needs (see `server`). Tests bind through here too, so they listen
//! exactly as the server does.

use mio::net::TcpListener;
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;

/// Backlog of each listening socket (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

/// A non-blocking listening socket on `addr` with `SO_REUSEADDR` (and `SO_REUSEPORT`).
pub fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into()))
}

/// The listening socket systemd passed as fd 3 (`SD_LISTEN_FDS_START`), non-blocking.
///
/// # Safety
/// fd 3 must be a listening TCP socket owned by this process and used nowhere else (systemd's
/// `$LISTEN_FDS` >= 1 for this process says so; see `notify::Systemd`).
pub unsafe fn inherited() -> io::Result<std::net::TcpListener> {
    // SAFETY: the caller guarantees fd 3 is a listening socket this process owns.
    let l = unsafe { std::net::TcpListener::from_raw_fd(crate::notify::LISTEN_FDS_START) };
    l.set_nonblocking(true)?;
    Ok(l)
}
