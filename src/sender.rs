//! Outgoing messages to frames (RFC 6455 §5.2-5.4), corked in a write buffer.
//!
//! Frames are encoded into one buffer (header, then payload, masked while it is copied in for
//! the client role) and written to the stream by [`Sender::flush`]; large payloads are written
//! through instead of being copied whole (see [`Sender::message_to`]). A partial write leaves
//! the rest queued, so `WouldBlock` loses nothing and the next flush continues where it
//! stopped. The buffer keeps its initialized bytes between flushes, so appending never zeroes
//! or re-checks capacity byte by byte; a buffer that grew past 64 KiB is released once empty.

use std::io::{self, ErrorKind, IoSlice, Write};

use crate::error::is_retryable;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::{apply_mask, mask_copy};
use crate::rand::Rng;

/// Client payloads are masked and written in pieces of this size.
const MASK_CHUNK: usize = 64 << 10;

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

#[derive(Debug)]
pub(crate) struct Sender {
    /// Client role: masks every frame with keys from this generator.
    rng: Option<Rng>,
    /// `buf[written..end]` is queued; `buf[end..]` is initialized room.
    buf: Vec<u8>,
    written: usize,
    end: usize,
    fragment_size: Option<usize>,
}

impl Sender {
    pub fn new(rng: Option<Rng>, fragment_size: Option<usize>) -> Sender {
        Sender {
            rng,
            buf: Vec::new(),
            written: 0,
            end: 0,
            fragment_size: fragment_size.filter(|&n| n > 0),
        }
    }

    /// Whether frames are masked (the client role).
    #[inline(always)]
    pub fn masks(&self) -> bool {
        self.rng.is_some()
    }

    /// Bytes queued but not yet written to the stream.
    pub fn pending(&self) -> usize {
        self.end - self.written
    }

    /// Queues one frame.
    #[inline]
    pub fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.frame_rsv(opcode, fin, 0, payload);
    }

    /// Queues one frame with reserved bits `rsv` (RSV1 marks a compressed message).
    #[inline]
    fn frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let mask = self.frame_header(opcode, fin, rsv, payload.len());
        self.append(payload, mask, 0);
    }

    /// Queues a frame header for a payload of `len` bytes, with a fresh masking key in the
    /// client role. Returns the key the payload must be masked with.
    #[inline(always)]
    fn frame_header(&mut self, opcode: OpCode, fin: bool, rsv: u8, len: usize) -> Option<[u8; 4]> {
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
    fn append(&mut self, bytes: &[u8], mask: Option<[u8; 4]>, offset: usize) {
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
            self.written = 0;
        }
        if self.buf.len() - self.end < n {
            let need = self.end + n;
            self.buf.resize(need.max(self.buf.len() * 2), 0);
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
    pub fn message_to<'a, W: Write, P: PayloadBuf<'a>>(
        &mut self,
        stream: &mut W,
        opcode: OpCode,
        rsv: u8,
        payload: P,
        direct_min: usize,
    ) -> io::Result<()> {
        let size = self.fragment_size.unwrap_or(usize::MAX);
        let len = payload.bytes().len();
        if len < direct_min && len <= size {
            // The common case: one small frame, queued.
            self.frame_rsv(opcode, true, rsv, payload.bytes());
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
                self.frame_rsv(op, fin, rsv, chunk.bytes());
            } else {
                match self.fragment_to(stream, op, fin, rsv, chunk, direct_min) {
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
    pub fn fragment_to<'a, W: Write, P: PayloadBuf<'a>>(
        &mut self,
        stream: &mut W,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        payload: P,
        direct_min: usize,
    ) -> io::Result<()> {
        if payload.bytes().len() < direct_min {
            self.frame_rsv(opcode, fin, rsv, payload.bytes());
            return Ok(());
        }
        match self.frame_header(opcode, fin, rsv, payload.bytes().len()) {
            None => self.write_through(stream, payload.bytes()),
            Some(key) => match payload.mask_in_place(key) {
                Ok(masked) => self.write_through(stream, masked),
                Err(plain) => self.write_masked(stream, key, plain),
            },
        }
    }

    /// Writes the queue (ending with the frame's header) and `payload`, ready to go as it
    /// is, with vectored writes; whatever the stream did not take is queued.
    fn write_through<W: Write>(&mut self, stream: &mut W, payload: &[u8]) -> io::Result<()> {
        let mut sent = 0;
        while self.written < self.end || sent < payload.len() {
            let queued = &self.buf[self.written..self.end];
            let result =
                stream.write_vectored(&[IoSlice::new(queued), IoSlice::new(&payload[sent..])]);
            match result {
                Ok(0) => {
                    self.append(&payload[sent..], None, 0);
                    return Err(ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    let from_queue = n.min(queued.len());
                    self.written += from_queue;
                    sent = (sent + n - from_queue).min(payload.len());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.append(&payload[sent..], None, 0);
                    return Err(e);
                }
            }
        }
        self.reset();
        Ok(())
    }

    /// Client, a payload it must not change (its header is queued): masks it into the
    /// buffer 64 KiB at a time, writing the buffer out as it fills, so a large message never
    /// needs a masked copy of its whole size (unless the stream blocks, when the rest is
    /// queued).
    fn write_masked<W: Write>(
        &mut self,
        stream: &mut W,
        key: [u8; 4],
        payload: &[u8],
    ) -> io::Result<()> {
        let mask = Some(key);
        let mut blocked = None;
        for (i, chunk) in payload.chunks(MASK_CHUNK).enumerate() {
            self.append(chunk, mask, i * MASK_CHUNK);
            if blocked.is_none() && self.pending() >= MASK_CHUNK {
                match self.write_out(stream) {
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
    pub fn flush<W: Write>(&mut self, stream: &mut W) -> io::Result<()> {
        self.write_out(stream)?;
        loop {
            match stream.flush() {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Writes every queued byte to `stream` (without flushing it).
    fn write_out<W: Write>(&mut self, stream: &mut W) -> io::Result<()> {
        while self.written < self.end {
            match stream.write(&self.buf[self.written..self.end]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written = (self.written + n).min(self.end),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.reset();
        Ok(())
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
mod tests {
    use super::*;
    use crate::mask::apply_mask;

    #[test]
    fn server_frames_are_unmasked_and_minimal() {
        let mut s = Sender::new(None, None);
        s.frame(OpCode::Text, true, b"Hello");
        let mut out = Vec::new();
        s.flush(&mut out).unwrap();
        // RFC 6455 §5.7, unmasked "Hello".
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    }

    #[test]
    fn client_frames_are_masked_with_fresh_keys() {
        let mut s = Sender::new(Some(Rng::new()), None);
        s.frame(OpCode::Binary, true, &[0; 8]);
        s.frame(OpCode::Binary, true, &[0; 8]);
        let mut out = Vec::new();
        s.flush(&mut out).unwrap();
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
        s.message_to(&mut out, OpCode::Text, 0, &b"abcdefghij"[..], usize::MAX)
            .unwrap();
        assert!(out.is_empty(), "small frames are only queued");
        s.flush(&mut out).unwrap();
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
        s.message_to(&mut out, OpCode::Binary, 0, &big[..], 1000)
            .unwrap();
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
        s.message_to(&mut out, OpCode::Binary, 0, &big[..], 1000)
            .unwrap();
        s.flush(&mut out).unwrap();
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
        let mut result = s.message_to(&mut w, OpCode::Binary, 0, &big[..], 1000);
        while let Err(e) = result {
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            result = s.flush(&mut w);
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
            let _ = s.flush(&mut w);
            assert!(s.pending() > 0);
            assert!(s.buf.len() <= 32 * 1024, "buffer grew to {}", s.buf.len());
        }
        while s.flush(&mut w).is_err() {}
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
        while let Err(e) = s.flush(&mut w) {
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            attempts += 1;
        }
        assert!(attempts > 10);
        assert_eq!(s.pending(), 0);
        assert_eq!(&w.out[..4], &[0x82, 126, 0, 200]);
        assert_eq!(&w.out[4..], &payload[..]);
    }
}
