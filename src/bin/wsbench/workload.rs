//! The messages of echo and rate mode, built once per process and shared read-only by every event
//! loop: a few payload variants and, for each, `pipeline` copies of the message's masked frames
//! (one frame, or `--fragments` frames cut by `frag`'s rules) back to back, so that any number of
//! queued messages is one contiguous slice for a single `write`.
//!
//! Owns the bytes sent and what the echo is compared against (the payload, and each frame's
//! [`Shape`] for the fidelity check, computed, never stored). It does not send, receive or count
//! anything (see `client`), and soak mode does not use it (its messages are regenerated from
//! seeds, see `payload` and `soak_conn`). Allocates only in [`Workload::new`].

use crate::frag::{self, Shape};
use crate::wire::{self, Rng, MAX_HEADER};

/// One payload and `pipeline` copies of its masked message back to back.
pub struct Variant {
    /// The payload every echo is compared against.
    pub payload: Box<[u8]>,
    /// `pipeline` copies of the message's frames (headers + masked payload).
    pub frames: Box<[u8]>,
}

/// The messages of one run.
///
/// Connections use [`Variant`]s round robin (up to 8, fewer for large messages), so neighbouring
/// connections send different bytes and a server that mixes up its connections' buffers is caught.
pub struct Workload {
    pub variants: Vec<Variant>,
    /// Wire bytes of one message (all its frames).
    pub msg_len: usize,
    /// Opcode of the messages (text or binary).
    pub opcode: u8,
    /// Payload length.
    pub size: usize,
    /// Frames per message (`--fragments`), at least 1.
    pub nfrags: u32,
    /// Our close frame (code 1000), masked.
    pub close_frame: [u8; 8],
}

impl Workload {
    /// Builds the variants: messages of `size` bytes in `nfrags` near-equal frames. `pipeline` is
    /// the number of message copies per variant; 0 (idle) builds no frames. Text is printable
    /// ASCII, or with `mixed` soak's text (`payload::Gen`: about half the characters non-ASCII).
    pub fn new(size: usize, text: bool, mixed: bool, nfrags: u32, pipeline: usize, rng: &mut Rng) -> Workload {
        let opcode = if text { wire::OP_TEXT } else { wire::OP_BINARY };
        let nfrags = nfrags.max(1);
        let mut hdr = [0u8; MAX_HEADER];
        let msg_len: usize = (0..nfrags)
            .map(|k| {
                let len = frag::even_len(size as u64, nfrags, k);
                frag::masked_header(opcode, k, nfrags, len, [0; 4], &mut hdr) + len as usize
            })
            .sum();
        // Keep payloads + frames of all variants under ~64 MiB.
        let per_variant = msg_len.saturating_mul(pipeline).saturating_add(size).max(1);
        let nvar = ((64usize << 20) / per_variant).clamp(1, 8);
        let mut variants = Vec::with_capacity(nvar);
        let gen = (text && mixed).then(crate::payload::Gen::new);
        for _ in 0..nvar {
            let mut payload = vec![0u8; size].into_boxed_slice();
            let mut i = 0;
            if let Some(g) = &gen {
                g.fill(rng.next_u64(), size, true, 0, &mut payload);
                i = size;
            }
            while i < size {
                let r = rng.next_u64().to_le_bytes();
                for &b in r.iter() {
                    if i == size {
                        break;
                    }
                    // Text: printable ASCII (valid UTF-8); binary: every byte value.
                    payload[i] = if text { b' ' + (b % 95) } else { b };
                    i += 1;
                }
            }
            let mask = (rng.next_u64() as u32).to_le_bytes();
            let mut frames = vec![0u8; msg_len * pipeline].into_boxed_slice();
            if pipeline > 0 {
                let (mut at, mut off) = (0usize, 0usize);
                for k in 0..nfrags {
                    let len = frag::even_len(size as u64, nfrags, k) as usize;
                    let hl = frag::masked_header(opcode, k, nfrags, len as u64, mask, &mut hdr);
                    frames[at..at + hl].copy_from_slice(&hdr[..hl]);
                    let body = &mut frames[at + hl..at + hl + len];
                    body.copy_from_slice(&payload[off..off + len]);
                    wire::mask_bytes(body, mask);
                    at += hl + len;
                    off += len;
                }
                debug_assert_eq!((at, off), (msg_len, size));
                for k in 1..pipeline {
                    let (a, b) = frames.split_at_mut(k * msg_len);
                    b[..msg_len].copy_from_slice(&a[..msg_len]);
                }
            }
            variants.push(Variant { payload, frames });
        }
        let mut close = [0u8; 131];
        let mask = (rng.next_u64() as u32).to_le_bytes();
        let n = wire::masked_control_frame(wire::OP_CLOSE, &1000u16.to_be_bytes(), mask, &mut close);
        let mut close_frame = [0u8; 8];
        close_frame.copy_from_slice(&close[..n]);
        Workload { variants, msg_len, opcode, size, nfrags, close_frame }
    }

    /// Frame `k` of a message as sent, `None` past the last.
    #[inline]
    pub fn shape(&self, k: u32) -> Option<Shape> {
        (k < self.nfrags)
            .then(|| Shape::of(self.opcode, k, self.nfrags, frag::even_len(self.size as u64, self.nfrags, k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ() {
        let w = Workload::new(20, false, false, 1, 1, &mut Rng::new(1));
        assert_eq!(w.variants.len(), 8);
        for i in 0..8 {
            for j in i + 1..8 {
                assert_ne!(w.variants[i].payload, w.variants[j].payload, "{i} {j}");
            }
        }
        // 16 MiB, one in flight: payload + frame per variant, within the 64 MiB budget.
        let w = Workload::new(16 << 20, false, false, 1, 1, &mut Rng::new(1));
        assert_eq!(w.variants.len(), 1);
    }

    /// Parses the client frames of `bytes`: (fin, opcode, unmasked payload) each.
    fn parse(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (len, hl) = match bytes[1] & 0x7f {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
                n => (n as usize, 2),
            };
            assert!(bytes[1] & 0x80 != 0, "client frames are masked");
            let mask: [u8; 4] = bytes[hl..hl + 4].try_into().unwrap();
            let mut p = bytes[hl + 4..hl + 4 + len].to_vec();
            wire::mask_bytes(&mut p, mask);
            out.push((bytes[0] & 0x80 != 0, bytes[0] & 0x0f, p));
            bytes = &bytes[hl + 4 + len..];
        }
        out
    }

    #[test]
    fn mixed_text_is_utf8_with_multibyte_characters() {
        let w = Workload::new(16 << 10, true, true, 3, 2, &mut Rng::new(3));
        assert_eq!(w.opcode, wire::OP_TEXT);
        for v in &w.variants {
            let s = std::str::from_utf8(&v.payload).unwrap();
            assert_eq!(s.len(), 16 << 10);
            assert!(s.chars().filter(|c| !c.is_ascii()).count() * 4 > s.chars().count());
            let whole: Vec<u8> = parse(&v.frames)[..3].iter().flat_map(|f| f.2.clone()).collect();
            assert_eq!(&whole[..], &v.payload[..]);
        }
        assert_ne!(w.variants[0].payload, w.variants[1].payload);
    }

    #[test]
    fn workload_frames_unmask_to_payload() {
        let mut rng = Rng::new(7);
        for (size, text, nfrags) in
            [(0usize, false, 1u32), (20, true, 1), (1000, false, 3), (70000, false, 2), (5, true, 8)]
        {
            let w = Workload::new(size, text, false, nfrags, 3, &mut rng);
            assert!(!w.variants.is_empty());
            for v in &w.variants {
                assert_eq!(v.frames.len(), 3 * w.msg_len);
                let frames = parse(&v.frames);
                assert_eq!(frames.len(), 3 * nfrags as usize);
                for msg in frames.chunks(nfrags as usize) {
                    let mut whole = Vec::new();
                    for (k, (fin, op, p)) in msg.iter().enumerate() {
                        let want = w.shape(k as u32).unwrap();
                        assert_eq!(Shape { fin: *fin, opcode: *op, len: p.len() as u64 }, want);
                        whole.extend_from_slice(p);
                    }
                    assert_eq!(&whole[..], &v.payload[..]);
                }
                assert_eq!(w.shape(nfrags), None);
                if text {
                    assert!(std::str::from_utf8(&v.payload).is_ok());
                }
            }
        }
    }
}
