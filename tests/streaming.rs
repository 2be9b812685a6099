//! Streamed messages: `read_stream` yields a message's payload as its frames arrive and
//! `send_stream` sends one as fragments, over 127.0.0.1, with raw peers where the exact
//! frames matter.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use stdws::{Config, Error, Message, MessageKind, Streamed, WebSocket};

/// Deterministic bytes for payload checks.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

fn expect_reader<'a>(ws: &'a mut WebSocket<TcpStream>) -> stdws::MessageReader<'a> {
    match ws.read_stream().expect("read_stream") {
        Streamed::Message(reader) => reader,
        Streamed::Control(m) => panic!("expected a data message, got {m:?}"),
    }
}

/// The stdws error inside an `io::Error` from a reader or writer.
fn inner(e: &std::io::Error) -> Option<&Error> {
    e.get_ref().and_then(|e| e.downcast_ref::<Error>())
}

#[test]
fn streams_fragmented_message_with_interleaved_ping_at_any_read_size() {
    let payload = pattern(300_000);
    let sent = payload.clone();
    let server = serve_one(move |stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        // Fragments of uneven sizes, a ping in the middle, then the next message.
        let mut wire = Vec::new();
        let cuts = [0, 1, 70_000, 70_001, 200_000, sent.len()];
        for (i, w) in cuts.windows(2).enumerate() {
            let op = if i == 0 { 2 } else { 0 };
            let fin = w[1] == sent.len();
            wire.extend(server_frame(fin, op, &sent[w[0]..w[1]]));
            if i == 2 {
                wire.extend(server_frame(true, 9, b"hi"));
            }
        }
        wire.extend(server_frame(true, 1, b"after"));
        raw.send(&wire);
        raw.read_frame()
    });
    let mut ws = connect(&server.url("/"));
    let mut reader = expect_reader(&mut ws);
    assert_eq!(reader.kind(), MessageKind::Binary);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 5000];
    let mut step = 1;
    loop {
        // Read sizes vary from 1 byte to over the read buffer (direct reads).
        let n = reader.read(&mut buf[..step]).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        step = (step * 7 + 3) % buf.len() + 1;
    }
    assert!(reader.is_done());
    assert_eq!(reader.read(&mut buf).unwrap(), 0, "stays at the end");
    assert_eq!(got, payload);
    assert_eq!(ws.read().unwrap(), Message::text("after"));
    let pong = server.join_one();
    assert_eq!((pong.opcode, &pong.payload[..]), (0xA, &b"hi"[..]));
}

#[test]
fn control_messages_before_a_stream_are_returned_and_handled() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        let mut wire = server_frame(true, 9, b"p");
        wire.extend(server_frame(true, 1, "héllo".as_bytes()));
        raw.send(&wire);
        raw.read_frame()
    });
    let mut ws = connect(&server.url("/"));
    match ws.read_stream().unwrap() {
        Streamed::Control(m) => assert_eq!(m, Message::Ping(b"p".to_vec())),
        Streamed::Message(_) => panic!("the ping comes first"),
    }
    let mut reader = expect_reader(&mut ws);
    assert!(reader.is_text());
    let mut text = String::new();
    reader.read_to_string(&mut text).unwrap();
    assert_eq!(text, "héllo");
    // The pong is queued; it goes out with the next write, flush or wait for input.
    ws.flush().unwrap();
    assert_eq!(server.join_one().opcode, 0xA, "the ping was answered");
}

#[test]
fn dropped_reader_discards_the_rest_and_the_next_message_is_intact() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        let mut wire = server_frame(false, 1, "first part ".as_bytes());
        wire.extend(server_frame(true, 0, &vec![b'x'; 100_000]));
        wire.extend(server_frame(true, 2, b"second"));
        raw.send(&wire);
        raw.read_to_end()
    });
    let mut ws = connect(&server.url("/"));
    let mut reader = expect_reader(&mut ws);
    let mut head = [0u8; 5];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"first");
    assert_eq!(ws.read().unwrap(), Message::binary(&b"second"[..]));
    drop(ws);
    server.join_one();
}

#[test]
fn invalid_utf8_in_a_streamed_text_fails_with_1007() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        let mut wire = server_frame(false, 1, b"good ");
        wire.extend(server_frame(true, 0, &[b'o', b'k', 0xC3, 0x28]));
        raw.send(&wire);
        raw.read_frame()
    });
    let mut ws = connect(&server.url("/"));
    let mut reader = expect_reader(&mut ws);
    let mut got = Vec::new();
    let err = reader.read_to_end(&mut got).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(matches!(inner(&err), Some(Error::Utf8)), "{err:?}");
    // What was returned is valid text, perhaps ending inside a character that the invalid
    // byte was meant to complete.
    assert!(
        std::str::from_utf8(&got).map_err(|e| e.error_len()) != Err(Some(1)),
        "{got:?}"
    );
    let again = reader.read(&mut [0u8; 10]).unwrap_err();
    assert_ne!(
        again.kind(),
        ErrorKind::WouldBlock,
        "a failed reader keeps failing"
    );
    let close = server.join_one();
    assert_eq!(close.close_code(), Some(1007));
}

#[test]
fn streamed_message_limit_is_enforced_with_1009() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        let mut wire = Vec::new();
        for _ in 0..10 {
            wire.extend(server_frame(
                false,
                if wire.is_empty() { 2 } else { 0 },
                &[0; 500],
            ));
        }
        raw.send(&wire);
        raw.read_frame()
    });
    let config = Config::default().max_message_size(Some(2000));
    let (mut ws, _) = stdws::ClientBuilder::new(server.url("/"))
        .config(config)
        .connect()
        .unwrap();
    set_timeouts(ws.get_ref());
    let mut reader = expect_reader(&mut ws);
    let err = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_err();
    assert!(matches!(inner(&err), Some(Error::Capacity(_))), "{err:?}");
    assert_eq!(server.join_one().close_code(), Some(1009));
}

#[test]
fn close_in_the_middle_of_a_streamed_message_is_echoed_and_reported() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        let mut wire = server_frame(false, 2, b"partial");
        wire.extend(server_frame(true, 8, &close_body(1001, b"gone")));
        raw.send(&wire);
        raw.read_frame()
    });
    let mut ws = connect(&server.url("/"));
    let mut reader = expect_reader(&mut ws);
    let mut got = Vec::new();
    let err = reader.read_to_end(&mut got).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(got, b"partial");
    match ws.read() {
        Err(Error::ConnectionClosed(Some(frame))) => assert_eq!(frame.code.as_u16(), 1001),
        other => panic!("expected the close report, got {other:?}"),
    }
    assert_eq!(server.join_one().close_code(), Some(1001));
}

#[test]
fn reader_resumes_after_a_read_timeout_mid_message() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &[]);
        let frame = server_frame(true, 2, &pattern(10_000));
        raw.send(&frame[..3000]);
        std::thread::sleep(Duration::from_millis(300));
        raw.send(&frame[3000..]);
        raw.read_to_end()
    });
    let mut ws = connect(&server.url("/"));
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reader = expect_reader(&mut ws);
    let mut got = Vec::new();
    let mut timeouts = 0;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                timeouts += 1;
                assert!(timeouts < 50);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(timeouts > 0, "the pause was seen as a timeout");
    assert_eq!(got, pattern(10_000));
    drop(ws);
    server.join_one();
}

/// Reads frames until a close; returns the data frames.
fn data_frames(raw: &mut RawConn) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let f = raw.read_frame();
        if f.opcode == 8 {
            frames.push(f);
            return frames;
        }
        frames.push(f);
    }
}

#[test]
fn writer_sends_fragments_of_the_configured_size_then_fin() {
    let (listener, url) = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/", l.local_addr().unwrap());
        (l, url)
    };
    let peer = std::thread::spawn(move || {
        let mut raw = RawConn::new(listener.accept().unwrap().0);
        raw.accept_upgrade("", &[]);
        data_frames(&mut raw)
    });
    let config = Config::default().fragment_size(Some(1000));
    let (mut ws, _) = stdws::ClientBuilder::new(url)
        .config(config)
        .connect()
        .unwrap();
    set_timeouts(ws.get_ref());
    let payload = pattern(3500);
    let mut writer = ws.send_stream(MessageKind::Binary).unwrap();
    // Odd write sizes, including one larger than a fragment.
    for piece in payload.chunks(333).take(3) {
        writer.write_all(piece).unwrap();
    }
    writer.write_all(&payload[999..]).unwrap();
    writer.finish().unwrap();
    // An empty text message, and a whole message afterwards.
    ws.send_stream(MessageKind::Text).unwrap().finish().unwrap();
    ws.send_text("next").unwrap();
    ws.close(1000, "").unwrap();
    let frames = peer.join().unwrap();
    let sizes: Vec<(u8, bool, usize)> = frames
        .iter()
        .map(|f| (f.opcode, f.fin, f.payload.len()))
        .collect();
    assert_eq!(
        sizes,
        [
            (2, false, 1000),
            (0, false, 1000),
            (0, false, 1000),
            (0, true, 500),
            (1, true, 0),
            (1, true, 4),
            (8, true, 2)
        ]
    );
    assert!(frames.iter().all(|f| f.mask.is_some() && f.rsv == 0));
    let joined: Vec<u8> = frames[..4].iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(joined, payload);
}

#[test]
fn text_writer_refuses_invalid_utf8_and_allows_split_characters() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream).unwrap();
        read_data(&mut ws)
    });
    let mut ws = connect(&server.url("/"));
    let mut writer = ws.send_stream(MessageKind::Text).unwrap();
    let euro = "€".as_bytes();
    writer.write_all(&euro[..1]).unwrap();
    let err = writer.write(b"a").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    writer.write_all(&euro[1..]).unwrap();
    writer.write_all(" ok".as_bytes()).unwrap();
    writer.finish().unwrap();
    assert_eq!(server.join_one().unwrap(), Message::text("€ ok"));

    // Ending inside a character is refused.
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream).unwrap();
        read_data(&mut ws)
    });
    let mut ws = connect(&server.url("/"));
    let mut writer = ws.send_stream(MessageKind::Text).unwrap();
    writer.write_all(&euro[..2]).unwrap();
    assert!(matches!(writer.finish(), Err(Error::InvalidInput(_))));
    // Nothing had gone out: the message vanished, the connection is fine.
    ws.send_text("fine").unwrap();
    assert_eq!(server.join_one().unwrap(), Message::text("fine"));
}

#[test]
fn dropping_an_unfinished_writer_after_a_fragment_closes_with_1011() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream).unwrap();
        let mut seen = Vec::new();
        loop {
            match ws.read() {
                Ok(m) => seen.push(m),
                Err(e) => return (seen, e),
            }
        }
    });
    let config = Config::default().fragment_size(Some(10));
    let (mut ws, _) = stdws::ClientBuilder::new(server.url("/"))
        .config(config)
        .connect()
        .unwrap();
    set_timeouts(ws.get_ref());
    let mut writer = ws.send_stream(MessageKind::Binary).unwrap();
    writer.write_all(&[7u8; 25]).unwrap();
    drop(writer);
    assert!(matches!(ws.send_text("late"), Err(Error::AlreadyClosed)));
    let (seen, end) = server.join_one();
    // The server never saw a data message, only our close.
    assert!(
        matches!(&seen[..], [Message::Close(Some(f))] if f.code.as_u16() == 1011),
        "{seen:?}"
    );
    assert!(matches!(end, Error::ConnectionClosed(_)), "{end:?}");
}

#[test]
fn huge_stream_round_trip_through_an_echo_of_streams() {
    // 24 MiB each way: the server streams each message back as it arrives, so neither
    // side ever holds a whole message.
    const LEN: usize = 24 << 20;
    let server = serve_one(|stream| -> stdws::Result<u64> {
        let ws = stdws::accept(stream)?;
        let (mut reader_ws, writer) = ws.split()?;
        let mut total = 0;
        if let Streamed::Message(mut reader) = reader_ws.read_stream()? {
            let mut out = writer.send_stream(reader.kind())?;
            total = std::io::copy(&mut reader, &mut out).map_err(Error::Io)?;
            out.finish()?;
        }
        Ok(total)
    });
    let config = Config::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = stdws::ClientBuilder::new(server.url("/"))
        .config(config)
        .connect()
        .unwrap();
    set_timeouts(ws.get_ref());
    let (mut reader_ws, writer) = ws.split().unwrap();
    let sender = std::thread::spawn(move || {
        let mut out = writer.send_stream(MessageKind::Binary).unwrap();
        let mut source = std::io::repeat(0xA5).take(LEN as u64);
        std::io::copy(&mut source, &mut out).unwrap();
        out.finish().unwrap();
        writer
    });
    let mut reader = match reader_ws.read_stream().unwrap() {
        Streamed::Message(r) => r,
        Streamed::Control(m) => panic!("{m:?}"),
    };
    let mut count = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0xA5));
        count += n as u64;
    }
    assert_eq!(count, LEN as u64);
    sender.join().unwrap();
    assert_eq!(server.join_one().unwrap(), LEN as u64);
}

// ---------------------------------------------------------------------------------------
// A limit for one streamed message, and what a sender refused for its size sees.
// ---------------------------------------------------------------------------------------

/// A `Server` whose connections accept messages (and frames) of at most 64 KiB; `handler`
/// runs on the one connection.
fn small_limit_server<R: Send + 'static>(
    handler: impl FnOnce(WebSocket<TcpStream>) -> R + Send + 'static,
) -> (String, Bounded<R>) {
    let config = Config::default()
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10));
    let server = stdws::Server::bind("127.0.0.1:0").unwrap().config(config);
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let handle = spawn_bounded(move || {
        let ws = server.accept().unwrap().accept().unwrap();
        set_timeouts(ws.get_ref());
        handler(ws)
    });
    (url, handle)
}

/// `read_stream_with_limit` takes one 1 MiB message (a single frame, over both configured
/// limits) on a connection limited to 64 KiB; the next message of that size, read with
/// `read`, is still refused with 1009. Whole and split.
fn one_message_may_exceed_the_configured_limit(split: bool) {
    let big = pattern(1 << 20);
    let (url, server) = small_limit_server(move |ws| {
        let received = if split {
            let (mut reader, writer) = ws.split().unwrap();
            let Streamed::Message(mut stream) = reader.read_stream_with_limit(2 << 20).unwrap()
            else {
                panic!("not a data message")
            };
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            writer.send_text("got it").unwrap();
            (received, reader.read().map(drop))
        } else {
            let mut ws = ws;
            let Streamed::Message(mut stream) = ws.read_stream_with_limit(2 << 20).unwrap() else {
                panic!("not a data message")
            };
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            ws.send_text("got it").unwrap();
            (received, ws.read().map(drop))
        };
        received
    });
    let mut ws = connect(&url);
    ws.send_binary(&big).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("got it"));
    ws.send_binary(&big).unwrap();
    let (received, second) = server.join(Duration::from_secs(10));
    assert!(received == big, "the streamed message arrived intact");
    assert!(
        matches!(
            second,
            Err(Error::Capacity(stdws::CapacityError::FrameTooLarge { .. }))
        ),
        "{second:?}"
    );
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1009),
        other => panic!("the sender got {other:?}"),
    }
}

#[test]
fn one_message_may_exceed_the_configured_limit_whole() {
    one_message_may_exceed_the_configured_limit(false);
}

#[test]
fn one_message_may_exceed_the_configured_limit_split() {
    one_message_may_exceed_the_configured_limit(true);
}

/// The limit given for a message binds it even below the configured one: its frames as
/// they are announced, and the whole message as it arrives.
#[test]
fn the_limit_for_one_message_is_enforced_with_1009() {
    let (url, server) = small_limit_server(|mut ws| {
        let first = ws.read_stream_with_limit(1000).map(drop).unwrap_err();
        (first, ws)
    });
    let mut ws = connect(&url);
    ws.send_binary(&[7; 2000]).unwrap();
    let (error, _server_ws) = server.join(Duration::from_secs(10));
    assert!(
        matches!(
            error,
            Error::Capacity(stdws::CapacityError::FrameTooLarge {
                size: 2000,
                max: 1000
            })
        ),
        "{error:?}"
    );
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1009),
        other => panic!("the sender got {other:?}"),
    }

    // Two fragments of 600 bytes: each frame fits, the message does not.
    let (url, server) = small_limit_server(|mut ws| {
        let Streamed::Message(mut stream) = ws.read_stream_with_limit(1000).unwrap() else {
            panic!("not a data message")
        };
        let error = std::io::copy(&mut stream, &mut std::io::sink()).unwrap_err();
        format!("{:?}", inner(&error))
    });
    let (mut ws, _) = stdws::ClientBuilder::new(url)
        .config(Config::default().fragment_size(Some(600)))
        .connect()
        .unwrap();
    set_timeouts(ws.get_ref());
    ws.send_binary(&[7; 1200]).unwrap();
    let error = server.join(Duration::from_secs(10));
    assert!(error.contains("MessageTooLarge"), "{error}");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1009),
        other => panic!("the sender got {other:?}"),
    }
}

/// A sender still writing a message larger than the socket buffers when it is refused for
/// its size gets to finish writing and reads the 1009 close, instead of a connection reset:
/// the refusing end reads and discards the rest before it closes the socket.
#[test]
fn a_sender_refused_for_size_sees_1009_not_a_reset() {
    let (url, server) = small_limit_server(|mut ws| {
        let error = ws.read().unwrap_err();
        drop(ws); // closes the socket at once
        error
    });
    let mut ws = connect(&url);
    let huge = vec![1u8; 32 << 20];
    let sent = ws.send_binary(&huge);
    let error = server.join(Duration::from_secs(10));
    assert!(
        matches!(
            error,
            Error::Capacity(stdws::CapacityError::FrameTooLarge { .. })
        ),
        "{error:?}"
    );
    sent.expect("the whole message was written");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1009),
        other => panic!("the sender got {other:?}"),
    }
}
