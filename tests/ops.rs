//! Operations behaviour: graceful shutdown, systemd notification and socket activation, the
//! connection limit, idle timeout and server pings, metrics scrapes, start-up errors.
//!
//! In-process tests use `wsecho::server::Server` (the same code the binary runs); the systemd
//! tests spawn the real binary with `NOTIFY_SOCKET` / `LISTEN_FDS` as systemd would.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wsecho::server::Server;

fn cfg() -> Config {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

fn metric(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).unwrap_or_else(|| {
        panic!("no metric {name} in:\n{text}");
    });
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn sigterm_style_shutdown_sends_1001_to_every_client() {
    let mut c = cfg();
    c.threads = 2;
    let server = Server::bind(&c).unwrap();
    let addr = server.local_addr();
    let control = server.control();
    let runner = std::thread::spawn(move || server.run());
    let n = 1000;
    let mut clients: Vec<TcpStream> = (0..n).map(|_| handshake(addr)).collect();
    // Every client is upgraded (handshake() checked the 101); one echo proves the loop runs.
    echo(&mut clients[0], OP_TEXT, b"before shutdown");
    let t0 = Instant::now();
    control.shutdown();
    for s in clients.iter_mut() {
        // Reads the 1001, answers it, and sees the server close TCP.
        expect_close(s, 1001);
    }
    let m = runner.join().unwrap().unwrap();
    println!("{n} clients closed with 1001 in {:?}", t0.elapsed());
    assert_eq!(m.closes[1], n as u64, "close frames with 1001 counted");
    assert_eq!(m.open, 0);
    // The listener is gone: new connections are refused.
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn shutdown_sends_at_most_a_window_of_closes_ahead() {
    use wsecho::reactor::SHUTDOWN_WINDOW;
    let mut c = cfg();
    c.close_timeout = Duration::from_secs(60);
    c.shutdown_timeout = Duration::from_secs(60);
    let server = Server::bind(&c).unwrap();
    let addr = server.local_addr();
    let control = server.control();
    let runner = std::thread::spawn(move || server.run());
    let n = SHUTDOWN_WINDOW + 100;
    // Upgraded one after another: accepted (and closed) in this order.
    let mut clients: Vec<TcpStream> = (0..n).map(|_| handshake(addr)).collect();
    control.shutdown();
    // The first window gets its 1001 at once; nobody has answered yet.
    for s in &mut clients[..SHUTDOWN_WINDOW] {
        let f = read_frame(s);
        assert_eq!((f.opcode, f.close_code()), (OP_CLOSE, Some(1001)));
    }
    // The rest get nothing until earlier close handshakes finish (close timeout: 60 s).
    let last = clients.last_mut().unwrap();
    last.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(last.read(&mut b).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    last.set_nonblocking(false).unwrap();
    // Each answers and closes its end (the server lingers for that FIN): the next ones go out.
    for mut s in clients.drain(..SHUTDOWN_WINDOW) {
        s.write_all(&close_frame(Some(1001), b"")).unwrap();
        assert_tcp_closed(&mut s);
    }
    for s in clients.iter_mut() {
        expect_close(s, 1001);
    }
    drop(clients);
    let m = runner.join().unwrap().unwrap();
    assert_eq!((m.closes[1], m.open), (n as u64, 0));
}

#[test]
fn shutdown_gives_up_after_the_timeout() {
    let mut c = cfg();
    c.shutdown_timeout = Duration::from_millis(300);
    c.close_timeout = Duration::from_secs(60);
    let server = Server::bind(&c).unwrap();
    let addr = server.local_addr();
    let control = server.control();
    let runner = std::thread::spawn(move || server.run());
    let _silent = handshake(addr); // never answers the close
    let t0 = Instant::now();
    control.shutdown();
    runner.join().unwrap().unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn max_connections_answers_503_and_spares_existing() {
    let addr = start(|c| c.max_connections = 3);
    let mut open: Vec<TcpStream> = (0..3).map(|_| handshake(addr)).collect();
    let mut extra = connect(addr);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        extra,
        "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    extra.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
    for s in open.iter_mut() {
        echo(s, OP_BINARY, b"still served");
    }
    // A slot frees up: upgrades work again.
    drop(open.pop());
    let t0 = Instant::now();
    loop {
        let mut s = connect(addr);
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut b = [0u8; 12];
        s.read_exact(&mut b).unwrap();
        if &b == b"HTTP/1.1 101" {
            break;
        }
        // The server may not have seen the close yet; it is a real race, bounded here.
        assert!(t0.elapsed() < Duration::from_secs(5), "no upgrade after a slot was freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = http_get(addr, "/metrics");
    assert!(text.contains("wsecho_upgrade_failures_total{reason=\"overloaded\"} "), "{text}");
}

#[test]
fn idle_connections_are_closed_with_1001_and_active_ones_are_not() {
    let addr = start(|c| c.idle_timeout = Some(Duration::from_millis(400)));
    let mut silent = handshake(addr);
    let mut active = handshake(addr);
    let t0 = Instant::now();
    // The active client talks every 100 ms for 1.2 s.
    while t0.elapsed() < Duration::from_millis(1200) {
        echo(&mut active, OP_TEXT, b"still here");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The silent one was closed at about 400 ms (the timer may fire up to 25% late).
    expect_close(&mut silent, 1001);
    echo(&mut active, OP_TEXT, b"and still served");
}

#[test]
fn server_pings_quiet_connections() {
    let addr = start(|c| c.ping_interval = Some(Duration::from_millis(200)));
    let mut s = handshake(addr);
    let t0 = Instant::now();
    let f = read_frame(&mut s);
    let took = t0.elapsed();
    assert_eq!(f.opcode, OP_PING, "{f:?}");
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(2), "ping after {took:?}");
    // Answering keeps the connection healthy.
    s.write_all(&frame(OP_PONG, &f.payload)).unwrap();
    echo(&mut s, OP_BINARY, b"after the ping");
}

#[test]
fn metrics_scrape_counts_traffic_and_healthz_answers() {
    let addr = start(|_| {});
    let mut s = handshake(addr);
    for i in 0..10u8 {
        echo(&mut s, OP_BINARY, &[i; 100]);
    }
    let text = http_get(addr, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Type: text/plain; version=0.0.4"), "{text}");
    assert_eq!(metric(&text, "wsecho_messages_received_total"), 10);
    assert_eq!(metric(&text, "wsecho_messages_sent_total"), 10);
    assert_eq!(metric(&text, "wsecho_upgrades_total"), 1);
    assert_eq!(metric(&text, "wsecho_connections_open"), 2); // the client and this scrape
    let health = http_get(addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"), "{health}");
    // Without metrics, the same request is just not an upgrade.
    let addr = start(|c| c.metrics_path = None);
    assert!(http_get(addr, "/metrics").starts_with("HTTP/1.1 400 "));
}

// ----- the real binary -----

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsecho"))
}

#[test]
fn notifies_ready_then_stopping_and_exits_0_on_sigterm() {
    let notify = NotifySocket::bind("notify");
    let port = free_port();
    let mut child = bin()
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("NOTIFY_SOCKET", &notify.path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(notify.recv("READY=1"), "READY=1");
    // Ready means listening: a client upgrades right away.
    let mut s = handshake(format!("127.0.0.1:{port}").parse().unwrap());
    echo(&mut s, OP_TEXT, b"hi");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(notify.recv("STOPPING=1"), "STOPPING=1");
    expect_close(&mut s, 1001);
    let st = wait_limited(&mut child, Duration::from_secs(10), "wsecho");
    assert_eq!(st.code(), Some(0), "{st:?}");
}

#[test]
fn socket_activation_uses_the_inherited_listener() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // LISTEN_PID must be the server's pid: `exec` keeps the shell's pid ($$). --listen names an
    // address this machine does not have, so the server can only work through fd 3.
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" --listen 192.0.2.1:9",
        env!("CARGO_BIN_EXE_wsecho"),
    ])
    .stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let mut s = handshake(addr);
    echo(&mut s, OP_BINARY, b"through fd 3");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    expect_close(&mut s, 1001);
    assert_eq!(wait_limited(&mut child, Duration::from_secs(10), "wsecho").code(), Some(0));
}

#[test]
fn startup_errors_are_one_clear_line_and_non_zero() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = bin().args(["--listen", &busy.local_addr().unwrap().to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on") && err.contains("in use"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = bin().args(["--write-buffer", "lots"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.starts_with("wsecho: invalid size 'lots'"), "{err}");
}
