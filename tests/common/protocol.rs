//! RFC 6455 vocabulary the client side writes and checks: opcodes and RSV bits.
//!
//! Owns only constants; no I/O, no encoding or decoding (that is `encode` and `decode`), and it
//! imports nothing from the other modules of `common`.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const RSV1: u8 = 0b100;
pub const RSV2: u8 = 0b010;
pub const RSV3: u8 = 0b001;
