//! Socket controls that the deadline-bound helpers need and `Read + Write` does not offer,
//! and [`SharedTcpStream`], one TCP socket shared by the halves of a split connection.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Read/write timeouts and shutdown of the transport under a stream.
///
/// Implemented for `TcpStream` and (on Unix) `UnixStream`, and for `&S` and `&mut S` of any
/// `S: Socket` (only `&mut S` forwards [`close_session`](Self::close_session)). It
/// lets [`WebSocket::close_and_wait`](crate::WebSocket::close_and_wait) enforce a deadline
/// and close the transport. Implement it for your own stream type (a TLS wrapper, say) by
/// forwarding to the socket inside.
pub trait Socket {
    /// Sets the read timeout (`None`: block forever).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// The current read timeout.
    fn read_timeout(&self) -> io::Result<Option<Duration>>;
    /// Sets the write timeout (`None`: block forever).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// The current write timeout.
    fn write_timeout(&self) -> io::Result<Option<Duration>>;
    /// Shuts down both directions of the transport.
    fn shutdown(&self) -> io::Result<()>;
    /// Ends the session that runs above the transport, before [`shutdown`](Self::shutdown):
    /// a TLS stream sends `close_notify` here. Called by `close_and_wait` once the closing
    /// handshake is over. The default does nothing (right for plain sockets).
    fn close_session(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! impl_socket {
    ($ty:ty) => {
        impl Socket for $ty {
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$ty>::set_read_timeout(self, timeout)
            }
            fn read_timeout(&self) -> io::Result<Option<Duration>> {
                <$ty>::read_timeout(self)
            }
            fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$ty>::set_write_timeout(self, timeout)
            }
            fn write_timeout(&self) -> io::Result<Option<Duration>> {
                <$ty>::write_timeout(self)
            }
            fn shutdown(&self) -> io::Result<()> {
                <$ty>::shutdown(self, Shutdown::Both)
            }
        }
    };
}

impl_socket!(TcpStream);
#[cfg(unix)]
impl_socket!(std::os::unix::net::UnixStream);

/// Forwards everything except [`close_session`](Socket::close_session), which takes
/// `&mut self` and so cannot reach the socket through a shared reference: it is the default
/// no-op here, and `close_and_wait` on a `WebSocket<&S>` skips a TLS `close_notify`. Use
/// `&mut S` (below), which forwards `close_session` too.
impl<S: Socket + ?Sized> Socket for &S {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        (**self).read_timeout()
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> io::Result<Option<Duration>> {
        (**self).write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        (**self).shutdown()
    }
}

/// Forwards every method, [`close_session`](Socket::close_session) included, so a
/// `WebSocket<&mut S>` ends a TLS session with `close_notify` like a `WebSocket<S>`.
impl<S: Socket + ?Sized> Socket for &mut S {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        (**self).read_timeout()
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> io::Result<Option<Duration>> {
        (**self).write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        (**self).shutdown()
    }
    fn close_session(&mut self) -> io::Result<()> {
        (**self).close_session()
    }
}

/// One TCP socket shared by the halves of a [`split`](crate::WebSocket::split) connection:
/// a cheap clone of an `Arc<TcpStream>`, reading and writing through `&TcpStream` (which is
/// `Read + Write`). Every clone is the same descriptor, so a split connection costs one
/// file descriptor, not one per half.
///
/// Reads from one thread and writes from another are safe on one socket; what the halves
/// do keeps frames whole (see [`WriteHalf`](crate::WriteHalf)). Timeouts and shutdown apply
/// to the socket, so to every clone.
#[derive(Clone, Debug)]
pub struct SharedTcpStream(Arc<TcpStream>);

impl SharedTcpStream {
    /// Shares `stream`.
    pub fn new(stream: TcpStream) -> SharedTcpStream {
        SharedTcpStream(Arc::new(stream))
    }

    /// The socket (for its addresses, timeouts or options).
    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

/// The socket's own methods (`peer_addr`, `set_nodelay`, timeouts, ...).
impl std::ops::Deref for SharedTcpStream {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl From<TcpStream> for SharedTcpStream {
    fn from(stream: TcpStream) -> Self {
        SharedTcpStream::new(stream)
    }
}

impl Read for SharedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self.0).read_vectored(bufs)
    }
}

impl Write for SharedTcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self.0).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for SharedTcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.0.read_timeout()
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.0.write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Both)
    }
}

/// The read-timeout controls of a stream type, taken where the type is known to be a
/// [`Socket`] (`connect`, [`Server`](crate::Server), `tls`, [`WebSocket::set_keepalive`](
/// crate::WebSocket::set_keepalive)) and kept by a connection whose own code is generic over
/// any `Read + Write`: with them, the read loop can wait for the next keep-alive deadline
/// by itself. The reading half of a split connection reaches the timeouts through the
/// socket under both halves.
pub(crate) struct ReadTimeout<T> {
    how: Control<T>,
}

enum Control<T> {
    /// The stream's own `Socket` methods.
    Stream {
        get: fn(&T) -> io::Result<Option<Duration>>,
        set: fn(&T, Option<Duration>) -> io::Result<()>,
    },
    /// The socket under the stream (timeouts belong to the socket, not to one handle).
    Shared(SharedTcpStream),
}

impl<T> Clone for ReadTimeout<T> {
    fn clone(&self) -> Self {
        let how = match &self.how {
            Control::Stream { get, set } => Control::Stream {
                get: *get,
                set: *set,
            },
            Control::Shared(socket) => Control::Shared(socket.clone()),
        };
        ReadTimeout { how }
    }
}

impl<T> std::fmt::Debug for ReadTimeout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadTimeout")
    }
}

impl<T: Socket> ReadTimeout<T> {
    /// The controls of `T`.
    pub fn of() -> Self {
        let how = Control::Stream {
            get: <T as Socket>::read_timeout,
            set: <T as Socket>::set_read_timeout,
        };
        ReadTimeout { how }
    }
}

impl<T> ReadTimeout<T> {
    /// The controls of any stream over `socket`.
    pub fn shared(socket: SharedTcpStream) -> Self {
        ReadTimeout {
            how: Control::Shared(socket),
        }
    }

    /// The stream's read timeout (`None`: it blocks).
    pub fn get(&self, stream: &T) -> io::Result<Option<Duration>> {
        match &self.how {
            Control::Stream { get, .. } => get(stream),
            Control::Shared(socket) => socket.read_timeout(),
        }
    }

    /// Sets the stream's read timeout.
    pub fn set(&self, stream: &T, timeout: Option<Duration>) -> io::Result<()> {
        match &self.how {
            Control::Stream { set, .. } => set(stream, timeout),
            Control::Shared(socket) => socket.set_read_timeout(timeout),
        }
    }
}
