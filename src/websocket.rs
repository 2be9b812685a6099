//! The connection as the application uses it: [`WebSocket`] over one stream, and the read
//! loop it shares with the reading half of a split connection (RFC 6455 §5-7).
//!
//! The read loop joins a [`Receiver`] (bytes to messages) with an [`Outgoing`] (the state and
//! everything written: pongs, close replies, the close frame of a failure) through the
//! [`Halves`] trait, so the same code serves one stream owned outright and a split
//! connection whose write side sits behind a mutex.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::connection::Connection;
use crate::driver::{read_message, read_payload, read_stream_start, Got, Joined, WriteSide};
use crate::error::{Error, Result};
use crate::frame::OpCode;
use crate::keepalive::KeepAlive;
use crate::keepalive::Timer;
use crate::message::Message;
use crate::prepared::PreparedMessage;
use crate::socket::{ReadTimeout, SharedTcpStream, Socket};
use crate::split::{ReadHalf, Shared, WriteHalf};
pub use crate::state::Role;
use crate::state::{Lifecycle, State};
use crate::stream::{
    FrameSink, MessageKind, MessageReader, MessageWriter, PayloadSource, Streamed,
};

/// A WebSocket connection over a stream `T` (a `TcpStream`, a TLS stream, a Unix socket,
/// an in-memory pipe...), after the opening handshake.
///
/// Get one from [`accept`](crate::accept) (server) or [`connect`](crate::connect) /
/// [`client`](crate::client) (client).
///
/// # Reading
/// [`read`](Self::read) returns whole messages. Pings are answered automatically (the pong
/// is queued and goes out with the next write or before the next wait for input) and still
/// returned, as are pongs. When the peer's close frame arrives, the reply has been sent and
/// `read` returns [`Message::Close`]; the next call returns [`Error::ConnectionClosed`].
///
/// # When bytes reach the stream
/// Writes are corked: [`write`](Self::write) only queues a message; the queue is written
/// when it holds [`Config::write_buffer_size`] bytes, on [`flush`](Self::flush), by every
/// `send*`/`ping`/`close` call (which queue, then flush), and by `read` before it waits for
/// input. An echo loop that uses `write` therefore makes one `write` system call per batch
/// of messages instead of one per message. A frame of `write_buffer_size` bytes or more is
/// written at once instead of being copied into the queue: a server writes it straight from
/// the caller's bytes (one vectored write with what was queued), a client masks it in 64 KiB
/// pieces.
///
/// # Memory
/// The read buffer rests at [`Config::read_buffer_size`] (during bursts of small frames it
/// doubles, up to 64 KiB or that size if larger): payloads go from it, or for large binary
/// frames straight from
/// the stream, into the message, which grows as bytes arrive (never by a frame's declared
/// length). A message passed back to
/// `write`/`send` lends its allocation (up to 64 KiB) to the next received message, so an
/// echo or relay loop allocates nothing per message. After a flush, a write buffer over
/// 64 KiB is released.
///
/// # Timeouts and non-blocking streams
/// If the stream returns `WouldBlock` or `TimedOut` (a non-blocking socket, or a socket with
/// a read timeout), the call returns [`Error::Io`] with that kind
/// ([`Error::is_would_block`]) and nothing is lost: the next `read` continues mid-frame, and
/// `flush` finishes a partly written frame. A `send*` call that fails this way has queued its
/// message; do not send it again, call `flush` later. This is how one thread can wake up
/// from a read timeout to do other work.
///
/// # Keep-alive
/// With [`Config::keepalive`], `read` (and [`ReadHalf::read`], and a [`MessageReader`]'s
/// reads) sends a ping after `interval` of silence and fails the connection with
/// [`Error::KeepAliveTimeout`] (close code 1011) when nothing arrives within `timeout` of
/// it. The connection needs to set its stream's read timeout for that ([`Socket`]): the
/// connections of [`Server`](crate::Server), [`connect`](crate::connect),
/// [`ClientBuilder::connect`](crate::ClientBuilder::connect) and `tls` do, and
/// [`set_keepalive`](Self::set_keepalive) turns it on for any other `T: Socket`. `read`
/// then blocks only until the next keep-alive deadline by itself, and puts the stream's read
/// timeout back before it returns: a read timeout of your own still works (the caller sees
/// it as `WouldBlock`/`TimedOut`), and the timers never make `read` return one. The
/// constructors generic over any stream (`accept`, `client`, ...) refuse a keep-alive
/// config with [`Error::InvalidInput`], since they cannot set the timeout;
/// [`from_raw_socket`](Self::from_raw_socket) keeps the timers, checked only when the
/// stream itself returns `WouldBlock`/`TimedOut` (a non-blocking stream, or a read timeout
/// you set).
///
/// # Two threads
/// [`split`](Self::split) turns a connection over a `TcpStream` into a [`ReadHalf`] for one
/// thread and a cloneable [`WriteHalf`] for any others.
///
/// # Closing
/// [`close`](Self::close) sends a close frame; keep calling `read` (it still returns the
/// peer's data) until [`Message::Close`]. [`close_and_wait`](Self::close_and_wait) does it
/// all with a deadline. The server should drop the connection as soon as the closing
/// handshake is done (RFC 6455 §7.1.1); dropping the `WebSocket` closes a `TcpStream`.
///
/// ```
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use stdws::Message;
///
/// // A server that echoes one connection...
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let url = format!("ws://{}/echo", listener.local_addr()?);
/// let server = std::thread::spawn(move || -> stdws::Result<()> {
///     let mut ws = stdws::accept(listener.accept()?.0)?;
///     loop {
///         match ws.read()? {
///             msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg)?,
///             Message::Close(_) => return Ok(()),
///             _ => {}
///         }
///     }
/// });
///
/// // ...and a client.
/// let (mut ws, _response) = stdws::connect(&url)?;
/// ws.send_text("hello")?;
/// assert_eq!(ws.read()?, Message::text("hello"));
/// let reply = ws.close_and_wait(1000, "done", Duration::from_secs(5))?;
/// assert_eq!(reply.map(|f| f.code.as_u16()), Some(1000));
/// server.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WebSocket<T> {
    stream: T,
    /// The protocol core; this type is its blocking driver over one stream.
    conn: Connection,
    /// The stream's read-timeout controls, when the constructor knew `T: Socket`: keep-alive
    /// then waits for its deadlines by itself.
    timeouts: Option<ReadTimeout<T>>,
}

/// Why a constructor generic over any `Read + Write` refuses [`Config::keepalive`].
pub(crate) const KEEPALIVE_NEEDS_SOCKET: &str =
    "Config::keepalive needs a stream whose read timeout stdws can set: use Server, connect \
     or tls, or call WebSocket::set_keepalive (T: Socket) after the handshake";

/// Fails with [`KEEPALIVE_NEEDS_SOCKET`] if `config` asks for keep-alive: for the
/// constructors that cannot know whether their stream can time out.
pub(crate) fn check_keepalive_needs_no_socket(config: &Config) -> Result<()> {
    match config.keepalive {
        Some(_) => Err(Error::InvalidInput(KEEPALIVE_NEEDS_SOCKET)),
        None => Ok(()),
    }
}

impl<T: Read + Write> WebSocket<T> {
    /// Wraps a stream on which the opening handshake has already been done (by your own HTTP
    /// server, say). Use `read_buffered` for bytes of the WebSocket stream that were already
    /// read while handling the handshake.
    pub fn from_raw_socket(stream: T, role: Role, config: Config, read_buffered: Vec<u8>) -> Self {
        Self::from_connection(
            stream,
            Connection::from_parts(role, config, read_buffered, None),
        )
    }

    /// Continues a connection whose opening handshake was run over bytes, by
    /// [`proto::ServerHandshake`](crate::proto::ServerHandshake) or
    /// [`proto::ClientHandshake`](crate::proto::ClientHandshake), under this blocking
    /// driver: a server can read every handshake on one thread over non-blocking sockets
    /// (so a slow client holds no thread), then give each finished connection to a thread
    /// of its own. Put `stream` back in blocking mode first (or keep it non-blocking and
    /// handle `WouldBlock`, see above).
    ///
    /// What the connection still has to send (the end of the 101 that a non-blocking
    /// write did not take, say) goes out first, with the next write, `flush` or `read`;
    /// bytes that arrived behind the handshake are read first. Keep-alive in the
    /// connection's [`Config`] behaves as with [`from_raw_socket`](Self::from_raw_socket);
    /// call [`set_keepalive`](Self::set_keepalive) to have `read` wait for its deadlines
    /// by itself.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::net::TcpListener;
    /// use stdws::proto::ServerHandshake;
    /// use stdws::{Config, Message, WebSocket};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let url = format!("ws://{}/", listener.local_addr()?);
    /// let client = std::thread::spawn(move || -> stdws::Result<Message> {
    ///     let (mut ws, _) = stdws::connect(&url)?;
    ///     ws.send_text("hi")?;
    ///     ws.read()
    /// });
    ///
    /// // The handshake over bytes (a non-blocking server would read as they arrive)...
    /// let (mut stream, _) = listener.accept()?;
    /// let mut handshake = ServerHandshake::new(Config::default());
    /// loop {
    ///     let n = stream.read(handshake.read_buf())?;
    ///     if handshake.filled(n).map_err(|refusal| refusal.error)?.is_some() {
    ///         break;
    ///     }
    /// }
    /// let conn = handshake.accept().map_err(|refusal| refusal.error)?;
    /// // ...then the blocking driver, which writes the 101 still queued in `conn`.
    /// let mut ws = WebSocket::from_connection(stream, conn);
    /// let message = ws.read()?;
    /// ws.send(message)?;
    /// assert_eq!(client.join().unwrap()?, Message::text("hi"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_connection(stream: T, mut conn: Connection) -> Self {
        conn.keepalive = conn.config.keepalive.map(|k| Timer::new(k, Instant::now()));
        WebSocket {
            stream,
            conn,
            timeouts: None,
        }
    }

    /// This connection with the stream's read-timeout controls, if known.
    pub(crate) fn keeping(mut self, timeouts: Option<ReadTimeout<T>>) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The send operations on this connection's stream.
    #[inline(always)]
    fn side(&mut self) -> WriteSide<'_, T> {
        WriteSide::new(&mut self.stream, &mut self.conn.out)
    }

    /// Reads the next message, waiting for it if needed.
    ///
    /// Errors: see [`Error`] for how the end of a connection is reported. A protocol
    /// violation by the peer has already been answered with a close frame carrying the
    /// matching code (1002, 1007 or 1009) when the error is returned.
    #[inline]
    pub fn read(&mut self) -> Result<Message> {
        let mut halves = Joined {
            stream: &mut self.stream,
            out: &mut self.conn.out,
            timeouts: &self.timeouts,
        };
        read_message(
            &mut halves,
            &mut self.conn.receiver,
            self.conn.role,
            &mut self.conn.keepalive,
        )
    }

    /// Reads the next message as a stream: for a text or binary message, returns a
    /// [`MessageReader`] as soon as its first frame header has arrived, so the payload can
    /// be copied somewhere (a file, a hash) without ever holding the whole message. Control
    /// messages that come first are returned as [`Streamed::Control`], handled as
    /// [`read`](Self::read) handles them.
    ///
    /// ```no_run
    /// # fn demo(ws: &mut stdws::WebSocket<std::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
    /// if let stdws::Streamed::Message(mut reader) = ws.read_stream()? {
    ///     let mut file = std::fs::File::create("upload.bin")?;
    ///     let bytes = std::io::copy(&mut reader, &mut file)?;
    ///     println!("received {bytes} bytes");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn read_stream(&mut self) -> Result<Streamed<'_>> {
        self.read_stream_within(None)
    }

    /// [`read_stream`](Self::read_stream) for one message that may be larger than
    /// [`Config::max_message_size`]: this message (and each of its frames, which
    /// [`Config::max_frame_size`] bounds otherwise) may have up to `max_size` bytes. The
    /// configured limits still apply to every other message, and to this one if it turns out
    /// to be a control message. A message over `max_size` fails the connection with close
    /// code 1009, like one over the configured limits.
    ///
    /// ```no_run
    /// # fn demo(ws: &mut stdws::WebSocket<std::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
    /// // The client announced an upload: accept up to 1 GiB for this one message.
    /// if let stdws::Streamed::Message(mut reader) = ws.read_stream_with_limit(1 << 30)? {
    ///     let mut file = std::fs::File::create("upload.bin")?;
    ///     std::io::copy(&mut reader, &mut file)?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn read_stream_with_limit(&mut self, max_size: usize) -> Result<Streamed<'_>> {
        self.read_stream_within(Some(max_size as u64))
    }

    fn read_stream_within(&mut self, limit: Option<u64>) -> Result<Streamed<'_>> {
        let mut halves = Joined {
            stream: &mut self.stream,
            out: &mut self.conn.out,
            timeouts: &self.timeouts,
        };
        let got = read_stream_start(
            &mut halves,
            &mut self.conn.receiver,
            self.conn.role,
            &mut self.conn.keepalive,
            limit,
        );
        match got? {
            Got::Message(message) => Ok(Streamed::Control(message)),
            Got::StreamStart { text } => Ok(Streamed::Message(MessageReader::new(self, text))),
        }
    }

    /// Starts sending one message as a stream: write its payload to the returned
    /// [`MessageWriter`], then call [`finish`](MessageWriter::finish). It goes out in
    /// fragments of [`Config::fragment_size`] (64 KiB if unset).
    ///
    /// ```no_run
    /// # fn demo(ws: &mut stdws::WebSocket<std::net::TcpStream>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut writer = ws.send_stream(stdws::MessageKind::Binary)?;
    /// std::io::copy(&mut std::fs::File::open("big.bin")?, &mut writer)?;
    /// writer.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn send_stream(&mut self, kind: MessageKind) -> Result<MessageWriter<'_>> {
        self.side().check_can_stream()?;
        let fragment = self.conn.config.fragment_size;
        Ok(MessageWriter::new(Box::new(SinkOf(self)), kind, fragment))
    }

    /// Queues `message` and writes everything queued to the stream.
    ///
    /// Sending [`Message::Close`] starts the closing handshake like [`close`](Self::close).
    /// If the stream returns `WouldBlock`/`TimedOut`, the message stays queued: call
    /// [`flush`](Self::flush) later, do not send it again.
    pub fn send(&mut self, message: Message) -> Result<()> {
        self.write(message)?;
        self.flush()
    }

    /// Sends a [`PreparedMessage`] (see [`send`](Self::send)): a server queues a reference to
    /// its frame, framed once for every connection it goes to; a client frames and masks it.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<()> {
        self.side().send_prepared(message)?;
        self.flush()
    }

    /// Sends a text message (see [`send`](Self::send)).
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.side().queue_data(OpCode::Text, text.as_bytes())?;
        self.flush()
    }

    /// Sends a binary message (see [`send`](Self::send)).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.side().queue_data(OpCode::Binary, data)?;
        self.flush()
    }

    /// Sends a ping with `payload` (at most 125 bytes); the peer answers with a pong that
    /// [`read`](Self::read) returns.
    pub fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.side().write_control(OpCode::Ping, payload)?;
        self.flush()
    }

    /// Queues `message` without writing it unless the queue is full (see "When bytes reach
    /// the stream" above). Returns [`CapacityError::WriteBufferFull`](crate::CapacityError)
    /// without queueing if more than [`Config::max_write_buffer_size`] bytes are stuck in
    /// the queue.
    pub fn write(&mut self, message: Message) -> Result<()> {
        let mut message = message;
        let result = self.side().write(&mut message);
        // The message's allocation is kept to receive the next one into.
        match message {
            Message::Text(text) => self.conn.receiver.recycle(text.into_bytes()),
            Message::Binary(data) => self.conn.receiver.recycle(data),
            _ => {}
        }
        result
    }

    /// Writes everything queued to the stream and flushes it.
    pub fn flush(&mut self) -> Result<()> {
        if self.conn.out.state == Lifecycle::Ended {
            return Err(Error::AlreadyClosed);
        }
        self.side().flush_queued()
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes): sends a
    /// close frame. Keep calling [`read`](Self::read) until it returns [`Message::Close`], or
    /// use [`close_and_wait`](Self::close_and_wait). Calling it again while closing does
    /// nothing.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        self.side().start_close(Some(CloseFrame::new(code, reason)))
    }

    /// Whether messages can still be sent (the connection is open and `close` was not
    /// called).
    pub fn can_write(&self) -> bool {
        self.conn.out.state.is_open()
    }

    /// Where the connection stands: `Open`, `Closing` after [`close`](Self::close) until
    /// the peer's close arrives, then `Closed` (also after a failure). Never provokes an
    /// error, unlike probing with `read` or `send`.
    pub fn state(&self) -> State {
        self.conn.out.state.state()
    }

    /// Whether `read` can still return messages (the peer's close has not arrived and the
    /// connection did not fail).
    pub fn can_read(&self) -> bool {
        self.conn.out.state.is_reading()
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.conn.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.conn.config
    }

    /// The subprotocol the server chose in the opening handshake (`Sec-WebSocket-Protocol`),
    /// if any: for a server, what the [`accept_with`](crate::accept_with) callback set with
    /// [`UpgradeResponse::set_subprotocol`](crate::UpgradeResponse::set_subprotocol); for
    /// a client, the one of its [`ClientBuilder::subprotocol`](crate::ClientBuilder)
    /// offers the server took. Also on both split halves.
    ///
    /// ```no_run
    /// # fn demo() -> stdws::Result<()> {
    /// let (ws, _response) = stdws::ClientBuilder::new("ws://127.0.0.1:9001/")
    ///     .subprotocol("chat.v2")
    ///     .subprotocol("chat.v1")
    ///     .connect()?;
    /// match ws.subprotocol() {
    ///     Some("chat.v2") => { /* the new message format */ }
    ///     _ => { /* the old one */ }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subprotocol(&self) -> Option<&str> {
        self.conn.subprotocol()
    }

    /// The permessage-deflate parameters agreed in the opening handshake (see
    /// [`DeflateParams`](crate::DeflateParams)), or `None` if messages are not compressed.
    /// Also on both split halves.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(&self) -> Option<crate::DeflateParams> {
        self.conn.deflate()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &T {
        &self.stream
    }

    /// The underlying stream, mutably. Reading or writing it directly corrupts the
    /// connection; use it for socket options.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.stream
    }

    /// Returns the underlying stream (queued output that was not flushed is dropped).
    pub fn into_inner(self) -> T {
        self.stream
    }

    /// Splits the connection into a reading half, which keeps this stream, and a writing
    /// half over `writer`, a second handle to the same connection (`&S` for a socket `S`
    /// whose references are `Read + Write`, or what `try_clone` gives; [`split`](WebSocket::split)
    /// shares one `TcpStream` between the halves). Queued output moves to the writing half.
    pub fn split_with<W: Write>(self, writer: W) -> (ReadHalf<T, W>, WriteHalf<W>) {
        self.split_parts(writer, None, None)
    }

    /// Splits over streams made from this one: `make` gives the reading stream, the
    /// writing stream and the TCP socket under both (for shutdown and
    /// [`WriteHalf::socket`]).
    pub(crate) fn split_into<R: Read + Write, W: Write>(
        self,
        make: impl FnOnce(T) -> (R, W, SharedTcpStream),
    ) -> (ReadHalf<R, W>, WriteHalf<W>) {
        let WebSocket {
            stream,
            conn,
            timeouts,
        } = self;
        let (reader, writer, tcp) = make(stream);
        let control: Box<dyn Socket + Send + Sync> = Box::new(tcp.clone());
        WebSocket {
            stream: reader,
            conn,
            // The timeouts are the socket's, whichever handle reads.
            timeouts: timeouts.map(|_| ReadTimeout::shared(tcp.clone())),
        }
        .split_parts(writer, Some(control), Some(tcp))
    }

    fn split_parts<W: Write>(
        self,
        writer: W,
        control: Option<Box<dyn Socket + Send + Sync>>,
        handle: Option<SharedTcpStream>,
    ) -> (ReadHalf<T, W>, WriteHalf<W>) {
        let mut out = self.conn.out;
        out.split = true;
        let shared = Arc::new(Shared::new(
            writer,
            out,
            control,
            handle,
            self.conn.negotiated,
        ));
        let read = ReadHalf::new(
            self.stream,
            self.conn.receiver,
            self.conn.role,
            (self.conn.keepalive, self.timeouts),
            Arc::clone(&shared),
        );
        (read, WriteHalf::new(shared))
    }
}

impl WebSocket<TcpStream> {
    /// Splits the connection for two threads: the [`ReadHalf`] reads (answering pings and
    /// closes through the shared writer) while any number of [`WriteHalf`] clones send. Frames
    /// never interleave: every write holds the writer's lock for whole frames. Both halves use
    /// the same socket (a [`SharedTcpStream`]): a split connection holds one descriptor.
    /// Never fails today; the `Result` leaves room for streams that cannot be shared.
    ///
    /// ```no_run
    /// # fn demo(ws: stdws::WebSocket<std::net::TcpStream>) -> stdws::Result<()> {
    /// let (mut reader, writer) = ws.split()?;
    /// let ticker = std::thread::spawn(move || -> stdws::Result<()> {
    ///     for n in 0.. {
    ///         writer.send_text(&format!("tick {n}"))?;
    ///         std::thread::sleep(std::time::Duration::from_secs(1));
    ///     }
    ///     Ok(())
    /// });
    /// while let Ok(msg) = reader.read() {
    ///     println!("got {msg:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn split(self) -> Result<(ReadHalf, WriteHalf)> {
        // The same socket for both halves and for `WriteHalf::shutdown`, which must work
        // while a writer is blocked: one descriptor in all.
        Ok(self.split_into(|stream| {
            let shared = SharedTcpStream::new(stream);
            (shared.clone(), shared.clone(), shared)
        }))
    }
}

impl<T: Read + Write> PayloadSource for WebSocket<T> {
    fn read_payload(&mut self, dst: &mut [u8]) -> Result<Option<usize>> {
        let mut halves = Joined {
            stream: &mut self.stream,
            out: &mut self.conn.out,
            timeouts: &self.timeouts,
        };
        read_payload(
            &mut halves,
            &mut self.conn.receiver,
            &mut self.conn.keepalive,
            dst,
        )
    }
}

/// A [`WebSocket`] as the sink of a [`MessageWriter`].
struct SinkOf<'a, T>(&'a mut WebSocket<T>);

impl<T: Read + Write> FrameSink for SinkOf<'_, T> {
    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<()> {
        let ws = &mut *self.0;
        ws.side().queue_fragment(opcode, fin, payload)
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
    fn abandon(&mut self) {
        let ws = &mut *self.0;
        ws.side().abandon_message();
    }
}

impl<T: Read + Write + Socket> WebSocket<T> {
    /// Keeps the stream's read-timeout controls: keep-alive then waits by itself.
    pub(crate) fn with_read_timeouts(self) -> Self {
        self.keeping(Some(ReadTimeout::of()))
    }

    /// Turns keep-alive on (or off, with `None`) for this connection (see "Keep-alive"
    /// above): after `interval` without hearing from the peer, `read` sends a ping, and
    /// fails with [`Error::KeepAliveTimeout`] (close 1011) if nothing arrives within
    /// `timeout` of it. `read` waits for these deadlines by itself, setting the stream's
    /// read timeout as it needs and putting yours back; no read timeout is needed. This is
    /// how to get keep-alive on a connection from a constructor generic over any stream
    /// (`accept`, `accept_with`, `client`), which refuses it in its [`Config`].
    ///
    /// ```no_run
    /// # fn demo(stream: std::net::TcpStream) -> stdws::Result<()> {
    /// use std::time::Duration;
    /// use stdws::KeepAlive;
    ///
    /// let mut ws = stdws::accept(stream)?;
    /// ws.set_keepalive(Some(KeepAlive::new(Duration::from_secs(20), Duration::from_secs(10))));
    /// // A peer that goes silent is pinged after 20 s and dropped 10 s later, with no read
    /// // timeout of ours: `read` returns Err(Error::KeepAliveTimeout) then.
    /// while let Ok(msg) = ws.read() {
    ///     println!("{msg:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn set_keepalive(&mut self, keepalive: Option<KeepAlive>) {
        self.conn.config.keepalive = keepalive;
        self.conn.keepalive = keepalive.map(|k| Timer::new(k, Instant::now()));
        self.timeouts = Some(ReadTimeout::of());
    }

    /// Performs the whole closing handshake within `timeout`: sends a close frame with
    /// `code` and `reason` (unless one was sent already), reads until the peer's close
    /// arrives (discarding data messages that come first), lets a client wait for the
    /// server to close TCP, then ends the session (TLS `close_notify`, see
    /// [`Socket::close_session`]) and shuts the stream down. Returns the peer's close frame.
    ///
    /// Fails with an `Io` error of kind `TimedOut` if the peer's close does not arrive in
    /// time. The stream's previous timeouts are restored before it is shut down.
    pub fn close_and_wait(
        &mut self,
        code: impl Into<CloseCode>,
        reason: &str,
        timeout: Duration,
    ) -> Result<Option<CloseFrame>> {
        // Check the arguments before anything changes, like `close` does.
        let frame = CloseFrame::new(code, reason);
        frame.check_sendable()?;
        let deadline = Instant::now() + timeout;
        let saved = (self.stream.read_timeout()?, self.stream.write_timeout()?);
        let result = self.close_until(frame, deadline);
        // Still under the deadline's write timeout (set by close_until).
        let _ = self.stream.close_session();
        let restored = self
            .stream
            .set_read_timeout(saved.0)
            .and(self.stream.set_write_timeout(saved.1));
        let _ = self.stream.shutdown();
        self.conn.out.state.end();
        let frame = result?;
        restored?;
        Ok(frame)
    }

    fn close_until(&mut self, frame: CloseFrame, deadline: Instant) -> Result<Option<CloseFrame>> {
        let remaining = |deadline: Instant| {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout means "block forever" to the OS: never pass it.
            (!left.is_zero()).then_some(left)
        };
        let mut peer_frame = None;
        if let Some(left) = remaining(deadline) {
            self.stream.set_write_timeout(Some(left))?;
        }
        if self.conn.out.state.is_open() {
            if let Err(e) = self.side().start_close(Some(frame)) {
                if !e.is_would_block() {
                    return Err(e);
                }
            }
        }
        loop {
            let Some(left) = remaining(deadline) else {
                return match peer_frame {
                    // The handshake finished; only the server's FIN was late.
                    Some(frame) => Ok(frame),
                    None => Err(Error::Io(ErrorKind::TimedOut.into())),
                };
            };
            self.stream.set_read_timeout(Some(left))?;
            match self.read() {
                Ok(Message::Close(frame)) => peer_frame = Some(frame),
                Ok(_) => {}
                Err(Error::ConnectionClosed(frame)) => return Ok(frame),
                Err(e) if e.is_would_block() => {}
                Err(e) => return Err(e),
            }
        }
    }
}
