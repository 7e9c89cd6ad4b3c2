//! `wss://` end to end with a rustls client (a TLS stack the server's record layer does not share:
//! the server only uses rustls for its handshake): echo over TLS 1.3 and 1.2 at every size class,
//! frame for frame; session resumption; `/metrics` and `/healthz` over TLS; the close handshake
//! ending in `close_notify`; a TLS 1.3 key update in both directions; a flood of handshakes
//! bounded per reactor turn while an established connection keeps echoing; and bad input — plain
//! HTTP, random bytes, a truncated ClientHello that stalls, a forged record after the upgrade —
//! each closing only its own connection while a bystander goes on echoing.
//!
//! Certificates are generated at run time (rcgen); no key is committed.

mod common;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A throwaway self-signed certificate for localhost / 127.0.0.1, written to a fresh directory.
struct Cert {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new(tag: &str) -> Cert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = std::env::temp_dir().join(format!("wsecho-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Cert { dir, der: cert.der().clone() }
    }

    fn files(&self) -> wsecho::tls::config::TlsFiles {
        wsecho::tls::config::TlsFiles { cert: self.dir.join("cert.pem"), key: self.dir.join("key.pem") }
    }

    /// A client configuration trusting this certificate, limited to `version` (None: both).
    fn client(&self, version: Option<&'static rustls::SupportedProtocolVersion>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let versions: Vec<_> = match version {
            Some(v) => vec![v],
            None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut c = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_tls(cert: &Cert, modify: impl FnOnce(&mut Config)) -> SocketAddr {
    let files = cert.files();
    start(move |c| {
        c.tls = Some(files);
        modify(c);
    })
}

/// A TLS connection with the handshake done.
fn tls_connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    tls_over(connect(addr), cfg)
}

/// TLS over an already connected socket.
fn tls_over(sock: TcpStream, cfg: &Arc<ClientConfig>) -> Tls {
    let conn = ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// Reads an HTTP response head.
fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response head");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A TLS connection upgraded to WebSocket.
fn wss(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    upgrade_tls(tls_connect(addr, cfg), addr)
}

fn upgrade_tls(mut s: Tls, addr: SocketAddr) -> Tls {
    let key = new_key();
    s.write_all(&Request::upgrade(addr, &key).to_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(&accept_for(&key)), "{head}");
    s
}

/// Sends one masked frame and checks that exactly the same frame (unmasked) comes back.
fn echo_frame(s: &mut Tls, fin: bool, op: u8, payload: &[u8]) {
    s.write_all(&masked_frame(fin, 0, op, payload, random_mask())).unwrap();
    let f = read_frame(s);
    assert_eq!((f.fin, f.opcode, f.payload.len()), (fin, op, payload.len()), "echoed frame shape");
    assert_bytes_eq(&f.payload, payload, "echoed payload");
}

fn scrape(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str) -> String {
    let mut s = tls_connect(addr, cfg);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    // The server closes after the answer, with close_notify: a clean end for rustls.
    s.read_to_string(&mut text).expect("a response ended by close_notify");
    text
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric line starting with {line_start}\n{text}"))
}

#[test]
fn echoes_frame_for_frame_over_tls13_and_tls12() {
    let cert = Cert::new("echo");
    let addr = start_tls(&cert, |_| {});
    for (v, want) in
        [(&rustls::version::TLS13, ProtocolVersion::TLSv1_3), (&rustls::version::TLS12, ProtocolVersion::TLSv1_2)]
    {
        let mut s = wss(addr, &cert.client(Some(v)));
        assert_eq!(s.conn.protocol_version(), Some(want));
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Every length encoding, and sizes around a TLS record (16 KiB) and a read (64 KiB).
        for len in [0, 1, 125, 126, 16_383, 16_384, 16_385, 65_535, 65_536, 70_000, 1 << 20] {
            let p = binary_data(len, len as u64);
            echo_frame(&mut s, true, OP_BINARY, &p);
            if len <= 65_536 {
                echo_frame(&mut s, true, OP_TEXT, &utf8_text(len, len as u64));
            }
        }
        // Fragments keep their boundaries; a ping between them is answered in place.
        echo_frame(&mut s, false, OP_TEXT, b"hel");
        s.write_all(&masked_frame(true, 0, OP_PING, b"p", random_mask())).unwrap();
        let pong = read_frame(&mut s);
        assert_eq!((pong.opcode, pong.payload.as_slice()), (OP_PONG, &b"p"[..]));
        echo_frame(&mut s, true, OP_CONT, b"lo");
        // 64 frames pipelined in one write come back as 64 frames.
        let mut w = Vec::new();
        let msgs: Vec<Vec<u8>> = (0..64).map(|i| binary_data(i * 517, i as u64)).collect();
        for m in &msgs {
            w.extend(masked_frame(true, 0, OP_BINARY, m, random_mask()));
        }
        s.write_all(&w).unwrap();
        for m in &msgs {
            let f = read_frame(&mut s);
            assert_eq!((f.fin, f.opcode), (true, OP_BINARY));
            assert_bytes_eq(&f.payload, m, "pipelined echo");
        }
        // Invalid UTF-8 still fails with 1007, over TLS as over TCP.
        s.write_all(&masked_frame(true, 0, OP_TEXT, &[0xff, 0xfe], random_mask())).unwrap();
        let f = read_frame(&mut s);
        assert_eq!(f.close_code(), Some(1007));
    }
}

#[test]
fn a_client_without_http11_in_alpn_gets_no_application_protocol() {
    let cert = Cert::new("alpn");
    let addr = start_tls(&cert, |_| {});
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut cfg = (*cert.client(Some(v))).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let sock = connect(addr);
        let conn = ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = StreamOwned::new(conn, sock);
        let mut err = None;
        while s.conn.is_handshaking() {
            if let Err(e) = s.conn.complete_io(&mut s.sock) {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the handshake must fail");
        // The alert itself, not just an end of stream (with TLS 1.3 it follows the ServerHello).
        assert!(err.to_string().contains("NoApplicationProtocol"), "{v:?}: {err}");
    }
}

#[test]
fn sessions_resume_in_both_versions() {
    let cert = Cert::new("resume");
    let addr = start_tls(&cert, |_| {});
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = cert.client(Some(v));
        let mut first = wss(addr, &cfg);
        echo_frame(&mut first, true, OP_BINARY, b"first");
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
        let mut second = wss(addr, &cfg);
        assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed), "{v:?}: not resumed");
        echo_frame(&mut second, true, OP_BINARY, b"second");
    }
    let m = scrape(addr, &cert.client(None), "/metrics");
    assert_eq!(metric(&m, "wsecho_tls_handshakes_total{version=\"1.3\",resumed=\"true\"}"), 1);
    assert_eq!(metric(&m, "wsecho_tls_handshakes_total{version=\"1.2\",resumed=\"true\"}"), 1);
    // Two full 1.3 handshakes: the first connection and this scrape.
    assert_eq!(metric(&m, "wsecho_tls_handshakes_total{version=\"1.3\",resumed=\"false\"}"), 2);
}

#[test]
fn sessions_resume_across_a_certificate_reload() {
    let cert = Cert::new("reload-resume");
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.tls = Some(cert.files());
    let server = wsecho::server::Server::bind(&c).unwrap();
    let (addr, source) = (server.local_addr(), server.tls().unwrap());
    std::thread::spawn(move || server.run());
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = cert.client(Some(v));
        let mut first = wss(addr, &cfg);
        echo_frame(&mut first, true, OP_BINARY, b"before");
        source.reload().unwrap(); // what SIGHUP does
        let mut second = wss(addr, &cfg);
        assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed), "{v:?}");
        echo_frame(&mut second, true, OP_BINARY, b"after");
        echo_frame(&mut first, true, OP_BINARY, b"old one too");
    }
}

#[test]
fn metrics_and_healthz_are_served_over_tls() {
    let cert = Cert::new("metrics");
    let addr = start_tls(&cert, |_| {});
    let cfg = cert.client(None);
    let h = scrape(addr, &cfg, "/healthz");
    assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
    let m = scrape(addr, &cfg, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200 "), "{m}");
    assert!(m.contains("wsecho_tls_failures_total{reason=\"handshake\"} 0"), "{m}");
}

#[test]
fn the_close_handshake_ends_with_close_notify() {
    let cert = Cert::new("close");
    let addr = start_tls(&cert, |_| {});
    let mut s = wss(addr, &cert.client(None));
    echo_frame(&mut s, true, OP_TEXT, b"bye soon");
    s.write_all(&close_frame(Some(1000), b"done")).unwrap();
    let f = read_frame(&mut s);
    assert_eq!(f.close_code(), Some(1000));
    // rustls reports Ok(0) only for a close_notify; a bare TCP FIN is an UnexpectedEof error.
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest).expect("the stream ends with close_notify");
    assert_eq!(n, 0, "bytes after the close frame: {rest:?}");
}

#[test]
fn graceful_shutdown_sends_1001_then_close_notify_on_every_reactor() {
    let cert = Cert::new("shutdown");
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.threads = 2;
    c.tls = Some(cert.files());
    let server = wsecho::server::Server::bind(&c).unwrap();
    let addr = server.local_addr();
    let control = server.control();
    let runner = std::thread::spawn(move || server.run());
    let cfg = cert.client(None);
    let mut clients: Vec<Tls> = (0..40).map(|_| wss(addr, &cfg)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        echo_frame(s, true, OP_BINARY, &[i as u8; 10]);
    }
    control.shutdown();
    for s in clients.iter_mut() {
        let f = read_frame(s);
        assert_eq!(f.close_code(), Some(1001));
        s.write_all(&close_frame(Some(1001), b"")).unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).expect("close_notify after the close frame"), 0);
    }
    let m = runner.join().unwrap().unwrap();
    assert_eq!((m.open, m.closes[1]), (0, 40));
    assert_eq!(m.tls_handshakes.iter().sum::<u64>(), 40);
}

#[test]
fn backpressure_over_tls_holds_ciphertext_and_loses_nothing() {
    let cert = Cert::new("backpressure");
    let addr = start_tls(&cert, |c| c.write_buffer = 128 << 10);
    let cfg = cert.client(None);
    // Small client socket buffers, so that the kernel cannot absorb the echoes.
    let mut s = upgrade_tls(tls_over(connect_small_buffers(addr, 64 << 10, 64 << 10), &cfg), addr);
    let mut bystander = wss(addr, &cfg);
    // 8 MiB of echoes the client does not read while it writes: the server's output fills, it
    // stops reading, and resumes as the client drains. Written from a second thread.
    let msgs: Vec<Vec<u8>> = (0..128).map(|i| binary_data(65_536, i)).collect();
    let wire: Vec<u8> = msgs.iter().flat_map(|m| masked_frame(true, 0, OP_BINARY, m, random_mask())).collect();
    let sock = s.sock.try_clone().unwrap();
    // rustls' client state cannot be shared across threads: encrypt here, send raw records there.
    s.conn.set_buffer_limit(None);
    s.conn.writer().write_all(&wire).unwrap();
    let mut records = Vec::new();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut records).unwrap();
    }
    let writer = std::thread::spawn(move || {
        let mut sock = sock;
        for chunk in records.chunks(1 << 16) {
            sock.write_all(chunk).unwrap();
        }
    });
    // Read nothing until the server says it stopped reading this connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&scrape(addr, &cfg, "/metrics"), "wsecho_backpressure_pauses_total") == 0 {
        assert!(Instant::now() < deadline, "the server never paused reading");
    }
    echo_frame(&mut bystander, true, OP_TEXT, b"not blocked by a full neighbour");
    for m in &msgs {
        let f = read_frame(&mut s);
        assert_eq!((f.fin, f.opcode), (true, OP_BINARY));
        assert_bytes_eq(&f.payload, m, "echo under backpressure");
    }
    writer.join().unwrap();
}

#[test]
fn tls13_key_updates_in_both_directions_keep_the_echo_going() {
    let cert = Cert::new("keyupdate");
    let addr = start_tls(&cert, |_| {});
    let mut s = wss(addr, &cert.client(Some(&rustls::version::TLS13)));
    for round in 0..3u8 {
        // rustls sends KeyUpdate(update_requested): the server must take the new receive key and
        // answer with a key update of its own before its next record.
        s.conn.refresh_traffic_keys().unwrap();
        echo_frame(&mut s, true, OP_BINARY, &[round; 300]);
        echo_frame(&mut s, true, OP_TEXT, b"after the key update");
    }
}

#[test]
fn a_handshake_flood_is_bounded_per_turn_and_the_echo_goes_on() {
    let cert = Cert::new("flood");
    let addr = start_tls(&cert, |_| {});
    let cfg = cert.client(None);
    let mut bystander = wss(addr, &cfg);
    // 300 ClientHellos written at once, on raw sockets, before any is read.
    let mut raw = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut c = ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        raw.push((connect(addr), hello));
        conns.push(c);
    }
    for (s, hello) in raw.iter_mut() {
        s.write_all(hello).unwrap();
    }
    echo_frame(&mut bystander, true, OP_BINARY, b"still here");
    // Every handshake completes.
    for ((sock, _), c) in raw.into_iter().zip(conns) {
        let mut s = StreamOwned::new(c, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("handshake in the flood");
        }
    }
    let m = scrape(addr, &cfg, "/metrics");
    let deferred = metric(&m, "wsecho_tls_handshakes_deferred_total");
    assert!(deferred > 0, "no handshake was put off: {m}");
    // Put off at most once per handshake flight (ClientHello, Finished): a backlog waits in a
    // queue, it is not walked again every turn.
    assert!(deferred <= 2 * 300, "{deferred} deferrals for 300 handshakes");
    let full = metric(&m, "wsecho_tls_handshakes_total{version=\"1.3\",resumed=\"false\"}");
    let resumed = metric(&m, "wsecho_tls_handshakes_total{version=\"1.3\",resumed=\"true\"}");
    assert_eq!(full + resumed, 302, "{m}");
    echo_frame(&mut bystander, true, OP_TEXT, b"and after");
}

/// Reads until the server closes: returns how long that took and what arrived.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    s.set_read_timeout(Some(limit)).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return (t.elapsed(), got),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (t.elapsed(), got),
            Err(e) => panic!("not closed within {limit:?}: {e}"),
        }
    }
}

#[test]
fn bad_input_closes_only_its_own_connection() {
    let cert = Cert::new("bad");
    let addr = start_tls(&cert, |c| c.handshake_timeout = Duration::from_millis(600));
    let cfg = cert.client(None);
    let mut bystander = wss(addr, &cfg);

    // Plain HTTP on the TLS port: a fatal alert (not HTTP) and the end.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n").unwrap();
    let (_, got) = until_closed(&mut s, Duration::from_secs(5));
    assert!(got.is_empty() || got[0] == 21, "plain HTTP got {got:?} (want nothing or an alert record)");
    echo_frame(&mut bystander, true, OP_BINARY, b"1");

    // Random bytes.
    let mut s = connect(addr);
    s.write_all(&binary_data(3000, 7)).unwrap();
    until_closed(&mut s, Duration::from_secs(5));
    echo_frame(&mut bystander, true, OP_BINARY, b"2");

    // A truncated ClientHello, then silence: closed at --handshake-timeout.
    let mut c = ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let mut s = connect(addr);
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    let (took, got) = until_closed(&mut s, Duration::from_secs(5));
    assert!(got.is_empty(), "{got:?}");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(4), "closed after {took:?}");
    echo_frame(&mut bystander, true, OP_BINARY, b"3");

    // A forged record after the upgrade: bad_record_mac, and the end of that connection.
    let mut victim = wss(addr, &cfg);
    echo_frame(&mut victim, true, OP_BINARY, b"before");
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend(binary_data(40, 9));
    victim.sock.write_all(&forged).unwrap();
    let mut b = [0u8; 64];
    let err = victim.read(&mut b).expect_err("the forged record must end the connection");
    assert!(err.to_string().contains("BadRecordMac"), "victim saw: {err}");
    echo_frame(&mut bystander, true, OP_BINARY, b"4");

    // A record longer than TLS allows.
    let mut victim = wss(addr, &cfg);
    victim.sock.write_all(&[23, 3, 3, 0xff, 0xff]).unwrap();
    let err = victim.read(&mut b).expect_err("an oversized record must end the connection");
    assert!(err.to_string().contains("RecordOverflow"), "victim saw: {err}");
    echo_frame(&mut bystander, true, OP_TEXT, b"all fine here");

    let m = scrape(addr, &cfg, "/metrics");
    assert_eq!(metric(&m, "wsecho_tls_failures_total{reason=\"handshake\"}"), 2, "{m}");
    assert_eq!(metric(&m, "wsecho_tls_failures_total{reason=\"bad_record\"}"), 2, "{m}");
    assert_eq!(metric(&m, "wsecho_timeouts_total{kind=\"handshake\"}"), 1, "{m}");
}
