//! A blocking, dependency-light WebSocket (RFC 6455) library: client and server over any
//! `Read + Write` stream, one thread per connection, no async runtime.
//!
//! The only dependencies are `sha1_smol` and `base64` (for the handshake's accept key); the
//! rest is `std`, without `unsafe`. Optional features: `rustls` adds `stdws::tls` (`wss://`
//! client and server) with `rustls` and `webpki-roots`; `deflate` adds permessage-deflate
//! (RFC 7692, see `DeflateConfig`) with the pure-Rust `miniz_oxide`.
//!
//! # Server
//!
//! ```no_run
//! use std::thread;
//!
//! let server = stdws::Server::bind("127.0.0.1:9001")?;
//! for pending in server.incoming() {
//!     let pending = pending?;
//!     thread::spawn(move || -> Result<(), stdws::Error> {
//!         // The handshake runs here, bounded by Config::handshake_timeout (10 s).
//!         let mut ws = pending.accept()?;
//!         loop {
//!             match ws.read()? {
//!                 msg @ (stdws::Message::Text(_) | stdws::Message::Binary(_)) => ws.send(msg)?,
//!                 stdws::Message::Close(_) => return Ok(()), // closing handshake done
//!                 _ => {}                                    // pings are answered for us
//!             }
//!         }
//!     });
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Over other streams (TLS, Unix sockets), [`accept`] and [`accept_with`] do the same
//! handshake on any `Read + Write`; give the socket a read timeout first, or a client that
//! sends nothing holds the thread.
//!
//! # Client
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let (mut ws, _response) = stdws::connect("ws://127.0.0.1:9001/chat")?;
//! ws.send_text("hello")?;
//! if let stdws::Message::Text(reply) = ws.read()? {
//!     println!("{reply}");
//! }
//! ws.close_and_wait(1000, "bye", Duration::from_secs(5))?;
//! # Ok::<(), stdws::Error>(())
//! ```
//!
//! A client that must stay connected uses [`ClientBuilder::reconnecting`] (an iterator of
//! connections with backoff and a retry policy), [`ClientBuilder::proxy`] or
//! [`ClientBuilder::proxy_from_env`] (HTTP CONNECT and SOCKS5), and follows redirects
//! ([`ClientBuilder::max_redirects`]); the README's "Clients that stay connected" shows
//! them.
//!
//! # Servers
//!
//! [`WebSocket::split`] gives a [`ReadHalf`] and a cloneable [`WriteHalf`] for full-duplex
//! use from several threads; [`Config::keepalive`] pings quiet peers from inside `read`;
//! [`IncomingRequest`] (from [`PendingConnection::read_request`]) serves plain HTTP and
//! WebSocket upgrades on one port. The README's "Writing a server" and `examples/chat.rs`
//! show the whole thread-per-connection pattern, including graceful shutdown.
//!
//! # Layout
//!
//! The protocol rules live in a pure core that names no stream and no clock: the codecs
//! ([`frame`], `mask`, `utf8`, [`close`], `http`), the opening handshake rules and state
//! machines over bytes ([`handshake`]), message assembly (`receiver`), the output queue
//! (`sender`, `outgoing`), the connection state (`state`) and [`proto::Connection`], which
//! joins them. One blocking driver (`driver`) is the code that reads and writes streams; it
//! runs [`WebSocket`], the split halves and the streamed readers and writers, and
//! [`Fanout`] broadcasts over split halves with a pool of writer threads. [`proto`] makes
//! the core public for other drivers. README "Layout" lists every file.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod close;
mod config;
mod connection;
#[cfg(feature = "deflate")]
mod deflate;
mod dial;
mod driver;
mod error;
mod fanout;
pub mod frame;
pub mod handshake;
mod http;
mod keepalive;
mod mask;
mod message;
mod outgoing;
mod percent;
mod prepared;
mod protocol;
mod proxy;
mod rand;
mod receiver;
mod reconnect;
mod redirect;
mod sender;
mod server;
mod shutdown;
mod socket;
mod split;
mod state;
mod stream;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
#[cfg(feature = "rustls")]
mod tls_shared;
mod url;
mod utf8;
mod websocket;

use std::io::{Read, Write};
use std::net::TcpStream;

pub use crate::close::{CloseCode, CloseFrame};
pub use crate::config::Config;
#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub use crate::deflate::{DeflateConfig, DeflateParams};
pub use crate::error::{
    CapacityError, Error, HandshakeError, ProtocolError, RedirectError, Result, UrlError,
};
pub use crate::fanout::{Cut, Delivery, Fanout, FanoutConfig, Subscription, Topic};
pub use crate::handshake::client::ClientBuilder;
pub use crate::handshake::server::{
    accept, accept_with, IncomingRequest, Rejection, UpgradeResponse,
};
pub use crate::handshake::{Request, Response};
pub use crate::http::Headers;
pub use crate::keepalive::KeepAlive;
pub use crate::mask::apply_mask;
pub use crate::message::Message;
pub use crate::prepared::PreparedMessage;
pub use crate::proxy::ProxyError;
pub use crate::reconnect::{retry_policy, Backoff, Reconnecting, Retry, StopHandle};
pub use crate::server::{Incoming, PendingConnection, Server};
pub use crate::shutdown::{GracefulShutdown, ShutdownReport, Tracked};
pub use crate::socket::{SharedTcpStream, Socket};
pub use crate::split::{ReadHalf, WriteHalf};
pub use crate::state::State;
pub use crate::stream::{
    MessageKind, MessageReader, MessageWriter, Streamed, DEFAULT_STREAM_FRAGMENT,
};
pub use crate::websocket::{Role, WebSocket};

/// The protocol without I/O: state machines that only consume and produce bytes, for
/// drivers other than the blocking [`WebSocket`] (an event loop over non-blocking sockets,
/// an async runtime, a simulation). `examples/poll_server.rs` serves many connections from
/// one thread with them.
pub mod proto {
    pub use crate::connection::Connection;
    pub use crate::handshake::client::ClientHandshake;
    pub use crate::handshake::server::{Refusal, ServerHandshake};
}

/// Connects to a `ws://` URL over TCP and performs the client handshake, with the defaults
/// of [`ClientBuilder`] (10 s connect and handshake timeouts, `TCP_NODELAY`). Returns the
/// connection and the server's 101 response.
///
/// For headers, subprotocols or other options use [`ClientBuilder`]. For `wss://` use
/// `tls::connect` (feature `rustls`), or open a TLS stream yourself and use [`client`].
pub fn connect(url: &str) -> Result<(WebSocket<TcpStream>, Response)> {
    ClientBuilder::new(url).connect()
}

/// Performs the client handshake for `url` over a `stream` the caller already connected
/// (a TLS stream for `wss://`, a Unix socket, ...).
pub fn client<T: Read + Write>(url: &str, stream: T) -> Result<(WebSocket<T>, Response)> {
    ClientBuilder::new(url).client(stream)
}

/// The README's examples, compiled as doctests so they stay correct.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
