//! `--tls-cert` / `--tls-key` with the built binary: `SIGHUP` rotates the pair end to end, and bad
//! files are start-up errors.
//!
//! The certificates are generated here (rcgen), written to a temporary directory and never kept.
//! The client is rustls, trusting both certificates A and B, so that which one the server
//! presented is read from the session (`peer_certificates`), not inferred from a failure. The
//! rotation is done the way an operator does it: new files renamed over the old paths, then
//! `SIGHUP`; the server's log line says when the reload happened (or failed), and only then does
//! the test connect again.

mod common;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A self-signed certificate for localhost and 127.0.0.1: (certificate PEM, key PEM, DER).
fn pair() -> (String, String, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem(), ck.cert.der().clone())
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let d = std::env::temp_dir().join(format!("wsecho-tls-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `text` to `path` the way an operator replaces a file: a new file renamed over the old.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_config(trusted: &[&CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add((*c).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Full handshakes only: a resumed session (which survives a reload, see tests/tls.rs) does not
    // present the certificate again, and this test is about which certificate is presented.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// A TLS connection, upgraded to WebSocket (the 101 checked); returns it and the certificate the
/// server presented.
fn wss(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> (Tls, CertificateDer<'static>) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    let key = new_key();
    s.write_all(&Request::upgrade(addr, &key).to_bytes()).unwrap();
    s.flush().unwrap();
    // The head byte by byte (rustls buffers the records; nothing beyond the head is taken).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap_or_else(|e| panic!("reading the 101: {e} after {head:?}"));
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(&format!("Sec-WebSocket-Accept: {}\r\n", accept_for(&key))), "{head}");
    let cert = s.conn.peer_certificates().expect("a server certificate")[0].clone().into_owned();
    (s, cert)
}

fn echo_over(s: &mut Tls, payload: &[u8]) {
    s.write_all(&masked_frame(true, 0, OP_BINARY, payload, random_mask())).unwrap();
    s.flush().unwrap();
    let f = read_frame(s);
    assert_eq!((f.fin, f.opcode), (true, OP_BINARY));
    assert_bytes_eq(&f.payload, payload, "echo over TLS");
}

/// The server's stderr, line by line, and the child.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Receiver<String>,
}

impl Server {
    fn start(cert: &Path, key: &Path) -> Server {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsecho"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), log };
        s.wait_log("listening on");
        s
    }

    /// Waits (10 s) for a log line containing `what`; returns it.
    fn wait_log(&mut self, what: &str) -> String {
        let t0 = Instant::now();
        let mut seen = Vec::new();
        while let Some(left) = Duration::from_secs(10).checked_sub(t0.elapsed()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no log line with {what:?} within 10 s; saw: {seen:#?}");
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_rotates_the_pair_and_keeps_it_when_the_new_files_are_bad() {
    let dir = temp_dir("reload");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let (a_pem, a_key, a_der) = pair();
    let (b_pem, b_key, b_der) = pair();
    let (_, c_key, _) = pair();
    assert_ne!(a_der, b_der);
    replace(&cert, &a_pem);
    replace(&key, &a_key);
    let mut srv = Server::start(&cert, &key);
    let cfg = client_config(&[&a_der, &b_der]);

    let (mut old, seen) = wss(srv.addr, &cfg);
    assert!(seen == a_der, "the server did not start with certificate A");
    echo_over(&mut old, b"before the rotation");

    // Rotation: B renamed over both paths, then SIGHUP.
    replace(&cert, &b_pem);
    replace(&key, &b_key);
    srv.signal(libc::SIGHUP);
    srv.wait_log("SIGHUP: TLS certificate and key reloaded");
    let (mut new, seen) = wss(srv.addr, &cfg);
    assert!(seen == b_der, "a handshake after SIGHUP did not get certificate B");
    echo_over(&mut new, b"after the rotation");
    // The connection made before is untouched: same session, still echoing.
    assert!(old.conn.peer_certificates().unwrap()[0] == a_der);
    echo_over(&mut old, &[0xa5; 20_000]);

    // A broken key: logged, B kept.
    replace(&key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
    srv.signal(libc::SIGHUP);
    let line = srv.wait_log("SIGHUP: TLS reload failed");
    assert!(line.contains("keeping the previous pair") && line.contains("--tls-key"), "{line}");
    let (mut s, seen) = wss(srv.addr, &cfg);
    assert!(seen == b_der, "after a failed reload the server no longer presents B");
    echo_over(&mut s, b"still B");

    // A key of another pair (readable, but not B's): also refused, B kept.
    replace(&key, &c_key);
    srv.signal(libc::SIGHUP);
    let line = srv.wait_log("SIGHUP: TLS reload failed");
    assert!(line.contains("does the key belong to the certificate?"), "{line}");
    let (mut s2, seen) = wss(srv.addr, &cfg);
    assert!(seen == b_der);
    echo_over(&mut s2, b"still B");

    // Every connection still echoes; SIGTERM closes them all with 1001 and exits 0.
    for s in [&mut old, &mut new, &mut s, &mut s2] {
        echo_over(s, b"at the end");
    }
    srv.signal(libc::SIGTERM);
    for s in [&mut old, &mut new, &mut s, &mut s2] {
        let f = read_frame(s);
        assert_eq!((f.opcode, f.close_code()), (OP_CLOSE, Some(1001)));
        s.write_all(&masked_frame(true, 0, OP_CLOSE, &1001u16.to_be_bytes(), random_mask())).unwrap();
        s.flush().unwrap();
    }
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "wsecho did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(st.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary with these TLS flags; it must exit 2 with one line on stderr containing `want`.
fn refused(args: &[&std::ffi::OsStr], want: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsecho")).args(["--listen", "127.0.0.1:0"]).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("wsecho: ") && err.contains(want), "{args:?}: {err}");
}

#[test]
fn bad_certificate_or_key_files_are_one_line_and_exit_2() {
    let dir = temp_dir("startup");
    let (a_pem, a_key, _) = pair();
    let (_, b_key, _) = pair();
    let (cert, key, other) = (dir.join("a.crt"), dir.join("a.key"), dir.join("b.key"));
    std::fs::write(&cert, a_pem).unwrap();
    std::fs::write(&key, a_key).unwrap();
    std::fs::write(&other, b_key).unwrap();
    let missing = dir.join("missing.crt");
    let os = |p: &Path| p.as_os_str().to_owned();
    let flag = |f: &str| std::ffi::OsString::from(f);
    // A missing certificate file.
    refused(
        &[&flag("--tls-cert"), &os(&missing), &flag("--tls-key"), &os(&key)],
        &format!("--tls-cert {}", missing.display()),
    );
    // An unreadable key: a directory (root reads any file, so permissions cannot stand for this).
    refused(&[&flag("--tls-cert"), &os(&cert), &flag("--tls-key"), &os(&dir)], &format!("--tls-key {}", dir.display()));
    // A key file without a key in it: the certificate given as key.
    refused(&[&flag("--tls-cert"), &os(&cert), &flag("--tls-key"), &os(&cert)], "--tls-key");
    // A key that does not belong to the certificate.
    refused(
        &[&flag("--tls-cert"), &os(&cert), &flag("--tls-key"), &os(&other)],
        "does the key belong to the certificate?",
    );
    // A certificate file without a certificate: the key given as certificate.
    refused(&[&flag("--tls-cert"), &os(&key), &flag("--tls-key"), &os(&key)], "--tls-cert");
    // One flag without the other.
    refused(&[&flag("--tls-cert"), &os(&cert)], "--tls-key");
    let _ = std::fs::remove_dir_all(&dir);
}
