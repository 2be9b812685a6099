//! `wss://`: WebSocket over TLS with [rustls](https://docs.rs/rustls) (feature `rustls`,
//! off by default).
//!
//! RFC 6455 §3 and §4.1 define `wss://` as the same protocol inside a TLS connection to the
//! URL's host (default port 443, the host as the TLS server name). This module opens that
//! connection and bounds the TLS handshake with the same timeouts as the WebSocket
//! handshake; everything after the handshake is the ordinary [`WebSocket`] over a stream
//! that encrypts.
//!
//! - Client: [`connect`] takes `ws://` or `wss://` URLs and trusts the Mozilla roots compiled
//!   into `webpki-roots`. [`ClientBuilder::tls_config`] passes your own
//!   [`rustls::ClientConfig`] (the operating system's roots, a private CA, client
//!   certificates), and [`ClientBuilder::connect_tls`] connects with the builder's other
//!   options.
//! - Server: [`accept`] and [`accept_with`] run the TLS handshake on an accepted
//!   `TcpStream` with your [`rustls::ServerConfig`], then the WebSocket handshake.
//!
//! A failed TLS handshake (an untrusted certificate, a name mismatch, no common protocol
//! version) is [`Error::Tls`]; a handshake that does not finish in time is
//! [`HandshakeError::TimedOut`].
//!
//! # Closing
//!
//! [`WebSocket::close_and_wait`] works over TLS: the [`Socket`] impls here forward timeouts
//! and shutdown to the `TcpStream`, and send TLS `close_notify` after the closing handshake
//! ([`Socket::close_session`]), so a peer that insists on a clean TLS end gets one. The
//! WebSocket close frames already mark the end of the data, so [`MaybeTlsStream`] reads a
//! TCP end without `close_notify` as an ordinary end of stream: after the closing handshake
//! that is a clean end, before it the connection reports [`Error::AbnormalClosure`] as it
//! would without TLS. A server's [`ServerTlsStream`] is rustls's own type and reports such an
//! end as an `Io` error of kind `UnexpectedEof`. Closing without `close_and_wait`, call
//! [`MaybeTlsStream::close_notify`] or `ws.get_mut().conn.send_close_notify()` and flush
//! before dropping the connection.
//!
//! # Threads
//!
//! `split` works over TLS as over TCP: [`WebSocket::split`] on a connection from
//! [`connect`] (a [`MaybeTlsStream`]) or from [`accept`] (a [`ServerTlsStream`]) gives a
//! reading half and cloneable writing halves that share the one TLS session
//! ([`SharedTlsStream`]). The session is locked only while bytes are decrypted or
//! encrypted, never while a half waits on the socket, so the reader keeps reading while a
//! writer is blocked on a full socket, as over TCP.
//!
//! ```no_run
//! let (ws, _response) = stdws::tls::connect("wss://example.com/socket")?;
//! let (mut reader, writer) = ws.split()?;
//! std::thread::spawn(move || writer.send_text("hello"));
//! while let Ok(message) = reader.read() {
//!     println!("{message:?}");
//! }
//! # Ok::<(), stdws::Error>(())
//! ```

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::DerefMut;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, RootCertStore, ServerConfig,
    ServerConnection, SideData, StreamOwned,
};

/// The `rustls` that stdws uses: build [`ClientConfig`]s and [`ServerConfig`]s with it, so
/// that their version matches.
pub use rustls;

use crate::config::Config;
use crate::error::{is_retryable, Error, HandshakeError, Result, UrlError};
use crate::handshake::client::ClientBuilder;
use crate::handshake::server::{IncomingRequest, Rejection, UpgradeResponse};
use crate::handshake::{handshake_deadline, Request, Response};
use crate::socket::{SharedTcpStream, Socket};
use crate::split::{ReadHalf, WriteHalf};
pub use crate::tls_shared::{SharedTlsStream, TlsHalves};
use crate::websocket::WebSocket;

/// A client's TLS stream: a rustls client session over a `TcpStream`.
pub type ClientTlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A server's TLS stream: a rustls server session over an accepted `TcpStream`, as
/// [`accept`] returns it.
pub type ServerTlsStream = StreamOwned<ServerConnection, TcpStream>;

/// The stream under a client connection from [`connect`] or
/// [`ClientBuilder::connect_tls`]: plain TCP for `ws://`, TLS for `wss://`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// A `ws://` connection.
    Plain(TcpStream),
    /// A `wss://` connection.
    Rustls(Box<ClientTlsStream>),
}

impl MaybeTlsStream {
    /// The TCP socket under the stream (for socket options and addresses). Reading or
    /// writing it directly corrupts the connection.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::Rustls(s) => &s.sock,
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTlsStream::Rustls(_))
    }

    /// Sends TLS `close_notify` (nothing for a plain connection) and writes it out. Call it
    /// after the closing handshake, before dropping or shutting down the connection, for a
    /// peer that insists on a clean TLS end.
    pub fn close_notify(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(_) => Ok(()),
            MaybeTlsStream::Rustls(s) => {
                s.conn.send_close_notify();
                s.flush()
            }
        }
    }
}

impl Read for MaybeTlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.read(buf),
            // rustls reports a TCP end without `close_notify` as UnexpectedEof, to guard
            // protocols that cannot tell a truncated stream from a finished one. WebSocket
            // can (the close frame): an end before it is reported as an abnormal closure.
            MaybeTlsStream::Rustls(s) => match s.read(buf) {
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for MaybeTlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write(buf),
            MaybeTlsStream::Rustls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write_vectored(bufs),
            MaybeTlsStream::Rustls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.flush(),
            MaybeTlsStream::Rustls(s) => s.flush(),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl Socket for MaybeTlsStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.tcp().read_timeout()
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.tcp().write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        self.tcp().shutdown(Shutdown::Both)
    }
    /// Sends TLS `close_notify` (see [`close_notify`](MaybeTlsStream::close_notify)).
    fn close_session(&mut self) -> io::Result<()> {
        self.close_notify()
    }
}

macro_rules! impl_socket_for_tls {
    ($conn:ty) => {
        /// Timeouts and shutdown of the `TcpStream` under the TLS session; `close_session`
        /// sends `close_notify`.
        #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
        impl Socket for StreamOwned<$conn, TcpStream> {
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                self.sock.set_read_timeout(timeout)
            }
            fn read_timeout(&self) -> io::Result<Option<Duration>> {
                self.sock.read_timeout()
            }
            fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                self.sock.set_write_timeout(timeout)
            }
            fn write_timeout(&self) -> io::Result<Option<Duration>> {
                self.sock.write_timeout()
            }
            fn shutdown(&self) -> io::Result<()> {
                self.sock.shutdown(Shutdown::Both)
            }
            fn close_session(&mut self) -> io::Result<()> {
                self.conn.send_close_notify();
                self.flush()
            }
        }
    };
}

impl_socket_for_tls!(ClientConnection);
impl_socket_for_tls!(ServerConnection);

/// A half of a split [`MaybeTlsStream`] connection: the shared socket of a `ws://`
/// connection or the shared session of a `wss://` one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MaybeTlsHalf {
    /// A `ws://` connection.
    Plain(SharedTcpStream),
    /// A `wss://` connection.
    Rustls(SharedTlsStream<ClientConnection>),
}

impl MaybeTlsHalf {
    /// The TCP socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsHalf::Plain(s) => s,
            MaybeTlsHalf::Rustls(s) => s.tcp(),
        }
    }
}

impl Read for MaybeTlsHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTlsHalf::Plain(s) => s.read(buf),
            MaybeTlsHalf::Rustls(s) => s.read(buf),
        }
    }
}

impl Write for MaybeTlsHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTlsHalf::Plain(s) => s.write(buf),
            MaybeTlsHalf::Rustls(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            MaybeTlsHalf::Plain(s) => s.write_vectored(bufs),
            MaybeTlsHalf::Rustls(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsHalf::Plain(s) => s.flush(),
            MaybeTlsHalf::Rustls(s) => s.flush(),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl Socket for MaybeTlsHalf {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.tcp().read_timeout()
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.tcp().write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        self.tcp().shutdown(Shutdown::Both)
    }
    fn close_session(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsHalf::Plain(_) => Ok(()),
            MaybeTlsHalf::Rustls(s) => s.close_session(),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl WebSocket<MaybeTlsStream> {
    /// Splits a connection from [`tls::connect`](crate::tls::connect) for two threads, over
    /// the shared socket (`ws://`) or the shared TLS session (`wss://`, see
    /// [`SharedTlsStream`]).
    ///
    /// ```no_run
    /// let (ws, _) = stdws::tls::connect("wss://example.com/feed")?;
    /// let (mut reader, writer) = ws.split()?;
    /// std::thread::spawn(move || writer.send_text("subscribe prices"));
    /// while let Ok(message) = reader.read() {
    ///     println!("{message:?}");
    /// }
    /// # Ok::<(), stdws::Error>(())
    /// ```
    pub fn split(
        self,
    ) -> Result<(
        ReadHalf<MaybeTlsHalf, MaybeTlsHalf>,
        WriteHalf<MaybeTlsHalf>,
    )> {
        Ok(self.split_into(|stream| match stream {
            MaybeTlsStream::Plain(tcp) => {
                let shared = SharedTcpStream::new(tcp);
                (
                    MaybeTlsHalf::Plain(shared.clone()),
                    MaybeTlsHalf::Plain(shared.clone()),
                    shared,
                )
            }
            MaybeTlsStream::Rustls(tls) => {
                let shared = SharedTlsStream::new(*tls);
                let tcp = shared.shared_tcp();
                (
                    MaybeTlsHalf::Rustls(shared.clone()),
                    MaybeTlsHalf::Rustls(shared),
                    tcp,
                )
            }
        }))
    }
}

/// Connects to a `ws://` or `wss://` URL and performs the handshakes, with the defaults of
/// [`ClientBuilder`] (10 s connect timeout; the TLS handshake and the WebSocket handshake
/// each within 10 s). `wss://` trusts the Mozilla root certificates of `webpki-roots` and
/// checks the certificate against the URL's host (a name or an IP address).
///
/// ```no_run
/// let (mut ws, _response) = stdws::tls::connect("wss://example.com/chat")?;
/// ws.send_text("hello")?;
/// println!("{:?}", ws.read()?);
/// # Ok::<(), stdws::Error>(())
/// ```
pub fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response)> {
    ClientBuilder::new(url).connect_tls()
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl ClientBuilder {
    /// The TLS settings (a [`rustls::ClientConfig`]) that
    /// [`connect_tls`](Self::connect_tls) uses for `wss://` instead of the
    /// default (the `webpki-roots` Mozilla roots, no client certificate): trusted roots,
    /// client certificates, protocol versions. Do not offer ALPN `h2`: a WebSocket
    /// handshake is HTTP/1.1.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use stdws::tls::rustls::{ClientConfig, RootCertStore};
    ///
    /// # fn demo(my_ca: stdws::tls::rustls::pki_types::CertificateDer<'static>) -> stdws::Result<()> {
    /// let mut roots = RootCertStore::empty();
    /// roots.add(my_ca)?;
    /// let config = ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let (ws, _) = stdws::ClientBuilder::new("wss://internal.example:8443/")
    ///     .tls_config(Arc::new(config))
    ///     .connect_tls()?;
    /// # Ok(()) }
    /// ```
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Opens a TCP connection to the URL's host and performs the TLS handshake (for
    /// `wss://`) and the WebSocket handshake. `ws://` URLs connect in plain TCP, so one
    /// code path serves both. Redirects are followed as by
    /// [`connect`](ClientBuilder::connect), from `ws://` to `wss://` too (never back).
    ///
    /// The connect timeout bounds opening the TCP connection; the handshake timeout bounds the TLS
    /// handshake and then the WebSocket handshake (as socket timeouts, cleared afterwards,
    /// and as a deadline). An untrusted or mismatched certificate fails with
    /// [`Error::Tls`].
    pub fn connect_tls(self) -> Result<(WebSocket<MaybeTlsStream>, Response)> {
        self.connect_with(|builder, url| {
            let tcp = builder.open_tcp(url)?;
            if !url.secure {
                return Ok(MaybeTlsStream::Plain(tcp));
            }
            let config = match &builder.tls_config {
                Some(config) => Arc::clone(config),
                None => default_client_config()?,
            };
            let name = ServerName::try_from(url.host.clone()).map_err(|_| {
                UrlError::Malformed("host is not a valid DNS name or IP address for TLS")
            })?;
            let conn = ClientConnection::new(config, name)?;
            let mut tls = StreamOwned::new(conn, tcp);
            tls_handshake(
                &mut tls.conn,
                &tls.sock,
                handshake_deadline(&builder.config),
            )?;
            Ok(MaybeTlsStream::Rustls(Box::new(tls)))
        })
    }

    /// [`reconnecting`](ClientBuilder::reconnecting) for `ws://` and `wss://` URLs: each
    /// attempt is a [`connect_tls`](Self::connect_tls).
    pub fn reconnecting_tls(self) -> crate::Reconnecting<MaybeTlsStream> {
        crate::Reconnecting::new(self, ClientBuilder::connect_tls)
    }
}

/// Performs the TLS handshake on an accepted connection with `tls` (your certificate chain
/// and key in a [`rustls::ServerConfig`]), then the WebSocket handshake, with
/// the default [`Config`]. See [`accept_with`].
///
/// ```no_run
/// use std::net::TcpListener;
/// use std::sync::Arc;
///
/// # fn demo(tls: Arc<stdws::tls::rustls::ServerConfig>) -> std::io::Result<()> {
/// let listener = TcpListener::bind("0.0.0.0:8443")?;
/// for stream in listener.incoming() {
///     let (stream, tls) = (stream?, Arc::clone(&tls));
///     std::thread::spawn(move || -> stdws::Result<()> {
///         let mut ws = stdws::tls::accept(stream, tls)?;
///         loop {
///             match ws.read()? {
///                 msg @ (stdws::Message::Text(_) | stdws::Message::Binary(_)) => ws.send(msg)?,
///                 stdws::Message::Close(_) => return Ok(()),
///                 _ => {}
///             }
///         }
///     });
/// }
/// # Ok(()) }
/// ```
pub fn accept(stream: TcpStream, tls: Arc<ServerConfig>) -> Result<WebSocket<ServerTlsStream>> {
    accept_with(stream, tls, Config::default(), |_, _| Ok(()))
}

/// [`accept`] with a [`Config`] and the callback of [`crate::accept_with`], which sees the
/// request and shapes or refuses the upgrade.
///
/// Run it on the connection's own thread: [`Config::handshake_timeout`] (default 10 s)
/// bounds the TLS handshake and then the WebSocket handshake, as a deadline and as the
/// socket's read and write timeouts. The socket's own timeouts are restored afterwards.
/// Without a handshake timeout, the socket's timeouts are the only bound.
pub fn accept_with<F>(
    stream: TcpStream,
    tls: Arc<ServerConfig>,
    config: Config,
    callback: F,
) -> Result<WebSocket<ServerTlsStream>>
where
    F: FnOnce(&Request, &mut UpgradeResponse) -> Result<(), Rejection>,
{
    let saved = (stream.read_timeout()?, stream.write_timeout()?);
    let timeout = config.handshake_timeout;
    let conn = ServerConnection::new(tls)?;
    let mut tls = StreamOwned::new(conn, stream);
    tls_handshake(&mut tls.conn, &tls.sock, handshake_deadline(&config))?;
    if timeout.is_some() {
        tls.sock.set_read_timeout(timeout)?;
        tls.sock.set_write_timeout(timeout)?;
    }
    let ws = IncomingRequest::read(tls, config)?
        .with_read_timeouts()
        .accept_with(callback)?;
    ws.get_ref().sock.set_read_timeout(saved.0)?;
    ws.get_ref().sock.set_write_timeout(saved.1)?;
    Ok(ws)
}

/// Runs the TLS handshake to its end by `deadline`, which bounds every read and write as a
/// socket timeout (so neither a silent peer nor one that trickles bytes can stretch it).
fn tls_handshake<C, S>(conn: &mut C, mut sock: &TcpStream, deadline: Option<Instant>) -> Result<()>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    while conn.is_handshaking() || conn.wants_write() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeError::TimedOut.into());
            }
            sock.set_read_timeout(Some(left))?;
            sock.set_write_timeout(Some(left))?;
        }
        let io = if conn.wants_write() {
            conn.write_tls(&mut sock).map(drop)
        } else {
            match conn.read_tls(&mut sock) {
                // The peer went away mid-handshake (a plain-TCP client, a port scanner).
                Ok(0) => return Err(HandshakeError::Incomplete.into()),
                Ok(_) => match conn.process_new_packets() {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        // Tell the peer why (the alert rustls queued), best effort.
                        let _ = conn.write_tls(&mut sock);
                        return Err(Error::Tls(e));
                    }
                },
                Err(e) => Err(e),
            }
        };
        match io {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_retryable(e.kind()) => return Err(HandshakeError::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The client configuration of [`connect`]: the `webpki-roots` Mozilla roots and no client
/// certificate, built once. It uses the process's default rustls `CryptoProvider` if one is
/// installed, else `ring`.
fn default_client_config() -> Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(Arc::clone(config));
    }
    let provider = match CryptoProvider::get_default() {
        Some(provider) => Arc::clone(provider),
        None => Arc::new(rustls::crypto::ring::default_provider()),
    };
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::WsUrl;

    #[test]
    fn default_config_is_built_once_without_alpn() {
        let config = default_client_config().unwrap();
        assert!(Arc::ptr_eq(&config, &default_client_config().unwrap()));
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn plain_connect_points_to_tls_connect() {
        let e = crate::connect("wss://127.0.0.1:1/").unwrap_err();
        assert!(matches!(e, Error::Url(UrlError::TlsRequired)));
        assert!(e.to_string().contains("stdws::tls::connect"), "{e}");
    }

    #[test]
    fn hosts_become_server_names() {
        for host in ["example.com", "127.0.0.1", "::1"] {
            let url = WsUrl::parse(&format!(
                "wss://{}/",
                if host == "::1" { "[::1]" } else { host }
            ))
            .unwrap();
            assert!(ServerName::try_from(url.host.clone()).is_ok(), "{host}");
        }
    }
}
