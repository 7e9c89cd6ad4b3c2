//! RFC 6455 §5.3 payload masking: XOR the payload with a 4-byte key.
//!
//! Owns only the XOR. It knows nothing about frames, buffers or sockets, never allocates, and can
//! resume in the middle of a payload: [`apply_mask`] returns the key rotated for the next byte, so a
//! payload that arrives over several reads is unmasked piece by piece (as in gobwas/ws `Cipher` with
//! an offset). The middle of the buffer is processed eight bytes at a time; the head and tail byte by
//! byte. Masking is an involution, so the same function masks and unmasks.

/// XORs `buf` with `mask`, where `mask[0]` applies to `buf[0]`, and returns the key to use for the
/// bytes that follow `buf` (the key rotated left by `buf.len() % 4`).
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) -> [u8; 4] {
    // The key as a little-endian word: its low byte applies to the next payload byte, and moving
    // on by one byte is a rotation by 8 bits (no array shuffling in the byte loops).
    let mut key = u32::from_le_bytes(mask);
    // Byte loop until the pointer is 8-byte aligned.
    let head = buf.as_ptr().align_offset(8).min(buf.len());
    let (front, rest) = buf.split_at_mut(head);
    for b in front.iter_mut() {
        *b ^= key as u8;
        key = key.rotate_right(8);
    }
    let k8 = u64::from(key) | (u64::from(key) << 32);
    let mut chunks = rest.chunks_exact_mut(8);
    for c in &mut chunks {
        // chunks_exact_mut yields exactly 8 bytes, so the conversion cannot fail.
        let arr: &mut [u8; 8] = c.try_into().expect("chunk of 8");
        *arr = (u64::from_le_bytes(*arr) ^ k8).to_le_bytes();
    }
    for b in chunks.into_remainder() {
        *b ^= key as u8;
        key = key.rotate_right(8);
    }
    key.to_le_bytes()
}

/// The obvious byte loop; the reference the fast path is tested against.
pub fn apply_mask_naive(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_for_every_alignment_and_length() {
        let masks = [[0x37, 0xfa, 0x21, 0x3d], [0, 0, 0, 0], [0xff, 1, 0x80, 7]];
        let mut storage = vec![0u8; 320];
        for mask in masks {
            for align in 0..8 {
                for len in 0..=300 {
                    for (i, b) in storage.iter_mut().enumerate() {
                        *b = (i * 31 + len) as u8;
                    }
                    let mut expect = storage[align..align + len].to_vec();
                    apply_mask_naive(&mut expect, mask);
                    apply_mask(&mut storage[align..align + len], mask);
                    assert_eq!(&storage[align..align + len], &expect[..], "align {align} len {len}");
                }
            }
        }
    }

    #[test]
    fn resumes_across_arbitrary_splits() {
        let mask = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..257u32).map(|i| (i * 7) as u8).collect();
        let mut expect = orig.clone();
        apply_mask_naive(&mut expect, mask);
        for split in 0..orig.len() {
            for split2 in split..orig.len().min(split + 9) {
                let mut v = orig.clone();
                let (a, rest) = v.split_at_mut(split);
                let (b, c) = rest.split_at_mut(split2 - split);
                let k = apply_mask(a, mask);
                let k = apply_mask(b, k);
                apply_mask(c, k);
                assert_eq!(v, expect, "split {split}/{split2}");
            }
        }
    }
}
