//! Errors: one [`Error`] type for every operation, with variants a caller can match on.
//!
//! Protocol violations carry the close code that was sent to the peer (RFC 6455 §7.4.1), so a
//! log line can say exactly why the connection was failed.
//!
//! This file sits above the pure protocol files, which report with their own small error
//! types: [`ProtocolError`] (protocol.rs), [`HandshakeError`] (http.rs) and [`UrlError`]
//! (url.rs), re-exported here so that `crate::error` still names every error type and their
//! public paths (`stdws::ProtocolError`, `stdws::HandshakeError`, `stdws::UrlError`) stay as
//! they were; and the crate-private close body checks of close/body.rs. [`Error`] takes each
//! of them with `From`.

use std::fmt;
use std::io;

use crate::close::{CloseCode, CloseFrame, InvalidCloseBody, Unsendable};
use crate::handshake::Response;

pub use crate::http::HandshakeError;
pub use crate::protocol::ProtocolError;
pub use crate::proxy::ProxyError;
pub use crate::redirect::RedirectError;
pub use crate::url::UrlError;

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
    /// The URL's host name could not be resolved (the resolver's error: no such host, no
    /// DNS server reachable, ...).
    Resolve(io::Error),
    /// The server redirected the opening handshake and the redirect was not followed: too
    /// many in a row, from `wss://` to `ws://`, or to a URL that is not valid.
    Redirect(RedirectError),
    /// The proxy did not open a tunnel to the server: it refused (HTTP 407 or 403, a SOCKS5
    /// error code, rejected credentials), could not reach the server, or answered outside
    /// its protocol. Failing to reach the proxy itself is [`Error::Io`].
    Proxy(ProxyError),
    /// The argument given to a send method is invalid (for example a close code that may not be
    /// sent, or a control payload over 125 bytes). Nothing was sent.
    InvalidInput(&'static str),
    /// The TLS handshake failed (feature `rustls`): for example the server's certificate is
    /// not trusted or not valid for the host name, or the peer speaks no common protocol
    /// version. After the handshake, TLS failures are [`Error::Io`] errors of kind
    /// `InvalidData` that carry the `rustls::Error`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
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
            Error::Resolve(e) => write!(f, "cannot resolve the host name: {e}"),
            Error::Redirect(e) => write!(f, "handshake redirect not followed: {e}"),
            Error::Proxy(e) => write!(f, "proxy: {e}"),
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
            Error::Resolve(e) => Some(e),
            Error::Redirect(e) => Some(e),
            Error::Proxy(e) => Some(e),
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
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
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

impl From<ProxyError> for Error {
    fn from(e: ProxyError) -> Self {
        Error::Proxy(e)
    }
}

impl From<RedirectError> for Error {
    fn from(e: RedirectError) -> Self {
        Error::Redirect(e)
    }
}

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        Error::Url(e)
    }
}

impl From<InvalidCloseBody> for Error {
    fn from(e: InvalidCloseBody) -> Self {
        match e {
            InvalidCloseBody::OneByte => Error::Protocol(ProtocolError::InvalidClosePayload),
            InvalidCloseBody::Code(code) => Error::Protocol(ProtocolError::InvalidCloseCode(code)),
            InvalidCloseBody::Utf8 => Error::Utf8,
        }
    }
}

impl From<Unsendable> for Error {
    fn from(e: Unsendable) -> Self {
        Error::InvalidInput(e.0)
    }
}

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
