//! Property tests: whatever the messages, the fragmentation, the read chunking and the
//! `WouldBlock`s along the way, what one side sends is what the other side reads, in both
//! roles; and the frame header codec round-trips every header.
//!
//! Each property runs 128 cases by default; `PROPTEST_CASES=N cargo test --test properties`
//! runs more (or fewer).

mod common;

use std::io::{self, ErrorKind, IoSlice, Read, Write};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use common::{parse_frame, Frame};
use stdws::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use stdws::{CloseFrame, Config, Error, Message, ProtocolError, Role, WebSocket};

/// 128 cases unless `PROPTEST_CASES` says otherwise.
fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    ProptestConfig {
        cases,
        // A failure prints the shrunk input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// In-memory streams driven by a schedule.
// ---------------------------------------------------------------------------------------

/// One step of an I/O schedule: move at most this many bytes, or fail once.
#[derive(Debug, Clone, Copy)]
enum Step {
    Bytes(usize),
    WouldBlock,
    Interrupted,
}

/// Cycles through a schedule that moves bytes at least once per round, so a caller that
/// retries always makes progress.
#[derive(Debug, Clone)]
struct Schedule {
    steps: Vec<Step>,
    next: usize,
}

impl Schedule {
    fn new(mut steps: Vec<Step>) -> Schedule {
        if !steps.iter().any(|s| matches!(s, Step::Bytes(_))) {
            steps.push(Step::Bytes(1));
        }
        Schedule { steps, next: 0 }
    }

    /// How many bytes the next call may move, or the error it fails with.
    fn next(&mut self) -> io::Result<usize> {
        let step = self.steps[self.next];
        self.next = (self.next + 1) % self.steps.len();
        match step {
            Step::Bytes(n) => Ok(n),
            Step::WouldBlock => Err(ErrorKind::WouldBlock.into()),
            Step::Interrupted => Err(ErrorKind::Interrupted.into()),
        }
    }
}

/// The sending side's stream: writes land in `out`, in pieces and with failures as the
/// schedule says. It is never read.
struct Sink {
    out: Vec<u8>,
    schedule: Schedule,
}

impl Read for Sink {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(ErrorKind::WouldBlock.into())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut room = self.schedule.next()?;
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(room);
            self.out.extend_from_slice(&buf[..take]);
            n += take;
            room -= take;
            if take < buf.len() {
                break;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receiving side's stream: reads come from `input` in chunks (and failures) as the
/// schedule says, then EOF; writes (pongs, the close reply) land in `out`.
struct Source {
    input: Vec<u8>,
    pos: usize,
    schedule: Schedule,
    out: Vec<u8>,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.schedule.next()?;
        let n = n.min(buf.len()).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Source {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

/// Bytes from a seed: cheap to make in any length (a strategy per byte is slow for 70 KB).
fn seeded_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn binary_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..200),
        3 => (0usize..5000, any::<u64>()).prop_map(|(len, seed)| seeded_bytes(len, seed | 1)),
        1 => (0usize..70_000, any::<u64>()).prop_map(|(len, seed)| seeded_bytes(len, seed | 1)),
    ]
}

/// Characters of every UTF-8 length (1 to 4 bytes), with ASCII common.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => proptest::char::range('\u{80}', '\u{7FF}'),
        2 => proptest::char::range('\u{800}', '\u{FFFF}'),
        2 => proptest::char::range('\u{10000}', '\u{10FFFF}'),
        1 => any::<char>(),
    ]
}

fn text_payload() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(text_char(), 0..100).prop_map(String::from_iter),
        2 => proptest::collection::vec(text_char(), 0..3000).prop_map(String::from_iter),
        1 => any::<String>(),
    ]
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=125)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        4 => text_payload().prop_map(Message::Text),
        4 => binary_payload().prop_map(Message::Binary),
        1 => control_payload().prop_map(Message::Ping),
        1 => control_payload().prop_map(Message::Pong),
    ]
}

/// A read or write schedule: chunk sizes 1..8192 (small ones common), and sometimes a
/// `WouldBlock` or `Interrupted`.
fn schedule() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (1usize..16).prop_map(Step::Bytes),
        6 => (1usize..=8192).prop_map(Step::Bytes),
        2 => Just(Step::WouldBlock),
        1 => Just(Step::Interrupted),
    ];
    proptest::collection::vec(step, 1..12)
}

/// A sending schedule: mostly unlimited, so the direct-write paths run too.
fn write_schedule() -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![
        2 => Just(vec![Step::Bytes(usize::MAX)]),
        1 => schedule(),
    ]
}

/// What a case varies besides the messages.
#[derive(Debug, Clone)]
struct Setup {
    fragment_size: Option<usize>,
    write_buffer_size: usize,
    read_buffer_size: usize,
    /// For each message: `send` (queue and flush) or `write` (queue only).
    flush_each: Vec<bool>,
    reads: Vec<Step>,
    writes: Vec<Step>,
    close_reason: String,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![1 => Just(None), 3 => (1usize..5000).prop_map(Some)],
        prop_oneof![Just(16 << 10), 1usize..70_000],
        prop_oneof![Just(4 << 10), 1usize..70_000],
        proptest::collection::vec(any::<bool>(), 12),
        schedule(),
        write_schedule(),
        proptest::collection::vec(text_char(), 0..30).prop_map(String::from_iter),
    )
        .prop_map(
            |(fragment_size, write_buffer_size, read_buffer_size, flush_each, reads, writes, r)| {
                Setup {
                    fragment_size,
                    write_buffer_size,
                    read_buffer_size,
                    flush_each,
                    reads,
                    writes,
                    close_reason: r,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------
// The round trip.
// ---------------------------------------------------------------------------------------

/// Retries `op` while it fails with `WouldBlock`/`TimedOut` (bounded, so a bug that never
/// makes progress fails the case instead of hanging).
fn retry<T>(mut op: impl FnMut() -> stdws::Result<T>) -> stdws::Result<T> {
    for _ in 0..1_000_000 {
        match op() {
            Err(e) if e.is_would_block() => {}
            other => return other,
        }
    }
    panic!("no progress after a million retries");
}

/// Sends `messages` and a close frame from a `sender` role connection, feeds the bytes to a
/// connection of the other role, and checks what it reads and what it writes back.
fn round_trip(sender: Role, messages: &[Message], setup: &Setup) -> Result<(), TestCaseError> {
    let receiver = match sender {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let close = CloseFrame::new(1000, setup.close_reason.clone());

    // Encode.
    let config = Config::default()
        .fragment_size(setup.fragment_size)
        .write_buffer_size(setup.write_buffer_size);
    let sink = Sink {
        out: Vec::new(),
        schedule: Schedule::new(setup.writes.clone()),
    };
    let mut tx = WebSocket::from_raw_socket(sink, sender, config, Vec::new());
    for (i, msg) in messages.iter().enumerate() {
        let result = if setup.flush_each[i % setup.flush_each.len()] {
            tx.send(msg.clone())
        } else {
            tx.write(msg.clone())
        };
        match result {
            Ok(()) => {}
            // Queued: the next flush finishes it. It must not be sent again.
            Err(e) if e.is_would_block() => {}
            Err(e) => return Err(TestCaseError::fail(format!("send {i}: {e:?}"))),
        }
    }
    retry(|| tx.flush()).map_err(|e| TestCaseError::fail(format!("flush: {e:?}")))?;
    match tx.close(close.code, &close.reason) {
        Ok(()) => {}
        Err(e) if e.is_would_block() => {}
        Err(e) => return Err(TestCaseError::fail(format!("close: {e:?}"))),
    }
    retry(|| tx.flush()).map_err(|e| TestCaseError::fail(format!("flush close: {e:?}")))?;
    let wire = tx.into_inner().out;

    // Every frame on the wire is masked exactly in the client role.
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let (frame, len) =
            parse_frame(rest).ok_or_else(|| TestCaseError::fail("the wire ends inside a frame"))?;
        prop_assert_eq!(frame.mask.is_some(), sender == Role::Client);
        prop_assert_eq!(frame.rsv, 0);
        if let (Some(size), 0..=2) = (setup.fragment_size, frame.opcode) {
            prop_assert!(frame.payload.len() <= size, "frame over fragment_size");
        }
        rest = &rest[len..];
    }

    // Decode.
    let source = Source {
        input: wire,
        pos: 0,
        schedule: Schedule::new(setup.reads.clone()),
        out: Vec::new(),
    };
    let config = Config::default().read_buffer_size(setup.read_buffer_size);
    let mut rx = WebSocket::from_raw_socket(source, receiver, config, Vec::new());
    let mut received = Vec::new();
    let end = loop {
        match retry(|| rx.read()) {
            Ok(msg) => received.push(msg),
            Err(e) => break e,
        }
    };
    prop_assert!(
        matches!(&end, Error::ConnectionClosed(Some(f)) if *f == close),
        "ended with {:?}",
        end
    );
    let mut expected: Vec<Message> = messages.to_vec();
    expected.push(Message::Close(Some(close.clone())));
    prop_assert_eq!(received.len(), expected.len());
    for (i, (got, want)) in received.iter().zip(&expected).enumerate() {
        prop_assert!(
            got == want,
            "message {} differs: {:?} != {:?}",
            i,
            got,
            want
        );
    }

    // The receiver answered every ping with a pong carrying its payload, then echoed the
    // close code; masked exactly in the client role.
    let source = rx.into_inner();
    prop_assert_eq!(source.pos, source.input.len(), "input left unread");
    let mut replies: Vec<Frame> = Vec::new();
    let mut rest = &source.out[..];
    while !rest.is_empty() {
        let (frame, len) =
            parse_frame(rest).ok_or_else(|| TestCaseError::fail("replies end inside a frame"))?;
        prop_assert_eq!(frame.mask.is_some(), receiver == Role::Client);
        replies.push(frame);
        rest = &rest[len..];
    }
    let mut want_replies: Vec<(u8, Vec<u8>)> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Ping(p) => Some((0xA, p.clone())),
            _ => None,
        })
        .collect();
    want_replies.push((0x8, 1000u16.to_be_bytes().to_vec()));
    let got_replies: Vec<(u8, Vec<u8>)> =
        replies.into_iter().map(|f| (f.opcode, f.payload)).collect();
    prop_assert_eq!(got_replies, want_replies);
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Client to server: masked frames, unmasked by the server.
    #[test]
    fn client_to_server_round_trip(
        messages in proptest::collection::vec(message(), 0..10),
        setup in setup(),
    ) {
        round_trip(Role::Client, &messages, &setup)?;
    }

    /// Server to client: unmasked frames, and large frames written straight through.
    #[test]
    fn server_to_client_round_trip(
        messages in proptest::collection::vec(message(), 0..10),
        setup in setup(),
    ) {
        round_trip(Role::Server, &messages, &setup)?;
    }
}

// ---------------------------------------------------------------------------------------
// The frame header codec.
// ---------------------------------------------------------------------------------------

fn payload_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..126,
        126u64..=0xFFFF,
        0x1_0000u64..(1 << 63),
        prop::sample::select(vec![0, 125, 126, 127, 0xFFFF, 0x1_0000, (1 << 63) - 1]),
    ]
}

fn opcode() -> impl Strategy<Value = OpCode> {
    prop::sample::select(vec![
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ])
}

/// Any header `parse` accepts: control frames are final and at most 125 bytes.
fn valid_header() -> impl Strategy<Value = FrameHeader> {
    (
        any::<bool>(),
        0u8..8,
        opcode(),
        any::<Option<[u8; 4]>>(),
        payload_len(),
    )
        .prop_map(|(fin, rsv, opcode, mask, payload_len)| {
            let control = opcode.is_control();
            FrameHeader {
                fin: fin || control,
                rsv,
                opcode,
                mask,
                payload_len: if control {
                    payload_len % 126
                } else {
                    payload_len
                },
            }
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    /// encode then parse gives the same header and length; every strict prefix is "need
    /// more" (`Ok(None)`); bytes after the header are not looked at.
    #[test]
    fn frame_header_round_trips(
        header in valid_header(),
        trailing in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        let extended = match header.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        let masked = if header.mask.is_some() { 4 } else { 0 };
        prop_assert_eq!(n, 2 + extended + masked, "not the shortest encoding");
        for cut in 0..n {
            prop_assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "prefix {}", cut);
        }
        prop_assert_eq!(FrameHeader::parse(&out[..n]), Ok(Some((header, n))));
        let mut longer = out[..n].to_vec();
        longer.extend_from_slice(&trailing);
        prop_assert_eq!(FrameHeader::parse(&longer), Ok(Some((header, n))));
    }

    /// Control frames that are fragmented or longer than 125 bytes are refused once the
    /// length is known, never accepted; prefixes before that are "need more".
    #[test]
    fn invalid_control_headers_are_refused(
        opcode in prop::sample::select(vec![OpCode::Close, OpCode::Ping, OpCode::Pong]),
        fin in any::<bool>(),
        mask in any::<Option<[u8; 4]>>(),
        payload_len in payload_len(),
    ) {
        // Invalid by length, or else by being fragmented.
        let fin = fin && payload_len > 125;
        let header = FrameHeader { fin, rsv: 0, opcode, mask, payload_len };
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        let expected = if payload_len > 125 {
            ProtocolError::ControlFrameTooLong
        } else {
            ProtocolError::FragmentedControlFrame
        };
        for cut in 0..=n {
            match FrameHeader::parse(&out[..cut]) {
                Ok(None) => prop_assert!(cut < n, "the whole header is not 'need more'"),
                Err(e) => prop_assert_eq!(e, expected),
                Ok(Some(h)) => prop_assert!(false, "accepted {:?}", h),
            }
        }
    }

    /// A 64-bit length with the top bit set is refused (1002), whatever the other bits.
    #[test]
    fn top_bit_of_64_bit_length_is_refused(
        len in (1u64 << 63)..=u64::MAX,
        b0 in prop::sample::select(vec![0x80u8, 0x82, 0x01, 0x00]),
        masked in any::<bool>(),
    ) {
        let mut bytes = vec![b0, 127 | if masked { 0x80 } else { 0 }];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        prop_assert_eq!(FrameHeader::parse(&bytes), Err(ProtocolError::InvalidLength));
    }

    /// Arbitrary bytes never panic the parser, and a header it accepts re-parses the same
    /// from exactly its own bytes.
    #[test]
    fn arbitrary_bytes_parse_consistently(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        if let Ok(Some((header, n))) = FrameHeader::parse(&bytes) {
            prop_assert!((2..=MAX_HEADER_LEN).contains(&n));
            prop_assert!(n <= bytes.len());
            prop_assert_eq!(FrameHeader::parse(&bytes[..n]), Ok(Some((header, n))));
            for cut in 0..n {
                prop_assert_eq!(FrameHeader::parse(&bytes[..cut]), Ok(None));
            }
            prop_assert!(header.payload_len < 1 << 63);
        }
    }
}
