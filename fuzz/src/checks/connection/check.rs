//! The `connection` check itself: decodes a session from the fuzz input, drives it through the
//! connection, and holds the server's output to the model and the model to the generator. Also the
//! upgrade requests and plain GETs a session starts with.
//!
//! Owns the composition only; each part lives in its sibling (`driver`, `gen`, `model`, `output`,
//! `session`). Nothing imports this module.

use wsecho::shared::FRAME_BOUND;

use super::super::handshake::check_http_response;
use super::super::input::Bytes;
use super::driver::Driver;
use super::gen::Gen;
use super::model::{model, End, Ev};
use super::output::parse_server_output;
use super::session::{CHUNKS, LIMITS, ROOMS};

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
