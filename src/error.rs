//! The error types of the protocol, in one place: why a frame or message fails a connection
//! ([`ProtocolError`], RFC 6455) and why an upgrade request is refused ([`HandshakeError`], RFC
//! 6455 §4 / RFC 9110). Each carries its static reason text and implements `Display` and
//! `std::error::Error`.
//!
//! This is a leaf: it imports nothing from the crate. What an error *means* on the wire lives with
//! the code that writes it: the close code of a [`ProtocolError`] in `close`, the HTTP response of
//! a [`HandshakeError`] in `handshake`. Nothing here allocates.

use std::fmt;

/// A frame or message that breaks RFC 6455 (or the configured limits). Each maps to the close code
/// the endpoint must fail the connection with (`ProtocolError::close_code`, in `close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1-3 non-zero while no extension is negotiated.
    ReservedBits,
    /// Opcode 3-7 or 11-15.
    ReservedOpcode,
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A 64-bit length with the most significant bit set.
    LengthOverflow,
    /// A client frame without a masking key (§5.1: the server MUST close).
    Unmasked,
    /// A continuation frame with no message started (§5.4).
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is in progress (§5.4).
    ExpectedContinuation,
    /// A close frame whose payload is one byte or whose code may not be sent (§7.4).
    BadCloseFrame,
    /// A message longer than the configured limit.
    MessageTooBig,
    /// Text that is not UTF-8 (§8.1), in a message or a close reason.
    InvalidUtf8,
    /// RSV1 (permessage-deflate) on a continuation or control frame (RFC 7692 §6.1).
    Rsv1Misplaced,
    /// A compressed message that does not inflate: corrupt, cut, or data after its final block.
    BadCompressedData,
    /// A compression state could not be made (out of memory).
    Internal,
}

impl ProtocolError {
    /// A short static reason, sent in the close frame and logged at debug level.
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode => "reserved opcode",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame over 125 bytes",
            ProtocolError::LengthOverflow => "64-bit length with top bit set",
            ProtocolError::Unmasked => "client frame not masked",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "new message inside a fragmented message",
            ProtocolError::BadCloseFrame => "invalid close frame",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::Rsv1Misplaced => "RSV1 on a continuation or control frame",
            ProtocolError::BadCompressedData => "invalid compressed data",
            ProtocolError::Internal => "internal error",
        }
    }
}

/// Why an upgrade request was refused. Each maps to an HTTP status and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not HTTP, or a syntax error.
    Malformed,
    /// A method other than GET (405).
    MethodNotAllowed,
    /// HTTP/1.0 (the upgrade needs HTTP/1.1).
    HttpVersion,
    /// No `Host` header.
    MissingHost,
    /// `Upgrade` missing or without the token `websocket`.
    BadUpgrade,
    /// `Connection` missing or without the token `Upgrade`.
    BadConnection,
    /// `Sec-WebSocket-Key` missing or not the base64 of 16 bytes.
    BadKey,
    /// `Sec-WebSocket-Version` missing or not 13 (426).
    UnsupportedVersion,
    /// Head over `MAX_HEAD` bytes or over `MAX_HEADERS` headers (431).
    TooLarge,
    /// The server is at `--max-connections` (503).
    Overloaded,
}

impl HandshakeError {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::TooLarge => 431,
            HandshakeError::Overloaded => 503,
            _ => 400,
        }
    }

    /// A one-line plain-text reason, sent as the body and logged at debug level.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeError::Malformed => "malformed HTTP request",
            HandshakeError::MethodNotAllowed => "method must be GET",
            HandshakeError::HttpVersion => "HTTP/1.1 required",
            HandshakeError::MissingHost => "missing Host header",
            HandshakeError::BadUpgrade => "Upgrade header must contain websocket",
            HandshakeError::BadConnection => "Connection header must contain Upgrade",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::TooLarge => "request head too large",
            HandshakeError::Overloaded => "server at connection limit",
        }
    }

    /// A short stable label, used as the metrics `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeError::Malformed => "malformed",
            HandshakeError::MethodNotAllowed => "method",
            HandshakeError::HttpVersion => "http_version",
            HandshakeError::MissingHost => "host",
            HandshakeError::BadUpgrade => "upgrade",
            HandshakeError::BadConnection => "connection",
            HandshakeError::BadKey => "key",
            HandshakeError::UnsupportedVersion => "version",
            HandshakeError::TooLarge => "too_large",
            HandshakeError::Overloaded => "overloaded",
        }
    }

    /// Every variant, for metrics tables.
    pub const ALL: [HandshakeError; 10] = [
        HandshakeError::Malformed,
        HandshakeError::MethodNotAllowed,
        HandshakeError::HttpVersion,
        HandshakeError::MissingHost,
        HandshakeError::BadUpgrade,
        HandshakeError::BadConnection,
        HandshakeError::BadKey,
        HandshakeError::UnsupportedVersion,
        HandshakeError::TooLarge,
        HandshakeError::Overloaded,
    ];
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ProtocolError {}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HandshakeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_reason() {
        assert_eq!(ProtocolError::InvalidUtf8.to_string(), "invalid UTF-8");
        assert_eq!(HandshakeError::UnsupportedVersion.to_string(), "426 Sec-WebSocket-Version must be 13");
        let e: Box<dyn std::error::Error> = Box::new(HandshakeError::TooLarge);
        assert_eq!(e.to_string(), "431 request head too large");
    }
}
