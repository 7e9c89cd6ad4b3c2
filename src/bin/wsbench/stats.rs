//! Results: what one event loop counted, how results of loops and processes are merged, the
//! line format that carries them from a worker process to the parent, and the final table
//! (stdout).
//!
//! Owns [`Stats`] (hdrhistogram latencies in nanoseconds, counters, failure breakdowns, the
//! measured window in Unix time) and the table. It does not decide what is counted when (see
//! `worker` and `client`), does no I/O of its own beyond formatting into strings, keeps no live
//! progress (see `monitor`) and leaves the JSON result file, written and read back, to `report`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::cli::{Config, Mode, TextKind};
use crate::sys::unix_ns_of;

/// Highest latency the histograms hold (one hour, in ns); larger values saturate.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// A new latency histogram: 1 ns .. 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// What one event loop (or, merged, the whole run) counted.
#[derive(Clone)]
pub struct Stats {
    /// Message round trips completed in the measured window, ns (echo mode: from the moment the
    /// message was queued; rate mode: from its scheduled send time).
    pub latency: Histogram<u64>,
    /// TCP connect start to verified 101 response, ns.
    pub handshake: Histogram<u64>,
    /// Length of the measured window, ns (the longest over merged loops; the union of the
    /// windows for `wsbench merge`).
    pub window_ns: u64,
    /// The measured windows in Unix ns, `[start, end)`, disjoint and sorted: one per run (loops'
    /// windows merged into their hull), more after `wsbench merge` of runs that did not overlap.
    pub windows: Vec<(u64, u64)>,
    /// `--start-at`: how long after the start time the ramp-up ended (0: on time, or no
    /// `--start-at`); the largest over merged loops.
    pub start_late_ns: u64,
    /// Messages echoed and verified in the window.
    pub msgs: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Messages per second: per loop `msgs / window`, summed over loops when merged.
    pub msg_rate: f64,
    /// Payload bytes per second, like `msg_rate`.
    pub byte_rate: f64,
    /// Connections this loop was to open.
    pub target: u64,
    /// Connections whose TCP connect was started.
    pub attempted: u64,
    /// Connections whose upgrade was verified.
    pub upgraded: u64,
    /// Most connections open (upgraded, not yet closed) at once; summed over loops.
    pub peak_open: u64,
    /// TCP connect failures by reason (e.g. `connection refused`, `timeout`).
    pub connect_failures: BTreeMap<String, u64>,
    /// Upgrade failures by reason (`status 400`, `bad Sec-WebSocket-Accept`, `eof`, ...).
    pub handshake_failures: BTreeMap<String, u64>,
    /// Close frames the server sent on its own (not as a reply to ours), by close code
    /// (1005 = no code in the frame).
    pub closes_by_code: BTreeMap<u16, u64>,
    /// Close handshakes we started at the end that the server completed.
    pub clean_closes: u64,
    /// Connections still not closed when `--close-timeout` ran out at the end.
    pub close_timeouts: u64,
    /// Echoed messages that differ from what was sent (content, length, type), or echoes for
    /// which nothing was in flight.
    pub mismatches: u64,
    /// Echoed messages with a frame that differs from the frame sent (FIN, opcode, payload
    /// length; see `frag`), at most one per message.
    pub fidelity_errors: u64,
    /// Upgraded connections that ended before we closed them, by reason.
    pub lost: BTreeMap<String, u64>,
    /// `--deflate`: compressed echoes counted in `msgs`, the compressed bytes of the messages
    /// they echo (as sent) and of the echoes themselves, and how many echoes were exactly the
    /// compressed bytes sent (a pass-through server).
    pub z_msgs: u64,
    pub z_sent_bytes: u64,
    pub z_echo_bytes: u64,
    pub z_verbatim: u64,
    /// Rate mode: scheduled messages dropped because the backlog was full.
    pub overruns: u64,
    /// Rate mode: most scheduled messages waiting for a connection with room, at once.
    pub backlog_peak: u64,
    /// Soak: data frames (fragments) written.
    pub fragments: u64,
    /// Soak: pings sent, and pongs received that matched them.
    pub pings: u64,
    pub pongs: u64,
    /// Soak: pings from the server (each answered with a pong).
    pub server_pings: u64,
    /// Soak: planned clean closes (our close 1000, the server's 1000 reply), each followed by a
    /// reconnect.
    pub clean_disconnects: u64,
    /// Soak: planned abrupt drops (TCP closed in the middle of a message, no close frame), and how
    /// many of them were resets (SO_LINGER 0) rather than FINs.
    pub drops: u64,
    pub drops_rst: u64,
    /// Soak: upgrades of reconnected connections (not counted in `upgraded`).
    pub reconnects: u64,
    /// Stopped by a signal.
    pub interrupted: bool,
    /// Wall time of the run, ns (the longest over merged loops).
    pub elapsed_ns: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: new_histogram(),
            handshake: new_histogram(),
            window_ns: 0,
            windows: Vec::new(),
            start_late_ns: 0,
            msgs: 0,
            bytes: 0,
            msg_rate: 0.0,
            byte_rate: 0.0,
            target: 0,
            attempted: 0,
            upgraded: 0,
            peak_open: 0,
            connect_failures: BTreeMap::new(),
            handshake_failures: BTreeMap::new(),
            closes_by_code: BTreeMap::new(),
            clean_closes: 0,
            close_timeouts: 0,
            mismatches: 0,
            fidelity_errors: 0,
            lost: BTreeMap::new(),
            z_msgs: 0,
            z_sent_bytes: 0,
            z_echo_bytes: 0,
            z_verbatim: 0,
            overruns: 0,
            backlog_peak: 0,
            fragments: 0,
            pings: 0,
            pongs: 0,
            server_pings: 0,
            clean_disconnects: 0,
            drops: 0,
            drops_rst: 0,
            reconnects: 0,
            interrupted: false,
            elapsed_ns: 0,
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    if let Some(v) = map.get_mut(key) {
        *v += n;
    } else {
        map.insert(key.to_string(), n);
    }
}

impl Stats {
    pub fn connect_failed(&mut self, reason: &str) {
        bump(&mut self.connect_failures, reason, 1);
    }

    pub fn handshake_failed(&mut self, reason: &str) {
        bump(&mut self.handshake_failures, reason, 1);
    }

    pub fn lost_connection(&mut self, reason: &str) {
        bump(&mut self.lost, reason, 1);
    }

    pub fn server_close(&mut self, code: u16) {
        *self.closes_by_code.entry(code).or_insert(0) += 1;
    }

    pub fn total_connect_failures(&self) -> u64 {
        self.connect_failures.values().sum()
    }

    pub fn total_handshake_failures(&self) -> u64 {
        self.handshake_failures.values().sum()
    }

    pub fn total_lost(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Forgets the window's counts (end of warm-up).
    pub fn reset_window(&mut self) {
        self.latency.reset();
        self.msgs = 0;
        self.bytes = 0;
        self.overruns = 0;
        self.z_msgs = 0;
        self.z_sent_bytes = 0;
        self.z_echo_bytes = 0;
        self.z_verbatim = 0;
    }

    /// Sets the window (from and to [`crate::sys::now_ns`] values) and derives this loop's rates.
    pub fn close_window(&mut self, start: u64, end: u64) {
        let window_ns = end.saturating_sub(start);
        self.windows = vec![(unix_ns_of(start), unix_ns_of(start) + window_ns)];
        self.window_ns = window_ns;
        if window_ns > 0 {
            let s = window_ns as f64 / 1e9;
            self.msg_rate = self.msgs as f64 / s;
            self.byte_rate = self.bytes as f64 / s;
        }
    }

    /// Adds another loop's (or process's) result.
    pub fn merge(&mut self, o: &Stats) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.handshake.add(&o.handshake);
        self.window_ns = self.window_ns.max(o.window_ns);
        // Loops of one run: one window, their hull (they start and end within milliseconds).
        self.windows = match (self.windows.first(), o.windows.first()) {
            (Some(a), Some(b)) => vec![(a.0.min(b.0), self.windows_end().max(o.windows_end()))],
            (None, _) => o.windows.clone(),
            (_, None) => self.windows.clone(),
        };
        self.start_late_ns = self.start_late_ns.max(o.start_late_ns);
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.msg_rate += o.msg_rate;
        self.byte_rate += o.byte_rate;
        self.target += o.target;
        self.attempted += o.attempted;
        self.upgraded += o.upgraded;
        self.peak_open += o.peak_open;
        for (k, v) in &o.connect_failures {
            bump(&mut self.connect_failures, k, *v);
        }
        for (k, v) in &o.handshake_failures {
            bump(&mut self.handshake_failures, k, *v);
        }
        for (k, v) in &o.closes_by_code {
            *self.closes_by_code.entry(*k).or_insert(0) += v;
        }
        self.clean_closes += o.clean_closes;
        self.close_timeouts += o.close_timeouts;
        self.mismatches += o.mismatches;
        self.fidelity_errors += o.fidelity_errors;
        for (k, v) in &o.lost {
            bump(&mut self.lost, k, *v);
        }
        self.z_msgs += o.z_msgs;
        self.z_sent_bytes += o.z_sent_bytes;
        self.z_echo_bytes += o.z_echo_bytes;
        self.z_verbatim += o.z_verbatim;
        self.overruns += o.overruns;
        self.backlog_peak = self.backlog_peak.max(o.backlog_peak);
        self.fragments += o.fragments;
        self.pings += o.pings;
        self.pongs += o.pongs;
        self.server_pings += o.server_pings;
        self.clean_disconnects += o.clean_disconnects;
        self.drops += o.drops;
        self.drops_rst += o.drops_rst;
        self.reconnects += o.reconnects;
        self.interrupted |= o.interrupted;
        self.elapsed_ns = self.elapsed_ns.max(o.elapsed_ns);
    }

    /// End of the last window (0 without one).
    pub fn windows_end(&self) -> u64 {
        self.windows.iter().map(|w| w.1).max().unwrap_or(0)
    }

    /// The failure conditions that make the exit status 1.
    pub fn failed(&self) -> bool {
        self.mismatches > 0
            || self.fidelity_errors > 0
            || self.total_lost() > 0
            || self.total_handshake_failures() > 0
            || self.total_connect_failures() > 0
    }

    // ---- line format between worker processes and the parent -------------------------------

    /// Appends this result as lines `key value` (maps: `key count name`; histograms: `hl value
    /// count` / `hh value count` per recorded bucket), terminated by `end`.
    pub fn encode(&self, out: &mut String) {
        let s = |out: &mut String, k: &str, v: u64| {
            let _ = writeln!(out, "{k} {v}");
        };
        s(out, "window_ns", self.window_ns);
        s(out, "start_late_ns", self.start_late_ns);
        for (a, b) in &self.windows {
            let _ = writeln!(out, "win {a} {b}");
        }
        s(out, "msgs", self.msgs);
        s(out, "bytes", self.bytes);
        let _ = writeln!(out, "msg_rate {}", self.msg_rate);
        let _ = writeln!(out, "byte_rate {}", self.byte_rate);
        s(out, "target", self.target);
        s(out, "attempted", self.attempted);
        s(out, "upgraded", self.upgraded);
        s(out, "peak_open", self.peak_open);
        s(out, "clean_closes", self.clean_closes);
        s(out, "close_timeouts", self.close_timeouts);
        s(out, "mismatches", self.mismatches);
        s(out, "fidelity_errors", self.fidelity_errors);
        s(out, "z_msgs", self.z_msgs);
        s(out, "z_sent_bytes", self.z_sent_bytes);
        s(out, "z_echo_bytes", self.z_echo_bytes);
        s(out, "z_verbatim", self.z_verbatim);
        s(out, "overruns", self.overruns);
        s(out, "backlog_peak", self.backlog_peak);
        s(out, "fragments", self.fragments);
        s(out, "pings", self.pings);
        s(out, "pongs", self.pongs);
        s(out, "server_pings", self.server_pings);
        s(out, "clean_disconnects", self.clean_disconnects);
        s(out, "drops", self.drops);
        s(out, "drops_rst", self.drops_rst);
        s(out, "reconnects", self.reconnects);
        s(out, "interrupted", u64::from(self.interrupted));
        s(out, "elapsed_ns", self.elapsed_ns);
        for (k, v) in &self.connect_failures {
            let _ = writeln!(out, "cf {v} {}", one_line(k));
        }
        for (k, v) in &self.handshake_failures {
            let _ = writeln!(out, "hf {v} {}", one_line(k));
        }
        for (k, v) in &self.lost {
            let _ = writeln!(out, "lost {v} {}", one_line(k));
        }
        for (k, v) in &self.closes_by_code {
            let _ = writeln!(out, "close {v} {k}");
        }
        for (tag, h) in [("hl", &self.latency), ("hh", &self.handshake)] {
            for it in h.iter_recorded() {
                let _ = writeln!(out, "{tag} {} {}", it.value_iterated_to(), it.count_at_value());
            }
        }
        out.push_str("end\n");
    }

    /// Applies one line of [`Stats::encode`] output; `Ok(true)` at `end`.
    pub fn decode_line(&mut self, line: &str) -> Result<bool, String> {
        let mut parts = line.splitn(3, ' ');
        let key = parts.next().unwrap_or("");
        let a = parts.next().unwrap_or("");
        let b = parts.next().unwrap_or("");
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("bad number in result line '{line}'"));
        match key {
            "end" => return Ok(true),
            "window_ns" => self.window_ns = num(a)?,
            "start_late_ns" => self.start_late_ns = num(a)?,
            "win" => self.windows.push((num(a)?, num(b)?)),
            "msgs" => self.msgs = num(a)?,
            "bytes" => self.bytes = num(a)?,
            "msg_rate" => self.msg_rate = a.parse().map_err(|_| format!("bad line '{line}'"))?,
            "byte_rate" => self.byte_rate = a.parse().map_err(|_| format!("bad line '{line}'"))?,
            "target" => self.target = num(a)?,
            "attempted" => self.attempted = num(a)?,
            "upgraded" => self.upgraded = num(a)?,
            "peak_open" => self.peak_open = num(a)?,
            "clean_closes" => self.clean_closes = num(a)?,
            "close_timeouts" => self.close_timeouts = num(a)?,
            "mismatches" => self.mismatches = num(a)?,
            "fidelity_errors" => self.fidelity_errors = num(a)?,
            "z_msgs" => self.z_msgs = num(a)?,
            "z_sent_bytes" => self.z_sent_bytes = num(a)?,
            "z_echo_bytes" => self.z_echo_bytes = num(a)?,
            "z_verbatim" => self.z_verbatim = num(a)?,
            "overruns" => self.overruns = num(a)?,
            "backlog_peak" => self.backlog_peak = num(a)?,
            "fragments" => self.fragments = num(a)?,
            "pings" => self.pings = num(a)?,
            "pongs" => self.pongs = num(a)?,
            "server_pings" => self.server_pings = num(a)?,
            "clean_disconnects" => self.clean_disconnects = num(a)?,
            "drops" => self.drops = num(a)?,
            "drops_rst" => self.drops_rst = num(a)?,
            "reconnects" => self.reconnects = num(a)?,
            "interrupted" => self.interrupted = num(a)? != 0,
            "elapsed_ns" => self.elapsed_ns = num(a)?,
            "cf" => bump(&mut self.connect_failures, b, num(a)?),
            "hf" => bump(&mut self.handshake_failures, b, num(a)?),
            "lost" => bump(&mut self.lost, b, num(a)?),
            "close" => {
                let code = b.parse::<u16>().map_err(|_| format!("bad close line '{line}'"))?;
                *self.closes_by_code.entry(code).or_insert(0) += num(a)?;
            }
            "hl" | "hh" => {
                let h = if key == "hl" { &mut self.latency } else { &mut self.handshake };
                h.saturating_record_n(num(a)?, num(b)?);
            }
            _ => return Err(format!("unknown result line '{line}'")),
        }
        Ok(false)
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Latency summary in microseconds.
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let us = |v: u64| v as f64 / 1000.0;
    Some(Percentiles {
        count: h.len(),
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
        mean: h.mean() / 1000.0,
    })
}

fn fmt_map<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("  ({})", parts.join(", "))
}

fn fmt_us(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The result table printed on stdout.
pub fn table(cfg: &Config, s: &Stats) -> String {
    let mut o = String::new();
    let kind = match (cfg.text, cfg.text_kind) {
        (true, TextKind::Mixed) => "mixed text",
        (true, TextKind::Json) => "JSON-like text",
        (true, TextKind::Ascii) => "text",
        _ => "binary",
    };
    let _ = write!(o, "wsbench {} {}: {} connections", cfg.mode.name(), cfg.url, cfg.connections);
    if cfg.active != cfg.connections && !matches!(cfg.mode, Mode::Idle | Mode::Soak) {
        let _ = write!(o, " ({} active)", cfg.active);
    }
    if cfg.mode == Mode::Soak {
        let _ = write!(
            o,
            ", up to {} messages in flight, 0-{} B text+binary in 1-{} fragments, ping p={} per \
             fragment, disconnect p={} per message, seed {}",
            cfg.active, cfg.max_size, cfg.max_fragments, cfg.ping_prob, cfg.disconnect_prob, cfg.seed
        );
    } else if cfg.mode != Mode::Idle {
        let _ = write!(o, ", {} B {kind}", cfg.size);
        if cfg.deflate {
            o.push_str(" compressed (permessage-deflate)");
        }
        match cfg.mode {
            Mode::Echo => {
                let _ = write!(o, ", {} in flight each", cfg.pipeline);
            }
            Mode::Rate => {
                let _ = write!(o, ", {} msg/s target", cfg.rate);
            }
            Mode::Idle | Mode::Soak => {}
        }
    }
    let _ = writeln!(
        o,
        ", {} process(es) x {} loop(s){}",
        cfg.processes,
        cfg.threads,
        if s.interrupted { " [INTERRUPTED: partial result]" } else { "" }
    );
    let row = |o: &mut String, k: &str, v: String| {
        let _ = writeln!(o, "  {k:<22} {v}");
    };
    row(&mut o, "connections", format!("{} upgraded of {} (peak open {})", s.upgraded, s.target, s.peak_open));
    if cfg.mode == Mode::Idle {
        row(&mut o, "held", format!("{:.2} s after all were up", s.window_ns as f64 / 1e9));
    }
    if cfg.mode == Mode::Soak {
        row(&mut o, "soaked", format!("{:.2} s after ramp-up (warm-up included)", s.window_ns as f64 / 1e9));
        row(&mut o, "messages", format!("{}  (every echo verified byte for byte)", s.msgs));
    } else if cfg.mode != Mode::Idle {
        row(&mut o, "measured", format!("{:.2} s", s.window_ns as f64 / 1e9));
        row(&mut o, "messages", s.msgs.to_string());
    }
    if cfg.mode != Mode::Idle {
        row(&mut o, "msg/s", format!("{:.0}", s.msg_rate));
        row(&mut o, "MB/s", format!("{:.2}  (payload, 10^6 B, one direction)", s.byte_rate / 1e6));
        match percentiles(&s.latency) {
            Some(p) => row(
                &mut o,
                "latency us",
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
                    fmt_us(p.p50),
                    fmt_us(p.p90),
                    fmt_us(p.p99),
                    fmt_us(p.p999),
                    fmt_us(p.max),
                    fmt_us(p.mean)
                ),
            ),
            None => row(&mut o, "latency us", "-".into()),
        }
    }
    if cfg.mode == Mode::Soak {
        let per = if s.msgs > 0 { s.fragments as f64 / s.msgs as f64 } else { 0.0 };
        row(&mut o, "fragments", format!("{}  ({per:.2} per message, counting cut-off messages)", s.fragments));
        row(
            &mut o,
            "pings",
            format!("{} sent, {} pongs verified; {} server pings answered", s.pings, s.pongs, s.server_pings),
        );
        row(
            &mut o,
            "clean reconnects",
            format!("{}  (close 1000 answered with 1000, then reconnect)", s.clean_disconnects),
        );
        row(
            &mut o,
            "abrupt drops",
            format!(
                "{}  (TCP closed mid-message: {} FIN, {} RST; then reconnect)",
                s.drops,
                s.drops - s.drops_rst,
                s.drops_rst
            ),
        );
        row(&mut o, "reconnects", format!("{}  (upgraded again, all reasons)", s.reconnects));
    }
    if let Some(p) = percentiles(&s.handshake) {
        row(&mut o, "handshake us", format!("p50 {}  p99 {}  max {}", fmt_us(p.p50), fmt_us(p.p99), fmt_us(p.max)));
    }
    row(&mut o, "connect failures", format!("{}{}", s.total_connect_failures(), fmt_map(&s.connect_failures)));
    row(&mut o, "handshake failures", format!("{}{}", s.total_handshake_failures(), fmt_map(&s.handshake_failures)));
    let closes: u64 = s.closes_by_code.values().sum();
    row(
        &mut o,
        "closes by code",
        if closes == 0 { "0".into() } else { format!("{closes}{}", fmt_map(&s.closes_by_code)) },
    );
    row(&mut o, "clean closes", format!("{} (close timeouts {})", s.clean_closes, s.close_timeouts));
    row(&mut o, "echo mismatches", s.mismatches.to_string());
    if cfg.deflate && cfg.mode != Mode::Idle {
        let what = if s.z_msgs == 0 {
            "no compressed echo counted".to_string()
        } else {
            let n = s.z_msgs as f64;
            format!(
                "{} B sent as {:.0} B (level {}, {:.2}:1); echoes {:.0} B, {:.1}% verbatim (the bytes sent)",
                cfg.size,
                s.z_sent_bytes as f64 / n,
                crate::workload::DEFLATE_LEVEL,
                cfg.size as f64 * n / s.z_sent_bytes.max(1) as f64,
                s.z_echo_bytes as f64 / n,
                100.0 * s.z_verbatim as f64 / n
            )
        };
        row(&mut o, "deflate", what);
    }
    if cfg.mode != Mode::Idle {
        let what = if cfg.fidelity {
            let what = if cfg.deflate { "FIN, opcode, frame count" } else { "FIN, opcode, length" };
            format!("{}  (echoed frames unlike the frames sent: {what})", s.fidelity_errors)
        } else {
            "not checked (--no-fidelity)".to_string()
        };
        row(&mut o, "fidelity errors", what);
    }
    row(&mut o, "lost connections", format!("{}{}", s.total_lost(), fmt_map(&s.lost)));
    if cfg.mode == Mode::Rate {
        row(&mut o, "rate backlog", format!("peak {} waiting, {} dropped", s.backlog_peak, s.overruns));
    }
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A result with a bit of everything (the other modules' tests build on it too).
    pub(crate) fn sample() -> Stats {
        let mut s = Stats::default();
        for v in [1_000u64, 2_000, 2_000, 50_000, 7_000_000] {
            s.latency.record(v).unwrap();
        }
        s.handshake.record(123_456).unwrap();
        s.msgs = 5;
        s.bytes = 100;
        s.target = 10;
        s.upgraded = 9;
        s.close_window(1_000, 2_000_001_000);
        s.connect_failed("connection refused");
        s.handshake_failed("status 400");
        s.server_close(1011);
        s.server_close(1011);
        s.lost_connection("server close");
        s.mismatches = 3;
        s.fidelity_errors = 4;
        s
    }

    #[test]
    fn encode_decode_round_trip() {
        let s = sample();
        let mut text = String::new();
        s.encode(&mut text);
        let mut d = Stats::default();
        let mut ended = false;
        for line in text.lines() {
            ended = d.decode_line(line).unwrap();
        }
        assert!(ended);
        assert_eq!((&d.windows, d.window_ns), (&s.windows, 2_000_000_000));
        assert_eq!(d.latency.len(), 5);
        assert_eq!(d.latency.max(), s.latency.max());
        assert_eq!(d.latency.value_at_quantile(0.5), s.latency.value_at_quantile(0.5));
        assert_eq!(d.handshake.len(), 1);
        assert_eq!((d.msgs, d.bytes, d.upgraded, d.mismatches, d.fidelity_errors), (5, 100, 9, 3, 4));
        assert_eq!(d.msg_rate, 2.5);
        assert_eq!(d.closes_by_code.get(&1011), Some(&2));
        assert_eq!(d.handshake_failures.get("status 400"), Some(&1));
        assert_eq!(d.connect_failures.get("connection refused"), Some(&1));
        assert_eq!(d.total_lost(), 1);
    }

    #[test]
    fn merge_sums_rates_and_counts() {
        let mut a = sample();
        a.merge(&sample());
        assert_eq!(a.latency.len(), 10);
        assert_eq!(a.msg_rate, 5.0);
        assert_eq!(a.closes_by_code.get(&1011), Some(&4));
        assert_eq!(a.window_ns, 2_000_000_000);
        // Loops of one run: their windows' hull.
        let mut later = sample();
        later.close_window(501_000, 2_000_002_000);
        let (start, end) = (a.windows[0].0, later.windows[0].1);
        a.merge(&later);
        assert_eq!(a.windows, vec![(start, end)]);
        assert!(a.failed());
        assert!(!Stats::default().failed());
        assert!(Stats { fidelity_errors: 1, ..Stats::default() }.failed());
    }

    #[test]
    fn table_rows() {
        let cfg = crate::cli::test_config(&["ws://127.0.0.1:1/"]);
        let t = table(&cfg, &sample());
        assert!(t.contains("closes by code         2  (1011: 2)"), "{t}");
        assert!(t.contains("fidelity errors        4  "), "{t}");
    }
}
