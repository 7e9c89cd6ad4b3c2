//! Shared black-box client used by the integration tests.
//!
//! Everything here is written from RFC 6455 directly and shares no code with
//! the server (only `Config` and `Reactor` are used, to start it): the HTTP
//! upgrade request and its checks, frame encoding (masked, unmasked, any
//! length encoding), a strict frame decoder (server frames must be unmasked,
//! minimally length-encoded, RSV clear, control frames unfragmented and at most
//! 125 bytes), message reassembly, and the closing-handshake checks. Every
//! socket has read and write timeouts so that a broken server fails a test
//! instead of hanging it.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use wsecho::config::Config;

/// Read/write timeout on every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The mask most tests use.
pub const FIXED_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Refuse to allocate more than this for one server frame (protects the test
/// process from a garbage length).
const MAX_SERVER_FRAME: u64 = 64 << 20;
/// Largest HTTP response head we are willing to read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const RSV1: u8 = 0b100;
pub const RSV2: u8 = 0b010;
pub const RSV3: u8 = 0b001;

// ---------------------------------------------------------------------------
// Server start-up
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Small deterministic randomness (no extra crates)
// ---------------------------------------------------------------------------

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeded PRNG (splitmix64) for reproducible test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }
}

static GLOBAL_RNG: AtomicU64 = AtomicU64::new(0x005E_ED0F_7E57);

/// A "random-ish" masking key; different on every call.
pub fn random_mask() -> [u8; 4] {
    let n = GLOBAL_RNG.fetch_add(1, Ordering::Relaxed);
    (splitmix64(n) as u32).to_le_bytes()
}

/// Exactly `n` bytes of valid UTF-8 mixing 1-, 2-, 3- and 4-byte code points.
pub fn utf8_text(n: usize, seed: u64) -> Vec<u8> {
    const CHARS: [char; 10] = ['a', 'Z', ' ', '~', 'é', 'ж', '€', '中', '😀', '\u{10FFFF}'];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 4);
    let mut buf = [0u8; 4];
    while out.len() < n {
        let c = CHARS[rng.below(CHARS.len() as u64) as usize];
        let enc = c.encode_utf8(&mut buf).as_bytes();
        if out.len() + enc.len() <= n {
            out.extend_from_slice(enc);
        } else {
            out.push(b'.');
        }
    }
    debug_assert!(std::str::from_utf8(&out).is_ok());
    out
}

/// `n` pseudo-random bytes.
pub fn binary_data(n: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

// ---------------------------------------------------------------------------
// Frame encoding (client side)
// ---------------------------------------------------------------------------

/// How the payload length is written in a frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenEnc {
    /// The minimal encoding (what a correct client sends).
    Minimal,
    /// 7-bit length (0..=125).
    Short,
    /// 126 + 16-bit length.
    Medium,
    /// 127 + 64-bit length.
    Long,
}

fn push_len(out: &mut Vec<u8>, mask_bit: u8, len: u64, enc: LenEnc) {
    let enc = match enc {
        LenEnc::Minimal if len < 126 => LenEnc::Short,
        LenEnc::Minimal if len <= 0xFFFF => LenEnc::Medium,
        LenEnc::Minimal => LenEnc::Long,
        e => e,
    };
    match enc {
        LenEnc::Short => {
            assert!(len < 126, "7-bit length cannot encode {len}");
            out.push(mask_bit | len as u8);
        }
        LenEnc::Medium => {
            assert!(len <= 0xFFFF, "16-bit length cannot encode {len}");
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        LenEnc::Long => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        LenEnc::Minimal => unreachable!(),
    }
}

/// Encodes one frame with full control: `rsv` is the 3-bit RSV1..3 field
/// (`RSV1 = 0b100`), `mask` `None` sends it unmasked, `enc` picks the length
/// encoding.
pub fn encode_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, enc: LenEnc) -> Vec<u8> {
    assert!(rsv < 8 && opcode < 16);
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(((fin as u8) << 7) | (rsv << 4) | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    push_len(&mut out, mask_bit, payload.len() as u64, enc);
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            let start = out.len();
            out.extend_from_slice(payload);
            for (i, b) in out[start..].iter_mut().enumerate() {
                *b ^= m[i & 3];
            }
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame with the minimal length encoding.
pub fn masked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    encode_frame(fin, rsv, opcode, payload, Some(mask), LenEnc::Minimal)
}

/// An unmasked frame (illegal from a client).
pub fn unmasked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, rsv, opcode, payload, None, LenEnc::Minimal)
}

/// Only the header of a masked frame announcing `len` payload bytes (written
/// raw with `enc`, so e.g. a 64-bit length with the top bit set is possible).
pub fn masked_header(fin: bool, opcode: u8, len: u64, enc: LenEnc, mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![((fin as u8) << 7) | opcode];
    push_len(&mut out, 0x80, len, enc);
    out.extend_from_slice(&mask);
    out
}

/// A complete (FIN) masked data/control frame with a random mask.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked_frame(true, 0, opcode, payload, random_mask())
}

pub fn text_frame(s: &str) -> Vec<u8> {
    frame(OP_TEXT, s.as_bytes())
}

pub fn binary_frame(b: &[u8]) -> Vec<u8> {
    frame(OP_BINARY, b)
}

/// A masked close frame; `code: None` sends an empty payload.
pub fn close_frame(code: Option<u16>, reason: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    if let Some(c) = code {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(reason);
    frame(OP_CLOSE, &p)
}

/// The frames of a fragmented message: first frame carries `opcode`, the rest
/// are continuations, only the last has FIN. `parts` may contain empty parts.
pub fn fragments(opcode: u8, parts: &[&[u8]]) -> Vec<Vec<u8>> {
    assert!(!parts.is_empty());
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let op = if i == 0 { opcode } else { OP_CONT };
            masked_frame(i + 1 == parts.len(), 0, op, p, random_mask())
        })
        .collect()
}

/// Splits `data` at the given (sorted, in-range) offsets.
pub fn split_at_offsets<'a>(data: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut prev = 0;
    for &o in offsets {
        assert!(o >= prev && o <= data.len());
        parts.push(&data[prev..o]);
        prev = o;
    }
    parts.push(&data[prev..]);
    parts
}

// ---------------------------------------------------------------------------
// Frame decoding (server side frames, checked strictly)
// ---------------------------------------------------------------------------

#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Frame{{fin:{} rsv:{:03b} op:{:#x} len:{} payload:{}}}",
            self.fin,
            self.rsv,
            self.opcode,
            self.payload.len(),
            hex_preview(&self.payload, 48)
        )
    }
}

/// Hex of the first `max` bytes, with the total length if truncated.
pub fn hex_preview(b: &[u8], max: usize) -> String {
    let mut s = String::new();
    for x in b.iter().take(max) {
        let _ = write!(s, "{x:02x}");
    }
    if b.len() > max {
        let _ = write!(s, "..(+{} bytes)", b.len() - max);
    }
    if s.is_empty() {
        s.push_str("<empty>");
    }
    s
}

fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "nothing arrived before the read timeout",
        ErrorKind::UnexpectedEof => "the server closed the TCP connection",
        ErrorKind::ConnectionReset => "the server reset the TCP connection",
        _ => "I/O error",
    }
}

/// Reads one server frame, checking the server-side framing rules. I/O errors
/// (timeout, EOF) are returned; framing violations panic.
pub fn try_read_frame(s: &mut impl Read) -> io::Result<Frame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let fin = h[0] & 0x80 != 0;
    let rsv = (h[0] >> 4) & 7;
    let opcode = h[0] & 0x0F;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            let l = u16::from_be_bytes(b) as u64;
            assert!(l >= 126, "server used a non-minimal 16-bit length {l} (RFC 6455 §5.2), header {h:02x?} {b:02x?}");
            l
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            let l = u64::from_be_bytes(b);
            assert!(l >> 63 == 0, "server frame 64-bit length has the top bit set: {b:02x?}");
            assert!(l > 0xFFFF, "server used a non-minimal 64-bit length {l} (RFC 6455 §5.2)");
            l
        }
        l => l as u64,
    };
    assert!(!masked, "server sent a masked frame (RFC 6455 §5.1 forbids it): header {h:02x?}");
    assert_eq!(rsv, 0, "server frame has RSV bits set without a negotiated extension: header {h:02x?}");
    assert!(
        matches!(opcode, OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG),
        "server frame has reserved opcode {opcode:#x}: header {h:02x?}"
    );
    if opcode >= 8 {
        assert!(fin, "server sent a fragmented control frame: header {h:02x?}");
        assert!(len <= 125, "server sent a control frame with {len} > 125 payload bytes");
    }
    assert!(len <= MAX_SERVER_FRAME, "server frame announces {len} bytes, more than this test ever sends");
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    Ok(Frame { fin, rsv, opcode, payload })
}

/// Reads one server frame; panics (with a reason) on timeout or EOF.
pub fn read_frame(s: &mut impl Read) -> Frame {
    try_read_frame(s).unwrap_or_else(|e| panic!("reading a server frame failed: {} ({e})", io_hint(&e)))
}

/// A reassembled data message plus the control frames seen while reading it.
#[derive(Debug)]
pub struct Message {
    pub opcode: u8,
    pub data: Vec<u8>,
    /// Ping/pong frames received before or between the message's fragments.
    pub controls: Vec<Frame>,
    pub fragments: usize,
}

/// Reads frames until one complete data message has been reassembled.
/// Control frames (ping/pong) are collected; a close frame panics.
pub fn read_message_with_controls(s: &mut impl Read) -> Message {
    let mut controls = Vec::new();
    let mut opcode: Option<u8> = None;
    let mut data = Vec::new();
    let mut fragments = 0usize;
    loop {
        let f = read_frame(s);
        match f.opcode {
            OP_CLOSE => panic!(
                "expected a data message but the server sent a close frame (code {:?}): {f:?}; \
                 {} bytes of the message received before it",
                f.close_code(),
                data.len()
            ),
            OP_PING | OP_PONG => {
                controls.push(f);
                assert!(controls.len() < 1000, "server sends endless control frames");
            }
            OP_CONT => {
                assert!(opcode.is_some(), "server sent a continuation frame with no message started: {f:?}");
                fragments += 1;
                data.extend_from_slice(&f.payload);
                if f.fin {
                    break;
                }
            }
            _ => {
                assert!(opcode.is_none(), "server started a new data frame {f:?} inside a fragmented message");
                opcode = Some(f.opcode);
                fragments += 1;
                data.extend_from_slice(&f.payload);
                if f.fin {
                    break;
                }
            }
        }
    }
    Message { opcode: opcode.unwrap(), data, controls, fragments }
}

/// Reads one complete data message (reassembling fragments) and returns its
/// opcode and content. Panics on control frames, close, timeout or EOF.
pub fn read_message(s: &mut impl Read) -> (u8, Vec<u8>) {
    let m = read_message_with_controls(s);
    assert!(m.controls.is_empty(), "unexpected control frames around an echoed message: {:?}", m.controls);
    (m.opcode, m.data)
}

/// Byte comparison that prints a compact diff for large payloads.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let from = first.saturating_sub(8);
    panic!(
        "{what}: got {} bytes, expected {}; first difference at offset {first}: got {} expected {}",
        got.len(),
        want.len(),
        hex_preview(&got[from.min(got.len())..], 32),
        hex_preview(&want[from.min(want.len())..], 32),
    );
}

/// Sends `payload` as one masked frame and checks the echoed message.
#[track_caller]
pub fn echo(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    s.write_all(&masked_frame(true, 0, opcode, payload, random_mask())).expect("write frame");
    let (op, data) = read_message(s);
    assert_eq!(op, opcode, "echo opcode (payload {})", hex_preview(payload, 16));
    assert_bytes_eq(&data, payload, "echoed message");
}

/// Writes `bytes` on the calling thread while another thread reads one
/// message, so large messages cannot deadlock on TCP buffers. Returns the
/// message read.
pub fn write_and_read_message(s: &mut TcpStream, bytes: &[u8]) -> (u8, Vec<u8>) {
    let mut reader = s.try_clone().expect("clone stream");
    let h = std::thread::spawn(move || read_message(&mut reader));
    let w = s.write_all(bytes);
    let res = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    w.expect("write large frame");
    res
}

/// Like `echo`, but safe for large payloads (separate reader thread).
#[track_caller]
pub fn echo_large(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let f = masked_frame(true, 0, opcode, payload, random_mask());
    let (op, data) = write_and_read_message(s, &f);
    assert_eq!(op, opcode, "echo opcode for a {}-byte message", payload.len());
    assert_bytes_eq(&data, payload, "echoed large message");
}

/// Writes each byte with its own `write` call (TCP_NODELAY is on).
pub fn write_bytewise(s: &mut TcpStream, bytes: &[u8]) {
    for b in bytes {
        s.write_all(std::slice::from_ref(b)).expect("byte write");
        s.flush().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------

fn read_until_close(s: &mut TcpStream, code: u16) -> (Vec<Frame>, Frame) {
    let mut before = Vec::new();
    loop {
        let f = match try_read_frame(s) {
            Ok(f) => f,
            Err(e) => panic!(
                "expected a close frame with code {code}, but {} ({e}); frames received before: {before:?}",
                io_hint(&e)
            ),
        };
        if f.opcode == OP_CLOSE {
            assert!(f.payload.len() >= 2, "expected close code {code}, got a close frame without a status code: {f:?}");
            let got = f.close_code().unwrap();
            assert_eq!(got, code, "close code: expected {code}, got {got}; close frame {f:?}");
            assert!(std::str::from_utf8(&f.payload[2..]).is_ok(), "server close reason is not valid UTF-8: {f:?}");
            return (before, f);
        }
        before.push(f);
        assert!(before.len() < 100_000, "no close frame after 100000 frames");
    }
}

/// Asserts that the server closes the TCP connection: a read returns 0 (FIN)
/// or ECONNRESET within the socket timeout, with no further bytes.
#[track_caller]
pub fn assert_tcp_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected the server to close TCP, but it sent {n} more bytes: {}", hex_preview(&buf[..n], 64)),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {}
        Err(e) => panic!("expected the server to close TCP, but {} ({e})", io_hint(&e)),
    }
}

/// For a close the SERVER starts (protocol errors): reads frames until a close
/// frame, asserts its code, answers with a close frame as a conforming client
/// does (RFC 6455 §5.5.1; the write may fail if the server already closed),
/// then asserts the server closes TCP. Returns the frames that arrived before
/// the close frame (e.g. echoes of earlier, valid fragments).
#[track_caller]
pub fn expect_close(s: &mut TcpStream, code: u16) -> Vec<Frame> {
    let (before, _) = read_until_close(s, code);
    let _ = s.write_all(&close_frame(Some(code), b""));
    assert_tcp_closed(s);
    before
}

/// `expect_close`, and nothing at all may have been echoed before the close.
#[track_caller]
pub fn expect_close_no_echo(s: &mut TcpStream, code: u16) {
    let before = expect_close(s, code);
    assert!(before.is_empty(), "server sent frames before closing with {code}: {before:?}");
}

/// For a close the CLIENT started: reads the server's close reply, asserts its
/// code, and asserts the server then closes TCP (without any answer from us).
/// Returns the frames that arrived before the close reply.
#[track_caller]
pub fn expect_close_reply(s: &mut TcpStream, code: u16) -> Vec<Frame> {
    let (before, _) = read_until_close(s, code);
    assert_tcp_closed(s);
    before
}

/// Waits (up to `limit`) for the server to close TCP, collecting any bytes it
/// sends meanwhile. Returns the time it took and those bytes.
pub fn time_until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        assert!(
            !left.is_zero(),
            "server did not close the connection within {limit:?}; received {}",
            hex_preview(&got, 64)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (t0.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return (t0.elapsed(), got)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("unexpected read error while waiting for close: {e}"),
        }
    }
}

/// After the client half-closed (shutdown(Write)), the server must end the
/// connection: optionally a close frame (never with 1005/1006/1015, which
/// must not be sent), then FIN or RST within the socket timeout.
#[track_caller]
pub fn expect_end_after_client_fin(s: &mut TcpStream) {
    match try_read_frame(s) {
        Ok(f) => {
            assert_eq!(f.opcode, OP_CLOSE, "unexpected frame after the client's FIN: {f:?}");
            assert!(!matches!(f.close_code(), Some(1005 | 1006 | 1015)), "close code that must never be sent: {f:?}");
            assert_tcp_closed(s);
        }
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset),
            "the server did not close the connection after the client's FIN: {} ({e})",
            io_hint(&e)
        ),
    }
}

/// Waits (up to `limit`) until the server has really let go of the
/// connection, not just half-closed it. A server that lingers after its FIN
/// (reading and discarding, RFC 6455 §7.1.1) is invisible to a client that
/// only reads, so this keeps trickling bytes of a never-completed data frame
/// (harmless: a closing server must discard data) until the server's kernel
/// answers with RST, which makes a write or read fail. Call it only after the
/// server's close frame / EOF has been seen. Returns the elapsed time.
pub fn time_until_dropped(s: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let gone = |e: &io::Error| {
        matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
    };
    // A masked binary frame announcing 4096 bytes; its payload is trickled.
    let header = masked_header(true, OP_BINARY, 4096, LenEnc::Medium, FIXED_MASK);
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 4096];
    let mut probes = 0usize;
    loop {
        let elapsed = t0.elapsed();
        assert!(elapsed < limit, "server still holds the connection open after {elapsed:?}");
        let w = if probes == 0 { s.write(&header) } else { s.write(b"p") };
        probes += 1;
        assert!(probes < 4000, "too many probes");
        match w {
            Err(e) if gone(&e) => return t0.elapsed(),
            Err(e) => panic!("unexpected write error while probing: {e}"),
            Ok(_) => {}
        }
        match s.read(&mut buf) {
            // FIN already seen: keep probing at a gentle pace.
            Ok(0) => std::thread::sleep(Duration::from_millis(20)),
            Ok(n) => panic!("server sent {n} bytes after closing: {}", hex_preview(&buf[..n], 64)),
            Err(e) if gone(&e) => return t0.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("unexpected read error while probing: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP upgrade
// ---------------------------------------------------------------------------

/// The Sec-WebSocket-Accept value for `key` (RFC 6455 §4.2.2 step 5.4).
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh Sec-WebSocket-Key (base64 of 16 random bytes).
pub fn new_key() -> String {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&splitmix64(GLOBAL_RNG.fetch_add(1, Ordering::Relaxed)).to_le_bytes());
    b.extend_from_slice(&splitmix64(GLOBAL_RNG.fetch_add(1, Ordering::Relaxed)).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// An HTTP request head, valid upgrade by default, editable for error tests.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A valid upgrade request for `addr` with key `key`.
    pub fn upgrade(addr: SocketAddr, key: &str) -> Request {
        Request {
            method: "GET".into(),
            target: "/chat".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), addr.to_string()),
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), "Upgrade".into()),
                ("Sec-WebSocket-Key".into(), key.into()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ],
        }
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
    pub fn target(mut self, t: &str) -> Self {
        self.target = t.into();
        self
    }
    /// Replaces the header of that name (case-insensitive) or appends it.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(h) => h.1 = value.into(),
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }
    /// Appends a header even if one of that name exists.
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Removes every header of that name (case-insensitive).
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
    /// Renames a header, keeping its value and position.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        for h in self.headers.iter_mut().filter(|(n, _)| n.eq_ignore_ascii_case(from)) {
            h.0 = to.into();
        }
        self
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// A parsed HTTP response head.
#[derive(Clone, Debug)]
pub struct Response {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Whether any instance of the header has `token` in its comma-separated
    /// list (ASCII case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Reads an HTTP response head byte by byte (so no frame bytes that follow
/// it are consumed) and parses it.
pub fn read_response_head(s: &mut TcpStream) -> Response {
    let mut raw = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => raw.push(b[0]),
            Ok(_) => panic!(
                "server closed the connection in the middle of the HTTP response head; got {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Err(e) => panic!(
                "reading the HTTP response head failed: {} ({e}); got so far {:?}",
                io_hint(&e),
                String::from_utf8_lossy(&raw)
            ),
        }
        assert!(raw.len() <= MAX_RESPONSE_HEAD, "HTTP response head larger than {MAX_RESPONSE_HEAD} bytes");
    }
    let text = std::str::from_utf8(&raw).unwrap_or_else(|_| panic!("response head is not UTF-8: {raw:02x?}"));
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    assert!(version.starts_with("HTTP/1."), "bad status line {status_line:?}");
    let status: u16 =
        parts.next().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("malformed response header line {l:?}"));
        assert!(!n.is_empty() && !n.contains(' '), "malformed response header name in {l:?}");
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Response { status_line, status, headers }
}

/// Checks a successful upgrade response for `key`.
#[track_caller]
pub fn check_upgrade_response(r: &Response, key: &str) {
    assert_eq!(r.status_line, "HTTP/1.1 101 Switching Protocols", "status line; headers {:?}", r.headers);
    let up = r.header("Upgrade").unwrap_or_else(|| panic!("101 without Upgrade header: {r:?}"));
    assert!(up.eq_ignore_ascii_case("websocket"), "Upgrade header {up:?}");
    assert!(r.has_token("Connection", "Upgrade"), "Connection header must contain Upgrade: {r:?}");
    let want = accept_for(key);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(want.as_str()), "Sec-WebSocket-Accept for key {key:?}");
    // Nothing was requested, so nothing may be selected (RFC 6455 §4.1 steps 5-6).
    assert!(r.header("Sec-WebSocket-Extensions").is_none(), "server selected an extension: {r:?}");
    assert!(r.header("Sec-WebSocket-Protocol").is_none(), "server selected a subprotocol: {r:?}");
}

/// Connects and performs a valid upgrade; returns the open WebSocket stream.
pub fn handshake(addr: SocketAddr) -> TcpStream {
    let key = new_key();
    handshake_with(addr, &Request::upgrade(addr, &key), &key)
}

/// Performs a valid upgrade on an already connected stream.
pub fn upgrade_stream(mut s: TcpStream, addr: SocketAddr) -> TcpStream {
    let key = new_key();
    s.write_all(&Request::upgrade(addr, &key).to_bytes()).expect("write upgrade request");
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, &key);
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

/// Connects, sends `req` (which must be a valid upgrade for `key`) and checks
/// the 101 response.
pub fn handshake_with(addr: SocketAddr, req: &Request, key: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(&req.to_bytes()).expect("write upgrade request");
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, key);
    s
}

/// Reads to EOF (or ECONNRESET) within the socket timeout; panics if the
/// server keeps the connection open.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => return out,
            Err(e) => panic!(
                "server did not close the connection: {} ({e}); received {:?}",
                io_hint(&e),
                String::from_utf8_lossy(&out)
            ),
        }
        assert!(out.len() < 1 << 20, "server keeps sending");
    }
}

/// Sends `raw`, then checks for an HTTP error response with `status`: a
/// status line, a non-empty plain-text body (matching Content-Length if
/// given) and then the connection closed by the server. Returns the response
/// head and body.
#[track_caller]
pub fn expect_http_error(addr: SocketAddr, raw: &[u8], status: u16) -> (Response, String) {
    let mut s = connect(addr);
    // The server may answer and close before reading everything; a failed
    // write is fine as long as the response arrives.
    let _ = s.write_all(raw);
    let r = read_response_head(&mut s);
    assert_eq!(
        r.status,
        status,
        "expected HTTP {status}, got {:?} (headers {:?}) for request {:?}",
        r.status_line,
        r.headers,
        String::from_utf8_lossy(&raw[..raw.len().min(300)])
    );
    assert!(r.status_line.starts_with("HTTP/1.1 "), "status line {:?}", r.status_line);
    let body = read_to_close(&mut s);
    if let Some(cl) = r.header("Content-Length") {
        let cl: usize = cl.parse().unwrap_or_else(|_| panic!("bad Content-Length {cl:?}"));
        assert_eq!(body.len(), cl, "body length vs Content-Length; body {:?}", String::from_utf8_lossy(&body));
    }
    if let Some(ct) = r.header("Content-Type") {
        assert!(ct.to_ascii_lowercase().starts_with("text/plain"), "Content-Type {ct:?}, expected text/plain");
    }
    assert!(r.header("Transfer-Encoding").is_none(), "unexpected Transfer-Encoding: {r:?}");
    assert!(r.header("Sec-WebSocket-Accept").is_none(), "error response carries Sec-WebSocket-Accept: {r:?}");
    let body = String::from_utf8(body).unwrap_or_else(|e| panic!("error body is not text: {e}"));
    assert!(!body.trim().is_empty(), "HTTP {status} response has an empty body");
    assert!(
        body.chars().all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t'),
        "error body is not plain text: {body:?}"
    );
    (r, body)
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
