//! The messages of echo and rate mode, built once per process and shared read-only by every event
//! loop: a few payload variants and, for each, `pipeline` copies of the message's masked frames
//! (one frame, or `--fragments` frames cut by `frag`'s rules) back to back, so that any number of
//! queued messages is one contiguous slice for a single `write`. With `--deflate` each payload is
//! compressed here, once (raw deflate, level 6, Z_SYNC_FLUSH, tail stripped: RFC 7692 §7.2.1),
//! and its frames carry the compressed bytes with RSV1 on the first: sending then costs the client
//! no more than sending plain bytes, so the server's work is what a run measures.
//!
//! Owns the bytes sent and what the echo is compared against (the payload, the compressed bytes,
//! and each frame's [`Shape`] for the fidelity check, computed, never stored), and the payload
//! generators of `--text-kind ascii` and `json` (`mixed` is soak's, see `payload`). It does not
//! send, receive, inflate or count anything (see `client`), and soak mode does not use it (its
//! messages are regenerated from seeds, see `payload` and `soak_conn`). Allocates only in
//! [`Workload::new`].

use flate2::{Compress, Compression, FlushCompress};

use crate::cli::TextKind;
use crate::frag::{self, Shape};
use crate::wire::{self, Rng, MAX_HEADER};

/// zlib's default level, which browsers (Chromium) and uWebSockets compress with.
pub const DEFLATE_LEVEL: u32 = 6;

/// One payload and `pipeline` copies of its masked message back to back.
pub struct Variant {
    /// The payload every echo is compared against.
    pub payload: Box<[u8]>,
    /// `--deflate`: the payload compressed (what the frames carry); empty otherwise.
    pub deflated: Box<[u8]>,
    /// Wire bytes of one message (all its frames); with `--deflate` it differs between variants.
    pub msg_len: usize,
    /// `pipeline` copies of the message's frames (headers + masked payload).
    pub frames: Box<[u8]>,
}

/// The messages of one run.
///
/// Connections use [`Variant`]s round robin (up to 8, fewer for large messages), so neighbouring
/// connections send different bytes and a server that mixes up its connections' buffers is caught.
pub struct Workload {
    pub variants: Vec<Variant>,
    /// Opcode of the messages (text or binary).
    pub opcode: u8,
    /// Payload length.
    pub size: usize,
    /// Frames per message (`--fragments`), at least 1.
    pub nfrags: u32,
    /// Messages are sent compressed (`--deflate`).
    pub deflate: bool,
    /// Our close frame (code 1000), masked.
    pub close_frame: [u8; 8],
}

impl Workload {
    /// Builds the variants: messages of `size` bytes in `nfrags` near-equal frames (with
    /// `deflate`, the compressed bytes are cut). `pipeline` is the number of message copies per
    /// variant; 0 (idle) builds no frames. `text`: text messages of that kind (printable ASCII,
    /// soak's mixed UTF-8 from `payload::Gen`, or JSON-like records), else binary (every byte
    /// value).
    pub fn new(
        size: usize,
        text: Option<TextKind>,
        deflate: bool,
        nfrags: u32,
        pipeline: usize,
        rng: &mut Rng,
    ) -> Workload {
        let opcode = if text.is_some() { wire::OP_TEXT } else { wire::OP_BINARY };
        let nfrags = nfrags.max(1);
        // Keep payloads + frames of all variants under ~64 MiB (compressed messages are smaller,
        // or at most a few bytes per 16 KiB longer).
        let plain_len = message_len(size, nfrags);
        let per_variant = plain_len.saturating_mul(pipeline).saturating_add(size).max(1);
        let nvar = ((64usize << 20) / per_variant).clamp(1, 8);
        let mut variants = Vec::with_capacity(nvar);
        let gen = (text == Some(TextKind::Mixed)).then(crate::payload::Gen::new);
        let mut zs = deflate.then(|| Compress::new(Compression::new(DEFLATE_LEVEL), false));
        for _ in 0..nvar {
            let mut payload = vec![0u8; size].into_boxed_slice();
            match (text, &gen) {
                (Some(TextKind::Mixed), Some(g)) => g.fill(rng.next_u64(), size, true, 0, &mut payload),
                (Some(TextKind::Json), _) => json_text(rng, &mut payload),
                (kind, _) => random_bytes(rng, kind.is_some(), &mut payload),
            }
            let deflated = match zs.as_mut() {
                Some(z) => deflate_message(z, &payload),
                None => Box::default(),
            };
            let sent: &[u8] = if deflate { &deflated } else { &payload };
            let msg_len = message_len(sent.len(), nfrags);
            let mask = (rng.next_u64() as u32).to_le_bytes();
            let mut frames = vec![0u8; msg_len * pipeline].into_boxed_slice();
            if pipeline > 0 {
                let mut hdr = [0u8; MAX_HEADER];
                let (mut at, mut off) = (0usize, 0usize);
                for k in 0..nfrags {
                    let len = frag::even_len(sent.len() as u64, nfrags, k) as usize;
                    let hl = frag::masked_header(opcode, k, nfrags, len as u64, mask, &mut hdr);
                    if deflate && k == 0 {
                        hdr[0] |= 0x40; // RSV1: the message is compressed (RFC 7692 §6).
                    }
                    frames[at..at + hl].copy_from_slice(&hdr[..hl]);
                    let body = &mut frames[at + hl..at + hl + len];
                    body.copy_from_slice(&sent[off..off + len]);
                    wire::mask_bytes(body, mask);
                    at += hl + len;
                    off += len;
                }
                debug_assert_eq!((at, off), (msg_len, sent.len()));
                for k in 1..pipeline {
                    let (a, b) = frames.split_at_mut(k * msg_len);
                    b[..msg_len].copy_from_slice(&a[..msg_len]);
                }
            }
            variants.push(Variant { payload, deflated, msg_len, frames });
        }
        let mut close = [0u8; 131];
        let mask = (rng.next_u64() as u32).to_le_bytes();
        let n = wire::masked_control_frame(wire::OP_CLOSE, &1000u16.to_be_bytes(), mask, &mut close);
        let mut close_frame = [0u8; 8];
        close_frame.copy_from_slice(&close[..n]);
        Workload { variants, opcode, size, nfrags, deflate, close_frame }
    }

    /// The payload bytes the frames of variant `v` carry: compressed with `--deflate`.
    #[inline]
    pub fn sent<'w>(&self, v: &'w Variant) -> &'w [u8] {
        if self.deflate {
            &v.deflated
        } else {
            &v.payload
        }
    }

    /// Frame `k` of a message of variant `v` as sent, `None` past the last.
    #[inline]
    pub fn shape(&self, v: &Variant, k: u32) -> Option<Shape> {
        let len = self.sent(v).len() as u64;
        (k < self.nfrags).then(|| Shape::of(self.opcode, k, self.nfrags, frag::even_len(len, self.nfrags, k)))
    }
}

/// Wire bytes of a message whose frames carry `len` bytes in `nfrags` near-equal frames.
fn message_len(len: usize, nfrags: u32) -> usize {
    let mut hdr = [0u8; MAX_HEADER];
    (0..nfrags)
        .map(|k| {
            let l = frag::even_len(len as u64, nfrags, k);
            frag::masked_header(wire::OP_BINARY, k, nfrags, l, [0; 4], &mut hdr) + l as usize
        })
        .sum()
}

/// Fills `out` with random bytes: printable ASCII (`text`, valid UTF-8) or every byte value.
fn random_bytes(rng: &mut Rng, text: bool, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let r = rng.next_u64().to_le_bytes();
        for (d, &b) in chunk.iter_mut().zip(r.iter()) {
            *d = if text { b' ' + (b % 95) } else { b };
        }
    }
}

/// Fills `out` with JSON-like text: an array of small order records (the same keys each time, a
/// few values drawn from short lists, a running id, a few random digits), cut at exactly
/// `out.len()` bytes, so not valid JSON at the cut. About 3:1 with deflate level 6 at 1 KiB (2.9:1
/// at level 1), more for longer messages (repeated keys): like the JSON of real APIs, unlike
/// random ASCII (about 1.2:1). Plain ASCII, so valid UTF-8 at any cut.
fn json_text(rng: &mut Rng, out: &mut [u8]) {
    const NAMES: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    const TYPES: [&str; 4] = ["order.created", "order.updated", "order.shipped", "payment.captured"];
    const STATUS: [&str; 4] = ["pending", "active", "shipped", "delivered"];
    const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];
    const TAGS: [&str; 4] = ["priority", "standard", "gift", "express"];
    use std::io::Write as _;
    let mut text = Vec::with_capacity(out.len() + 512);
    text.push(b'[');
    let mut id = 1000 + rng.next_u64() % 100_000;
    while text.len() < out.len() {
        let mut pick = |n: u64| (rng.next_u64() % n) as usize;
        let name = NAMES[pick(8)];
        let _ = write!(
            text,
            "{{\"id\":{id},\"type\":\"{}\",\"user\":{{\"name\":\"{name}\",\"email\":\"{name}@example.com\"}},\
             \"items\":[{{\"sku\":\"SKU-{:03}\",\"qty\":{},\"price\":{}.99}}],\"status\":\"{}\",\
             \"region\":\"{}\",\"ts\":\"2026-11-28T08:41:{:02}Z\",\"tags\":[\"{}\"],\"ok\":{}}},",
            TYPES[pick(4)],
            pick(20) * 50,
            1 + pick(8),
            1 + pick(99),
            STATUS[pick(4)],
            REGIONS[pick(3)],
            pick(60),
            TAGS[pick(4)],
            pick(2) == 0,
        );
        id += 1;
    }
    out.copy_from_slice(&text[..out.len()]);
}

/// `payload` as one compressed message of a connection without context takeover: raw deflate
/// from a reset state, `Z_SYNC_FLUSH`, the final `00 00 ff ff` stripped (RFC 7692 §7.2.1; an
/// empty payload becomes `00`, §7.2.3.6).
fn deflate_message(z: &mut Compress, payload: &[u8]) -> Box<[u8]> {
    z.reset();
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 16 + 64);
    let mut pos = 0;
    loop {
        let before = z.total_in();
        z.compress_vec(&payload[pos..], &mut out, FlushCompress::Sync).expect("deflate into a growing buffer");
        pos += (z.total_in() - before) as usize;
        // Done when all input is in and the flush stopped short of the end of the buffer.
        if pos == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "Z_SYNC_FLUSH ends with an empty stored block");
    out.truncate(out.len() - 4);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ() {
        let w = Workload::new(20, None, false, 1, 1, &mut Rng::new(1));
        assert_eq!(w.variants.len(), 8);
        for i in 0..8 {
            for j in i + 1..8 {
                assert_ne!(w.variants[i].payload, w.variants[j].payload, "{i} {j}");
            }
        }
        // 16 MiB, one in flight: payload + frame per variant, within the 64 MiB budget.
        let w = Workload::new(16 << 20, None, false, 1, 1, &mut Rng::new(1));
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
            // RSV1 only on the first frame of a compressed message; RSV2/3 never.
            assert_eq!(bytes[0] & 0x30, 0);
            bytes = &bytes[hl + 4 + len..];
        }
        out
    }

    #[test]
    fn mixed_text_is_utf8_with_multibyte_characters() {
        let w = Workload::new(16 << 10, Some(TextKind::Mixed), false, 3, 2, &mut Rng::new(3));
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
        for (size, text, nfrags) in [
            (0usize, None, 1u32),
            (20, Some(TextKind::Ascii), 1),
            (1000, None, 3),
            (70000, None, 2),
            (5, Some(TextKind::Ascii), 8),
            (1024, Some(TextKind::Json), 1),
            (3000, Some(TextKind::Json), 2),
        ] {
            for deflate in [false, true] {
                let w = Workload::new(size, text, deflate, nfrags, 3, &mut rng);
                assert!(!w.variants.is_empty());
                for v in &w.variants {
                    assert_eq!(v.frames.len(), 3 * v.msg_len);
                    let frames = parse(&v.frames);
                    assert_eq!(frames.len(), 3 * nfrags as usize);
                    for (m, msg) in frames.chunks(nfrags as usize).enumerate() {
                        let mut whole = Vec::new();
                        for (k, (fin, op, p)) in msg.iter().enumerate() {
                            let want = w.shape(v, k as u32).unwrap();
                            assert_eq!(Shape { fin: *fin, opcode: *op, len: p.len() as u64 }, want);
                            whole.extend_from_slice(p);
                        }
                        if deflate {
                            let first = m * v.msg_len;
                            assert_eq!(v.frames[first] & 0x40, 0x40, "RSV1 on the first frame");
                            assert_eq!(&whole[..], &v.deflated[..]);
                            assert_eq!(inflate(&whole), &v.payload[..]);
                        } else {
                            assert_eq!(&whole[..], &v.payload[..]);
                        }
                    }
                    assert_eq!(w.shape(v, nfrags), None);
                    if text.is_some() {
                        assert!(std::str::from_utf8(&v.payload).is_ok());
                    }
                }
            }
        }
    }

    /// Inflates one compressed message (the tail appended), with flate2's one-shot API.
    fn inflate(msg: &[u8]) -> Vec<u8> {
        let mut d = flate2::Decompress::new(false);
        let mut input = msg.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
        assert_eq!(d.total_in() as usize, input.len());
        out
    }

    #[test]
    fn json_text_compresses_about_three_to_one() {
        let w = Workload::new(1024, Some(TextKind::Json), true, 1, 1, &mut Rng::new(11));
        for v in &w.variants {
            assert!(std::str::from_utf8(&v.payload).unwrap().starts_with("[{\"id\":"));
            let ratio = 1024.0 / v.deflated.len() as f64;
            assert!((2.6..4.0).contains(&ratio), "1 KiB JSON to {} B", v.deflated.len());
        }
        assert_ne!(w.variants[0].payload, w.variants[1].payload);
        // Random ASCII hardly compresses; an empty message is one byte (RFC 7692 §7.2.3.6).
        let w = Workload::new(1024, Some(TextKind::Ascii), true, 1, 1, &mut Rng::new(11));
        assert!(w.variants[0].deflated.len() > 800);
        let w = Workload::new(0, None, true, 1, 1, &mut Rng::new(11));
        assert_eq!(&w.variants[0].deflated[..], &[0u8]);
    }
}
