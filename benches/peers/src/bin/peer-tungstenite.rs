//! Echo server on tokio-tungstenite (one tokio `current_thread` runtime, like wsecho's default).
//!
//! `accept_async_with_config` does the upgrade; every text/binary message is echoed with the same
//! opcode; tungstenite answers pings and the close handshake by itself. Configuration is the
//! library's default except `max_message_size` = 16 MiB (wsecho's default; tungstenite's own is
//! 64 MiB). `max_frame_size` is already 16 MiB by default. With `--tls-cert/--tls-key` the same
//! loop runs over a tokio-rustls stream (`wsecho_peers::serve`).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

const NAME: &str = "peer-tungstenite";

fn main() {
    wsecho_peers::serve(NAME, "tokio-tungstenite WebSocket echo server", connection, connection)
}

/// One connection, plain or TLS: the upgrade, then the echo loop.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let config = WebSocketConfig::default().max_message_size(Some(wsecho_peers::MAX_MESSAGE_SIZE));
    match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => {
            if let Err(e) = echo(ws).await {
                if !matches!(e, WsError::ConnectionClosed | WsError::AlreadyClosed) {
                    log_err(&e);
                }
            }
        }
        Err(e) => log_err(&e),
    }
}

/// Echo loop: the split-free equivalent of `read.filter(is_data).forward(write)`.
///
/// The naive `while let Some(m) = ws.next().await { ws.send(m).await }` flushes (one `write`
/// syscall) per message. This loop does what `futures::StreamExt::forward` does — `start_send`
/// (i.e. `SinkExt::feed`: queue into tungstenite's write buffer) every message that is already
/// readable and `poll_flush` only when the read side returns `Pending` — so a burst of pipelined
/// messages costs one write; but it polls the one `WebSocketStream` as both stream and sink, so it
/// needs no `split()` (whose `BiLock` costs an `Arc` and a lock per poll). Backpressure: while the
/// sink is not ready (the socket would block and tungstenite's buffer is over its size) nothing
/// more is read. tungstenite itself flushes once its write buffer passes 128 KiB (its default
/// `write_buffer_size`), and writes queued pongs/close replies on the next read or flush.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) -> Result<(), WsError> {
    poll_fn(|cx| loop {
        ready!(Pin::new(&mut ws).poll_ready(cx))?;
        match Pin::new(&mut ws).poll_next(cx) {
            Poll::Ready(Some(Ok(msg))) => {
                if msg.is_text() || msg.is_binary() {
                    Pin::new(&mut ws).start_send(msg)?;
                }
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            // Closed: tungstenite has already written its close reply.
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => {
                // Nothing more to read right now: push out everything queued, then wait for the
                // socket (the read waker is registered by poll_next, the write one by poll_flush).
                ready!(Pin::new(&mut ws).poll_flush(cx))?;
                return Poll::Pending;
            }
        }
    })
    .await
}

fn log_err(e: &WsError) {
    // Resets and protocol errors from a load test are routine; keep them short and on stderr.
    if std::env::var_os("PEER_VERBOSE").is_some() {
        eprintln!("{NAME}: connection: {e}");
    }
}
