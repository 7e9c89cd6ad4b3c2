//! permessage-deflate (RFC 7692) over TCP, with a client compressor written against `flate2`
//! (not the server's code): negotiation in the 101 (and none without `--deflate`), compressed text
//! and binary echoed compressed (RSV1 on the first frame) and uncompressed ones uncompressed on
//! the same connection, the pass-through echo returning the client's compressed bytes frame for
//! frame, the re-compressing echo (`--deflate-recompress`) inflating to the same message, a 1 MiB
//! message through 4 KiB reads, and every bad input with its close code: RSV1 on a continuation
//! or a ping (1002), RSV1 without the extension (1002), corrupt and cut compressed data (1007),
//! invalid UTF-8 inside compressed text (1007, nothing echoed), a decompression bomb (1009 after at
//! most `--max-message-size` inflated bytes).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Raw deflate of one message with no context takeover, `Z_SYNC_FLUSH`, tail stripped (§7.2.1).
fn compress(msg: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(msg.len() + 64);
    loop {
        let before = c.total_in() as usize;
        c.compress_vec(&msg[before..], &mut out, FlushCompress::Sync).unwrap();
        if c.total_in() as usize == msg.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&TAIL), "sync flush ends with the empty stored block");
    out.truncate(out.len() - 4);
    out
}

/// Inflates one compressed message (tail appended, §7.2.2).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(4 * input.len() + 1024);
    while (d.total_in() as usize) < input.len() {
        let before = d.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        d.decompress_vec(&input[before..], &mut out, FlushDecompress::Sync).unwrap();
    }
    out
}

/// A server frame read strictly, RSV1 allowed (the shared reader, with the extension's bit).
fn read_rframe(s: &mut TcpStream) -> Frame {
    try_read_frame_ext(s, RSV1).expect("a server frame")
}

/// Reads one data message: (opcode, compressed, frames' payloads concatenated, frame count).
fn read_rmessage(s: &mut TcpStream) -> (u8, bool, Vec<u8>, usize) {
    let first = read_rframe(s);
    let (op, rsv1) = (first.opcode, first.rsv == RSV1);
    let (mut data, mut n, mut fin) = (first.payload, 1, first.fin);
    while !fin {
        let f = read_rframe(s);
        assert_eq!(f.opcode, OP_CONT);
        assert_eq!(f.rsv, 0, "RSV1 on a continuation");
        data.extend_from_slice(&f.payload);
        n += 1;
        fin = f.fin;
    }
    (op, rsv1, data, n)
}

/// A masked client frame with RSV bits.
fn rframe(fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
    masked_frame(fin, rsv, op, payload, random_mask())
}

/// Upgrades with `offer` as `Sec-WebSocket-Extensions`; returns the stream and the answer.
fn upgrade(addr: SocketAddr, offer: Option<&str>) -> (TcpStream, Option<String>) {
    let mut s = connect(addr);
    let key = new_key();
    let mut req = Request::upgrade(addr, &key);
    if let Some(o) = offer {
        req = req.set("Sec-WebSocket-Extensions", o);
    }
    s.write_all(&req.to_bytes()).unwrap();
    let r = read_response_head(&mut s);
    assert_eq!(r.status, 101);
    let ext = r.header("Sec-WebSocket-Extensions").map(str::to_string);
    (s, ext)
}

const CHROME: &str = "permessage-deflate; client_max_window_bits";

fn deflate_server(recompress: bool, read: usize) -> SocketAddr {
    start(|c| {
        c.deflate.enabled = true;
        c.deflate_recompress = recompress;
        c.read_buffer = read;
        c.max_message_size = 4 << 20;
    })
}

#[test]
fn negotiation_in_the_101() {
    let addr = deflate_server(false, 64 << 10);
    let (_, ext) = upgrade(addr, Some(CHROME));
    let ext = ext.expect("the offer is accepted");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    assert!(ext.contains("server_no_context_takeover") && ext.contains("client_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_max_window_bits"), "answered because offered: {ext}");
    let (_, ext) = upgrade(addr, Some("permessage-deflate"));
    assert!(!ext.expect("accepted").contains("client_max_window_bits"), "not offered, not answered (§7.1.2.2)");
    // Declined offers upgrade without the extension.
    for bad in ["permessage-deflate; foo=1", "permessage-deflate; server_max_window_bits=7", "x-webkit-deflate-frame"] {
        let (_, ext) = upgrade(addr, Some(bad));
        assert_eq!(ext, None, "{bad}");
    }
    // Off by default: an offer is ignored.
    let plain = start(|_| {});
    let (_, ext) = upgrade(plain, Some(CHROME));
    assert_eq!(ext, None);
}

#[test]
fn compressed_echo_comes_back_compressed_and_plain_comes_back_plain() {
    for recompress in [false, true] {
        let addr = deflate_server(recompress, 64 << 10);
        let (mut s, _) = upgrade(addr, Some(CHROME));
        let text = utf8_text(1000, 1);
        let json = br#"{"type":"quote","symbol":"WSE","bid":101.25,"ask":101.5,"size":300}"#.repeat(15);
        let bin = binary_data(3000, 2);
        for (op, msg) in [(OP_TEXT, &text[..]), (OP_BINARY, &json[..]), (OP_BINARY, &bin[..]), (OP_TEXT, b"")] {
            let c = compress(msg);
            s.write_all(&rframe(true, RSV1, op, &c)).unwrap();
            let (rop, rsv1, data, _) = read_rmessage(&mut s);
            assert!(rsv1 && rop == op, "compressed echo (recompress {recompress})");
            assert_bytes_eq(&inflate(&data), msg, "inflated echo");
            if !recompress {
                assert_bytes_eq(&data, &c, "pass-through echoes the client's compressed bytes");
            }
            // The same message uncompressed on the same connection comes back uncompressed.
            s.write_all(&rframe(true, 0, op, msg)).unwrap();
            let (rop, rsv1, data, _) = read_rmessage(&mut s);
            assert!(!rsv1 && rop == op);
            assert_bytes_eq(&data, msg, "plain echo");
        }
    }
}

#[test]
fn fragmented_and_big_compressed_messages_through_small_reads() {
    for recompress in [false, true] {
        let addr = deflate_server(recompress, 4 << 10);
        let (mut s, _) = upgrade(addr, Some(CHROME));
        // 1 MiB of compressible text in one frame, then in three fragments.
        let msg: Vec<u8> =
            (0..1100u64).flat_map(|i| [utf8_text(900, i), b"lorem ipsum dolor sit amet ".to_vec()]).flatten().collect();
        let c = compress(&msg);
        s.write_all(&rframe(true, RSV1, OP_TEXT, &c)).unwrap();
        let (op, rsv1, data, _) = read_rmessage(&mut s);
        assert!(op == OP_TEXT && rsv1, "op {op} rsv1 {rsv1} recompress {recompress}");
        assert_bytes_eq(&inflate(&data), &msg, "1 MiB compressed text");
        let cut = [0, c.len() / 3, 2 * c.len() / 3, c.len()];
        let mut wire = rframe(false, RSV1, OP_TEXT, &c[cut[0]..cut[1]]);
        wire.extend(rframe(false, 0, OP_CONT, &c[cut[1]..cut[2]]));
        wire.extend(rframe(true, 0, OP_CONT, &c[cut[2]..cut[3]]));
        s.write_all(&wire).unwrap();
        let (op, rsv1, data, frames) = read_rmessage(&mut s);
        assert!(op == OP_TEXT && rsv1);
        assert_bytes_eq(&inflate(&data), &msg, "fragmented compressed text");
        if !recompress {
            assert_bytes_eq(&data, &c, "pass-through: the same compressed bytes");
            assert!(frames >= 3);
        }
    }
}

#[test]
fn pass_through_keeps_fragment_boundaries() {
    let addr = deflate_server(false, 64 << 10);
    let (mut s, _) = upgrade(addr, Some(CHROME));
    let c = compress(&b"frame for frame ".repeat(200));
    let parts = [&c[..5], &c[5..6], &c[6..]];
    let mut wire = rframe(false, RSV1, OP_BINARY, parts[0]);
    wire.extend(rframe(false, 0, OP_CONT, parts[1]));
    wire.extend(rframe(true, 0, OP_CONT, parts[2]));
    s.write_all(&wire).unwrap();
    for (k, p) in parts.iter().enumerate() {
        let f = read_rframe(&mut s);
        assert_eq!((f.fin, f.rsv == RSV1, f.opcode), (k == 2, k == 0, if k == 0 { OP_BINARY } else { OP_CONT }));
        assert_bytes_eq(&f.payload, p, "fragment");
    }
}

#[test]
fn bad_compressed_input_gets_its_close_code() {
    let addr = deflate_server(false, 64 << 10);
    let msg = b"Hello, compressed world";
    let c = compress(msg);
    // RSV1 on a continuation frame, on a ping.
    let (mut s, _) = upgrade(addr, Some(CHROME));
    let mut wire = rframe(false, RSV1, OP_TEXT, &c[..3]);
    wire.extend(rframe(true, RSV1, OP_CONT, &c[3..]));
    s.write_all(&wire).unwrap();
    let first = read_rframe(&mut s);
    assert_eq!((first.fin, first.rsv == RSV1, first.payload.len()), (false, true, 3), "the first fragment, echoed");
    expect_close_no_echo(&mut s, 1002);
    let (mut s, _) = upgrade(addr, Some(CHROME));
    s.write_all(&rframe(true, RSV1, OP_PING, b"p")).unwrap();
    expect_close_no_echo(&mut s, 1002);
    // RSV1 without the extension.
    let (mut s, ext) = upgrade(addr, None);
    assert_eq!(ext, None);
    s.write_all(&rframe(true, RSV1, OP_TEXT, &c)).unwrap();
    expect_close_no_echo(&mut s, 1002);
    // Corrupt data: a reserved block type (BTYPE 11).
    let (mut s, _) = upgrade(addr, Some(CHROME));
    s.write_all(&rframe(true, RSV1, OP_BINARY, &[0x07, 0xff, 0x00])).unwrap();
    expect_close_no_echo(&mut s, 1007);
    // Cut data: the message ends inside a block.
    let (mut s, _) = upgrade(addr, Some(CHROME));
    let long = compress(&binary_data(2000, 9));
    s.write_all(&rframe(true, RSV1, OP_BINARY, &long[..long.len() / 2])).unwrap();
    expect_close_no_echo(&mut s, 1007);
    // Invalid UTF-8 inside compressed text: nothing of it echoed.
    let (mut s, _) = upgrade(addr, Some(CHROME));
    s.write_all(&rframe(true, RSV1, OP_TEXT, &compress(b"valid so far \xff then not"))).unwrap();
    expect_close_no_echo(&mut s, 1007);
    // The connection's neighbours are not disturbed.
    let (mut s, _) = upgrade(addr, Some(CHROME));
    s.write_all(&rframe(true, RSV1, OP_TEXT, &c)).unwrap();
    let (_, _, data, _) = read_rmessage(&mut s);
    assert_bytes_eq(&inflate(&data), msg, "a good message after the bad ones");
}

#[test]
fn decompression_bomb_is_refused_at_the_limit() {
    for recompress in [false, true] {
        let addr = start(|c| {
            c.deflate.enabled = true;
            c.deflate_recompress = recompress;
            c.max_message_size = 1 << 20;
        });
        // 64 MiB of zeros compress to about 64 KiB: 64 times the limit.
        let bomb = compress(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10);
        let (mut s, _) = upgrade(addr, Some(CHROME));
        s.write_all(&rframe(true, RSV1, OP_BINARY, &bomb)).unwrap();
        expect_close_no_echo(&mut s, 1009);
        // Just under the limit is fine.
        let (mut s, _) = upgrade(addr, Some(CHROME));
        let ok = vec![0u8; 1 << 20];
        s.write_all(&rframe(true, RSV1, OP_BINARY, &compress(&ok))).unwrap();
        let (_, _, data, _) = read_rmessage(&mut s);
        assert_eq!(inflate(&data).len(), 1 << 20);
    }
}
