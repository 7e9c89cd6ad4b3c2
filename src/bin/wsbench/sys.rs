//! Process-wide OS plumbing that every layer may use: the monotonic clock all timestamps come
//! from ([`now_ns`]), the stop flag that SIGINT/SIGTERM set ([`stop_requested`]), and blocking
//! writes to a pipe ([`write_all_fd`]).
//!
//! A leaf: it imports nothing from the rest of `wsbench`, so the loops, the connections, the
//! monitor and the process layer can all depend on it without depending on each other. It owns no
//! sockets, threads or processes (see `proc`) and decides nothing about what the time or a stop
//! means (see `mioloop`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static EPOCH_NS: OnceLock<u64> = OnceLock::new();

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fixes the process's time origin (call once at start; later calls are harmless).
pub fn init_clock() {
    EPOCH_NS.get_or_init(monotonic_ns);
}

/// The process's time origin in CLOCK_MONOTONIC nanoseconds (for absolute timer deadlines).
pub fn epoch_ns() -> u64 {
    *EPOCH_NS.get_or_init(monotonic_ns)
}

/// Nanoseconds since the process's time origin (CLOCK_MONOTONIC).
#[inline]
pub fn now_ns() -> u64 {
    monotonic_ns() - *EPOCH_NS.get_or_init(monotonic_ns)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    // Async-signal-safe: a single atomic store. Loops poll with a bounded timeout and see it.
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set the stop flag (no SA_RESTART, so a blocking poll returns EINTR).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a valid handler and empty mask is a valid argument.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// A stop was requested (signal).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Writes all of `bytes` to a blocking fd (retrying on EINTR); errors are ignored (the reader
/// is gone).
pub fn write_all_fd(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid slice to an fd we own.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}
