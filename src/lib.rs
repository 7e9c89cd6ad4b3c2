//! wsecho: a lean, fast, RFC 6455-correct WebSocket echo server.
//!
//! # Layout
//! Pure codecs at the bottom, I/O at the top; nothing below `conn` touches a socket.
//! - [`error`]: the protocol's error types (frames, upgrades), with their reasons.
//! - [`mask`]: XOR masking, resumable mid-payload.
//! - [`utf8`]: incremental UTF-8 validation across frames and reads.
//! - [`frame`]: frame header decode/encode and structural checks.
//! - [`close`]: close codes, close payload validation, close frames.
//! - [`handshake`]: the HTTP/1.1 upgrade parsed in place, accept key, responses.
//! - [`buffers`]: pools of buffers borrowed only while a connection is busy.
//! - [`timer`]: O(1) timeouts, one FIFO per fixed duration, linked through connections.
//! - [`metrics`]: plain counters and their Prometheus rendering.
//! - [`units`]: the grammar of sizes and durations on every command line (server and `wsbench`).
//! - [`config`]: flags, defaults, validation.
//! - [`memsock`]: an in-memory socket to drive a connection in benches, fuzzing and tests.
//! - [`socket`]: the byte stream under a connection, and what one non-blocking call did.
//! - [`shared`]: one reactor's scratch buffers, pools, limits (built from the config) and counters.
//! - [`outq`]: a connection's queue of output the socket refused, in one pooled buffer.
//! - [`pmd`]: permessage-deflate on the echo path: borrowed compression states, pass-through or re-compress.
//! - [`plain`]: `GET /healthz` and `/metrics` on the WebSocket port.
//! - [`conn`]: one connection's state machine: upgrade, decode, echo, close.
//! - [`listener`]: listening sockets (socket2, backlog 4096, `SO_REUSEPORT`, socket activation).
//! - [`reactor`]: the mio event loop, slab, accept, dispatch, timers.
//! - [`scrape`]: `--metrics-listen`: this process's `/metrics` and `/healthz` on a port of its own.
//! - [`tls`]: `wss://`: rustls handshakes, then our own in-place record layer (kTLS-style).
//! - [`logger`]: a small stderr backend for `log`.
//!
//! # Invariants
//! - No heap allocation per message or per upgrade: connections borrow pooled buffers only while
//!   they carry data between reads; everything else lives in the reactor's shared buffers.
//! - Bounded memory against any client: output per connection is capped by `--write-buffer`
//!   (reading stops until it drains); messages are streamed, never held whole.
#![deny(missing_docs, rust_2018_idioms)]

pub mod buffers;
pub mod close;
pub mod config;
pub mod conn;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod listener;
pub mod logger;
pub mod mask;
pub mod memsock;
pub mod metrics;
pub mod notify;
pub mod outq;
pub mod plain;
pub mod pmd;
pub mod reactor;
pub mod scrape;
pub mod server;
pub mod shared;
pub mod socket;
pub mod timer;
pub mod tls;
pub mod units;
pub mod utf8;
