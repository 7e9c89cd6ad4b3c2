//! Fuzz target `utf8`: Utf8Validator fed arbitrary splits of arbitrary bytes agrees with std::str::from_utf8 at every step.
//! The properties live in `src/checks/` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsecho_fuzz::checks::check_utf8(data));
