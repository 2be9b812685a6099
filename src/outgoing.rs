//! The connection's state (RFC 6455 §7) and everything that writes: messages, automatic
//! pongs and close replies, and the close frame that fails a connection.
//!
//! [`Outgoing`] owns the [`Sender`] and the state but not the stream, which every method
//! takes as an argument: a [`WebSocket`](crate::WebSocket) passes its one stream, and the
//! halves of a split connection share one `Outgoing` and write stream behind a mutex, so a
//! pong from the reading thread never interleaves with a frame from a writing thread.

use std::io::Write;
use std::time::Instant;

use crate::close::{CloseFrame, MAX_REASON_LEN};
use crate::config::Config;
use crate::error::{is_retryable, CapacityError, Error, Result};
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD};
use crate::keepalive::{Tick, Timer};
use crate::message::Message;
use crate::sender::{PayloadBuf, Sender};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// The closing handshake is complete; `ConnectionClosed` is not reported yet.
    Closed(Option<CloseFrame>),
    /// How the connection ended was reported; everything fails with `AlreadyClosed`.
    Ended,
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub sender: Sender,
    pub state: State,
    write_buffer_size: usize,
    max_write_buffer_size: usize,
    /// Split connections: the reading half reports how the connection ended; writers get
    /// `AlreadyClosed` once the closing handshake has started, instead of consuming that
    /// report.
    pub split: bool,
    fragment_size: Option<usize>,
    /// A streamed message is partly sent: no other data message may start.
    streaming: bool,
    /// permessage-deflate, when negotiated.
    #[cfg(feature = "deflate")]
    deflate: Option<Deflate>,
}

/// The send side of permessage-deflate: the compressor and a buffer for its output.
#[cfg(feature = "deflate")]
#[derive(Debug)]
struct Deflate {
    compressor: crate::deflate::Compressor,
    scratch: Vec<u8>,
}

/// The compression buffer is kept between messages up to this capacity.
#[cfg(feature = "deflate")]
const KEEP_SCRATCH: usize = 64 << 10;

impl Outgoing {
    pub fn new(sender: Sender, config: &Config) -> Outgoing {
        Outgoing {
            sender,
            state: State::Open,
            write_buffer_size: config.write_buffer_size,
            max_write_buffer_size: config.max_write_buffer_size,
            split: false,
            fragment_size: config.fragment_size,
            streaming: false,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Queues the pong that answers a ping (not after our close frame: nothing may follow
    /// it).
    pub fn on_ping(&mut self, payload: &[u8]) {
        if self.state == State::Open {
            self.sender.frame(OpCode::Pong, true, payload);
        }
    }

    /// Answers the peer's close frame by echoing its status code (RFC 6455 §5.5.1), or an
    /// empty body for an empty close, unless we sent ours already. The closing handshake is
    /// then complete.
    pub fn on_close<W: Write>(&mut self, stream: &mut W, frame: &Option<CloseFrame>) {
        if self.state == State::Open {
            let body = frame.as_ref().map(|f| f.code.as_u16().to_be_bytes());
            let body = body.as_ref().map_or(&[][..], |b| &b[..]);
            self.sender.frame(OpCode::Close, true, body);
            // A failure here is reported by the next call (still queued if WouldBlock).
            let _ = self.sender.flush(stream);
        }
        self.state = State::Closed(frame.clone());
    }

    /// Fails the connection: sends a close frame with the error's code (unless one was sent
    /// already), and ends.
    pub fn fail<W: Write>(&mut self, stream: &mut W, error: Error) -> Error {
        self.send_failure(stream, failure_close(&error));
        self.end(error)
    }

    /// Sends the close frame of a failure (see [`failure_close`]) if no close was sent yet.
    pub fn send_failure<W: Write>(&mut self, stream: &mut W, body: Option<Vec<u8>>) {
        if let (State::Open, Some(body)) = (&self.state, body) {
            self.sender.frame(OpCode::Close, true, &body);
            let _ = self.sender.flush(stream);
        }
    }

    /// On a read timeout: sends a due keep-alive ping, or fails a connection whose peer
    /// stayed silent. After our close frame no ping may be sent, but the timer still bounds
    /// the wait for the peer's reply.
    pub fn keep_alive<W: Write>(&mut self, stream: &mut W, timer: &mut Timer) -> Result<()> {
        let tick = timer.tick(Instant::now());
        match (&self.state, tick) {
            (State::Open, Tick::SendPing) => {
                self.write_control(stream, OpCode::Ping, b"keepalive")?;
                match self.flush_queued(stream) {
                    Err(e) if !e.is_would_block() => Err(e),
                    _ => Ok(()),
                }
            }
            (State::Open | State::CloseSent, Tick::TimedOut) => {
                Err(self.fail(stream, Error::KeepAliveTimeout))
            }
            _ => Ok(()),
        }
    }

    /// Ends the connection with `error` as its report.
    pub fn end(&mut self, error: Error) -> Error {
        self.state = State::Ended;
        error
    }

    /// Writes out what is corked before the reader waits for input, so the peer is never
    /// waiting for bytes we hold while we wait for it. A stream that cannot take them right
    /// now is fine unless the queue is over its limit.
    pub fn flush_before_read<W: Write>(&mut self, stream: &mut W) -> Result<()> {
        match self.flush_queued(stream) {
            Err(e) if e.is_would_block() && self.sender.pending() <= self.max_write_buffer_size => {
                Ok(())
            }
            other => other,
        }
    }

    /// The state check shared by every send: only an open connection takes messages; the
    /// first use after the end reports it.
    #[inline(always)]
    pub fn check_writable<W: Write>(&mut self, stream: &mut W) -> Result<()> {
        match &self.state {
            State::Open => Ok(()),
            State::Closed(_) if self.split => Err(Error::AlreadyClosed),
            State::Closed(_) => Err(self.report_closed(stream)),
            State::CloseSent | State::Ended => Err(Error::AlreadyClosed),
        }
    }

    /// Reports the completed closing handshake once: pushes out a close reply that is still
    /// queued, then ends.
    pub fn report_closed<W: Write>(&mut self, stream: &mut W) -> Error {
        if let Err(e) = self.sender.flush(stream) {
            if is_retryable(e.kind()) {
                return e.into();
            }
        }
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Closed(frame) => Error::ConnectionClosed(frame),
            _ => Error::AlreadyClosed,
        }
    }

    /// Checks that a message may be sent now: the connection is open and the queue is not
    /// stuck over `max_write_buffer_size`.
    #[inline(always)]
    fn check_can_queue<W: Write>(&mut self, stream: &mut W) -> Result<()> {
        self.check_writable(stream)?;
        if self.sender.pending() > self.max_write_buffer_size {
            match self.flush_queued(stream) {
                Ok(()) => {}
                Err(e) if e.is_would_block() => return Err(CapacityError::WriteBufferFull.into()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues a message (a close starts the closing handshake). A client may mask a large
    /// payload in place rather than copy it: the message's contents are undefined afterwards
    /// (a large text message comes back as binary), only its allocation is worth keeping.
    #[inline]
    pub fn write<W: Write>(&mut self, stream: &mut W, message: &mut Message) -> Result<()> {
        match message {
            // Only a client's large payloads gain from being masked in place (no copy);
            // everything else takes the borrowed path, which is a little leaner.
            Message::Text(text) if self.masks_in_place(text.len()) => {
                // A String cannot be changed in place safely; its bytes can.
                let mut bytes = std::mem::take(text).into_bytes();
                let result = self.queue_data(stream, OpCode::Text, &mut bytes[..]);
                *message = Message::Binary(bytes);
                result
            }
            Message::Binary(data) if self.masks_in_place(data.len()) => {
                self.queue_data(stream, OpCode::Binary, &mut data[..])
            }
            Message::Text(text) => self.queue_data(stream, OpCode::Text, text.as_bytes()),
            Message::Binary(data) => self.queue_data(stream, OpCode::Binary, &data[..]),
            Message::Ping(data) => self.write_control(stream, OpCode::Ping, data),
            Message::Pong(data) => self.write_control(stream, OpCode::Pong, data),
            Message::Close(frame) => self.start_close(stream, frame.clone()),
        }
    }

    /// Whether a payload of `len` bytes is masked in place when the caller gives it up: a
    /// client's payloads that are written through (see `Sender::message_to`).
    #[inline(always)]
    fn masks_in_place(&self, len: usize) -> bool {
        self.sender.masks() && len >= self.write_buffer_size
    }

    /// Queues a text or binary message; one of `write_buffer_size` bytes or more is written
    /// through at once (see `Sender::message_to`).
    #[inline]
    pub fn queue_data<'a, W: Write, P: PayloadBuf<'a>>(
        &mut self,
        stream: &mut W,
        opcode: OpCode,
        payload: P,
    ) -> Result<()> {
        self.check_can_stream(stream)?;
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &mut self.deflate {
            let mut compressed = std::mem::take(&mut deflate.scratch);
            compressed.clear();
            if deflate
                .compressor
                .compress(payload.bytes(), &mut compressed)
            {
                // RSV1: a compressed message (RFC 7692 §6).
                let owned = &mut compressed[..];
                let result = self.send_message(stream, opcode, 0b100, owned);
                if compressed.capacity() <= KEEP_SCRATCH {
                    if let Some(deflate) = &mut self.deflate {
                        deflate.scratch = compressed;
                    }
                }
                return result;
            }
            deflate.scratch = compressed;
        }
        self.send_message(stream, opcode, 0, payload)
    }

    /// Queues (or writes through) a message's frames, then flushes if the queue is full.
    #[inline]
    fn send_message<'a, W: Write, P: PayloadBuf<'a>>(
        &mut self,
        stream: &mut W,
        opcode: OpCode,
        rsv: u8,
        payload: P,
    ) -> Result<()> {
        let direct_min = self.write_buffer_size.max(1);
        match self
            .sender
            .message_to(stream, opcode, rsv, payload, direct_min)
        {
            Ok(()) => {}
            // The rest is queued; `flush` finishes it.
            Err(e) if is_retryable(e.kind()) => {}
            Err(e) => return Err(self.end(e.into())),
        }
        self.flush_if_full(stream)
    }

    /// Turns on permessage-deflate for outgoing messages.
    #[cfg(feature = "deflate")]
    pub fn set_compressor(&mut self, compressor: crate::deflate::Compressor) {
        self.deflate = Some(Deflate {
            compressor,
            scratch: Vec::new(),
        });
    }

    /// The configured fragment size (for streamed messages).
    pub fn fragment_size(&self) -> Option<usize> {
        self.fragment_size
    }

    /// Checks that a data message may start now.
    #[inline(always)]
    pub fn check_can_stream<W: Write>(&mut self, stream: &mut W) -> Result<()> {
        if self.streaming {
            return Err(Error::InvalidInput(
                "a streamed message is unfinished (its MessageWriter was leaked)",
            ));
        }
        self.check_can_queue(stream)
    }

    /// Queues one frame of a streamed message (written through like `queue_data`).
    pub fn queue_fragment<W: Write>(
        &mut self,
        stream: &mut W,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<()> {
        self.check_can_queue(stream)?;
        let direct_min = self.write_buffer_size.max(1);
        match self
            .sender
            .fragment_to(stream, opcode, fin, 0, payload, direct_min)
        {
            Ok(()) => {}
            Err(e) if is_retryable(e.kind()) => {}
            Err(e) => return Err(self.end(e.into())),
        }
        self.streaming = !fin;
        self.flush_if_full(stream)
    }

    /// A streamed message was abandoned after some of its frames went out: it cannot be
    /// taken back, so the connection is closed (1011) rather than leave the peer waiting
    /// for its end or take a truncated message for a whole one.
    pub fn abandon_message<W: Write>(&mut self, stream: &mut W) {
        if std::mem::take(&mut self.streaming) {
            let _ = self.start_close(stream, Some(crate::stream::abandoned_close()));
        }
    }

    /// Queues a ping or pong.
    pub fn write_control<W: Write>(
        &mut self,
        stream: &mut W,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<()> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidInput(
                "control frame payload longer than 125 bytes",
            ));
        }
        self.check_can_queue(stream)?;
        self.sender.frame(opcode, true, payload);
        self.flush_if_full(stream)
    }

    /// Writes out the queue once it holds `write_buffer_size` bytes.
    #[inline]
    fn flush_if_full<W: Write>(&mut self, stream: &mut W) -> Result<()> {
        if self.sender.pending() >= self.write_buffer_size {
            match self.flush_queued(stream) {
                // Queued; the rest goes out with the next flush.
                Err(e) if e.is_would_block() => {}
                other => return other,
            }
        }
        Ok(())
    }

    /// Sends a close frame (once) and moves to `CloseSent`.
    pub fn start_close<W: Write>(
        &mut self,
        stream: &mut W,
        frame: Option<CloseFrame>,
    ) -> Result<()> {
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
        self.flush_queued(stream)
    }

    /// Writes out the queue; a fatal I/O error ends the connection.
    pub fn flush_queued<W: Write>(&mut self, stream: &mut W) -> Result<()> {
        match self.sender.flush(stream) {
            Ok(()) => Ok(()),
            Err(e) if is_retryable(e.kind()) => Err(e.into()),
            Err(e) => Err(self.end(e.into())),
        }
    }
}

/// The close body that tells the peer why its connection failed: the error's close code and
/// a short reason, or `None` for errors that have no close code (I/O, EOF).
pub(crate) fn failure_close(error: &Error) -> Option<Vec<u8>> {
    let code = error.close_code()?;
    let reason = match error {
        Error::Utf8 => "invalid UTF-8".to_owned(),
        Error::Capacity(_) => "message too big".to_owned(),
        Error::KeepAliveTimeout => "keepalive timeout".to_owned(),
        Error::Protocol(p) => p.to_string(),
        _ => String::new(),
    };
    let mut body = code.as_u16().to_be_bytes().to_vec();
    body.extend_from_slice(&reason.as_bytes()[..reason.len().min(MAX_REASON_LEN)]);
    Some(body)
}
