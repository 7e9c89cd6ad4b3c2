//! Messages and echoes: reassembling a data message from server frames (with the control frames
//! seen around it), byte comparisons with a readable diff, and the echo round trips the tests use
//! (`echo`, `echo_large`, `write_and_read_message`, `write_bytewise`).
//!
//! Owns what happens between an open connection and its close; closing is `close`, the upgrade is
//! `upgrade`. Imports `protocol`, `rng`, `encode` and `decode`.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::decode::{hex_preview, read_frame, Frame};
use super::encode::masked_frame;
use super::protocol::{OP_CLOSE, OP_CONT, OP_PING, OP_PONG};
use super::rng::random_mask;

/// A reassembled data message plus the control frames seen while reading it.
#[derive(Debug)]
pub struct Message {
    pub opcode: u8,
    pub data: Vec<u8>,
    /// Ping/pong frames received before or between the message's fragments.
    pub controls: Vec<Frame>,
    pub fragments: usize,
}

/// Reads frames until one complete data message has been reassembled.
/// Control frames (ping/pong) are collected; a close frame panics.
pub fn read_message_with_controls(s: &mut impl Read) -> Message {
    let mut controls = Vec::new();
    let mut opcode: Option<u8> = None;
    let mut data = Vec::new();
    let mut fragments = 0usize;
    loop {
        let f = read_frame(s);
        match f.opcode {
            OP_CLOSE => panic!(
                "expected a data message but the server sent a close frame (code {:?}): {f:?}; \
                 {} bytes of the message received before it",
                f.close_code(),
                data.len()
            ),
            OP_PING | OP_PONG => {
                controls.push(f);
                assert!(controls.len() < 1000, "server sends endless control frames");
            }
            OP_CONT => {
                assert!(opcode.is_some(), "server sent a continuation frame with no message started: {f:?}");
                fragments += 1;
                data.extend_from_slice(&f.payload);
                if f.fin {
                    break;
                }
            }
            _ => {
                assert!(opcode.is_none(), "server started a new data frame {f:?} inside a fragmented message");
                opcode = Some(f.opcode);
                fragments += 1;
                data.extend_from_slice(&f.payload);
                if f.fin {
                    break;
                }
            }
        }
    }
    Message { opcode: opcode.unwrap(), data, controls, fragments }
}

/// Reads one complete data message (reassembling fragments) and returns its
/// opcode and content. Panics on control frames, close, timeout or EOF.
pub fn read_message(s: &mut impl Read) -> (u8, Vec<u8>) {
    let m = read_message_with_controls(s);
    assert!(m.controls.is_empty(), "unexpected control frames around an echoed message: {:?}", m.controls);
    (m.opcode, m.data)
}

/// Byte comparison that prints a compact diff for large payloads.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let from = first.saturating_sub(8);
    panic!(
        "{what}: got {} bytes, expected {}; first difference at offset {first}: got {} expected {}",
        got.len(),
        want.len(),
        hex_preview(&got[from.min(got.len())..], 32),
        hex_preview(&want[from.min(want.len())..], 32),
    );
}

/// Sends `payload` as one masked frame and checks the echoed message.
#[track_caller]
pub fn echo(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    s.write_all(&masked_frame(true, 0, opcode, payload, random_mask())).expect("write frame");
    let (op, data) = read_message(s);
    assert_eq!(op, opcode, "echo opcode (payload {})", hex_preview(payload, 16));
    assert_bytes_eq(&data, payload, "echoed message");
}

/// Writes `bytes` on the calling thread while another thread reads one
/// message, so large messages cannot deadlock on TCP buffers. Returns the
/// message read.
pub fn write_and_read_message(s: &mut TcpStream, bytes: &[u8]) -> (u8, Vec<u8>) {
    let mut reader = s.try_clone().expect("clone stream");
    let h = std::thread::spawn(move || read_message(&mut reader));
    let w = s.write_all(bytes);
    let res = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    w.expect("write large frame");
    res
}

/// Like `echo`, but safe for large payloads (separate reader thread).
#[track_caller]
pub fn echo_large(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let f = masked_frame(true, 0, opcode, payload, random_mask());
    let (op, data) = write_and_read_message(s, &f);
    assert_eq!(op, opcode, "echo opcode for a {}-byte message", payload.len());
    assert_bytes_eq(&data, payload, "echoed large message");
}

/// Writes each byte with its own `write` call (TCP_NODELAY is on).
pub fn write_bytewise(s: &mut TcpStream, bytes: &[u8]) {
    for b in bytes {
        s.write_all(std::slice::from_ref(b)).expect("byte write");
        s.flush().unwrap();
    }
}
