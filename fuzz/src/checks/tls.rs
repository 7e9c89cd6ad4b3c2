//! Target `tls`: the TLS-to-plaintext glue, `tls::session::Tls::recv`, against a real rustls
//! client over `memsock::MemSocket`. The client (TLS 1.3 or 1.2, one AEAD suite, a record size
//! limit, all chosen by the input) seals a sequence of application-data messages, KeyUpdates and
//! optionally `close_notify`; the record stream is cut into input-chosen chunks on the socket and
//! read with input-chosen budgets (`want` in 1..=65536), the way the reactor reads: a read that
//! does not report `full` waits until more bytes arrive (edge-triggered), unless EOF was seen.
//!
//! Properties, intact stream: the plaintext delivered is exactly the concatenation of the messages,
//! in order; no read gives more than `want` (nor zero bytes as `Done`); whenever the reader goes
//! idle, the plaintext of every complete record on the socket so far has been delivered (nothing
//! whole is left in the carry buffer while the reactor waits: that would stall the connection) and
//! the socket is drained; `close_notify` is `End` after all the data; once the socket is drained no
//! carry buffer is held; after `release` none is. Tampered stream (flipped, inserted, deleted bytes,
//! truncation): never a panic, never a byte that differs from what was sent (what is delivered is a
//! prefix of the messages), and unless the session failed, every record wholly before the first
//! touched byte was delivered; a failed session stays failed.
//!
//! Owns this check only. Imports only `input`. The server certificate (P-256, rcgen) and the client
//! configurations are made once per process.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider, kx_group};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, SupportedCipherSuite};
use wsecho::memsock::MemSocket;
use wsecho::metrics::Metrics;
use wsecho::socket::Io;
use wsecho::tls::config::{TlsFiles, TlsSource};
use wsecho::tls::session::{Read, Tls};

use super::input::Bytes;

/// Headroom in front of the plaintext, as the server's `shared::PAD`.
const LO: usize = 160;
/// Plaintext of one input at most (messages past it are not sent).
const MAX_TOTAL: usize = 1 << 17;
/// Reads with the input's budgets; after these, every budget is 64 KiB (bounds one input's time:
/// carried plaintext read a byte at a time is moved once per read).
const SMALL_READS: usize = 4096;

/// The server's certificate source and one client configuration per (version, suite).
struct Fixture {
    source: Arc<TlsSource>,
    /// TLS 1.3: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305; then the same in TLS 1.2.
    clients: Vec<ClientConfig>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let dir = std::env::temp_dir().join(format!("wsecho-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles { cert: dir.join("c.pem"), key: dir.join("k.pem") };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let source = TlsSource::open(files);
        let _ = std::fs::remove_dir_all(&dir);
        let source = source.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let suites = [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        let clients = suites
            .into_iter()
            .map(|s| {
                let version = if matches!(s, SupportedCipherSuite::Tls13(_)) {
                    &rustls::version::TLS13
                } else {
                    &rustls::version::TLS12
                };
                // X25519 alone: the cheapest key exchange the server accepts (the handshake is
                // not what this target tests, and it runs once per input).
                let provider = rustls::crypto::CryptoProvider {
                    cipher_suites: vec![s],
                    kx_groups: vec![kx_group::X25519],
                    ..default_provider()
                };
                let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth();
                // Every input makes a full handshake: no state carried from one input to the next.
                c.resumption = rustls::client::Resumption::disabled();
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                c
            })
            .collect();
        Fixture { source, clients }
    })
}

/// Byte `k` of the concatenated messages: not periodic within a record or a message, so that a
/// record delivered twice, dropped or out of order shows.
fn pattern(k: usize, seed: u8) -> u8 {
    ((k as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed
}

/// What the client wrote up to a point: the end of its records on the wire, the plaintext before
/// it, and whether that was `close_notify`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    wire: usize,
    plain: usize,
    close: bool,
}

/// The server side: one session read like the reactor reads it, with the delivered plaintext.
struct Reader<'e> {
    tls: Tls,
    slot: u32,
    sock: MemSocket,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    m: Metrics,
    expect: &'e [u8],
    /// Bytes of the stream and of the input: with the plaintext, a bound on the number of reads.
    bound: usize,
    got: usize,
    reads: usize,
    /// `End` or `Failed`, once seen.
    ended: Option<Io>,
    /// The last read reported `full` (or new bytes arrived since): the reactor would read again.
    ready: bool,
    /// The socket reported EOF: like `conn` after a hangup event, read until the end regardless
    /// of `full` (the FIN may have come with the last bytes, in the same edge).
    hup: bool,
}

impl Reader<'_> {
    fn recv(&mut self, want: usize) -> Read {
        let want = if self.reads >= SMALL_READS { 1 << 16 } else { want };
        self.reads += 1;
        let r = self.tls.recv(self.slot, &self.sock, &mut self.rbuf, LO, want, &mut self.out, &mut self.m);
        // Handshake output (the server's last flight, tickets) is not what this target checks.
        self.out.clear();
        if let Io::Done(n) = r.io {
            assert!(n >= 1 && n <= want, "recv(want {want}) gave Done({n})");
            let at = self.got;
            assert!(
                at + n <= self.expect.len(),
                "recv delivered {} bytes past the {} sent",
                at + n - self.expect.len(),
                self.expect.len()
            );
            if let Some(i) = (0..n).find(|&i| self.rbuf[LO + i] != self.expect[at + i]) {
                panic!("recv delivered a wrong byte at plaintext offset {} (read of {n} at {at})", at + i);
            }
            self.got += n;
        }
        r
    }

    /// Up to `reads` reads (0: as long as the reactor would) with budget `want`.
    fn read(&mut self, want: usize, reads: u8) {
        let mut left = if reads == 0 { usize::MAX } else { usize::from(reads) };
        while left > 0 && self.ready && self.ended.is_none() {
            left -= 1;
            let r = self.recv(want);
            match r.io {
                Io::End | Io::Failed => {
                    self.ended = Some(r.io);
                    self.ready = false;
                }
                _ => {
                    self.ready = r.full || self.hup;
                    if !r.full {
                        assert_eq!(self.sock.unread(), 0, "recv reported not full with bytes still on the socket");
                    }
                }
            }
            // A read delivers a byte, consumes socket bytes, or waits for the next step.
            assert!(self.reads <= 2 * self.bound + 64, "recv makes no progress");
        }
    }
}

/// Target `tls`. Input: `[flags, frag, n, n ops, (tampering), schedule]`.
///
/// - flags: bit 0 TLS 1.2 (else 1.3); bits 1-2 suite (AES-128-GCM, AES-256-GCM,
///   ChaCha20-Poly1305, AES-128-GCM); bit 3 tamper; bit 4 (TLS 1.3) the client's Finished flight is
///   the start of the cut stream (the handshake completes inside it, application data may follow in
///   the same read); bit 5 `close_notify` after the messages; bit 6 the socket reports EOF after
///   the stream; bit 7 a 64 KiB read buffer (else `Tls::MIN_READ_BUFFER`), both after `LO`.
/// - frag: the client's `max_fragment_size`: 0 rustls' default (16 KiB records), else
///   32 + 64 × (frag − 1).
/// - n (low 5 bits) ops, each a tag byte: `tag & 3` = 0: a message, its length the next u16;
///   1: a message of `tag >> 2` bytes; 2: a client KeyUpdate (`refresh_traffic_keys`, TLS 1.3);
///   3: a message of `(tag >> 2) × 1024 + next byte` bytes. Messages past 128 KiB in all are
///   skipped. Message bytes follow [`pattern`].
/// - tampering (flag bit 3): a count (low 3 bits), then per change `[kind, position u24, value]`:
///   `kind & 3` = 0 XOR the byte at position with `value` (at least 1), 1 insert `value`, 2 delete
///   `value + 1` bytes, 3 truncate; positions modulo the stream's length + 1.
/// - schedule: steps `[chunk u16, want u16, reads u8]`: push the next `chunk` bytes of the stream,
///   then read up to `reads` times (0: until the reader would wait) with budget `want + 1`. After
///   the steps, the rest of the stream is pushed (and EOF with bit 6) and read with 64 KiB budgets.
pub fn check_tls(data: &[u8]) {
    let mut r = Bytes::new(data);
    let flags = r.u8();
    let frag = r.u8();
    let tls13 = flags & 1 == 0;
    let suite = usize::from((flags >> 1) & 3) % 3 + if tls13 { 0 } else { 3 };
    let tamper = flags & 8 != 0;
    let flight_in_stream = tls13 && flags & 0x10 != 0;
    let close_notify = flags & 0x20 != 0;
    let eof = flags & 0x40 != 0;
    let read_buffer = if flags & 0x80 != 0 { 1 << 16 } else { Tls::MIN_READ_BUFFER };

    let f = fixture();
    let mut cfg = f.clients[suite].clone();
    cfg.max_fragment_size = (frag != 0).then(|| 32 + (usize::from(frag) - 1) * 64);
    let mut client = ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
    client.set_buffer_limit(None);

    let mut rd = Reader {
        tls: Tls::new(f.source.clone(), 1 << 17, 1),
        slot: 0,
        sock: MemSocket::new(),
        rbuf: vec![0; LO + read_buffer],
        out: Vec::with_capacity(1 << 16),
        m: Metrics::default(),
        expect: &[],
        bound: 0,
        got: 0,
        reads: 0,
        ended: None,
        ready: false,
        hup: false,
    };
    rd.slot = rd.tls.start().expect("Tls::start");

    // The handshake, flight by flight, each flight whole on the socket.
    let mut wire = Vec::new();
    let flush = |c: &mut ClientConnection, w: &mut Vec<u8>| {
        while c.wants_write() {
            c.write_tls(w).unwrap();
        }
    };
    for round in 0.. {
        assert!(round < 10, "handshake did not complete");
        flush(&mut client, &mut wire);
        if flight_in_stream && !client.is_handshaking() {
            break; // The client's Finished stays in `wire`, the start of the cut stream.
        }
        rd.sock.push_input(&wire);
        wire.clear();
        let mut out = Vec::new();
        loop {
            let res = rd.tls.recv(rd.slot, &rd.sock, &mut rd.rbuf, LO, 4096, &mut rd.out, &mut rd.m);
            out.append(&mut rd.out);
            match res.io {
                Io::Retry => continue,
                Io::Blocked => break,
                io => panic!("handshake read: {io:?} (failures {:?})", rd.m.tls_failures),
            }
        }
        if !out.is_empty() {
            client.read_tls(&mut &out[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        if !client.is_handshaking() && rd.tls.is_open(rd.slot) {
            break;
        }
    }

    // The stream: messages, key updates, close_notify; a mark after each.
    let mut marks = vec![Mark { wire: wire.len(), plain: 0, close: false }];
    let mut expect = Vec::new();
    let ops = r.u8() & 31;
    for _ in 0..ops {
        let tag = r.u8();
        let len = match tag & 3 {
            0 => usize::from(r.u16()),
            1 => usize::from(tag >> 2),
            2 => {
                // TLS 1.2 has no key update: rustls refuses, nothing is sent.
                let _ = client.refresh_traffic_keys();
                flush(&mut client, &mut wire);
                marks.push(Mark { wire: wire.len(), plain: expect.len(), close: false });
                continue;
            }
            _ => usize::from(tag >> 2) * 1024 + usize::from(r.u8()),
        };
        if expect.len() + len > MAX_TOTAL {
            continue;
        }
        let start = expect.len();
        expect.extend((start..start + len).map(|k| pattern(k, flags)));
        client.writer().write_all(&expect[start..]).unwrap();
        flush(&mut client, &mut wire);
        marks.push(Mark { wire: wire.len(), plain: expect.len(), close: false });
    }
    if close_notify {
        client.send_close_notify();
        flush(&mut client, &mut wire);
        marks.push(Mark { wire: wire.len(), plain: expect.len(), close: true });
    }
    rd.expect = &expect;
    rd.bound = expect.len() + wire.len() + data.len();

    // Tampering: the first touched byte bounds the intact prefix.
    let mut intact = wire.len();
    if tamper {
        for _ in 0..r.u8() & 7 {
            let kind = r.u8();
            let pos = (usize::from(r.u8()) << 16 | usize::from(r.u16())) % (wire.len() + 1);
            let value = r.u8();
            match kind & 3 {
                0 if pos < wire.len() => wire[pos] ^= value.max(1),
                0 => continue,
                1 => wire.insert(pos, value),
                2 => {
                    let end = (pos + usize::from(value) + 1).min(wire.len());
                    wire.drain(pos..end);
                }
                _ => wire.truncate(pos),
            }
            intact = intact.min(pos);
        }
    }
    // Whole records on the socket (and intact) at `pushed`: their plaintext is owed.
    let owed = |pushed: usize| {
        let limit = pushed.min(intact);
        marks.iter().filter(|k| k.wire <= limit).fold((0, false), |(p, c), k| (p.max(k.plain), c || k.close))
    };

    // The schedule.
    let mut pushed = 0;
    let mut eof_sent = false;
    while !r.is_empty() && rd.ended.is_none() {
        let chunk = usize::from(r.u16());
        let want = usize::from(r.u16()) + 1;
        let reads = r.u8();
        let end = (pushed + chunk).min(wire.len());
        if end > pushed {
            rd.sock.push_input(&wire[pushed..end]);
            pushed = end;
            rd.ready = true;
        }
        if eof && pushed == wire.len() && !eof_sent {
            rd.sock.close_input();
            eof_sent = true;
            rd.ready = true;
            rd.hup = true;
        }
        rd.read(want, reads);
        if !rd.ready && rd.ended.is_none() {
            let (plain, closed) = owed(pushed);
            assert!(rd.got >= plain, "reader idle with {} of {plain} bytes delivered ({pushed} bytes pushed)", rd.got);
            assert!(!closed, "reader idle with close_notify on the socket");
        }
    }
    if pushed < wire.len() {
        rd.sock.push_input(&wire[pushed..]);
        pushed = wire.len();
        rd.ready = true;
    }
    if eof && !eof_sent {
        rd.sock.close_input();
        rd.ready = true;
        rd.hup = true;
    }
    rd.read(1 << 16, 0);

    let (plain, closed) = owed(pushed);
    match rd.ended {
        Some(Io::Failed) => {
            // (A KeyUpdate or a close_notify right behind the client's Finished once failed here:
            // fuzz/regressions/tls/key-update-behind-finished, close-notify-behind-finished.)
            assert!(tamper, "the session failed (failures {:?})", rd.m.tls_failures);
            assert_eq!(rd.recv(1 << 16).io, Io::Failed, "a failed session read again");
        }
        Some(_) => {
            // End: at close_notify or EOF; in a tampered TLS 1.2 stream a changed record version
            // may go unnoticed (it is not authenticated), and a close_notify after it ends too.
            assert!(tamper || closed || eof, "End without close_notify or EOF");
            assert!(rd.got >= plain, "{} of {plain} bytes delivered by the end", rd.got);
            assert_eq!(rd.recv(1 << 16).io, Io::End, "a read after the end");
        }
        None => {
            assert!(rd.got >= plain, "{} of {plain} bytes delivered by the end", rd.got);
            assert!(
                !closed && !eof,
                "close_notify or EOF did not end the stream (flags {flags:#x}, {} of {} bytes, {} reads)",
                rd.got,
                expect.len(),
                rd.reads
            );
            assert_eq!(rd.sock.unread(), 0, "bytes left on the socket");
        }
    }
    if !tamper && rd.ended != Some(Io::Failed) {
        assert_eq!(rd.got, expect.len(), "plaintext delivered");
        assert!(rd.tls.is_open(rd.slot), "the handshake did not complete");
        assert_eq!(rd.tls.carry_buffers_out(), 0, "a carry buffer is held with the socket drained");
    }
    rd.tls.release(&mut rd.slot);
    assert_eq!(rd.tls.carry_buffers_out(), 0, "a carry buffer is held after release");
}
