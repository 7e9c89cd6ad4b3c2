//! Fuzz target `frame`: decode_header against a reference decoder; encode/decode round trips in the minimal length form.
//! The properties live in `src/checks/` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsecho_fuzz::checks::check_frame(data));
