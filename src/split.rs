//! A connection split for two threads: a [`ReadHalf`] that reads, and a cloneable
//! [`WriteHalf`] that sends.
//!
//! The write stream and the connection state sit behind one mutex, and every send holds it
//! for whole frames, so bytes of two frames never interleave. A writer can block inside that
//! lock on a full socket (the peer is not reading); the reading half must keep reading then,
//! or two split peers flooding each other would deadlock. So the reader never waits for the
//! lock except to echo the peer's close:
//! - it keeps its own view of where the connection is (reading, closed, ended), and reports
//!   the end itself;
//! - the pongs it owes go into a mailbox (up to 32; beyond that the oldest are dropped, as
//!   RFC 6455 §5.5.3 allows); whoever takes or releases the lock next writes them;
//! - writing out pending bytes before a wait, keep-alive pings and the close frame of a
//!   protocol failure happen only when the lock is free (`try_lock`); a failure the reader
//!   cannot announce shuts the socket down instead;
//! - `can_write` reads an atomic copy of the state, and [`WriteHalf::shutdown`] uses its own
//!   socket handle, so neither waits for a blocked writer.
//!
//! Who closes, and how the other half learns of it:
//! - A writer calls [`WriteHalf::close`]: the close frame goes out, later sends fail with
//!   `AlreadyClosed`, and the reader keeps returning messages until the peer's close arrives
//!   ([`Message::Close`], then `ConnectionClosed`).
//! - The peer closes: the reader answers it and returns [`Message::Close`]; sends fail with
//!   `AlreadyClosed` from then on.
//! - Nobody answers: [`WriteHalf::shutdown`] shuts the socket down, which wakes a reader
//!   blocked in `read` (it returns `AbnormalClosure`, or `ConnectionClosed` if the closing
//!   handshake had finished) and a writer blocked in a send. Keep-alive (see
//!   [`Config::keepalive`](crate::Config); the reader waits for its deadlines by itself when
//!   the connection can set the socket's read timeout) and read timeouts bound how long a
//!   reader waits on a silent peer, also after our close frame.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::close::{CloseCode, CloseFrame};
use crate::connection::Negotiated;
use crate::driver::{read_message, read_payload, read_stream_start, Got, Halves, WriteSide};
use crate::error::{Error, Result};
use crate::frame::OpCode;
use crate::keepalive::Timer;
use crate::message::Message;
use crate::outgoing::{failure_close, Outgoing};
use crate::prepared::PreparedMessage;
use crate::receiver::Receiver;
use crate::socket::{ReadTimeout, SharedTcpStream, Socket};
use crate::state::{Lifecycle, Role, State};
use crate::stream::{
    FrameSink, MessageKind, MessageReader, MessageWriter, PayloadSource, Streamed,
};

/// The write stream and the connection state.
#[derive(Debug)]
pub(crate) struct Io<W> {
    stream: W,
    out: Outgoing,
}

/// What both halves share.
pub(crate) struct Shared<W> {
    io: Mutex<Io<W>>,
    /// Payloads of pings the reader has not answered yet, oldest first (at most
    /// `MAX_OWED_PONGS`).
    pong: Mutex<VecDeque<Vec<u8>>>,
    /// A copy of `io.out.state`'s public [`State`], readable without the lock.
    state: AtomicU8,
    /// A second handle to the socket, to shut it down while a writer holds `io`.
    control: Option<Box<dyn Socket + Send + Sync>>,
    /// The socket, readable without the lock, after [`WebSocket::split`](crate::WebSocket::split)
    /// (see [`WriteHalf::socket`]).
    handle: Option<SharedTcpStream>,
    /// The thread whose turn it is to send a data message, held for the whole message so
    /// that the fragments of a streamed message (sent with `io` locked one frame at a time,
    /// letting the reader's pongs through) never interleave with another message. Taken by
    /// [`Shared::turn`], which waits on `turn_free`; no lock is held while the turn is.
    turn: Mutex<Option<ThreadId>>,
    /// Signalled when the turn is given back and when the connection stops being open.
    turn_free: Condvar,
    /// What the opening handshake agreed on, for both halves to read.
    negotiated: Negotiated,
}

impl<W> std::fmt::Debug for Shared<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Pongs owed while a writer holds the lock. Beyond this the oldest are dropped: RFC 6455
/// §5.5.3 allows answering only the most recent ping, and a ping flood must not queue
/// without bound.
const MAX_OWED_PONGS: usize = 32;

/// How often a thread waiting for the turn checks the connection's state anyway (a state
/// change is signalled, but one that bypasses `mirror` must not leave it waiting forever).
const TURN_POLL: Duration = Duration::from_millis(100);

impl<W: Write> Shared<W> {
    pub fn new(
        stream: W,
        out: Outgoing,
        control: Option<Box<dyn Socket + Send + Sync>>,
        handle: Option<SharedTcpStream>,
        negotiated: Negotiated,
    ) -> Shared<W> {
        Shared {
            negotiated,
            state: AtomicU8::new(out.state.state().code()),
            io: Mutex::new(Io { stream, out }),
            pong: Mutex::new(VecDeque::new()),
            control,
            handle,
            turn: Mutex::new(None),
            turn_free: Condvar::new(),
        }
    }

    /// Locks the write side, waiting for it. A thread that panicked while holding the lock
    /// left at worst a partly queued frame; the state is still meaningful, so carry on.
    fn io(&self) -> MutexGuard<'_, Io<W>> {
        self.io
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the write side if nobody holds it right now.
    fn try_io(&self) -> Option<MutexGuard<'_, Io<W>>> {
        match self.io.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Queues the pongs the reader owes, if any (before anything else is written).
    fn take_pong(&self, io: &mut Io<W>) {
        let owed = std::mem::take(&mut *self.owed());
        for payload in owed {
            io.out.on_ping(&payload);
        }
    }

    /// Takes the turn to send a data message (see `turn`), waiting while another thread
    /// has it. Fails with `InvalidInput` if this thread has it (its streamed message is
    /// unfinished: waiting would never end), and with `AlreadyClosed` if the connection
    /// stops being open while waiting (a leaked `MessageWriter` never gives the turn back).
    fn turn(&self) -> Result<Turn<'_, W>> {
        let me = thread::current().id();
        let mut holder = self.turn_holder();
        loop {
            match *holder {
                None => {
                    *holder = Some(me);
                    return Ok(Turn { shared: self });
                }
                Some(id) if id == me => {
                    return Err(Error::InvalidInput(
                        "a streamed message is unfinished on this connection: this thread's \
                         MessageWriter must be finished or dropped first (or it was leaked)",
                    ))
                }
                Some(_) if self.state() != State::Open => return Err(Error::AlreadyClosed),
                Some(_) => {}
            }
            holder = match self.turn_free.wait_timeout(holder, TURN_POLL) {
                Ok((holder, _)) => holder,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn turn_holder(&self) -> MutexGuard<'_, Option<ThreadId>> {
        self.turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn owed(&self) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.pong
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers pongs still in the mailbox if the write side is free. The reader calls this
    /// after depositing one, and every writer after releasing the lock, so a pong is never
    /// stranded: if the reader found the lock taken, the holder sees the pong on release.
    fn answer_owed_pong(&self) {
        let owed = !self.owed().is_empty();
        if owed {
            if let Some(mut io) = self.try_io() {
                self.settle(&mut io);
            }
        }
    }

    /// Writes out the owed pong and anything queued; errors are left for writers to see.
    fn settle(&self, io: &mut Io<W>) {
        self.take_pong(io);
        let Io { stream, out } = io;
        let _ = WriteSide::new(stream, out).flush_queued();
        self.mirror(&io.out);
    }

    fn mirror(&self, out: &Outgoing) {
        let code = out.state.state().code();
        let old = self.state.swap(code, Ordering::AcqRel);
        if old != code && code != State::Open.code() {
            // Threads waiting for the turn fail now. Taking the lock first means none is
            // between its state check and its wait.
            drop(self.turn_holder());
            self.turn_free.notify_all();
        }
    }

    /// The public state, from the copy readable without the lock.
    fn state(&self) -> State {
        State::from_code(self.state.load(Ordering::Acquire))
    }

    /// Shuts the socket down without waiting for the lock, if a handle allows it.
    fn shutdown_quietly(&self) {
        if let Some(control) = &self.control {
            let _ = control.shutdown();
        }
    }
}

/// The reading half of a split connection (see [`WebSocket::split`](crate::WebSocket::split)).
#[derive(Debug)]
pub struct ReadHalf<R = SharedTcpStream, W = R> {
    stream: R,
    receiver: Receiver,
    role: Role,
    keepalive: Option<Timer>,
    /// The read stream's timeout controls, if known (see `WebSocket`'s).
    timeouts: Option<ReadTimeout<R>>,
    /// The reader's own view of the connection (never `CloseSent`: that is the writers'),
    /// so that it never waits for the write lock to know where it stands.
    phase: Lifecycle,
    shared: Arc<Shared<W>>,
}

impl<R: Read, W: Write> ReadHalf<R, W> {
    pub(crate) fn new(
        stream: R,
        receiver: Receiver,
        role: Role,
        (keepalive, timeouts): (Option<Timer>, Option<ReadTimeout<R>>),
        shared: Arc<Shared<W>>,
    ) -> Self {
        let keepalive = keepalive.map(|mut t| {
            t.heard(Instant::now());
            t
        });
        let phase = match &shared.io().out.state {
            Lifecycle::Open | Lifecycle::CloseSent => Lifecycle::Open,
            other => other.clone(),
        };
        ReadHalf {
            stream,
            receiver,
            role,
            keepalive,
            timeouts,
            phase,
            shared,
        }
    }

    /// Reads the next message, exactly like [`WebSocket::read`](crate::WebSocket::read):
    /// pings are answered and closes echoed through the shared writer, and the end of the
    /// connection is reported here (once).
    pub fn read(&mut self) -> Result<Message> {
        let mut halves = SplitHalves {
            stream: &mut self.stream,
            shared: &self.shared,
            phase: &mut self.phase,
            timeouts: self.timeouts.as_ref(),
        };
        read_message(
            &mut halves,
            &mut self.receiver,
            self.role,
            &mut self.keepalive,
        )
    }

    /// Reads the next message as a stream, exactly like
    /// [`WebSocket::read_stream`](crate::WebSocket::read_stream).
    pub fn read_stream(&mut self) -> Result<Streamed<'_>> {
        self.read_stream_within(None)
    }

    /// Reads one message as a stream within `max_size` bytes instead of the configured
    /// limits, exactly like
    /// [`WebSocket::read_stream_with_limit`](crate::WebSocket::read_stream_with_limit).
    pub fn read_stream_with_limit(&mut self, max_size: usize) -> Result<Streamed<'_>> {
        self.read_stream_within(Some(max_size as u64))
    }

    fn read_stream_within(&mut self, limit: Option<u64>) -> Result<Streamed<'_>> {
        let mut halves = SplitHalves {
            stream: &mut self.stream,
            shared: &self.shared,
            phase: &mut self.phase,
            timeouts: self.timeouts.as_ref(),
        };
        let got = read_stream_start(
            &mut halves,
            &mut self.receiver,
            self.role,
            &mut self.keepalive,
            limit,
        );
        match got? {
            Got::Message(message) => Ok(Streamed::Control(message)),
            Got::StreamStart { text } => Ok(Streamed::Message(MessageReader::new(self, text))),
        }
    }

    /// Whether `read` can still return messages.
    pub fn can_read(&self) -> bool {
        self.phase.is_reading()
    }

    /// Where the connection stands (see [`State`]); does not wait for a blocked writer.
    pub fn state(&self) -> State {
        match self.phase {
            Lifecycle::Open | Lifecycle::CloseSent => self.shared.state(),
            _ => State::Closed,
        }
    }

    /// The subprotocol the server chose in the opening handshake, like
    /// [`WebSocket::subprotocol`](crate::WebSocket::subprotocol).
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.negotiated.subprotocol()
    }

    /// The agreed permessage-deflate parameters, like
    /// [`WebSocket::deflate`](crate::WebSocket::deflate).
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(&self) -> Option<crate::DeflateParams> {
        self.shared.negotiated.deflate()
    }

    /// A writing half for this connection (the same as the one `split` returned).
    pub fn writer(&self) -> WriteHalf<W> {
        WriteHalf::new(Arc::clone(&self.shared))
    }

    /// The read stream.
    pub fn get_ref(&self) -> &R {
        &self.stream
    }
}

impl<R: Read + Socket, W: Write + Socket> ReadHalf<R, W> {
    /// Performs the whole closing handshake within `timeout`, like
    /// [`WebSocket::close_and_wait`](crate::WebSocket::close_and_wait): sends a close frame
    /// with `code` and `reason` through the shared writer (unless one was sent already),
    /// reads until the peer's close arrives (discarding data messages that come first), then
    /// shuts the socket down. Returns the peer's close frame. Other threads' sends fail with
    /// `AlreadyClosed` once the close is sent.
    ///
    /// Fails with an `Io` error of kind `TimedOut` if the peer's close does not arrive in
    /// time, or if a writer holds the connection (blocked on a full socket) until then; the
    /// socket is shut down either way, which wakes that writer.
    pub fn close_and_wait(
        &mut self,
        code: impl Into<CloseCode>,
        reason: &str,
        timeout: Duration,
    ) -> Result<Option<CloseFrame>> {
        let frame = CloseFrame::new(code, reason);
        frame.check_sendable()?;
        let deadline = Instant::now() + timeout;
        let saved = self.stream.read_timeout()?;
        let result = self.close_until(frame, deadline);
        let restored = self.stream.set_read_timeout(saved);
        let _ = self.stream.shutdown();
        self.shared.shutdown_quietly();
        let frame = result?;
        restored?;
        Ok(frame)
    }

    fn close_until(&mut self, frame: CloseFrame, deadline: Instant) -> Result<Option<CloseFrame>> {
        let remaining = || {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout means "block forever" to the OS: never pass it.
            (!left.is_zero()).then_some(left)
        };
        let timed_out = || Error::Io(std::io::ErrorKind::TimedOut.into());
        // The close goes out under the write lock, which a blocked writer may hold: try
        // until the deadline rather than wait past it.
        loop {
            if let Some(mut io) = self.shared.try_io() {
                let Some(left) = remaining() else {
                    return Err(timed_out());
                };
                io.stream.set_write_timeout(Some(left))?;
                self.shared.take_pong(&mut io);
                let Io { stream, out } = &mut *io;
                let sent = match out.state.is_open() {
                    true => WriteSide::new(stream, out).start_close(Some(frame)),
                    false => Ok(()),
                };
                self.shared.mirror(out);
                match sent {
                    Err(e) if !e.is_would_block() => return Err(e),
                    _ => break,
                }
            }
            if remaining().is_none() {
                return Err(timed_out());
            }
            thread::sleep(Duration::from_millis(1));
        }
        let mut peer_frame = None;
        loop {
            let Some(left) = remaining() else {
                return match peer_frame {
                    Some(frame) => Ok(frame),
                    None => Err(timed_out()),
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

impl<R: Read, W: Write> PayloadSource for ReadHalf<R, W> {
    fn read_payload(&mut self, dst: &mut [u8]) -> Result<Option<usize>> {
        let mut halves = SplitHalves {
            stream: &mut self.stream,
            shared: &self.shared,
            phase: &mut self.phase,
            timeouts: self.timeouts.as_ref(),
        };
        read_payload(&mut halves, &mut self.receiver, &mut self.keepalive, dst)
    }
}

struct SplitHalves<'a, R, W> {
    stream: &'a mut R,
    shared: &'a Shared<W>,
    phase: &'a mut Lifecycle,
    timeouts: Option<&'a ReadTimeout<R>>,
}

impl<R: Read, W: Write> Halves for SplitHalves<'_, R, W> {
    type R = R;

    fn reader(&mut self) -> &mut R {
        self.stream
    }

    fn lifecycle(&self) -> &Lifecycle {
        self.phase
    }

    fn on_ping(&mut self, payload: &[u8]) {
        {
            let mut owed = self.shared.owed();
            if owed.len() == MAX_OWED_PONGS {
                owed.pop_front();
            }
            owed.push_back(payload.to_vec());
        }
        self.shared.answer_owed_pong();
    }

    fn on_close(&mut self, frame: &Option<CloseFrame>) {
        // The one time the reader waits for the lock: the echo must go out, and a peer that
        // closes reads until it gets it, so a writer blocked on it will finish.
        let mut io = self.shared.io();
        let Io { stream, out } = &mut *io;
        WriteSide::new(stream, out).on_close(frame);
        self.shared.mirror(out);
        self.phase.peer_closed(frame);
    }

    fn fail(&mut self, error: Error) -> Error {
        match self.shared.try_io() {
            Some(mut io) => {
                let Io { stream, out } = &mut *io;
                WriteSide::new(stream, out).send_failure(failure_close(&error));
                out.state.end();
                self.shared.mirror(out);
            }
            // A writer is stuck: end the connection for it too.
            None => self.shared.shutdown_quietly(),
        }
        self.phase.end();
        error
    }

    fn end(&mut self, error: Error) -> Error {
        if let Some(mut io) = self.shared.try_io() {
            io.out.state.end();
            self.shared.mirror(&io.out);
        }
        self.phase.end();
        error
    }

    fn before_wait(&mut self) -> Result<()> {
        if let Some(mut io) = self.shared.try_io() {
            self.shared.settle(&mut io);
        }
        Ok(())
    }

    fn keep_alive(&mut self, timer: &mut Timer) -> Result<()> {
        // With a writer busy on the socket, try again at the next timeout.
        let Some(mut io) = self.shared.try_io() else {
            return Ok(());
        };
        let Io { stream, out } = &mut *io;
        let result = WriteSide::new(stream, out).keep_alive(timer, Instant::now());
        self.shared.mirror(out);
        if result.is_err() && out.state == Lifecycle::Ended {
            self.phase.end();
        }
        result
    }

    fn read_timeout(&self) -> Option<ReadTimeout<R>> {
        self.timeouts.cloned()
    }

    fn flush_close_reply(&mut self) -> Result<()> {
        let mut io = self.shared.io();
        let Io { stream, out } = &mut *io;
        WriteSide::new(stream, out).flush_queued()
    }

    fn report_closed(&mut self) -> Error {
        match self.phase.take_report() {
            Some(frame) => Error::ConnectionClosed(frame),
            None => Error::AlreadyClosed,
        }
    }
}

/// The writing half of a split connection: cheap to clone, usable from any thread. Every
/// call writes whole frames under the shared lock and flushes before returning.
#[derive(Debug)]
pub struct WriteHalf<W = SharedTcpStream> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for WriteHalf<W> {
    fn clone(&self) -> Self {
        WriteHalf {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<W: Write> WriteHalf<W> {
    pub(crate) fn new(shared: Arc<Shared<W>>) -> Self {
        WriteHalf { shared }
    }

    /// Runs `f` on the write side (after any pong the reader owes), then flushes.
    fn with(&self, f: impl FnOnce(&mut WriteSide<'_, W>) -> Result<()>) -> Result<()> {
        Self::with_shared(&self.shared, f)
    }

    fn with_shared(
        shared: &Shared<W>,
        f: impl FnOnce(&mut WriteSide<'_, W>) -> Result<()>,
    ) -> Result<()> {
        let result = {
            let mut io = shared.io();
            shared.take_pong(&mut io);
            let Io { stream, out } = &mut *io;
            let mut side = WriteSide::new(stream, out);
            let result = f(&mut side).and_then(|()| side.flush_queued());
            shared.mirror(out);
            result
        };
        // A ping read while we held the lock left its pong in the mailbox, and the reader
        // may now be blocked in `read`: answer it before leaving.
        shared.answer_owed_pong();
        result
    }

    /// Sends a message (a [`Message::Close`] starts the closing handshake). Fails with
    /// `AlreadyClosed` once the closing handshake has started or the connection ended.
    ///
    /// A data message waits while another thread sends a streamed one (see
    /// [`send_stream`](Self::send_stream)).
    pub fn send(&self, message: Message) -> Result<()> {
        let _turn = if message.is_data() {
            Some(self.shared.turn()?)
        } else {
            None
        };
        let mut message = message;
        self.with(|w| w.write(&mut message))
    }

    /// Sends a [`PreparedMessage`], like
    /// [`WebSocket::send_prepared`](crate::WebSocket::send_prepared).
    pub fn send_prepared(&self, message: &PreparedMessage) -> Result<()> {
        let _turn = self.shared.turn()?;
        self.with(|w| w.send_prepared(message))
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<()> {
        let _turn = self.shared.turn()?;
        self.with(|w| w.queue_data(OpCode::Text, text.as_bytes()))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<()> {
        let _turn = self.shared.turn()?;
        self.with(|w| w.queue_data(OpCode::Binary, data))
    }

    /// Starts sending one message as a stream, like
    /// [`WebSocket::send_stream`](crate::WebSocket::send_stream). Other threads' data
    /// messages wait until it is finished or dropped (or fail with `AlreadyClosed` if the
    /// connection closes meanwhile); pings, pongs and closes still go out between its
    /// fragments. A data message (or another stream) from the thread that holds the
    /// writer fails with `InvalidInput` until the writer is finished or dropped.
    pub fn send_stream(&self, kind: MessageKind) -> Result<MessageWriter<'_>> {
        let turn = self.shared.turn()?;
        let fragment = {
            let mut io = self.shared.io();
            let Io { stream, out } = &mut *io;
            WriteSide::new(stream, out).check_can_stream()?;
            out.fragment_size()
        };
        let sink = HalfSink {
            shared: &self.shared,
            _turn: turn,
        };
        Ok(MessageWriter::new(Box::new(sink), kind, fragment))
    }

    /// Sends a ping (at most 125 bytes); the reading half returns the pong.
    pub fn ping(&self, payload: &[u8]) -> Result<()> {
        self.with(|w| w.write_control(OpCode::Ping, payload))
    }

    /// Starts the closing handshake: sends a close frame with `code` and `reason`. The
    /// reading half keeps returning messages until the peer's close arrives.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let frame = CloseFrame::new(code, reason);
        self.with(|w| w.start_close(Some(frame)))
    }

    /// Whether messages can still be sent (does not wait for a writer that is blocked).
    pub fn can_write(&self) -> bool {
        self.shared.state() == State::Open
    }

    /// Where the connection stands (see [`State`]); does not wait for a blocked writer.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// The subprotocol the server chose in the opening handshake, like
    /// [`WebSocket::subprotocol`](crate::WebSocket::subprotocol).
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.negotiated.subprotocol()
    }

    /// The agreed permessage-deflate parameters, like
    /// [`WebSocket::deflate`](crate::WebSocket::deflate).
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(&self) -> Option<crate::DeflateParams> {
        self.shared.negotiated.deflate()
    }

    /// The TCP socket both halves use, for its timeouts and options, when the connection
    /// was split with [`WebSocket::split`](crate::WebSocket::split) (`None` after
    /// [`split_with`](crate::WebSocket::split_with), whose stream only the lock reaches).
    /// Does not wait for a blocked writer.
    ///
    /// ```no_run
    /// # fn demo(ws: stdws::WebSocket<std::net::TcpStream>) -> stdws::Result<()> {
    /// let (_reader, writer) = ws.split()?;
    /// if let Some(socket) = writer.socket() {
    ///     socket.set_write_timeout(Some(std::time::Duration::from_secs(5)))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn socket(&self) -> Option<&std::net::TcpStream> {
        self.shared.handle.as_deref()
    }
}

/// What [`WriteHalf::drain_prepared`] left.
#[derive(Debug)]
pub(crate) enum Drained {
    /// Everything queued went to the stream.
    Flushed,
    /// The stream took only part (`WouldBlock`, `TimedOut`); this many bytes stay queued.
    Blocked(usize),
    /// A streamed message is half sent: nothing was taken; try again later.
    Busy,
}

impl<W: Write> WriteHalf<W> {
    /// For [`Fanout`](crate::Fanout): with the write lock held, queues the prepared messages
    /// `take` hands over (called only if they can go now, so none is lost or reordered) and
    /// writes out what the stream takes. An error means the connection is over.
    pub(crate) fn drain_prepared(
        &self,
        take: impl FnOnce() -> Vec<PreparedMessage>,
    ) -> Result<Drained> {
        let result = {
            let mut io = self.shared.io();
            self.shared.take_pong(&mut io);
            let Io { stream, out } = &mut *io;
            let result = match out.writable() {
                Ok(true) if out.check_not_streaming().is_err() => Ok(Drained::Busy),
                Ok(true) => {
                    for message in take() {
                        out.queue_prepared(&message);
                    }
                    match WriteSide::new(stream, out).flush_queued() {
                        Ok(()) => Ok(Drained::Flushed),
                        Err(e) if e.is_would_block() => Ok(Drained::Blocked(out.sender.pending())),
                        Err(e) => Err(e),
                    }
                }
                Ok(false) => Err(Error::AlreadyClosed),
                Err(e) => Err(e),
            };
            self.shared.mirror(out);
            result
        };
        self.shared.answer_owed_pong();
        result
    }
}

impl<W: Write + Socket> WriteHalf<W> {
    /// For [`Fanout`](crate::Fanout): ends a subscriber that fell too far behind without
    /// waiting for anything: queues a close frame with `frame` if the write lock is free
    /// (it goes out only if the peer reads again), marks the connection ended, and shuts the
    /// socket down, which wakes the reading half.
    pub(crate) fn cut(&self, frame: &CloseFrame) {
        if let Some(mut io) = self.shared.try_io() {
            let mut body = Vec::new();
            frame.encode(&mut body);
            io.out.queue_failure(Some(body));
            io.out.state.end();
            self.shared.mirror(&io.out);
            if self.shared.control.is_none() {
                let _ = io.stream.shutdown();
            }
        }
        self.shared.shutdown_quietly();
    }

    /// For [`GracefulShutdown`](crate::GracefulShutdown): sends a close frame if no writer holds the lock,
    /// waiting at most `wait` for room in the socket buffer (the write timeout is set to it).
    /// Returns `false` when a writer held the lock (nothing was done: try again later).
    pub(crate) fn close_nowait(&self, code: CloseCode, reason: &str, wait: Duration) -> bool {
        let Some(mut io) = self.shared.try_io() else {
            return false;
        };
        let _ = io.stream.set_write_timeout(Some(wait));
        self.shared.take_pong(&mut io);
        let Io { stream, out } = &mut *io;
        if out.state.is_open() {
            let _ = WriteSide::new(stream, out).start_close(Some(CloseFrame::new(code, reason)));
        }
        self.shared.mirror(out);
        true
    }

    /// Sets the write stream's write timeout (under the lock).
    pub(crate) fn set_write_timeout(&self, timeout: Option<std::time::Duration>) -> Result<()> {
        Ok(self.shared.io().stream.set_write_timeout(timeout)?)
    }
}

/// The turn to send a data message (see `Shared::turn`), given back when dropped.
struct Turn<'a, W> {
    shared: &'a Shared<W>,
}

impl<W> Drop for Turn<'_, W> {
    fn drop(&mut self) {
        *self
            .shared
            .turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.shared.turn_free.notify_all();
    }
}

/// A [`WriteHalf`] as the sink of a [`MessageWriter`]: holds the turn to send a data
/// message (given back when the writer is finished or dropped, after its last frame), and
/// the write lock one frame at a time.
struct HalfSink<'a, W> {
    shared: &'a Shared<W>,
    _turn: Turn<'a, W>,
}

impl<W: Write> HalfSink<'_, W> {
    fn with(&self, f: impl FnOnce(&mut WriteSide<'_, W>) -> Result<()>) -> Result<()> {
        WriteHalf::with_shared(self.shared, f)
    }
}

impl<W: Write> FrameSink for HalfSink<'_, W> {
    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<()> {
        self.with(|w| w.queue_fragment(opcode, fin, payload))
    }
    fn flush(&mut self) -> Result<()> {
        self.with(|_| Ok(()))
    }
    fn abandon(&mut self) {
        let _ = self.with(|w| {
            w.abandon_message();
            Ok(())
        });
    }
}

impl<W: Write + Socket> WriteHalf<W> {
    /// Shuts the socket down in both directions, waking a reading half blocked in `read`
    /// and a writer blocked in a send. Use it after [`close`](Self::close) when the peer
    /// does not answer in time. Does not wait for a blocked writer when the connection was
    /// split with [`WebSocket::split`](crate::WebSocket::split).
    pub fn shutdown(&self) -> Result<()> {
        match &self.shared.control {
            Some(control) => Ok(control.shutdown()?),
            None => Ok(self.shared.io().stream.shutdown()?),
        }
    }
}
