//! permessage-deflate negotiation (RFC 7692 §5, §7.1), server side: read the client's offers, pick
//! one, write the answer.
//!
//! Owns the parsing of `Sec-WebSocket-Extensions` request values in place (RFC 6455 §9.1 grammar
//! with RFC 7230 tokens, quoted strings and optional whitespace; several offers per line and over
//! several lines; names compared ASCII case-insensitively), the choice of the first acceptable
//! `permessage-deflate` offer, the server's policy for the four parameters, and the bytes of the
//! response header line. It never allocates and never fails the handshake: anything it cannot
//! accept is declined, which means the 101 carries no extension. It does not own the deflate
//! state, the connection's use of the agreement (RSV1, which messages to compress) or the config
//! flags themselves: [`DeflateConfig`] is filled by the config layer.
//!
//! Decline rules (per offer; the next offer gets its turn): an unknown parameter, a parameter
//! given twice, a window-bits value that is not a decimal 8–15 without leading zeros (quoted or
//! not), a value on `server_no_context_takeover` or `client_no_context_takeover`, and
//! `server_max_window_bits` without a value. `client_max_window_bits` may come bare. A header
//! value that does not parse at all (an unterminated quoted string, a stray character) declines
//! every offer of the request: offer boundaries inside it cannot be trusted.
//!
//! Policy. Context takeover: by default the answer carries `server_no_context_takeover` and
//! `client_no_context_takeover` whether or not the client asked (§7.1.1.1 and §7.1.1.2 let the
//! server add both), so no connection keeps a deflate or inflate state between messages and the
//! states can be pooled per reactor; with [`DeflateConfig::context_takeover`] only what the
//! client asked for is answered. Server window: `min(offer, config)`; it is always written when
//! the client offered `server_max_window_bits` (accepting it means answering it, §7.1.2.1) or when
//! it is below 15 (allowed unasked). Window 8 is accepted although zlib cannot make raw deflate
//! with a 256-byte window (zlib and zlib-rs reject `windowBits = -8`; zlib turns a zlib-wrapped 8
//! into 9, which would break a client whose inflater really uses 256 bytes): the deflater then
//! uses `Z_HUFFMAN_ONLY`, which emits no back-references at all, so the stream is valid for any
//! window (see `codec`). Answering 9 to an offer of 8 is never done: it would break §7.1.2.1
//! ("the same or smaller value"). Python websockets passes `wbits=-8` to zlib (an error with
//! zlib ≥ 1.2.9), gorilla/websocket ignores the window parameters (it answers
//! `server_no_context_takeover; client_no_context_takeover` to every offer, also to
//! `server_max_window_bits=10`, and compresses with 32 KiB), uWebSockets ignores the offered
//! server window too. Client window: answered only when the client offered
//! `client_max_window_bits` (§7.1.2.2 forbids it otherwise), as
//! `min(offered or 15, max(9, min(config, server window)))`: no larger than the config, and no
//! larger than our own window when possible so that the client's compressed bytes can be echoed
//! verbatim ([`Negotiated::passthrough`]); never below 9 unless the client itself asked for 8.

/// The server's permessage-deflate settings (flags `--deflate`, `--deflate-context-takeover`,
/// `--deflate-window-bits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Negotiate permessage-deflate at all.
    pub enabled: bool,
    /// Allow context takeover (a deflate/inflate state kept per connection for its lifetime)
    /// when the client does not forbid it; off by default (states are pooled per reactor).
    pub context_takeover: bool,
    /// Largest LZ77 window, as base-2 logarithm, 9..=15 (values outside are clamped): bounds the
    /// server's window and the client window the server asks for.
    pub window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig { enabled: false, context_takeover: false, window_bits: 15 }
    }
}

/// The agreed parameters of one connection (what the 101 says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server resets its deflate state after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its deflate state after every message (our inflater may too).
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window (8..=15); the client's inflater may be no bigger.
    pub server_max_window_bits: u8,
    /// The largest window the client's compressed data may use (8..=15).
    pub client_max_window_bits: u8,
    /// The client offered `server_max_window_bits`: the answer must carry it.
    pub server_window_bits_in_offer: bool,
    /// The client offered `client_max_window_bits`: only then may the answer carry it (§7.1.2.2).
    pub client_window_bits_in_offer: bool,
}

impl Negotiated {
    /// Whether the server may echo a client's compressed message verbatim (same bytes, RSV1 on its
    /// first frame) instead of inflating and deflating it again.
    ///
    /// The client inflates our messages with a window of `2^server_max_window_bits` bytes; its own
    /// compressed data refers back at most `2^client_max_window_bits` bytes, and with
    /// `client_no_context_takeover` never into earlier messages. So a client message is a valid
    /// server message iff `client_max_window_bits <= server_max_window_bits` and the client does
    /// not take over context. `server_no_context_takeover` is required as well: with server
    /// context takeover the client's inflater keeps our history, and any message we compressed
    /// ourselves would then refer to a history that the verbatim echoes bypassed. The server must
    /// still inflate what it echoes when it needs the text (UTF-8 check) or the inflated size
    /// (`--max-message-size` counts inflated bytes).
    pub fn passthrough(&self) -> bool {
        self.server_no_context_takeover
            && self.client_no_context_takeover
            && self.client_max_window_bits <= self.server_max_window_bits
    }

    /// The agreement in 16 bits, for a connection struct that counts its bytes.
    pub fn pack(&self) -> u16 {
        (self.server_no_context_takeover as u16)
            | (self.client_no_context_takeover as u16) << 1
            | (self.server_window_bits_in_offer as u16) << 2
            | (self.client_window_bits_in_offer as u16) << 3
            | ((self.server_max_window_bits & 0xf) as u16) << 4
            | ((self.client_max_window_bits & 0xf) as u16) << 8
    }

    /// Inverse of [`Negotiated::pack`].
    pub fn unpack(bits: u16) -> Negotiated {
        Negotiated {
            server_no_context_takeover: bits & 1 != 0,
            client_no_context_takeover: bits & 2 != 0,
            server_window_bits_in_offer: bits & 4 != 0,
            client_window_bits_in_offer: bits & 8 != 0,
            server_max_window_bits: (bits >> 4 & 0xf) as u8,
            client_max_window_bits: (bits >> 8 & 0xf) as u8,
        }
    }
}

/// Longest line [`write_response_header`] writes.
pub const MAX_RESPONSE_HEADER: usize = 160;

/// Picks the first acceptable `permessage-deflate` offer from the raw values of every
/// `Sec-WebSocket-Extensions` request header, in order (as `httparse` gives them). `None`: not
/// enabled, not offered, every offer declined, or a value that does not parse; the upgrade goes
/// on without compression.
pub fn negotiate<'a, I>(config: &DeflateConfig, values: I) -> Option<Negotiated>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    if !config.enabled {
        return None;
    }
    let mut chosen = None;
    for value in values {
        let mut p = Parser { b: value, i: 0 };
        // The whole request is parsed even after a choice, so that a malformed value anywhere
        // declines everything (see the module doc).
        loop {
            match p.next_offer()? {
                None => break,
                Some(offer) if chosen.is_none() => chosen = offer.accept(config),
                Some(_) => {}
            }
        }
    }
    chosen
}

/// Writes `Sec-WebSocket-Extensions: permessage-deflate; …\r\n` for `n` into `out`; returns its
/// length, or 0 if `out` is shorter than needed ([`MAX_RESPONSE_HEADER`] always suffices).
pub fn write_response_header(n: &Negotiated, out: &mut [u8]) -> usize {
    let mut w = Writer { out, n: 0, ok: true };
    w.put(b"Sec-WebSocket-Extensions: permessage-deflate");
    if n.server_no_context_takeover {
        w.put(b"; server_no_context_takeover");
    }
    if n.client_no_context_takeover {
        w.put(b"; client_no_context_takeover");
    }
    if n.server_window_bits_in_offer || n.server_max_window_bits < 15 {
        w.put(b"; server_max_window_bits=");
        w.bits(n.server_max_window_bits);
    }
    if n.client_window_bits_in_offer {
        w.put(b"; client_max_window_bits=");
        w.bits(n.client_max_window_bits);
    }
    w.put(b"\r\n");
    if w.ok {
        w.n
    } else {
        0
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    n: usize,
    ok: bool,
}

impl Writer<'_> {
    fn put(&mut self, s: &[u8]) {
        match self.out.get_mut(self.n..self.n + s.len()) {
            Some(dst) if self.ok => {
                dst.copy_from_slice(s);
                self.n += s.len();
            }
            _ => self.ok = false,
        }
    }

    fn bits(&mut self, b: u8) {
        let b = b.clamp(8, 15);
        if b >= 10 {
            self.put(&[b'1', b'0' + b - 10]);
        } else {
            self.put(&[b'0' + b]);
        }
    }
}

/// One offer's parameters as read (before the policy).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Offer {
    /// Some parameter makes the offer unacceptable.
    declined: bool,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    fn param(&mut self, name: &[u8], value: Option<Value<'_>>) {
        let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if eq(b"server_no_context_takeover") {
            self.declined |= self.server_no_context_takeover || value.is_some();
            self.server_no_context_takeover = true;
        } else if eq(b"client_no_context_takeover") {
            self.declined |= self.client_no_context_takeover || value.is_some();
            self.client_no_context_takeover = true;
        } else if eq(b"server_max_window_bits") {
            let bits = value.and_then(|v| v.window_bits());
            self.declined |= self.server_max_window_bits.is_some() || bits.is_none();
            self.server_max_window_bits = Some(bits.unwrap_or(15));
        } else if eq(b"client_max_window_bits") {
            let bits = match value {
                None => Some(None),
                Some(v) => v.window_bits().map(Some),
            };
            self.declined |= self.client_max_window_bits.is_some() || bits.is_none();
            self.client_max_window_bits = Some(bits.unwrap_or(None));
        } else {
            self.declined = true;
        }
    }

    /// The server's answer to this offer (module doc: "Policy"), or `None` if declined.
    fn accept(&self, config: &DeflateConfig) -> Option<Negotiated> {
        if self.declined {
            return None;
        }
        let limit = config.window_bits.clamp(9, 15);
        let server = self.server_max_window_bits.unwrap_or(15).min(limit);
        let client = match self.client_max_window_bits {
            None => 15,
            Some(offered) => offered.unwrap_or(15).min(limit.min(server).max(9)),
        };
        Some(Negotiated {
            server_no_context_takeover: !config.context_takeover || self.server_no_context_takeover,
            client_no_context_takeover: !config.context_takeover || self.client_no_context_takeover,
            server_max_window_bits: server,
            client_max_window_bits: client,
            server_window_bits_in_offer: self.server_max_window_bits.is_some(),
            client_window_bits_in_offer: self.client_max_window_bits.is_some(),
        })
    }
}

/// A parameter value as it appears in the header: a token, or the inside of a quoted string
/// (escapes not yet removed).
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl Value<'_> {
    /// A window size: 1–2 decimal digits without a leading zero, 8..=15 (RFC 7692 §7.1.2). A
    /// quoted value is unescaped first (RFC 6455 §9.1: it must then be a token).
    fn window_bits(self) -> Option<u8> {
        let (raw, quoted) = match self {
            Value::Token(t) => (t, false),
            Value::Quoted(q) => (q, true),
        };
        let mut n: u32 = 0;
        let mut digits = 0;
        let mut i = 0;
        while i < raw.len() {
            let mut c = raw[i];
            if quoted && c == b'\\' {
                i += 1;
                c = *raw.get(i)?;
            }
            if !c.is_ascii_digit() || (digits == 0 && c == b'0') || digits == 2 {
                return None;
            }
            n = n * 10 + (c - b'0') as u32;
            digits += 1;
            i += 1;
        }
        (8..=15).contains(&n).then_some(n as u8)
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A cursor over one header value.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.b[start..self.i])
    }

    /// The inside of a quoted string (the cursor is on the opening quote).
    fn quoted(&mut self) -> Option<&'a [u8]> {
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => {
                    let inner = &self.b[start..self.i];
                    self.i += 1;
                    return Some(inner);
                }
                b'\\' => {
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    let c = *self.b.get(self.i + 1)?;
                    if !(c == b'\t' || c == b' ' || (0x21..=0x7e).contains(&c) || c >= 0x80) {
                        return None;
                    }
                    self.i += 2;
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                c if c == b'\t' || c == b' ' || c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80 => self.i += 1,
                _ => return None,
            }
        }
    }

    /// The next offer of this value: `Ok(None)` at the end, `None` (outer) on a syntax error.
    /// Offers of other extensions come back as declined.
    #[allow(clippy::option_option)]
    fn next_offer(&mut self) -> Option<Option<Offer>> {
        // Empty list elements are allowed (RFC 7230 §7).
        loop {
            self.ows();
            match self.peek() {
                None => return Some(None),
                Some(b',') => self.i += 1,
                Some(_) => break,
            }
        }
        let name = self.token()?;
        let mut offer = Offer { declined: !name.eq_ignore_ascii_case(b"permessage-deflate"), ..Offer::default() };
        loop {
            self.ows();
            match self.peek() {
                None => return Some(Some(offer)),
                Some(b',') => {
                    self.i += 1;
                    return Some(Some(offer));
                }
                Some(b';') => self.i += 1,
                Some(_) => return None,
            }
            self.ows();
            let pname = self.token()?;
            self.ows();
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.ows();
                Some(if self.peek() == Some(b'"') {
                    Value::Quoted(self.quoted()?)
                } else {
                    Value::Token(self.token()?)
                })
            } else {
                None
            };
            offer.param(pname, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: DeflateConfig = DeflateConfig { enabled: true, context_takeover: false, window_bits: 15 };
    const TAKEOVER: DeflateConfig = DeflateConfig { enabled: true, context_takeover: true, window_bits: 15 };

    fn neg(cfg: &DeflateConfig, values: &[&str]) -> Option<Negotiated> {
        negotiate(cfg, values.iter().map(|v| v.as_bytes()))
    }

    fn answer(cfg: &DeflateConfig, values: &[&str]) -> Option<String> {
        let n = neg(cfg, values)?;
        let mut out = [0u8; MAX_RESPONSE_HEADER];
        let len = write_response_header(&n, &mut out);
        assert!(len > 0);
        let s = std::str::from_utf8(&out[..len]).unwrap();
        Some(s.strip_prefix("Sec-WebSocket-Extensions: ").unwrap().strip_suffix("\r\n").unwrap().to_string())
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn plain_offer_gets_both_no_context_takeover() {
        assert_eq!(answer(&ON, &["permessage-deflate"]).as_deref(), Some(BOTH));
        let n = neg(&ON, &["permessage-deflate"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (15, 15));
        assert!(!n.client_window_bits_in_offer && !n.server_window_bits_in_offer);
        assert!(n.passthrough());
    }

    #[test]
    fn disabled_or_absent_is_none() {
        assert_eq!(neg(&DeflateConfig::default(), &["permessage-deflate"]), None);
        assert_eq!(neg(&ON, &[]), None);
        assert_eq!(neg(&ON, &[""]), None);
        assert_eq!(neg(&ON, &["x-webkit-deflate-frame"]), None);
        assert_eq!(neg(&ON, &["permessage-deflatex"]), None);
    }

    #[test]
    fn bare_client_window_is_answered() {
        assert_eq!(
            answer(&ON, &["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15"
            )
        );
        let small = DeflateConfig { window_bits: 10, ..ON };
        assert_eq!(
            answer(&small, &["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=10"
            )
        );
        // Not offered: never answered, even with a small config window.
        assert_eq!(
            answer(&small, &["permessage-deflate"]).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
            )
        );
        let n = neg(&small, &["permessage-deflate"]).unwrap();
        assert_eq!(n.client_max_window_bits, 15);
        assert!(!n.passthrough(), "the client may use 32 KiB, our echo may use only 1 KiB");
    }

    #[test]
    fn server_window_is_honoured() {
        for bits in 8..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            let n = neg(&ON, &[&offer]).unwrap();
            assert_eq!(n.server_max_window_bits, bits);
            assert!(n.server_window_bits_in_offer);
            assert!(answer(&ON, &[&offer]).unwrap().ends_with(&format!("; server_max_window_bits={bits}")));
            // Quoted, with an escape inside: same value.
            let q = format!("permessage-deflate; server_max_window_bits=\"{bits}\"");
            assert_eq!(neg(&ON, &[&q]), Some(n));
        }
        let q = neg(&ON, &["permessage-deflate; server_max_window_bits=\"1\\2\""]).unwrap();
        assert_eq!(q.server_max_window_bits, 12);
        // Config lower than the offer: the config wins.
        let n =
            neg(&DeflateConfig { window_bits: 9, ..ON }, &["permessage-deflate; server_max_window_bits=12"]).unwrap();
        assert_eq!(n.server_max_window_bits, 9);
    }

    #[test]
    fn client_window_follows_ours_for_passthrough() {
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=10; client_max_window_bits"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (10, 10));
        assert!(n.passthrough());
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=12; client_max_window_bits=9"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (12, 9));
        assert!(n.passthrough());
        // A server window of 8 (Huffman only): we do not push the client below 9...
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=8; client_max_window_bits"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (8, 9));
        assert!(!n.passthrough());
        // ...unless it asked for 8 itself.
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (8, 8));
        assert!(n.passthrough());
        // Without client_max_window_bits the client keeps 15: no verbatim echo with a smaller window.
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (10, 15));
        assert!(!n.passthrough());
    }

    #[test]
    fn context_takeover_answers_only_what_was_asked() {
        assert_eq!(answer(&TAKEOVER, &["permessage-deflate"]).as_deref(), Some("permessage-deflate"));
        assert_eq!(
            answer(&TAKEOVER, &["permessage-deflate; client_no_context_takeover"]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(
            answer(&TAKEOVER, &["permessage-deflate; server_no_context_takeover"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        let n = neg(&TAKEOVER, &["permessage-deflate"]).unwrap();
        assert!(!n.passthrough());
    }

    #[test]
    fn first_acceptable_offer_wins() {
        // The first offer is declined (unknown parameter), the second accepted.
        let n = neg(&ON, &["permessage-deflate; foo, permessage-deflate; server_max_window_bits=11"]).unwrap();
        assert_eq!(n.server_max_window_bits, 11);
        // Over two header lines, and another extension first.
        let n = neg(&ON, &["x-foo; a=1", "permessage-deflate; server_max_window_bits=12", "permessage-deflate"]);
        assert_eq!(n.unwrap().server_max_window_bits, 12);
        // The first acceptable one, not the "best".
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=9, permessage-deflate"]).unwrap();
        assert_eq!(n.server_max_window_bits, 9);
    }

    #[test]
    fn each_bad_form_declines_the_offer() {
        let bad = [
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover=\"\"",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=\"9 \"",
            "permessage-deflate; server_max_window_bits=115",
            "permessage-deflate; server_max_window_bits=99999999999999999999",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=x",
        ];
        for b in bad {
            assert_eq!(neg(&ON, &[b]), None, "{b}");
            // Declined, not fatal: a good offer after it is taken.
            assert!(neg(&ON, &[&format!("{b}, permessage-deflate")]).is_some(), "{b}");
            assert!(neg(&ON, &[b, "permessage-deflate"]).is_some(), "{b}");
        }
    }

    #[test]
    fn malformed_values_decline_everything() {
        let bad = [
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; =10",
            "permessage-deflate;; client_max_window_bits",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10 11",
            "permessage-deflate; server_max_window_bits=\"1\\",
            "permessage-deflate; a=\"\x01\"",
            "\"permessage-deflate\"",
            ";permessage-deflate",
            "permessage-deflate/1",
        ];
        for b in bad {
            assert_eq!(neg(&ON, &[b]), None, "{b:?}");
            assert_eq!(neg(&ON, &["permessage-deflate", b]), None, "{b:?}");
            assert_eq!(neg(&ON, &[&format!("permessage-deflate, {b}")]), None, "{b:?}");
        }
    }

    #[test]
    fn names_are_case_insensitive_and_whitespace_optional() {
        let n = neg(&ON, &["\tPerMessage-Deflate ;Server_Max_Window_Bits = 10 ;  CLIENT_MAX_WINDOW_BITS\t"]).unwrap();
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (10, 10));
        assert!(neg(&ON, &["permessage-deflate;client_no_context_takeover;server_no_context_takeover"]).is_some());
        assert!(neg(&ON, &[" , ,permessage-deflate,, "]).is_some());
        // A comma or semicolon inside a quoted value of another extension does not split offers.
        let n = neg(&ON, &["x-foo; a=\"permessage-deflate, b; c\", permessage-deflate; server_max_window_bits=13"]);
        assert_eq!(n.unwrap().server_max_window_bits, 13);
        assert_eq!(neg(&ON, &["x-foo; a=\"permessage-deflate, b; c\""]), None);
        // Escaped quote inside another extension's quoted value.
        assert!(neg(&ON, &["x-foo; a=\"x\\\"y\", permessage-deflate"]).is_some());
    }

    #[test]
    fn response_fits_and_refuses_a_short_buffer() {
        let n = Negotiated {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_window_bits_in_offer: true,
            client_window_bits_in_offer: true,
        };
        let mut out = [0u8; MAX_RESPONSE_HEADER];
        let len = write_response_header(&n, &mut out);
        assert_eq!(
            &out[..len],
            &b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
client_no_context_takeover; server_max_window_bits=15; client_max_window_bits=15\r\n"[..]
        );
        for short in 0..len {
            assert_eq!(write_response_header(&n, &mut out[..short]), 0);
        }
    }

    #[test]
    fn pack_round_trips() {
        for bits in 0..(1u16 << 12) {
            let n = Negotiated::unpack(bits);
            assert_eq!(Negotiated::unpack(n.pack()), n);
        }
        let n = neg(&ON, &["permessage-deflate; server_max_window_bits=8; client_max_window_bits=9"]).unwrap();
        assert_eq!(Negotiated::unpack(n.pack()), n);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let alphabet = b"permessage-deflate;,=\" \t\\server_max_window_bits0123456789\x00\xff";
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            for b in buf[..len].iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = alphabet[(x % alphabet.len() as u64) as usize];
            }
            if let Some(n) = negotiate(&ON, [&buf[..len]]) {
                assert!((8..=15).contains(&n.server_max_window_bits));
                assert!((8..=15).contains(&n.client_max_window_bits));
                let mut out = [0u8; MAX_RESPONSE_HEADER];
                assert!(write_response_header(&n, &mut out) > 0);
            }
        }
    }
}
