//! Outgoing messages to frames (RFC 6455 §5.2-5.4), corked in a write buffer.
//!
//! Frames are encoded into one buffer (header, then payload, masked in place for the client
//! role) and written to the stream only by [`Sender::flush`]. A partial write leaves the rest
//! in the buffer, so `WouldBlock` loses nothing and the next flush continues where it
//! stopped. After a full flush a buffer that grew large for one big message is released.

use std::io::{self, ErrorKind, Write};

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::rand::Rng;

/// Capacity kept after a flush; larger buffers are released so an idle connection does not
/// hold memory sized for its largest message.
const KEEP_CAPACITY: usize = 64 << 10;

#[derive(Debug)]
pub(crate) struct Sender {
    /// Client role: masks every frame with keys from this generator.
    rng: Option<Rng>,
    buf: Vec<u8>,
    /// `buf[..written]` already reached the stream.
    written: usize,
    fragment_size: Option<usize>,
}

impl Sender {
    pub fn new(rng: Option<Rng>, fragment_size: Option<usize>) -> Sender {
        Sender {
            rng,
            buf: Vec::new(),
            written: 0,
            fragment_size: fragment_size.filter(|&n| n > 0),
        }
    }

    /// Bytes queued but not yet written to the stream.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Queues one frame.
    #[inline]
    pub fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mask = self.rng.as_mut().map(Rng::mask);
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let start = self.buf.len();
        self.buf.reserve(MAX_HEADER_LEN + payload.len());
        // A fixed-size copy then a cut is cheaper than a variable-length copy of 2-14 bytes.
        self.buf.extend_from_slice(&head);
        self.buf.truncate(start + n);
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut self.buf[start..], key, 0);
        }
    }

    /// Queues a text or binary message, split into frames of at most `fragment_size` bytes
    /// if that is configured.
    #[inline]
    pub fn message(&mut self, opcode: OpCode, payload: &[u8]) {
        match self.fragment_size {
            Some(size) if payload.len() > size => {
                let mut chunks = payload.chunks(size).peekable();
                let mut op = opcode;
                while let Some(chunk) = chunks.next() {
                    self.frame(op, chunks.peek().is_none(), chunk);
                    op = OpCode::Continuation;
                }
            }
            _ => self.frame(opcode, true, payload),
        }
    }

    /// Writes every queued byte to `stream`, then flushes it. On error the unwritten bytes
    /// stay queued.
    pub fn flush<W: Write>(&mut self, stream: &mut W) -> io::Result<()> {
        while self.written < self.buf.len() {
            match stream.write(&self.buf[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written = (self.written + n).min(self.buf.len()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.written = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        loop {
            match stream.flush() {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        s.message(OpCode::Text, b"abcdefghij");
        let mut out = Vec::new();
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
