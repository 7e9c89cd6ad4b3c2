//! `wsecho` entry point: parse flags, raise the open-file limit, bind, run the reactor.
//!
//! No protocol code lives here.

use log::{error, info};
use wsecho::config::{Command, Config, HELP};
use wsecho::reactor::Reactor;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the effective soft limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    r.rlim_cur
}

fn main() {
    wsecho::logger::init();
    let cfg = match Config::from_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(c)) => c,
        Ok(Command::Help) => {
            print!("{HELP}");
            return;
        }
        Ok(Command::Version) => {
            println!("wsecho {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("wsecho: {e} (see --help)");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    let mut reactor = match Reactor::bind(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsecho: cannot listen on {}: {e}", cfg.listen);
            std::process::exit(1);
        }
    };
    info!("wsecho listening on {} (open-file limit {nofile})", reactor.local_addr());
    if let Err(e) = reactor.run() {
        error!("reactor failed: {e}");
        std::process::exit(1);
    }
}
