//! A connection split for two threads: a [`ReadHalf`] that reads, and a cloneable
//! [`WriteHalf`] that sends.
//!
//! The write stream and the connection state sit behind one mutex. The reading half takes it
//! only to answer pings and closes, to write out queued bytes before it waits for input,
//! and to record how the connection ended; it never holds it while blocked in a read. Every
//! send holds it for whole frames, so bytes of two frames never interleave.
//!
//! Who closes, and how the other half learns of it:
//! - A writer calls [`WriteHalf::close`]: the close frame goes out, later sends fail with
//!   `AlreadyClosed`, and the reader keeps returning messages until the peer's close arrives
//!   ([`Message::Close`], then `ConnectionClosed`).
//! - The peer closes: the reader answers it and returns [`Message::Close`]; sends fail with
//!   `AlreadyClosed` from then on.
//! - Nobody answers: [`WriteHalf::shutdown`] shuts the socket down, which wakes a reader
//!   blocked in `read` (it returns `AbnormalClosure`, or `ConnectionClosed` if the closing
//!   handshake had finished). Keep-alive (see [`Config::keepalive`](crate::Config)) and
//!   read timeouts bound how long a reader waits on a silent peer.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::close::{CloseCode, CloseFrame};
use crate::error::Result;
use crate::frame::OpCode;
use crate::keepalive::Timer;
use crate::message::Message;
use crate::outgoing::{Outgoing, State};
use crate::receiver::Receiver;
use crate::socket::Socket;
use crate::websocket::{read_message, Halves, Role};

/// The write stream and the connection state, shared by both halves.
#[derive(Debug)]
pub(crate) struct Shared<W> {
    pub stream: W,
    pub out: Outgoing,
}

/// Locks the shared side. A thread that panicked while holding the lock left at worst a
/// partly queued frame; the connection state is still meaningful, so carry on.
fn lock<W>(shared: &Mutex<Shared<W>>) -> MutexGuard<'_, Shared<W>> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reading half of a split connection (see [`WebSocket::split`](crate::WebSocket::split)).
#[derive(Debug)]
pub struct ReadHalf<R, W> {
    stream: R,
    receiver: Receiver,
    role: Role,
    keepalive: Option<Timer>,
    shared: Arc<Mutex<Shared<W>>>,
}

impl<R: Read, W: Write> ReadHalf<R, W> {
    pub(crate) fn new(
        stream: R,
        receiver: Receiver,
        role: Role,
        keepalive: Option<Timer>,
        shared: Arc<Mutex<Shared<W>>>,
    ) -> Self {
        let keepalive = keepalive.map(|mut t| {
            t.heard(Instant::now());
            t
        });
        ReadHalf {
            stream,
            receiver,
            role,
            keepalive,
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
        };
        read_message(
            &mut halves,
            &mut self.receiver,
            self.role,
            &mut self.keepalive,
        )
    }

    /// Whether `read` can still return messages.
    pub fn can_read(&self) -> bool {
        matches!(lock(&self.shared).out.state, State::Open | State::CloseSent)
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

struct SplitHalves<'a, R, W> {
    stream: &'a mut R,
    shared: &'a Mutex<Shared<W>>,
}

impl<R: Read, W: Write> Halves for SplitHalves<'_, R, W> {
    type R = R;
    type W = W;
    fn reader(&mut self) -> &mut R {
        self.stream
    }
    fn writer<X>(&mut self, f: impl FnOnce(&mut W, &mut Outgoing) -> X) -> X {
        let mut guard = lock(self.shared);
        let shared = &mut *guard;
        f(&mut shared.stream, &mut shared.out)
    }
}

/// The writing half of a split connection: cheap to clone, usable from any thread. Every
/// call writes whole frames under the shared lock and flushes before returning.
#[derive(Debug)]
pub struct WriteHalf<W> {
    shared: Arc<Mutex<Shared<W>>>,
}

impl<W> Clone for WriteHalf<W> {
    fn clone(&self) -> Self {
        WriteHalf {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<W: Write> WriteHalf<W> {
    pub(crate) fn new(shared: Arc<Mutex<Shared<W>>>) -> Self {
        WriteHalf { shared }
    }

    /// Runs `f` on the write side, then flushes.
    fn with(&self, f: impl FnOnce(&mut W, &mut Outgoing) -> Result<()>) -> Result<()> {
        let mut guard = lock(&self.shared);
        let Shared { stream, out } = &mut *guard;
        f(stream, out)?;
        out.flush_queued(stream)
    }

    /// Sends a message (a [`Message::Close`] starts the closing handshake). Fails with
    /// `AlreadyClosed` once the closing handshake has started or the connection ended.
    pub fn send(&self, message: Message) -> Result<()> {
        self.with(|stream, out| out.write(stream, &message))
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.with(|stream, out| out.queue_data(stream, OpCode::Text, text.as_bytes()))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: &[u8]) -> Result<()> {
        self.with(|stream, out| out.queue_data(stream, OpCode::Binary, data))
    }

    /// Sends a ping (at most 125 bytes); the reading half returns the pong.
    pub fn ping(&self, payload: &[u8]) -> Result<()> {
        self.with(|stream, out| out.write_control(stream, OpCode::Ping, payload))
    }

    /// Starts the closing handshake: sends a close frame with `code` and `reason`. The
    /// reading half keeps returning messages until the peer's close arrives.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let frame = CloseFrame::new(code, reason);
        self.with(|stream, out| out.start_close(stream, Some(frame)))
    }

    /// Whether messages can still be sent.
    pub fn can_write(&self) -> bool {
        lock(&self.shared).out.state == State::Open
    }
}

impl<W: Write + Socket> WriteHalf<W> {
    /// Shuts the socket down in both directions, waking a reading half blocked in `read`.
    /// Use it after [`close`](Self::close) when the peer does not answer in time.
    pub fn shutdown(&self) -> Result<()> {
        Ok(lock(&self.shared).stream.shutdown()?)
    }
}
