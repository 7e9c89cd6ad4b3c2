//! Integration tests of the `wsbench` load harness binary.
//!
//! Each test runs the built binary against a server on 127.0.0.1: tiny deliberately wrong
//! thread-per-connection WebSocket servers written here (an echo with one byte flipped, an echo
//! that sends every frame back as two fragments, a server that closes with 1011 after the upgrade,
//! one that refuses the upgrade with 400, a correct echo whose 101 response comes in pieces, two
//! that accept permessage-deflate and then echo a corrupted or an uncompressed message), and the
//! real `wsecho` reactor started in-process (with and without `--deflate`). Every wsbench run is bounded by its own `--duration`
//! and, as a backstop, by a deadline after which the test kills it and fails. Results are read
//! from `--json`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{accept_for, json_field as field, json_num as num, wait_limited, wsbench_json, BenchRun};

/// What a test server does with each connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Upgrade correctly, echo every message with its middle byte flipped.
    FlipByte,
    /// Upgrade correctly, echo every data frame as two fragments (first half with FIN clear,
    /// then the rest): the right bytes, the wrong frames.
    SplitFrames,
    /// Upgrade correctly, then send a close frame with code 1011 and wait for the reply.
    Close1011,
    /// Answer the upgrade request with `400 Bad Request`.
    Refuse400,
    /// A correct frame-for-frame echo, but the 101 response arrives in pieces (separate writes
    /// 50 ms apart), so the client must keep a partial response between reads.
    SlowUpgrade,
    /// Accept permessage-deflate, echo each compressed message as it came (RSV1 on) but with the
    /// middle byte of its compressed bytes flipped.
    DeflateFlip,
    /// Accept permessage-deflate, echo each compressed message's bytes without RSV1 (as if they
    /// were the message).
    DeflateNoRsv1,
}

/// Starts a thread-per-connection test server; returns its address. The accept thread lives
/// until the test process ends; connection threads end with their connection (or a 30 s read
/// timeout).
fn spawn_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = serve(stream, behaviour);
            });
        }
    });
    addr
}

/// Reads one client frame: (fin, opcode, unmasked payload); RSV1 is ignored.
fn read_frame(s: &mut TcpStream) -> std::io::Result<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut mask)?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
}

/// An unmasked server frame with FIN set.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_fin(true, opcode, payload)
}

/// An unmasked server frame.
fn frame_fin(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

fn serve(mut s: TcpStream, behaviour: Behaviour) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    // The client sends nothing before it has the 101, so reading up to the blank line is exact.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
        if head.len() > 8192 {
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let key = text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    if behaviour == Behaviour::Refuse400 {
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let deflate = matches!(behaviour, Behaviour::DeflateFlip | Behaviour::DeflateNoRsv1);
    let ext = if deflate && text.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate") {
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
    } else {
        ""
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{ext}\r\n",
        accept_for(&key)
    );
    if behaviour == Behaviour::SlowUpgrade {
        for piece in resp.as_bytes().chunks(resp.len() / 3 + 1) {
            s.write_all(piece)?;
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        s.write_all(resp.as_bytes())?;
    }
    if behaviour == Behaviour::Close1011 {
        s.write_all(&frame(0x8, &1011u16.to_be_bytes()))?;
    }
    let mut msg = Vec::new();
    let mut msg_op = 0;
    loop {
        let (fin, op, payload) = read_frame(&mut s)?;
        match op {
            0x8 => {
                if behaviour != Behaviour::Close1011 {
                    s.write_all(&frame(0x8, &payload))?;
                }
                // Close TCP first (the server's job after the close handshake).
                return Ok(());
            }
            0x9 => s.write_all(&frame(0xA, &payload))?,
            0xA => {}
            _ if behaviour == Behaviour::Close1011 => {} // closing: data is ignored
            _ if behaviour == Behaviour::SlowUpgrade => s.write_all(&frame_fin(fin, op, &payload))?,
            _ if behaviour == Behaviour::SplitFrames => {
                let (a, b) = payload.split_at(payload.len() / 2);
                let mut out = frame_fin(false, op, a);
                out.extend_from_slice(&frame_fin(fin, 0x0, b));
                s.write_all(&out)?;
            }
            _ => {
                if op != 0 {
                    msg_op = op;
                    msg.clear();
                }
                msg.extend_from_slice(&payload);
                if fin {
                    if !msg.is_empty() && behaviour != Behaviour::DeflateNoRsv1 {
                        let mid = msg.len() / 2;
                        msg[mid] ^= 0x20;
                    }
                    let mut out = frame(msg_op, &msg);
                    if behaviour == Behaviour::DeflateFlip {
                        out[0] |= 0x40;
                    }
                    s.write_all(&out)?;
                }
            }
        }
    }
}

/// Runs wsbench with `args` plus `--json FILE`; kills it and fails the test after `limit`.
fn wsbench(name: &str, args: &[&str], limit: Duration) -> BenchRun {
    wsbench_json("wsbench-test", name, args, limit)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

#[test]
fn flipped_byte_is_reported_as_echo_mismatch() {
    let addr = spawn_server(Behaviour::FlipByte);
    let r = wsbench("flip", &["-q", "-c", "4", "-k", "2", "-s", "100", "-d", "1", &url(addr)], Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 4, "{}", r.json);
    assert!(num(&r.json, "echo_mismatches") > 0, "{}", r.json);
    assert_eq!(num(&r.json, "messages"), 0, "no echo was right: {}", r.json);
    assert!(r.stdout.contains("echo mismatches"), "{}", r.stdout);
    assert!(r.stderr.contains("byte 50 of 100"), "the first mismatch is described: {}", r.stderr);
}

#[test]
fn split_frames_are_reported_as_fidelity_errors() {
    let addr = spawn_server(Behaviour::SplitFrames);
    let base = ["-q", "-c", "4", "-k", "2", "-s", "100", "-d", "1"];
    let r = wsbench("split", &[&base[..], &[&url(addr)]].concat(), Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(num(&r.json, "fidelity_errors") > 0, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "the bytes are right: {}", r.json);
    assert_eq!(num(&r.json, "messages"), 0, "no echo had the right frames: {}", r.json);
    assert_eq!(field(&r.json, "failed"), "true", "{}", r.json);
    assert!(r.stdout.contains("fidelity errors"), "{}", r.stdout);
    assert!(
        r.stderr.contains("frame fidelity error") && r.stderr.contains("binary FIN=0 50 B, sent binary FIN=1 100 B"),
        "the first errors are described: {}",
        r.stderr
    );

    // Sent as three fragments, each echoed as two: caught frame by frame.
    let r = wsbench("split-frag", &[&base[..], &["--fragments", "3", &url(addr)]].concat(), Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(num(&r.json, "fidelity_errors") > 0, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);

    // Soak mode replays its random fragmentation to know each frame sent.
    let r = wsbench(
        "split-soak",
        &["-q", "-m", "soak", "-c", "10", "-d", "1", "--seed", "5", "--disconnect-prob", "0", &url(addr)],
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(num(&r.json, "fidelity_errors") > 0, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);

    // The documented exception: a text frame above 64 KiB may come back cut, so only its bytes
    // are checked; at exactly 64 KiB it may not.
    for (size, errors) in [("70000", false), ("64KiB", true)] {
        let r = wsbench(
            "split-text",
            &["-q", "-c", "2", "-k", "2", "--text", "-s", size, "-d", "0.5", &url(addr)],
            Duration::from_secs(60),
        );
        assert_eq!(r.status.code(), Some(if errors { 1 } else { 0 }), "{size}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(num(&r.json, "fidelity_errors") > 0, errors, "{size}: {}", r.json);
        assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
    }

    // With the check off, only the reassembled bytes count, and they are right.
    let r = wsbench("split-off", &[&base[..], &["--no-fidelity", &url(addr)]].concat(), Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "fidelity_errors"), 0, "{}", r.json);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
    assert!(r.stdout.contains("not checked (--no-fidelity)"), "{}", r.stdout);
}

#[test]
fn server_close_1011_is_counted_by_code() {
    let addr = spawn_server(Behaviour::Close1011);
    let r = wsbench("close1011", &["-q", "-c", "6", "-d", "1", &url(addr)], Duration::from_secs(60));
    assert_eq!(field(&r.json, "closes_by_code"), r#"{"1011": 6}"#, "{}", r.json);
    assert_eq!(num(&r.json, "lost_connections"), 6, "{}", r.json);
    assert_eq!(r.status.code(), Some(1), "lost connections fail the run: {}", r.stdout);
    assert!(r.stdout.contains("(1011: 6)"), "{}", r.stdout);
}

#[test]
fn refused_upgrade_is_counted_by_status() {
    let addr = spawn_server(Behaviour::Refuse400);
    let r = wsbench("refuse", &["-q", "-c", "5", "-d", "1", &url(addr)], Duration::from_secs(60));
    assert_eq!(field(&r.json, "handshake_failures_by_reason"), r#"{"status 400": 5}"#, "{}", r.json);
    assert_eq!(num(&r.json, "upgraded"), 0);
    assert_eq!(r.status.code(), Some(1));
    // The readiness line still comes, saying what is missing.
    assert!(r.stdout.contains("UPGRADE_INCOMPLETE upgraded=0 n=5"), "{}", r.stdout);
}

#[test]
fn upgrade_response_split_over_reads() {
    let addr = spawn_server(Behaviour::SlowUpgrade);
    let r = wsbench("slow-upgrade", &["-q", "-c", "3", "-k", "2", "-d", "0.5", &url(addr)], Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 3, "{}", r.json);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
    assert_eq!(num(&r.json, "clean_closes"), 3, "{}", r.json);
}

#[test]
fn too_many_connections_for_the_fd_limit_exit_2() {
    let r = wsbench("fdlimit", &["-c", "50000000", "ws://127.0.0.1:9/"], Duration::from_secs(30));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("open-file limit") && r.stderr.contains("--processes"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
}

#[test]
fn help_lists_the_options() {
    let r = wsbench("help", &["--help"], Duration::from_secs(30));
    assert!(r.status.success());
    for opt in [
        "--mode",
        "--connections",
        "--pipeline",
        "--rate",
        "--processes",
        "--source-ips",
        "--json",
        "ALL_UPGRADED",
        "--fragments",
        "--no-fidelity",
        "--deflate",
        "ascii | mixed | json",
        "FRAME FIDELITY",
        "64 KiB",
    ] {
        assert!(r.stdout.contains(opt), "--help lacks {opt}");
    }
}

/// Starts the real server in-process on an ephemeral port.
fn start_wsecho() -> SocketAddr {
    common::start(|_| {})
}

#[test]
fn end_to_end_against_wsecho() {
    let addr = start_wsecho();
    // --close-timeout 30: see the elapsed_s check below.
    let r = wsbench(
        "e2e",
        &["-q", "-c", "300", "-k", "2", "-s", "300", "-d", "2", "--close-timeout", "30", &url(addr)],
        Duration::from_secs(90),
    );
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 300, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "lost_connections"), 0, "{}", r.json);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
    assert_eq!(num(&r.json, "clean_closes"), 300, "{}", r.json);
    assert!(r.stdout.contains("ALL_UPGRADED n=300"), "{}", r.stdout);
    // wsecho answers our close and shuts its side at once; wsbench must see that EOF (even when
    // it arrives together with the close frame) rather than sit out the 30 s close timeout.
    let elapsed: f64 = field(&r.json, "elapsed_s").parse().unwrap();
    assert!(elapsed < 15.0, "run took {elapsed} s: the close phase waited for its timeout");
    assert_eq!(num(&r.json, "close_timeouts"), 0, "{}", r.json);
}

/// Frame-exact echo: pipelined 16 KiB binary frames (four of them are more than one 64 KiB read
/// on the server's side, so a frame cut at a read boundary shows), unfragmented and in three
/// fragments, come back frame for frame; text frames above 64 KiB (the documented exception) may
/// come back cut but their bytes must be right.
#[test]
fn frames_come_back_exactly_from_wsecho() {
    let addr = start_wsecho();
    for (name, frags) in [("exact", "1"), ("exact-frag3", "3")] {
        let r = wsbench(
            name,
            &["-q", "-c", "20", "-k", "4", "-s", "16KiB", "--fragments", frags, "-d", "2", &url(addr)],
            Duration::from_secs(90),
        );
        assert_eq!(r.status.code(), Some(0), "--fragments {frags}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        assert_eq!(field(&r.json, "fidelity"), "true", "{}", r.json);
        assert_eq!(num(&r.json, "fragments_per_message"), frags.parse::<u64>().unwrap(), "{}", r.json);
        assert_eq!(num(&r.json, "fidelity_errors"), 0, "{}", r.json);
        assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
        assert_eq!(num(&r.json, "lost_connections"), 0, "{}", r.json);
        assert!(num(&r.json, "messages") > 0, "{}", r.json);
    }
    let r = wsbench(
        "exact-text-big",
        &["-q", "-c", "4", "-k", "2", "--text", "-s", "100KiB", "-d", "1", &url(addr)],
        Duration::from_secs(90),
    );
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "fidelity_errors"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
}

#[test]
fn end_to_end_rate_mode_text_against_wsecho() {
    let addr = start_wsecho();
    let r = wsbench(
        "e2e-rate",
        &["-q", "-m", "rate", "-r", "2000", "-c", "50", "--text", "-s", "64", "-d", "1", &url(addr)],
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
    // Open loop at 2000/s for 1 s: about 2000 messages (some still in flight at the end).
    let m = num(&r.json, "messages");
    assert!((1500..=2100).contains(&m), "{m} messages: {}", r.json);
}

#[test]
fn processes_and_threads_aggregate_against_wsecho() {
    let addr = start_wsecho();
    let r = wsbench(
        "e2e-procs",
        &["-q", "-c", "40", "-p", "2", "-t", "2", "-k", "4", "-d", "1", &url(addr)],
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 40, "{}", r.json);
    assert_eq!(num(&r.json, "clean_closes"), 40, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
    // The latency histogram came over the pipes: one sample per message.
    let count: u64 =
        field(&r.json, "latency_us").split("\"count\": ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert_eq!(count, num(&r.json, "messages"), "{}", r.json);
    // Markers are printed once, by the parent.
    assert_eq!(r.stdout.matches("ALL_UPGRADED n=40").count(), 1, "{}", r.stdout);
    assert_eq!(r.stdout.matches("MEASURE_END").count(), 1, "{}", r.stdout);
}

#[test]
fn sigint_prints_the_partial_result() {
    use std::io::BufRead as _;
    use std::sync::mpsc;
    let addr = start_wsecho();
    let json_path = std::env::temp_dir().join(format!("wsbench-test-{}-sigint.json", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsbench"))
        .args(["-q", "-c", "20", "-d", "120", "--json"])
        .arg(&json_path)
        .arg(url(addr))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wsbench");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait (bounded) for the measured window to start, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("MEASURE_START")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no MEASURE_START within 30 s: {seen:?}");
            }
        }
    }
    // SAFETY: signalling our own child, which has not been waited for, so its pid is still ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = wait_limited(&mut child, Duration::from_secs(30), "wsbench after SIGINT");
    let rest: Vec<String> = rx.iter().collect();
    let json = std::fs::read_to_string(&json_path).unwrap_or_default();
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert_eq!(field(&json, "interrupted"), "true", "{json}");
    assert_eq!(num(&json, "clean_closes"), 20, "{json}");
    assert!(rest.iter().any(|l| l.contains("INTERRUPTED: partial result")), "{rest:?}");
}

#[test]
fn soak_mode_against_wsecho() {
    let addr = start_wsecho();
    // A high disconnect probability so that a 2 s run surely has clean closes and drops.
    let r = wsbench(
        "soak",
        &["-q", "-m", "soak", "-c", "200", "-d", "2", "--disconnect-prob", "0.05", "--seed", "7", &url(addr)],
        Duration::from_secs(90),
    );
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 200, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "lost_connections"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "seed"), 7, "{}", r.json);
    let msgs = num(&r.json, "messages");
    assert!(msgs > 0, "{}", r.json);
    assert!(num(&r.json, "fragments") > msgs, "messages are fragmented: {}", r.json);
    assert!(num(&r.json, "pings") > 0 && num(&r.json, "pongs") > 0, "{}", r.json);
    assert!(num(&r.json, "reconnects") > 0, "{}", r.json);
    assert!(num(&r.json, "clean_reconnects") > 0, "{}", r.json);
    assert!(num(&r.json, "abrupt_drops") > 0, "{}", r.json);
    for row in ["fragments", "pings", "clean reconnects", "abrupt drops", "reconnects", "echo mismatches"] {
        assert!(r.stdout.contains(row), "the table lacks '{row}': {}", r.stdout);
    }
}

#[test]
fn soak_mode_detects_a_flipped_byte() {
    let addr = spawn_server(Behaviour::FlipByte);
    let r = wsbench(
        "soak-flip",
        &["-q", "-m", "soak", "-c", "20", "-d", "1", "--seed", "3", &url(addr)],
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(num(&r.json, "echo_mismatches") > 0, "{}", r.json);
    assert!(r.stderr.contains("echo mismatch on connection #"), "the first mismatches are described: {}", r.stderr);
    assert!(r.stderr.contains("expected 0x"), "{}", r.stderr);
}

#[test]
fn soak_mode_counts_server_closes_as_lost() {
    let addr = spawn_server(Behaviour::Close1011);
    let r = wsbench("soak-1011", &["-q", "-m", "soak", "-c", "2", "-d", "0.5", &url(addr)], Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(num(&r.json, "lost_connections") >= 2, "{}", r.json);
    assert!(field(&r.json, "lost_by_reason").contains("server close 1011"), "{}", r.json);
    // Lost connections are reconnected, so the load stays at --connections.
    assert!(num(&r.json, "reconnects") > 0, "{}", r.json);
}

/// `--deflate` against the real server: pass-through (the echo is the compressed bytes sent,
/// frame for frame) and `--deflate-recompress` (other bytes, the same frames): every echo
/// inflates to the message sent, with 1, 16 and several frames per message and in rate mode.
#[test]
fn deflate_against_wsecho_passthrough_and_recompress() {
    for recompress in [false, true] {
        let addr = common::start(|c| {
            c.deflate.enabled = true;
            c.deflate_recompress = recompress;
        });
        let json = ["--deflate", "--text-kind", "json", "-s", "1KiB"];
        let runs: [&[&str]; 4] = [
            &["-c", "20", "-k", "1"],
            &["-c", "20", "-k", "16"],
            &["-c", "10", "-k", "4", "--fragments", "3", "-s", "16KiB"],
            &["-m", "rate", "-r", "1000", "-c", "10"],
        ];
        let u = url(addr);
        for extra in runs {
            let args = [&["-q", "-d", "1"][..], &json[..], extra, &[u.as_str()][..]].concat();
            let r = wsbench("deflate", &args, Duration::from_secs(60));
            let what = format!("recompress {recompress} {extra:?}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
            assert_eq!(r.status.code(), Some(0), "{what}");
            assert_eq!(field(&r.json, "deflate"), "true", "{what}");
            for k in ["echo_mismatches", "fidelity_errors", "lost_connections", "handshake_failures"] {
                assert_eq!(num(&r.json, k), 0, "{k}: {what}");
            }
            let (msgs, z) = (num(&r.json, "messages"), num(&r.json, "deflate_messages"));
            assert!(msgs > 0 && z == msgs, "{what}");
            // JSON-like text compresses (about 3:1 at 1 KiB); pass-through echoes the bytes sent.
            let (sent, echoed) = (num(&r.json, "deflate_sent_bytes"), num(&r.json, "deflate_echo_bytes"));
            assert!(sent * 2 < num(&r.json, "bytes"), "{what}");
            let verbatim = num(&r.json, "deflate_verbatim");
            if recompress {
                assert!(verbatim < msgs && echoed != sent, "{what}");
            } else {
                assert_eq!((verbatim, echoed), (msgs, sent), "{what}");
            }
            assert!(r.stdout.contains("% verbatim"), "{what}");
        }
    }
}

/// `--deflate` against a server without it: every upgrade fails with a clear reason, said at
/// once on stderr, and the run fails.
#[test]
fn deflate_not_accepted_is_a_clear_error() {
    let addr = start_wsecho();
    let r = wsbench("deflate-refused", &["-q", "--deflate", "-c", "5", "-d", "1", &url(addr)], Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "handshake_failures"), 5, "{}", r.json);
    assert!(field(&r.json, "handshake_failures_by_reason").contains("permessage-deflate not accepted"), "{}", r.json);
    assert!(r.stdout.contains("permessage-deflate not accepted"), "{}", r.stdout);
    assert_eq!(r.stderr.matches("--deflate: permessage-deflate not accepted").count(), 1, "{}", r.stderr);
}

/// A server that accepts permessage-deflate and then corrupts the compressed bytes, or echoes
/// them without RSV1: echo mismatches, described.
#[test]
fn deflate_echo_errors_are_mismatches() {
    for (b, what) in [(Behaviour::DeflateFlip, ""), (Behaviour::DeflateNoRsv1, "RSV1 clear")] {
        let addr = spawn_server(b);
        let r = wsbench(
            "deflate-bad",
            &["-q", "--deflate", "--text-kind", "json", "-c", "4", "-k", "2", "-s", "1KiB", "-d", "1", &url(addr)],
            Duration::from_secs(60),
        );
        assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        assert_eq!(num(&r.json, "upgraded"), 4, "{}", r.json);
        assert!(num(&r.json, "echo_mismatches") > 0, "{}", r.json);
        assert_eq!(num(&r.json, "messages"), 0, "{}", r.json);
        assert!(r.stderr.contains("echo mismatch") && r.stderr.contains(what), "{}", r.stderr);
    }
}
