//! Process-wide OS plumbing that every layer may use: the monotonic clock all timestamps come
//! from ([`now_ns`]) and its one mapping to Unix time ([`unix_ns_of`], [`mono_of_unix_ns`], for
//! `--start-at` and the timing window in `--json`), where `--json` output goes
//! ([`write_output`]), the stop flag that SIGINT/SIGTERM set ([`stop_requested`]), and blocking
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
/// CLOCK_REALTIME minus CLOCK_MONOTONIC, ns, sampled once (at [`init_clock`]): every Unix time
/// this process reports or waits for goes through this one offset, so a clock step during a run
/// cannot tear its window apart.
static UNIX_OFFSET_NS: OnceLock<i128> = OnceLock::new();

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn unix_offset_ns() -> i128 {
    *UNIX_OFFSET_NS.get_or_init(|| {
        // The tighter of two samples around a realtime read.
        let a = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let b = clock_ns(libc::CLOCK_MONOTONIC);
        r - (a + (b - a) / 2)
    })
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fixes the process's time origin (call once at start; later calls are harmless).
pub fn init_clock() {
    EPOCH_NS.get_or_init(monotonic_ns);
    unix_offset_ns();
}

/// Unix time (ns since 1970, CLOCK_REALTIME as sampled at [`init_clock`]) of a [`now_ns`] value.
pub fn unix_ns_of(t: u64) -> u64 {
    let v = (epoch_ns() as i128 + t as i128 + unix_offset_ns()).max(0);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Unix time now, ns (by the same offset as [`unix_ns_of`]).
pub fn unix_now_ns() -> u64 {
    unix_ns_of(now_ns())
}

/// The [`now_ns`] value at Unix time `unix_ns` (0 when that is before the process's origin).
pub fn mono_of_unix_ns(unix_ns: u64) -> u64 {
    let v = unix_ns as i128 - unix_offset_ns() - epoch_ns() as i128;
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
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

/// Writes `text` to the file `path`, or to stdout when `path` is `-` (`--json -`: the result
/// after the table, e.g. for `kubectl logs`).
pub fn write_output(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if path.as_os_str() == "-" {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        return out.flush();
    }
    std::fs::write(path, text)
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
