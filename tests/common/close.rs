//! The end of a connection: the closing handshake seen from the client (`expect_close`,
//! `expect_close_reply`, ...), the TCP close after it (`assert_tcp_closed`), the end after the
//! client's FIN, and timing how long the server takes to close or to let go of a connection.
//!
//! Owns closes only; reading data messages is `message`, HTTP error responses (also followed by a
//! close) are `upgrade`. Imports `protocol`, `encode` and `decode`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::decode::{hex_preview, io_hint, try_read_frame, Frame};
use super::encode::{close_frame, masked_header, LenEnc, FIXED_MASK};
use super::protocol::{OP_BINARY, OP_CLOSE};

fn read_until_close(s: &mut TcpStream, code: u16) -> (Vec<Frame>, Frame) {
    let mut before = Vec::new();
    loop {
        let f = match try_read_frame(s) {
            Ok(f) => f,
            Err(e) => panic!(
                "expected a close frame with code {code}, but {} ({e}); frames received before: {before:?}",
                io_hint(&e)
            ),
        };
        if f.opcode == OP_CLOSE {
            assert!(f.payload.len() >= 2, "expected close code {code}, got a close frame without a status code: {f:?}");
            let got = f.close_code().unwrap();
            assert_eq!(got, code, "close code: expected {code}, got {got}; close frame {f:?}");
            assert!(std::str::from_utf8(&f.payload[2..]).is_ok(), "server close reason is not valid UTF-8: {f:?}");
            return (before, f);
        }
        before.push(f);
        assert!(before.len() < 100_000, "no close frame after 100000 frames");
    }
}

/// Asserts that the server closes the TCP connection: a read returns 0 (FIN)
/// or ECONNRESET within the socket timeout, with no further bytes.
#[track_caller]
pub fn assert_tcp_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected the server to close TCP, but it sent {n} more bytes: {}", hex_preview(&buf[..n], 64)),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {}
        Err(e) => panic!("expected the server to close TCP, but {} ({e})", io_hint(&e)),
    }
}

/// For a close the SERVER starts (protocol errors): reads frames until a close
/// frame, asserts its code, answers with a close frame as a conforming client
/// does (RFC 6455 §5.5.1; the write may fail if the server already closed),
/// then asserts the server closes TCP. Returns the frames that arrived before
/// the close frame (e.g. echoes of earlier, valid fragments).
#[track_caller]
pub fn expect_close(s: &mut TcpStream, code: u16) -> Vec<Frame> {
    let (before, _) = read_until_close(s, code);
    let _ = s.write_all(&close_frame(Some(code), b""));
    assert_tcp_closed(s);
    before
}

/// `expect_close`, and nothing at all may have been echoed before the close.
#[track_caller]
pub fn expect_close_no_echo(s: &mut TcpStream, code: u16) {
    let before = expect_close(s, code);
    assert!(before.is_empty(), "server sent frames before closing with {code}: {before:?}");
}

/// For a close the CLIENT started: reads the server's close reply, asserts its
/// code, and asserts the server then closes TCP (without any answer from us).
/// Returns the frames that arrived before the close reply.
#[track_caller]
pub fn expect_close_reply(s: &mut TcpStream, code: u16) -> Vec<Frame> {
    let (before, _) = read_until_close(s, code);
    assert_tcp_closed(s);
    before
}

/// Waits (up to `limit`) for the server to close TCP, collecting any bytes it
/// sends meanwhile. Returns the time it took and those bytes.
pub fn time_until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        assert!(
            !left.is_zero(),
            "server did not close the connection within {limit:?}; received {}",
            hex_preview(&got, 64)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (t0.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return (t0.elapsed(), got)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("unexpected read error while waiting for close: {e}"),
        }
    }
}

/// After the client half-closed (shutdown(Write)), the server must end the
/// connection: optionally a close frame (never with 1005/1006/1015, which
/// must not be sent), then FIN or RST within the socket timeout.
#[track_caller]
pub fn expect_end_after_client_fin(s: &mut TcpStream) {
    match try_read_frame(s) {
        Ok(f) => {
            assert_eq!(f.opcode, OP_CLOSE, "unexpected frame after the client's FIN: {f:?}");
            assert!(!matches!(f.close_code(), Some(1005 | 1006 | 1015)), "close code that must never be sent: {f:?}");
            assert_tcp_closed(s);
        }
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset),
            "the server did not close the connection after the client's FIN: {} ({e})",
            io_hint(&e)
        ),
    }
}

/// Waits (up to `limit`) until the server has really let go of the
/// connection, not just half-closed it. A server that lingers after its FIN
/// (reading and discarding, RFC 6455 §7.1.1) is invisible to a client that
/// only reads, so this keeps trickling bytes of a never-completed data frame
/// (harmless: a closing server must discard data) until the server's kernel
/// answers with RST, which makes a write or read fail. Call it only after the
/// server's close frame / EOF has been seen. Returns the elapsed time.
pub fn time_until_dropped(s: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let gone = |e: &io::Error| {
        matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
    };
    // A masked binary frame announcing 4096 bytes; its payload is trickled.
    let header = masked_header(true, OP_BINARY, 4096, LenEnc::Medium, FIXED_MASK);
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 4096];
    let mut probes = 0usize;
    loop {
        let elapsed = t0.elapsed();
        assert!(elapsed < limit, "server still holds the connection open after {elapsed:?}");
        let w = if probes == 0 { s.write(&header) } else { s.write(b"p") };
        probes += 1;
        assert!(probes < 4000, "too many probes");
        match w {
            Err(e) if gone(&e) => return t0.elapsed(),
            Err(e) => panic!("unexpected write error while probing: {e}"),
            Ok(_) => {}
        }
        match s.read(&mut buf) {
            // FIN already seen: keep probing at a gentle pace.
            Ok(0) => std::thread::sleep(Duration::from_millis(20)),
            Ok(n) => panic!("server sent {n} bytes after closing: {}", hex_preview(&buf[..n], 64)),
            Err(e) if gone(&e) => return t0.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("unexpected read error while probing: {e}"),
        }
    }
}
