//! `wsbench merge [--json OUT] A.json B.json ...`: the result of shards run on several hosts (or
//! processes) as one run's table: counts summed, percentiles read from the sum of the shards'
//! histograms (never averaged percentiles), msg/s and MB/s = all messages (bytes) / the length of
//! the union of the shards' measured windows. `--json OUT` writes the merged result in the
//! schema of a run's `--json`, so merges compose.
//!
//! Owns the merge command: its arguments, the checks that files may be merged (one schema, one
//! workload, no file twice), the union of windows and the rates derived from it, and the notes on
//! stderr about windows that do not line up. It does not read JSON or histograms itself (see
//! `report`), sum counters or histograms (see [`Stats::merge`]) or format the table (`stats`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::ValueExt as _;

use crate::cli::Config;
use crate::report::{self, Record, WORKLOAD_KEYS};
use crate::stats::{self, Stats};

pub const HELP: &str = "\
wsbench merge - one table from the --json results of several wsbench runs (shards)

USAGE:
    wsbench merge [--json OUT] [-q] A.json B.json ...

Counts are summed; percentiles come from the sum of the shards' latency and handshake histograms
(HdrHistogram, 3 significant digits: exact to the histogram's precision, never averaged
percentiles); msg/s and MB/s are all messages (bytes) divided by the length of the union of the
shards' measured windows (Unix time), so shards that ran at different times are not counted as
concurrent load. peak open is the sum of the shards' peaks. A merged --json OUT is a result file
again: it can be merged with others.

Every file must have the same schema and workload (mode, url, size, text kind, deflate, fragments,
pipeline, fidelity, duration, warm-up, soak's options); connections, rates and processes may
differ and are summed.

    --json OUT     also write the merged result as JSON (`-`: to stdout, after the table)
    -q, --quiet    no notes on stderr about the windows
    -h, --help     print this help

EXIT STATUS: 0 as a run (nothing failed), 1 when the merged result counts failures (echo
mismatches, fidelity errors, lost connections, connect or handshake failures), 2 for unreadable
or unmergeable files and bad usage.
";

/// Why a merge could not be made (exit status 2).
#[derive(Debug)]
pub struct MergeError(pub String);

/// A merged result.
pub struct Merged {
    pub cfg: Config,
    pub stats: Stats,
    /// Runs the result stands for (the sum of the files' `shards`).
    pub shards: u64,
    /// What stderr should say about the windows (empty when they line up).
    pub notes: Vec<String>,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged").field("shards", &self.shards).field("notes", &self.notes).finish_non_exhaustive()
    }
}

/// Sorted, disjoint union of `[start, end)` intervals.
pub fn union(mut w: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    w.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(w.len());
    for (a, b) in w {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn shown(v: Option<&crate::json::Value>) -> String {
    match v {
        Some(crate::json::Value::String(s)) => format!("'{s}'"),
        Some(crate::json::Value::Number(n)) => n.clone(),
        Some(crate::json::Value::Bool(b)) => b.to_string(),
        Some(v) => v.kind().to_string(),
        None => "missing".into(),
    }
}

/// Merges result files given as `(name, text)`.
pub fn merge_texts(files: &[(String, String)]) -> Result<Merged, MergeError> {
    let Some((first_name, _)) = files.first() else { return Err(MergeError("no result files to merge".into())) };
    let mut recs: Vec<Record> = Vec::with_capacity(files.len());
    for (name, text) in files {
        let r = report::read(text).map_err(|e| MergeError(format!("{name}: {e}")))?;
        if let Some(f) = recs.first() {
            if let Some(k) = WORKLOAD_KEYS.iter().find(|k| f.doc.get(**k) != r.doc.get(**k)) {
                return Err(MergeError(format!(
                    "{name}: another workload than {first_name}: \"{k}\" is {} there and {} here",
                    shown(f.doc.get(*k)),
                    shown(r.doc.get(*k))
                )));
            }
        }
        if let Some(i) = recs.iter().position(|o| o.doc == r.doc) {
            return Err(MergeError(format!("{name} is the same result as {}: each run counts once", files[i].0)));
        }
        recs.push(r);
    }

    let mut it = recs.into_iter();
    let Some(first) = it.next() else { return Err(MergeError("no result files to merge".into())) };
    let (mut cfg, mut s, mut shards) = (first.cfg, first.stats, first.shards);
    let mut all_windows = s.windows.clone();
    let mut spans: Vec<(u64, u64)> = s.windows.first().map(|w| (w.0, s.windows_end())).into_iter().collect();
    let mut late = Vec::new();
    if s.start_late_ns > 0 {
        late.push(s.start_late_ns);
    }
    for r in it {
        let (c, o) = (&r.cfg, &r.stats);
        cfg.connections += c.connections;
        cfg.active += c.active;
        cfg.processes += c.processes;
        cfg.threads = cfg.threads.max(c.threads);
        cfg.rate += c.rate;
        if cfg.start_at_unix_ns != c.start_at_unix_ns {
            cfg.start_at_unix_ns = None;
        }
        if o.start_late_ns > 0 {
            late.push(o.start_late_ns);
        }
        all_windows.extend_from_slice(&o.windows);
        if let Some(w) = o.windows.first() {
            spans.push((w.0, o.windows_end()));
        }
        s.merge(o);
        shards += r.shards;
    }
    // Rates over the union of the windows (Stats::merge took the loops' hull and summed rates).
    s.windows = union(all_windows);
    s.window_ns = s.windows.iter().map(|(a, b)| b - a).sum();
    let secs = s.window_ns as f64 / 1e9;
    (s.msg_rate, s.byte_rate) = if secs > 0.0 { (s.msgs as f64 / secs, s.bytes as f64 / secs) } else { (0.0, 0.0) };

    let mut notes = Vec::new();
    if spans.len() > 1 {
        let overlap =
            spans.iter().map(|w| w.1).min().unwrap_or(0).saturating_sub(spans.iter().map(|w| w.0).max().unwrap_or(0));
        let starts = spans.iter().map(|w| w.0).max().unwrap_or(0) - spans.iter().map(|w| w.0).min().unwrap_or(0);
        let mut n = format!(
            "{} files ({shards} runs): windows' union {:.3} s, all measuring together {:.3} s, starts {:.1} ms apart",
            files.len(),
            secs,
            overlap as f64 / 1e9,
            starts as f64 / 1e6
        );
        if (overlap as f64) < 0.9 * s.window_ns as f64 {
            let _ = write!(
                n,
                "; the windows overlap for {:.0}% of their union: msg/s is the mean over the union, not the load at \
                 any one time (use --start-at)",
                100.0 * overlap as f64 / s.window_ns.max(1) as f64
            );
        }
        notes.push(n);
    }
    if let Some(max) = late.iter().max() {
        notes.push(format!(
            "{} of the runs began their window after --start-at (ramp-up too long; up to {:.1} ms late)",
            late.len(),
            *max as f64 / 1e6
        ));
    }
    Ok(Merged { cfg, stats: s, shards, notes })
}

/// Runs `wsbench merge` with the arguments after `merge`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(MergeError(e)) => {
            eprintln!("wsbench merge: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<OsString>) -> Result<ExitCode, MergeError> {
    use lexopt::Arg::{Long, Short, Value};
    let usage = |e: lexopt::Error| MergeError(e.to_string());
    let mut p = lexopt::Parser::from_args(args);
    let mut out: Option<PathBuf> = None;
    let mut quiet = false;
    let mut paths: Vec<PathBuf> = Vec::new();
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            Long("json") => out = Some(PathBuf::from(p.value().map_err(usage)?)),
            Short('q') | Long("quiet") => quiet = true,
            Value(v) => paths.push(PathBuf::from(v.string().map_err(usage)?)),
            _ => return Err(usage(arg.unexpected())),
        }
    }
    if paths.is_empty() {
        return Err(MergeError("no result files given (wsbench merge [--json OUT] A.json B.json ...)".into()));
    }
    let mut files = Vec::with_capacity(paths.len());
    for path in &paths {
        let text =
            std::fs::read_to_string(path).map_err(|e| MergeError(format!("cannot read {}: {e}", path.display())))?;
        files.push((path.display().to_string(), text));
    }
    let m = merge_texts(&files)?;
    if !quiet {
        for n in &m.notes {
            eprintln!("wsbench merge: {n}");
        }
    }
    {
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(stats::table(&m.cfg, &m.stats).as_bytes());
        let _ = o.flush();
    }
    if let Some(path) = &out {
        if let Err(e) = crate::sys::write_output(path, &report::json(&m.cfg, &m.stats, m.shards)) {
            eprintln!("wsbench merge: cannot write {}: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    }
    Ok(if m.stats.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_config;
    use crate::stats::{new_histogram, percentiles};
    use crate::wire::Rng;

    /// A run's result with these latency samples, measured over `[start, end)` Unix ns.
    fn shard(args: &[&str], samples: &[u64], start: u64, end: u64) -> String {
        let cfg = test_config(args);
        let mut s = Stats::default();
        for &v in samples {
            s.latency.saturating_record(v);
        }
        s.handshake.saturating_record(200_000 + samples.len() as u64);
        s.msgs = samples.len() as u64;
        s.bytes = s.msgs * cfg.size as u64;
        s.target = cfg.connections as u64;
        s.upgraded = cfg.connections as u64;
        s.clean_closes = cfg.connections as u64;
        s.window_ns = end - start;
        s.windows = vec![(start, end)];
        s.msg_rate = s.msgs as f64 / (s.window_ns as f64 / 1e9);
        s.elapsed_ns = s.window_ns + 1_000_000;
        report::json(&cfg, &s, 1)
    }

    fn named(texts: &[&String]) -> Vec<(String, String)> {
        texts.iter().enumerate().map(|(i, t)| (format!("s{i}.json"), (*t).clone())).collect()
    }

    /// Samples of two shards unlike each other (a fast host and a slow one with a tail), so that
    /// averaging their percentiles would be visibly wrong.
    fn two_populations() -> (Vec<u64>, Vec<u64>) {
        let mut rng = Rng::new(7);
        let fast: Vec<u64> = (0..40_000).map(|_| 50_000 + rng.next_u64() % 100_000).collect();
        let slow: Vec<u64> = (0..10_000)
            .map(|i| {
                if i % 50 == 0 {
                    20_000_000 + rng.next_u64() % 80_000_000
                } else {
                    2_000_000 + rng.next_u64() % 3_000_000
                }
            })
            .collect();
        (fast, slow)
    }

    #[test]
    fn percentiles_are_those_of_one_histogram_of_all_samples() {
        let (fast, slow) = two_populations();
        let t0 = 1_700_000_000_000_000_000u64;
        let url = ["-c", "10", "ws://10.0.0.1:9001/"];
        let a = shard(&url, &fast, t0, t0 + 10_000_000_000);
        let b = shard(&url, &slow, t0 + 5_000_000, t0 + 10_005_000_000);
        let m = merge_texts(&named(&[&a, &b])).unwrap();
        // One histogram of every raw sample, recorded directly.
        let mut all = new_histogram();
        for &v in fast.iter().chain(&slow) {
            all.record(v).unwrap();
        }
        assert_eq!(m.stats.latency, all);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.stats.latency.value_at_quantile(q), all.value_at_quantile(q), "q {q}");
        }
        // And that differs from averaging the shards' percentiles (what a merge must not do).
        let (pa, pb, pm) = (
            percentiles(&report::read(&a).unwrap().stats.latency).unwrap(),
            percentiles(&report::read(&b).unwrap().stats.latency).unwrap(),
            percentiles(&m.stats.latency).unwrap(),
        );
        assert!(((pa.p99 + pb.p99) / 2.0 - pm.p99).abs() > 1000.0, "{} {} {}", pa.p99, pb.p99, pm.p99);
        // Counts summed; msg/s over the union of the windows (10.005 s).
        assert_eq!((m.stats.msgs, m.stats.upgraded, m.cfg.connections, m.shards), (50_000, 20, 20, 2));
        assert_eq!(m.stats.windows, vec![(t0, t0 + 10_005_000_000)]);
        assert!((m.stats.msg_rate - 50_000.0 / 10.005).abs() < 1e-6, "{}", m.stats.msg_rate);
        assert!(m.notes[0].contains("starts 5.0 ms apart"), "{:?}", m.notes);
        // The table is a run's table, from the merged histogram.
        let t = stats::table(&m.cfg, &m.stats);
        assert!(t.starts_with("wsbench echo ws://10.0.0.1:9001/: 20 connections"), "{t}");
        assert!(t.contains(&format!("p99 {:.1}", all.value_at_quantile(0.99) as f64 / 1000.0)), "{t}");
        assert!(t.contains("messages               50000"), "{t}");
    }

    #[test]
    fn merges_compose() {
        let (fast, slow) = two_populations();
        let t0 = 1_700_000_000_000_000_000u64;
        let args = ["-c", "3", "ws://h:1/"];
        let a = shard(&args, &fast[..20_000], t0, t0 + 10_000_000_000);
        let b = shard(&args, &fast[20_000..], t0 + 1, t0 + 10_000_000_001);
        let c = shard(&args, &slow, t0 + 2, t0 + 10_000_000_002);
        let abc = merge_texts(&named(&[&a, &b, &c])).unwrap();
        let ab = merge_texts(&named(&[&a, &b])).unwrap();
        let ab_json = report::json(&ab.cfg, &ab.stats, ab.shards);
        let ab_c = merge_texts(&named(&[&ab_json, &c])).unwrap();
        assert_eq!(ab_c.shards, 3);
        assert_eq!(report::json(&ab_c.cfg, &ab_c.stats, 3), report::json(&abc.cfg, &abc.stats, 3));
        // The same file twice would count its run twice.
        let e = merge_texts(&named(&[&a, &b, &a])).unwrap_err().0;
        assert_eq!(e, "s2.json is the same result as s0.json: each run counts once");
    }

    #[test]
    fn windows_that_do_not_overlap_are_not_concurrent_load() {
        let t0 = 1_700_000_000_000_000_000u64;
        let args = ["ws://h:1/"];
        let a = shard(&args, &[1_000; 100], t0, t0 + 1_000_000_000);
        let b = shard(&args, &[1_000; 100], t0 + 3_000_000_000, t0 + 4_000_000_000);
        let m = merge_texts(&named(&[&a, &b])).unwrap();
        assert_eq!(m.stats.window_ns, 2_000_000_000);
        assert!((m.stats.msg_rate - 100.0).abs() < 1e-9, "{}", m.stats.msg_rate);
        assert!(m.notes[0].contains("overlap for 0%"), "{:?}", m.notes);
        assert_eq!(union(vec![(5, 6), (1, 3), (2, 4), (4, 5)]), vec![(1, 6)]);
        assert_eq!(union(vec![(7, 9), (1, 2)]), vec![(1, 2), (7, 9)]);
    }

    #[test]
    fn refuses_other_workloads_and_schemas() {
        let t0 = 1_700_000_000_000_000_000u64;
        let a = shard(&["-s", "20", "ws://h:1/"], &[1_000], t0, t0 + 1_000_000_000);
        for (args, key) in [
            (&["-s", "1k", "ws://h:1/"][..], "\"size\" is 20 there and 1024 here"),
            (&["-m", "rate", "-r", "10", "ws://h:1/"][..], "\"mode\" is 'echo' there and 'rate' here"),
            (&["-d", "5", "ws://h:1/"][..], "\"duration_s\" is 10.000 there and 5.000 here"),
            (&["ws://h:2/"][..], "\"url\" is 'ws://h:1/' there and 'ws://h:2/' here"),
            (&["-k", "4", "ws://h:1/"][..], "\"pipeline\""),
            (&["--text", "ws://h:1/"][..], "\"text\""),
        ] {
            let b = shard(args, &[1_000], t0, t0 + 1_000_000_000);
            let e = merge_texts(&named(&[&a, &b])).unwrap_err().0;
            assert!(e.starts_with("s1.json: another workload than s0.json: "), "{e}");
            assert!(e.contains(key), "{e}");
        }
        // Connections, rates and processes may differ.
        let b = shard(&["-c", "7", "-p", "7", "ws://h:1/"], &[2_000], t0, t0 + 1_000_000_000);
        assert_eq!(merge_texts(&named(&[&a, &b])).unwrap().cfg.processes, 8);
        let old = a.replace("  \"schema\": 2,\n", "");
        let e = merge_texts(&named(&[&a, &old])).unwrap_err().0;
        assert!(e.starts_with("s1.json: no \"schema\" field"), "{e}");
        assert!(merge_texts(&[]).is_err());
    }
}
