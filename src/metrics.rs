//! Counters of one reactor, and their Prometheus text rendering.
//!
//! Owns plain integer counters: the reactor is single-threaded, so counting is an add, with no
//! atomics or locks on the hot path. Several reactors' counters are summed with [`Metrics::add`]
//! when rendered. Metric names are the constants in [`names`]. This module does not serve HTTP
//! (see `conn`) and does not decide what to count (callers do).

use crate::error::HandshakeError;
use crate::timer::{TimerKind, KINDS};
use std::io::Write;

/// Metric names: every metric string used by the server is declared here.
pub mod names {
    /// Gauge: open connections (accepted and not yet closed).
    pub const OPEN: &str = "wsecho_connections_open";
    /// Counter: accepted TCP connections.
    pub const ACCEPTED: &str = "wsecho_connections_accepted_total";
    /// Counter: completed WebSocket upgrades.
    pub const UPGRADES: &str = "wsecho_upgrades_total";
    /// Counter: refused upgrades, label `reason`.
    pub const UPGRADE_FAILURES: &str = "wsecho_upgrade_failures_total";
    /// Counter: complete messages received.
    pub const MESSAGES_IN: &str = "wsecho_messages_received_total";
    /// Counter: complete messages echoed.
    pub const MESSAGES_OUT: &str = "wsecho_messages_sent_total";
    /// Counter: bytes read from sockets.
    pub const BYTES_IN: &str = "wsecho_bytes_received_total";
    /// Counter: bytes written to sockets.
    pub const BYTES_OUT: &str = "wsecho_bytes_sent_total";
    /// Counter: close frames sent, label `code`.
    pub const CLOSES: &str = "wsecho_closes_total";
    /// Counter: times a connection stopped being read because its output was full.
    pub const BACKPRESSURE: &str = "wsecho_backpressure_pauses_total";
    /// Counter: timeouts, label `kind` (handshake, close, idle).
    pub const TIMEOUTS: &str = "wsecho_timeouts_total";
    /// Counter: accept() failures for lack of file descriptors (accepting pauses briefly).
    pub const ACCEPT_EMFILE: &str = "wsecho_accept_fd_exhausted_total";
    /// Counter: pings sent by the server.
    pub const PINGS: &str = "wsecho_pings_sent_total";
    /// Counter: completed TLS handshakes, labels `version` (1.2, 1.3) and `resumed` (true, false).
    pub const TLS_HANDSHAKES: &str = "wsecho_tls_handshakes_total";
    /// Counter: TLS connections that failed, label `reason`.
    pub const TLS_FAILURES: &str = "wsecho_tls_failures_total";
    /// Counter: handshake reads put off to the next reactor turn (the per-turn handshake budget).
    pub const TLS_DEFERRED: &str = "wsecho_tls_handshakes_deferred_total";
}

/// Why a TLS connection failed (the `reason` label of `wsecho_tls_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The handshake failed in rustls (not TLS, a bad or truncated ClientHello, no common
    /// parameters, a bad Finished...).
    Protocol,
    /// The peer closed (or sent `close_notify`) before the handshake was done.
    Eof,
    /// An established connection sent a record that failed authentication, was too long or of a
    /// type not allowed.
    Record,
    /// The peer sent a fatal alert.
    Alert,
}

impl TlsFailure {
    /// Every reason, in rendering order.
    pub const ALL: [TlsFailure; 4] = [TlsFailure::Protocol, TlsFailure::Eof, TlsFailure::Record, TlsFailure::Alert];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::Protocol => "handshake",
            TlsFailure::Eof => "eof_in_handshake",
            TlsFailure::Record => "bad_record",
            TlsFailure::Alert => "peer_alert",
        }
    }
}

/// Close codes counted individually; anything else is counted under "other".
pub const CLOSE_CODES: [u16; 10] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 0];

/// The counters.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Open connections.
    pub open: u64,
    /// Accepted connections.
    pub accepted: u64,
    /// Completed upgrades.
    pub upgrades: u64,
    /// Refused upgrades, indexed like [`HandshakeError::ALL`].
    pub upgrade_failures: [u64; HandshakeError::ALL.len()],
    /// Messages received.
    pub messages_in: u64,
    /// Messages echoed.
    pub messages_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Close frames sent, indexed like [`CLOSE_CODES`] (last slot: other codes).
    pub closes: [u64; CLOSE_CODES.len()],
    /// Backpressure pauses.
    pub backpressure: u64,
    /// Timeouts, indexed like [`TimerKind::ARMED`] (see [`Metrics::timed_out`]).
    pub timeouts: [u64; KINDS],
    /// accept() EMFILE/ENFILE.
    pub accept_emfile: u64,
    /// Server pings.
    pub pings: u64,
    /// Completed TLS handshakes: [1.2 full, 1.2 resumed, 1.3 full, 1.3 resumed].
    pub tls_handshakes: [u64; 4],
    /// Failed TLS connections, indexed like [`TlsFailure::ALL`].
    pub tls_failures: [u64; TlsFailure::ALL.len()],
    /// Handshake reads put off to the next turn.
    pub tls_deferred: u64,
}

impl Metrics {
    /// Counts a refused upgrade.
    pub fn upgrade_failed(&mut self, e: HandshakeError) {
        if let Some(i) = HandshakeError::ALL.iter().position(|&x| x == e) {
            self.upgrade_failures[i] += 1;
        }
    }

    /// Counts a timeout of `kind` (nothing for [`TimerKind::None`]).
    pub fn timed_out(&mut self, kind: TimerKind) {
        if let Some(i) = kind.index() {
            self.timeouts[i] += 1;
        }
    }

    /// Counts a completed TLS handshake.
    pub fn tls_handshake(&mut self, tls13: bool, resumed: bool) {
        self.tls_handshakes[usize::from(tls13) * 2 + usize::from(resumed)] += 1;
    }

    /// Counts a failed TLS connection.
    pub fn tls_failed(&mut self, f: TlsFailure) {
        if let Some(i) = TlsFailure::ALL.iter().position(|&x| x == f) {
            self.tls_failures[i] += 1;
        }
    }

    /// Counts a close frame sent with `code`.
    pub fn close_sent(&mut self, code: u16) {
        let i = CLOSE_CODES.iter().position(|&c| c == code).unwrap_or(CLOSE_CODES.len() - 1);
        self.closes[i] += 1;
    }

    /// Adds another reactor's counters.
    pub fn add(&mut self, o: &Metrics) {
        self.open += o.open;
        self.accepted += o.accepted;
        self.upgrades += o.upgrades;
        for (a, b) in self.upgrade_failures.iter_mut().zip(o.upgrade_failures) {
            *a += b;
        }
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        for (a, b) in self.closes.iter_mut().zip(o.closes) {
            *a += b;
        }
        self.backpressure += o.backpressure;
        for (a, b) in self.timeouts.iter_mut().zip(o.timeouts) {
            *a += b;
        }
        self.accept_emfile += o.accept_emfile;
        self.pings += o.pings;
        for (a, b) in self.tls_handshakes.iter_mut().zip(o.tls_handshakes) {
            *a += b;
        }
        for (a, b) in self.tls_failures.iter_mut().zip(o.tls_failures) {
            *a += b;
        }
        self.tls_deferred += o.tls_deferred;
    }

    /// Writes the Prometheus text exposition (format 0.0.4).
    pub fn render(&self, w: &mut impl Write) -> std::io::Result<()> {
        self.render_labeled(w, None)
    }

    /// Writes the Prometheus text exposition (format 0.0.4), with `process="<p>"` on every
    /// sample when `process` is given (`p` must need no escaping: `config` allows only
    /// `[A-Za-z0-9_.:-]`).
    pub fn render_labeled(&self, w: &mut impl Write, process: Option<&str>) -> std::io::Result<()> {
        use names::*;
        // `{process="p"}` for plain samples, `,process="p"` after another label.
        let (alone, after) = match process {
            Some(p) => (format!("{{process=\"{p}\"}}"), format!(",process=\"{p}\"")),
            None => (String::new(), String::new()),
        };
        let simple = |w: &mut dyn Write, name: &str, kind: &str, help: &str, v: u64| {
            writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{alone} {v}")
        };
        simple(w, OPEN, "gauge", "Open connections.", self.open)?;
        simple(w, ACCEPTED, "counter", "Accepted TCP connections.", self.accepted)?;
        simple(w, UPGRADES, "counter", "Completed WebSocket upgrades.", self.upgrades)?;
        writeln!(
            w,
            "# HELP {UPGRADE_FAILURES} Refused upgrade requests by reason.\n# TYPE {UPGRADE_FAILURES} counter"
        )?;
        for (e, v) in HandshakeError::ALL.iter().zip(self.upgrade_failures) {
            writeln!(w, "{UPGRADE_FAILURES}{{reason=\"{}\"{after}}} {v}", e.label())?;
        }
        simple(w, MESSAGES_IN, "counter", "Messages received.", self.messages_in)?;
        simple(w, MESSAGES_OUT, "counter", "Messages echoed.", self.messages_out)?;
        simple(w, BYTES_IN, "counter", "Bytes read from sockets.", self.bytes_in)?;
        simple(w, BYTES_OUT, "counter", "Bytes written to sockets.", self.bytes_out)?;
        writeln!(w, "# HELP {CLOSES} Close frames sent by status code.\n# TYPE {CLOSES} counter")?;
        for (c, v) in CLOSE_CODES.iter().zip(self.closes) {
            if *c == 0 {
                writeln!(w, "{CLOSES}{{code=\"other\"{after}}} {v}")?;
            } else {
                writeln!(w, "{CLOSES}{{code=\"{c}\"{after}}} {v}")?;
            }
        }
        simple(w, BACKPRESSURE, "counter", "Reads paused because output was full.", self.backpressure)?;
        writeln!(w, "# HELP {TIMEOUTS} Timeouts by kind.\n# TYPE {TIMEOUTS} counter")?;
        for (k, v) in TimerKind::ARMED.iter().zip(self.timeouts) {
            writeln!(w, "{TIMEOUTS}{{kind=\"{}\"{after}}} {v}", k.label())?;
        }
        simple(w, ACCEPT_EMFILE, "counter", "accept() failures for lack of file descriptors.", self.accept_emfile)?;
        simple(w, PINGS, "counter", "Pings sent by the server.", self.pings)?;
        writeln!(w, "# HELP {TLS_HANDSHAKES} Completed TLS handshakes.\n# TYPE {TLS_HANDSHAKES} counter")?;
        for (i, v) in self.tls_handshakes.iter().enumerate() {
            let (version, resumed) = (if i >= 2 { "1.3" } else { "1.2" }, i % 2 == 1);
            writeln!(w, "{TLS_HANDSHAKES}{{version=\"{version}\",resumed=\"{resumed}\"{after}}} {v}")?;
        }
        writeln!(w, "# HELP {TLS_FAILURES} Failed TLS connections by reason.\n# TYPE {TLS_FAILURES} counter")?;
        for (f, v) in TlsFailure::ALL.iter().zip(self.tls_failures) {
            writeln!(w, "{TLS_FAILURES}{{reason=\"{}\"{after}}} {v}", f.label())?;
        }
        simple(w, TLS_DEFERRED, "counter", "TLS handshake reads put off to the next turn.", self.tls_deferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics { open: 3, ..Default::default() };
        m.close_sent(1002);
        m.close_sent(4000);
        m.upgrade_failed(HandshakeError::UnsupportedVersion);
        let other = Metrics { open: 2, ..Default::default() };
        m.add(&other);
        let mut out = Vec::new();
        m.render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\nwsecho_connections_open 5\n"), "{text}");
        assert!(text.contains("wsecho_closes_total{code=\"1002\"} 1\n"));
        assert!(text.contains("wsecho_closes_total{code=\"other\"} 1\n"));
        assert!(text.contains("wsecho_upgrade_failures_total{reason=\"version\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<u64>().unwrap();
        }
        let mut out = Vec::new();
        m.render_labeled(&mut out, Some("9101")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\nwsecho_connections_open{process=\"9101\"} 5\n"), "{text}");
        assert!(text.contains("wsecho_closes_total{code=\"1002\",process=\"9101\"} 1\n"), "{text}");
        let samples = text.lines().filter(|l| !l.starts_with('#'));
        assert!(samples.clone().count() > 20 && samples.clone().all(|l| l.contains("process=\"9101\"")), "{text}");
    }
}

/// Where several reactors publish their counters so that a scrape on any of them sees the sum.
/// Each reactor copies its counters into its slot every 100 ms (never per event), so the hot path
/// stays lock-free; a scrape adds the others' latest copies to its own live counters.
#[derive(Debug)]
pub struct MetricsBoard {
    slots: Vec<std::sync::Mutex<Metrics>>,
}

impl MetricsBoard {
    /// A board for `n` reactors.
    pub fn new(n: usize) -> MetricsBoard {
        MetricsBoard { slots: (0..n).map(|_| std::sync::Mutex::new(Metrics::default())).collect() }
    }

    /// Stores reactor `i`'s counters.
    pub fn publish(&self, i: usize, m: &Metrics) {
        if let Some(s) = self.slots.get(i) {
            if let Ok(mut g) = s.lock() {
                g.clone_from(m);
            }
        }
    }

    /// The sum over all reactors, using `live` for reactor `i`.
    pub fn total_with(&self, i: usize, live: &Metrics) -> Metrics {
        let mut t = live.clone();
        for (j, s) in self.slots.iter().enumerate() {
            if j != i {
                if let Ok(g) = s.lock() {
                    t.add(&g);
                }
            }
        }
        t
    }

    /// The sum of the published counters.
    pub fn total(&self) -> Metrics {
        self.total_with(usize::MAX, &Metrics::default())
    }
}
