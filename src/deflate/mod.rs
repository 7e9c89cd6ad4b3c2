//! permessage-deflate (RFC 7692): the groundwork the connection state machine builds on.
//!
//! - [`negotiate`](mod@negotiate): `Sec-WebSocket-Extensions` offers parsed in place, the server's policy, the
//!   response header line.
//! - [`codec`]: streaming [`codec::Inflater`] / [`codec::Deflater`] over zlib-rs, into caller
//!   buffers, with the §7.2 tail handling and an exact inflated-size limit.
//! - [`pool`]: per-reactor free lists of states, so that connections without context takeover
//!   hold one only while a message is in flight.
//!
//! Not here: RSV1 handling, which messages to compress, the echo path; those belong to `conn`.
//! Why zlib-rs, and the memory per state: docs/deflate.md and benches/deflate.rs.

pub mod codec;
pub mod negotiate;
pub mod pool;

pub use codec::{CodecError, DeflateParams, Deflater, Inflater, Progress, TAIL};
pub use negotiate::{negotiate, write_response_header, DeflateConfig, Negotiated, MAX_RESPONSE_HEADER};
pub use pool::{Pool, Pooled};
