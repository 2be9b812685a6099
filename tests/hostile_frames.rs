//! Hostile peers after the handshake, over real sockets on 127.0.0.1: frames announcing
//! absurd lengths, endless fragmented messages, garbage, ping floods, peers that never read,
//! and peers that vanish mid-frame or reset the connection. Every test checks the outcome
//! (the close code the raw peer receives and the error `read` returns) and, where a peer
//! could make us allocate, the heap's peak (exact, through a counting allocator) and this
//! process's peak resident memory (`/proc/self/status`).
//!
//! The tests run one at a time (`common::serial`) so the memory figures are their own.
//! Linux-specific where noted (resets, `/proc`).

mod common;
#[path = "common/heap.rs"]
mod heap;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    client_and_raw_server, drain, encode_frame, parse_frames, read_until_end, serial,
    server_and_raw_client, spawn_bounded, Frame, MemoryWatch, RawConn, XorShift,
};
use heap::HeapWatch;
use stdws::{CapacityError, Config, Error, Message, ProtocolError, Role, WebSocket};

const MIB: usize = 1 << 20;

/// This process's peak resident memory (as `/proc` shows it) and its heap's peak (exact,
/// from the counting allocator), from now on.
struct Watch {
    rss: Option<MemoryWatch>,
    heap: HeapWatch,
}

impl Watch {
    fn start() -> Watch {
        Watch {
            rss: MemoryWatch::start(),
            heap: HeapWatch::start(),
        }
    }

    /// Panics if the resident memory rose by `rss_mib` MiB or more, or the heap by
    /// `heap_bytes` bytes or more.
    fn check(&self, rss_mib: u64, heap_bytes: usize, what: &str) {
        self.heap.assert_peak_below(heap_bytes, what);
        if let Some(rss) = &self.rss {
            rss.assert_peak_below(rss_mib, what);
        }
    }
}

/// A library connection in `role` and the raw peer on the other end of its TCP connection.
fn pair(role: Role, config: Config) -> (WebSocket<TcpStream>, RawConn) {
    match role {
        Role::Server => server_and_raw_client(config),
        Role::Client => client_and_raw_server(config),
    }
}

/// A frame as the peer of a connection in `role` must send it (masked towards a server).
fn peer_frame(role: Role, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = (role == Role::Server).then_some([0x5a, 0x17, 0xc3, 0x8e]);
    encode_frame(fin, opcode, payload, mask)
}

/// A frame header with a 64-bit length field holding `len` as is (no payload).
fn header_with_len64(role: Role, b0: u8, len: u64) -> Vec<u8> {
    let masked = role == Role::Server;
    let mut out = vec![b0, 127 | if masked { 0x80 } else { 0 }];
    out.extend_from_slice(&len.to_be_bytes());
    if masked {
        out.extend_from_slice(&[9, 8, 7, 6]);
    }
    out
}

/// Reads frames on the raw side until a close frame, returning it; panics on EOF or after
/// the raw connection's 5 s timeout.
fn read_close(raw: &mut RawConn) -> Frame {
    loop {
        let frame = raw.read_frame();
        if frame.opcode == 0x8 {
            return frame;
        }
    }
}

/// Reads until an error (retrying timeouts), returning the messages and the error.
fn read_to_error<T: Read + Write>(ws: &mut WebSocket<T>) -> (Vec<Message>, Error) {
    let mut messages = Vec::new();
    loop {
        match ws.read() {
            Ok(msg) => messages.push(msg),
            Err(e) if e.is_would_block() => {}
            Err(e) => return (messages, e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lengths.
// ---------------------------------------------------------------------------------------

/// A header announcing 2^63-1 bytes is refused from the header alone: `Capacity`
/// (`FrameTooLarge`), close 1009, and nothing allocated for it.
#[test]
fn frame_announcing_2_pow_63_bytes_is_refused_from_its_header() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        let (mut ws, mut raw) = pair(role, Config::default());
        let mut bytes = header_with_len64(role, 0x82, (1 << 63) - 1);
        bytes.extend_from_slice(&[0u8; 100]);
        let watch = Watch::start();
        raw.send(&bytes);
        let err = ws.read().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Capacity(CapacityError::FrameTooLarge { size, max })
                    if size == (1 << 63) - 1 && max == 16 * MIB
            ),
            "{role:?}: {err:?}"
        );
        assert_eq!(read_close(&mut raw).close_code(), Some(1009), "{role:?}");
        assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
        // The read buffer (4 KiB) and the close frame: nothing sized by the header.
        watch.check(8, 64 << 10, &format!("{role:?}, 2^63-1 announced"));
    }
}

/// Without any limit, the same header makes the message grow only as bytes arrive: 1 MiB
/// of payload then EOF costs a few MiB, not 2^63 bytes, and ends in `AbnormalClosure`.
#[test]
fn without_limits_a_huge_declared_length_allocates_only_what_arrives() {
    let _serial = serial();
    let config = Config::default()
        .max_frame_size(None)
        .max_message_size(None);
    for role in [Role::Server, Role::Client] {
        let (mut ws, raw) = pair(role, config.clone());
        let header = header_with_len64(role, 0x82, (1 << 63) - 1);
        let payload = vec![0x42; MIB];
        let watch = Watch::start();
        let peer = spawn_bounded(move || {
            let mut raw = raw;
            raw.send(&header);
            raw.send(&payload);
            raw.stream.shutdown(Shutdown::Write).unwrap();
            raw
        });
        let err = ws.read().unwrap_err();
        assert!(matches!(err, Error::AbnormalClosure), "{role:?}: {err:?}");
        drop(peer.join(Duration::from_secs(5)));
        // The 1 MiB that arrived, grown by doubling (a moving realloc holds old and new).
        watch.check(8, 4 * MIB, &format!("{role:?}, no limits, 1 MiB arrived"));
    }
}

/// A 64-bit length with its most significant bit set is a protocol error (1002), whatever
/// the limits.
#[test]
fn length_with_top_bit_set_is_a_protocol_error() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        for config in [
            Config::default(),
            Config::default()
                .max_frame_size(None)
                .max_message_size(None),
        ] {
            let (mut ws, mut raw) = pair(role, config);
            raw.send(&header_with_len64(role, 0x82, 1 << 63));
            let err = ws.read().unwrap_err();
            assert!(
                matches!(err, Error::Protocol(ProtocolError::InvalidLength)),
                "{role:?}: {err:?}"
            );
            assert_eq!(read_close(&mut raw).close_code(), Some(1002), "{role:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Endless fragmented messages.
// ---------------------------------------------------------------------------------------

/// What an endless stream of 64 KiB continuation frames did: the error, the close code the
/// peer received, how many frames the peer managed to write, and how much memory it cost.
struct Flood {
    error: Error,
    close_code: Option<u16>,
    frames_sent: u64,
    peak_rss_kib: Option<u64>,
    peak_heap: usize,
}

/// The peer sends a 64 KiB binary frame without FIN, then up to `frames - 1` continuation
/// frames of 64 KiB without FIN, until the connection refuses them.
fn continuation_flood(role: Role, config: Config, frames: u64) -> Flood {
    let (ws, mut raw) = pair(role, config);
    let payload: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    let first = peer_frame(role, false, 0x2, &payload);
    let next = peer_frame(role, false, 0x0, &payload);
    let watch = Watch::start();
    let reader = spawn_bounded(move || {
        let mut ws = ws;
        let (_, error) = read_to_error(&mut ws);
        (error, ws) // keeps the socket open until the peer has read the close frame
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut out = raw.stream.try_clone().unwrap();
    out.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let writer = {
        let stop = Arc::clone(&stop);
        spawn_bounded(move || {
            let mut sent = 0;
            while sent < frames && !stop.load(Ordering::Relaxed) {
                let frame = if sent == 0 { &first } else { &next };
                if out.write_all(frame).is_err() {
                    break; // refused: the library stopped reading or closed
                }
                sent += 1;
            }
            sent
        })
    };
    let close = read_close(&mut raw);
    stop.store(true, Ordering::Relaxed);
    let frames_sent = writer.join(Duration::from_secs(10));
    let (error, ws) = reader.join(Duration::from_secs(10));
    drop(ws);
    Flood {
        error,
        close_code: close.close_code(),
        frames_sent,
        peak_rss_kib: watch.rss.map(|m| m.peak_growth_kib()),
        peak_heap: watch.heap.peak_growth(),
    }
}

/// Ten thousand 64 KiB continuation frames without FIN against a 4 MiB message limit: the
/// 65th frame's header is refused (1009), after 64 frames, and memory stays near the limit.
#[test]
fn endless_continuation_frames_stop_at_max_message_size() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        let limit = 4 * MIB;
        let flood = continuation_flood(
            role,
            Config::default().max_message_size(Some(limit)),
            10_000,
        );
        assert!(
            matches!(
                flood.error,
                Error::Capacity(CapacityError::MessageTooLarge { size, max })
                    if size == 65 * (64 << 10) && max == limit
            ),
            "{role:?}: {:?}",
            flood.error
        );
        assert_eq!(flood.close_code, Some(1009), "{role:?}");
        eprintln!(
            "{role:?}, 4 MiB limit: refused after {} frames sent; peak heap +{} KiB, \
             peak RSS +{:?} KiB",
            flood.frames_sent,
            flood.peak_heap >> 10,
            flood.peak_rss_kib
        );
        assert!(
            (65..10_000).contains(&flood.frames_sent),
            "{role:?}: the peer sent {} frames",
            flood.frames_sent
        );
        // The message (4 MiB), grown by doubling: a moving realloc holds 2 + 4 MiB.
        assert!(
            flood.peak_heap < 2 * limit + MIB,
            "{role:?}: the heap grew by {} bytes for a {limit}-byte limit",
            flood.peak_heap
        );
        if let Some(kib) = flood.peak_rss_kib {
            assert!(
                kib < ((limit + 16 * MIB) >> 10) as u64,
                "{role:?}: peak grew by {kib} KiB for a {limit}-byte limit"
            );
        }
    }
}

/// The same flood against the default 64 MiB limit (server role): refused at the 1025th
/// frame, with memory near the limit.
#[test]
fn endless_continuation_frames_stop_at_the_default_limit() {
    let _serial = serial();
    let flood = continuation_flood(Role::Server, Config::default(), 10_000);
    assert!(
        matches!(
            flood.error,
            Error::Capacity(CapacityError::MessageTooLarge { size, max })
                if size == 1025 * (64 << 10) && max == 64 * MIB
        ),
        "{:?}",
        flood.error
    );
    assert_eq!(flood.close_code, Some(1009));
    eprintln!(
        "default limit: refused after {} frames sent; peak heap +{} KiB, peak RSS +{:?} KiB",
        flood.frames_sent,
        flood.peak_heap >> 10,
        flood.peak_rss_kib
    );
    // The message holds 64 MiB; growing it by doubling briefly holds 32 + 64 MiB.
    assert!(flood.peak_heap < 2 * 64 * MIB + MIB, "{}", flood.peak_heap);
    if let Some(kib) = flood.peak_rss_kib {
        assert!(kib < (160 << 10), "peak grew by {kib} KiB");
    }
}

// ---------------------------------------------------------------------------------------
// Garbage.
// ---------------------------------------------------------------------------------------

/// How a connection fed hostile bytes ended.
struct Outcome {
    messages: Vec<Message>,
    error: Error,
    /// Everything the library wrote to the peer.
    replies: Vec<Frame>,
}

/// The peer sends `bytes` after a valid handshake, then EOF. The library reads until an
/// error; the peer reads everything the library writes.
fn feed(role: Role, bytes: Vec<u8>) -> Outcome {
    let (ws, raw) = pair(role, Config::default());
    let library = spawn_bounded(move || {
        let mut ws = ws;
        let (messages, error) = read_to_error(&mut ws);
        // Never close with unread input (that would reset the connection and could destroy
        // the close frame in flight).
        drain(ws.get_ref());
        (messages, error)
    });
    let mut out = raw.stream.try_clone().unwrap();
    let writer = spawn_bounded(move || {
        let _ = out.write_all(&bytes);
        let _ = out.shutdown(Shutdown::Write);
    });
    let (received, ended) = read_until_end(&raw.stream, Duration::from_secs(10));
    assert!(
        ended.is_ok(),
        "{role:?}: the peer's read ended with {ended:?}"
    );
    writer.join(Duration::from_secs(10));
    let (messages, error) = library.join(Duration::from_secs(10));
    let (replies, partial) = parse_frames(&received);
    assert_eq!(partial, 0, "{role:?}: an incomplete frame was written");
    for frame in &replies {
        assert_eq!(frame.mask.is_some(), role == Role::Client, "{frame:?}");
        assert_eq!((frame.fin, frame.rsv), (true, 0), "{frame:?}");
    }
    Outcome {
        messages,
        error,
        replies,
    }
}

/// Checks that a connection fed garbage ended the way the error says: a protocol error
/// was answered with its close code, a close frame with a close reply, EOF with nothing.
fn check_outcome(role: Role, seed: u64, outcome: &Outcome) {
    let Outcome {
        messages,
        error,
        replies,
    } = outcome;
    let what = format!(
        "{role:?} seed {seed}: {error:?} after {} messages",
        messages.len()
    );
    let (last, before) = match replies.split_last() {
        Some((last, before)) => (Some(last), before),
        None => (None, &[][..]),
    };
    let closes = replies.iter().filter(|f| f.opcode == 0x8).count();
    match error {
        Error::Protocol(_) | Error::Utf8 | Error::Capacity(_) => {
            let code = error
                .close_code()
                .expect("a peer's violation has a close code");
            let last = last.unwrap_or_else(|| panic!("{what}: no close frame sent"));
            assert_eq!(last.opcode, 0x8, "{what}");
            assert_eq!(last.close_code(), Some(code.as_u16()), "{what}");
            assert_eq!(closes, 1, "{what}");
        }
        Error::ConnectionClosed(_) => {
            assert!(matches!(messages.last(), Some(Message::Close(_))), "{what}");
            assert_eq!(last.map(|f| f.opcode), Some(0x8), "{what}");
            assert_eq!(closes, 1, "{what}");
        }
        Error::AbnormalClosure => assert_eq!(closes, 0, "{what}"),
        other => panic!("{what}: unexpected error {other:?}"),
    }
    // Before the close frame, the library only answered pings.
    for frame in before {
        assert_eq!(frame.opcode, 0xA, "{what}: unexpected frame {frame:?}");
    }
    let pings = messages
        .iter()
        .filter(|m| matches!(m, Message::Ping(_)))
        .count();
    let pongs = replies.iter().filter(|f| f.opcode == 0xA).count();
    assert_eq!(pings, pongs, "{what}: every ping is answered once");
}

/// Random bytes right after a valid handshake: each connection ends with an error that has
/// a close code (and that close frame was sent) or with `AbnormalClosure`; never a hang, a
/// panic or an I/O error.
#[test]
fn random_bytes_after_the_handshake_end_in_an_error() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        for seed in 1..=24u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let len = [1, 2, 10, 100, 4096, 70_000][(seed % 6) as usize];
            let mut bytes = rng.bytes(len);
            // Half the seeds start with a plausible first byte (FIN, no RSV, a data
            // opcode), so the length and mask checks are reached too.
            if seed % 2 == 0 {
                bytes[0] = 0x80 | [0x1, 0x2, 0x9, 0xA, 0x8][(seed / 2 % 5) as usize];
            }
            let outcome = feed(role, bytes);
            check_outcome(role, seed, &outcome);
        }
    }
}

/// A valid stream of frames (every kind, fragmented messages, pings between fragments),
/// the messages it carries, and whether it includes a close frame.
fn valid_stream(role: Role, rng: &mut XorShift) -> (Vec<u8>, Vec<Message>) {
    let mut wire = Vec::new();
    let mut messages = Vec::new();
    for _ in 0..1 + rng.below(12) {
        match rng.below(6) {
            0 => {
                let text: String = (0..rng.below(200))
                    .map(|_| ['a', 'é', '€', '🦀', ' '][rng.below(5) as usize])
                    .collect();
                wire.extend(peer_frame(role, true, 0x1, text.as_bytes()));
                messages.push(Message::Text(text));
            }
            1 => {
                let len = rng.below(70_000) as usize;
                let data = rng.bytes(len);
                wire.extend(peer_frame(role, true, 0x2, &data));
                messages.push(Message::Binary(data));
            }
            2 => {
                let len = rng.below(126) as usize;
                let data = rng.bytes(len);
                wire.extend(peer_frame(role, true, 0x9, &data));
                messages.push(Message::Ping(data));
            }
            3 => {
                let len = rng.below(126) as usize;
                let data = rng.bytes(len);
                wire.extend(peer_frame(role, true, 0xA, &data));
                messages.push(Message::Pong(data));
            }
            _ => {
                // A fragmented text message with a ping between its fragments.
                let text = "frägmented 🦀 text ".repeat(1 + rng.below(50) as usize);
                let bytes = text.as_bytes();
                let cut = rng.below(bytes.len() as u64) as usize;
                wire.extend(peer_frame(role, false, 0x1, &bytes[..cut]));
                wire.extend(peer_frame(role, true, 0x9, b"between"));
                wire.extend(peer_frame(role, true, 0x0, &bytes[cut..]));
                messages.push(Message::Ping(b"between".to_vec()));
                messages.push(Message::Text(text));
            }
        }
    }
    (wire, messages)
}

/// Valid streams with a few bytes corrupted and/or cut short: every connection still ends
/// cleanly (see `check_outcome`), and an uncorrupted stream is read exactly.
#[test]
fn corrupted_valid_streams_end_in_an_error() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        for seed in 1..=24u64 {
            let mut rng = XorShift(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
            let (mut wire, expected) = valid_stream(role, &mut rng);
            let flips = rng.below(4);
            for _ in 0..flips {
                let at = rng.below(wire.len() as u64) as usize;
                wire[at] ^= 1 << rng.below(8);
            }
            let cut = rng.below(3) == 0;
            if cut {
                wire.truncate(rng.below(wire.len() as u64) as usize);
            }
            let outcome = feed(role, wire);
            check_outcome(role, seed, &outcome);
            if flips == 0 && !cut {
                assert!(matches!(outcome.error, Error::AbnormalClosure));
                assert_eq!(outcome.messages, expected, "{role:?} seed {seed}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ping floods and peers that do not read.
// ---------------------------------------------------------------------------------------

/// 50 MB of pings (125-byte payloads), written in 64 KiB batches.
const FLOOD_BYTES: u64 = 50_000_000;

/// Starts a thread that writes pings to `stream` until `FLOOD_BYTES`, `stop`, or a write
/// that makes no progress for `stall` (the peer stopped reading). Returns the bytes
/// written and whether it stalled.
fn ping_flood(
    role: Role,
    stream: &TcpStream,
    stall: Duration,
    stop: Arc<AtomicBool>,
) -> common::Bounded<(u64, bool)> {
    let mut out = stream.try_clone().unwrap();
    out.set_write_timeout(Some(stall)).unwrap();
    spawn_bounded(move || {
        let ping = peer_frame(role, true, 0x9, &[0x70; 125]);
        let batch: Vec<u8> = ping.repeat((64 << 10) / ping.len());
        let mut sent = 0u64;
        while sent < FLOOD_BYTES && !stop.load(Ordering::Relaxed) {
            match out.write(&batch) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return (sent, true)
                }
                Err(_) => return (sent, false),
            }
        }
        (sent, false)
    })
}

/// An I/O error from a connection the peer reset (a read or a write).
fn is_reset(error: &Error) -> bool {
    matches!(error, Error::Io(e)
        if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe))
}

/// The library's read loop for the floods: counts pings and would-blocks until an error.
fn flood_reader(ws: WebSocket<TcpStream>) -> common::Bounded<(u64, u64, Error)> {
    spawn_bounded(move || {
        let mut ws = ws;
        let (mut pings, mut blocked) = (0, 0);
        loop {
            match ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) if e.is_would_block() => blocked += 1,
                Err(e) => return (pings, blocked, e),
            }
        }
    })
}

/// A peer floods pings and never reads the pongs. With a blocking socket (no write
/// timeout) the server ends up blocked writing pongs, which stops it reading; the flood
/// stalls and memory stays flat. When the peer goes away (resetting the connection, since
/// it leaves pongs unread), the blocked write fails and the server's `read` returns.
#[test]
fn ping_flood_against_a_blocking_server_blocks_it_in_write() {
    let _serial = serial();
    let (ws, raw) = pair(Role::Server, Config::default());
    ws.get_ref().set_write_timeout(None).unwrap();
    let watch = Watch::start();
    let reader = flood_reader(ws);
    let stop = Arc::new(AtomicBool::new(false));
    let flood = ping_flood(Role::Server, &raw.stream, Duration::from_millis(500), stop);
    let (sent, stalled) = flood.join(Duration::from_secs(60));
    eprintln!("blocking: the flood stalled after {sent} bytes");
    assert!(stalled, "the flood of {sent} bytes never stalled");
    assert!(sent < FLOOD_BYTES, "{sent}");
    assert!(!reader.is_finished(), "the server stopped waiting in write");
    // Pongs for at most one read buffer of pings are ever queued.
    watch.check(16, MIB, "blocking server under a ping flood");
    drop(raw);
    let (pings, _, error) = reader.join(Duration::from_secs(5));
    assert!(is_reset(&error), "after {pings} pings: {error:?}");
}

/// The same flood against a server with a write timeout (the README's advice) and a
/// 1 MiB `max_write_buffer_size`: pongs queue up to the limit, then reads pause (`read`
/// returns would-block errors) so the flood stalls, and memory stays bounded. The peer's
/// reset ends the server's loop.
#[test]
fn ping_flood_against_a_server_with_a_write_timeout_pauses_its_reads() {
    let _serial = serial();
    let config = Config::default().max_write_buffer_size(MIB);
    let (ws, raw) = pair(Role::Server, config);
    ws.get_ref()
        .set_write_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let watch = Watch::start();
    let reader = flood_reader(ws);
    let stop = Arc::new(AtomicBool::new(false));
    let flood = ping_flood(Role::Server, &raw.stream, Duration::from_millis(500), stop);
    let (sent, stalled) = flood.join(Duration::from_secs(60));
    eprintln!("write timeout: the flood stalled after {sent} bytes");
    assert!(stalled, "the flood of {sent} bytes never stalled");
    assert!(!reader.is_finished(), "the server's read loop ended early");
    // At most 1 MiB of pongs queued (plus one read buffer's worth): a buffer of 2 MiB.
    watch.check(
        16,
        4 * MIB,
        "server with a write timeout under a ping flood",
    );
    drop(raw);
    let (pings, blocked, error) = reader.join(Duration::from_secs(5));
    assert!(blocked > 0, "reads never paused ({pings} pings)");
    assert!(
        is_reset(&error) || matches!(error, Error::AbnormalClosure),
        "after {pings} pings: {error:?}"
    );
}

/// A peer floods pings and reads the pongs, but slowly (about 8 MB/s). The server runs on
/// a non-blocking socket (the README's resumable I/O) with a 1 MiB `max_write_buffer_size`,
/// so it always has some pongs queued. The queue is bounded by the limit, so memory must
/// be too, however long this goes on. (With a write timeout instead, whether the queue
/// ever empties depends on timing.)
#[test]
fn ping_flood_with_a_slow_reader_keeps_memory_bounded() {
    let _serial = serial();
    let config = Config::default().max_write_buffer_size(MIB);
    let (ws, raw) = pair(Role::Server, config);
    ws.get_ref().set_nonblocking(true).unwrap();
    let watch = Watch::start();
    let reader = flood_reader(ws);
    let stop = Arc::new(AtomicBool::new(false));
    let drained = Arc::new(AtomicU64::new(0));
    let slow = {
        let mut input = raw.stream.try_clone().unwrap();
        let (stop, drained) = (Arc::clone(&stop), Arc::clone(&drained));
        spawn_bounded(move || {
            let mut buf = vec![0u8; 16 << 10];
            while !stop.load(Ordering::Relaxed) {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained.fetch_add(n as u64, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let flood = ping_flood(
        Role::Server,
        &raw.stream,
        Duration::from_secs(2),
        Arc::clone(&stop),
    );
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = flood.join(Duration::from_secs(10));
    slow.join(Duration::from_secs(10));
    let _ = raw.stream.shutdown(Shutdown::Both);
    drop(raw);
    let _ = reader.join(Duration::from_secs(5));
    let drained = drained.load(Ordering::Relaxed);
    eprintln!("slow reader: {sent} bytes of pings sent, {drained} bytes of pongs read");
    assert!(drained > 4 * MIB as u64, "the peer read only {drained}");
    // At most 1 MiB of pongs queued (plus one read buffer's worth): a buffer of 2 MiB.
    watch.check(16, 4 * MIB, "pongs to a slow reader");
}

/// The library sends 64 KiB messages to a peer that never reads. With a write timeout, a
/// send fails with a would-block error once the socket buffers are full (the message stays
/// queued); further sends queue up to `max_write_buffer_size` (1 MiB here) and then fail
/// with `WriteBufferFull`. Memory stays bounded throughout.
#[test]
fn sending_to_a_peer_that_never_reads_fails_and_stays_bounded() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        let config = Config::default().max_write_buffer_size(MIB);
        let (mut ws, raw) = pair(role, config);
        ws.get_ref()
            .set_write_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let message = vec![0x33u8; 64 << 10];
        let watch = Watch::start();
        let start = Instant::now();
        let mut sent_ok = 0u64;
        let mut first_error = None;
        let mut full = false;
        // Bounded: each send blocks at most a few write timeouts.
        for _ in 0..5_000 {
            match ws.send_binary(&message) {
                Ok(()) => sent_ok += 1,
                Err(Error::Capacity(CapacityError::WriteBufferFull)) => {
                    full = true;
                    break;
                }
                Err(e) if e.is_would_block() => {
                    first_error.get_or_insert_with(|| "would block".to_owned());
                }
                Err(e) => panic!("{role:?}: after {sent_ok} sends: {e:?}"),
            }
        }
        eprintln!(
            "{role:?}: {sent_ok} sends succeeded, the queue was full after {:?}",
            start.elapsed()
        );
        assert!(
            first_error.is_some(),
            "{role:?}: {sent_ok} sends to a peer that never reads all succeeded"
        );
        assert!(full, "{role:?}: the queue never filled up");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        // Once full, sends keep failing fast and queue nothing more.
        for _ in 0..10 {
            assert!(matches!(
                ws.send_binary(&message),
                Err(Error::Capacity(CapacityError::WriteBufferFull))
            ));
        }
        // At most 1 MiB + one 64 KiB message queued: a buffer of 2 MiB.
        watch.check(
            16,
            4 * MIB,
            &format!("{role:?} sending to a peer that never reads"),
        );
        drop(raw);
    }
}

/// The library keeps sending 64 KiB messages on a non-blocking socket (retrying after
/// `WriteBufferFull`) to a peer that reads, but slowly (about 8 MB/s). At most
/// `max_write_buffer_size` (1 MiB) plus one message is ever queued, so memory must stay
/// bounded however much goes through.
#[test]
fn sending_to_a_slow_reader_keeps_memory_bounded() {
    let _serial = serial();
    let config = Config::default().max_write_buffer_size(MIB);
    let (mut ws, raw) = pair(Role::Server, config);
    ws.get_ref().set_nonblocking(true).unwrap();
    let watch = Watch::start();
    let drained = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let mut input = raw.stream.try_clone().unwrap();
        let (stop, drained) = (Arc::clone(&stop), Arc::clone(&drained));
        spawn_bounded(move || {
            let mut buf = vec![0u8; 16 << 10];
            while !stop.load(Ordering::Relaxed) {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained.fetch_add(n as u64, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let message = vec![0x44u8; 64 << 10];
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut accepted, mut full) = (0u64, 0u64);
    while Instant::now() < deadline {
        match ws.send_binary(&message) {
            Ok(()) => accepted += 1,
            Err(e) if e.is_would_block() => accepted += 1, // queued
            Err(Error::Capacity(CapacityError::WriteBufferFull)) => {
                full += 1;
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    slow.join(Duration::from_secs(5));
    drop(raw);
    let drained = drained.load(Ordering::Relaxed);
    eprintln!("slow reader: {accepted} messages queued, {full} refused as full, {drained} read");
    assert!(drained > 4 * MIB as u64, "the peer read only {drained}");
    // At most 1 MiB + one 64 KiB message queued: a buffer of 2 MiB.
    watch.check(16, 4 * MIB, "messages to a slow reader");
}

/// A stream that takes at most 16 KiB per write and refuses every other write with
/// `WouldBlock`: a peer reading more slowly than the application sends, deterministically.
struct SlowSink {
    taken: u64,
    refuse_next: bool,
}

impl Read for SlowSink {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(ErrorKind::WouldBlock.into())
    }
}

impl Write for SlowSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.refuse_next = !self.refuse_next;
        if !self.refuse_next {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(16 << 10);
        self.taken += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The slow-reader bug without sockets: 100 MB of 64 KiB messages through a stream that
/// drains more slowly than they are sent, with a 1 MiB `max_write_buffer_size` (sends that
/// fail with `WriteBufferFull` are retried after a flush). The queue never holds more than
/// about 1 MiB, so memory must not grow by much more either.
#[test]
fn write_buffer_memory_is_bounded_when_the_stream_never_drains_fully() {
    let _serial = serial();
    let mut failures = Vec::new();
    for role in [Role::Server, Role::Client] {
        let config = Config::default().max_write_buffer_size(MIB);
        let sink = SlowSink {
            taken: 0,
            refuse_next: false,
        };
        let mut ws = WebSocket::from_raw_socket(sink, role, config, Vec::new());
        let message = vec![0x55u8; 64 << 10];
        let watch = HeapWatch::start();
        let mut queued = 0u64;
        while queued < 100_000_000 {
            match ws.send_binary(&message) {
                Ok(()) => queued += message.len() as u64,
                Err(e) if e.is_would_block() => queued += message.len() as u64,
                Err(Error::Capacity(CapacityError::WriteBufferFull)) => {
                    let _ = ws.flush();
                }
                Err(e) => panic!("{role:?}: {e:?}"),
            }
        }
        let taken = ws.get_ref().taken;
        let grew = watch.peak_growth();
        eprintln!("{role:?}: {queued} bytes queued, {taken} written, peak heap +{grew}");
        // At most 1 MiB + one 64 KiB message queued: a buffer of 2 MiB.
        if grew >= 4 * MIB {
            failures.push(format!(
                "{role:?}: the heap grew by {grew} bytes with a 1 MiB max_write_buffer_size \
                 ({taken} bytes written)"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------------------
// Peers that vanish.
// ---------------------------------------------------------------------------------------

/// The peer closes TCP (FIN, nothing left unread) in the middle of a header, of a
/// payload, of a fragmented message: `AbnormalClosure`, then `AlreadyClosed`.
#[test]
fn peer_disconnecting_mid_frame_is_abnormal_closure() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        let data = peer_frame(role, true, 0x2, &[7u8; 1000]);
        let text = peer_frame(role, true, 0x1, "héllo".as_bytes());
        let mut fragmented = peer_frame(role, false, 0x1, b"first half, ");
        fragmented.extend(peer_frame(role, true, 0x9, b"ping"));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("one header byte", data[..1].to_vec()),
            ("part of a 16-bit length", data[..3].to_vec()),
            (
                "part of a 64-bit length",
                header_with_len64(role, 0x82, 70_000)[..6].to_vec(),
            ),
            ("half a payload", data[..data.len() / 2].to_vec()),
            ("inside a UTF-8 character", text[..text.len() - 4].to_vec()),
            ("between fragments", fragmented),
        ];
        for (what, bytes) in cases {
            let (mut ws, mut raw) = pair(role, Config::default());
            raw.send(&bytes);
            raw.stream.shutdown(Shutdown::Both).unwrap();
            drop(raw);
            let (messages, error) = read_to_error(&mut ws);
            assert!(
                matches!(error, Error::AbnormalClosure),
                "{role:?}, {what}: {error:?} after {messages:?}"
            );
            assert!(
                matches!(ws.read(), Err(Error::AlreadyClosed)),
                "{role:?}, {what}"
            );
        }
    }
}

/// The peer vanishes in the middle of the closing handshake: half of its close frame, or
/// no answer to ours. `read` and `close_and_wait` report `AbnormalClosure` at once instead
/// of waiting.
#[test]
fn peer_disconnecting_mid_close_is_abnormal_closure() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        // Half a close frame, then EOF.
        let (mut ws, mut raw) = pair(role, Config::default());
        let close = peer_frame(role, true, 0x8, &common::close_body(1000, b"bye bye"));
        raw.send(&close[..close.len() - 3]);
        raw.stream.shutdown(Shutdown::Both).unwrap();
        let (_, error) = read_to_error(&mut ws);
        assert!(
            matches!(error, Error::AbnormalClosure),
            "{role:?}: {error:?}"
        );

        // We start the handshake; the peer reads our close frame and disconnects.
        let (mut ws, mut raw) = pair(role, Config::default());
        ws.close(1000, "going").unwrap();
        assert_eq!(read_close(&mut raw).close_code(), Some(1000));
        raw.stream.shutdown(Shutdown::Both).unwrap();
        let (_, error) = read_to_error(&mut ws);
        assert!(
            matches!(error, Error::AbnormalClosure),
            "{role:?}: {error:?}"
        );

        // The same with close_and_wait: no waiting for the 5 s deadline.
        let (mut ws, mut raw) = pair(role, Config::default());
        let peer = spawn_bounded(move || {
            let frame = read_close(&mut raw);
            raw.stream.shutdown(Shutdown::Both).unwrap();
            frame.close_code()
        });
        let start = Instant::now();
        let result = ws.close_and_wait(1000, "going", Duration::from_secs(5));
        assert!(
            matches!(result, Err(Error::AbnormalClosure)),
            "{role:?}: {result:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(peer.join(Duration::from_secs(5)), Some(1000));
    }
}

/// The peer resets the connection (it closes its socket with our data unread, so Linux
/// sends RST) while `read` waits, after half a frame: `read` fails with an I/O error of kind
/// `ConnectionReset`, and the connection is over (`AlreadyClosed`, also for sends).
#[test]
fn peer_resetting_the_connection_is_an_io_error() {
    let _serial = serial();
    for role in [Role::Server, Role::Client] {
        let (mut ws, mut raw) = pair(role, Config::default());
        // Something the peer will leave unread.
        ws.send_text("you will not read this").unwrap();
        let frame = peer_frame(role, true, 0x2, &[1u8; 500]);
        raw.send(&frame[..100]);
        let library = spawn_bounded(move || {
            let result = read_to_error(&mut ws);
            (result, ws)
        });
        // Wait until our message is in the peer's receive buffer, unread.
        let mut peek = [0u8; 1];
        assert_eq!(raw.stream.peek(&mut peek).unwrap(), 1);
        thread::sleep(Duration::from_millis(50)); // `read` is waiting by now
        drop(raw);
        let ((messages, error), mut ws) = library.join(Duration::from_secs(5));
        assert!(messages.is_empty(), "{messages:?}");
        assert!(
            matches!(&error, Error::Io(e) if e.kind() == ErrorKind::ConnectionReset),
            "{role:?}: {error:?}"
        );
        assert!(!error.is_would_block());
        assert!(matches!(ws.read(), Err(Error::AlreadyClosed)), "{role:?}");
        assert!(
            matches!(ws.send_text("x"), Err(Error::AlreadyClosed)),
            "{role:?}"
        );
    }
}
