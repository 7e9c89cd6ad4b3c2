//! Property checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the regression test
//! (`tests/fuzz_regressions.rs`, which includes this file with `#[path]`).
//!
//! Every check takes a fuzz input as raw bytes and panics when a property fails, so that one input
//! replays identically under libFuzzer and under `cargo test` on stable. Structured inputs (split
//! points, whole client sessions) are decoded by hand from the bytes ([`Bytes`]) rather than with
//! `arbitrary`, so this file depends only on what the main package depends on: `wsecho`, `sha1` and
//! `std`.
//!
//! The expected behaviour comes from reference code written here from the RFCs, not from the
//! server's modules: a frame-header decoder, a client-stream model of RFC 6455 (what a server must
//! echo and how it must fail), a strict decoder of server frames, base64, masking by index, and
//! `std::str::from_utf8` as the UTF-8 oracle.

use std::ops::Range;

use sha1::{Digest, Sha1};
use wsecho::close::CloseCode;
use wsecho::conn::{Connection, Next, Shared, FRAME_BOUND, MIN_OUT_BUFFER};
use wsecho::frame::{decode_header, encode_header, header_len, FrameHeader, OpCode, ProtocolError, MAX_HEADER_LEN};
use wsecho::handshake::{
    parse_request, write_accept, write_reject, HandshakeError, Request, Upgrade, MAX_HEAD, MAX_RESPONSE,
};
use wsecho::mask::{apply_mask, apply_mask_naive};
use wsecho::memsock::MemSocket;
use wsecho::utf8::Utf8Validator;

/// The fuzz targets, by name (also the names of their folders under `fuzz/`).
pub const TARGETS: [&str; 5] = ["handshake", "frame", "utf8", "mask", "connection"];

/// Runs the check of `target` on one input.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "handshake" => check_handshake(data),
        "frame" => check_frame(data),
        "utf8" => check_utf8(data),
        "mask" => check_mask(data),
        "connection" => check_connection(data),
        _ => panic!("unknown fuzz target {target}"),
    }
}

// =================================================================================================
// Input decoding
// =================================================================================================

/// A cursor over fuzz input; reads past the end yield zeros (and empty slices), never panic.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Starts at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    /// Whether everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Sorted cut points in `0..=len`, from big-endian u16 values.
fn cut_points(raw: &[u16], len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = raw.iter().map(|&c| c as usize % (len + 1)).collect();
    v.sort_unstable();
    v
}

/// Where `part` lies inside `whole`, if it is a subslice of it (by address).
fn subslice_range(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= w && p + part.len() <= w + whole.len()).then(|| p - w..p - w + part.len())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// =================================================================================================
// Reference helpers written from the RFCs
// =================================================================================================

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64 with padding.
pub fn b64_encode(input: &[u8]) -> String {
    let mut s = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Strict RFC 4648 base64: padded to a multiple of 4, padding only at the end, no non-zero unused
/// bits, no whitespace.
pub fn b64_decode_strict(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() & 3 != 0 {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &s[..s.len() - pad];
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for &c in body {
        let v = B64.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover bits must be zero, and the padding must match the leftover.
    if bits != 0 || (pad > 0 && nbits != 2 * pad) || (pad == 0 && nbits != 0) {
        return None;
    }
    Some(out)
}

/// `Sec-WebSocket-Accept` for a key, RFC 6455 §4.2.2.
pub fn expected_accept(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    b64_encode(sha.finalize().as_slice())
}

/// How many bytes of `b` are valid UTF-8, and whether what follows is an error (as opposed to an
/// incomplete code point at the end).
fn utf8_state(b: &[u8]) -> (usize, bool) {
    match std::str::from_utf8(b) {
        Ok(_) => (b.len(), false),
        Err(e) => (e.valid_up_to(), e.error_len().is_some()),
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ws(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ws(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ws(*last) {
            break;
        }
        v = rest;
    }
    v
}

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',').any(|t| trim_ws(t).eq_ignore_ascii_case(token))
}

// =================================================================================================
// 1. handshake
// =================================================================================================

/// A request head as a plain reading of RFC 9112 sees it (used as an independent oracle; `None` when
/// the head has anything unusual, such as folded lines).
struct Head<'a> {
    method: &'a [u8],
    version: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
}

impl Head<'_> {
    fn values<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

fn mini_parse(head: &[u8]) -> Option<Head<'_>> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut first = lines.next()?;
    while first.is_empty() {
        first = lines.next()?;
    }
    let parts: Vec<&[u8]> = first.split(|&b| b == b' ').collect();
    let [method, _target, version] = parts[..] else { return None };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b >= 0x7f) {
            return None;
        }
        headers.push((name, trim_ws(&line[colon + 1..])));
    }
    Some(Head { method, version, headers })
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// Body (after CRLF CRLF).
    pub body: &'a [u8],
}

impl Response<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v)
    }
}

/// Checks that `bytes` is one well-formed HTTP/1.1 response (status line, header fields, CRLF
/// CRLF, a body matching Content-Length when present) and returns its parts.
pub fn check_http_response(bytes: &[u8]) -> Response<'_> {
    let end =
        find(bytes, b"\r\n\r\n").unwrap_or_else(|| panic!("no CRLF CRLF in {:?}", String::from_utf8_lossy(bytes)));
    let head = &bytes[..end];
    let body = &bytes[end + 4..];
    assert!(head.is_ascii(), "non-ASCII response head");
    let mut lines = Vec::new();
    let mut rest = head;
    while let Some(i) = find(rest, b"\r\n") {
        lines.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    lines.push(rest);
    for l in &lines {
        assert!(!l.contains(&b'\r') && !l.contains(&b'\n'), "bare CR or LF in response head");
    }
    let status_line = lines[0];
    assert!(status_line.starts_with(b"HTTP/1.1 "), "bad status line {:?}", String::from_utf8_lossy(status_line));
    let code = &status_line[9..];
    assert!(code.len() > 4 && code[..3].iter().all(u8::is_ascii_digit) && code[3] == b' ', "bad status code");
    let status = std::str::from_utf8(&code[..3]).unwrap().parse::<u16>().unwrap();
    let mut headers = Vec::new();
    for line in &lines[1..] {
        let colon = line.iter().position(|&b| b == b':').unwrap_or_else(|| panic!("header line without colon"));
        let name = &line[..colon];
        assert!(!name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-'), "bad header name");
        let value = &line[colon + 1..];
        assert!(value.starts_with(b" ") && !trim_ws(value).is_empty(), "bad header value");
        headers.push((name, trim_ws(value)));
    }
    let r = Response { status, headers, body };
    if let Some(cl) = r.get("Content-Length") {
        let n: usize = std::str::from_utf8(cl).unwrap().parse().expect("Content-Length");
        assert_eq!(n, body.len(), "Content-Length does not match the body");
    }
    r
}

/// Checks the 101 response for `key`.
pub fn check_accept_response(resp: &[u8], key: &[u8]) {
    let r = check_http_response(resp);
    assert_eq!(r.status, 101);
    assert!(resp.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(r.body.is_empty(), "101 with a body");
    assert!(r.get("Upgrade").is_some_and(|v| has_token(v, b"websocket")), "101 without Upgrade: websocket");
    assert!(r.get("Connection").is_some_and(|v| has_token(v, b"upgrade")), "101 without Connection: Upgrade");
    assert_eq!(r.get("Sec-WebSocket-Accept"), Some(expected_accept(key).as_bytes()), "wrong Sec-WebSocket-Accept");
}

/// Checks the error response for `e` (written into a 512-byte buffer, as the server does).
pub fn check_reject(e: HandshakeError) {
    let mut out = [0u8; 512];
    let n = write_reject(e, &mut out);
    assert!(n > 0 && n <= out.len(), "{e:?}: no response");
    let r = check_http_response(&out[..n]);
    assert!((400..600).contains(&r.status), "{e:?}: status {}", r.status);
    assert!(!r.body.is_empty() && std::str::from_utf8(r.body).is_ok(), "{e:?}: body");
    assert!(r.get("Content-Length").is_some(), "{e:?}: no Content-Length");
    assert!(r.get("Connection").is_some_and(|v| has_token(v, b"close")), "{e:?}: no Connection: close");
    match e {
        // RFC 6455 §4.4: the version header tells the client which version to use.
        HandshakeError::UnsupportedVersion => {
            assert!(r.get("Sec-WebSocket-Version").is_some_and(|v| has_token(v, b"13")), "426 without version");
        }
        // RFC 9110 §15.5.6: 405 must list the allowed methods.
        HandshakeError::MethodNotAllowed => {
            assert_eq!(r.status, 405);
            assert!(r.get("Allow").is_some_and(|v| has_token(v, b"GET")), "405 without Allow");
        }
        HandshakeError::TooLarge => assert!(r.status == 431 || r.status == 400),
        _ => {}
    }
}

fn check_upgrade(data: &[u8], u: &Upgrade<'_>) {
    assert!(u.head_len <= data.len() && u.head_len <= MAX_HEAD, "head_len {} of {}", u.head_len, data.len());
    let head = &data[..u.head_len];
    assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"), "head does not end with an empty line");
    let r = subslice_range(data, u.key).expect("key is not a subslice of the input");
    assert!(r.end <= u.head_len, "key outside the head");
    assert_eq!(b64_decode_strict(u.key).map(|k| k.len()), Some(16), "key {:?}", String::from_utf8_lossy(u.key));
    // Independent reading of the same head: everything RFC 6455 §4.2.1 asks for is there.
    if let Some(h) = mini_parse(head) {
        assert_eq!(h.method, b"GET");
        assert_eq!(h.version, b"HTTP/1.1");
        assert!(h.values(b"host").next().is_some(), "accepted without Host");
        assert!(h.values(b"upgrade").any(|v| has_token(v, b"websocket")), "accepted without Upgrade: websocket");
        assert!(h.values(b"connection").any(|v| has_token(v, b"upgrade")), "accepted without Connection: Upgrade");
        assert!(h.values(b"sec-websocket-version").any(|v| v == b"13"), "accepted without version 13");
        assert!(h.values(b"sec-websocket-key").any(|v| v == u.key), "key is not the Sec-WebSocket-Key value");
    }
    let mut out = [0u8; MAX_RESPONSE];
    let n = write_accept(u.key, &mut out);
    assert!(n <= MAX_RESPONSE);
    check_accept_response(&out[..n], u.key);
}

type Parsed<'a> = Result<Option<Request<'a>>, HandshakeError>;

fn head_len_of(r: &Parsed<'_>) -> Option<usize> {
    match r {
        Ok(Some(Request::Upgrade(u))) => Some(u.head_len),
        Ok(Some(Request::Plain { head_len, .. })) => Some(*head_len),
        _ => None,
    }
}

/// Target `handshake`: `parse_request` on arbitrary bytes.
pub fn check_handshake(data: &[u8]) {
    let full = parse_request(data);
    match &full {
        Ok(None) => assert!(data.len() < MAX_HEAD, "{} bytes still incomplete", data.len()),
        Ok(Some(Request::Upgrade(u))) => check_upgrade(data, u),
        Ok(Some(Request::Plain { path, head_len })) => {
            assert!(*head_len <= data.len() && *head_len <= MAX_HEAD);
            let r = subslice_range(data, path.as_bytes()).expect("path is not a subslice of the input");
            assert!(r.end <= *head_len);
            if let Some(h) = mini_parse(&data[..*head_len]) {
                assert_eq!(h.method, b"GET");
                for name in [&b"upgrade"[..], b"sec-websocket-key", b"sec-websocket-version"] {
                    assert!(h.values(name).next().is_none(), "plain request with {}", String::from_utf8_lossy(name));
                }
            }
        }
        Err(e) => check_reject(*e),
    }
    // Streaming: the server parses the head as it accumulates, so every prefix must be consistent
    // with the whole: incomplete until the head is complete, then the same answer; an error never
    // turns back into "incomplete", and only the size limit may differ from the final error.
    let n = data.len();
    let mut points: Vec<usize> =
        if n <= 256 { (0..n).collect() } else { (0..64).chain((64..n).step_by(n / 128 + 1)).chain(n - 8..n).collect() };
    if let Some(h) = head_len_of(&full) {
        points.extend(h.saturating_sub(3)..(h + 3).min(n));
    }
    points.extend([MAX_HEAD - 1, MAX_HEAD].iter().filter(|&&k| k < n));
    points.sort_unstable();
    points.dedup();
    let mut decided = false;
    for k in points {
        let p = parse_request(&data[..k]);
        match &p {
            Ok(None) => {
                assert!(!decided, "prefix {k}: incomplete after a decision");
                assert!(k < MAX_HEAD, "prefix {k}: incomplete at the size limit");
                if let Some(h) = head_len_of(&full) {
                    assert!(k < h, "prefix {k} holds the whole head ({h}) but is incomplete");
                }
            }
            Ok(Some(_)) => assert_eq!(p, full, "prefix {k} complete but different"),
            Err(HandshakeError::TooLarge) => assert!(full.is_err(), "prefix {k} too large, whole {full:?}"),
            Err(_) => assert_eq!(p, full, "prefix {k}: error differs from the whole"),
        }
        decided |= p != Ok(None);
    }
}

// =================================================================================================
// 2. frame
// =================================================================================================

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

// =================================================================================================
// 3. utf8
// =================================================================================================

/// Feeds `pieces` (which concatenate to `whole`) to `v` and checks every step against
/// `std::str::from_utf8`: each piece passes on exactly the bytes that are known valid and complete,
/// the validator is incomplete exactly when a code point is cut, and it fails on the first piece
/// that makes the text invalid (never earlier, never later).
fn check_utf8_message(v: &mut Utf8Validator, pieces: &[&[u8]], whole: &[u8]) {
    let mut out: Vec<u8> = Vec::new();
    let (mut fed, mut checked) = (0usize, 0usize);
    for p in pieces {
        let res = v.feed(p);
        fed += p.len();
        let (valid, definite) = utf8_state(&whole[checked..fed]);
        let valid_to = checked + valid;
        match res {
            Err(_) => {
                assert!(definite, "rejected text that is valid so far ({fed} bytes of {whole:02x?})");
                return;
            }
            Ok(f) => {
                assert!(!definite, "accepted invalid text at {valid_to} of {whole:02x?}");
                assert!(f.prefix_len <= 4 && f.body.start <= f.body.end && f.body.end <= p.len(), "{f:?}");
                let before = out.len();
                out.extend_from_slice(&f.prefix[..f.prefix_len as usize]);
                out.extend_from_slice(&p[f.body]);
                assert_eq!(out.len(), valid_to, "passed on {} bytes, {} are valid", out.len(), valid_to);
                assert_eq!(out[before..], whole[before..valid_to], "passed-on bytes differ");
                assert_eq!(v.is_incomplete(), valid_to < fed, "incomplete flag at {fed}");
                checked = valid_to;
            }
        }
    }
    let ok = !v.is_incomplete();
    assert_eq!(ok, std::str::from_utf8(whole).is_ok(), "verdict differs for {whole:02x?}");
    if ok {
        assert_eq!(out, whole);
    }
}

/// Target `utf8`: `[flags, cuts (u16 each), text]`; flags: bits 0-2 number of cuts, bits 3-5 chunk
/// size - 1, bit 6 feed in chunks of that size, bit 7 start a new message (reset) at the first cut.
pub fn check_utf8(data: &[u8]) {
    let mut r = Bytes::new(data);
    let flags = r.u8();
    let raw: Vec<u16> = (0..(flags & 7)).map(|_| r.u16()).collect();
    let text = r.rest();
    let cuts = cut_points(&raw, text.len());
    let chunk = if flags & 0x40 != 0 { ((flags >> 3) & 7) as usize + 1 } else { usize::MAX };
    // Pieces at the cuts (an empty piece where two cuts meet), each cut again into chunks.
    let mut pieces: Vec<(usize, &[u8])> = Vec::new();
    let mut start = 0;
    for c in cuts.iter().copied().chain(std::iter::once(text.len())) {
        if c == start {
            pieces.push((c, &text[c..c]));
        }
        let mut s = start;
        while s < c {
            let e = c.min(s.saturating_add(chunk));
            pieces.push((s, &text[s..e]));
            s = e;
        }
        start = c;
    }
    // Messages: one, or two split at the first cut with a reset in between.
    let boundary = if flags & 0x80 != 0 { cuts.first().copied() } else { None };
    let mut v = Utf8Validator::new();
    match boundary {
        None => {
            let ps: Vec<&[u8]> = pieces.iter().map(|p| p.1).collect();
            check_utf8_message(&mut v, &ps, text);
        }
        Some(b) => {
            let first: Vec<&[u8]> = pieces.iter().filter(|p| p.0 < b).map(|p| p.1).collect();
            let second: Vec<&[u8]> = pieces.iter().filter(|p| p.0 >= b).map(|p| p.1).collect();
            check_utf8_message(&mut v, &first, &text[..b]);
            v.reset();
            assert!(!v.is_incomplete());
            check_utf8_message(&mut v, &second, &text[b..]);
        }
    }
}

// =================================================================================================
// 4. mask
// =================================================================================================

/// The key rotated for the byte at offset `n`.
fn rotated(key: [u8; 4], n: usize) -> [u8; 4] {
    std::array::from_fn(|i| key[(n + i) % 4])
}

/// Target `mask`: `[key x4, flags, cuts (u16 each), payload]`; flags: bits 0-2 alignment offset,
/// bits 3-5 number of cuts, bit 6 grow the payload past 300 bytes (the word-at-a-time path).
pub fn check_mask(data: &[u8]) {
    let mut r = Bytes::new(data);
    let key = [r.u8(), r.u8(), r.u8(), r.u8()];
    let flags = r.u8();
    let off = (flags & 7) as usize;
    let raw: Vec<u16> = (0..((flags >> 3) & 7)).map(|_| r.u16()).collect();
    let mut payload = r.rest().to_vec();
    if flags & 0x40 != 0 {
        let seed = payload.clone();
        while payload.len() < 300 {
            let i = payload.len();
            payload.push(seed.get(i % seed.len().max(1)).copied().unwrap_or(i as u8) ^ (i as u8));
        }
    }
    let expect: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    let mut naive = payload.clone();
    apply_mask_naive(&mut naive, key);
    assert_eq!(naive, expect, "apply_mask_naive");
    let mut storage = vec![0u8; off + payload.len()];
    storage[off..].copy_from_slice(&payload);
    let buf = &mut storage[off..];
    let cuts = cut_points(&raw, buf.len());
    let (mut k, mut start) = (key, 0);
    for c in cuts.into_iter().chain(std::iter::once(buf.len())) {
        let next = apply_mask(&mut buf[start..c], k);
        assert_eq!(next, rotated(key, c), "key after {c} bytes");
        k = next;
        start = c;
    }
    assert_eq!(&buf[..], &expect[..], "offset {off}");
    // Masking is an involution.
    assert_eq!(apply_mask(buf, key), rotated(key, buf.len()));
    assert_eq!(&buf[..], &payload[..]);
}

// =================================================================================================
// 5. connection: a reference model of RFC 6455 for an echo server
// =================================================================================================

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
fn close_code_valid(c: u16) -> bool {
    matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Codes registered after RFC 6455 (1012-1014): a server may accept or reject them.
fn close_code_later(c: u16) -> bool {
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

/// What the server sent after the 101, read by a strict client (RFC 6455 §5: server frames are
/// unmasked, minimally encoded, RSV clear; control frames whole and short; fragments in order; text
/// is UTF-8; nothing after a close).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerOut {
    /// Messages and pongs.
    pub events: Vec<Ev>,
    /// Every complete data frame: FIN, opcode, payload length.
    pub frames: Vec<FrameShape>,
    /// An unfinished message: opcode and payload so far (including the payload of a last data
    /// frame that the output ends inside, as a streamed echo may).
    pub partial: Option<(u8, Vec<u8>)>,
    /// The output ends inside a data frame's payload.
    pub truncated: bool,
    /// The close code, if a close frame was sent.
    pub close: Option<u16>,
    /// Pings the server sent (empty, from idle ticks).
    pub pings: usize,
}

/// Parses the server's output: the 101 response for `key`, then frames.
pub fn parse_server_output(out: &[u8], key: &[u8]) -> Result<ServerOut, String> {
    let head_end = find(out, b"\r\n\r\n").ok_or("no complete 101 response")? + 4;
    check_accept_response(&out[..head_end], key);
    let mut s = &out[head_end..];
    let mut r = ServerOut::default();
    while !s.is_empty() {
        if r.close.is_some() {
            return Err(format!("{} bytes after the close frame", s.len()));
        }
        let (h, bad) = ref_header(s);
        let h = h.ok_or("output ends inside a frame header")?;
        if !bad.is_empty() {
            return Err(format!("server frame breaks {bad:?}"));
        }
        if h.key.is_some() {
            return Err("masked server frame".into());
        }
        if !h.minimal {
            return Err(format!("non-minimal length encoding of {}", h.len));
        }
        let complete = ((s.len() - h.hlen) as u64) >= h.len;
        if !complete && (h.op >= 8 || r.truncated) {
            return Err("output ends inside a control frame".into());
        }
        let p = &s[h.hlen..(h.hlen + h.len as usize).min(s.len())];
        s = &s[h.hlen + p.len()..];
        if !complete {
            // A binary frame's echo streamed behind its header; the rest of it never came in.
            r.truncated = true;
        } else if h.op < 8 {
            r.frames.push((h.fin, h.op, p.len()));
        }
        match h.op {
            0 => {
                let m = r.partial.as_mut().ok_or("continuation without a message")?;
                m.1.extend_from_slice(p);
            }
            1 | 2 => {
                if r.partial.is_some() {
                    return Err("new message inside a fragmented message".into());
                }
                r.partial = Some((h.op, p.to_vec()));
            }
            8 => {
                let code = match p.len() {
                    0 => 1005,
                    1 => return Err("close payload of 1 byte".into()),
                    _ => u16::from_be_bytes([p[0], p[1]]),
                };
                if p.len() >= 2 && !close_code_valid(code) && !close_code_later(code) {
                    return Err(format!("server sent close code {code}"));
                }
                if p.len() > 2 && std::str::from_utf8(&p[2..]).is_err() {
                    return Err("close reason is not UTF-8".into());
                }
                r.close = Some(code);
                continue;
            }
            10 => {
                r.events.push(Ev::Pong(p.to_vec()));
                continue;
            }
            9 if p.is_empty() => {
                r.pings += 1;
                continue;
            }
            op => return Err(format!("unexpected server opcode {op} (payload {} bytes)", p.len())),
        }
        if h.fin && complete {
            let (op, b) = r.partial.take().unwrap_or_default();
            if op == 1 && std::str::from_utf8(&b).is_err() {
                return Err("text message is not UTF-8".into());
            }
            r.events.push(Ev::Msg(op, b));
        }
    }
    Ok(r)
}

/// Server configurations: read size, write buffer, max message.
pub const LIMITS: [(usize, usize, u64); 4] =
    [(4096, 16 << 10, 1 << 16), (16 << 10, 16 << 10, 1 << 16), (4096, 64 << 10, 300), (8192, 32 << 10, 1 << 16)];
/// Sizes of the segments the client's bytes arrive in.
pub const CHUNKS: [usize; 16] = [usize::MAX, 1, 2, 3, 5, 7, 13, 64, 125, 200, 1000, 1500, 4096, 5000, 9000, 65536];
/// Room the socket gives writes until the next change.
pub const ROOMS: [usize; 8] = [0, usize::MAX, 1, 2, 100, 1000, 4096, 20000];
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
/// At most this many operations per session, and client bytes in total.
const MAX_OPS: usize = 256;
const MAX_STREAM: usize = 512 << 10;

/// Plain GETs the server answers itself (path, expected body when fixed).
const PLAIN: [(&str, Option<&[u8]>); 2] = [("/healthz", Some(b"ok\n")), ("/metrics", None)];

/// Checks a Prometheus text exposition: comments, or `name{labels} value` with a number.
fn check_metrics_text(body: &[u8]) {
    let text = std::str::from_utf8(body).expect("metrics are not UTF-8");
    assert!(text.ends_with('\n'), "metrics do not end with a newline");
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("metrics line {line:?}"));
        assert!(!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()), "metric name in {line:?}");
        assert!(value.parse::<f64>().is_ok(), "metric value in {line:?}");
    }
}

/// Valid upgrade requests (request bytes, key).
pub fn request(i: u8) -> (Vec<u8>, &'static [u8]) {
    match i % 4 {
        // RFC 6455 §1.3 / §4.1.
        0 => (
            b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec(),
            b"dGhlIHNhbXBsZSBub25jZQ==",
        ),
        1 => (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec(),
            b"AQIDBAUGBwgJCgsMDQ4PEA==",
        ),
        2 => (
            b"GET /a?b=c HTTP/1.1\r\nhost: h:80\r\nconnection: keep-alive, Upgrade\r\nupgrade: WebSocket\r\n\
sec-websocket-version:13\r\nsec-websocket-key:   x3JJHMbDL1EzLkh9GBhXDw==  \r\nUser-Agent: fuzz\r\n\r\n"
                .to_vec(),
            b"x3JJHMbDL1EzLkh9GBhXDw==",
        ),
        _ => {
            let mut r = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
            r.resize(r.len() + 3000, b'p');
            r.extend_from_slice(
                b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n",
            );
            (r, b"AAAAAAAAAAAAAAAAAAAAAA==")
        }
    }
}

/// Drives one connection over a [`MemSocket`] the way the reactor does (edge-triggered events,
/// `Again` re-queued, a writable event first and no read after a read it resumed).
///
/// The client's bytes travel through a "network" queue and arrive in the socket in segments of
/// `chunk` bytes, one readable edge per segment, the FIN (with EPOLLRDHUP) together with the last
/// one. A read returns everything that has arrived (as `read(2)` on TCP does), so a connection that
/// stops reading early waits for an edge that never comes, and the final checks catch it. The
/// socket's write room is tracked so that writable edges come only when a full socket gets room.
struct Driver {
    sh: Shared,
    conn: Connection<MemSocket>,
    write_buffer: usize,
    out: Vec<u8>,
    closed: bool,
    /// Pending readable / writable edges.
    rd: bool,
    wr: bool,
    /// Write room left (usize::MAX: unlimited).
    room: usize,
    /// The peer shut its side: nothing it sends later arrives.
    eof: bool,
    /// Bytes sent and not yet arrived, the segment size, and a FIN to deliver after them.
    net: Vec<u8>,
    net_pos: usize,
    chunk: usize,
    fin: bool,
    steps: usize,
    kicks: usize,
    pushed: usize,
    /// States reached (for WSECHO_FUZZ_DEBUG): paused, and each phase.
    seen: Vec<String>,
}

impl Driver {
    fn new(read: usize, write_buffer: usize, max_message: u64, overloaded: bool) -> Driver {
        Driver {
            sh: Shared::new(read, write_buffer, max_message),
            conn: Connection::new(MemSocket::new(), overloaded),
            write_buffer,
            out: Vec::new(),
            closed: false,
            rd: false,
            wr: false,
            room: usize::MAX,
            eof: false,
            net: Vec::new(),
            net_pos: 0,
            chunk: usize::MAX,
            fin: false,
            steps: 0,
            kicks: 0,
            pushed: 0,
            seen: Vec::new(),
        }
    }

    fn push(&mut self, b: &[u8]) {
        if b.is_empty() || self.closed || self.eof {
            return;
        }
        self.pushed += b.len();
        self.net.extend_from_slice(b);
    }

    fn set_chunk(&mut self, n: usize) {
        self.chunk = n.max(1);
    }

    /// Delivers the next segment (and the FIN after the last one): a readable edge.
    fn deliver(&mut self) -> bool {
        if self.closed || (self.net_pos == self.net.len() && !self.fin) {
            return false;
        }
        let n = (self.net.len() - self.net_pos).min(self.chunk);
        let seg = self.net_pos..self.net_pos + n;
        self.conn.stream_mut().push_input(&self.net[seg]);
        self.net_pos += n;
        if self.net_pos == self.net.len() {
            self.net.clear();
            self.net_pos = 0;
            if std::mem::take(&mut self.fin) {
                self.conn.stream_mut().close_input();
                self.conn.note_hangup();
            }
        }
        self.kicks += 1;
        self.rd = true;
        true
    }

    fn set_room(&mut self, n: usize) {
        if self.closed {
            return;
        }
        // A writable edge only when a full socket gets room again (edge-triggered).
        if n > 0 && self.room == 0 && self.conn.pending_out() > 0 {
            self.wr = true;
        }
        self.kicks += 1;
        self.room = n;
        self.conn.stream_mut().set_write_room(n);
    }

    /// One readiness event, as `Reactor::dispatch` handles it.
    fn dispatch(&mut self, readable: bool, writable: bool) {
        self.act(|c, sh| {
            let mut next = Next::Keep;
            let mut read_done = false;
            if writable {
                let was_paused = c.is_paused();
                next = c.on_writable(sh);
                read_done = was_paused && !c.is_paused();
            }
            if next == Next::Keep && readable && !read_done {
                next = c.on_readable(sh);
            }
            next
        });
    }

    /// Runs one handler, collects its output and checks the invariants.
    fn act(&mut self, f: impl FnOnce(&mut Connection<MemSocket>, &mut Shared) -> Next) {
        let next = f(&mut self.conn, &mut self.sh);
        self.steps += 1;
        let before = self.out.len();
        self.conn.stream_mut().drain_output(&mut self.out);
        let written = self.out.len() - before;
        if self.room < usize::MAX / 2 {
            self.room -= written;
        }
        let pending = self.conn.pending_out();
        if self.seen.len() < 64 {
            let state = if self.conn.is_paused() { "Paused".to_string() } else { format!("{:?}", self.conn.phase()) };
            if !self.seen.contains(&state) {
                self.seen.push(state);
            }
        }
        let bound = self.write_buffer.max(MIN_OUT_BUFFER);
        assert!(pending <= bound, "pending output {pending} over the write buffer {bound}");
        let limit = 4 * (self.pushed + self.out.len() + self.kicks) + 64;
        assert!(self.steps <= limit, "no termination: {} events for {} bytes in", self.steps, self.pushed);
        match next {
            Next::Close => {
                self.closed = true;
                self.conn.release(&mut self.sh);
                return;
            }
            Next::Again => self.rd = true,
            Next::Keep => {}
        }
        if pending > 0 && self.room > 0 && !self.wr {
            // Output queued although the socket has room: no writable edge will ever come for it.
            panic!("{pending} bytes queued while the socket has room");
        }
    }

    /// Handles events until none is pending, then lets the next segment arrive, until everything
    /// sent has arrived.
    fn pump(&mut self) {
        loop {
            while !self.closed && (self.rd || self.wr) {
                let (r, w) = (std::mem::take(&mut self.rd), std::mem::take(&mut self.wr));
                self.dispatch(r, w);
            }
            if !self.deliver() {
                break;
            }
        }
    }

    fn spurious(&mut self) {
        if !self.closed {
            self.kicks += 1;
            self.dispatch(true, true);
        }
    }

    /// Whether the connection has handled everything that was sent.
    fn caught_up(&mut self) -> bool {
        !self.closed
            && self.net.is_empty()
            && !self.fin
            && self.conn.stream_mut().unread() == 0
            && !self.conn.is_paused()
    }

    /// The server shuts down: close 1001 (`Reactor` on SIGTERM).
    fn shutdown(&mut self) {
        self.kicks += 1;
        self.act(|c, sh| c.start_close(sh, CloseCode::GOING_AWAY, "server shutdown"));
    }

    /// The idle timer ticks with a zero ping interval: the server pings.
    fn ping_tick(&mut self) {
        if !self.closed {
            self.kicks += 1;
            self.sh.ping_ms = Some(0);
            self.act(|c, sh| c.on_idle_tick(sh));
            self.sh.ping_ms = None;
        }
    }

    /// The peer shuts its sending side: a FIN follows what it sent (EPOLLIN | EPOLLRDHUP).
    fn close_input(&mut self) {
        if !self.eof && !self.closed {
            self.eof = true;
            self.fin = true;
        }
    }

    /// The peer reads everything (and, with `eof`, shuts its side); pumps until nothing moves.
    fn finish(&mut self, eof: bool) {
        self.set_room(usize::MAX);
        if eof {
            self.close_input();
        }
        self.pump();
        if self.closed {
            return;
        }
        assert!(!self.eof, "the peer closed and the server never closed the connection");
        let unread = self.conn.stream_mut().unread();
        assert_eq!(unread, 0, "reading stalled with {unread} bytes unread (phase {:?})", self.conn.phase());
        assert_eq!(self.conn.pending_out(), 0, "output stuck in the buffer");
    }
}

/// Frame descriptions, shared by the session decoder and [`Session`] (which writes seeds).
#[derive(Debug, Clone, Default)]
pub struct FrameSpec {
    /// 0 text, 1 binary, 2 continuation, 3 ping, 4 pong, 5 close.
    pub kind: u8,
    /// FIN (data frames; control frames always get FIN unless corrupted).
    pub fin: bool,
    /// Masking key; `None` is the all-zero key (MASK stays set).
    pub key: Option<[u8; 4]>,
    /// Use a longer length form than needed (data frames).
    pub nonmin: bool,
    /// With `nonmin`: the 64-bit form even for lengths up to 0xffff.
    pub ext64: bool,
    /// Text payload: 0 raw bytes made valid (lossy), 1 ASCII, 2 byte to character table, 3 one
    /// repeated character.
    pub text_mode: u8,
    /// Bytes of the last code point held back for the next fragment (non-final text frames).
    pub cut: u8,
    /// Where an invalid sequence goes (eighths of the text).
    pub at: u8,
    /// The payload.
    pub payload: Payload,
    /// A rule to break: (kind, parameter); see [`corrupt_codes`].
    pub corrupt: Option<(u8, u8)>,
    /// Deliver the frame in two parts, with events in between, cut at this byte.
    pub split: Option<u8>,
}

/// Where a payload comes from.
#[derive(Debug, Clone)]
pub enum Payload {
    /// These bytes (at most 255).
    Bytes(Vec<u8>),
    /// `BIG[sel]` bytes of a pattern.
    Big(u8, u8),
    /// `n % 4096` bytes of a pattern.
    Len(u16, u8),
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Bytes(Vec::new())
    }
}

/// Close codes the generator expects for a corruption kind (`None`: not a corruption).
pub fn corrupt_codes(kind: u8) -> Option<u16> {
    match kind {
        0..=4 | 6 | 8 | 9 | 11 => Some(1002),
        5 | 10 | 12 => Some(1007),
        7 => Some(1009),
        _ => None,
    }
}

/// Writes session inputs for the `connection` target (used for seeds).
pub struct Session {
    /// The encoded input.
    pub bytes: Vec<u8>,
}

impl Session {
    /// A session: limits index (0-3), EOF at the end, events after every operation, initial read
    /// chunk index, request index.
    pub fn new(limits: u8, eof: bool, auto: bool, chunk: u8, request: u8) -> Session {
        let cfg = (limits & 3) | (u8::from(eof) << 2) | (u8::from(auto) << 3) | (chunk << 4);
        Session { bytes: vec![cfg, request] }
    }

    /// Appends a frame.
    pub fn frame(&mut self, f: FrameSpec) -> &mut Self {
        let (mode, short) = match &f.payload {
            Payload::Bytes(b) if b.len() < 16 => (1u8, b.len() as u8),
            Payload::Bytes(_) => (0, 0),
            Payload::Big(..) => (2, 0),
            Payload::Len(..) => (3, 0),
        };
        let tag = (if f.split.is_some() { 15 } else { 0 }) | (short << 4);
        let k = (f.kind & 7)
            | (u8::from(f.fin) << 3)
            | (u8::from(f.key.is_none()) << 4)
            | (u8::from(f.nonmin) << 5)
            | (mode << 6);
        let k2 = (f.cut & 3) | ((f.text_mode & 3) << 2) | (u8::from(f.ext64) << 4) | ((f.at & 7) << 5);
        self.bytes.extend([tag, k, k2]);
        match f.corrupt {
            Some((c, p)) => self.bytes.extend([0xf0 | c, p]),
            None => self.bytes.push(0),
        }
        match &f.payload {
            Payload::Bytes(b) => {
                if mode == 0 {
                    self.bytes.push(b.len().min(255) as u8);
                }
                self.bytes.extend_from_slice(&b[..b.len().min(255)]);
            }
            Payload::Big(sel, fill) => self.bytes.extend([*sel, *fill]),
            Payload::Len(n, fill) => self.bytes.extend([(n >> 8) as u8, *n as u8, *fill]),
        }
        if let Some(key) = f.key {
            self.bytes.extend(key);
        }
        if let Some(s) = f.split {
            self.bytes.push(s);
        }
        self
    }

    /// Appends raw bytes (at most 255).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend([10, b.len().min(255) as u8]);
        self.bytes.extend_from_slice(&b[..b.len().min(255)]);
        self
    }

    /// Sets the segment size the bytes arrive in (index into [`CHUNKS`]).
    pub fn chunk(&mut self, sel: u8) -> &mut Self {
        self.bytes.extend([11, sel]);
        self
    }

    /// Sets the write room (index into [`ROOMS`]).
    pub fn room(&mut self, sel: u8) -> &mut Self {
        self.bytes.extend([12, sel]);
        self
    }

    /// The peer shuts its sending side.
    pub fn eof(&mut self) -> &mut Self {
        self.bytes.push(9);
        self
    }

    /// Lets everything sent arrive, handling events.
    pub fn pump(&mut self) -> &mut Self {
        self.bytes.push(13);
        self
    }

    /// The server shuts down (close 1001).
    pub fn shutdown(&mut self) -> &mut Self {
        self.bytes.push(0x8d);
        self
    }

    /// An idle tick that makes the server ping.
    pub fn ping_tick(&mut self) -> &mut Self {
        self.bytes.push(0xcd);
        self
    }

    /// A spurious readable + writable event.
    pub fn spurious(&mut self) -> &mut Self {
        self.bytes.push(14);
        self
    }
}

/// The generator: turns frame descriptions into bytes, valid unless told to corrupt, and records
/// what a correct server must answer (its intent, checked against [`model`]).
struct Gen {
    max_message: u64,
    /// Opcode of the message in progress.
    in_msg: Option<u8>,
    /// Bytes of the message in progress, sent or held back.
    content: u64,
    /// Bytes of a cut code point, to start the next text fragment.
    carry: Vec<u8>,
    /// Bytes of the message in progress sent so far.
    sent: Vec<u8>,
    intent: Vec<Ev>,
    /// A close or a corrupted frame was sent: the server ignores what follows.
    done: bool,
    close: Option<u16>,
    first_bad: Option<(usize, u16)>,
    /// No raw bytes went out before `done`: generated frames are where the model sees them.
    aligned: bool,
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
    fn new(max_message: u64) -> Gen {
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

    fn raw(&mut self, n: usize) {
        if n > 0 && !self.done {
            self.aligned = false;
        }
    }

    /// Decodes a frame description (see [`Session::frame`] for the layout).
    fn spec(r: &mut Bytes<'_>, tag: u8) -> FrameSpec {
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
    fn frame(&mut self, f: &FrameSpec, small_reads: bool) -> Vec<u8> {
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

fn normalize(p: &Option<(u8, Vec<u8>)>) -> Option<(u8, &[u8])> {
    p.as_ref().filter(|(_, b)| !b.is_empty()).map(|(op, b)| (*op, &b[..]))
}

/// Target `connection`: a whole client session against one connection, in memory.
///
/// Layout: `[cfg, request, ops...]`. `cfg`: bits 0-1 [`LIMITS`] index, bit 2 EOF at the end, bit 3
/// let the bytes arrive after every operation, bits 4-7 initial [`CHUNKS`] index (segment size). Each op starts with a
/// tag whose low nibble is: 0-8 a frame, 15 a frame delivered in two parts, 9 the peer's FIN
/// (nothing it sends later arrives), 10 raw bytes (`n, bytes`), 11 segment size (`sel`), 12 write
/// room (`sel`), 13 with the high nibble 0-7 let everything arrive, 8-11 shut the server down
/// (close 1001, once it has handled all input), 12-15 an idle tick that pings; 14 a spurious event.
/// `request`: [`request`] index; bit 6 a plain GET instead (bit 5: `/metrics`, else `/healthz`);
/// bit 7 the server is over its connection limit (expects a 503 to an upgrade). A frame is `k, k2, c, [p], payload, [key x4], [split]` (see [`Gen::spec`]).
pub fn check_connection(data: &[u8]) {
    let mut r = Bytes::new(data);
    let cfg = r.u8();
    let (read, wbuf, max_message) = LIMITS[(cfg & 3) as usize];
    let (eof, auto) = (cfg & 4 != 0, cfg & 8 != 0);
    let mut chunk = CHUNKS[(cfg >> 4) as usize];
    let rq = r.u8();
    let overloaded = rq & 0x80 != 0;
    let plain = (rq & 0x40 != 0).then(|| PLAIN[(rq >> 5) as usize & 1]);
    let (req, key) = match plain {
        Some((path, _)) => (format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(), &b""[..]),
        None => request(rq),
    };
    let mut d = Driver::new(read, wbuf, max_message, overloaded);
    d.set_chunk(chunk);
    d.push(&req);
    if auto {
        d.pump();
    }
    let mut g = Gen::new(max_message);
    let mut stream = Vec::new();
    let mut ops = 0;
    // Client bytes handled when the server shut down (and whether the peer had shut its side
    // then), and idle ticks.
    let mut shutdown_at: Option<usize> = None;
    let mut shutdown_after_eof = false;
    let mut ticks = 0;
    while !r.is_empty() && ops < MAX_OPS && stream.len() < MAX_STREAM {
        ops += 1;
        let tag = r.u8();
        match tag & 15 {
            9 => d.close_input(),
            10 => {
                let n = r.u8() as usize;
                let b = r.take(n);
                if !d.eof {
                    g.raw(b.len());
                    stream.extend_from_slice(b);
                    d.push(b);
                }
            }
            11 => {
                chunk = CHUNKS[(r.u8() & 15) as usize];
                d.set_chunk(chunk);
            }
            12 => d.set_room(ROOMS[(r.u8() & 7) as usize]),
            13 => match tag >> 4 {
                0..=7 => d.pump(),
                8..=11 => {
                    d.pump();
                    if shutdown_at.is_none() && d.caught_up() {
                        shutdown_at = Some(stream.len());
                        shutdown_after_eof = d.eof;
                        d.shutdown();
                    }
                }
                _ => {
                    ticks += 1;
                    d.ping_tick();
                }
            },
            14 => d.spurious(),
            _ => {
                let spec = Gen::spec(&mut r, tag);
                if d.eof {
                    // Nothing can follow the peer's FIN.
                    continue;
                }
                let f = g.frame(&spec, chunk < 100);
                stream.extend_from_slice(&f);
                match spec.split {
                    Some(s) => {
                        let cut = s as usize % (f.len() + 1);
                        d.push(&f[..cut]);
                        d.pump();
                        d.push(&f[cut..]);
                    }
                    None => d.push(&f),
                }
            }
        }
        if auto {
            d.pump();
        }
    }
    d.finish(eof);

    if let Some((_, body)) = plain {
        // A plain GET of a served path: one 200 response, then the write side is shut.
        let r = check_http_response(&d.out);
        assert_eq!(r.status, 200);
        match body {
            Some(b) => assert_eq!(r.body, b),
            None => check_metrics_text(r.body),
        }
        assert!(d.closed || d.conn.stream_mut().write_shut(), "response sent but the write side is not shut");
        return;
    }
    if overloaded {
        // Over --max-connections: a 503 and nothing else, then the write side is shut.
        let r = check_http_response(&d.out);
        assert_eq!(r.status, 503);
        assert!(d.closed || d.conn.stream_mut().write_shut(), "503 sent but the write side is not shut");
        return;
    }
    // Every text frame the generator can build within `max_message` is echoed frame for frame.
    assert!(max_message <= FRAME_BOUND as u64);
    let mut exp = model(&stream[..shutdown_at.unwrap_or(stream.len())], max_message);
    if let (Some(_), End::Open, Some(until)) = (shutdown_at, &exp.end, exp.open_binary_until) {
        // Shut down while a binary frame's echo was half out: the close waits for the frame.
        if until <= stream.len() {
            exp = model(&stream[..until], max_message);
        } else {
            // The frame never completes: no close frame can be sent.
            exp = model(&stream, max_message);
            shutdown_at = None;
        }
    }
    if shutdown_at.is_some() {
        // The server closes with 1001 unless it had already closed. Once the peer has shut its
        // side, the close frame is optional: the server may just deliver what is queued and close.
        exp.end = match exp.end {
            End::Open if shutdown_after_eof => End::Maybe(vec![1001]),
            End::Open => End::Closed { codes: vec![1001] },
            End::Maybe(mut c) => {
                c.push(1001);
                if shutdown_after_eof {
                    End::Maybe(c)
                } else {
                    End::Closed { codes: c }
                }
            }
            e => e,
        };
    }
    // The generator's intent and the model must agree on what the generator built.
    if g.aligned && shutdown_at.is_none() {
        match g.first_bad {
            None => {
                assert_eq!(exp.fail_frame, None, "model fails a session the generator built valid");
                assert_eq!(exp.events, g.intent, "model and generator disagree");
                match (g.close, &exp.end) {
                    (None, End::Open) => {}
                    (Some(c), End::Closed { codes, .. }) => assert!(codes.contains(&c), "close {c} vs {codes:?}"),
                    (c, e) => panic!("generator close {c:?}, model {e:?}"),
                }
            }
            Some((idx, code)) => {
                assert_eq!(exp.fail_frame, Some(idx), "model fails elsewhere than the corrupted frame");
                assert_eq!(exp.events, g.intent, "model and generator disagree");
                match &exp.end {
                    End::Closed { codes, .. } => assert!(codes.contains(&code), "corruption {code} vs {codes:?}"),
                    e => panic!("corrupted frame, model ends {e:?}"),
                }
            }
        }
    }

    let got = parse_server_output(&d.out, key).unwrap_or_else(|e| panic!("invalid server output: {e}"));
    assert!(got.pings <= ticks, "{} pings for {ticks} idle ticks", got.pings);
    if std::env::var_os("WSECHO_FUZZ_DEBUG").is_some() {
        let short = |evs: &[Ev]| {
            evs.iter()
                .map(|e| match e {
                    Ev::Msg(op, b) => format!("msg{op}:{}", b.len()),
                    Ev::Pong(b) => format!("pong:{}", b.len()),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "session: {} client bytes, {} out, {} events, closed {}, aligned {}, first_bad {:?}, seen {:?}\n  model: [{}] partial {:?} end {:?} fail {:?}\n  server: [{}] partial {:?} close {:?} pings {}",
            stream.len(),
            d.out.len(),
            d.steps,
            d.closed,
            g.aligned,
            g.first_bad,
            d.seen,
            short(&exp.events),
            exp.partial.as_ref().map(|p| (p.0, p.1.len())),
            exp.end,
            exp.fail_frame,
            short(&got.events),
            got.partial.as_ref().map(|p| (p.0, p.1.len())),
            got.close,
            got.pings
        );
    }
    assert_eq!(got.events, exp.events, "echoed messages differ from the model");
    assert_eq!(got.frames, exp.frames, "echoed frames differ from the sent ones (frame-exact echo)");
    let (gp, ep) = (normalize(&got.partial), normalize(&exp.partial));
    assert_eq!(gp, ep, "partial message differs from the model");
    match &exp.end {
        End::Open => assert_eq!(got.close, None, "server closed a valid session"),
        End::Closed { codes, .. } => {
            let c = got.close.unwrap_or_else(|| panic!("no close frame; expected one of {codes:?}"));
            assert!(codes.contains(&c), "close code {c}, expected one of {codes:?}");
        }
        End::Maybe(codes) => {
            if let Some(c) = got.close {
                assert!(codes.contains(&c), "close code {c}, expected one of {codes:?}");
            }
        }
    }
    if got.close.is_some() && !d.closed {
        assert!(d.conn.stream_mut().write_shut(), "close frame sent but the write side is not shut");
    }
}
