//! The blocking driver: the only code that names `Read` and `Write`. It moves bytes between
//! a stream and the pure protocol core (a [`Receiver`] for what arrives, an [`Outgoing`] for
//! what is sent) and owns waiting, flushing, keep-alive timing and how the end of a
//! connection is reported.
//!
//! - Reading: [`fill`] reads into the room the receiver offers; [`read_next`] is the one
//!   read loop, shared by [`WebSocket`](crate::WebSocket), [`ReadHalf`](crate::ReadHalf)
//!   and the streamed [`MessageReader`](crate::MessageReader) through the [`Halves`] trait;
//!   [`wait_for_input`] is the one place that waits on a stream.
//! - Writing: [`WriteSide`] runs the core's send operations on one stream and flushes as
//!   they require; [`message_to`] writes a large payload through with what is queued (one
//!   vectored write, no copy), masking a client's payload in place or in 64 KiB pieces.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use crate::close::CloseFrame;
use crate::error::{is_retryable, CapacityError, Error, ProtocolError, Result};
use crate::frame::OpCode;
use crate::keepalive::{read_wait, timeout_is_callers, Tick, Timer};
use crate::message::Message;
use crate::outgoing::{check_control_payload, failure_close, Outgoing};
use crate::prepared::PreparedMessage;
use crate::receiver::{Incoming, Payload, Receiver};
use crate::sender::{PayloadBuf, Sender, MASK_CHUNK};
use crate::socket::ReadTimeout;
use crate::state::{Lifecycle, Role};

/// What the read loop needs from a connection besides the receiver: the stream to read,
/// and the effects of what it reads on the write side and the state. A [`WebSocket`] does
/// these directly; the reading half of a split connection does them so that it never waits
/// behind a writer blocked on a full socket (see `split.rs`).
pub(crate) trait Halves {
    type R: Read;
    fn reader(&mut self) -> &mut Self::R;
    /// Where the reading side stands.
    fn lifecycle(&self) -> &Lifecycle;
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
    /// The reader's read-timeout controls, if the connection was built knowing them (see
    /// [`ReadTimeout`]).
    fn read_timeout(&self) -> Option<ReadTimeout<Self::R>>;
    /// After the closing handshake: push out a close reply still queued.
    fn flush_close_reply(&mut self) -> Result<()>;
    /// Reports the finished closing handshake (once).
    fn report_closed(&mut self) -> Error;
}

/// A `WebSocket`'s one stream, for reading and writing.
pub(crate) struct Joined<'a, T> {
    pub stream: &'a mut T,
    pub out: &'a mut Outgoing,
    pub timeouts: &'a Option<ReadTimeout<T>>,
}

impl<T: Write> Joined<'_, T> {
    #[inline(always)]
    fn side(&mut self) -> WriteSide<'_, T> {
        WriteSide::new(self.stream, self.out)
    }
}

impl<T: Read + Write> Halves for Joined<'_, T> {
    type R = T;
    #[inline]
    fn reader(&mut self) -> &mut T {
        self.stream
    }
    #[inline]
    fn lifecycle(&self) -> &Lifecycle {
        &self.out.state
    }
    fn on_ping(&mut self, payload: &[u8]) {
        self.out.on_ping(payload);
    }
    fn on_close(&mut self, frame: &Option<CloseFrame>) {
        self.side().on_close(frame);
    }
    fn fail(&mut self, error: Error) -> Error {
        self.side().fail(error)
    }
    fn end(&mut self, error: Error) -> Error {
        self.out.end(error)
    }
    #[inline]
    fn before_wait(&mut self) -> Result<()> {
        self.side().flush_before_read()
    }
    fn keep_alive(&mut self, timer: &mut Timer) -> Result<()> {
        self.side().keep_alive(timer, Instant::now())
    }
    #[inline]
    fn read_timeout(&self) -> Option<ReadTimeout<T>> {
        self.timeouts.clone()
    }
    fn flush_close_reply(&mut self) -> Result<()> {
        self.side().flush_queued()
    }
    fn report_closed(&mut self) -> Error {
        // `flush_close_reply` has just written out the reply.
        self.out.take_closed_report()
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

/// What [`read_next`] returns: a [`Message`] for the message read loop, or a [`Got`] where
/// the start of a streamed message may come back instead. The message loop takes messages
/// as they come from the receiver, not rewrapped in a `Got` and unwrapped again.
pub(crate) trait ReadOutput: Sized {
    fn message(message: Message) -> Self;
    /// Only when the receiver was asked to stream the next message.
    fn stream_start(text: bool) -> Self;
}

impl ReadOutput for Message {
    #[inline(always)]
    fn message(message: Message) -> Self {
        message
    }
    fn stream_start(_text: bool) -> Self {
        unreachable!("streaming was not asked for")
    }
}

impl ReadOutput for Got {
    #[inline(always)]
    fn message(message: Message) -> Self {
        Got::Message(message)
    }
    #[inline(always)]
    fn stream_start(text: bool) -> Self {
        Got::StreamStart { text }
    }
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
    read_next(halves, receiver, role, keepalive)
}

/// Reads the next message, or (as `O`, see [`ReadOutput`]) the start of a streamed message.
#[inline]
pub(crate) fn read_next<H: Halves, O: ReadOutput>(
    halves: &mut H,
    receiver: &mut Receiver,
    role: Role,
    keepalive: &mut Option<Timer>,
) -> Result<O> {
    loop {
        match halves.lifecycle() {
            Lifecycle::Open | Lifecycle::CloseSent => {}
            Lifecycle::Closed(_) => return Err(report_closed(halves, receiver, role)),
            Lifecycle::Ended => return Err(Error::AlreadyClosed),
        }
        match receiver.poll() {
            Ok(Some(Incoming::Data(message))) => return Ok(O::message(message)),
            Ok(Some(Incoming::Ping(payload))) => {
                halves.on_ping(&payload);
                return Ok(O::message(Message::Ping(payload)));
            }
            Ok(Some(Incoming::Pong(payload))) => return Ok(O::message(Message::Pong(payload))),
            Ok(Some(Incoming::Close(frame))) => {
                halves.on_close(&frame);
                return Ok(O::message(Message::Close(frame)));
            }
            Ok(Some(Incoming::StreamStart { text })) => return Ok(O::stream_start(text)),
            Ok(None) => {}
            Err(e) => return Err(fail_reading(halves, receiver, e)),
        }
        wait_for_input(halves, keepalive, |r| fill(receiver, r))?;
    }
}

/// Reads the next message, asking the receiver to stream it if it is a data message
/// (returned as `Got::StreamStart`), within `limit` bytes instead of the configured limits
/// if given; a control message is returned as it is.
pub(crate) fn read_stream_start<H: Halves>(
    halves: &mut H,
    receiver: &mut Receiver,
    role: Role,
    keepalive: &mut Option<Timer>,
    limit: Option<u64>,
) -> Result<Got> {
    receiver.stream_next(true);
    receiver.stream_limit(limit);
    let got = read_next::<H, Got>(halves, receiver, role, keepalive);
    receiver.stream_next(false);
    got
}

/// Writes out what is owed to the peer, then reads input with `read`. Returns how many
/// bytes arrived (0 after `Interrupted`: try again); the end of the stream and fatal errors
/// end the connection; a read timeout runs the keep-alive timer and is returned.
///
/// With keep-alive on a stream whose read timeout the connection can set
/// ([`Halves::read_timeout`]), the wait is [`wait_by_itself`]: the caller sees only its own
/// timeouts.
#[inline]
pub(crate) fn wait_for_input<H: Halves>(
    halves: &mut H,
    keepalive: &mut Option<Timer>,
    mut read: impl FnMut(&mut H::R) -> std::io::Result<usize>,
) -> Result<usize> {
    halves.before_wait()?;
    if let Some(timer) = keepalive.as_mut() {
        if let Some(control) = halves.read_timeout() {
            return wait_by_itself(halves, timer, control, read);
        }
    }
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

/// [`wait_for_input`] with the keep-alive timer on a stream whose read timeout it can set:
/// each read blocks at most until the timer's next deadline (or the caller's own read
/// timeout, measured from this call, if that comes first); the timer acts when it fires
/// and the wait goes on. The caller's timeout is put back before returning, and only a
/// timeout that is the caller's (see [`timeout_is_callers`]) is returned.
fn wait_by_itself<H: Halves>(
    halves: &mut H,
    timer: &mut Timer,
    control: ReadTimeout<H::R>,
    mut read: impl FnMut(&mut H::R) -> std::io::Result<usize>,
) -> Result<usize> {
    let callers = control.get(halves.reader())?;
    let started = Instant::now();
    let caller = callers.map(|t| started + t);
    let mut set = callers;
    let result = loop {
        let now = Instant::now();
        let wait = read_wait(now, timer.deadline(), caller);
        let waited_for = now + wait;
        // The caller's own timeout is left as it is while it comes first.
        let callers_first = set == callers && caller == Some(waited_for);
        if !callers_first && set != Some(wait) {
            if let Err(e) = control.set(halves.reader(), Some(wait)) {
                break Err(e.into());
            }
            set = Some(wait);
        }
        match read(halves.reader()) {
            Ok(0) => break Err(halves.end(Error::AbnormalClosure)),
            Ok(n) => {
                timer.heard(Instant::now());
                break Ok(n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => break Ok(0),
            Err(e) if is_retryable(e.kind()) => {
                if let Err(failed) = halves.keep_alive(timer) {
                    break Err(failed);
                }
                if timeout_is_callers(Instant::now(), waited_for, caller) {
                    break Err(e.into());
                }
            }
            Err(e) => break Err(halves.end(e.into())),
        }
    };
    if set != callers {
        // The stream may be gone (the connection ended): nothing to restore then.
        let _ = control.set(halves.reader(), callers);
    }
    result
}

/// Most bytes of a refused message read and discarded by [`drain`].
const DRAIN_BYTES: usize = 64 << 20;
/// Longest [`drain`] may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// After the rest of the refused frame, [`drain`] stops once the peer has sent nothing for
/// this long.
const DRAIN_QUIET: Duration = Duration::from_millis(250);

/// Fails the connection for the peer's `error` (see [`Halves::fail`]). A message refused
/// for its size (close code 1009) is likely still arriving, and the peer, busy sending it,
/// has not read the close frame yet: closing the socket with unread input would make the
/// kernel reset the connection, and the peer would see `ECONNRESET` instead of the 1009.
/// So the rest of what it sends is read and discarded first ([`drain`]).
fn fail_reading<H: Halves>(halves: &mut H, receiver: &Receiver, error: Error) -> Error {
    let too_large = matches!(
        error,
        Error::Capacity(
            CapacityError::MessageTooLarge { .. } | CapacityError::FrameTooLarge { .. }
        )
    );
    let error = halves.fail(error);
    if too_large {
        drain(halves, receiver.unread_payload());
    }
    error
}

/// Reads and discards what the peer still sends: the `unread` rest of the refused frame,
/// then anything more until it pauses for [`DRAIN_QUIET`] (or the stream ends), for at most
/// [`DRAIN_TIME`] and [`DRAIN_BYTES`]. Only on a stream whose read timeout the connection
/// can set: elsewhere a read could block forever, and nothing is read. The caller's read
/// timeout is put back.
fn drain<H: Halves>(halves: &mut H, unread: u64) {
    let Some(control) = halves.read_timeout() else {
        return;
    };
    let Ok(callers) = control.get(halves.reader()) else {
        return;
    };
    let deadline = Instant::now() + DRAIN_TIME;
    let mut left = DRAIN_BYTES;
    let mut announced = unread;
    let mut buf = vec![0u8; 16 << 10];
    while left > 0 {
        let time = deadline.saturating_duration_since(Instant::now());
        // The refused frame's rest is on its way: wait for it as long as allowed.
        let wait = if announced > 0 {
            time
        } else {
            time.min(DRAIN_QUIET)
        };
        if time.is_zero() || control.set(halves.reader(), Some(wait)).is_err() {
            break;
        }
        let room = left.min(buf.len());
        match halves.reader().read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(n) => {
                left -= n.min(left);
                announced = announced.saturating_sub(n as u64);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = control.set(halves.reader(), callers);
}

/// Reads once from `stream` into the room the receiver offers (its read buffer, or the end of
/// a large binary message), and tells it how many bytes arrived. `Ok(0)` is end of stream.
#[inline]
pub(crate) fn fill<R: Read>(receiver: &mut Receiver, stream: &mut R) -> std::io::Result<usize> {
    if receiver.is_resting() {
        return fill_resting(receiver, stream);
    }
    let room = receiver.read_buf();
    match stream.read(room) {
        Ok(n) => {
            let n = n.min(room.len());
            receiver.filled(n);
            Ok(n)
        }
        Err(e) => {
            if is_retryable(e.kind()) {
                // A read timeout: the connection may stay quiet for long.
                receiver.release_idle();
            }
            Err(e)
        }
    }
}

/// `fill` for a receiver without a read buffer: waits for input with a small buffer on
/// the stack, so a connection that waits (most of a server's, most of the time) holds no
/// read buffer; the receiver allocates one when bytes arrive.
#[cold]
fn fill_resting<R: Read>(receiver: &mut Receiver, stream: &mut R) -> std::io::Result<usize> {
    let mut first = [0u8; RESTING_READ];
    let n = stream.read(&mut first)?.min(RESTING_READ);
    receiver.push(&first[..n]);
    if n == RESTING_READ {
        receiver.pushed_full();
    }
    Ok(n)
}

/// The first read of a resting receiver (see [`fill_resting`]).
const RESTING_READ: usize = 256;

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
            match fill(receiver, halves.reader()) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_retryable(e.kind()) => return e.into(),
                _ => break,
            }
        }
    }
    halves.report_closed()
}

/// The streamed message's next payload bytes: the read loop of
/// [`read_message`](crate::websocket::read_message), for payload instead of messages.
pub(crate) fn read_payload<H: Halves>(
    halves: &mut H,
    receiver: &mut Receiver,
    keepalive: &mut Option<Timer>,
    dst: &mut [u8],
) -> Result<Option<usize>> {
    loop {
        if !halves.lifecycle().is_reading() {
            return Err(Error::AlreadyClosed);
        }
        match receiver.poll_payload(dst) {
            Ok(Payload::Bytes(n)) => return Ok(Some(n)),
            Ok(Payload::End) => return Ok(None),
            Ok(Payload::Control(Incoming::Ping(payload))) => halves.on_ping(&payload),
            Ok(Payload::Control(Incoming::Close(frame))) => {
                halves.on_close(&frame);
                return Err(Error::Io(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the peer closed the connection before the message ended",
                )));
            }
            // Pongs need no answer; the keep-alive timer heard the bytes.
            Ok(Payload::Control(_)) => {}
            Ok(Payload::NeedMore) => {
                if receiver.can_read_direct(dst.len()) {
                    let n = wait_for_input(halves, keepalive, |r| {
                        let room = receiver.direct_room(dst.len());
                        Ok(r.read(&mut dst[..room])?.min(room))
                    })?;
                    if n > 0 {
                        if let Err(e) = receiver.take_direct(&mut dst[..n]) {
                            return Err(fail_reading(halves, receiver, e));
                        }
                        return Ok(Some(n));
                    }
                } else {
                    wait_for_input(halves, keepalive, |r| fill(receiver, r))?;
                }
            }
            Err(e) => return Err(fail_reading(halves, receiver, e)),
        }
    }
}

/// The send operations of the core ([`Outgoing`]) on one stream: each queues through the
/// core, then writes out what it must (a close, a full queue, a large payload).
pub(crate) struct WriteSide<'a, W> {
    stream: &'a mut W,
    out: &'a mut Outgoing,
}

impl<'a, W: Write> WriteSide<'a, W> {
    #[inline(always)]
    pub fn new(stream: &'a mut W, out: &'a mut Outgoing) -> Self {
        WriteSide { stream, out }
    }

    /// Answers the peer's close (see [`Outgoing::on_close`]) and writes the reply out; a
    /// failure is reported by the next call (the reply stays queued if `WouldBlock`).
    pub fn on_close(&mut self, frame: &Option<CloseFrame>) {
        if self.out.on_close(frame) {
            let _ = flush(&mut self.out.sender, self.stream);
        }
    }

    /// Fails the connection: sends a close frame with the error's code (unless one was sent
    /// already), and ends.
    pub fn fail(&mut self, error: Error) -> Error {
        self.send_failure(failure_close(&error));
        self.out.end(error)
    }

    /// Sends the close frame of a failure if no close was sent yet.
    pub fn send_failure(&mut self, body: Option<Vec<u8>>) {
        if self.out.queue_failure(body) {
            let _ = flush(&mut self.out.sender, self.stream);
        }
    }

    /// On a read timeout at `now`: sends a due keep-alive ping, or fails a connection whose
    /// peer stayed silent. After our close frame no ping may be sent, but the timer still
    /// bounds the wait for the peer's reply.
    pub fn keep_alive(&mut self, timer: &mut Timer, now: Instant) -> Result<()> {
        match (&self.out.state, timer.tick(now)) {
            (Lifecycle::Open, Tick::SendPing) => {
                self.write_control(OpCode::Ping, b"keepalive")?;
                match self.flush_queued() {
                    Err(e) if !e.is_would_block() => Err(e),
                    _ => Ok(()),
                }
            }
            (Lifecycle::Open | Lifecycle::CloseSent, Tick::TimedOut) => {
                Err(self.fail(Error::KeepAliveTimeout))
            }
            _ => Ok(()),
        }
    }

    /// Writes out what is corked before the reader waits for input, so the peer is never
    /// waiting for bytes we hold while we wait for it. A stream that cannot take them right
    /// now is fine unless the queue is over its limit.
    #[inline]
    pub fn flush_before_read(&mut self) -> Result<()> {
        match self.flush_queued() {
            Err(e) if e.is_would_block() && !self.out.over_limit() => Ok(()),
            other => other,
        }
    }

    /// The state check shared by every send: only an open connection takes messages; the
    /// first use after the end reports it.
    #[inline(always)]
    pub fn check_writable(&mut self) -> Result<()> {
        match self.out.writable()? {
            true => Ok(()),
            false => Err(self.report_closed()),
        }
    }

    /// Reports the completed closing handshake once: pushes out a close reply that is still
    /// queued, then ends.
    pub fn report_closed(&mut self) -> Error {
        if let Err(e) = flush(&mut self.out.sender, self.stream) {
            if is_retryable(e.kind()) {
                return e.into();
            }
        }
        self.out.take_closed_report()
    }

    /// Checks that a message may be sent now: the connection is open and the queue is not
    /// stuck over `max_write_buffer_size`.
    #[inline(always)]
    fn check_can_queue(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.out.over_limit() {
            match self.flush_queued() {
                Ok(()) => {}
                Err(e) if e.is_would_block() => return Err(CapacityError::WriteBufferFull.into()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends a message (a close starts the closing handshake). A client may mask a large
    /// payload in place rather than copy it: the message's contents are undefined afterwards
    /// (a large text message comes back as binary), only its allocation is worth keeping.
    #[inline]
    pub fn write(&mut self, message: &mut Message) -> Result<()> {
        match message {
            // Only a client's large payloads gain from being masked in place (no copy);
            // everything else takes the borrowed path, which is a little leaner.
            Message::Text(text) if self.out.masks_in_place(text.len()) => {
                // A String cannot be changed in place safely; its bytes can.
                let mut bytes = std::mem::take(text).into_bytes();
                let result = self.queue_data(OpCode::Text, &mut bytes[..]);
                *message = Message::Binary(bytes);
                result
            }
            Message::Binary(data) if self.out.masks_in_place(data.len()) => {
                self.queue_data(OpCode::Binary, &mut data[..])
            }
            Message::Text(text) => self.queue_data(OpCode::Text, text.as_bytes()),
            Message::Binary(data) => self.queue_data(OpCode::Binary, &data[..]),
            Message::Ping(data) => self.write_control(OpCode::Ping, data),
            Message::Pong(data) => self.write_control(OpCode::Pong, data),
            Message::Close(frame) => self.start_close(frame.clone()),
        }
    }

    /// Sends a text or binary message, compressed if permessage-deflate was negotiated; one
    /// of `write_buffer_size` bytes or more is written through at once (see [`message_to`]).
    #[inline]
    pub fn queue_data<'b, P: PayloadBuf<'b>>(&mut self, opcode: OpCode, payload: P) -> Result<()> {
        self.check_can_stream()?;
        #[cfg(feature = "deflate")]
        if let Some(mut compressed) = self.out.compress(payload.bytes()) {
            // RSV1: a compressed message (RFC 7692 §6).
            let result = self.send_message(opcode, 0b100, &mut compressed[..]);
            self.out.return_scratch(compressed);
            return result;
        }
        self.send_message(opcode, 0, payload)
    }

    /// Queues (or writes through) a message's frames, then flushes if the queue is full.
    #[inline]
    fn send_message<'b, P: PayloadBuf<'b>>(
        &mut self,
        opcode: OpCode,
        rsv: u8,
        payload: P,
    ) -> Result<()> {
        let direct_min = self.out.direct_min();
        let sender = &mut self.out.sender;
        match message_to(sender, self.stream, opcode, rsv, payload, direct_min) {
            Ok(()) => {}
            // The rest is queued; `flush` finishes it.
            Err(e) if is_retryable(e.kind()) => {}
            Err(e) => return Err(self.out.end(e.into())),
        }
        self.flush_if_full()
    }

    /// Sends a prepared message (see [`Outgoing::queue_prepared`]).
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<()> {
        self.check_can_stream()?;
        self.out.queue_prepared(message);
        self.flush_if_full()
    }

    /// Checks that a data message may start now.
    #[inline(always)]
    pub fn check_can_stream(&mut self) -> Result<()> {
        self.out.check_not_streaming()?;
        self.check_can_queue()
    }

    /// Sends one frame of a streamed message (written through like `queue_data`).
    pub fn queue_fragment(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<()> {
        self.check_can_queue()?;
        let direct_min = self.out.direct_min();
        let sender = &mut self.out.sender;
        match fragment_to(sender, self.stream, opcode, fin, 0, payload, direct_min) {
            Ok(()) => {}
            Err(e) if is_retryable(e.kind()) => {}
            Err(e) => return Err(self.out.end(e.into())),
        }
        self.out.set_streaming(!fin);
        self.flush_if_full()
    }

    /// A streamed message was abandoned half sent: closes the connection (1011).
    pub fn abandon_message(&mut self) {
        if self.out.abandon_message() {
            let _ = self.flush_queued();
        }
    }

    /// Sends a ping or pong.
    pub fn write_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        check_control_payload(payload)?;
        self.check_can_queue()?;
        self.out.queue_control(opcode, payload);
        self.flush_if_full()
    }

    /// Writes out the queue once it holds `write_buffer_size` bytes.
    #[inline]
    fn flush_if_full(&mut self) -> Result<()> {
        if self.out.is_full() {
            match self.flush_queued() {
                // Queued; the rest goes out with the next flush.
                Err(e) if e.is_would_block() => {}
                other => return other,
            }
        }
        Ok(())
    }

    /// Sends a close frame (once) and moves to `CloseSent`.
    pub fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        if self.out.start_close(frame)? {
            self.flush_queued()
        } else {
            Ok(())
        }
    }

    /// Writes out the queue; a fatal I/O error ends the connection.
    #[inline]
    pub fn flush_queued(&mut self) -> Result<()> {
        match flush(&mut self.out.sender, self.stream) {
            Ok(()) => Ok(()),
            Err(e) if is_retryable(e.kind()) => Err(e.into()),
            Err(e) => Err(self.out.end(e.into())),
        }
    }
}

/// Sends a text or binary message (split into frames of at most `fragment_size` if
/// configured). Frames of at least `direct_min` payload bytes bypass the buffer: a
/// server writes them straight from `payload` together with what is queued (one
/// vectored write, no copy); a client masks an owned payload in place and does the same,
/// or masks a borrowed one into the buffer and writes it out every 64 KiB. Smaller
/// frames are only queued.
///
/// If the stream refuses bytes (`WouldBlock`, `TimedOut`), the rest of the message is
/// queued and that error returned: the message is never half queued.
#[inline]
pub(crate) fn message_to<'a, W: Write, P: PayloadBuf<'a>>(
    sender: &mut Sender,
    stream: &mut W,
    opcode: OpCode,
    rsv: u8,
    payload: P,
    direct_min: usize,
) -> io::Result<()> {
    let size = sender.fragment_size().unwrap_or(usize::MAX);
    let len = payload.bytes().len();
    if len < direct_min && len <= size {
        // The common case: one small frame, queued.
        sender.frame_rsv(opcode, true, rsv, payload.bytes());
        return Ok(());
    }
    let mut rsv = rsv;
    let mut blocked = None;
    let mut op = opcode;
    let mut rest = payload;
    loop {
        let rest_len = rest.bytes().len();
        let (chunk, tail) = rest.split_at(rest_len.min(size));
        let fin = tail.bytes().is_empty();
        if blocked.is_some() {
            sender.frame_rsv(op, fin, rsv, chunk.bytes());
        } else {
            match fragment_to(sender, stream, op, fin, rsv, chunk, direct_min) {
                Ok(()) => {}
                Err(e) if is_retryable(e.kind()) => blocked = Some(e),
                Err(e) => return Err(e),
            }
        }
        if fin {
            return blocked.map_or(Ok(()), Err);
        }
        op = OpCode::Continuation;
        // RSV1 (compression) is set on a message's first frame only (RFC 7692 §6).
        rsv = 0;
        rest = tail;
    }
}

/// Sends one frame: queued if its payload is shorter than `direct_min`, written through
/// otherwise (see [`message_to`](Self::message_to)).
#[inline]
pub(crate) fn fragment_to<'a, W: Write, P: PayloadBuf<'a>>(
    sender: &mut Sender,
    stream: &mut W,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    payload: P,
    direct_min: usize,
) -> io::Result<()> {
    if payload.bytes().len() < direct_min {
        sender.frame_rsv(opcode, fin, rsv, payload.bytes());
        return Ok(());
    }
    match sender.frame_header(opcode, fin, rsv, payload.bytes().len()) {
        None => write_through(sender, stream, payload.bytes()),
        Some(key) => match payload.mask_in_place(key) {
            Ok(masked) => write_through(sender, stream, masked),
            Err(plain) => write_masked(sender, stream, key, plain),
        },
    }
}

/// Writes the queue (ending with the frame's header) and `payload`, ready to go as it
/// is, with vectored writes; whatever the stream did not take is queued.
fn write_through<W: Write>(sender: &mut Sender, stream: &mut W, payload: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    while sender.pending() > 0 || sent < payload.len() {
        let queued = sender.output();
        let queued_len = queued.len();
        // The payload follows the queue's last piece; segments queued before it go first.
        let rest = match sender.is_contiguous() {
            true => &payload[sent..],
            false => &[][..],
        };
        let result = stream.write_vectored(&[IoSlice::new(queued), IoSlice::new(rest)]);
        match result {
            Ok(0) => {
                sender.append(&payload[sent..], None, 0);
                return Err(ErrorKind::WriteZero.into());
            }
            Ok(n) => {
                sender.mark_unflushed();
                let from_queue = n.min(queued_len);
                sender.consume(from_queue);
                sent = (sent + n - from_queue).min(payload.len());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                sender.append(&payload[sent..], None, 0);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Client, a payload it must not change (its header is queued): masks it into the
/// buffer 64 KiB at a time, writing the buffer out as it fills, so a large message never
/// needs a masked copy of its whole size (unless the stream blocks, when the rest is
/// queued).
fn write_masked<W: Write>(
    sender: &mut Sender,
    stream: &mut W,
    key: [u8; 4],
    payload: &[u8],
) -> io::Result<()> {
    let mask = Some(key);
    let mut blocked = None;
    for (i, chunk) in payload.chunks(MASK_CHUNK).enumerate() {
        sender.append(chunk, mask, i * MASK_CHUNK);
        if blocked.is_none() && sender.pending() >= MASK_CHUNK {
            match write_out(sender, stream) {
                Ok(()) => {}
                Err(e) if is_retryable(e.kind()) => blocked = Some(e),
                Err(e) => return Err(e),
            }
        }
    }
    blocked.map_or(Ok(()), Err)
}

/// Writes every queued byte to `stream`, then flushes it. On error the unwritten bytes
/// stay queued.
#[inline]
pub(crate) fn flush<W: Write>(sender: &mut Sender, stream: &mut W) -> io::Result<()> {
    write_out(sender, stream)?;
    // A stream is flushed once after each write (a TLS stream makes a record of it), not
    // again for every call that finds nothing new.
    if !sender.take_unflushed() {
        return Ok(());
    }
    loop {
        match stream.flush() {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                sender.mark_unflushed();
                return Err(e);
            }
            Ok(()) => return Ok(()),
        }
    }
}

/// Writes every queued byte to `stream` (without flushing it); queued segments go out
/// with the buffer bytes around them in vectored writes.
#[inline]
fn write_out<W: Write>(sender: &mut Sender, stream: &mut W) -> io::Result<()> {
    loop {
        // With no segment queued, `output()` is everything pending; with one, something is
        // (a queued segment is never empty). This saves recomputing `pending()` per pass.
        let (result, len) = match sender.is_contiguous() {
            true => {
                let output = sender.output();
                debug_assert_eq!(output.is_empty(), sender.pending() == 0);
                if output.is_empty() {
                    return Ok(());
                }
                (stream.write(output), output.len())
            }
            false => (write_pieces(sender, stream), usize::MAX),
        };
        match result {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                sender.consume(n);
                // All of a contiguous queue went out: nothing is left to ask `output()` for.
                if n >= len {
                    debug_assert_eq!(sender.pending(), 0);
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One vectored write of the first queued pieces.
#[cold]
fn write_pieces<W: Write>(sender: &Sender, stream: &mut W) -> io::Result<usize> {
    const MAX_PIECES: usize = 32;
    let mut pieces: [&[u8]; MAX_PIECES] = [&[]; MAX_PIECES];
    let n = sender.pieces(&mut pieces);
    let mut slices = [IoSlice::new(&[]); MAX_PIECES];
    for (slice, piece) in slices.iter_mut().zip(&pieces[..n]) {
        *slice = IoSlice::new(piece);
    }
    stream.write_vectored(&slices[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::apply_mask;
    use crate::rand::Rng;

    #[test]
    fn server_frames_are_unmasked_and_minimal() {
        let mut s = Sender::new(None, None);
        s.frame(OpCode::Text, true, b"Hello");
        let mut out = Vec::new();
        flush(&mut s, &mut out).unwrap();
        // RFC 6455 §5.7, unmasked "Hello".
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    }

    #[test]
    fn client_frames_are_masked_with_fresh_keys() {
        let mut s = Sender::new(Some(Rng::new()), None);
        s.frame(OpCode::Binary, true, &[0; 8]);
        s.frame(OpCode::Binary, true, &[0; 8]);
        let mut out = Vec::new();
        flush(&mut s, &mut out).unwrap();
        assert_eq!(out.len(), 2 * 14);
        assert_eq!(out[1], 0x80 | 8);
        // A zero payload masked shows the key: keys differ between frames.
        assert_eq!(&out[2..6], &out[6..10]);
        assert_ne!(&out[2..6], &out[16..20]);
    }

    #[test]
    fn fragments_large_messages() {
        let mut s = Sender::new(None, Some(4));
        let mut out = Vec::new();
        message_to(
            &mut s,
            &mut out,
            OpCode::Text,
            0,
            &b"abcdefghij"[..],
            usize::MAX,
        )
        .unwrap();
        assert!(out.is_empty(), "small frames are only queued");
        flush(&mut s, &mut out).unwrap();
        assert_eq!(
            out,
            [
                &[0x01, 4][..],
                b"abcd",
                &[0x00, 4][..],
                b"efgh",
                &[0x80, 2][..],
                b"ij",
            ]
            .concat()
        );
    }

    #[test]
    fn large_frames_are_written_through_in_order_with_queued_bytes() {
        let mut s = Sender::new(None, None);
        s.frame(OpCode::Ping, true, b"p");
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        message_to(&mut s, &mut out, OpCode::Binary, 0, &big[..], 1000).unwrap();
        assert_eq!(s.pending(), 0);
        assert_eq!(&out[..3], &[0x89, 1, b'p']);
        assert_eq!(&out[3..13], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xa0]);
        assert_eq!(&out[13..], &big[..]);
    }

    #[test]
    fn client_masks_large_payloads_in_chunks() {
        let mut s = Sender::new(Some(Rng::new()), None);
        let big = vec![0u8; 200_000];
        let mut out = Vec::new();
        message_to(&mut s, &mut out, OpCode::Binary, 0, &big[..], 1000).unwrap();
        flush(&mut s, &mut out).unwrap();
        let key = [out[10], out[11], out[12], out[13]];
        let mut payload = out[14..].to_vec();
        apply_mask(&mut payload, key, 0);
        assert_eq!(payload, big);
    }

    /// Accepts `n` bytes, then refuses with WouldBlock once.
    struct Choppy {
        out: Vec<u8>,
        n: usize,
        block: bool,
    }

    impl Write for Choppy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.block = !self.block;
            if self.block {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = self.n.min(buf.len());
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        /// Takes up to `n` bytes across the slices, so a write can end inside any of them.
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.block = !self.block;
            if self.block {
                return Err(ErrorKind::WouldBlock.into());
            }
            let mut taken = 0;
            for buf in bufs {
                let k = (self.n - taken).min(buf.len());
                self.out.extend_from_slice(&buf[..k]);
                taken += k;
            }
            Ok(taken)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn blocked_write_through_queues_the_rest_of_the_message() {
        let mut s = Sender::new(None, Some(40_000));
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut w = Choppy {
            out: Vec::new(),
            n: 5000,
            block: false,
        };
        let mut result = message_to(&mut s, &mut w, OpCode::Binary, 0, &big[..], 1000);
        while let Err(e) = result {
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            result = flush(&mut s, &mut w);
        }
        // Three fragments of 40,000 + 40,000 + 20,000 bytes, each whole, in order.
        let mut at = 0;
        let mut payload = Vec::new();
        for (first, len) in [(0x02u8, 40_000usize), (0x00, 40_000), (0x80, 20_000)] {
            assert_eq!(w.out[at], first);
            assert_eq!(w.out[at + 1..at + 4], [126, (len >> 8) as u8, len as u8]);
            payload.extend_from_slice(&w.out[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        assert_eq!(at, w.out.len());
        assert_eq!(payload, big);
    }

    #[test]
    fn buffer_stays_bounded_when_the_queue_never_empties() {
        // A 10 KB backlog, then each round adds one 62-byte frame and the stream takes 62
        // bytes: the queue never drains, but the buffer must only hold what is unwritten,
        // not everything ever sent (about 134 KB here).
        let mut s = Sender::new(None, None);
        s.frame(OpCode::Binary, true, &[1u8; 10_000]);
        let mut w = Choppy {
            out: Vec::new(),
            n: 62,
            block: false,
        };
        for _ in 0..2000 {
            s.frame(OpCode::Binary, true, &[7u8; 60]);
            let _ = flush(&mut s, &mut w);
            assert!(s.pending() > 0);
            assert!(
                s.buffer_len() <= 32 * 1024,
                "buffer grew to {}",
                s.buffer_len()
            );
        }
        while flush(&mut s, &mut w).is_err() {}
        assert_eq!(w.out.len(), 10_004 + 2000 * 62);
    }

    #[test]
    fn partial_writes_resume_without_loss() {
        let mut s = Sender::new(None, None);
        let payload: Vec<u8> = (0..200u8).collect();
        s.frame(OpCode::Binary, true, &payload);
        let mut w = Choppy {
            out: Vec::new(),
            n: 3,
            block: false,
        };
        let mut attempts = 0;
        while let Err(e) = flush(&mut s, &mut w) {
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            attempts += 1;
        }
        assert!(attempts > 10);
        assert_eq!(s.pending(), 0);
        assert_eq!(&w.out[..4], &[0x82, 126, 0, 200]);
        assert_eq!(&w.out[4..], &payload[..]);
    }

    #[test]
    fn segments_go_out_between_the_bytes_queued_around_them_at_any_chunking() {
        use crate::sender::Segment;
        for n in [1, 3, 62, 1000] {
            let mut s = Sender::new(None, None);
            s.frame(OpCode::Text, true, b"first");
            s.push_segment(Segment::Shared(std::sync::Arc::from(&b"<shared>"[..])));
            s.frame(OpCode::Text, true, b"second");
            s.push_segment(Segment::Owned(b"<owned>".to_vec()));
            s.push_segment(Segment::Owned(Vec::new())); // nothing to send: dropped
                                                        // Enough bytes behind the segments to move the buffer (compaction) midway.
            for _ in 0..300 {
                s.frame(OpCode::Binary, true, &[9; 100]);
            }
            let mut w = Choppy {
                out: Vec::new(),
                n,
                block: false,
            };
            while flush(&mut s, &mut w).is_err() {}
            assert_eq!(s.pending(), 0);
            let mut expected = [
                &[0x81, 5][..],
                b"first",
                b"<shared>",
                &[0x81, 6],
                b"second",
                b"<owned>",
            ]
            .concat();
            expected.extend((0..300).flat_map(|_| [&[0x82, 100][..], &[9; 100]].concat()));
            assert_eq!(w.out, expected, "chunk {n}");
        }
    }

    #[test]
    fn a_large_payload_written_through_waits_for_segments_queued_before_it() {
        use crate::sender::Segment;
        let mut s = Sender::new(None, None);
        s.push_segment(Segment::Shared(std::sync::Arc::from(&b"<before>"[..])));
        let big = vec![5u8; 5000];
        let mut w = Choppy {
            out: Vec::new(),
            n: 700,
            block: false,
        };
        let mut result = message_to(&mut s, &mut w, OpCode::Binary, 0, &big[..], 1000);
        while result.is_err() {
            result = flush(&mut s, &mut w);
        }
        assert_eq!(&w.out[..8], b"<before>");
        assert_eq!(&w.out[8..12], &[0x82, 126, 0x13, 0x88]);
        assert_eq!(&w.out[12..], &big[..]);
    }
}
