//! systemd integration without a dependency: `sd_notify` datagrams and socket activation.
//!
//! Owns the two environment protocols of systemd: `$NOTIFY_SOCKET` (a datagram per state change:
//! `READY=1`, `STOPPING=1`, `WATCHDOG=1`; `@` names an abstract socket) and `$LISTEN_PID` /
//! `$LISTEN_FDS` (listening sockets passed from fd 3), parsed from values `main` reads once
//! ([`Systemd::from_vars`]): the library never touches the process environment. It does not
//! decide when to notify (see `server`) and never runs on the per-message path.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// First fd passed by socket activation (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// What systemd tells this process through its environment, read once by `main` (which also
/// unsets the socket-activation variables so that children do not inherit them). The library
/// never reads or changes the environment itself: everything it needs arrives in this value.
#[derive(Debug, Clone, Default)]
pub struct Systemd {
    /// `$NOTIFY_SOCKET`: where state changes go (`@` names an abstract socket).
    pub notify_socket: Option<OsString>,
    /// Listening sockets passed from fd 3 (`$LISTEN_FDS`, when `$LISTEN_PID` is this process).
    pub listen_fds: i32,
    /// The watchdog ping interval: half of `$WATCHDOG_USEC`, when it is set for this process.
    pub watchdog: Option<Duration>,
}

impl Systemd {
    /// Parses the variables, looked up with `var`, for the process `pid`. Pure: no environment
    /// access of its own (`main` passes `|k| std::env::var_os(k)` and `std::process::id()`).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, pid: u32) -> Systemd {
        let num = |k: &str| var(k).and_then(|v| v.to_str().and_then(|s| s.trim().parse::<u64>().ok()));
        let for_us = |k: &str| var(k).is_none_or(|_| num(k) == Some(u64::from(pid)));
        let listen_fds = if var("LISTEN_PID").is_some() && for_us("LISTEN_PID") {
            num("LISTEN_FDS").and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
        } else {
            0
        };
        let watchdog = if for_us("WATCHDOG_PID") {
            num("WATCHDOG_USEC").filter(|&u| u > 0).map(|u| Duration::from_micros(u / 2))
        } else {
            None
        };
        Systemd { notify_socket: var("NOTIFY_SOCKET").filter(|s| !s.is_empty()), listen_fds, watchdog }
    }

    /// The variables socket activation sets, which a child must not inherit.
    pub const LISTEN_VARS: [&'static str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

    /// A sender of state changes to `$NOTIFY_SOCKET` (does nothing when it was not set).
    pub fn notifier(&self) -> Notifier {
        Notifier { socket: self.notify_socket.clone() }
    }
}

/// Sends `sd_notify` datagrams (`READY=1`, `STOPPING=1`, `WATCHDOG=1`) to one socket.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
}

impl Notifier {
    /// Sends `state`; does nothing (Ok) when no notify socket was given.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(path) = self.socket.as_ref() else { return Ok(()) };
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn reads_the_variables_for_this_pid_only() {
        let s = Systemd::from_vars(env(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "1"), ("WATCHDOG_USEC", "2000000")]), 42);
        assert_eq!((s.listen_fds, s.watchdog), (1, Some(Duration::from_secs(1))));
        assert!(s.notify_socket.is_none());
        let s = Systemd::from_vars(
            env(&[("LISTEN_PID", "7"), ("LISTEN_FDS", "1"), ("WATCHDOG_PID", "7"), ("WATCHDOG_USEC", "10")]),
            42,
        );
        assert_eq!((s.listen_fds, s.watchdog), (0, None), "variables meant for another process");
        let s = Systemd::from_vars(env(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "x"), ("WATCHDOG_USEC", "0")]), 42);
        assert_eq!((s.listen_fds, s.watchdog), (0, None));
        assert_eq!(Systemd::from_vars(env(&[]), 1).listen_fds, 0);
    }

    #[test]
    fn sends_state_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("wsecho-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let rx = UnixDatagram::bind(&dir).unwrap();
        let sd = Systemd::from_vars(env(&[("NOTIFY_SOCKET", dir.to_str().unwrap())]), 1);
        sd.notifier().notify("READY=1").unwrap();
        let mut b = [0u8; 64];
        let n = rx.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"READY=1");
        Notifier::default().notify("READY=1").unwrap();
        let _ = std::fs::remove_file(&dir);
    }
}
