//! Data framing (RFC 6455 §5, §8.1), tested as a black box over TCP: text and
//! binary messages of every length-encoding boundary up to 1 MiB echoed with
//! the same opcode and bytes in unmasked server frames, many masks, pipelined
//! messages, fragmented messages (many, empty and code-point-splitting
//! fragments), ping/pong (also between fragments) and ignored unsolicited
//! pongs; and every framing error the server must answer with a close code
//! and a TCP close: 1002 (RSV bits, reserved opcodes, unmasked frames, 64-bit
//! length with the top bit set, oversized or fragmented control frames,
//! continuation/data-frame sequencing), 1009 (messages over
//! `max_message_size`, single-frame, fragmented, or only announced) and 1007
//! (invalid UTF-8 in text messages; the fragment that makes the text invalid
//! is never echoed, earlier fragments come back whole).
//! Messages are compared after reassembly, never by fragment layout.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const SIZES: [usize; 7] = [0, 1, 125, 126, 127, 65535, 65536];

// ----- echo -----------------------------------------------------------------

#[test]
fn text_echo_at_length_boundaries() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    for (i, &n) in SIZES.iter().enumerate() {
        echo_large(&mut s, OP_TEXT, &utf8_text(n, i as u64));
    }
}

#[test]
fn binary_echo_at_length_boundaries() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    for (i, &n) in SIZES.iter().enumerate() {
        echo_large(&mut s, OP_BINARY, &binary_data(n, 100 + i as u64));
    }
}

#[test]
fn one_mib_text_and_binary_echo() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    echo_large(&mut s, OP_BINARY, &binary_data(1 << 20, 7));
    echo_large(&mut s, OP_TEXT, &utf8_text(1 << 20, 8));
}

#[test]
fn many_masks_echo() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let mut masks = vec![FIXED_MASK, [0, 0, 0, 0], [0xff; 4], [0x80, 0, 0, 0x01]];
    let mut rng = Rng::new(42);
    masks.extend((0..20).map(|_| rng.mask()));
    for (i, m) in masks.iter().enumerate() {
        // Lengths not a multiple of 4 exercise the mask rotation.
        let p = binary_data(i * 7 + 3, i as u64);
        s.write_all(&masked_frame(true, 0, OP_BINARY, &p, *m)).unwrap();
        let (op, data) = read_message(&mut s);
        assert_eq!(op, OP_BINARY);
        assert_bytes_eq(&data, &p, &format!("echo with mask {m:02x?}"));
    }
}

#[test]
fn pipelined_messages_in_one_write_echo_in_order() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let msgs: Vec<(u8, Vec<u8>)> = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                (OP_TEXT, utf8_text(i * 13, i as u64))
            } else {
                (OP_BINARY, binary_data(i * 31, i as u64))
            }
        })
        .collect();
    let mut bytes = Vec::new();
    for (op, p) in &msgs {
        bytes.extend(frame(*op, p));
    }
    s.write_all(&bytes).unwrap();
    for (i, (op, p)) in msgs.iter().enumerate() {
        let (gop, data) = read_message(&mut s);
        assert_eq!(gop, *op, "message {i} opcode");
        assert_bytes_eq(&data, p, &format!("message {i}"));
    }
}

// ----- fragmentation --------------------------------------------------------

fn send_fragmented_and_check(s: &mut std::net::TcpStream, opcode: u8, parts: &[&[u8]], separate_writes: bool) {
    let frames = fragments(opcode, parts);
    if separate_writes {
        for f in &frames {
            s.write_all(f).unwrap();
        }
    } else {
        s.write_all(&frames.concat()).unwrap();
    }
    let want = parts.concat();
    let (op, data) = read_message(s);
    assert_eq!(op, opcode, "opcode of echoed fragmented message");
    assert_bytes_eq(&data, &want, "echoed fragmented message");
}

#[test]
fn fragmented_text_many_fragments() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let msg = utf8_text(10_000, 1);
    let mut rng = Rng::new(9);
    // 99 random cut points: repeated cut points make empty fragments, and
    // most cuts fall inside multi-byte code points.
    let mut cuts: Vec<usize> = (0..99).map(|_| rng.below(msg.len() as u64 + 1) as usize).collect();
    cuts.extend([0, 0, msg.len()]);
    cuts.sort();
    let parts = split_at_offsets(&msg, &cuts);
    assert!(parts.len() > 100);
    send_fragmented_and_check(&mut s, OP_TEXT, &parts, false);
    send_fragmented_and_check(&mut s, OP_TEXT, &parts, true);
}

#[test]
fn fragmented_binary_many_fragments() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let msg = binary_data(200_000, 2);
    let mut rng = Rng::new(10);
    let mut cuts: Vec<usize> = (0..300).map(|_| rng.below(msg.len() as u64 + 1) as usize).collect();
    cuts.sort();
    let parts = split_at_offsets(&msg, &cuts);
    let frames = fragments(OP_BINARY, &parts).concat();
    let (op, data) = write_and_read_message(&mut s, &frames);
    assert_eq!(op, OP_BINARY);
    assert_bytes_eq(&data, &msg, "echoed 301-fragment binary message");
}

#[test]
fn fragmented_with_empty_fragments() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    send_fragmented_and_check(&mut s, OP_TEXT, &[b"", b"abc", b"", b"def", b""], false);
    send_fragmented_and_check(&mut s, OP_BINARY, &[b"", b"\x00\x01", b"", b"", b"\xff"], false);
    // A message made only of empty fragments is an empty message.
    send_fragmented_and_check(&mut s, OP_TEXT, &[b"", b"", b""], false);
    send_fragmented_and_check(&mut s, OP_BINARY, &[b"", b""], true);
    // Two fragments, each separately written.
    send_fragmented_and_check(&mut s, OP_BINARY, &[b"hello ", b"world"], true);
}

// ----- ping / pong ----------------------------------------------------------

#[test]
fn ping_gets_pong_with_same_payload() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let p125 = binary_data(125, 3);
    for p in [&b""[..], b"x", b"\x00\xff\xfe non-utf8", &p125] {
        s.write_all(&frame(OP_PING, p)).unwrap();
        let f = read_frame(&mut s);
        assert_eq!(f.opcode, OP_PONG, "expected a pong, got {f:?}");
        assert!(f.fin);
        assert_bytes_eq(&f.payload, p, "pong payload");
    }
    // Several pings in one write: pongs in order.
    let mut bytes = Vec::new();
    for i in 0..5u8 {
        bytes.extend(frame(OP_PING, &[i; 3]));
    }
    s.write_all(&bytes).unwrap();
    for i in 0..5u8 {
        let f = read_frame(&mut s);
        assert_eq!((f.opcode, f.payload), (OP_PONG, vec![i; 3]));
    }
    echo(&mut s, OP_TEXT, b"after pings");
}

#[test]
fn ping_between_fragments() {
    let addr = start(|c| c.max_message_size = 1000);
    let mut s = handshake(addr);
    let part1 = utf8_text(500, 1);
    let part2 = utf8_text(500, 2);
    let ping_payload = binary_data(125, 4); // control frames do not count toward the message size
    let mut bytes = masked_frame(false, 0, OP_TEXT, &part1, random_mask());
    bytes.extend(frame(OP_PING, &ping_payload));
    bytes.extend(masked_frame(true, 0, OP_CONT, &part2, random_mask()));
    s.write_all(&bytes).unwrap();
    let m = read_message_with_controls(&mut s);
    assert_eq!(m.opcode, OP_TEXT);
    assert_bytes_eq(&m.data, &[part1, part2].concat(), "message around a ping");
    assert_eq!(m.controls.len(), 1, "expected exactly one pong: {:?}", m.controls);
    assert_eq!(m.controls[0].opcode, OP_PONG);
    assert_bytes_eq(&m.controls[0].payload, &ping_payload, "pong payload");
}

#[test]
fn unsolicited_pong_is_ignored() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let mut bytes = frame(OP_PONG, b"unsolicited");
    bytes.extend(frame(OP_PONG, b""));
    bytes.extend(frame(OP_TEXT, b"next"));
    s.write_all(&bytes).unwrap();
    // The very next frame must be the echo: no pong (or anything) echoed back.
    let f = read_frame(&mut s);
    assert_eq!(f.opcode, OP_TEXT, "expected the echo of \"next\", got {f:?}");
    let mut data = f.payload;
    let mut fin = f.fin;
    while !fin {
        let f = read_frame(&mut s);
        assert_eq!(f.opcode, OP_CONT, "expected the rest of the echo, got {f:?}");
        data.extend(f.payload);
        fin = f.fin;
    }
    assert_eq!(data, b"next");
    // A pong between fragments is ignored too.
    let mut bytes = masked_frame(false, 0, OP_BINARY, b"ab", random_mask());
    bytes.extend(frame(OP_PONG, b"p"));
    bytes.extend(masked_frame(true, 0, OP_CONT, b"cd", random_mask()));
    s.write_all(&bytes).unwrap();
    assert_eq!(read_message(&mut s), (OP_BINARY, b"abcd".to_vec()));
}

// ----- 1002 protocol errors -------------------------------------------------

/// Sends `bytes` on a fresh connection and expects a close with `code`, with
/// nothing echoed first.
#[track_caller]
fn expect_error(addr: std::net::SocketAddr, bytes: &[u8], code: u16) {
    let mut s = handshake(addr);
    s.write_all(bytes).unwrap();
    expect_close_no_echo(&mut s, code);
}

/// Like `expect_error`, but the bytes start with a valid first fragment whose
/// echo (possibly partial) may arrive before the close.
#[track_caller]
fn expect_error_after_fragment(addr: std::net::SocketAddr, first: &[u8], rest: &[u8], code: u16) {
    let mut s = handshake(addr);
    let mut bytes = masked_frame(false, 0, OP_TEXT, first, random_mask());
    bytes.extend_from_slice(rest);
    s.write_all(&bytes).unwrap();
    let before = expect_close(&mut s, code);
    let echoed: Vec<u8> = before.iter().flat_map(|f| f.payload.clone()).collect();
    assert!(first.starts_with(&echoed), "server echoed more than the valid first fragment before closing: {before:?}");
}

#[test]
fn rsv_bits_are_1002() {
    let addr = start(|_| {});
    for rsv in [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3] {
        expect_error(addr, &masked_frame(true, rsv, OP_TEXT, b"hello", FIXED_MASK), 1002);
        expect_error(addr, &masked_frame(true, rsv, OP_BINARY, b"hello", FIXED_MASK), 1002);
        expect_error(addr, &masked_frame(true, rsv, OP_PING, b"hello", FIXED_MASK), 1002);
        let cont = masked_frame(true, rsv, OP_CONT, b"rest", FIXED_MASK);
        expect_error_after_fragment(addr, b"first", &cont, 1002);
    }
}

#[test]
fn reserved_opcodes_are_1002() {
    let addr = start(|_| {});
    for op in (3..=7).chain(11..=15) {
        expect_error(addr, &masked_frame(true, 0, op, b"abc", FIXED_MASK), 1002);
    }
    // Also with an empty payload, and in the middle of a fragmented message.
    expect_error(addr, &masked_frame(true, 0, 0x3, b"", FIXED_MASK), 1002);
    expect_error_after_fragment(addr, b"first", &masked_frame(true, 0, 0xB, b"", FIXED_MASK), 1002);
}

#[test]
fn unmasked_client_frames_are_1002() {
    let addr = start(|_| {});
    expect_error(addr, &unmasked_frame(true, 0, OP_TEXT, b"Hello"), 1002);
    expect_error(addr, &unmasked_frame(true, 0, OP_BINARY, b""), 1002);
    expect_error(addr, &unmasked_frame(true, 0, OP_PING, b"p"), 1002);
    expect_error_after_fragment(addr, b"first", &unmasked_frame(true, 0, OP_CONT, b"rest"), 1002);
}

#[test]
fn length_with_top_bit_set_is_1002() {
    let addr = start(|_| {});
    for len in [1u64 << 63, (1u64 << 63) | 5, u64::MAX] {
        expect_error(addr, &masked_header(true, OP_BINARY, len, LenEnc::Long, FIXED_MASK), 1002);
    }
}

#[test]
fn control_frame_over_125_bytes_is_1002() {
    let addr = start(|_| {});
    let p = vec![b'x'; 126];
    for op in [OP_PING, OP_PONG] {
        expect_error(addr, &masked_frame(true, 0, op, &p, FIXED_MASK), 1002);
    }
    let mut close_payload = 1000u16.to_be_bytes().to_vec();
    close_payload.extend_from_slice(&[b'r'; 124]);
    expect_error(addr, &masked_frame(true, 0, OP_CLOSE, &close_payload, FIXED_MASK), 1002);
}

#[test]
fn fragmented_control_frames_are_1002() {
    let addr = start(|_| {});
    expect_error(addr, &masked_frame(false, 0, OP_PING, b"ping", FIXED_MASK), 1002);
    expect_error(addr, &masked_frame(false, 0, OP_PONG, b"pong", FIXED_MASK), 1002);
    expect_error(addr, &masked_frame(false, 0, OP_CLOSE, &1000u16.to_be_bytes(), FIXED_MASK), 1002);
    // A "fragmented ping" followed by its continuation.
    let mut b = masked_frame(false, 0, OP_PING, b"pi", FIXED_MASK);
    b.extend(masked_frame(true, 0, OP_CONT, b"ng", FIXED_MASK));
    expect_error(addr, &b, 1002);
}

#[test]
fn continuation_without_message_is_1002() {
    let addr = start(|_| {});
    expect_error(addr, &masked_frame(true, 0, OP_CONT, b"orphan", FIXED_MASK), 1002);
    expect_error(addr, &masked_frame(false, 0, OP_CONT, b"orphan", FIXED_MASK), 1002);
    // After a complete message, a continuation is again an orphan.
    let mut s = handshake(addr);
    echo(&mut s, OP_TEXT, b"complete");
    s.write_all(&masked_frame(true, 0, OP_CONT, b"orphan", FIXED_MASK)).unwrap();
    expect_close_no_echo(&mut s, 1002);
}

#[test]
fn new_data_frame_inside_fragmented_message_is_1002() {
    let addr = start(|_| {});
    for (op2, fin2) in [(OP_TEXT, true), (OP_BINARY, true), (OP_TEXT, false), (OP_BINARY, false)] {
        let second = masked_frame(fin2, 0, op2, b"intruder", FIXED_MASK);
        expect_error_after_fragment(addr, b"first", &second, 1002);
    }
}

// ----- 1009 message too big ---------------------------------------------------

#[test]
fn message_at_limit_is_echoed() {
    let addr = start(|c| c.max_message_size = 1000);
    let mut s = handshake(addr);
    echo(&mut s, OP_BINARY, &binary_data(1000, 1));
    echo(&mut s, OP_TEXT, &utf8_text(1000, 2));
    send_fragmented_and_check(&mut s, OP_BINARY, &[&[1u8; 500], &[2u8; 500]], false);
    let ten: Vec<&[u8]> = vec![&[7u8; 100]; 10];
    send_fragmented_and_check(&mut s, OP_TEXT, &ten, true);
}

#[test]
fn single_frame_over_limit_is_1009() {
    let addr = start(|c| c.max_message_size = 1000);
    expect_error(addr, &frame(OP_BINARY, &binary_data(1001, 1)), 1009);
    expect_error(addr, &frame(OP_TEXT, &utf8_text(1001, 1)), 1009);
    expect_error(addr, &frame(OP_BINARY, &binary_data(70_000, 1)), 1009);
}

#[test]
fn fragmented_message_over_limit_is_1009() {
    let addr = start(|c| c.max_message_size = 1000);
    // 600 + 600: the limit is crossed by the second fragment.
    let mut s = handshake(addr);
    let a = binary_data(600, 1);
    let mut bytes = masked_frame(false, 0, OP_BINARY, &a, random_mask());
    bytes.extend(masked_frame(true, 0, OP_CONT, &binary_data(600, 2), random_mask()));
    s.write_all(&bytes).unwrap();
    let before = expect_close(&mut s, 1009);
    let echoed: Vec<u8> = before.iter().flat_map(|f| f.payload.clone()).collect();
    assert!(a.starts_with(&echoed), "server echoed beyond the first fragment: {before:?}");

    // Ten 100-byte fragments (exactly the limit) then one more byte.
    let mut s = handshake(addr);
    let mut bytes = Vec::new();
    for i in 0..10 {
        bytes.extend(masked_frame(false, 0, if i == 0 { OP_TEXT } else { OP_CONT }, &[b'a'; 100], random_mask()));
    }
    bytes.extend(masked_frame(true, 0, OP_CONT, b"b", random_mask()));
    s.write_all(&bytes).unwrap();
    let before = expect_close(&mut s, 1009);
    let echoed: Vec<u8> = before.iter().flat_map(|f| f.payload.clone()).collect();
    assert!(echoed.iter().all(|&b| b == b'a') && echoed.len() <= 1000, "echoed {before:?}");
}

#[test]
fn announced_huge_frame_is_1009_without_payload() {
    let addr = start(|c| c.max_message_size = 1000);
    expect_error(addr, &masked_header(true, OP_BINARY, 1 << 40, LenEnc::Long, FIXED_MASK), 1009);
    expect_error(addr, &masked_header(true, OP_TEXT, 1 << 40, LenEnc::Long, FIXED_MASK), 1009);
    expect_error(addr, &masked_header(false, OP_BINARY, 1 << 40, LenEnc::Long, FIXED_MASK), 1009);
    expect_error(addr, &masked_header(true, OP_BINARY, 65535, LenEnc::Medium, FIXED_MASK), 1009);
}

// ----- 1007 invalid UTF-8 ---------------------------------------------------

/// Sends the text message `parts` (fragments; all in one write) and expects
/// 1007, with nothing echoed from the first invalid byte on.
#[track_caller]
fn expect_1007(addr: std::net::SocketAddr, parts: &[&[u8]]) {
    let whole = parts.concat();
    assert!(std::str::from_utf8(&whole).is_err(), "test bug: {whole:02x?} is valid UTF-8");
    // Where the text becomes certainly invalid: the shortest prefix with a definite error (an
    // incomplete code point is only an error at the end of the message).
    let certain = (1..=whole.len())
        .find(|&p| std::str::from_utf8(&whole[..p]).is_err_and(|e| e.error_len().is_some()))
        .unwrap_or(whole.len() + 1);
    let mut s = handshake(addr);
    s.write_all(&fragments(OP_TEXT, parts).concat()).unwrap();
    let before = expect_close(&mut s, 1007);
    // Frame-exact echo: whole fragments, in order, each ending before the text became invalid;
    // never the fragment that made it invalid, never the final one.
    let mut end = 0;
    for (k, f) in before.iter().enumerate() {
        assert!(k + 1 < parts.len(), "the final fragment of invalid text {whole:02x?} was echoed: {before:?}");
        assert_eq!(f.payload, parts[k], "echo of fragment {k} of {whole:02x?}: {before:?}");
        end += parts[k].len();
        assert!(end < certain, "fragment {k} of {whole:02x?} reaches the invalid byte {certain} yet was echoed");
    }
}

const INVALID_UTF8: [&[u8]; 18] = [
    b"hello\xC0\xAFworld",                                             // overlong '/'
    b"\xC1\xBF",                                                       // overlong 2-byte
    b"\xE0\x80\xAF",                                                   // overlong 3-byte
    b"\xE0\x9F\xBF",                                                   // overlong 3-byte (U+07FF)
    b"\xF0\x80\x80\xAF",                                               // overlong 4-byte
    b"\xF0\x8F\xBF\xBF",                                               // overlong 4-byte (U+FFFF)
    b"ab\xED\xA0\x80cd",                                               // surrogate U+D800
    b"\xED\xBF\xBF",                                                   // surrogate U+DFFF
    b"\xF4\x90\x80\x80",                                               // U+110000
    b"\xF5\x80\x80\x80",                                               // lead byte beyond U+10FFFF
    b"\xFF",                                                           // never valid
    b"\xFE\xFE\xFF\xFF",                                               // never valid
    b"abc\x80def",                                                     // lone continuation byte
    b"\xE2\x28\xA1",                                                   // bad continuation
    b"\xC2",                                                           // incomplete at the end
    b"ok\xE2\x82",                                                     // incomplete at the end
    b"smile \xF0\x9F\x98",                                             // incomplete at the end
    b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited", // Autobahn-style
];

#[test]
fn invalid_utf8_single_frame_is_1007() {
    let addr = start(|_| {});
    for bad in INVALID_UTF8 {
        expect_1007(addr, &[bad]);
    }
}

#[test]
fn invalid_utf8_across_fragments_is_1007() {
    let addr = start(|_| {});
    // The invalid sequence split across fragment boundaries.
    expect_1007(addr, &[b"hello", b"\xC0\xAF", b"world"]);
    expect_1007(addr, &[b"ab\xE2", b"\x28"]);
    expect_1007(addr, &[b"abc", b"def\xED\xA0", b"\x80"]);
    expect_1007(addr, &[b"\xF4", b"\x90", b"\x80\x80"]);
    expect_1007(addr, &[b"\xFF", b"abc"]);
    expect_1007(addr, &[b"good", b"", b"\x80"]);
    // Incomplete code point at the end of the final fragment.
    expect_1007(addr, &[b"ok\xF0\x9F", b"\x98"]);
    expect_1007(addr, &[b"ok", b"\xE2\x82"]);
    expect_1007(addr, &[b"ok\xE2", b""]);
    // Every single invalid sequence, split after its first byte.
    for bad in INVALID_UTF8 {
        if bad.len() > 1 {
            expect_1007(addr, &[&bad[..1], &bad[1..]]);
        }
    }
}

#[test]
fn invalid_utf8_with_ping_between_fragments_is_1007() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let mut bytes = masked_frame(false, 0, OP_TEXT, b"ok\xE2", random_mask());
    bytes.extend(frame(OP_PING, b"p"));
    bytes.extend(masked_frame(true, 0, OP_CONT, b"\x82", random_mask()));
    s.write_all(&bytes).unwrap();
    let before = expect_close(&mut s, 1007);
    // The first fragment is valid so far and may be echoed, whole (frame-exact); nothing after it.
    let echoed: Vec<&[u8]> = before.iter().filter(|f| f.opcode < 8).map(|f| &f.payload[..]).collect();
    assert!(echoed.is_empty() || echoed == [b"ok\xE2"], "echoed {before:?}");
}

#[test]
fn valid_code_point_split_around_a_ping_is_echoed() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let mut bytes = masked_frame(false, 0, OP_TEXT, b"a\xE2", random_mask());
    bytes.extend(frame(OP_PING, b"p"));
    bytes.extend(masked_frame(true, 0, OP_CONT, b"\x82\xACb", random_mask()));
    s.write_all(&bytes).unwrap();
    let m = read_message_with_controls(&mut s);
    assert_eq!((m.opcode, m.data.as_slice()), (OP_TEXT, "a€b".as_bytes()));
    assert_eq!(m.controls.len(), 1, "{:?}", m.controls);
    assert_eq!((m.controls[0].opcode, m.controls[0].payload.as_slice()), (OP_PONG, &b"p"[..]));
}

#[test]
fn valid_multibyte_split_across_fragments_is_echoed() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    // "a€b" with the euro sign split in every possible way.
    send_fragmented_and_check(&mut s, OP_TEXT, &[b"a\xE2", b"\x82\xACb"], false);
    send_fragmented_and_check(&mut s, OP_TEXT, &[b"a\xE2\x82", b"\xACb"], false);
    send_fragmented_and_check(&mut s, OP_TEXT, &[b"a\xE2", b"\x82", b"\xAC", b"b"], true);
    // A 4-byte code point, one byte per fragment, with empty fragments mixed in.
    let smile = "😀".as_bytes();
    send_fragmented_and_check(
        &mut s,
        OP_TEXT,
        &[&smile[..1], b"", &smile[1..2], &smile[2..3], b"", &smile[3..]],
        false,
    );
}

#[test]
fn valid_multibyte_split_across_tcp_writes_is_echoed() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let msg = "a€b😀c".as_bytes();
    // Split the single frame in the middle of each multi-byte code point.
    for cut in [2, 3, 6, 7, 8] {
        let f = masked_frame(true, 0, OP_TEXT, msg, random_mask());
        let split = 6 + cut; // 2-byte header + 4-byte mask
        s.write_all(&f[..split]).unwrap();
        // Only to make the two halves arrive in separate reads; nothing is
        // asserted about timing.
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(&f[split..]).unwrap();
        assert_eq!(read_message(&mut s), (OP_TEXT, msg.to_vec()), "split at payload byte {cut}");
    }
}

#[test]
fn boundary_code_points_are_echoed() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    let chars = [
        '\u{0}',
        '\u{7F}',
        '\u{80}',
        '\u{7FF}',
        '\u{800}',
        '\u{D7FF}',
        '\u{E000}',
        '\u{FFFD}',
        '\u{FFFE}',
        '\u{FFFF}',
        '\u{10000}',
        '\u{10FFFF}',
    ];
    let all: String = chars.iter().collect();
    echo(&mut s, OP_TEXT, all.as_bytes());
    for c in chars {
        echo(&mut s, OP_TEXT, c.to_string().as_bytes());
    }
}
