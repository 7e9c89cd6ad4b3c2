//! Target 1, `handshake`: `parse_request` on arbitrary bytes, checked against an independent plain
//! reading of the head, every prefix checked against the whole, and the 101 / error responses the
//! server writes checked as strict HTTP/1.1 (`check_http_response`, `check_accept_response`,
//! `check_reject`, also used by `connection`).
//!
//! Owns the HTTP side only; frames and sessions are `frame` and `connection`. Imports `input` and
//! `reference`.

use wsecho::handshake::{
    parse_request, write_accept, write_reject, HandshakeError, Request, Upgrade, MAX_HEAD, MAX_RESPONSE,
};

use super::input::{find, subslice_range};
use super::reference::{b64_decode_strict, expected_accept, has_token, trim_ws};

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
