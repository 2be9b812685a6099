//! Errors: one [`Error`] type for every operation, with variants a caller can match on.
//!
//! Protocol violations carry the close code that was sent to the peer (RFC 6455 §7.4.1), so a
//! log line can say exactly why the connection was failed.

use std::fmt;
use std::io;

use crate::close::{CloseCode, CloseFrame};
use crate::handshake::Response;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on a WebSocket connection.
///
/// How a connection ends is reported exactly once:
///
/// | how it ended | first call after that returns | later calls return |
/// |---|---|---|
/// | peer's close frame received (either side started the closing handshake) | `read()` returns `Ok(Message::Close(..))`, then [`Error::ConnectionClosed`] (a client: [`ProtocolError::DataAfterClose`] if the server sent more after its close) | [`Error::AlreadyClosed`] |
/// | stream ended without a close frame | [`Error::AbnormalClosure`] | [`Error::AlreadyClosed`] |
/// | peer broke the protocol | [`Error::Protocol`], [`Error::Utf8`] or [`Error::Capacity`] (a close frame with the matching code was sent) | [`Error::AlreadyClosed`] |
/// | I/O error other than `WouldBlock`/`TimedOut`/`Interrupted` | [`Error::Io`] | [`Error::AlreadyClosed`] |
///
/// `Io` errors of kind `WouldBlock` or `TimedOut` are not fatal: the operation can be retried
/// and continues where it stopped (see [`WebSocket`](crate::WebSocket)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error from the underlying stream. `WouldBlock` and `TimedOut` are resumable;
    /// anything else ends the connection.
    Io(io::Error),
    /// The opening handshake failed: the request or response was invalid, or it was refused.
    Handshake(HandshakeError),
    /// The server answered the client's handshake with a status other than 101.
    /// The response (status, headers and up to 64 KiB of body) is included.
    Http(Box<Response>),
    /// The peer violated RFC 6455. A close frame with [`ProtocolError::close_code`] was sent
    /// (not for [`ProtocolError::DataAfterClose`]: it comes after the closing handshake).
    Protocol(ProtocolError),
    /// A text message or close reason was not valid UTF-8. A close frame with code 1007 was
    /// sent.
    Utf8,
    /// A message, frame or buffer exceeded a limit from [`Config`](crate::Config).
    /// For received data a close frame with code 1009 was sent.
    Capacity(CapacityError),
    /// The closing handshake completed cleanly. Carries the peer's close frame, if it had a
    /// body. This is how a finished connection reports itself once; later calls return
    /// [`Error::AlreadyClosed`].
    ConnectionClosed(Option<CloseFrame>),
    /// The stream ended (EOF) without a closing handshake (close code 1006, "abnormal
    /// closure").
    AbnormalClosure,
    /// The connection was used after it ended and the end was already reported, or a message
    /// was sent after `close()`. This is a bug in the calling code.
    AlreadyClosed,
    /// Keep-alive gave up: the peer sent nothing within the timeout after a ping. A close
    /// frame with code 1011 was sent.
    KeepAliveTimeout,
    /// The URL given to the client is invalid or unsupported.
    Url(UrlError),
    /// The argument given to a send method is invalid (for example a close code that may not be
    /// sent, or a control payload over 125 bytes). Nothing was sent.
    InvalidInput(&'static str),
    /// The TLS handshake failed (feature `rustls`): for example the server's certificate is
    /// not trusted or not valid for the host name, or the peer speaks no common protocol
    /// version. After the handshake, TLS failures are [`Error::Io`] errors of kind
    /// `InvalidData` that carry the `rustls::Error`.
    #[cfg(feature = "rustls")]
    Tls(rustls::Error),
}

impl Error {
    /// Whether this is an I/O error after which the same call can be retried (the stream
    /// returned `WouldBlock` or `TimedOut`). No data was lost.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::Io(e) if is_retryable(e.kind()))
    }

    /// The close code that was sent to the peer because of this error, if any.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            // Seen after the closing handshake, when no close frame can go out any more.
            Error::Protocol(ProtocolError::DataAfterClose) => None,
            Error::Protocol(p) => Some(p.close_code()),
            Error::Utf8 => Some(CloseCode::INVALID_DATA),
            Error::Capacity(CapacityError::WriteBufferFull) => None,
            Error::Capacity(_) => Some(CloseCode::TOO_BIG),
            Error::KeepAliveTimeout => Some(CloseCode::INTERNAL_ERROR),
            _ => None,
        }
    }
}

/// `WouldBlock` and `TimedOut` mean "no progress yet" (a read timeout shows up as either,
/// depending on the platform).
pub(crate) fn is_retryable(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Error::Http(r) => write!(
                f,
                "server refused the WebSocket upgrade: HTTP {} {}",
                r.status(),
                r.reason()
            ),
            Error::Protocol(e) => write!(
                f,
                "protocol violation by peer: {e} (closed with {})",
                e.close_code().as_u16()
            ),
            Error::Utf8 => f.write_str("peer sent invalid UTF-8 text (closed with 1007)"),
            Error::Capacity(e) => write!(f, "limit exceeded: {e}"),
            Error::ConnectionClosed(Some(frame)) => {
                write!(f, "connection closed by close handshake: {frame}")
            }
            Error::ConnectionClosed(None) => {
                f.write_str("connection closed by close handshake (no status code)")
            }
            Error::AbnormalClosure => {
                f.write_str("connection closed abnormally: stream ended without a close frame")
            }
            Error::AlreadyClosed => f.write_str("connection already closed"),
            Error::KeepAliveTimeout => {
                f.write_str("peer did not answer a keep-alive ping in time (closed with 1011)")
            }
            Error::Url(e) => write!(f, "invalid WebSocket URL: {e}"),
            Error::InvalidInput(what) => write!(f, "invalid argument: {what}"),
            #[cfg(feature = "rustls")]
            Error::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Capacity(e) => Some(e),
            Error::Url(e) => Some(e),
            #[cfg(feature = "rustls")]
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(feature = "rustls")]
impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<CapacityError> for Error {
    fn from(e: CapacityError) -> Self {
        Error::Capacity(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        Error::Url(e)
    }
}

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
    /// [`Error::ConnectionClosed`] when the server sends anything after its close frame
    /// while the client waits for the server's TCP end. The closing handshake is already
    /// over, so no close frame is sent for it ([`Error::close_code`] is `None`).
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

/// A size limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapacityError {
    /// A frame's declared payload length exceeds `Config::max_frame_size`.
    FrameTooLarge {
        /// Declared payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message (all fragments together) would exceed `Config::max_message_size`.
    MessageTooLarge {
        /// Size the message would reach.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// The outgoing buffer is full (`Config::max_write_buffer_size`) and the stream cannot take
    /// more bytes right now. The message was not queued.
    WriteBufferFull,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapacityError::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds max_frame_size {max}")
            }
            CapacityError::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds max_message_size {max}")
            }
            CapacityError::WriteBufferFull => f.write_str("write buffer full"),
        }
    }
}

impl std::error::Error for CapacityError {}

/// Why an opening handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HTTP head could not be parsed.
    Malformed(&'static str),
    /// The HTTP head exceeded `Config::max_head_size`.
    HeadTooLarge,
    /// The HTTP head had more than `Config::max_headers` header lines.
    TooManyHeaders,
    /// The stream ended before the HTTP head was complete.
    Incomplete,
    /// The request method was not GET.
    Method(String),
    /// The HTTP version is below 1.1.
    HttpVersion,
    /// A required header is missing or has an unacceptable value.
    Header(&'static str),
    /// The client asked for a WebSocket version other than 13.
    UnsupportedVersion,
    /// The server's `Sec-WebSocket-Accept` does not match the key the client sent.
    AcceptMismatch,
    /// The server chose a subprotocol the client did not offer (or none was offered).
    UnexpectedSubprotocol(String),
    /// The server enabled an extension the client did not offer.
    UnexpectedExtension(String),
    /// The server accepted permessage-deflate with parameters the client's offer does not
    /// allow (unknown or repeated parameters, invalid values, a window larger than asked,
    /// a requested parameter left out, more than one extension).
    InvalidExtension {
        /// The server's `Sec-WebSocket-Extensions` value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server application refused the request with this HTTP status.
    Rejected(u16),
    /// The handshake did not finish within the configured time.
    TimedOut,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(what) => write!(f, "malformed HTTP head: {what}"),
            HandshakeError::HeadTooLarge => f.write_str("HTTP head too large"),
            HandshakeError::TooManyHeaders => f.write_str("too many HTTP headers"),
            HandshakeError::Incomplete => f.write_str("stream ended during the handshake"),
            HandshakeError::Method(m) => write!(f, "method {m} is not GET"),
            HandshakeError::HttpVersion => f.write_str("HTTP version below 1.1"),
            HandshakeError::Header(what) => write!(f, "{what}"),
            HandshakeError::UnsupportedVersion => {
                f.write_str("unsupported Sec-WebSocket-Version (only 13 is supported)")
            }
            HandshakeError::AcceptMismatch => f.write_str("wrong Sec-WebSocket-Accept"),
            HandshakeError::UnexpectedSubprotocol(p) => {
                write!(f, "server chose subprotocol {p:?} that was not offered")
            }
            HandshakeError::UnexpectedExtension(e) => {
                write!(f, "server enabled extension {e:?} that was not offered")
            }
            HandshakeError::InvalidExtension { value, reason } => {
                write!(
                    f,
                    "server's Sec-WebSocket-Extensions {value:?} is invalid: {reason}"
                )
            }
            HandshakeError::Rejected(status) => {
                write!(f, "request rejected by the application with HTTP {status}")
            }
            HandshakeError::TimedOut => f.write_str("handshake timed out"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Why a WebSocket URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `ws` or `wss`.
    UnsupportedScheme(String),
    /// The URL has no host.
    MissingHost,
    /// The port is not a number between 1 and 65535.
    InvalidPort,
    /// The URL contains characters that cannot appear in a request line (spaces, controls,
    /// a fragment) or is otherwise malformed.
    Malformed(&'static str),
    /// `wss://` needs TLS, which [`connect`](crate::connect) does not provide: use
    /// `stdws::tls::connect` (feature `rustls`), or open a TLS stream yourself and pass it
    /// to [`client`](crate::client).
    TlsRequired,
    /// Name resolution gave no address.
    NoAddress,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::UnsupportedScheme(s) => write!(f, "scheme {s:?} is not ws or wss"),
            UrlError::MissingHost => f.write_str("no host"),
            UrlError::InvalidPort => f.write_str("invalid port"),
            UrlError::Malformed(what) => f.write_str(what),
            #[cfg(not(feature = "rustls"))]
            UrlError::TlsRequired => f.write_str(
                "wss:// needs TLS: open a TLS stream to the host yourself and pass it to \
                 stdws::client(url, stream), or enable stdws's `rustls` feature",
            ),
            #[cfg(feature = "rustls")]
            UrlError::TlsRequired => f.write_str(
                "wss:// needs TLS, which stdws::connect does not do: use stdws::tls::connect \
                 (or ClientBuilder::connect_tls)",
            ),
            UrlError::NoAddress => f.write_str("host name resolved to no address"),
        }
    }
}

impl std::error::Error for UrlError {}
