//! The connection machinery shared by every mode: the per-loop [`Ctx`], the [`Link`] every
//! connection has (socket, index, life state, upgrade key and progress, deadlines, the partial
//! frame header), and [`Conn`], a link composed with the mode's part, whose methods do the common
//! work — connect check, writing the upgrade request, reading and verifying the 101 response, the
//! edge-triggered read loop, splitting server bytes into frames, and classifying EOFs, I/O errors
//! and timeouts. The socket is a `tls::Stream` (plain TCP or TLS, the same calls either way);
//! here a TLS connection differs only in that its pending TLS output is written on every
//! writable event and its failures before the 101 are named `tls: ...`.
//!
//! It does not know what is sent or how echoes are checked: the mode's part (`client` for
//! echo/rate/idle, `soak_conn` for soak) implements [`Hooks`] — frame starts, payload chunks,
//! frame ends, flushing its write queue, what an upgrade, a loss or a timeout counts as. Nothing
//! here allocates per message.

use std::io;

use crate::cli::Config;
use crate::net::error_reason;
use crate::stats::Stats;
use crate::sys::now_ns;
use crate::tls::Stream;
use crate::wire::{self, MAX_HEADER};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Non-blocking connect in progress.
    Connecting,
    /// Request being written / response being read.
    Upgrading,
    /// Upgraded: messages flow.
    Open,
    /// A close frame is queued or sent (ours or a reply to the server's); waiting for the
    /// server's close frame and its EOF.
    Closing,
}

/// Per-loop context handed to every connection call: configuration, the loop's counters and
/// flags, and the mode's own part `m`.
pub struct Ctx<'a, X> {
    pub cfg: &'a Config,
    /// Nanoseconds since the loop's epoch; refreshed by the loop before each call.
    pub now: u64,
    pub stats: Stats,
    /// Messages/bytes echoed since the start, warm-up included (for progress lines).
    pub msgs_total: u64,
    pub bytes_total: u64,
    /// Record completed messages in `stats` (inside the measured window).
    pub counting: bool,
    /// The loop is closing every connection: closes and EOFs from now on are not "lost".
    pub shutting_down: bool,
    pub close_timeout_ns: u64,
    /// Set by a call when the connection just became open (upgraded).
    pub became_open: bool,
    /// Set by a call when a message completed (a slot in flight was freed).
    pub freed: bool,
    /// Request-building scratch space, reused.
    pub scratch: Vec<u8>,
    /// How many mismatches were described on stderr so far (the first few are).
    pub mismatch_logs: u32,
    /// The mode's part of the context.
    pub m: X,
}

impl<'a, X> Ctx<'a, X> {
    pub fn new(cfg: &'a Config, now: u64, m: X) -> Ctx<'a, X> {
        Ctx {
            cfg,
            now,
            stats: Stats::default(),
            msgs_total: 0,
            bytes_total: 0,
            counting: false,
            shutting_down: false,
            close_timeout_ns: cfg.close_timeout.as_nanos() as u64,
            became_open: false,
            freed: false,
            scratch: Vec::with_capacity(512),
            mismatch_logs: 0,
            m,
        }
    }
}

/// The transport state every connection embeds.
pub struct Link {
    pub stream: Stream,
    pub state: State,
    /// Upgrade verified (counts as open until it ends).
    pub upgraded: bool,
    /// Bytes of a frame header split over reads.
    hdr_len: u8,
    /// Inside a frame's payload.
    in_payload: bool,
    hs_sent: u16,
    hdr: [u8; MAX_HEADER],
    /// Connect start, ns.
    pub started: u64,
    /// Connect/upgrade deadline, or the mode's later deadlines, ns.
    pub deadline: u64,
    /// Payload bytes of the current frame not yet received.
    frame_left: u64,
    key: [u8; 24],
    /// Global connection index (over all processes and loops; for messages and seeds).
    pub index: u32,
    /// Handshake response bytes while it is incomplete. Boxed on purpose: 8 bytes in every
    /// connection instead of a `Vec`'s 24, for a buffer needed only while a response is split.
    #[allow(clippy::box_collection)]
    hs_buf: Option<Box<Vec<u8>>>,
}

impl Link {
    /// The link of connection `index`, whose TCP connect was just started at `now`.
    pub fn new(stream: Stream, index: u32, key: [u8; 24], now: u64, connect_timeout_ns: u64) -> Link {
        Link {
            stream,
            state: State::Connecting,
            upgraded: false,
            hdr_len: 0,
            in_payload: false,
            hs_sent: 0,
            hdr: [0; MAX_HEADER],
            started: now,
            deadline: now + connect_timeout_ns,
            frame_left: 0,
            key,
            index,
            hs_buf: None,
        }
    }
}

/// One `write`, retried on EINTR: `Ok(None)` when the socket is full.
pub fn write_some(stream: &mut Stream, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.write(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A connection: the transport state every mode shares ([`Link`]) composed with the mode's own
/// part (`hooks`, a [`Hooks`] implementation). The transport logic is written once, on
/// `Conn<H>`; the mode's logic sees the whole connection.
pub struct Conn<H> {
    pub link: Link,
    pub hooks: H,
}

/// The mode's part of a connection: what it sends, how it checks what comes back and what it
/// counts. The hooks are associated functions taking the whole [`Conn`], so they reach the
/// socket and the transport's classification (`protocol_error`, `on_io_error`, ...) directly.
pub trait Hooks<'a>: Sized {
    /// The mode's part of [`Ctx`].
    type X;
    /// Why a call says the connection is over.
    type End;
    /// Connect or upgrade failed.
    const FAILED: Self::End;
    /// Was open (or closing) and is over.
    const DROPPED: Self::End;

    /// The upgrade was verified (state is `Open`, the handshake time is recorded): count it.
    fn on_upgrade(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>);
    /// After the bytes that came with the response were parsed.
    fn after_upgrade(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// Bytes of frames arrived (before they are parsed).
    fn on_frame_data(_c: &mut Conn<Self>, _ctx: &mut Ctx<'a, Self::X>) {}
    /// A frame header was parsed; the payload (if any) follows.
    fn start_frame(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>, h: &wire::Header) -> Result<(), Self::End>;
    /// A piece of the current frame's payload.
    fn frame_bytes(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>, chunk: &[u8]) -> Result<(), Self::End>;
    /// The current frame is complete.
    fn end_frame(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// Writes what is queued until the socket is full.
    fn flush(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// Counts this connection as lost, unless that does not apply (the mode's rules).
    fn lose(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>, reason: &str);
    /// EOF or I/O error (`what`) in the `Closing` state: count what the mode counts.
    fn broken_while_closing(_c: &mut Conn<Self>, _ctx: &mut Ctx<'a, Self::X>, _what: &str) {}
    /// The end of the run: start the close handshake (connections not yet open just end).
    fn start_close(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// The deadline passed while open or closing.
    fn open_timeout(c: &mut Conn<Self>, ctx: &mut Ctx<'a, Self::X>) -> Self::End;
}

/// The shared transport logic, built on the hooks.
impl<'a, H: Hooks<'a>> Conn<H> {
    /// Writes what is queued until the socket is full (the mode's [`Hooks::flush`]).
    #[inline]
    pub fn flush(&mut self, ctx: &mut Ctx<'a, H::X>) -> Result<(), H::End> {
        H::flush(self, ctx)
    }

    /// Counts this connection as lost, by the mode's rules ([`Hooks::lose`]).
    pub fn lose(&mut self, ctx: &mut Ctx<'a, H::X>, reason: &str) {
        H::lose(self, ctx, reason)
    }

    /// The end of the run: the mode's close handshake ([`Hooks::start_close`]).
    pub fn start_close(&mut self, ctx: &mut Ctx<'a, H::X>) -> Result<(), H::End> {
        H::start_close(self, ctx)
    }

    /// Handles a readiness event. `hup`: the peer shut its side (EPOLLRDHUP) or the socket has
    /// an error, so reading goes on to EOF instead of stopping at a short read.
    pub fn on_event(
        &mut self,
        ctx: &mut Ctx<'a, H::X>,
        readable: bool,
        writable: bool,
        hup: bool,
        rbuf: &mut [u8],
    ) -> Result<(), H::End> {
        if self.link.state == State::Connecting {
            if !self.check_connected(ctx)? {
                return Ok(());
            }
            // Connected: write the request now (the socket is writable), then read if there is
            // anything (the response cannot have come before the request; harmless to try).
            self.send_request(ctx)?;
            if readable {
                self.on_readable(ctx, hup, rbuf)?;
            }
            return Ok(());
        }
        if writable {
            // TLS output the socket refused before (handshake messages, records) goes first.
            if let Err(e) = self.link.stream.flush_pending() {
                return Err(self.on_io_error(ctx, &e));
            }
            if self.link.state == State::Upgrading {
                self.send_request(ctx)?;
            } else {
                self.flush(ctx)?;
            }
        }
        if readable {
            self.on_readable(ctx, hup, rbuf)?;
            if self.link.state != State::Upgrading {
                // What this read completed may have queued more to write (messages, a pong).
                self.flush(ctx)?;
            }
        }
        Ok(())
    }

    /// Connect finished? Err when it failed.
    pub fn check_connected(&mut self, ctx: &mut Ctx<'a, H::X>) -> Result<bool, H::End> {
        let link = &mut self.link;
        match link.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                ctx.stats.connect_failed(&error_reason(&e));
                return Err(H::FAILED);
            }
            Ok(None) => {}
        }
        match link.stream.peer_addr() {
            Ok(_) => {
                link.state = State::Upgrading;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) || e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => {
                ctx.stats.connect_failed(&error_reason(&e));
                Err(H::FAILED)
            }
        }
    }

    pub fn send_request(&mut self, ctx: &mut Ctx<'a, H::X>) -> Result<(), H::End> {
        let link = &mut self.link;
        ctx.scratch.clear();
        wire::write_request(&mut ctx.scratch, &ctx.cfg.host_header, &ctx.cfg.path, &link.key, ctx.cfg.deflate);
        while (link.hs_sent as usize) < ctx.scratch.len() {
            match write_some(&mut link.stream, &ctx.scratch[link.hs_sent as usize..]) {
                Ok(Some(0)) => {
                    ctx.stats.handshake_failed("write returned 0");
                    return Err(H::FAILED);
                }
                Ok(Some(n)) => link.hs_sent += n as u16,
                Ok(None) => return Ok(()),
                Err(e) => {
                    ctx.stats.handshake_failed(&error_reason(&e));
                    return Err(H::FAILED);
                }
            }
        }
        Ok(())
    }

    pub fn on_readable(&mut self, ctx: &mut Ctx<'a, H::X>, hup: bool, rbuf: &mut [u8]) -> Result<(), H::End> {
        loop {
            match self.link.stream.read(rbuf) {
                Ok(0) => return Err(self.on_eof(ctx)),
                Ok(n) => {
                    ctx.now = now_ns();
                    if self.link.state == State::Upgrading {
                        self.on_response_bytes(ctx, &rbuf[..n])?;
                    } else {
                        H::on_frame_data(self, ctx);
                        self.on_frame_bytes(ctx, &rbuf[..n])?;
                    }
                    // A short read drained the socket; with edge-triggered epoll, data that
                    // arrives later raises a new event. Not so a FIN already queued (it came
                    // with this event's RDHUP): then read on until EOF. (TLS: the stream knows.)
                    if !self.link.stream.more_to_read(n, rbuf.len()) && !hup {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.on_io_error(ctx, &e)),
            }
        }
    }

    pub fn on_eof(&mut self, ctx: &mut Ctx<'a, H::X>) -> H::End {
        match self.link.state {
            State::Connecting | State::Upgrading => {
                let what = if self.link.stream.tls_handshaking() {
                    "tls: eof during handshake"
                } else {
                    "eof before response"
                };
                ctx.stats.handshake_failed(what);
                H::FAILED
            }
            State::Open => {
                self.lose(ctx, "eof without close frame");
                H::DROPPED
            }
            State::Closing => {
                H::broken_while_closing(self, ctx, "eof");
                H::DROPPED
            }
        }
    }

    pub fn on_io_error(&mut self, ctx: &mut Ctx<'a, H::X>, e: &io::Error) -> H::End {
        let reason = error_reason(e);
        match self.link.state {
            State::Connecting => {
                ctx.stats.connect_failed(&reason);
                H::FAILED
            }
            State::Upgrading => {
                if reason.starts_with("tls: ") && !ctx.stats.handshake_failures.contains_key(&reason) {
                    // Said at once (once per loop and reason): most likely every connection fails so.
                    let hint = if reason.contains("certificate") {
                        " (give --ca FILE with the server's certificate or its CA, or --insecure)"
                    } else {
                        ""
                    };
                    eprintln!("wsbench: {reason} (connection #{}){hint}", self.link.index);
                }
                ctx.stats.handshake_failed(&reason);
                H::FAILED
            }
            State::Open => {
                self.lose(ctx, &reason);
                H::DROPPED
            }
            State::Closing => {
                H::broken_while_closing(self, ctx, &reason);
                H::DROPPED
            }
        }
    }

    /// `write` returned 0.
    pub fn write_zero(&mut self, ctx: &mut Ctx<'a, H::X>) -> H::End {
        self.on_io_error(ctx, &io::Error::from(io::ErrorKind::WriteZero))
    }

    pub fn on_response_bytes(&mut self, ctx: &mut Ctx<'a, H::X>, data: &[u8]) -> Result<(), H::End> {
        // A response split over reads is kept until it is complete, then freed.
        let mut held = self.link.hs_buf.take();
        let bytes: &[u8] = match held.as_mut() {
            Some(b) => {
                b.extend_from_slice(data);
                b
            }
            None => data,
        };
        let deflate = ctx.cfg.deflate.then(|| wire::window_bits_for(ctx.cfg.size));
        match wire::check_response(bytes, &self.link.key, deflate) {
            Ok(None) => {
                self.link.hs_buf = Some(held.unwrap_or_else(|| Box::new(data.to_vec())));
                Ok(())
            }
            Err(e) => {
                let label = e.label();
                if matches!(e, wire::HandshakeError::DeflateNotAccepted | wire::HandshakeError::DeflateAnswer(_))
                    && !ctx.stats.handshake_failures.contains_key(&label)
                {
                    // Said at once (once per loop): every connection will fail the same way.
                    eprintln!("wsbench: --deflate: {label} (connection #{})", self.link.index);
                }
                ctx.stats.handshake_failed(&label);
                Err(H::FAILED)
            }
            Ok(Some(head)) => {
                let link = &mut self.link;
                link.state = State::Open;
                link.upgraded = true;
                let _ = ctx.stats.handshake.record(ctx.now.saturating_sub(link.started).max(1));
                ctx.became_open = true;
                H::on_upgrade(self, ctx);
                let rest = &bytes[head..];
                if !rest.is_empty() {
                    self.on_frame_bytes(ctx, rest)?;
                }
                drop(held);
                H::after_upgrade(self, ctx)
            }
        }
    }

    /// Splits server bytes into frame headers and payload chunks for the hooks.
    pub fn on_frame_bytes(&mut self, ctx: &mut Ctx<'a, H::X>, data: &[u8]) -> Result<(), H::End> {
        let mut i = 0;
        while i < data.len() {
            let link = &mut self.link;
            if !link.in_payload {
                let h = if link.hdr_len > 0 {
                    let have = link.hdr_len as usize;
                    let take = (MAX_HEADER - have).min(data.len() - i);
                    link.hdr[have..have + take].copy_from_slice(&data[i..i + take]);
                    match wire::decode_header(&link.hdr[..have + take], ctx.cfg.deflate) {
                        Ok(Some(h)) => {
                            i += h.hlen - have;
                            link.hdr_len = 0;
                            h
                        }
                        Ok(None) => {
                            link.hdr_len += take as u8;
                            i += take;
                            continue;
                        }
                        Err(e) => return Err(self.protocol_error(ctx, e.name())),
                    }
                } else {
                    match wire::decode_header(&data[i..], ctx.cfg.deflate) {
                        Ok(Some(h)) => {
                            i += h.hlen;
                            h
                        }
                        Ok(None) => {
                            let rest = data.len() - i;
                            link.hdr[..rest].copy_from_slice(&data[i..]);
                            link.hdr_len = rest as u8;
                            i = data.len();
                            continue;
                        }
                        Err(e) => return Err(self.protocol_error(ctx, e.name())),
                    }
                };
                H::start_frame(self, ctx, &h)?;
                let link = &mut self.link;
                link.frame_left = h.len;
                if h.len == 0 {
                    H::end_frame(self, ctx)?;
                } else {
                    link.in_payload = true;
                }
            } else {
                let n = (link.frame_left.min((data.len() - i) as u64)) as usize;
                H::frame_bytes(self, ctx, &data[i..i + n])?;
                let link = &mut self.link;
                link.frame_left -= n as u64;
                i += n;
                if link.frame_left == 0 {
                    link.in_payload = false;
                    H::end_frame(self, ctx)?;
                }
            }
        }
        Ok(())
    }

    /// Server broke the protocol: count it and drop the connection.
    pub fn protocol_error(&mut self, ctx: &mut Ctx<'a, H::X>, what: &str) -> H::End {
        self.lose(ctx, &format!("protocol error: {what}"));
        if ctx.mismatch_logs < 5 {
            ctx.mismatch_logs += 1;
            eprintln!("wsbench: protocol error on connection #{}: {what}", self.link.index);
        }
        H::DROPPED
    }

    /// The deadline passed: counts what it means and says the connection should be dropped.
    pub fn timed_out(&mut self, ctx: &mut Ctx<'a, H::X>) -> H::End {
        match self.link.state {
            State::Connecting => {
                ctx.stats.connect_failed("timeout");
                H::FAILED
            }
            State::Upgrading => {
                let what = if self.link.stream.tls_handshaking() { "tls: handshake timeout" } else { "timeout" };
                ctx.stats.handshake_failed(what);
                H::FAILED
            }
            State::Open | State::Closing => H::open_timeout(self, ctx),
        }
    }
}
