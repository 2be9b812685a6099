//! The closing handshake, abnormal ends, and what every call returns afterwards.

mod common;

use std::io::ErrorKind;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{close_body, connect, echo, serve_one, server_frame, RawConn};
use stdws::{ClientBuilder, CloseCode, CloseFrame, Error, Message, WebSocket};

/// A server handler that records every message it reads until the closing handshake
/// completes (echoing data messages), then returns them.
fn record(stream: TcpStream) -> stdws::Result<Vec<Message>> {
    let mut ws = stdws::accept(stream)?;
    let mut seen = Vec::new();
    loop {
        let msg = ws.read()?;
        seen.push(msg.clone());
        match msg {
            Message::Text(_) | Message::Binary(_) => ws.send(msg)?,
            Message::Close(_) => return Ok(seen),
            _ => {}
        }
    }
}

fn code(frame: &Option<CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| f.code.as_u16())
}

#[test]
fn client_initiated_close() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let first = ws.read()?;
        let after = ws.read().unwrap_err();
        let later = ws.read().unwrap_err();
        Ok::<_, Error>((first, after, later))
    });
    let mut ws = connect(&server.url("/"));
    ws.close(1000, "bye").unwrap();
    assert!(!ws.can_write());
    assert!(ws.can_read());
    let reply = match ws.read().unwrap() {
        Message::Close(frame) => frame,
        other => panic!("unexpected {other:?}"),
    };
    // The server echoes the status code (RFC 6455 §5.5.1).
    assert_eq!(code(&reply), Some(1000));
    assert!(!ws.can_read());
    match ws.read() {
        Err(Error::ConnectionClosed(frame)) => assert_eq!(code(&frame), Some(1000)),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
    assert!(matches!(ws.send_text("x"), Err(Error::AlreadyClosed)));

    let (first, after, later) = server.join_one().unwrap();
    assert_eq!(first, Message::Close(Some(CloseFrame::new(1000, "bye"))));
    match after {
        Error::ConnectionClosed(Some(frame)) => {
            assert_eq!(frame, CloseFrame::new(1000, "bye"));
        }
        other => panic!("server: expected ConnectionClosed, got {other:?}"),
    }
    assert!(matches!(later, Error::AlreadyClosed));
}

#[test]
fn server_initiated_close() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        ws.close(4000, "server bye")?;
        let reply = loop {
            if let Message::Close(frame) = ws.read()? {
                break frame;
            }
        };
        let after = ws.read().unwrap_err();
        Ok::<_, Error>((reply, after))
    });
    let mut ws = connect(&server.url("/"));
    match ws.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame, CloseFrame::new(4000, "server bye")),
        other => panic!("expected the server's close, got {other:?}"),
    }
    // The reply went out; the client still reports the end once, after the server's FIN.
    match ws.read() {
        Err(Error::ConnectionClosed(Some(frame))) => assert_eq!(frame.code.as_u16(), 4000),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
    let (reply, after) = server.join_one().unwrap();
    assert_eq!(code(&reply), Some(4000));
    assert!(matches!(after, Error::ConnectionClosed(_)));
}

#[test]
fn data_sent_before_the_peers_close_reply_is_still_read() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        ws.send_text("a")?;
        ws.send_binary(b"b")?;
        loop {
            if let Message::Close(frame) = ws.read()? {
                return Ok::<_, Error>(frame);
            }
        }
    });
    let mut ws = connect(&server.url("/"));
    ws.close(1001, "").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("a"));
    assert_eq!(ws.read().unwrap(), Message::binary(b"b".to_vec()));
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(f)) if f.code.as_u16() == 1001));
    assert_eq!(code(&server.join_one().unwrap()), Some(1001));
}

#[test]
fn close_without_status_code_is_answered_without_one() {
    let server = serve_one(record);
    let mut ws = connect(&server.url("/"));
    ws.send(Message::Close(None)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Close(None));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(None))));
    assert_eq!(server.join_one().unwrap(), [Message::Close(None)]);
}

#[test]
fn close_and_wait_as_client() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    ws.send_text("pending").unwrap(); // an echo that arrives before the close reply
    let start = Instant::now();
    let frame = ws
        .close_and_wait(1000, "bye", Duration::from_secs(3))
        .expect("close_and_wait");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(code(&frame), Some(1000));
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
    server.join_one().expect("server");
}

#[test]
fn close_and_wait_as_server() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let start = Instant::now();
        let frame = ws.close_and_wait(CloseCode::GOING_AWAY, "shutdown", Duration::from_secs(3))?;
        Ok::<_, Error>((frame, start.elapsed()))
    });
    let mut ws = connect(&server.url("/"));
    match ws.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame, CloseFrame::new(1001, "shutdown")),
        other => panic!("expected close, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    let (frame, elapsed) = server.join_one().unwrap();
    assert_eq!(code(&frame), Some(1001));
    assert!(elapsed < Duration::from_secs(3));
}

fn assert_timed_out(result: stdws::Result<Option<CloseFrame>>, elapsed: Duration) {
    match result {
        Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        other => panic!("expected a TimedOut I/O error, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn close_and_wait_times_out_when_server_never_answers() {
    // A raw server that completes the handshake, reads the close frame and never replies.
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", b"");
        let close = raw.read_frame();
        // close_and_wait shuts the stream down when it gives up.
        let rest = raw.read_to_end();
        (close, rest)
    });
    let (mut ws, _) = ClientBuilder::new(server.url("/")).connect().unwrap();
    let previous = Some(Duration::from_secs(7));
    ws.get_ref().set_read_timeout(previous).unwrap();
    let start = Instant::now();
    let result = ws.close_and_wait(1000, "", Duration::from_millis(300));
    assert_timed_out(result, start.elapsed());
    // The previous timeout was restored.
    assert_eq!(ws.get_ref().read_timeout().unwrap(), previous);
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));

    let (close, rest) = server.join_one();
    assert_eq!(close.opcode, 8);
    assert!(close.mask.is_some(), "client close frames are masked");
    assert_eq!(close.close_code(), Some(1000));
    assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
}

#[test]
fn close_and_wait_times_out_when_client_never_answers() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let start = Instant::now();
        let result = ws.close_and_wait(1000, "", Duration::from_millis(300));
        Ok::<_, Error>((result, start.elapsed()))
    });
    let mut raw = RawConn::handshake(server.addr);
    let close = raw.read_frame();
    assert_eq!(close.mask, None, "server frames are unmasked");
    assert_eq!(close.close_code(), Some(1000));
    // The server gives up and shuts the connection down.
    assert!(raw.read_to_end().is_empty());
    let (result, elapsed) = server.join_one().unwrap();
    assert_timed_out(result, elapsed);
}

#[test]
fn server_read_after_client_dropped_tcp_is_abnormal_closure() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let first = ws.read().unwrap_err();
        let can_read = ws.can_read();
        let second = ws.read().unwrap_err();
        let send = ws.send_text("x").unwrap_err();
        Ok::<_, Error>((first, can_read, second, send))
    });
    let ws = connect(&server.url("/"));
    drop(ws); // TCP FIN, no close frame
    let (first, can_read, second, send) = server.join_one().unwrap();
    assert!(matches!(first, Error::AbnormalClosure), "{first:?}");
    assert!(!can_read);
    assert!(matches!(second, Error::AlreadyClosed), "{second:?}");
    assert!(matches!(send, Error::AlreadyClosed), "{send:?}");
}

#[test]
fn client_read_after_server_dropped_tcp_is_abnormal_closure() {
    let server = serve_one(|stream| stdws::accept(stream).map(drop));
    let mut ws = connect(&server.url("/"));
    server.join_one().unwrap();
    assert!(matches!(ws.read(), Err(Error::AbnormalClosure)));
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
}

#[test]
fn sending_after_close_is_already_closed() {
    let server = serve_one(record);
    let mut ws = connect(&server.url("/"));
    ws.close(1000, "").unwrap();
    assert!(matches!(ws.send_text("late"), Err(Error::AlreadyClosed)));
    assert!(matches!(ws.send_binary(b"late"), Err(Error::AlreadyClosed)));
    assert!(matches!(ws.ping(b"late"), Err(Error::AlreadyClosed)));
    assert!(matches!(
        ws.write(Message::text("late")),
        Err(Error::AlreadyClosed)
    ));
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(_))));
    // None of the late messages reached the server: the close was the only thing it saw.
    assert_eq!(
        server.join_one().unwrap(),
        [Message::Close(Some(CloseFrame::new(1000, "")))]
    );
}

#[test]
fn calling_close_twice_sends_one_close_frame() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", b"");
        let close = raw.read_frame();
        raw.send(&server_frame(true, 8, &close_body(1000, b"")));
        raw.stream.shutdown(Shutdown::Write).unwrap();
        (close, raw.read_to_end())
    });
    let (mut ws, _) = ClientBuilder::new(server.url("/")).connect().unwrap();
    common::set_timeouts(ws.get_ref());
    ws.close(1000, "first").unwrap();
    ws.close(1001, "second").unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(_))));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    drop(ws);
    let (close, rest) = server.join_one();
    assert_eq!(close.payload, close_body(1000, b"first"));
    assert!(rest.is_empty(), "a second frame was sent: {rest:?}");
}

#[test]
fn invalid_close_arguments_are_refused_and_nothing_is_sent() {
    let server = serve_one(record);
    let mut ws = connect(&server.url("/"));
    for bad in [1005u16, 1006, 999, 5000, 0, 1004, 1015, 2999] {
        match ws.close(bad, "") {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("close({bad}) should be InvalidInput, got {other:?}"),
        }
        assert!(ws.can_write(), "close({bad}) changed the state");
    }
    let long_ascii = "x".repeat(124);
    let long_unicode = "é".repeat(62); // 124 bytes, 62 characters
    for reason in [&long_ascii, &long_unicode] {
        assert!(matches!(
            ws.close(1000, reason),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            ws.send(Message::Close(Some(CloseFrame::new(1000, reason.as_str())))),
            Err(Error::InvalidInput(_))
        ));
    }
    assert!(ws.can_write());
    // Nothing was sent: the connection is open and the server sees only what follows.
    ws.send_text("still open").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still open"));
    // The longest allowed reason (123 bytes) goes through.
    let max_reason = "y".repeat(123);
    ws.close(4999, &max_reason).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(f)) if f.code.as_u16() == 4999));
    assert_eq!(
        server.join_one().unwrap(),
        [
            Message::text("still open"),
            Message::Close(Some(CloseFrame::new(4999, max_reason))),
        ]
    );
}

#[test]
fn close_and_wait_with_invalid_code_is_invalid_input() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        Ok::<_, Error>(ws.read())
    });
    let mut ws: WebSocket<TcpStream> = connect(&server.url("/"));
    assert!(matches!(
        ws.close_and_wait(1006, "", Duration::from_secs(1)),
        Err(Error::InvalidInput(_))
    ));
    // No close frame went out: the server did not see one.
    let seen = server.join_one().unwrap();
    assert!(
        !matches!(seen, Ok(Message::Close(_))),
        "server saw a close frame: {seen:?}"
    );
}

#[test]
fn queued_messages_go_out_before_the_close_frame() {
    let server = serve_one(record);
    let mut ws = connect(&server.url("/"));
    ws.write(Message::text("corked 1")).unwrap();
    ws.write(Message::binary(vec![2])).unwrap();
    ws.close(1000, "").unwrap();
    // The echoes of both arrive before the close reply.
    assert_eq!(ws.read().unwrap(), Message::text("corked 1"));
    assert_eq!(ws.read().unwrap(), Message::binary(vec![2]));
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(_))));
    assert_eq!(
        server.join_one().unwrap(),
        [
            Message::text("corked 1"),
            Message::binary(vec![2]),
            Message::Close(Some(CloseFrame::new(1000, ""))),
        ]
    );
}

#[test]
fn server_close_and_wait_after_reading_the_peers_close() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let first = ws.read()?;
        let frame = ws.close_and_wait(1000, "", Duration::from_secs(3))?;
        Ok::<_, Error>((first, frame))
    });
    let mut ws = connect(&server.url("/"));
    ws.close(3001, "app").unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(f)) if f.code.as_u16() == 3001));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    let (first, frame) = server.join_one().unwrap();
    assert_eq!(first, Message::Close(Some(CloseFrame::new(3001, "app"))));
    // The handshake was already complete: the peer's frame is returned.
    assert_eq!(frame, Some(CloseFrame::new(3001, "app")));
}

#[test]
fn sending_after_the_peers_close_reports_the_end_once() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let first = ws.read()?;
        let can_write = ws.can_write();
        let send1 = ws.send_text("too late").unwrap_err();
        let send2 = ws.send_text("too late").unwrap_err();
        Ok::<_, Error>((first, can_write, send1, send2))
    });
    let mut ws = connect(&server.url("/"));
    ws.close(1000, "").unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(_)));
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    let (first, can_write, send1, send2) = server.join_one().unwrap();
    assert!(first.is_close());
    assert!(!can_write);
    assert!(matches!(send1, Error::ConnectionClosed(_)), "{send1:?}");
    assert!(matches!(send2, Error::AlreadyClosed), "{send2:?}");
}

#[test]
fn close_and_wait_with_invalid_arguments_leaves_the_connection_open() {
    let server = serve_one(record);
    let mut ws = connect(&server.url("/"));
    for (code, reason) in [(1006u16, String::new()), (1000, "x".repeat(124))] {
        assert!(matches!(
            ws.close_and_wait(code, &reason, Duration::from_secs(1)),
            Err(Error::InvalidInput(_))
        ));
        // Like `close` with the same arguments, nothing happened: the connection is open.
        assert!(
            ws.can_write(),
            "close_and_wait({code}) ended the connection"
        );
    }
    ws.send_text("still open").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still open"));
    ws.close_and_wait(1000, "", Duration::from_secs(3)).unwrap();
    assert_eq!(
        server.join_one().unwrap(),
        [
            Message::text("still open"),
            Message::Close(Some(CloseFrame::new(1000, ""))),
        ]
    );
}

/// An in-memory stream that counts how often it is flushed and what was written.
struct CountingStream {
    input: std::io::Cursor<Vec<u8>>,
    written: Vec<u8>,
    flushes: usize,
}

impl std::io::Read for CountingStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl std::io::Write for CountingStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn the_close_reply_is_written_and_flushed_once() {
    // A TLS stream turns every flush into a record; the reply must go out once, not again
    // when the end is reported.
    let input = common::client_frame(true, 8, &close_body(1000, b"bye"));
    let stream = CountingStream {
        input: std::io::Cursor::new(input),
        written: Vec::new(),
        flushes: 0,
    };
    let mut ws =
        WebSocket::from_raw_socket(stream, stdws::Role::Server, Default::default(), vec![]);
    match ws.read() {
        Ok(Message::Close(frame)) => assert_eq!(code(&frame), Some(1000)),
        other => panic!("expected the peer's close, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    let stream = ws.get_ref();
    assert_eq!(
        stream.written,
        server_frame(true, 8, &close_body(1000, b""))
    );
    assert_eq!(
        stream.flushes, 1,
        "the close reply was flushed more than once"
    );
}

#[test]
fn state_follows_the_closing_handshake_without_provoking_errors() {
    use stdws::State;
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let mut states = vec![ws.state()];
        let first = ws.read()?; // the client's close: answered
        states.push(ws.state());
        let _ = ws.read(); // ConnectionClosed, reported once
        states.push(ws.state());
        Ok::<_, Error>((first, states))
    });
    let mut ws = connect(&server.url("/"));
    assert_eq!(ws.state(), State::Open);
    // Asking twice changes nothing (no report is consumed).
    assert_eq!(ws.state(), State::Open);
    ws.close(1000, "bye").unwrap();
    assert_eq!(ws.state(), State::Closing);
    assert!(matches!(ws.read().unwrap(), Message::Close(_)));
    assert_eq!(ws.state(), State::Closed);
    // The end is still reported by the next read, after state() was asked.
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    assert_eq!(ws.state(), State::Closed);
    let (first, states) = server.join_one().unwrap();
    assert!(matches!(first, Message::Close(_)));
    assert_eq!(states, [State::Open, State::Closed, State::Closed]);
}

#[test]
fn split_halves_report_the_state_without_waiting_for_the_writer() {
    use stdws::State;
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        ws.send_text("hello")?;
        ws.close(1001, "going away")?;
        while !matches!(ws.read()?, Message::Close(_)) {}
        Ok::<_, Error>(())
    });
    let (mut reader, writer) = connect(&server.url("/")).split().unwrap();
    assert_eq!(reader.state(), State::Open);
    assert_eq!(writer.state(), State::Open);
    assert_eq!(reader.read().unwrap(), Message::text("hello"));
    assert!(matches!(reader.read().unwrap(), Message::Close(_)));
    // The peer closed and the reader answered: both halves see it.
    assert_eq!(reader.state(), State::Closed);
    assert_eq!(writer.state(), State::Closed);
    assert!(matches!(
        writer.send_text("late"),
        Err(Error::AlreadyClosed)
    ));
    server.join_one().unwrap();
}

#[test]
fn a_failed_connection_is_closed() {
    use stdws::State;
    // The server sends a masked frame, which a client must refuse (1002).
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", &common::client_frame(true, 1, b"masked"));
        raw.read_to_end()
    });
    let mut ws = connect(&server.url("/"));
    assert!(matches!(ws.read(), Err(Error::Protocol(_))));
    assert_eq!(ws.state(), State::Closed);
    drop(ws);
    let sent = server.join_one();
    let (frame, _) = common::parse_frame(&sent).expect("the client sent a close frame");
    assert_eq!(frame.close_code(), Some(1002));
}
