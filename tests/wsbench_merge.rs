//! Integration tests of `wsbench merge` and `--start-at` (issue 13, load side): two wsbench
//! processes run at once against one in-process `wsecho`, from different loopback source
//! addresses, started together by `--start-at`; `wsbench merge` of their `--json` results must
//! give the sum of their counts, and percentiles that are those of one histogram holding every
//! sample of both (the shards' histograms are decoded here independently of wsbench, with
//! `hdrhistogram`'s own deserializer, added, and compared bucket for bucket and percentile by
//! percentile with the merged file and the printed table). Also: merges compose, files of another
//! workload or schema are refused with exit status 2, and a `--start-at` in the past is refused.
//!
//! Each wsbench run is bounded by its `--duration` and, as a backstop, by a deadline after which
//! the test kills it and fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wsbench-merge-test-{}-{name}", std::process::id()))
}

fn wsbench(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wsbench"));
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// The raw value of a top-level `"key": value` line of wsbench's JSON.
fn field(json: &str, key: &str) -> String {
    let pat = format!("  \"{key}\": ");
    let line = json.lines().find(|l| l.starts_with(&pat)).unwrap_or_else(|| panic!("no {key} in {json}"));
    line[pat.len()..].trim_end_matches(',').to_string()
}

fn num(json: &str, key: &str) -> u64 {
    let v = field(json, key);
    v.parse().unwrap_or_else(|_| panic!("{key} = {v} is not a count"))
}

/// A field of the `latency_us` object, as written.
fn lat(json: &str, key: &str) -> String {
    let obj = field(json, "latency_us");
    let pat = format!("\"{key}\": ");
    let rest = &obj[obj.find(&pat).unwrap_or_else(|| panic!("no {key} in {obj}")) + pat.len()..];
    rest[..rest.find([',', '}']).unwrap()].to_string()
}

/// A histogram of the file, decoded here (not by wsbench).
fn histogram(json: &str, key: &str) -> Histogram<u64> {
    let b64 = field(json, key);
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim_matches('"')).expect("base64");
    Deserializer::new().deserialize(&mut bytes.as_slice()).expect("an HdrHistogram V2 histogram")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// As the table prints microseconds.
fn us(ns: u64) -> String {
    let v = ns as f64 / 1000.0;
    if v >= 100_000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[test]
fn two_processes_merged_equal_one_histogram_of_all_samples() {
    let addr = common::start(|_| {});
    let url = format!("ws://{addr}/");
    let start_at = format!("{:.3}", unix_now() + 3.0);
    let paths = [tmp("a.json"), tmp("b.json")];
    let mut children = Vec::new();
    for (path, src) in paths.iter().zip(["127.0.0.2", "127.0.0.3"]) {
        let _ = std::fs::remove_file(path);
        let p = path.to_str().unwrap();
        let args = [
            "-q",
            "-c",
            "20",
            "-k",
            "2",
            "-s",
            "64",
            "-d",
            "1",
            "--start-at",
            &start_at,
            "--source-ips",
            src,
            "--json",
            p,
            &url,
        ];
        children.push(wsbench(&args).spawn().expect("start wsbench"));
    }
    let outs: Vec<Output> =
        children.into_iter().map(|c| common::output_limited(c, Duration::from_secs(60), "wsbench")).collect();
    for o in &outs {
        assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    }
    let (a, b) = (read(&paths[0]), read(&paths[1]));

    // Both held until --start-at, then measured together.
    let at: u64 = num(&a, "start_at_unix_ns");
    for j in [&a, &b] {
        assert_eq!(num(j, "start_at_unix_ns"), at);
        let start = num(j, "window_start_unix_ns");
        assert!(start >= at, "window began {} ns before --start-at", at - start);
        assert_eq!(num(j, "start_late_ns"), 0, "{j}");
        assert!(start - at < 500_000_000, "window began {} ms after --start-at", (start - at) / 1_000_000);
        assert!(num(j, "messages") > 0, "{j}");
    }

    let merged = tmp("ab.json");
    let _ = std::fs::remove_file(&merged);
    let o =
        wsbench(&["merge", "--json", merged.to_str().unwrap(), paths[0].to_str().unwrap(), paths[1].to_str().unwrap()])
            .output()
            .expect("run wsbench merge");
    let table = text(&o.stdout);
    assert!(o.status.success(), "stdout:\n{table}\nstderr:\n{}", text(&o.stderr));
    let m = read(&merged);

    // Counts: the sum.
    for k in ["messages", "bytes", "attempted", "upgraded", "clean_closes", "connections", "target"] {
        assert_eq!(num(&m, k), num(&a, k) + num(&b, k), "{k}");
    }
    assert_eq!((num(&m, "upgraded"), num(&m, "echo_mismatches"), num(&m, "shards")), (40, 0, 2));

    // Percentiles: those of one histogram of every sample of both runs.
    let (ha, hb) = (histogram(&a, "latency_histogram"), histogram(&b, "latency_histogram"));
    assert_eq!((ha.len(), hb.len()), (num(&a, "messages"), num(&b, "messages")));
    let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    for h in [&ha, &hb] {
        for v in h.iter_recorded() {
            all.record_n(v.value_iterated_to(), v.count_at_value()).unwrap();
        }
    }
    assert_eq!(histogram(&m, "latency_histogram"), all, "merged histogram differs from the sum of the samples");
    assert_eq!(all.len(), num(&m, "messages"));
    for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
        assert_eq!(lat(&m, key), format!("{:.3}", all.value_at_quantile(q) as f64 / 1000.0), "{key}");
    }
    assert_eq!(lat(&m, "max"), format!("{:.3}", all.max() as f64 / 1000.0));
    let row = format!(
        "latency us             p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        us(all.value_at_quantile(0.5)),
        us(all.value_at_quantile(0.9)),
        us(all.value_at_quantile(0.99)),
        us(all.value_at_quantile(0.999)),
        us(all.max())
    );
    assert!(table.contains(&row), "{row}\nnot in\n{table}");
    let mut hs = histogram(&a, "handshake_histogram");
    hs.add(histogram(&b, "handshake_histogram")).unwrap();
    assert_eq!(histogram(&m, "handshake_histogram"), hs);

    // msg/s: all messages over the union of the two windows.
    let union = num(&m, "window_end_unix_ns") - num(&m, "window_start_unix_ns");
    assert_eq!(num(&m, "window_ns"), union);
    let rate: f64 = field(&m, "msgs_per_sec").parse().unwrap();
    let want = num(&m, "messages") as f64 / (union as f64 / 1e9);
    assert!((rate - want).abs() < 0.01, "{rate} vs {want}");
    assert!(
        table.starts_with(&format!("wsbench echo {url}: 40 connections, 64 B binary, 2 in flight each")),
        "{table}"
    );

    // The same file twice would count its runs twice: refused.
    let o = wsbench(&["merge", merged.to_str().unwrap(), merged.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("is the same result as"), "{}", text(&o.stderr));

    // Another workload (a changed size) and an older schema: exit 2, with the reason.
    let other = tmp("other.json");
    std::fs::write(&other, a.replace("  \"size\": 64,", "  \"size\": 65,")).unwrap();
    let o = wsbench(&["merge", paths[0].to_str().unwrap(), other.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("another workload than") && e.contains("\"size\" is 64 there and 65 here"), "{e}");
    std::fs::write(&other, a.replace("  \"schema\": 2,\n", "")).unwrap();
    let o = wsbench(&["merge", paths[0].to_str().unwrap(), other.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no \"schema\" field"), "{}", text(&o.stderr));
    let o = wsbench(&["merge", tmp("missing.json").to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("cannot read"), "{}", text(&o.stderr));

    for p in paths.iter().chain([&merged, &other]) {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn start_at_in_the_past_is_refused() {
    let past = format!("{:.3}", unix_now() - 5.0);
    let o = common::run_limited(&mut wsbench(&["--start-at", &past, "ws://127.0.0.1:9/"]), Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--start-at is 5."), "{}", text(&o.stderr));
    // A day and an hour ahead, and milliseconds: unit mistakes.
    for t in [format!("{:.0}", unix_now() + 90_000.0), format!("{:.0}", unix_now() * 1000.0)] {
        let o = common::run_limited(&mut wsbench(&["--start-at", &t, "ws://127.0.0.1:9/"]), Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o.stderr).contains("Unix time in seconds"), "{}", text(&o.stderr));
    }
}
