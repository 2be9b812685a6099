//! `WouldBlock`/`TimedOut` from the stream are not fatal: a `read` or `flush` that fails with
//! them can be retried and continues exactly where it stopped, losing and duplicating
//! nothing.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{client_frame, parse_frame, serve_one, RawConn};
use stdws::{CapacityError, CloseFrame, Config, Error, Message, Role, WebSocket};

/// An in-memory stream: reads come from `input`, writes go to `output`.
///
/// After every `block_every` bytes moved in one direction, the next call in that direction
/// fails once with `block_kind` (`WouldBlock` unless changed). A read returns at most
/// `max_read` bytes, and `WouldBlock` when the input is used up (more could arrive later).
/// While `write_blocked` is set every write fails with `WouldBlock`.
struct Choppy {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    block_every: usize,
    max_read: usize,
    read_left: usize,
    write_left: usize,
    write_blocked: bool,
    block_kind: ErrorKind,
}

impl Choppy {
    fn new(input: Vec<u8>, block_every: usize, max_read: usize) -> Choppy {
        Choppy {
            input,
            pos: 0,
            output: Vec::new(),
            block_every,
            max_read,
            read_left: block_every,
            write_left: block_every,
            write_blocked: false,
            block_kind: ErrorKind::WouldBlock,
        }
    }

    /// Never blocks while there is input.
    fn smooth(input: Vec<u8>) -> Choppy {
        Choppy::new(input, usize::MAX, usize::MAX)
    }
}

fn would_block() -> io::Error {
    ErrorKind::WouldBlock.into()
}

impl Read for Choppy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_left == 0 {
            self.read_left = self.block_every;
            return Err(self.block_kind.into());
        }
        let available = self.input.len() - self.pos;
        if available == 0 {
            return Err(would_block());
        }
        let n = buf
            .len()
            .min(self.max_read)
            .min(self.read_left)
            .min(available);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        self.read_left -= n;
        Ok(n)
    }
}

impl Write for Choppy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.write_blocked {
            return Err(would_block());
        }
        if self.write_left == 0 {
            self.write_left = self.block_every;
            return Err(self.block_kind.into());
        }
        let n = buf.len().min(self.write_left);
        self.output.extend_from_slice(&buf[..n]);
        self.write_left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

/// Runs `script` on a client `WebSocket` over an in-memory stream and returns the bytes it
/// wrote: real client frames (masked, possibly fragmented).
fn client_wire(config: Config, script: impl FnOnce(&mut WebSocket<Choppy>)) -> Vec<u8> {
    let mut ws =
        WebSocket::from_raw_socket(Choppy::smooth(Vec::new()), Role::Client, config, vec![]);
    script(&mut ws);
    ws.flush().unwrap();
    ws.into_inner().output
}

/// Client wire bytes for a mix of messages, and the messages a server must read from them.
fn scenario() -> (Vec<u8>, Vec<Message>) {
    let unicode = "Grüße, 世界! 🦀🦀 ".repeat(40);
    let long_text = "ab€🦀ß".repeat(500);
    let bin300 = pattern(300);
    let bin200 = pattern(200);
    let bin70k = pattern(70_000);

    // Fragmented into 7-byte frames: multi-byte characters straddle frames.
    let mut wire = client_wire(Config::default().fragment_size(Some(7)), |ws| {
        ws.send_text("hello").unwrap();
        ws.send_binary(&bin300).unwrap();
        ws.ping(b"p1").unwrap();
        ws.send_text(&unicode).unwrap();
        ws.send(Message::Pong(b"unsolicited".to_vec())).unwrap();
        ws.send_text("").unwrap();
        ws.send_binary(&[]).unwrap();
        ws.ping(b"").unwrap();
    });
    // One frame per message: 16-bit and 64-bit length headers.
    wire.extend(client_wire(Config::default(), |ws| {
        ws.send_binary(&bin200).unwrap();
        ws.send_binary(&bin70k).unwrap();
        ws.send_text(&long_text).unwrap();
    }));
    // A ping between the fragments of a message (the library's sender never does this).
    wire.extend(client_frame(false, 1, b"frag"));
    wire.extend(client_frame(true, 9, b"mid-ping"));
    wire.extend(client_frame(false, 0, b"mented "));
    wire.extend(client_frame(true, 0, "tëxt".as_bytes()));
    wire.extend(client_wire(Config::default(), |ws| {
        ws.close(1000, "done").unwrap();
    }));

    let expected = vec![
        Message::text("hello"),
        Message::Binary(bin300),
        Message::Ping(b"p1".to_vec()),
        Message::Text(unicode),
        Message::Pong(b"unsolicited".to_vec()),
        Message::text(""),
        Message::binary(vec![]),
        Message::Ping(vec![]),
        Message::Binary(bin200),
        Message::Binary(bin70k),
        Message::Text(long_text),
        Message::Ping(b"mid-ping".to_vec()),
        Message::text("fragmented tëxt"),
        Message::Close(Some(CloseFrame::new(1000, "done"))),
    ];
    (wire, expected)
}

/// Calls `read` until `count` messages came out, retrying would-block errors.
fn read_messages<T: Read + Write>(
    ws: &mut WebSocket<T>,
    count: usize,
    limit: usize,
) -> (Vec<Message>, usize) {
    let mut messages = Vec::new();
    let mut retries = 0;
    while messages.len() < count {
        match ws.read() {
            Ok(msg) => messages.push(msg),
            Err(e) if e.is_would_block() => {
                retries += 1;
                assert!(
                    retries <= limit,
                    "no progress after {retries} retries; got {} messages",
                    messages.len()
                );
            }
            Err(e) => panic!("read failed after {} messages: {e:?}", messages.len()),
        }
    }
    (messages, retries)
}

/// Calls `flush` until it succeeds; returns how many times it would-blocked.
fn flush_all<T: Read + Write>(ws: &mut WebSocket<T>) -> usize {
    let mut retries = 0;
    loop {
        match ws.flush() {
            Ok(()) => return retries,
            Err(e) if e.is_would_block() => {
                retries += 1;
                assert!(retries < 1_000_000, "flush makes no progress");
            }
            Err(e) => panic!("flush failed: {e:?}"),
        }
    }
}

/// The frames in `bytes`, decoded independently of the library.
fn frames(mut bytes: &[u8]) -> Vec<common::Frame> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (frame, len) = parse_frame(bytes).expect("complete frame");
        out.push(frame);
        bytes = &bytes[len..];
    }
    out
}

/// Feeds the scenario to a server through a [`Choppy`] stream and checks every message
/// comes out once, in order. Returns how many reads would-blocked.
fn check_scenario(block_every: usize, max_read: usize, kind: ErrorKind, config: Config) -> usize {
    let (wire, expected) = scenario();
    let mut stream = Choppy::new(wire.clone(), block_every, max_read);
    stream.block_kind = kind;
    let mut server = WebSocket::from_raw_socket(stream, Role::Server, config, vec![]);
    let (got, retries) = read_messages(&mut server, expected.len(), 4 * wire.len() + 100);
    let label = format!("block_every={block_every} max_read={max_read} {kind:?}");
    assert_eq!(got.len(), expected.len(), "{label}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(g == e, "{label}: message {i} differs: got {g:?}");
    }
    assert_eq!(
        server.get_ref().pos,
        wire.len(),
        "{label}: input not consumed"
    );
    // The close reply (and the pongs) may still be queued: push them out, then the end is
    // reported once.
    flush_all(&mut server);
    match server.read() {
        Err(Error::ConnectionClosed(Some(frame))) => assert_eq!(frame.code.as_u16(), 1000),
        other => panic!("{label}: expected ConnectionClosed, got {other:?}"),
    }
    // The server answered every ping once, in order, then replied to the close.
    let replies: Vec<(u8, Vec<u8>)> = frames(&server.get_ref().output)
        .into_iter()
        .map(|f| {
            assert!(f.mask.is_none() && f.fin, "{label}: {f:?}");
            (f.opcode, f.payload)
        })
        .collect();
    assert_eq!(
        replies,
        [
            (0xA, b"p1".to_vec()),
            (0xA, vec![]),
            (0xA, b"mid-ping".to_vec()),
            (0x8, vec![0x03, 0xE8]),
        ],
        "{label}"
    );
    retries
}

#[test]
fn reads_resume_after_would_block_at_every_position() {
    for block_every in [1, 2, 3, 7] {
        for max_read in [1, 2, 3, 7] {
            let retries = check_scenario(
                block_every,
                max_read,
                ErrorKind::WouldBlock,
                Config::default(),
            );
            // The stream really interrupted the reads (one error per block_every bytes).
            assert!(retries > 70_000 / block_every, "{retries}");
        }
    }
}

#[test]
fn reads_resume_after_timed_out() {
    for (block_every, max_read) in [(1, 1), (2, 7), (7, 3)] {
        let retries = check_scenario(
            block_every,
            max_read,
            ErrorKind::TimedOut,
            Config::default(),
        );
        assert!(retries > 70_000 / block_every, "{retries}");
    }
}

#[test]
fn interrupted_reads_and_writes_are_retried_internally() {
    // Interrupted is never reported: the retries counted here are all for the end of the
    // input, which `read` never reaches before the last message.
    let retries = check_scenario(3, 7, ErrorKind::Interrupted, Config::default());
    assert_eq!(retries, 0);
}

#[test]
fn reads_resume_with_the_smallest_read_buffer() {
    for (block_every, max_read) in [(1, 1), (3, 7), (7, 2), (100, 4096), (5000, 300)] {
        let config = Config::default().read_buffer_size(1);
        check_scenario(block_every, max_read, ErrorKind::WouldBlock, config);
    }
}

#[test]
fn reads_without_blocking_give_the_same_messages() {
    let retries = check_scenario(
        usize::MAX,
        usize::MAX,
        ErrorKind::WouldBlock,
        Config::default(),
    );
    assert_eq!(retries, 0);
}

#[test]
fn bytes_read_during_the_handshake_are_used_first() {
    let (wire, expected) = scenario();
    for split in [1, 2, 5, 100, 1000, 70_500, wire.len()] {
        let (buffered, rest) = wire.split_at(split);
        let stream = Choppy::new(rest.to_vec(), 3, 7);
        let mut server =
            WebSocket::from_raw_socket(stream, Role::Server, Config::default(), buffered.to_vec());
        let (got, _) = read_messages(&mut server, expected.len(), 4 * wire.len() + 100);
        assert!(got == expected, "split at {split}");
    }
}

/// A `role` connection reading `output` (what the other side wrote) as it is.
fn peer(output: Vec<u8>, role: Role) -> WebSocket<Choppy> {
    WebSocket::from_raw_socket(Choppy::smooth(output), role, Config::default(), vec![])
}

/// The `role` peer decodes exactly `expected` from `output`, in order, and nothing more.
fn assert_peer_reads_exactly(output: Vec<u8>, role: Role, expected: Vec<Message>) {
    let mut ws = peer(output, role);
    for message in expected {
        assert_eq!(ws.read().unwrap(), message);
    }
    assert!(ws.read().unwrap_err().is_would_block(), "nothing more");
}

#[test]
fn large_send_resumes_through_a_stream_taking_3_bytes_at_a_time() {
    let data = pattern(70_000);
    let mut server = WebSocket::from_raw_socket(
        Choppy::new(Vec::new(), 3, 3),
        Role::Server,
        Config::default(),
        vec![],
    );
    let err = server.send_binary(&data).unwrap_err();
    assert!(err.is_would_block(), "{err:?}");
    let retries = flush_all(&mut server);
    assert!(retries > 10_000, "{retries}"); // ~70,010 bytes, 3 per write
    let output = server.into_inner().output;
    assert_eq!(output.len(), 10 + data.len());
    // A client decodes exactly one message, the one sent.
    assert_peer_reads_exactly(output, Role::Client, vec![Message::Binary(data)]);
}

#[test]
fn client_large_owned_sends_resume_through_a_stream_taking_3_bytes_at_a_time() {
    // A client masks a large message it owns in place and writes it through: when the
    // stream refuses bytes midway, the rest (already masked) is queued, and the messages
    // that follow (masked while copied) still go out after it, once, in order.
    let data = pattern(70_000);
    let text = "ab€🦀ß".repeat(3000);
    let mut client = WebSocket::from_raw_socket(
        Choppy::new(Vec::new(), 3, 3),
        Role::Client,
        Config::default().fragment_size(Some(30_000)),
        vec![],
    );
    let sent = [
        Message::Binary(data.clone()),
        Message::Text(text.clone()),
        Message::binary(vec![7; 5]),
    ];
    for message in sent.clone() {
        match client.write(message) {
            Err(e) if e.is_would_block() => {}
            other => other.unwrap(),
        }
    }
    let retries = flush_all(&mut client);
    assert!(retries > 10_000, "{retries}");
    assert_peer_reads_exactly(client.into_inner().output, Role::Server, Vec::from(sent));
}

#[test]
fn messages_sent_while_blocked_are_queued_once_in_order() {
    let big = pattern(20_000);
    let mut client = WebSocket::from_raw_socket(
        Choppy::new(Vec::new(), 3, 3),
        Role::Client,
        Config::default(),
        vec![],
    );
    assert!(client.send_binary(&big).unwrap_err().is_would_block());
    // Still blocked: each of these is queued behind the first, not sent twice.
    for result in [
        client.send_text("second"),
        client.ping(b"third"),
        client.send(Message::binary(vec![4; 4])),
    ] {
        assert!(result.unwrap_err().is_would_block());
    }
    flush_all(&mut client);
    let mut server = peer(client.into_inner().output, Role::Server);
    let (got, _) = read_messages(&mut server, 4, 0);
    assert_eq!(
        got,
        [
            Message::Binary(big),
            Message::text("second"),
            Message::Ping(b"third".to_vec()),
            Message::binary(vec![4; 4]),
        ]
    );
    assert!(server.read().unwrap_err().is_would_block(), "nothing more");
}

#[test]
fn full_write_buffer_refuses_new_messages_and_pauses_reading() {
    let config = Config::default()
        .write_buffer_size(100)
        .max_write_buffer_size(1000);
    let incoming = client_wire(Config::default(), |ws| ws.send_text("incoming").unwrap());
    let mut stream = Choppy::smooth(incoming);
    stream.write_blocked = true;
    let mut server = WebSocket::from_raw_socket(stream, Role::Server, config, vec![]);
    let first = pattern(2000);
    assert!(server.send_binary(&first).unwrap_err().is_would_block());
    // Over max_write_buffer_size: refused, not queued.
    match server.send_binary(b"refused") {
        Err(Error::Capacity(CapacityError::WriteBufferFull)) => {}
        other => panic!("expected WriteBufferFull, got {other:?}"),
    }
    // Reading pauses too (it would make the peer's pongs pile up).
    assert!(server.read().unwrap_err().is_would_block());
    assert_eq!(
        server.get_ref().pos,
        0,
        "read while the write buffer was full"
    );
    // Once the stream takes bytes again, everything resumes.
    server.get_mut().write_blocked = false;
    assert_eq!(server.read().unwrap(), Message::text("incoming"));
    flush_all(&mut server);
    server.send_binary(b"accepted").unwrap();
    let output = std::mem::take(&mut server.get_mut().output);
    let expected = vec![
        Message::Binary(first),
        Message::binary(b"accepted".to_vec()),
    ];
    assert_peer_reads_exactly(output, Role::Client, expected);
}

// ---------------------------------------------------------------------------------------
// TcpStream with a read timeout.
// ---------------------------------------------------------------------------------------

const SHORT: Duration = Duration::from_millis(50);

/// Reads until a message that is not a would-block error arrives; counts the would-blocks.
fn read_through_timeouts<T: Read + Write>(
    ws: &mut WebSocket<T>,
) -> (stdws::Result<Message>, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut timeouts = 0;
    loop {
        match ws.read() {
            Err(e) if e.is_would_block() => {
                timeouts += 1;
                assert!(Instant::now() < deadline, "no message within 5 s");
            }
            other => return (other, timeouts),
        }
    }
}

#[test]
fn read_timeout_then_message_on_tcp() {
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = serve_one(move |stream| {
        let mut ws = stdws::accept(stream)?;
        ws.get_ref().set_read_timeout(Some(SHORT))?;
        let start = Instant::now();
        let first = ws.read().unwrap_err();
        let waited = start.elapsed();
        // A timed-out read leaves the connection usable: send a keep-alive ping.
        ws.ping(b"keepalive")?;
        ready_tx.send(()).unwrap();
        let pong = read_through_timeouts(&mut ws).0?;
        let message = read_through_timeouts(&mut ws).0?;
        Ok::<_, Error>((first, waited, pong, message))
    });
    let mut ws = common::connect(&server.url("/"));
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server timed out once");
    assert_eq!(ws.read().unwrap(), Message::Ping(b"keepalive".to_vec()));
    let text = "after the timeout ".repeat(1000);
    ws.send_text(&text).unwrap();
    let (first, waited, pong, message) = server.join_one().unwrap();
    assert!(first.is_would_block(), "{first:?}");
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
    assert_eq!(pong, Message::Pong(b"keepalive".to_vec()));
    assert_eq!(message, Message::Text(text));
}

#[test]
fn message_split_by_a_read_timeout_arrives_intact() {
    let text = "é".repeat(1000); // 2000 bytes; header is 8 bytes (16-bit length, mask)
    let frame = client_frame(true, 1, text.as_bytes());
    // Split inside the header, and inside a two-byte character of the payload.
    for split in [3, 8 + 1001] {
        let server = serve_one(|stream| {
            let mut ws = stdws::accept(stream).unwrap();
            ws.get_ref().set_read_timeout(Some(SHORT)).unwrap();
            read_through_timeouts(&mut ws)
        });
        let mut raw = RawConn::handshake(server.addr);
        raw.send(&frame[..split]);
        thread::sleep(Duration::from_millis(250));
        raw.send(&frame[split..]);
        let (message, timeouts) = server.join_one();
        assert_eq!(
            message.unwrap(),
            Message::Text(text.clone()),
            "split {split}"
        );
        // At least a few timeouts fell into the 250 ms gap, mid-frame.
        assert!(timeouts >= 2, "split {split}: {timeouts} timeouts");
    }
}
