//! Addresses and sockets: resolving the target, reading the ephemeral port range, choosing the
//! source addresses (spreading over 127.0.0.x when the connections would not fit one address's
//! ports), the open-file limit, and creating one non-blocking client socket.
//!
//! Owns the decisions "which source address does connection i use" and "does this run fit the
//! fd limit". It does not own connection state or the event loop (see `client`, `worker`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::Config;
use crate::tls;

/// Open files a process needs besides its connections: stdio, epoll, pipes, the JSON file, slack.
pub const FD_OVERHEAD: u64 = 64;

/// Where and from where to connect.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    /// Source addresses, used round robin by global connection index; empty = let the kernel pick.
    pub sources: Vec<IpAddr>,
    /// `wss://`: the TLS client configuration every connection is made from.
    pub tls: Option<tls::Client>,
}

impl Plan {
    /// The source address of connection `index` (global over all processes and loops).
    pub fn source_for(&self, index: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[index % self.sources.len()])
        }
    }
}

/// The ephemeral port range `(low, high)` from /proc (kernel default when unreadable).
pub fn port_range() -> (u16, u16) {
    let parse = || -> Option<(u16, u16)> {
        let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let mut it = s.split_whitespace().map(|v| v.parse::<u16>());
        let lo = it.next()?.ok()?;
        let hi = it.next()?.ok()?;
        (lo <= hi).then_some((lo, hi))
    };
    parse().unwrap_or((32768, 60999))
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    // The server's own routine (this binary links the wsecho library); 0 means unknown.
    match wsecho::server::raise_nofile() {
        0 => 1024,
        n => n,
    }
}

/// Resolves the target and checks that the run fits the open-file limit and the port range.
/// The error is the one-line explanation printed before exiting with status 2.
pub fn plan(cfg: &Config, nofile: u64) -> Result<Plan, String> {
    let target = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{}': {e}", cfg.host))?
        .find(|a| a.is_ipv4())
        .or_else(|| (cfg.host.as_str(), cfg.port).to_socket_addrs().ok()?.next())
        .ok_or_else(|| format!("'{}' resolves to no address", cfg.host))?;

    let n = cfg.connections as u64;
    let p = cfg.processes as u64;
    let per_process = n.div_ceil(p);
    if per_process + FD_OVERHEAD > nofile {
        let max_per = nofile.saturating_sub(FD_OVERHEAD).max(1);
        return Err(format!(
            "{n} connections over {p} process(es) need {per_process} open files per process, but the \
             open-file limit is {nofile}: use --processes {} or more (at most {max_per} connections \
             per process)",
            n.div_ceil(max_per)
        ));
    }

    let (lo, hi) = port_range();
    let ports = u64::from(hi - lo) + 1;
    // Connections per source address before spreading. Linux `connect()` takes even ports first
    // and scans all of them before it tries odd ones, so past half the range every connect gets
    // slow (measured here: ~14k connections in 1 s, then ~1k/s). Stay at 40% of the range.
    let per_source = (ports * 2 / 5).max(1);
    let sources: Vec<IpAddr> = if !cfg.source_ips.is_empty() {
        if let Some(bad) = cfg.source_ips.iter().find(|ip| ip.is_ipv4() != target.is_ipv4()) {
            return Err(format!("--source-ips {bad} is not of the same family as the target {target}"));
        }
        let k = cfg.source_ips.len() as u64;
        if n.div_ceil(k) > ports {
            return Err(format!(
                "{n} connections over {k} source address(es) need {} ports each, but the ephemeral \
                 port range {lo}-{hi} has {ports}: give more --source-ips",
                n.div_ceil(k)
            ));
        }
        cfg.source_ips.clone()
    } else if n > per_source {
        match target.ip() {
            IpAddr::V4(v4) if v4.is_loopback() => {
                let k = n.div_ceil(per_source);
                if k > 250 {
                    return Err(format!("{n} connections need more than 250 loopback source addresses"));
                }
                (1..=k as u8).map(|x| IpAddr::V4(Ipv4Addr::new(127, 0, 0, x))).collect()
            }
            _ => {
                return Err(format!(
                    "{n} connections to one address need more than the {ports} ephemeral ports \
                     ({lo}-{hi}): give --source-ips A,B,... (local addresses)"
                ));
            }
        }
    } else {
        Vec::new()
    };
    let tls = tls::Client::from_config(cfg)?;
    Ok(Plan { target, sources, tls })
}

/// Starts a non-blocking TCP connect to `target` (optionally bound to `source` with
/// `IP_BIND_ADDRESS_NO_PORT`, so the port is picked per 4-tuple at connect time rather than
/// reserved for the address at bind time). TCP_NODELAY is set.
pub fn start_connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let sock = Socket::new(Domain::for_address(target), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        if ip.is_ipv4() {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt reads sizeof(c_int) bytes from &one; the fd is open.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// A short, stable name for a socket (or TLS: `tls: ...`) error, used as a failure key.
pub fn error_reason(e: &io::Error) -> String {
    if let Some(name) = tls::error_name(e) {
        return name;
    }
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::ETIMEDOUT) => "timed out".into(),
        Some(libc::EADDRNOTAVAIL) => "no free local port (EADDRNOTAVAIL)".into(),
        Some(libc::EADDRINUSE) => "address in use".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too many open files".into(),
        Some(libc::EPIPE) => "broken pipe".into(),
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "unreachable".into(),
        Some(code) => format!("errno {code}"),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_config as cfg;

    #[test]
    fn small_runs_use_no_source_binding() {
        let p = plan(&cfg(&["-c", "100", "ws://127.0.0.1:9/"]), 20000).unwrap();
        assert!(p.sources.is_empty());
        assert_eq!(p.source_for(5), None);
    }

    #[test]
    fn large_runs_spread_over_loopback() {
        let p = plan(&cfg(&["-c", "100000", "-p", "6", "ws://127.0.0.1:9/"]), 20000).unwrap();
        let (lo, hi) = port_range();
        let per = (u64::from(hi - lo) + 1) * 2 / 5;
        assert_eq!(p.sources.len() as u64, 100_000u64.div_ceil(per));
        assert_eq!(p.source_for(0), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.source_for(1), Some("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn fd_limit_is_checked_per_process() {
        let e = plan(&cfg(&["-c", "100000", "ws://127.0.0.1:9/"]), 20000).unwrap_err();
        assert!(e.contains("--processes 6"), "{e}");
        assert!(plan(&cfg(&["-c", "100000", "-p", "5", "ws://127.0.0.1:9/"]), 20000).is_err());
        assert!(plan(&cfg(&["-c", "100000", "-p", "6", "ws://127.0.0.1:9/"]), 20000).is_ok());
    }

    #[test]
    fn explicit_sources() {
        let p = plan(&cfg(&["--source-ips", "127.0.0.5,127.0.0.6", "ws://127.0.0.1:9/"]), 20000).unwrap();
        assert_eq!(p.sources.len(), 2);
        assert_eq!(p.source_for(3), Some("127.0.0.6".parse().unwrap()));
    }
}
