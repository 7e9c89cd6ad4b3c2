//! The streaming permessage-deflate codec against other implementations and hostile input.
//!
//! Round trips cut the compressed input at every position (small messages) or at random positions
//! (big ones) and use small output chunks, so every resume path runs; data compressed by flate2
//! and by miniz_oxide (an independent DEFLATE implementation) is inflated, and our output is
//! inflated by both. Corrupt input (random bytes, every truncation, data after a final block) must
//! be an error value; a truncated message must never come back as a different message.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use wsecho::deflate::codec::{CodecError, DeflateParams, Deflater, Inflater, MIN_DEFLATE_OUT, TAIL};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let words = ["{\"id\":", "\"name\":\"", "héllo", "wörld", ",", "}", "数据", " ", "42", "true", "null", "\n"];
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(words[r.below(words.len())].as_bytes());
        if r.below(5) == 0 {
            v.push(b'a' + r.below(26) as u8);
        }
    }
    v.truncate(len);
    v
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

/// Inflates `pieces` as one message with an output chunk of `chunk` bytes.
fn inflate(inf: &mut Inflater, pieces: &[&[u8]], chunk: usize, max: u64) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; chunk];
    let mut msg = Vec::new();
    for piece in pieces {
        let mut pos = 0;
        loop {
            let p = inf.inflate(&piece[pos..], &mut out, max)?;
            assert!(p.produced <= chunk);
            pos += p.consumed;
            msg.extend_from_slice(&out[..p.produced]);
            if !p.out_full {
                assert_eq!(pos, piece.len(), "not out_full means all input consumed");
                break;
            }
        }
    }
    loop {
        let p = inf.finish(&mut out, max)?;
        msg.extend_from_slice(&out[..p.produced]);
        if !p.out_full {
            assert_eq!(inf.message_len(), 0, "ready for the next message");
            return Ok(msg);
        }
    }
}

/// Deflates `pieces` as one message with an output chunk of `chunk` bytes.
fn deflate(def: &mut Deflater, pieces: &[&[u8]], chunk: usize) -> Vec<u8> {
    let mut out = vec![0u8; chunk];
    let mut comp = Vec::new();
    for piece in pieces {
        let mut pos = 0;
        loop {
            let p = def.compress(&piece[pos..], &mut out).unwrap();
            pos += p.consumed;
            comp.extend_from_slice(&out[..p.produced]);
            if !p.out_full {
                assert_eq!(pos, piece.len());
                break;
            }
        }
    }
    loop {
        let p = def.finish(&mut out).unwrap();
        comp.extend_from_slice(&out[..p.produced]);
        if !p.out_full {
            return comp;
        }
    }
}

/// Random cut points of `data` into 1..=n pieces.
fn split<'a>(data: &'a [u8], r: &mut Rng, n: usize) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = (0..r.below(n)).map(|_| r.below(data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        pieces.push(&data[at..c]);
        at = c;
    }
    pieces.push(&data[at..]);
    pieces
}

/// flate2 (zlib-rs) raw deflate with SYNC_FLUSH, tail stripped: what a zlib client sends.
fn flate2_message(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; data.len() * 2 + 64];
    let (i0, o0) = (c.total_in(), c.total_out());
    c.compress(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(c.total_in() - i0, data.len() as u64);
    let n = (c.total_out() - o0) as usize;
    assert!(out[..n].ends_with(&TAIL));
    out.truncate(n - 4);
    out
}

fn flate2_inflate(d: &mut Decompress, comp: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len + 64];
    let mut input = comp.to_vec();
    input.extend_from_slice(&TAIL);
    let o0 = d.total_out();
    d.decompress(&input, &mut out, FlushDecompress::Sync).unwrap();
    out.truncate((d.total_out() - o0) as usize);
    out
}

/// miniz_oxide: a DEFLATE implementation that shares no code with zlib-rs.
fn miniz_message(data: &[u8], level: u8) -> Vec<u8> {
    let mut comp = miniz_oxide::deflate::compress_to_vec(data, level);
    // compress_to_vec ends with a final block; make it an RFC 7692 message instead by appending the
    // §7.2.3.4 0x00 (a final block, then the header of an empty stored block).
    comp.push(0x00);
    comp
}

#[test]
fn small_messages_at_every_split_position() {
    let mut def = Deflater::new(DeflateParams::new(15, true)).unwrap();
    let mut inf = Inflater::new(true).unwrap();
    for len in [0, 1, 5, 37, 200, 600] {
        let data = text(len, len as u64 + 7);
        for chunk in [MIN_DEFLATE_OUT, 64, 4096] {
            let comp = deflate(&mut def, &[&data], chunk);
            // Independent of the chunk size, except that a flush ending exactly at the end of a
            // chunk costs one more empty stored block (zlib cannot tell that it was done): the
            // first flush's tail stays in and the second flush's block adds 0x00.
            let reference = deflate(&mut def, &[&data], 4096);
            let extra = [&reference[..], &[0x00, 0x00, 0xff, 0xff, 0x00][..]].concat();
            assert!(comp == reference || comp == extra, "len {len} chunk {chunk}");
            for cut in 0..=comp.len() {
                for out_chunk in [1, 3, 64, 4096] {
                    let got = inflate(&mut inf, &[&comp[..cut], &comp[cut..]], out_chunk, u64::MAX).unwrap();
                    assert_eq!(got, data, "len {len} cut {cut} out {out_chunk}");
                }
            }
            // Input fed in pieces too: every split of the plain text.
            for cut in (0..=data.len()).step_by(7) {
                let c2 = deflate(&mut def, &[&data[..cut], &data[cut..]], chunk);
                assert_eq!(inflate(&mut inf, &[&c2], 4096, u64::MAX).unwrap(), data);
            }
        }
    }
}

#[test]
fn big_messages_with_random_splits() {
    let mut r = Rng(0xfeed);
    let mut inf = Inflater::new(true).unwrap();
    for (i, data) in [text(1 << 20, 1), noise(300_000, 2), vec![0u8; 3 << 20], text(100_000, 3)].iter().enumerate() {
        for level in [1, 6] {
            for window_bits in [8, 9, 12, 15] {
                let mut def = Deflater::new(DeflateParams { level, ..DeflateParams::new(window_bits, true) }).unwrap();
                let chunk = 16 + r.below(70_000);
                let comp = deflate(&mut def, &split(data, &mut r, 8), chunk);
                let out_chunk = 1 + r.below(20_000);
                let got = inflate(&mut inf, &split(&comp, &mut r, 12), out_chunk, u64::MAX).unwrap();
                assert!(got == *data, "input {i} level {level} window {window_bits}");
                // A zlib inflater limited to the window really accepts it.
                let mut d = Decompress::new_with_window_bits(false, window_bits.max(9));
                assert!(flate2_inflate(&mut d, &comp, data.len()) == *data, "window {window_bits} honoured");
            }
        }
    }
}

#[test]
fn huffman_only_for_window_8_has_no_back_references() {
    // Window 8: a 256-byte window. Our stream must inflate with any window, e.g. miniz's fixed
    // 32 KiB one and flate2 at 9, and contain no match at all: a repeated 300-byte pattern is not
    // compressed below the Huffman-coded size.
    let pattern = text(300, 9);
    let data: Vec<u8> = pattern.iter().cycle().take(30_000).copied().collect();
    let mut def = Deflater::new(DeflateParams::new(8, true)).unwrap();
    let comp = deflate(&mut def, &[&data], 4096);
    let mut d = Decompress::new_with_window_bits(false, 9);
    assert!(flate2_inflate(&mut d, &comp, data.len()) == data);
    assert!(comp.len() > data.len() / 2, "no LZ77 matches: {} -> {}", data.len(), comp.len());
    let mut def15 = Deflater::new(DeflateParams::new(15, true)).unwrap();
    assert!(deflate(&mut def15, &[&data], 4096).len() < 1000, "window 15 does use matches");
}

#[test]
fn other_implementations_interoperate() {
    let mut inf = Inflater::new(true).unwrap();
    let mut ctx_inf = Inflater::new(false).unwrap();
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut d = Decompress::new_with_window_bits(false, 15);
    let mut ours = Deflater::new(DeflateParams::new(15, false)).unwrap();
    for (i, len) in [0usize, 1, 100, 5000, 70_000].iter().enumerate() {
        let data = text(*len, i as u64 + 100);
        // flate2 with context takeover, message after message.
        let comp = flate2_message(&mut c, &data);
        assert_eq!(inflate(&mut ctx_inf, &[&comp], 1000, u64::MAX).unwrap(), data);
        // miniz_oxide, final block + 0x00 (§7.2.3.4).
        let mz = miniz_message(&data, 6);
        assert_eq!(inflate(&mut inf, &[&mz], 1000, u64::MAX).unwrap(), data);
        // Ours with context takeover, inflated by flate2 message after message.
        let comp = deflate(&mut ours, &[&data], 1000);
        assert_eq!(flate2_inflate(&mut d, &comp, data.len()), data);
        // And by miniz_oxide (one message, fresh state).
        let mut fresh = Deflater::new(DeflateParams::new(15, true)).unwrap();
        let mut one = deflate(&mut fresh, &[&data], 1000);
        one.extend_from_slice(&TAIL);
        let mut state = miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
        let mut out = vec![0u8; data.len() + 16];
        let res = miniz_oxide::inflate::stream::inflate(&mut state, &one, &mut out, miniz_oxide::MZFlush::Sync);
        assert!(res.status.is_ok());
        assert_eq!(&out[..res.bytes_written], &data[..]);
    }
}

#[test]
fn random_bytes_are_errors_or_prefix_free_text_never_panics() {
    let mut inf = Inflater::new(true).unwrap();
    let mut r = Rng(0xbad);
    let mut errors = 0;
    for i in 0..20_000 {
        let data = noise(r.below(200), i);
        match inflate(&mut inf, &split(&data, &mut r, 4), 1 + r.below(300), 10_000) {
            Ok(m) => assert!(m.len() <= 10_000),
            Err(e) => {
                errors += 1;
                assert!(matches!(
                    e,
                    CodecError::Corrupt | CodecError::Truncated | CodecError::AfterFinalBlock | CodecError::TooBig
                ));
                inf.reset();
            }
        }
    }
    assert!(errors > 19_000, "random bytes are almost never a valid message: {errors}");
}

#[test]
fn truncated_messages_are_errors() {
    let mut inf = Inflater::new(true).unwrap();
    for (len, level) in [(5, 1), (300, 1), (300, 6), (5000, 6)] {
        let data = text(len, 77);
        let mut d = Deflater::new(DeflateParams { level, ..DeflateParams::new(15, true) }).unwrap();
        let comp = deflate(&mut d, &[&data], 4096);
        for cut in 1..comp.len() {
            match inflate(&mut inf, &[&comp[..cut]], 4096, u64::MAX) {
                Err(_) => inf.reset(),
                Ok(m) => panic!("len {len} cut {cut}/{}: truncated message accepted ({} bytes)", comp.len(), m.len()),
            }
        }
    }
}

#[test]
fn a_final_block_followed_by_data_is_an_error() {
    let mut inf = Inflater::new(true).unwrap();
    let hello_final = miniz_oxide::deflate::compress_to_vec(b"Hello", 6);
    let mut fresh = Deflater::new(DeflateParams::new(15, true)).unwrap();
    for more in [&b" world"[..], &b"x"[..], &[0u8; 100][..]] {
        let mut msg = hello_final.clone();
        msg.extend_from_slice(&deflate(&mut fresh, &[more], 64));
        assert_eq!(inflate(&mut inf, &[&msg], 64, u64::MAX), Err(CodecError::AfterFinalBlock));
        inf.reset();
        // Split anywhere, same answer.
        for cut in 0..msg.len() {
            assert_eq!(inflate(&mut inf, &[&msg[..cut], &msg[cut..]], 3, u64::MAX), Err(CodecError::AfterFinalBlock));
            inf.reset();
        }
    }
    // Only empty blocks after it (the RFC's form) are fine, and the state is reusable.
    let mut ok = hello_final.clone();
    ok.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff, 0x00]);
    assert_eq!(inflate(&mut inf, &[&ok], 64, u64::MAX).unwrap(), b"Hello");
}

#[test]
fn limit_counts_inflated_bytes_exactly() {
    let data = text(50_000, 5);
    let mut def = Deflater::new(DeflateParams::new(15, true)).unwrap();
    let comp = deflate(&mut def, &[&data], 4096);
    let mut inf = Inflater::new(true).unwrap();
    for max in [0u64, 1, 4095, 4096, 49_999] {
        for chunk in [1, 100, 4096, 65536] {
            let mut out = vec![0u8; chunk];
            let mut total = 0u64;
            let mut pos = 0;
            let err = loop {
                match inf.inflate(&comp[pos..], &mut out, max) {
                    Ok(p) => {
                        total += p.produced as u64;
                        pos += p.consumed;
                        assert!(total <= max);
                        if !p.out_full {
                            break inf.finish(&mut out, max).err();
                        }
                    }
                    Err(e) => break Some(e),
                }
            };
            assert_eq!(err, Some(CodecError::TooBig), "max {max} chunk {chunk}");
            assert_eq!(total, max, "stops at exactly max bytes");
            inf.reset();
        }
    }
    assert_eq!(inflate(&mut inf, &[&comp], 999, 50_000).unwrap(), data);
}
