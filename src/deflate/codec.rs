//! The permessage-deflate codec (RFC 7692 §7.2), independent of framing: one message in,
//! one message out.
//!
//! Compressing (§7.2.1): the message is deflated and flushed with a sync flush, whose empty
//! stored block ends the data with `00 00 ff ff`; those four bytes are removed. Decompressing
//! (§7.2.2): the four bytes are put back after the last piece of the message and the whole
//! is inflated. With context takeover the LZ77 window carries over from one message to the
//! next in each direction; "no context takeover" (§7.1.1) resets it after every message.
//!
//! Both states are large (see the sizes in the tests) and allocated on first use, so a
//! connection that negotiated the extension but sends or receives no compressed message
//! pays nothing.

use miniz_oxide::deflate::core::{CompressionStrategy, CompressorOxide};
use miniz_oxide::inflate::stream::{InflateState, MinReset};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use crate::deflate::negotiate::Side;

/// What a sync flush ends with, removed by the sender and restored by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The window our compressor always uses (miniz cannot use a smaller one).
const FULL_WINDOW_BITS: u8 = 15;

/// Output is inflated into a `Vec` this many bytes at a time.
const INFLATE_CHUNK: usize = 16 << 10;

/// Compresses outgoing messages.
pub(crate) struct Compressor {
    side: Side,
    level: u8,
    threshold: usize,
    /// Allocated with the first message that is compressed.
    state: Option<Box<CompressorOxide>>,
    /// The state holds no earlier message (new or just reset).
    fresh: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("side", &self.side)
            .field("level", &self.level)
            .field("threshold", &self.threshold)
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Compressor {
    /// A compressor for the agreed `side` (our outgoing direction), with a miniz `level`
    /// (0 to 10; 0 never compresses) and the size below which messages stay uncompressed.
    pub(crate) fn new(side: Side, level: u8, threshold: usize) -> Self {
        Compressor {
            side,
            level: level.min(10),
            threshold,
            state: None,
            fresh: true,
        }
    }

    /// Appends the compressed form of one whole message to `out`, without the sync-flush
    /// tail, and returns `true` (send it with RSV1 set). Returns `false` with `out`
    /// untouched when the message should be sent as it is: shorter than the threshold,
    /// larger than a window below 15 bits allows, or not smaller once compressed.
    pub(crate) fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        if self.level == 0 || payload.is_empty() || payload.len() < self.threshold {
            return false;
        }
        // miniz always looks back up to 32 KiB. Under a smaller agreed window, a message
        // no longer than the window, started from an empty window, cannot refer further
        // back than allowed.
        let small_window = self.side.max_window_bits < FULL_WINDOW_BITS;
        if small_window && payload.len() > 1usize << self.side.max_window_bits {
            return false;
        }
        let level = self.level;
        let state = self.state.get_or_insert_with(|| {
            Box::new(CompressorOxide::with_params(
                DataFormat::Raw,
                level,
                CompressionStrategy::Default,
                FULL_WINDOW_BITS,
            ))
        });
        if !self.fresh && (small_window || self.side.no_context_takeover) {
            state.reset();
        }
        // Worth sending only if smaller than the message once the tail is removed: give
        // the compressor one byte more than that, to see when it is not.
        let start = out.len();
        let limit = payload.len() - 1 + TAIL.len();
        out.resize(start + limit + 1, 0);
        let result =
            miniz_oxide::deflate::stream::deflate(state, payload, &mut out[start..], MZFlush::Sync);
        let written = result.bytes_written;
        let complete = result.status.is_ok()
            && result.bytes_consumed == payload.len()
            && written <= limit
            && out[start..start + written].ends_with(&TAIL);
        if !complete {
            // The peer will not see this message compressed, so our window must not keep it.
            out.truncate(start);
            state.reset();
            self.fresh = true;
            return false;
        }
        out.truncate(start + written - TAIL.len());
        self.fresh = false;
        true
    }
}

/// Why inflating a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The inflated message would exceed the size limit (close code 1009).
    TooLarge,
    /// The data is not valid DEFLATE; the connection must be failed.
    Corrupt,
}

/// Decompresses incoming messages, fed in pieces of any size.
pub(crate) struct Decompressor {
    side: Side,
    /// Allocated with the first compressed message.
    state: Option<Box<InflateState>>,
    /// A block with BFINAL set ended the DEFLATE stream during this message (§7.2.3.4).
    stream_ended: bool,
    /// How much of the tail [`finish_into`](Self::finish_into) has fed so far.
    tail_fed: usize,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("side", &self.side)
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Decompressor {
    /// A decompressor for the agreed `side` (the peer's outgoing direction). Its window is
    /// always 32 KiB, enough for any `max_window_bits`.
    pub(crate) fn new(side: Side) -> Self {
        Decompressor {
            side,
            state: None,
            stream_ended: false,
            tail_fed: 0,
        }
    }

    /// Inflates the next piece of a message's payload, appending to `out`. Fails with
    /// [`InflateError::TooLarge`] as soon as `out` would grow past `max_len` bytes (it
    /// never grows past `max_len + 1`), whatever the compression ratio. On a failure `out`
    /// keeps what was inflated before it, so that the caller can judge those bytes first
    /// (invalid text before the limit or the corruption is found the same way whatever the
    /// pieces were).
    pub(crate) fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), InflateError> {
        loop {
            let len = out.len();
            // Room for one byte past the limit, to see that the message is too large.
            let room = max_len
                .saturating_add(1)
                .saturating_sub(len)
                .min(INFLATE_CHUNK);
            if room == 0 {
                return Err(InflateError::TooLarge);
            }
            if out.capacity() < len + room {
                // Grow geometrically, but never past the limit.
                let target = (out.capacity() * 2)
                    .max(len + room)
                    .min(max_len.saturating_add(1).max(len + room));
                out.reserve_exact(target - len);
            }
            out.resize(len + room, 0);
            let (consumed, written, failed) = self.run(input, &mut out[len..]);
            out.truncate(len + written);
            if let Some(e) = failed {
                return Err(e);
            }
            if out.len() > max_len {
                return Err(InflateError::TooLarge);
            }
            input = &input[consumed..];
            if written < room {
                // Not out of space: everything available has been inflated.
                return Ok(());
            }
        }
    }

    /// Ends the current message: inflates the restored tail into `out` (within
    /// `max_len`, as [`inflate`](Self::inflate)) and resets the window if the peer does
    /// not take over context.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, max_len: usize) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, max_len)?;
        self.end_message();
        Ok(())
    }

    /// Inflates from `input` into `dst` as far as both allow, for streaming reads.
    /// Returns the bytes consumed from `input` and written to `dst`; call again with the
    /// rest of the input (and more space) until all of it is consumed. `dst` must not be
    /// empty.
    pub(crate) fn inflate_into(
        &mut self,
        input: &[u8],
        dst: &mut [u8],
    ) -> Result<(usize, usize), InflateError> {
        self.step(input, dst)
    }

    /// Ends the current message into `dst`, after all its payload went through
    /// [`inflate_into`](Self::inflate_into). Returns the bytes written and whether the
    /// message is complete; while it is not, call again with more space. `dst` must not be
    /// empty.
    pub(crate) fn finish_into(&mut self, dst: &mut [u8]) -> Result<(usize, bool), InflateError> {
        let (consumed, written) = self.step(&TAIL[self.tail_fed..], dst)?;
        self.tail_fed += consumed;
        let done = self.tail_fed == TAIL.len() && written < dst.len();
        if done {
            self.end_message();
        }
        Ok((written, done))
    }

    fn end_message(&mut self) {
        if let Some(state) = &mut self.state {
            if self.side.no_context_takeover {
                state.reset_as(MinReset);
            } else if self.stream_ended {
                // The peer ended its DEFLATE stream with a final block: restart the block
                // parser (dropping what it made of the tail) but keep the window.
                state.decompressor().init();
            }
        }
        self.stream_ended = false;
        self.tail_fed = 0;
    }

    /// Runs the inflater until `dst` is full or no more progress can be made with `input`.
    fn step(&mut self, input: &[u8], dst: &mut [u8]) -> Result<(usize, usize), InflateError> {
        match self.run(input, dst) {
            (consumed, written, None) => Ok((consumed, written)),
            (_, _, Some(e)) => Err(e),
        }
    }

    /// [`step`](Self::step), which also counts what was inflated before a failure.
    fn run(&mut self, input: &[u8], dst: &mut [u8]) -> (usize, usize, Option<InflateError>) {
        let state = self
            .state
            .get_or_insert_with(|| InflateState::new_boxed(DataFormat::Raw));
        let (mut consumed, mut written) = (0, 0);
        while written < dst.len() {
            let result = miniz_oxide::inflate::stream::inflate(
                state,
                &input[consumed..],
                &mut dst[written..],
                MZFlush::None,
            );
            consumed += result.bytes_consumed;
            written += result.bytes_written;
            match result.status {
                Ok(MZStatus::StreamEnd) => {
                    // A final block (§7.2.3.4): more blocks may follow, in this message or
                    // the next, still referring to the same window.
                    self.stream_ended = true;
                    state.decompressor().init();
                    continue;
                }
                Ok(_) | Err(MZError::Buf) => {}
                Err(_) => return (consumed, written, Some(InflateError::Corrupt)),
            }
            if result.bytes_consumed == 0 && result.bytes_written == 0 {
                break;
            }
        }
        (consumed, written, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Side = Side {
        no_context_takeover: false,
        max_window_bits: 15,
    };
    const RESET: Side = Side {
        no_context_takeover: true,
        max_window_bits: 15,
    };

    fn compress(c: &mut Compressor, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        c.compress(payload, &mut out).then_some(out)
    }

    fn inflate(d: &mut Decompressor, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        d.inflate(payload, &mut out, usize::MAX)?;
        d.finish(&mut out, usize::MAX)?;
        Ok(out)
    }

    fn json(i: usize) -> Vec<u8> {
        format!(
            r#"{{"type":"trade","symbol":"BTC-USD","id":{},"price":"{}.{:02}","side":"{}"}}"#,
            1_000_000 + i * 7,
            43_000 + (i * 37) % 900,
            i % 100,
            if i % 3 == 0 { "buy" } else { "sell" }
        )
        .into_bytes()
    }

    #[test]
    fn rfc_7692_examples_decode() {
        let mut d = Decompressor::new(FULL);
        // §7.2.3.1: "Hello" in one compressed block.
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.2: the same again, referring back to the first message.
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&mut d, &stored).unwrap(), b"Hello");
        // §7.2.3.4: a final block, then an empty non-final header byte.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&mut d, &last).unwrap(), b"Hello");
        // §7.2.3.5: two blocks in one message.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate(&mut d, &two).unwrap(), b"Hello");
        // And the window survived the final block: back-reference to "Hello" again.
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn final_block_without_padding_byte_does_not_break_the_next_message() {
        // A peer that ends a message with BFINAL and no extra header byte: the tail is
        // then a truncated stored block, dropped at the end of the message.
        let mut d = Decompressor::new(FULL);
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&mut d, &last).unwrap(), b"Hello");
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn compresses_hello_as_the_rfc_does() {
        // §7.2.3.1, from miniz as the codec drives it (before the tail is removed).
        let mut state = Box::new(CompressorOxide::with_params(
            DataFormat::Raw,
            6,
            CompressionStrategy::Default,
            FULL_WINDOW_BITS,
        ));
        let mut buf = [0u8; 64];
        let r =
            miniz_oxide::deflate::stream::deflate(&mut state, b"Hello", &mut buf, MZFlush::Sync);
        assert_eq!(
            buf[..r.bytes_written],
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff]
        );
        // Through the codec, "Hello" never shrinks: 7 bytes, then 5 with context takeover
        // (§7.2.3.2), neither below 5. A message that gains is compressed.
        let mut c = Compressor::new(FULL, 6, 1);
        assert_eq!(compress(&mut c, b"Hello"), None);
        let twice = b"Hello, Hello, Hello, Hello!";
        let first = compress(&mut c, twice).unwrap();
        let second = compress(&mut c, twice).unwrap();
        assert!(second.len() < first.len(), "{second:02x?}");
        let mut d = Decompressor::new(FULL);
        assert_eq!(inflate(&mut d, &first).unwrap(), twice);
        assert_eq!(inflate(&mut d, &second).unwrap(), twice);
    }

    #[test]
    fn context_takeover_round_trip_improves_on_repeats() {
        let mut c = Compressor::new(FULL, 2, 0);
        let mut d = Decompressor::new(FULL);
        let mut sizes = Vec::new();
        for i in 0..50 {
            let msg = json(i);
            let packed = compress(&mut c, &msg).expect("compressible");
            sizes.push(packed.len());
            assert_eq!(inflate(&mut d, &packed).unwrap(), msg);
        }
        assert!(sizes[10] < sizes[0], "{sizes:?}");
        // The same message twice: the second is little more than one back-reference.
        let msg = json(99);
        let a = compress(&mut c, &msg).unwrap();
        let b = compress(&mut c, &msg).unwrap();
        assert!(b.len() < a.len(), "{} then {}", a.len(), b.len());
        assert_eq!(inflate(&mut d, &a).unwrap(), msg);
        assert_eq!(inflate(&mut d, &b).unwrap(), msg);
    }

    #[test]
    fn no_context_takeover_makes_messages_independent() {
        let mut c = Compressor::new(RESET, 2, 0);
        let msg = json(1);
        let a = compress(&mut c, &msg).unwrap();
        let b = compress(&mut c, &msg).unwrap();
        assert_eq!(a, b, "each message starts from an empty window");
        // Each decodes on a fresh decompressor, and on a resetting one in sequence.
        assert_eq!(inflate(&mut Decompressor::new(FULL), &b).unwrap(), msg);
        let mut d = Decompressor::new(RESET);
        for _ in 0..3 {
            assert_eq!(inflate(&mut d, &a).unwrap(), msg);
        }
        // A resetting decompressor cannot follow context takeover.
        let mut c = Compressor::new(FULL, 2, 0);
        let first = compress(&mut c, &msg).unwrap();
        let second = compress(&mut c, &msg).unwrap();
        let mut d = Decompressor::new(RESET);
        assert_eq!(inflate(&mut d, &first).unwrap(), msg);
        assert_ne!(inflate(&mut d, &second), Ok(msg));
    }

    #[test]
    fn small_windows_compress_only_messages_that_fit() {
        let side = Side {
            no_context_takeover: false,
            max_window_bits: 9,
        };
        let mut c = Compressor::new(side, 2, 0);
        let text: Vec<u8> = (0..2000).flat_map(|i| json(i % 7)).collect();
        assert!(compress(&mut c, &text[..513]).is_none());
        let a = compress(&mut c, &text[..512]).unwrap();
        let b = compress(&mut c, &text[..512]).unwrap();
        assert_eq!(a, b, "reset before every message");
        let mut d = Decompressor::new(FULL);
        assert_eq!(inflate(&mut d, &a).unwrap(), &text[..512]);
        assert_eq!(inflate(&mut d, &b).unwrap(), &text[..512]);
        // Each decodes on its own, from an empty window, into at most 512 bytes: no
        // back-reference can reach beyond 512 bytes. (miniz refuses references before the
        // start of a non-wrapping output.)
        // (An empty final block ends the stream for the one-shot decoder.)
        let mut alone = a.clone();
        alone.extend_from_slice(&[0x00, 0x00, 0xff, 0xff, 0x03, 0x00]);
        let decoded = miniz_oxide::inflate::decompress_to_vec(&alone).expect("self-contained");
        assert_eq!(decoded, &text[..512]);
        // With context takeover agreed, messages still do not refer to earlier ones.
        let c_after = compress(&mut c, &text[100..600]).unwrap();
        let mut alone = c_after.clone();
        alone.extend_from_slice(&[0x00, 0x00, 0xff, 0xff, 0x03, 0x00]);
        assert!(miniz_oxide::inflate::decompress_to_vec(&alone).is_ok());
    }

    #[test]
    fn threshold_level_zero_and_incompressible_data_stay_uncompressed() {
        let mut c = Compressor::new(FULL, 2, 64);
        assert!(compress(&mut c, &[b'a'; 63]).is_none());
        assert!(compress(&mut c, &[b'a'; 64]).is_some());
        assert!(compress(&mut Compressor::new(FULL, 0, 0), &[b'a'; 1000]).is_none());
        assert!(compress(&mut Compressor::new(FULL, 2, 0), b"").is_none());
        // Pseudo-random bytes do not shrink; out is untouched and the stream stays usable.
        let mut x = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut c = Compressor::new(FULL, 2, 0);
        let mut d = Decompressor::new(FULL);
        let first = compress(&mut c, &json(1)).unwrap();
        assert_eq!(inflate(&mut d, &first).unwrap(), json(1));
        let mut out = b"keep".to_vec();
        assert!(!c.compress(&noise, &mut out));
        assert_eq!(out, b"keep");
        let next = compress(&mut c, &json(1)).unwrap();
        assert_eq!(inflate(&mut d, &next).unwrap(), json(1));
    }

    #[test]
    fn pieces_at_every_split_point() {
        let mut c = Compressor::new(FULL, 2, 0);
        let msgs: Vec<Vec<u8>> = (0..3).map(json).collect();
        let packed: Vec<Vec<u8>> = msgs.iter().map(|m| compress(&mut c, m).unwrap()).collect();
        for split in 0..=packed[1].len() {
            let mut d = Decompressor::new(FULL);
            assert_eq!(inflate(&mut d, &packed[0]).unwrap(), msgs[0]);
            let mut out = Vec::new();
            d.inflate(&packed[1][..split], &mut out, usize::MAX)
                .unwrap();
            d.inflate(&packed[1][split..], &mut out, usize::MAX)
                .unwrap();
            d.finish(&mut out, usize::MAX).unwrap();
            assert_eq!(out, msgs[1], "split at {split}");
            assert_eq!(inflate(&mut d, &packed[2]).unwrap(), msgs[2]);
        }
        // One byte at a time.
        let mut d = Decompressor::new(FULL);
        for (m, p) in msgs.iter().zip(&packed) {
            let mut out = Vec::new();
            for b in p.chunks(1) {
                d.inflate(b, &mut out, usize::MAX).unwrap();
            }
            d.finish(&mut out, usize::MAX).unwrap();
            assert_eq!(&out, m);
        }
    }

    /// Inflates with the slice API, `input_step` bytes of input and `out_step` bytes of
    /// output at a time.
    fn inflate_sliced(
        d: &mut Decompressor,
        input: &[u8],
        input_step: usize,
        out_step: usize,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; out_step];
        for piece in input.chunks(input_step) {
            let mut piece = piece;
            while !piece.is_empty() {
                let (consumed, written) = d.inflate_into(piece, &mut buf).unwrap();
                out.extend_from_slice(&buf[..written]);
                piece = &piece[consumed..];
            }
        }
        loop {
            let (written, done) = d.finish_into(&mut buf).unwrap();
            out.extend_from_slice(&buf[..written]);
            if done {
                return out;
            }
        }
    }

    #[test]
    fn slice_api_with_any_input_and_output_sizes() {
        let text: Vec<u8> = (0..400).flat_map(json).collect();
        let mut c = Compressor::new(FULL, 2, 0);
        let packed = compress(&mut c, &text).unwrap();
        let again = compress(&mut c, &text).unwrap();
        for (input_step, out_step) in [
            (1, 1),
            (1, 7),
            (3, 1),
            (5, 1000),
            (1000, 3),
            (1 << 20, 1 << 20),
        ] {
            let mut d = Decompressor::new(FULL);
            assert_eq!(inflate_sliced(&mut d, &packed, input_step, out_step), text);
            assert_eq!(inflate_sliced(&mut d, &again, input_step, out_step), text);
        }
    }

    #[test]
    fn bombs_fail_at_the_limit() {
        // 10 MiB of zeros compresses to about 10 KiB.
        let zeros = vec![0u8; 10 << 20];
        let mut c = Compressor::new(FULL, 2, 0);
        let bomb = compress(&mut c, &zeros).unwrap();
        assert!(bomb.len() < 20 << 10, "{}", bomb.len());
        for max in [0, 1, 1000, 100_000, (10 << 20) - 1] {
            let mut d = Decompressor::new(FULL);
            let mut out = Vec::new();
            assert_eq!(d.inflate(&bomb, &mut out, max), Err(InflateError::TooLarge));
            assert_eq!(out.len(), max + 1);
            assert!(
                out.capacity() <= max + 1 + INFLATE_CHUNK,
                "{max}: {}",
                out.capacity()
            );
        }
        let mut d = Decompressor::new(FULL);
        let mut out = Vec::new();
        d.inflate(&bomb, &mut out, 10 << 20).unwrap();
        d.finish(&mut out, 10 << 20).unwrap();
        assert_eq!(out.len(), 10 << 20);
        // The slice API writes only as much as it is given room for.
        let mut d = Decompressor::new(FULL);
        let mut buf = vec![0u8; 4096];
        let (consumed, written) = d.inflate_into(&bomb, &mut buf).unwrap();
        assert_eq!(written, buf.len());
        assert!(consumed < bomb.len());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        // BTYPE 11 is reserved.
        let mut d = Decompressor::new(FULL);
        assert_eq!(
            inflate(&mut d, &[0xff, 0xff, 0xff]),
            Err(InflateError::Corrupt)
        );
        // A stored block whose length check fails.
        let mut d = Decompressor::new(FULL);
        assert_eq!(
            inflate(&mut d, &[0x00, 0x05, 0x00, 0x00, 0x00, b'a']),
            Err(InflateError::Corrupt)
        );
        // Through the slice API too.
        let mut d = Decompressor::new(FULL);
        let mut out = [0u8; 4];
        assert_eq!(
            d.inflate_into(&[0xff, 0xff], &mut out),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn state_sizes() {
        // What one connection allocates on top of the inline sizes: the compressor's boxed
        // Huffman tables and hash chains (see `state_sizes` in the report).
        let compressor = std::mem::size_of::<CompressorOxide>();
        let inflater = std::mem::size_of::<InflateState>();
        eprintln!("CompressorOxide {compressor} bytes inline, InflateState {inflater} bytes");
        assert!(inflater > 32 << 10);
    }
}
