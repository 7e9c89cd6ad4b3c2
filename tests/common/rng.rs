//! Small deterministic randomness with no extra crates: a seeded splitmix64 `Rng`, a global
//! counter for masks and keys that only need to differ (`random_mask`), and payload generators
//! (`utf8_text`, `binary_data`).
//!
//! Owns the randomness only; frames and requests built from it live in `encode` and `upgrade`.
//! Imports no other module of `common`.

use std::sync::atomic::{AtomicU64, Ordering};

pub(super) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeded PRNG (splitmix64) for reproducible test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }
}

pub(super) static GLOBAL_RNG: AtomicU64 = AtomicU64::new(0x005E_ED0F_7E57);

/// A "random-ish" masking key; different on every call.
pub fn random_mask() -> [u8; 4] {
    let n = GLOBAL_RNG.fetch_add(1, Ordering::Relaxed);
    (splitmix64(n) as u32).to_le_bytes()
}

/// Exactly `n` bytes of valid UTF-8 mixing 1-, 2-, 3- and 4-byte code points.
pub fn utf8_text(n: usize, seed: u64) -> Vec<u8> {
    const CHARS: [char; 10] = ['a', 'Z', ' ', '~', 'é', 'ж', '€', '中', '😀', '\u{10FFFF}'];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 4);
    let mut buf = [0u8; 4];
    while out.len() < n {
        let c = CHARS[rng.below(CHARS.len() as u64) as usize];
        let enc = c.encode_utf8(&mut buf).as_bytes();
        if out.len() + enc.len() <= n {
            out.extend_from_slice(enc);
        } else {
            out.push(b'.');
        }
    }
    debug_assert!(std::str::from_utf8(&out).is_ok());
    out
}

/// `n` pseudo-random bytes.
pub fn binary_data(n: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}
