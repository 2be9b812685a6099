//! Nothing is lost at the edges of a failure, over real sockets on 127.0.0.1:
//!
//! - every message the peer completed before it broke the protocol, sent garbage, reset the
//!   connection or vanished mid-frame is delivered by `read`, in order, before the error;
//! - every message whose send was accepted (queued) and whose flush then succeeded was
//!   written whole, exactly once, in order, even through would-block errors, a full write
//!   buffer and an abrupt end of the connection right after the flush.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    client_and_raw_server, close_body, encode_frame, parse_frames, read_until_end,
    server_and_raw_client, spawn_bounded, Frame, RawConn, XorShift,
};
use stdws::{CapacityError, Config, Error, Message, ProtocolError, Role, WebSocket};

/// A library connection in `role` and the raw peer on the other end of its TCP connection.
fn pair(role: Role, config: Config) -> (WebSocket<TcpStream>, RawConn) {
    match role {
        Role::Server => server_and_raw_client(config),
        Role::Client => client_and_raw_server(config),
    }
}

/// A frame as the peer of a connection in `role` must send it (masked towards a server).
fn peer_frame(role: Role, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = (role == Role::Server).then_some([0x21, 0x43, 0x65, 0x87]);
    encode_frame(fin, opcode, payload, mask)
}

/// `count` valid messages of every kind and size as the peer of `role` sends them: the
/// wire bytes and the messages `read` must return (pings included, as `Message::Ping`).
fn messages(role: Role, count: usize, seed: u64) -> (Vec<u8>, Vec<Message>) {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        match i % 6 {
            0 => {
                let text = format!("message {i}: grüße 🦀");
                wire.extend(peer_frame(role, true, 0x1, text.as_bytes()));
                expected.push(Message::Text(text));
            }
            1 => {
                let len = [0, 1, 125, 126, 5000, 70_000][rng.below(6) as usize];
                let data = rng.bytes(len);
                wire.extend(peer_frame(role, true, 0x2, &data));
                expected.push(Message::Binary(data));
            }
            2 => {
                let payload = format!("ping {i}").into_bytes();
                wire.extend(peer_frame(role, true, 0x9, &payload));
                expected.push(Message::Ping(payload));
            }
            3 => {
                // Fragmented text, a character split between fragments, a pong inside.
                let text = format!("fragmented {i}: ").repeat(20) + "€ end";
                let bytes = text.as_bytes();
                let cut = bytes.len() - 5; // inside the 3-byte '€'
                wire.extend(peer_frame(role, false, 0x1, &bytes[..cut]));
                wire.extend(peer_frame(role, true, 0xA, b"pong inside"));
                wire.extend(peer_frame(role, true, 0x0, &bytes[cut..]));
                expected.push(Message::Pong(b"pong inside".to_vec()));
                expected.push(Message::Text(text));
            }
            4 => {
                // Fragmented binary over three frames, larger than the read buffer.
                let data = rng.bytes(20_000);
                wire.extend(peer_frame(role, false, 0x2, &data[..7000]));
                wire.extend(peer_frame(role, false, 0x0, &data[7000..7001]));
                wire.extend(peer_frame(role, true, 0x0, &data[7001..]));
                expected.push(Message::Binary(data));
            }
            _ => {
                wire.extend(peer_frame(role, true, 0x1, b""));
                expected.push(Message::Text(String::new()));
            }
        }
    }
    (wire, expected)
}

/// How the peer's stream ends after the valid messages.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// A frame with reserved opcode 3: 1002.
    ReservedOpcode,
    /// A text frame with invalid UTF-8: 1007.
    InvalidUtf8,
    /// A header announcing more than `max_frame_size` (1 MiB here): 1009.
    TooLarge,
    /// Half a frame, then EOF.
    EofMidFrame,
    /// EOF right after the last message.
    Eof,
    /// The peer closes its socket leaving our data unread: the kernel sends RST.
    Reset,
}

/// How the peer writes its bytes.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// One `write_all` of everything, garbage included: the last messages and the garbage
    /// arrive in the same read.
    AllAtOnce,
    /// Pieces of 777 bytes.
    Pieces,
}

fn ending_bytes(role: Role, ending: Ending) -> Vec<u8> {
    match ending {
        Ending::ReservedOpcode => peer_frame(role, true, 0x3, b"???"),
        Ending::InvalidUtf8 => peer_frame(role, true, 0x1, b"ok so far \xff\xfe"),
        Ending::TooLarge => {
            let mut header = peer_frame(role, true, 0x2, &[]);
            header[1] = (header[1] & 0x80) | 127;
            header.splice(2..2, (2u64 << 20).to_be_bytes());
            header
        }
        Ending::EofMidFrame => {
            let frame = peer_frame(role, true, 0x2, &[9u8; 3000]);
            frame[..1500].to_vec()
        }
        Ending::Eof | Ending::Reset => Vec::new(),
    }
}

/// Whether `error` is the one `ending` must produce, and the close code the peer must get.
fn expected_end(ending: Ending, error: &Error) -> (bool, Option<u16>) {
    match ending {
        Ending::ReservedOpcode => (
            matches!(error, Error::Protocol(ProtocolError::ReservedOpcode(3))),
            Some(1002),
        ),
        Ending::InvalidUtf8 => (matches!(error, Error::Utf8), Some(1007)),
        Ending::TooLarge => (
            matches!(
                error,
                Error::Capacity(CapacityError::FrameTooLarge { size, .. }) if *size == 2 << 20
            ),
            Some(1009),
        ),
        Ending::EofMidFrame | Ending::Eof => (matches!(error, Error::AbnormalClosure), None),
        Ending::Reset => (
            matches!(error, Error::Io(e) if e.kind() == ErrorKind::ConnectionReset),
            None,
        ),
    }
}

/// The peer sends `count` messages then `ending`; the library reads until the error.
fn run(role: Role, count: usize, ending: Ending, delivery: Delivery) {
    let what = format!("{role:?}, {count} messages, then {ending:?}, {delivery:?}");
    let config = Config::default().max_frame_size(Some(1 << 20));
    let (mut ws, raw) = pair(role, config);
    if matches!(ending, Ending::Reset) {
        // Data the peer will leave unread, so that closing its socket sends RST.
        ws.send_text("never read").unwrap();
    }
    let (mut wire, expected) = messages(role, count, count as u64 + 7);
    wire.extend(ending_bytes(role, ending));
    let peer = spawn_bounded(move || {
        let mut raw = raw;
        match delivery {
            Delivery::AllAtOnce => raw.send(&wire),
            Delivery::Pieces => {
                for piece in wire.chunks(777) {
                    raw.send(piece);
                }
            }
        }
        match ending {
            Ending::Eof | Ending::EofMidFrame => {
                raw.stream.shutdown(Shutdown::Write).unwrap();
                // Read what the library writes (pongs) until it closes.
                let (replies, _) = read_until_end(&raw.stream, Duration::from_secs(10));
                replies
            }
            Ending::Reset => {
                let mut peek = [0u8; 1];
                assert_eq!(raw.stream.peek(&mut peek).unwrap(), 1);
                // Give the messages time to reach the library's socket, then reset.
                thread::sleep(Duration::from_millis(50));
                drop(raw);
                Vec::new()
            }
            _ => {
                // The library fails the connection: read its replies and its close frame.
                let (replies, _) = read_until_end(&raw.stream, Duration::from_secs(10));
                replies
            }
        }
    });
    let mut received = Vec::new();
    let error = loop {
        match ws.read() {
            Ok(msg) => received.push(msg),
            Err(e) if e.is_would_block() => panic!("{what}: timed out"),
            Err(e) => break e,
        }
    };
    // The library has ended the connection; close the socket so the peer sees EOF.
    drop(ws);
    let replies = peer.join(Duration::from_secs(10));
    assert_eq!(received.len(), expected.len(), "{what}: {error:?}");
    for (i, (got, want)) in received.iter().zip(&expected).enumerate() {
        assert!(got == want, "{what}: message {i} differs");
    }
    let (ok, close_code) = expected_end(ending, &error);
    assert!(ok, "{what}: ended with {error:?}");
    if let Ending::Reset = ending {
        return;
    }
    let (frames, partial) = parse_frames(&replies);
    assert_eq!(partial, 0, "{what}");
    let closes: Vec<&Frame> = frames.iter().filter(|f| f.opcode == 0x8).collect();
    match close_code {
        Some(code) => {
            assert_eq!(closes.len(), 1, "{what}: {frames:?}");
            assert_eq!(closes[0].close_code(), Some(code), "{what}");
            assert_eq!(frames.last().map(|f| f.opcode), Some(0x8), "{what}");
        }
        None => assert!(closes.is_empty(), "{what}: {frames:?}"),
    }
    let pings = expected
        .iter()
        .filter(|m| matches!(m, Message::Ping(_)))
        .count();
    let pongs = frames.iter().filter(|f| f.opcode == 0xA).count();
    assert_eq!(pongs, pings, "{what}: every ping was answered");
}

/// The peer completes N messages (N = 0, 1, 7, 40), then breaks the protocol, sends a
/// frame that is too large, stops mid-frame, or just ends: `read` returns exactly those N
/// messages, in order, then the matching error (and the close code reaches the peer).
#[test]
fn every_message_completed_before_a_failure_is_delivered() {
    for role in [Role::Server, Role::Client] {
        for ending in [
            Ending::ReservedOpcode,
            Ending::InvalidUtf8,
            Ending::TooLarge,
            Ending::EofMidFrame,
            Ending::Eof,
        ] {
            for count in [0, 1, 7, 40] {
                for delivery in [Delivery::AllAtOnce, Delivery::Pieces] {
                    run(role, count, ending, delivery);
                }
            }
        }
    }
}

/// The same when the peer resets the connection (Linux sends RST when a socket is closed
/// with unread data): the messages that reached us before the reset are still delivered,
/// then an I/O error of kind `ConnectionReset`.
#[test]
fn every_message_received_before_a_reset_is_delivered() {
    for role in [Role::Server, Role::Client] {
        for count in [0, 1, 7, 40] {
            run(role, count, Ending::Reset, Delivery::AllAtOnce);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sending.
// ---------------------------------------------------------------------------------------

/// Reassembles the data messages in `bytes` (frames the library wrote, masked in the
/// client role); checks there is no partial frame at the end and no control frame.
fn reassemble(role: Role, bytes: &[u8]) -> Vec<Message> {
    let (frames, partial) = parse_frames(bytes);
    assert_eq!(partial, 0, "a frame was cut short");
    reassemble_frames(role, frames)
}

/// [`reassemble`] for frames already parsed.
fn reassemble_frames(role: Role, frames: Vec<Frame>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut current: Option<(u8, Vec<u8>)> = None;
    for frame in frames {
        assert_eq!(frame.mask.is_some(), role == Role::Client);
        assert_eq!(frame.rsv, 0);
        match (frame.opcode, &mut current) {
            (0x1 | 0x2, None) => current = Some((frame.opcode, frame.payload)),
            (0x0, Some((_, data))) => data.extend_from_slice(&frame.payload),
            other => panic!("unexpected frame sequence: {:?}", other.0),
        }
        if frame.fin {
            let (opcode, data) = current.take().unwrap();
            out.push(if opcode == 0x1 {
                Message::Text(String::from_utf8(data).expect("text is UTF-8"))
            } else {
                Message::Binary(data)
            });
        }
    }
    assert!(
        current.is_none(),
        "a fragmented message was left unfinished"
    );
    out
}

/// Messages of every size (0 B to 1 MiB, text and binary).
fn outgoing(count: usize, seed: u64) -> Vec<Message> {
    let mut rng = XorShift(seed | 1);
    (0..count)
        .map(|i| {
            let len =
                [0, 10, 125, 126, 4000, 16 << 10, 65_536, 200_000, 1 << 20][rng.below(9) as usize];
            if i % 3 == 0 {
                Message::Text("ü".repeat(len / 2) + &i.to_string())
            } else {
                Message::Binary(rng.bytes(len))
            }
        })
        .collect()
}

/// Sends every message with `send` or `write`, flushes, and drops the connection at once
/// (no closing handshake): the peer, which reads everything, gets every message whole and
/// in order, and no partial frame.
#[test]
fn every_message_flushed_before_an_abrupt_end_arrives_whole() {
    for role in [Role::Server, Role::Client] {
        for fragment_size in [None, Some(1000), Some(100_000)] {
            let config = Config::default().fragment_size(fragment_size);
            let (mut ws, raw) = pair(role, config);
            let peer = spawn_bounded(move || read_until_end(&raw.stream, Duration::from_secs(20)));
            let messages = outgoing(30, 42);
            for (i, msg) in messages.iter().enumerate() {
                if i % 2 == 0 {
                    ws.send(msg.clone()).unwrap();
                } else {
                    ws.write(msg.clone()).unwrap();
                }
            }
            ws.flush().unwrap();
            drop(ws);
            let (bytes, ended) = peer.join(Duration::from_secs(20));
            assert!(ended.is_ok(), "{ended:?}");
            let got = reassemble(role, &bytes);
            assert_eq!(got.len(), messages.len(), "{role:?} {fragment_size:?}");
            assert!(
                got == messages,
                "{role:?} {fragment_size:?}: messages differ"
            );
        }
    }
}

/// The peer does not read until the queue is full, then reads slowly. Sends use a 5 ms
/// write timeout and a 256 KiB `max_write_buffer_size`: a send that fails with a
/// would-block error has queued its message (it is not sent again); one that fails with
/// `WriteBufferFull` has not (it is retried). After a final successful flush and an abrupt
/// end, the peer has every message exactly once, whole and in order.
#[test]
fn sends_through_would_block_and_a_full_buffer_lose_and_duplicate_nothing() {
    for role in [Role::Server, Role::Client] {
        let config = Config::default().max_write_buffer_size(256 << 10);
        let (mut ws, raw) = pair(role, config);
        ws.get_ref()
            .set_write_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        // The peer starts reading once the queue was full (or everything was sent).
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let peer = spawn_bounded(move || {
            let _ = wait.recv_timeout(Duration::from_secs(20));
            let mut stream = &raw.stream;
            let mut bytes = Vec::new();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return bytes,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("peer read: {e}"),
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        let messages = outgoing(100, 7);
        let (mut blocked, mut full) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        for msg in &messages {
            loop {
                assert!(Instant::now() < deadline, "{role:?}: sending took too long");
                match ws.send(msg.clone()) {
                    Ok(()) => break,
                    Err(e) if e.is_would_block() => {
                        blocked += 1;
                        break; // queued: never send it again
                    }
                    Err(Error::Capacity(CapacityError::WriteBufferFull)) => {
                        full += 1;
                        let _ = go.send(());
                        thread::sleep(Duration::from_millis(2)); // not queued: retry
                    }
                    Err(e) => panic!("{role:?}: {e:?}"),
                }
            }
        }
        let _ = go.send(());
        loop {
            assert!(
                Instant::now() < deadline,
                "{role:?}: flushing took too long"
            );
            match ws.flush() {
                Ok(()) => break,
                Err(e) if e.is_would_block() => {}
                Err(e) => panic!("{role:?}: {e:?}"),
            }
        }
        drop(ws);
        let bytes = peer.join(Duration::from_secs(20));
        assert!(
            blocked > 0 && full > 0,
            "{role:?}: blocked {blocked}, full {full}"
        );
        let got = reassemble(role, &bytes);
        assert_eq!(got.len(), messages.len(), "{role:?}");
        assert!(got == messages, "{role:?}: messages differ");
    }
}

/// A close frame queued behind data is written after all of it: the peer reads every
/// message, then the close frame, even when the socket kept refusing bytes in between.
#[test]
fn close_goes_out_after_everything_queued_before_it() {
    for role in [Role::Server, Role::Client] {
        let (mut ws, raw) = pair(role, Config::default());
        ws.get_ref()
            .set_write_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let peer = spawn_bounded(move || {
            thread::sleep(Duration::from_millis(200));
            read_until_end(&raw.stream, Duration::from_secs(20)).0
        });
        let messages = outgoing(20, 99);
        for msg in &messages {
            match ws.write(msg.clone()) {
                Ok(()) => {}
                Err(e) if e.is_would_block() => {}
                Err(e) => panic!("{role:?}: {e:?}"),
            }
        }
        match ws.close(4000, "done") {
            Ok(()) => {}
            Err(e) if e.is_would_block() => {}
            Err(e) => panic!("{role:?}: {e:?}"),
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline);
            match ws.flush() {
                Ok(()) => break,
                Err(e) if e.is_would_block() => {}
                Err(e) => panic!("{role:?}: {e:?}"),
            }
        }
        drop(ws);
        let bytes = peer.join(Duration::from_secs(20));
        let (mut frames, partial) = parse_frames(&bytes);
        assert_eq!(partial, 0);
        let close = frames.pop().expect("frames");
        assert_eq!(close.opcode, 0x8, "{role:?}: the last frame is the close");
        assert_eq!(close.payload, close_body(4000, b"done"));
        let got = reassemble_frames(role, frames);
        assert!(got == messages, "{role:?}: messages differ");
    }
}
