//! Outgoing messages to frames (RFC 6455 §5.2-5.4), corked in a write buffer.
//!
//! Frames are encoded into one buffer (header, then payload, masked while it is copied in for
//! the client role) and written to the stream by [`Sender::flush`]; large payloads are written
//! through instead of being copied whole (see [`Sender::message_to`]). A partial write leaves
//! the rest queued, so `WouldBlock` loses nothing and the next flush continues where it
//! stopped. The buffer keeps its initialized bytes between flushes, so appending never zeroes
//! or re-checks capacity byte by byte; a buffer that grew past 64 KiB is released once empty.

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::{apply_mask, mask_copy};
use crate::rand::Rng;

/// Client payloads are masked and written in pieces of this size.
pub(crate) const MASK_CHUNK: usize = 64 << 10;

/// Buffer kept after a flush (room for one masked chunk and its header); larger buffers are
/// released so an idle connection does not hold memory sized for its largest message.
const KEEP_CAPACITY: usize = MASK_CHUNK + 1024;

/// A frame payload: `&[u8]` is sent as it is (a client masks a copy of it), `&mut [u8]` is
/// the sender's own buffer, which a client may mask in place instead (its contents are
/// garbage afterwards). Generic rather than an enum so the common borrowed case compiles to
/// the same code as before the owned one existed.
pub(crate) trait PayloadBuf<'a>: Sized {
    fn bytes(&self) -> &[u8];
    /// Splits off the first `n` bytes.
    fn split_at(self, n: usize) -> (Self, Self);
    /// Masks the bytes in place if they may be changed (`Ok`, masked); else `Err`, as is.
    fn mask_in_place(self, key: [u8; 4]) -> Result<&'a [u8], &'a [u8]>;
}

impl<'a> PayloadBuf<'a> for &'a [u8] {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self
    }
    #[inline(always)]
    fn split_at(self, n: usize) -> (Self, Self) {
        <[u8]>::split_at(self, n)
    }
    #[inline(always)]
    fn mask_in_place(self, _key: [u8; 4]) -> Result<&'a [u8], &'a [u8]> {
        Err(self)
    }
}

impl<'a> PayloadBuf<'a> for &'a mut [u8] {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self
    }
    #[inline(always)]
    fn split_at(self, n: usize) -> (Self, Self) {
        self.split_at_mut(n)
    }
    #[inline(always)]
    fn mask_in_place(self, key: [u8; 4]) -> Result<&'a [u8], &'a [u8]> {
        apply_mask(self, key, 0);
        Ok(self)
    }
}

/// Bytes queued by reference rather than copied into the buffer: a prepared frame shared by
/// many connections, or a large payload the sender gave up.
#[derive(Debug)]
pub(crate) enum Segment {
    Shared(std::sync::Arc<[u8]>),
    Owned(Vec<u8>),
}

impl Segment {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Shared(bytes) => bytes,
            Segment::Owned(bytes) => bytes,
        }
    }
}

/// A segment and where it goes: before `buf[at]`, after the buffer bytes queued before it.
#[derive(Debug)]
struct Mark {
    at: usize,
    segment: Segment,
    /// Bytes of the segment already written.
    sent: usize,
}

#[derive(Debug)]
pub(crate) struct Sender {
    /// Client role: masks every frame with keys from this generator.
    rng: Option<Rng>,
    /// `buf[written..end]` is queued; `buf[end..]` is initialized room.
    buf: Vec<u8>,
    written: usize,
    end: usize,
    /// Segments queued between buffer bytes, in order (`at` never decreases).
    marks: std::collections::VecDeque<Mark>,
    /// Unwritten bytes of `marks`.
    marked: usize,
    fragment_size: Option<usize>,
    /// Bytes went to the stream since it was last flushed.
    unflushed: bool,
}

impl Sender {
    pub fn new(rng: Option<Rng>, fragment_size: Option<usize>) -> Sender {
        Sender {
            rng,
            buf: Vec::new(),
            written: 0,
            end: 0,
            marks: std::collections::VecDeque::new(),
            marked: 0,
            fragment_size: fragment_size.filter(|&n| n > 0),
            unflushed: false,
        }
    }

    /// Whether frames are masked (the client role).
    #[inline(always)]
    pub fn masks(&self) -> bool {
        self.rng.is_some()
    }

    /// Queues `bytes` as they are (a frame encoded elsewhere), copied into the buffer.
    #[inline]
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.append(bytes, None, 0);
    }

    /// Bytes queued but not yet written to the stream.
    #[inline(always)]
    pub fn pending(&self) -> usize {
        self.end - self.written + self.marked
    }

    /// Queues `segment` as it is (no copy) after everything queued so far.
    pub fn push_segment(&mut self, segment: Segment) {
        let len = segment.bytes().len();
        if len == 0 {
            return;
        }
        self.marked += len;
        self.marks.push_back(Mark {
            at: self.end,
            segment,
            sent: 0,
        });
    }

    /// Whether all queued bytes are in the buffer (no segment is waiting), so that
    /// [`output`](Self::output) is everything queued.
    #[inline(always)]
    pub fn is_contiguous(&self) -> bool {
        self.marks.is_empty()
    }

    /// Queues one frame.
    #[inline]
    pub fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.frame_rsv(opcode, fin, 0, payload);
    }

    /// Queues one frame with reserved bits `rsv` (RSV1 marks a compressed message).
    #[inline]
    pub fn frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let mask = self.frame_header(opcode, fin, rsv, payload.len());
        self.append(payload, mask, 0);
    }

    /// Queues a frame header for a payload of `len` bytes, with a fresh masking key in the
    /// client role. Returns the key the payload must be masked with.
    #[inline(always)]
    pub fn frame_header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        len: usize,
    ) -> Option<[u8; 4]> {
        let mask = self.rng.as_mut().map(Rng::mask);
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        };
        let room = self.room(MAX_HEADER_LEN);
        // Encoding straight into the buffer: a fixed 14-byte slot, of which `n` are used.
        let slot: &mut [u8; MAX_HEADER_LEN] = (&mut room[..MAX_HEADER_LEN])
            .try_into()
            .expect("room() returned at least MAX_HEADER_LEN bytes");
        self.end += header.encode(slot);
        mask
    }

    /// Appends `bytes`, masked with `mask` from payload offset `offset` if given.
    #[inline(always)]
    pub fn append(&mut self, bytes: &[u8], mask: Option<[u8; 4]>, offset: usize) {
        let dst = &mut self.room(bytes.len())[..bytes.len()];
        match mask {
            Some(key) => mask_copy(dst, bytes, key, offset),
            None => dst.copy_from_slice(bytes),
        }
        self.end += bytes.len();
    }

    /// At least `n` initialized bytes after `end`, growing (and zeroing) the buffer only when
    /// it is too short.
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.end < n {
            self.make_room(n);
        }
        &mut self.buf[self.end..]
    }

    /// Moves the unwritten bytes to the front, then grows the buffer if that was not enough.
    /// Without the move, a queue that never empties (a peer that drains more slowly than we
    /// send) would grow the buffer by every byte ever sent.
    #[cold]
    fn make_room(&mut self, n: usize) {
        if self.written > 0 {
            self.buf.copy_within(self.written..self.end, 0);
            self.end -= self.written;
            for mark in &mut self.marks {
                mark.at -= self.written;
            }
            self.written = 0;
        }
        if self.buf.len() - self.end < n {
            let need = self.end + n;
            self.buf.resize(need.max(self.buf.len() * 2), 0);
        }
    }

    /// Queues a whole text or binary message, in frames of at most `fragment_size` if one
    /// is configured. RSV bits `rsv` go on the first frame only (RFC 7692 §6).
    pub fn message(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) {
        let size = self.fragment_size.unwrap_or(usize::MAX);
        if payload.len() <= size {
            self.frame_rsv(opcode, true, rsv, payload);
            return;
        }
        let mut chunks = payload.chunks(size).peekable();
        let (mut op, mut rsv) = (opcode, rsv);
        while let Some(chunk) = chunks.next() {
            self.frame_rsv(op, chunks.peek().is_none(), rsv, chunk);
            op = OpCode::Continuation;
            rsv = 0;
        }
    }

    /// Queues a whole text or binary message whose payload the caller gives up: a payload
    /// that fits one frame is queued as it is (a client masks it in place), not copied;
    /// otherwise as [`message`](Self::message) does.
    pub fn message_owned(&mut self, opcode: OpCode, rsv: u8, mut payload: Vec<u8>) {
        if payload.len() > self.fragment_size.unwrap_or(usize::MAX) {
            self.message(opcode, rsv, &payload);
            return;
        }
        if let Some(key) = self.frame_header(opcode, true, rsv, payload.len()) {
            apply_mask(&mut payload, key, 0);
        }
        self.push_segment(Segment::Owned(payload));
    }

    /// The configured fragment size, if any.
    #[inline(always)]
    pub fn fragment_size(&self) -> Option<usize> {
        self.fragment_size
    }

    /// The next queued bytes to write: a run of buffer bytes or a segment. Write them, call
    /// [`consume`](Self::consume), and ask again until it is empty.
    #[inline(always)]
    pub fn output(&self) -> &[u8] {
        if self.marks.is_empty() {
            return &self.buf[self.written..self.end];
        }
        self.output_marked()
    }

    #[cold]
    fn output_marked(&self) -> &[u8] {
        match self.marks.front() {
            Some(mark) if mark.at == self.written => &mark.segment.bytes()[mark.sent..],
            Some(mark) => &self.buf[self.written..mark.at],
            None => &self.buf[self.written..self.end],
        }
    }

    /// `n` bytes of [`output`](Self::output) were written. Once everything is, the buffer
    /// is emptied (and released if it grew past 64 KiB).
    #[inline(always)]
    pub fn consume(&mut self, n: usize) {
        self.unflushed |= n > 0;
        if self.marks.is_empty() {
            self.written = self.written.saturating_add(n).min(self.end);
            if self.written == self.end {
                self.reset();
            }
            return;
        }
        self.consume_marked(n);
    }

    #[cold]
    fn consume_marked(&mut self, mut n: usize) {
        // `n` may span several pieces (a vectored write of `pieces`).
        while n > 0 {
            match self.marks.front_mut() {
                Some(mark) if mark.at == self.written => {
                    let len = mark.segment.bytes().len();
                    let k = n.min(len - mark.sent);
                    mark.sent += k;
                    self.marked -= k;
                    n -= k;
                    if mark.sent == len {
                        self.marks.pop_front();
                    }
                }
                Some(mark) => {
                    let k = n.min(mark.at - self.written);
                    self.written += k;
                    n -= k;
                }
                None => {
                    let k = n.min(self.end - self.written);
                    self.written += k;
                    n -= k;
                    if k == 0 {
                        break;
                    }
                }
            }
        }
        if self.written == self.end && self.marks.is_empty() {
            self.reset();
        }
    }

    /// Fills `out` with the queued bytes in order, as up to `out.len()` slices (buffer bytes
    /// and segments), for one vectored write; returns how many it filled.
    /// [`consume`](Self::consume) takes a count that spans several of them.
    pub fn pieces<'a>(&'a self, out: &mut [&'a [u8]]) -> usize {
        let mut n = 0;
        let mut at = self.written;
        for mark in &self.marks {
            if mark.at > at {
                if n == out.len() {
                    return n;
                }
                out[n] = &self.buf[at..mark.at];
                n += 1;
                at = mark.at;
            }
            if n == out.len() {
                return n;
            }
            out[n] = &mark.segment.bytes()[mark.sent..];
            n += 1;
        }
        if at < self.end && n < out.len() {
            out[n] = &self.buf[at..self.end];
            n += 1;
        }
        n
    }

    /// Records that bytes went to the stream outside the queue (a payload written through).
    #[inline(always)]
    pub fn mark_unflushed(&mut self) {
        self.unflushed = true;
    }

    /// Whether bytes went to the stream since it was last flushed; forgets it.
    #[inline(always)]
    pub fn take_unflushed(&mut self) -> bool {
        std::mem::take(&mut self.unflushed)
    }

    /// Empties the buffer once everything in it was written, releasing a large one.
    fn reset(&mut self) {
        self.written = 0;
        self.end = 0;
        if self.buf.len() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
impl Sender {
    /// The buffer's current size (for tests of its growth).
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }
}
