//! Incremental UTF-8 validation for text messages that arrive in pieces (RFC 6455 §8.1).
//!
//! Owns the at most three bytes of a code point that is cut by a frame or read boundary. A piece is
//! validated as soon as it arrives; an invalid sequence is reported at once (even when it is only
//! the start of a code point that can never complete, such as `E0 80`), and the trailing bytes of
//! an incomplete code point are held back so that the caller echoes only whole code points. It does
//! not own message state or buffers; it never allocates.
//!
//! The byte-level check is `simdutf8::compat` (AVX2 or SSE4.2, picked once at run time through its
//! default `std` feature; simdutf8 0.1 has no AVX-512 kernel; below 64 bytes it is
//! `std::str::from_utf8` itself). On failure it reruns std's decoder from the last code point
//! boundary before the failing block, so `valid_up_to` and `error_len()` are std's exactly, and
//! `error_len() == None` tells "incomplete" from "invalid" (the tests below check this against std
//! at every split). Pieces under 1 KiB first try `is_ascii` (cheaper than the SIMD call on short
//! input); from 1 KiB on, simdutf8's own ASCII path is faster.
//!
//! `cargo bench --bench codec -- utf8` (quiet VM): non-ASCII 16 KiB text in ~0.8 µs (~20 GiB/s)
//! whatever the text; std's decoder took 6 µs (2.5 GiB/s) on a repeated pattern, which its
//! branches learn, and 60–100 µs (~0.2 GiB/s) on random text, as in real traffic.

/// Text did not validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// The outcome of [`Utf8Validator::feed`]: what may be passed on, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fed {
    /// A code point completed from carried bytes plus the head of the input (`prefix_len` bytes).
    pub prefix: [u8; 4],
    /// Valid bytes in `prefix`.
    pub prefix_len: u8,
    /// Range of the input that is valid and complete and follows `prefix`.
    pub body: core::ops::Range<usize>,
}

/// Carries an incomplete code point between pieces of one text message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    carry: [u8; 3],
    carry_len: u8,
}

/// From this many bytes on, skip the `is_ascii` pre-check: simdutf8's AVX2 ASCII path is faster
/// (below it, `is_ascii` wins: the SIMD call costs a few ns of dispatch). Measured with the
/// `utf8/ascii` benches: about equal at 512 B, SIMD 1.2–1.6x faster from 1 KiB.
const SIMD_ASCII_MIN: usize = 1024;

/// Validates `bytes`: `Err((valid_up_to, definite))`, where `definite` is false when the bytes
/// after `valid_up_to` are the start of a code point that may still complete (std's
/// `error_len() == None`). Never inlined: only non-ASCII or long pieces get here, and inlining the
/// SIMD dispatch into the caller costs every message (binary too) a few instructions of register
/// saves in `Connection::echo_piece`.
#[inline(never)]
fn check(bytes: &[u8]) -> Result<(), (usize, bool)> {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err((e.valid_up_to(), e.error_len().is_some())),
    }
}

/// Length of the code point that starts with `lead` (only called on validated leads).
#[inline]
fn width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at a code point boundary.
    pub const fn new() -> Self {
        Utf8Validator { carry: [0; 3], carry_len: 0 }
    }

    /// Whether an incomplete code point is being carried.
    #[inline]
    pub fn is_incomplete(&self) -> bool {
        self.carry_len != 0
    }

    /// Forgets any carried bytes (start of a new message).
    #[inline]
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }

    /// Validates `input` as the continuation of the text seen so far.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, InvalidUtf8> {
        let mut fed = Fed { prefix: [0; 4], prefix_len: 0, body: 0..input.len() };
        // Fast path: nothing carried, shorter than SIMD_ASCII_MIN and all ASCII (the common case
        // for short text messages; `is_ascii` is word-at-a-time and cheaper than the SIMD call on
        // short input). The first two tests as one `or` and one branch: 1 instruction less per
        // short message than before the length test, 5 less than with `&&`.
        if (self.carry_len as usize | (input.len() / SIMD_ASCII_MIN)) == 0 && input.is_ascii() {
            return Ok(fed);
        }
        fed.body = 0..0;
        let mut start = 0;
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let need = width(self.carry[0]) - have;
            let take = need.min(input.len());
            let mut tmp = [0u8; 4];
            tmp[..have].copy_from_slice(&self.carry[..have]);
            tmp[have..have + take].copy_from_slice(&input[..take]);
            match std::str::from_utf8(&tmp[..have + take]) {
                Ok(_) => {
                    fed.prefix = tmp;
                    fed.prefix_len = (have + take) as u8;
                    self.carry_len = 0;
                    start = take;
                }
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: the input was too short to finish the code point.
                    self.carry[..have + take].copy_from_slice(&tmp[..have + take]);
                    self.carry_len = (have + take) as u8;
                    fed.body = take..take;
                    return Ok(fed);
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match check(&input[start..]) {
            Ok(()) => fed.body = start..input.len(),
            Err((valid_up_to, definite)) => {
                if definite {
                    return Err(InvalidUtf8);
                }
                let valid = start + valid_up_to;
                let tail = &input[valid..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                fed.body = start..valid;
            }
        }
        Ok(fed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `parts` in order and returns the bytes passed on, or the error.
    fn run(parts: &[&[u8]]) -> Result<Vec<u8>, InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut out = Vec::new();
        for p in parts {
            let f = v.feed(p)?;
            out.extend_from_slice(&f.prefix[..f.prefix_len as usize]);
            out.extend_from_slice(&p[f.body]);
        }
        if v.is_incomplete() {
            return Err(InvalidUtf8);
        }
        Ok(out)
    }

    #[test]
    fn every_split_of_valid_text_passes_unchanged() {
        let text = "κόσμε a€𝄞 ü\u{10FFFF}\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let out = run(&[&text[..i], &text[i..j], &text[j..]]).unwrap();
                assert_eq!(out, text, "splits {i} {j}");
            }
        }
        // One byte at a time.
        let parts: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&parts).unwrap(), text);
    }

    #[test]
    fn invalid_text_fails_at_every_split() {
        let bad: &[&[u8]] = &[
            b"\xff",
            b"\xc0\xaf",             // overlong '/'
            b"\xe0\x80\xaf",         // overlong
            b"\xed\xa0\x80",         // surrogate U+D800
            b"\xf4\x90\x80\x80",     // > U+10FFFF
            b"\xf8\x88\x80\x80\x80", // 5-byte form
            b"ab\xce\xbaxx\x80",     // lone continuation
            b"\xe2\x82",             // incomplete at the end
        ];
        for b in bad {
            for i in 0..=b.len() {
                assert_eq!(run(&[&b[..i], &b[i..]]), Err(InvalidUtf8), "{b:x?} split {i}");
            }
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // E0 80 can never complete: reject it before the rest arrives.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ok\xe0"), Ok(Fed { prefix: [0; 4], prefix_len: 0, body: 0..2 }));
        assert_eq!(v.feed(b"\x80"), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xed\xa0"), Err(InvalidUtf8));
    }

    /// std's verdict on `b`: `(valid_up_to, definitely invalid)`.
    fn std_state(b: &[u8]) -> (usize, bool) {
        match std::str::from_utf8(b) {
            Ok(_) => (b.len(), false),
            Err(e) => (e.valid_up_to(), e.error_len().is_some()),
        }
    }

    /// Feeds `whole` cut at `cuts` (ascending) and checks every step against std on all the bytes
    /// fed so far: an error exactly when std finds an invalid sequence (not before, not later),
    /// otherwise the bytes passed on are std's valid prefix and the rest is carried.
    fn differential(whole: &[u8], cuts: &[usize]) {
        let mut v = Utf8Validator::new();
        let mut out = Vec::with_capacity(whole.len());
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&whole.len())) {
            let piece = &whole[start..end];
            let (valid, definite) = std_state(&whole[..end]);
            match v.feed(piece) {
                Err(InvalidUtf8) => {
                    assert!(definite, "rejected at {end}, std: valid so far; cuts {cuts:?} of {whole:02x?}");
                    return;
                }
                Ok(f) => {
                    assert!(!definite, "accepted at {end}, std: invalid at {valid}; cuts {cuts:?} of {whole:02x?}");
                    assert!(f.prefix_len <= 4 && f.body.start <= f.body.end && f.body.end <= piece.len(), "{f:?}");
                    out.extend_from_slice(&f.prefix[..f.prefix_len as usize]);
                    out.extend_from_slice(&piece[f.body]);
                    assert_eq!(&out[..], &whole[..valid], "passed on at {end}; cuts {cuts:?} of {whole:02x?}");
                    assert_eq!(v.is_incomplete(), valid < end, "incomplete flag at {end}; cuts {cuts:?}");
                }
            }
            start = end;
        }
        assert_eq!(!v.is_incomplete(), std::str::from_utf8(whole).is_ok());
    }

    /// The SIMD check itself against std, on `b` and on its prefixes and suffixes at `points`.
    fn check_matches_std(b: &[u8], points: impl Iterator<Item = usize>) {
        let same = |x: &[u8]| {
            let want = match std_state(x) {
                (n, false) if n == x.len() => Ok(()),
                e => Err(e),
            };
            assert_eq!(check(x), want, "{x:02x?}");
        };
        same(b);
        for i in points {
            same(&b[..i]);
            same(&b[i..]);
        }
    }

    /// xorshift64*: the tests' randomness, fixed seeds.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Valid text of about `len` bytes: ASCII and 2-, 3- and 4-byte characters (including the
    /// edges U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF), in runs so that
    /// some 64-byte blocks are pure ASCII and some have no ASCII at all.
    fn random_text(r: &mut Rng, len: usize) -> Vec<u8> {
        const EDGES: [u32; 8] = [0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x1_0000, 0x10_FFFF];
        let mut out = Vec::with_capacity(len + 4);
        while out.len() < len {
            let kind = r.below(6);
            for _ in 0..1 + r.below(40) {
                let cp = match kind {
                    0 => r.below(0x80) as u32,
                    1 => 0x80 + r.below(0x780) as u32,
                    2 => [0x800 + r.below(0xD000) as u32, 0xE000 + r.below(0x2000) as u32][r.below(2)],
                    3 => 0x1_0000 + r.below(0x10_0000) as u32,
                    4 => EDGES[r.below(EDGES.len())],
                    _ => [0x41, 0xE9, 0x20AC, 0x1_F600][r.below(4)],
                };
                let mut b = [0; 4];
                out.extend_from_slice(char::from_u32(cp).unwrap().encode_utf8(&mut b).as_bytes());
            }
        }
        out
    }

    /// Byte sequences that are invalid, or invalid only if nothing follows.
    const ADVERSARIAL: &[&[u8]] = &[
        b"\x80",
        b"\xbf",
        b"\xc0\x80",
        b"\xc1\xbf",
        b"\xc2",
        b"\xc2\x41",
        b"\xdf\xc0",
        b"\xe0\x80\x80",
        b"\xe0\x9f\xbf",
        b"\xe0\xa0",
        b"\xe1\x80\x41",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xed\x9f",
        b"\xef\xbf",
        b"\xf0\x80\x80\x80",
        b"\xf0\x8f\xbf\xbf",
        b"\xf0\x9f\x98",
        b"\xf0\x9f",
        b"\xf4\x90\x80\x80",
        b"\xf4\x8f\xbf",
        b"\xf5\x80\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xfe",
        b"\xff",
        b"\xe2\x82\xac\x80",
        b"\xf0\x9f\x98\x80\x80",
    ];

    /// Random text, broken in random ways (or not), against std: the raw check at many prefixes
    /// and suffixes, and the incremental validator at every single split point plus random
    /// multi-piece splits (including one byte at a time).
    #[test]
    fn matches_std_on_random_and_broken_text() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        let rounds = if cfg!(debug_assertions) { 300 } else { 1500 };
        for round in 0..rounds {
            // Mostly lengths around the 64-byte SIMD blocks, some long.
            let len = match round % 4 {
                0 => r.below(64),
                1 | 2 => 48 + r.below(160),
                _ => 256 + r.below(4096),
            };
            let mut t = random_text(&mut r, len);
            match r.below(6) {
                0 => {}
                1 => {
                    let i = r.below(t.len() + 1);
                    t.splice(i..i, ADVERSARIAL[r.below(ADVERSARIAL.len())].iter().copied());
                }
                2 if !t.is_empty() => {
                    let i = r.below(t.len());
                    t[i] = r.next() as u8;
                }
                3 => t.truncate(r.below(t.len() + 1)),
                4 => t.extend_from_slice(ADVERSARIAL[r.below(ADVERSARIAL.len())]),
                _ => {
                    let i = r.below(t.len() + 1);
                    t.insert(i, 0x80 | (r.next() as u8 & 0x7f));
                }
            }
            let n = t.len();
            if n <= 300 {
                check_matches_std(&t, 0..=n);
                for i in 0..=n {
                    differential(&t, &[i]);
                }
            } else {
                check_matches_std(&t, (0..64).map(|_| r.below(n + 1)));
                for _ in 0..64 {
                    differential(&t, &[r.below(n + 1)]);
                }
            }
            for _ in 0..8 {
                let mut cuts: Vec<usize> = (0..1 + r.below(6)).map(|_| r.below(n + 1)).collect();
                cuts.sort_unstable();
                differential(&t, &cuts);
            }
            if n <= 300 {
                differential(&t, &(1..n).collect::<Vec<_>>());
            }
        }
    }

    /// Every lead byte followed by continuation candidates at every offset around the first 64-byte
    /// block boundary (and at the very end) of ASCII, 2-byte and 4-byte backgrounds: where the SIMD
    /// check looks across blocks and where it falls back to std.
    #[test]
    fn matches_std_around_simd_block_boundaries() {
        let backgrounds: [&[u8]; 3] = [b"abcdefgh", "éü".as_bytes(), "😀".as_bytes()];
        let seconds = [0x00u8, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
        let thirds = [0x80u8, 0xbf, 0x41];
        let mut r = Rng(0x5EED);
        for bg in backgrounds {
            let base: Vec<u8> = bg.iter().copied().cycle().take(136).collect();
            for lead in 0x80..=0xffu8 {
                for &b2 in &seconds {
                    for &b3 in &thirds {
                        let seq = [lead, b2, b3, 0x80];
                        for at in (52..72).chain(128..136) {
                            let mut t = base.clone();
                            let end = (at + 4).min(t.len());
                            t[at..end].copy_from_slice(&seq[..end - at]);
                            let (valid, definite) = std_state(&t);
                            let want = if valid == t.len() { Ok(()) } else { Err((valid, definite)) };
                            assert_eq!(check(&t), want, "{t:02x?}");
                            // The validator, cut just before, inside and after the sequence.
                            let cut = at + r.below(6);
                            differential(&t, &[cut.min(t.len())]);
                        }
                        // Truncated right after the sequence's first bytes (incomplete at the end).
                        for keep in 1..=3 {
                            let mut t = base[..100].to_vec();
                            t.extend_from_slice(&seq[..keep]);
                            assert_eq!(check(&t).err(), Some(std_state(&t)).filter(|s| s.0 < t.len()));
                            differential(&t, &[r.below(t.len() + 1)]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn holds_back_incomplete_code_points() {
        let mut v = Utf8Validator::new();
        let f = v.feed(b"a\xe2\x82").unwrap();
        assert_eq!((f.prefix_len, f.body.clone()), (0, 0..1));
        assert!(v.is_incomplete());
        let f = v.feed(b"\xacb").unwrap();
        assert_eq!(&f.prefix[..3], "€".as_bytes());
        assert_eq!(f.body, 1..2);
        assert!(!v.is_incomplete());
    }
}
