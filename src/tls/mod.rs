//! `wss://`: TLS in the reactor, with rustls for the handshake and a record layer of our own.
//!
//! - [`config`]: the certificate and key files, the rustls server configuration, `SIGHUP` reload.
//! - [`record`]: AEAD records sealed and opened in place (after rustls hands over the keys).
//! - [`session`]: per-connection TLS on one reactor: the handshake, then records as a byte stream.
//!
//! Arrows point one way: `session` uses `record` and `config`; `conn` and `reactor` use
//! `session`; nothing here knows WebSocket.

pub mod config;
pub mod record;
pub mod session;
