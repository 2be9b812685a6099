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
use crate::error::{is_retryable, Error, ProtocolError, Result};
use crate::frame::OpCode;
use crate::keepalive::Timer;
use crate::message::Message;
use crate::outgoing::{Outgoing, State};
use crate::rand::Rng;
use crate::receiver::{Incoming, Receiver};
use crate::sender::Sender;
use crate::socket::Socket;
use crate::split::{ReadHalf, Shared, WriteHalf};
use crate::stream::{
    read_payload, FrameSink, MessageKind, MessageReader, MessageWriter, PayloadSource, Streamed,
};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: receives masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, receives unmasked ones.
    Client,
}

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
/// The read buffer rests at [`Config::read_buffer_size`] (it doubles up to 64 KiB during
/// bursts of small frames): payloads go from it, or for large binary frames straight from
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
/// With [`Config::keepalive`] set and a read timeout on the socket (shorter than the
/// interval), `read` sends a ping after `interval` of silence and fails the connection with
/// [`Error::KeepAliveTimeout`] (close code 1011) when nothing arrives within `timeout` of it.
/// The timers are checked whenever the read timeout fires; `read` still returns that
/// timeout, so loop on [`Error::is_would_block`].
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
    role: Role,
    config: Config,
    receiver: Receiver,
    out: Outgoing,
    keepalive: Option<Timer>,
}

impl<T: Read + Write> WebSocket<T> {
    /// Wraps a stream on which the opening handshake has already been done (by your own HTTP
    /// server, say). Use `read_buffered` for bytes of the WebSocket stream that were already
    /// read while handling the handshake.
    pub fn from_raw_socket(stream: T, role: Role, config: Config, read_buffered: Vec<u8>) -> Self {
        let rng = (role == Role::Client).then(Rng::new);
        Self::from_handshake(stream, role, config, read_buffered, rng)
    }

    pub(crate) fn from_handshake(
        stream: T,
        role: Role,
        config: Config,
        read_buffered: Vec<u8>,
        rng: Option<Rng>,
    ) -> Self {
        let rng = if role == Role::Client {
            Some(rng.unwrap_or_else(Rng::new))
        } else {
            None
        };
        WebSocket {
            receiver: Receiver::new(role == Role::Server, &config, read_buffered),
            out: Outgoing::new(Sender::new(rng, config.fragment_size), &config),
            keepalive: config.keepalive.map(|k| Timer::new(k, Instant::now())),
            stream,
            role,
            config,
        }
    }

    /// Hands the permessage-deflate parameters agreed in the handshake to the connection.
    #[cfg(feature = "deflate")]
    pub(crate) fn set_deflate(&mut self, params: crate::deflate::Params) {
        use crate::deflate::{Compressor, Decompressor};
        let config = self.config.deflate.clone().unwrap_or_default();
        self.receiver
            .set_inflater(Decompressor::new(params.decompress));
        self.out.set_compressor(Compressor::new(
            params.compress,
            config.compression_level,
            config.threshold,
        ));
    }

    /// Reads the next message, waiting for it if needed.
    ///
    /// Errors: see [`Error`] for how the end of a connection is reported. A protocol
    /// violation by the peer has already been answered with a close frame carrying the
    /// matching code (1002, 1007 or 1009) when the error is returned.
    pub fn read(&mut self) -> Result<Message> {
        let mut halves = Joined {
            stream: &mut self.stream,
            out: &mut self.out,
        };
        read_message(
            &mut halves,
            &mut self.receiver,
            self.role,
            &mut self.keepalive,
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
        let mut halves = Joined {
            stream: &mut self.stream,
            out: &mut self.out,
        };
        let got = read_stream_start(
            &mut halves,
            &mut self.receiver,
            self.role,
            &mut self.keepalive,
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
        self.out.check_can_stream(&mut self.stream)?;
        let fragment = self.config.fragment_size;
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

    /// Sends a text message (see [`send`](Self::send)).
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.out
            .queue_data(&mut self.stream, OpCode::Text, text.as_bytes())?;
        self.flush()
    }

    /// Sends a binary message (see [`send`](Self::send)).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .queue_data(&mut self.stream, OpCode::Binary, data)?;
        self.flush()
    }

    /// Sends a ping with `payload` (at most 125 bytes); the peer answers with a pong that
    /// [`read`](Self::read) returns.
    pub fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.out
            .write_control(&mut self.stream, OpCode::Ping, payload)?;
        self.flush()
    }

    /// Queues `message` without writing it unless the queue is full (see "When bytes reach
    /// the stream" above). Returns [`CapacityError::WriteBufferFull`](crate::CapacityError)
    /// without queueing if more than [`Config::max_write_buffer_size`] bytes are stuck in
    /// the queue.
    pub fn write(&mut self, message: Message) -> Result<()> {
        let mut message = message;
        let result = self.out.write(&mut self.stream, &mut message);
        // The message's allocation is kept to receive the next one into.
        match message {
            Message::Text(text) => self.receiver.recycle(text.into_bytes()),
            Message::Binary(data) => self.receiver.recycle(data),
            _ => {}
        }
        result
    }

    /// Writes everything queued to the stream and flushes it.
    pub fn flush(&mut self) -> Result<()> {
        if self.out.state == State::Ended {
            return Err(Error::AlreadyClosed);
        }
        self.out.flush_queued(&mut self.stream)
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes): sends a
    /// close frame. Keep calling [`read`](Self::read) until it returns [`Message::Close`], or
    /// use [`close_and_wait`](Self::close_and_wait). Calling it again while closing does
    /// nothing.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        self.out
            .start_close(&mut self.stream, Some(CloseFrame::new(code, reason)))
    }

    /// Whether messages can still be sent (the connection is open and `close` was not
    /// called).
    pub fn can_write(&self) -> bool {
        self.out.state == State::Open
    }

    /// Whether `read` can still return messages (the peer's close has not arrived and the
    /// connection did not fail).
    pub fn can_read(&self) -> bool {
        matches!(self.out.state, State::Open | State::CloseSent)
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
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
    /// half over `writer`, a second handle to the same connection (what `try_clone` gives
    /// for sockets; [`split`](WebSocket::split) does that for a `TcpStream`). Queued output
    /// moves to the writing half.
    pub fn split_with<W: Write>(self, writer: W) -> (ReadHalf<T, W>, WriteHalf<W>) {
        self.split_parts(writer, None)
    }

    fn split_parts<W: Write>(
        self,
        writer: W,
        control: Option<Box<dyn Socket + Send + Sync>>,
    ) -> (ReadHalf<T, W>, WriteHalf<W>) {
        let mut out = self.out;
        out.split = true;
        let shared = Arc::new(Shared::new(writer, out, control));
        let read = ReadHalf::new(
            self.stream,
            self.receiver,
            self.role,
            self.keepalive,
            Arc::clone(&shared),
        );
        (read, WriteHalf::new(shared))
    }
}

impl WebSocket<TcpStream> {
    /// Splits the connection for two threads: the [`ReadHalf`] reads (answering pings and
    /// closes through the shared writer) while any number of [`WriteHalf`] clones send. Frames
    /// never interleave: every write holds the writer's lock for whole frames.
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
    pub fn split(self) -> Result<(ReadHalf<TcpStream, TcpStream>, WriteHalf<TcpStream>)> {
        let writer = self.stream.try_clone()?;
        // A third handle lets `WriteHalf::shutdown` work while a writer is blocked.
        let control: Box<dyn Socket + Send + Sync> = Box::new(self.stream.try_clone()?);
        Ok(self.split_parts(writer, Some(control)))
    }
}

impl<T: Read + Write> PayloadSource for WebSocket<T> {
    fn read_payload(&mut self, dst: &mut [u8]) -> Result<Option<usize>> {
        let mut halves = Joined {
            stream: &mut self.stream,
            out: &mut self.out,
        };
        read_payload(&mut halves, &mut self.receiver, &mut self.keepalive, dst)
    }
}

/// A [`WebSocket`] as the sink of a [`MessageWriter`].
struct SinkOf<'a, T>(&'a mut WebSocket<T>);

impl<T: Read + Write> FrameSink for SinkOf<'_, T> {
    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<()> {
        let ws = &mut *self.0;
        ws.out.queue_fragment(&mut ws.stream, opcode, fin, payload)
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
    fn abandon(&mut self) {
        let ws = &mut *self.0;
        ws.out.abandon_message(&mut ws.stream);
    }
}

/// Where the reader is in the connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Reading,
    /// The closing handshake finished; `ConnectionClosed` is not reported yet.
    Closed,
    /// The end was reported.
    Ended,
}

/// What the read loop needs from a connection besides the receiver: the stream to read,
/// and the effects of what it reads on the write side and the state. A [`WebSocket`] does
/// these directly; the reading half of a split connection does them so that it never waits
/// behind a writer blocked on a full socket (see `split.rs`).
pub(crate) trait Halves {
    type R: Read;
    fn reader(&mut self) -> &mut Self::R;
    fn phase(&self) -> Phase;
    /// A ping arrived: make sure a pong answers it.
    fn on_ping(&mut self, payload: &[u8]);
    /// The peer's close arrived: echo it (unless ours was sent); the handshake is complete.
    fn on_close(&mut self, frame: &Option<CloseFrame>);
    /// The peer broke the protocol: tell it why (close code) and end.
    fn fail(&mut self, error: Error) -> Error;
    /// The stream ended or failed: end.
    fn end(&mut self, error: Error) -> Error;
    /// About to wait for input: write out what is owed to the peer.
    fn before_wait(&mut self) -> Result<()>;
    /// A read timeout fired: act on the keep-alive timer.
    fn keep_alive(&mut self, timer: &mut Timer) -> Result<()>;
    /// After the closing handshake: push out a close reply still queued.
    fn flush_close_reply(&mut self) -> Result<()>;
    /// Reports the finished closing handshake (once).
    fn report_closed(&mut self) -> Error;
}

/// A `WebSocket`'s one stream, for reading and writing.
struct Joined<'a, T> {
    stream: &'a mut T,
    out: &'a mut Outgoing,
}

impl<T: Read + Write> Halves for Joined<'_, T> {
    type R = T;
    #[inline]
    fn reader(&mut self) -> &mut T {
        self.stream
    }
    #[inline]
    fn phase(&self) -> Phase {
        match self.out.state {
            State::Open | State::CloseSent => Phase::Reading,
            State::Closed(_) => Phase::Closed,
            State::Ended => Phase::Ended,
        }
    }
    fn on_ping(&mut self, payload: &[u8]) {
        self.out.on_ping(payload);
    }
    fn on_close(&mut self, frame: &Option<CloseFrame>) {
        self.out.on_close(self.stream, frame);
    }
    fn fail(&mut self, error: Error) -> Error {
        self.out.fail(self.stream, error)
    }
    fn end(&mut self, error: Error) -> Error {
        self.out.end(error)
    }
    #[inline]
    fn before_wait(&mut self) -> Result<()> {
        self.out.flush_before_read(self.stream)
    }
    fn keep_alive(&mut self, timer: &mut Timer) -> Result<()> {
        self.out.keep_alive(self.stream, timer)
    }
    fn flush_close_reply(&mut self) -> Result<()> {
        self.out.flush_queued(self.stream)
    }
    fn report_closed(&mut self) -> Error {
        self.out.report_closed(self.stream)
    }
}

/// What the read loop produced.
pub(crate) enum Got {
    Message(Message),
    /// A streamed message starts (only when the receiver was asked to stream it).
    StreamStart {
        text: bool,
    },
}

/// Reads the next message: the loop shared by [`WebSocket::read`] and
/// [`ReadHalf::read`](crate::ReadHalf::read).
#[inline]
pub(crate) fn read_message<H: Halves>(
    halves: &mut H,
    receiver: &mut Receiver,
    role: Role,
    keepalive: &mut Option<Timer>,
) -> Result<Message> {
    match read_next(halves, receiver, role, keepalive)? {
        Got::Message(message) => Ok(message),
        Got::StreamStart { .. } => unreachable!("streaming was not asked for"),
    }
}

/// Reads the next message, or the start of a streamed message.
#[inline]
pub(crate) fn read_next<H: Halves>(
    halves: &mut H,
    receiver: &mut Receiver,
    role: Role,
    keepalive: &mut Option<Timer>,
) -> Result<Got> {
    loop {
        match halves.phase() {
            Phase::Reading => {}
            Phase::Closed => return Err(report_closed(halves, receiver, role)),
            Phase::Ended => return Err(Error::AlreadyClosed),
        }
        match receiver.poll() {
            Ok(Some(Incoming::Data(message))) => return Ok(Got::Message(message)),
            Ok(Some(Incoming::Ping(payload))) => {
                halves.on_ping(&payload);
                return Ok(Got::Message(Message::Ping(payload)));
            }
            Ok(Some(Incoming::Pong(payload))) => return Ok(Got::Message(Message::Pong(payload))),
            Ok(Some(Incoming::Close(frame))) => {
                halves.on_close(&frame);
                return Ok(Got::Message(Message::Close(frame)));
            }
            Ok(Some(Incoming::StreamStart { text })) => return Ok(Got::StreamStart { text }),
            Ok(None) => {}
            Err(e) => return Err(halves.fail(e)),
        }
        wait_for_input(halves, keepalive, |r| receiver.fill(r))?;
    }
}

/// Reads the next message, asking the receiver to stream it if it is a data message
/// (returned as `Got::StreamStart`); a control message is returned as it is.
pub(crate) fn read_stream_start<H: Halves>(
    halves: &mut H,
    receiver: &mut Receiver,
    role: Role,
    keepalive: &mut Option<Timer>,
) -> Result<Got> {
    receiver.stream_next(true);
    let got = read_next(halves, receiver, role, keepalive);
    receiver.stream_next(false);
    got
}

/// Writes out what is owed to the peer, then reads input with `read`. Returns how many
/// bytes arrived (0 after `Interrupted`: try again); the end of the stream and fatal errors
/// end the connection; a read timeout runs the keep-alive timer and is returned.
#[inline]
pub(crate) fn wait_for_input<H: Halves>(
    halves: &mut H,
    keepalive: &mut Option<Timer>,
    read: impl FnOnce(&mut H::R) -> std::io::Result<usize>,
) -> Result<usize> {
    halves.before_wait()?;
    match read(halves.reader()) {
        Ok(0) => Err(halves.end(Error::AbnormalClosure)),
        Ok(n) => {
            if let Some(timer) = keepalive {
                timer.heard(Instant::now());
            }
            Ok(n)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(0),
        Err(e) if is_retryable(e.kind()) => {
            if let Some(timer) = keepalive {
                halves.keep_alive(timer)?;
            }
            Err(e.into())
        }
        Err(e) => Err(halves.end(e.into())),
    }
}

/// Reports the completed closing handshake: pushes out a close reply that is still queued,
/// lets a client wait for the server to close TCP first (RFC 6455 §7.1.1), then returns
/// `ConnectionClosed` once. A server that sends anything after its close frame breaks
/// §5.5.1: the client ends at once with `DataAfterClose` instead (no close frame goes out
/// for it, the closing handshake being over).
fn report_closed<H: Halves>(halves: &mut H, receiver: &mut Receiver, role: Role) -> Error {
    if let Err(e) = halves.flush_close_reply() {
        if e.is_would_block() {
            return e;
        }
    }
    if role == Role::Client {
        loop {
            if receiver.discard_buffered() {
                // Ends the connection (state and report) like `ConnectionClosed` would.
                let _ = halves.report_closed();
                return ProtocolError::DataAfterClose.into();
            }
            match receiver.fill(halves.reader()) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_retryable(e.kind()) => return e.into(),
                _ => break,
            }
        }
    }
    halves.report_closed()
}

impl<T: Read + Write + Socket> WebSocket<T> {
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
        self.out.state = State::Ended;
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
        if self.out.state == State::Open {
            if let Err(e) = self.out.start_close(&mut self.stream, Some(frame)) {
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
