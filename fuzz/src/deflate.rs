//! The `deflate` target: the permessage-deflate receive path (RFC 7692) of a
//! `proto::Connection` in either role, after a real negotiation between stdws's own
//! `ClientHandshake` and `ServerHandshake` with parameters from the input.
//!
//! The input is a small program that builds the peer's byte stream: compressed messages
//! (deflated here with miniz_oxide, or sent by stdws's own peer connection), fragmented,
//! with or without context takeover, ended by a sync flush or a final block, pings, pongs,
//! a close, decompression bombs, and raw bytes, arbitrary frames and arbitrary "compressed"
//! payloads. The stream is fed in chunks the input chooses (and again one byte at a time,
//! when short) and every run is checked:
//!
//! - no data message larger than `max_message_size` is delivered, whatever the ratio;
//!   the heap never grows past a bound set by the limits while the stream is fed (a bomb
//!   fails with 1009 without inflating it);
//! - `state()` only moves forward; the output stays within what the input can ask for
//!   (pongs, one close frame) and decodes as frames;
//! - a failure queues a close frame with its code (1002/1007/1009) as the last frame of
//!   the output, leaves the connection `Closed`, and nothing is read after it;
//! - when the program built only valid frames, exactly its messages are delivered, in
//!   order, and the run ends as built (a failure with one of the expected codes for a
//!   message that is too large, not UTF-8, or has RSV1 on a continuation frame; the
//!   peer's close; `AbnormalClosure` at EOF; or still open);
//! - both choppings deliver the same messages and end the same way.

use std::time::Instant;

use miniz_oxide::deflate::core::{CompressionStrategy, CompressorOxide};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};
use stdws::proto::{Connection, ServerHandshake};
use stdws::{ClientBuilder, Config, DeflateConfig, Error, Message, State};

use crate::proto::{peak_bytes, reset_peak};

/// Limits of the connection under test: (max frame, max message).
const TIGHT: (usize, usize) = (300, 700);
const LOOSE: (usize, usize) = (1 << 20, 64 << 10);

/// Streams up to this long are also fed one byte at a time (each piece costs an inflater
/// call that zeroes up to 16 KiB of room, so this is most of the time of a run).
const BYTEWISE: usize = 1024;

/// A message built by the program is at most this large (bombs included).
const MAX_BUILT: usize = 1 << 20;

/// The input's header bytes.
///
/// - `cfg`: bit 0 client role (server otherwise); 1 the client offers
///   `server_no_context_takeover`; 2 the client offers `client_no_context_takeover`; 3 the
///   server imposes `server_no_context_takeover`; 4 the server imposes
///   `client_no_context_takeover`; 5 tight limits (frame 300, message 700; otherwise 1 MiB
///   and 64 KiB); 6 256-byte read buffer (4 KiB otherwise); 7 EOF after the stream.
/// - `client_bits`, `server_bits`: the client's offer and the server's configuration of
///   window bits: bits 0-2 `client_max_window_bits` = 8 + value if bit 3; bits 4-6
///   `server_max_window_bits` = 8 + value if bit 7.
/// - `misc`: bits 0-3 the number of chunk bytes that follow; bit 4 messages are sent by
///   stdws's own peer connection (its compressor) instead of deflated here; bit 5 that peer
///   fragments into 64-byte frames; bit 6 compression level 9 (1 otherwise); bit 7 level 0
///   (stored blocks only).
pub const HEADER: usize = 4;

/// Program operations: `op >> 5` is the kind, `op & 31` its parameter `p`.
pub mod op {
    /// `p + 1` raw bytes follow, copied to the stream as they are.
    pub const RAW: u8 = 0;
    /// A data message: a flags byte, a length byte `L`, then `L` bytes of a unit that is
    /// repeated `1 << (p & 15)` times (at most 1 MiB). Flags: bit 0 text; bits 1-2 frames
    /// minus one; bit 3 end with a final block (`MZFlush::Finish`) instead of a sync flush;
    /// bit 4 reset the compressor first; bit 5 RSV1 on the continuation frames too (a
    /// violation); bit 6 uncompressed (no RSV1); bit 7 a ping between the frames.
    pub const MSG: u8 = 1;
    /// A frame: a header byte (FIN bit 7, RSV bits 4-6, opcode bits 0-3), then `p` payload
    /// bytes (`p == 31`: a length byte follows first).
    pub const FRAME: u8 = 2;
    /// A ping with `p` payload bytes from the input.
    pub const PING: u8 = 3;
    /// A close frame, code 1000, with a reason of `p` bytes `x`.
    pub const CLOSE: u8 = 4;
    /// A final text (`p` odd) or binary frame with RSV1 and arbitrary payload: a length
    /// byte, then that many bytes.
    pub const GARBAGE: u8 = 5;
    /// A decompression bomb: `(p + 1) * 32 KiB` zeros, compressed, as one binary frame.
    pub const BOMB: u8 = 6;
    /// A pong with `p` payload bytes from the input.
    pub const PONG: u8 = 7;

    pub const fn op(kind: u8, p: u8) -> u8 {
        (kind << 5) | (p & 31)
    }
}

/// What a valid program says must come out of the connection.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close,
    /// The connection fails with one of these close codes.
    Fail(Vec<u16>),
}

/// A message as recorded by a run (digest only, so the run's heap stays its own).
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Text(usize, u64),
    Binary(usize, u64),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

#[derive(Debug, Clone, PartialEq)]
enum End {
    /// All bytes fed (no EOF), still open.
    Pending,
    /// The peer's close was delivered and the handshake reported (`ConnectionClosed`).
    Closed,
    /// `poll` failed: the error's close code (`None`: no close frame was owed).
    Failed(Option<u16>, String),
}

fn digest(bytes: &[u8]) -> u64 {
    // FNV-1a: only to compare payloads without keeping them.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn got_of(message: &Message) -> Got {
    match message {
        Message::Text(t) => Got::Text(t.len(), digest(t.as_bytes())),
        Message::Binary(b) => Got::Binary(b.len(), digest(b)),
        Message::Ping(p) => Got::Ping(p.clone()),
        Message::Pong(p) => Got::Pong(p.clone()),
        Message::Close(frame) => Got::Close(frame.as_ref().map(|f| u16::from(f.code))),
    }
}

fn got_of_expect(e: &Expect) -> Option<Got> {
    Some(match e {
        Expect::Text(t) => Got::Text(t.len(), digest(t.as_bytes())),
        Expect::Binary(b) => Got::Binary(b.len(), digest(b)),
        Expect::Ping(p) => Got::Ping(p.clone()),
        Expect::Pong(p) => Got::Pong(p.clone()),
        Expect::Close => Got::Close(Some(1000)),
        Expect::Fail(_) => return None,
    })
}

fn window(byte: u8, shift: u8) -> Option<u8> {
    let nibble = byte >> shift;
    (nibble & 0x08 != 0).then_some(8 + (nibble & 0x07))
}

/// The parameters of one input.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub client: bool,
    cfg: u8,
    client_bits: u8,
    server_bits: u8,
    misc: u8,
    limits: (usize, usize),
}

impl Setup {
    fn level(&self) -> u8 {
        if self.misc & 0x80 != 0 {
            0
        } else if self.misc & 0x40 != 0 {
            9
        } else {
            1
        }
    }

    fn config(&self, deflate: DeflateConfig, under_test: bool) -> Config {
        let mut config = Config::default()
            .deflate(Some(deflate.threshold(0).compression_level(self.level())))
            .max_write_buffer_size(usize::MAX / 4);
        if under_test {
            let small = self.cfg & 0x40 != 0;
            config = config
                .max_frame_size(Some(self.limits.0))
                .max_message_size(Some(self.limits.1))
                .read_buffer_size(if small { 256 } else { 4096 })
                .max_write_buffer_size(4096);
        } else if self.misc & 0x20 != 0 {
            config = config.fragment_size(Some(64));
        }
        config
    }

    /// A negotiated pair: (client, server), and the 101's `Sec-WebSocket-Extensions`.
    fn pair(&self) -> (Connection, Connection, String) {
        let c = self.cfg;
        let offer = DeflateConfig::default()
            .server_no_context_takeover(c & 0x02 != 0)
            .client_no_context_takeover(c & 0x04 != 0)
            .client_max_window_bits(window(self.client_bits, 0))
            .server_max_window_bits(window(self.client_bits, 4));
        let imposed = DeflateConfig::default()
            .server_no_context_takeover(c & 0x08 != 0)
            .client_no_context_takeover(c & 0x10 != 0)
            .client_max_window_bits(window(self.server_bits, 0))
            .server_max_window_bits(window(self.server_bits, 4));
        let client_config = self.config(offer, self.client);
        let server_config = self.config(imposed, !self.client);
        let mut client = ClientBuilder::new("ws://example.com/chat")
            .config(client_config)
            .handshake_machine()
            .expect("valid client configuration");
        let mut server = ServerHandshake::new(server_config);
        let request = client.output().to_vec();
        client.consume(request.len());
        let mut fed = 0;
        while fed < request.len() {
            let room = server.read_buf();
            let n = room.len().min(request.len() - fed);
            room[..n].copy_from_slice(&request[fed..fed + n]);
            fed += n;
            server.filled(n).expect("stdws's own request is accepted");
        }
        let mut server = server.accept().expect("stdws's own request is accepted");
        let head_len = crate::head_end(server.output()).expect("a 101 head");
        let head = server.output()[..head_len].to_vec();
        server.consume(head_len);
        let extensions = crate::header_value(&head, b"Sec-WebSocket-Extensions")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        assert!(
            extensions.starts_with("permessage-deflate"),
            "permessage-deflate not agreed: {extensions:?}"
        );
        let mut fed = 0;
        while fed < head.len() {
            let room = client.read_buf();
            let n = room.len().min(head.len() - fed);
            room[..n].copy_from_slice(&head[fed..fed + n]);
            fed += n;
            client.filled(n).expect("a complete 101");
        }
        let (client, _) = client
            .finish()
            .unwrap_or_else(|e| panic!("stdws's client refused stdws's 101 ({extensions}): {e:?}"));
        (client, server, extensions)
    }

    /// (connection under test, its peer, whether the peer compresses without context
    /// takeover).
    fn connections(&self) -> (Connection, Connection, bool) {
        let (client, server, extensions) = self.pair();
        if self.client {
            let nct = extensions.contains("server_no_context_takeover");
            (client, server, nct)
        } else {
            let nct = extensions.contains("client_no_context_takeover");
            (server, client, nct)
        }
    }
}

/// Builds the peer's frames.
struct Builder<'a> {
    input: &'a [u8],
    pos: usize,
    /// Frames from a client are masked.
    masked: bool,
    wire: Vec<u8>,
    expect: Vec<Expect>,
    /// `expect` is exactly what comes out, pings and pongs included (otherwise only its
    /// data messages and close are, and a failure if it ends with one).
    exact: bool,
    /// A close or a failure was expected, or what follows is not modelled: nothing more
    /// is expected.
    ended: bool,
    /// The peer connection fragments into 64-byte frames.
    peer_fragments: bool,
    /// Nothing unmodelled came before the expected end.
    modelled: bool,
    compressor: Box<CompressorOxide>,
    fresh: bool,
    /// The peer compresses each message on its own (no context takeover).
    reset_each: bool,
    peer: Option<Connection>,
    limits: (usize, usize),
    mask_counter: u8,
}

impl Builder<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.input.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.input.len() - self.pos);
        let s = &self.input[self.pos..self.pos + n];
        self.pos += n;
        s
    }

    fn frame(&mut self, first: u8, payload: &[u8]) {
        self.wire.push(first);
        let m = if self.masked { 0x80 } else { 0 };
        let len = payload.len();
        if len < 126 {
            self.wire.push(m | len as u8);
        } else if len <= 0xFFFF {
            self.wire.push(m | 126);
            self.wire.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.wire.push(m | 127);
            self.wire.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.masked {
            self.mask_counter = self.mask_counter.wrapping_add(0x35);
            let key = [self.mask_counter, 0xa5, !self.mask_counter, 0x3c];
            self.wire.extend_from_slice(&key);
            self.wire
                .extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            self.wire.extend_from_slice(payload);
        }
    }

    fn expect(&mut self, e: Expect) {
        if !self.ended {
            self.ended = matches!(e, Expect::Close | Expect::Fail(_));
            self.expect.push(e);
        }
    }

    fn deflate(&mut self, payload: &[u8], finish: bool) -> Vec<u8> {
        if self.reset_each && !self.fresh {
            self.compressor.reset();
        }
        let flush = if finish {
            MZFlush::Finish
        } else {
            MZFlush::Sync
        };
        let mut out = Vec::new();
        let mut rest = payload;
        loop {
            let start = out.len();
            let room = rest.len() / 2 + 256;
            out.resize(start + room, 0);
            let r = miniz_oxide::deflate::stream::deflate(
                &mut self.compressor,
                rest,
                &mut out[start..],
                flush,
            );
            rest = &rest[r.bytes_consumed..];
            out.truncate(start + r.bytes_written);
            let done = match r.status {
                Ok(MZStatus::StreamEnd) => true,
                Ok(_) => !finish && rest.is_empty() && r.bytes_written < room,
                Err(e) => panic!("miniz_oxide failed to deflate: {e:?}"),
            };
            if done {
                break;
            }
        }
        if finish {
            // A final block ends the stream: the next message starts a new one (the
            // receiver's window keeps this one, which the fresh compressor never refers
            // to).
            self.compressor.reset();
            self.fresh = true;
        } else {
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
            out.truncate(out.len() - 4);
            self.fresh = false;
        }
        out
    }

    /// Marks the expectations from here on as unknown: only the data messages so far are
    /// certain (used for raw bytes and frames that the builder does not model).
    fn unknown(&mut self) {
        if !self.ended {
            self.ended = true;
            self.modelled = false;
        }
    }

    /// A message the peer connection sends (its compressor, its framing).
    fn peer_message(&mut self, payload: Vec<u8>, text: bool) {
        let peer = self.peer.as_mut().expect("peer mode");
        let expect = if text {
            let s = String::from_utf8_lossy(&payload).into_owned();
            peer.send_text(&s).expect("the peer sends");
            Expect::Text(s)
        } else {
            peer.send_binary(&payload).expect("the peer sends");
            Expect::Binary(payload)
        };
        let frames = peer.output().to_vec();
        peer.consume(frames.len());
        self.wire.extend_from_slice(&frames);
        let len = match &expect {
            Expect::Text(s) => s.len(),
            Expect::Binary(b) => b.len(),
            _ => unreachable!(),
        };
        if len > self.limits.1 {
            self.expect(Expect::Fail(vec![1009]));
        } else if len > self.limits.0 && self.fragmented_peer_frame_may_exceed() {
            // Whether a frame of this message is over the frame limit depends on how the
            // peer compressed it.
            self.unknown();
        } else {
            self.expect(expect);
        }
    }

    /// Whether the peer's frames may be over the frame limit (it fragments into 64-byte
    /// frames only when asked).
    fn fragmented_peer_frame_may_exceed(&self) -> bool {
        !self.peer_fragments
    }

    fn message(&mut self, p: u8) {
        let (Some(flags), Some(len)) = (self.byte(), self.byte()) else {
            return;
        };
        let unit = self.take(len as usize).to_vec();
        let repeat = 1usize << (p & 15);
        let total = (unit.len() * repeat).min(MAX_BUILT);
        let payload: Vec<u8> = unit.iter().copied().cycle().take(total).collect();
        let text = flags & 0x01 != 0;
        if self.peer.is_some() {
            self.peer_message(payload, text);
            return;
        }
        let compressed = flags & 0x40 == 0;
        if flags & 0x10 != 0 && !self.fresh {
            self.compressor.reset();
            self.fresh = true;
        }
        let body = if compressed {
            self.deflate(&payload, flags & 0x08 != 0)
        } else {
            payload.clone()
        };
        let frames = 1 + usize::from((flags >> 1) & 0x03);
        let piece = body.len().div_ceil(frames).max(1);
        let mut pieces: Vec<&[u8]> = body.chunks(piece).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let n = pieces.len();
        let pings = flags & 0x80 != 0 && n > 1;
        let mut codes = Vec::new();
        if compressed && flags & 0x20 != 0 && n > 1 {
            codes.push(1002);
        }
        if pieces.iter().any(|p| p.len() > self.limits.0) || payload.len() > self.limits.1 {
            codes.push(1009);
        }
        let opcode = if text { 1 } else { 2 };
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == n { 0x80 } else { 0 };
            let op = if i == 0 { opcode } else { 0 };
            let rsv1 = compressed && (i == 0 || flags & 0x20 != 0);
            self.frame(fin | if rsv1 { 0x40 } else { 0 } | op, piece);
            if pings && i + 1 < n {
                self.frame(0x89, b"between");
            }
        }
        let expect = if text {
            match String::from_utf8(payload) {
                Ok(s) => Expect::Text(s),
                Err(_) => {
                    codes.push(1007);
                    Expect::Fail(Vec::new())
                }
            }
        } else {
            Expect::Binary(payload)
        };
        if codes.is_empty() {
            if pings {
                for _ in 1..n {
                    self.expect(Expect::Ping(b"between".to_vec()));
                }
            }
            self.expect(expect);
        } else {
            codes.sort_unstable();
            if pings && !self.ended {
                // How many of the pings come out before the failure depends on where it
                // is found: only the data messages are compared.
                self.exact = false;
            }
            self.expect(Expect::Fail(codes));
        }
    }

    fn run(&mut self) {
        while let Some(opb) = self.byte() {
            let (kind, p) = (opb >> 5, opb & 31);
            match kind {
                op::RAW => {
                    let raw = self.take(p as usize + 1).to_vec();
                    self.wire.extend_from_slice(&raw);
                    self.unknown();
                }
                op::MSG => self.message(p),
                op::FRAME => {
                    let Some(h) = self.byte() else { return };
                    let len = if p == 31 { self.byte().unwrap_or(0) } else { p };
                    let payload = self.take(len as usize).to_vec();
                    self.frame(h, &payload);
                    self.unknown();
                }
                op::PING | op::PONG => {
                    let payload = self.take(p as usize).to_vec();
                    let ping = kind == op::PING;
                    self.frame(if ping { 0x89 } else { 0x8A }, &payload);
                    self.expect(if ping {
                        Expect::Ping(payload)
                    } else {
                        Expect::Pong(payload)
                    });
                }
                op::CLOSE => {
                    let mut body = 1000u16.to_be_bytes().to_vec();
                    body.extend(std::iter::repeat(b'x').take(p as usize));
                    self.frame(0x88, &body);
                    self.expect(Expect::Close);
                }
                op::GARBAGE => {
                    let len = self.byte().unwrap_or(0);
                    let payload = self.take(len as usize).to_vec();
                    self.frame(0xC0 | if p & 1 != 0 { 1 } else { 2 }, &payload);
                    self.unknown();
                }
                op::BOMB => {
                    let zeros = vec![0u8; (p as usize + 1) * (32 << 10)];
                    if self.peer.is_some() {
                        self.peer_message(zeros, false);
                        continue;
                    }
                    let body = self.deflate(&zeros, false);
                    self.frame(0xC2, &body);
                    if body.len() > self.limits.0 || zeros.len() > self.limits.1 {
                        self.expect(Expect::Fail(vec![1009]));
                    } else {
                        self.expect(Expect::Binary(zeros));
                    }
                }
                _ => unreachable!(),
            }
            if self.wire.len() > 4 * MAX_BUILT {
                return;
            }
        }
    }
}

/// What one run saw.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    got: Vec<Got>,
    end: End,
}

fn rank(state: State) -> u8 {
    match state {
        State::Connecting => 0,
        State::Open => 1,
        State::Closing => 2,
        State::Closed => 3,
        #[allow(unreachable_patterns)]
        _ => 4,
    }
}

/// The frames of `bytes` (opcode, payload), which must be whole frames.
fn frames(bytes: &[u8], masked: bool) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes.len() - i >= 2, "output cut inside a frame header");
        let (b0, b1) = (bytes[i], bytes[i + 1]);
        assert_eq!(b1 & 0x80 != 0, masked, "output masking");
        i += 2;
        let mut len = u64::from(b1 & 0x7f);
        let ext = match len {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if ext > 0 {
            assert!(bytes.len() - i >= ext, "output cut inside a length");
            len = bytes[i..i + ext]
                .iter()
                .fold(0, |a, &b| (a << 8) | u64::from(b));
            i += ext;
        }
        let key = if masked {
            assert!(bytes.len() - i >= 4, "output cut inside a mask");
            let k = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            i += 4;
            k
        } else {
            [0; 4]
        };
        let len = len as usize;
        assert!(bytes.len() - i >= len, "output cut inside a payload");
        let payload = bytes[i..i + len]
            .iter()
            .enumerate()
            .map(|(j, b)| b ^ key[j % 4])
            .collect();
        i += len;
        out.push((b0 & 0x0f, payload));
    }
    out
}

/// Feeds `wire` to `conn` in chunks (`chunks` used cyclically: 0 as much as offered).
fn run(
    mut conn: Connection,
    setup: &Setup,
    wire: &[u8],
    chunks: &[u8],
    eof: bool,
    ctx: &str,
) -> Outcome {
    let (max_frame, max_message) = setup.limits;
    let masked_out = setup.client;
    let mut written: Vec<u8> = Vec::with_capacity(3 * wire.len() + 512);
    let mut got = Vec::new();
    let mut end: Option<End> = None;
    let mut state = rank(conn.state());
    assert_eq!(conn.state(), State::Open, "{ctx}");
    let now = Instant::now();
    let base = reset_peak();
    // The connection's inflater, read buffer, one message being built and one handed out,
    // the recorded digests and pongs: nothing may scale with the compression ratio.
    let bound = 3 * max_message + (512 << 10);
    let mut pos = 0;
    let mut chunk_no = 0;
    let mut check = |conn: &mut Connection, fed: usize, got_len: usize| {
        let s = rank(conn.state());
        assert!(s >= state, "{ctx}: state went back to {:?}", conn.state());
        state = s;
        let out = conn.output().len();
        assert!(
            out <= 3 * fed + 256,
            "{ctx}: {out} bytes of output after {fed} bytes of input"
        );
        let peak = peak_bytes().saturating_sub(base);
        assert!(
            peak <= bound + 64 * got_len,
            "{ctx}: heap grew by {peak} bytes (bound {bound}) with {fed} bytes fed"
        );
    };
    loop {
        let done = pos >= wire.len();
        if done {
            if !eof {
                break;
            }
            conn.filled(0, now);
        } else {
            let size = if chunks.is_empty() {
                0
            } else {
                chunks[chunk_no % chunks.len()]
            };
            chunk_no += 1;
            let room = conn.read_buf();
            assert!(!room.is_empty(), "{ctx}: empty read_buf");
            let mut n = room.len().min(wire.len() - pos);
            if size != 0 {
                n = n.min(size as usize);
            }
            room[..n].copy_from_slice(&wire[pos..pos + n]);
            pos += n;
            conn.filled(n, now);
        }
        loop {
            match conn.poll() {
                Ok(Some(message)) => {
                    assert!(end.is_none(), "{ctx}: {message:?} read after the end");
                    match &message {
                        Message::Text(t) => {
                            assert!(t.len() <= max_message, "{ctx}: text of {}", t.len());
                            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                        }
                        Message::Binary(b) => {
                            assert!(b.len() <= max_message, "{ctx}: binary of {}", b.len())
                        }
                        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                        Message::Close(_) => {}
                    }
                    got.push(got_of(&message));
                }
                Ok(None) => {
                    assert!(end.is_none(), "{ctx}: poll is Ok(None) after the end");
                    break;
                }
                Err(e) => {
                    if end.is_none() {
                        end = Some(match &e {
                            Error::ConnectionClosed(_) => End::Closed,
                            e => End::Failed(e.close_code().map(u16::from), format!("{e:?}")),
                        });
                        assert_eq!(conn.state(), State::Closed, "{ctx}: after {e:?}");
                    } else {
                        assert!(
                            matches!(e, Error::AlreadyClosed),
                            "{ctx}: after the end: {e:?}"
                        );
                    }
                    break;
                }
            }
        }
        check(&mut conn, pos, got.len());
        let out = conn.output().len();
        written.extend_from_slice(conn.output());
        conn.consume(out);
        if done {
            break;
        }
    }
    let _ = max_frame;
    // After the end: nothing more is read, and the state stays Closed.
    if end.is_some() {
        for _ in 0..2 {
            let room = conn.read_buf();
            let n = room.len().min(64);
            room[..n].fill(0x81);
            conn.filled(n, now);
            match conn.poll() {
                Err(Error::AlreadyClosed) => {}
                other => panic!("{ctx}: poll after the end: {other:?}"),
            }
            assert_eq!(conn.state(), State::Closed, "{ctx}");
        }
    }
    let frames = frames(&written, masked_out);
    // Only pongs before the close frame (the connection sends nothing else here).
    for (i, (opcode, _)) in frames.iter().enumerate() {
        match opcode {
            0xA => {}
            0x8 => assert_eq!(i + 1, frames.len(), "{ctx}: frames after our close"),
            _ => panic!("{ctx}: unexpected frame {opcode:#x} in the output"),
        }
    }
    // Our close frame's code (`Some(None)`: a close without a body).
    let close_code = frames.last().filter(|f| f.0 == 0x8).map(|(_, body)| {
        assert!(body.len() != 1, "{ctx}: a close body of one byte");
        (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]))
    });
    let end = end.unwrap_or(End::Pending);
    match &end {
        End::Pending => {
            assert_eq!(close_code, None, "{ctx}: a close frame while open");
            assert_eq!(conn.state(), State::Open, "{ctx}");
        }
        End::Closed => {
            // The reply carries the peer's code (none if its close had none).
            let peer = match got.last() {
                Some(Got::Close(code)) => *code,
                other => panic!("{ctx}: closed after {other:?}"),
            };
            assert_eq!(close_code, Some(peer), "{ctx}: the close reply");
        }
        End::Failed(Some(code), what) => {
            assert!(
                [1002, 1007, 1009].contains(code),
                "{ctx}: failed with {what} ({code})"
            );
            assert_eq!(
                close_code,
                Some(Some(*code)),
                "{ctx}: close frame for {what}"
            );
        }
        End::Failed(None, what) => {
            assert!(
                what == "AbnormalClosure" && eof,
                "{ctx}: failed with {what} and no close frame"
            );
            assert_eq!(close_code, None, "{ctx}");
        }
    }
    Outcome { got, end }
}

/// Checks a run against the program's expectations: exactly (`exact`), or only its data
/// messages and close (pings between the frames of a failing message may or may not come
/// out); when the program stopped modelling the stream, only a prefix.
fn check_expected(outcome: &Outcome, b: &Expected, eof: bool, ctx: &str) {
    let data = |g: &&Got| matches!(g, Got::Text(..) | Got::Binary(..) | Got::Close(_));
    let wanted: Vec<Got> = b.expect.iter().filter_map(got_of_expect).collect();
    if !b.modelled {
        // Raw bytes or frames the builder does not model follow: what it expected before
        // them came out first (and then anything, or a failure).
        let got: Vec<&Got> = outcome.got.iter().filter(data).collect();
        let want: Vec<&Got> = wanted.iter().filter(data).collect();
        if got.len() >= want.len() {
            assert_eq!(got[..want.len()], want[..], "{ctx}: data messages");
        } else {
            // The connection failed early: only on something unmodelled, after all
            // expected messages... unless a failure ended it before them.
            panic!(
                "{ctx}: read {got:?}, expected at least {want:?} ({:?})",
                outcome.end
            );
        }
        return;
    }
    if b.exact {
        assert_eq!(outcome.got, wanted, "{ctx}: messages");
    } else {
        let got: Vec<&Got> = outcome.got.iter().filter(data).collect();
        let want: Vec<&Got> = wanted.iter().filter(data).collect();
        assert_eq!(got, want, "{ctx}: data messages");
    }
    let last = b.expect.last();
    let ends = matches!(last, Some(Expect::Close | Expect::Fail(_)));
    match (last, &outcome.end) {
        (Some(Expect::Close), End::Closed) => {}
        (Some(Expect::Fail(codes)), End::Failed(Some(code), _)) if codes.contains(code) => {}
        (_, End::Pending) if !eof && !ends => {}
        (_, End::Failed(None, what)) if eof && what == "AbnormalClosure" && !ends => {}
        (e, end) => panic!("{ctx}: ended {end:?}, expected after {e:?}"),
    }
}

/// What the builder expects.
struct Expected {
    expect: Vec<Expect>,
    exact: bool,
    /// Everything in the stream up to its end (or the expected end) was modelled.
    modelled: bool,
}

/// The whole target.
pub fn fuzz(bytes: &[u8]) {
    if bytes.len() < HEADER {
        return;
    }
    let (cfg, misc) = (bytes[0], bytes[3]);
    let setup = Setup {
        client: cfg & 0x01 != 0,
        cfg,
        client_bits: bytes[1],
        server_bits: bytes[2],
        misc,
        limits: if cfg & 0x20 != 0 { TIGHT } else { LOOSE },
    };
    let nchunks = usize::from(misc & 0x0f).min(bytes.len() - HEADER);
    let chunks = &bytes[HEADER..HEADER + nchunks];
    let program = &bytes[HEADER + nchunks..];
    let eof = cfg & 0x80 != 0;

    let (conn, peer, reset_each) = setup.connections();
    let mut builder = Builder {
        input: program,
        pos: 0,
        masked: !setup.client,
        wire: Vec::new(),
        expect: Vec::new(),
        exact: true,
        ended: false,
        peer_fragments: misc & 0x20 != 0,
        compressor: Box::new(CompressorOxide::with_params(
            DataFormat::Raw,
            setup.level(),
            CompressionStrategy::Default,
            15,
        )),
        fresh: true,
        reset_each,
        peer: (misc & 0x10 != 0).then_some(peer),
        limits: setup.limits,
        mask_counter: 0,
        modelled: true,
    };
    builder.run();
    let wire = std::mem::take(&mut builder.wire);
    let expected = Expected {
        expect: std::mem::take(&mut builder.expect),
        exact: builder.exact,
        modelled: builder.modelled,
    };
    drop(builder);
    let ctx = format!(
        "cfg {cfg:#04x} bits {:#04x}/{:#04x} misc {misc:#04x}, {} wire bytes, exact {} modelled {}",
        bytes[1],
        bytes[2],
        wire.len(),
        expected.exact,
        expected.modelled,
    );
    if crate::debug() {
        let summary: Vec<String> = expected
            .expect
            .iter()
            .map(|e| match e {
                Expect::Text(t) => format!("text {}", t.len()),
                Expect::Binary(b) => format!("binary {}", b.len()),
                other => format!("{other:?}"),
            })
            .collect();
        eprintln!("{ctx}: expect {summary:?}");
    }
    let first = run(conn, &setup, &wire, chunks, eof, &ctx);
    if crate::debug() {
        eprintln!(
            "{ctx}: got {} messages, end {:?}",
            first.got.len(),
            first.end
        );
    }
    check_expected(&first, &expected, eof, &ctx);
    if wire.len() <= BYTEWISE {
        let (conn, _, _) = setup.connections();
        let bytewise = run(conn, &setup, &wire, &[1], eof, &ctx);
        assert_eq!(first, bytewise, "{ctx}: one byte at a time");
    }
}
