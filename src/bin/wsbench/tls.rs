//! `wss://`: the rustls client configuration built from the flags (`--ca`, `--insecure`,
//! `--tls-version`, `--no-tls-resume`; aws-lc-rs provider, ALPN `http/1.1`, SNI from the URL's
//! host, the default in-memory session cache for resumption) and [`Stream`], the socket every
//! connection reads and writes: a plain TCP stream, or one wrapped in a buffered
//! `rustls::ClientConnection`.
//!
//! Owns the TLS plumbing over a non-blocking socket: ciphertext is read in large reads into the
//! back of the loop's read buffer and decrypted into its front (no per-connection read buffer
//! beyond rustls' own 4 KiB), plaintext writes go through rustls and out at once, output the
//! socket refused is written first on the next write or writable event, and TLS errors get
//! names (`tls: ...`) for the failure breakdown. The TLS handshake runs underneath the upgrade:
//! the request is accepted (buffered by rustls) before the handshake finishes and goes out
//! with it, so the handshake time wsbench records (connect start to verified 101) includes the
//! TLS handshake. It does not know WebSocket framing, states or statistics (see `transport`).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::cli::{Config, TlsVersion};

/// CA bundles tried, in order, when neither `--ca` nor `--insecure` is given (Debian/Ubuntu,
/// Fedora/RHEL, openSUSE, Alpine).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Most ciphertext read from the socket per read: at most a quarter of the caller's buffer, so
/// that what it decrypts to (plus a record rustls held from the last read) always fits the
/// rest of the buffer.
const READ_MAX: usize = 64 << 10;

/// A record's worth of ciphertext rustls may hold between reads (16 KiB + overhead), which can
/// decrypt into the caller's buffer on top of what one read brings.
const HELD_MAX: usize = (16 << 10) + 2048 + 5;

/// What every TLS connection of a run is made from.
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    /// The client configuration for a `wss://` run (`None` for `ws://`). The error is the
    /// one-line explanation printed before exiting with status 2.
    pub fn from_config(cfg: &Config) -> Result<Option<Client>, String> {
        if !cfg.tls {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.tls_version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersion::V12) => &[&rustls::version::TLS12],
            Some(TlsVersion::V13) => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let mut config = if cfg.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
                .with_no_client_auth()
        } else {
            let roots = match &cfg.ca {
                Some(path) => load_ca(path)?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !cfg.tls_resume {
            config.resumption = Resumption::disabled();
        }
        let name = ServerName::try_from(cfg.host.clone())
            .map_err(|_| format!("'{}' is not a valid TLS server name", cfg.host))?;
        let config = Arc::new(config);
        // The first connection pays aws-lc's one-time set-up (measured here: 20-40 ms): paid
        // now, before any fork or clock, instead of in the first handshake's time.
        ClientConnection::new(config.clone(), name.clone()).map_err(|e| format!("TLS configuration: {e}"))?;
        Ok(Some(Client { config, name }))
    }
}

/// The certificates of a PEM file given with `--ca` (at least one must be usable).
fn load_ca(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut found = 0;
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
    for cert in iter {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", path.display()))?;
        found += 1;
        roots.add(cert).map_err(|e| format!("--ca {}: certificate {found}: {e}", path.display()))?;
    }
    if found == 0 {
        return Err(format!("--ca {}: no PEM certificate (BEGIN CERTIFICATE) in the file", path.display()));
    }
    Ok(roots)
}

/// The system's CA bundle (the first of [`SYSTEM_BUNDLES`] that has certificates), or none.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for path in SYSTEM_BUNDLES {
        if let Ok(iter) = CertificateDer::pem_file_iter(path) {
            roots.add_parsable_certificates(iter.filter_map(Result::ok));
            if !roots.is_empty() {
                break;
            }
        }
    }
    roots
}

/// `--insecure`: any certificate chain and name is accepted, but the handshake signature is
/// still checked (so the handshake costs what a verified one costs on the server).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A TLS error as an I/O error (named by [`error_name`]).
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// `tls: <rustls' description>` when `e` carries a TLS error.
pub fn error_name(e: &io::Error) -> Option<String> {
    let te = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(format!("tls: {te}"))
}

/// A connection's socket: plain TCP, or TCP under TLS.
pub struct Stream {
    tcp: TcpStream,
    /// Boxed: rustls' connection is about a kilobyte; `ws://` runs pay 8 bytes for it.
    tls: Option<Box<ClientConnection>>,
    /// TLS: the last read may have left bytes in the socket, or plaintext or an EOF in rustls;
    /// read again before waiting for the next event.
    more: bool,
}

impl Stream {
    /// A stream over `tcp` (connecting), under TLS when `tls` is given.
    pub fn new(tcp: TcpStream, tls: Option<&Client>) -> Result<Stream, rustls::Error> {
        let tls = match tls {
            Some(c) => Some(Box::new(ClientConnection::new(c.config.clone(), c.name.clone())?)),
            None => None,
        };
        Ok(Stream { tcp, tls, more: false })
    }

    /// The TCP socket (for socket options).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp.take_error()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Under TLS and the TLS handshake has not finished.
    pub fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// After a read of `n` bytes into a buffer of `len`: is there possibly more to read now?
    /// (Plain TCP: a full buffer says so; under TLS a read takes at most `READ_MAX` bytes.)
    #[inline]
    pub fn more_to_read(&self, n: usize, len: usize) -> bool {
        if self.tls.is_some() {
            self.more
        } else {
            n == len
        }
    }

    /// Reads plaintext into `buf`. `Ok(0)` is the end of the stream (TLS: close_notify, or a TCP
    /// EOF without it, which servers and proxies commonly send); `WouldBlock` when nothing is
    /// there. TLS errors are `InvalidData` carrying the `rustls::Error` (see [`error_name`]).
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.tcp.read(buf),
            Some(tls) => read_tls(&mut self.tcp, tls, &mut self.more, buf),
        }
    }

    /// Writes plaintext; `Ok(n)` with `n > 0` for a non-empty `buf`, or `WouldBlock` when the
    /// socket is full (TLS: when output it refused earlier is still waiting).
    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else { return self.tcp.write(buf) };
        if tls.wants_write() {
            flush_tls(&mut self.tcp, tls)?;
        }
        let n = tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls' own buffer is full (only possible before the handshake finishes).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match flush_tls(&mut self.tcp, tls) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// TLS: writes what the socket refused before (handshake messages, alerts, records); `Ok`
    /// also when the socket is still full.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(tls) if tls.wants_write() => match flush_tls(&mut self.tcp, tls) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// Writes rustls' pending TLS output until it is empty (`Ok`) or the socket is full
/// (`WouldBlock`).
fn flush_tls(tcp: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves decrypted plaintext into `out`: (bytes moved, end of stream reached).
fn take_plaintext(tls: &mut ClientConnection, out: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut n = 0;
    while n < out.len() {
        match tls.reader().read(&mut out[n..]) {
            Ok(0) => return Ok((n, true)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((n, false)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((n, true)),
            Err(e) => return Err(e),
        }
    }
    Ok((n, false))
}

/// One TLS read: plaintext left from before, else one socket read of up to [`READ_MAX`] bytes
/// into the back of `buf`, decrypted into its front (repeated while a read brings only part of
/// a record). Handshake messages rustls produces on the way go out at once.
fn read_tls(tcp: &mut TcpStream, tls: &mut ClientConnection, more: &mut bool, buf: &mut [u8]) -> io::Result<usize> {
    let (n, eof) = take_plaintext(tls, buf)?;
    if n > 0 || eof {
        // More plaintext, or the end, may follow: the caller reads again.
        *more = n > 0;
        return Ok(n);
    }
    let read_len = (buf.len() / 4).clamp(1, READ_MAX);
    let (out, cipher) = buf.split_at_mut(buf.len() - read_len);
    debug_assert!(out.len() >= read_len + HELD_MAX, "read buffer too small for TLS");
    loop {
        let got = match tcp.read(cipher) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                *more = false;
                return Err(e);
            }
        };
        let mut input = &cipher[..got];
        let mut n = 0;
        let mut eof = false;
        loop {
            // An empty reader is how rustls learns of the TCP EOF: only when the socket said so.
            if got > 0 && input.is_empty() {
                break;
            }
            // Ok(0): the EOF given, or a close_notify already received (nothing more is taken).
            let took = tls.read_tls(&mut input)?;
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued for the server, if the socket takes it.
                let _ = flush_tls(tcp, tls);
                return Err(tls_error(e));
            }
            let (k, end) = take_plaintext(tls, &mut out[n..])?;
            n += k;
            eof |= end || took == 0;
            if eof {
                break;
            }
        }
        match flush_tls(tcp, tls) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if got == 0 && !eof {
            // TCP EOF with no TLS end seen yet (rustls reports it on the next plaintext read).
            eof = true;
        }
        *more = got == read_len || eof || !input.is_empty();
        if n > 0 || eof {
            return Ok(n);
        }
        if got < read_len {
            // Only part of a record (or a handshake message with no plaintext): wait for more.
            return Err(io::ErrorKind::WouldBlock.into());
        }
    }
}
