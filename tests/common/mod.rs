//! Shared black-box client used by the integration tests.
//!
//! Everything here is written from RFC 6455 directly and shares no code with
//! the server (only `Config` and `Reactor` are used, to start it): the HTTP
//! upgrade request and its checks, frame encoding (masked, unmasked, any
//! length encoding), a strict frame decoder (server frames must be unmasked,
//! minimally length-encoded, RSV clear, control frames unfragmented and at most
//! 125 bytes), message reassembly, and the closing-handshake checks. Every
//! socket has read and write timeouts so that a broken server fails a test
//! instead of hanging it.
//!
//! One module per part, each re-exported whole, so that a test's `use common::*;` sees everything:
//! `protocol` (opcodes, RSV bits), `server` (start-up, sockets, ports), `rng` (deterministic data),
//! `encode` (client frames), `decode` (strict server frames), `message` (reassembly and echoes),
//! `close` (closing handshake, TCP end), `upgrade` (HTTP handshake), `http` (plain GETs such as
//! `/metrics`), `notify` (the `NOTIFY_SOCKET` a spawned server reports to), `process` (a built
//! binary run under a deadline) and `bench` (wsbench runs and their `--json` results). Each module
//! imports only modules listed before it (`use super::<module>::...`, never this file's
//! re-exports), so the arrows point one way: `protocol`, `server`, `rng`, `notify` and `process`
//! import nothing, and nothing imports `message`, `close`, `upgrade`, `http` or `bench`.

#![allow(dead_code)]

mod bench;
mod close;
mod decode;
mod encode;
mod http;
mod message;
mod notify;
mod process;
mod protocol;
mod rng;
mod server;
mod upgrade;

// Not every test uses every part: an unused re-export is not a mistake here.
#[allow(unused_imports)]
pub use self::{
    bench::*, close::*, decode::*, encode::*, http::*, message::*, notify::*, process::*, protocol::*, rng::*,
    server::*, upgrade::*,
};
