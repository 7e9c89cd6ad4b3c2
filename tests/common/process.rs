//! Running a built binary as a child process under a deadline: `run_limited` (spawn, capture,
//! wait), `output_limited` (capture and wait for a child already spawned) and `wait_limited`
//! (wait only). Stdout and stderr are drained on threads, so a child that writes a lot never
//! blocks on a full pipe; a child that outlives its limit is killed, reaped, and the test fails.
//!
//! Owns the polling interval. It knows nothing of which binary runs (`bench` runs wsbench with
//! it) and imports no other module of `common`.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a running child is asked whether it has exited.
const POLL: Duration = Duration::from_millis(20);

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured; kills it and fails the test
/// (naming the command) if it is still running after `limit`.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    output_limited(child, limit, &format!("{cmd:?}"))
}

/// Waits for `child` and collects what it wrote to its piped stdout and stderr (empty for a
/// stream that is not piped); kills it and fails the test, naming `what`, after `limit`.
pub fn output_limited(mut child: Child, limit: Duration, what: &str) -> Output {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_limited(&mut child, limit, what);
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Waits for `child` to exit; kills (and reaps) it and fails the test, naming `what`, if it is
/// still running after `limit`.
pub fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait for {what}: {e}")) {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut v);
        }
        v
    })
}
