//! The systemd side of `NOTIFY_SOCKET` for a server run as a separate process: a datagram socket
//! in the temp directory that the server reports `READY=1` and `STOPPING=1` to (`NotifySocket`).
//!
//! Owns the socket's path and life (removed when dropped). Imports no other module of `common`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// How long `NotifySocket::recv` waits for a message.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound `NOTIFY_SOCKET`: pass `path` to the server, read its messages with `recv`.
pub struct NotifySocket {
    pub path: PathBuf,
    rx: UnixDatagram,
}

impl NotifySocket {
    /// Binds `wsecho-test-<tag>-<pid>` in the temp directory (replacing a stale one).
    pub fn bind(tag: &str) -> NotifySocket {
        let path = std::env::temp_dir().join(format!("wsecho-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        rx.set_read_timeout(Some(NOTIFY_TIMEOUT)).unwrap();
        NotifySocket { path, rx }
    }

    /// The next message, as text; fails the test, naming `expected`, if none comes in 10 s.
    pub fn recv(&self, expected: &str) -> String {
        let mut b = [0u8; 256];
        let n = self.rx.recv(&mut b).unwrap_or_else(|e| panic!("no {expected} on NOTIFY_SOCKET: {e}"));
        String::from_utf8_lossy(&b[..n]).into_owned()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
