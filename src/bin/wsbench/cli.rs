//! Command line of `wsbench`: the option set, its `--help` text, value parsing (counts, rates,
//! probabilities, the `ws://` / `wss://` URL) and the checks that need nothing but the arguments.
//!
//! Owns [`Config`], the immutable description of one run that every other module reads. The
//! grammar of sizes and durations is not here but in the library (`wsecho::units`, shared with
//! the server); this module only applies wsbench's limits to them. It does not resolve host names,
//! look at system limits or plan source addresses (see `net`), and it never touches sockets.

#[cfg(test)]
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::ValueExt as _;
use wsecho::units::{self, UnitError};

/// What each connection does once upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Closed loop: keep `pipeline` messages in flight per active connection, verify every echo.
    Echo,
    /// Open loop: `rate` messages per second over the active connections, latency measured from
    /// the scheduled send time.
    Rate,
    /// Open and upgrade the connections, hold them for `duration`, send nothing.
    Idle,
    /// Long-running correctness load: random sizes, types, fragmentation, pings, planned
    /// disconnects and reconnects; every echo and pong verified (see `soak`).
    Soak,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Rate => "rate",
            Mode::Idle => "idle",
            Mode::Soak => "soak",
        }
    }
}

/// What text messages are made of (`--text-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Random printable ASCII (hardly compressible: about 1.2:1).
    Ascii,
    /// About half the characters 2-, 3- and 4-byte UTF-8 (soak's text).
    Mixed,
    /// JSON-like records (an array of small objects with repeated keys and a few values each),
    /// cut at exactly `--size` bytes: compressible like real JSON, about 3:1 at 1 KiB.
    Json,
}

impl TextKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            TextKind::Ascii => "ascii",
            TextKind::Mixed => "mixed",
            TextKind::Json => "json",
        }
    }
}

/// `--tls-version`: the one TLS version offered (both by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V12,
    V13,
}

/// Everything one run needs to know, as given on the command line (with defaults filled in).
#[derive(Debug, Clone)]
pub struct Config {
    /// The URL as given.
    pub url: String,
    /// `host[:port]` from the URL, sent as the `Host` header.
    pub host_header: String,
    /// Host part of the URL (no brackets), to resolve.
    pub host: String,
    /// Port from the URL (80, or 443 for `wss://`, when absent).
    pub port: u16,
    /// Request target, starting with `/`.
    pub path: String,
    /// A `wss://` URL: every connection speaks TLS (see `tls`).
    pub tls: bool,
    /// `--insecure`: accept any server certificate (the handshake signature is still checked).
    pub insecure: bool,
    /// `--ca FILE`: trust the PEM certificates in FILE (instead of the system's CA bundle).
    pub ca: Option<PathBuf>,
    /// `--tls-version`: offer only this version; `None` = TLS 1.3 and 1.2.
    pub tls_version: Option<TlsVersion>,
    /// Resume TLS sessions (tickets or session IDs from earlier connections); off with
    /// `--no-tls-resume`.
    pub tls_resume: bool,
    pub mode: Mode,
    pub connections: usize,
    /// Connections that send messages (the rest stay idle); `connections` unless `--active`.
    /// Soak mode: the most connections with a message in flight at once (they take turns).
    pub active: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Text (`--text`) or binary (default) messages.
    pub text: bool,
    /// What text messages are made of (`--text-kind`; any kind implies `text`).
    pub text_kind: TextKind,
    /// Negotiate permessage-deflate (RFC 7692) and send every message compressed (`--deflate`;
    /// echo, rate and idle modes).
    pub deflate: bool,
    /// Echo/rate: frames per message (`--fragments`), near-equal lengths; 1 = unfragmented.
    pub fragments: u32,
    /// Check that the echo of each frame has the sent frame's FIN, opcode and length (every mode
    /// that sends; off with `--no-fidelity`). See `frag` for the text exception.
    pub fidelity: bool,
    /// Echo mode: messages in flight per connection. Rate mode: the most a connection may have in
    /// flight before scheduled messages wait in the backlog.
    pub pipeline: usize,
    /// Rate mode: messages per second over all active connections.
    pub rate: f64,
    /// Measured time (after ramp-up and warm-up); hold time in idle mode.
    pub duration: Duration,
    pub warmup: Duration,
    /// New connections per second over all workers; `None` = as fast as `max_pending` allows.
    pub connect_rate: Option<f64>,
    /// Connects plus handshakes in progress at once, per event loop.
    pub max_pending: usize,
    /// Limit for TCP connect plus upgrade of one connection.
    pub connect_timeout: Duration,
    /// Limit for the whole ramp-up (after it, connections not yet opened are given up).
    pub ramp_timeout: Duration,
    /// How long to wait for close handshakes at the end.
    pub close_timeout: Duration,
    /// Event loops (threads) per process.
    pub threads: usize,
    /// Forked worker processes.
    pub processes: usize,
    /// Source addresses to bind; empty = automatic.
    pub source_ips: Vec<std::net::IpAddr>,
    pub json: Option<PathBuf>,
    /// File created (with `n=N`) once every connection is upgraded.
    pub ready_file: Option<PathBuf>,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// Soak: largest message (sizes are drawn from 0..=max_size).
    pub max_size: usize,
    /// Soak: most fragments per message (drawn from 1..=max_fragments).
    pub max_fragments: usize,
    /// Soak: probability of a ping before each fragment (at most 3 per message).
    pub ping_prob: f64,
    /// Soak: probability per message of a planned disconnect (clean close or abrupt drop).
    pub disconnect_prob: f64,
    /// Soak: seed of every connection's random choices (given, or drawn by `main`).
    pub seed: u64,
    pub seed_given: bool,
    /// Soak: an open connection with a message in flight that makes no progress (nothing read or
    /// written) for this long is lost.
    pub echo_timeout: Duration,
    /// `--start-at`: Unix time (ns) at which messages start flowing (warm-up, then the measured
    /// window), after a ramp-up begun at once; `main` checks it against the clock.
    pub start_at_unix_ns: Option<u64>,
}

pub const HELP: &str = "\
wsbench - load harness for WebSocket echo servers (mio, single-threaded by default)

USAGE:
    wsbench [OPTIONS] ws://HOST[:PORT]/PATH
    wsbench [OPTIONS] wss://HOST[:PORT]/PATH     (TLS; see TLS)

MODES (--mode):
    echo   (default) closed loop: every active connection keeps --pipeline messages of --size
           bytes in flight (each in --fragments frames) and verifies every echoed message byte for
           byte and every echoed frame for fidelity (see FRAME FIDELITY)
    rate   open loop: --rate messages/s spread over the active connections; latency is measured
           from each message's scheduled send time (no coordinated omission)
    idle   open and upgrade --connections, hold them for --duration, send nothing (for memory
           measurements); see ALL_UPGRADED below
    soak   correctness under churn: connections take turns (at most --active with a message in
           flight) sending messages of random size 0..--max-size, text (valid UTF-8 with 2-, 3-
           and 4-byte characters) or binary, split into 1..--max-fragments fragments at random
           byte positions, with pings between fragments; every echo and every pong is verified
           byte for byte, and every echoed frame for fidelity (see FRAME FIDELITY). With
           probability --disconnect-prob per message a connection closes cleanly (close 1000,
           expects 1000) or drops TCP mid-message (FIN or RST), then reconnects, so --connections
           stay open. Planned disconnects are not lost connections; a server close, reset, EOF or
           an echo making no progress for --echo-timeout is. Payloads are regenerated from seeds,
           never stored. Ramp-up, then --warmup + --duration of soak (both counted), then closing

LOAD:
    -m, --mode MODE            echo | rate | idle | soak                       [default: echo]
    -c, --connections N        connections to open (100k+ works, see --processes) [default: 100]
        --active N             only N of the connections send messages; the rest stay open and
                               idle                                            [default: all]
                               soak: at most N messages in flight at once, the connections
                               taking turns                      [default: min(connections, 1000)]
    -s, --size BYTES           payload bytes per message; suffixes k/KiB, m/MiB  [default: 20]
                               (sizes: K, KiB, M, MiB, G, GiB, any case, powers of 1024)
        --binary               binary messages                                 [default]
        --text                 text messages (ASCII payload)
        --text-kind KIND       ascii | mixed | json: text messages; mixed = about half the
                               characters 2-, 3- and 4-byte UTF-8 (as soak's text); json =
                               JSON-like records cut at exactly --size bytes, compressible (about
                               3:1 at 1 KiB with deflate level 6)              [default: ascii]
        --deflate              offer permessage-deflate (RFC 7692; see DEFLATE) and send every
                               message compressed; the run fails at the upgrade when the server
                               does not accept it (echo, rate and idle modes)
        --fragments N          echo/rate: send each message as N frames of near-equal size (the
                               first text/binary with FIN=0, then continuations, the last with
                               FIN=1); each echoed frame is checked against its fragment
                                                                               [default: 1]
        --no-fidelity          check only the reassembled bytes of each echo, not its frames
    -k, --pipeline K           echo: messages in flight per connection         [default: 1]
                               rate: most in flight per connection before messages wait in the
                               backlog                                         [default: 16]
    -r, --rate R               rate mode: messages per second, all connections together

SOAK (--mode soak):
        --max-size BYTES       largest message                                 [default: 64KiB]
        --max-fragments N      most fragments per message                      [default: 8]
        --ping-prob P          chance of a ping before each fragment (<= 3 per message)
                                                                               [default: 0.1]
        --disconnect-prob P    chance per message of a clean close or abrupt drop, followed by a
                               reconnect                                       [default: 0.002]
        --seed N               seed of all random choices (printed in the result) [default: random]
        --echo-timeout SECS    a message in flight with nothing read or written this long counts
                               as a lost connection                            [default: 15]

FRAME FIDELITY (echo, rate and soak; off with --no-fidelity):
    The echo of every data frame must be exactly one frame with the same FIN, opcode and payload
    length as the frame sent; a frame that differs counts as a fidelity error, which fails the
    run like an echo mismatch (once per message; the message is not counted as echoed).
    Exception: a frame of a text message with more than 64 KiB (65536 bytes) of payload may be
    echoed cut into several frames (the server validates UTF-8 within a bounded buffer); from
    the first such frame to the end of its message only the reassembled bytes are checked.
    Compressed messages (--deflate): FIN, opcode and frame count, not lengths (see DEFLATE).

DEFLATE (--deflate):
    The upgrade request offers `permessage-deflate; server_no_context_takeover;
    client_no_context_takeover; client_max_window_bits`. A 101 without that extension, or with
    an answer wsbench cannot honour (no server_no_context_takeover, an unknown or repeated
    parameter, a client window smaller than the messages need), is a handshake failure
    (permessage-deflate not accepted ...). Each payload variant is compressed once before the
    run (raw deflate, level 6, 32 KiB window, Z_SYNC_FLUSH, the 00 00 ff ff tail stripped: RFC
    7692 §7.2.1) and sent with RSV1 on its first frame; --fragments cuts the compressed bytes. The
    echo must carry RSV1 on its first frame; it is inflated as it arrives (one inflate state per
    message being received, reused, reset between messages) and compared byte for byte with the
    payload. The table also says how many echoes were the compressed bytes sent (verbatim: a
    pass-through server) and their mean compressed size. Frame fidelity for compressed messages
    compares FIN, opcode and frame count but not lengths: a server that inflates and deflates
    again sends other bytes (and a compressed frame above 64 KiB may come back cut, as text).

TLS (wss:// URLs; port 443 by default):
        --ca FILE              trust the PEM certificate(s) in FILE (a self-signed server
                               certificate or its CA)  [default: the system's CA bundle]
        --insecure             accept any certificate and name (the handshake signature is still
                               checked, so the handshake costs what a verified one does)
        --tls-version V        1.2 | 1.3: offer only this version            [default: both]
        --no-tls-resume        a full handshake for every connection (default: sessions are
                               resumed from tickets or session IDs of earlier connections)
    rustls with aws-lc-rs; ALPN http/1.1; SNI = the URL's host (none for an IP address, which is
    checked against the certificate's IP SANs). The handshake time includes the TLS handshake
    (TCP connect start to the verified 101); TLS failures are handshake failures named `tls: ...`
    (e.g. `tls: invalid peer certificate: UnknownIssuer`: give --ca or --insecure;
    `CaUsedAsEndEntity`: the server's self-signed certificate says CA:TRUE, which `openssl req
    -x509` writes by default: make it with -addext basicConstraints=critical,CA:FALSE).

TIMING (seconds, fractions allowed, or with an s or ms suffix: 2.5, 500ms):
    -d, --duration SECS        measured time after ramp-up and warm-up; hold time in idle mode
                                                                               [default: 10]
        --warmup SECS          run this long after ramp-up before measuring    [default: 0]
        --connect-rate R       open at most R connections per second (ramp-up) [default: no limit]
        --max-pending N        connects+handshakes in progress at once, per loop [default: 512]
        --connect-timeout SECS limit for TCP connect + upgrade of one connection [default: 10]
        --ramp-timeout SECS    limit for the whole ramp-up                     [default: 120]
        --close-timeout SECS   wait for close handshakes at the end
                                               [default: 2 + 1 per 20,000 connections]
        --start-at UNIX_TIME   shards on several hosts start together: ramp up at once, hold the
                               connections open (nothing sent) until this Unix time (seconds,
                               fractions allowed, e.g. $(($(date +%s) + 30))), then warm-up and
                               the measured window. A time more than 1 s in the past or more than
                               24 h ahead is an error (exit 2); a ramp-up that ends after it
                               starts at once, with a warning and start_late_ns in --json

SCALE:
    -t, --threads N            event loops (threads) per process               [default: 1]
    -p, --processes P          fork P worker processes, each with its own event loop(s) and share
                               of the connections; the parent aggregates       [default: 1]
        --source-ips A,B,...   bind connections to these source addresses, round robin
                               (default: automatic; 127.0.0.1, .2, ... when the target is on
                               loopback and the connections exceed 40% of the ephemeral port
                               range, beyond which Linux connect() slows down)

OUTPUT:
        --json FILE            also write the result as JSON, with both histograms (HdrHistogram
                               V2, base64), all counts and the timing window in Unix ns: the input
                               of `wsbench merge`. FILE `-`: to stdout, after the table

MERGE (results of shards run on several hosts or processes):
    wsbench merge [--json OUT] A.json B.json ...
                               the table of all shards together: counts summed, percentiles from
                               the merged histograms, msg/s = all messages / the union of the
                               measured windows; OUT is a result file again (merges compose).
                               Files of another schema or workload are refused (exit 2)
        --ready-file PATH      create PATH (containing n=N) once all connections are upgraded
    -q, --quiet                no progress lines on stderr
    -h, --help                 print this help
    -V, --version              print the version

A progress line goes to stderr once a second; the result table goes to stdout. Marker lines for
scripts go to stdout, each flushed at once: `ALL_UPGRADED n=N` when every connection is upgraded
(or `UPGRADE_INCOMPLETE upgraded=U n=N` when the ramp-up ended with some missing), then
`MEASURE_START msgs=M` and `MEASURE_END msgs=M` around the measured window (M = messages echoed
so far; sample e.g. server CPU time at both and divide by the difference).
Ctrl-C (SIGINT) or SIGTERM stops the run early: connections are closed and the partial result is
printed. The total run time is ramp-up + warm-up + duration + at most --close-timeout.

EXIT STATUS:
    0  every echo matched, no connection was lost or failed to open/upgrade
    1  echo mismatches, fidelity errors, lost connections (closed by the server, reset, EOF
       before our close), or connections that could not be opened or upgraded
    2  bad usage, or the run cannot fit the limits (open files per process, ports)
";

/// A command line that cannot be run; printed as `wsbench: <msg>` with exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

impl From<String> for UsageError {
    fn from(e: String) -> Self {
        UsageError(e)
    }
}

impl From<&str> for UsageError {
    fn from(e: &str) -> Self {
        UsageError(e.to_string())
    }
}

/// What `parse` found: a run, or a request for help/version.
pub enum Parsed {
    Run(Box<Config>),
    Help,
    Version,
}

/// Parses the process arguments.
pub fn parse_env() -> Result<Parsed, UsageError> {
    parse(lexopt::Parser::from_env())
}

/// The configuration of `wsbench URL` with every other option at its default: what a result
/// file read back by `wsbench merge` starts from.
pub fn defaults_for(url: &str) -> Result<Config, UsageError> {
    if url.starts_with('-') {
        return Err(format!("'{url}' is not a URL").into());
    }
    match parse(lexopt::Parser::from_args([url])) {
        Ok(Parsed::Run(c)) => Ok(*c),
        Ok(_) => Err(format!("'{url}' is not a URL").into()),
        Err(e) => Err(e),
    }
}

/// Parses an argument list (without the program name); used by the unit tests.
#[cfg(test)]
pub fn parse_from<I, S>(args: I) -> Result<Parsed, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    parse(lexopt::Parser::from_args(args))
}

fn parse(mut p: lexopt::Parser) -> Result<Parsed, UsageError> {
    use lexopt::Arg::{Long, Short, Value};

    let mut url: Option<String> = None;
    let mut mode = Mode::Echo;
    let mut connections = 100usize;
    let mut active: Option<usize> = None;
    let mut size = 20usize;
    let mut text = false;
    let mut text_kind = TextKind::Ascii;
    let mut deflate = false;
    let mut insecure = false;
    let mut ca: Option<PathBuf> = None;
    let mut tls_version = None;
    let mut tls_resume = true;
    let mut fragments: Option<usize> = None;
    let mut fidelity = true;
    let mut pipeline: Option<usize> = None;
    let mut rate: Option<f64> = None;
    let mut duration = Duration::from_secs(10);
    let mut warmup = Duration::ZERO;
    let mut connect_rate = None;
    let mut max_pending = 512usize;
    let mut connect_timeout = Duration::from_secs(10);
    let mut ramp_timeout = Duration::from_secs(120);
    let mut close_timeout = None;
    let mut threads = 1usize;
    let mut processes = 1usize;
    let mut source_ips = Vec::new();
    let mut json = None;
    let mut ready_file = None;
    let mut quiet = false;
    let mut max_size = 64usize << 10;
    let mut max_fragments = 8usize;
    let mut ping_prob = 0.1f64;
    let mut disconnect_prob = 0.002f64;
    let mut seed: Option<u64> = None;
    let mut echo_timeout = Duration::from_secs(15);
    let mut start_at_unix_ns = None;

    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('m') | Long("mode") => {
                mode = match p.value()?.string()?.as_str() {
                    "echo" => Mode::Echo,
                    "rate" => Mode::Rate,
                    "idle" => Mode::Idle,
                    "soak" => Mode::Soak,
                    other => return Err(format!("unknown mode '{other}' (echo, rate, idle or soak)").into()),
                }
            }
            Short('c') | Long("connections") => connections = count(&mut p, "--connections")?,
            Long("active") => active = Some(count(&mut p, "--active")?),
            Short('s') | Long("size") => size = self::size(&mut p, "--size")?,
            Long("binary") => text = false,
            Long("text") => text = true,
            Long("text-kind") => {
                text_kind = match p.value()?.string()?.as_str() {
                    "ascii" => TextKind::Ascii,
                    "mixed" => TextKind::Mixed,
                    "json" => TextKind::Json,
                    k => return Err(format!("--text-kind: '{k}' is not ascii, mixed or json").into()),
                };
                text = true;
            }
            Long("deflate") => deflate = true,
            Long("insecure") => insecure = true,
            Long("ca") => ca = Some(PathBuf::from(p.value()?)),
            Long("tls-version") => {
                tls_version = match p.value()?.string()?.as_str() {
                    "1.2" => Some(TlsVersion::V12),
                    "1.3" => Some(TlsVersion::V13),
                    v => return Err(format!("--tls-version: '{v}' is not 1.2 or 1.3").into()),
                }
            }
            Long("no-tls-resume") => tls_resume = false,
            Long("fragments") => fragments = Some(count(&mut p, "--fragments")?),
            Long("no-fidelity") => fidelity = false,
            Short('k') | Long("pipeline") => pipeline = Some(count(&mut p, "--pipeline")?),
            Short('r') | Long("rate") => rate = Some(positive(&mut p, "--rate")?),
            Short('d') | Long("duration") => duration = secs(&mut p, "--duration")?,
            Long("warmup") => warmup = secs(&mut p, "--warmup")?,
            Long("connect-rate") => connect_rate = Some(positive(&mut p, "--connect-rate")?),
            Long("max-pending") => max_pending = count(&mut p, "--max-pending")?,
            Long("connect-timeout") => connect_timeout = secs(&mut p, "--connect-timeout")?,
            Long("ramp-timeout") => ramp_timeout = secs(&mut p, "--ramp-timeout")?,
            Long("close-timeout") => close_timeout = Some(secs(&mut p, "--close-timeout")?),
            Short('t') | Long("threads") => threads = count(&mut p, "--threads")?,
            Short('p') | Long("processes") => processes = count(&mut p, "--processes")?,
            Long("source-ips") => {
                for part in p.value()?.string()?.split(',').filter(|s| !s.trim().is_empty()) {
                    let ip = part.trim().parse().map_err(|_| format!("--source-ips: '{part}' is not an IP address"))?;
                    source_ips.push(ip);
                }
                if source_ips.is_empty() {
                    return Err("--source-ips needs at least one address".into());
                }
            }
            Long("json") => json = Some(PathBuf::from(p.value()?)),
            Long("ready-file") | Long("hold-file") => ready_file = Some(PathBuf::from(p.value()?)),
            Short('q') | Long("quiet") => quiet = true,
            Long("max-size") => max_size = self::size(&mut p, "--max-size")?,
            Long("max-fragments") => max_fragments = count(&mut p, "--max-fragments")?,
            Long("ping-prob") => ping_prob = probability(&mut p, "--ping-prob")?,
            Long("disconnect-prob") => disconnect_prob = probability(&mut p, "--disconnect-prob")?,
            Long("seed") => {
                let v = p.value()?.string()?;
                let parsed = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse::<u64>().ok(),
                };
                seed = Some(parsed.ok_or_else(|| format!("--seed: '{v}' is not a whole number"))?);
            }
            Long("echo-timeout") => echo_timeout = secs(&mut p, "--echo-timeout")?,
            Long("start-at") => start_at_unix_ns = Some(unix_time(&p.value()?.string()?)?),
            Value(v) if url.is_none() => url = Some(v.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }

    let url = url.ok_or("missing the server URL (ws://HOST:PORT/PATH); see --help")?;
    let (host, port, host_header, path) = parse_url(&url)?;
    let tls = url.starts_with("wss://");
    if !tls && (insecure || ca.is_some() || tls_version.is_some() || !tls_resume) {
        return Err("--ca, --insecure, --tls-version and --no-tls-resume apply to wss:// URLs".into());
    }
    if insecure && ca.is_some() {
        return Err("--insecure and --ca exclude each other".into());
    }
    let active = active.unwrap_or(if mode == Mode::Soak { connections.min(1000) } else { connections });
    if active > connections {
        return Err(format!("--active {active} is more than --connections {connections}").into());
    }
    if connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let pipeline = pipeline.unwrap_or(if mode == Mode::Rate { 16 } else { 1 });
    if pipeline > 4096 {
        return Err("--pipeline must be at most 4096".into());
    }
    if fragments.is_some() && !matches!(mode, Mode::Echo | Mode::Rate) {
        return Err("--fragments applies to --mode echo and rate (soak: --max-fragments)".into());
    }
    if deflate && mode == Mode::Soak {
        return Err("--deflate applies to --mode echo, rate and idle".into());
    }
    let fragments = fragments.unwrap_or(1);
    if fragments > 4096 {
        return Err("--fragments must be at most 4096".into());
    }
    // Wire bytes per message: the payload and up to 14 header bytes per frame.
    let msg_bytes = (size as u64).saturating_add(14 * fragments as u64);
    if (pipeline as u64).saturating_mul(msg_bytes) > (1u64 << 31) {
        return Err("--pipeline x --size must stay under 2 GiB".into());
    }
    let rate = match (mode, rate) {
        (Mode::Rate, Some(r)) => r,
        (Mode::Rate, None) => return Err("--mode rate needs --rate R (messages per second)".into()),
        (_, Some(_)) => return Err("--rate only applies to --mode rate".into()),
        (_, None) => 0.0,
    };
    if max_size > u32::MAX as usize / 2 {
        return Err("--max-size must be at most 1 GiB".into());
    }
    if max_fragments > 10_000 {
        return Err("--max-fragments must be at most 10000".into());
    }
    if echo_timeout.is_zero() {
        return Err("--echo-timeout must be more than 0".into());
    }
    if processes > 1024 || threads > 256 {
        return Err("--processes is limited to 1024 and --threads to 256".into());
    }
    if processes * threads > connections {
        return Err(format!(
            "{} event loops ({processes} processes x {threads} threads) for {connections} connections: \
             use fewer processes or threads",
            processes * threads
        )
        .into());
    }
    // 100k close handshakes take a few seconds on two cores; the bound grows with the count.
    let close_timeout = close_timeout
        .unwrap_or_else(|| Duration::from_secs(2) + Duration::from_secs_f64(connections as f64 / 20_000.0));
    Ok(Parsed::Run(Box::new(Config {
        url,
        host_header,
        host,
        port,
        path,
        tls,
        insecure,
        ca,
        tls_version,
        tls_resume,
        mode,
        connections,
        active,
        size,
        text,
        text_kind,
        deflate,
        fragments: fragments as u32,
        fidelity,
        pipeline,
        rate,
        duration,
        warmup,
        connect_rate,
        max_pending,
        connect_timeout,
        ramp_timeout,
        close_timeout,
        threads,
        processes,
        source_ips,
        json,
        ready_file,
        quiet,
        max_size,
        max_fragments,
        ping_prob,
        disconnect_prob,
        seed: seed.unwrap_or(0),
        seed_given: seed.is_some(),
        echo_timeout,
        start_at_unix_ns,
    })))
}

/// `--start-at`: Unix seconds with up to 9 decimals (`1767225600`, `1767225600.25`), exactly, as
/// ns. Whether it is in the past is `main`'s check (this module reads no clock).
pub fn unix_time(s: &str) -> Result<u64, UsageError> {
    let bad = || UsageError(format!("--start-at: '{s}' is not a Unix time in seconds (e.g. 1767225600.5)"));
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return Err(bad());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = whole.parse().map_err(|_| bad())?;
    let mut ns = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    secs.checked_mul(1_000_000_000).and_then(|v| v.checked_add(ns)).ok_or_else(bad)
}

fn count(p: &mut lexopt::Parser, name: &str) -> Result<usize, UsageError> {
    let s = p.value()?.string()?;
    let s2: String = s.chars().filter(|&c| c != '_').collect();
    let v = if let Some(k) = s2.strip_suffix(['k', 'K']) {
        k.parse::<usize>().ok().and_then(|v| v.checked_mul(1000))
    } else {
        s2.parse::<usize>().ok()
    };
    match v {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("{name}: '{s}' is not a positive whole number").into()),
    }
}

fn positive(p: &mut lexopt::Parser, name: &str) -> Result<f64, UsageError> {
    let s = p.value()?.string()?;
    let s2: String = s.chars().filter(|&c| c != '_').collect();
    let v = if let Some(k) = s2.strip_suffix(['k', 'K']) {
        k.parse::<f64>().ok().map(|v| v * 1000.0)
    } else {
        s2.parse::<f64>().ok()
    };
    match v {
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{name}: '{s}' is not a positive number").into()),
    }
}

fn probability(p: &mut lexopt::Parser, name: &str) -> Result<f64, UsageError> {
    let s = p.value()?.string()?;
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{name}: '{s}' is not a probability (0 to 1)").into()),
    }
}

fn secs(p: &mut lexopt::Parser, name: &str) -> Result<Duration, UsageError> {
    let s = p.value()?.string()?;
    units::parse_duration(&s)
        .map_err(|e| format!("{name}: '{s}' is not a number of seconds ({e}; e.g. 10, 2.5, 500ms)").into())
}

fn size(p: &mut lexopt::Parser, name: &str) -> Result<usize, UsageError> {
    size_value(&p.value()?.string()?, name)
}

/// A size by the shared grammar ([`units::parse_size`]), at most 2 GiB.
fn size_value(s: &str, name: &str) -> Result<usize, UsageError> {
    match units::parse_size(s) {
        Ok(v) if v <= 1 << 31 => Ok(v as usize),
        Ok(_) | Err(UnitError::Overflow) => Err(format!("{name}: '{s}' is too large (at most 2 GiB)").into()),
        Err(e) => Err(format!("{name}: '{s}' is not a size ({e}; e.g. 20, 1k, 16MiB)").into()),
    }
}

/// Splits `ws://host[:port][/path]` or `wss://...` into (host, port, Host header, path); the
/// port is 80 or 443 when absent.
pub fn parse_url(url: &str) -> Result<(String, u16, String, String), UsageError> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("ws://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, 443)
    } else {
        return Err(format!("'{url}' is not a ws:// or wss:// URL").into());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("'{url}': missing host (or user info, which is not supported)").into());
    }
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let end = r.find(']').ok_or_else(|| format!("'{url}': unclosed '['"))?;
        let host = &r[..end];
        let after = &r[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("'{url}': bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("'{url}': bad authority").into()),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| format!("'{url}': bad port '{p}'"))?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("'{url}': missing host").into());
    }
    if authority.len() + path.len() > 4096 {
        return Err("the URL is longer than 4096 bytes".into());
    }
    Ok((host, port, authority.to_string(), path))
}

/// Tests: the configuration for a command line that must parse.
#[cfg(test)]
pub fn test_config(args: &[&str]) -> Config {
    match parse_from(args.iter().copied()) {
        Ok(Parsed::Run(c)) => *c,
        _ => panic!("{args:?} did not parse"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Config {
        match parse_from(args.iter().copied()) {
            Ok(Parsed::Run(c)) => *c,
            Ok(_) => panic!("help/version"),
            Err(e) => panic!("{}", e.0),
        }
    }

    #[test]
    fn urls() {
        let (h, p, hh, path) = parse_url("ws://127.0.0.1:9001/echo?x=1").unwrap();
        assert_eq!((h.as_str(), p, hh.as_str(), path.as_str()), ("127.0.0.1", 9001, "127.0.0.1:9001", "/echo?x=1"));
        let (h, p, _, path) = parse_url("ws://localhost").unwrap();
        assert_eq!((h.as_str(), p, path.as_str()), ("localhost", 80, "/"));
        let (h, p, _, _) = parse_url("ws://[::1]:81/").unwrap();
        assert_eq!((h.as_str(), p), ("::1", 81));
        assert!(parse_url("http://x/").is_err());
        let (h, p, hh, _) = parse_url("wss://example.com/").unwrap();
        assert_eq!((h.as_str(), p, hh.as_str()), ("example.com", 443, "example.com"));
        assert_eq!(parse_url("wss://[::1]/").unwrap().1, 443);
        assert!(parse_url("ws://:80/").is_err());
        assert!(parse_url("ws://h:99999/").is_err());
    }

    #[test]
    fn sizes_and_secs() {
        // The grammar is the library's (`wsecho::units`); here, its use and wsbench's limits.
        assert_eq!(size_value("20", "--size").unwrap(), 20);
        assert_eq!(size_value("1k", "--size").unwrap(), 1024);
        assert_eq!(size_value("16KiB", "--size").unwrap(), 16384);
        assert_eq!(size_value("16MiB", "--size").unwrap(), 16 << 20);
        assert_eq!(size_value("2g", "--size").unwrap(), 1 << 31);
        assert!(size_value("x", "--size").unwrap_err().0.contains("not a size"));
        assert!(size_value("3g", "--max-size").unwrap_err().0.starts_with("--max-size: '3g' is too large"));
        let c = cfg(&["-d", "2.5", "--warmup", "500ms", "--connect-timeout", "3s", "-s", "1 KiB", "ws://h:1/"]);
        assert_eq!(
            (c.duration, c.warmup, c.connect_timeout),
            (Duration::from_millis(2500), Duration::from_millis(500), Duration::from_secs(3))
        );
        assert_eq!(c.size, 1024);
        assert_eq!(cfg(&["--warmup", "0", "ws://h:1/"]).warmup, Duration::ZERO);
        for bad in ["-1", "", "5m", "x"] {
            let e = parse_from(["-d", bad, "ws://h:1/"]).err().expect(bad).0;
            assert!(e.starts_with(&format!("--duration: '{bad}' is not a number of seconds")), "{e}");
        }
    }

    #[test]
    fn defaults_and_checks() {
        let c = cfg(&["ws://127.0.0.1:1/"]);
        assert_eq!((c.mode, c.connections, c.active, c.size, c.pipeline), (Mode::Echo, 100, 100, 20, 1));
        let c = cfg(&["--mode", "rate", "--rate", "10k", "-c", "18k", "--active", "1000", "ws://h:1/"]);
        assert_eq!((c.rate, c.connections, c.active, c.pipeline), (10000.0, 18000, 1000, 16));
        assert!(parse_from(["--mode", "rate", "ws://h:1/"]).is_err());
        assert!(parse_from(["--rate", "5", "ws://h:1/"]).is_err());
        assert!(parse_from(["--active", "5", "-c", "4", "ws://h:1/"]).is_err());
        assert!(parse_from(["-p", "4", "-c", "3", "ws://h:1/"]).is_err());
        assert!(parse_from(["--bogus", "ws://h:1/"]).is_err());
        assert!(matches!(parse_from(["--help"]), Ok(Parsed::Help)));
        assert!(c.fidelity);
        assert_eq!(c.fragments, 1);
    }

    #[test]
    fn fragments_and_fidelity() {
        let c = cfg(&["--fragments", "3", "--no-fidelity", "ws://h:1/"]);
        assert_eq!((c.fragments, c.fidelity), (3, false));
        let c = cfg(&["-m", "rate", "-r", "10", "--fragments", "2", "ws://h:1/"]);
        assert_eq!(c.fragments, 2);
        assert!(parse_from(["--fragments", "0", "ws://h:1/"]).is_err());
        assert!(parse_from(["--fragments", "5000", "ws://h:1/"]).is_err());
        assert!(parse_from(["-m", "soak", "--fragments", "2", "ws://h:1/"]).is_err());
        assert!(parse_from(["-m", "idle", "--fragments", "2", "ws://h:1/"]).is_err());
        assert!(cfg(&["-m", "soak", "ws://h:1/"]).fidelity);
    }

    #[test]
    fn deflate_and_text_kinds() {
        let c = cfg(&["--deflate", "--text-kind", "json", "-s", "1k", "ws://h:1/"]);
        assert!(c.deflate && c.text);
        assert_eq!(c.text_kind, TextKind::Json);
        assert_eq!(cfg(&["--text", "ws://h:1/"]).text_kind, TextKind::Ascii);
        assert!(!cfg(&["ws://h:1/"]).deflate);
        assert!(cfg(&["-m", "idle", "--deflate", "ws://h:1/"]).deflate);
        assert!(parse_from(["-m", "soak", "--deflate", "ws://h:1/"]).is_err());
        assert!(parse_from(["--text-kind", "xml", "ws://h:1/"]).is_err());
    }

    #[test]
    fn start_at() {
        assert_eq!(unix_time("1767225600").unwrap(), 1_767_225_600_000_000_000);
        assert_eq!(unix_time("1767225600.25").unwrap(), 1_767_225_600_250_000_000);
        assert_eq!(unix_time("1.000000001").unwrap(), 1_000_000_001);
        for bad in ["", "x", "-1", "1.2.3", "1.", "1e9", "1.0000000001", "99999999999999999999"] {
            let ok = bad == "1.";
            assert_eq!(unix_time(bad).is_ok(), ok, "{bad}");
        }
        assert_eq!(cfg(&["--start-at", "1767225600.5", "ws://h:1/"]).start_at_unix_ns, Some(1_767_225_600_500_000_000));
        assert_eq!(cfg(&["ws://h:1/"]).start_at_unix_ns, None);
    }

    #[test]
    fn tls_options() {
        let c = cfg(&["wss://h/"]);
        assert!(c.tls && !c.insecure && c.tls_resume && c.ca.is_none() && c.tls_version.is_none());
        assert_eq!(c.port, 443);
        assert!(!cfg(&["ws://h/"]).tls);
        let c = cfg(&["--ca", "x.pem", "--tls-version", "1.2", "--no-tls-resume", "-m", "soak", "wss://h:1/"]);
        assert_eq!(c.ca.as_deref(), Some(std::path::Path::new("x.pem")));
        assert_eq!((c.tls_version, c.tls_resume), (Some(TlsVersion::V12), false));
        assert_eq!(cfg(&["--insecure", "--tls-version", "1.3", "wss://h/"]).tls_version, Some(TlsVersion::V13));
        assert!(parse_from(["--insecure", "ws://h/"]).is_err());
        assert!(parse_from(["--ca", "x", "--insecure", "wss://h/"]).is_err());
        assert!(parse_from(["--tls-version", "1.1", "wss://h/"]).is_err());
    }

    #[test]
    fn soak_options() {
        let c = cfg(&["-m", "soak", "-c", "5000", "ws://h:1/"]);
        assert_eq!((c.mode, c.active, c.max_size, c.max_fragments), (Mode::Soak, 1000, 65536, 8));
        assert!(!c.seed_given);
        let c = cfg(&[
            "-m",
            "soak",
            "-c",
            "10",
            "--max-size",
            "1k",
            "--max-fragments",
            "3",
            "--ping-prob",
            "0.5",
            "--disconnect-prob",
            "0.25",
            "--seed",
            "0x10",
            "--echo-timeout",
            "2",
            "ws://h:1/",
        ]);
        assert_eq!((c.active, c.max_size, c.max_fragments, c.seed, c.seed_given), (10, 1024, 3, 16, true));
        assert_eq!((c.ping_prob, c.disconnect_prob, c.echo_timeout), (0.5, 0.25, Duration::from_secs(2)));
        assert!(parse_from(["-m", "soak", "--disconnect-prob", "2", "ws://h:1/"]).is_err());
        assert!(parse_from(["-m", "soak", "--seed", "x", "ws://h:1/"]).is_err());
        assert!(parse_from(["-m", "soak", "--max-size", "2g", "ws://h:1/"]).is_err());
    }
}
