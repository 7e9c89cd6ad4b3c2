//! The HTTP upgrade from the client side: keys and their `Sec-WebSocket-Accept`, an editable
//! request head (`Request`), a strict reader of response heads (`Response`), the 101 checks, the
//! handshake shorthands (`handshake`, `handshake_with`, `upgrade_stream`) and HTTP error responses
//! (`expect_http_error`).
//!
//! Owns everything before the first frame; frames are `encode`/`decode`, starting the server is
//! `server`. Imports `server` (connect), `rng` (keys) and `decode` (I/O error hints).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::decode::io_hint;
use super::rng::{splitmix64, GLOBAL_RNG};
use super::server::connect;

/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest HTTP response head we are willing to read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The Sec-WebSocket-Accept value for `key` (RFC 6455 §4.2.2 step 5.4).
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh Sec-WebSocket-Key (base64 of 16 random bytes).
pub fn new_key() -> String {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&splitmix64(GLOBAL_RNG.fetch_add(1, Ordering::Relaxed)).to_le_bytes());
    b.extend_from_slice(&splitmix64(GLOBAL_RNG.fetch_add(1, Ordering::Relaxed)).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// An HTTP request head, valid upgrade by default, editable for error tests.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A valid upgrade request for `addr` with key `key`.
    pub fn upgrade(addr: SocketAddr, key: &str) -> Request {
        Request {
            method: "GET".into(),
            target: "/chat".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), addr.to_string()),
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), "Upgrade".into()),
                ("Sec-WebSocket-Key".into(), key.into()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ],
        }
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
    pub fn target(mut self, t: &str) -> Self {
        self.target = t.into();
        self
    }
    /// Replaces the header of that name (case-insensitive) or appends it.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(h) => h.1 = value.into(),
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }
    /// Appends a header even if one of that name exists.
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Removes every header of that name (case-insensitive).
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
    /// Renames a header, keeping its value and position.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        for h in self.headers.iter_mut().filter(|(n, _)| n.eq_ignore_ascii_case(from)) {
            h.0 = to.into();
        }
        self
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// A parsed HTTP response head.
#[derive(Clone, Debug)]
pub struct Response {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Whether any instance of the header has `token` in its comma-separated
    /// list (ASCII case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Reads an HTTP response head byte by byte (so no frame bytes that follow
/// it are consumed) and parses it.
pub fn read_response_head(s: &mut TcpStream) -> Response {
    let mut raw = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => raw.push(b[0]),
            Ok(_) => panic!(
                "server closed the connection in the middle of the HTTP response head; got {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Err(e) => panic!(
                "reading the HTTP response head failed: {} ({e}); got so far {:?}",
                io_hint(&e),
                String::from_utf8_lossy(&raw)
            ),
        }
        assert!(raw.len() <= MAX_RESPONSE_HEAD, "HTTP response head larger than {MAX_RESPONSE_HEAD} bytes");
    }
    let text = std::str::from_utf8(&raw).unwrap_or_else(|_| panic!("response head is not UTF-8: {raw:02x?}"));
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    assert!(version.starts_with("HTTP/1."), "bad status line {status_line:?}");
    let status: u16 =
        parts.next().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("malformed response header line {l:?}"));
        assert!(!n.is_empty() && !n.contains(' '), "malformed response header name in {l:?}");
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Response { status_line, status, headers }
}

/// Checks a successful upgrade response for `key`.
#[track_caller]
pub fn check_upgrade_response(r: &Response, key: &str) {
    assert_eq!(r.status_line, "HTTP/1.1 101 Switching Protocols", "status line; headers {:?}", r.headers);
    let up = r.header("Upgrade").unwrap_or_else(|| panic!("101 without Upgrade header: {r:?}"));
    assert!(up.eq_ignore_ascii_case("websocket"), "Upgrade header {up:?}");
    assert!(r.has_token("Connection", "Upgrade"), "Connection header must contain Upgrade: {r:?}");
    let want = accept_for(key);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(want.as_str()), "Sec-WebSocket-Accept for key {key:?}");
    // Nothing was requested, so nothing may be selected (RFC 6455 §4.1 steps 5-6).
    assert!(r.header("Sec-WebSocket-Extensions").is_none(), "server selected an extension: {r:?}");
    assert!(r.header("Sec-WebSocket-Protocol").is_none(), "server selected a subprotocol: {r:?}");
}

/// Connects and performs a valid upgrade; returns the open WebSocket stream.
pub fn handshake(addr: SocketAddr) -> TcpStream {
    let key = new_key();
    handshake_with(addr, &Request::upgrade(addr, &key), &key)
}

/// Performs a valid upgrade on an already connected stream.
pub fn upgrade_stream(mut s: TcpStream, addr: SocketAddr) -> TcpStream {
    let key = new_key();
    s.write_all(&Request::upgrade(addr, &key).to_bytes()).expect("write upgrade request");
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, &key);
    s
}

/// Connects, sends `req` (which must be a valid upgrade for `key`) and checks
/// the 101 response.
pub fn handshake_with(addr: SocketAddr, req: &Request, key: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(&req.to_bytes()).expect("write upgrade request");
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, key);
    s
}

/// Reads to EOF (or ECONNRESET) within the socket timeout; panics if the
/// server keeps the connection open.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => return out,
            Err(e) => panic!(
                "server did not close the connection: {} ({e}); received {:?}",
                io_hint(&e),
                String::from_utf8_lossy(&out)
            ),
        }
        assert!(out.len() < 1 << 20, "server keeps sending");
    }
}

/// Sends `raw`, then checks for an HTTP error response with `status`: a
/// status line, a non-empty plain-text body (matching Content-Length if
/// given) and then the connection closed by the server. Returns the response
/// head and body.
#[track_caller]
pub fn expect_http_error(addr: SocketAddr, raw: &[u8], status: u16) -> (Response, String) {
    let mut s = connect(addr);
    // The server may answer and close before reading everything; a failed
    // write is fine as long as the response arrives.
    let _ = s.write_all(raw);
    let r = read_response_head(&mut s);
    assert_eq!(
        r.status,
        status,
        "expected HTTP {status}, got {:?} (headers {:?}) for request {:?}",
        r.status_line,
        r.headers,
        String::from_utf8_lossy(&raw[..raw.len().min(300)])
    );
    assert!(r.status_line.starts_with("HTTP/1.1 "), "status line {:?}", r.status_line);
    let body = read_to_close(&mut s);
    if let Some(cl) = r.header("Content-Length") {
        let cl: usize = cl.parse().unwrap_or_else(|_| panic!("bad Content-Length {cl:?}"));
        assert_eq!(body.len(), cl, "body length vs Content-Length; body {:?}", String::from_utf8_lossy(&body));
    }
    if let Some(ct) = r.header("Content-Type") {
        assert!(ct.to_ascii_lowercase().starts_with("text/plain"), "Content-Type {ct:?}, expected text/plain");
    }
    assert!(r.header("Transfer-Encoding").is_none(), "unexpected Transfer-Encoding: {r:?}");
    assert!(r.header("Sec-WebSocket-Accept").is_none(), "error response carries Sec-WebSocket-Accept: {r:?}");
    let body = String::from_utf8(body).unwrap_or_else(|e| panic!("error body is not text: {e}"));
    assert!(!body.trim().is_empty(), "HTTP {status} response has an empty body");
    assert!(
        body.chars().all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t'),
        "error body is not plain text: {body:?}"
    );
    (r, body)
}
