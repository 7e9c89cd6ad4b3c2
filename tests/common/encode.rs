//! Client-side frame encoding: masked or unmasked frames with any RSV bits, opcode and length
//! encoding (`encode_frame`, `LenEnc`), the usual shorthands (`frame`, `text_frame`,
//! `close_frame`, ...), bare headers, fragmented messages and split points.
//!
//! Owns only byte building; it never touches a socket and never decodes what the server sends
//! (that is `decode`). Imports `protocol` (opcodes) and `rng` (masks).

use super::protocol::{OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT};
use super::rng::random_mask;

/// The mask most tests use.
pub const FIXED_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

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
