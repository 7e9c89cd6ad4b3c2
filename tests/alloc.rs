//! Proof of "no heap allocation per message and none per upgrade".
//!
//! A counting `#[global_allocator]` counts allocations made on the reactor's thread only (the test
//! clients allocate freely on theirs). N connections upgrade, then echo rounds of M and 4M messages
//! of mixed shapes: 20 B, 1 KiB, 70 KiB (spans reads, exercises partial frames and backpressure),
//! fragmented text with a multi-byte code point cut between fragments, and pings between
//! fragments. The test asserts that upgrades allocate nothing (the slab is reserved up front) and
//! that the allocation count does not grow with the number of messages, and prints the counts.
//! The same for permessage-deflate (pass-through and `--deflate-recompress`): compressed text and
//! binary messages (one spanning reads), compressed fragments with a ping between them, mixed with
//! uncompressed ones.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;
/// Allocations per counted thread: slot 0 for the plain test's reactor, 1 for the deflate test's,
/// 2 for the TLS test's (the tests run in parallel; each counts only its own reactor).
static ALLOCS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
thread_local! {
    /// Which slot of [`ALLOCS`] this thread counts into (none: not counted).
    static COUNT_HERE: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only an atomic and a thread-local flag, never the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if let Some(i) = COUNT_HERE.with(|c| c.get()) {
            ALLOCS[i].fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as received (the caller upholds `GlobalAlloc::alloc`'s contract).
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc`/`realloc` above with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if let Some(i) = COUNT_HERE.with(|c| c.get()) {
            ALLOCS[i].fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `p` came from `System` with layout `l`; forwarded as received.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    rsv_frame(fin, 0, op, payload, mask)
}

/// A masked frame with RSV bits `rsv` (0b100: RSV1).
fn rsv_frame(fin: bool, rsv: u8, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | rsv << 4 | op];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one message, reassembling fragments: (opcode, payload). A control frame before any data
/// frame is returned on its own; control frames between fragments are appended to `between`.
fn read_message(s: &mut impl Read) -> (u8, Vec<u8>) {
    read_message_with(s, &mut Vec::new())
}

fn read_message_with(s: &mut impl Read, between: &mut Vec<(u8, Vec<u8>)>) -> (u8, Vec<u8>) {
    let mut msg = Vec::new();
    let mut op = 0;
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        let fop = h[0] & 0x0f;
        if fop >= 8 {
            if op == 0 {
                return (fop, p);
            }
            between.push((fop, p));
            continue;
        }
        if fop != 0 {
            op = fop;
        }
        msg.extend_from_slice(&p);
        if h[0] & 0x80 != 0 {
            return (op, msg);
        }
    }
}

fn upgrade(addr: std::net::SocketAddr) -> TcpStream {
    upgrade_with(addr, "")
}

/// Upgrades with `extra` header lines (each ending in CRLF).
fn upgrade_with(addr: std::net::SocketAddr, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    upgrade_on(&mut s, extra);
    s
}

/// Sends the upgrade request (with `extra` header lines) on `s` and checks the 101.
fn upgrade_on(s: &mut (impl Read + Write), extra: &str) {
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let mut b = [0u8; 1];
    while !resp.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        resp.push(b[0]);
    }
    assert!(resp.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&resp));
}

/// One round: each connection (on its own client thread) sends `m` messages of mixed shapes and
/// checks every echo.
fn round<S: Read + Write + Send>(conns: &mut [S], m: usize) {
    std::thread::scope(|scope| {
        for (ci, s) in conns.iter_mut().enumerate() {
            scope.spawn(move || {
                let mask = [0x37, 0xfa, ci as u8, 0x3d];
                for i in 0..m {
                    match i % 5 {
                        0 => {
                            let p = [b'a' + (i % 26) as u8; 20];
                            s.write_all(&frame(true, 2, &p, mask)).unwrap();
                            assert_eq!(read_message(s), (2, p.to_vec()));
                        }
                        1 => {
                            let p: Vec<u8> = (0..1024).map(|x| (x * 7 + i) as u8).collect();
                            s.write_all(&frame(true, 2, &p, mask)).unwrap();
                            assert_eq!(read_message(s), (2, p));
                        }
                        2 => {
                            let p: Vec<u8> = (0..70_000).map(|x| (x * 13 + i) as u8).collect();
                            s.write_all(&frame(true, 2, &p, mask)).unwrap();
                            assert_eq!(read_message(s), (2, p));
                        }
                        3 => {
                            // "héllo wörld €", the € cut between two fragments, a ping in between.
                            let text = "héllo wörld €".as_bytes();
                            let cut = text.len() - 2;
                            let mut w = frame(false, 1, &text[..cut], mask);
                            w.extend(frame(true, 9, b"ping!", mask));
                            w.extend(frame(true, 0, &text[cut..], mask));
                            s.write_all(&w).unwrap();
                            // The first fragment is echoed before the ping is read, so the pong
                            // arrives between the echoed fragments.
                            let mut between = Vec::new();
                            assert_eq!(read_message_with(s, &mut between), (1, text.to_vec()));
                            assert_eq!(between, vec![(10, b"ping!".to_vec())]);
                        }
                        _ => {
                            // Several small messages in one write (pipelined).
                            let mut w = Vec::new();
                            for j in 0..8u8 {
                                w.extend(frame(true, 2, &[j; 33], mask));
                            }
                            s.write_all(&w).unwrap();
                            for j in 0..8u8 {
                                assert_eq!(read_message(s), (2, vec![j; 33]));
                            }
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn no_allocation_per_message_or_upgrade() {
    let mut cfg = wsecho::config::Config::default();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let mut reactor = wsecho::reactor::Reactor::bind(&cfg).unwrap();
    let addr = reactor.local_addr();
    std::thread::spawn(move || {
        COUNT_HERE.with(|c| c.set(Some(0)));
        reactor.run()
    });
    let n = 16;
    // Warm up: one connection through a whole round (pools reach their working size).
    // A metrics scrape renders into a growable buffer: proof that the counter sees this thread.
    let mut scrape = TcpStream::connect(addr).unwrap();
    scrape.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    scrape.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    scrape.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("wsecho_upgrades_total 0\n"), "{text}");
    let mut warm = vec![upgrade(addr)];
    round(&mut warm, 50);
    let a0 = ALLOCS[0].load(Ordering::Relaxed);
    let mut conns: Vec<TcpStream> = (0..n).map(|_| upgrade(addr)).collect();
    round(&mut conns[..1], 1); // every connection is surely registered and upgraded by now
    let a1 = ALLOCS[0].load(Ordering::Relaxed);
    round(&mut conns, 100);
    let a2 = ALLOCS[0].load(Ordering::Relaxed);
    round(&mut conns, 400);
    let a3 = ALLOCS[0].load(Ordering::Relaxed);
    round(&mut conns, 400);
    let a4 = ALLOCS[0].load(Ordering::Relaxed);
    let msgs = |m: usize| n * (m / 5) * 12;
    println!("allocations on the reactor thread:");
    println!("  start, /metrics scrape, warm-up:      {a0}");
    println!("  {n} upgrades (+1 round-trip):          {}", a1 - a0);
    println!("  round of {:>6} messages:              {}", msgs(100), a2 - a1);
    println!("  round of {:>6} messages:              {}", msgs(400), a3 - a2);
    println!("  round of {:>6} messages (again):      {}", msgs(400), a4 - a3);
    // The counter sees the reactor thread (the scrape allocated), so zeros below mean zero.
    assert!(a0 > 0, "the counting allocator saw nothing on the reactor thread");
    assert_eq!(a1 - a0, 0, "upgrades allocated");
    // Pools may still grow to the concurrency of this round (bounded by connections, not messages).
    assert!(a2 - a1 <= 3 * n as u64, "first round allocated {}", a2 - a1);
    assert_eq!(a3 - a2, 0, "allocations grew with the number of messages");
    assert_eq!(a4 - a3, 0, "allocations grew with the number of messages");
}

// ----- permessage-deflate ----------------------------------------------------------------------

/// Raw deflate of one message, `Z_SYNC_FLUSH`, tail stripped (RFC 7692 §7.2.1).
fn compress(msg: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(msg.len() + 1024);
    c.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(c.total_in() as usize, msg.len());
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one compressed message.
fn inflate(payload: &[u8]) -> Vec<u8> {
    use flate2::{Decompress, FlushDecompress};
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    assert_eq!(d.total_in() as usize, input.len());
    out
}

/// One round of compressed traffic, mixed with plain messages: compressed text of 1 KiB, a
/// compressed 200 KiB binary message (its frame spans reads), a compressed message in three
/// fragments with a ping between them, and an uncompressed message.
fn deflate_round(conns: &mut [TcpStream], m: usize) {
    std::thread::scope(|scope| {
        for (ci, s) in conns.iter_mut().enumerate() {
            scope.spawn(move || {
                let mask = [0x11, 0x22, ci as u8, 0x44];
                for i in 0..m {
                    match i % 4 {
                        0 => {
                            let p = format!("{{\"seq\":{i},\"text\":\"héllo wörld\"}}").repeat(30).into_bytes();
                            s.write_all(&rsv_frame(true, 0b100, 1, &compress(&p), mask)).unwrap();
                            let (op, echo) = read_message(s);
                            assert_eq!((op, inflate(&echo)), (1, p));
                        }
                        1 => {
                            let p: Vec<u8> = (0..200_000u32).map(|x| (x / 7 + i as u32) as u8).collect();
                            s.write_all(&rsv_frame(true, 0b100, 2, &compress(&p), mask)).unwrap();
                            let (op, echo) = read_message(s);
                            assert_eq!((op, inflate(&echo)), (2, p));
                        }
                        2 => {
                            let p = b"fragmented and compressed, ".repeat(40);
                            let c = compress(&p);
                            let (a, b) = (c.len() / 3, 2 * c.len() / 3);
                            let mut w = rsv_frame(false, 0b100, 2, &c[..a], mask);
                            w.extend(frame(false, 0, &c[a..b], mask));
                            w.extend(frame(true, 9, b"ping", mask));
                            w.extend(frame(true, 0, &c[b..], mask));
                            s.write_all(&w).unwrap();
                            let mut between = Vec::new();
                            let (op, echo) = read_message_with(s, &mut between);
                            assert_eq!((op, inflate(&echo)), (2, p.clone()));
                            assert_eq!(between, vec![(10, b"ping".to_vec())]);
                        }
                        _ => {
                            let p = [i as u8; 300];
                            s.write_all(&frame(true, 2, &p, mask)).unwrap();
                            assert_eq!(read_message(s), (2, p.to_vec()));
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn no_allocation_per_compressed_message() {
    for recompress in [false, true] {
        let mut cfg = wsecho::config::Config::default();
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.deflate.enabled = true;
        cfg.deflate_recompress = recompress;
        let mut reactor = wsecho::reactor::Reactor::bind(&cfg).unwrap();
        let addr = reactor.local_addr();
        let before = ALLOCS[1].load(Ordering::Relaxed);
        let h = std::thread::spawn(move || {
            COUNT_HERE.with(|c| c.set(Some(1)));
            reactor.run()
        });
        let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
        let n = 8;
        let mut warm: Vec<TcpStream> = (0..n).map(|_| upgrade_with(addr, offer)).collect();
        deflate_round(&mut warm, 40);
        let a0 = ALLOCS[1].load(Ordering::Relaxed);
        deflate_round(&mut warm, 200);
        let a1 = ALLOCS[1].load(Ordering::Relaxed);
        deflate_round(&mut warm, 200);
        let a2 = ALLOCS[1].load(Ordering::Relaxed);
        println!("deflate (recompress {recompress}): allocations on the reactor thread:");
        println!("  start, {n} upgrades, warm-up of {} messages: {}", n * 40, a0 - before);
        println!("  round of {} messages (3/4 compressed):     {}", n * 200, a1 - a0);
        println!("  round of {} messages (again):              {}", n * 200, a2 - a1);
        assert!(a0 > before, "the counting allocator saw nothing on the reactor thread");
        assert_eq!(a1 - a0, 0, "compressed messages allocated");
        assert_eq!(a2 - a1, 0, "compressed messages allocated");
        // The reactor runs on (idle) until the test process ends.
        drop(warm);
        drop(h);
    }
}

// ----- wss:// ----------------------------------------------------------------------------------

/// A wss connection (rustls client, trusting `root`), upgraded.
fn wss_upgrade(
    addr: std::net::SocketAddr,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = rustls::StreamOwned::new(rustls::ClientConnection::new(cfg.clone(), name).unwrap(), sock);
    upgrade_on(&mut s, "");
    s
}

#[test]
fn no_allocation_per_message_over_tls() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let dir = std::env::temp_dir().join(format!("wsecho-alloc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
    let mut cfg = wsecho::config::Config::default();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tls = Some(wsecho::tls::config::TlsFiles { cert: dir.join("c.pem"), key: dir.join("k.pem") });
    let mut reactor = wsecho::reactor::Reactor::bind(&cfg).unwrap();
    let addr = reactor.local_addr();
    std::thread::spawn(move || {
        COUNT_HERE.with(|c| c.set(Some(2)));
        reactor.run()
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let n = 16;
    let mut rounds = Vec::new();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[v])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        );
        // Handshakes allocate (rustls' handshake state, per connection, not per message).
        let mut warm = vec![wss_upgrade(addr, &client)];
        round(&mut warm, 50);
        let mut conns: Vec<_> = (0..n).map(|_| wss_upgrade(addr, &client)).collect();
        round(&mut conns, 25); // pools reach the concurrency of a round
        let a1 = ALLOCS[2].load(Ordering::Relaxed);
        round(&mut conns, 400);
        let a2 = ALLOCS[2].load(Ordering::Relaxed);
        round(&mut conns, 400);
        let a3 = ALLOCS[2].load(Ordering::Relaxed);
        println!(
            "{v:?}: allocations on the reactor thread per round of {} messages: {}, {}",
            n * 80 * 12,
            a2 - a1,
            a3 - a2
        );
        rounds.push((a2 - a1, a3 - a2));
        // The handshakes above were counted: the counter sees the reactor thread.
        assert!(a1 > 0, "the counting allocator saw nothing on the reactor thread");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rounds, vec![(0, 0), (0, 0)], "allocations grew with the number of messages over TLS");
}
