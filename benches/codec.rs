//! Micro-benchmarks of the codec pieces and of a whole connection driven in memory.
//!
//! `cargo bench` runs them (criterion). Groups: frame header decode/encode (7/16/64-bit lengths),
//! unmasking (20 B, 1 KiB, 64 KiB; word-at-a-time vs the byte loop, bytes/s), UTF-8 validation
//! (ASCII, mixed, CJK, emoji and random text of 20 B, 1 KiB and 16 KiB, bytes/s;
//! `std::str::from_utf8` on the 16 KiB inputs as a reference), the upgrade (parse + accept key +
//! 101), and `echo`: a `Connection` over a `MemSocket` echoing pipelined messages (no syscalls: the
//! protocol cost alone).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use wsecho::conn::Connection;
use wsecho::frame::{decode_header, encode_header, OpCode, MAX_HEADER_LEN};
use wsecho::handshake::{parse_request, write_accept, Request, MAX_RESPONSE};
use wsecho::mask::{apply_mask, apply_mask_naive};
use wsecho::memsock::MemSocket;
use wsecho::shared::Shared;
use wsecho::utf8::Utf8Validator;

const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
User-Agent: wsbench\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn masked_frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let n = encode_header(true, op, Some(mask), payload.len() as u64, &mut h);
    let mut f = h[..n].to_vec();
    let mut p = payload.to_vec();
    apply_mask(&mut p, mask);
    f.extend(p);
    f
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    for len in [20u64, 1024, 1 << 20] {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(true, OpCode::Binary, Some([1, 2, 3, 4]), len, &mut h);
        g.bench_with_input(BenchmarkId::new("decode", len), &h[..n], |b, h| b.iter(|| decode_header(black_box(h))));
        g.bench_with_input(BenchmarkId::new("encode", len), &len, |b, &len| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| encode_header(true, OpCode::Binary, None, black_box(len), &mut out))
        });
    }
    g.finish();
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [20usize, 1024, 64 << 10] {
        let mut buf = vec![0xA5u8; size + 1];
        g.throughput(Throughput::Bytes(size as u64));
        // Offset 1: the unaligned case, as payloads sit after a header.
        g.bench_function(BenchmarkId::new("words", size), |b| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), [0x37, 0xfa, 0x21, 0x3d]))
        });
        g.bench_function(BenchmarkId::new("bytes", size), |b| {
            b.iter(|| apply_mask_naive(black_box(&mut buf[1..]), [0x37, 0xfa, 0x21, 0x3d]))
        });
    }
    g.finish();
}

/// `unit` repeated and cut to exactly `len` bytes on a character boundary (padded with spaces).
fn text_of(unit: &str, len: usize) -> Vec<u8> {
    let mut s = String::with_capacity(len + 4);
    'fill: loop {
        for ch in unit.chars() {
            if s.len() + ch.len_utf8() > len {
                break 'fill;
            }
            s.push(ch);
        }
    }
    while s.len() < len {
        s.push(' ');
    }
    s.into_bytes()
}

/// Random characters, exactly `len` bytes: half of them ASCII, the rest 2-, 3- and 4-byte ones
/// (1:2:1), as in `wsbench --text-kind mixed`.
fn random_text(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::with_capacity(len + 4);
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = (x >> 8) as u32;
        let cp = match x % 8 {
            0..=3 => r % 0x80,
            4 => 0x80 + r % 0x780,
            5 | 6 => 0x800 + r % 0xD000,
            _ => 0x1_0000 + r % 0x10_0000,
        };
        let ch = char::from_u32(cp).expect("a scalar value");
        if s.len() + ch.len_utf8() > len {
            break;
        }
        s.push(ch);
    }
    while s.len() < len {
        s.push(' ');
    }
    s.into_bytes()
}

fn utf8(c: &mut Criterion) {
    // `Utf8Validator::feed` on one whole message, bytes/s. ASCII; mixed (Latin with accents,
    // Greek, a 4-byte symbol, €: about 1 byte in 4 non-ASCII); CJK (3-byte characters, ASCII
    // punctuation now and then); emoji (4-byte characters and spaces); random (see `random_text`).
    // 20 B is a chat message, 1 KiB and 16 KiB are JSON-sized documents. The first four repeat a
    // short pattern, which a branchy validator (std's) learns; random text comes from 16 buffers
    // taken in turn, which it cannot learn, as with real traffic: std is ~10x slower on it.
    let mut g = c.benchmark_group("utf8");
    let kinds = [
        ("ascii", "The quick brown fox jumps over the lazy dog; {\"id\": 42, \"ok\": true}\n"),
        ("mixed", "héllo wörld, κόσμε, 𝄞 €! "),
        ("cjk", "日本語のテキストと中文文本，还有한국어 텍스트。"),
        ("emoji", "😀🎉👍🏽🚀 ❤️😂🔥✨ "),
    ];
    for (name, unit) in kinds {
        for size in [20usize, 1024, 16 << 10] {
            let data = text_of(unit, size);
            assert!(std::str::from_utf8(&data).is_ok() && data.len() == size);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new(name, size), &data, |b, data| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    v.feed(black_box(data)).is_ok()
                })
            });
            if size == 16 << 10 {
                // Reference: std's validator alone (what `feed` used before simdutf8), same run.
                g.bench_with_input(BenchmarkId::new(format!("{name}-std"), size), &data, |b, data| {
                    b.iter(|| std::str::from_utf8(black_box(data)).is_ok())
                });
            }
        }
    }
    for size in [20usize, 1024, 16 << 10] {
        let bufs: Vec<Vec<u8>> = (1..=16).map(|seed| random_text(seed, size)).collect();
        assert!(bufs.iter().all(|b| std::str::from_utf8(b).is_ok() && b.len() == size));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("random", size), &bufs, |b, bufs| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % bufs.len();
                let mut v = Utf8Validator::new();
                v.feed(black_box(&bufs[k])).is_ok()
            })
        });
        if size == 16 << 10 {
            g.bench_with_input(BenchmarkId::new("random-std", size), &bufs, |b, bufs| {
                let mut k = 0;
                b.iter(|| {
                    k = (k + 1) % bufs.len();
                    std::str::from_utf8(black_box(&bufs[k])).is_ok()
                })
            });
        }
    }
    g.finish();
}

fn upgrade(c: &mut Criterion) {
    c.bench_function("upgrade/parse+accept+101", |b| {
        let mut out = [0u8; MAX_RESPONSE];
        b.iter(|| match parse_request(black_box(REQ)) {
            Ok(Some(Request::Upgrade(u))) => write_accept(u.key, &mut out),
            _ => unreachable!(),
        })
    });
}

fn echo(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo");
    for size in [20usize, 1024, 16 << 10] {
        let batch = 16;
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let frame = masked_frame(OpCode::Text, &payload);
        let input: Vec<u8> = frame.repeat(batch);
        let mut sh = Shared::new(&wsecho::config::Config::default(), None);
        let mut conn = Connection::new(MemSocket::new(), false);
        conn.stream_mut().push_input(REQ);
        conn.on_readable(&mut sh);
        conn.stream_mut().discard_output();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("text_pipelined16", size), |b| {
            b.iter(|| {
                conn.stream_mut().push_input(&input);
                while conn.stream_mut().unread() > 0 {
                    conn.on_readable(&mut sh);
                }
                conn.stream_mut().discard_output()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, headers, masking, utf8, upgrade, echo);
criterion_main!(benches);
