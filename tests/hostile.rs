//! Hostile clients: slowloris, clients that send and never read, fd exhaustion, and random
//! disconnects at every stage. Each test is bounded in time and checks what a user would notice:
//! timeouts enforced, memory bounded, other clients still served, nothing left behind.
//!
//! The memory and fd tests run the real binary as a separate process so that its RSS and its
//! open-file limit are its own.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn scrape(addr: SocketAddr, name: &str) -> u64 {
    let mut s = connect(addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Polls `/metrics` until `name` equals `want` (the server notices disconnects asynchronously).
fn wait_metric(addr: SocketAddr, name: &str, want: u64, limit: Duration) {
    let t0 = Instant::now();
    loop {
        // The scrape itself is an open connection while it is being answered.
        let v = scrape(addr, name);
        if v == want {
            return;
        }
        assert!(t0.elapsed() < limit, "{name} stayed at {v}, want {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn status(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let l = s.lines().find(|l| l.starts_with(key)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let rest = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

/// Starts the real binary, optionally under a lower open-file limit, and waits until it listens.
fn spawn_server(nofile: Option<u32>, args: &[&str]) -> Proc {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_wsecho");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["--listen", &listen]).args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let addr: SocketAddr = listen.parse().unwrap();
    let mut proc = Proc { child, addr };
    let t0 = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Some(st) = proc.child.try_wait().unwrap() {
            panic!("wsecho exited at start: {st:?}");
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    proc
}

#[test]
fn slowloris_connections_are_closed_at_the_handshake_timeout() {
    let addr = start(|c| c.handshake_timeout = Duration::from_secs(1));
    let n = 1000;
    let mut slow: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    let mut normal = handshake(addr);
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    let mut sent = 0;
    // Trickle one byte per connection every 100 ms, and measure a normal client meanwhile.
    while t0.elapsed() < Duration::from_millis(700) {
        for s in slow.iter_mut() {
            let _ = s.write_all(&REQ[sent..sent + 1]);
        }
        sent += 1;
        let t = Instant::now();
        echo(&mut normal, OP_BINARY, b"served meanwhile");
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every slow connection is closed (EOF or reset) close to the 1 s timeout.
    for s in slow.iter_mut() {
        let (took, bytes) = time_until_closed(s, Duration::from_secs(5));
        assert!(bytes.is_empty(), "a timed-out handshake gets no response");
        let since_start = t0.elapsed();
        assert!(since_start < Duration::from_secs(4), "closed only after {since_start:?} ({took:?})");
    }
    println!("normal client's worst echo latency among 1000 slowloris connections: {worst:?}");
    assert!(worst < Duration::from_millis(200), "normal client delayed {worst:?}");
    echo(&mut normal, OP_BINARY, b"still served");
}

#[test]
fn clients_that_never_read_cannot_grow_the_server() {
    let srv = spawn_server(None, &[]);
    let rss0 = srv.status("VmRSS");
    let n = 1000;
    let frame = masked_frame(true, 0, OP_BINARY, &vec![0x5a; 16 << 10], FIXED_MASK);
    let mut hogs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = handshake(srv.addr);
        s.set_nonblocking(true).unwrap();
        // Send until the kernel buffers on both sides are full (the server stopped reading).
        let mut sent = 0usize;
        let t0 = Instant::now();
        'fill: loop {
            let mut off = 0;
            while off < frame.len() {
                match s.write(&frame[off..]) {
                    Ok(k) => off += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if sent > 0 && t0.elapsed() > Duration::from_millis(20) {
                            break 'fill;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            sent += 1;
            assert!(sent < 10_000, "the server keeps reading a client that never reads");
        }
        hogs.push(s);
    }
    let mut normal = handshake(srv.addr);
    let t = Instant::now();
    echo(&mut normal, OP_BINARY, &[1u8; 1000]);
    let latency = t.elapsed();
    let rss = srv.status("VmRSS");
    let hwm = srv.status("VmHWM");
    // Bound: the pooled output buffer (64 KiB) per stalled connection, plus the base.
    let bound = rss0 + n as u64 * (64 << 10) + (16 << 20);
    println!(
        "{n} non-reading clients: server RSS {} -> {} KiB (peak {} KiB, bound {} KiB), normal echo {latency:?}",
        rss0 / 1024,
        rss / 1024,
        hwm / 1024,
        bound / 1024
    );
    assert!(hwm <= bound, "peak RSS {hwm} over the bound {bound}");
    assert!(latency < Duration::from_millis(500), "normal client delayed {latency:?}");
    drop(hogs);
    wait_metric(srv.addr, "wsecho_connections_open", 2, Duration::from_secs(20));
}

#[test]
fn fd_exhaustion_does_not_spin_and_accepting_resumes() {
    // `ulimit -n 256`: the server can hold about 245 connections.
    let srv = spawn_server(Some(256), &[]);
    let mut first: Vec<TcpStream> = (0..240).map(|_| handshake(srv.addr)).collect();
    // 1,000 more connection attempts, each with its request already sent.
    let mut waiting: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = connect(srv.addr);
            s.write_all(REQ).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // let the server hit EMFILE
    let ticks0 = srv.cpu_ticks();
    let t0 = Instant::now();
    // Existing clients are served while the listener is starved.
    for _ in 0..10 {
        for s in first.iter_mut().step_by(12) {
            echo(s, OP_TEXT, b"served during fd exhaustion");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = t0.elapsed();
    let cpu = Duration::from_millis((srv.cpu_ticks() - ticks0) * 10); // 100 ticks per second
    println!("server CPU during {wall:?} of fd exhaustion: {cpu:?}");
    assert!(cpu < wall / 4, "server spins: {cpu:?} CPU in {wall:?}");
    // Free descriptors: every waiting client gets upgraded in turn.
    drop(first);
    let mut upgraded = 0;
    let t0 = Instant::now();
    for batch in waiting.chunks_mut(200) {
        for s in batch.iter_mut() {
            let mut b = [0u8; 12];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"HTTP/1.1 101");
            upgraded += 1;
        }
        // Close this batch so the next one gets descriptors.
        for s in batch.iter_mut() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
    assert_eq!(upgraded, 1000);
}

#[test]
fn random_disconnects_leave_nothing_behind() {
    let addr = start(|_| {});
    let big = masked_frame(true, 0, OP_BINARY, &vec![7u8; 100_000], FIXED_MASK);
    let mut rng = Rng::new(42);
    for i in 0..400 {
        let mut s = connect(addr);
        match i % 6 {
            0 => {
                // Mid-handshake.
                let cut = 1 + rng.below(REQ.len() as u64 - 1) as usize;
                s.write_all(&REQ[..cut]).unwrap();
            }
            1 => {
                // Mid-header.
                s = handshake(addr);
                s.write_all(&big[..1 + rng.below(9) as usize]).unwrap();
            }
            2 => {
                // Mid-payload, with echoes in flight.
                s = handshake(addr);
                s.write_all(&big[..1000 + rng.below(90_000) as usize]).unwrap();
            }
            3 => {
                // Mid-close: close sent, reply never read.
                s = handshake(addr);
                s.write_all(&close_frame(Some(1000), b"")).unwrap();
            }
            4 => {
                // After a protocol error, without answering the server's close.
                s = handshake(addr);
                s.write_all(&unmasked_frame(true, 0, OP_TEXT, b"x")).unwrap();
            }
            _ => {
                // Reset (SO_LINGER 0) mid-message.
                s = handshake(addr);
                s.write_all(&big[..5000]).unwrap();
                let l = libc::linger { l_onoff: 1, l_linger: 0 };
                use std::os::fd::AsRawFd;
                // SAFETY: setsockopt on a socket we own, with a pointer to a live `linger` value
                // and its exact size.
                unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &l as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as u32,
                    )
                };
            }
        }
        drop(s);
    }
    // Only the scrape itself remains open.
    wait_metric(addr, "wsecho_connections_open", 1, Duration::from_secs(10));
    let mut s = handshake(addr);
    echo(&mut s, OP_TEXT, b"and the server is fine");
}
