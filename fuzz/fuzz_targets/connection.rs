//! Fuzz target `connection`: A whole client session against one Connection over a MemSocket, checked against a model of RFC 6455.
//! The properties live in `src/checks/` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsecho_fuzz::checks::check_connection(data));
