//! Deterministic in-memory echo driver, for counting instructions per message.
//!
//! Upgrades one `Connection` over a `MemSocket`, echoes one warm-up batch (checked byte for byte),
//! then echoes exactly COUNT more messages of SIZE bytes, PIPELINE frames per read, and checks
//! that every one came back. No sockets, no threads, no clock: run under
//! `valgrind --tool=callgrind`, the instruction count is exactly repeatable, so
//! `(Ir(COUNT) - Ir(0)) / COUNT` is the protocol cost of one echoed message (decode, unmask,
//! validate, re-frame, one `send` per batch, and the in-memory socket's copies) with the warm-up
//! cancelled out. Used by `scripts/instructions.sh` and `.ci/instructions-check`.
//!
//! Usage: `echo_driver [--text | --mixed] [--pipeline K] SIZE COUNT` (SIZE in bytes; `k` suffix =
//! KiB). Payloads are ASCII letters, or with `--mixed` text messages of mixed UTF-8 (Latin with
//! accents, Greek, a 4-byte symbol, €: about one byte in four is non-ASCII, as in the codec bench).

use std::process::ExitCode;
use wsecho::config::Config;
use wsecho::conn::Connection;
use wsecho::frame::{encode_header, OpCode, MAX_HEADER_LEN};
use wsecho::mask::apply_mask;
use wsecho::memsock::MemSocket;
use wsecho::shared::Shared;

const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
User-Agent: wsbench\r\nSec-WebSocket-Version: 13\r\n\r\n";

const USAGE: &str = "usage: echo_driver [--text | --mixed] [--pipeline K] SIZE COUNT";

/// The `--mixed` text, repeated and cut to SIZE bytes on a character boundary (space-padded).
const MIXED: &str = "héllo wörld, κόσμε, 𝄞 €! ";

fn mixed_text(size: usize) -> Vec<u8> {
    let mut s = String::with_capacity(size + 4);
    for ch in MIXED.chars().cycle() {
        if s.len() + ch.len_utf8() > size {
            break;
        }
        s.push(ch);
    }
    while s.len() < size {
        s.push(' ');
    }
    s.into_bytes()
}

/// One frame as a client sends it (masked) and as the server echoes it (unmasked).
fn frames(op: OpCode, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(true, op, Some(mask), payload.len() as u64, &mut h);
    let mut masked = h[..n].to_vec();
    let mut p = payload.to_vec();
    apply_mask(&mut p, mask);
    masked.extend_from_slice(&p);
    let n = encode_header(true, op, None, payload.len() as u64, &mut h);
    let mut plain = h[..n].to_vec();
    plain.extend_from_slice(payload);
    (masked, plain)
}

fn parse_size(s: &str) -> Option<usize> {
    match s.strip_suffix(['k', 'K']) {
        Some(k) => k.parse::<usize>().ok()?.checked_mul(1024),
        None => s.parse().ok(),
    }
}

/// Feeds `input` to the connection and lets it read until the socket is drained.
///
/// Never inlined: `scripts/instructions.sh` collects instructions inside this function only
/// (`--toggle-collect`), which keeps process start-up out of the counts.
#[inline(never)]
fn echo_batch(conn: &mut Connection<MemSocket>, sh: &mut Shared, input: &[u8]) {
    conn.stream_mut().push_input(input);
    while conn.stream_mut().unread() > 0 {
        conn.on_readable(sh);
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let mut text = false;
    let mut mixed = false;
    let mut pipeline = 16usize;
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--text" => text = true,
            "--mixed" => (text, mixed) = (true, true),
            "--binary" => (text, mixed) = (false, false),
            "--pipeline" | "-k" => {
                pipeline = it.next().and_then(|v| v.parse().ok()).filter(|&k| k > 0).ok_or(USAGE)?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => pos.push(a.as_str()),
        }
    }
    let [size, count] = pos[..] else { return Err(USAGE.into()) };
    let size = parse_size(size).ok_or(USAGE)?;
    let count: u64 = count.parse().map_err(|_| USAGE)?;

    let op = if text { OpCode::Text } else { OpCode::Binary };
    let payload: Vec<u8> = if mixed { mixed_text(size) } else { (0..size).map(|i| b'a' + (i % 26) as u8).collect() };
    let (masked, plain) = frames(op, &payload);
    let batch_in = masked.repeat(pipeline);
    let batch_out = plain.repeat(pipeline);

    // The server's defaults (read buffer, write buffer, message limit).
    let cfg = Config::default();
    if batch_in.len() > cfg.read_buffer {
        // Larger batches span reads and are echoed as several fragments: not what this measures.
        return Err(format!("SIZE x PIPELINE must fit in one {} B read", cfg.read_buffer));
    }
    let mut sh = Shared::new(&cfg, None);
    let mut conn = Connection::new(MemSocket::new(), false);
    conn.stream_mut().push_input(REQ);
    conn.on_readable(&mut sh);
    let mut out = Vec::with_capacity(batch_out.len());
    conn.stream_mut().drain_output(&mut out);
    if !out.starts_with(b"HTTP/1.1 101 ") {
        return Err(format!("upgrade refused: {:?}", String::from_utf8_lossy(&out)));
    }

    // Warm-up batch: first use of every buffer, checked byte for byte.
    echo_batch(&mut conn, &mut sh, &batch_in);
    out.clear();
    conn.stream_mut().drain_output(&mut out);
    if out != batch_out {
        return Err(format!("warm-up echo mismatch: got {} bytes, expected {}", out.len(), batch_out.len()));
    }
    let before = sh.metrics.messages_out;

    // The measured messages: full batches, then the remainder.
    let mut bytes = 0usize;
    let full = count / pipeline as u64;
    for _ in 0..full {
        echo_batch(&mut conn, &mut sh, &batch_in);
        bytes += conn.stream_mut().discard_output();
    }
    let rest = (count % pipeline as u64) as usize;
    if rest > 0 {
        echo_batch(&mut conn, &mut sh, &batch_in[..rest * masked.len()]);
        bytes += conn.stream_mut().discard_output();
    }

    let echoed = sh.metrics.messages_out - before;
    let expected = count as usize * plain.len();
    if echoed != count || bytes != expected {
        return Err(format!("echoed {echoed} messages / {bytes} bytes, expected {count} / {expected}"));
    }
    Ok(format!(
        "echoed {count} {} messages of {size} B (pipeline {pipeline}), {bytes} bytes",
        if mixed {
            "mixed text"
        } else if text {
            "text"
        } else {
            "binary"
        }
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo_driver: {e}");
            ExitCode::from(2)
        }
    }
}
