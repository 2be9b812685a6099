//! Violations of RFC 6455 by the peer, each with the close code the connection is failed
//! with (§7.4.1): framing (§5.1-§5.5), close bodies (§5.5.1, §7.4), and permessage-deflate
//! (RFC 7692 §6).
//!
//! [`ProtocolError`] is what the frame header codec (frame.rs) and the receiver report. It
//! names only `CloseCode` (close/body.rs), so it sits below frame.rs and error.rs; `error.rs`
//! wraps it in `Error::Protocol` and re-exports it, so its public path stays
//! `stdws::ProtocolError`.

use std::fmt;

use crate::close::CloseCode;

/// A violation of RFC 6455 framing rules by the peer (close code 1002 unless noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 was set without a negotiated extension (§5.2).
    ReservedBits,
    /// An opcode reserved for future use (3-7, 11-15) (§5.2).
    ReservedOpcode(u8),
    /// The 64-bit payload length had its most significant bit set (§5.2).
    InvalidLength,
    /// A server received an unmasked frame (§5.1).
    UnmaskedFrame,
    /// A client received a masked frame (§5.1).
    MaskedFrame,
    /// A control frame had a payload over 125 bytes (§5.5).
    ControlFrameTooLong,
    /// A control frame had FIN clear (§5.5).
    FragmentedControlFrame,
    /// A continuation frame arrived with no fragmented message to continue (§5.4).
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was unfinished (§5.4).
    ExpectedContinuation,
    /// A close frame with a 1-byte payload (§5.5.1).
    InvalidClosePayload,
    /// A close frame carried a code that may not be used on the wire (§7.4).
    InvalidCloseCode(u16),
    /// Data arrived after the peer's close frame (§5.5.1). A client reports it instead of
    /// [`Error::ConnectionClosed`](crate::Error::ConnectionClosed) when the server sends
    /// anything after its close frame while the client waits for the server's TCP end. The
    /// closing handshake is already over, so no close frame is sent for it
    /// ([`Error::close_code`](crate::Error::close_code) is `None`).
    DataAfterClose,
    /// A compressed message (permessage-deflate, RFC 7692) did not inflate: close code 1007.
    InvalidCompressedData,
    /// RSV1 on a control or continuation frame of a permessage-deflate connection (RFC 7692
    /// §6.1).
    MisplacedCompressionBit,
}

impl ProtocolError {
    /// The close code sent to the peer for this violation (none is sent for
    /// [`DataAfterClose`](Self::DataAfterClose): this is the code that would fit).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidCompressedData => CloseCode::INVALID_DATA,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set without an extension"),
            ProtocolError::InvalidCompressedData => f.write_str("compressed data does not inflate"),
            ProtocolError::MisplacedCompressionBit => {
                f.write_str("RSV1 on a control or continuation frame")
            }
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::InvalidLength => f.write_str("64-bit payload length with top bit set"),
            ProtocolError::UnmaskedFrame => f.write_str("unmasked frame from client"),
            ProtocolError::MaskedFrame => f.write_str("masked frame from server"),
            ProtocolError::ControlFrameTooLong => {
                f.write_str("control frame payload longer than 125 bytes")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message to continue")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message")
            }
            ProtocolError::InvalidClosePayload => f.write_str("close frame with 1-byte payload"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::DataAfterClose => f.write_str("data after close frame"),
        }
    }
}

impl std::error::Error for ProtocolError {}
