//! What every connection of one reactor shares: the scratch buffers, the buffer pools, the
//! limits taken from the configuration, the counters and the reactor's clock.
//!
//! Owns the sizes of the per-reactor buffers and the constants they follow from ([`PAD`],
//! [`OUT_SLACK`], [`FRAME_BOUND`], [`MIN_OUT_BUFFER`]), and builds all of it from `&Config` in one
//! constructor, so each flag has one name from `config` to its use. The compression states
//! live in `pmd`. It does not decode, echo or
//! write anything (see `conn`, `outq`, `plain`); the reactor owns the one instance and lends it to
//! each connection in turn.

use crate::buffers::Pool;
use crate::config::Config;
use crate::deflate::negotiate::DeflateConfig;
use crate::handshake::{MAX_HEAD, MAX_RESPONSE};
use crate::metrics::{Metrics, MetricsBoard};
use crate::pmd::Codecs;
use crate::tls::session::Tls;
use std::sync::Arc;
use std::time::Duration;

/// Headroom before the read position in the shared read buffer: room for the longest partial
/// frame a connection can carry between reads (a control frame: 6-byte header + 125 bytes).
pub const PAD: usize = 160;

/// Size of the pooled buffers that carry a partial frame header or control frame between reads.
pub const CARRY_SIZE: usize = PAD;

/// Most bytes one read can add to the output beyond the bytes it consumed (the header of a frame
/// cut at the end, a close frame: 512; TLS records sealing one read's output: under 512). Reads
/// are sized so that the output buffer can always take it.
pub const OUT_SLACK: usize = 1024;

/// Longest text frame echoed as exactly one frame however reads cut it (binary frames keep their
/// framing at any length). 64 KiB: the largest frame most clients and load generators send as one
/// unit, and what one pooled hold buffer per connection may cost while a frame is half received.
pub const FRAME_BOUND: usize = 64 << 10;

/// Below this read budget a connection stops reading until its output drains.
pub const MIN_READ: usize = 4096;

/// Smallest output buffer: a held text frame ([`FRAME_BOUND`]) plus one minimal read and its
/// slack must fit, so a connection holding a frame can always read on. `--write-buffer` below
/// this is raised to it.
pub const MIN_OUT_BUFFER: usize = FRAME_BOUND + MIN_READ + OUT_SLACK;

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Limits and scratch space shared by every connection of one reactor.
#[derive(Debug)]
pub struct Shared {
    /// The read buffer: [`PAD`] bytes of headroom, then `read_buffer` bytes.
    pub rbuf: Box<[u8]>,
    /// Staging for the output of one read, written to the socket in one call.
    pub out: Vec<u8>,
    /// Scratch for bodies of plain HTTP responses (metrics).
    pub body: Vec<u8>,
    /// Buffers that carry a partial frame header or control frame ([`CARRY_SIZE`] bytes).
    pub carry_pool: Pool,
    /// Buffers that carry a partial request head (`MAX_HEAD` bytes).
    pub head_pool: Pool,
    /// Buffers for output the socket did not take ([`Shared::write_buffer`] bytes).
    pub out_pool: Pool,
    /// Buffers that hold a text frame cut by a read ([`FRAME_BOUND`] bytes).
    pub frame_pool: Pool,
    /// This reactor's counters.
    pub metrics: Metrics,
    /// `--max-message-size`: longest message.
    pub max_message_size: u64,
    /// `--read-buffer`: bytes per read.
    pub read_buffer: usize,
    /// `--metrics-path`: serve Prometheus text on plain `GET` of this path, and `/healthz`;
    /// `None` (`--no-metrics`): neither.
    pub metrics_path: Option<String>,
    /// Other reactors' counters, summed into a scrape (multi-threaded servers), and our slot.
    pub board: Option<(Arc<MetricsBoard>, usize)>,
    /// `--process-label` (or the `--metrics-listen` port): the `process` label on every sample.
    pub process_label: Option<String>,
    /// Milliseconds since the reactor started, updated once per loop turn.
    pub now_ms: u32,
    /// `--ping-interval`: ping connections quiet for this many ms.
    pub ping_ms: Option<u32>,
    /// `--idle-timeout`: close connections silent for this many ms.
    pub idle_ms: Option<u32>,
    /// `--deflate*`: what permessage-deflate offers are accepted.
    pub deflate: DeflateConfig,
    /// Compression states lent to connections, and their scratch (`--deflate-recompress`).
    pub codecs: Codecs,
    /// `--tls-cert`: the TLS sessions of this reactor's connections (set by the reactor).
    pub tls: Option<Box<Tls>>,
    /// Whether the last read filled what it asked for (so more may be waiting): set by every
    /// read of a connection, plain or TLS.
    pub read_full: bool,
}

impl Shared {
    /// Scratch, pools and limits for one reactor configured by `cfg`, publishing its counters to
    /// `board` (multi-threaded servers: the board and this reactor's slot).
    pub fn new(cfg: &Config, board: Option<(Arc<MetricsBoard>, usize)>) -> Shared {
        let read = cfg.read_buffer.max(MAX_HEAD);
        // TLS reads a partial record and one more after it, whatever the budget.
        let rlen = if cfg.tls.is_some() { read.max(Tls::MIN_READ_BUFFER) } else { read };
        Shared {
            rbuf: vec![0u8; PAD + rlen].into_boxed_slice(),
            out: Vec::with_capacity(read + FRAME_BOUND + OUT_SLACK + MAX_RESPONSE),
            body: Vec::new(),
            carry_pool: Pool::new(CARRY_SIZE, 4096),
            head_pool: Pool::new(MAX_HEAD, 256),
            out_pool: Pool::new(cfg.write_buffer.max(MIN_OUT_BUFFER), 256),
            frame_pool: Pool::new(FRAME_BOUND, 64),
            metrics: Metrics::default(),
            max_message_size: cfg.max_message_size,
            read_buffer: cfg.read_buffer,
            metrics_path: cfg.metrics_path.clone(),
            board,
            process_label: cfg.process_label.clone(),
            now_ms: 0,
            ping_ms: cfg.ping_interval.map(millis),
            idle_ms: cfg.idle_timeout.map(millis),
            deflate: cfg.deflate,
            codecs: Codecs::new(cfg.deflate_recompress),
            tls: None,
            read_full: false,
        }
    }

    /// The capacity of the staging buffer [`Shared::out`] (what TLS sealing must take).
    pub fn staging(&self) -> usize {
        self.out.capacity()
    }

    /// `--write-buffer` as used: the most output one connection may queue (at least
    /// [`MIN_OUT_BUFFER`]).
    #[inline]
    pub fn write_buffer(&self) -> usize {
        self.out_pool.buf_size()
    }
}
