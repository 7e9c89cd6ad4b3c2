//! Running the `wsbench` binary with `--json FILE` and reading that result (`wsbench_json`,
//! `BenchRun`), and the two readers of its values (`json_field`, `json_num`).
//!
//! Owns the result file's name and life (a temp file per run, removed once read). Imports
//! `process` (the bounded run).

use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::process::run_limited;

/// One finished wsbench run: its exit status, what it printed, and its `--json` file.
pub struct BenchRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The `--json` file's text; empty when wsbench wrote none.
    pub json: String,
}

/// Runs wsbench with `args` plus `--json FILE` (FILE in the temp directory, named after `prefix`,
/// this process and `name`); kills it and fails the test after `limit`.
pub fn wsbench_json(prefix: &str, name: &str, args: &[&str], limit: Duration) -> BenchRun {
    let json_path = std::env::temp_dir().join(format!("{prefix}-{}-{name}.json", std::process::id()));
    let _ = std::fs::remove_file(&json_path);
    let out = run_limited(Command::new(env!("CARGO_BIN_EXE_wsbench")).args(args).arg("--json").arg(&json_path), limit);
    let json = std::fs::read_to_string(&json_path).unwrap_or_default();
    let _ = std::fs::remove_file(&json_path);
    BenchRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    }
}

/// The raw value of the first `"key": value` in wsbench's JSON (objects returned whole, `{...}`).
pub fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\": ");
    let start = json.find(&pat).unwrap_or_else(|| panic!("no {key} in {json}")) + pat.len();
    let rest = &json[start..];
    let end = if rest.starts_with('{') { rest.find('}').unwrap() + 1 } else { rest.find([',', '\n']).unwrap() };
    rest[..end].trim()
}

/// `json_field` read as a count.
pub fn json_num(json: &str, key: &str) -> u64 {
    let v = json_field(json, key);
    v.parse().unwrap_or_else(|_| panic!("{key} = {v} is not a count"))
}
