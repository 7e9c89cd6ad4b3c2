//! Fuzz target `mask`: apply_mask at arbitrary alignments and splits equals masking by index.
//! The properties live in `src/checks/` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsecho_fuzz::checks::check_mask(data));
