//! The session input format: the server configurations, segment sizes and write rooms an input
//! picks from ([`LIMITS`], [`CHUNKS`], [`ROOMS`]), frame descriptions ([`FrameSpec`], [`Payload`]),
//! the close code each corruption must get ([`corrupt_codes`]) and [`Session`], which writes inputs
//! (the seeds in `tests/fuzz_regressions.rs`).
//!
//! Owns the layout only: decoding a description into bytes is `gen`, running a session is `check`.
//! Imports nothing.

/// Server configurations: read size, write buffer, max message.
pub const LIMITS: [(usize, usize, u64); 4] =
    [(4096, 16 << 10, 1 << 16), (16 << 10, 16 << 10, 1 << 16), (4096, 64 << 10, 300), (8192, 32 << 10, 1 << 16)];
/// Sizes of the segments the client's bytes arrive in.
pub const CHUNKS: [usize; 16] = [usize::MAX, 1, 2, 3, 5, 7, 13, 64, 125, 200, 1000, 1500, 4096, 5000, 9000, 65536];
/// Room the socket gives writes until the next change.
pub const ROOMS: [usize; 8] = [0, usize::MAX, 1, 2, 100, 1000, 4096, 20000];

/// Frame descriptions, shared by the session decoder and [`Session`] (which writes seeds).
#[derive(Debug, Clone, Default)]
pub struct FrameSpec {
    /// 0 text, 1 binary, 2 continuation, 3 ping, 4 pong, 5 close.
    pub kind: u8,
    /// FIN (data frames; control frames always get FIN unless corrupted).
    pub fin: bool,
    /// Masking key; `None` is the all-zero key (MASK stays set).
    pub key: Option<[u8; 4]>,
    /// Use a longer length form than needed (data frames).
    pub nonmin: bool,
    /// With `nonmin`: the 64-bit form even for lengths up to 0xffff.
    pub ext64: bool,
    /// Text payload: 0 raw bytes made valid (lossy), 1 ASCII, 2 byte to character table, 3 one
    /// repeated character.
    pub text_mode: u8,
    /// Bytes of the last code point held back for the next fragment (non-final text frames).
    pub cut: u8,
    /// Where an invalid sequence goes (eighths of the text).
    pub at: u8,
    /// The payload.
    pub payload: Payload,
    /// A rule to break: (kind, parameter); see [`corrupt_codes`].
    pub corrupt: Option<(u8, u8)>,
    /// Deliver the frame in two parts, with events in between, cut at this byte.
    pub split: Option<u8>,
}

/// Where a payload comes from.
#[derive(Debug, Clone)]
pub enum Payload {
    /// These bytes (at most 255).
    Bytes(Vec<u8>),
    /// `BIG[sel]` bytes of a pattern.
    Big(u8, u8),
    /// `n % 4096` bytes of a pattern.
    Len(u16, u8),
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Bytes(Vec::new())
    }
}

/// Close codes the generator expects for a corruption kind (`None`: not a corruption).
pub fn corrupt_codes(kind: u8) -> Option<u16> {
    match kind {
        0..=4 | 6 | 8 | 9 | 11 => Some(1002),
        5 | 10 | 12 => Some(1007),
        7 => Some(1009),
        _ => None,
    }
}

/// Writes session inputs for the `connection` target (used for seeds).
pub struct Session {
    /// The encoded input.
    pub bytes: Vec<u8>,
}

impl Session {
    /// A session: limits index (0-3), EOF at the end, events after every operation, initial read
    /// chunk index, request index.
    pub fn new(limits: u8, eof: bool, auto: bool, chunk: u8, request: u8) -> Session {
        let cfg = (limits & 3) | (u8::from(eof) << 2) | (u8::from(auto) << 3) | (chunk << 4);
        Session { bytes: vec![cfg, request] }
    }

    /// Appends a frame.
    pub fn frame(&mut self, f: FrameSpec) -> &mut Self {
        let (mode, short) = match &f.payload {
            Payload::Bytes(b) if b.len() < 16 => (1u8, b.len() as u8),
            Payload::Bytes(_) => (0, 0),
            Payload::Big(..) => (2, 0),
            Payload::Len(..) => (3, 0),
        };
        let tag = (if f.split.is_some() { 15 } else { 0 }) | (short << 4);
        let k = (f.kind & 7)
            | (u8::from(f.fin) << 3)
            | (u8::from(f.key.is_none()) << 4)
            | (u8::from(f.nonmin) << 5)
            | (mode << 6);
        let k2 = (f.cut & 3) | ((f.text_mode & 3) << 2) | (u8::from(f.ext64) << 4) | ((f.at & 7) << 5);
        self.bytes.extend([tag, k, k2]);
        match f.corrupt {
            Some((c, p)) => self.bytes.extend([0xf0 | c, p]),
            None => self.bytes.push(0),
        }
        match &f.payload {
            Payload::Bytes(b) => {
                if mode == 0 {
                    self.bytes.push(b.len().min(255) as u8);
                }
                self.bytes.extend_from_slice(&b[..b.len().min(255)]);
            }
            Payload::Big(sel, fill) => self.bytes.extend([*sel, *fill]),
            Payload::Len(n, fill) => self.bytes.extend([(n >> 8) as u8, *n as u8, *fill]),
        }
        if let Some(key) = f.key {
            self.bytes.extend(key);
        }
        if let Some(s) = f.split {
            self.bytes.push(s);
        }
        self
    }

    /// Appends raw bytes (at most 255).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend([10, b.len().min(255) as u8]);
        self.bytes.extend_from_slice(&b[..b.len().min(255)]);
        self
    }

    /// Sets the segment size the bytes arrive in (index into [`CHUNKS`]).
    pub fn chunk(&mut self, sel: u8) -> &mut Self {
        self.bytes.extend([11, sel]);
        self
    }

    /// Sets the write room (index into [`ROOMS`]).
    pub fn room(&mut self, sel: u8) -> &mut Self {
        self.bytes.extend([12, sel]);
        self
    }

    /// The peer shuts its sending side.
    pub fn eof(&mut self) -> &mut Self {
        self.bytes.push(9);
        self
    }

    /// Lets everything sent arrive, handling events.
    pub fn pump(&mut self) -> &mut Self {
        self.bytes.push(13);
        self
    }

    /// The server shuts down (close 1001).
    pub fn shutdown(&mut self) -> &mut Self {
        self.bytes.push(0x8d);
        self
    }

    /// An idle tick that makes the server ping.
    pub fn ping_tick(&mut self) -> &mut Self {
        self.bytes.push(0xcd);
        self
    }

    /// A spurious readable + writable event.
    pub fn spurious(&mut self) -> &mut Self {
        self.bytes.push(14);
        self
    }
}
