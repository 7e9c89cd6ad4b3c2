//! The JSON result file (`--json`), written and read back: one document per run, or per merge of
//! runs (`wsbench merge --json`), in one schema so that merges compose.
//!
//! Owns the schema: the summary fields scripts read (one top-level key per line, `latency_us` on
//! one line: `scripts/lib/common.sh`'s `jnum`/`jlat` depend on that), plus what a merge needs to
//! be exact: both histograms in HdrHistogram's V2 serialized form (base64), every count, the
//! measured windows in Unix ns, and the workload keys two files must share to be merged. It does
//! not merge ([`Stats::merge`] and `merge` do), print tables (`stats`) or parse JSON text
//! (`json`), and it does no file I/O (callers read and write the text).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

use crate::cli::{Config, Mode, TextKind};
use crate::json::{self, Value};
use crate::stats::{new_histogram, percentiles, Stats};

/// Version of the document; files without it (older wsbench) carry no histograms.
pub const SCHEMA: u64 = 2;

/// Keys whose values must be equal in every file of a merge: what each message was and how long
/// the run measured. Counts, rates, connections, processes and seeds are per shard.
pub const WORKLOAD_KEYS: [&str; 15] = [
    "mode",
    "url",
    "size",
    "text",
    "text_kind",
    "deflate",
    "fragments_per_message",
    "pipeline",
    "fidelity",
    "duration_s",
    "warmup_s",
    "max_size",
    "max_fragments",
    "ping_prob",
    "disconnect_prob",
];

/// JSON string literal.
fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON number (non-finite values become 0).
fn jf(v: f64) -> String {
    if v.is_finite() {
        format!("{:.3}", v)
    } else {
        "0".into()
    }
}

fn jmap<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{}: {v}", js(&k.to_string()))).collect();
    format!("{{{}}}", parts.join(", "))
}

fn jlat(h: &Histogram<u64>) -> String {
    match percentiles(h) {
        Some(p) => format!(
            "{{\"count\": {}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"p99_9\": {}, \"max\": {}, \"mean\": {}}}",
            p.count,
            jf(p.p50),
            jf(p.p90),
            jf(p.p99),
            jf(p.p999),
            jf(p.max),
            jf(p.mean)
        ),
        None => "null".into(),
    }
}

/// A histogram in HdrHistogram's V2 serialized form (uncompressed), base64 (RFC 4648, padded).
pub fn histogram_b64(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    match V2Serializer::new().serialize(h, &mut buf) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(&buf),
        // Only a write error of the Vec (impossible) or a count beyond i64 could get here.
        Err(e) => panic!("serializing a latency histogram: {e:?}"),
    }
}

/// A histogram from [`histogram_b64`]'s form; it must have the bounds and precision of
/// [`new_histogram`] (so merges neither fail nor lose precision).
pub fn histogram_from_b64(s: &str) -> Result<Histogram<u64>, String> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(|e| format!("not base64: {e}"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram V2 histogram: {e}"))?;
    let want = new_histogram();
    if (h.low(), h.high(), h.sigfig()) != (want.low(), want.high(), want.sigfig()) {
        return Err(format!(
            "a histogram of {}..{} ns with {} significant digits (wsbench records {}..{} with {})",
            h.low(),
            h.high(),
            h.sigfig(),
            want.low(),
            want.high(),
            want.sigfig()
        ));
    }
    Ok(h)
}

/// The result as a JSON object (latency summaries in microseconds, histograms in ns). `shards`:
/// how many runs the result is made of (1 for a run, the sum of theirs for a merge).
pub fn json(cfg: &Config, s: &Stats, shards: u64) -> String {
    let mut o = String::from("{\n");
    let mut f = |k: &str, v: String| {
        let _ = writeln!(o, "  {}: {v},", js(k));
    };
    f("schema", SCHEMA.to_string());
    f("mode", js(cfg.mode.name()));
    f("url", js(&cfg.url));
    f("connections", cfg.connections.to_string());
    f("active", cfg.active.to_string());
    f("size", cfg.size.to_string());
    f("text", cfg.text.to_string());
    f("text_kind", js(if cfg.text { cfg.text_kind.name() } else { "binary" }));
    f("deflate", cfg.deflate.to_string());
    f("fragments_per_message", cfg.fragments.to_string());
    f("pipeline", cfg.pipeline.to_string());
    f("rate", jf(cfg.rate));
    f("processes", cfg.processes.to_string());
    f("threads", cfg.threads.to_string());
    f("duration_s", jf(cfg.duration.as_secs_f64()));
    f("warmup_s", jf(cfg.warmup.as_secs_f64()));
    f("interrupted", s.interrupted.to_string());
    f("elapsed_s", jf(s.elapsed_ns as f64 / 1e9));
    f("measured_s", jf(s.window_ns as f64 / 1e9));
    f("attempted", s.attempted.to_string());
    f("upgraded", s.upgraded.to_string());
    f("peak_open", s.peak_open.to_string());
    f("messages", s.msgs.to_string());
    f("bytes", s.bytes.to_string());
    f("msgs_per_sec", jf(s.msg_rate));
    f("mb_per_sec", jf(s.byte_rate / 1e6));
    f("latency_us", jlat(&s.latency));
    f("handshake_us", jlat(&s.handshake));
    f("connect_failures", s.total_connect_failures().to_string());
    f("connect_failures_by_reason", jmap(&s.connect_failures));
    f("handshake_failures", s.total_handshake_failures().to_string());
    f("handshake_failures_by_reason", jmap(&s.handshake_failures));
    f("closes_by_code", jmap(&s.closes_by_code));
    f("clean_closes", s.clean_closes.to_string());
    f("close_timeouts", s.close_timeouts.to_string());
    f("echo_mismatches", s.mismatches.to_string());
    f("fidelity", cfg.fidelity.to_string());
    f("fidelity_errors", s.fidelity_errors.to_string());
    f("deflate_messages", s.z_msgs.to_string());
    f("deflate_sent_bytes", s.z_sent_bytes.to_string());
    f("deflate_echo_bytes", s.z_echo_bytes.to_string());
    f("deflate_verbatim", s.z_verbatim.to_string());
    f("lost_connections", s.total_lost().to_string());
    f("lost_by_reason", jmap(&s.lost));
    f("rate_backlog_peak", s.backlog_peak.to_string());
    f("rate_dropped", s.overruns.to_string());
    f("seed", cfg.seed.to_string());
    f("max_size", cfg.max_size.to_string());
    f("fragments", s.fragments.to_string());
    f("pings", s.pings.to_string());
    f("pongs", s.pongs.to_string());
    f("server_pings", s.server_pings.to_string());
    f("clean_reconnects", s.clean_disconnects.to_string());
    f("abrupt_drops", s.drops.to_string());
    f("abrupt_drops_rst", s.drops_rst.to_string());
    f("reconnects", s.reconnects.to_string());
    // Schema 2: what `wsbench merge` needs to be exact.
    f("max_fragments", cfg.max_fragments.to_string());
    f("ping_prob", cfg.ping_prob.to_string());
    f("disconnect_prob", cfg.disconnect_prob.to_string());
    f("shards", shards.to_string());
    f("target", s.target.to_string());
    f("start_at_unix_ns", cfg.start_at_unix_ns.map_or("null".into(), |v| v.to_string()));
    f("start_late_ns", s.start_late_ns.to_string());
    f("elapsed_ns", s.elapsed_ns.to_string());
    f("window_ns", s.window_ns.to_string());
    f("window_start_unix_ns", s.windows.first().map_or("null".into(), |w| w.0.to_string()));
    f("window_end_unix_ns", s.windows.last().map_or("null".into(), |w| w.1.to_string()));
    let wins: Vec<String> = s.windows.iter().map(|(a, b)| format!("[{a}, {b}]")).collect();
    f("windows_unix_ns", format!("[{}]", wins.join(", ")));
    f("histogram_unit", js("ns"));
    f("latency_histogram", js(&histogram_b64(&s.latency)));
    f("handshake_histogram", js(&histogram_b64(&s.handshake)));
    let _ = writeln!(o, "  \"failed\": {}\n}}", s.failed());
    o
}

/// A result file read back: its document (for the workload keys), the run's configuration as far
/// as the table needs it, its statistics and how many runs it stands for.
pub struct Record {
    pub doc: BTreeMap<String, Value>,
    pub cfg: Config,
    pub stats: Stats,
    pub shards: u64,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("shards", &self.shards).field("doc", &self.doc).finish_non_exhaustive()
    }
}

/// Field access with errors that name the field.
struct Doc<'a>(&'a BTreeMap<String, Value>);

impl Doc<'_> {
    fn get(&self, k: &str) -> Result<&Value, String> {
        self.0.get(k).ok_or_else(|| format!("no \"{k}\" field"))
    }

    fn num_text(&self, k: &str) -> Result<&str, String> {
        match self.get(k)? {
            Value::Number(n) => Ok(n),
            v => Err(format!("\"{k}\" is {}, not a number", v.kind())),
        }
    }

    fn u64(&self, k: &str) -> Result<u64, String> {
        let n = self.num_text(k)?;
        n.parse().map_err(|_| format!("\"{k}\": {n} is not a whole number of at most 64 bits"))
    }

    fn usize(&self, k: &str) -> Result<usize, String> {
        usize::try_from(self.u64(k)?).map_err(|_| format!("\"{k}\" is too large"))
    }

    fn opt_u64(&self, k: &str) -> Result<Option<u64>, String> {
        match self.get(k)? {
            Value::Null => Ok(None),
            _ => self.u64(k).map(Some),
        }
    }

    fn f64(&self, k: &str) -> Result<f64, String> {
        let n = self.num_text(k)?;
        n.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("\"{k}\": {n} is not a number"))
    }

    fn secs(&self, k: &str) -> Result<Duration, String> {
        let v = self.f64(k)?;
        Duration::try_from_secs_f64(v).map_err(|_| format!("\"{k}\": {v} is not a duration"))
    }

    fn bool(&self, k: &str) -> Result<bool, String> {
        match self.get(k)? {
            Value::Bool(b) => Ok(*b),
            v => Err(format!("\"{k}\" is {}, not a boolean", v.kind())),
        }
    }

    fn str(&self, k: &str) -> Result<&str, String> {
        match self.get(k)? {
            Value::String(s) => Ok(s),
            v => Err(format!("\"{k}\" is {}, not a string", v.kind())),
        }
    }

    /// An object of counts (`{"reason": n, ...}`).
    fn counts(&self, k: &str) -> Result<BTreeMap<String, u64>, String> {
        let Value::Object(m) = self.get(k)? else { return Err(format!("\"{k}\" is not an object")) };
        m.iter()
            .map(|(name, v)| match v {
                Value::Number(n) => n
                    .parse::<u64>()
                    .map(|c| (name.clone(), c))
                    .map_err(|_| format!("\"{k}\".\"{name}\": {n} is not a count")),
                v => Err(format!("\"{k}\".\"{name}\" is {}, not a count", v.kind())),
            })
            .collect()
    }
}

/// Reads a result file's text. Refuses documents of another schema, and histograms that
/// disagree with the counts beside them.
pub fn read(text: &str) -> Result<Record, String> {
    let Value::Object(doc) = json::parse(text).map_err(|e| format!("not JSON: {e}"))? else {
        return Err("not a JSON object".into());
    };
    let d = Doc(&doc);
    match d.get("schema") {
        Err(_) => {
            return Err(format!(
                "no \"schema\" field: written by an older wsbench (before schema {SCHEMA}), without histograms; \
                 run it again with this one"
            ))
        }
        Ok(_) => {
            let v = d.u64("schema")?;
            if v != SCHEMA {
                return Err(format!("schema {v}; this wsbench reads schema {SCHEMA}"));
            }
        }
    }
    let url = d.str("url")?;
    let mut cfg = crate::cli::defaults_for(url).map_err(|e| format!("\"url\": {}", e.0))?;
    cfg.mode = match d.str("mode")? {
        "echo" => Mode::Echo,
        "rate" => Mode::Rate,
        "idle" => Mode::Idle,
        "soak" => Mode::Soak,
        m => return Err(format!("\"mode\": unknown mode '{m}'")),
    };
    cfg.connections = d.usize("connections")?;
    cfg.active = d.usize("active")?;
    cfg.size = d.usize("size")?;
    cfg.text = d.bool("text")?;
    cfg.text_kind = match d.str("text_kind")? {
        "ascii" | "binary" => TextKind::Ascii,
        "mixed" => TextKind::Mixed,
        "json" => TextKind::Json,
        k => return Err(format!("\"text_kind\": unknown kind '{k}'")),
    };
    cfg.deflate = d.bool("deflate")?;
    cfg.fragments =
        u32::try_from(d.u64("fragments_per_message")?).map_err(|_| "\"fragments_per_message\" is too large")?;
    cfg.fidelity = d.bool("fidelity")?;
    cfg.pipeline = d.usize("pipeline")?;
    cfg.rate = d.f64("rate")?;
    cfg.processes = d.usize("processes")?;
    cfg.threads = d.usize("threads")?;
    cfg.duration = d.secs("duration_s")?;
    cfg.warmup = d.secs("warmup_s")?;
    cfg.seed = d.u64("seed")?;
    cfg.seed_given = true;
    cfg.max_size = d.usize("max_size")?;
    cfg.max_fragments = d.usize("max_fragments")?;
    cfg.ping_prob = d.f64("ping_prob")?;
    cfg.disconnect_prob = d.f64("disconnect_prob")?;
    cfg.start_at_unix_ns = d.opt_u64("start_at_unix_ns")?;
    cfg.json = None;

    let hist = |k: &str| histogram_from_b64(d.str(k)?).map_err(|e| format!("\"{k}\": {e}"));
    let mut s =
        Stats { latency: hist("latency_histogram")?, handshake: hist("handshake_histogram")?, ..Stats::default() };
    for (k, h) in [("latency_us", &s.latency), ("handshake_us", &s.handshake)] {
        let count = match d.get(k)? {
            Value::Null => 0,
            Value::Object(m) => Doc(m).u64("count").map_err(|e| format!("\"{k}\": {e}"))?,
            v => return Err(format!("\"{k}\" is {}", v.kind())),
        };
        if count != h.len() {
            return Err(format!("\"{k}\" counts {count} samples but its histogram holds {}", h.len()));
        }
    }
    s.window_ns = d.u64("window_ns")?;
    let Value::Array(wins) = d.get("windows_unix_ns")? else {
        return Err("\"windows_unix_ns\" is not an array".into());
    };
    for w in wins {
        match w {
            Value::Array(pair) if pair.len() == 2 => {
                let n = |v: &Value| match v {
                    Value::Number(n) => n.parse::<u64>().ok(),
                    _ => None,
                };
                match (n(&pair[0]), n(&pair[1])) {
                    (Some(a), Some(b)) if a <= b => s.windows.push((a, b)),
                    _ => return Err("\"windows_unix_ns\": a window is not [start, end] in ns".into()),
                }
            }
            _ => return Err("\"windows_unix_ns\": a window is not [start, end]".into()),
        }
    }
    s.start_late_ns = d.u64("start_late_ns")?;
    s.msgs = d.u64("messages")?;
    s.bytes = d.u64("bytes")?;
    s.msg_rate = d.f64("msgs_per_sec")?;
    s.byte_rate = d.f64("mb_per_sec")? * 1e6;
    s.target = d.u64("target")?;
    s.attempted = d.u64("attempted")?;
    s.upgraded = d.u64("upgraded")?;
    s.peak_open = d.u64("peak_open")?;
    s.connect_failures = d.counts("connect_failures_by_reason")?;
    s.handshake_failures = d.counts("handshake_failures_by_reason")?;
    for (code, n) in d.counts("closes_by_code")? {
        let code = code.parse::<u16>().map_err(|_| format!("\"closes_by_code\": '{code}' is not a close code"))?;
        s.closes_by_code.insert(code, n);
    }
    s.clean_closes = d.u64("clean_closes")?;
    s.close_timeouts = d.u64("close_timeouts")?;
    s.mismatches = d.u64("echo_mismatches")?;
    s.fidelity_errors = d.u64("fidelity_errors")?;
    s.lost = d.counts("lost_by_reason")?;
    s.z_msgs = d.u64("deflate_messages")?;
    s.z_sent_bytes = d.u64("deflate_sent_bytes")?;
    s.z_echo_bytes = d.u64("deflate_echo_bytes")?;
    s.z_verbatim = d.u64("deflate_verbatim")?;
    s.overruns = d.u64("rate_dropped")?;
    s.backlog_peak = d.u64("rate_backlog_peak")?;
    s.fragments = d.u64("fragments")?;
    s.pings = d.u64("pings")?;
    s.pongs = d.u64("pongs")?;
    s.server_pings = d.u64("server_pings")?;
    s.clean_disconnects = d.u64("clean_reconnects")?;
    s.drops = d.u64("abrupt_drops")?;
    s.drops_rst = d.u64("abrupt_drops_rst")?;
    s.reconnects = d.u64("reconnects")?;
    s.interrupted = d.bool("interrupted")?;
    s.elapsed_ns = d.u64("elapsed_ns")?;
    let shards = d.u64("shards")?;
    for k in WORKLOAD_KEYS {
        d.get(k)?;
    }
    Ok(Record { doc, cfg, stats: s, shards })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_config;

    /// `stats`' sample, with a failure reason that JSON must escape and the elapsed time set.
    fn sample() -> Stats {
        let mut s = crate::stats::tests::sample();
        s.handshake_failed("status \"400\"");
        s.elapsed_ns = 3_000_000_123;
        s
    }

    #[test]
    fn json_is_well_formed_enough() {
        let cfg = test_config(&["ws://127.0.0.1:1/\"x"]);
        let j = json(&cfg, &sample(), 1);
        assert!(j.starts_with("{\n") && j.ends_with("}\n"));
        assert!(j.contains("\"url\": \"ws://127.0.0.1:1/\\\"x\""));
        assert!(j.contains("\"closes_by_code\": {\"1011\": 2}"));
        assert!(j.contains("\"echo_mismatches\": 3,"));
        assert!(j.contains("\"fidelity_errors\": 4,"));
        assert!(j.contains("\"p99_9\": "));
        // One top-level key per line (scripts/lib/common.sh reads it with sed).
        for line in j.lines().filter(|l| l.starts_with("  \"")) {
            assert!(line.ends_with(',') || line.starts_with("  \"failed\""), "{line}");
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let cfg = test_config(&["-m", "soak", "-c", "7", "--seed", "99", "--start-at", "1700000000.5", "ws://h:1/p"]);
        let s = sample();
        let r = read(&json(&cfg, &s, 3)).unwrap();
        assert_eq!(r.shards, 3);
        assert_eq!((r.cfg.mode, r.cfg.connections, r.cfg.seed, r.cfg.url.as_str()), (Mode::Soak, 7, 99, "ws://h:1/p"));
        assert_eq!(r.cfg.start_at_unix_ns, Some(1_700_000_000_500_000_000));
        assert_eq!(r.cfg.max_fragments, cfg.max_fragments);
        // Histograms: every bucket, not just the summary.
        assert_eq!(r.stats.latency, s.latency);
        assert_eq!(r.stats.handshake, s.handshake);
        let t = &r.stats;
        assert_eq!((t.msgs, t.bytes, t.target, t.upgraded, t.mismatches, t.fidelity_errors), (5, 100, 10, 9, 3, 4));
        assert_eq!((t.window_ns, t.elapsed_ns), (2_000_000_000, 3_000_000_123));
        assert_eq!(t.windows, s.windows);
        assert_eq!(t.closes_by_code, s.closes_by_code);
        assert_eq!(t.handshake_failures, s.handshake_failures);
        assert_eq!(t.connect_failures, s.connect_failures);
        assert_eq!(t.lost, s.lost);
        assert!(t.failed());
        // Written again from what was read: the same document.
        assert_eq!(json(&r.cfg, &r.stats, 3), json(&cfg, &s, 3));
    }

    #[test]
    fn histogram_round_trip_and_bad_input() {
        let mut h = new_histogram();
        for v in [1u64, 999, 1_000, 123_456_789, 3_600_000_000_000] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        assert_eq!(histogram_from_b64(&histogram_b64(&h)).unwrap(), h);
        assert!(histogram_from_b64("not base64!").unwrap_err().starts_with("not base64"));
        assert!(histogram_from_b64("AAAA").unwrap_err().starts_with("not an HdrHistogram"));
        let other = Histogram::<u64>::new_with_bounds(1, 1_000_000, 2).unwrap();
        assert!(histogram_from_b64(&histogram_b64(&other)).unwrap_err().contains("2 significant digits"));
    }

    #[test]
    fn refuses_old_schemas_and_inconsistent_files() {
        let cfg = test_config(&["ws://h:1/"]);
        let good = json(&cfg, &sample(), 1);
        let old = good.replace("  \"schema\": 2,\n", "");
        assert!(read(&old).unwrap_err().contains("older wsbench"));
        assert!(read(&good.replace("\"schema\": 2", "\"schema\": 3")).unwrap_err().contains("schema 3"));
        // The summary says 5 samples; a histogram of another run says otherwise.
        let other = histogram_b64(&new_histogram());
        let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
        for l in &mut lines {
            if l.starts_with("  \"latency_histogram\"") {
                *l = format!("  \"latency_histogram\": \"{other}\",");
            }
        }
        let e = read(&lines.join("\n")).unwrap_err();
        assert!(e.contains("counts 5 samples but its histogram holds 0"), "{e}");
        assert!(read(&good.replace("\"messages\": 5", "\"messages\": -5")).unwrap_err().contains("\"messages\""));
        assert!(read(&good.replace("\"seed\"", "\"sead\"")).unwrap_err().contains("no \"seed\" field"));
        assert!(read("[1]").is_err());
        assert!(read(&good[..good.len() / 2]).unwrap_err().starts_with("not JSON"));
    }
}
