//! The vocabulary of a run that the event loops, the progress monitor and the process layer
//! share: how the run is split over loops ([`Share`], [`split`]), the loop phases ([`Phase`]) and
//! the live counters each loop publishes for the monitor ([`Live`]).
//!
//! Plain data, near the bottom of the module graph (it reads only `cli`'s [`Config`]): it runs
//! nothing, owns no sockets and prints nothing (see `mioloop`, `monitor`, `proc`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};

use crate::cli::{Config, Mode};

/// One loop's part of the run.
#[derive(Debug, Clone)]
pub struct Share {
    /// Global index of this loop (for seeds).
    pub loop_id: usize,
    /// Global index of the first connection.
    pub first: usize,
    pub conns: usize,
    /// The first `active` of this loop's connections send messages.
    pub active: usize,
    /// Rate mode: messages per second for this loop.
    pub rate: f64,
    /// New connections per second for this loop.
    pub connect_rate: Option<f64>,
}

/// Splits the run over `processes` x `threads` loops: connections, active connections, rates.
pub fn split(cfg: &Config) -> Vec<Vec<Share>> {
    let loops = cfg.processes * cfg.threads;
    let part = |total: usize, i: usize| total / loops + usize::from(i < total % loops);
    let mut out = Vec::with_capacity(cfg.processes);
    let mut first = 0;
    for p in 0..cfg.processes {
        let mut v = Vec::with_capacity(cfg.threads);
        for t in 0..cfg.threads {
            let i = p * cfg.threads + t;
            let conns = part(cfg.connections, i);
            let active = part(cfg.active, i);
            let frac = if cfg.active > 0 { active as f64 / cfg.active as f64 } else { 0.0 };
            v.push(Share {
                loop_id: i,
                first,
                conns,
                active,
                rate: cfg.rate * frac,
                connect_rate: cfg.connect_rate.map(|r| r * conns as f64 / cfg.connections as f64),
            });
            first += conns;
        }
        out.push(v);
    }
    out
}

/// Loop phase, as published to the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Ramp = 0,
    /// `--start-at`: ramp-up done, connections held open (nothing sent) until the start time.
    Wait = 1,
    Warmup = 2,
    Measure = 3,
    Closing = 4,
    Done = 5,
}

impl Phase {
    pub fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Ramp,
            1 => Phase::Wait,
            2 => Phase::Warmup,
            3 => Phase::Measure,
            4 => Phase::Closing,
            _ => Phase::Done,
        }
    }

    pub fn name(self, mode: Mode) -> &'static str {
        match self {
            Phase::Ramp => "ramp-up",
            Phase::Wait => "waiting for --start-at",
            Phase::Warmup => "warm-up",
            Phase::Measure if mode == Mode::Idle => "holding",
            Phase::Measure if mode == Mode::Soak => "soaking",
            Phase::Measure => "measuring",
            Phase::Closing => "closing",
            Phase::Done => "done",
        }
    }
}

/// Counters a loop publishes for the progress monitor (updated every 100 ms).
#[derive(Default)]
pub struct Live {
    pub target: AtomicU64,
    pub open: AtomicU64,
    pub pending: AtomicU64,
    pub upgraded: AtomicU64,
    /// Connect and handshake failures.
    pub failed: AtomicU64,
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    /// Echo mismatches + fidelity errors + lost connections.
    pub errors: AtomicU64,
    pub phase: AtomicU8,
    /// Ramp-up over (every connection upgraded, failed or given up).
    pub settled: AtomicBool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_config as cfg;

    #[test]
    fn split_covers_every_connection_once() {
        let c = cfg(&["-m", "rate", "-r", "1000", "-c", "10", "--active", "3", "-p", "2", "-t", "2", "ws://h:1/"]);
        let s = split(&c);
        assert_eq!(s.len(), 2);
        let all: Vec<&Share> = s.iter().flatten().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().map(|x| x.conns).sum::<usize>(), 10);
        assert_eq!(all.iter().map(|x| x.active).sum::<usize>(), 3);
        let mut next = 0;
        for x in &all {
            assert_eq!(x.first, next);
            next += x.conns;
            assert!(x.active <= x.conns);
        }
        let rate: f64 = all.iter().map(|x| x.rate).sum();
        assert!((rate - 1000.0).abs() < 1e-6);
        // The fourth loop has no active connection, hence no rate.
        assert_eq!((all[3].active, all[3].rate), (0, 0.0));
    }
}
