//! Target 3, `utf8`: the incremental `Utf8Validator` fed in arbitrary pieces (and across a message
//! reset), every step checked against `std::str::from_utf8`.
//!
//! Owns the validator check only; text inside frames and sessions is `connection`. Imports `input`
//! and `reference`.

use wsecho::utf8::Utf8Validator;

use super::input::{cut_points, Bytes};
use super::reference::utf8_state;

/// Feeds `pieces` (which concatenate to `whole`) to `v` and checks every step against
/// `std::str::from_utf8`: each piece passes on exactly the bytes that are known valid and complete,
/// the validator is incomplete exactly when a code point is cut, and it fails on the first piece
/// that makes the text invalid (never earlier, never later).
fn check_utf8_message(v: &mut Utf8Validator, pieces: &[&[u8]], whole: &[u8]) {
    let mut out: Vec<u8> = Vec::new();
    let (mut fed, mut checked) = (0usize, 0usize);
    for p in pieces {
        let res = v.feed(p);
        fed += p.len();
        let (valid, definite) = utf8_state(&whole[checked..fed]);
        let valid_to = checked + valid;
        match res {
            Err(_) => {
                assert!(definite, "rejected text that is valid so far ({fed} bytes of {whole:02x?})");
                return;
            }
            Ok(f) => {
                assert!(!definite, "accepted invalid text at {valid_to} of {whole:02x?}");
                assert!(f.prefix_len <= 4 && f.body.start <= f.body.end && f.body.end <= p.len(), "{f:?}");
                let before = out.len();
                out.extend_from_slice(&f.prefix[..f.prefix_len as usize]);
                out.extend_from_slice(&p[f.body]);
                assert_eq!(out.len(), valid_to, "passed on {} bytes, {} are valid", out.len(), valid_to);
                assert_eq!(out[before..], whole[before..valid_to], "passed-on bytes differ");
                assert_eq!(v.is_incomplete(), valid_to < fed, "incomplete flag at {fed}");
                checked = valid_to;
            }
        }
    }
    let ok = !v.is_incomplete();
    assert_eq!(ok, std::str::from_utf8(whole).is_ok(), "verdict differs for {whole:02x?}");
    if ok {
        assert_eq!(out, whole);
    }
}

/// Target `utf8`: `[flags, cuts (u16 each), text]`; flags: bits 0-2 number of cuts, bits 3-5 chunk
/// size - 1, bit 6 feed in chunks of that size, bit 7 start a new message (reset) at the first cut.
pub fn check_utf8(data: &[u8]) {
    let mut r = Bytes::new(data);
    let flags = r.u8();
    let raw: Vec<u16> = (0..(flags & 7)).map(|_| r.u16()).collect();
    let text = r.rest();
    let cuts = cut_points(&raw, text.len());
    let chunk = if flags & 0x40 != 0 { ((flags >> 3) & 7) as usize + 1 } else { usize::MAX };
    // Pieces at the cuts (an empty piece where two cuts meet), each cut again into chunks.
    let mut pieces: Vec<(usize, &[u8])> = Vec::new();
    let mut start = 0;
    for c in cuts.iter().copied().chain(std::iter::once(text.len())) {
        if c == start {
            pieces.push((c, &text[c..c]));
        }
        let mut s = start;
        while s < c {
            let e = c.min(s.saturating_add(chunk));
            pieces.push((s, &text[s..e]));
            s = e;
        }
        start = c;
    }
    // Messages: one, or two split at the first cut with a reset in between.
    let boundary = if flags & 0x80 != 0 { cuts.first().copied() } else { None };
    let mut v = Utf8Validator::new();
    match boundary {
        None => {
            let ps: Vec<&[u8]> = pieces.iter().map(|p| p.1).collect();
            check_utf8_message(&mut v, &ps, text);
        }
        Some(b) => {
            let first: Vec<&[u8]> = pieces.iter().filter(|p| p.0 < b).map(|p| p.1).collect();
            let second: Vec<&[u8]> = pieces.iter().filter(|p| p.0 >= b).map(|p| p.1).collect();
            check_utf8_message(&mut v, &first, &text[..b]);
            v.reset();
            assert!(!v.is_incomplete());
            check_utf8_message(&mut v, &second, &text[b..]);
        }
    }
}
