//! Opening handshake (RFC 6455 §4.2), tested as a black box over TCP: valid
//! upgrade requests (including case and token-list variants, extension and
//! subprotocol offers that must be declined, a request written one byte at a
//! time, a request and the first frame in one write), every rejection the
//! server must make (405, 400, 426 with `Sec-WebSocket-Version: 13`, 431 for a
//! head over 8 KiB), each answered with a plain-text body and a server-side
//! close, and the handshake timer (a connection that never completes the
//! handshake is closed after `handshake_timeout`, an upgraded one is not).

mod common;

use std::io::Read;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

// ----- valid upgrades ------------------------------------------------------

#[test]
fn accept_key_matches_rfc_example() {
    // RFC 6455 §1.3: checks the test's own helper.
    assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn valid_upgrade_gets_101_and_echo_works() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    echo(&mut s, OP_TEXT, b"Hello");
}

#[test]
fn rfc_sample_key_gets_rfc_sample_accept() {
    let addr = start(|_| {});
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut s = connect(addr);
    s.write_all(&Request::upgrade(addr, key).to_bytes()).unwrap();
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, key);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

/// Variants that RFC 6455 / HTTP say must still be accepted.
#[test]
fn valid_request_variants_are_accepted() {
    let addr = start(|_| {});
    type Edit = Box<dyn Fn(Request) -> Request>;
    let variants: Vec<(&str, Edit)> = vec![
        ("Upgrade: WebSocket", Box::new(|r| r.set("Upgrade", "WebSocket"))),
        ("Upgrade: WEBSOCKET", Box::new(|r| r.set("Upgrade", "WEBSOCKET"))),
        ("Connection: keep-alive, Upgrade", Box::new(|r| r.set("Connection", "keep-alive, Upgrade"))),
        ("Connection: upgrade", Box::new(|r| r.set("Connection", "upgrade"))),
        ("Connection: Upgrade,keep-alive", Box::new(|r| r.set("Connection", "Upgrade,keep-alive"))),
        (
            "lower-case header names",
            Box::new(|r| {
                r.rename("Host", "host")
                    .rename("Upgrade", "upgrade")
                    .rename("Connection", "connection")
                    .rename("Sec-WebSocket-Key", "sec-websocket-key")
                    .rename("Sec-WebSocket-Version", "sec-websocket-version")
            }),
        ),
        (
            "upper-case header names",
            Box::new(|r| r.rename("Upgrade", "UPGRADE").rename("Sec-WebSocket-Key", "SEC-WEBSOCKET-KEY")),
        ),
        (
            "extra headers",
            Box::new(|r| {
                r.add("Origin", "http://example.com")
                    .add("User-Agent", "wsecho-tests/1.0")
                    .add("Cache-Control", "no-cache")
                    .add("Accept-Encoding", "gzip, deflate")
            }),
        ),
        // RFC 7230 §3.2.2: list-valued fields may be split over several lines.
        ("Connection over two lines (Upgrade first)", Box::new(|r| r.add("Connection", "keep-alive"))),
        (
            "Connection over two lines (Upgrade last)",
            Box::new(|r| r.set("Connection", "keep-alive").add("Connection", "Upgrade")),
        ),
        ("30 extra headers", Box::new(|r| (0..30).fold(r, |r, i| r.add(&format!("X-Extra-{i}"), "some value")))),
        (
            "key and version with surrounding spaces",
            Box::new(|r| {
                let k = r.headers.iter().find(|(n, _)| n == "Sec-WebSocket-Key").unwrap().1.clone();
                r.set("Sec-WebSocket-Key", &format!("  {k}  ")).set("Sec-WebSocket-Version", " 13 ")
            }),
        ),
        ("path with query", Box::new(|r| r.target("/a/b?x=1&y=%20"))),
        ("target /", Box::new(|r| r.target("/"))),
        (
            "header order",
            Box::new(|r| {
                let mut r = r;
                r.headers.reverse();
                r
            }),
        ),
    ];
    for (name, f) in variants {
        let key = new_key();
        let req = f(Request::upgrade(addr, &key));
        let mut s = connect(addr);
        s.write_all(&req.to_bytes()).unwrap();
        let r = read_response_head(&mut s);
        assert_eq!(r.status, 101, "variant {name:?} rejected: {r:?}");
        check_upgrade_response(&r, &key);
        echo(&mut s, OP_TEXT, name.as_bytes());
    }
}

/// The server implements no extension and no subprotocol: offers must be
/// declined (no header in the 101) and frames stay uncompressed.
#[test]
fn extension_and_subprotocol_offers_are_declined() {
    let addr = start(|_| {});
    let key = new_key();
    let req = Request::upgrade(addr, &key)
        .add("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
        .add("Sec-WebSocket-Protocol", "chat, superchat");
    let mut s = handshake_with(addr, &req, &key);
    echo(&mut s, OP_TEXT, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".as_bytes());
}

#[test]
fn request_one_byte_per_write_upgrades() {
    let addr = start(|_| {});
    let key = new_key();
    let mut s = connect(addr);
    write_bytewise(&mut s, &Request::upgrade(addr, &key).to_bytes());
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, &key);
    echo(&mut s, OP_BINARY, &[1, 2, 3]);
}

#[test]
fn request_and_first_frame_in_one_write() {
    let addr = start(|_| {});
    let key = new_key();
    let mut s = connect(addr);
    let mut bytes = Request::upgrade(addr, &key).to_bytes();
    bytes.extend(masked_frame(true, 0, OP_TEXT, "first frame ✓".as_bytes(), FIXED_MASK));
    bytes.extend(masked_frame(true, 0, OP_BINARY, &[0, 255, 7], FIXED_MASK));
    s.write_all(&bytes).unwrap();
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, &key);
    assert_eq!(read_message(&mut s), (OP_TEXT, "first frame ✓".as_bytes().to_vec()));
    assert_eq!(read_message(&mut s), (OP_BINARY, vec![0, 255, 7]));
}

/// A client that sends its request and immediately half-closes (e.g.
/// `printf ... | nc -N`) gets its 101, and then the server ends the connection.
/// Done on 20 connections at once: whether the FIN arrives with the request
/// or after it is a matter of timing.
#[test]
fn request_then_half_close_upgrades_then_closes() {
    let addr = start(|_| {});
    std::thread::scope(|sc| {
        for _ in 0..20 {
            sc.spawn(move || {
                let key = new_key();
                let mut s = connect(addr);
                s.write_all(&Request::upgrade(addr, &key).to_bytes()).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let r = read_response_head(&mut s);
                check_upgrade_response(&r, &key);
                expect_end_after_client_fin(&mut s);
            });
        }
    });
}

/// A head just under the 8 KiB limit is still fine.
#[test]
fn head_just_under_8k_is_accepted() {
    let addr = start(|_| {});
    let key = new_key();
    let base = Request::upgrade(addr, &key).to_bytes().len();
    let filler_len = 8000 - base - "X-Filler: \r\n".len();
    let req = Request::upgrade(addr, &key).add("X-Filler", &"f".repeat(filler_len));
    assert_eq!(req.to_bytes().len(), 8000);
    let mut s = handshake_with(addr, &req, &key);
    echo(&mut s, OP_TEXT, b"ok");
}

/// "Larger than 8 KiB" is refused, so a head of exactly 8192 bytes (request
/// line through the final CRLF CRLF) is accepted, also with a frame behind it
/// in the same write.
#[test]
fn head_of_exactly_8k_is_accepted() {
    let addr = start(|_| {});
    let key = new_key();
    let base = Request::upgrade(addr, &key).to_bytes().len();
    let filler_len = 8192 - base - "X-Filler: \r\n".len();
    let req = Request::upgrade(addr, &key).add("X-Filler", &"f".repeat(filler_len));
    let mut bytes = req.to_bytes();
    assert_eq!(bytes.len(), 8192);
    bytes.extend(text_frame("right behind an 8 KiB head"));
    let mut s = connect(addr);
    s.write_all(&bytes).unwrap();
    let r = read_response_head(&mut s);
    assert_eq!(r.status, 101, "8192-byte head refused: {r:?}");
    check_upgrade_response(&r, &key);
    assert_eq!(read_message(&mut s), (OP_TEXT, b"right behind an 8 KiB head".to_vec()));
}

#[test]
fn head_of_8k_plus_one_is_431() {
    let addr = start(|_| {});
    let key = new_key();
    let base = Request::upgrade(addr, &key).to_bytes().len();
    let filler_len = 8193 - base - "X-Filler: \r\n".len();
    let req = Request::upgrade(addr, &key).add("X-Filler", &"f".repeat(filler_len));
    assert_eq!(req.to_bytes().len(), 8193);
    expect_http_error(addr, &req.to_bytes(), 431);
}

// ----- rejections ------------------------------------------------------------

#[test]
fn method_not_get_is_405() {
    let addr = start(|_| {});
    // (HEAD is left out: a response to HEAD has no body by HTTP rules.)
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let req = Request::upgrade(addr, &new_key()).method(m);
        expect_http_error(addr, &req.to_bytes(), 405);
    }
}

#[test]
fn http_1_0_is_400() {
    let addr = start(|_| {});
    let req = Request::upgrade(addr, &new_key()).version("HTTP/1.0");
    expect_http_error(addr, &req.to_bytes(), 400);
}

#[test]
fn missing_host_is_400() {
    let addr = start(|_| {});
    let req = Request::upgrade(addr, &new_key()).without("Host");
    expect_http_error(addr, &req.to_bytes(), 400);
}

#[test]
fn bad_upgrade_header_is_400() {
    let addr = start(|_| {});
    let cases: Vec<(&str, Request)> = vec![
        ("missing", Request::upgrade(addr, &new_key()).without("Upgrade")),
        ("h2c", Request::upgrade(addr, &new_key()).set("Upgrade", "h2c")),
        ("websockets", Request::upgrade(addr, &new_key()).set("Upgrade", "websockets")),
        ("empty", Request::upgrade(addr, &new_key()).set("Upgrade", "")),
    ];
    for (name, req) in cases {
        let (r, body) = expect_http_error(addr, &req.to_bytes(), 400);
        eprintln!("Upgrade {name}: {} / {body:?}", r.status_line);
    }
}

/// A plain GET with none of the WebSocket headers is a request whose Upgrade
/// header is missing.
#[test]
fn plain_get_without_upgrade_headers_is_400() {
    let addr = start(|_| {});
    let (r, body) = expect_http_error(addr, b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n", 400);
    eprintln!("plain GET: {} / {body:?}", r.status_line);
}

#[test]
fn bad_connection_header_is_400() {
    let addr = start(|_| {});
    let cases: Vec<(&str, Request)> = vec![
        ("missing", Request::upgrade(addr, &new_key()).without("Connection")),
        ("upgraded", Request::upgrade(addr, &new_key()).set("Connection", "upgraded")),
        ("keep-alive", Request::upgrade(addr, &new_key()).set("Connection", "keep-alive")),
        ("close", Request::upgrade(addr, &new_key()).set("Connection", "close")),
        ("keep-alive-upgrade", Request::upgrade(addr, &new_key()).set("Connection", "keep-alive-upgrade")),
    ];
    for (name, req) in cases {
        let (r, body) = expect_http_error(addr, &req.to_bytes(), 400);
        eprintln!("Connection {name}: {} / {body:?}", r.status_line);
    }
}

#[test]
fn bad_sec_websocket_key_is_400() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![0xA5u8; n]);
    let addr = start(|_| {});
    let cases: Vec<(String, Request)> = vec![
        ("missing".into(), Request::upgrade(addr, &new_key()).without("Sec-WebSocket-Key")),
        ("not base64".into(), Request::upgrade(addr, "").set("Sec-WebSocket-Key", "!!!!not*base64!!!!!!!!==")),
        ("15 bytes".into(), Request::upgrade(addr, "").set("Sec-WebSocket-Key", &b64(15))),
        ("17 bytes".into(), Request::upgrade(addr, "").set("Sec-WebSocket-Key", &b64(17))),
        ("empty".into(), Request::upgrade(addr, "").set("Sec-WebSocket-Key", "")),
    ];
    for (name, req) in cases {
        let (r, body) = expect_http_error(addr, &req.to_bytes(), 400);
        eprintln!("key {name}: {} / {body:?}", r.status_line);
    }
}

#[test]
fn bad_version_is_426_with_version_header() {
    let addr = start(|_| {});
    let cases: Vec<(&str, Request)> = vec![
        ("missing", Request::upgrade(addr, &new_key()).without("Sec-WebSocket-Version")),
        ("8", Request::upgrade(addr, &new_key()).set("Sec-WebSocket-Version", "8")),
        ("12", Request::upgrade(addr, &new_key()).set("Sec-WebSocket-Version", "12")),
        ("14", Request::upgrade(addr, &new_key()).set("Sec-WebSocket-Version", "14")),
    ];
    for (name, req) in cases {
        let (r, _) = expect_http_error(addr, &req.to_bytes(), 426);
        assert_eq!(
            r.header("Sec-WebSocket-Version").map(str::trim),
            Some("13"),
            "426 for version {name} must carry Sec-WebSocket-Version: 13; headers {:?}",
            r.headers
        );
    }
}

#[test]
fn head_over_8k_is_431() {
    let addr = start(|_| {});
    // Complete request whose head is ~9 KiB.
    let req = Request::upgrade(addr, &new_key()).add("X-Filler", &"f".repeat(9 * 1024));
    expect_http_error(addr, &req.to_bytes(), 431);
    // A head that never ends: header lines keep coming past 8 KiB.
    let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while raw.len() < 8192 + 512 {
        raw.extend_from_slice(b"X-More: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    expect_http_error(addr, &raw, 431);
}

#[test]
fn garbage_is_400() {
    let addr = start(|_| {});
    let cases: Vec<Vec<u8>> = vec![
        // A TLS ClientHello prefix.
        vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a],
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n".to_vec(),
        b"hello world\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nthis is not a header\r\n\r\n".to_vec(),
    ];
    for raw in cases {
        expect_http_error(addr, &raw, 400);
    }
}

// ----- handshake timer ----------------------------------------------------

#[test]
fn incomplete_handshake_is_closed_after_timeout() {
    let addr = start(|c| {
        c.handshake_timeout = Duration::from_secs(1);
        c.close_timeout = Duration::from_secs(1);
    });
    // One connection sends half a request, another nothing at all.
    let mut half = connect(addr);
    half.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n").unwrap();
    let silent = connect(addr);
    let wait = |mut s: std::net::TcpStream| {
        let t0 = Instant::now();
        let (t_eof, bytes) = time_until_closed(&mut s, Duration::from_secs(8));
        // Past the FIN, the server must also let go of the socket (it may
        // linger at most close_timeout to deliver an error response).
        time_until_dropped(&mut s, Duration::from_secs(8));
        (t_eof, t0.elapsed(), bytes)
    };
    let h = std::thread::spawn(move || wait(half));
    let silent_res = wait(silent);
    let half_res = h.join().unwrap();
    for (name, (t_eof, t_drop, bytes)) in [("half request", half_res), ("silent", silent_res)] {
        eprintln!("{name}: EOF after {t_eof:?}, released after {t_drop:?}, got {:?}", String::from_utf8_lossy(&bytes));
        assert!(
            t_eof >= Duration::from_millis(500) && t_eof <= Duration::from_secs(5),
            "{name}: closed after {t_eof:?}, expected about 1 s (handshake_timeout)"
        );
        assert!(t_drop <= Duration::from_secs(5), "{name}: socket released only after {t_drop:?}");
        assert!(
            !bytes.starts_with(b"HTTP/1.1 101"),
            "{name}: server upgraded an incomplete request: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// A client trickling header bytes forever (slowloris) is still cut off at
/// handshake_timeout: activity does not restart the timer.
#[test]
fn trickling_handshake_is_closed_after_timeout() {
    let addr = start(|c| c.handshake_timeout = Duration::from_secs(1));
    let mut s = connect(addr);
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let t = t0.elapsed();
        assert!(t < Duration::from_secs(5), "trickling client still connected after {t:?}");
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {} // an error response (e.g. 408) may come first
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let t = t0.elapsed();
    assert!(t >= Duration::from_millis(500), "closed after only {t:?}");
}

/// The handshake timer must stop once the upgrade is done.
#[test]
fn handshake_timeout_does_not_apply_after_upgrade() {
    let addr = start(|c| c.handshake_timeout = Duration::from_secs(1));
    let mut s = handshake(addr);
    // Assert a timeout does NOT fire: waiting is the point here.
    std::thread::sleep(Duration::from_millis(1800));
    echo(&mut s, OP_TEXT, b"still open");
}

/// A slow but steady client that finishes within the timeout is fine.
#[test]
fn slow_request_within_timeout_upgrades() {
    let addr = start(|c| c.handshake_timeout = Duration::from_secs(2));
    let key = new_key();
    let req = Request::upgrade(addr, &key).to_bytes();
    let mut s = connect(addr);
    let (a, b) = req.split_at(req.len() / 2);
    s.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b).unwrap();
    let r = read_response_head(&mut s);
    check_upgrade_response(&r, &key);
    echo(&mut s, OP_TEXT, b"slow");
}
