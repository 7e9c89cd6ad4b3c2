//! `--metrics-listen ADDR`: this process's `/metrics` and `/healthz` on a port of its own.
//!
//! With N `--reuse-port` processes sharing the WebSocket port, a scrape of that port reaches one
//! process chosen by the kernel, so nobody sees the whole server. This endpoint is per process:
//! give each process its own ADDR and scrape them all (docs/operations.md, "Metrics").
//!
//! Owns one thread with a blocking listener that answers one plain `GET` per connection and
//! closes it (2 s read/write timeouts, so a stalled client holds it up at most that long). The
//! counters come from the [`MetricsBoard`] every reactor publishes to every 100 ms, so a scrape is
//! at most ~100 ms old and never touches a reactor or its hot path. `/healthz` answers `200 ok`
//! while the server runs and `503 draining` once a graceful shutdown has begun; the metrics stay
//! served during the drain. It does not serve WebSocket upgrades, and does not decide what is
//! counted (see `metrics`).

use crate::handshake;
use crate::metrics::MetricsBoard;
use crate::plain::HEALTH_PATH;
use crate::reactor::Control;
use log::{debug, warn};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Per-request read and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest request head read.
const MAX_REQUEST: usize = 4096;

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Endpoint {
    /// Binds `addr` (blocking listener, `SO_REUSEADDR` as std sets it).
    pub fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        Ok(Endpoint { listener, addr })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `path` (Prometheus text of `board`'s total, `process` label when given) and
    /// `/healthz` from a thread of its own until [`Serving::stop`].
    pub fn spawn(
        self,
        board: Arc<MetricsBoard>,
        control: Arc<Control>,
        path: String,
        process: Option<String>,
    ) -> io::Result<Serving> {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("wsecho-metrics".into()).spawn(move || {
            let ctx = Ctx { board, control, path, process };
            for s in self.listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                match s {
                    Ok(s) => {
                        if let Err(e) = ctx.answer(s) {
                            debug!("metrics endpoint: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("metrics endpoint accept: {e}");
                        // EMFILE and the like: do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(Serving { stop, addr, thread: Some(thread) })
    }
}

/// The serving thread.
#[derive(Debug)]
pub struct Serving {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Serving {
    /// Stops the thread (wakes its `accept` with a connection of our own) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

struct Ctx {
    board: Arc<MetricsBoard>,
    control: Arc<Control>,
    path: String,
    process: Option<String>,
}

impl Ctx {
    /// Reads one request head and writes one response; the connection then closes.
    fn answer(&self, mut s: TcpStream) -> io::Result<()> {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut buf = [0u8; MAX_REQUEST];
        let mut n = 0;
        let (status, body, ctype): (u16, Vec<u8>, &str) = loop {
            let got = s.read(&mut buf[n..])?;
            n += got;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[..n]) {
                Ok(httparse::Status::Complete(_)) => break self.route(req.method, req.path),
                Ok(httparse::Status::Partial) if got > 0 && n < buf.len() => continue,
                Ok(httparse::Status::Partial) if got == 0 => return Ok(()),
                _ => break (400, b"bad request\n".to_vec(), "text/plain; charset=utf-8"),
            }
        };
        let mut out = vec![0u8; body.len() + 256];
        let len = handshake::write_response(status, "", &body, ctype, &mut out);
        s.write_all(&out[..len])?;
        s.flush()
    }

    fn route(&self, method: Option<&str>, path: Option<&str>) -> (u16, Vec<u8>, &'static str) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != Some("GET") {
            return (405, b"only GET\n".to_vec(), TEXT);
        }
        let path = path.unwrap_or("").split('?').next().unwrap_or("");
        if path == HEALTH_PATH {
            if self.control.is_shutdown() {
                (503, b"draining\n".to_vec(), TEXT)
            } else {
                (200, b"ok\n".to_vec(), TEXT)
            }
        } else if path == self.path {
            let mut body = Vec::with_capacity(4096);
            match self.board.total().render_labeled(&mut body, self.process.as_deref()) {
                Ok(()) => (200, body, "text/plain; version=0.0.4; charset=utf-8"),
                Err(_) => (500, b"cannot render\n".to_vec(), TEXT),
            }
        } else {
            (404, b"not found\n".to_vec(), TEXT)
        }
    }
}
