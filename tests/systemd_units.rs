//! The systemd units in scripts/systemd/ are valid for the systemd on this machine.
//!
//! `systemd-analyze verify` exits 0 on unknown or misspelled directives and only warns, so every
//! byte it prints is a failure here. The units are copied to a temporary directory with
//! `ExecStart=` pointing at the binary cargo just built (verify checks that it is executable). A
//! negative control makes sure a misspelled directive is indeed reported, so that a silent
//! `systemd-analyze` cannot make the check pass vacuously. `systemd-analyze` comes from Debian's
//! `systemd` package, which `scripts/ci-deps.sh` installs; without it these tests fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wsecho::config::{Command as Cli, Config};

const INSTALLED_EXEC: &str = "ExecStart=/usr/local/bin/wsecho ";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `systemd-analyze` on PATH (or in /usr/bin, /bin), else a panic saying how to install it.
fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")]);
    for d in dirs {
        let p = d.join("systemd-analyze");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "systemd-analyze not found: these tests need Debian's `systemd` package. \
         Run `scripts/ci-deps.sh` (as root) to install the test dependencies."
    );
}

/// A fresh directory holding the two units, `ExecStart=` rewritten to the built binary, and the
/// service text passed through `edit`.
fn units_dir(tag: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = std::env::temp_dir().join(format!("wsecho-units-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let service = read("scripts/systemd/wsecho.service");
    assert_eq!(
        service.lines().filter(|l| l.starts_with(INSTALLED_EXEC)).count(),
        1,
        "wsecho.service must have exactly one `{INSTALLED_EXEC}...` line"
    );
    let exe = env!("CARGO_BIN_EXE_wsecho");
    let service = service.replace(INSTALLED_EXEC, &format!("ExecStart={exe} "));
    std::fs::write(dir.join("wsecho.service"), edit(service)).unwrap();
    std::fs::write(dir.join("wsecho.socket"), read("scripts/systemd/wsecho.socket")).unwrap();
    dir
}

fn verify(dir: &Path) -> Output {
    Command::new(systemd_analyze())
        .arg("verify")
        .arg("--man=no")
        .arg(dir.join("wsecho.service"))
        .arg(dir.join("wsecho.socket"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify")
}

fn printed(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn units_verify_without_any_output() {
    let dir = units_dir("ok", |s| s);
    let out = verify(&dir);
    let text = printed(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success() && text.is_empty(), "systemd-analyze verify: {}\n{text}", out.status);
}

#[test]
fn a_misspelled_directive_is_reported() {
    let dir = units_dir("typo", |s| s.replace("ProtectSystem=strict", "ProtectSytem=strict"));
    let out = verify(&dir);
    let text = printed(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(text.contains("ProtectSytem"), "the negative control was not reported: {}\n{text}", out.status);
}

#[test]
fn sandbox_exposure_stays_low() {
    let dir = units_dir("security", |s| s);
    // --threshold is in tenths: 20 = exposure 2.0 (this unit scores 1.2 on systemd 252).
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(dir.join("wsecho.service"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze security");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "exposure above 2.0 or error: {}\n{}", out.status, printed(&out));
}

/// The values of `key=` in the service (all of them, in order).
fn directive(service: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    service.lines().filter_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().to_string()).collect()
}

#[test]
fn service_keeps_what_the_server_relies_on() {
    let s = read("scripts/systemd/wsecho.service");
    assert_eq!(directive(&s, "Type"), ["notify"]);
    assert_eq!(directive(&s, "NotifyAccess"), ["main"]);
    assert_eq!(directive(&s, "EnvironmentFile"), ["-/etc/default/wsecho"]);
    // The server raises RLIMIT_NOFILE with setrlimit, which lives in @resources.
    for f in directive(&s, "SystemCallFilter") {
        assert!(!f.contains("@resources"), "SystemCallFilter={f} would filter setrlimit");
    }
    // systemd's stop timeout must leave room for the default 10 s graceful shutdown.
    let stop: f64 = directive(&s, "TimeoutStopSec")[0].parse().unwrap();
    assert!(stop > Config::default().shutdown_timeout.as_secs_f64(), "TimeoutStopSec={stop}");
}

#[test]
fn example_defaults_file_parses() {
    let text = read("scripts/systemd/wsecho.default");
    let opts = text
        .lines()
        .find_map(|l| l.strip_prefix("WSECHO_OPTS="))
        .expect("wsecho.default sets WSECHO_OPTS")
        .trim()
        .trim_matches('"')
        .to_string();
    let cfg = match Config::from_args(opts.split_whitespace()) {
        Ok(Cli::Run(c)) => c,
        other => panic!("WSECHO_OPTS=\"{opts}\" does not parse: {other:?}"),
    };
    let stop: f64 = directive(&read("scripts/systemd/wsecho.service"), "TimeoutStopSec")[0].parse().unwrap();
    assert!(cfg.shutdown_timeout.as_secs_f64() < stop, "--shutdown-timeout must stay below TimeoutStopSec");
}
