//! Streaming behaviour, tested as a black box over TCP: a whole session
//! (upgrade, text, fragmented binary, ping, a 16-bit-length message, close)
//! delivered one byte per write and all in one write gives the same result;
//! 100 concurrent connections each echo 50 messages correctly; a client that
//! writes ~50 MB and never reads is back-pressured (its writes stop making
//! progress) while another client is still served promptly, and once it reads
//! it receives every byte echoed in order; a 16 MiB message (the default
//! `max_message_size`) is echoed intact, one byte more is refused with 1009.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

// ----- one session, two ways of delivering it -------------------------------

struct Session {
    bytes: Vec<u8>,
    key: String,
    big: Vec<u8>,
    huge: Vec<u8>,
}

fn session(addr: SocketAddr) -> Session {
    let key = new_key();
    let big = utf8_text(300, 77); // 16-bit length
    let huge = binary_data(65536, 78); // 64-bit length
    let mut bytes = Request::upgrade(addr, &key).to_bytes();
    bytes.extend(masked_frame(true, 0, OP_TEXT, "Hello, wörld €".as_bytes(), FIXED_MASK));
    for f in fragments(OP_BINARY, &[b"\x00\x01", b"", b"\x02\xff"]) {
        bytes.extend(f);
    }
    bytes.extend(masked_frame(true, 0, OP_PING, &PING, random_mask()));
    bytes.extend(masked_frame(true, 0, OP_TEXT, &big, random_mask()));
    bytes.extend(masked_frame(true, 0, OP_BINARY, &huge, random_mask()));
    // A text message with a code point cut by a fragment boundary.
    for f in fragments(OP_TEXT, &[b"x\xF0\x9F", b"\x98\x80y"]) {
        bytes.extend(f);
    }
    // Close with the longest reason a control frame allows.
    bytes.extend(close_frame(Some(1000), &[b'r'; 123]));
    Session { bytes, key, big, huge }
}

const PING: [u8; 125] = [0x5a; 125];

fn check_session(s: &mut TcpStream, sess: &Session) {
    let r = read_response_head(s);
    check_upgrade_response(&r, &sess.key);
    assert_eq!(read_message(s), (OP_TEXT, "Hello, wörld €".as_bytes().to_vec()));
    assert_eq!(read_message(s), (OP_BINARY, vec![0, 1, 2, 0xff]));
    let pong = read_frame(s);
    assert_eq!(pong.opcode, OP_PONG, "{pong:?}");
    assert_bytes_eq(&pong.payload, &PING, "pong payload");
    let (op, data) = read_message(s);
    assert_eq!(op, OP_TEXT);
    assert_bytes_eq(&data, &sess.big, "300-byte text echo");
    let (op, data) = read_message(s);
    assert_eq!(op, OP_BINARY);
    assert_bytes_eq(&data, &sess.huge, "65536-byte binary echo");
    assert_eq!(read_message(s), (OP_TEXT, "x😀y".as_bytes().to_vec()));
    let before = expect_close_reply(s, 1000);
    assert!(before.is_empty(), "{before:?}");
}

#[test]
fn whole_session_one_byte_per_write() {
    let addr = start(|_| {});
    let sess = session(addr);
    let bytes = sess.bytes.clone();
    let mut s = connect(addr);
    // Read concurrently: the echoes (possibly one fragment per byte) must not
    // have to fit in socket buffers while we are still writing.
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || check_session(&mut r, &sess));
    let t0 = Instant::now();
    write_bytewise(&mut s, &bytes);
    reader.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    eprintln!("{} single-byte writes handled in {:?}", bytes.len(), t0.elapsed());
}

#[test]
fn whole_session_in_one_write() {
    let addr = start(|_| {});
    let sess = session(addr);
    let mut s = connect(addr);
    let bytes = sess.bytes.clone();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || check_session(&mut r, &sess));
    s.write_all(&bytes).unwrap();
    reader.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
}

// ----- concurrency -----------------------------------------------------------

#[test]
fn hundred_concurrent_connections_fifty_messages_each() {
    let addr = start(|_| {});
    let t0 = Instant::now();
    let barrier = std::sync::Barrier::new(100);
    std::thread::scope(|scope| {
        for c in 0..100u64 {
            let barrier = &barrier;
            std::thread::Builder::new()
                .name(format!("client-{c}"))
                .spawn_scoped(scope, move || {
                    // Reach the barrier even if the handshake fails, so that
                    // the other 99 threads cannot wait forever.
                    let s = std::panic::catch_unwind(|| handshake(addr));
                    barrier.wait();
                    let mut s = s.unwrap_or_else(|e| std::panic::resume_unwind(e));
                    let mut rng = Rng::new(1000 + c);
                    for m in 0..50u64 {
                        let n = rng.below(3000) as usize;
                        let (op, payload) = if (c + m) % 2 == 0 {
                            (OP_TEXT, utf8_text(n, c * 100 + m))
                        } else {
                            (OP_BINARY, binary_data(n, c * 100 + m))
                        };
                        if m % 7 == 3 {
                            let a = n / 3;
                            let b = 2 * n / 3;
                            let parts = [&payload[..a], &payload[a..b], &payload[b..]];
                            s.write_all(&fragments(op, &parts).concat()).unwrap();
                        } else {
                            s.write_all(&masked_frame(true, 0, op, &payload, rng.mask())).unwrap();
                        }
                        let (gop, data) = read_message(&mut s);
                        assert_eq!(gop, op, "client {c} message {m}: opcode");
                        assert_bytes_eq(&data, &payload, &format!("client {c} message {m}"));
                    }
                    s.write_all(&close_frame(Some(1000), b"")).unwrap();
                    expect_close_reply(&mut s, 1000);
                })
                .unwrap();
        }
    });
    eprintln!("100 x 50 echoes in {:?}", t0.elapsed());
}

// ----- backpressure -------------------------------------------------------------

const BP_MSG: usize = 64 * 1024;
const BP_COUNT: usize = 800; // 800 x 64 KiB = 52.4 MB

fn bp_payload(i: usize) -> Vec<u8> {
    let mut v = vec![0u8; BP_MSG];
    let seed = (i as u32).wrapping_mul(2_654_435_761);
    for (j, chunk) in v.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(&(seed ^ j as u32).to_le_bytes());
    }
    v
}

enum WriterEvent {
    Stalled(u64),
    Finished(u64),
}

#[test]
fn backpressure_on_client_that_never_reads() {
    let addr = start(|_| {});
    // Small client-side buffers, so what stops the writer is the server not
    // reading, not our own kernel buffering.
    let a = upgrade_stream(connect_small_buffers(addr, 64 * 1024, 64 * 1024), addr);
    let stall_after = Duration::from_secs(1);
    a.set_write_timeout(Some(stall_after)).unwrap();
    let (ev_tx, ev_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let mut w = a.try_clone().unwrap();
    let writer = std::thread::spawn(move || -> Result<(), String> {
        let mut total = 0u64;
        let mut stalled = false;
        for i in 0..BP_COUNT {
            let f = masked_frame(true, 0, OP_BINARY, &bp_payload(i), random_mask());
            let mut off = 0;
            while off < f.len() {
                match w.write(&f[off..]) {
                    Ok(0) => return Err("write returned 0".into()),
                    Ok(n) => {
                        off += n;
                        total += n as u64;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if stalled {
                            return Err(format!(
                                "writes stalled again after the client started reading, at {total} bytes"
                            ));
                        }
                        // No progress at all for `stall_after`: back-pressured.
                        stalled = true;
                        ev_tx.send(WriterEvent::Stalled(total)).unwrap();
                        resume_rx.recv().unwrap();
                        w.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                    }
                    Err(e) => return Err(format!("write failed after {total} bytes: {e}")),
                }
            }
        }
        let _ = ev_tx.send(WriterEvent::Finished(total));
        Ok(())
    });

    let stalled_at = match ev_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(WriterEvent::Stalled(total)) => total,
        Ok(WriterEvent::Finished(total)) => {
            panic!("client wrote all {total} bytes without ever blocking: the server does not apply backpressure")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("writer neither stalled nor finished within 30 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("writer stopped early: {:?}", writer.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        }
    };
    eprintln!("non-reading client stalled after {stalled_at} bytes");

    // Meanwhile another client is served promptly.
    let t0 = Instant::now();
    let mut b = handshake(addr);
    echo(&mut b, OP_TEXT, b"am I still served?");
    echo_large(&mut b, OP_BINARY, &binary_data(200_000, 5));
    let took = t0.elapsed();
    eprintln!("second client served in {took:?} while the first was stalled");
    assert!(took < Duration::from_secs(2), "second client took {took:?} while the first was stalled");

    // Now the stalled client reads: every message must arrive, in order, intact.
    let mut r = a.try_clone().unwrap();
    r.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let reader = std::thread::spawn(move || {
        for i in 0..BP_COUNT {
            let (op, data) = read_message(&mut r);
            assert_eq!(op, OP_BINARY, "message {i}");
            assert_bytes_eq(&data, &bp_payload(i), &format!("back-pressured message {i}"));
        }
    });
    resume_tx.send(()).unwrap();
    let wres = writer.join().unwrap();
    reader.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    wres.unwrap();
    match ev_rx.try_recv() {
        Ok(WriterEvent::Finished(total)) => assert_eq!(total as usize, BP_COUNT * (BP_MSG + 14)),
        _ => panic!("writer did not report completion"),
    }
    let mut a = a;
    a.write_all(&close_frame(Some(1000), b"")).unwrap();
    expect_close_reply(&mut a, 1000);
}

// ----- the default maximum message size -----------------------------------------

#[test]
fn sixteen_mib_message_is_echoed_intact() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    echo_large(&mut s, OP_BINARY, &binary_data(16 << 20, 16));
    echo_large(&mut s, OP_TEXT, &utf8_text(16 << 20, 17));
    // The same size in 16 fragments.
    let msg = binary_data(16 << 20, 18);
    let parts: Vec<&[u8]> = msg.chunks(1 << 20).collect();
    let (op, data) = write_and_read_message(&mut s, &fragments(OP_BINARY, &parts).concat());
    assert_eq!(op, OP_BINARY);
    assert_bytes_eq(&data, &msg, "16 MiB message in 16 fragments");
}

#[test]
fn one_byte_over_sixteen_mib_is_1009() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    s.write_all(&masked_header(true, OP_BINARY, (16 << 20) + 1, LenEnc::Long, FIXED_MASK)).unwrap();
    expect_close_no_echo(&mut s, 1009);
}
