//! One TLS session shared by the halves of a split `wss://` connection (feature `rustls`):
//! [`SharedTlsStream`], and `split` for the TLS streams of [`tls`](crate::tls).
//!
//! A TLS session is one state machine (record sequence numbers, keys), so both halves use it
//! under one lock, held only while bytes are decrypted or encrypted, never while waiting on
//! the socket: the reading half waits for ciphertext on the `TcpStream` without the lock,
//! so a writer is never held up by a read, and a read is never held up by a writer blocked
//! on a full socket (two split peers flooding each other keep reading). Encrypted records go
//! into one queue, in the order they were made, and whoever holds the write turn sends the
//! queue in that order.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::ops::DerefMut;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rustls::{ClientConnection, ConnectionCommon, ServerConnection, SideData, StreamOwned};

use crate::error::Result;
use crate::socket::{SharedTcpStream, Socket};
use crate::split::{ReadHalf, WriteHalf};
use crate::websocket::WebSocket;

/// Ciphertext read from the socket at a time.
const READ_CHUNK: usize = 16 << 10;

/// The session and the records it made that are not sent yet.
struct Session<C> {
    conn: C,
    /// Encrypted bytes in the order rustls made them; sent by the write turn's holder.
    out: Vec<u8>,
}

struct Inner<C> {
    tcp: SharedTcpStream,
    session: Mutex<Session<C>>,
    /// The turn to send `out`: one sender at a time, so records go out in order.
    write_turn: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One TLS session over one `TcpStream`, shared by the halves of a split `wss://`
/// connection (see [`WebSocket::split`] for the TLS streams). Cheap to clone; every clone is
/// the same session and the same socket. `C` is rustls's `ClientConnection` or
/// `ServerConnection`.
pub struct SharedTlsStream<C> {
    inner: Arc<Inner<C>>,
    /// The reading clone's ciphertext buffer, allocated on its first read.
    rbuf: Vec<u8>,
}

impl<C> Clone for SharedTlsStream<C> {
    fn clone(&self) -> Self {
        SharedTlsStream {
            inner: Arc::clone(&self.inner),
            rbuf: Vec::new(),
        }
    }
}

impl<C> std::fmt::Debug for SharedTlsStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTlsStream")
            .field("tcp", &self.inner.tcp)
            .finish_non_exhaustive()
    }
}

impl<C, S> SharedTlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    /// Shares the session and socket of `stream`.
    pub fn new(stream: StreamOwned<C, TcpStream>) -> Self {
        let StreamOwned { conn, sock } = stream;
        SharedTlsStream {
            inner: Arc::new(Inner {
                tcp: SharedTcpStream::new(sock),
                session: Mutex::new(Session {
                    conn,
                    out: Vec::new(),
                }),
                write_turn: Mutex::new(()),
            }),
            rbuf: Vec::new(),
        }
    }

    /// The TCP socket under the session (for timeouts and addresses). Reading or writing it
    /// directly corrupts the connection.
    pub fn tcp(&self) -> &TcpStream {
        &self.inner.tcp
    }

    /// The shared socket under the session.
    pub(crate) fn shared_tcp(&self) -> SharedTcpStream {
        self.inner.tcp.clone()
    }

    /// Moves what the session has to send into the ordered queue (under the lock).
    fn take_records(session: &mut Session<C>) {
        while session.conn.wants_write() {
            if session.conn.write_tls(&mut session.out).is_err() {
                break; // writing into a Vec does not fail
            }
        }
    }

    /// Sends the queue if nobody else is: with `wait`, waits for the turn (a writer);
    /// without, leaves the bytes to the holder (the reader, which must not wait).
    fn send_records(&self, wait: bool) -> io::Result<()> {
        loop {
            let turn = match self.inner.write_turn.try_lock() {
                Ok(turn) => turn,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) if wait => lock(&self.inner.write_turn),
                Err(TryLockError::WouldBlock) => return Ok(()),
            };
            loop {
                let bytes = std::mem::take(&mut lock(&self.inner.session).out);
                if bytes.is_empty() {
                    break;
                }
                let mut sent = 0;
                while sent < bytes.len() {
                    match (&*self.inner.tcp).write(&bytes[sent..]) {
                        Ok(0) => return Err(self.put_back(&bytes[sent..], ErrorKind::WriteZero)),
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            let kind = e.kind();
                            self.put_back(&bytes[sent..], kind);
                            return Err(e);
                        }
                    }
                }
            }
            drop(turn);
            // Records queued by someone who found the turn taken after our last look.
            if lock(&self.inner.session).out.is_empty() {
                return Ok(());
            }
        }
    }

    /// Puts unsent bytes back at the front of the queue (they were made first).
    fn put_back(&self, rest: &[u8], kind: ErrorKind) -> io::Error {
        let mut session = lock(&self.inner.session);
        let later = std::mem::take(&mut session.out);
        session.out = rest.to_vec();
        session.out.extend_from_slice(&later);
        kind.into()
    }
}

impl<C, S> Read for SharedTlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut session = lock(&self.inner.session);
                match session.conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    // A TCP end without close_notify: the WebSocket close frames tell a clean
                    // end from a truncated one, so this is an ordinary end of stream.
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // No plaintext: wait for ciphertext without the lock.
            if self.rbuf.is_empty() {
                self.rbuf = vec![0; READ_CHUNK];
            }
            let n = loop {
                match (&*self.inner.tcp).read(&mut self.rbuf) {
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            let mut session = lock(&self.inner.session);
            let mut input = &self.rbuf[..n];
            loop {
                // `read_tls` of an empty slice tells rustls the stream ended.
                let taken = session.conn.read_tls(&mut input)?;
                let processed = session.conn.process_new_packets();
                Self::take_records(&mut session);
                if let Err(e) = processed {
                    drop(session);
                    let _ = self.send_records(false); // the alert, best effort
                    return Err(io::Error::new(ErrorKind::InvalidData, e));
                }
                if input.is_empty() || taken == 0 {
                    break;
                }
            }
            let pending = !session.out.is_empty();
            drop(session);
            if pending {
                // Key updates and the like: sent now unless a writer has the turn, in which
                // case the writer sends them before it lets go.
                self.send_records(false)?;
            }
        }
    }
}

impl<C, S> Write for SharedTlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    /// Encrypts `buf` and sends it. The plaintext taken is reported even if the socket took
    /// only part of the records (they stay queued for the next write or `flush`), so
    /// nothing is encrypted twice.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = {
            let mut session = lock(&self.inner.session);
            let n = session.conn.writer().write(buf)?;
            Self::take_records(&mut session);
            n
        };
        match self.send_records(true) {
            Err(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = {
            let mut session = lock(&self.inner.session);
            let n = session.conn.writer().write_vectored(bufs)?;
            Self::take_records(&mut session);
            n
        };
        match self.send_records(true) {
            Err(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        {
            let mut session = lock(&self.inner.session);
            session.conn.writer().flush()?;
            Self::take_records(&mut session);
        }
        self.send_records(true)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl<C, S> Socket for SharedTlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.tcp.set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.inner.tcp.read_timeout()
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.tcp.set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.inner.tcp.write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        Socket::shutdown(&self.inner.tcp)
    }
    /// Sends TLS `close_notify`.
    fn close_session(&mut self) -> io::Result<()> {
        {
            let mut session = lock(&self.inner.session);
            session.conn.send_close_notify();
            Self::take_records(&mut session);
        }
        self.send_records(true)
    }
}

/// The halves of a split TLS connection.
pub type TlsHalves<C> = (
    ReadHalf<SharedTlsStream<C>, SharedTlsStream<C>>,
    WriteHalf<SharedTlsStream<C>>,
);

fn split_tls<C, S>(ws: WebSocket<StreamOwned<C, TcpStream>>) -> TlsHalves<C>
where
    C: DerefMut<Target = ConnectionCommon<S>> + Send + 'static,
    S: SideData,
{
    ws.split_into(|stream| {
        let shared = SharedTlsStream::new(stream);
        let tcp = shared.shared_tcp();
        (shared.clone(), shared, tcp)
    })
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl WebSocket<StreamOwned<ServerConnection, TcpStream>> {
    /// Splits a `wss://` server connection for two threads, like
    /// [`WebSocket::split`](WebSocket::split) for TCP: the halves share the TLS session
    /// (see [`SharedTlsStream`]) and the one socket.
    pub fn split(self) -> Result<TlsHalves<ServerConnection>> {
        Ok(split_tls(self))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl WebSocket<StreamOwned<ClientConnection, TcpStream>> {
    /// Splits a `wss://` client connection for two threads (see
    /// [`SharedTlsStream`]).
    pub fn split(self) -> Result<TlsHalves<ClientConnection>> {
        Ok(split_tls(self))
    }
}
