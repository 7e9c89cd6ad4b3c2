//! What both peer servers share: the command line (`--listen ADDR`, and `--tls-cert PATH
//! --tls-key PATH` for `wss://`), the open-file limit, the listening socket (same backlog and
//! TCP_NODELAY as wsecho), the TLS acceptor and the one-thread tokio runtime.
//!
//! Kept deliberately small: each binary's echo loop is the part being compared, and it is written
//! the way the library's own examples and docs do it.
//!
//! TLS is tokio-rustls (rustls 0.23, aws-lc-rs provider) configured as wsecho's listener is
//! (`src/tls/config.rs`): TLS 1.3 and 1.2, ALPN `http/1.1`, stateless tickets (one per TLS 1.3
//! handshake) and rustls' default session cache. Each accepted TCP stream is wrapped in a
//! `tokio_rustls::server::TlsStream` (rustls' buffered `ServerConnection`: its own buffers per
//! connection) and handed to the same echo code as a plain stream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An accepted `wss://` connection after its TLS handshake.
pub type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Default address (wsecho's default is 127.0.0.1:9001).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9002";

/// Largest message echoed; bigger ones end the connection (wsecho's default is also 16 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// wsecho listens with a backlog of 4096; tokio's `TcpListener::bind` would use 1024.
const BACKLOG: u32 = 4096;

/// The command line: where to listen, and the certificate and key when serving `wss://`.
#[derive(Debug)]
pub struct Options {
    /// `--listen ADDR`.
    pub listen: SocketAddr,
    /// `--tls-cert PATH --tls-key PATH` (PEM), both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Parses `[--listen ADDR] [--tls-cert PATH --tls-key PATH]` (also `--flag=VALUE`),
/// `-h`/`--help`; exits 2 on anything else.
pub fn options(name: &str, what: &str) -> Options {
    let usage = format!(
        "{name} - {what}\n\nUSAGE:\n    {name} [--listen ADDR] [--tls-cert PATH --tls-key PATH]\n\n    --listen ADDR      address to listen on [default: {DEFAULT_LISTEN}]\n    --tls-cert PATH    serve wss:// with this PEM certificate chain (needs --tls-key)\n    --tls-key PATH     the PEM private key of --tls-cert\n"
    );
    let mut args = std::env::args().skip(1);
    let mut listen = DEFAULT_LISTEN.to_string();
    let (mut cert, mut key) = (None, None);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            print!("{usage}");
            std::process::exit(0);
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let slot = match flag.as_str() {
            "--listen" => None,
            "--tls-cert" => Some(&mut cert),
            "--tls-key" => Some(&mut key),
            _ => die(name, &format!("unexpected argument '{a}'"), &usage),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => die(name, &format!("{flag} needs a value"), &usage),
        };
        match slot {
            None => listen = value,
            Some(s) => *s = Some(PathBuf::from(value)),
        }
    }
    let listen = match listen.parse() {
        Ok(addr) => addr,
        Err(_) => die(name, &format!("--listen: '{listen}' is not an IP:PORT address"), &usage),
    };
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => die(name, "--tls-cert and --tls-key go together", &usage),
    };
    Options { listen, tls }
}

fn die(name: &str, msg: &str, usage: &str) -> ! {
    eprintln!("{name}: {msg}\n\n{usage}");
    std::process::exit(2);
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (as wsecho does); returns the soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        r.rlim_cur as u64
    }
}

/// One-thread runtime, like wsecho's default single reactor.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime")
}

/// Binds `addr` (SO_REUSEADDR, backlog 4096). Must be called inside the runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Prints the start-up line on stderr (compare.sh waits for the port, not for this line).
pub fn announce(name: &str, addr: SocketAddr, tls: bool) {
    let scheme = if tls { "wss, tokio-rustls" } else { "ws" };
    eprintln!("{name} listening on {addr} ({scheme}, tokio current_thread, open-file limit {})", raise_nofile());
}

/// The TLS acceptor for `--tls-cert`/`--tls-key`, configured as wsecho's listener; exits 2 with
/// one line when a file is missing or bad.
pub fn tls_acceptor(name: &str, cert: &PathBuf, key: &PathBuf) -> tokio_rustls::TlsAcceptor {
    let fail = |what: String| -> ! {
        eprintln!("{name}: {what}");
        std::process::exit(2);
    };
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_file_iter(cert).and_then(|i| i.collect::<Result<Vec<_>, _>>()) {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => fail(format!("--tls-cert {}: no PEM certificate", cert.display())),
            Err(e) => fail(format!("--tls-cert {}: {e}", cert.display())),
        };
    let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| fail(format!("--tls-key {}: {e}", key.display())));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|e| fail(format!("TLS: {e}")))
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap_or_else(|e| fail(format!("--tls-cert/--tls-key: {e}")));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap_or_else(|e| fail(format!("TLS ticketer: {e}")));
    cfg.send_tls13_tickets = 1;
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Runs the server: parses the command line, binds, and hands every accepted connection (with
/// TCP_NODELAY set) to `plain`, or with `--tls-cert` after its TLS handshake to `tls`, in its own
/// task, on the one-thread runtime. Never returns. (Two handlers, so that each stream type gets
/// its own monomorphised echo loop and the plain path is the one measured before TLS existed.)
pub fn serve<F, Fut, G, GFut>(name: &'static str, what: &str, plain: F, tls: G) -> !
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
    G: Fn(TlsStream) -> GFut + Clone + Send + 'static,
    GFut: std::future::Future<Output = ()> + Send + 'static,
{
    let opts = options(name, what);
    let addr = opts.listen;
    let acceptor = opts.tls.as_ref().map(|(c, k)| tls_acceptor(name, c, k));
    runtime().block_on(async move {
        let listener = listen(addr).unwrap_or_else(|e| {
            eprintln!("{name}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
        announce(name, addr, acceptor.is_some());
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: say so, back off briefly, keep serving.
                    eprintln!("{name}: accept: {e}");
                    // (blocking on purpose: this path only runs when the process is out of fds)
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match &acceptor {
                None => {
                    tokio::spawn(plain(stream));
                }
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match accept.await {
                            Ok(s) => tls(s).await,
                            Err(e) => {
                                if std::env::var_os("PEER_VERBOSE").is_some() {
                                    eprintln!("{name}: TLS handshake: {e}");
                                }
                            }
                        }
                    });
                }
            }
        }
    })
}
