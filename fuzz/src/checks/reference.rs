//! Reference helpers written from the RFCs, shared by several targets: RFC 4648 base64 (encode and
//! strict decode), the RFC 6455 `Sec-WebSocket-Accept` value, how much of a byte string is valid
//! UTF-8 (`std::str::from_utf8` as the oracle) and HTTP comma-list tokens.
//!
//! Owns no check of the server's code (the targets do that) and imports nothing from the other
//! checks modules.

use sha1::{Digest, Sha1};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64 with padding.
pub fn b64_encode(input: &[u8]) -> String {
    let mut s = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Strict RFC 4648 base64: padded to a multiple of 4, padding only at the end, no non-zero unused
/// bits, no whitespace.
pub fn b64_decode_strict(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() & 3 != 0 {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &s[..s.len() - pad];
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for &c in body {
        let v = B64.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover bits must be zero, and the padding must match the leftover.
    if bits != 0 || (pad > 0 && nbits != 2 * pad) || (pad == 0 && nbits != 0) {
        return None;
    }
    Some(out)
}

/// `Sec-WebSocket-Accept` for a key, RFC 6455 §4.2.2.
pub fn expected_accept(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    b64_encode(sha.finalize().as_slice())
}

/// How many bytes of `b` are valid UTF-8, and whether what follows is an error (as opposed to an
/// incomplete code point at the end).
pub(super) fn utf8_state(b: &[u8]) -> (usize, bool) {
    match std::str::from_utf8(b) {
        Ok(_) => (b.len(), false),
        Err(e) => (e.valid_up_to(), e.error_len().is_some()),
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(super) fn trim_ws(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ws(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ws(*last) {
            break;
        }
        v = rest;
    }
    v
}

pub(super) fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',').any(|t| trim_ws(t).eq_ignore_ascii_case(token))
}
