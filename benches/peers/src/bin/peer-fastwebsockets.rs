//! Echo server on fastwebsockets (one tokio `current_thread` runtime, like wsecho's default).
//!
//! Written after fastwebsockets' own `examples/echo_server.rs`: hyper 1 `http1` serves the HTTP
//! request, `fastwebsockets::upgrade::upgrade` answers it (feature `upgrade`), and the upgraded
//! connection is read through a `FragmentCollector` (whole messages, UTF-8 checked), echoing every
//! text/binary message with the same opcode. Auto-pong and auto-close are on (the defaults, set
//! explicitly); `max_message_size` = 16 MiB (wsecho's default; fastwebsockets' own is 64 MiB).
//!
//! fastwebsockets writes each frame straight to the socket (`write_all`, or `writev` for payloads
//! over 1 KiB) — it has no feed/flush batching for a plain TCP stream, so that is what runs here.
//! With `--tls-cert/--tls-key` hyper serves a tokio-rustls stream instead (`wsecho_peers::serve`);
//! everything after the upgrade is the same code.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

const NAME: &str = "peer-fastwebsockets";

fn main() {
    wsecho_peers::serve(NAME, "fastwebsockets WebSocket echo server", connection, connection)
}

/// One connection, plain or TLS: hyper serves the upgrade request on it.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let conn = http1::Builder::new().serve_connection(io, service_fn(server_upgrade)).with_upgrades();
    if let Err(e) = conn.await {
        log_err(&e);
    }
}

async fn server_upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    // As in the upstream example: the WebSocket runs in its own task, outside tokio's
    // cooperative budget (`unconstrained`).
    tokio::task::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(echo(fut)).await {
            log_err(&e);
        }
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    ws.set_max_message_size(wsecho_peers::MAX_MESSAGE_SIZE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

fn log_err(e: &dyn std::fmt::Display) {
    if std::env::var_os("PEER_VERBOSE").is_some() {
        eprintln!("{NAME}: connection: {e}");
    }
}
