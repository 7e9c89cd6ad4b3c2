//! Fragmentation rules, once for every mode: how a message is cut into frames on the way out
//! (the first frame carries the message's opcode, the others are continuations, only the last has
//! FIN; near-equal lengths for `--fragments`, random lengths for soak), the order rules every echo
//! must follow on the way back (no new message inside a fragmented one, no continuation without a
//! message), and the frame fidelity check: the echo of each frame has the FIN, opcode and payload
//! length of the frame sent.
//!
//! The fidelity check has one documented exception, [`may_resplit`]: a frame of a text message
//! whose payload is above [`RESPLIT_TEXT_ABOVE`] (64 KiB) may come back cut into several frames
//! (the server validates UTF-8 within a bounded buffer). From the first such frame to the end of
//! its message only the reassembled bytes are checked. Compressed messages (`--deflate`) are
//! checked for FIN, opcode and frame count but not lengths: a server that inflates and deflates
//! again sends other bytes (a pass-through server sends the same frames; `client` counts those
//! echoes as verbatim), and their frames above 64 KiB fall under the same exception.
//!
//! Pure functions and a few bytes of per-connection state ([`Fidelity`]): nothing here stores a
//! message or allocates, except the description of a failed check. It owns no sockets, does not
//! count anything (the connection types do, see `client` and `soak_conn`) and knows nothing of
//! payload bytes.

use crate::wire::{self, Header, Rng, MAX_HEADER};

/// Text frames with a payload longer than this may be echoed cut into several frames.
pub const RESPLIT_TEXT_ABOVE: u64 = 64 * 1024;

/// Opcode and FIN of frame `k` (from 0) of a message of `n` frames with opcode `msg_op`.
#[inline]
pub fn frame_kind(msg_op: u8, k: u32, n: u32) -> (u8, bool) {
    (if k == 0 { msg_op } else { wire::OP_CONTINUATION }, k + 1 == n)
}

/// Payload length of frame `k` of `n` when `size` bytes are cut into near-equal frames: the
/// first `size % n` frames are one byte longer (so the first frame is the longest).
#[inline]
pub fn even_len(size: u64, n: u32, k: u32) -> u64 {
    let n = u64::from(n.max(1));
    size / n + u64::from(u64::from(k) < size % n)
}

/// A random length for the next frame when `left` bytes remain for it and `after` more frames:
/// on average an even share of what is left; the last frame takes the rest.
#[inline]
pub fn random_len(rng: &mut Rng, left: u32, after: u32) -> u32 {
    if after == 0 {
        left
    } else {
        let cap = (u64::from(left) * 2 / (u64::from(after) + 1)).min(u64::from(left));
        (rng.next_u64() % (cap + 1)) as u32
    }
}

/// Writes the masked client header of frame `k` of `n` (see [`frame_kind`]); returns its length.
pub fn masked_header(msg_op: u8, k: u32, n: u32, len: u64, mask: [u8; 4], out: &mut [u8; MAX_HEADER]) -> usize {
    let (op, fin) = frame_kind(msg_op, k, n);
    let hl = wire::encode_masked_header(op, len, mask, out);
    if !fin {
        out[0] &= 0x7f;
    }
    hl
}

/// What the fidelity check compares: a frame's FIN, opcode and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub fin: bool,
    pub opcode: u8,
    pub len: u64,
}

impl Shape {
    /// Frame `k` of `n` of a message with opcode `msg_op`, `len` payload bytes.
    #[inline]
    pub fn of(msg_op: u8, k: u32, n: u32, len: u64) -> Shape {
        let (opcode, fin) = frame_kind(msg_op, k, n);
        Shape { fin, opcode, len }
    }
}

/// The documented exception: a frame of a text or compressed message (`held`: the server must
/// hold such a frame whole to validate or inflate it) above [`RESPLIT_TEXT_ABOVE`] bytes may be
/// echoed as several frames, so only its reassembled bytes are checked.
#[inline]
pub fn may_resplit(held: bool, len: u64) -> bool {
    held && len > RESPLIT_TEXT_ABOVE
}

/// What a data frame of the echo is, by the order rules of RFC 6455 §5.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Text or binary: the first frame of a message.
    First,
    /// A continuation of the message being received.
    Continuation,
}

/// Classifies a data frame (`opcode` 0, 1 or 2) given whether a message is being received;
/// the error is a protocol error of the server.
#[inline]
pub fn classify(opcode: u8, in_msg: bool) -> Result<Data, &'static str> {
    match (opcode, in_msg) {
        (wire::OP_CONTINUATION, true) => Ok(Data::Continuation),
        (wire::OP_CONTINUATION, false) => Err("continuation without a message"),
        (_, true) => Err("new message inside a fragmented one"),
        (_, false) => Ok(Data::First),
    }
}

/// Per-connection fidelity state for the message being received: which sent frame the next
/// echoed frame must match, and whether checking has stopped for this message (the exception
/// applies, or an error was already reported). Five bytes of state; nothing stored per message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fidelity {
    /// Index of the sent frame the next echoed frame must match.
    next: u32,
    /// Only bytes are checked until the end of the message.
    relaxed: bool,
    /// A mismatch was found in this message.
    bad: bool,
}

impl Fidelity {
    /// A new message's echo begins (its first frame arrived).
    #[inline]
    pub fn start_message(&mut self) {
        *self = Fidelity::default();
    }

    /// A mismatch was found in the current message.
    #[inline]
    pub fn is_bad(&self) -> bool {
        self.bad
    }

    /// Checks the header `h` of an echoed data frame of a message (`text`: a text message;
    /// `compressed`: sent compressed, so the lengths are not compared). `sent(k)` gives frame `k`
    /// as sent, or `None` when the message had fewer frames; it is called once per echoed frame,
    /// in order, while checking goes on (a replaying sender may advance). `Err` describes the
    /// first mismatch of a message; later frames of that message are not checked.
    #[inline]
    pub fn check(
        &mut self,
        h: &Header,
        text: bool,
        compressed: bool,
        sent: impl FnOnce(u32) -> Option<Shape>,
    ) -> Result<(), String> {
        if self.relaxed {
            return Ok(());
        }
        let k = self.next;
        let got = Shape { fin: h.fin, opcode: h.opcode, len: h.len };
        let Some(want) = sent(k) else {
            self.relaxed = true;
            self.bad = true;
            return Err(format!("echo frame {} ({}) but only {k} frame(s) were sent", k + 1, describe(got)));
        };
        self.next += 1;
        if may_resplit(text || compressed, want.len) {
            // The exception: the server may cut this frame; the rest of the message is only
            // checked byte for byte.
            self.relaxed = true;
            return Ok(());
        }
        let same = if compressed { (got.fin, got.opcode) == (want.fin, want.opcode) } else { got == want };
        if !same {
            self.relaxed = true;
            self.bad = true;
            return Err(format!("echo frame {} is {}, sent {}", k + 1, describe(got), describe(want)));
        }
        Ok(())
    }
}

fn describe(s: Shape) -> String {
    let op = match s.opcode {
        wire::OP_CONTINUATION => "continuation",
        wire::OP_TEXT => "text",
        wire::OP_BINARY => "binary",
        _ => "control",
    };
    format!("{op} FIN={} {} B", u8::from(s.fin), s.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(fin: bool, opcode: u8, len: u64) -> Header {
        Header { fin, rsv1: false, opcode, len, hlen: 2 }
    }

    #[test]
    fn even_split_covers_the_message() {
        for (size, n) in [(0u64, 1u32), (0, 3), (10, 3), (16384, 3), (5, 8), (70000, 1)] {
            let lens: Vec<u64> = (0..n).map(|k| even_len(size, n, k)).collect();
            assert_eq!(lens.iter().sum::<u64>(), size, "{size} in {n}");
            assert!(lens.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1), "{lens:?}");
        }
        assert_eq!(frame_kind(wire::OP_TEXT, 0, 3), (wire::OP_TEXT, false));
        assert_eq!(frame_kind(wire::OP_TEXT, 1, 3), (wire::OP_CONTINUATION, false));
        assert_eq!(frame_kind(wire::OP_TEXT, 2, 3), (wire::OP_CONTINUATION, true));
        assert_eq!(frame_kind(wire::OP_BINARY, 0, 1), (wire::OP_BINARY, true));
        let mut h = [0u8; MAX_HEADER];
        assert_eq!(masked_header(wire::OP_BINARY, 0, 2, 5, [0; 4], &mut h), 6);
        assert_eq!(h[0], wire::OP_BINARY);
        masked_header(wire::OP_BINARY, 1, 2, 5, [0; 4], &mut h);
        assert_eq!(h[0], 0x80);
    }

    #[test]
    fn random_split_covers_the_message() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let (mut left, n) = (1000u32, 7u32);
            for k in 0..n {
                let len = random_len(&mut rng, left, n - 1 - k);
                assert!(len <= left);
                left -= len;
            }
            assert_eq!(left, 0);
        }
    }

    #[test]
    fn order_rules() {
        assert_eq!(classify(wire::OP_TEXT, false), Ok(Data::First));
        assert_eq!(classify(wire::OP_CONTINUATION, true), Ok(Data::Continuation));
        assert!(classify(wire::OP_CONTINUATION, false).is_err());
        assert!(classify(wire::OP_BINARY, true).is_err());
    }

    #[test]
    fn fidelity_catches_a_split_frame() {
        let sent = |k: u32| (k < 1).then(|| Shape::of(wire::OP_BINARY, k, 1, 100));
        let mut f = Fidelity::default();
        assert!(f.check(&hdr(true, wire::OP_BINARY, 100), false, false, sent).is_ok());
        assert!(!f.is_bad());
        // The same frame echoed as two fragments: the first is reported, once.
        f.start_message();
        let e = f.check(&hdr(false, wire::OP_BINARY, 50), false, false, sent).unwrap_err();
        assert!(e.contains("binary FIN=0 50 B") && e.contains("binary FIN=1 100 B"), "{e}");
        assert!(f.check(&hdr(true, wire::OP_CONTINUATION, 50), false, false, sent).is_ok());
        assert!(f.is_bad());
        // More frames than were sent.
        f.start_message();
        assert!(f.check(&hdr(true, wire::OP_BINARY, 100), false, false, sent).is_ok());
        assert!(f.check(&hdr(true, wire::OP_CONTINUATION, 0), false, false, sent).is_err());
    }

    #[test]
    fn fidelity_follows_fragments_and_allows_the_text_exception() {
        let (size, n) = (200_000u64, 3u32);
        let sent = |op: u8| move |k: u32| (k < n).then(|| Shape::of(op, k, n, even_len(size, n, k)));
        let mut f = Fidelity::default();
        for k in 0..n {
            let (op, fin) = frame_kind(wire::OP_BINARY, k, n);
            assert!(f.check(&hdr(fin, op, even_len(size, n, k)), false, false, sent(wire::OP_BINARY)).is_ok());
        }
        assert!(!f.is_bad());
        // A text frame above 64 KiB may come back cut anywhere.
        f.start_message();
        assert!(f.check(&hdr(false, wire::OP_TEXT, 1000), true, false, sent(wire::OP_TEXT)).is_ok());
        assert!(f.check(&hdr(true, wire::OP_CONTINUATION, 199_000), true, false, sent(wire::OP_TEXT)).is_ok());
        assert!(!f.is_bad());
        // Exactly 64 KiB of text is not the exception.
        let sent64 = |k: u32| (k < 1).then(|| Shape::of(wire::OP_TEXT, k, 1, RESPLIT_TEXT_ABOVE));
        f.start_message();
        assert!(f.check(&hdr(false, wire::OP_TEXT, 1000), true, false, sent64).is_err());
    }

    #[test]
    fn fidelity_of_compressed_messages_ignores_lengths_but_not_frames() {
        let sent = |k: u32| (k < 2).then(|| Shape::of(wire::OP_BINARY, k, 2, 300));
        let mut f = Fidelity::default();
        // Re-compressed: other lengths, the same frames.
        assert!(f.check(&hdr(false, wire::OP_BINARY, 120), false, true, sent).is_ok());
        assert!(f.check(&hdr(true, wire::OP_CONTINUATION, 7), false, true, sent).is_ok());
        assert!(!f.is_bad());
        // One frame instead of two.
        f.start_message();
        assert!(f.check(&hdr(true, wire::OP_BINARY, 127), false, true, sent).is_err());
        // Three instead of two.
        f.start_message();
        assert!(f.check(&hdr(false, wire::OP_BINARY, 1), false, true, sent).is_ok());
        assert!(f.check(&hdr(false, wire::OP_CONTINUATION, 1), false, true, sent).is_err());
        // The same lengths uncompressed would not pass.
        f.start_message();
        assert!(f.check(&hdr(false, wire::OP_BINARY, 120), false, false, sent).is_err());
        // A compressed frame above 64 KiB may come back cut.
        let big = |k: u32| (k < 1).then(|| Shape::of(wire::OP_BINARY, k, 1, 100_000));
        f.start_message();
        assert!(f.check(&hdr(false, wire::OP_BINARY, 50_000), false, true, big).is_ok());
        assert!(f.check(&hdr(true, wire::OP_CONTINUATION, 50_000), false, true, big).is_ok());
        assert!(!f.is_bad());
    }
}
