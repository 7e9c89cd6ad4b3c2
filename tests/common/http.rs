//! Plain HTTP requests to a server's non-WebSocket paths (`/metrics`, `/healthz`): `http_get`.
//!
//! Owns nothing but the request line; the upgrade request is `upgrade`'s. Imports `server`
//! (connect).

use std::io::{Read, Write};
use std::net::SocketAddr;

use super::server::connect;

/// `GET path` on a fresh connection to `addr`; the whole response (head and body) as text, read
/// until the server closes.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
