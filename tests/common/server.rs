//! Starting a server and opening plain TCP connections to it: an in-process reactor on an
//! ephemeral port (`start`), client sockets with timeouts (`connect`, `connect_small_buffers`) and
//! free ports for servers run as separate processes (`free_port`).
//!
//! Owns the socket timeout. It knows nothing of WebSocket framing or the HTTP upgrade (those are
//! `encode`/`decode` and `upgrade`) and imports no other module of `common`.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use wsecho::config::Config;

/// Read/write timeout on every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a server on an ephemeral loopback port with `Config::default()`
/// modified by `modify`, running its reactor on a background thread, and
/// returns the address it listens on.
pub fn start(modify: impl FnOnce(&mut Config)) -> SocketAddr {
    let mut cfg = Config::default();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    modify(&mut cfg);
    let mut reactor = wsecho::reactor::Reactor::bind(&cfg).expect("Reactor::bind failed");
    let addr: SocketAddr = reactor.local_addr();
    std::thread::Builder::new()
        .name(format!("wsecho-reactor-{addr}"))
        .spawn(move || {
            if let Err(e) = reactor.run() {
                panic!("reactor on {addr} stopped with an error: {e}");
            }
        })
        .expect("spawn reactor thread");
    addr
}

/// A plain TCP connection with timeouts and TCP_NODELAY.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Like `connect`, but with SO_RCVBUF/SO_SNDBUF set before connecting, so the
/// client's own kernel buffers stay small (used by the backpressure test).
pub fn connect_small_buffers(addr: SocketAddr, rcvbuf: usize, sndbuf: usize) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    sock.set_send_buffer_size(sndbuf).unwrap();
    sock.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A free loopback port for a server started as a separate process, taken from below the
/// ephemeral range (32768-60999 here), so that no concurrent client connection of another test
/// can grab it as its source port between our check and the server's bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = 20_000 + (std::process::id() as u64 * 97) % 10_000;
    for _ in 0..10_000 {
        let port = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port below the ephemeral range");
}
