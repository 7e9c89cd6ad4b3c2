//! Strict decoding of server frames: `try_read_frame` / `read_frame` read one frame and panic on
//! any server-side framing violation (masked, non-minimal length, RSV set, reserved opcode,
//! fragmented or long control frame); `Frame`, `hex_preview` and the I/O error hints the other
//! helpers print.
//!
//! Owns one frame at a time; reassembling messages is `message`, the closing handshake is `close`.
//! Imports only `protocol`.

use std::fmt::Write as _;
use std::io::{self, ErrorKind, Read};

use super::protocol::{OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

/// Refuse to allocate more than this for one server frame (protects the test
/// process from a garbage length).
const MAX_SERVER_FRAME: u64 = 64 << 20;

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

pub(super) fn io_hint(e: &io::Error) -> &'static str {
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
    try_read_frame_ext(s, 0)
}

/// [`try_read_frame`] on a connection with a negotiated extension: the RSV bits in
/// `allowed_rsv` (e.g. `RSV1` for permessage-deflate) may be set; the others may not.
pub fn try_read_frame_ext(s: &mut impl Read, allowed_rsv: u8) -> io::Result<Frame> {
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
    assert_eq!(rsv & !allowed_rsv, 0, "server frame has RSV bits no negotiated extension allows: header {h:02x?}");
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
