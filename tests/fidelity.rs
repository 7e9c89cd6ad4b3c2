//! Frame-exact echo, tested as a black box over TCP: every data frame comes back as one frame with
//! the same FIN, opcode and payload length however TCP and the server's reads cut it. Four 16 KiB
//! frames written at once (65,592 bytes, more than one 64 KiB read) come back as four frames; a
//! frame written in two parts, with the server proven to have read the first part before the
//! second is sent (its byte counter in `/metrics`), comes back whole for every split position;
//! fragmented messages keep their fragment boundaries through 4 KiB reads, binary frames of any
//! size keep their framing, and only a text frame above the 64 KiB bound may come back as several
//! fragments. A held text frame that turns out invalid is refused with 1007 and none of it echoed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use common::*;

/// The bound up to which text frames come back as exactly one frame (binary: always).
const BOUND: usize = 64 << 10;

/// Reads the server's `wsecho_bytes_received_total` from `/metrics`.
fn bytes_received(addr: SocketAddr) -> u64 {
    let mut s = connect(addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find_map(|l| l.strip_prefix("wsecho_bytes_received_total ").map(|v| v.trim().parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("no wsecho_bytes_received_total in /metrics: {body}"))
}

/// Waits until the server has read at least `want` bytes in all (bounded: 5 s).
fn wait_received(addr: SocketAddr, want: u64) {
    let t0 = Instant::now();
    loop {
        // A scrape's own request counts too; it is only ever more than `want` needs.
        if bytes_received(addr) >= want {
            return;
        }
        assert!(t0.elapsed() < IO_TIMEOUT, "server never read {want} bytes");
        std::thread::yield_now();
    }
}

/// Asserts that `f` is exactly the unmasked echo of a data frame (fin, opcode, payload).
#[track_caller]
fn assert_frame(f: &Frame, fin: bool, opcode: u8, payload: &[u8], what: &str) {
    assert_eq!((f.fin, f.opcode, f.payload.len()), (fin, opcode, payload.len()), "{what}: {f:?}");
    assert_bytes_eq(&f.payload, payload, what);
}

fn upgraded(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    let key = new_key();
    s.write_all(&Request::upgrade(addr, &key).to_bytes()).unwrap();
    let r = read_response_head(&mut s);
    assert_eq!(r.status, 101);
    s
}

#[test]
fn four_16k_frames_in_one_write_come_back_as_four_frames() {
    // The third-party load generator's case: 4 × 16 KiB back to back in one write, so that the
    // server's 64 KiB read cuts the fourth frame.
    let addr = start(|_| {});
    let mut conns: Vec<TcpStream> = (0..20).map(|_| upgraded(addr)).collect();
    for round in 0..20u64 {
        for (i, s) in conns.iter_mut().enumerate() {
            let seed = round * 100 + i as u64;
            let (op, payloads) = if i % 2 == 0 {
                (OP_BINARY, (0..4).map(|k| binary_data(16 << 10, seed * 4 + k)).collect::<Vec<_>>())
            } else {
                (OP_TEXT, (0..4).map(|k| utf8_text(16 << 10, seed * 4 + k)).collect::<Vec<_>>())
            };
            // 64-bit lengths, as that client writes them (14-byte headers).
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend(encode_frame(true, 0, op, p, Some(random_mask()), LenEnc::Long));
            }
            if op == OP_BINARY {
                assert_eq!(wire.len(), 65_592);
            }
            s.write_all(&wire).unwrap();
            for (k, p) in payloads.iter().enumerate() {
                assert_frame(&read_frame(s), true, op, p, &format!("round {round} conn {i} frame {k}"));
            }
        }
    }
}

#[test]
fn a_frame_cut_anywhere_comes_back_whole() {
    // Every split position of a text frame (multi-byte code points, 16-bit length) and of a binary
    // frame; the server has read the first part before the second is written.
    let addr = start(|_| {});
    let mut s = upgraded(addr);
    let text = utf8_text(300, 5);
    let bin = binary_data(200, 6);
    for (op, payload) in [(OP_TEXT, &text), (OP_BINARY, &bin)] {
        for fin in [true, false] {
            let wire = masked_frame(fin, 0, op, payload, random_mask());
            for cut in 1..wire.len() {
                let before = bytes_received(addr);
                s.write_all(&wire[..cut]).unwrap();
                wait_received(addr, before + cut as u64);
                s.write_all(&wire[cut..]).unwrap();
                assert_frame(&read_frame(&mut s), fin, op, payload, &format!("op {op} fin {fin} cut {cut}"));
                if !fin {
                    // End the message with an empty final continuation, echoed as such.
                    s.write_all(&masked_frame(true, 0, OP_CONT, b"", random_mask())).unwrap();
                    assert_frame(&read_frame(&mut s), true, OP_CONT, b"", "final continuation");
                }
            }
        }
    }
}

#[test]
fn fragment_boundaries_survive_small_reads() {
    // 4 KiB reads cut almost every frame; each fragment still comes back as sent, including empty
    // ones and a code point split between two fragments.
    let addr = start(|c| c.read_buffer = 4 << 10);
    let mut s = upgraded(addr);
    let text = utf8_text(BOUND, 9);
    let cuts = [0usize, 1, 1, 5000, 5003, 40_000, BOUND - 1, BOUND];
    // Cut points chosen anywhere, so some fall inside a code point.
    let parts: Vec<&[u8]> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    let bin = binary_data(300_000, 10);
    let bparts: Vec<&[u8]> = vec![&bin[..0], &bin[..70_000], &bin[70_000..70_001], &bin[70_001..]];
    for (op, parts) in [(OP_TEXT, &parts), (OP_BINARY, &bparts)] {
        let frames = fragments(op, parts);
        s.write_all(&frames.concat()).unwrap();
        for (k, p) in parts.iter().enumerate() {
            let want_op = if k == 0 { op } else { OP_CONT };
            assert_frame(&read_frame(&mut s), k + 1 == parts.len(), want_op, p, &format!("op {op} fragment {k}"));
        }
    }
}

#[test]
fn binary_frames_keep_their_framing_at_any_size() {
    let addr = start(|c| c.read_buffer = 4 << 10);
    let mut s = upgraded(addr);
    for len in [BOUND - 1, BOUND, BOUND + 1, 1 << 20] {
        let p = binary_data(len, len as u64);
        s.write_all(&masked_frame(true, 0, OP_BINARY, &p, random_mask())).unwrap();
        assert_frame(&read_frame(&mut s), true, OP_BINARY, &p, &format!("binary {len}"));
    }
}

#[test]
fn text_frames_up_to_the_bound_come_back_whole_and_above_it_may_be_fragmented() {
    let addr = start(|c| c.read_buffer = 4 << 10);
    let mut s = upgraded(addr);
    for len in [4097, BOUND - 1, BOUND] {
        let p = utf8_text(len, len as u64);
        s.write_all(&masked_frame(true, 0, OP_TEXT, &p, random_mask())).unwrap();
        assert_frame(&read_frame(&mut s), true, OP_TEXT, &p, &format!("text {len}"));
    }
    // Above the bound, with 4 KiB reads: fragments of one message, the same bytes in order.
    let p = utf8_text(BOUND + 1000, 3);
    s.write_all(&masked_frame(true, 0, OP_TEXT, &p, random_mask())).unwrap();
    let mut got = Vec::new();
    let mut frames = 0;
    loop {
        let f = read_frame(&mut s);
        assert_eq!(f.opcode, if frames == 0 { OP_TEXT } else { OP_CONT }, "{f:?}");
        got.extend_from_slice(&f.payload);
        frames += 1;
        if f.fin {
            break;
        }
    }
    assert_bytes_eq(&got, &p, "text above the bound, reassembled");
    assert!(frames > 1, "with 4 KiB reads a {} byte text frame is streamed as fragments", p.len());
}

#[test]
fn invalid_text_in_a_held_frame_is_refused_with_nothing_echoed() {
    // 60 KB of valid text then one invalid byte, through 4 KiB reads: the frame is held while it
    // validates, so the 1007 comes with none of it echoed.
    let addr = start(|c| c.read_buffer = 4 << 10);
    let mut s = upgraded(addr);
    let mut p = utf8_text(60_000, 4);
    p.push(0xff);
    s.write_all(&masked_frame(true, 0, OP_TEXT, &p, random_mask())).unwrap();
    expect_close_no_echo(&mut s, 1007);
    // The same with the text ending inside a code point at the end of a final frame.
    let mut s = upgraded(addr);
    let mut p = utf8_text(60_000, 4);
    p.extend_from_slice(&[0xe2, 0x82]);
    s.write_all(&masked_frame(true, 0, OP_TEXT, &p, random_mask())).unwrap();
    expect_close_no_echo(&mut s, 1007);
}
