//! RFC 6455 §4.2 opening handshake, server side: parse the upgrade request in place, answer it.
//!
//! Owns the validation of the HTTP/1.1 request head (parsed by `httparse` with the header array on
//! the stack and every value borrowed from the caller's read buffer), the `Sec-WebSocket-Accept`
//! computation (`sha1` + `base64` into a stack array) and the bytes of the 101 response and of the
//! error responses. It does no I/O and never allocates: responses are written into a caller's
//! slice. Plain `GET` requests that are not upgrades (`/metrics`, `/healthz`) are reported as such
//! so that the connection layer can answer them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::io::Write;

/// Largest request head accepted; beyond it the answer is 431.
pub const MAX_HEAD: usize = 8192;

/// Headers parsed per request; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The GUID of RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Extensions` header lines kept per request (more are ignored: no client sends
/// its offers over more lines than this).
pub const MAX_EXTENSION_LINES: usize = 8;

/// A valid upgrade request, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// The `Sec-WebSocket-Key` value (trimmed).
    pub key: &'a [u8],
    /// Bytes of the request head, including the final CRLF CRLF; what follows is frame data.
    pub head_len: usize,
    /// The raw values of the `Sec-WebSocket-Extensions` lines, in order (the first
    /// `extension_lines` entries; see [`Upgrade::extensions`]).
    pub extension_values: [&'a [u8]; MAX_EXTENSION_LINES],
    /// How many of `extension_values` are set.
    pub extension_lines: u8,
}

impl<'a> Upgrade<'a> {
    /// The `Sec-WebSocket-Extensions` values, in the order they came.
    pub fn extensions(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.extension_values[..self.extension_lines as usize].iter().copied()
    }
}

/// The outcome of parsing a complete request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade<'a>),
    /// A well-formed `GET` that asks for no upgrade: the path, and the head length.
    Plain {
        /// The request target.
        path: &'a str,
        /// Bytes of the request head.
        head_len: usize,
    },
}

pub use crate::error::HandshakeError;

/// Whether the comma-separated header value `list` contains `token` (ASCII case-insensitive).
fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (the caller answers 431 once it holds [`MAX_HEAD`] bytes).
pub fn parse_request(buf: &[u8]) -> Result<Option<Request<'_>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD { Err(HandshakeError::TooLarge) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    if head_len > MAX_HEAD {
        return Err(HandshakeError::TooLarge);
    }
    let method = req.method.unwrap_or("");
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    // Upgrade and Connection are lists that may be split over several header lines
    // (RFC 9110 §5.3): a token on any of the lines counts.
    let (mut host, mut upgrade_seen, mut upgrade_ok, mut connection_ok) = (false, false, false, false);
    let (mut key, mut keys, mut version) = (None, 0, None);
    let mut extension_values: [&[u8]; MAX_EXTENSION_LINES] = [&[]; MAX_EXTENSION_LINES];
    let mut extension_lines = 0u8;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            host = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_seen = true;
            upgrade_ok |= has_token(h.value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_ok |= has_token(h.value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            key = Some(h.value);
            keys += 1;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            version = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            if let Some(slot) = extension_values.get_mut(extension_lines as usize) {
                *slot = h.value;
                extension_lines += 1;
            }
        }
    }
    let path = req.path.unwrap_or("/");
    if !upgrade_seen && key.is_none() && version.is_none() {
        // A plain GET: let the caller serve /metrics or /healthz, or answer it.
        return Ok(Some(Request::Plain { path, head_len }));
    }
    if !host {
        return Err(HandshakeError::MissingHost);
    }
    if !upgrade_ok {
        return Err(HandshakeError::BadUpgrade);
    }
    if !connection_ok {
        return Err(HandshakeError::BadConnection);
    }
    if version.map(|v| v.trim_ascii()) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // Exactly one key (a repeated key is ambiguous).
    let key = key.filter(|_| keys == 1).map(|k| k.trim_ascii()).ok_or(HandshakeError::BadKey)?;
    let mut decoded = [0u8; 18];
    match STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(HandshakeError::BadKey),
    }
    Ok(Some(Request::Upgrade(Upgrade { key, head_len, extension_values, extension_lines })))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 base64 characters, so this cannot fail.
    let n = STANDARD.encode_slice(digest.as_slice(), &mut out).unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

/// Longest header line [`write_accept_with`] takes besides the fixed ones (an extension answer).
pub const MAX_EXTRA_LINE: usize = 256;

/// Longest 101 response [`write_accept_with`] produces (129 bytes without an extra line).
pub const MAX_RESPONSE: usize = 144 + MAX_EXTRA_LINE;

/// Writes the 101 response for `key` into `out`; returns its length.
pub fn write_accept(key: &[u8], out: &mut [u8]) -> usize {
    write_accept_with(key, b"", out)
}

/// Writes the 101 response for `key` with `extra` (complete header lines, each ending in CRLF,
/// at most [`MAX_EXTRA_LINE`] bytes: e.g. the `Sec-WebSocket-Extensions` answer) into `out`;
/// returns its length.
pub fn write_accept_with(key: &[u8], extra: &[u8], out: &mut [u8]) -> usize {
    debug_assert!(extra.len() <= MAX_EXTRA_LINE);
    let accept = accept_key(key);
    let parts: [&[u8]; 5] = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        &accept,
        b"\r\n",
        extra,
        b"\r\n",
    ];
    let mut n = 0;
    for p in parts {
        out[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    n
}

/// Writes an HTTP response with a plain-text body and `Connection: close` into `out`.
/// `extra` is inserted as-is among the headers (each line ending in CRLF). Returns the length, or
/// 0 if `out` is too small.
pub fn write_response(status: u16, extra: &str, body: &[u8], content_type: &str, out: &mut [u8]) -> usize {
    let total = out.len();
    let mut cur = std::io::Cursor::new(out);
    let res = write!(
        cur,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        status,
        status_text(status),
        content_type,
        body.len(),
        extra
    )
    .and_then(|_| cur.write_all(body));
    match res {
        Ok(()) => cur.position() as usize,
        Err(_) => {
            debug_assert!(false, "response does not fit {total} bytes");
            0
        }
    }
}

/// Writes the error response for `err`: status, one-line reason, and the headers the RFC asks for.
pub fn write_reject(err: HandshakeError, out: &mut [u8]) -> usize {
    let extra = match err {
        HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
        HandshakeError::MethodNotAllowed => "Allow: GET\r\n",
        _ => "",
    };
    let mut body = [0u8; 80];
    let r = err.reason().as_bytes();
    body[..r.len()].copy_from_slice(r);
    body[r.len()] = b'\n';
    write_response(err.status(), extra, &body[..r.len() + 1], "text/plain; charset=utf-8", out)
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_sample_accept_key() {
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parses_the_rfc_request_at_every_cut() {
        for cut in 0..GOOD.len() {
            assert_eq!(parse_request(&GOOD[..cut]), Ok(None), "cut {cut}");
        }
        let Ok(Some(Request::Upgrade(u))) = parse_request(GOOD) else { panic!() };
        assert_eq!(u.key, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(u.head_len, GOOD.len());
        let mut out = [0u8; MAX_RESPONSE];
        let n = write_accept(u.key, &mut out);
        assert_eq!(
            &out[..n],
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"[..]
        );
    }

    fn with(from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(GOOD.to_vec()).unwrap().replacen(from, to, 1).into_bytes()
    }

    #[test]
    fn refuses_each_defect_with_its_status() {
        let cases = [
            (with("GET", "POST"), HandshakeError::MethodNotAllowed),
            (with("HTTP/1.1", "HTTP/1.0"), HandshakeError::HttpVersion),
            (with("Host: server.example.com\r\n", ""), HandshakeError::MissingHost),
            (with("Upgrade: websocket", "Upgrade: h2c"), HandshakeError::BadUpgrade),
            (with("Connection: Upgrade", "Connection: upgraded"), HandshakeError::BadConnection),
            (with("Connection: Upgrade\r\n", ""), HandshakeError::BadConnection),
            (with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="), HandshakeError::BadKey),
            (with("dGhlIHNhbXBsZSBub25jZQ==", "!!!"), HandshakeError::BadKey),
            (with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""), HandshakeError::BadKey),
            (with("Version: 13", "Version: 8"), HandshakeError::UnsupportedVersion),
            (with("Sec-WebSocket-Version: 13\r\n", ""), HandshakeError::UnsupportedVersion),
            (b"\x16\x03\x01garbage\r\n\r\n".to_vec(), HandshakeError::Malformed),
        ];
        for (req, err) in cases {
            assert_eq!(parse_request(&req), Err(err), "{}", String::from_utf8_lossy(&req));
        }
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        let mut out = [0u8; 512];
        let n = write_reject(HandshakeError::UnsupportedVersion, &mut out);
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{text}");
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("\r\n\r\nSec-WebSocket-Version must be 13\n"));
    }

    #[test]
    fn accepts_token_lists_and_case() {
        let r = with("Connection: Upgrade", "connection: keep-alive, UPGRADE");
        let r = String::from_utf8(r).unwrap().replace("Upgrade: websocket", "Upgrade: WebSocket");
        assert!(matches!(parse_request(r.as_bytes()), Ok(Some(Request::Upgrade(_)))));
    }

    #[test]
    fn oversized_head_is_431() {
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_request(&big), Err(HandshakeError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(HandshakeError::TooLarge));
    }

    #[test]
    fn plain_get_is_reported() {
        let r = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_request(r), Ok(Some(Request::Plain { path: "/metrics", head_len: r.len() })));
    }
}
