//! Fuzz target `handshake`: parse_request on arbitrary bytes: structure of accepted heads, prefix consistency, well-formed responses.
//! The properties live in `src/checks/` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsecho_fuzz::checks::check_handshake(data));
