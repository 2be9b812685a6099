//! Data and control messages between `stdws::connect` and an `stdws::accept` echo server
//! over 127.0.0.1.

mod common;

use std::time::Duration;

use common::{connect, echo, serve_one, RawConn};
use stdws::{ClientBuilder, Config, Error, Message};

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn text_payload(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

fn close_client(ws: &mut stdws::WebSocket<std::net::TcpStream>) {
    let frame = ws
        .close_and_wait(1000, "done", Duration::from_secs(5))
        .expect("closing handshake");
    assert_eq!(frame.map(|f| f.code.as_u16()), Some(1000));
}

#[test]
fn binary_round_trips_at_every_length_boundary() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    for len in SIZES {
        let payload = binary_payload(len);
        ws.send_binary(&payload).unwrap();
        match ws.read().unwrap() {
            Message::Binary(echoed) => {
                assert_eq!(echoed.len(), len);
                assert!(echoed == payload, "binary echo of {len} bytes differs");
            }
            other => panic!("len {len}: expected binary, got {:?}", other.len()),
        }
    }
    close_client(&mut ws);
    server.join_one().expect("server");
}

#[test]
fn text_round_trips_at_every_length_boundary() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    for len in SIZES {
        let text = text_payload(len);
        ws.send_text(&text).unwrap();
        match ws.read().unwrap() {
            Message::Text(echoed) => {
                assert_eq!(echoed.len(), len);
                assert!(echoed == text, "text echo of {len} bytes differs");
            }
            other => panic!("len {len}: expected text, got {:?}", other.len()),
        }
    }
    close_client(&mut ws);
    server.join_one().expect("server");
}

#[test]
fn send_of_message_values_round_trips() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    for msg in [
        Message::text("via send"),
        Message::binary(vec![0u8, 255, 1]),
        Message::from("from &str"),
        Message::from(&b"from slice"[..]),
    ] {
        ws.send(msg.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), msg);
    }
    close_client(&mut ws);
    server.join_one().expect("server");
}

#[test]
fn unicode_text_round_trips() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    let short = "héllo wörld — 日本語 🦀 \u{10FFFF} \u{0}";
    ws.send_text(short).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(short));
    // Large enough that multi-byte characters straddle the receiver's 4 KiB reads.
    let long: String = "ab€🦀ß".repeat(50_000);
    ws.send_text(&long).unwrap();
    assert_eq!(ws.read().unwrap().as_text(), Some(long.as_str()));
    close_client(&mut ws);
    server.join_one().expect("server");
}

#[test]
fn fragmented_client_message_is_reassembled() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        let msg = ws.read()?;
        ws.send(msg.clone())?;
        common::echo_ws(&mut ws)?;
        Ok::<_, Error>(msg)
    });
    let (mut ws, _) = ClientBuilder::new(server.url("/"))
        .config(Config::default().fragment_size(Some(1000)))
        .connect()
        .unwrap();
    common::set_timeouts(ws.get_ref());
    let text: String = "0123456789€".repeat(800); // 10,400 bytes, € split across frames
    ws.send_text(&text).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text(text.clone()));
    close_client(&mut ws);
    assert_eq!(server.join_one().unwrap(), Message::Text(text));
}

/// Checks on the wire that `fragment_size` really splits the message (the echo test above
/// would pass without fragmentation).
#[test]
fn fragment_size_splits_messages_into_frames_on_the_wire() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("", b"");
        let mut frames = Vec::new();
        loop {
            let frame = raw.read_frame();
            assert!(frame.mask.is_some(), "client frames must be masked");
            let fin = frame.fin;
            frames.push(frame);
            if fin {
                return frames;
            }
        }
    });
    let (mut ws, _) = ClientBuilder::new(server.url("/"))
        .config(Config::default().fragment_size(Some(1000)))
        .connect()
        .unwrap();
    let data = binary_payload(10_000);
    ws.send_binary(&data).unwrap();
    let frames = server.join_one();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].opcode, 2);
    assert!(frames[1..].iter().all(|f| f.opcode == 0));
    assert!(frames[..9].iter().all(|f| !f.fin));
    assert!(frames.iter().all(|f| f.payload.len() == 1000));
    let joined: Vec<u8> = frames.into_iter().flat_map(|f| f.payload).collect();
    assert_eq!(joined, data);
}

#[test]
fn server_fragment_size_splits_its_messages() {
    let server = serve_one(|stream| {
        let config = Config::default().fragment_size(Some(100));
        let mut ws = stdws::accept_with(stream, config, |_, _| Ok(())).unwrap();
        ws.send_text(&"s".repeat(1000)).unwrap();
    });
    let mut raw = RawConn::handshake(server.addr);
    let mut frames = vec![raw.read_frame()];
    while !frames.last().unwrap().fin {
        frames.push(raw.read_frame());
    }
    server.join_one();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].opcode, 1);
    assert!(frames[1..].iter().all(|f| f.opcode == 0));
    assert!(frames
        .iter()
        .all(|f| f.mask.is_none() && f.payload == [b's'; 100]));
}

#[test]
fn client_ping_gets_pong_with_same_payload() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    for payload in [&b""[..], b"hello", &[0xAB; 125]] {
        ws.ping(payload).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Pong(payload.to_vec()));
    }
    close_client(&mut ws);
    server.join_one().expect("server");
}

#[test]
fn ping_payload_over_125_bytes_is_refused() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    assert!(matches!(ws.ping(&[0; 126]), Err(Error::InvalidInput(_))));
    assert!(matches!(
        ws.send(Message::Pong(vec![0; 126])),
        Err(Error::InvalidInput(_))
    ));
    // Nothing was sent: the connection still works and the next message is ours.
    ws.send_text("after").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("after"));
    close_client(&mut ws);
    server.join_one().expect("server");
}

#[test]
fn server_ping_gets_pong_from_client() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        ws.ping(b"srv")?;
        let pong = match ws.read()? {
            Message::Pong(p) => p,
            other => panic!("server expected a pong, got {other:?}"),
        };
        ws.close_and_wait(1000, "", Duration::from_secs(5))?;
        Ok::<_, Error>(pong)
    });
    let mut ws = connect(&server.url("/"));
    // The client returns the ping (its pong is queued and goes out before the next wait).
    assert_eq!(ws.read().unwrap(), Message::Ping(b"srv".to_vec()));
    match ws.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code.as_u16(), 1000),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    assert_eq!(server.join_one().unwrap(), b"srv");
}

#[test]
fn pipelined_writes_are_echoed_in_order() {
    let server = serve_one(echo);
    let mut ws = connect(&server.url("/"));
    let messages: Vec<Message> = (0..500)
        .map(|i| {
            if i % 3 == 0 {
                Message::Binary(binary_payload(i))
            } else {
                Message::Text(format!("message {i} {}", text_payload(i % 200)))
            }
        })
        .collect();
    for msg in &messages {
        ws.write(msg.clone()).unwrap();
    }
    ws.flush().unwrap();
    for (i, expected) in messages.iter().enumerate() {
        assert_eq!(&ws.read().unwrap(), expected, "message {i}");
    }
    close_client(&mut ws);
    server.join_one().expect("server");
}

/// A read buffer configured above the 64 KiB a burst grows it to (it used to panic on the
/// first burst, in `clamp`): a burst of small messages over a real socket all arrive.
#[test]
fn a_read_buffer_larger_than_the_burst_size_reads_a_burst() {
    let server = common::serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        for n in 0..5000u32 {
            ws.write(stdws::Message::Binary(n.to_be_bytes().repeat(25)))?;
        }
        ws.flush()?;
        // Wait for the client's close.
        while !matches!(ws.read()?, stdws::Message::Close(_)) {}
        Ok::<_, stdws::Error>(())
    });
    let config = stdws::Config::default().read_buffer_size(256 << 10);
    let (mut ws, _) = stdws::ClientBuilder::new(server.url("/"))
        .config(config)
        .connect()
        .unwrap();
    common::set_timeouts(ws.get_ref());
    for n in 0..5000u32 {
        assert_eq!(
            ws.read().unwrap(),
            stdws::Message::Binary(n.to_be_bytes().repeat(25))
        );
    }
    ws.close(1000, "").unwrap();
    while !matches!(ws.read(), Ok(stdws::Message::Close(_)) | Err(_)) {}
    server.join_one().unwrap();
}
