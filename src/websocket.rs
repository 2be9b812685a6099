//! The connection state machine (RFC 6455 §5.5, §7): what to answer, and when the
//! connection is open, closing or closed.
//!
//! [`WebSocket`] joins a [`Receiver`] (bytes to messages), a [`Sender`] (messages to corked
//! frames) and the stream. It answers pings and closes, fails the connection with the right
//! close code on a protocol violation, and reports how the connection ended exactly once.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{is_retryable, CapacityError, Error, Result};
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD};
use crate::message::Message;
use crate::rand::Rng;
use crate::receiver::{Incoming, Receiver};
use crate::sender::Sender;
use crate::socket::Socket;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: receives masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, receives unmasked ones.
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// The closing handshake is complete; `ConnectionClosed` is not reported yet.
    Closed(Option<CloseFrame>),
    /// How the connection ended was reported; everything fails with `AlreadyClosed`.
    Ended,
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
/// The read buffer ([`Config::read_buffer_size`]) never grows: payloads go from it, or for
/// large binary frames straight from the stream, into the message, which grows as bytes
/// arrive (never by a frame's declared length). A message passed back to
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
/// from a read timeout to send a keep-alive ping.
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
    sender: Sender,
    state: State,
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
            sender: Sender::new(rng, config.fragment_size),
            stream,
            role,
            config,
            state: State::Open,
        }
    }

    /// Reads the next message, waiting for it if needed.
    ///
    /// Errors: see [`Error`] for how the end of a connection is reported. A protocol
    /// violation by the peer has already been answered with a close frame carrying the
    /// matching code (1002, 1007 or 1009) when the error is returned.
    pub fn read(&mut self) -> Result<Message> {
        loop {
            match self.state {
                State::Open | State::CloseSent => {}
                State::Closed(_) => return Err(self.report_closed(true)),
                State::Ended => return Err(Error::AlreadyClosed),
            }
            match self.receiver.poll() {
                Ok(Some(incoming)) => return self.on_incoming(incoming),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
            // About to wait for input: first push out what is corked (echoes, pongs), so
            // the peer is never waiting for bytes we hold while we wait for it.
            if let Err(e) = self.flush_queued() {
                if !e.is_would_block() || self.sender.pending() > self.config.max_write_buffer_size
                {
                    return Err(e);
                }
            }
            match self.receiver.fill(&mut self.stream) {
                Ok(0) => return Err(self.end(Error::AbnormalClosure)),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_retryable(e.kind()) => return Err(e.into()),
                Err(e) => return Err(self.end(e.into())),
            }
        }
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
        self.queue_data(OpCode::Text, text.as_bytes())?;
        self.flush()
    }

    /// Sends a binary message (see [`send`](Self::send)).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.queue_data(OpCode::Binary, data)?;
        self.flush()
    }

    /// Sends a ping with `payload` (at most 125 bytes); the peer answers with a pong that
    /// [`read`](Self::read) returns.
    pub fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.write_control(OpCode::Ping, payload)?;
        self.flush()
    }

    /// Queues `message` without writing it unless the queue is full (see "When bytes reach
    /// the stream" above). Returns [`CapacityError::WriteBufferFull`] without queueing if
    /// more than [`Config::max_write_buffer_size`] bytes are stuck in the queue.
    pub fn write(&mut self, message: Message) -> Result<()> {
        match message {
            // The message's allocation is kept to receive the next one into.
            Message::Text(text) => {
                let result = self.queue_data(OpCode::Text, text.as_bytes());
                self.receiver.recycle(text.into_bytes());
                result
            }
            Message::Binary(data) => {
                let result = self.queue_data(OpCode::Binary, &data);
                self.receiver.recycle(data);
                result
            }
            Message::Ping(data) => self.write_control(OpCode::Ping, &data),
            Message::Pong(data) => self.write_control(OpCode::Pong, &data),
            Message::Close(frame) => self.start_close(frame),
        }
    }

    /// Writes everything queued to the stream and flushes it.
    pub fn flush(&mut self) -> Result<()> {
        if self.state == State::Ended {
            return Err(Error::AlreadyClosed);
        }
        self.flush_queued()
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes): sends a
    /// close frame. Keep calling [`read`](Self::read) until it returns [`Message::Close`], or
    /// use [`close_and_wait`](Self::close_and_wait). Calling it again while closing does
    /// nothing.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        self.start_close(Some(CloseFrame::new(code, reason)))
    }

    /// Whether messages can still be sent (the connection is open and `close` was not
    /// called).
    pub fn can_write(&self) -> bool {
        self.state == State::Open
    }

    /// Whether `read` can still return messages (the peer's close has not arrived and the
    /// connection did not fail).
    pub fn can_read(&self) -> bool {
        matches!(self.state, State::Open | State::CloseSent)
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

    fn on_incoming(&mut self, incoming: Incoming) -> Result<Message> {
        match incoming {
            Incoming::Data(message) => Ok(message),
            Incoming::Ping(payload) => {
                // After our close frame nothing more may follow it, not even a pong.
                if self.state == State::Open {
                    self.sender.frame(OpCode::Pong, true, &payload);
                }
                Ok(Message::Ping(payload))
            }
            Incoming::Pong(payload) => Ok(Message::Pong(payload)),
            Incoming::Close(frame) => {
                if self.state == State::Open {
                    // Echo the status code (RFC 6455 §5.5.1), or an empty body for an empty
                    // close.
                    let body = frame.as_ref().map(|f| f.code.as_u16().to_be_bytes());
                    self.sender.frame(
                        OpCode::Close,
                        true,
                        body.as_ref().map_or(&[][..], |b| &b[..]),
                    );
                    // A failure here is reported by the next call (still queued if WouldBlock).
                    let _ = self.sender.flush(&mut self.stream);
                }
                self.state = State::Closed(frame.clone());
                Ok(Message::Close(frame))
            }
        }
    }

    /// Reports the completed closing handshake: pushes out a close reply that is still
    /// queued, lets a reading client wait for the server to close the TCP connection first
    /// (RFC 6455 §7.1.1), then returns `ConnectionClosed` once.
    fn report_closed(&mut self, wait_for_eof: bool) -> Error {
        if let Err(e) = self.sender.flush(&mut self.stream) {
            if is_retryable(e.kind()) {
                return e.into();
            }
        }
        if wait_for_eof && self.role == Role::Client {
            loop {
                self.receiver.discard_buffered();
                match self.receiver.fill(&mut self.stream) {
                    Ok(n) if n > 0 => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if is_retryable(e.kind()) => return e.into(),
                    _ => break,
                }
            }
        }
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Closed(frame) => Error::ConnectionClosed(frame),
            _ => Error::AlreadyClosed,
        }
    }

    /// Fails the connection because of the peer: sends a close frame with the error's code
    /// (unless we already sent one), and ends.
    fn fail(&mut self, error: Error) -> Error {
        if self.state == State::Open {
            if let Some(code) = error.close_code() {
                let reason = match &error {
                    Error::Utf8 => "invalid UTF-8".to_owned(),
                    Error::Capacity(_) => "message too big".to_owned(),
                    Error::Protocol(p) => p.to_string(),
                    _ => String::new(),
                };
                let mut body = code.as_u16().to_be_bytes().to_vec();
                body.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
                self.sender.frame(OpCode::Close, true, &body);
                let _ = self.sender.flush(&mut self.stream);
            }
        }
        self.end(error)
    }

    fn end(&mut self, error: Error) -> Error {
        self.state = State::Ended;
        error
    }

    /// The state check shared by every send: only an open connection takes messages; the
    /// first use after the end reports it.
    #[inline(always)]
    fn check_writable(&mut self) -> Result<()> {
        match self.state {
            State::Open => Ok(()),
            State::Closed(_) => Err(self.report_closed(false)),
            State::CloseSent | State::Ended => Err(Error::AlreadyClosed),
        }
    }

    /// Checks that a message may be sent now: the connection is open and the queue is not
    /// stuck over `max_write_buffer_size`.
    #[inline(always)]
    fn check_can_queue(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.sender.pending() > self.config.max_write_buffer_size {
            match self.flush_queued() {
                Ok(()) => {}
                Err(e) if e.is_would_block() => return Err(CapacityError::WriteBufferFull.into()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues a text or binary message; one of `write_buffer_size` bytes or more is written
    /// through at once (see `Sender::message_to`).
    #[inline]
    fn queue_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        self.check_can_queue()?;
        let direct_min = self.config.write_buffer_size.max(1);
        match self
            .sender
            .message_to(&mut self.stream, opcode, payload, direct_min)
        {
            Ok(()) => {}
            // The rest is queued; `flush` finishes it.
            Err(e) if is_retryable(e.kind()) => {}
            Err(e) => return Err(self.end(e.into())),
        }
        self.flush_if_full()
    }

    /// Queues what `encode` writes, after the same checks as a data message.
    fn queue(&mut self, encode: impl FnOnce(&mut Sender)) -> Result<()> {
        self.check_can_queue()?;
        encode(&mut self.sender);
        self.flush_if_full()
    }

    /// Writes out the queue once it holds `write_buffer_size` bytes.
    #[inline]
    fn flush_if_full(&mut self) -> Result<()> {
        if self.sender.pending() >= self.config.write_buffer_size {
            match self.flush_queued() {
                // Queued; the rest goes out with the next flush.
                Err(e) if e.is_would_block() => {}
                other => return other,
            }
        }
        Ok(())
    }

    fn write_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidInput(
                "control frame payload longer than 125 bytes",
            ));
        }
        self.queue(|s| s.frame(opcode, true, payload))
    }

    fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        match self.state {
            State::Open => {}
            State::CloseSent | State::Closed(_) => return Ok(()),
            State::Ended => return Err(Error::AlreadyClosed),
        }
        let mut body = Vec::new();
        if let Some(frame) = &frame {
            frame.check_sendable()?;
            frame.encode(&mut body);
        }
        self.sender.frame(OpCode::Close, true, &body);
        self.state = State::CloseSent;
        self.flush_queued()
    }

    /// Writes out the queue; a fatal I/O error ends the connection.
    fn flush_queued(&mut self) -> Result<()> {
        match self.sender.flush(&mut self.stream) {
            Ok(()) => Ok(()),
            Err(e) if is_retryable(e.kind()) => Err(e.into()),
            Err(e) => Err(self.end(e.into())),
        }
    }
}

impl<T: Read + Write + Socket> WebSocket<T> {
    /// Performs the whole closing handshake within `timeout`: sends a close frame with
    /// `code` and `reason` (unless one was sent already), reads until the peer's close
    /// arrives (discarding data messages that come first), lets a client wait for the
    /// server to close TCP, then shuts the stream down. Returns the peer's close frame.
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
        let restored = self
            .stream
            .set_read_timeout(saved.0)
            .and(self.stream.set_write_timeout(saved.1));
        let _ = self.stream.shutdown();
        self.state = State::Ended;
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
        if self.state == State::Open {
            if let Err(e) = self.start_close(Some(frame)) {
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
