//! A minimal `log` backend: one line per event on stderr, level from `RUST_LOG`.
//!
//! Owns log formatting only. When `JOURNAL_STREAM` is set (stderr is connected to journald) each
//! line starts with the syslog priority `<N>` so the journal keeps levels; otherwise lines carry a
//! level word. Nothing on the per-message path logs; bad input is logged at debug level.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger {
    journal: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut e = std::io::stderr().lock();
        let _ = if self.journal {
            let prio = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(e, "<{prio}>{}", r.args())
        } else {
            writeln!(e, "{:5} {}", r.level(), r.args())
        };
    }

    fn flush(&self) {}
}

/// Parses `RUST_LOG` (a bare level such as `debug`; a `target=level` list takes its last level).
pub fn level_from_env(v: Option<&str>) -> LevelFilter {
    let v = v.unwrap_or("info");
    let last = v.rsplit(',').next().unwrap_or("").rsplit('=').next().unwrap_or("");
    last.trim().parse().unwrap_or(LevelFilter::Info)
}

/// Installs the logger (once; later calls do nothing).
pub fn init() {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let level = level_from_env(std::env::var("RUST_LOG").ok().as_deref());
    if log::set_boxed_logger(Box::new(StderrLogger { journal })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_from_env(None), LevelFilter::Info);
        assert_eq!(level_from_env(Some("debug")), LevelFilter::Debug);
        assert_eq!(level_from_env(Some("wsecho=trace")), LevelFilter::Trace);
        assert_eq!(level_from_env(Some("nonsense")), LevelFilter::Info);
    }
}
