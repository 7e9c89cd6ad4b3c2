//! `wsecho` entry point: parse flags, raise the open-file limit, bind, run until shut down.
//!
//! No protocol code lives here; see `server` for the process lifecycle.

use log::{error, info, warn};
use wsecho::config::{Command, Config, HELP};
use wsecho::notify::Systemd;
use wsecho::server::{handle_signals, raise_nofile, Server};

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
    // The one place that reads systemd's variables; the socket-activation ones are unset so that
    // children do not inherit them.
    let sd = Systemd::from_vars(|k| std::env::var_os(k), std::process::id());
    for k in Systemd::LISTEN_VARS {
        // SAFETY: start-up, before any other thread of this process exists.
        unsafe { std::env::remove_var(k) };
    }
    let nofile = raise_nofile();
    let server = match Server::bind_with(&cfg, &sd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsecho: {e}");
            // A configuration the flags could not check (TLS files) is a usage error, like a bad flag.
            std::process::exit(if e.kind() == std::io::ErrorKind::InvalidInput { 2 } else { 1 });
        }
    };
    if let Err(e) = handle_signals(server.control(), sd.notifier(), server.tls()) {
        eprintln!("wsecho: cannot install signal handlers: {e}");
        std::process::exit(1);
    }
    info!(
        "wsecho listening on {} ({} reactor{}, open-file limit {nofile})",
        server.local_addr(),
        cfg.threads,
        if cfg.threads == 1 { "" } else { "s" }
    );
    if let Err(e) = sd.notifier().notify("READY=1") {
        warn!("sd_notify READY: {e}");
    }
    match server.run() {
        Ok(m) => info!(
            "stopped: {} connections accepted, {} messages echoed, {} bytes in, {} bytes out",
            m.accepted, m.messages_out, m.bytes_in, m.bytes_out
        ),
        Err(e) => {
            error!("reactor failed: {e}");
            std::process::exit(1);
        }
    }
}
