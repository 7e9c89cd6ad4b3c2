//! What both peer servers share: the `--listen ADDR` command line, the open-file limit, the
//! listening socket (same backlog and TCP_NODELAY as wsecho) and the one-thread tokio runtime.
//!
//! Kept deliberately small: each binary's echo loop is the part being compared, and it is written
//! the way the library's own examples and docs do it.

use std::net::SocketAddr;

/// Default address (wsecho's default is 127.0.0.1:9001).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9002";

/// Largest message echoed; bigger ones end the connection (wsecho's default is also 16 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// wsecho listens with a backlog of 4096; tokio's `TcpListener::bind` would use 1024.
const BACKLOG: u32 = 4096;

/// Parses `[--listen ADDR]` (also `--listen=ADDR`), `-h`/`--help`; exits 2 on anything else.
pub fn listen_addr(name: &str, what: &str) -> SocketAddr {
    let usage = format!(
        "{name} - {what}\n\nUSAGE:\n    {name} [--listen ADDR]\n\n    --listen ADDR    address to listen on [default: {DEFAULT_LISTEN}]\n"
    );
    let mut args = std::env::args().skip(1);
    let mut listen = DEFAULT_LISTEN.to_string();
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            print!("{usage}");
            std::process::exit(0);
        } else if a == "--listen" {
            match args.next() {
                Some(v) => listen = v,
                None => die(name, "--listen needs an address", &usage),
            }
        } else if let Some(v) = a.strip_prefix("--listen=") {
            listen = v.to_string();
        } else {
            die(name, &format!("unexpected argument '{a}'"), &usage);
        }
    }
    match listen.parse() {
        Ok(addr) => addr,
        Err(_) => die(name, &format!("--listen: '{listen}' is not an IP:PORT address"), &usage),
    }
}

fn die(name: &str, msg: &str, usage: &str) -> ! {
    eprintln!("{name}: {msg}\n\n{usage}");
    std::process::exit(2);
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (as wsecho does); returns the soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        r.rlim_cur as u64
    }
}

/// One-thread runtime, like wsecho's default single reactor.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime")
}

/// Binds `addr` (SO_REUSEADDR, backlog 4096). Must be called inside the runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Prints the start-up line on stderr (compare.sh waits for the port, not for this line).
pub fn announce(name: &str, addr: SocketAddr) {
    eprintln!("{name} listening on {addr} (tokio current_thread, open-file limit {})", raise_nofile());
}

/// Runs the server: parses `--listen`, binds, and hands every accepted connection (with
/// TCP_NODELAY set) to `handle` in its own task, on the one-thread runtime. Never returns.
pub fn serve<F, Fut>(name: &'static str, what: &str, handle: F) -> !
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = listen_addr(name, what);
    runtime().block_on(async move {
        let listener = listen(addr).unwrap_or_else(|e| {
            eprintln!("{name}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
        announce(name, addr);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: say so, back off briefly, keep serving.
                    eprintln!("{name}: accept: {e}");
                    // (blocking on purpose: this path only runs when the process is out of fds)
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(handle(stream));
        }
    })
}
