//! systemd integration without a dependency: `sd_notify` datagrams and socket activation.
//!
//! Owns the two environment protocols of systemd: `$NOTIFY_SOCKET` (a datagram per state change:
//! `READY=1`, `STOPPING=1`, `WATCHDOG=1`; `@` names an abstract socket) and `$LISTEN_PID` /
//! `$LISTEN_FDS` (listening sockets passed from fd 3). It does not decide when to notify (see
//! `server`) and never runs on the per-message path.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// First fd passed by socket activation (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// Sends `state` to `$NOTIFY_SOCKET`; does nothing (Ok) when it is not set.
pub fn notify(state: &str) -> io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(())
}

/// The watchdog ping interval: half of `$WATCHDOG_USEC`, when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Number of sockets passed by socket activation to this process (0 when none). Unsets the
/// variables so that children do not inherit them.
pub fn listen_fds() -> i32 {
    let pid_ok =
        std::env::var("LISTEN_PID").ok().and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS").ok().and_then(|v| v.trim().parse::<i32>().ok()).unwrap_or(0);
    // SAFETY: called once at start-up, before any other thread exists.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if pid_ok {
        n.max(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_state_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("wsecho-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let rx = UnixDatagram::bind(&dir).unwrap();
        // SAFETY: this test module is the only user of NOTIFY_SOCKET in this process.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &dir) };
        notify("READY=1").unwrap();
        let mut b = [0u8; 64];
        let n = rx.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"READY=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let _ = std::fs::remove_file(&dir);
    }
}
