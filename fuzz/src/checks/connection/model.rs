//! The reference model: what a correct echo server (no extension, a message size limit, frame-exact
//! streaming echo) must send for a client byte stream after the upgrade ([`model`], [`Expect`]),
//! and the event vocabulary ([`Ev`], [`End`], [`FrameShape`]) the parser and the generator share.
//!
//! Owns the expectation only: it does not run the server (`driver`), read its output (`output`) or
//! build client bytes (`gen`). Imports `frame` (the reference header decoder) and `reference`
//! (UTF-8 state), no sibling.

use super::super::frame::ref_header;
use super::super::reference::utf8_state;

/// Something a client sees from an echo server, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A whole data message: opcode (1 text, 2 binary) and payload.
    Msg(u8, Vec<u8>),
    /// A pong with this payload.
    Pong(Vec<u8>),
}

/// How the server's output must end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// No close frame: the client stream ended at a frame boundary or inside a frame that is fine
    /// so far.
    Open,
    /// A close frame with one of these codes.
    Closed {
        /// Acceptable close codes.
        codes: Vec<u16>,
    },
    /// The stream ends inside a header that already breaks a rule: a close with one of these codes,
    /// or nothing yet.
    Maybe(Vec<u16>),
}

/// A data frame as a frame-exact echo sends it back: FIN, opcode, payload length.
pub type FrameShape = (bool, u8, usize);

/// The model's verdict for a client byte stream (after the upgrade request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Messages and pongs.
    pub events: Vec<Ev>,
    /// Every data frame echoed whole, in order (frame-exact echo: same FIN, opcode, length).
    pub frames: Vec<FrameShape>,
    /// The message in progress at the end: opcode and the bytes a frame-exact echo has sent of it
    /// (its complete frames; of an incomplete frame, a binary one's bytes so far, streamed behind
    /// its header, and nothing of a text one, held until complete).
    pub partial: Option<(u8, Vec<u8>)>,
    /// The stream ends inside the payload of a binary frame whose header is out, which ends at
    /// this offset: a server-initiated close has to wait for it.
    pub open_binary_until: Option<usize>,
    /// How the output ends.
    pub end: End,
    /// Index of the frame that failed the connection, if any.
    pub fail_frame: Option<usize>,
}

/// Close codes a peer may send (RFC 6455 §7.4.1, §7.4.2).
pub(super) fn close_code_valid(c: u16) -> bool {
    matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Codes registered after RFC 6455 (1012-1014): a server may accept or reject them.
pub(super) fn close_code_later(c: u16) -> bool {
    matches!(c, 1012..=1014)
}

/// What a correct echo server (no extension, `max_message` limit, frame-exact streaming echo)
/// does with the client byte stream `s`.
pub fn model(s: &[u8], max_message: u64) -> Expect {
    let mut events = Vec::new();
    let mut frames: Vec<FrameShape> = Vec::new();
    let mut pos = 0;
    let mut frame = 0;
    // The message in progress: opcode, received payload, declared length so far, valid UTF-8 prefix.
    let mut msg: Option<(u8, Vec<u8>)> = None;
    let mut declared = 0u64;
    let mut checked = 0usize;
    // Bytes of the message in complete frames (all of them echoed).
    let mut done_len = 0usize;
    // Whether the stream ends inside a binary payload whose echo header is out, and where it ends.
    let mut open_binary: Option<usize> = None;
    let partial = |msg: &Option<(u8, Vec<u8>)>, done_len: usize| {
        msg.as_ref().map(|(op, b)| (*op, if *op == 1 { b[..done_len].to_vec() } else { b.clone() }))
    };
    let stop = |events: Vec<Ev>,
                frames: &[FrameShape],
                msg: &Option<(u8, Vec<u8>)>,
                done_len: usize,
                open_binary: Option<usize>,
                end: End,
                fail: Option<usize>| Expect {
        events,
        frames: frames.to_vec(),
        partial: partial(msg, done_len),
        open_binary_until: open_binary,
        end,
        fail_frame: fail,
    };
    macro_rules! stop {
        ($end:expr, $fail:expr) => {
            return stop(events, &frames, &msg, done_len, open_binary, $end, $fail)
        };
    }
    loop {
        let rest = &s[pos..];
        if rest.is_empty() {
            stop!(End::Open, None)
        }
        let (rh, bad) = ref_header(rest);
        let b0 = rest[0];
        let op = b0 & 0x0f;
        let control = op & 0x08 != 0;
        let mut codes: Vec<u16> = if bad.is_empty() { Vec::new() } else { vec![1002] };
        // §5.4: continuation only inside a message, a new message only outside one.
        if !control && matches!((op, &msg), (0, None) | (1 | 2, Some(_))) {
            codes.push(1002);
        }
        // §5.1: client frames are masked.
        if rest.len() >= 2 && rest[1] & 0x80 == 0 {
            codes.push(1002);
        }
        let Some(h) = rh else {
            codes.dedup();
            let end = if codes.is_empty() { End::Open } else { End::Maybe(codes) };
            stop!(end, None);
        };
        let base = if op == 0 { declared } else { 0 };
        if !control && base.saturating_add(h.len) > max_message {
            codes.push(1009);
        }
        if !codes.is_empty() {
            codes.dedup();
            stop!(End::Closed { codes }, Some(frame))
        }
        let key = h.key.unwrap_or_default();
        let avail = (rest.len() - h.hlen) as u64;
        if control {
            if avail < h.len {
                stop!(End::Open, None)
            }
            let p: Vec<u8> =
                rest[h.hlen..h.hlen + h.len as usize].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            pos += h.hlen + h.len as usize;
            frame += 1;
            match op {
                9 => events.push(Ev::Pong(p)),
                8 => {
                    // §5.5.1 and §7.4: reply with a close; fail on a malformed one.
                    let (codes, fail) = match p.len() {
                        0 => (vec![1000, 1005], None),
                        1 => (vec![1002], Some(frame - 1)),
                        _ => {
                            let c = u16::from_be_bytes([p[0], p[1]]);
                            let mut codes = Vec::new();
                            if std::str::from_utf8(&p[2..]).is_err() {
                                codes.push(1007);
                            }
                            if !close_code_valid(c) && !close_code_later(c) {
                                codes.push(1002);
                            }
                            if codes.is_empty() {
                                let mut ok = vec![c, 1000];
                                if close_code_later(c) {
                                    ok.push(1002);
                                }
                                (ok, None)
                            } else {
                                if close_code_later(c) {
                                    codes.push(1002);
                                }
                                (codes, Some(frame - 1))
                            }
                        }
                    };
                    stop!(End::Closed { codes }, fail)
                }
                _ => {} // §5.5.3: an unsolicited pong needs no answer
            }
            continue;
        }
        let take = avail.min(h.len) as usize;
        let m = msg.get_or_insert_with(|| (op, Vec::new()));
        m.1.extend(rest[h.hlen..h.hlen + take].iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        declared = base + h.len;
        let text = m.0 == 1;
        if text {
            // §8.1: fail as soon as the text cannot be UTF-8.
            let (valid, definite) = utf8_state(&m.1[checked..]);
            checked += valid;
            if definite {
                // Nothing of this frame was echoed: a text frame is validated before it goes out.
                stop!(End::Closed { codes: vec![1007] }, Some(frame))
            }
        }
        if (take as u64) < h.len {
            if !text {
                open_binary = Some(pos + h.hlen + h.len as usize);
            }
            stop!(End::Open, None)
        }
        pos += h.hlen + take;
        frame += 1;
        if h.fin && text && checked < m.1.len() {
            stop!(End::Closed { codes: vec![1007] }, Some(frame - 1))
        }
        frames.push((h.fin, op, take));
        done_len = m.1.len();
        if h.fin {
            let (op, b) = msg.take().unwrap_or_default();
            events.push(Ev::Msg(op, b));
            declared = 0;
            checked = 0;
            done_len = 0;
        }
    }
}
