//! RFC 6455 §5.2 frame headers: decode from bytes, encode into a stack array.
//!
//! Owns the wire layout of a frame header (FIN, RSV1-3, opcode, MASK, 7/16/64-bit length, masking
//! key) and the structural checks that need nothing but the header: reserved bits without a
//! negotiated extension, reserved opcodes, control frames that are fragmented or longer than 125
//! bytes, and a 64-bit length with the most significant bit set. It does not own payloads, masking
//! (see `mask`), role rules such as "client frames must be masked" (see `conn`), the error type
//! (see `error`) or any I/O. Nothing here allocates.

pub use crate::error::ProtocolError;

/// The longest possible header: 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// Longest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Frame opcode (RFC 6455 §5.2). Reserved values are rejected by [`decode_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation = 0x0,
    /// The first frame of a text message.
    Text = 0x1,
    /// The first frame of a binary message.
    Binary = 0x2,
    /// Close (§5.5.1).
    Close = 0x8,
    /// Ping (§5.5.2).
    Ping = 0x9,
    /// Pong (§5.5.3).
    Pong = 0xA,
}

impl OpCode {
    /// Maps the low nibble of the first header byte; `None` for the reserved opcodes 3-7 and 11-15.
    #[inline]
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong are control frames (§5.5).
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// RSV1-3 as the three low bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
}

/// Decodes the header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a header (read more and call again), or the
/// header and its length in bytes. Errors are the structural checks listed in the module doc.
#[inline]
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    decode_header_with(buf, 0)
}

/// RSV1, the bit permessage-deflate gives meaning to (RFC 7692 §6), in [`FrameHeader::rsv`] form.
pub const RSV1: u8 = 0b100;

/// [`decode_header`] for a connection with a negotiated extension: the RSV bits in `allowed_rsv`
/// (e.g. [`RSV1`]) are returned in [`FrameHeader::rsv`] instead of being an error. Which frames
/// may carry them is the extension's rule, checked by the caller.
#[inline]
pub fn decode_header_with(buf: &[u8], allowed_rsv: u8) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    if rsv & !allowed_rsv != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode)?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if u64::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let hlen = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < hlen {
        // Check what can be checked early: a 64-bit length with the top bit set.
        if ext == 8 && buf.len() > 2 && buf[2] & 0x80 != 0 {
            return Err(ProtocolError::LengthOverflow);
        }
        return Ok(None);
    }
    let len = match ext {
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let v = u64::from_be_bytes(b);
            if v >> 63 != 0 {
                return Err(ProtocolError::LengthOverflow);
            }
            v
        }
        _ => u64::from(len7),
    };
    let mask = if masked {
        let m = 2 + ext;
        Some([buf[m], buf[m + 1], buf[m + 2], buf[m + 3]])
    } else {
        None
    };
    Ok(Some((FrameHeader { fin, rsv, opcode, mask, len }, hlen)))
}

/// Length of the header [`encode_header`] writes for these arguments.
#[inline]
pub fn header_len(masked: bool, len: u64) -> usize {
    let base = if len < 126 {
        2
    } else if len <= 0xffff {
        4
    } else {
        10
    };
    base + if masked { 4 } else { 0 }
}

/// Encodes a header (RSV bits clear, minimal length encoding) into `out` and returns its length.
///
/// `out` must hold at least [`header_len`] bytes; [`MAX_HEADER_LEN`] always suffices.
#[inline]
pub fn encode_header(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64, out: &mut [u8]) -> usize {
    out[0] = (if fin { 0x80 } else { 0 }) | opcode as u8;
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len < 126 {
        out[1] = mbit | len as u8;
        2
    } else if len <= 0xffff {
        out[1] = mbit | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = mbit | 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_class() {
        for &len in &[0u64, 1, 125, 126, 127, 0xffff, 0x10000, 1 << 40, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for (fin, op) in [(true, OpCode::Text), (false, OpCode::Binary), (true, OpCode::Continuation)] {
                    let mut out = [0u8; MAX_HEADER_LEN];
                    let n = encode_header(fin, op, mask, len, &mut out);
                    assert_eq!(n, header_len(mask.is_some(), len));
                    let (h, hl) = decode_header(&out[..n]).unwrap().unwrap();
                    assert_eq!(hl, n);
                    assert_eq!(h, FrameHeader { fin, rsv: 0, opcode: op, mask, len });
                    // Every strict prefix is incomplete, never an error.
                    for cut in 0..n {
                        assert_eq!(decode_header(&out[..cut]), Ok(None), "len {len} cut {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, hl) = decode_header(&masked).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, hl), (true, OpCode::Text, 5, 6));
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        // 256 bytes binary message in a single unmasked frame.
        let (h, hl) = decode_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.opcode, h.len, hl, h.mask), (OpCode::Binary, 256, 4, None));
        // 64 KiB.
        let b = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(decode_header(&b).unwrap().unwrap().0.len, 65536);
    }

    #[test]
    fn rejects_structural_errors() {
        for rsv in 1..8u8 {
            assert_eq!(decode_header(&[0x81 | rsv << 4, 0x80]), Err(ProtocolError::ReservedBits));
        }
        for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            assert_eq!(decode_header(&[0x80 | op, 0x80]), Err(ProtocolError::ReservedOpcode));
        }
        assert_eq!(decode_header(&[0x09, 0x80]), Err(ProtocolError::FragmentedControl));
        assert_eq!(decode_header(&[0x89, 0xFE, 0, 126]), Err(ProtocolError::ControlTooLong));
        assert_eq!(decode_header(&[0x88, 0xFE]), Err(ProtocolError::ControlTooLong));
        assert_eq!(decode_header(&[0x82, 0xFF, 0x80]), Err(ProtocolError::LengthOverflow));
        let b = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(decode_header(&b), Err(ProtocolError::LengthOverflow));
    }
}
