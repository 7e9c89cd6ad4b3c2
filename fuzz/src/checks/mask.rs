//! Target 4, `mask`: `apply_mask` over arbitrary cuts and alignments, and `apply_mask_naive`,
//! against masking by index; the key rotation it returns; masking twice gives the input back.
//!
//! Owns the masking check only. Imports only `input`.

use wsecho::mask::{apply_mask, apply_mask_naive};

use super::input::{cut_points, Bytes};

/// The key rotated for the byte at offset `n`.
fn rotated(key: [u8; 4], n: usize) -> [u8; 4] {
    std::array::from_fn(|i| key[(n + i) % 4])
}

/// Target `mask`: `[key x4, flags, cuts (u16 each), payload]`; flags: bits 0-2 alignment offset,
/// bits 3-5 number of cuts, bit 6 grow the payload past 300 bytes (the word-at-a-time path).
pub fn check_mask(data: &[u8]) {
    let mut r = Bytes::new(data);
    let key = [r.u8(), r.u8(), r.u8(), r.u8()];
    let flags = r.u8();
    let off = (flags & 7) as usize;
    let raw: Vec<u16> = (0..((flags >> 3) & 7)).map(|_| r.u16()).collect();
    let mut payload = r.rest().to_vec();
    if flags & 0x40 != 0 {
        let seed = payload.clone();
        while payload.len() < 300 {
            let i = payload.len();
            payload.push(seed.get(i % seed.len().max(1)).copied().unwrap_or(i as u8) ^ (i as u8));
        }
    }
    let expect: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    let mut naive = payload.clone();
    apply_mask_naive(&mut naive, key);
    assert_eq!(naive, expect, "apply_mask_naive");
    let mut storage = vec![0u8; off + payload.len()];
    storage[off..].copy_from_slice(&payload);
    let buf = &mut storage[off..];
    let cuts = cut_points(&raw, buf.len());
    let (mut k, mut start) = (key, 0);
    for c in cuts.into_iter().chain(std::iter::once(buf.len())) {
        let next = apply_mask(&mut buf[start..c], k);
        assert_eq!(next, rotated(key, c), "key after {c} bytes");
        k = next;
        start = c;
    }
    assert_eq!(&buf[..], &expect[..], "offset {off}");
    // Masking is an involution.
    assert_eq!(apply_mask(buf, key), rotated(key, buf.len()));
    assert_eq!(&buf[..], &payload[..]);
}
