//! `wsbench`: load harness for WebSocket echo servers.
//!
//! Entry point only: hand `wsbench merge ...` to `merge`; otherwise parse the command line, check
//! `--start-at` against the clock, raise the open-file limit, plan addresses and check limits, run
//! the event loops here or in forked workers, then print the table (and JSON) and choose the exit
//! status. It owns no connection, loop or result logic; each concern lives in its own module, and
//! every `crate::` import points down this list (no cycles): `merge` (the merge command) →
//! `report` (the JSON result file, written and read back) → `json` (a JSON reader, a leaf);
//! `proc` (threads, forked workers) → `worker` (echo/rate/idle loop hooks) and `soak` (soak loop
//! hooks) → `mioloop` (the loop skeleton every mode shares) → `client` and `soak_conn` (the
//! modes' connection hooks) → `transport` (the connection machinery every mode shares);
//! `monitor` (progress) and `stats` (results); and the leaves: `workload` (echo/rate messages),
//! `payload` (soak's regenerated payloads), `frag` (fragmentation rules, frame fidelity), `wire`
//! (WebSocket bytes), `net` (addresses, limits, sockets), `tls` (the `wss://` client
//! configuration and the plain-or-TLS socket every connection uses), `run` (shares, phases, live
//! counters), `sys` (clock, stop flag, pipe writes) and `cli` (options).

mod cli;
mod client;
mod frag;
mod json;
mod merge;
mod mioloop;
mod monitor;
mod net;
mod payload;
mod proc;
mod report;
mod run;
mod soak;
mod soak_conn;
mod stats;
mod sys;
mod tls;
mod transport;
mod wire;
mod worker;
mod workload;

use std::process::ExitCode;

use cli::Parsed;
use monitor::{Monitor, Sink};

/// `--start-at` may be this far in the past (the shards' launch is not instantaneous).
const START_AT_PAST_NS: u64 = 1_000_000_000;
/// ... and no further ahead than this (a larger value is a unit mistake: ms or µs).
const START_AT_AHEAD_NS: u64 = 24 * 3600 * 1_000_000_000;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "merge") {
        return merge::main(args.skip(1).collect());
    }
    let mut cfg = match cli::parse_env() {
        Ok(Parsed::Run(c)) => c,
        Ok(Parsed::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("wsbench {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wsbench: {}", e.0);
            return ExitCode::from(2);
        }
    };
    if !cfg.seed_given {
        // Drawn here, before any fork, so every worker process uses the same one.
        cfg.seed = wire::Rng::from_os(0x50a4).next_u64();
    }
    let nofile = net::raise_nofile();
    let plan = match net::plan(&cfg, nofile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wsbench: {e}");
            return ExitCode::from(2);
        }
    };
    if !plan.sources.is_empty() && cfg.source_ips.is_empty() && !cfg.quiet {
        eprintln!(
            "wsbench: {} connections: spreading source addresses over {} (IP_BIND_ADDRESS_NO_PORT)",
            cfg.connections,
            plan.sources.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
        );
    }
    sys::init_clock();
    if let Some(at) = cfg.start_at_unix_ns {
        let now = sys::unix_now_ns();
        if at + START_AT_PAST_NS < now {
            eprintln!("wsbench: --start-at is {:.3} s in the past (at most 1 s allowed)", (now - at) as f64 / 1e9);
            return ExitCode::from(2);
        }
        if at > now + START_AT_AHEAD_NS {
            eprintln!(
                "wsbench: --start-at is {:.0} s ahead, more than 24 h: Unix time in seconds expected",
                (at - now) as f64 / 1e9
            );
            return ExitCode::from(2);
        }
    }
    sys::install_signal_handlers();

    let shares = run::split(&cfg);
    let mut monitor = Monitor::new(Sink::Terminal, cfg.mode, cfg.quiet, cfg.ready_file.clone());
    let result = if cfg.processes == 1 {
        proc::run_loops(&cfg, &plan, &shares[0], &mut monitor)
    } else {
        proc::run_forked(&cfg, &plan, &shares, &mut monitor)
    };
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsbench: {e}");
            return ExitCode::from(1);
        }
    };
    {
        // Not print!: a closed stdout (`| head`) must not turn into a panic.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(stats::table(&cfg, &stats).as_bytes());
        let _ = out.flush();
    }
    if stats.start_late_ns > 0 && !cfg.quiet {
        eprintln!(
            "wsbench: the ramp-up ended {:.1} ms after --start-at: this run's window began late",
            stats.start_late_ns as f64 / 1e6
        );
    }
    if let Some(path) = &cfg.json {
        if let Err(e) = sys::write_output(path, &report::json(&cfg, &stats, 1)) {
            eprintln!("wsbench: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if stats.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
