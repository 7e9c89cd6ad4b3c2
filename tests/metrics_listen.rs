//! `--metrics-listen ADDR`: each process's `/metrics` and `/healthz` on a port of its own, with a
//! `process` label, so that N `--reuse-port` processes can all be scraped and summed.
//!
//! Counters on that port are what the reactors last published (every 100 ms), so the tests scrape
//! until the expected value shows, within a deadline, instead of sleeping.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wsecho::server::Server;

/// The value of the first sample whose name (and leading labels) is `name`.
fn sample(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{' | b',')))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Scrapes `addr` until `name` reads `want` (5 s deadline); returns the last scrape.
fn scrape_until(addr: SocketAddr, name: &str, want: u64) -> String {
    let t0 = Instant::now();
    loop {
        let text = http_get(addr, "/metrics");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        if sample(&text, name) == want {
            return text;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{name} never reached {want}:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_port_counts_the_open_connections_with_a_process_label() {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c.threads = 2;
    let server = Server::bind(&c).unwrap();
    let (addr, maddr) = (server.local_addr(), server.metrics_addr().unwrap());
    assert_ne!(addr.port(), maddr.port());
    let control = server.control();
    let runner = std::thread::spawn(move || server.run());
    let mut clients: Vec<TcpStream> = (0..3).map(|_| handshake(addr)).collect();
    echo(&mut clients[0], OP_TEXT, b"counted");
    let text = scrape_until(maddr, "wsecho_connections_open", 3);
    assert!(text.contains("Content-Type: text/plain; version=0.0.4"), "{text}");
    assert_eq!(sample(&text, "wsecho_upgrades_total"), 3);
    // Every sample carries process="<metrics port>" (the default label).
    let label = format!("process=\"{}\"", maddr.port());
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.lines().filter(|l| !l.starts_with('#')).all(|l| l.contains(&label)), "{text}");
    assert!(text.contains(&format!("wsecho_connections_open{{{label}}} 3\n")), "{text}");
    // The main port's scrape carries the same label.
    assert!(http_get(addr, "/metrics").contains(&format!("wsecho_upgrades_total{{{label}}} 3\n")));
    let health = http_get(maddr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"), "{health}");
    assert!(http_get(maddr, "/nope").starts_with("HTTP/1.1 404 "));
    let mut post = connect(maddr);
    post.write_all(b"POST /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut out = String::new();
    post.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405 "), "{out}");
    // The metrics port never upgrades.
    assert!(http_get(maddr, "/").starts_with("HTTP/1.1 404 "));

    // Draining: /healthz says 503 while the 1001s are out; the metrics are still served.
    control.shutdown();
    assert!(http_get(maddr, "/healthz").starts_with("HTTP/1.1 503 "));
    scrape_until(maddr, "wsecho_closes_total{code=\"1001\"", 3);
    for s in clients.iter_mut() {
        expect_close(s, 1001);
    }
    drop(clients);
    let m = runner.join().unwrap().unwrap();
    assert_eq!((m.open, m.closes[1]), (0, 3));
    // The endpoint stopped with the server.
    assert!(TcpStream::connect(maddr).is_err());
}

#[test]
fn metrics_port_with_one_reactor_and_an_explicit_label() {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c.process_label = Some("edge-3".into());
    let server = Server::bind(&c).unwrap();
    let (addr, maddr) = (server.local_addr(), server.metrics_addr().unwrap());
    std::thread::spawn(move || server.run());
    let mut s = handshake(addr);
    echo(&mut s, OP_BINARY, &[7; 20]);
    let text = scrape_until(maddr, "wsecho_messages_sent_total", 1);
    assert!(text.contains("wsecho_connections_open{process=\"edge-3\"} 1\n"), "{text}");
}

// ----- the real binary: N --reuse-port processes, each scraped on its own port -----

fn spawn(port: u16, mport: u16, notify: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wsecho"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--reuse-port"])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .env("NOTIFY_SOCKET", notify)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn reuse_port_processes_add_up_over_their_metrics_ports() {
    let notify = NotifySocket::bind("mlisten");
    let port = free_port();
    let mports = [free_port(), free_port(), free_port()];
    let mut kids: Vec<Child> = mports.iter().map(|&m| spawn(port, m, &notify.path)).collect();
    for _ in &kids {
        assert_eq!(notify.recv("READY=1"), "READY=1");
    }
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let n = 60;
    let mut clients: Vec<TcpStream> = (0..n).map(|_| handshake(addr)).collect();
    // Each process's own count, labelled with its metrics port; together they are all n.
    let t0 = Instant::now();
    let counts = loop {
        let counts: Vec<u64> = mports
            .iter()
            .map(|&m| {
                let text = http_get(format!("127.0.0.1:{m}").parse().unwrap(), "/metrics");
                let want = format!("wsecho_upgrades_total{{process=\"{m}\"}} ");
                assert!(text.contains(&want), "{text}");
                sample(&text, "wsecho_connections_open")
            })
            .collect();
        if counts.iter().sum::<u64>() == n as u64 || t0.elapsed() > Duration::from_secs(5) {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(counts.iter().sum::<u64>(), n as u64, "per process: {counts:?}");
    for k in &kids {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(k.id() as i32, libc::SIGTERM) };
    }
    for s in clients.iter_mut() {
        expect_close(s, 1001);
    }
    drop(clients);
    for k in kids.iter_mut() {
        assert_eq!(wait_limited(k, Duration::from_secs(10), "wsecho").code(), Some(0));
    }
}

#[test]
fn bad_metrics_addresses_are_start_up_errors() {
    let bin = env!("CARGO_BIN_EXE_wsecho");
    let out = Command::new(bin).args(["--metrics-listen", "localhost:9100"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("wsecho: invalid --metrics-listen address 'localhost:9100'"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = Command::new(bin).args(["--metrics-listen", "127.0.0.1:0", "--no-metrics"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A busy metrics address: like a busy --listen, status 1 and one line naming it.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = busy.local_addr().unwrap().to_string();
    let out = Command::new(bin).args(["--listen", "127.0.0.1:0", "--metrics-listen", &b]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {b} (--metrics-listen)")) && err.contains("in use"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
