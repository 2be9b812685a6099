//! Shared code for the stdws fuzz targets:
//!
//! - [`Input`]: splits a fuzz input into a [`Config`] choice, I/O schedules and the bytes the
//!   peer sends;
//! - [`FuzzStream`]: a fake `Read + Write` stream that hands those bytes out in chunks and
//!   injects `WouldBlock`, `Interrupted`, `TimedOut` and fatal errors on both sides, as the
//!   schedules say;
//! - [`decode`]: a small, independent reference decoder for RFC 6455 frame streams, used as
//!   an oracle for what `WebSocket::read` must return and for what it writes;
//! - [`run_connection`]: the read/echo loop shared by the stream targets, with its checks.
//!
//! Every check here panics with a message that says which invariant broke, so a crash found
//! by libFuzzer is a finding, never a harness quirk.

use std::cell::RefCell;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::rc::Rc;

use stdws::{Config, Error, Message, ReadHalf, Role, WebSocket, WriteHalf};

pub mod deflate;
pub mod proto;
pub mod seeds;

/// Largest message/frame accepted by the stream targets ("small config").
pub const LIMIT: usize = 1 << 20;

/// A fuzz input split into its parts.
///
/// Layout: `[cfg] [lens] [read schedule: lens & 0xF bytes] [write schedule: lens >> 4 bytes]
/// [data...]`. `[0, 0]` followed by the data is the plain case: default-ish config, every
/// read returns as much as asked, every write takes everything.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub cfg: u8,
    pub read_schedule: &'a [u8],
    pub write_schedule: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn split(bytes: &'a [u8]) -> Input<'a> {
        let cfg = bytes.first().copied().unwrap_or(0);
        let lens = bytes.get(1).copied().unwrap_or(0);
        let rest = bytes.get(2..).unwrap_or_default();
        let rlen = usize::from(lens & 0x0F).min(rest.len());
        let (read_schedule, rest) = rest.split_at(rlen);
        let wlen = usize::from(lens >> 4).min(rest.len());
        let (write_schedule, data) = rest.split_at(wlen);
        Input {
            cfg,
            read_schedule,
            write_schedule,
            data,
        }
    }

    /// The config bits of `cfg`:
    /// - bit 0: read buffer 1 (clamped to the 256-byte minimum) instead of 4 KiB;
    /// - bit 1: outgoing messages fragmented into 7-byte frames;
    /// - bit 2: write_buffer_size 1, so every outgoing data frame takes the write-through
    ///   (server) or chunked masking (client) path;
    /// - bit 3: tight limits (frame 300, message 700 bytes) instead of 1 MiB;
    /// - bit 5: max_write_buffer_size 64 bytes, so blocked writes hit `WriteBufferFull`;
    /// - bit 6: tight HTTP limits (head 200 bytes, 4 headers), and in the handshake targets
    ///   the schedules' errors apply during the handshake too (see [`Wire::calm`]).
    ///
    /// Bit 4 and bits 6-7 are read by the targets (split halves, subprotocol choice...).
    pub fn config(&self) -> Config {
        let c = self.cfg;
        let (frame, message) = if c & 0x08 != 0 {
            (300, 700)
        } else {
            (LIMIT, LIMIT)
        };
        Config::default()
            .max_frame_size(Some(frame))
            .max_message_size(Some(message))
            .max_head_size(if c & 0x40 != 0 { 200 } else { 4096 })
            .max_headers(if c & 0x40 != 0 { 4 } else { 64 })
            .read_buffer_size(if c & 0x01 != 0 { 1 } else { 4096 })
            .fragment_size((c & 0x02 != 0).then_some(7))
            .write_buffer_size(if c & 0x04 != 0 { 1 } else { 16 << 10 })
            .max_write_buffer_size(if c & 0x20 != 0 { 64 } else { LIMIT })
    }

    /// Whether the write schedule can make a write fail (then what was written may be cut
    /// short, and the exact output checks are relaxed to prefix checks).
    pub fn write_errors(&self) -> bool {
        self.write_schedule.iter().any(|&b| b >= 0xFC)
    }

    /// Whether the read schedule injects a fatal (non-retryable) read error.
    pub fn fatal_read_errors(&self) -> bool {
        self.read_schedule.contains(&0xFC)
    }
}

/// What one schedule byte does to one `read` or `write` call:
/// `0xFF` WouldBlock, `0xFE` Interrupted, `0xFD` TimedOut, `0xFC` a fatal error
/// (ConnectionReset / BrokenPipe), `0x00` no limit, anything else a limit of that many bytes.
/// An error is never injected twice in a row, so every two calls make progress.
#[derive(Debug, Default)]
struct Schedule {
    steps: Vec<u8>,
    at: usize,
    last_was_error: bool,
}

enum Step {
    Limit(usize),
    Fail(ErrorKind),
}

impl Schedule {
    fn new(steps: &[u8]) -> Schedule {
        Schedule {
            steps: steps.to_vec(),
            at: 0,
            last_was_error: false,
        }
    }

    fn next(&mut self, fatal: ErrorKind) -> Step {
        if self.steps.is_empty() {
            return Step::Limit(usize::MAX);
        }
        let b = self.steps[self.at % self.steps.len()];
        self.at += 1;
        let error = match b {
            0xFF => Some(ErrorKind::WouldBlock),
            0xFE => Some(ErrorKind::Interrupted),
            0xFD => Some(ErrorKind::TimedOut),
            0xFC => Some(fatal),
            _ => None,
        };
        match error {
            Some(kind) if !self.last_was_error => {
                self.last_was_error = true;
                Step::Fail(kind)
            }
            _ => {
                self.last_was_error = false;
                Step::Limit(if b == 0 || b >= 0xFC {
                    usize::MAX
                } else {
                    usize::from(b)
                })
            }
        }
    }
}

/// What the peer sent (read side) and what we wrote (write side), shared between the stream
/// and any extra write handle (the writer of a split connection).
#[derive(Debug, Default)]
pub struct Wire {
    pub data: Vec<u8>,
    pub pos: usize,
    pub out: Vec<u8>,
    reads: Schedule,
    writes: Schedule,
    /// Replace `@ACCEPT@` in the unread data with the accept key for the
    /// `Sec-WebSocket-Key` written so far (client handshake target).
    pub substitute_accept: bool,
    /// While set (during a handshake, unless cfg bit 6 says otherwise), injected errors are
    /// all `Interrupted`: a blocking handshake fails on `WouldBlock` by design, and the
    /// fuzzer should get past it to the frames.
    pub calm: bool,
    pub read_calls: usize,
    pub write_calls: usize,
}

/// The marker the client-handshake seeds use in place of `Sec-WebSocket-Accept`'s value.
pub const ACCEPT_MARKER: &[u8] = b"@ACCEPT@";

impl Wire {
    fn substitute(&mut self) {
        self.substitute_accept = false;
        let Some(key) = header_value(&self.out, b"Sec-WebSocket-Key") else {
            return;
        };
        let accept = stdws::handshake::derive_accept_key(&String::from_utf8_lossy(key));
        let mut replaced = self.data[..self.pos].to_vec();
        let mut rest = &self.data[self.pos..];
        while let Some(i) = find(rest, ACCEPT_MARKER) {
            replaced.extend_from_slice(&rest[..i]);
            replaced.extend_from_slice(accept.as_bytes());
            rest = &rest[i + ACCEPT_MARKER.len()..];
        }
        replaced.extend_from_slice(rest);
        self.data = replaced;
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_calls += 1;
        if self.substitute_accept {
            self.substitute();
        }
        let limit = match self.reads.next(ErrorKind::ConnectionReset) {
            Step::Fail(_) if self.calm => return Err(ErrorKind::Interrupted.into()),
            Step::Fail(kind) => return Err(kind.into()),
            Step::Limit(n) => n,
        };
        let n = buf.len().min(limit).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_calls += 1;
        let mut limit = match self.writes.next(ErrorKind::BrokenPipe) {
            Step::Fail(_) if self.calm => return Err(ErrorKind::Interrupted.into()),
            Step::Fail(kind) => return Err(kind.into()),
            Step::Limit(n) => n,
        };
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(limit);
            self.out.extend_from_slice(&buf[..take]);
            n += take;
            limit -= take;
            if limit == 0 {
                break;
            }
        }
        Ok(n)
    }
}

/// The fake stream: reads come from the fuzz input, writes go to [`Wire::out`].
#[derive(Debug, Clone)]
pub struct FuzzStream(pub Rc<RefCell<Wire>>);

impl FuzzStream {
    pub fn new(input: &Input<'_>, data: &[u8]) -> FuzzStream {
        FuzzStream(Rc::new(RefCell::new(Wire {
            data: data.to_vec(),
            reads: Schedule::new(input.read_schedule),
            writes: Schedule::new(input.write_schedule),
            ..Wire::default()
        })))
    }

    pub fn wire(&self) -> std::cell::RefMut<'_, Wire> {
        self.0.borrow_mut()
    }
}

impl Read for FuzzStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl Write for FuzzStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.borrow_mut().write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `STDWS_FUZZ_DEBUG=1` prints what each run of a stream target did (for checking seeds).
pub fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("STDWS_FUZZ_DEBUG").is_some())
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of the first `name: value` line in an HTTP head we wrote (exact-case name).
pub fn header_value<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut key = b"\r\n".to_vec();
    key.extend_from_slice(name);
    key.extend_from_slice(b": ");
    let start = find(head, &key)? + key.len();
    let len = find(&head[start..], b"\r\n")?;
    Some(&head[start..start + len])
}

/// The end of the first HTTP head in `buf`, as RFC 9112 delimits it (a blank line; lines may
/// end in CRLF or LF): a second, independent implementation of what `read_head` does.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            match &buf[i + 1..] {
                [b'\n', ..] => return Some(i + 2),
                [b'\r', b'\n', ..] => return Some(i + 3),
                _ => {}
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// The reference decoder.
// ---------------------------------------------------------------------------------------

/// How a decoded byte stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The bytes ran out; `clean` if at a frame boundary outside any message.
    Eof { clean: bool },
    /// A violation that fails the connection with this close code.
    Error(u16),
    /// A close frame; `trailing` bytes followed it.
    Closed { trailing: usize },
}

#[derive(Debug, Clone)]
pub struct Decoded {
    pub messages: Vec<Message>,
    pub end: End,
}

/// Decodes an RFC 6455 frame stream from its start, as an endpoint that `expect_masked`
/// frames would, with the given limits. Written from the RFC without looking at how stdws
/// does it, and deliberately simple (whole input in memory, re-validates text per frame).
pub fn decode(bytes: &[u8], expect_masked: bool, max_frame: u64, max_message: u64) -> Decoded {
    let mut messages = Vec::new();
    // (is_text, bytes so far) of a fragmented message.
    let mut partial: Option<(bool, Vec<u8>)> = None;
    let mut pos = 0usize;
    let done = |messages, end| Decoded { messages, end };
    loop {
        let rest = &bytes[pos..];
        let eof = |partial: &Option<(bool, Vec<u8>)>, at_boundary: bool| End::Eof {
            clean: at_boundary && partial.is_none(),
        };
        if rest.len() < 2 {
            return done(messages, eof(&partial, rest.is_empty()));
        }
        let (b0, b1) = (rest[0], rest[1]);
        let fin = b0 & 0x80 != 0;
        let rsv = b0 & 0x70;
        let op = b0 & 0x0F;
        if !matches!(op, 0 | 1 | 2 | 8 | 9 | 10) {
            return done(messages, End::Error(1002));
        }
        let masked = b1 & 0x80 != 0;
        let (len, mut header) = match b1 & 0x7F {
            126 => {
                if rest.len() < 4 {
                    return done(messages, eof(&partial, false));
                }
                (u64::from(rest[2]) << 8 | u64::from(rest[3]), 4)
            }
            127 => {
                if rest.len() < 10 {
                    return done(messages, eof(&partial, false));
                }
                let len = rest[2..10]
                    .iter()
                    .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
                if len & (1 << 63) != 0 {
                    return done(messages, End::Error(1002));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let control = op >= 8;
        if control && (len > 125 || !fin) {
            return done(messages, End::Error(1002));
        }
        let mut key = [0u8; 4];
        if masked {
            if rest.len() < header + 4 {
                return done(messages, eof(&partial, false));
            }
            key.copy_from_slice(&rest[header..header + 4]);
            header += 4;
        }
        if rsv != 0 || masked != expect_masked {
            return done(messages, End::Error(1002));
        }
        let unmask = |payload: &[u8]| -> Vec<u8> {
            payload
                .iter()
                .enumerate()
                .map(|(i, &b)| if masked { b ^ key[i % 4] } else { b })
                .collect()
        };
        if control {
            let total = header + len as usize;
            if rest.len() < total {
                return done(messages, eof(&partial, false));
            }
            let payload = unmask(&rest[header..total]);
            pos += total;
            match op {
                9 => messages.push(Message::Ping(payload)),
                10 => messages.push(Message::Pong(payload)),
                _ => {
                    let frame = match payload.as_slice() {
                        [] => None,
                        [_] => return done(messages, End::Error(1002)),
                        [hi, lo, reason @ ..] => {
                            let code = u16::from(*hi) << 8 | u16::from(*lo);
                            if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
                                return done(messages, End::Error(1002));
                            }
                            let Ok(reason) = std::str::from_utf8(reason) else {
                                return done(messages, End::Error(1007));
                            };
                            Some(stdws::CloseFrame::new(code, reason))
                        }
                    };
                    messages.push(Message::Close(frame));
                    return done(
                        messages,
                        End::Closed {
                            trailing: bytes.len() - pos,
                        },
                    );
                }
            }
            continue;
        }
        match (op, &partial) {
            (0, None) | (1 | 2, Some(_)) => return done(messages, End::Error(1002)),
            _ => {}
        }
        let so_far = partial.as_ref().map_or(0, |(_, b)| b.len() as u64);
        if len > max_frame || so_far.saturating_add(len) > max_message {
            return done(messages, End::Error(1009));
        }
        if op != 0 {
            partial = Some((op == 1, Vec::new()));
        }
        let (is_text, buf) = partial.as_mut().expect("set above");
        let avail = (len as usize).min(rest.len() - header);
        buf.extend_from_slice(&unmask(&rest[header..header + avail]));
        if *is_text {
            if let Err(e) = std::str::from_utf8(buf) {
                if e.error_len().is_some() {
                    return done(messages, End::Error(1007));
                }
            }
        }
        if (avail as u64) < len {
            return done(messages, eof(&partial, false));
        }
        pos += header + avail;
        if fin {
            let (is_text, buf) = partial.take().expect("set above");
            if is_text {
                match String::from_utf8(buf) {
                    Ok(s) => messages.push(Message::Text(s)),
                    Err(_) => return done(messages, End::Error(1007)),
                }
            } else {
                messages.push(Message::Binary(buf));
            }
        }
    }
}

/// Messages compared the way the oracle needs: close frames by code only (stdws echoes the
/// peer's code without its reason, and adds its own reason to failure closes).
pub fn same(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Close(x), Message::Close(y)) => {
            x.as_ref().map(|f| f.code) == y.as_ref().map(|f| f.code)
        }
        _ => a == b,
    }
}

fn short(m: &Message) -> String {
    let s = format!("{m:?}");
    if s.len() > 120 {
        format!("{}...", &s[..120])
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// The connection loop shared by the stream targets.
// ---------------------------------------------------------------------------------------

/// A connection in one piece or split into halves.
#[allow(clippy::large_enum_variant)] // one per fuzz input, never moved around
pub enum Conn {
    Whole(WebSocket<FuzzStream>),
    Split(ReadHalf<FuzzStream, FuzzStream>, WriteHalf<FuzzStream>),
}

impl Conn {
    pub fn new(ws: WebSocket<FuzzStream>, split: bool) -> Conn {
        if split {
            let writer = ws.get_ref().clone();
            let (r, w) = ws.split_with(writer);
            Conn::Split(r, w)
        } else {
            Conn::Whole(ws)
        }
    }
    fn read(&mut self) -> stdws::Result<Message> {
        match self {
            Conn::Whole(ws) => ws.read(),
            Conn::Split(r, _) => r.read(),
        }
    }
    /// Queues an echo (`write` for a whole connection, `send` for a split one).
    fn echo(&mut self, m: Message) -> stdws::Result<()> {
        match self {
            Conn::Whole(ws) => ws.write(m),
            Conn::Split(_, w) => w.send(m),
        }
    }
    fn close(&mut self) -> stdws::Result<()> {
        match self {
            Conn::Whole(ws) => ws.close(1000, "bye"),
            Conn::Split(_, w) => w.close(1000, "bye"),
        }
    }
    fn can_read(&self) -> bool {
        match self {
            Conn::Whole(ws) => ws.can_read(),
            Conn::Split(r, _) => r.can_read(),
        }
    }
}

/// How a connection's read loop ended.
#[derive(Debug)]
pub enum Outcome {
    /// `read` returned the peer's close.
    Close,
    /// `read` failed with this error.
    Failed(Error),
    /// The iteration bound was reached (the loop had made progress all along).
    Bound,
}

/// Runs the read/echo loop on `conn` and checks it against the reference decoder:
///
/// - every message is within the limits, and ping/pong payloads are at most 125 bytes;
/// - the messages are exactly those of `decode(peer_bytes)` (a prefix of them if an I/O
///   error ended the connection early), and the connection ends the same way (EOF ->
///   `AbnormalClosure`, violation -> an error with the same close code, close -> `Close`);
/// - what was written (`out_frames`, the bytes after any HTTP head) decodes without error as
///   frames of the opposite role: the pongs, echoes and close reply/failure close, in order,
///   and nothing after our close frame;
/// - after the end, `read` keeps failing and never panics.
pub fn run_connection(
    input: &Input<'_>,
    stream: &FuzzStream,
    mut conn: Conn,
    role: Role,
    peer_bytes: &[u8],
    out_start: usize,
) {
    let config = input.config();
    let max_frame = config.max_frame_size.map_or(u64::MAX, |n| n as u64);
    let max_message = config.max_message_size.map_or(u64::MAX, |n| n as u64);
    let server = role == Role::Server;
    let split = matches!(conn, Conn::Split(..));

    let mut got: Vec<Message> = Vec::new();
    // What we expect to see written, in order, until `out_frozen` (a write failed).
    let mut expected_out: Vec<Message> = Vec::new();
    let mut out_frozen = false;
    let mut we_closed = false;
    // Every two reads or writes of the fake stream move at least one byte, so this bound is
    // only reached by a loop that makes no progress.
    let bound = 16 * peer_bytes.len() + 256;
    let mut outcome = Outcome::Bound;
    for _ in 0..bound {
        match conn.read() {
            Ok(m) => {
                match &m {
                    Message::Text(t) => {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                        assert!(t.len() <= max_message as usize, "text over the limit");
                    }
                    Message::Binary(b) => {
                        assert!(b.len() <= max_message as usize, "binary over the limit")
                    }
                    Message::Ping(p) | Message::Pong(p) => {
                        assert!(p.len() <= 125, "control payload over 125 bytes")
                    }
                    Message::Close(f) => {
                        if let Some(f) = f {
                            assert!(f.code.is_valid(), "invalid close code returned");
                            assert!(f.reason.len() <= 123, "close reason over 123 bytes");
                        }
                    }
                }
                got.push(m.clone());
                match m {
                    Message::Ping(p) => {
                        // A split reader answers only the latest ping, whenever the writer
                        // is free: its pongs are checked apart from the other frames below.
                        if !split && !we_closed && !out_frozen {
                            expected_out.push(Message::Pong(p.clone()));
                        }
                        // A ping starting with '!' makes us start the closing handshake.
                        if p.first() == Some(&b'!') && !we_closed {
                            we_closed = true;
                            match conn.close() {
                                Err(e) if !e.is_would_block() => out_frozen = true,
                                _ if !out_frozen => expected_out.push(Message::Close(Some(
                                    stdws::CloseFrame::new(1000, "bye"),
                                ))),
                                _ => {}
                            }
                        }
                    }
                    Message::Pong(_) => {}
                    Message::Close(f) => {
                        // Our close was sent already: the peer's is not answered.
                        if !out_frozen && !we_closed {
                            expected_out.push(Message::Close(f));
                        }
                        outcome = Outcome::Close;
                        break;
                    }
                    data if we_closed => {
                        assert!(
                            conn.echo(data).is_err(),
                            "write() accepted a message after close()"
                        );
                    }
                    data => match conn.echo(data.clone()) {
                        Ok(()) if !out_frozen => expected_out.push(data),
                        Ok(()) => {}
                        Err(_) => out_frozen = true,
                    },
                }
            }
            Err(e) if e.is_would_block() => continue,
            Err(e) => {
                outcome = Outcome::Failed(e);
                break;
            }
        }
    }

    // The oracle for what was read.
    let reference = decode(peer_bytes, server, max_frame, max_message);
    if debug() {
        eprintln!(
            "[stdws-fuzz] role {role:?} split {split} cfg {:#04x}: {} messages, outcome {outcome:?}, reference end {:?}, wrote {} bytes",
            input.cfg,
            got.len(),
            reference.end,
            stream.wire().out.len() - out_start
        );
    }
    let ctx = || {
        format!(
            "role {role:?} split {split} cfg {:#04x}; got {} messages [{}], reference {} [{}] ending {:?}; outcome {outcome:?}",
            input.cfg,
            got.len(),
            got.iter().map(short).collect::<Vec<_>>().join(", "),
            reference.messages.len(),
            reference.messages.iter().map(short).collect::<Vec<_>>().join(", "),
            reference.end,
        )
    };
    assert!(
        got.len() <= reference.messages.len()
            && got.iter().zip(&reference.messages).all(|(a, b)| a == b),
        "read() returned messages the reference decoder does not: {}",
        ctx()
    );
    // An injected fatal I/O error or a failed write ends things early: only the prefix
    // property holds then.
    let io_ended = input.fatal_read_errors() || input.write_errors();
    match &outcome {
        Outcome::Close => {
            assert!(
                matches!(reference.end, End::Closed { .. })
                    && got.len() == reference.messages.len(),
                "read() returned Close where the reference did not: {}",
                ctx()
            );
        }
        Outcome::Failed(Error::AbnormalClosure) => {
            assert!(
                matches!(reference.end, End::Eof { .. }) && got.len() == reference.messages.len()
                    || io_ended,
                "AbnormalClosure, but the reference decoder {}",
                ctx()
            );
        }
        Outcome::Failed(e @ (Error::Protocol(_) | Error::Utf8 | Error::Capacity(_))) => {
            let code = e.close_code().map(|c| c.as_u16());
            if !matches!(e, Error::Capacity(stdws::CapacityError::WriteBufferFull)) {
                assert!(
                    reference.end == End::Error(code.unwrap_or(0))
                        && got.len() == reference.messages.len(),
                    "read() failed with {e:?} (code {code:?}) but the reference decoder {}",
                    ctx()
                );
                if !out_frozen && !we_closed {
                    expected_out.push(Message::Close(Some(stdws::CloseFrame::new(
                        code.unwrap_or(0),
                        "",
                    ))));
                }
            }
        }
        Outcome::Failed(Error::Io(e)) => {
            assert!(
                io_ended,
                "read() failed with an I/O error nobody injected: {e:?}; {}",
                ctx()
            );
        }
        Outcome::Failed(e) => {
            assert!(
                io_ended,
                "read() failed with {e:?} although no I/O error was injected: {}",
                ctx()
            );
        }
        Outcome::Bound => panic!(
            "read loop made no progress in {bound} iterations: {}",
            ctx()
        ),
    }

    // After the end, reading keeps failing without panicking.
    if !matches!(outcome, Outcome::Bound) {
        for _ in 0..3 {
            if let Ok(m) = conn.read() {
                panic!(
                    "read() returned {} after the connection ended ({outcome:?})",
                    short(&m)
                );
            }
        }
        assert!(!conn.can_read(), "can_read() after the end");
    }

    // The oracle for what was written.
    let out = stream.wire().out[out_start..].to_vec();
    let mut written = decode(&out, !server, u64::MAX, u64::MAX);
    if split {
        written.messages.retain(|m| match m {
            Message::Pong(p) => {
                assert!(
                    got.contains(&Message::Ping(p.clone())),
                    "split reader sent a pong for no ping: {p:?}"
                );
                false
            }
            _ => true,
        });
    }
    let octx = || {
        format!(
            "wrote {} messages [{}] ending {:?}, expected [{}]; {}",
            written.messages.len(),
            written
                .messages
                .iter()
                .map(short)
                .collect::<Vec<_>>()
                .join(", "),
            written.end,
            expected_out
                .iter()
                .map(short)
                .collect::<Vec<_>>()
                .join(", "),
            ctx()
        )
    };
    assert!(
        !matches!(written.end, End::Error(_)),
        "wrote an invalid frame stream: {}",
        octx()
    );
    if let End::Closed { trailing } = written.end {
        assert_eq!(
            trailing,
            0,
            "bytes written after our close frame: {}",
            octx()
        );
    }
    let n = written.messages.len().min(expected_out.len());
    assert!(
        written.messages[..n]
            .iter()
            .zip(&expected_out[..n])
            .all(|(a, b)| same(a, b)),
        "wrote other messages than expected: {}",
        octx()
    );
    if !input.write_errors() && !out_frozen {
        assert!(
            written.messages.len() == expected_out.len()
                && matches!(written.end, End::Eof { clean: true } | End::Closed { .. }),
            "the writes did not add up to the expected messages: {}",
            octx()
        );
    }
}

/// The `server_frames` / `client_frames` targets: a `WebSocket` of `role` built with
/// `from_raw_socket` and fed the input's frames, optionally with the first half already
/// read with the handshake (cfg bit 7) and split into halves (cfg bit 4).
pub fn fuzz_frames(bytes: &[u8], role: stdws::Role) {
    let input = Input::split(bytes);
    let buffered = if input.cfg & 0x80 != 0 {
        input.data.len() / 2
    } else {
        0
    };
    let (early, rest) = input.data.split_at(buffered);
    let stream = FuzzStream::new(&input, rest);
    let ws =
        stdws::WebSocket::from_raw_socket(stream.clone(), role, input.config(), early.to_vec());
    let conn = Conn::new(ws, input.cfg & 0x10 != 0);
    run_connection(&input, &stream, conn, role, input.data, 0);
}
