//! `wsbench` over `wss://`, with nothing outside cargo: throwaway certificates made at run time
//! (rcgen; never committed), against two servers: a small TLS terminator written here (a rustls
//! server, two threads per connection, its key kept in memory) in front of the real `wsecho`
//! reactor started in-process, which shows what the client sent (version, SNI, ALPN, resumed),
//! and wsecho's own TLS (`--tls-cert/--tls-key`, its key in a temp directory removed at the end;
//! resumption read from its `wsecho_tls_handshakes_total`). Checked: echo with `--ca` (every echo and frame verified),
//! the clear certificate errors without `--ca`/`--insecure` and for a name the certificate does
//! not carry, `--insecure`, TLS 1.2 and 1.3 (`--tls-version`) with SNI and ALPN as the terminator
//! saw them, session resumption (and `--no-tls-resume`), a server that never answers the
//! ClientHello (`tls: handshake timeout`), and every other mode over TLS (rate, idle, soak,
//! `--deflate`, `--processes`).
//!
//! Each wsbench run is bounded by its own `--duration` and, as a backstop, by a deadline after
//! which the test kills it and fails. Results are read from `--json`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{json_num as num, wsbench_json, BenchRun};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection};

/// What the terminator saw of one TLS connection, once its handshake was done.
#[derive(Clone, Debug)]
struct Seen {
    version: Option<ProtocolVersion>,
    resumed: bool,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
}

/// A TLS terminator: accepts TLS on its own port and relays the plaintext to `backend`.
struct Terminator {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A certificate for `names` (DNS names or IP addresses), self-signed, made now: its DER and
/// PEM, and its key as PKCS#8 DER (kept in memory only).
fn certificate(names: &[&str]) -> (CertificateDer<'static>, String, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("rcgen certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (ck.cert.der().clone(), ck.cert.pem(), key)
}

/// The certificate for 127.0.0.1 and localhost, and its PEM file (for `--ca`).
fn local_cert() -> &'static (CertificateDer<'static>, PathBuf, PrivateKeyDer<'static>) {
    static CERT: OnceLock<(CertificateDer<'static>, PathBuf, PrivateKeyDer<'static>)> = OnceLock::new();
    CERT.get_or_init(|| {
        let (der, pem, key) = certificate(&["localhost", "127.0.0.1"]);
        let path = std::env::temp_dir().join(format!("wsbench-tls-test-{}.pem", std::process::id()));
        std::fs::write(&path, pem).expect("write the certificate PEM");
        (der, path, key)
    })
}

fn server_config(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Session IDs / stateful tickets from the default in-memory cache: resumption works.
    Arc::new(cfg)
}

impl Terminator {
    fn start(config: Arc<ServerConfig>, backend: SocketAddr) -> Terminator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind terminator");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (config, seen) = (config.clone(), seen2.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, backend, config, seen);
                });
            }
        });
        Terminator { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// Writes all of rustls' pending TLS output to the client (called with the connection locked,
/// so output goes out in the order rustls made it).
fn send_tls(tls: &mut ServerConnection, client: &mut TcpStream) -> std::io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(client)?;
    }
    Ok(())
}

/// One TLS connection: this thread takes client → backend, a second one backend → client.
fn relay(
    client: TcpStream,
    backend: SocketAddr,
    config: Arc<ServerConfig>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let upstream = TcpStream::connect(backend)?;
    upstream.set_nodelay(true)?;
    let conn = Arc::new(Mutex::new(ServerConnection::new(config).map_err(std::io::Error::other)?));

    // backend → client: plaintext in, records out; close_notify at the backend's EOF.
    let (conn2, mut client_w, mut up_r) = (conn.clone(), client.try_clone()?, upstream.try_clone()?);
    let down = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // An error ends the relay like an EOF.
            let n: usize = up_r.read(&mut buf).unwrap_or_default();
            let mut tls = conn2.lock().unwrap();
            if n == 0 {
                tls.send_close_notify();
                let _ = send_tls(&mut tls, &mut client_w);
                let _ = client_w.shutdown(Shutdown::Write);
                return;
            }
            if tls.writer().write_all(&buf[..n]).is_err() || send_tls(&mut tls, &mut client_w).is_err() {
                let _ = client_w.shutdown(Shutdown::Both);
                let _ = up_r.shutdown(Shutdown::Both);
                return;
            }
        }
    });

    // client → backend: records in, plaintext out, handshake messages back.
    let (mut client_r, mut client_w, mut up_w) = (client.try_clone()?, client, upstream);
    let mut buf = vec![0u8; 64 << 10];
    let mut plain = Vec::new();
    let mut recorded = false;
    let result = loop {
        let n = match client_r.read(&mut buf) {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        plain.clear();
        let mut tls = conn.lock().unwrap();
        let mut input = &buf[..n];
        let mut failed = None;
        loop {
            if tls.read_tls(&mut input).is_err() {
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued goes out; then the connection ends.
                let _ = send_tls(&mut tls, &mut client_w);
                failed = Some(std::io::Error::other(e));
                break;
            }
            let _ = tls.reader().read_to_end(&mut plain);
            if input.is_empty() {
                break;
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        if !recorded && !tls.is_handshaking() {
            recorded = true;
            seen.lock().unwrap().push(Seen {
                version: tls.protocol_version(),
                resumed: tls.handshake_kind() == Some(HandshakeKind::Resumed),
                sni: tls.server_name().map(str::to_string),
                alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
            });
        }
        let sent = send_tls(&mut tls, &mut client_w);
        drop(tls);
        if sent.is_err() || (!plain.is_empty() && up_w.write_all(&plain).is_err()) {
            break Ok(());
        }
        if n == 0 {
            let _ = up_w.shutdown(Shutdown::Write);
            break Ok(());
        }
    };
    if result.is_err() {
        let _ = client_w.shutdown(Shutdown::Both);
        let _ = up_w.shutdown(Shutdown::Both);
    }
    let _ = down.join();
    result
}

/// One terminator with the local certificate in front of a plain wsecho, for the whole process.
fn terminator() -> &'static Terminator {
    static T: OnceLock<Terminator> = OnceLock::new();
    T.get_or_init(|| {
        let (der, _, key) = local_cert();
        Terminator::start(server_config(der.clone(), key.clone_key()), common::start(|_| {}))
    })
}

/// Runs wsbench with `args` plus `--json FILE`; kills it and fails the test after `limit`.
fn wsbench(name: &str, args: &[&str], limit: Duration) -> BenchRun {
    wsbench_json("wsbench-tls-test", name, args, limit)
}

/// A clean run: exit 0, every connection upgraded, nothing mismatched or lost.
fn assert_clean(r: &BenchRun, conns: u64) {
    assert_eq!(r.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), conns, "{}", r.json);
    assert_eq!(num(&r.json, "echo_mismatches"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "fidelity_errors"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "lost_connections"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "handshake_failures"), 0, "{}", r.json);
}

fn ca() -> &'static str {
    local_cert().1.to_str().expect("temp path is UTF-8")
}

/// Echo over wss:// trusting the certificate with `--ca`: pipelined small messages and 16 KiB
/// messages (several TLS records each) in three fragments, every echo and frame verified.
#[test]
fn echo_over_wss_with_ca() {
    let t = terminator();
    let url = format!("wss://{}/", t.addr);
    let r = wsbench(
        "ca",
        &["-q", "-c", "10", "-k", "4", "-s", "1KiB", "-d", "1", "--ca", ca(), &url],
        Duration::from_secs(60),
    );
    assert_clean(&r, 10);
    assert!(num(&r.json, "messages") > 100, "{}", r.json);
    // The handshake histogram holds the TLS handshake too (connect start to the verified 101).
    assert!(r.stdout.contains("handshake us"), "{}", r.stdout);
    let r = wsbench(
        "ca-16k",
        &["-q", "-c", "8", "-k", "4", "-s", "16KiB", "--fragments", "3", "-d", "1", "--ca", ca(), &url],
        Duration::from_secs(60),
    );
    assert_clean(&r, 8);
    assert!(num(&r.json, "messages") > 10, "{}", r.json);
    // An IP address in the URL: no SNI (RFC 6066), checked against the certificate's IP SAN.
    let seen = t.seen();
    assert!(seen.iter().any(|s| s.sni.is_none() && s.alpn.as_deref() == Some(&b"http/1.1"[..])), "{seen:?}");
}

/// Without --ca or --insecure a self-signed certificate is refused, with a clear reason in the
/// failure breakdown and a hint on stderr; so is a certificate for another name.
#[test]
fn untrusted_or_misnamed_certificates_are_clear_errors() {
    let t = terminator();
    let r = wsbench("untrusted", &["-q", "-c", "3", "-d", "1", &format!("wss://{}/", t.addr)], Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(num(&r.json, "upgraded"), 0, "{}", r.json);
    assert_eq!(num(&r.json, "handshake_failures"), 3, "{}", r.json);
    let reason = "tls: invalid peer certificate: UnknownIssuer";
    assert!(r.stdout.contains(reason), "the table names the reason: {}", r.stdout);
    assert!(
        r.stderr.contains(reason) && r.stderr.contains("--ca FILE") && r.stderr.contains("--insecure"),
        "{}",
        r.stderr
    );

    // A certificate for example.com only, trusted, but the URL names 127.0.0.1.
    let (der, pem, key) = certificate(&["example.com"]);
    let other = Terminator::start(server_config(der, key), common::start(|_| {}));
    let pem_path = std::env::temp_dir().join(format!("wsbench-tls-test-{}-other.pem", std::process::id()));
    std::fs::write(&pem_path, pem).unwrap();
    let r = wsbench(
        "misnamed",
        &["-q", "-c", "2", "-d", "1", "--ca", pem_path.to_str().unwrap(), &format!("wss://{}/", other.addr)],
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_file(&pem_path);
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(r#"tls: invalid peer certificate: certificate not valid for name "127.0.0.1""#),
        "{}",
        r.stdout
    );

    // A --ca file that is not there, or holds no certificate: a usage error before any connect.
    let r =
        wsbench("no-ca-file", &["-q", "--ca", "/nonexistent/ca.pem", "wss://127.0.0.1:9/"], Duration::from_secs(30));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--ca /nonexistent/ca.pem"), "{}", r.stderr);
}

#[test]
fn insecure_accepts_a_self_signed_certificate() {
    let t = terminator();
    let url = format!("wss://{}/", t.addr);
    let r = wsbench("insecure", &["-q", "-c", "5", "-k", "2", "-d", "1", "--insecure", &url], Duration::from_secs(60));
    assert_clean(&r, 5);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
}

/// `--tls-version 1.2` and `1.3` each get that version; SNI is the URL's host name; later
/// connections resume the sessions of earlier ones unless `--no-tls-resume`.
#[test]
fn versions_sni_and_resumption() {
    // Its own terminator: other tests' connections must not mix into what it saw.
    let (der, _, key) = local_cert();
    let t = Terminator::start(server_config(der.clone(), key.clone_key()), common::start(|_| {}));
    let url = format!("wss://localhost:{}/", t.addr.port());
    for (v, want) in [("1.2", ProtocolVersion::TLSv1_2), ("1.3", ProtocolVersion::TLSv1_3)] {
        for resume in [true, false] {
            t.clear();
            // Paced, so that later connections find the tickets (or session IDs) of earlier ones.
            let mut args = vec!["-q", "-c", "12", "--connect-rate", "100", "-k", "2", "-d", "0.5", "--tls-version", v];
            if !resume {
                args.push("--no-tls-resume");
            }
            args.extend(["--ca", ca(), &url]);
            let r = wsbench(&format!("v{v}-{resume}"), &args, Duration::from_secs(60));
            assert_clean(&r, 12);
            let seen = t.seen();
            assert_eq!(seen.len(), 12, "{seen:?}");
            assert!(seen.iter().all(|s| s.version == Some(want)), "TLS {v}: {seen:?}");
            assert!(seen.iter().all(|s| s.sni.as_deref() == Some("localhost")), "{seen:?}");
            assert!(seen.iter().all(|s| s.alpn.as_deref() == Some(&b"http/1.1"[..])), "{seen:?}");
            let resumed = seen.iter().filter(|s| s.resumed).count();
            if resume {
                assert!(resumed >= 6, "TLS {v}: only {resumed} of 12 resumed: {seen:?}");
            } else {
                assert_eq!(resumed, 0, "TLS {v} --no-tls-resume: {seen:?}");
            }
        }
    }
}

/// A server that accepts TCP and never answers the ClientHello: the connect timeout ends the
/// attempt, counted as a TLS handshake timeout.
#[test]
fn silent_server_is_a_tls_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let r = wsbench(
        "silent",
        &["-q", "-c", "2", "-d", "1", "--connect-timeout", "1", "--insecure", &format!("wss://{addr}/")],
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("tls: handshake timeout: 2"), "{}", r.stdout);
}

/// Every other mode over TLS: rate with fragments, idle, soak (fragments, pings, clean closes,
/// abrupt drops and reconnects), several processes and threads, and permessage-deflate.
#[test]
fn every_mode_over_wss() {
    let t = terminator();
    let url = format!("wss://{}/", t.addr);
    let limit = Duration::from_secs(90);

    let r = wsbench(
        "rate",
        &["-q", "-m", "rate", "-r", "2000", "--fragments", "3", "-c", "10", "-d", "1", "--ca", ca(), &url],
        limit,
    );
    assert_clean(&r, 10);
    assert!(num(&r.json, "messages") > 500, "{}", r.json);

    let r = wsbench("idle", &["-q", "-m", "idle", "-c", "50", "-d", "0.5", "--ca", ca(), &url], limit);
    assert_clean(&r, 50);
    assert_eq!(num(&r.json, "clean_closes"), 50, "{}", r.json);

    let r = wsbench(
        "soak",
        &["-q", "-m", "soak", "-c", "30", "-d", "2", "--disconnect-prob", "0.05", "--seed", "11", "--ca", ca(), &url],
        limit,
    );
    assert_clean(&r, 30);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
    assert!(num(&r.json, "pongs") > 0, "{}", r.json);
    assert!(num(&r.json, "clean_reconnects") > 0 && num(&r.json, "abrupt_drops") > 0, "{}", r.json);

    let r =
        wsbench("procs", &["-q", "-c", "20", "-p", "2", "-t", "2", "-k", "2", "-d", "1", "--ca", ca(), &url], limit);
    assert_clean(&r, 20);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);

    let (der, _, key) = local_cert();
    let zt =
        Terminator::start(server_config(der.clone(), key.clone_key()), common::start(|c| c.deflate.enabled = true));
    let r = wsbench(
        "deflate",
        &[
            "-q",
            "-c",
            "10",
            "-k",
            "4",
            "-s",
            "1KiB",
            "--text-kind",
            "json",
            "--deflate",
            "-d",
            "1",
            "--ca",
            ca(),
            &format!("wss://{}/", zt.addr),
        ],
        limit,
    );
    assert_clean(&r, 10);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
}

/// The server's `/metrics` (plain HTTP on its `--metrics-listen` port).
fn http_metrics(addr: SocketAddr) -> String {
    common::http_get(addr, "/metrics")
}

/// The sum of the samples of `name` whose labels start with `labels` (e.g. `version="1.3"`).
fn samples(text: &str, name: &str, labels: &str) -> u64 {
    let start = format!("{name}{{{labels}");
    text.lines().filter(|l| l.starts_with(&start)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// Scrapes until `f` holds (the reactors publish their counters every 100 ms); 5 s at most.
fn scrape_until(addr: SocketAddr, what: &str, f: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let text = http_metrics(addr);
        if f(&text) {
            return text;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{what} never held:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// wsecho's own TLS (`--tls-cert/--tls-key`, no terminator): echo with fragments, both
/// versions with resumption as the server counts them (`wsecho_tls_handshakes_total`), no TLS
/// failure, then soak, idle, several processes and permessage-deflate over it.
#[test]
fn against_wsecho_own_tls() {
    // The server reads PEM files: a throwaway pair in a temp directory, removed at the end.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).expect("certificate");
    let dir = std::env::temp_dir().join(format!("wsbench-tls-own-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();

    let mut c = wsecho::config::Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c.tls = Some(wsecho::tls::config::TlsFiles { cert: cert_pem.clone(), key: key_pem });
    c.deflate.enabled = true;
    let server = wsecho::server::Server::bind(&c).expect("bind wsecho with TLS");
    let (addr, maddr) = (server.local_addr(), server.metrics_addr().expect("metrics port"));
    std::thread::spawn(move || server.run());
    let ca = cert_pem.to_str().unwrap();
    let url = format!("wss://localhost:{}/", addr.port());
    let limit = Duration::from_secs(90);

    let r = wsbench(
        "own-16k",
        &["-q", "-c", "8", "-k", "4", "-s", "16KiB", "--fragments", "3", "-d", "1", "--ca", ca, &url],
        limit,
    );
    assert_clean(&r, 8);
    assert!(num(&r.json, "messages") > 10, "{}", r.json);
    let mut total = 8;
    for v in ["1.2", "1.3"] {
        let before = samples(&http_metrics(maddr), "wsecho_tls_handshakes_total", &format!("version=\"{v}\""));
        let args =
            ["-q", "-c", "12", "--connect-rate", "100", "-k", "4", "-s", "1KiB", "-d", "0.5", "--tls-version", v];
        let r = wsbench(&format!("own-{v}"), &[&args[..], &["--ca", ca, &url]].concat(), limit);
        assert_clean(&r, 12);
        total += 12;
        let vl = format!("version=\"{v}\"");
        let text = scrape_until(maddr, &format!("12 more TLS {v} handshakes"), |t| {
            samples(t, "wsecho_tls_handshakes_total", &vl) == before + 12
        });
        let resumed = samples(&text, "wsecho_tls_handshakes_total", &format!("version=\"{v}\",resumed=\"true\""));
        assert!(resumed >= 6, "TLS {v}: later connections resume earlier sessions:\n{text}");
    }
    let text =
        scrape_until(maddr, "all handshakes counted", |t| samples(t, "wsecho_tls_handshakes_total", "") == total);
    assert_eq!(samples(&text, "wsecho_tls_failures_total", ""), 0, "{text}");

    let r = wsbench(
        "own-soak",
        &["-q", "-m", "soak", "-c", "30", "-d", "2", "--disconnect-prob", "0.05", "--seed", "5", "--ca", ca, &url],
        limit,
    );
    assert_clean(&r, 30);
    assert!(num(&r.json, "clean_reconnects") > 0 && num(&r.json, "abrupt_drops") > 0, "{}", r.json);
    let r = wsbench("own-idle", &["-q", "-m", "idle", "-c", "50", "-d", "0.5", "--ca", ca, &url], limit);
    assert_clean(&r, 50);
    let r = wsbench(
        "own-procs",
        &["-q", "-c", "20", "-p", "2", "-t", "2", "-k", "2", "-d", "1", "--insecure", &url],
        limit,
    );
    assert_clean(&r, 20);
    let r = wsbench(
        "own-deflate",
        &["-q", "-c", "10", "-k", "4", "-s", "1KiB", "--text-kind", "json", "--deflate", "-d", "1", "--ca", ca, &url],
        limit,
    );
    assert_clean(&r, 10);
    assert!(num(&r.json, "messages") > 0, "{}", r.json);
}
