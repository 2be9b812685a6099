//! Peers that break RFC 6455: the library must return the right typed error AND tell the
//! peer why with a close frame carrying the matching code (1002, 1007, 1009).

mod common;

use std::time::{Duration, Instant};

use common::{client_frame, close_body, serve_one, server_frame, Frame, RawConn, MASK};
use stdws::{CapacityError, ClientBuilder, Config, Error, Message, ProtocolError};

/// What the server saw and what the raw client received.
struct Outcome {
    /// The server's messages before the error.
    messages: Vec<Message>,
    /// The error `read` returned.
    error: Error,
    /// How long the failing `read` took.
    elapsed: Duration,
    /// What the `read` after the error returned.
    again: Error,
    /// The frames the client received before the close frame (pongs).
    before: Vec<Frame>,
    /// The close frame the client received.
    close: Frame,
}

/// A raw client completes the handshake against `accept_with(config)` and sends `bytes`;
/// the server reads until an error.
fn run(config: Config, bytes: &[u8]) -> Outcome {
    let server = serve_one(move |stream| {
        let mut ws = stdws::accept_with(stream, config, |_, _| Ok(())).expect("handshake");
        let mut messages = Vec::new();
        loop {
            let start = Instant::now();
            match ws.read() {
                Ok(msg) => messages.push(msg),
                Err(error) => {
                    let elapsed = start.elapsed();
                    let again = ws.read().unwrap_err();
                    return (messages, error, elapsed, again);
                }
            }
        }
    });
    let mut raw = RawConn::handshake(server.addr);
    raw.send(bytes);
    let mut before = Vec::new();
    let close = loop {
        let frame = raw.read_frame();
        if frame.opcode == 8 {
            break frame;
        }
        before.push(frame);
    };
    // The server ends the connection after its close frame and sends nothing more.
    let rest = raw.read_to_end();
    assert!(rest.is_empty(), "bytes after the close frame: {rest:?}");
    let (messages, error, elapsed, again) = server.join_one();
    assert!(matches!(again, Error::AlreadyClosed), "{again:?}");
    assert_eq!(close.opcode, 8, "expected a close frame, got {close:?}");
    assert_eq!(close.mask, None, "server frames are unmasked");
    assert!(close.fin);
    Outcome {
        messages,
        error,
        elapsed,
        again,
        before,
        close,
    }
}

/// Runs `bytes` with the default config and checks the error and the close code.
fn expect(bytes: &[u8], code: u16, check: impl FnOnce(&Error) -> bool) -> Outcome {
    let out = run(Config::default(), bytes);
    assert!(check(&out.error), "unexpected error {:?}", out.error);
    assert_eq!(
        out.close.close_code(),
        Some(code),
        "close frame {:?}",
        out.close
    );
    assert_eq!(out.error.close_code().map(|c| c.as_u16()), Some(code));
    assert!(matches!(out.again, Error::AlreadyClosed));
    assert!(out.before.is_empty(), "unexpected frames {:?}", out.before);
    // The reason is valid UTF-8 (it is a close frame like any other).
    assert!(std::str::from_utf8(&out.close.payload[2..]).is_ok());
    out
}

fn protocol(bytes: &[u8], want: ProtocolError) {
    expect(
        bytes,
        1002,
        |e| matches!(e, Error::Protocol(p) if *p == want),
    );
}

#[test]
fn unmasked_frame_from_client_is_1002() {
    protocol(&server_frame(true, 1, b"hi"), ProtocolError::UnmaskedFrame);
}

#[test]
fn reserved_bits_are_1002() {
    for bit in [0x40u8, 0x20, 0x10] {
        let mut frame = client_frame(true, 1, b"hi");
        frame[0] |= bit;
        protocol(&frame, ProtocolError::ReservedBits);
    }
}

#[test]
fn reserved_opcodes_are_1002() {
    for op in [3u8, 7, 0xB, 0xF] {
        protocol(
            &client_frame(true, op, b""),
            ProtocolError::ReservedOpcode(op),
        );
    }
}

#[test]
fn ping_with_126_byte_payload_is_1002() {
    protocol(
        &client_frame(true, 9, &[0; 126]),
        ProtocolError::ControlFrameTooLong,
    );
}

#[test]
fn fragmented_ping_is_1002() {
    protocol(
        &client_frame(false, 9, b"p"),
        ProtocolError::FragmentedControlFrame,
    );
}

#[test]
fn continuation_without_a_message_is_1002() {
    protocol(
        &client_frame(true, 0, b"x"),
        ProtocolError::UnexpectedContinuation,
    );
}

#[test]
fn new_data_frame_inside_a_fragmented_message_is_1002() {
    for op in [1u8, 2] {
        let mut bytes = client_frame(false, 1, b"a");
        bytes.extend(client_frame(true, op, b"b"));
        protocol(&bytes, ProtocolError::ExpectedContinuation);
    }
}

#[test]
fn length_with_top_bit_set_is_1002() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    protocol(&bytes, ProtocolError::InvalidLength);
}

#[test]
fn messages_before_the_violation_are_delivered() {
    let mut bytes = client_frame(true, 1, b"fine");
    bytes.extend(client_frame(true, 9, b"ping"));
    bytes.extend(server_frame(true, 1, b"unmasked"));
    let out = run(Config::default(), &bytes);
    assert_eq!(
        out.messages,
        [Message::text("fine"), Message::Ping(b"ping".to_vec())]
    );
    // The pong went out before the close frame.
    assert_eq!(out.before.len(), 1);
    assert_eq!(
        (out.before[0].opcode, &out.before[0].payload[..]),
        (0xA, &b"ping"[..])
    );
    assert!(matches!(
        out.error,
        Error::Protocol(ProtocolError::UnmaskedFrame)
    ));
    assert_eq!(out.close.close_code(), Some(1002));
}

#[test]
fn invalid_utf8_text_is_1007() {
    expect(&client_frame(true, 1, &[b'o', b'k', 0xFF]), 1007, |e| {
        matches!(e, Error::Utf8)
    });
}

#[test]
fn utf8_sequence_truncated_at_end_of_message_is_1007() {
    // "€" is E2 82 AC; the message ends after two of its bytes.
    let mut bytes = client_frame(false, 1, &[b'a', 0xE2]);
    bytes.extend(client_frame(true, 0, &[0x82]));
    expect(&bytes, 1007, |e| matches!(e, Error::Utf8));
}

#[test]
fn frame_announcing_2_pow_62_bytes_is_1009_without_waiting() {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&MASK);
    let out = expect(&header, 1009, |e| {
        matches!(
            e,
            Error::Capacity(CapacityError::FrameTooLarge { size, max })
                if *size == 1 << 62 && *max == 16 << 20
        )
    });
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

#[test]
fn frame_one_byte_over_the_default_limit_is_1009() {
    // Only the header is sent: the limit is checked before any payload arrives.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
    header.extend_from_slice(&MASK);
    expect(&header, 1009, |e| {
        matches!(
            e,
            Error::Capacity(CapacityError::FrameTooLarge { size, max })
                if *size == (16 << 20) + 1 && *max == 16 << 20
        )
    });
}

#[test]
fn frame_limit_is_inclusive() {
    let config = Config::default().max_frame_size(Some(100));
    let mut bytes = client_frame(true, 2, &[7; 100]);
    bytes.extend(client_frame(true, 2, &[7; 101]));
    let out = run(config, &bytes);
    assert_eq!(out.messages, [Message::Binary(vec![7; 100])]);
    assert!(matches!(
        out.error,
        Error::Capacity(CapacityError::FrameTooLarge {
            size: 101,
            max: 100
        })
    ));
    assert_eq!(out.close.close_code(), Some(1009));
}

#[test]
fn message_over_max_message_size_across_fragments_is_1009() {
    let config = Config::default().max_message_size(Some(100));
    let mut bytes = client_frame(false, 2, &[1; 60]);
    bytes.extend(client_frame(true, 0, &[1; 60]));
    let out = run(config, &bytes);
    assert!(
        matches!(
            out.error,
            Error::Capacity(CapacityError::MessageTooLarge {
                size: 120,
                max: 100
            })
        ),
        "{:?}",
        out.error
    );
    assert_eq!(out.close.close_code(), Some(1009));
}

/// With no limits, a header announcing 2^62 bytes must not make the library reserve that
/// much: it just waits for the payload (and times out here), without aborting the process.
#[test]
fn huge_announced_length_without_limits_allocates_nothing_up_front() {
    let server = serve_one(|stream| {
        let config = Config::default()
            .max_frame_size(None)
            .max_message_size(None);
        let mut ws = stdws::accept_with(stream, config, |_, _| Ok(())).unwrap();
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let start = Instant::now();
        let result = ws.read();
        (result, start.elapsed())
    });
    let mut raw = RawConn::handshake(server.addr);
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    bytes.extend_from_slice(&[0; 10]);
    raw.send(&bytes);
    let (result, elapsed) = server.join_one();
    match result {
        Err(e) => assert!(e.is_would_block(), "{e:?}"),
        Ok(m) => panic!("unexpected message of {} bytes", m.len()),
    }
    assert!(elapsed < Duration::from_secs(3));
}

#[test]
fn close_with_one_byte_payload_is_1002() {
    protocol(
        &client_frame(true, 8, &[0x03]),
        ProtocolError::InvalidClosePayload,
    );
}

#[test]
fn close_with_code_that_may_not_be_sent_is_1002() {
    for code in [1005u16, 1006, 999, 1015, 5000] {
        protocol(
            &client_frame(true, 8, &close_body(code, b"")),
            ProtocolError::InvalidCloseCode(code),
        );
    }
}

#[test]
fn close_reason_with_invalid_utf8_is_1007() {
    expect(
        &client_frame(true, 8, &close_body(1000, &[b'o', 0xC3, 0x28])),
        1007,
        |e| matches!(e, Error::Utf8),
    );
}

#[test]
fn invalid_utf8_fails_before_the_rest_of_the_frame_arrives() {
    let server = serve_one(|stream| {
        // The helper set a 5 s read timeout: waiting for the remaining 990 bytes would
        // take that long.
        let mut ws = stdws::accept(stream).unwrap();
        let start = Instant::now();
        let result = ws.read();
        (result, start.elapsed())
    });
    let mut raw = RawConn::handshake(server.addr);
    let mut payload = vec![b'a'; 1000];
    payload[3] = 0xFF;
    let frame = client_frame(true, 1, &payload);
    assert_eq!(frame.len(), 8 + 1000); // 2 + 2 (16-bit length) + 4 (mask) header bytes
    raw.send(&frame[..8 + 10]);
    let close = raw.read_frame();
    assert_eq!(close.close_code(), Some(1007));
    let (result, elapsed) = server.join_one();
    assert!(matches!(result, Err(Error::Utf8)), "{result:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn client_receiving_masked_frame_is_1002_with_masked_close() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &client_frame(true, 1, b"masked"));
        let close = raw.read_frame();
        let rest = raw.read_to_end();
        (close, rest)
    });
    let (mut ws, _) = ClientBuilder::new(server.url("/")).connect().unwrap();
    common::set_timeouts(ws.get_ref());
    let err = ws.read().unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::MaskedFrame)),
        "{err:?}"
    );
    assert_eq!(err.close_code().map(|c| c.as_u16()), Some(1002));
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
    drop(ws);
    let (close, rest) = server.join_one();
    assert_eq!(close.opcode, 8);
    assert!(close.mask.is_some(), "client frames must be masked");
    assert_eq!(close.close_code(), Some(1002));
    assert!(rest.is_empty(), "bytes after the close frame: {rest:?}");
}

#[test]
fn client_receiving_invalid_utf8_is_1007() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &server_frame(true, 1, &[0xF8, 0x88, 0x80, 0x80, 0x80]));
        raw.read_frame()
    });
    let (mut ws, _) = ClientBuilder::new(server.url("/")).connect().unwrap();
    common::set_timeouts(ws.get_ref());
    assert!(matches!(ws.read(), Err(Error::Utf8)));
    let close = server.join_one();
    assert!(close.mask.is_some());
    assert_eq!(close.close_code(), Some(1007));
}

/// A server that sends a data frame after its close frame breaks RFC 6455 §5.5.1. The
/// client, which reads on after the closing handshake to wait for the server's TCP end,
/// reports `DataAfterClose` instead of `ConnectionClosed`; the closing handshake is over, so
/// no second close frame goes out (`close_code` is `None`). Both when the frame comes in the
/// same write as the close and when it comes after the client's close reply.
#[test]
fn client_reading_data_after_the_servers_close_is_data_after_close() {
    for same_write in [true, false] {
        let what = if same_write {
            "data in the close frame's write"
        } else {
            "data after the close reply"
        };
        let server = serve_one(move |stream| {
            let mut raw = RawConn::new(stream);
            let close = server_frame(true, 8, &close_body(1000, b"bye"));
            let late = server_frame(true, 1, b"late");
            if same_write {
                raw.accept_upgrade("", &[&close[..], &late[..]].concat());
            } else {
                raw.accept_upgrade("", &close);
            }
            let reply = raw.read_frame();
            if !same_write {
                raw.send(&late);
            }
            raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
            (reply, raw.read_to_end())
        });
        let (mut ws, _) = ClientBuilder::new(server.url("/")).connect().unwrap();
        common::set_timeouts(ws.get_ref());
        match ws.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1000, "{what}"),
            other => panic!("{what}: expected the server's close, got {other:?}"),
        }
        let err = ws.read().unwrap_err();
        assert!(
            matches!(err, Error::Protocol(ProtocolError::DataAfterClose)),
            "{what}: {err:?}"
        );
        assert_eq!(
            err.close_code(),
            None,
            "{what}: no close frame is sent for it"
        );
        assert!(matches!(ws.read(), Err(Error::AlreadyClosed)), "{what}");
        drop(ws);
        let (reply, rest) = server.join_one();
        assert_eq!(
            reply.close_code(),
            Some(1000),
            "{what}: the close was echoed"
        );
        assert!(
            rest.is_empty(),
            "{what}: bytes after the close reply: {rest:?}"
        );
    }
}
