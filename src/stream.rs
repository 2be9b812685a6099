//! Messages as byte streams (RFC 6455 §5.4 fragmentation): [`MessageReader`] hands a
//! message's payload to the application as its frames arrive, [`MessageWriter`] sends one
//! as fragments while the application produces it. Neither ever holds the whole message, so
//! messages far larger than memory can be copied to or from a file with `std::io::copy`.

use std::io::{self, ErrorKind, Read, Write};

use crate::error::{Error, Result};
use crate::frame::OpCode;
use crate::message::Message;
use crate::utf8::Utf8Validator;

/// Fragment size of a [`MessageWriter`] when [`Config::fragment_size`](crate::Config) is
/// not set.
pub const DEFAULT_STREAM_FRAGMENT: usize = 64 << 10;

/// Whether a data message is text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

impl MessageKind {
    fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// What [`WebSocket::read_stream`](crate::WebSocket::read_stream) returns: the start of a
/// data message to read as a stream, or a control message (handled as
/// [`read`](crate::WebSocket::read) handles it: pings are answered, a close is echoed).
#[derive(Debug)]
pub enum Streamed<'a> {
    /// A text or binary message: read its payload from this reader.
    Message(MessageReader<'a>),
    /// A ping, pong or close that arrived before the next data message.
    Control(Message),
}

/// The payload of one incoming message, yielded as its frames arrive ([`Read`]).
///
/// `read` returns payload bytes, then `Ok(0)` once the message's last frame has been read.
/// Text is validated as it arrives: what `read` returns is valid UTF-8, except that it may
/// end inside a character that the next bytes complete; an invalid sequence fails the
/// connection (close code 1007) and `read` returns an `InvalidData` error. The message and
/// frame size limits of [`Config`](crate::Config) still apply (raise
/// `max_message_size` for huge streams, or read one message with
/// [`read_stream_with_limit`](crate::WebSocket::read_stream_with_limit)). Pings that arrive between the message's frames are
/// answered; a close in the middle of the message is echoed and `read` fails with
/// `UnexpectedEof` (the connection's next `read` reports the close).
///
/// Errors are [`io::Error`]s: a `WouldBlock`/`TimedOut` from the stream is passed through and
/// the next `read` continues where it stopped; other failures carry the [`Error`] inside
/// (`e.get_ref()` and `downcast_ref::<stdws::Error>()`). After a failure `read` keeps
/// failing, so a copy loop never mistakes a broken message for a complete one.
///
/// Dropping the reader before the end is fine: the rest of the message is read (and still
/// validated) and discarded by the connection's next `read`.
///
/// Large reads (a buffer at least [`Config::read_buffer_size`](crate::Config) long) take
/// payload from the stream straight into the caller's buffer, with no copy and no
/// allocation.
pub struct MessageReader<'a> {
    source: &'a mut (dyn PayloadSource + 'a),
    kind: MessageKind,
    state: ReaderState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    Reading,
    Done,
    Failed,
}

impl std::fmt::Debug for MessageReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader")
            .field("kind", &self.kind)
            .field("state", &self.state)
            .finish()
    }
}

impl<'a> MessageReader<'a> {
    pub(crate) fn new(source: &'a mut (dyn PayloadSource + 'a), text: bool) -> Self {
        let kind = if text {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        MessageReader {
            source,
            kind,
            state: ReaderState::Reading,
        }
    }

    /// Whether the message is text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Whether the message is text.
    pub fn is_text(&self) -> bool {
        self.kind == MessageKind::Text
    }

    /// Whether the whole message has been read.
    pub fn is_done(&self) -> bool {
        self.state == ReaderState::Done
    }
}

impl Read for MessageReader<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match self.state {
            ReaderState::Reading => {}
            ReaderState::Done => return Ok(0),
            ReaderState::Failed => {
                return Err(io::Error::new(
                    ErrorKind::BrokenPipe,
                    "the message cannot be read to its end: its connection failed",
                ))
            }
        }
        if dst.is_empty() {
            return Ok(0);
        }
        match self.source.read_payload(dst) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                self.state = ReaderState::Done;
                Ok(0)
            }
            Err(Error::Io(e)) if crate::error::is_retryable(e.kind()) => Err(e),
            Err(e) => {
                self.state = ReaderState::Failed;
                Err(into_io(e))
            }
        }
    }
}

/// The connection behind a [`MessageReader`].
pub(crate) trait PayloadSource {
    /// The streamed message's next payload bytes (`None` at its end).
    fn read_payload(&mut self, dst: &mut [u8]) -> Result<Option<usize>>;
}

/// An error for `Read`/`Write` callers: I/O errors as they were, anything else wrapped with
/// the kind that fits it.
pub(crate) fn into_io(error: Error) -> io::Error {
    let kind = match &error {
        Error::Io(_) => match error {
            Error::Io(e) => return e,
            _ => unreachable!(),
        },
        Error::Protocol(_) | Error::Utf8 | Error::Capacity(_) => ErrorKind::InvalidData,
        Error::AbnormalClosure => ErrorKind::UnexpectedEof,
        Error::InvalidInput(_) => ErrorKind::InvalidInput,
        Error::ConnectionClosed(_) | Error::AlreadyClosed => ErrorKind::NotConnected,
        _ => ErrorKind::Other,
    };
    io::Error::new(kind, error)
}

/// Sends one message as fragments while the application writes it ([`Write`]).
///
/// Bytes are collected into fragments of [`Config::fragment_size`](crate::Config) (64 KiB
/// if unset); each full fragment goes out as one frame (a server writes large `write`
/// calls straight from the caller's buffer). [`finish`](Self::finish) sends the last
/// fragment with the FIN bit. `flush` sends what is collected as a fragment and flushes the
/// stream. A text writer checks that its bytes are UTF-8 (a character may be split across
/// `write` calls): a `write` with an invalid byte fails with `InvalidData` and takes
/// nothing.
///
/// # Dropped unfinished
/// If no fragment has gone out yet, the message is abandoned without trace. Otherwise it
/// cannot be taken back (RFC 6455 has no way to cancel a fragmented message), so the
/// connection is closed with code 1011 and later sends fail with `AlreadyClosed`: the peer
/// never takes a truncated message for a complete one.
pub struct MessageWriter<'a> {
    sink: Box<dyn FrameSink + 'a>,
    /// `Text`/`Binary` for the first frame, `Continuation` afterwards.
    opcode: OpCode,
    buf: Vec<u8>,
    fragment: usize,
    utf8: Option<Utf8Validator>,
    finished: bool,
}

impl std::fmt::Debug for MessageWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("opcode", &self.opcode)
            .field("buffered", &self.buf.len())
            .field("fragment", &self.fragment)
            .finish()
    }
}

impl<'a> MessageWriter<'a> {
    pub(crate) fn new(
        sink: Box<dyn FrameSink + 'a>,
        kind: MessageKind,
        fragment: Option<usize>,
    ) -> Self {
        let fragment = fragment
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_STREAM_FRAGMENT);
        MessageWriter {
            sink,
            opcode: kind.opcode(),
            buf: Vec::new(),
            fragment,
            utf8: (kind == MessageKind::Text).then(Utf8Validator::default),
            finished: false,
        }
    }

    /// Sends the last fragment (FIN) and flushes. Fails with `InvalidInput` if a text
    /// message ends inside a character (the writer is then dropped unfinished, see above).
    /// A `WouldBlock`/`TimedOut` error means the end of the message is queued: flush the
    /// connection later.
    pub fn finish(mut self) -> Result<()> {
        if let Some(utf8) = &mut self.utf8 {
            utf8.finish()
                .map_err(|_| Error::InvalidInput("text message ends inside a character"))?;
        }
        let last = std::mem::take(&mut self.buf);
        self.send(&last, true)?;
        self.finished = true;
        self.sink.flush()
    }

    /// Sends `payload` as the message's next frame.
    fn send(&mut self, payload: &[u8], fin: bool) -> Result<()> {
        self.sink.frame(self.opcode, fin, payload)?;
        self.opcode = OpCode::Continuation;
        Ok(())
    }

    /// Sends the collected bytes as a (non-final) fragment; on failure they stay collected.
    fn send_buffered(&mut self) -> io::Result<()> {
        let buffered = std::mem::take(&mut self.buf);
        let sent = self.send(&buffered, false);
        self.buf = buffered;
        sent.map_err(into_io)?;
        self.buf.clear();
        Ok(())
    }

    /// Checks that `bytes` continue the text (binary: always); commits only on success.
    fn check_text(&self, bytes: &[u8]) -> io::Result<Option<Utf8Validator>> {
        match self.utf8 {
            None => Ok(None),
            Some(mut utf8) => match utf8.push(bytes) {
                Ok(()) => Ok(Some(utf8)),
                Err(_) => Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "text message bytes are not valid UTF-8",
                )),
            },
        }
    }
}

impl Write for MessageWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full fragment waits until more bytes come, so that `finish` can send it with
        // FIN instead of an empty last frame.
        if self.buf.len() == self.fragment {
            self.send_buffered()?;
        }
        if self.buf.is_empty() && data.len() > self.fragment {
            let chunk = &data[..self.fragment];
            let utf8 = self.check_text(chunk)?;
            self.send(chunk, false).map_err(into_io)?;
            self.utf8 = utf8;
            return Ok(chunk.len());
        }
        let n = (self.fragment - self.buf.len()).min(data.len());
        self.utf8 = self.check_text(&data[..n])?;
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send_buffered()?;
        }
        self.sink.flush().map_err(into_io)
    }
}

impl Drop for MessageWriter<'_> {
    fn drop(&mut self) {
        if !self.finished && self.opcode == OpCode::Continuation {
            self.sink.abandon();
        }
    }
}

/// The connection behind a [`MessageWriter`].
pub(crate) trait FrameSink {
    /// Queues one frame of the message (writing it out as `send` would).
    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<()>;
    /// Writes out what is queued.
    fn flush(&mut self) -> Result<()>;
    /// The writer was dropped after some fragments went out: close the connection.
    fn abandon(&mut self);
}
