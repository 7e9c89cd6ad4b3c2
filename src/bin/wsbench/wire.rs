//! The WebSocket wire format as a load client needs it: the upgrade request and the check of the
//! 101 response (RFC 6455 §4.1; with `--deflate`, the permessage-deflate offer and the check of
//! the server's answer, RFC 7692 §7.1), the header of a server frame (§5.2), masked client frame
//! headers and control frames, and the harness's seedable PRNG ([`Rng`]).
//!
//! This is deliberately an independent implementation, not `wsecho::frame`/`wsecho::handshake`:
//! a harness that shares the server's codec cannot catch a bug in it (both sides would agree on
//! the wrong bytes). It owns no sockets and no connection state (see `client`), no fragmentation
//! rules (see `frag`) and no prepared messages (see `workload`); nothing here allocates except
//! building the upgrade request into a caller's buffer and naming a handshake failure.

use base64::Engine as _;
use sha1::Digest as _;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of masking key.
pub const MAX_HEADER: usize = 14;

/// A decoded header of a frame from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1: the first frame of a compressed message (only when permessage-deflate was agreed).
    pub rsv1: bool,
    pub opcode: u8,
    pub len: u64,
    /// Header length in bytes.
    pub hlen: usize,
}

/// A server frame header that breaks RFC 6455; each is a protocol error for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    ReservedBits,
    ReservedOpcode,
    /// §5.1: a server must not mask frames.
    Masked,
    FragmentedControl,
    ControlTooLong,
    LengthOverflow,
}

impl HeaderError {
    pub fn name(self) -> &'static str {
        match self {
            HeaderError::ReservedBits => "reserved bits set",
            HeaderError::ReservedOpcode => "reserved opcode",
            HeaderError::Masked => "masked server frame",
            HeaderError::FragmentedControl => "fragmented control frame",
            HeaderError::ControlTooLong => "control frame over 125 bytes",
            HeaderError::LengthOverflow => "64-bit length with top bit set",
        }
    }
}

/// Decodes a server frame header at the start of `buf`; `Ok(None)` when more bytes are needed.
/// `rsv1_ok`: permessage-deflate was agreed, so RSV1 may be set (where is the caller's check).
pub fn decode_header(buf: &[u8], rsv1_ok: bool) -> Result<Option<Header>, HeaderError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let reserved = if rsv1_ok { 0x30 } else { 0x70 };
    if b0 & reserved != 0 {
        return Err(HeaderError::ReservedBits);
    }
    let rsv1 = b0 & 0x40 != 0;
    let opcode = b0 & 0x0f;
    if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Err(HeaderError::ReservedOpcode);
    }
    if b1 & 0x80 != 0 {
        return Err(HeaderError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode & 0x8 != 0 {
        if !fin {
            return Err(HeaderError::FragmentedControl);
        }
        if len7 > 125 {
            return Err(HeaderError::ControlTooLong);
        }
    }
    match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            Ok(Some(Header { fin, rsv1, opcode, len, hlen: 4 }))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(HeaderError::LengthOverflow);
            }
            Ok(Some(Header { fin, rsv1, opcode, len, hlen: 10 }))
        }
        n => Ok(Some(Header { fin, rsv1, opcode, len: u64::from(n), hlen: 2 })),
    }
}

/// Writes a masked client frame header (FIN set) into `out`; returns its length.
pub fn encode_masked_header(opcode: u8, len: u64, mask: [u8; 4], out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode;
    let n = if len < 126 {
        out[1] = 0x80 | len as u8;
        2
    } else if len <= 0xffff {
        out[1] = 0x80 | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 0x80 | 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    out[n..n + 4].copy_from_slice(&mask);
    n + 4
}

/// XORs `buf` with `mask` (key byte `i % 4` for byte `i`). Only used when precomputing frames.
pub fn mask_bytes(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A complete masked client frame (control frames: at most 125 bytes of payload).
pub fn masked_control_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut [u8; 131]) -> usize {
    debug_assert!(payload.len() <= 125);
    let mut h = [0u8; MAX_HEADER];
    let hl = encode_masked_header(opcode, payload.len() as u64, mask, &mut h);
    out[..hl].copy_from_slice(&h[..hl]);
    out[hl..hl + payload.len()].copy_from_slice(payload);
    mask_bytes(&mut out[hl..hl + payload.len()], mask);
    hl + payload.len()
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = h.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest.as_slice(), &mut out)
        .expect("20 bytes encode to 28");
    debug_assert_eq!(n, 28);
    out
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (24 characters).
pub fn new_key(rng: &mut Rng) -> [u8; 24] {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    raw[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let mut out = [0u8; 24];
    base64::engine::general_purpose::STANDARD.encode_slice(raw, &mut out).expect("16 bytes encode to 24");
    out
}

/// The permessage-deflate offer of `--deflate`: no context takeover either way (wsbench compresses
/// each message on its own, once, and inflates each echo with a fresh state), and any client
/// window the server wants to ask for (checked against what the messages need, see
/// [`check_response`]).
pub const DEFLATE_OFFER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits";

/// The smallest `client_max_window_bits` (8..=15) under which messages of `size` bytes compressed
/// with a 32 KiB window are still valid: no back-reference reaches further than the message's
/// start, so any window of at least `size` bytes will do.
pub fn window_bits_for(size: usize) -> u8 {
    (8..15).find(|&b| (1usize << b) >= size).unwrap_or(15)
}

/// Appends the upgrade request for `key` to `out` (with `deflate`, offering [`DEFLATE_OFFER`]).
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str, key: &[u8; 24], deflate: bool) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(key);
    if deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(DEFLATE_OFFER.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Why an upgrade response was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// A complete response with a status other than 101.
    Status(u16),
    /// Not parseable as an HTTP response.
    Malformed,
    /// 101 without `Upgrade: websocket` / `Connection: upgrade`.
    MissingUpgrade,
    /// 101 with a missing or wrong `Sec-WebSocket-Accept`.
    BadAccept,
    /// 101 with a `Sec-WebSocket-Extensions` or `-Protocol` we did not ask for.
    UnrequestedExtension,
    /// `--deflate`: a 101 without `Sec-WebSocket-Extensions`.
    DeflateNotAccepted,
    /// `--deflate`: an answer wsbench cannot honour (what is wrong with it).
    DeflateAnswer(&'static str),
    /// Response head over 8 KiB.
    TooLarge,
}

impl HandshakeError {
    /// The key the failure is counted under.
    pub fn label(&self) -> String {
        match self {
            HandshakeError::Status(s) => format!("status {s}"),
            HandshakeError::Malformed => "malformed response".into(),
            HandshakeError::MissingUpgrade => "missing upgrade headers".into(),
            HandshakeError::BadAccept => "bad Sec-WebSocket-Accept".into(),
            HandshakeError::UnrequestedExtension => "unrequested extension/protocol".into(),
            HandshakeError::DeflateNotAccepted => {
                "permessage-deflate not accepted (no Sec-WebSocket-Extensions in the 101)".into()
            }
            HandshakeError::DeflateAnswer(what) => format!("permessage-deflate answer {what}"),
            HandshakeError::TooLarge => "response too large".into(),
        }
    }
}

/// Checks an upgrade response; `Ok(None)` while incomplete, else the length of the response head
/// (bytes after it are WebSocket frames). `deflate`: [`DEFLATE_OFFER`] was sent, and the client
/// window the messages need ([`window_bits_for`]); the 101 must then accept it
/// ([`check_deflate_answer`]).
pub fn check_response(buf: &[u8], key: &[u8; 24], deflate: Option<u8>) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > 8192 { Err(HandshakeError::TooLarge) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let (mut upgrade, mut connection, mut accept_ok) = (false, false, false);
    let mut extension: Option<&[u8]> = None;
    let want = accept_key(key);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= trim(h.value).eq_ignore_ascii_case(b"websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= h.value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept_ok = trim(h.value) == want;
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") && deflate.is_some() {
            if extension.is_some() {
                return Err(HandshakeError::DeflateAnswer("in more than one Sec-WebSocket-Extensions line"));
            }
            extension = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            || h.name.eq_ignore_ascii_case("sec-websocket-protocol")
        {
            return Err(HandshakeError::UnrequestedExtension);
        }
    }
    if !upgrade || !connection {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !accept_ok {
        return Err(HandshakeError::BadAccept);
    }
    if let Some(need) = deflate {
        let value = extension.ok_or(HandshakeError::DeflateNotAccepted)?;
        check_deflate_answer(value, need).map_err(HandshakeError::DeflateAnswer)?;
    }
    Ok(Some(n))
}

/// Checks the server's answer to [`DEFLATE_OFFER`] (RFC 7692 §7.1): exactly one extension,
/// `permessage-deflate`, with `server_no_context_takeover` (each echo is inflated with a fresh
/// state), optionally `client_no_context_takeover`, `server_max_window_bits=8..15` (any: the
/// inflater has a 32 KiB window) and `client_max_window_bits=N` with `2^N` covering the messages
/// (`need`, see [`window_bits_for`]); each at most once, values bare or quoted, names in any case.
/// `Err` says what is wrong, to complete "permessage-deflate answer ...".
pub fn check_deflate_answer(value: &[u8], need: u8) -> Result<(), &'static str> {
    let value = std::str::from_utf8(value).map_err(|_| "is not ASCII")?;
    if value.split(',').filter(|e| !e.trim().is_empty()).count() != 1 {
        return Err("names more than one extension");
    }
    let mut parts = value.split(';');
    let name = parts.next().unwrap_or("").trim().trim_end_matches(',').trim();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err("names another extension");
    }
    let mut seen = [false; 4];
    for p in parts {
        let p = p.trim().trim_end_matches(',').trim();
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => {
                let v = v.trim();
                (k.trim(), Some(v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)))
            }
            None => (p, None),
        };
        let i = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|n| k.eq_ignore_ascii_case(n))
        .ok_or("has an unknown parameter")?;
        if std::mem::replace(&mut seen[i], true) {
            return Err("repeats a parameter");
        }
        let bits = match (i, v) {
            (0 | 1, None) => continue,
            (0 | 1, Some(_)) => return Err("gives a value to a no_context_takeover parameter"),
            (_, None) => return Err("has a window-bits parameter without a value"),
            (_, Some(v)) => match v.parse::<u8>() {
                Ok(b @ 8..=15) if !v.starts_with(['0', '+']) => b,
                _ => return Err("has window bits outside 8..15"),
            },
        };
        if i == 3 && bits < need {
            return Err("asks for a client window smaller than the messages (client_max_window_bits)");
        }
    }
    if !seen[0] {
        return Err("lacks server_no_context_takeover (wsbench inflates every echo with a fresh state)");
    }
    Ok(())
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |e| e + 1);
    &v[s..e]
}

/// xorshift64* — fast, seedable, good enough for keys, masks and payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// Seeded from the kernel's random source (falls back to time and pid).
    pub fn from_os(salt: u64) -> Rng {
        let mut b = [0u8; 8];
        // SAFETY: getrandom writes at most b.len() bytes into b.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let mut seed = u64::from_le_bytes(b);
        if n != 8 {
            let t =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            seed = t ^ (u64::from(std::process::id()) << 32);
        }
        Rng::new(seed ^ salt.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn header_round_trip_and_errors() {
        for &len in &[0u64, 125, 126, 65535, 65536, 1 << 33] {
            let mut h = [0u8; MAX_HEADER];
            let n = encode_masked_header(OP_BINARY, len, [1, 2, 3, 4], &mut h);
            // Server frames are unmasked: clear the mask bit and drop the key.
            h[1] &= 0x7f;
            let d = decode_header(&h[..n - 4], false).unwrap().unwrap();
            assert_eq!(d, Header { fin: true, rsv1: false, opcode: OP_BINARY, len, hlen: n - 4 });
            for cut in 0..n - 4 {
                assert_eq!(decode_header(&h[..cut], false), Ok(None));
            }
        }
        assert_eq!(decode_header(&[0x81, 0x80], false), Err(HeaderError::Masked));
        assert_eq!(decode_header(&[0xC1, 0x00], false), Err(HeaderError::ReservedBits));
        assert!(decode_header(&[0xC1, 0x00], true).unwrap().unwrap().rsv1);
        assert_eq!(decode_header(&[0xA1, 0x00], true), Err(HeaderError::ReservedBits));
        assert_eq!(decode_header(&[0x91, 0x00], true), Err(HeaderError::ReservedBits));
        assert_eq!(decode_header(&[0x83, 0x00], false), Err(HeaderError::ReservedOpcode));
        assert_eq!(decode_header(&[0x09, 0x00], false), Err(HeaderError::FragmentedControl));
        assert_eq!(decode_header(&[0x88, 126], false), Err(HeaderError::ControlTooLong));
        assert_eq!(decode_header(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], false), Err(HeaderError::LengthOverflow));
    }

    #[test]
    fn response_check() {
        let key = *b"dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x88\x02\x03\xe8";
        assert_eq!(check_response(ok, &key, None), Ok(Some(ok.len() - 4)));
        assert_eq!(check_response(&ok[..40], &key, None), Ok(None));
        assert_eq!(check_response(ok, &key, Some(10)), Err(HandshakeError::DeflateNotAccepted));
        let bad = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOX=\r\n\r\n";
        assert_eq!(check_response(bad, &key, None), Err(HandshakeError::BadAccept));
        let e400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check_response(e400, &key, None), Err(HandshakeError::Status(400)));
        assert_eq!(check_response(b"garbage\r\n\r\n", &key, None), Err(HandshakeError::Malformed));
        let pmd = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                    Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert_eq!(check_response(pmd, &key, Some(10)), Ok(Some(pmd.len())));
        assert_eq!(check_response(pmd, &key, None), Err(HandshakeError::UnrequestedExtension));
    }

    #[test]
    fn deflate_answers() {
        let ok = |v: &str| check_deflate_answer(v.as_bytes(), 10);
        assert_eq!(ok("permessage-deflate; server_no_context_takeover"), Ok(()));
        // wsecho's answer to the offer.
        let wsecho =
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15";
        assert_eq!(ok(wsecho), Ok(()));
        assert_eq!(ok("PerMessage-Deflate ;Server_No_Context_Takeover; server_max_window_bits=\"9\""), Ok(()));
        assert_eq!(ok("permessage-deflate; server_no_context_takeover; client_max_window_bits=10"), Ok(()));
        for (bad, why) in [
            ("permessage-deflate", "lacks server_no_context_takeover"),
            ("permessage-deflate; client_no_context_takeover", "lacks"),
            ("x-webkit-deflate-frame", "another extension"),
            ("permessage-deflate; server_no_context_takeover, permessage-deflate", "more than one"),
            ("permessage-deflate; server_no_context_takeover; foo", "unknown parameter"),
            ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", "repeats"),
            ("permessage-deflate; server_no_context_takeover=1", "gives a value"),
            ("permessage-deflate; server_no_context_takeover; client_max_window_bits", "without a value"),
            ("permessage-deflate; server_no_context_takeover; server_max_window_bits=16", "outside"),
            ("permessage-deflate; server_no_context_takeover; server_max_window_bits=09", "outside"),
            ("permessage-deflate; server_no_context_takeover; client_max_window_bits=9", "smaller"),
        ] {
            let e = ok(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!((window_bits_for(0), window_bits_for(256), window_bits_for(257)), (8, 8, 9));
        assert_eq!((window_bits_for(1024), window_bits_for(16384), window_bits_for(1 << 20)), (10, 14, 15));
        let mut req = Vec::new();
        write_request(&mut req, "h:1", "/", b"dGhlIHNhbXBsZSBub25jZQ==", true);
        let req = String::from_utf8(req).unwrap();
        assert!(req.ends_with(&format!("\r\nSec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n\r\n")), "{req}");
    }
}
