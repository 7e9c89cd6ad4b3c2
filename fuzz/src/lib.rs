//! The property checks of the wsecho fuzz targets, as a library so that every target shares them.
//! `tests/fuzz_regressions.rs` in the main package includes `checks/mod.rs` directly and replays
//! the seeds, corpus and regressions on stable.

pub mod checks;
