//! TLS on one reactor's connections: the handshake through rustls, then records as a byte stream.
//!
//! Owns [`Tls`], one per reactor: a slab of per-connection [`Session`]s (a connection keeps only
//! its slot number), the pool of carry buffers, the configuration new handshakes use (re-read
//! from `TlsSource` when `SIGHUP` replaced it), the per-turn handshake budget, and the staging
//! buffer sealed output goes through. A session first drives rustls' unbuffered server
//! connection (handshake records in, handshake records out, no buffer of rustls' own); once the
//! handshake is done rustls hands over the traffic keys (`dangerous_into_kernel_connection`, the
//! kTLS hand-over) and [`RecordLayer`] opens records in place in the reactor's read buffer and
//! seals output into the staging buffer. What `recv` gives back behaves like a socket read: at
//! most the bytes asked for, `End` at `close_notify`. Between reads a session carries, in one
//! pooled buffer and only while it has any, a record cut by a read and plaintext that did not fit
//! the caller's read; an established idle session holds its keys and nothing else.
//!
//! It does not parse WebSocket or HTTP, decide budgets, or arm timers (see `conn`).

use super::config::{take_captured, Captured, TlsSource};
use super::record::{
    record_len, sealed_overhead, RecordError, RecordLayer, ALERT, APPLICATION_DATA, HANDSHAKE, HEADER_LEN, MAX_PLAIN,
    MAX_RECORD,
};
use crate::buffers::Pool;
use crate::metrics::{Metrics, TlsFailure};
use crate::socket::{Io, Socket};
use log::debug;
use rustls::server::{ServerConfig, ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError};
use rustls::{HandshakeKind, ProtocolVersion, SupportedCipherSuite};
use slab::Slab;
use std::sync::Arc;

/// Handshake steps (reads that feed rustls) one reactor processes per turn; the connections
/// beyond wait in the reactor's FIFO for later turns, while the established ones are served every
/// turn. A full handshake costs 50-95 us of CPU here (ECDSA P-256, X25519MLKEM768), so this bounds
/// what a flood of handshakes adds to one turn to ~1.5 ms.
pub const HANDSHAKES_PER_TURN: u32 = 16;

/// A carry buffer: plaintext left over at `[0..MAX_RECORD)`, a partial record at
/// `[MAX_RECORD..2 * MAX_RECORD)`.
const CARRY_BYTES: usize = 2 * MAX_RECORD;

/// The slot value of a connection without TLS.
pub const NO_TLS: u32 = u32::MAX;

/// What one [`Tls::recv`] did: the outcome as a socket read would report it, and whether the
/// caller should read again before waiting for readiness (the socket filled the read, or
/// plaintext is left over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The outcome; `Done(n)`: `n` bytes of plaintext at the requested place.
    pub io: Io,
    /// More may be readable now.
    pub full: bool,
}

impl Read {
    const FAILED: Read = Read { io: Io::Failed, full: false };
}

/// An established session: the record layer (keys, and the TLS 1.3 secrets for key updates).
struct Open {
    rec: RecordLayer,
    /// Records one key may seal (the suite's confidentiality limit, less a margin).
    limit: u64,
}

/// A handshake in progress: rustls' connection and the secrets it reported so far.
struct Hs {
    conn: UnbufferedServerConnection,
    secrets: Captured,
}

enum State {
    Handshake(Box<Hs>),
    Open(Box<Open>),
    /// Failed or closed: nothing more is read or sealed.
    Dead,
}

/// One connection's TLS state.
struct Session {
    state: State,
    carry: Option<Box<[u8]>>,
    /// Plaintext bytes at `carry[..plain]`.
    plain: u16,
    /// Ciphertext bytes at `carry[MAX_RECORD..MAX_RECORD + cipher]`.
    cipher: u16,
    /// `close_notify` received (after the plaintext still carried).
    eof: bool,
    /// The peer asked for a TLS 1.3 key update: send ours before the next record.
    key_update: bool,
}

/// TLS for one reactor's connections.
pub struct Tls {
    source: Arc<TlsSource>,
    config: Arc<ServerConfig>,
    generation: u64,
    sessions: Slab<Session>,
    pool: Pool,
    budget: u32,
    /// Sealed output of one flush (swapped with `Shared::out`).
    pub sealed: Vec<u8>,
}

impl core::fmt::Debug for Tls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tls").field("sessions", &self.sessions.len()).field("budget", &self.budget).finish()
    }
}

impl Tls {
    /// TLS state for a reactor whose staging buffer holds up to `staging` bytes, with room for
    /// `sessions` sessions reserved up front (like the reactor's slab: pages are touched only as
    /// connections arrive, and the table never reallocates).
    pub fn new(source: Arc<TlsSource>, staging: usize, sessions: usize) -> Tls {
        let config = source.current();
        let generation = source.generation();
        Tls {
            source,
            config,
            generation,
            sessions: Slab::with_capacity(sessions),
            pool: Pool::new(CARRY_BYTES, 64),
            budget: HANDSHAKES_PER_TURN,
            sealed: Vec::with_capacity(staging + sealed_overhead(staging)),
        }
    }

    /// Bytes of read buffer a TLS reactor needs after its headroom: a carried partial record
    /// plus one more record.
    pub const MIN_READ_BUFFER: usize = CARRY_BYTES;

    /// A new turn of the reactor: the handshake budget is full again.
    #[inline]
    pub fn new_turn(&mut self) {
        self.budget = HANDSHAKES_PER_TURN;
    }

    /// Handshake reads left in this turn's budget.
    #[inline]
    pub fn budget_left(&self) -> u32 {
        self.budget
    }

    /// Whether session `slot` may go on with its handshake this turn (established sessions
    /// always may).
    #[inline]
    pub fn may_proceed(&self, slot: u32) -> bool {
        self.budget > 0 || !matches!(self.sessions.get(slot as usize).map(|s| &s.state), Some(State::Handshake(_)))
    }

    /// A session for a newly accepted connection; `None` if rustls refuses to start one.
    pub fn start(&mut self) -> Option<u32> {
        let g = self.source.generation();
        if g != self.generation {
            self.config = self.source.current();
            self.generation = g;
        }
        let conn = match UnbufferedServerConnection::new(self.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                debug!("TLS: cannot start a session: {e}");
                return None;
            }
        };
        let s = Session {
            state: State::Handshake(Box::new(Hs { conn, secrets: Captured::default() })),
            carry: None,
            plain: 0,
            cipher: 0,
            eof: false,
            key_update: false,
        };
        u32::try_from(self.sessions.insert(s)).ok()
    }

    /// Whether the session's handshake is done.
    pub fn is_open(&self, slot: u32) -> bool {
        matches!(self.sessions.get(slot as usize).map(|s| &s.state), Some(State::Open(_)))
    }

    /// Carry buffers borrowed from the pool and not yet given back (all sessions): what the fuzz
    /// target `tls` checks is zero once a socket is drained of whole records.
    #[doc(hidden)]
    pub fn carry_buffers_out(&self) -> usize {
        self.pool.outstanding
    }

    /// Frees session `slot` (the connection is closing) and its carry buffer.
    pub fn release(&mut self, slot: &mut u32) {
        if *slot == NO_TLS {
            return;
        }
        if self.sessions.contains(*slot as usize) {
            let s = self.sessions.remove(*slot as usize);
            if let Some(b) = s.carry {
                self.pool.put(b);
            }
        }
        *slot = NO_TLS;
    }

    /// Reads plaintext into `rbuf[lo..lo + want]` the way a socket read would, from carried
    /// plaintext or from one read of the socket. Handshake records are answered by appending
    /// rustls' output to `out` (which is empty during the handshake), for the caller to send.
    #[allow(clippy::too_many_arguments)]
    pub fn recv<S: Socket>(
        &mut self,
        slot: u32,
        stream: &S,
        rbuf: &mut [u8],
        lo: usize,
        want: usize,
        out: &mut Vec<u8>,
        m: &mut Metrics,
    ) -> Read {
        let Tls { sessions, pool, budget, .. } = self;
        let Some(s) = sessions.get_mut(slot as usize) else { return Read::FAILED };
        // Plaintext left from an earlier read goes first.
        if s.plain > 0 {
            let Some(c) = s.carry.as_mut() else { return Read::FAILED };
            let have = usize::from(s.plain);
            let n = have.min(want);
            rbuf[lo..lo + n].copy_from_slice(&c[..n]);
            c.copy_within(n..have, 0);
            s.plain = (have - n) as u16;
            s.give_back(pool);
            return Read { io: Io::Done(n), full: true };
        }
        if s.eof {
            return Read { io: Io::End, full: false };
        }
        let handshaking = matches!(s.state, State::Handshake(_));
        if matches!(s.state, State::Dead) {
            return Read::FAILED;
        }
        // The window: the carried partial record, then one read after it.
        let c = usize::from(s.cipher);
        if let Some(b) = s.carry.as_ref() {
            rbuf[lo..lo + c].copy_from_slice(&b[MAX_RECORD..MAX_RECORD + c]);
        }
        s.cipher = 0;
        let room = rbuf.len() - lo - c;
        let r = if handshaking {
            MAX_RECORD
        } else {
            // At most `want` bytes of ciphertext in all (plaintext is never longer), unless the
            // carried record alone needs more to be complete.
            let need = record_len(&rbuf[lo..lo + c]).map_or_else(|| HEADER_LEN - c, |l| l - c);
            want.saturating_sub(c).max(need)
        }
        .min(room);
        let n = match Io::of(stream.recv(&mut rbuf[lo + c..lo + c + r])) {
            Io::Done(n) => n,
            io => {
                // Nothing new: keep the partial record for the next read.
                if c > 0 && !s.keep_cipher(pool, &rbuf[lo..lo + c]) {
                    return Read::FAILED;
                }
                s.give_back(pool);
                return Read { io, full: false };
            }
        };
        m.bytes_in += n as u64;
        let full = n == r;
        let win = c + n;
        let mut d = 0;
        let mut p = 0;
        let mut closed = false;
        if handshaking {
            if *budget > 0 {
                *budget -= 1;
            }
            let mut early = [0u8; MAX_PLAIN];
            match s.handshake(&mut rbuf[lo..lo + win], out, &mut early, m) {
                Ok((consumed, got, done, peer_closed)) => {
                    d = consumed;
                    closed = peer_closed;
                    rbuf[lo..lo + got].copy_from_slice(&early[..got]);
                    p = got;
                    if !done {
                        // Unprocessed handshake bytes wait for the rest.
                        if !s.keep_cipher(pool, &rbuf[lo + d..lo + win]) {
                            debug!("TLS: handshake message larger than {MAX_RECORD} bytes: closing");
                            m.tls_failed(TlsFailure::Protocol);
                            s.state = State::Dead;
                            return Read::FAILED;
                        }
                        s.give_back(pool);
                        let io = if full { Io::Retry } else { Io::Blocked };
                        return Read { io, full };
                    }
                }
                Err(f) => {
                    m.tls_failed(f);
                    s.state = State::Dead;
                    // rustls' alert, if it wrote one: best effort, the connection is closing.
                    let _ = stream.send(out);
                    out.clear();
                    return Read::FAILED;
                }
            }
        }
        // Records of the established session, opened in place; plaintext compacted to `lo`. A
        // handshake read is not bounded by `want`: all its whole records are opened, so that only a
        // partial record is carried (a whole one would wait for the next readiness event).
        let upto = if handshaking { usize::MAX } else { want };
        // (Nothing after a close_notify that came with the Finished counts: rustls took both.)
        let until = if closed { d } else { win };
        let Some((d, p, eof)) = open_records(&mut s.state, &mut s.key_update, stream, rbuf, lo, (d, p, until), upto, m)
        else {
            return Read::FAILED;
        };
        let eof = eof || closed;
        // What the caller did not ask for waits in the carry buffer.
        let give = p.min(want);
        if p > give && !s.keep_plain(pool, &rbuf[lo + give..lo + p]) {
            debug!("TLS: {} bytes of plaintext beyond the carry buffer: closing", p - give);
            return Read::FAILED;
        }
        if !eof && d < win && !s.keep_cipher(pool, &rbuf[lo + d..lo + win]) {
            debug!("TLS: {} bytes of records beyond the carry buffer: closing", win - d);
            return Read::FAILED;
        }
        s.give_back(pool);
        if eof {
            s.eof = true;
            if give == 0 && s.plain == 0 {
                return Read { io: Io::End, full: false };
            }
        }
        if give > 0 {
            return Read { io: Io::Done(give), full: full || s.plain > 0 || eof };
        }
        Read { io: if full { Io::Retry } else { Io::Blocked }, full }
    }

    /// Seals `plain` (the staged output of one flush) into [`Tls::sealed`], after a key update
    /// when the peer asked for one or the key is near its limit. `Err` closes the connection.
    pub fn seal(&mut self, slot: u32, plain: &[u8]) -> Result<(), RecordError> {
        let Tls { sessions, sealed, .. } = self;
        sealed.clear();
        let Some(Session { state: State::Open(o), key_update, .. }) = sessions.get_mut(slot as usize) else {
            return Err(RecordError::Unexpected);
        };
        if *key_update || o.rec.tx_seq() >= o.limit {
            if !o.rec.is_tls13() {
                debug!("TLS 1.2: key usage limit reached: closing");
                return Err(RecordError::Exhausted);
            }
            // KeyUpdate(update_not_requested) under the old key, then the new key.
            if !o.rec.can_update() {
                debug!("TLS 1.3: no secret for a key update: closing");
                return Err(RecordError::Exhausted);
            }
            o.rec.seal(HANDSHAKE, &[24, 0, 0, 1, 0], sealed)?;
            if !o.rec.update_tx() {
                return Err(RecordError::Exhausted);
            }
            *key_update = false;
        }
        o.rec.seal(APPLICATION_DATA, plain, sealed)
    }

    /// Sends `close_notify` (best effort: the socket's buffer is empty when this is called).
    /// The session still reads: the peer's last records (its close frame, its `close_notify`) are
    /// opened and discarded while the connection lingers, so that unread data never turns our
    /// close into a reset.
    pub fn close_notify<S: Socket>(&mut self, slot: u32, stream: &S) {
        if let Some(s) = self.sessions.get_mut(slot as usize) {
            send_alert(&mut s.state, stream, 1, 0);
        }
    }
}

/// Opens the complete records of `rbuf[lo + d..lo + win]` in place, moving application data to
/// `rbuf[lo + p..]`, until `want` bytes of plaintext are there: returns the new `(d, p)` and
/// whether `close_notify` arrived. `None`: the connection failed (alert sent, logged, counted).
#[allow(clippy::too_many_arguments)]
fn open_records<S: Socket>(
    state: &mut State,
    key_update: &mut bool,
    stream: &S,
    rbuf: &mut [u8],
    lo: usize,
    (mut d, mut p, win): (usize, usize, usize),
    want: usize,
    m: &mut Metrics,
) -> Option<(usize, usize, bool)> {
    while win - d >= HEADER_LEN && p < want {
        let State::Open(o) = state else { return None };
        let l = record_len(&rbuf[lo + d..lo + win]).unwrap_or(usize::MAX);
        if l > MAX_RECORD {
            return fail(state, stream, RecordError::Overflow, m);
        }
        if win - d < l {
            break;
        }
        let at = lo + d;
        let (typ, range) = match o.rec.open(&mut rbuf[at..at + l]) {
            Ok(x) => x,
            Err(e) => return fail(state, stream, e, m),
        };
        d += l;
        let (a, b) = (at + range.start, at + range.end);
        match typ {
            APPLICATION_DATA => {
                rbuf.copy_within(a..b, lo + p);
                p += b - a;
            }
            ALERT => match rbuf[a..b] {
                [_, 0] => return Some((d, p, true)),
                // user_canceled is a warning that precedes close_notify.
                [1, 90] => {}
                [level, desc] => {
                    debug!("TLS: peer sent alert {desc} (level {level}): closing");
                    m.tls_failed(TlsFailure::Alert);
                    *state = State::Dead;
                    return None;
                }
                _ => return fail(state, stream, RecordError::Unexpected, m),
            },
            HANDSHAKE if o.rec.is_tls13() && b - a == 5 && rbuf[a..a + 4] == [24, 0, 0, 1] && rbuf[a + 4] <= 1 => {
                // KeyUpdate (RFC 8446 §4.6.3): a new receive key; answer with ours if asked.
                if !o.rec.update_rx() {
                    debug!("TLS: KeyUpdate without the secret to derive it");
                    return fail(state, stream, RecordError::Unexpected, m);
                }
                *key_update |= rbuf[a + 4] == 1;
            }
            // Renegotiation, post-handshake messages other than KeyUpdate, or anything else.
            _ => return fail(state, stream, RecordError::Unexpected, m),
        }
    }
    Some((d, p, false))
}

/// A record error: the RFC's fatal alert (best effort), a debug line, and the end.
fn fail<S: Socket, T>(state: &mut State, stream: &S, e: RecordError, m: &mut Metrics) -> Option<T> {
    debug!("TLS: {}: closing", e.reason());
    m.tls_failed(TlsFailure::Record);
    send_alert(state, stream, 2, e.alert());
    *state = State::Dead;
    None
}

/// Seals and sends one alert, best effort (a tiny write to a socket with room).
fn send_alert<S: Socket>(state: &mut State, stream: &S, level: u8, desc: u8) {
    if let State::Open(o) = state {
        let mut rec = Vec::with_capacity(64);
        if o.rec.seal(ALERT, &[level, desc], &mut rec).is_ok() {
            let _ = stream.send(&rec);
        }
    }
}

impl Session {
    /// Feeds `buf` to rustls: returns the bytes it consumed, the application data that arrived
    /// with the end of the handshake (copied to `early`), and whether the handshake is done (the
    /// session is then open).
    fn handshake(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        early: &mut [u8; MAX_PLAIN],
        m: &mut Metrics,
    ) -> Result<(usize, usize, bool, bool), TlsFailure> {
        let State::Handshake(hs) = &mut self.state else { return Err(TlsFailure::Protocol) };
        let Hs { conn, secrets } = &mut **hs;
        let mut d = 0;
        let mut got = 0;
        let mut done = false;
        let mut peer_closed = false;
        // Bounded: each state either consumes input, emits output or ends the loop.
        for _ in 0..64 {
            let input: &mut [u8] = if done { &mut [] } else { &mut buf[d..] };
            let st = conn.process_tls_records(input);
            d += st.discard;
            // Secrets rustls reported during that call are this connection's (one thread, one
            // handshake at a time).
            let got_secrets = take_captured();
            secrets.client = got_secrets.client.or(secrets.client);
            secrets.server = got_secrets.server.or(secrets.server);
            let state = match st.state {
                Ok(s) => s,
                Err(e) => {
                    debug!("TLS handshake failed: {e}");
                    // rustls queued an alert: encode it for the caller to send.
                    // (everything still queued: a TLS 1.3 ServerHello can sit in front of it).
                    // Only while rustls has records queued: it hands those out before it looks
                    // at input, whereas a call with nothing queued would deframe again, and
                    // with a handshake message half joined in place in the input it indexes
                    // past the empty slice and panics (fuzz target `tls`: a Finished in two
                    // records, the second broken; fuzz/regressions/tls/finished-split-broken).
                    for _ in 0..8 {
                        if !conn.wants_write() {
                            break;
                        }
                        match conn.process_tls_records(&mut []).state {
                            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                                let _ = encode(&mut enc, out);
                            }
                            Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                            _ => break,
                        }
                    }
                    return Err(TlsFailure::Protocol);
                }
            };
            match state {
                ConnectionState::EncodeTlsData(mut enc) => {
                    if !encode(&mut enc, out) {
                        return Err(TlsFailure::Protocol);
                    }
                }
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => return Ok((d, got, false, false)),
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let Ok(rec) = rec else { return Err(TlsFailure::Protocol) };
                        let Some(dst) = early.get_mut(got..got + rec.payload.len()) else {
                            return Err(TlsFailure::Protocol);
                        };
                        dst.copy_from_slice(rec.payload);
                        got += rec.payload.len();
                    }
                    done = true;
                }
                ConnectionState::WriteTraffic(_) => {
                    done = true;
                    break;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    peer_closed = true;
                    break;
                }
                _ => return Err(TlsFailure::Protocol),
            }
        }
        if peer_closed {
            if conn.is_handshaking() {
                debug!("TLS: peer closed during the handshake");
                return Err(TlsFailure::Eof);
            }
            // A close_notify right behind the client's Finished: the handshake is done, and the
            // stream ends (after any data before it) like any other close_notify.
            done = true;
        }
        if !done {
            return Err(TlsFailure::Protocol);
        }
        // The hand-over: rustls gives the traffic keys and sequence numbers; records are ours.
        let State::Handshake(hs) = std::mem::replace(&mut self.state, State::Dead) else {
            return Err(TlsFailure::Protocol);
        };
        let Hs { conn, secrets: captured } = *hs;
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        // rustls keeps nothing we need after this: the kernel connection (~0.9 KB) is dropped;
        // key updates derive from the captured secrets instead.
        let (secrets, kernel) = match conn.dangerous_into_kernel_connection() {
            Ok(x) => x,
            Err(e) => {
                debug!("TLS: key hand-over failed: {e}");
                return Err(TlsFailure::Protocol);
            }
        };
        let tls13 = kernel.protocol_version() == ProtocolVersion::TLSv1_3;
        let limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        drop(kernel);
        let both = captured.server.zip(captured.client);
        let Some(rec) = RecordLayer::new(tls13, (secrets.tx.0, &secrets.tx.1), (secrets.rx.0, &secrets.rx.1), both)
        else {
            debug!("TLS: negotiated an AEAD the record layer does not implement");
            return Err(TlsFailure::Protocol);
        };
        m.tls_handshake(tls13, resumed);
        // A margin below the limit: a flush may seal several records past the check.
        if tls13 && !rec.can_update() {
            debug!("TLS 1.3: traffic secrets not captured: a key update will close this connection");
        }
        self.state = State::Open(Box::new(Open { rec, limit: limit.saturating_sub(1 << 16) }));
        Ok((d, got, true, peer_closed))
    }

    /// Keeps `bytes` (a partial record) in the carry buffer.
    fn keep_cipher(&mut self, pool: &mut Pool, bytes: &[u8]) -> bool {
        if bytes.len() > MAX_RECORD {
            return false;
        }
        let c = self.carry.get_or_insert_with(|| pool.get());
        c[MAX_RECORD..MAX_RECORD + bytes.len()].copy_from_slice(bytes);
        self.cipher = bytes.len() as u16;
        true
    }

    /// Keeps `bytes` (plaintext the caller did not ask for) in the carry buffer.
    fn keep_plain(&mut self, pool: &mut Pool, bytes: &[u8]) -> bool {
        if bytes.len() > MAX_RECORD {
            return false;
        }
        let c = self.carry.get_or_insert_with(|| pool.get());
        c[..bytes.len()].copy_from_slice(bytes);
        self.plain = bytes.len() as u16;
        true
    }

    /// Returns the carry buffer once it carries nothing.
    fn give_back(&mut self, pool: &mut Pool) {
        if self.plain == 0 && self.cipher == 0 {
            if let Some(b) = self.carry.take() {
                pool.put(b);
            }
        }
    }
}

/// Encodes rustls' pending handshake output at the end of `out`.
fn encode(enc: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let mut size = 4096;
    loop {
        out.resize(start + size, 0);
        match enc.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return true;
            }
            Err(EncodeError::InsufficientSize(s)) if s.required_size > size => size = s.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(start);
                return true;
            }
            Err(_) => {
                out.truncate(start);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memsock::MemSocket;
    use crate::tls::config::TlsFiles;
    use rustls::pki_types::ServerName;
    use std::io::Write;

    const LO: usize = 160;

    /// A server session and a rustls client with the handshake done over an in-memory socket.
    struct Pair {
        tls: Tls,
        slot: u32,
        sock: MemSocket,
        client: rustls::ClientConnection,
        rbuf: Vec<u8>,
        out: Vec<u8>,
        m: Metrics,
        _dir: TempDir,
    }

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pair(tls13: bool) -> Pair {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsecho-session-{}-{tls13}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
        let source = TlsSource::open(TlsFiles { cert: dir.join("c.pem"), key: dir.join("k.pem") }).unwrap();
        let mut tls = Tls::new(source, 1 << 17, 4);
        let slot = tls.start().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let v: &[&rustls::SupportedProtocolVersion] =
            if tls13 { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS12] };
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::config::provider())
            .with_protocol_versions(v)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut p = Pair {
            tls,
            slot,
            sock: MemSocket::new(),
            client,
            rbuf: vec![0; LO + Tls::MIN_READ_BUFFER],
            out: Vec::with_capacity(1 << 16),
            m: Metrics::default(),
            _dir: TempDir(dir),
        };
        for _ in 0..10 {
            let mut w = Vec::new();
            while p.client.wants_write() {
                p.client.write_tls(&mut w).unwrap();
            }
            p.sock.push_input(&w);
            let r = p.recv(4096);
            assert!(matches!(r.io, Io::Blocked | Io::Retry), "{r:?}");
            let out = std::mem::take(&mut p.out);
            if !out.is_empty() {
                p.client.read_tls(&mut &out[..]).unwrap();
                p.client.process_new_packets().unwrap();
            }
            if !p.client.is_handshaking() && p.tls.is_open(p.slot) {
                return p;
            }
        }
        panic!("handshake did not complete");
    }

    impl Pair {
        fn recv(&mut self, want: usize) -> Read {
            let p = self;
            p.tls.recv(p.slot, &p.sock, &mut p.rbuf, LO, want, &mut p.out, &mut p.m)
        }

        /// The client's records for `data`.
        fn records(&mut self, data: &[u8]) -> Vec<u8> {
            self.client.writer().write_all(data).unwrap();
            let mut w = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut w).unwrap();
            }
            w
        }

        /// Reads everything the socket holds, `want` bytes at a time, until it would block.
        fn drain(&mut self, want: usize) -> Vec<u8> {
            let mut got = Vec::new();
            loop {
                let r = self.recv(want);
                match r.io {
                    Io::Done(n) => {
                        assert!(n <= want, "recv gave {n} > {want}");
                        got.extend_from_slice(&self.rbuf[LO..LO + n]);
                    }
                    Io::Retry => {}
                    Io::Blocked => return got,
                    other => panic!("recv: {other:?} (failures {:?})", self.m.tls_failures),
                }
            }
        }
    }

    #[test]
    fn records_cut_at_every_byte_arrive_whole_and_in_order() {
        for tls13 in [true, false] {
            let mut p = pair(tls13);
            // One record (every cut: header, body, tag) and two records (cuts around the boundary
            // and, with a stride, everywhere), read with budgets small and large.
            for (i, len) in [100usize, 16_384 + 300].into_iter().enumerate() {
                let first = p.records(&vec![0; len]);
                let wire_len = first.len();
                p.sock.push_input(&first);
                assert_eq!(p.drain(65_536), vec![0; len]);
                // Every cut of a small record; for two records, every cut near the ends and the
                // record boundary, and every 97th elsewhere.
                let boundary = record_len(&first).unwrap();
                let near = |c: usize| [0, boundary, wire_len].iter().any(|&e| c.abs_diff(e) <= 24);
                let cuts: Vec<usize> = (0..=wire_len).filter(|&c| len < 1000 || near(c) || c % 97 == 0).collect();
                for cut in cuts {
                    let data: Vec<u8> = (0..len).map(|k| (k * 31 + cut + i) as u8).collect();
                    let wire = p.records(&data);
                    assert_eq!(wire.len(), wire_len);
                    p.sock.push_input(&wire[..cut]);
                    let mut got = p.drain(if cut % 2 == 0 { 7 } else { 65_536 });
                    p.sock.push_input(&wire[cut..]);
                    got.extend(p.drain(if cut % 3 == 0 { 4096 } else { 65_536 }));
                    assert_eq!(got.len(), data.len(), "tls13={tls13} len={len} cut={cut}");
                    assert!(got == data, "tls13={tls13} len={len} cut={cut}: bytes differ");
                }
            }
            assert_eq!(p.tls.pool.outstanding, 0, "a carry buffer is still held between messages");
        }
    }

    #[test]
    fn close_notify_after_data_delivers_the_data_then_the_end() {
        let mut p = pair(true);
        let mut wire = p.records(b"last words");
        p.client.send_close_notify();
        while p.client.wants_write() {
            p.client.write_tls(&mut wire).unwrap();
        }
        p.sock.push_input(&wire);
        // A read shorter than a record header may need another (`Retry`), like a short socket read.
        let next = |p: &mut Pair, want| loop {
            match p.recv(want).io {
                Io::Retry => continue,
                io => return io,
            }
        };
        assert_eq!(next(&mut p, 4), Io::Done(4));
        assert_eq!(&p.rbuf[LO..LO + 4], b"last");
        assert_eq!(next(&mut p, 100), Io::Done(6));
        assert_eq!(&p.rbuf[LO..LO + 6], b" words");
        assert_eq!(next(&mut p, 100), Io::End);
    }
}
