//! Incremental UTF-8 validation for text messages that arrive in pieces (RFC 6455 §8.1).
//!
//! Owns the at most three bytes of a code point that is cut by a frame or read boundary. A piece is
//! validated as soon as it arrives; an invalid sequence is reported at once (even when it is only
//! the start of a code point that can never complete, such as `E0 80`), and the trailing bytes of
//! an incomplete code point are held back so that the caller echoes only whole code points. It does
//! not own message state or buffers; it never allocates. The byte-level check is `std::str::from_utf8`
//! (word-at-a-time ASCII fast path), whose `error_len() == None` tells "incomplete" from "invalid".

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
        // Fast path: nothing carried and all ASCII (the common case for short text messages;
        // `is_ascii` is word-at-a-time and cheaper than the general decoder on short input).
        if self.carry_len == 0 && input.is_ascii() {
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
        match std::str::from_utf8(&input[start..]) {
            Ok(_) => fed.body = start..input.len(),
            Err(e) => {
                if e.error_len().is_some() {
                    return Err(InvalidUtf8);
                }
                let valid = start + e.valid_up_to();
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
