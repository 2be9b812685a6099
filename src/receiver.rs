//! Incoming bytes to messages (RFC 6455 §5.2-5.6): frame checks, unmasking, reassembly of
//! fragments and fail-fast UTF-8 validation.
//!
//! Pure: no stream, no clock. The driver asks [`Receiver::read_buf`] where the next bytes go,
//! reads into it, reports the count with [`Receiver::filled`], then calls [`Receiver::poll`]
//! (or [`Receiver::poll_payload`] for a streamed message) until it says more input is needed.
//!
//! The read buffer rests at `Config::read_buffer_size`. Payload bytes are unmasked,
//! validated and moved into the message as soon as they are in the buffer, so the buffer
//! never has to hold a whole frame; only a frame header and a control frame (at most
//! 14 + 125 bytes) must ever fit in it at once. During a burst of small frames (a read that
//! fills all the room it was given) the buffer doubles, up to 64 KiB (a resting size above
//! that does not grow), and it shrinks back to its resting size after the first short read. A large binary payload is read straight
//! into the message instead. A connection holds no read buffer at all while it waits: the
//! buffer goes when a read times out with nothing buffered, and when a ping or pong was all
//! a short read brought (keep-alive traffic, which would otherwise keep an idle connection's
//! buffer from one ping to the next). Nothing is reserved from a frame's declared length: the message
//! grows as its bytes arrive. All state lives in the struct, so a read that fails with
//! `WouldBlock` loses nothing and the next call continues mid-frame.

use crate::close::{parse_close_payload, CloseFrame};
use crate::config::Config;
use crate::error::{CapacityError, Error, ProtocolError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::utf8::{TextBuilder, Utf8Validator};

#[cfg(feature = "deflate")]
use crate::deflate::{Decompressor, InflateError};

/// Smallest read buffer: a header plus a whole control frame must fit.
const MIN_BUFFER: usize = 256;

/// The read buffer grows up to this during bursts (see [`Receiver::read_buf`]).
const MAX_BUFFER: usize = 64 << 10;

/// Whether the last read filled all the room it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastRead {
    Full,
    Short,
}
const _: () = assert!(MIN_BUFFER >= MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD);

/// What one call to [`Receiver::poll`] produced.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A complete text or binary message.
    Data(Message),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseFrame>),
    /// A streamed message begins (see [`Receiver::stream_next`]).
    StreamStart {
        text: bool,
    },
}

/// What [`Receiver::poll_payload`] produced for a streamed message.
#[derive(Debug)]
pub(crate) enum Payload {
    /// This many payload bytes were copied to the caller's buffer.
    Bytes(usize),
    /// The message is complete.
    End,
    /// A ping, pong or close arrived between two of the message's frames.
    Control(Incoming),
    /// More input is needed.
    NeedMore,
}

/// What parsing the next frame header gave.
enum Next {
    /// A data frame started; its payload follows.
    Frame,
    Incoming(Incoming),
    NeedMore,
}

/// A data frame whose payload is still arriving.
#[derive(Debug)]
struct DataFrame {
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes already consumed, for the mask's phase.
    offset: usize,
}

/// A message being reassembled.
#[derive(Debug)]
enum Partial {
    Text(TextBuilder),
    /// `data[..len]` is the message so far; `data[len..]` is zeroed room that large payloads
    /// are read into directly (kept across short reads so no byte is zeroed twice).
    Binary {
        data: Vec<u8>,
        len: usize,
    },
    /// A message handed to the application piece by piece (or discarded, if it dropped the
    /// reader): only validated and counted.
    Stream(StreamState),
    /// A compressed message (permessage-deflate): its payload is inflated into `data`, and
    /// text is validated as it is inflated.
    #[cfg(feature = "deflate")]
    Inflating {
        data: Vec<u8>,
        utf8: Option<Utf8Validator>,
    },
}

impl Partial {
    /// Whether this is a compressed message (its length counts inflated bytes).
    fn compressed(&self) -> bool {
        match self {
            Partial::Stream(s) => s.compressed,
            #[cfg(feature = "deflate")]
            Partial::Inflating { .. } => true,
            _ => false,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Partial::Text(t) => t.len() as u64,
            Partial::Binary { len, .. } => *len as u64,
            Partial::Stream(s) => s.len,
            #[cfg(feature = "deflate")]
            Partial::Inflating { data, .. } => data.len() as u64,
        }
    }
}

/// A streamed message's state: its length so far (for the size limit) and, for text, the
/// UTF-8 validation state.
#[derive(Debug)]
struct StreamState {
    utf8: Option<Utf8Validator>,
    len: u64,
    max: u64,
    /// The largest frame accepted in this message.
    max_frame: u64,
    /// The message is compressed: its payload goes through the inflater.
    compressed: bool,
    /// A compressed message's last frame was inflated; what it produced is being handed out.
    ending: bool,
}

impl StreamState {
    /// Accounts for (and validates) unmasked payload bytes.
    #[inline]
    fn take(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.len += bytes.len() as u64;
        if self.len > self.max {
            return Err(CapacityError::MessageTooLarge {
                size: self.len,
                max: self.max as usize,
            }
            .into());
        }
        match &mut self.utf8 {
            Some(utf8) => utf8.push(bytes).map_err(|_| Error::Utf8),
            None => Ok(()),
        }
    }
}

impl DataFrame {
    /// Unmasks the frame's next payload bytes and counts them as consumed.
    #[inline(always)]
    fn take(&mut self, bytes: &mut [u8]) {
        if let Some(key) = self.mask {
            apply_mask(bytes, key, self.offset);
        }
        self.offset += bytes.len();
        self.remaining -= bytes.len() as u64;
    }
}

/// Unmasks payload bytes of a streamed message's frame, then accounts for them.
fn take_payload(
    frame: &mut DataFrame,
    stream: &mut StreamState,
    bytes: &mut [u8],
) -> Result<(), Error> {
    frame.take(bytes);
    stream.take(bytes)
}

/// A binary message's first allocation is at most this, however large its frame claims to
/// be; it then grows at most by doubling as bytes arrive.
const INITIAL_CAPACITY: usize = 64 << 10;

/// Largest allocation kept for reuse between messages (see [`Receiver::recycle`]).
const MAX_SPARE: usize = 64 << 10;

#[derive(Debug)]
pub(crate) struct Receiver {
    /// Server role: frames must be masked. Client role: frames must not be.
    expect_masked: bool,
    buf: Vec<u8>,
    /// Unprocessed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The configured (and resting) size of `buf`.
    buffer_size: usize,
    last_read: LastRead,
    /// The last data frame was binary and at least a buffer long (read directly).
    large_frames: bool,
    /// The room last handed out by `read_buf` is in the message, not the read buffer.
    direct: bool,
    frame: Option<DataFrame>,
    message: Option<Partial>,
    max_frame: u64,
    max_message: u64,
    /// The next data message is streamed (see [`Receiver::stream_next`]).
    stream_next: bool,
    /// The size limit of the next streamed message, for it and each of its frames, instead
    /// of the configured ones (see [`Receiver::stream_limit`]).
    stream_max: Option<u64>,
    /// The payload bytes of a data frame refused from its header that had not arrived (see
    /// [`Receiver::unread_payload`]).
    refused_rest: u64,
    /// permessage-deflate, when negotiated.
    #[cfg(feature = "deflate")]
    inflate: Option<Inflate>,
    /// An allocation handed back by the application (a message it sent), reused for the next
    /// message received. Its `len` bytes are initialized, so reads can go into them without
    /// zeroing.
    spare: Vec<u8>,
}

impl Receiver {
    /// A receiver whose buffer starts with `initial` (bytes that arrived with the handshake).
    pub fn new(expect_masked: bool, config: &Config, mut initial: Vec<u8>) -> Receiver {
        let buffer_size = config.read_buffer_size.max(MIN_BUFFER);
        let end = initial.len();
        if end > 0 {
            initial.resize(end.max(buffer_size), 0);
        } else {
            // Nothing came with the handshake: rest (see `is_resting`), holding no buffer.
            initial = Vec::new();
        }
        let limit = |l: Option<usize>| l.map_or(u64::MAX, |n| n as u64);
        Receiver {
            expect_masked,
            buf: initial,
            start: 0,
            end,
            buffer_size,
            last_read: LastRead::Short,
            large_frames: false,
            direct: false,
            frame: None,
            message: None,
            max_frame: limit(config.max_frame_size),
            max_message: limit(config.max_message_size),
            stream_next: false,
            stream_max: None,
            refused_rest: 0,
            #[cfg(feature = "deflate")]
            inflate: None,
            spare: Vec::new(),
        }
    }

    /// Processes buffered bytes. Returns the next message or control frame, `None` if more
    /// input is needed, or the peer's protocol violation.
    #[inline]
    pub fn poll(&mut self) -> Result<Option<Incoming>, Error> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.remaining.min((self.end - self.start) as u64) as usize;
                if n == 0 && frame.remaining > 0 {
                    return Ok(None);
                }
                let chunk = &mut self.buf[self.start..self.start + n];
                frame.take(chunk);
                self.start += n;
                match self.message.as_mut() {
                    Some(Partial::Text(text)) => text.push(chunk).map_err(|_| Error::Utf8)?,
                    Some(Partial::Binary { data, len }) => {
                        let end = *len + chunk.len();
                        if end <= data.len() {
                            data[*len..end].copy_from_slice(chunk);
                        } else {
                            data.truncate(*len);
                            data.extend_from_slice(chunk);
                        }
                        *len = end;
                    }
                    // The rest of a streamed message whose reader was dropped: still
                    // validated, then discarded.
                    Some(Partial::Stream(stream)) => {
                        if stream.compressed {
                            #[cfg(feature = "deflate")]
                            inflate_discard(self.inflate.as_mut(), chunk, stream)?;
                        } else {
                            stream.take(chunk)?;
                        }
                    }
                    #[cfg(feature = "deflate")]
                    Some(Partial::Inflating { data, utf8 }) => inflate_message(
                        self.inflate.as_mut(),
                        self.max_message,
                        Some(chunk),
                        data,
                        utf8.as_mut(),
                    )?,
                    None => unreachable!("a data frame always belongs to a message"),
                }
                if frame.remaining == 0 {
                    let fin = frame.fin;
                    self.frame = None;
                    if fin {
                        if let Some(message) = self.finish_message()? {
                            return Ok(Some(Incoming::Data(message)));
                        }
                    }
                }
                continue;
            }
            if matches!(&self.message, Some(Partial::Stream(s)) if s.ending) {
                // A compressed streamed message whose reader was dropped near its end.
                self.finish_message()?;
            }
            match self.next_frame()? {
                Next::Frame => {}
                Next::Incoming(incoming) => return Ok(Some(incoming)),
                Next::NeedMore => return Ok(None),
            }
        }
    }

    /// Parses the next frame header: returns a control frame or a whole buffered message,
    /// or starts a data frame (`Next::Frame`) whose payload the caller then consumes.
    #[inline]
    fn next_frame(&mut self) -> Result<Next, Error> {
        let Some((header, header_len)) = FrameHeader::parse(&self.buf[self.start..self.end])?
        else {
            return Ok(Next::NeedMore);
        };
        self.check_header(&header)?;
        if header.opcode.is_control() {
            // Control payloads are at most 125 bytes: wait until the whole frame is here.
            let total = header_len + header.payload_len as usize;
            if self.end - self.start < total {
                return Ok(Next::NeedMore);
            }
            let payload = &mut self.buf[self.start + header_len..self.start + total];
            if let Some(key) = header.mask {
                apply_mask(payload, key, 0);
            }
            let first = self.start == 0;
            self.start += total;
            let incoming = match header.opcode {
                OpCode::Ping => Incoming::Ping(payload.to_vec()),
                OpCode::Pong => Incoming::Pong(payload.to_vec()),
                _ => Incoming::Close(parse_close_payload(payload)?),
            };
            // Keep-alive traffic (a ping or pong that was all the last short read brought)
            // is what an idle connection receives: it goes back to resting at once rather
            // than hold the buffer until a read times out, which with keep-alive on would be
            // the next ping's deadline, so never. (`release_idle` keeps the buffer if more
            // is buffered or a message is in progress.)
            if first
                && self.last_read == LastRead::Short
                && matches!(header.opcode, OpCode::Ping | OpCode::Pong)
            {
                self.release_idle();
            }
            return Ok(Next::Incoming(incoming));
        }
        let text = header.opcode == OpCode::Text
            || (header.opcode == OpCode::Continuation
                && matches!(self.message, Some(Partial::Text(_))));
        self.large_frames = !text && header.payload_len >= self.buffer_size as u64;
        // Fast path: a whole single-frame message is buffered. Unmask it in place and
        // copy it out with one exact-size allocation, without reassembly state.
        let body = self.start + header_len;
        if header.fin
            && header.opcode != OpCode::Continuation
            && self.message.is_none()
            && !self.stream_next
            && header.rsv == 0
            && header.payload_len <= (self.end - body) as u64
        {
            self.check_size(&header, Some(0))?;
            let end = body + header.payload_len as usize;
            let payload = &mut self.buf[body..end];
            if let Some(key) = header.mask {
                apply_mask(payload, key, 0);
            }
            self.start = end;
            let mut bytes = std::mem::take(&mut self.spare);
            bytes.clear();
            bytes.extend_from_slice(payload);
            let message = if header.opcode == OpCode::Text {
                Message::Text(String::from_utf8(bytes).map_err(|_| Error::Utf8)?)
            } else {
                Message::Binary(bytes)
            };
            return Ok(Next::Incoming(Incoming::Data(message)));
        }
        let started = match self.start_data_frame(&header) {
            Ok(started) => started,
            Err(e) => {
                let buffered = (self.end - body) as u64;
                self.refused_rest = header.payload_len.saturating_sub(buffered);
                return Err(e);
            }
        };
        self.start = body;
        Ok(match started {
            Some(text) => Next::Incoming(Incoming::StreamStart { text }),
            None => Next::Frame,
        })
    }

    /// Makes the next data message a streamed one: instead of being assembled, it is
    /// announced with [`Incoming::StreamStart`] and its payload is taken with
    /// [`poll_payload`](Self::poll_payload).
    pub fn stream_next(&mut self, on: bool) {
        self.stream_next = on;
        if !on {
            self.stream_max = None;
        }
    }

    /// After the peer's data frame was refused (its size, its bytes): how many of its payload
    /// bytes have not arrived yet, as its header announced them. The peer is likely still
    /// sending them.
    pub fn unread_payload(&self) -> u64 {
        match &self.frame {
            Some(frame) => frame
                .remaining
                .saturating_sub((self.end - self.start) as u64),
            None => self.refused_rest,
        }
    }

    /// Bounds the next streamed message, and each of its frames, by `max` bytes instead of
    /// the configured limits (`None`: the configured ones). Cleared with `stream_next(false)`.
    pub fn stream_limit(&mut self, max: Option<u64>) {
        self.stream_max = max;
    }

    /// The streamed message's next payload bytes: copies (unmasked and validated) into
    /// `dst` what is buffered, parses the headers of its further frames, and returns
    /// control frames that arrive in between.
    pub fn poll_payload(&mut self, dst: &mut [u8]) -> Result<Payload, Error> {
        loop {
            let Some(Partial::Stream(stream)) = &mut self.message else {
                return Ok(Payload::End);
            };
            #[cfg(feature = "deflate")]
            if stream.compressed {
                let inflate = self
                    .inflate
                    .as_mut()
                    .expect("compressed only if negotiated");
                if inflate.pos < inflate.out.len() {
                    let n = (inflate.out.len() - inflate.pos).min(dst.len());
                    dst[..n].copy_from_slice(&inflate.out[inflate.pos..inflate.pos + n]);
                    inflate.pos += n;
                    stream.take(&dst[..n])?;
                    return Ok(Payload::Bytes(n));
                }
                if let Some(frame) = &mut self.frame {
                    // Inflate a small piece at a time: whatever its ratio, the output
                    // waiting to be handed out stays bounded (about 1000 times the piece).
                    let buffered = (self.end - self.start) as u64;
                    let n = frame.remaining.min(buffered).min(INFLATE_PIECE as u64) as usize;
                    if n == 0 && frame.remaining > 0 {
                        return Ok(Payload::NeedMore);
                    }
                    let piece = &mut self.buf[self.start..self.start + n];
                    frame.take(piece);
                    self.start += n;
                    inflate.out.clear();
                    inflate.pos = 0;
                    let inflated = inflate.dec.inflate(piece, &mut inflate.out, usize::MAX);
                    inflated.map_err(|e| inflate_error(e, stream.max as usize))?;
                    if frame.remaining == 0 {
                        let fin = frame.fin;
                        self.frame = None;
                        if fin {
                            let end = inflate.dec.finish(&mut inflate.out, usize::MAX);
                            end.map_err(|e| inflate_error(e, stream.max as usize))?;
                            stream.ending = true;
                        }
                    }
                    continue;
                }
                if stream.ending {
                    self.finish_message()?;
                    return Ok(Payload::End);
                }
            }
            if let Some(frame) = &mut self.frame {
                let buffered = (self.end - self.start) as u64;
                let n = frame.remaining.min(buffered).min(dst.len() as u64) as usize;
                if n == 0 && frame.remaining > 0 {
                    return Ok(Payload::NeedMore);
                }
                let out = &mut dst[..n];
                out.copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                take_payload(frame, stream, out)?;
                self.end_of_frame()?;
                if n > 0 {
                    return Ok(Payload::Bytes(n));
                }
                continue;
            }
            match self.next_frame()? {
                Next::Frame => {}
                Next::Incoming(incoming) => return Ok(Payload::Control(incoming)),
                Next::NeedMore => return Ok(Payload::NeedMore),
            }
        }
    }

    /// Whether the streamed message's next bytes should be read from the stream straight
    /// into a caller's buffer of `room` bytes (nothing is buffered, and the buffer is at
    /// least as large as the read buffer).
    pub fn can_read_direct(&self, room: usize) -> bool {
        self.start == self.end
            && room >= self.buffer_size
            && matches!(&self.message, Some(Partial::Stream(s)) if !s.compressed)
            && self.frame.as_ref().is_some_and(|f| f.remaining > 0)
    }

    /// How many of the streamed message's next bytes may be read from the network straight
    /// into a caller's buffer of `room` bytes (see [`can_read_direct`](Self::can_read_direct)):
    /// never past the end of the current frame. [`take_direct`](Self::take_direct) must then
    /// be called on the bytes that arrived.
    pub fn direct_room(&self, room: usize) -> usize {
        let remaining = self.frame.as_ref().map_or(0, |f| f.remaining);
        remaining.min(room as u64) as usize
    }

    /// Unmasks and validates payload bytes read straight into the caller's buffer (see
    /// [`direct_room`](Self::direct_room)).
    pub fn take_direct(&mut self, bytes: &mut [u8]) -> Result<(), Error> {
        if let (Some(frame), Some(Partial::Stream(stream))) = (&mut self.frame, &mut self.message) {
            take_payload(frame, stream, bytes)?;
            self.end_of_frame()?;
        }
        Ok(())
    }

    /// After payload was taken from a streamed message's frame: at the end of the frame,
    /// forget it, and at the end of the message, check that its text is complete.
    fn end_of_frame(&mut self) -> Result<(), Error> {
        let Some(frame) = &self.frame else {
            return Ok(());
        };
        if frame.remaining == 0 {
            let fin = frame.fin;
            self.frame = None;
            if fin {
                self.finish_message()?;
            }
        }
        Ok(())
    }

    /// Whether the read buffer is not allocated (a connection that has received nothing
    /// yet, or one gone quiet, see [`release_idle`](Self::release_idle)) and holds nothing.
    /// A driver then reads into a small buffer of its own and hands the bytes over with
    /// [`push`](Self::push), so a connection that waits for input holds no read buffer.
    #[inline(always)]
    pub fn is_resting(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes bytes the driver read while the receiver was resting (copied into a new read
    /// buffer), as [`filled`](Self::filled) would.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.read_buf();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// Says that the bytes just [`push`](Self::push)ed filled the driver's resting buffer,
    /// so more are probably waiting: the buffer is then kept (and may grow) as after a full
    /// read.
    pub fn pushed_full(&mut self) {
        self.last_read = LastRead::Full;
    }

    /// Lets the read buffer (and a recycled message allocation) go if nothing is buffered
    /// and no message is partly read: for a connection whose read timed out, which may stay
    /// quiet for long.
    pub fn release_idle(&mut self) {
        if self.start == self.end && self.frame.is_none() && self.message.is_none() {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
            self.last_read = LastRead::Short;
            self.spare = Vec::new();
        }
    }

    /// Where the next bytes from the network go: room at the end of the read buffer, or, for
    /// a large binary payload with nothing buffered, room at the end of the message itself
    /// (no copy through the read buffer). The driver reads into it and reports how many bytes
    /// arrived with [`filled`](Self::filled); a read of nothing needs no report.
    #[inline]
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.direct = false;
        if self.start == self.end {
            if self.reads_direct() {
                return self.direct_read_buf();
            }
            // Nothing is buffered: start again at the front (nothing to move).
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            // Only a partial header or control frame is left (data is consumed as it comes):
            // move it to the front so the read gets the rest of the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // A burst of small frames (the last read filled the buffer) doubles it, up to
        // 64 KiB, so pipelined messages take fewer system calls; a short read shrinks it back
        // before the next read, so a connection waits for input with the configured size.
        // Large frames do not grow it: their payloads are read straight into the message.
        // A buffer configured above 64 KiB keeps its size.
        let size = match (self.last_read, self.large_frames) {
            (LastRead::Full, false) => (self.buf.len() * 2).min(MAX_BUFFER).max(self.buffer_size),
            _ => self.buffer_size,
        }
        .max(self.end + MIN_BUFFER / 2);
        if self.buf.len() != size {
            self.resize_buf(size);
        }
        &mut self.buf[self.end..]
    }

    /// Whether the next read goes straight into the message (see [`read_buf`](Self::read_buf)):
    /// nothing is buffered and a binary frame at least a buffer long is still arriving.
    #[inline(always)]
    fn reads_direct(&self) -> bool {
        match (&self.frame, &self.message) {
            (Some(frame), Some(Partial::Binary { .. })) => {
                frame.remaining >= self.buffer_size as u64
            }
            _ => false,
        }
    }

    /// [`read_buf`](Self::read_buf) when [`reads_direct`](Self::reads_direct): the room at
    /// the end of the message.
    fn direct_read_buf(&mut self) -> &mut [u8] {
        match (self.frame.as_ref(), self.message.as_mut()) {
            (Some(frame), Some(Partial::Binary { data, len })) => {
                self.direct = true;
                direct_room(frame, data, *len)
            }
            _ => unreachable!("reads_direct checked the frame and the message"),
        }
    }

    /// Gives the read buffer `size` bytes, keeping its `end` bytes.
    #[cold]
    fn resize_buf(&mut self, size: usize) {
        self.buf.truncate(self.end);
        self.buf.shrink_to(size);
        self.buf.resize(size, 0);
    }

    /// `n` bytes arrived in the room [`read_buf`](Self::read_buf) gave (0 < `n` <= its
    /// length; larger values are clamped). Payload read straight into a message is unmasked
    /// here; buffered bytes wait for [`poll`](Self::poll).
    #[inline]
    pub fn filled(&mut self, n: usize) {
        if std::mem::take(&mut self.direct) {
            self.filled_direct(n);
            return;
        }
        let space = self.buf.len() - self.end;
        let n = n.min(space);
        self.last_read = if n == space && n > 0 {
            LastRead::Full
        } else {
            LastRead::Short
        };
        self.end += n;
    }

    /// [`filled`](Self::filled) for bytes read straight into the message.
    fn filled_direct(&mut self, n: usize) {
        if let (Some(frame), Some(Partial::Binary { data, len })) =
            (self.frame.as_mut(), self.message.as_mut())
        {
            let room = direct_room(frame, data, *len);
            let n = n.min(room.len());
            frame.take(&mut room[..n]);
            *len += n;
        }
    }

    /// Takes back the allocation of a message the application sent, to receive the next
    /// message into: an echo or relay loop then allocates nothing per message. Buffers over
    /// 64 KiB are dropped, so no connection keeps memory sized for its largest message.
    #[inline]
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() <= MAX_SPARE && buffer.capacity() > self.spare.capacity() {
            self.spare = buffer;
        }
    }

    /// Drops buffered input (used while waiting for the peer's EOF after the close);
    /// returns whether there was any.
    pub fn discard_buffered(&mut self) -> bool {
        let any = self.start < self.end;
        self.start = 0;
        self.end = 0;
        any
    }

    fn check_header(&self, header: &FrameHeader) -> Result<(), Error> {
        if header.rsv != 0 {
            self.check_reserved_bits(header)?;
        }
        match (self.expect_masked, header.mask.is_some()) {
            (true, false) => Err(ProtocolError::UnmaskedFrame.into()),
            (false, true) => Err(ProtocolError::MaskedFrame.into()),
            _ => Ok(()),
        }
    }

    /// RSV1 marks the first frame of a compressed message when permessage-deflate was
    /// negotiated (RFC 7692 §6); every other reserved bit is an error.
    fn check_reserved_bits(&self, header: &FrameHeader) -> Result<(), Error> {
        #[cfg(feature = "deflate")]
        if self.inflate.is_some() && header.rsv == RSV1 {
            return match header.opcode {
                OpCode::Text | OpCode::Binary => Ok(()),
                _ => Err(ProtocolError::MisplacedCompressionBit.into()),
            };
        }
        let _ = header;
        Err(ProtocolError::ReservedBits.into())
    }

    /// Turns on permessage-deflate for incoming messages.
    #[cfg(feature = "deflate")]
    pub fn set_inflater(&mut self, dec: Decompressor) {
        self.inflate = Some(Inflate {
            dec,
            out: Vec::new(),
            pos: 0,
        });
    }

    /// Checks a data frame against the message in progress and starts it. Returns
    /// `Some(is_text)` if it begins a streamed message.
    fn start_data_frame(&mut self, header: &FrameHeader) -> Result<Option<bool>, Error> {
        match (header.opcode, &self.message) {
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::UnexpectedContinuation.into())
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation.into())
            }
            _ => {}
        }
        // A compressed message's size limit applies to what it inflates to, which the
        // inflater enforces: its compressed frames only count against the frame limit (a
        // message within the limit is not refused because its compressed form, or its
        // inflated part plus the next compressed frame, is larger).
        let compressed = header.rsv != 0 || self.message.as_ref().is_some_and(Partial::compressed);
        let so_far = self.message.as_ref().map_or(0, Partial::len);
        self.check_size(header, (!compressed).then_some(so_far))?;
        let mut started = None;
        match header.opcode {
            OpCode::Text | OpCode::Binary if self.stream_next => {
                let text = header.opcode == OpCode::Text;
                let (max_frame, max) = self.limits();
                self.stream_max = None;
                self.message = Some(Partial::Stream(StreamState {
                    utf8: text.then(Utf8Validator::default),
                    len: 0,
                    max,
                    max_frame,
                    compressed: header.rsv != 0,
                    ending: false,
                }));
                self.stream_next = false;
                started = Some(text);
            }
            #[cfg(feature = "deflate")]
            OpCode::Text | OpCode::Binary if header.rsv != 0 => {
                let mut data = std::mem::take(&mut self.spare);
                data.clear();
                let utf8 = (header.opcode == OpCode::Text).then(Utf8Validator::default);
                self.message = Some(Partial::Inflating { data, utf8 });
            }
            OpCode::Text => {
                let mut buffer = std::mem::take(&mut self.spare);
                buffer.clear();
                let buffer = String::from_utf8(buffer).unwrap_or_default();
                self.message = Some(Partial::Text(TextBuilder::with_buffer(buffer)));
            }
            OpCode::Binary => {
                let mut data = std::mem::take(&mut self.spare);
                let capacity = header.payload_len.min(INITIAL_CAPACITY as u64) as usize;
                data.reserve(capacity.saturating_sub(data.len()));
                self.message = Some(Partial::Binary { data, len: 0 });
            }
            _ => {}
        }
        self.frame = Some(DataFrame {
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            offset: 0,
        });
        Ok(started)
    }

    /// Checks a data frame's declared length against the frame and message limits, before
    /// any of its payload is read (`message_so_far` `None`: a compressed message, checked
    /// against the frame limit only).
    fn check_size(&self, header: &FrameHeader, message_so_far: Option<u64>) -> Result<(), Error> {
        let (max_frame, max_message) = self.limits();
        if header.payload_len > max_frame {
            return Err(CapacityError::FrameTooLarge {
                size: header.payload_len,
                max: usize::try_from(max_frame).unwrap_or(usize::MAX),
            }
            .into());
        }
        let Some(message_so_far) = message_so_far else {
            return Ok(());
        };
        let total = message_so_far.saturating_add(header.payload_len);
        if total > max_message {
            return Err(CapacityError::MessageTooLarge {
                size: total,
                max: usize::try_from(max_message).unwrap_or(usize::MAX),
            }
            .into());
        }
        Ok(())
    }

    /// The (frame, message) size limits for the data frame about to start or continue: a
    /// streamed message's own, or for the first frame of one, the limit asked for it.
    fn limits(&self) -> (u64, u64) {
        match (&self.message, self.stream_max) {
            (Some(Partial::Stream(s)), _) => (s.max_frame, s.max),
            (None, Some(max)) if self.stream_next => (max, max),
            _ => (self.max_frame, self.max_message),
        }
    }

    /// The message's last frame ended: returns it, or `None` for a streamed message (whose
    /// text must still end on a character boundary).
    fn finish_message(&mut self) -> Result<Option<Message>, Error> {
        Ok(Some(match self.message.take() {
            Some(Partial::Text(mut text)) => Message::Text(text.finish().map_err(|_| Error::Utf8)?),
            Some(Partial::Binary { mut data, len }) => {
                data.truncate(len);
                Message::Binary(data)
            }
            Some(Partial::Stream(mut stream)) => {
                #[cfg(feature = "deflate")]
                if stream.compressed {
                    inflate_discard_end(self.inflate.as_mut(), &mut stream)?;
                }
                if let Some(utf8) = &mut stream.utf8 {
                    utf8.finish().map_err(|_| Error::Utf8)?;
                }
                return Ok(None);
            }
            #[cfg(feature = "deflate")]
            Some(Partial::Inflating { mut data, mut utf8 }) => {
                let inflate = self.inflate.as_mut();
                inflate_message(inflate, self.max_message, None, &mut data, utf8.as_mut())?;
                match utf8 {
                    Some(mut utf8) => {
                        utf8.finish().map_err(|_| Error::Utf8)?;
                        Message::Text(String::from_utf8(data).map_err(|_| Error::Utf8)?)
                    }
                    None => Message::Binary(data),
                }
            }
            None => unreachable!("finish_message is only called for a started message"),
        }))
    }
}

/// The RSV1 bit (as `FrameHeader::rsv` holds the three reserved bits).
#[cfg(feature = "deflate")]
const RSV1: u8 = 0b100;

/// Compressed payload is inflated for a streamed read this many bytes at a time.
#[cfg(feature = "deflate")]
const INFLATE_PIECE: usize = 256;

/// The receive side of permessage-deflate.
#[cfg(feature = "deflate")]
#[derive(Debug)]
struct Inflate {
    dec: Decompressor,
    /// A streamed message's inflated bytes not handed out yet: `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
}

#[cfg(feature = "deflate")]
impl Inflate {
    /// Drops inflated bytes a dropped reader did not take, after validating and counting
    /// them.
    fn discard_pending(&mut self, stream: &mut StreamState) -> Result<(), Error> {
        if self.pos < self.out.len() {
            stream.take(&self.out[self.pos..])?;
            self.pos = self.out.len();
        }
        Ok(())
    }
}

/// Inflates the next piece of a compressed message into `data` (`input` `None`: its end),
/// within the message limit, validating what it adds if it is text.
#[cfg(feature = "deflate")]
fn inflate_message(
    inflate: Option<&mut Inflate>,
    max_message: u64,
    input: Option<&[u8]>,
    data: &mut Vec<u8>,
    utf8: Option<&mut Utf8Validator>,
) -> Result<(), Error> {
    let inflate = inflate.expect("compressed only if negotiated");
    let max = usize::try_from(max_message).unwrap_or(usize::MAX);
    let before = data.len();
    let inflated = match input {
        Some(input) => inflate.dec.inflate(input, data, max),
        None => inflate.dec.finish(data, max),
    };
    // Text inflated within the limit is validated before a failure is reported, so that
    // the first violation in the message decides the close code whatever the pieces the
    // payload arrived in (one byte at a time, invalid text is seen before the limit).
    if let Some(utf8) = utf8 {
        let end = data.len().min(max).max(before);
        utf8.push(&data[before..end]).map_err(|_| Error::Utf8)?;
    }
    inflated.map_err(|e| inflate_error(e, max))?;
    Ok(())
}

#[cfg(feature = "deflate")]
fn inflate_error(e: InflateError, max: usize) -> Error {
    match e {
        InflateError::TooLarge => CapacityError::MessageTooLarge {
            size: max as u64 + 1,
            max,
        }
        .into(),
        InflateError::Corrupt => ProtocolError::InvalidCompressedData.into(),
    }
}

/// Inflates a piece of a streamed message nobody reads any more (its reader was dropped):
/// the output is validated and dropped, but the inflater's window must still see it.
#[cfg(feature = "deflate")]
fn inflate_discard(
    inflate: Option<&mut Inflate>,
    mut input: &[u8],
    stream: &mut StreamState,
) -> Result<(), Error> {
    let inflate = inflate.expect("compressed only if negotiated");
    inflate.discard_pending(stream)?;
    let mut scratch = [0u8; 4096];
    loop {
        let (used, written) = inflate
            .dec
            .inflate_into(input, &mut scratch)
            .map_err(|e| inflate_error(e, stream.max as usize))?;
        stream.take(&scratch[..written])?;
        input = &input[used..];
        if written < scratch.len() {
            return Ok(());
        }
    }
}

/// Ends a discarded compressed streamed message (see [`inflate_discard`]).
#[cfg(feature = "deflate")]
fn inflate_discard_end(
    inflate: Option<&mut Inflate>,
    stream: &mut StreamState,
) -> Result<(), Error> {
    let inflate = inflate.expect("compressed only if negotiated");
    inflate.discard_pending(stream)?;
    if stream.ending {
        // The inflater already finished this message (into `out`, handed out above).
        return Ok(());
    }
    let mut scratch = [0u8; 4096];
    loop {
        let (written, done) = inflate
            .dec
            .finish_into(&mut scratch)
            .map_err(|e| inflate_error(e, stream.max as usize))?;
        stream.take(&scratch[..written])?;
        if done {
            return Ok(());
        }
    }
}

/// The room at the end of a binary message that the next part of its large payload is read
/// into (then unmasked in place by [`Receiver::filled`]). Grows the message by at most
/// doubling what has arrived, never by the frame's declared length; the room never reaches
/// past the frame's end.
fn direct_room<'a>(frame: &DataFrame, data: &'a mut Vec<u8>, len: usize) -> &'a mut [u8] {
    if data.len() == len {
        let grow = frame.remaining.min(len.max(INITIAL_CAPACITY) as u64) as usize;
        data.resize(len + grow, 0);
    }
    let end = (len as u64 + frame.remaining).min(data.len() as u64) as usize;
    &mut data[len..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;
    use std::io::Read;

    impl Receiver {
        /// Reads once from `input` into [`read_buf`](Self::read_buf), as a driver does.
        fn fill<R: Read>(&mut self, input: &mut R) -> std::io::Result<usize> {
            let n = input.read(self.read_buf())?;
            self.filled(n);
            Ok(n)
        }
    }

    /// Encodes one frame as a client would (masked) or a server would (unmasked).
    fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode: OpCode::from_u8(op).unwrap(),
            mask,
            payload_len: payload.len() as u64,
        };
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        let mut v = out[..n].to_vec();
        let start = v.len();
        v.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut v[start..], key, 0);
        }
        v
    }

    /// Feeds `bytes` in pieces of `step` and collects everything until an error.
    fn run(
        server: bool,
        config: &Config,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<Incoming>, Option<Error>) {
        let mut r = Receiver::new(server, config, Vec::new());
        let mut out = Vec::new();
        let mut input = bytes;
        loop {
            match r.poll() {
                Ok(Some(i)) => out.push(i),
                Ok(None) if input.is_empty() => return (out, None),
                Ok(None) => {
                    let take = step.min(input.len());
                    let mut piece = &input[..take];
                    r.fill(&mut piece).unwrap();
                    input = &input[take..];
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn reassembles_fragments_with_interleaved_control_at_any_chunking() {
        let key = Some([9, 8, 7, 6]);
        let mut wire = frame(false, 1, "Hé".as_bytes(), key);
        wire.extend(frame(true, 9, b"ping!", key));
        wire.extend(frame(false, 0, &"llo wörld".as_bytes()[..3], key));
        wire.extend(frame(true, 0, &"llo wörld".as_bytes()[3..], key));
        wire.extend(frame(true, 2, &[0u8; 300], key));
        for step in [1, 2, 3, 7, 64, 1000] {
            let (out, err) = run(true, &Config::default(), &wire, step);
            assert!(err.is_none(), "step {step}: {err:?}");
            assert!(matches!(&out[0], Incoming::Ping(p) if p == b"ping!"));
            assert!(matches!(&out[1], Incoming::Data(Message::Text(t)) if t == "Héllo wörld"));
            assert!(matches!(&out[2], Incoming::Data(Message::Binary(b)) if b.len() == 300));
        }
    }

    #[test]
    fn every_length_boundary_round_trips() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (out, err) = run(
                false,
                &Config::default(),
                &frame(true, 2, &payload, None),
                4096,
            );
            assert!(err.is_none());
            assert!(
                matches!(&out[..], [Incoming::Data(Message::Binary(b))] if *b == payload),
                "len {len}"
            );
        }
    }

    #[test]
    fn enforces_masking_by_role() {
        let (_, err) = run(true, &Config::default(), &frame(true, 1, b"x", None), 100);
        assert!(matches!(
            err,
            Some(Error::Protocol(ProtocolError::UnmaskedFrame))
        ));
        let (_, err) = run(
            false,
            &Config::default(),
            &frame(true, 1, b"x", Some([1; 4])),
            100,
        );
        assert!(matches!(
            err,
            Some(Error::Protocol(ProtocolError::MaskedFrame))
        ));
    }

    #[test]
    fn refuses_fragmentation_errors_and_reserved_bits() {
        let c = Config::default();
        let (_, err) = run(false, &c, &frame(true, 0, b"x", None), 100);
        assert!(matches!(
            err,
            Some(Error::Protocol(ProtocolError::UnexpectedContinuation))
        ));
        let mut wire = frame(false, 1, b"x", None);
        wire.extend(frame(true, 2, b"y", None));
        let (_, err) = run(false, &c, &wire, 100);
        assert!(matches!(
            err,
            Some(Error::Protocol(ProtocolError::ExpectedContinuation))
        ));
        let mut rsv = frame(true, 1, b"x", None);
        rsv[0] |= 0x40;
        let (_, err) = run(false, &c, &rsv, 100);
        assert!(matches!(
            err,
            Some(Error::Protocol(ProtocolError::ReservedBits))
        ));
    }

    #[test]
    fn fails_fast_on_invalid_utf8_before_the_frame_ends() {
        // A 1000-byte text frame whose 3rd byte is invalid: the error must come after the
        // first few bytes arrive, long before the frame is complete.
        let mut payload = vec![b'a'; 1000];
        payload[2] = 0xFF;
        let wire = frame(true, 1, &payload, None);
        let mut r = Receiver::new(false, &Config::default(), Vec::new());
        let mut first = &wire[..10];
        r.fill(&mut first).unwrap();
        assert!(matches!(r.poll(), Err(Error::Utf8)));
        // Truncated sequence at the end of a message: 1007 at FIN.
        let mut wire = frame(false, 1, &[b'a', 0xE2], None);
        wire.extend(frame(true, 0, &[0x82], None));
        let (_, err) = run(false, &Config::default(), &wire, 100);
        assert!(matches!(err, Some(Error::Utf8)));
    }

    #[test]
    fn limits_are_checked_from_headers_before_payload() {
        let c = Config::default()
            .max_frame_size(Some(100))
            .max_message_size(Some(150));
        // Header only, announcing 2^62 bytes: refused without any payload.
        let huge = [0x82, 127, 0x40, 0, 0, 0, 0, 0, 0, 0];
        let (_, err) = run(false, &c, &huge, 100);
        assert!(matches!(
            err,
            Some(Error::Capacity(CapacityError::FrameTooLarge { .. }))
        ));
        let mut wire = frame(false, 2, &[0; 100], None);
        wire.extend(frame(true, 0, &[0; 51], None));
        let (_, err) = run(false, &c, &wire, 1000);
        assert!(matches!(
            err,
            Some(Error::Capacity(CapacityError::MessageTooLarge {
                size: 151,
                ..
            }))
        ));
    }

    #[test]
    fn recycled_buffers_never_leak_stale_bytes() {
        let mut r = Receiver::new(false, &Config::default().read_buffer_size(256), Vec::new());
        let mut wire = frame(true, 2, b"short", None);
        wire.extend(frame(false, 2, &[7u8; 300], None));
        wire.extend(frame(true, 0, &[8u8; 3], None));
        wire.extend(frame(true, 1, "text".as_bytes(), None));
        wire.extend(frame(true, 2, &[9u8; 5000], None));
        let mut input = &wire[..];
        let mut got = Vec::new();
        while got.len() < 4 {
            // Before every message, hand back a buffer full of garbage.
            r.recycle(vec![0xEE; 6000]);
            match r.poll().unwrap() {
                Some(Incoming::Data(m)) => got.push(m),
                Some(other) => panic!("unexpected {other:?}"),
                None => {
                    r.fill(&mut input).unwrap();
                }
            }
        }
        assert_eq!(got[0], Message::Binary(b"short".to_vec()));
        let mut expected = vec![7u8; 300];
        expected.extend([8u8; 3]);
        assert_eq!(got[1], Message::Binary(expected));
        assert_eq!(got[2], Message::text("text"));
        assert_eq!(got[3], Message::Binary(vec![9u8; 5000]));
    }

    #[test]
    fn read_buffer_grows_in_bursts_and_rests_small() {
        let mut r = Receiver::new(false, &Config::default(), Vec::new());
        let mut wire = Vec::new();
        for _ in 0..2000 {
            wire.extend(frame(true, 2, &[1u8; 100], None));
        }
        let mut input = &wire[..];
        let mut largest = 0;
        let mut count = 0;
        loop {
            match r.poll().unwrap() {
                Some(Incoming::Data(_)) => count += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None if input.is_empty() => break,
                None => {
                    r.fill(&mut input).unwrap();
                    largest = largest.max(r.buf.len());
                }
            }
        }
        assert_eq!(count, 2000);
        assert_eq!(largest, MAX_BUFFER);
        // The stream is drained: the next (short) read happens with the resting size.
        assert_eq!(r.fill(&mut &[][..]).unwrap(), 0);
        assert_eq!(r.buf.len(), 4096);
    }

    #[test]
    fn a_quiet_connection_holds_no_read_buffer() {
        let mut r = Receiver::new(false, &Config::default(), Vec::new());
        assert!(
            r.is_resting(),
            "nothing came with the handshake: no buffer yet"
        );
        assert_eq!(r.buf.capacity(), 0);
        // A message whose first bytes arrive while resting, the rest through the buffer.
        let wire = frame(true, 2, &[5u8; 1000], None);
        r.push(&wire[..200]);
        assert!(!r.is_resting());
        assert!(r.poll().unwrap().is_none());
        r.release_idle(); // a message is partly read: the buffer stays
        assert!(!r.is_resting());
        let mut rest = &wire[200..];
        while !rest.is_empty() {
            r.fill(&mut rest).unwrap();
        }
        match r.poll().unwrap() {
            Some(Incoming::Data(m)) => assert_eq!(m, Message::Binary(vec![5u8; 1000])),
            other => panic!("expected the message, got {other:?}"),
        }
        // All consumed: a read timeout lets the buffer go.
        r.release_idle();
        assert!(r.is_resting());
        assert_eq!(r.buf.capacity(), 0);
    }

    #[test]
    fn keepalive_traffic_leaves_a_connection_resting() {
        let mut r = Receiver::new(true, &Config::default(), Vec::new());
        // A pong (or ping) that was all a read brought: no buffer is kept for it.
        for opcode in [0xA, 0x9] {
            r.push(&frame(true, opcode, b"k", Some([1, 2, 3, 4])));
            assert!(!r.is_resting(), "the frame arrived through the buffer");
            match r.poll().unwrap() {
                Some(Incoming::Pong(p) | Incoming::Ping(p)) => assert_eq!(p, b"k"),
                other => panic!("expected the control frame, got {other:?}"),
            }
            assert!(r.is_resting(), "opcode {opcode:#x}: the buffer was let go");
            assert_eq!(r.buf.capacity(), 0);
        }
        // A pong followed by part of a message: the buffer holds the rest and stays.
        let mut wire = frame(true, 0xA, b"", Some([1, 2, 3, 4]));
        let data = frame(true, 2, &[7u8; 100], Some([1, 2, 3, 4]));
        wire.extend_from_slice(&data[..50]);
        r.push(&wire);
        assert!(matches!(r.poll().unwrap(), Some(Incoming::Pong(_))));
        assert!(!r.is_resting());
        assert!(r.poll().unwrap().is_none());
        r.push(&data[50..]);
        match r.poll().unwrap() {
            Some(Incoming::Data(m)) => assert_eq!(m, Message::Binary(vec![7u8; 100])),
            other => panic!("expected the message, got {other:?}"),
        }
        // Data keeps the buffer for the next message (no allocation per message).
        assert!(!r.is_resting());
        // A ping after a message in the same read: the buffer stays for the next message.
        let mut wire = frame(true, 2, &[7u8; 10], Some([1, 2, 3, 4]));
        wire.extend_from_slice(&frame(true, 0x9, b"", Some([1, 2, 3, 4])));
        r.fill(&mut &wire[..]).unwrap();
        assert!(matches!(r.poll().unwrap(), Some(Incoming::Data(_))));
        assert!(matches!(r.poll().unwrap(), Some(Incoming::Ping(_))));
        assert!(!r.is_resting());
        // A ping between two fragments of a message: the message is in progress.
        let mut r = Receiver::new(true, &Config::default(), Vec::new());
        let mut wire = frame(false, 1, b"ab", Some([1, 2, 3, 4]));
        r.push(&wire);
        assert!(r.poll().unwrap().is_none());
        wire = frame(true, 0x9, b"", Some([1, 2, 3, 4]));
        r.push(&wire);
        assert!(matches!(r.poll().unwrap(), Some(Incoming::Ping(_))));
        assert!(!r.is_resting(), "a fragmented message is in progress");
        r.push(&frame(true, 0, b"c", Some([1, 2, 3, 4])));
        match r.poll().unwrap() {
            Some(Incoming::Data(m)) => assert_eq!(m, Message::Text("abc".into())),
            other => panic!("expected the message, got {other:?}"),
        }
        // Pings that filled the driver's resting buffer: more are coming, the buffer stays.
        let mut r = Receiver::new(true, &Config::default(), Vec::new());
        r.push(&frame(true, 0x9, b"k", Some([1, 2, 3, 4])));
        r.pushed_full();
        assert!(matches!(r.poll().unwrap(), Some(Incoming::Ping(_))));
        assert!(!r.is_resting());
    }

    #[test]
    fn a_frame_refused_from_its_header_says_how_much_of_it_is_still_coming() {
        let config = Config::default().max_frame_size(Some(500));
        let mut r = Receiver::new(false, &config, Vec::new());
        let wire = frame(true, 2, &[0u8; 1000], None);
        let mut input = &wire[..104]; // the 4-byte header and 100 payload bytes
        r.fill(&mut input).unwrap();
        assert!(matches!(
            r.poll(),
            Err(Error::Capacity(CapacityError::FrameTooLarge {
                size: 1000,
                max: 500
            }))
        ));
        assert_eq!(r.unread_payload(), 900);
    }

    #[test]
    fn a_read_buffer_configured_above_the_burst_size_neither_grows_nor_panics() {
        let config = Config::default().read_buffer_size(256 << 10);
        let mut r = Receiver::new(false, &config, Vec::new());
        let mut wire = Vec::new();
        for _ in 0..6000 {
            wire.extend(frame(true, 2, &[1u8; 100], None));
        }
        let mut input = &wire[..];
        let mut count = 0;
        loop {
            match r.poll().unwrap() {
                Some(Incoming::Data(_)) => count += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None if input.is_empty() => break,
                None => {
                    r.fill(&mut input).unwrap();
                    assert_eq!(r.buf.len(), 256 << 10);
                }
            }
        }
        assert_eq!(count, 6000);
    }

    #[test]
    fn parses_close_frames() {
        let (out, _) = run(
            false,
            &Config::default(),
            &frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e'], None),
            1,
        );
        assert!(
            matches!(&out[..], [Incoming::Close(Some(f))] if f.code == CloseCode::NORMAL && f.reason == "bye")
        );
        let (_, err) = run(
            false,
            &Config::default(),
            &frame(true, 8, &[0x03], None),
            100,
        );
        assert!(matches!(
            err,
            Some(Error::Protocol(ProtocolError::InvalidClosePayload))
        ));
    }
}
