//! The connection machinery shared by every mode: the per-loop [`Ctx`], the [`Link`] every
//! connection embeds (socket, life state, upgrade key and progress, deadlines, the partial frame
//! header), and the [`Session`] trait whose provided methods do the common work — connect check,
//! writing the upgrade request, reading and verifying the 101 response, the edge-triggered read
//! loop, splitting server bytes into frames, and classifying EOFs, I/O errors and timeouts.
//!
//! It does not know what is sent or how echoes are checked: the mode's connection type (`client`
//! for echo/rate/idle, `soak_conn` for soak) implements the hooks — frame starts, payload chunks,
//! frame ends, flushing its write queue, what an upgrade, a loss or a timeout counts as. Nothing
//! here allocates per message.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::cli::Config;
use crate::net::error_reason;
use crate::stats::Stats;
use crate::sys::now_ns;
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
    pub stream: TcpStream,
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
}

impl Link {
    /// A link whose TCP connect was just started at `now`.
    pub fn new(stream: TcpStream, key: [u8; 24], now: u64, connect_timeout_ns: u64) -> Link {
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
        }
    }
}

/// One `write`, retried on EINTR: `Ok(None)` when the socket is full.
pub fn write_some(stream: &mut TcpStream, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.write(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The accessors every [`Session`] implementation has in the same way, given what `failed()` and
/// `dropped()` return: the `link` and `index` fields, and the handshake buffer `hs_buf` of the
/// lazily boxed `extra: Option<Box<Extra>>` (made by `Extra::new`). Invoked inside the impl.
macro_rules! session_glue {
    ($failed:expr, $dropped:expr) => {
        fn failed() -> Self::End {
            $failed
        }

        fn dropped() -> Self::End {
            $dropped
        }

        #[inline]
        fn link(&mut self) -> &mut Link {
            &mut self.link
        }

        #[inline]
        fn link_ref(&self) -> &Link {
            &self.link
        }

        fn index(&self) -> u32 {
            self.index
        }

        fn hs_buf(&mut self) -> Option<&mut Vec<u8>> {
            self.extra.as_mut().map(|x| &mut x.hs_buf)
        }

        fn hs_buf_mut(&mut self) -> &mut Vec<u8> {
            &mut self.extra.get_or_insert_with(Extra::new).hs_buf
        }
    };
}
pub(crate) use session_glue;

/// A connection of some mode: the hooks it implements, and the shared transport logic built on
/// them (the provided methods).
pub trait Session<'a>: Sized {
    /// The mode's part of [`Ctx`].
    type X;
    /// Why a call says the connection is over.
    type End;

    /// Connect or upgrade failed.
    fn failed() -> Self::End;
    /// Was open (or closing) and is over.
    fn dropped() -> Self::End;
    fn link(&mut self) -> &mut Link;
    fn link_ref(&self) -> &Link;
    /// Global connection index (for messages).
    fn index(&self) -> u32;

    /// Handshake response bytes kept while it is incomplete, if any.
    fn hs_buf(&mut self) -> Option<&mut Vec<u8>>;
    /// The same, created when missing.
    fn hs_buf_mut(&mut self) -> &mut Vec<u8>;
    /// The upgrade was verified (state is `Open`, the handshake time is recorded): count it.
    fn on_upgrade(&mut self, ctx: &mut Ctx<'a, Self::X>);
    /// After the bytes that came with the response were parsed.
    fn after_upgrade(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// Bytes of frames arrived (before they are parsed).
    fn on_frame_data(&mut self, _ctx: &mut Ctx<'a, Self::X>) {}
    /// A frame header was parsed; the payload (if any) follows.
    fn start_frame(&mut self, ctx: &mut Ctx<'a, Self::X>, h: &wire::Header) -> Result<(), Self::End>;
    /// A piece of the current frame's payload.
    fn frame_bytes(&mut self, ctx: &mut Ctx<'a, Self::X>, chunk: &[u8]) -> Result<(), Self::End>;
    /// The current frame is complete.
    fn end_frame(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// Writes what is queued until the socket is full.
    fn flush(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// Counts this connection as lost, unless that does not apply (the mode's rules).
    fn lose(&mut self, ctx: &mut Ctx<'a, Self::X>, reason: &str);
    /// EOF or I/O error (`what`) in the `Closing` state: count what the mode counts.
    fn broken_while_closing(&mut self, _ctx: &mut Ctx<'a, Self::X>, _what: &str) {}
    /// The end of the run: start the close handshake (connections not yet open just end).
    fn start_close(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End>;
    /// The deadline passed while open or closing.
    fn open_timeout(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Self::End;

    /// Handles a readiness event. `hup`: the peer shut its side (EPOLLRDHUP) or the socket has
    /// an error, so reading goes on to EOF instead of stopping at a short read.
    fn on_event(
        &mut self,
        ctx: &mut Ctx<'a, Self::X>,
        readable: bool,
        writable: bool,
        hup: bool,
        rbuf: &mut [u8],
    ) -> Result<(), Self::End> {
        if self.link().state == State::Connecting {
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
            if self.link().state == State::Upgrading {
                self.send_request(ctx)?;
            } else {
                self.flush(ctx)?;
            }
        }
        if readable {
            self.on_readable(ctx, hup, rbuf)?;
            if self.link().state != State::Upgrading {
                // What this read completed may have queued more to write (messages, a pong).
                self.flush(ctx)?;
            }
        }
        Ok(())
    }

    /// Connect finished? Err when it failed.
    fn check_connected(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Result<bool, Self::End> {
        let link = self.link();
        match link.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                ctx.stats.connect_failed(&error_reason(&e));
                return Err(Self::failed());
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
                Err(Self::failed())
            }
        }
    }

    fn send_request(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Result<(), Self::End> {
        let link = self.link();
        ctx.scratch.clear();
        wire::write_request(&mut ctx.scratch, &ctx.cfg.host_header, &ctx.cfg.path, &link.key);
        while (link.hs_sent as usize) < ctx.scratch.len() {
            match write_some(&mut link.stream, &ctx.scratch[link.hs_sent as usize..]) {
                Ok(Some(0)) => {
                    ctx.stats.handshake_failed("write returned 0");
                    return Err(Self::failed());
                }
                Ok(Some(n)) => link.hs_sent += n as u16,
                Ok(None) => return Ok(()),
                Err(e) => {
                    ctx.stats.handshake_failed(&error_reason(&e));
                    return Err(Self::failed());
                }
            }
        }
        Ok(())
    }

    fn on_readable(&mut self, ctx: &mut Ctx<'a, Self::X>, hup: bool, rbuf: &mut [u8]) -> Result<(), Self::End> {
        loop {
            match self.link().stream.read(rbuf) {
                Ok(0) => return Err(self.on_eof(ctx)),
                Ok(n) => {
                    ctx.now = now_ns();
                    if self.link().state == State::Upgrading {
                        self.on_response_bytes(ctx, &rbuf[..n])?;
                    } else {
                        self.on_frame_data(ctx);
                        self.on_frame_bytes(ctx, &rbuf[..n])?;
                    }
                    // A short read drained the socket; with edge-triggered epoll, data that
                    // arrives later raises a new event. Not so a FIN already queued (it came
                    // with this event's RDHUP): then read on until EOF.
                    if n < rbuf.len() && !hup {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.on_io_error(ctx, &e)),
            }
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Self::End {
        match self.link().state {
            State::Connecting | State::Upgrading => {
                ctx.stats.handshake_failed("eof before response");
                Self::failed()
            }
            State::Open => {
                self.lose(ctx, "eof without close frame");
                Self::dropped()
            }
            State::Closing => {
                self.broken_while_closing(ctx, "eof");
                Self::dropped()
            }
        }
    }

    fn on_io_error(&mut self, ctx: &mut Ctx<'a, Self::X>, e: &io::Error) -> Self::End {
        let reason = error_reason(e);
        match self.link().state {
            State::Connecting => {
                ctx.stats.connect_failed(&reason);
                Self::failed()
            }
            State::Upgrading => {
                ctx.stats.handshake_failed(&reason);
                Self::failed()
            }
            State::Open => {
                self.lose(ctx, &reason);
                Self::dropped()
            }
            State::Closing => {
                self.broken_while_closing(ctx, &reason);
                Self::dropped()
            }
        }
    }

    /// `write` returned 0.
    fn write_zero(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Self::End {
        self.on_io_error(ctx, &io::Error::from(io::ErrorKind::WriteZero))
    }

    fn on_response_bytes(&mut self, ctx: &mut Ctx<'a, Self::X>, data: &[u8]) -> Result<(), Self::End> {
        let buffered = self.hs_buf().is_some_and(|b| !b.is_empty());
        let mut owned;
        let bytes: &[u8] = if buffered {
            owned = std::mem::take(self.hs_buf().expect("buffered"));
            owned.extend_from_slice(data);
            &owned
        } else {
            owned = Vec::new();
            data
        };
        match wire::check_response(bytes, &self.link().key) {
            Ok(None) => {
                let b = self.hs_buf_mut();
                if buffered {
                    *b = owned;
                } else {
                    b.extend_from_slice(data);
                }
                Ok(())
            }
            Err(e) => {
                ctx.stats.handshake_failed(&e.label());
                Err(Self::failed())
            }
            Ok(Some(head)) => {
                let link = self.link();
                link.state = State::Open;
                link.upgraded = true;
                let _ = ctx.stats.handshake.record(ctx.now.saturating_sub(link.started).max(1));
                ctx.became_open = true;
                self.on_upgrade(ctx);
                let rest = &bytes[head..];
                if !rest.is_empty() {
                    self.on_frame_bytes(ctx, rest)?;
                }
                drop(owned);
                self.after_upgrade(ctx)
            }
        }
    }

    /// Splits server bytes into frame headers and payload chunks for the hooks.
    fn on_frame_bytes(&mut self, ctx: &mut Ctx<'a, Self::X>, data: &[u8]) -> Result<(), Self::End> {
        let mut i = 0;
        while i < data.len() {
            let link = self.link();
            if !link.in_payload {
                let h = if link.hdr_len > 0 {
                    let have = link.hdr_len as usize;
                    let take = (MAX_HEADER - have).min(data.len() - i);
                    link.hdr[have..have + take].copy_from_slice(&data[i..i + take]);
                    match wire::decode_header(&link.hdr[..have + take]) {
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
                    match wire::decode_header(&data[i..]) {
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
                self.start_frame(ctx, &h)?;
                let link = self.link();
                link.frame_left = h.len;
                if h.len == 0 {
                    self.end_frame(ctx)?;
                } else {
                    link.in_payload = true;
                }
            } else {
                let n = (link.frame_left.min((data.len() - i) as u64)) as usize;
                self.frame_bytes(ctx, &data[i..i + n])?;
                let link = self.link();
                link.frame_left -= n as u64;
                i += n;
                if link.frame_left == 0 {
                    link.in_payload = false;
                    self.end_frame(ctx)?;
                }
            }
        }
        Ok(())
    }

    /// Server broke the protocol: count it and drop the connection.
    fn protocol_error(&mut self, ctx: &mut Ctx<'a, Self::X>, what: &str) -> Self::End {
        self.lose(ctx, &format!("protocol error: {what}"));
        if ctx.mismatch_logs < 5 {
            ctx.mismatch_logs += 1;
            eprintln!("wsbench: protocol error on connection #{}: {what}", self.index());
        }
        Self::dropped()
    }

    /// The deadline passed: counts what it means and says the connection should be dropped.
    fn timed_out(&mut self, ctx: &mut Ctx<'a, Self::X>) -> Self::End {
        match self.link().state {
            State::Connecting => {
                ctx.stats.connect_failed("timeout");
                Self::failed()
            }
            State::Upgrading => {
                ctx.stats.handshake_failed("timeout");
                Self::failed()
            }
            State::Open | State::Closing => self.open_timeout(ctx),
        }
    }
}
