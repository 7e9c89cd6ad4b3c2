//! Fuzz target `tls`: a rustls client's records (TLS 1.3 / 1.2, key updates, close_notify), cut and
//! tampered, read through `tls::session::Tls::recv` with arbitrary budgets: exactly the plaintext sent.
//! The properties live in `src/checks/` (shared with `tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsecho_fuzz::checks::check_tls(data));
