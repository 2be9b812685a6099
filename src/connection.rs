//! The sans-I/O connection (RFC 6455 §5-7): the protocol core as one public type that only
//! consumes and produces bytes, for drivers other than the blocking one (an event loop over
//! non-blocking sockets, an async runtime, a test harness).
//!
//! Pure: no stream and no clock. [`Connection`] joins the core's two sides, the
//! [`Receiver`] (bytes in, messages out) and the [`Outgoing`] queue (messages in, bytes
//! out), with the connection's [`State`] and the keep-alive timer, whose time is passed in.
//! The blocking [`WebSocket`](crate::WebSocket) runs the same core through `driver.rs`.

use std::time::Instant;

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{CapacityError, Error, Result};
use crate::frame::OpCode;
use crate::keepalive::{Tick, Timer};
use crate::message::Message;
use crate::outgoing::{check_control_payload, Outgoing};
use crate::prepared::PreparedMessage;
use crate::rand::Rng;
use crate::receiver::{Incoming, Receiver};
use crate::sender::Sender;
use crate::state::{Lifecycle, Role, State};

/// A WebSocket connection after the opening handshake, as a state machine over bytes: feed
/// it what arrives, take what it has to send, tell it the time.
///
/// - **Input**: read from the network into [`read_buf`](Self::read_buf), report the count
///   with [`filled`](Self::filled) (0 for the end of the stream), then call
///   [`poll`](Self::poll) until it returns `Ok(None)`. Pings are answered and the peer's
///   close is echoed by queueing the reply; both are still returned, as by
///   [`WebSocket::read`](crate::WebSocket::read). While the output is over
///   [`Config::max_write_buffer_size`], only the latest ping is answered, once
///   [`consume`](Self::consume) brings the output back under it (RFC 6455 §5.5.3): a peer
///   that pings without reading cannot make the output grow.
/// - **Output**: [`send`](Self::send) and its shortcuts queue frames;
///   [`output`](Self::output) is what to write next, [`consume`](Self::consume) says how
///   much was written. Nothing is ever written by the connection itself. More than
///   [`Config::max_write_buffer_size`] bytes waiting makes sends fail with
///   [`CapacityError::WriteBufferFull`] until the output is drained.
/// - **Time**: with [`Config::keepalive`], [`next_deadline`](Self::next_deadline) says
///   when to call [`on_timeout`](Self::on_timeout), which queues a ping after `interval` of
///   silence or fails the connection (close 1011) when the peer stays silent `timeout`
///   longer.
/// - **End**: [`state`](Self::state) goes `Open`, `Closing` (our close sent), `Closed`.
///   Once [`is_done`](Self::is_done), the transport can be closed: a server closes it
///   first (RFC 6455 §7.1.1).
///
/// Errors are those of [`WebSocket`](crate::WebSocket): a protocol violation by the peer
/// queues the close frame with the matching code before `poll` returns it.
///
/// ```
/// use stdws::proto::Connection;
/// use stdws::{Config, Message, Role, State};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send_text("hello")?;
///
/// // Move the client's bytes to the server, as a socket would.
/// let bytes = client.output().to_vec();
/// client.consume(bytes.len());
/// server.read_buf()[..bytes.len()].copy_from_slice(&bytes);
/// server.filled(bytes.len(), std::time::Instant::now());
///
/// assert_eq!(server.poll()?, Some(Message::text("hello")));
/// assert_eq!(server.poll()?, None); // nothing more until more bytes arrive
/// assert_eq!(server.state(), State::Open);
/// # Ok::<(), stdws::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    pub(crate) role: Role,
    pub(crate) config: Config,
    pub(crate) receiver: Receiver,
    pub(crate) out: Outgoing,
    pub(crate) keepalive: Option<Timer>,
    /// What the opening handshake agreed on.
    pub(crate) negotiated: Negotiated,
    /// The peer ended its stream (`filled(0)`).
    eof: bool,
    /// The latest ping that arrived while the output was over `max_write_buffer_size`: its
    /// pong is queued once the output drains below it (earlier ones are not answered).
    owed_pong: Option<Vec<u8>>,
}

/// What the opening handshake agreed on beyond the base protocol, readable for the
/// connection's lifetime (also from both halves of a split one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Negotiated {
    /// The subprotocol the server chose (`Sec-WebSocket-Protocol`).
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters, if compression is on.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateParams>,
}

impl Negotiated {
    /// The subprotocol the server chose, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The agreed permessage-deflate parameters, if compression is on.
    #[cfg(feature = "deflate")]
    pub fn deflate(&self) -> Option<crate::deflate::DeflateParams> {
        self.deflate
    }
}

impl Connection {
    /// A connection whose opening handshake was done elsewhere. `config`'s limits and
    /// buffer sizes apply; its keep-alive timer starts at the first [`filled`](Self::filled)
    /// or [`on_timeout`](Self::on_timeout) call that passes the time.
    pub fn new(role: Role, config: Config) -> Connection {
        Connection::from_parts(role, config, Vec::new(), None)
    }

    /// A connection whose first input is `read_buffered` (bytes that arrived behind the
    /// handshake), masking with `rng` in the client role.
    pub(crate) fn from_parts(
        role: Role,
        config: Config,
        read_buffered: Vec<u8>,
        rng: Option<Rng>,
    ) -> Connection {
        let rng = (role == Role::Client).then(|| rng.unwrap_or_else(Rng::new));
        Connection {
            receiver: Receiver::new(role == Role::Server, &config, read_buffered),
            out: Outgoing::new(Sender::new(rng, config.fragment_size), &config),
            keepalive: None,
            negotiated: Negotiated::default(),
            eof: false,
            owed_pong: None,
            role,
            config,
        }
    }

    /// Hands the permessage-deflate parameters agreed in the handshake to the connection.
    #[cfg(feature = "deflate")]
    pub(crate) fn set_deflate(&mut self, params: crate::deflate::Params) {
        use crate::deflate::{Compressor, Decompressor, DeflateParams};
        self.negotiated.deflate = Some(DeflateParams::from_agreed(params, self.role));
        let config = self.config.deflate.clone().unwrap_or_default();
        self.receiver
            .set_inflater(Decompressor::new(params.decompress));
        self.out.set_compressor(Compressor::new(
            params.compress,
            config.compression_level,
            config.threshold,
        ));
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.out.state.state()
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The subprotocol the server chose in the opening handshake (`Sec-WebSocket-Protocol`),
    /// if any: in the server role, what the handshake's callback set; in the client role,
    /// one of those offered. `None` for a connection made with [`new`](Self::new).
    pub fn subprotocol(&self) -> Option<&str> {
        self.negotiated.subprotocol()
    }

    /// The permessage-deflate parameters agreed in the opening handshake, or `None` if
    /// messages are not compressed.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(&self) -> Option<crate::DeflateParams> {
        self.negotiated.deflate()
    }

    /// Where the next bytes from the network go. Read into it, then call
    /// [`filled`](Self::filled) with the count. Its size varies (the read buffer's free
    /// room, or room in a large message being received); it is never empty.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.receiver.read_buf()
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf) at `now`; 0 means the peer
    /// ended its stream. Call [`poll`](Self::poll) next. Once the closing handshake is
    /// complete or the connection failed, bytes are dropped: nothing more is read.
    pub fn filled(&mut self, n: usize, now: Instant) {
        if n == 0 {
            self.eof = true;
            return;
        }
        // After the end nothing polls the receiver, so kept bytes would pile up for as long
        // as the peer sends (a client reads on until the server's EOF).
        if self.out.state.is_reading() {
            self.receiver.filled(n);
        }
        self.heard(now);
    }

    fn heard(&mut self, now: Instant) {
        match &mut self.keepalive {
            Some(timer) => timer.heard(now),
            None => self.start_timer(now),
        }
    }

    fn start_timer(&mut self, now: Instant) {
        if let Some(settings) = self.config.keepalive {
            self.keepalive = Some(Timer::new(settings, now));
        }
    }

    /// The next message that the bytes fed so far complete, `Ok(None)` if more input is
    /// needed. A ping's pong and the reply to the peer's close are queued before they are
    /// returned. After the closing handshake, returns [`Error::ConnectionClosed`] once
    /// (then [`Error::AlreadyClosed`]); a stream that ended without it gives
    /// [`Error::AbnormalClosure`].
    pub fn poll(&mut self) -> Result<Option<Message>> {
        match &self.out.state {
            Lifecycle::Open | Lifecycle::CloseSent => {}
            Lifecycle::Closed(_) => return Err(self.out.take_closed_report()),
            Lifecycle::Ended => return Err(Error::AlreadyClosed),
        }
        match self.receiver.poll() {
            Ok(Some(Incoming::Data(message))) => Ok(Some(message)),
            Ok(Some(Incoming::Ping(payload))) => {
                if self.out.over_limit() {
                    self.owed_pong = Some(payload.clone());
                } else {
                    self.out.on_ping(&payload);
                }
                Ok(Some(Message::Ping(payload)))
            }
            Ok(Some(Incoming::Pong(payload))) => Ok(Some(Message::Pong(payload))),
            Ok(Some(Incoming::Close(frame))) => {
                self.out.on_close(&frame);
                Ok(Some(Message::Close(frame)))
            }
            Ok(Some(Incoming::StreamStart { .. })) => {
                unreachable!("a Connection never asks to stream a message")
            }
            Ok(None) if self.eof => Err(self.out.end(Error::AbnormalClosure)),
            Ok(None) => Ok(None),
            Err(e) => Err(self.out.fail(e)),
        }
    }

    /// Queues a message (a [`Message::Close`] starts the closing handshake like
    /// [`close`](Self::close)). A text or binary message's allocation is kept to receive
    /// the next message into.
    pub fn send(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Text(text) => {
                let result = self.send_data(OpCode::Text, text.as_bytes());
                self.receiver.recycle(text.into_bytes());
                result
            }
            // A large payload is queued as it is, not copied (see `output`).
            Message::Binary(data) if self.queues_owned(data.len()) => {
                self.check_can_send_data()?;
                self.out.sender.message_owned(OpCode::Binary, 0, data);
                Ok(())
            }
            Message::Binary(data) => {
                let result = self.send_data(OpCode::Binary, &data);
                self.receiver.recycle(data);
                result
            }
            Message::Ping(data) => self.ping(&data),
            Message::Pong(data) => self.control(OpCode::Pong, &data),
            Message::Close(frame) => self.close_with(frame),
        }
    }

    /// Whether a binary payload of `len` bytes is queued without a copy: one of
    /// `write_buffer_size` bytes or more, when it is not compressed.
    fn queues_owned(&self, len: usize) -> bool {
        #[cfg(feature = "deflate")]
        if self.out.compresses() {
            return false;
        }
        len >= self.config.write_buffer_size
    }

    /// Queues a [`PreparedMessage`]: on a server connection a reference to its frame, with
    /// no framing and no copy; on a client connection, framed and masked as usual.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<()> {
        self.check_can_send_data()?;
        self.out.queue_prepared(message);
        Ok(())
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_data(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.send_data(OpCode::Binary, data)
    }

    /// Queues a ping (at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.control(OpCode::Ping, payload)
    }

    /// Starts the closing handshake: queues a close frame with `code` and `reason` (at
    /// most 123 bytes). Keep feeding input until [`poll`](Self::poll) returns the peer's
    /// close. Calling it again while closing does nothing.
    pub fn close(&mut self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        self.close_with(Some(CloseFrame::new(code, reason)))
    }

    fn close_with(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        self.out.start_close(frame).map(|_| ())
    }

    fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        check_control_payload(payload)?;
        self.check_can_queue()?;
        self.out.queue_control(opcode, payload);
        Ok(())
    }

    fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        self.check_can_send_data()?;
        #[cfg(feature = "deflate")]
        if let Some(compressed) = self.out.compress(payload) {
            // RSV1: a compressed message (RFC 7692 §6).
            self.out.sender.message(opcode, 0b100, &compressed);
            self.out.return_scratch(compressed);
            return Ok(());
        }
        self.out.sender.message(opcode, 0, payload);
        Ok(())
    }

    /// A data message may be queued: no streamed message is half sent, and
    /// [`check_can_queue`](Self::check_can_queue).
    fn check_can_send_data(&mut self) -> Result<()> {
        self.out.check_not_streaming()?;
        self.check_can_queue()
    }

    /// The connection is open and its output is not over `max_write_buffer_size`.
    fn check_can_queue(&mut self) -> Result<()> {
        if !self.out.writable()? {
            return Err(self.out.take_closed_report());
        }
        if self.out.over_limit() {
            return Err(CapacityError::WriteBufferFull.into());
        }
        Ok(())
    }

    /// The next bytes to write (empty when there is nothing to send). Write them, call
    /// [`consume`](Self::consume), and ask again: the output comes in pieces, because a
    /// large binary payload passed to [`send`](Self::send) and the frame of a
    /// [`PreparedMessage`] are queued as they are, not copied behind the frames before
    /// them.
    pub fn output(&self) -> &[u8] {
        self.out.sender.output()
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn consume(&mut self, n: usize) {
        self.out.sender.consume(n);
        if self.owed_pong.is_some() {
            self.answer_owed_pong();
        }
    }

    /// Queues the pong owed to the latest ping once the output is under the limit (not
    /// after our close frame: `on_ping` drops it then).
    #[cold]
    fn answer_owed_pong(&mut self) {
        if !self.out.over_limit() {
            if let Some(payload) = self.owed_pong.take() {
                self.out.on_ping(&payload);
            }
        }
    }

    /// How many bytes are queued to write in all, across every piece of
    /// [`output`](Self::output) (which may be only the first of them): what a driver
    /// compares with a limit of its own to apply backpressure, like the browser API's
    /// `bufferedAmount`.
    pub fn buffered_amount(&self) -> usize {
        self.out.sender.pending()
    }

    /// Whether there are bytes to write.
    pub fn wants_write(&self) -> bool {
        self.out.sender.pending() > 0
    }

    /// When [`on_timeout`](Self::on_timeout) must be called next (keep-alive), if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.out.state {
            Lifecycle::Open | Lifecycle::CloseSent => self.keepalive.as_ref().map(Timer::deadline),
            _ => None,
        }
    }

    /// Acts on the keep-alive timer at `now`: queues a ping after `interval` of silence,
    /// or fails the connection with [`Error::KeepAliveTimeout`] (close 1011 queued) when
    /// the peer stays silent. After our close frame no ping is sent, but the timer still
    /// bounds the wait for the peer's reply.
    pub fn on_timeout(&mut self, now: Instant) -> Result<()> {
        let Some(timer) = &mut self.keepalive else {
            self.start_timer(now);
            return Ok(());
        };
        match (&self.out.state, timer.tick(now)) {
            (Lifecycle::Open, Tick::SendPing) => {
                if !self.out.over_limit() {
                    self.out.queue_control(OpCode::Ping, b"keepalive");
                }
                Ok(())
            }
            (Lifecycle::Open | Lifecycle::CloseSent, Tick::TimedOut) => {
                Err(self.out.fail(Error::KeepAliveTimeout))
            }
            _ => Ok(()),
        }
    }

    /// Whether the connection is over and everything queued was written: the transport
    /// can be closed now.
    pub fn is_done(&self) -> bool {
        self.state() == State::Closed && !self.wants_write()
    }
}
