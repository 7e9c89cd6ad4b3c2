//! The process around the reactors: listeners, threads, signals, systemd notifications.
//!
//! Owns start-up and shutdown of a whole server: raising RLIMIT_NOFILE to the hard limit, taking
//! the listening socket from systemd socket activation or binding one per reactor (`SO_REUSEPORT`
//! when there are several reactors or `--reuse-port`; sockets are made in `listener`), one thread per reactor, SIGTERM/SIGINT
//! (the first starts a graceful shutdown, a second exits at once) and `READY=1` / `STOPPING=1`.
//! It does not handle connections (see `reactor`).

use crate::config::Config;
use crate::listener::{self, bind_listener};
use crate::metrics::{Metrics, MetricsBoard};
use crate::notify::{Notifier, Systemd};
use crate::reactor::{Control, Reactor};
use crate::scrape;
use crate::tls::config::TlsSource;
use log::{info, warn};
use mio::net::TcpListener;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the effective soft limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
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

/// The listening sockets, one per reactor: inherited from systemd (duplicated per reactor) or
/// freshly bound.
fn listeners(cfg: &Config, sd: &Systemd) -> io::Result<Vec<TcpListener>> {
    let n = cfg.threads;
    if sd.listen_fds >= 1 {
        // SAFETY: systemd passed a listening socket as fd 3 to this process (`$LISTEN_FDS`), and
        // nothing else in the process uses fd 3.
        let std_l = unsafe { listener::inherited()? };
        info!("using the socket passed by systemd ({})", std_l.local_addr()?);
        let mut v = Vec::with_capacity(n);
        for _ in 1..n {
            v.push(TcpListener::from_std(std_l.try_clone()?));
        }
        v.push(TcpListener::from_std(std_l));
        return Ok(v);
    }
    let reuse = cfg.reuse_port || n > 1;
    let first = bind_listener(cfg.listen, reuse)?;
    // With port 0 the others must join the port the first one got.
    let addr = first.local_addr()?;
    let mut v = vec![first];
    for _ in 1..n {
        v.push(bind_listener(addr, true)?);
    }
    Ok(v)
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    reactors: Vec<Reactor>,
    control: Arc<Control>,
    board: Arc<MetricsBoard>,
    local: SocketAddr,
    /// `--metrics-listen`: bound, served from [`Server::run`], with its `process` label.
    metrics: Option<(scrape::Endpoint, String, String)>,
    /// `--tls-cert`: the configuration the reactors' handshakes use (`SIGHUP` reloads it).
    tls: Option<Arc<TlsSource>>,
}

impl Server {
    /// Binds the listeners and builds one reactor per thread (no systemd integration).
    pub fn bind(cfg: &Config) -> io::Result<Server> {
        Server::bind_with(cfg, &Systemd::default())
    }

    /// Binds (or inherits from systemd) the listeners and builds one reactor per thread; the
    /// first reactor pings systemd's watchdog when `sd` asks for it. A listener's error says
    /// which address (`cannot listen on ADDR: ...`).
    pub fn bind_with(cfg: &Config, sd: &Systemd) -> io::Result<Server> {
        let control = Control::new();
        let board = Arc::new(MetricsBoard::new(cfg.threads));
        // Certificate and key first: a bad pair is a configuration error (InvalidInput: exit 2).
        let tls = match &cfg.tls {
            Some(files) => {
                Some(TlsSource::open(files.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?)
            }
            None => None,
        };
        let listeners = listeners(cfg, sd)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen)))?;
        // `--metrics-listen`: bound now so that a bad address fails start-up; the `process` label
        // defaults to its port (stable across restarts, unlike a pid).
        let mut cfg = cfg.clone();
        let metrics = match (cfg.metrics_listen, &cfg.metrics_path) {
            (Some(a), Some(path)) => {
                let ep = scrape::Endpoint::bind(a)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {a} (--metrics-listen): {e}")))?;
                let label = cfg.process_label.get_or_insert_with(|| ep.local_addr().port().to_string()).clone();
                Some((ep, path.clone(), label))
            }
            _ => None,
        };
        let cfg = &cfg;
        let mut reactors = Vec::with_capacity(listeners.len());
        // Reactors publish to the board when a scrape must sum them or read them from outside.
        let publish = listeners.len() > 1 || metrics.is_some();
        for (i, l) in listeners.into_iter().enumerate() {
            let slot = publish.then(|| (board.clone(), i));
            let mut r = Reactor::with_listener(cfg, l, control.clone(), slot)?;
            if let Some(t) = &tls {
                r.set_tls(t.clone());
            }
            reactors.push(r);
        }
        let local = reactors[0].local_addr();
        if let Some(w) = sd.watchdog {
            reactors[0].set_watchdog(w, sd.notifier());
        }
        Ok(Server { reactors, control, board, local, metrics, tls })
    }

    /// The `--metrics-listen` address as bound (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(ep, ..)| ep.local_addr())
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The TLS configuration source (`--tls-cert`), for `SIGHUP` reloads.
    pub fn tls(&self) -> Option<Arc<TlsSource>> {
        self.tls.clone()
    }

    /// The shutdown switch.
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Runs every reactor (reactor 0 on the calling thread) until a graceful shutdown completes;
    /// returns the summed counters.
    pub fn run(self) -> io::Result<Metrics> {
        let Server { mut reactors, board, control, metrics, .. } = self;
        let serving = match metrics {
            Some((ep, path, label)) => Some(ep.spawn(board.clone(), control, path, Some(label))?),
            None => None,
        };
        let mut first = reactors.remove(0);
        let handles: Vec<_> = reactors
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                std::thread::Builder::new().name(format!("wsecho-reactor-{}", i + 1)).spawn(move || {
                    let res = r.run();
                    (res, r.metrics().clone())
                })
            })
            .collect::<io::Result<_>>()?;
        let res = first.run();
        let mut total = first.metrics().clone();
        for h in handles {
            match h.join() {
                Ok((r, m)) => {
                    total.add(&m);
                    r?;
                }
                Err(_) => return Err(io::Error::other("a reactor thread panicked")),
            }
        }
        if let Some(s) = serving {
            s.stop();
        }
        drop(board);
        res.map(|_| total)
    }
}

/// Installs SIGTERM/SIGINT handling: the first signal sends `STOPPING=1` and starts a graceful
/// shutdown, a second one exits at once (status 1). With `tls`, `SIGHUP` re-reads the
/// certificate and key: new handshakes use the new pair, open connections keep theirs, a bad
/// pair is logged and the old one kept.
pub fn handle_signals(control: Arc<Control>, notifier: Notifier, tls: Option<Arc<TlsSource>>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("wsecho-signals".into()).spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            if sig == SIGHUP {
                match &tls {
                    Some(t) => match t.reload() {
                        Ok(()) => info!("SIGHUP: TLS certificate and key reloaded"),
                        Err(e) => warn!("SIGHUP: TLS reload failed, keeping the previous pair: {e}"),
                    },
                    None => info!("SIGHUP: nothing to reload (no --tls-cert)"),
                }
                continue;
            }
            seen += 1;
            if seen == 1 {
                info!("signal {sig}: graceful shutdown (a second signal exits at once)");
                if let Err(e) = notifier.notify("STOPPING=1") {
                    warn!("sd_notify STOPPING: {e}");
                }
                control.shutdown();
            } else {
                warn!("signal {sig} again: exiting now");
                std::process::exit(1);
            }
        }
    })?;
    Ok(())
}
