//! RFC 6455 §5.5.1 and §7.4 close frames: status codes, payload validation, the reply we send.
//!
//! Owns which codes a peer may send (1000-1003, 1007-1011, 3000-4999), the checks on a received
//! close payload (length 1 is invalid, the reason must be UTF-8) and the encoding of the close
//! frames the server sends into a caller's buffer, and which close code each [`ProtocolError`]
//! fails a connection with. It does not decide when to close (see `conn`)
//! and does no I/O. Nothing here allocates.

use crate::error::ProtocolError;
use crate::frame::{encode_header, OpCode};

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: going away (server shutdown, idle timeout).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1007: data inconsistent with the message type (invalid UTF-8).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: unexpected server condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether a peer may send this code in a close frame: 1000-1003, 1007-1011, 3000-4999.
    /// 1004-1006 and 1015 are reserved or "MUST NOT be set"; 1012-1014 are not in RFC 6455.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

impl ProtocolError {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::MessageTooBig => CloseCode::TOO_BIG,
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompressedData => CloseCode::INVALID_DATA,
            ProtocolError::Internal => CloseCode::INTERNAL_ERROR,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// Validates a received (unmasked) close payload and returns the code to echo back:
/// the peer's code, or 1000 when the payload is empty.
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseCode, ProtocolError> {
    match payload.len() {
        0 => Ok(CloseCode::NORMAL),
        1 => Err(ProtocolError::BadCloseFrame),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_sendable() {
                return Err(ProtocolError::BadCloseFrame);
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            Ok(code)
        }
    }
}

/// Longest close frame [`encode_close`] writes: 2-byte header, 2-byte code, 121-byte reason.
pub const MAX_CLOSE_FRAME: usize = 2 + 125;

/// Writes an unmasked close frame with `code` and `reason` (truncated to fit 125 bytes) into `out`
/// and returns its length. `out` must hold [`MAX_CLOSE_FRAME`] bytes or `4 + reason.len()`.
pub fn encode_close(code: CloseCode, reason: &str, out: &mut [u8]) -> usize {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let n = encode_header(true, OpCode::Close, None, 2 + reason.len() as u64, out);
    out[n..n + 2].copy_from_slice(&code.0.to_be_bytes());
    out[n + 2..n + 2 + reason.len()].copy_from_slice(reason);
    n + 2 + reason.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes() {
        let ok: Vec<u16> = (0..6000).filter(|&c| CloseCode(c).is_sendable()).collect();
        assert_eq!(ok.len(), 4 + 5 + 2000);
        for c in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(c).is_sendable(), "{c}");
        }
    }

    #[test]
    fn payload_rules() {
        assert_eq!(parse_close_payload(&[]), Ok(CloseCode::NORMAL));
        assert_eq!(parse_close_payload(&[3]), Err(ProtocolError::BadCloseFrame));
        assert_eq!(parse_close_payload(&[0x0f, 0xa0]), Ok(CloseCode(4000)));
        assert_eq!(parse_close_payload(&[0x03, 0xed]), Err(ProtocolError::BadCloseFrame)); // 1005
        assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(CloseCode(1000)));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn encodes_frame() {
        let mut out = [0u8; MAX_CLOSE_FRAME];
        let n = encode_close(CloseCode(1001), "bye", &mut out);
        assert_eq!(&out[..n], b"\x88\x05\x03\xe9bye");
        let long = "x".repeat(300);
        let n = encode_close(CloseCode(1000), &long, &mut out);
        assert_eq!(n, MAX_CLOSE_FRAME);
        assert_eq!(out[1], 125);
    }
}
