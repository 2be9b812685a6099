//! The sans-I/O `proto::Connection`: bytes in, messages out, messages in, bytes out, time
//! passed in; against itself with every chunking, and against the blocking `WebSocket`
//! over a real socket.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{client_frame, parse_frame, serve_one};
use stdws::proto::Connection;
use stdws::{CapacityError, Config, Error, KeepAlive, Message, Role, State};

/// Moves up to `chunk` bytes of `from`'s output into `to` at a time (as a socket would,
/// however it splits them) and collects what `to` returns.
fn shuttle(from: &mut Connection, to: &mut Connection, chunk: usize) -> Vec<Message> {
    let mut got = Vec::new();
    while from.wants_write() {
        let out = from.output();
        let room = to.read_buf();
        let n = out.len().min(room.len()).min(chunk);
        room[..n].copy_from_slice(&out[..n]);
        from.consume(n);
        to.filled(n, Instant::now());
        // After the peer's close, the next poll reports the end: leave that to the test.
        while !matches!(got.last(), Some(Message::Close(_))) {
            match to.poll().expect("valid input") {
                Some(message) => got.push(message),
                None => break,
            }
        }
    }
    got
}

fn messages() -> Vec<Message> {
    vec![
        Message::text("hello"),
        Message::binary(vec![]),
        Message::text("é".repeat(3000)),
        Message::binary((0..70_000u32).map(|i| i as u8).collect::<Vec<u8>>()),
        Message::Ping(b"are you there".to_vec()),
        Message::text(""),
    ]
}

#[test]
fn messages_cross_between_two_connections_at_every_chunking() {
    for chunk in [1, 2, 3, 7, 100, 4096, usize::MAX] {
        for (from_role, fragment) in [(Role::Client, None), (Role::Server, Some(1000))] {
            let to_role = match from_role {
                Role::Client => Role::Server,
                Role::Server => Role::Client,
            };
            let config = Config::default().fragment_size(fragment);
            let mut from = Connection::new(from_role, config.clone());
            let mut to = Connection::new(to_role, config);
            for message in messages() {
                from.send(message).unwrap();
            }
            let got = shuttle(&mut from, &mut to, chunk);
            assert_eq!(got, messages(), "chunk {chunk}, {from_role:?} sending");
            // The ping was answered: its pong is queued on the receiving side.
            let back = shuttle(&mut to, &mut from, chunk);
            assert_eq!(back, [Message::Pong(b"are you there".to_vec())]);
        }
    }
}

#[test]
fn closing_handshake_moves_both_states_to_closed() {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = Connection::new(Role::Server, Config::default());
    assert_eq!((client.state(), server.state()), (State::Open, State::Open));
    client.close(1000, "bye").unwrap();
    assert_eq!(client.state(), State::Closing);
    assert!(matches!(
        client.send_text("late"),
        Err(Error::AlreadyClosed)
    ));

    let got = shuttle(&mut client, &mut server, 5);
    assert!(matches!(&got[..], [Message::Close(Some(f))] if f.code.as_u16() == 1000));
    assert_eq!(server.state(), State::Closed);
    assert!(!server.is_done(), "the echo is still to be written");
    let got = shuttle(&mut server, &mut client, 5);
    assert!(matches!(&got[..], [Message::Close(Some(f))] if f.code.as_u16() == 1000));
    assert!(server.is_done() && client.is_done());
    // The end is reported once, then AlreadyClosed.
    assert!(matches!(
        server.poll(),
        Err(Error::ConnectionClosed(Some(_)))
    ));
    assert!(matches!(server.poll(), Err(Error::AlreadyClosed)));
    assert!(matches!(
        client.poll(),
        Err(Error::ConnectionClosed(Some(_)))
    ));
}

#[test]
fn a_protocol_violation_queues_the_close_with_its_code() {
    let mut server = Connection::new(Role::Server, Config::default());
    // Unmasked frame from a client: 1002.
    let bad = common::server_frame(true, 1, b"unmasked");
    server.read_buf()[..bad.len()].copy_from_slice(&bad);
    server.filled(bad.len(), Instant::now());
    assert!(matches!(server.poll(), Err(Error::Protocol(_))));
    assert_eq!(server.state(), State::Closed);
    let (frame, _) = parse_frame(server.output()).expect("a close frame is queued");
    assert_eq!(frame.close_code(), Some(1002));
    assert!(matches!(server.poll(), Err(Error::AlreadyClosed)));
}

#[test]
fn the_end_of_the_stream_without_a_close_is_abnormal() {
    let mut server = Connection::new(Role::Server, Config::default());
    let half = &client_frame(true, 1, b"cut short")[..5];
    server.read_buf()[..half.len()].copy_from_slice(half);
    server.filled(half.len(), Instant::now());
    assert_eq!(server.poll().unwrap(), None);
    server.filled(0, Instant::now());
    assert!(matches!(server.poll(), Err(Error::AbnormalClosure)));
    assert_eq!(server.state(), State::Closed);
}

#[test]
fn output_that_is_not_drained_is_bounded() {
    let config = Config::default().max_write_buffer_size(10_000);
    let mut server = Connection::new(Role::Server, config);
    let mut sent = 0;
    let error = loop {
        match server.send_binary(&[7; 1000]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100, "sends never failed");
    };
    assert!(matches!(
        error,
        Error::Capacity(CapacityError::WriteBufferFull)
    ));
    assert!(server.output().len() <= 10_000 + 1004);
    // Draining the output lets sends through again.
    let n = server.output().len();
    server.consume(n);
    server.send_binary(&[7; 1000]).unwrap();
}

#[test]
fn keepalive_runs_on_the_time_passed_in() {
    let keepalive = KeepAlive::new(Duration::from_secs(10), Duration::from_secs(5));
    let config = Config::default().keepalive(Some(keepalive));
    let mut server = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    let ping = client_frame(true, 9, b"");
    server.read_buf()[..ping.len()].copy_from_slice(&ping);
    server.filled(ping.len(), t0);
    assert_eq!(server.poll().unwrap(), Some(Message::Ping(vec![])));
    let n = server.output().len();
    server.consume(n); // the pong
    assert_eq!(server.next_deadline(), Some(t0 + Duration::from_secs(10)));
    server.on_timeout(t0 + Duration::from_secs(9)).unwrap();
    assert!(!server.wants_write(), "nothing is due before the interval");
    server.on_timeout(t0 + Duration::from_secs(10)).unwrap();
    let (frame, _) = parse_frame(server.output()).expect("a ping is queued");
    assert_eq!(frame.opcode, 9);
    let n = server.output().len();
    server.consume(n);
    assert_eq!(server.next_deadline(), Some(t0 + Duration::from_secs(15)));
    let error = server.on_timeout(t0 + Duration::from_secs(15)).unwrap_err();
    assert!(matches!(error, Error::KeepAliveTimeout));
    let (frame, _) = parse_frame(server.output()).expect("a close is queued");
    assert_eq!(frame.close_code(), Some(1011));
    assert_eq!(server.state(), State::Closed);
    assert_eq!(server.next_deadline(), None);
}

#[test]
fn a_connection_driven_by_hand_talks_to_a_blocking_server() {
    // The client side: a plain TcpStream, its handshake written by hand, and a Connection
    // for everything after it.
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        loop {
            match ws.read()? {
                msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg)?,
                Message::Close(_) => return Ok::<_, Error>(()),
                _ => {}
            }
        }
    });
    let addr = server
        .url("/")
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(common::upgrade_request("/").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));

    let mut conn = Connection::new(Role::Client, Config::default());
    let mut received = Vec::new();
    for message in messages().into_iter().filter(Message::is_data) {
        conn.send(message).unwrap();
    }
    conn.close(1000, "done").unwrap();
    loop {
        while conn.wants_write() {
            let n = tcp.write(conn.output()).unwrap();
            conn.consume(n);
        }
        match conn.poll() {
            Ok(Some(message)) => received.push(message),
            Ok(None) => {
                let n = tcp.read(conn.read_buf()).unwrap();
                conn.filled(n, Instant::now());
            }
            Err(Error::ConnectionClosed(frame)) => {
                assert_eq!(frame.map(|f| f.code.as_u16()), Some(1000));
                break;
            }
            Err(e) => panic!("client failed: {e}"),
        }
    }
    let mut expected: Vec<Message> = messages().into_iter().filter(Message::is_data).collect();
    expected.push(Message::Close(Some(stdws::CloseFrame::new(1000, ""))));
    assert_eq!(received, expected);
    server.join_one().unwrap();
}

/// Feeds `bytes` to a server handshake `chunk` bytes at a time (the rest of each read
/// "would block"), returning what the last `filled` said.
fn feed_handshake(
    hs: &mut stdws::proto::ServerHandshake,
    bytes: &[u8],
    chunk: usize,
) -> Result<bool, stdws::proto::Refusal> {
    let mut rest = bytes;
    let mut done = false;
    while !rest.is_empty() {
        let room = hs.read_buf();
        let n = rest.len().min(room.len()).min(chunk);
        room[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        done = hs.filled(n)?.is_some();
    }
    Ok(done)
}

#[test]
fn a_request_head_in_pieces_survives_would_block_and_keeps_the_frames_behind_it() {
    let mut wire = common::upgrade_request("/chat?room=1").into_bytes();
    let head_len = wire.len();
    wire.extend(client_frame(true, 1, b"right behind the head"));
    for chunk in [1, 2, 5, 64, usize::MAX] {
        let mut hs = stdws::proto::ServerHandshake::new(Config::default());
        // Everything but the last byte of the head: not complete yet.
        assert!(!feed_handshake(&mut hs, &wire[..head_len - 1], chunk).unwrap());
        assert!(hs.request().is_none());
        assert!(feed_handshake(&mut hs, &wire[head_len - 1..], chunk).unwrap());
        assert_eq!(hs.request().unwrap().path(), "/chat");
        assert!(hs.is_websocket());
        let mut conn = hs.accept().unwrap();
        let response = String::from_utf8_lossy(conn.output()).to_string();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.ends_with("\r\n\r\n"), "only the 101 is queued");
        let n = conn.output().len();
        conn.consume(n);
        assert_eq!(
            conn.poll().unwrap(),
            Some(Message::text("right behind the head")),
            "chunk {chunk}"
        );
    }
}

#[test]
fn bad_requests_are_refused_with_the_right_status_as_bytes() {
    let status = |refusal: &stdws::proto::Refusal| {
        String::from_utf8_lossy(&refusal.response)
            .split(' ')
            .nth(1)
            .map(str::to_owned)
    };
    // Over max_head_size: 431 as soon as the limit is crossed, whatever the chopping.
    let config = Config::default().max_head_size(200);
    let mut hs = stdws::proto::ServerHandshake::new(config);
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(1000));
    let refusal = feed_handshake(&mut hs, endless.as_bytes(), 7).unwrap_err();
    assert_eq!(status(&refusal).as_deref(), Some("431"));
    assert!(matches!(refusal.error, Error::Handshake(_)));
    // Malformed request line: 400.
    let mut hs = stdws::proto::ServerHandshake::new(Config::default());
    let refusal = feed_handshake(&mut hs, b"GET  / HTTP/1.1\r\n\r\n", 3).unwrap_err();
    assert_eq!(status(&refusal).as_deref(), Some("400"));
    // A plain HTTP request (no upgrade): 426 from accept, with the request readable.
    let mut hs = stdws::proto::ServerHandshake::new(Config::default());
    let get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(feed_handshake(&mut hs, get, 4).unwrap());
    assert!(!hs.is_websocket());
    let refusal = hs.accept().unwrap_err();
    assert_eq!(status(&refusal).as_deref(), Some("426"));
    // The client leaves mid-request: nothing to answer.
    let mut hs = stdws::proto::ServerHandshake::new(Config::default());
    assert!(!feed_handshake(&mut hs, b"GET / HT", 100).unwrap());
    let refusal = hs.filled(0).unwrap_err();
    assert!(refusal.response.is_empty());
    // The application's own refusal.
    let mut hs = stdws::proto::ServerHandshake::new(Config::default());
    feed_handshake(&mut hs, common::upgrade_request("/").as_bytes(), 9).unwrap();
    let refusal = hs
        .accept_with(|_, _| Err(stdws::Rejection::new(503, "full")))
        .unwrap_err();
    assert_eq!(status(&refusal).as_deref(), Some("503"));
    assert!(refusal.response.ends_with(b"full"));
}

#[test]
fn a_blocking_client_connects_to_a_server_handshake_driven_by_hand() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/hand", listener.local_addr().unwrap());
    let client = std::thread::spawn(move || -> stdws::Result<Message> {
        let (mut ws, response) = stdws::ClientBuilder::new(url).subprotocol("v1").connect()?;
        assert_eq!(response.subprotocol(), Some("v1"));
        ws.send_text("ping me back")?;
        let reply = ws.read()?;
        ws.close_and_wait(1000, "", Duration::from_secs(5))?;
        Ok(reply)
    });
    let (mut tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hs = stdws::proto::ServerHandshake::new(Config::default());
    while hs.request().is_none() {
        let n = tcp.read(hs.read_buf()).unwrap();
        hs.filled(n).map_err(|r| r.error).unwrap();
    }
    let mut conn = hs
        .accept_with(|req, resp| {
            assert_eq!(req.path(), "/hand");
            resp.set_subprotocol("v1");
            Ok(())
        })
        .unwrap();
    loop {
        while conn.wants_write() {
            let n = tcp.write(conn.output()).unwrap();
            conn.consume(n);
        }
        if conn.is_done() {
            break;
        }
        match conn.poll() {
            Ok(Some(Message::Text(text))) => conn.send_text(&text.to_uppercase()).unwrap(),
            Ok(Some(_)) => {}
            Ok(None) => {
                let n = tcp.read(conn.read_buf()).unwrap();
                conn.filled(n, Instant::now());
            }
            Err(e) => panic!("server failed: {e}"),
        }
    }
    drop(tcp);
    assert_eq!(
        client.join().unwrap().unwrap(),
        Message::text("PING ME BACK")
    );
}

#[test]
fn a_client_handshake_driven_a_byte_at_a_time_reaches_a_blocking_server() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept_with(stream, Config::default(), |_, resp| {
            resp.set_subprotocol("v2");
            Ok(())
        })?;
        ws.send_text("first, right behind the 101")?;
        loop {
            match ws.read()? {
                msg @ Message::Text(_) => ws.send(msg)?,
                Message::Close(_) => return Ok::<_, Error>(()),
                _ => {}
            }
        }
    });
    let mut hs = stdws::ClientBuilder::new(server.url("/by-hand"))
        .subprotocol("v1")
        .subprotocol("v2")
        .handshake_machine()
        .unwrap();
    let addr = server.url("").trim_start_matches("ws://").to_string();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !hs.output().is_empty() {
        let n = tcp.write(hs.output()).unwrap();
        hs.consume(n);
    }
    while !hs.is_complete() {
        let room = hs.read_buf();
        let n = tcp.read(&mut room[..1]).unwrap();
        hs.filled(n).unwrap();
    }
    let (mut conn, response) = hs.finish().unwrap();
    assert_eq!(response.subprotocol(), Some("v2"));
    assert_eq!(conn.subprotocol(), Some("v2"));
    conn.send_text("echo").unwrap();
    conn.close(1000, "").unwrap();
    let mut got = Vec::new();
    loop {
        while conn.wants_write() {
            let n = tcp.write(conn.output()).unwrap();
            conn.consume(n);
        }
        match conn.poll() {
            Ok(Some(message)) => got.push(message),
            Ok(None) => {
                let n = tcp.read(conn.read_buf()).unwrap();
                conn.filled(n, Instant::now());
            }
            Err(Error::ConnectionClosed(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got[0], Message::text("first, right behind the 101"));
    assert_eq!(got[1], Message::text("echo"));
    assert!(matches!(got[2], Message::Close(_)));
    server.join_one().unwrap();
}

#[test]
fn a_ping_flood_without_output_drained_is_answered_by_one_pong() {
    // RFC 6455 §5.5.3: an endpoint that has not sent the pongs of earlier pings may answer
    // only the most recent one. A peer that pings without reading must not make the
    // connection queue a pong per ping.
    let max = 1000;
    let config = Config::default().max_write_buffer_size(max);
    let mut server = Connection::new(Role::Server, config);
    let mut pings = 0u32;
    for _ in 0..2000 {
        let mut bytes = Vec::new();
        for _ in 0..50 {
            pings += 1;
            bytes.extend_from_slice(&client_frame(true, 0x9, &pings.to_be_bytes()));
        }
        server.read_buf()[..bytes.len()].copy_from_slice(&bytes);
        server.filled(bytes.len(), Instant::now());
        while let Some(m) = server.poll().unwrap() {
            assert!(matches!(m, Message::Ping(_)));
        }
        // At most one pong (6 bytes here) past the limit.
        assert!(
            server.output().len() <= max + 6,
            "{} bytes queued after {pings} pings",
            server.output().len()
        );
    }
    // Draining the output answers the latest ping, once.
    let mut written = Vec::new();
    while server.wants_write() {
        let out = server.output().to_vec();
        written.extend_from_slice(&out);
        server.consume(out.len());
    }
    let (frames, rest) = common::parse_frames(&written);
    assert_eq!(rest, 0);
    assert!(frames.iter().all(|f| f.opcode == 0xA && f.fin));
    let last = frames.last().unwrap();
    assert_eq!(last.payload, pings.to_be_bytes());
    // The pongs before the limit answered the first pings, in order.
    let answered = frames.len() - 1;
    for (i, f) in frames[..answered].iter().enumerate() {
        assert_eq!(f.payload, (i as u32 + 1).to_be_bytes());
    }
    assert!(answered <= max / 6 + 1);
    // Once drained, every ping is answered again.
    server.read_buf()[..6 + 4].copy_from_slice(&client_frame(true, 0x9, b"next"));
    server.filled(10, Instant::now());
    assert_eq!(
        server.poll().unwrap(),
        Some(Message::Ping(b"next".to_vec()))
    );
    assert_eq!(server.output(), &[0x8A, 4, b'n', b'e', b'x', b't']);
}

// Found by the client_handshake fuzz target (the same arithmetic as `ClientHandshake`'s):
// a count larger than the output, after part of it was written, overflowed.
#[test]
fn consume_takes_a_count_larger_than_the_output() {
    let mut server = Connection::new(Role::Server, Config::default());
    server.send_text("hello").unwrap();
    server.consume(1);
    assert_eq!(server.output().len(), 6);
    server.consume(usize::MAX);
    assert!(server.output().is_empty() && !server.wants_write());
    server.send_text("again").unwrap();
    assert_eq!(server.output(), b"\x81\x05again");
}

#[test]
fn buffered_amount_counts_every_piece_of_the_output() {
    let mut server = Connection::new(Role::Server, Config::default());
    assert_eq!(server.buffered_amount(), 0);
    server.send_text("hi").unwrap();
    // A large binary payload is queued as it is: the output comes in pieces, and the
    // first piece alone says nothing of what waits behind it.
    server.send(Message::Binary(vec![7; 100_000])).unwrap();
    server.send_text("end").unwrap();
    let total = (2 + 2) + (10 + 100_000) + (2 + 3);
    assert_eq!(server.buffered_amount(), total);
    assert!(server.output().len() < 100);
    let mut written = 0;
    while server.wants_write() {
        let n = server.output().len().min(30_000);
        written += n;
        server.consume(n);
        assert_eq!(server.buffered_amount(), total - written);
    }
    assert_eq!(written, total);
}

/// A server connection from a handshake driven by hand keeps the subprotocol the callback
/// chose; one accepted without choosing has none.
#[test]
fn a_server_connection_keeps_the_chosen_subprotocol() {
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Protocol: v1, v2\r\n\r\n";
    for choose in [true, false] {
        let mut hs = stdws::proto::ServerHandshake::new(Config::default());
        assert!(feed_handshake(&mut hs, request.as_bytes(), 4096).unwrap());
        let conn = hs
            .accept_with(|_, resp| {
                if choose {
                    resp.set_subprotocol("v2");
                }
                Ok(())
            })
            .map_err(|refusal| refusal.error)
            .unwrap();
        assert_eq!(conn.subprotocol(), choose.then_some("v2"));
        assert_eq!(
            Connection::new(Role::Server, Config::default()).subprotocol(),
            None
        );
    }
}

/// A handshake read over a non-blocking socket by `ServerHandshake`, then handed to the
/// blocking driver with `WebSocket::from_connection`: the part of the 101 that the server
/// did not write itself goes out first, and a frame that came in the same packet as the
/// request is the first message read.
#[test]
fn a_handshake_over_bytes_continues_under_the_blocking_driver() {
    use std::net::TcpListener;
    use stdws::proto::ServerHandshake;
    use stdws::WebSocket;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = common::RawConn::connect(listener.local_addr().unwrap());
    let mut first = common::upgrade_request("/x").into_bytes();
    first.extend(client_frame(true, 0x1, b"behind the request"));
    client.send(&first);

    let stream = common::accept_within(&listener);
    stream.set_nonblocking(true).unwrap();
    let mut handshake = ServerHandshake::new(Config::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match (&stream).read(handshake.read_buf()) {
            Ok(n) => {
                if handshake.filled(n).expect("a valid request").is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no request");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut conn = handshake.accept().expect("accepted");
    // The server writes only the first 10 bytes of its 101 itself.
    (&stream).write_all(&conn.output()[..10]).unwrap();
    conn.consume(10);
    stream.set_nonblocking(false).unwrap();
    let mut ws = WebSocket::from_connection(stream, conn);
    assert_eq!(ws.read().unwrap(), Message::text("behind the request"));
    ws.send_text("reply").unwrap();

    let head = client.read_head();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(
        common::header_of(&head, "Sec-WebSocket-Accept").as_deref(),
        Some(common::RFC_ACCEPT)
    );
    let frame = client.read_frame();
    assert_eq!((frame.opcode, &frame.payload[..]), (0x1, &b"reply"[..]));
}
