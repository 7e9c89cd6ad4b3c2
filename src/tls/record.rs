//! The TLS record layer after the handshake: AEAD records sealed and opened in place.
//!
//! Owns [`RecordLayer`]: the two directions' keys, nonces and sequence numbers of one established
//! TLS 1.2 or 1.3 connection (AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305, the AEADs rustls
//! negotiates), as handed over by rustls once its handshake is done — the same split kTLS makes,
//! done in user space because this kernel has no kTLS. Opening decrypts a record where it lies in
//! the reactor's read buffer; sealing writes records into the reactor's staging buffer. Neither
//! allocates. It does not parse a byte stream into records, drive the handshake or touch a socket
//! (see `tls::session`), and it knows nothing of WebSocket.
//!
//! Formats (RFC 8446 §5.2, RFC 5246 §6.2.3.3, RFC 5288, RFC 7905): TLS 1.3 seals
//! `content || type` with the 5-byte record header as additional data and `iv ^ seq` as nonce;
//! TLS 1.2 AES-GCM sends an 8-byte explicit nonce (rustls' choice, followed here: the low 8 bytes
//! of `iv ^ seq`) and TLS 1.2 ChaCha20-Poly1305 none, both with `seq || type || version || length`
//! as additional data.

use aws_lc_rs::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305};
use aws_lc_rs::hkdf;
use rustls::ConnectionTrafficSecrets;

/// Record header: type, legacy version, length.
pub const HEADER_LEN: usize = 5;
/// Most plaintext in one record (RFC 8446 §5.1).
pub const MAX_PLAIN: usize = 16_384;
/// Longest record body accepted: TLS 1.2 allows 2,048 bytes of expansion (RFC 5246 §6.2.3),
/// TLS 1.3 256 (checked per version in [`RecordLayer::open`]).
pub const MAX_BODY: usize = MAX_PLAIN + 2_048;
/// Longest record on the wire, header included.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_BODY;
/// Most bytes sealing adds to one record's plaintext (TLS 1.2 AES-GCM: header, explicit nonce,
/// tag; TLS 1.3: header, type byte, tag).
pub const MAX_OVERHEAD: usize = HEADER_LEN + 8 + TAG_LEN;
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;

/// Content type `alert` (RFC 8446 §5.1).
pub const ALERT: u8 = 21;
/// Content type `handshake`.
pub const HANDSHAKE: u8 = 22;
/// Content type `application_data`.
pub const APPLICATION_DATA: u8 = 23;

/// Bytes sealing `len` bytes of plaintext adds, at most.
pub const fn sealed_overhead(len: usize) -> usize {
    (len / MAX_PLAIN + 1) * MAX_OVERHEAD
}

/// Why a record could not be opened: each maps to the fatal alert the RFCs name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Authentication failed: `bad_record_mac` (20).
    BadMac,
    /// Longer than the version allows: `record_overflow` (22).
    Overflow,
    /// A type or layout this state does not allow: `unexpected_message` (10).
    Unexpected,
    /// The sequence number would wrap (2^64 records): `internal_error`-like, close.
    Exhausted,
}

impl RecordError {
    /// The TLS alert description for this error.
    pub fn alert(self) -> u8 {
        match self {
            RecordError::BadMac => 20,
            RecordError::Overflow => 22,
            RecordError::Unexpected => 10,
            RecordError::Exhausted => 80,
        }
    }

    /// For the debug log.
    pub fn reason(self) -> &'static str {
        match self {
            RecordError::BadMac => "record failed authentication (bad_record_mac)",
            RecordError::Overflow => "record longer than the protocol allows (record_overflow)",
            RecordError::Unexpected => "record of a type not allowed here (unexpected_message)",
            RecordError::Exhausted => "record sequence number exhausted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tls13,
    Tls12Gcm,
    Tls12Chacha,
}

/// A TLS 1.3 application traffic secret (32 bytes with SHA-256 suites, 48 with SHA-384), kept
/// so that a key update can derive the next one (RFC 8446 §7.2). Empty: key updates unavailable.
#[derive(Clone, Copy)]
pub struct TrafficSecret {
    buf: [u8; 48],
    len: u8,
}

impl Default for TrafficSecret {
    fn default() -> Self {
        TrafficSecret { buf: [0; 48], len: 0 }
    }
}

impl core::fmt::Debug for TrafficSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the secret.
        write!(f, "TrafficSecret({} bytes)", self.len)
    }
}

impl TrafficSecret {
    /// A secret as rustls reports it (`None` if longer than any TLS 1.3 hash).
    pub fn new(bytes: &[u8]) -> Option<TrafficSecret> {
        let mut buf = [0u8; 48];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(TrafficSecret { buf, len: bytes.len() as u8 })
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn hash(&self) -> hkdf::Algorithm {
        if self.len == 48 {
            hkdf::HKDF_SHA384
        } else {
            hkdf::HKDF_SHA256
        }
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
fn expand_label(secret: &TrafficSecret, label: &[u8], out: &mut [u8]) -> bool {
    let prk = hkdf::Prk::new_less_safe(secret.hash(), secret.bytes());
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).and_then(|okm| okm.fill(out)).is_ok()
}

/// Key updates a peer may have made before the hand-over that [`Direction::adopt`] follows (a
/// KeyUpdate record is 27 bytes: many fit in the read that completes a handshake; each step costs
/// three HKDF expansions, so at most 64 bound what a client can make a handshake cost, ~0.2 ms).
const MAX_EARLY_UPDATES: usize = 64;

/// One direction: key, IV, the next sequence number, and (TLS 1.3) the secret they came from.
struct Direction {
    key: LessSafeKey,
    alg: &'static Algorithm,
    iv: [u8; NONCE_LEN],
    seq: u64,
    secret: TrafficSecret,
}

impl Direction {
    fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> Option<Direction> {
        let (alg, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return None,
        };
        Direction::from_parts(alg, key.as_ref(), iv.as_ref(), seq)
    }

    fn from_parts(alg: &'static Algorithm, key: &[u8], iv: &[u8], seq: u64) -> Option<Direction> {
        let key = LessSafeKey::new(UnboundKey::new(alg, key).ok()?);
        let iv: [u8; NONCE_LEN] = iv.try_into().ok()?;
        Some(Direction { key, alg, iv, seq, secret: TrafficSecret::default() })
    }

    /// The key and IV `secret` gives for this direction's AEAD.
    fn derive(alg: &'static Algorithm, secret: &TrafficSecret) -> Option<([u8; 32], [u8; NONCE_LEN])> {
        let mut key = [0u8; 32];
        let mut iv = [0u8; NONCE_LEN];
        let ok = expand_label(secret, b"key", &mut key[..alg.key_len()]) && expand_label(secret, b"iv", &mut iv);
        ok.then_some((key, iv))
    }

    /// Keeps `secret` for key updates if it is the one this direction's key came from (checked
    /// by deriving the key again: a wrong secret is never used, key updates are refused instead).
    /// The key may be a few generations past the secret: a client's KeyUpdate that arrived with
    /// its Finished was applied by rustls before the hand-over, so the secret is stepped forward
    /// (at most [`MAX_EARLY_UPDATES`] times) until it gives the key.
    fn adopt(&mut self, secret: TrafficSecret, key: &[u8]) {
        let mut s = secret;
        for _ in 0..=MAX_EARLY_UPDATES {
            if let Some((k, iv)) = Direction::derive(self.alg, &s) {
                if k[..self.alg.key_len()] == *key && iv == self.iv {
                    self.secret = s;
                    return;
                }
            }
            let mut next = TrafficSecret { buf: [0; 48], len: s.len };
            if !expand_label(&s, b"traffic upd", &mut next.buf[..usize::from(s.len)]) {
                return;
            }
            s = next;
        }
    }

    /// The next generation of this direction (RFC 8446 §7.2): a new secret, key and IV, and the
    /// sequence number back to 0. `false`: no secret to derive it from.
    fn update(&mut self) -> bool {
        if self.secret.len == 0 {
            return false;
        }
        let mut next = TrafficSecret { buf: [0; 48], len: self.secret.len };
        let l = usize::from(next.len);
        if !expand_label(&self.secret, b"traffic upd", &mut next.buf[..l]) {
            return false;
        }
        let Some((k, iv)) = Direction::derive(self.alg, &next) else { return false };
        let Some(mut d) = Direction::from_parts(self.alg, &k[..self.alg.key_len()], &iv, 0) else { return false };
        d.secret = next;
        *self = d;
        true
    }

    /// `iv ^ seq` (seq as a 96-bit big-endian number), and advances `seq`.
    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::Exhausted)?;
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Ok(n)
    }
}

/// The record protection of one established connection, both directions.
pub struct RecordLayer {
    tx: Direction,
    rx: Direction,
    kind: Kind,
}

impl core::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the keys.
        f.debug_struct("RecordLayer")
            .field("kind", &self.kind)
            .field("tx_seq", &self.tx.seq)
            .field("rx_seq", &self.rx.seq)
            .finish()
    }
}

impl RecordLayer {
    /// Builds both directions from what rustls extracted; `None` for an AEAD this layer does not
    /// implement (rustls negotiates none other).
    /// TLS 1.3: `secrets` are the server's and the client's application traffic secrets, kept
    /// for key updates when they match the keys.
    pub fn new(
        tls13: bool,
        tx: (u64, &ConnectionTrafficSecrets),
        rx: (u64, &ConnectionTrafficSecrets),
        secrets: Option<(TrafficSecret, TrafficSecret)>,
    ) -> Option<RecordLayer> {
        let kind = match (tls13, tx.1) {
            (true, _) => Kind::Tls13,
            (false, ConnectionTrafficSecrets::Chacha20Poly1305 { .. }) => Kind::Tls12Chacha,
            (false, _) => Kind::Tls12Gcm,
        };
        let mut r = RecordLayer { tx: Direction::new(tx.0, tx.1)?, rx: Direction::new(rx.0, rx.1)?, kind };
        if let (true, Some((server, client))) = (tls13, secrets) {
            r.tx.adopt(server, key_of(tx.1));
            r.rx.adopt(client, key_of(rx.1));
        }
        Some(r)
    }

    /// Whether key updates are possible (TLS 1.3 with both secrets known).
    pub fn can_update(&self) -> bool {
        self.tx.secret.len != 0 && self.rx.secret.len != 0
    }

    /// Whether this is TLS 1.3.
    pub fn is_tls13(&self) -> bool {
        self.kind == Kind::Tls13
    }

    /// Records sealed so far in the send direction (for the key-usage limit).
    pub fn tx_seq(&self) -> u64 {
        self.tx.seq
    }

    /// Records opened so far in the receive direction.
    pub fn rx_seq(&self) -> u64 {
        self.rx.seq
    }

    /// The next send key (TLS 1.3 key update); `false` if unavailable.
    pub fn update_tx(&mut self) -> bool {
        self.tx.update()
    }

    /// The next receive key (the peer's TLS 1.3 key update); `false` if unavailable.
    pub fn update_rx(&mut self) -> bool {
        self.rx.update()
    }

    /// Opens the complete record `rec` (header included) in place: returns its content type and
    /// where its plaintext now lies in `rec`.
    pub fn open(&mut self, rec: &mut [u8]) -> Result<(u8, core::ops::Range<usize>), RecordError> {
        let (typ, body) = rec.split_at_mut(HEADER_LEN);
        let outer = typ[0];
        let hdr: [u8; HEADER_LEN] = [typ[0], typ[1], typ[2], typ[3], typ[4]];
        match self.kind {
            Kind::Tls13 => {
                if outer != APPLICATION_DATA {
                    return Err(RecordError::Unexpected);
                }
                if body.len() > MAX_PLAIN + 256 {
                    return Err(RecordError::Overflow);
                }
                let nonce = Nonce::assume_unique_for_key(self.rx.next_nonce()?);
                let plain = self.rx.key.open_in_place(nonce, Aad::from(hdr), body).map_err(|_| RecordError::BadMac)?;
                // Inner plaintext: content || type || zeros (RFC 8446 §5.4).
                let Some(t) = plain.iter().rposition(|&b| b != 0) else { return Err(RecordError::Unexpected) };
                if t > MAX_PLAIN {
                    return Err(RecordError::Overflow);
                }
                Ok((plain[t], HEADER_LEN..HEADER_LEN + t))
            }
            Kind::Tls12Gcm | Kind::Tls12Chacha => {
                if !matches!(outer, APPLICATION_DATA | ALERT | HANDSHAKE) {
                    return Err(RecordError::Unexpected);
                }
                if body.len() > MAX_BODY {
                    return Err(RecordError::Overflow);
                }
                let explicit = if self.kind == Kind::Tls12Gcm { 8 } else { 0 };
                let Some(plain_len) = body.len().checked_sub(explicit + TAG_LEN) else {
                    return Err(RecordError::BadMac);
                };
                if plain_len > MAX_PLAIN {
                    return Err(RecordError::Overflow);
                }
                let mut nonce = self.rx.next_nonce()?;
                if explicit > 0 {
                    nonce[4..].copy_from_slice(&body[..8]);
                }
                let seq = self.rx.seq - 1;
                let aad = tls12_aad(seq, outer, plain_len);
                let nonce = Nonce::assume_unique_for_key(nonce);
                self.rx
                    .key
                    .open_in_place(nonce, Aad::from(aad), &mut body[explicit..])
                    .map_err(|_| RecordError::BadMac)?;
                let at = HEADER_LEN + explicit;
                Ok((outer, at..at + plain_len))
            }
        }
    }

    /// Appends `plain` sealed as records of content type `typ` (at most [`MAX_PLAIN`] bytes each)
    /// to `out`. The caller sizes `out` ([`sealed_overhead`]) so that this does not allocate.
    pub fn seal(&mut self, typ: u8, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        for chunk in plain.chunks(MAX_PLAIN) {
            self.seal_one(typ, chunk, out)?;
        }
        Ok(())
    }

    fn seal_one(&mut self, typ: u8, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let start = out.len();
        let nonce = self.tx.next_nonce()?;
        match self.kind {
            Kind::Tls13 => {
                let body = chunk.len() + 1 + TAG_LEN;
                let hdr = header(APPLICATION_DATA, body);
                out.extend_from_slice(&hdr);
                out.extend_from_slice(chunk);
                out.push(typ);
                let n = Nonce::assume_unique_for_key(nonce);
                let tag = self.tx.key.seal_in_place_separate_tag(n, Aad::from(hdr), &mut out[start + HEADER_LEN..]);
                out.extend_from_slice(tag.map_err(|_| RecordError::Exhausted)?.as_ref());
            }
            Kind::Tls12Gcm | Kind::Tls12Chacha => {
                let explicit = if self.kind == Kind::Tls12Gcm { 8 } else { 0 };
                out.extend_from_slice(&header(typ, explicit + chunk.len() + TAG_LEN));
                if explicit > 0 {
                    out.extend_from_slice(&nonce[4..]);
                }
                out.extend_from_slice(chunk);
                let aad = tls12_aad(self.tx.seq - 1, typ, chunk.len());
                let n = Nonce::assume_unique_for_key(nonce);
                let from = start + HEADER_LEN + explicit;
                let tag = self.tx.key.seal_in_place_separate_tag(n, Aad::from(aad), &mut out[from..]);
                out.extend_from_slice(tag.map_err(|_| RecordError::Exhausted)?.as_ref());
            }
        }
        Ok(())
    }
}

fn key_of(s: &ConnectionTrafficSecrets) -> &[u8] {
    match s {
        ConnectionTrafficSecrets::Aes128Gcm { key, .. }
        | ConnectionTrafficSecrets::Aes256Gcm { key, .. }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, .. } => key.as_ref(),
        _ => &[],
    }
}

fn header(typ: u8, body: usize) -> [u8; HEADER_LEN] {
    let l = body as u16;
    [typ, 3, 3, (l >> 8) as u8, l as u8]
}

fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = typ;
    a[9] = 3;
    a[10] = 3;
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// The length of the record starting at `buf[0]`, header included, once the header is there.
#[inline]
pub fn record_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER_LEN).then(|| HEADER_LEN + usize::from(u16::from_be_bytes([buf[3], buf[4]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(kind: u8, k: u8) -> Direction {
        let (alg, len) = match kind {
            0 => (&AES_128_GCM, 16),
            1 => (&AES_256_GCM, 32),
            _ => (&CHACHA20_POLY1305, 32),
        };
        Direction::from_parts(alg, &[k; 32][..len], &[k ^ 0x5a; 12], 0).unwrap()
    }

    /// A pair of layers facing each other (a's tx is b's rx).
    fn pair(tls13: bool, kind: u8) -> (RecordLayer, RecordLayer) {
        let k = match (tls13, kind) {
            (true, _) => Kind::Tls13,
            (false, 2) => Kind::Tls12Chacha,
            _ => Kind::Tls12Gcm,
        };
        let a = RecordLayer { tx: dir(kind, 1), rx: dir(kind, 2), kind: k };
        let b = RecordLayer { tx: dir(kind, 2), rx: dir(kind, 1), kind: k };
        (a, b)
    }

    #[test]
    fn records_round_trip_in_every_mode_and_size() {
        for tls13 in [true, false] {
            for kind in 0..3 {
                let (mut a, mut b) = pair(tls13, kind);
                for len in [0usize, 1, 20, MAX_PLAIN - 1, MAX_PLAIN, MAX_PLAIN + 1, 3 * MAX_PLAIN + 7] {
                    let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                    let mut wire = Vec::new();
                    a.seal(APPLICATION_DATA, &plain, &mut wire).unwrap();
                    assert!(wire.len() <= len + sealed_overhead(len));
                    let mut got = Vec::new();
                    let mut pos = 0;
                    while pos < wire.len() {
                        let n = record_len(&wire[pos..]).unwrap();
                        let (t, r) = b.open(&mut wire[pos..pos + n]).unwrap();
                        assert_eq!(t, APPLICATION_DATA);
                        got.extend_from_slice(&wire[pos..pos + n][r]);
                        pos += n;
                    }
                    assert_eq!(got, plain, "tls13={tls13} kind={kind} len={len}");
                }
            }
        }
    }

    #[test]
    fn key_updates_need_the_secret_and_keep_both_ends_in_step() {
        for kind in 0..3u8 {
            let (mut a, mut b) = pair(true, kind);
            assert!(!a.can_update() && !a.update_tx(), "no secret: no update");
            let len = if kind == 1 { 48 } else { 32 };
            let s1 = TrafficSecret::new(&[kind + 1; 48][..len]).unwrap();
            let s2 = TrafficSecret::new(&[kind + 9; 48][..len]).unwrap();
            // Keys derived from the secrets, as the hand-over would give them.
            let mk = |s: &TrafficSecret| {
                let alg = [&AES_128_GCM, &AES_256_GCM, &CHACHA20_POLY1305][usize::from(kind)];
                let (k, iv) = Direction::derive(alg, s).unwrap();
                let mut d = Direction::from_parts(alg, &k[..alg.key_len()], &iv, 5).unwrap();
                d.adopt(*s, &k[..alg.key_len()]);
                d
            };
            a.tx = mk(&s1);
            a.rx = mk(&s2);
            b.tx = mk(&s2);
            b.rx = mk(&s1);
            assert!(a.can_update() && b.can_update());
            for round in 0..3u8 {
                let mut wire = Vec::new();
                a.seal(APPLICATION_DATA, &[round; 50], &mut wire).unwrap();
                let (_, r) = b.open(&mut wire).unwrap();
                assert_eq!(wire[r], [round; 50]);
                assert!(a.update_tx() && b.update_rx());
                assert_eq!((a.tx_seq(), b.rx_seq()), (0, 0), "sequence numbers restart");
            }
            // One side that does not update can no longer read the other.
            assert!(a.update_tx());
            let mut wire = Vec::new();
            a.seal(APPLICATION_DATA, b"x", &mut wire).unwrap();
            assert_eq!(b.open(&mut wire), Err(RecordError::BadMac));
            // A secret that does not give the key is not adopted.
            let mut d = mk(&s1);
            d.secret = TrafficSecret::default();
            d.adopt(s2, &[0; 16]);
            assert_eq!(d.secret.len, 0);
        }
    }

    #[test]
    fn a_flipped_bit_or_a_replayed_record_fails_authentication() {
        for tls13 in [true, false] {
            let (mut a, mut b) = pair(tls13, 0);
            let mut wire = Vec::new();
            a.seal(APPLICATION_DATA, b"hello", &mut wire).unwrap();
            let mut bad = wire.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(b.open(&mut bad), Err(RecordError::BadMac));
            // The failed record used up sequence number 0: the genuine one no longer opens.
            let mut again = wire.clone();
            assert_eq!(b.open(&mut again), Err(RecordError::BadMac));
        }
    }

    #[test]
    fn oversized_and_misplaced_records_are_refused() {
        let (_, mut b) = pair(true, 1);
        let mut rec = vec![0u8; HEADER_LEN + MAX_PLAIN + 257];
        rec[..HEADER_LEN].copy_from_slice(&header(APPLICATION_DATA, MAX_PLAIN + 257));
        assert_eq!(b.open(&mut rec), Err(RecordError::Overflow));
        let mut hs = vec![HANDSHAKE, 3, 3, 0, 20];
        hs.resize(25, 0);
        assert_eq!(b.open(&mut hs), Err(RecordError::Unexpected));
    }
}
