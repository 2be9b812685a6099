//! The send side of the protocol core (RFC 6455 §5.5, §7): the connection's state and every
//! frame this endpoint queues — messages, automatic pongs, close replies, the close frame
//! that fails a connection, keep-alive pings — with permessage-deflate applied.
//!
//! Pure: [`Outgoing`] only queues bytes in its [`Sender`]; it names no stream and no clock.
//! The blocking driver (`driver.rs`) writes the queue out, writes large payloads through
//! without copying them, and decides when to flush. A [`WebSocket`](crate::WebSocket) holds
//! one `Outgoing`; the halves of a split connection share one behind a mutex, so a pong from
//! the reading thread never interleaves with a frame from a writing thread.

use crate::close::{CloseFrame, MAX_REASON_LEN};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD};
use crate::prepared::PreparedMessage;
use crate::sender::{Segment, Sender};
use crate::state::Lifecycle;
use std::sync::Arc;
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub sender: Sender,
    pub state: Lifecycle,
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

/// Prepared frames up to this size are copied into the queue rather than referenced.
const PREPARED_COPY_MAX: usize = 512;

impl Outgoing {
    pub fn new(sender: Sender, config: &Config) -> Outgoing {
        Outgoing {
            sender,
            state: Lifecycle::Open,
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
        if self.state.is_open() {
            self.sender.frame(OpCode::Pong, true, payload);
        }
    }

    /// Answers the peer's close frame by echoing its status code (RFC 6455 §5.5.1), or an
    /// empty body for an empty close, unless we sent ours already. The closing handshake is
    /// then complete. Returns whether a reply was queued (the driver writes it out).
    pub fn on_close(&mut self, frame: &Option<CloseFrame>) -> bool {
        let reply = self.state.is_open();
        if reply {
            let body = frame.as_ref().map(|f| f.code.as_u16().to_be_bytes());
            let body = body.as_ref().map_or(&[][..], |b| &b[..]);
            self.sender.frame(OpCode::Close, true, body);
        }
        self.state.peer_closed(frame);
        reply
    }

    /// Queues the close frame of a failure (see [`failure_close`]) if no close was sent
    /// yet. Returns whether one was queued.
    pub fn queue_failure(&mut self, body: Option<Vec<u8>>) -> bool {
        match (self.state.is_open(), body) {
            (true, Some(body)) => {
                self.sender.frame(OpCode::Close, true, &body);
                true
            }
            _ => false,
        }
    }

    /// Fails the connection: queues the close frame of `error` (see [`failure_close`]) unless
    /// a close was sent already, and ends with it as the report.
    pub fn fail(&mut self, error: Error) -> Error {
        self.queue_failure(failure_close(&error));
        self.end(error)
    }

    /// Ends the connection with `error` as its report.
    pub fn end(&mut self, error: Error) -> Error {
        self.state.end();
        error
    }

    /// Whether sending is allowed: `Ok(true)` if open, `Ok(false)` if the closing handshake
    /// finished and its end is still to be reported by this call (an unsplit connection),
    /// `Err(AlreadyClosed)` otherwise.
    #[inline(always)]
    pub fn writable(&self) -> Result<bool> {
        match &self.state {
            Lifecycle::Open => Ok(true),
            Lifecycle::Closed(_) if !self.split => Ok(false),
            Lifecycle::Closed(_) | Lifecycle::CloseSent | Lifecycle::Ended => {
                Err(Error::AlreadyClosed)
            }
        }
    }

    /// The report of the completed closing handshake, once; then the connection has ended.
    pub fn take_closed_report(&mut self) -> Error {
        match self.state.take_report() {
            Some(frame) => Error::ConnectionClosed(frame),
            None => Error::AlreadyClosed,
        }
    }

    /// Whether more than `max_write_buffer_size` bytes are queued.
    #[inline(always)]
    pub fn over_limit(&self) -> bool {
        self.sender.pending() > self.max_write_buffer_size
    }

    /// Whether the queue holds `write_buffer_size` bytes and should be written out.
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.sender.pending() >= self.write_buffer_size
    }

    /// Frames with at least this many payload bytes are written through (see
    /// `driver::message_to`) rather than copied into the queue.
    #[inline(always)]
    pub fn direct_min(&self) -> usize {
        self.write_buffer_size.max(1)
    }

    /// Whether a payload of `len` bytes is masked in place when the caller gives it up: a
    /// client's payloads that are written through.
    #[inline(always)]
    pub fn masks_in_place(&self, len: usize) -> bool {
        self.sender.masks() && len >= self.write_buffer_size
    }

    /// Checks that a data message may start now (no streamed message is half sent).
    #[inline(always)]
    pub fn check_not_streaming(&self) -> Result<()> {
        if self.streaming {
            return Err(Error::InvalidInput(
                "a streamed message is unfinished (its MessageWriter was leaked)",
            ));
        }
        Ok(())
    }

    /// Records whether a streamed message is partly sent.
    pub fn set_streaming(&mut self, on: bool) {
        self.streaming = on;
    }

    /// A streamed message was abandoned after some of its frames went out: it cannot be
    /// taken back, so the connection is closed (1011) rather than leave the peer waiting
    /// for its end or take a truncated message for a whole one. Returns whether a close
    /// frame was queued.
    pub fn abandon_message(&mut self) -> bool {
        std::mem::take(&mut self.streaming)
            && matches!(self.start_close(Some(abandoned_close())), Ok(true))
    }

    /// Queues a ping or pong (the caller checked its payload with
    /// [`check_control_payload`] and that the connection is writable).
    pub fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        self.sender.frame(opcode, true, payload);
    }

    /// Queues a close frame (once) and moves to `CloseSent`. Returns whether one was queued
    /// now (the driver writes it out).
    pub fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<bool> {
        match self.state {
            Lifecycle::Open => {}
            Lifecycle::CloseSent | Lifecycle::Closed(_) => return Ok(false),
            Lifecycle::Ended => return Err(Error::AlreadyClosed),
        }
        let mut body = Vec::new();
        if let Some(frame) = &frame {
            frame.check_sendable()?;
            frame.encode(&mut body);
        }
        self.sender.frame(OpCode::Close, true, &body);
        self.state.close_sent();
        Ok(true)
    }

    /// Queues a prepared message (the caller checked that a data message may be queued): a
    /// server queues a reference to its frame (a copy of a small one), a client frames and
    /// masks the payload.
    pub fn queue_prepared(&mut self, message: &PreparedMessage) {
        if self.sender.masks() {
            self.sender.message(message.opcode(), 0, message.payload());
        } else if message.server_frame().len() <= PREPARED_COPY_MAX {
            // Small frames are copied: cheaper than a reference, and they go out in one
            // write with whatever else is queued.
            self.sender.push_bytes(message.server_frame());
        } else {
            let frame = Arc::clone(message.server_frame());
            self.sender.push_segment(Segment::Shared(frame));
        }
    }

    /// Compresses a data message's payload if permessage-deflate was negotiated and the
    /// compressor takes it: returns the compressed bytes in a buffer to hand back with
    /// [`return_scratch`](Self::return_scratch) once sent.
    #[cfg(feature = "deflate")]
    #[inline]
    pub fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let deflate = self.deflate.as_mut()?;
        let mut compressed = std::mem::take(&mut deflate.scratch);
        compressed.clear();
        if deflate.compressor.compress(payload, &mut compressed) {
            Some(compressed)
        } else {
            deflate.scratch = compressed;
            None
        }
    }

    /// Whether outgoing messages may be compressed (permessage-deflate was negotiated).
    #[cfg(feature = "deflate")]
    pub fn compresses(&self) -> bool {
        self.deflate.is_some()
    }

    /// Keeps the compression buffer for the next message (unless it grew large).
    #[cfg(feature = "deflate")]
    pub fn return_scratch(&mut self, compressed: Vec<u8>) {
        if compressed.capacity() <= KEEP_SCRATCH {
            if let Some(deflate) = &mut self.deflate {
                deflate.scratch = compressed;
            }
        }
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
}

/// A ping or pong payload must fit in a control frame (RFC 6455 §5.5: 125 bytes).
pub(crate) fn check_control_payload(payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(Error::InvalidInput(
            "control frame payload longer than 125 bytes",
        ));
    }
    Ok(())
}

/// The close frame sent when a streamed message is abandoned half sent.
pub(crate) fn abandoned_close() -> CloseFrame {
    CloseFrame::new(crate::close::CloseCode::INTERNAL_ERROR, "message abandoned")
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
