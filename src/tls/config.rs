//! The TLS configuration of a listener: certificate and key from PEM files, and its reload.
//!
//! Owns reading `--tls-cert` / `--tls-key` (a PEM certificate chain; a PKCS#8, PKCS#1 RSA or SEC1
//! EC key), checking that they belong together, and building the rustls `ServerConfig` wsecho
//! serves with: TLS 1.3 and 1.2, ALPN `http/1.1`, session resumption by tickets (TLS 1.3 and 1.2)
//! and by a session cache, secret extraction on (the record layer is ours: `tls::record`). And
//! [`TlsSource`]: the current configuration shared by the reactors, replaced on `SIGHUP`, read
//! by a reactor with one atomic load per accepted connection. It does not touch connections.

use super::record::TrafficSecret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The certificate and key files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The rustls crypto provider: aws-lc-rs (Cargo.toml says why).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads both files and builds a server configuration; the error is one line naming the file.
/// `previous` (a reload): its ticket keys and session cache carry over, so clients holding
/// tickets or sessions still resume after a certificate rotation.
pub fn load(files: &TlsFiles, previous: Option<&ServerConfig>) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    // Server's choice of suite, AES-128-GCM with SHA-256 first: every client offers it (TLS 1.3
    // makes it mandatory), and it halves the handshake's hashing here (SHA-NI covers SHA-256, not
    // SHA-384): server-side full handshake 51 us against 87 us for the AES-256-GCM/SHA-384 that
    // rustls and OpenSSL clients list first (docs/tls.md). Bulk AES-128 is faster too.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| suite_rank(s.suite()));
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "--tls-cert {} / --tls-key {}: {e} (does the key belong to the certificate?)",
                files.cert.display(),
                files.key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ignore_client_order = true;
    // The record layer after the handshake is ours (tls::record): rustls hands over the keys.
    cfg.enable_secret_extraction = true;
    // Resumption: stateless tickets (one per full TLS 1.3 handshake; each costs an encryption)
    // and, for TLS 1.2 clients without ticket support, rustls' default in-memory session cache.
    match previous {
        Some(p) => {
            cfg.ticketer = p.ticketer.clone();
            cfg.session_storage = p.session_storage.clone();
        }
        None => cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("TLS ticketer: {e}"))?,
    }
    cfg.send_tls13_tickets = 1;
    // TLS 1.3 traffic secrets, for key updates after the hand-over (see `Capture`).
    cfg.key_log = Arc::new(Capture);
    Ok(Arc::new(cfg))
}

/// The two TLS 1.3 application traffic secrets of the handshake in progress on this thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct Captured {
    /// `CLIENT_TRAFFIC_SECRET_0`.
    pub client: Option<TrafficSecret>,
    /// `SERVER_TRAFFIC_SECRET_0`.
    pub server: Option<TrafficSecret>,
}

thread_local! {
    static CAPTURED: core::cell::Cell<Captured> = const { core::cell::Cell::new(Captured { client: None, server: None }) };
}

/// Takes what rustls reported on this thread since the last call. A reactor drives one
/// connection's handshake at a time on its thread and takes the secrets right after each call
/// into rustls, so they belong to that connection.
pub fn take_captured() -> Captured {
    CAPTURED.with(|c| c.take())
}

/// rustls' key-log hook, used to keep the TLS 1.3 traffic secrets that the key hand-over does not
/// include (it gives keys and IVs) but a key update needs. Nothing is written anywhere.
#[derive(Debug)]
struct Capture;

impl rustls::KeyLog for Capture {
    fn will_log(&self, label: &str) -> bool {
        matches!(label, "CLIENT_TRAFFIC_SECRET_0" | "SERVER_TRAFFIC_SECRET_0")
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let Some(s) = TrafficSecret::new(secret) else { return };
        CAPTURED.with(|c| {
            let mut v = c.get();
            match label {
                "CLIENT_TRAFFIC_SECRET_0" => v.client = Some(s),
                "SERVER_TRAFFIC_SECRET_0" => v.server = Some(s),
                _ => {}
            }
            c.set(v);
        });
    }
}

/// The server's order of preference among rustls' suites (lower first).
fn suite_rank(s: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as C;
    match s {
        C::TLS13_AES_128_GCM_SHA256 => 0,
        C::TLS13_AES_256_GCM_SHA384 => 1,
        C::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 3,
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 4,
        _ => 5,
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| format!("--tls-cert {}: {e}", path.display());
    let data = std::fs::read(path).map_err(|e| what(&e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data).collect::<Result<_, _>>().map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(what(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let what = |e: &dyn std::fmt::Display| format!("--tls-key {}: {e}", path.display());
    let data = std::fs::read(path).map_err(|e| what(&e))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| what(&e))
}

/// The configuration new TLS handshakes use, shared by every reactor of a process.
#[derive(Debug)]
pub struct TlsSource {
    files: TlsFiles,
    current: Mutex<Arc<ServerConfig>>,
    /// Bumped on every successful reload: a reactor compares it with the one it holds.
    generation: AtomicU64,
}

impl TlsSource {
    /// Loads the files once (start-up: an error here is a start-up error).
    pub fn open(files: TlsFiles) -> Result<Arc<TlsSource>, String> {
        let cfg = load(&files, None)?;
        Ok(Arc::new(TlsSource { files, current: Mutex::new(cfg), generation: AtomicU64::new(1) }))
    }

    /// Reads the files again (`SIGHUP`): new handshakes use the new pair; on error the old one
    /// stays and the error is returned for the log.
    pub fn reload(&self) -> Result<(), String> {
        let cfg = load(&self.files, Some(&self.current()))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = cfg;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The generation of the current configuration.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current configuration.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
