//! A TCP server front end: [`Server`] accepts connections and hands each one out as a
//! [`PendingConnection`], whose handshake runs on the connection's own thread with socket
//! timeouts set from [`Config::handshake_timeout`].
//!
//! The generic [`accept`](crate::accept) takes any `Read + Write` stream and so cannot set a
//! socket timeout: over a bare `TcpStream`, a client that connects and sends nothing holds
//! the thread until the application thought of a read timeout. Here the timeout is on by
//! default (10 s), and the socket is left as it was once the handshake is done.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{is_retryable, Error, HandshakeError};
use crate::handshake::server::{IncomingRequest, Rejection, UpgradeResponse};
use crate::handshake::Request;
use crate::shutdown::GracefulShutdown;
use crate::websocket::WebSocket;

/// After refusing a client, how long to keep reading what it still sends before closing.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// After refusing a client, how many bytes to read at most before closing.
const LINGER_BYTES: usize = 64 << 10;

/// A WebSocket server on a TCP listener, for one thread per connection.
///
/// [`accept`](Self::accept) (or [`incoming`](Self::incoming)) only accepts the TCP
/// connection; hand the [`PendingConnection`] to a thread and do the handshake there
/// ([`PendingConnection::accept`], [`accept_with`](PendingConnection::accept_with) or
/// [`read_request`](PendingConnection::read_request)), so a slow client never delays the
/// accept loop. During the handshake the socket has read and write timeouts of
/// [`Config::handshake_timeout`] (default 10 s): a client that sends nothing fails with
/// [`HandshakeError::TimedOut`] after that long, one that trickles its request within
/// twice that at most. A refused client gets its HTTP answer before the socket closes.
///
/// After the handshake the socket has its own timeouts again (none by default), and a client
/// that stays connected and silent would hold its thread. Bound idle connections with
/// [`Config::keepalive`]: `read` then pings a quiet client and fails the connection with
/// [`Error::KeepAliveTimeout`](crate::Error::KeepAliveTimeout) if it stays silent (see
/// [`KeepAlive`](crate::KeepAlive)), waiting for these deadlines by itself: no read
/// timeout is needed.
///
/// ```
/// use std::time::Duration;
/// use stdws::{Config, KeepAlive, Message, Server};
///
/// let config = Config::default().keepalive(Some(KeepAlive::new(
///     Duration::from_secs(30), // ping after 30 s of silence
///     Duration::from_secs(10), // fail the connection 10 s later if still silent
/// )));
/// let server = Server::bind("127.0.0.1:0")?.config(config);
/// let url = format!("ws://{}/", server.local_addr()?);
/// let accept_loop = std::thread::spawn(move || {
///     for pending in server.incoming().take(1) {
///         let Ok(pending) = pending else { continue }; // e.g. out of file descriptors
///         std::thread::spawn(move || -> stdws::Result<()> {
///             let mut ws = pending.accept()?; // the handshake, on this thread
///             loop {
///                 match ws.read() {
///                     Ok(msg) if msg.is_data() => ws.send(msg)?,
///                     Ok(_) => {}
///                     Err(stdws::Error::ConnectionClosed(_)) => return Ok(()),
///                     Err(e) => return Err(e),
///                 }
///             }
///         });
///     }
/// });
///
/// let (mut client, _) = stdws::connect(&url)?;
/// client.send_text("hello")?;
/// assert_eq!(client.read()?, Message::text("hello"));
/// client.close_and_wait(1000, "", Duration::from_secs(5))?;
/// accept_loop.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: Config,
    shutdown: Option<GracefulShutdown>,
}

impl Server {
    /// Listens on `addr` (e.g. `"0.0.0.0:9001"`, or port 0 for any free port), with
    /// [`Config::default`].
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Ok(Server::from_listener(TcpListener::bind(addr)?))
    }

    /// Serves on a listener the caller bound, with [`Config::default`]. The listener should
    /// be blocking.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            config: Config::default(),
            shutdown: None,
        }
    }

    /// Sets the [`Config`] of every connection, including its handshake timeout and limits.
    pub fn config(mut self, config: Config) -> Server {
        self.config = config;
        self
    }

    /// Stops accepting when `shutdown` starts (see [`GracefulShutdown`]): [`incoming`](Self::incoming)
    /// ends, and [`accept`](Self::accept) fails with `ConnectionAborted`, waking from a
    /// blocking wait.
    pub fn shutdown_on(mut self, shutdown: &GracefulShutdown) -> Server {
        if let Ok(addr) = self.listener.local_addr() {
            shutdown.add_listener(addr);
        }
        self.shutdown = Some(shutdown.clone());
        self
    }

    fn is_shut_down(&self) -> bool {
        self.shutdown
            .as_ref()
            .is_some_and(GracefulShutdown::is_started)
    }

    /// The address the server listens on (with the port chosen for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.listener
    }

    /// Waits for the next TCP connection. Nothing is read or written yet: hand the
    /// connection to its thread and do the handshake there.
    ///
    /// An error concerns this accept only (a connection reset while queued, the process
    /// out of file descriptors, ...): log it and go on accepting, perhaps after a pause.
    pub fn accept(&self) -> io::Result<PendingConnection> {
        let shut_down = || io::Error::new(ErrorKind::ConnectionAborted, "the server shut down");
        if self.is_shut_down() {
            return Err(shut_down());
        }
        let (stream, peer) = self.listener.accept()?;
        if self.is_shut_down() {
            return Err(shut_down()); // woken by the shutdown; the connection is dropped
        }
        Ok(PendingConnection {
            stream,
            peer,
            config: self.config.clone(),
        })
    }

    /// An iterator of [`accept`](Self::accept) results, endless unless the server stops
    /// with a [`GracefulShutdown`] ([`shutdown_on`](Self::shutdown_on)).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { server: self }
    }
}

/// The iterator of [`Server::incoming`]: calls [`Server::accept`] for each item, until the
/// server's [`GracefulShutdown`] starts.
#[derive(Debug)]
pub struct Incoming<'a> {
    server: &'a Server,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<PendingConnection>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.server.accept() {
            Err(_) if self.server.is_shut_down() => None,
            result => Some(result),
        }
    }
}

/// A TCP connection accepted by a [`Server`], before the opening handshake.
///
/// Each way to do the handshake turns `TCP_NODELAY` on and bounds it by
/// [`Config::handshake_timeout`] through the socket's read and write timeouts, which are
/// set back to what they were (none, unless you set some with [`get_ref`](Self::get_ref))
/// when it succeeds. A timeout shows as [`HandshakeError::TimedOut`]. When the client is
/// refused with an HTTP error, the socket is shut down for writing and what the client
/// still sends is read and discarded (for up to 1 s and 64 KiB) before it closes, so the
/// client sees the answer instead of a connection reset.
#[derive(Debug)]
pub struct PendingConnection {
    stream: TcpStream,
    peer: SocketAddr,
    config: Config,
}

impl PendingConnection {
    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket (for its local address, say).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Does the handshake: reads the request and upgrades it, or answers an invalid one
    /// with the matching HTTP error (see [`accept`](crate::accept)).
    pub fn accept(self) -> Result<WebSocket<TcpStream>, Error> {
        self.accept_with(|_, _| Ok(()))
    }

    /// Does the handshake after `callback` approved the request and shaped the response,
    /// or refused it (see [`accept_with`](crate::accept_with)).
    pub fn accept_with<F>(self, callback: F) -> Result<WebSocket<TcpStream>, Error>
    where
        F: FnOnce(&Request, &mut UpgradeResponse) -> Result<(), Rejection>,
    {
        self.handshake(
            |stream, config| {
                IncomingRequest::read(stream, config)?
                    .with_read_timeouts()
                    .accept_with(callback)
            },
            WebSocket::get_ref,
        )
    }

    /// Reads the request without answering it, to upgrade it, refuse it or answer it as
    /// plain HTTP (see [`IncomingRequest`]). The timeouts bound reading the request; they
    /// are lifted before this returns, so set a write timeout on
    /// [`IncomingRequest::get_ref`] before answering with a large body.
    pub fn read_request(self) -> Result<IncomingRequest<TcpStream>, Error> {
        self.handshake(
            |stream, config| Ok(IncomingRequest::read(stream, config)?.with_read_timeouts()),
            IncomingRequest::get_ref,
        )
    }

    /// Runs `step` with the handshake's socket options, then restores the timeouts on the
    /// socket that `socket_of` finds in its result, or lingers after a refusal.
    fn handshake<R>(
        self,
        step: impl FnOnce(TcpStream, Config) -> Result<R, Error>,
        socket_of: impl FnOnce(&R) -> &TcpStream,
    ) -> Result<R, Error> {
        let PendingConnection { stream, config, .. } = self;
        stream.set_nodelay(true)?;
        let before = (stream.read_timeout()?, stream.write_timeout()?);
        // A zero timeout is refused by the socket API; the shortest one it takes is as good.
        let timeout = config
            .handshake_timeout
            .map(|t| t.max(Duration::from_millis(1)));
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        // A second handle keeps the socket open when `step` fails and drops its stream, so
        // that a refused client can be given time to read the answer.
        let spare = stream.try_clone().ok();
        match step(stream, config) {
            Ok(done) => {
                let socket = socket_of(&done);
                socket.set_read_timeout(before.0)?;
                socket.set_write_timeout(before.1)?;
                Ok(done)
            }
            Err(e) => {
                if let Some(socket) = spare.filter(|_| was_answered(&e)) {
                    linger(&socket);
                }
                match e {
                    Error::Io(e) if is_retryable(e.kind()) => Err(HandshakeError::TimedOut.into()),
                    e => Err(e),
                }
            }
        }
    }
}

/// Whether the handshake failed after sending the client an HTTP refusal.
fn was_answered(e: &Error) -> bool {
    match e {
        Error::Handshake(HandshakeError::Incomplete | HandshakeError::TimedOut) => false,
        Error::Handshake(_) => true,
        // The application's 101 was invalid: a 500 was sent.
        Error::InvalidInput(_) => true,
        _ => false,
    }
}

/// Closes our side and reads what the client still sends (for at most [`LINGER_TIME`] and
/// [`LINGER_BYTES`]). Closing a socket with unread input makes the kernel reset the
/// connection, and a reset can destroy the answer before the client has read it (RFC 9112
/// §9.6); a client that is still sending its oversized request, say, would see only the
/// reset.
fn linger(socket: &TcpStream) {
    if socket.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let mut reader = socket;
    while left > 0 {
        let time = deadline.saturating_duration_since(Instant::now());
        if time.is_zero() || socket.set_read_timeout(Some(time)).is_err() {
            return;
        }
        match reader.read(&mut buf[..left.min(4096)]) {
            Ok(0) => return,
            Ok(n) => left -= n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
