//! The generator: turns frame descriptions ([`FrameSpec`]) into client bytes, valid unless told to
//! corrupt them (a rule broken, invalid or incomplete UTF-8, an oversized length), and records what
//! a correct server must answer, so that `check` can hold the model to the generator's intent.
//!
//! Owns building client bytes and the tables they come from; it does not run the server (`driver`)
//! or predict its output (`model`, from which it only borrows the `Ev` vocabulary). Imports
//! `input`, `model` and `session`.

use super::super::input::Bytes;
use super::model::Ev;
use super::session::{corrupt_codes, FrameSpec, Payload};

/// Payload lengths of big frames.
const BIG: [usize; 16] = [0, 1, 125, 126, 127, 128, 1000, 4095, 4096, 4097, 16384, 65535, 65536, 65537, 70000, 131072];
/// Characters text payloads are made of.
const CHARS: [char; 12] = [
    'a',
    '\u{7f}',
    '\u{80}',
    'é',
    '\u{7ff}',
    '\u{800}',
    '€',
    '\u{d7ff}',
    '\u{e000}',
    '\u{ffff}',
    '\u{10000}',
    '\u{10ffff}',
];
/// Valid close codes for generated close frames.
const CLOSE_CODES: [u16; 13] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
/// Close codes a peer may not send.
const BAD_CODES: [u16; 12] = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
/// Byte sequences that are invalid wherever they are inserted at a code point boundary.
const INVALID: [&[u8]; 9] = [
    b"\xff",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xc2\x41",
];
/// Starts of code points that a message must not end with.
const INCOMPLETE: [&[u8]; 3] = [b"\xe2\x82", b"\xf0\x9f", b"\xc3"];

/// The generator: turns frame descriptions into bytes, valid unless told to corrupt, and records
/// what a correct server must answer (its intent, checked against [`model`]).
pub(super) struct Gen {
    max_message: u64,
    /// Opcode of the message in progress.
    in_msg: Option<u8>,
    /// Bytes of the message in progress, sent or held back.
    content: u64,
    /// Bytes of a cut code point, to start the next text fragment.
    carry: Vec<u8>,
    /// Bytes of the message in progress sent so far.
    sent: Vec<u8>,
    pub(super) intent: Vec<Ev>,
    /// A close or a corrupted frame was sent: the server ignores what follows.
    done: bool,
    pub(super) close: Option<u16>,
    pub(super) first_bad: Option<(usize, u16)>,
    /// No raw bytes went out before `done`: generated frames are where the model sees them.
    pub(super) aligned: bool,
    frames: usize,
}

fn to_text(raw: &[u8], mode: u8, fill: Option<u8>) -> Vec<u8> {
    match (mode & 3, fill) {
        (1, _) => raw.iter().map(|b| b & 0x7f).collect(),
        (2, _) => raw.iter().map(|&b| CHARS[b as usize % CHARS.len()]).collect::<String>().into_bytes(),
        (3, f) => {
            let c = CHARS[f.unwrap_or_else(|| raw.first().copied().unwrap_or(0)) as usize % CHARS.len()];
            let n = raw.len() / c.len_utf8();
            std::iter::repeat_n(c, n).collect::<String>().into_bytes()
        }
        _ => String::from_utf8_lossy(raw).into_owned().into_bytes(),
    }
}

/// The longest prefix of valid UTF-8 `s` of at most `n` bytes that ends at a code point boundary.
fn truncate_text(s: &mut Vec<u8>, n: usize) {
    let mut n = n.min(s.len());
    while n > 0 && n < s.len() && (s[n] & 0xc0) == 0x80 {
        n -= 1;
    }
    s.truncate(n);
}

fn pattern(n: usize, fill: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(fill | 1).wrapping_add(fill)).collect()
}

/// Encodes a client frame. `len_form`: 0 minimal, 2 / 8 the 16- / 64-bit form; `len` is the
/// declared length (may differ from `payload.len()`).
fn encode_client(fin: bool, rsv: u8, op: u8, key: Option<[u8; 4]>, len: u64, len_form: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | op];
    let m = if key.is_some() { 0x80 } else { 0 };
    let form = match len_form {
        0 if len < 126 => 0,
        0 | 2 if len <= 0xffff => 2,
        _ => 8,
    };
    match form {
        0 => f.push(m | len as u8),
        2 => {
            f.push(m | 126);
            f.extend((len as u16).to_be_bytes());
        }
        _ => {
            f.push(m | 127);
            f.extend(len.to_be_bytes());
        }
    }
    match key {
        Some(k) => {
            f.extend(k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

impl Gen {
    pub(super) fn new(max_message: u64) -> Gen {
        Gen {
            max_message,
            in_msg: None,
            content: 0,
            carry: Vec::new(),
            sent: Vec::new(),
            intent: Vec::new(),
            done: false,
            close: None,
            first_bad: None,
            aligned: true,
            frames: 0,
        }
    }

    pub(super) fn raw(&mut self, n: usize) {
        if n > 0 && !self.done {
            self.aligned = false;
        }
    }

    /// Decodes a frame description (see [`Session::frame`] for the layout).
    pub(super) fn spec(r: &mut Bytes<'_>, tag: u8) -> FrameSpec {
        let k = r.u8();
        let k2 = r.u8();
        let c = r.u8();
        let corrupt = (c >= 0xf0).then(|| (c & 0x0f, r.u8()));
        let payload = match k >> 6 {
            0 => {
                let n = r.u8() as usize;
                Payload::Bytes(r.take(n).to_vec())
            }
            1 => Payload::Bytes(r.take((tag >> 4) as usize).to_vec()),
            2 => Payload::Big(r.u8(), r.u8()),
            _ => Payload::Len(r.u16(), r.u8()),
        };
        let key = (k & 0x10 == 0).then(|| [r.u8(), r.u8(), r.u8(), r.u8()]);
        let split = (tag & 15 == 15).then(|| r.u8());
        FrameSpec {
            kind: k & 7,
            fin: k & 8 != 0,
            key,
            nonmin: k & 0x20 != 0,
            ext64: k2 & 0x10 != 0,
            text_mode: (k2 >> 2) & 3,
            cut: k2 & 3,
            at: k2 >> 5,
            payload,
            corrupt,
            split,
        }
    }

    /// Builds the bytes of a frame and records what the server must do with it.
    pub(super) fn frame(&mut self, f: &FrameSpec, small_reads: bool) -> Vec<u8> {
        let (raw, fill) = match &f.payload {
            Payload::Bytes(b) => (b.clone(), None),
            Payload::Big(sel, fill) => (pattern(BIG[*sel as usize % BIG.len()], *fill), Some(*fill)),
            Payload::Len(n, fill) => (pattern(*n as usize % 4096, *fill), Some(*fill)),
        };
        let mut raw = raw;
        if small_reads {
            // Keep byte-at-a-time sessions fast.
            raw.truncate(2048);
        }
        let key = Some(f.key.unwrap_or([0; 4]));
        let corrupt = f.corrupt.filter(|c| corrupt_codes(c.0).is_some());
        let mut op = match f.kind & 7 {
            0 | 6 => 1,
            1 | 7 => 2,
            2 => 0,
            3 => 9,
            4 => 10,
            _ => 8,
        };
        let p = corrupt.map_or(0, |c| c.1);
        let ck = corrupt.map(|c| c.0);
        // Corruptions that pick the frame type.
        match ck {
            Some(3 | 4) => op = [8, 9, 10][p as usize % 3],
            Some(7 | 11) if op >= 8 => op = 2,
            Some(5 | 12) if op >= 8 => op = 1,
            Some(8..=10) => op = 8,
            _ => {}
        }
        if op < 8 {
            // Data frames follow §5.4 unless corrupted.
            op = match self.in_msg {
                Some(_) => 0,
                None if op == 0 => 2,
                None => op,
            };
        }
        let msg_op = if op < 8 { self.in_msg.unwrap_or(op) } else { 0 };
        // Text corruptions apply to text messages only.
        let mut corrupt = match ck {
            Some(5 | 12) if msg_op != 1 => None,
            _ => corrupt,
        };
        let ck = corrupt.map(|c| c.0);
        let mut fin = if op >= 8 { true } else { f.fin };
        let mut rsv = 0;
        let mut key = key;
        let mut len_form = if f.nonmin && op < 8 {
            if f.ext64 {
                8
            } else {
                2
            }
        } else {
            0
        };
        let mut declared: Option<u64> = None;
        let budget = self.max_message.saturating_sub(self.content) as usize;
        let payload: Vec<u8>;
        let mut new_carry = Vec::new();
        let mut content_add = 0u64;
        match op {
            9 | 10 => {
                let mut b = raw;
                b.truncate(if ck == Some(4) { 126 + p as usize % 100 } else { 125 });
                if ck == Some(4) {
                    b.resize(126 + p as usize % 100, b'x');
                }
                payload = b;
            }
            8 => {
                let mut b = Vec::new();
                match ck {
                    Some(4) => b.resize(126 + p as usize % 100, b'x'),
                    Some(8) => b.push(p),
                    Some(9) => {
                        b.extend(BAD_CODES[p as usize % BAD_CODES.len()].to_be_bytes());
                        b.extend_from_slice(b"no");
                    }
                    Some(10) => {
                        b.extend(1000u16.to_be_bytes());
                        b.extend_from_slice(INVALID[p as usize % INVALID.len()]);
                    }
                    _ if raw.is_empty() => {}
                    _ => {
                        b.extend(CLOSE_CODES[raw[0] as usize % CLOSE_CODES.len()].to_be_bytes());
                        let mut reason = to_text(&raw[1..], f.text_mode, None);
                        truncate_text(&mut reason, 123);
                        b.extend(reason);
                    }
                }
                payload = b;
            }
            _ if ck == Some(7) => {
                // Declare more than the message may hold; send a little of it.
                let sent = if self.in_msg.is_some() { self.sent.len() as u64 } else { 0 };
                declared = Some(self.max_message - sent + 1 + u64::from(p));
                payload = raw.into_iter().take(16).collect();
            }
            _ if msg_op == 1 => {
                let extra = match ck {
                    Some(5) => INVALID[p as usize % INVALID.len()],
                    Some(12) => INCOMPLETE[p as usize % INCOMPLETE.len()],
                    _ => &[],
                };
                let mut s = to_text(&raw, f.text_mode, fill);
                if extra.len() > budget {
                    // No room for the corruption: send a valid empty fragment instead.
                    s.clear();
                    content_add = 0;
                    corrupt = None;
                } else {
                    truncate_text(&mut s, budget - extra.len());
                    content_add = (s.len() + extra.len()) as u64;
                }
                let mut s2 = s.clone();
                if ck == Some(5) && extra.len() <= budget {
                    let mut at = s.len() * f.at as usize / 8;
                    while at > 0 && (s[at] & 0xc0) == 0x80 {
                        at -= 1;
                    }
                    s2.splice(at..at, extra.iter().copied());
                } else if ck == Some(12) && extra.len() <= budget {
                    s2.extend_from_slice(extra);
                    fin = true;
                }
                let mut b = std::mem::take(&mut self.carry);
                b.extend(s2);
                if !fin && f.cut > 0 && corrupt.is_none() {
                    // Hold back the end of the last code point (it starts with a lead byte).
                    if let Some(lead) = b.iter().rposition(|&x| x & 0xc0 != 0x80) {
                        let width = b.len() - lead;
                        let hold = (f.cut as usize).min(width.saturating_sub(1));
                        new_carry = b.split_off(b.len() - hold);
                    }
                }
                payload = b;
            }
            _ => {
                let mut b = raw;
                b.truncate(budget);
                content_add = b.len() as u64;
                payload = b;
            }
        }
        match ck {
            Some(0) => rsv = p % 7 + 1,
            Some(1) => op = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15][p as usize % 10],
            Some(2) => key = None,
            Some(3) => fin = false,
            Some(6) => {
                op = match self.in_msg {
                    Some(_) => 1 + (p & 1),
                    None => 0,
                }
            }
            Some(11) => {
                declared = Some((1 << 63) | u64::from(p));
                len_form = 8;
            }
            _ => {}
        }
        let len = declared.unwrap_or(payload.len() as u64);
        let bytes = encode_client(fin, rsv, op, key, len, len_form, &payload);
        // Record the intent.
        let idx = self.frames;
        self.frames += 1;
        if self.done {
            return bytes;
        }
        if let Some((c, _)) = corrupt {
            self.first_bad = Some((idx, corrupt_codes(c).unwrap_or(0)));
            self.done = true;
            return bytes;
        }
        match op {
            9 => self.intent.push(Ev::Pong(payload)),
            8 => {
                self.close = Some(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1000 });
                self.done = true;
            }
            10 => {}
            _ => {
                self.in_msg = Some(msg_op);
                self.content += content_add;
                self.sent.extend_from_slice(&payload);
                self.carry = new_carry;
                if fin {
                    debug_assert!(self.carry.is_empty());
                    self.intent.push(Ev::Msg(msg_op, std::mem::take(&mut self.sent)));
                    self.in_msg = None;
                    self.content = 0;
                }
            }
        }
        bytes
    }
}
