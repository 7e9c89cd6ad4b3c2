//! Target 5, `connection`: a whole client session against one `Connection` over a `MemSocket`,
//! checked against a reference model of RFC 6455 for a frame-exact echo server.
//!
//! Split by role, each module owning one: `model` (what a correct server does with a client byte
//! stream), `output` (a strict parser of what the server sent), `driver` (runs the connection the
//! way the reactor does), `session` (the input format and its writer, used for seeds), `gen` (turns
//! frame descriptions into bytes and records the intended answer) and `check` (the target itself,
//! which puts them together). Arrows point one way: `model`, `driver` and `session` import no
//! sibling, `output` imports `model`, `gen` imports `model` and `session`, and only `check` imports
//! `driver`, `gen` and `output`; nothing here imports `check`. From the other checks modules this
//! uses `input`, `reference`, `frame` (`ref_header`) and `handshake` (response checks), never the
//! other way round.

mod check;
mod driver;
mod gen;
mod model;
mod output;
mod session;

// The regression test uses only part of this API: an unused re-export is not a mistake there.
#[allow(unused_imports)]
pub use self::{check::*, model::*, output::*, session::*};
