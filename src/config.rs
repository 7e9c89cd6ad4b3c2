//! Server configuration: defaults, command-line parsing, validation.
//!
//! Owns every tunable and its documented default (and memory cost), the server's flag set and the
//! checks of values against each other and the design's limits. Parsing uses `lexopt`; the
//! grammar of sizes (`K`/`KiB`/`M`/`MiB`/`G`/`GiB`) and durations (seconds, fractions allowed, or
//! with `s`/`ms`) is not here but in [`crate::units`], shared with `wsbench`. It does not open
//! sockets, read files or touch process limits.

use std::net::SocketAddr;
use std::time::Duration;

use crate::deflate::negotiate::DeflateConfig;
use crate::tls::config::TlsFiles;
use crate::units::{self, UnitError};

/// Everything the reactor needs to know.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:9001`.
    pub listen: SocketAddr,
    /// Longest message (sum of its fragments) before closing with 1009. Default 16 MiB. Messages are
    /// streamed, so this costs no memory; it is a policy limit.
    pub max_message_size: u64,
    /// Per-connection bound on output the socket has not taken yet. Default 64 KiB. When it is
    /// reached the server stops reading that connection until it drains. Costs nothing while the
    /// peer keeps up (the buffer is pooled and only held under backpressure).
    pub write_buffer: usize,
    /// Close connections that have not upgraded after this long. Default 10 s.
    pub handshake_timeout: Duration,
    /// After sending a close frame, wait this long for the peer before closing TCP. Default 5 s.
    pub close_timeout: Duration,
    /// Connections beyond this get `503` before the upgrade. Default 1,048,576.
    pub max_connections: usize,
    /// Bytes read per `read` call into the reactor's shared buffer. Default 64 KiB.
    pub read_buffer: usize,
    /// Reactor threads, each with its own `SO_REUSEPORT` listener. Default 1.
    pub threads: usize,
    /// Set `SO_REUSEPORT` so several processes can share the address. Default off.
    pub reuse_port: bool,
    /// Ping connections that have been quiet this long. Default off.
    pub ping_interval: Option<Duration>,
    /// Close (1001) connections that have been silent this long. Default off.
    pub idle_timeout: Option<Duration>,
    /// On SIGTERM/SIGINT, wait this long for close replies before exiting. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Path of the Prometheus endpoint on plain GETs; `None` disables it (and `/healthz`).
    pub metrics_path: Option<String>,
    /// permessage-deflate (RFC 7692): `--deflate` (off by default), `--deflate-context-takeover`
    /// (off: no compression state lives in an idle connection), `--deflate-window-bits` (15).
    pub deflate: DeflateConfig,
    /// Always inflate and deflate again instead of echoing a client's compressed bytes as they
    /// came (`--deflate-recompress`; for measuring the cost of compression). Default off.
    pub deflate_recompress: bool,
    /// `--metrics-listen ADDR`: also serve `/metrics` and `/healthz` on this address, from this
    /// process alone (with N `--reuse-port` processes, each on its own port). Default off.
    pub metrics_listen: Option<SocketAddr>,
    /// `--process-label NAME`: value of the `process` label on every sample. Default: the port of
    /// `--metrics-listen` when that is set (stable across restarts), otherwise no label.
    pub process_label: Option<String>,
    /// `--tls-cert PATH --tls-key PATH`: the listener speaks TLS (`wss://`, and `https://` for
    /// `/metrics` and `/healthz`). Default off. The files are read at start-up and on `SIGHUP`
    /// (by `server`, not here).
    pub tls: Option<TlsFiles>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            max_message_size: 16 << 20,
            write_buffer: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_connections: 1 << 20,
            read_buffer: 64 << 10,
            threads: 1,
            reuse_port: false,
            ping_interval: None,
            idle_timeout: None,
            shutdown_timeout: Duration::from_secs(10),
            metrics_path: Some("/metrics".to_string()),
            deflate: DeflateConfig::default(),
            deflate_recompress: false,
            metrics_listen: None,
            process_label: None,
            tls: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server.
    Run(Box<Config>),
    /// Print help and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// `--help` text.
pub const HELP: &str = "\
wsecho: a WebSocket (RFC 6455) echo server

USAGE:
    wsecho [OPTIONS]

OPTIONS:
    --listen ADDR              address to listen on [default: 127.0.0.1:9001]
    --max-message-size BYTES   close with 1009 above this message size (inflated), at most
                               4GiB - 1 [default: 16MiB]
    --write-buffer BYTES       per-connection unsent-output bound; reading pauses when it is
                               reached [default: 64KiB, min 16KiB]
    --read-buffer BYTES        bytes per read into the shared buffer [default: 64KiB]
    --handshake-timeout SECS   close connections not upgraded by then [default: 10]
    --close-timeout SECS       wait this long for the peer after sending close [default: 5]
    --max-connections N        answer 503 beyond N open connections [default: 1048576]
    --threads N                N reactors, each with its own SO_REUSEPORT listener [default: 1]
    --reuse-port               set SO_REUSEPORT so several processes can share the address
    --ping-interval SECS       ping connections quiet for this long [default: off]
    --idle-timeout SECS        close (1001) connections silent for this long [default: off]
    --shutdown-timeout SECS    on SIGTERM/SIGINT wait this long for close replies [default: 10]
    --metrics-path PATH        Prometheus text on plain GET PATH [default: /metrics]
    --no-metrics               serve neither metrics nor /healthz
    --metrics-listen ADDR      also serve this process's /metrics and /healthz on ADDR (one
                               port per --reuse-port process) [default: off]
    --process-label NAME       `process` label on every sample [default: the --metrics-listen
                               port, or none]
    --tls-cert PATH            PEM certificate chain: serve wss:// (TLS 1.3 and 1.2); SIGHUP
                               re-reads it and the key [default: off]
    --tls-key PATH             PEM private key (PKCS#8, RSA or SEC1) for --tls-cert
    --deflate                  accept permessage-deflate (RFC 7692) offers [default: off]
    --deflate-context-takeover let clients keep compression context across messages (costs a
                               state per connection, see README) [default: off]
    --deflate-window-bits N    largest LZ77 window, 9..15 [default: 15]
    --deflate-recompress       inflate and deflate every compressed echo again instead of
                               echoing the client's compressed bytes [default: off]
    -h, --help                 print this help
    -V, --version              print the version

Sizes accept K, KiB, M, MiB, G, GiB suffixes; SECS are seconds, fractions allowed, or with an
s or ms suffix (500ms). Log level: RUST_LOG=error|warn|info|debug|trace.
";

/// A size flag's value, by the shared grammar ([`units::parse_size`]).
fn size_flag(s: &str) -> Result<u64, String> {
    units::parse_size(s).map_err(|e| match e {
        UnitError::UnknownUnit => format!("invalid size unit in '{s}' (K, KiB, M, MiB, G, GiB)"),
        UnitError::Overflow => format!("size '{s}' too large"),
        e => format!("invalid size '{s}' ({e})"),
    })
}

/// A duration flag's value, by the shared grammar ([`units::parse_duration`]); the range each
/// flag allows is checked by [`Config::validate`].
fn secs_flag(s: &str) -> Result<Duration, String> {
    units::parse_duration(s).map_err(|e| match e {
        UnitError::UnknownUnit => format!("invalid duration unit in '{s}' (seconds, s or ms)"),
        UnitError::Overflow => format!("duration '{s}' out of range"),
        e => format!("invalid duration '{s}' (seconds: {e})"),
    })
}

impl Config {
    /// Parses command-line arguments (without the program name).
    pub fn from_args<I>(args: I) -> Result<Command, String>
    where
        I: IntoIterator,
        I::Item: Into<std::ffi::OsString>,
    {
        use lexopt::prelude::*;
        let mut cfg = Config::default();
        let mut p = lexopt::Parser::from_args(args);
        let err = |e: lexopt::Error| e.to_string();
        let (mut tls_cert, mut tls_key) = (None, None);
        while let Some(arg) = p.next().map_err(err)? {
            let val = |p: &mut lexopt::Parser| -> Result<String, String> {
                p.value().map_err(err)?.into_string().map_err(|_| "argument is not UTF-8".to_string())
            };
            match arg {
                Short('h') | Long("help") => return Ok(Command::Help),
                Short('V') | Long("version") => return Ok(Command::Version),
                Long("listen") => {
                    let v = val(&mut p)?;
                    cfg.listen = v.parse().map_err(|_| format!("invalid --listen address '{v}' (want IP:PORT)"))?;
                }
                Long("max-message-size") => cfg.max_message_size = size_flag(&val(&mut p)?)?,
                Long("write-buffer") => cfg.write_buffer = to_usize(size_flag(&val(&mut p)?)?)?,
                Long("read-buffer") => cfg.read_buffer = to_usize(size_flag(&val(&mut p)?)?)?,
                Long("handshake-timeout") => cfg.handshake_timeout = secs_flag(&val(&mut p)?)?,
                Long("close-timeout") => cfg.close_timeout = secs_flag(&val(&mut p)?)?,
                Long("max-connections") => {
                    let v = val(&mut p)?;
                    cfg.max_connections = v.parse().map_err(|_| format!("invalid --max-connections '{v}'"))?;
                }
                Long("threads") => {
                    let v = val(&mut p)?;
                    cfg.threads = v.parse().map_err(|_| format!("invalid --threads '{v}'"))?;
                }
                Long("reuse-port") => cfg.reuse_port = true,
                Long("ping-interval") => cfg.ping_interval = Some(secs_flag(&val(&mut p)?)?),
                Long("idle-timeout") => cfg.idle_timeout = Some(secs_flag(&val(&mut p)?)?),
                Long("shutdown-timeout") => cfg.shutdown_timeout = secs_flag(&val(&mut p)?)?,
                Long("metrics-path") => {
                    let v = val(&mut p)?;
                    if !v.starts_with('/') {
                        return Err(format!("--metrics-path must start with '/' (got '{v}')"));
                    }
                    cfg.metrics_path = Some(v);
                }
                Long("no-metrics") => cfg.metrics_path = None,
                Long("metrics-listen") => {
                    let v = val(&mut p)?;
                    let a = v.parse().map_err(|_| format!("invalid --metrics-listen address '{v}' (want IP:PORT)"))?;
                    cfg.metrics_listen = Some(a);
                }
                Long("process-label") => cfg.process_label = Some(val(&mut p)?),
                Long("deflate") => cfg.deflate.enabled = true,
                Long("deflate-context-takeover") => cfg.deflate.context_takeover = true,
                Long("deflate-window-bits") => {
                    let v = val(&mut p)?;
                    cfg.deflate.window_bits =
                        v.parse().map_err(|_| format!("--deflate-window-bits takes 9..15, not '{v}'"))?;
                }
                Long("deflate-recompress") => cfg.deflate_recompress = true,
                Long("tls-cert") => tls_cert = Some(std::path::PathBuf::from(p.value().map_err(err)?)),
                Long("tls-key") => tls_key = Some(std::path::PathBuf::from(p.value().map_err(err)?)),
                _ => return Err(arg.unexpected().to_string()),
            }
        }
        cfg.tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        cfg.validate()?;
        Ok(Command::Run(Box::new(cfg)))
    }

    /// Checks the values against each other and the hard limits of the design.
    pub fn validate(&self) -> Result<(), String> {
        if self.write_buffer < 16 << 10 || self.write_buffer > 1 << 30 {
            return Err("--write-buffer must be between 16KiB and 1GiB".into());
        }
        if self.read_buffer < 4 << 10 || self.read_buffer > 16 << 20 {
            return Err("--read-buffer must be between 4KiB and 16MiB".into());
        }
        if self.max_connections == 0 || self.max_connections > u32::MAX as usize / 2 {
            return Err("--max-connections must be between 1 and 2^31".into());
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err("--threads must be between 1 and 1024".into());
        }
        let timeouts = [
            ("--handshake-timeout", Some(self.handshake_timeout)),
            ("--close-timeout", Some(self.close_timeout)),
            ("--shutdown-timeout", Some(self.shutdown_timeout)),
            ("--ping-interval", self.ping_interval),
            ("--idle-timeout", self.idle_timeout),
        ];
        for (name, d) in timeouts.iter().filter_map(|(n, d)| d.map(|d| (n, d))) {
            if d.as_millis() == 0 || d.as_secs() > 86_400 * 7 {
                return Err(format!("{name} must be between 1 ms and 7 days"));
            }
        }
        if self.max_message_size == 0 || self.max_message_size > u64::from(u32::MAX) {
            return Err("--max-message-size must be between 1 byte and 4GiB - 1".into());
        }
        if !(9..=15).contains(&self.deflate.window_bits) {
            return Err("--deflate-window-bits must be between 9 and 15".into());
        }
        let d = self.deflate;
        if !d.enabled && (d.context_takeover || d.window_bits != 15 || self.deflate_recompress) {
            return Err(
                "--deflate-context-takeover, --deflate-window-bits and --deflate-recompress need --deflate".into()
            );
        }
        if let Some(m) = self.metrics_listen {
            if self.metrics_path.is_none() {
                return Err("--metrics-listen and --no-metrics contradict each other".into());
            }
            if m == self.listen && m.port() != 0 {
                return Err("--metrics-listen must differ from --listen".into());
            }
        }
        if let Some(l) = &self.process_label {
            let ok = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
            if l.is_empty() || l.len() > 64 || !l.chars().all(ok) {
                return Err(format!("--process-label takes 1-64 of A-Z a-z 0-9 _ . : - (got '{l}')"));
            }
        }
        Ok(())
    }
}

fn to_usize(v: u64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| "size too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match Config::from_args(args.iter().copied())? {
            Command::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!((c.max_message_size, c.write_buffer), (16 << 20, 64 << 10));
        let c =
            run(&["--listen", "[::1]:0", "--max-message-size", "1KiB", "--write-buffer=32K", "--close-timeout", "0.5"])
                .unwrap();
        assert_eq!(c.listen, "[::1]:0".parse().unwrap());
        assert_eq!((c.max_message_size, c.write_buffer), (1024, 32768));
        assert_eq!(c.close_timeout, Duration::from_millis(500));
        assert!(matches!(Config::from_args(["--help"]), Ok(Command::Help)));
    }

    #[test]
    fn operations_flags() {
        let c =
            run(&["--threads", "4", "--reuse-port", "--ping-interval", "20", "--idle-timeout", "60", "--no-metrics"])
                .unwrap();
        assert_eq!((c.threads, c.reuse_port, c.metrics_path), (4, true, None));
        assert_eq!((c.ping_interval, c.idle_timeout), (Some(Duration::from_secs(20)), Some(Duration::from_secs(60))));
        assert!(run(&["--threads", "0"]).unwrap_err().contains("--threads"));
        assert!(run(&["--metrics-path", "metrics"]).unwrap_err().contains("--metrics-path"));
        let c = run(&["--metrics-listen", "127.0.0.1:9101", "--process-label", "p-7"]).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
        assert_eq!(c.process_label.as_deref(), Some("p-7"));
        assert!(run(&["--metrics-listen", "9101"]).unwrap_err().contains("--metrics-listen"));
        assert!(run(&["--metrics-listen", "127.0.0.1:9001"]).unwrap_err().contains("differ"));
        assert!(run(&["--metrics-listen", "127.0.0.1:0", "--no-metrics"]).unwrap_err().contains("contradict"));
        assert!(run(&["--process-label", "a\"b"]).unwrap_err().contains("--process-label"));
    }

    #[test]
    fn deflate_flags() {
        let c = run(&[]).unwrap();
        assert!(!c.deflate.enabled && !c.deflate.context_takeover && !c.deflate_recompress);
        let c =
            run(&["--deflate", "--deflate-window-bits", "10", "--deflate-context-takeover", "--deflate-recompress"])
                .unwrap();
        assert!(c.deflate.enabled && c.deflate.context_takeover && c.deflate_recompress);
        assert_eq!(c.deflate.window_bits, 10);
        assert!(run(&["--deflate", "--deflate-window-bits", "8"]).unwrap_err().contains("--deflate-window-bits"));
        assert!(run(&["--deflate", "--deflate-window-bits", "x"]).unwrap_err().contains("--deflate-window-bits"));
        assert!(run(&["--deflate-recompress"]).unwrap_err().contains("need --deflate"));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        assert!(run(&["--listen", "nope"]).unwrap_err().contains("--listen"));
        assert!(run(&["--write-buffer", "1K"]).unwrap_err().contains("--write-buffer"));
        assert!(run(&["--max-message-size", "12Q"]).unwrap_err().contains("unit"));
        assert!(run(&["--max-message-size", "4GiB"]).unwrap_err().contains("--max-message-size"));
        assert!(run(&["--handshake-timeout", "-1"]).is_err());
        assert!(run(&["--bogus"]).is_err());
    }

    #[test]
    fn size_and_duration_grammar_is_the_shared_one() {
        let c = run(&["--write-buffer", "32 kib", "--close-timeout", "500ms", "--idle-timeout", "1.5s"]).unwrap();
        assert_eq!(c.write_buffer, 32 << 10);
        assert_eq!(c.close_timeout, Duration::from_millis(500));
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(run(&["--ping-interval", "250ms"]).unwrap().ping_interval, Some(Duration::from_millis(250)));
        assert!(run(&["--close-timeout", "5m"]).unwrap_err().contains("unit"));
        assert!(run(&["--close-timeout", ""]).is_err());
        assert!(run(&["--close-timeout", "0"]).unwrap_err().contains("--close-timeout"));
        assert!(run(&["--close-timeout", "0.1ms"]).unwrap_err().contains("between 1 ms"));
        assert!(run(&["--shutdown-timeout", "1e8"]).unwrap_err().contains("out of range"));
        assert!(run(&["--max-message-size", "-5"]).is_err());
        assert!(run(&["--max-message-size", "99999999999999999999"]).unwrap_err().contains("too large"));
    }
}
