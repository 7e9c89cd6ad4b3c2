//! Live progress: once a second a line on stderr (elapsed, phase, connections, msg/s, MB/s,
//! errors), and the one-time marker lines on stdout (each flushed at once, for scripts):
//! `ALL_UPGRADED n=N` (plus `--ready-file`) when every loop's ramp-up is over, then
//! `MEASURE_START msgs=M` when every loop is measuring and `MEASURE_END msgs=M` when the first
//! stops (M = messages echoed so far, so a script can relate what it samples between the two
//! marks, e.g. server CPU time, to the messages echoed in between).
//!
//! Owns [`Snapshot`] (the sum of the loops' live counters) and [`Monitor`]. In a forked worker
//! the monitor does not print: it forwards snapshots to the parent as `p ...` lines on the result
//! pipe, and the parent's monitor prints for everyone. It does not collect final results (see
//! `stats`, `proc`).

use std::io::Write as _;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use crate::cli::Mode;
use crate::run::{Live, Phase};
use crate::sys::{now_ns, write_all_fd};

/// Live counters summed over loops (or worker processes).
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub target: u64,
    pub open: u64,
    pub pending: u64,
    pub upgraded: u64,
    pub failed: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub errors: u64,
    /// The earliest phase of any loop.
    pub phase: Phase,
    /// The latest phase of any loop.
    pub phase_max: Phase,
    /// Every loop's ramp-up is over.
    pub settled: bool,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            target: 0,
            open: 0,
            pending: 0,
            upgraded: 0,
            failed: 0,
            msgs: 0,
            bytes: 0,
            errors: 0,
            phase: Phase::Done,
            phase_max: Phase::Ramp,
            settled: true,
        }
    }

    pub fn of(lives: &[Live]) -> Snapshot {
        let mut s = Snapshot::empty();
        for l in lives {
            s.add(&Snapshot {
                target: l.target.load(Relaxed),
                open: l.open.load(Relaxed),
                pending: l.pending.load(Relaxed),
                upgraded: l.upgraded.load(Relaxed),
                failed: l.failed.load(Relaxed),
                msgs: l.msgs.load(Relaxed),
                bytes: l.bytes.load(Relaxed),
                errors: l.errors.load(Relaxed),
                phase: Phase::from_u8(l.phase.load(Relaxed)),
                phase_max: Phase::from_u8(l.phase.load(Relaxed)),
                settled: l.settled.load(Relaxed),
            });
        }
        s
    }

    pub fn add(&mut self, o: &Snapshot) {
        self.target += o.target;
        self.open += o.open;
        self.pending += o.pending;
        self.upgraded += o.upgraded;
        self.failed += o.failed;
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.phase = self.phase.min(o.phase);
        self.phase_max = self.phase_max.max(o.phase_max);
        self.settled &= o.settled;
    }

    /// `p ...` line for the pipe to the parent.
    pub fn encode(&self) -> String {
        format!(
            "p {} {} {} {} {} {} {} {} {} {} {}\n",
            self.target,
            self.open,
            self.pending,
            self.upgraded,
            self.failed,
            self.msgs,
            self.bytes,
            self.errors,
            self.phase as u8,
            self.phase_max as u8,
            u8::from(self.settled)
        )
    }

    /// Parses the fields after `p `.
    pub fn decode(fields: &str) -> Option<Snapshot> {
        let v: Vec<u64> = fields.split(' ').map(|f| f.parse().ok()).collect::<Option<_>>()?;
        if v.len() != 11 {
            return None;
        }
        Some(Snapshot {
            target: v[0],
            open: v[1],
            pending: v[2],
            upgraded: v[3],
            failed: v[4],
            msgs: v[5],
            bytes: v[6],
            errors: v[7],
            phase: Phase::from_u8(v[8] as u8),
            phase_max: Phase::from_u8(v[9] as u8),
            settled: v[10] != 0,
        })
    }
}

/// Where progress goes.
pub enum Sink {
    /// Progress lines on stderr, readiness on stdout.
    Terminal,
    /// A forked worker: snapshots to the parent over this pipe.
    Pipe(RawFd),
}

pub struct Monitor {
    sink: Sink,
    mode: Mode,
    quiet: bool,
    ready_file: Option<PathBuf>,
    start: u64,
    last: u64,
    last_msgs: u64,
    last_bytes: u64,
    announced: bool,
    /// Phase range last forwarded to the parent (a change is forwarded at once).
    sent_phases: (Phase, Phase),
    measure_started: bool,
    measure_ended: bool,
}

/// Interval of progress lines (terminal) and snapshots (pipe).
const PRINT_NS: u64 = 1_000_000_000;
const PIPE_NS: u64 = 250_000_000;

impl Monitor {
    pub fn new(sink: Sink, mode: Mode, quiet: bool, ready_file: Option<PathBuf>) -> Monitor {
        let now = now_ns();
        Monitor {
            sink,
            mode,
            quiet,
            ready_file,
            start: now,
            last: now,
            last_msgs: 0,
            last_bytes: 0,
            announced: false,
            sent_phases: (Phase::Ramp, Phase::Ramp),
            measure_started: false,
            measure_ended: false,
        }
    }

    /// Called often (every ~100 ms); prints or forwards at its own pace.
    pub fn update(&mut self, snap: &Snapshot) {
        let now = now_ns();
        let announce = snap.settled && !self.announced;
        if announce {
            self.announced = true;
        }
        match self.sink {
            Sink::Pipe(fd) => {
                let phases = (snap.phase, snap.phase_max);
                if announce || phases != self.sent_phases || now - self.last >= PIPE_NS {
                    self.last = now;
                    self.sent_phases = phases;
                    write_all_fd(fd, snap.encode().as_bytes());
                }
            }
            Sink::Terminal => {
                if announce {
                    self.announce(snap);
                }
                if !self.measure_started && snap.phase == Phase::Measure {
                    self.measure_started = true;
                    marker(&format!("MEASURE_START msgs={}", snap.msgs));
                }
                if self.measure_started && !self.measure_ended && snap.phase_max > Phase::Measure {
                    self.measure_ended = true;
                    marker(&format!("MEASURE_END msgs={}", snap.msgs));
                }
                if now - self.last >= PRINT_NS {
                    let dt = (now - self.last) as f64 / 1e9;
                    self.last = now;
                    let rate = snap.msgs.saturating_sub(self.last_msgs) as f64 / dt;
                    let mbs = snap.bytes.saturating_sub(self.last_bytes) as f64 / dt / 1e6;
                    self.last_msgs = snap.msgs;
                    self.last_bytes = snap.bytes;
                    if !self.quiet {
                        eprintln!(
                            "wsbench [{:6.1}s] {:<9} | open {}/{} (pending {}, failed {}) | {:.0} msg/s | {:.2} MB/s | errors {}",
                            (now - self.start) as f64 / 1e9,
                            snap.phase.name(self.mode),
                            snap.open,
                            snap.target,
                            snap.pending,
                            snap.failed,
                            rate,
                            mbs,
                            snap.errors
                        );
                    }
                }
            }
        }
    }

    fn announce(&self, snap: &Snapshot) {
        if let (true, Some(p)) = (snap.upgraded >= snap.target, &self.ready_file) {
            if let Err(e) = std::fs::write(p, format!("n={}\n", snap.upgraded)) {
                eprintln!("wsbench: cannot write --ready-file {}: {e}", p.display());
            }
        }
        if snap.upgraded >= snap.target {
            marker(&format!("ALL_UPGRADED n={}", snap.upgraded));
        } else {
            marker(&format!("UPGRADE_INCOMPLETE upgraded={} n={}", snap.upgraded, snap.target));
        }
    }
}

/// A marker line on stdout, flushed at once.
fn marker(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_line_round_trip() {
        let s = Snapshot {
            target: 10,
            open: 9,
            pending: 1,
            upgraded: 9,
            failed: 0,
            msgs: 12345,
            bytes: 246900,
            errors: 2,
            phase: Phase::Measure,
            phase_max: Phase::Closing,
            settled: true,
        };
        let line = s.encode();
        let d = Snapshot::decode(line.trim_end().strip_prefix("p ").unwrap()).unwrap();
        assert_eq!((d.target, d.open, d.msgs, d.errors, d.phase, d.settled), (10, 9, 12345, 2, Phase::Measure, true));
        assert_eq!(d.phase_max, Phase::Closing);
        let mut sum = Snapshot::empty();
        sum.add(&d);
        sum.add(&Snapshot { phase: Phase::Ramp, settled: false, ..d });
        assert_eq!((sum.target, sum.phase, sum.settled), (20, Phase::Ramp, false));
        assert_eq!(sum.phase_max, Phase::Closing);
    }
}
