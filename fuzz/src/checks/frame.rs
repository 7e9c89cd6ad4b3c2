//! Target 2, `frame`: `decode_header` on arbitrary bytes against a reference header decoder
//! ([`ref_header`], also what `connection` reads frames with), every prefix against the whole, and
//! `encode_header` / `decode_header` round trips.
//!
//! Owns one frame header at a time; what a stream of frames must produce is `connection`. Imports
//! only `input`.

use wsecho::frame::{decode_header, encode_header, header_len, FrameHeader, OpCode, ProtocolError, MAX_HEADER_LEN};

use super::input::Bytes;

/// A rule of RFC 6455 §5.2 / §5.5 that a header can break on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// RSV1-3 set, no extension negotiated.
    Rsv,
    /// Opcode 3-7 or 0xB-0xF.
    Opcode,
    /// Control frame without FIN.
    CtlFin,
    /// Control frame with a 7-bit length over 125.
    CtlLen,
    /// 64-bit length with its most significant bit set.
    LenTop,
}

/// A complete header, as the reference decoder reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefHeader {
    /// FIN.
    pub fin: bool,
    /// RSV1-3 (three low bits).
    pub rsv: u8,
    /// Opcode nibble.
    pub op: u8,
    /// Masking key when MASK is set.
    pub key: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Header length.
    pub hlen: usize,
    /// The length used the shortest form.
    pub minimal: bool,
}

/// Reference header decoder: the header (when complete) and every rule broken by the bytes seen.
pub fn ref_header(buf: &[u8]) -> (Option<RefHeader>, Vec<Bad>) {
    let mut bad = Vec::new();
    let Some(&b0) = buf.first() else { return (None, bad) };
    let (fin, rsv, op) = (b0 & 0x80 != 0, (b0 >> 4) & 7, b0 & 0x0f);
    let control = op & 0x08 != 0;
    if rsv != 0 {
        bad.push(Bad::Rsv);
    }
    if !matches!(op, 0 | 1 | 2 | 8 | 9 | 10) {
        bad.push(Bad::Opcode);
    }
    if control && !fin {
        bad.push(Bad::CtlFin);
    }
    let Some(&b1) = buf.get(1) else { return (None, bad) };
    let (masked, len7) = (b1 & 0x80 != 0, b1 & 0x7f);
    if control && len7 > 125 {
        bad.push(Bad::CtlLen);
    }
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if ext == 8 && buf.len() > 2 && buf[2] & 0x80 != 0 {
        bad.push(Bad::LenTop);
    }
    let hlen = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < hlen {
        return (None, bad);
    }
    let len = buf[2..2 + ext].iter().fold(u64::from(len7) * u64::from(ext == 0), |a, &b| (a << 8) | u64::from(b));
    let minimal = match ext {
        0 => true,
        2 => len >= 126,
        _ => len > 0xffff,
    };
    let key = masked.then(|| [buf[hlen - 4], buf[hlen - 3], buf[hlen - 2], buf[hlen - 1]]);
    (Some(RefHeader { fin, rsv, op, key, len, hlen, minimal }), bad)
}

fn bad_of(e: ProtocolError) -> Option<Bad> {
    Some(match e {
        ProtocolError::ReservedBits => Bad::Rsv,
        ProtocolError::ReservedOpcode => Bad::Opcode,
        ProtocolError::FragmentedControl => Bad::CtlFin,
        ProtocolError::ControlTooLong => Bad::CtlLen,
        ProtocolError::LengthOverflow => Bad::LenTop,
        _ => return None,
    })
}

type Decoded = Result<Option<(FrameHeader, usize)>, ProtocolError>;

/// Checks `decode_header(buf)` against the reference decoder and its prefixes against the whole.
fn check_decode(buf: &[u8]) -> Decoded {
    let got = decode_header(buf);
    let (rh, bad) = ref_header(buf);
    match (&got, rh) {
        (Ok(Some((h, n))), Some(r)) => {
            assert!(bad.is_empty(), "accepted a header breaking {bad:?}: {buf:02x?}");
            assert!(*n <= MAX_HEADER_LEN && *n <= buf.len());
            assert_eq!(*n, r.hlen);
            assert_eq!((h.fin, h.rsv, h.opcode as u8, h.mask, h.len), (r.fin, r.rsv, r.op, r.key, r.len));
            if h.opcode.is_control() {
                assert!(h.fin && h.len <= 125, "control header {h:?}");
            }
        }
        (Ok(Some(_)), None) => panic!("decoded an incomplete header {buf:02x?}"),
        (Ok(None), r) => {
            assert!(r.is_none(), "complete header {buf:02x?} reported incomplete");
        }
        (Err(e), _) => {
            let b = bad_of(*e).unwrap_or_else(|| panic!("decode_header returned {e:?}"));
            assert!(bad.contains(&b), "{e:?} but the header breaks only {bad:?}: {buf:02x?}");
        }
    }
    // Prefixes: incomplete or the same error until the header is complete, then the same header.
    for k in 0..buf.len().min(MAX_HEADER_LEN + 1) {
        let p = decode_header(&buf[..k]);
        match &got {
            Ok(Some((_, n))) if k >= *n => assert_eq!(p, got, "prefix {k}"),
            Ok(_) => assert_eq!(p, Ok(None), "prefix {k} of {buf:02x?}"),
            Err(_) => assert!(p == Ok(None) || p == got, "prefix {k}: {p:?} vs {got:?}"),
        }
    }
    got
}

/// `encode_header` then `decode_header` gives the same fields, in the minimal length form.
fn check_round_trip(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) {
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = encode_header(fin, opcode, mask, len, &mut out);
    assert_eq!(n, header_len(mask.is_some(), len));
    let (rh, bad) = ref_header(&out[..n]);
    let rh = rh.expect("encoded header incomplete");
    assert!(rh.minimal, "non-minimal length for {len}");
    assert_eq!(rh.hlen, n);
    assert_eq!((rh.fin, rh.rsv, rh.op, rh.key, rh.len), (fin, 0, opcode as u8, mask, len));
    let got = check_decode(&out[..n]);
    if opcode.is_control() && (!fin || len > 125) {
        assert!(!bad.is_empty() && got.is_err(), "invalid control header accepted");
    } else {
        assert!(bad.is_empty());
        assert_eq!(got, Ok(Some((FrameHeader { fin, rsv: 0, opcode, mask, len }, n))));
    }
}

/// Target `frame`: `decode_header` on arbitrary bytes, and encode/decode round trips.
pub fn check_frame(data: &[u8]) {
    if let Ok(Some((h, _))) = check_decode(data) {
        check_round_trip(h.fin, h.opcode, h.mask, h.len);
    }
    // Fields chosen by the input: [flags, opcode, key x4, length x8].
    let mut r = Bytes::new(data);
    let flags = r.u8();
    let ops = [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong];
    let op = ops[r.u8() as usize % ops.len()];
    let key = [r.u8(), r.u8(), r.u8(), r.u8()];
    let raw = u64::from_be_bytes(std::array::from_fn(|_| r.u8()));
    let len = match flags >> 6 {
        0 => raw % 126,
        1 => 126 + raw % (0x1_0000 - 126),
        2 => 0x1_0000 + raw % (1 << 32),
        _ => raw >> 1,
    };
    check_round_trip(flags & 1 != 0, op, (flags & 2 != 0).then_some(key), len);
}
