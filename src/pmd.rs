//! permessage-deflate (RFC 7692) on the echo path: the compression states connections borrow
//! while a compressed message is in flight, and the two ways a compressed message is echoed.
//!
//! Owns, per reactor, the table of borrowed states ([`Codecs`]: a slab of [`Codec`] slots that a
//! connection refers to by a `u32`, so a connection pays 4 bytes, not a pointer per state), the
//! pools they come from and go back to, and the scratch buffers inflated and re-deflated bytes
//! pass through one chunk at a time. With no context takeover (the default agreement) a state is
//! taken when a compressed message starts and given back, reset, when it ends, fails or its
//! connection goes away: an idle connection holds none, and after warm-up nothing is allocated.
//! With context takeover a connection keeps its slot until it closes.
//!
//! Two echo paths (chosen per connection by [`Codecs::recompresses`]):
//! - pass-through: the client's compressed bytes are echoed as they came (frame for frame, RSV1
//!   on the first frame) after inflating them to count the message's size and validate its text
//!   ([`Codecs::inflate`]). Valid when the client's message is a self-contained deflate stream the
//!   client itself can inflate ([`Negotiated::passthrough`]).
//! - re-compress: inflate and deflate again ([`Codecs::recompress`]); frame lengths then differ.
//!
//! It does not parse frames, decide framing or write headers (see `conn`), and does not negotiate
//! (see `deflate::negotiate`). The zlib streams are in `deflate::codec`.

use crate::deflate::codec::{CodecError, DeflateParams, Deflater, Inflater, DEFAULT_LEVEL, DEFAULT_MEM_LEVEL};
use crate::deflate::negotiate::Negotiated;
use crate::deflate::pool::Pool;
use crate::error::ProtocolError;
use crate::utf8::Utf8Validator;
use slab::Slab;

/// No slot (a connection outside a compressed message, without context takeover).
pub const NO_SLOT: u32 = u32::MAX;

/// Bytes inflated or deflated per step into the scratch buffers.
pub const CHUNK: usize = 16 << 10;

/// Idle states kept per pool (beyond it, given-back states are freed).
const MAX_FREE: usize = 64;

/// The states one connection borrows.
#[derive(Debug, Default)]
pub struct Codec {
    inflater: Option<Inflater>,
    deflater: Option<Deflater>,
}

/// Every compression state of one reactor, and its scratch space.
#[derive(Debug)]
pub struct Codecs {
    slots: Slab<Codec>,
    inflaters: Pool<Inflater>,
    deflaters: Pool<Deflater>,
    inflated: Box<[u8]>,
    deflated: Box<[u8]>,
    /// Always re-compress (`--deflate-recompress`).
    force_recompress: bool,
}

fn codec_error(e: CodecError) -> ProtocolError {
    match e {
        CodecError::TooBig => ProtocolError::MessageTooBig,
        CodecError::NoMemory | CodecError::BufferTooSmall => ProtocolError::Internal,
        CodecError::Corrupt | CodecError::Truncated | CodecError::AfterFinalBlock | CodecError::Failed => {
            ProtocolError::BadCompressedData
        }
    }
}

/// Feeds inflated bytes to the text validator (when the message is text).
#[inline]
fn check(utf8: &mut Option<&mut Utf8Validator>, bytes: &[u8]) -> Result<(), ProtocolError> {
    match utf8 {
        Some(v) => v.feed(bytes).map(|_| ()).map_err(|_| ProtocolError::InvalidUtf8),
        None => Ok(()),
    }
}

impl Codecs {
    /// Empty pools; `force_recompress`: `--deflate-recompress`.
    pub fn new(force_recompress: bool) -> Codecs {
        Codecs {
            slots: Slab::new(),
            inflaters: Pool::new(MAX_FREE),
            deflaters: Pool::new(MAX_FREE),
            inflated: Vec::new().into_boxed_slice(),
            deflated: Vec::new().into_boxed_slice(),
            force_recompress,
        }
    }

    /// Whether messages of a connection with agreement `n` are re-compressed (rather than echoed
    /// as they came).
    #[inline]
    pub fn recompresses(&self, n: &Negotiated) -> bool {
        self.force_recompress || !n.passthrough()
    }

    /// States (inflaters, deflaters) lent out now.
    pub fn outstanding(&self) -> (usize, usize) {
        (self.inflaters.outstanding, self.deflaters.outstanding)
    }

    /// Makes sure `slot` holds what a compressed message of a connection with agreement `n`
    /// needs: an inflater, and a deflater when it is re-compressed.
    pub fn begin(&mut self, slot: &mut u32, n: &Negotiated) -> Result<(), ProtocolError> {
        if self.inflated.is_empty() {
            // The first compressed message of this reactor: its scratch, once.
            self.inflated = vec![0u8; CHUNK].into_boxed_slice();
            self.deflated = vec![0u8; CHUNK].into_boxed_slice();
        }
        if *slot == NO_SLOT {
            let key = self.slots.insert(Codec::default());
            *slot = u32::try_from(key).map_err(|_| ProtocolError::Internal)?;
        }
        let recompress = self.recompresses(n);
        let c = self.slots.get_mut(*slot as usize).ok_or(ProtocolError::Internal)?;
        if c.inflater.is_none() {
            c.inflater = Some(self.inflaters.take(n.client_no_context_takeover).map_err(codec_error)?);
        }
        if recompress && c.deflater.is_none() {
            let params = DeflateParams {
                level: DEFAULT_LEVEL,
                window_bits: n.server_max_window_bits,
                mem_level: DEFAULT_MEM_LEVEL,
                reset_per_message: n.server_no_context_takeover,
            };
            c.deflater = Some(self.deflaters.take(params).map_err(codec_error)?);
        }
        Ok(())
    }

    /// The message ended: states go back to the pools unless the agreement keeps context.
    pub fn end(&mut self, slot: &mut u32, n: &Negotiated) {
        if n.client_no_context_takeover && (n.server_no_context_takeover || !self.recompresses(n)) {
            self.release(slot);
        }
    }

    /// Gives back everything `slot` holds (message failed, connection gone).
    pub fn release(&mut self, slot: &mut u32) {
        if *slot == NO_SLOT {
            return;
        }
        if let Some(c) = self.slots.try_remove(*slot as usize) {
            if let Some(i) = c.inflater {
                self.inflaters.give(i);
            }
            if let Some(d) = c.deflater {
                self.deflaters.give(d);
            }
        }
        *slot = NO_SLOT;
    }

    /// Pass-through: inflates `input` (the next unmasked piece of the compressed message) only to
    /// count and check it: the inflated size against `max`, text (`utf8`) as UTF-8. `last`: the
    /// piece ends the message (the RFC 7692 §7.2.2 tail is fed, the stream must end there).
    pub fn inflate(
        &mut self,
        slot: u32,
        input: &[u8],
        last: bool,
        mut utf8: Option<&mut Utf8Validator>,
        max: u64,
    ) -> Result<(), ProtocolError> {
        let c = self.slots.get_mut(slot as usize).ok_or(ProtocolError::Internal)?;
        let inf = c.inflater.as_mut().ok_or(ProtocolError::Internal)?;
        let mut pos = 0;
        loop {
            let p = inf.inflate(&input[pos..], &mut self.inflated, max).map_err(codec_error)?;
            pos += p.consumed;
            check(&mut utf8, &self.inflated[..p.produced])?;
            if !p.out_full {
                break;
            }
        }
        if last {
            loop {
                let p = inf.finish(&mut self.inflated, max).map_err(codec_error)?;
                check(&mut utf8, &self.inflated[..p.produced])?;
                if !p.out_full {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Re-compress: inflates `inputs` (consecutive unmasked pieces of the compressed message),
    /// checks them as [`Codecs::inflate`] does, deflates the result and appends it to `out`.
    /// `last`: they end the message (the deflate stream is flushed and its tail stripped).
    pub fn recompress(
        &mut self,
        slot: u32,
        inputs: [&[u8]; 2],
        last: bool,
        mut utf8: Option<&mut Utf8Validator>,
        max: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let c = self.slots.get_mut(slot as usize).ok_or(ProtocolError::Internal)?;
        let (Some(inf), Some(def)) = (c.inflater.as_mut(), c.deflater.as_mut()) else {
            return Err(ProtocolError::Internal);
        };
        let (inflated, deflated) = (&mut self.inflated, &mut self.deflated);
        // Deflates `bytes` into `out`.
        let mut compress = |bytes: &[u8], def: &mut Deflater| -> Result<(), ProtocolError> {
            let mut pos = 0;
            loop {
                let p = def.compress(&bytes[pos..], deflated).map_err(codec_error)?;
                pos += p.consumed;
                out.extend_from_slice(&deflated[..p.produced]);
                if !p.out_full {
                    return Ok(());
                }
            }
        };
        for input in inputs {
            let mut pos = 0;
            loop {
                let p = inf.inflate(&input[pos..], inflated, max).map_err(codec_error)?;
                pos += p.consumed;
                check(&mut utf8, &inflated[..p.produced])?;
                compress(&inflated[..p.produced], def)?;
                if !p.out_full {
                    break;
                }
            }
        }
        if last {
            loop {
                let p = inf.finish(inflated, max).map_err(codec_error)?;
                check(&mut utf8, &inflated[..p.produced])?;
                compress(&inflated[..p.produced], def)?;
                if !p.out_full {
                    break;
                }
            }
            loop {
                let p = def.finish(deflated).map_err(codec_error)?;
                out.extend_from_slice(&deflated[..p.produced]);
                if !p.out_full {
                    break;
                }
            }
        }
        Ok(())
    }
}
