//! Property checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the regression test
//! (`tests/fuzz_regressions.rs`, which includes this file with `#[path]`).
//!
//! Every check takes a fuzz input as raw bytes and panics when a property fails, so that one input
//! replays identically under libFuzzer and under `cargo test` on stable. Structured inputs (split
//! points, whole client sessions) are decoded by hand from the bytes ([`Bytes`]) rather than with
//! `arbitrary`, so these modules depend only on what the main package depends on: `wsecho`, `sha1`
//! and `std`.
//!
//! The expected behaviour comes from reference code written here from the RFCs, not from the
//! server's modules: a frame-header decoder, a client-stream model of RFC 6455 (what a server must
//! echo and how it must fail), a strict decoder of server frames, base64, masking by index, and
//! `std::str::from_utf8` as the UTF-8 oracle.
//!
//! One module per target and per shared part, each re-exported whole so that the paths stay
//! `checks::<item>`: `input` (decoding fuzz bytes), `reference` (base64, accept key, UTF-8 state,
//! header tokens), then the targets `handshake`, `frame`, `utf8`, `mask`, `connection` (itself
//! split: model, server-output parser, driver, session format, generator, check) and `tls` (the
//! TLS-to-plaintext glue against a rustls client). The parts import one another one way only:
//! `input` and `reference` import nothing from here, each target imports only those two and the
//! targets before it (`connection` uses `frame` and `handshake`), and nothing imports
//! `connection` or `tls`. This file only names the targets and dispatches to them.
//!
//! `tests/fuzz_regressions.rs` includes this file with `#[path = "../fuzz/src/checks/mod.rs"]`; the
//! submodules resolve next to it in both builds.

mod connection;
mod frame;
mod handshake;
mod input;
mod mask;
mod reference;
mod tls;
mod utf8;

// The regression test uses only part of this API: an unused re-export is not a mistake there.
#[allow(unused_imports)]
pub use self::{connection::*, frame::*, handshake::*, input::*, mask::*, reference::*, tls::*, utf8::*};

/// The fuzz targets, by name (also the names of their folders under `fuzz/`).
pub const TARGETS: [&str; 6] = ["handshake", "frame", "utf8", "mask", "connection", "tls"];

/// Runs the check of `target` on one input.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "handshake" => check_handshake(data),
        "frame" => check_frame(data),
        "utf8" => check_utf8(data),
        "mask" => check_mask(data),
        "connection" => check_connection(data),
        "tls" => check_tls(data),
        _ => panic!("unknown fuzz target {target}"),
    }
}
