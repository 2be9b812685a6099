//! Limits and buffer sizes for a connection.

use std::time::Duration;

#[cfg(feature = "deflate")]
use crate::deflate::DeflateConfig;
use crate::keepalive::KeepAlive;

/// Limits and buffer sizes, shared by the server and client roles.
///
/// The defaults suit a general-purpose server; every limit protects memory against a hostile
/// peer (see the README's "Security and limits").
///
/// ```
/// let config = stdws::Config::default()
///     .max_message_size(Some(1 << 20))
///     .fragment_size(Some(64 * 1024));
/// assert_eq!(config.max_message_size, Some(1 << 20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest message accepted (all fragments together), in bytes. `None`: no limit.
    /// A peer exceeding it gets close code 1009. Default 64 MiB.
    pub max_message_size: Option<usize>,
    /// Largest frame payload accepted, in bytes, checked against the frame header before any
    /// payload is read. `None`: no limit. Default 16 MiB.
    pub max_frame_size: Option<usize>,
    /// Largest HTTP head (request line or status line plus headers) accepted during the
    /// handshake. Default 16 KiB.
    pub max_head_size: usize,
    /// Most header lines accepted in an HTTP head, checked as the lines arrive. Default 64.
    pub max_headers: usize,
    /// The whole opening handshake must be done within this (server: reading the request;
    /// client: sending the request and reading the response), however slowly the peer
    /// trickles bytes. A silent peer is caught by the stream's read timeout, which
    /// `connect` and [`Server`](crate::Server) set from this for the handshake; with the
    /// generic `accept`, set one on the socket before accepting.
    /// `None`: no limit. Default 10 s.
    pub handshake_timeout: Option<Duration>,
    /// Resting size of the read buffer, allocated on the first read. Payloads of any size
    /// pass through it in pieces (binary payloads of at least this size, with nothing else
    /// buffered, go straight from the stream into the message). While reads keep filling it
    /// (a burst of small frames) it doubles, up to 64 KiB (a size above that does not
    /// grow), and it shrinks back to this size before the next read after one that does not
    /// fill it. Default 4 KiB (minimum 256).
    pub read_buffer_size: usize,
    /// Outgoing bytes are corked in a buffer and written once this many are queued (or on
    /// `flush`, `send`, or before `read` waits for input). Default 16 KiB.
    pub write_buffer_size: usize,
    /// Most bytes the outgoing buffer may hold while the stream refuses to take them
    /// (non-blocking streams or write timeouts). Beyond it, sending fails with
    /// `CapacityError::WriteBufferFull` and reading pauses. Default 64 MiB + 64 KiB.
    pub max_write_buffer_size: usize,
    /// Split outgoing text and binary messages into frames of at most this many payload
    /// bytes. `None`: one frame per message. Default `None`.
    pub fragment_size: Option<usize>,
    /// Ping a silent peer and fail the connection if it stays silent (see [`KeepAlive`]).
    /// `read` waits for the keep-alive deadlines by itself, setting the socket's read
    /// timeout as it needs (and putting the caller's back), on connections that know their
    /// stream is a [`Socket`](crate::Socket): those of [`Server`](crate::Server),
    /// `connect`, `ClientBuilder::connect` and `tls`. The constructors generic over any
    /// stream (`accept`, `accept_with`, `IncomingRequest::accept`, `client`) cannot set a
    /// timeout and fail with [`Error::InvalidInput`](crate::Error::InvalidInput) when this is
    /// set: use [`WebSocket::set_keepalive`](crate::WebSocket::set_keepalive) after their
    /// handshake instead. Default `None`.
    pub keepalive: Option<KeepAlive>,
    /// Offer (client) or accept (server) permessage-deflate compression with these
    /// settings (RFC 7692). `None`: no compression; a server ignores offers and a client
    /// refuses a server that enables it. Default `None`.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: Some(64 << 20),
            max_frame_size: Some(16 << 20),
            max_head_size: 16 << 10,
            max_headers: 64,
            handshake_timeout: Some(Duration::from_secs(10)),
            read_buffer_size: 4 << 10,
            write_buffer_size: 16 << 10,
            max_write_buffer_size: (64 << 20) + (64 << 10),
            fragment_size: None,
            keepalive: None,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, max: Option<usize>) -> Self {
        self.max_message_size = max;
        self
    }

    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn max_frame_size(mut self, max: Option<usize>) -> Self {
        self.max_frame_size = max;
        self
    }

    /// Sets [`max_head_size`](Self::max_head_size).
    pub fn max_head_size(mut self, max: usize) -> Self {
        self.max_head_size = max;
        self
    }

    /// Sets [`max_headers`](Self::max_headers).
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`read_buffer_size`](Self::read_buffer_size).
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.read_buffer_size = size;
        self
    }

    /// Sets [`write_buffer_size`](Self::write_buffer_size).
    pub fn write_buffer_size(mut self, size: usize) -> Self {
        self.write_buffer_size = size;
        self
    }

    /// Sets [`max_write_buffer_size`](Self::max_write_buffer_size).
    pub fn max_write_buffer_size(mut self, size: usize) -> Self {
        self.max_write_buffer_size = size;
        self
    }

    /// Sets [`keepalive`](Self::keepalive).
    pub fn keepalive(mut self, keepalive: Option<KeepAlive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets [`deflate`](Self::deflate).
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// Sets [`fragment_size`](Self::fragment_size).
    pub fn fragment_size(mut self, size: Option<usize>) -> Self {
        self.fragment_size = size;
        self
    }
}
