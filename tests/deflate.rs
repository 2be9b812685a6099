//! permessage-deflate (RFC 7692) on the wire: stdws against itself and against raw peers
//! that send exact frames, over 127.0.0.1. Needs `--features deflate`.
#![cfg(feature = "deflate")]

mod common;
#[path = "common/heap.rs"]
mod heap;

use std::io::Read;
use std::net::TcpStream;

use common::*;
use stdws::{CapacityError, Config, DeflateConfig, Error, Message, Streamed, WebSocket};

fn deflate_config() -> Config {
    Config::default().deflate(Some(DeflateConfig::default()))
}

fn connect_deflate(url: &str, config: Config) -> WebSocket<TcpStream> {
    let (ws, response) = stdws::ClientBuilder::new(url)
        .config(config)
        .connect()
        .expect("client handshake");
    assert!(
        response
            .extensions()
            .any(|e| e.starts_with("permessage-deflate")),
        "deflate was negotiated"
    );
    set_timeouts(ws.get_ref());
    ws
}

fn json(i: usize, len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"ts\":{},\"tags\":[\"a\",\"b\"]}},",
            i % 17,
            1_700_000_000 + i
        ));
    }
    s
}

#[test]
fn round_trips_messages_of_every_size_with_context_takeover() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept_with(stream, deflate_config(), |_, _| Ok(())).unwrap();
        echo_ws(&mut ws)
    });
    let mut ws = connect_deflate(&server.url("/"), deflate_config());
    for (i, len) in [0, 1, 63, 64, 200, 5000, 70_000, 300_000]
        .into_iter()
        .enumerate()
    {
        let text = json(i, len);
        ws.send_text(&text).unwrap();
        assert_eq!(read_data(&mut ws).unwrap(), Message::Text(text.clone()));
        let binary: Vec<u8> = text.bytes().rev().collect();
        ws.send_binary(&binary).unwrap();
        assert_eq!(read_data(&mut ws).unwrap(), Message::Binary(binary));
    }
    ws.close(1000, "").unwrap();
    assert!(matches!(read_data(&mut ws), Ok(Message::Close(_))));
    server.join_one().unwrap();
}

/// The agreed parameters are readable on both ends, whole and split, in the RFC's terms
/// (the same values on both ends); without compression they are `None`.
#[test]
fn the_agreed_parameters_are_readable_on_both_ends_and_halves() {
    let server_config = Config::default().deflate(Some(
        DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_max_window_bits(Some(10)),
    ));
    let server = serve(2, move |stream| {
        let ws = stdws::accept_with(stream, server_config.clone(), |_, _| Ok(())).unwrap();
        let params = ws.deflate();
        let (mut reader, writer) = ws.split().unwrap();
        assert_eq!(reader.deflate(), params);
        assert_eq!(writer.deflate(), params);
        while reader.read().is_ok() {}
        params
    });
    let mut want = stdws::DeflateParams::default();
    want.server_no_context_takeover = true;
    want.client_max_window_bits = 10;
    let ws = connect_deflate(&server.url("/"), deflate_config());
    assert_eq!(ws.deflate(), Some(want));
    let (reader, writer) = ws.split().unwrap();
    assert_eq!(reader.deflate(), Some(want));
    assert_eq!(writer.deflate(), Some(want));
    writer.close(1000, "").unwrap();
    drop((reader, writer));
    // A client that does not offer compression.
    let (ws, _) = stdws::connect(&server.url("/")).unwrap();
    assert_eq!(ws.deflate(), None);
    drop(ws);
    assert_eq!(server.join(), [Some(want), None]);
}

#[test]
fn decodes_the_rfc_7692_examples_with_context_takeover() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n", &[]);
        // RFC 7692 §7.2.3.2: "Hello" twice, the second time using the first as context.
        let mut first = server_frame(true, 1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        first[0] |= 0x40;
        let mut second = server_frame(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]);
        second[0] |= 0x40;
        raw.send(&[first, second].concat());
        raw.read_frame()
    });
    let mut ws = connect_deflate(&server.url("/"), deflate_config());
    assert_eq!(ws.read().unwrap(), Message::text("Hello"));
    assert_eq!(ws.read().unwrap(), Message::text("Hello"));
    ws.close(1000, "").unwrap();
    assert_eq!(server.join_one().close_code(), Some(1000));

    // §7.2.3.1: one compressed message split over two frames, RSV1 on the first only.
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n", &[]);
        let mut part1 = server_frame(false, 1, &[0xf2, 0x48, 0xcd]);
        part1[0] |= 0x40;
        let part2 = server_frame(true, 0, &[0xc9, 0xc9, 0x07, 0x00]);
        raw.send(&[part1, part2].concat());
        raw.read_frame()
    });
    let mut ws = connect_deflate(&server.url("/"), deflate_config());
    assert_eq!(ws.read().unwrap(), Message::text("Hello"));
    ws.close(1000, "").unwrap();
    assert_eq!(server.join_one().close_code(), Some(1000));
}

#[test]
fn rsv1_only_on_the_first_frame_and_small_messages_go_uncompressed() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.accept_upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n", &[]);
        let mut frames = vec![raw.read_frame(), raw.read_frame()];
        while !frames.last().unwrap().fin {
            frames.push(raw.read_frame());
        }
        frames
    });
    let config = deflate_config().fragment_size(Some(100));
    let mut ws = connect_deflate(&server.url("/"), config);
    ws.send_text("hi").unwrap();
    ws.send_text(&json(0, 3000)).unwrap();
    let frames = server.join_one();
    assert_eq!((frames[0].rsv, &frames[0].payload[..]), (0, &b"hi"[..]));
    assert_eq!(
        (frames[1].opcode, frames[1].rsv),
        (1, 0b100),
        "compressed, RSV1"
    );
    for f in &frames[2..] {
        assert_eq!((f.opcode, f.rsv), (0, 0), "continuations never carry RSV1");
    }
    let wire: usize = frames[1..].iter().map(|f| f.payload.len()).sum();
    assert!(wire < 1000, "3000 bytes of JSON compressed to {wire}");
}

#[test]
fn misplaced_rsv1_is_a_protocol_error() {
    for (what, frames) in [
        ("continuation", {
            let mut a = server_frame(false, 2, b"ab");
            let mut b = server_frame(true, 0, b"cd");
            a[0] &= !0x40;
            b[0] |= 0x40;
            [a, b].concat()
        }),
        ("ping", {
            let mut p = server_frame(true, 9, b"x");
            p[0] |= 0x40;
            p
        }),
        ("rsv2", {
            let mut p = server_frame(true, 2, b"x");
            p[0] |= 0x20;
            p
        }),
    ] {
        let server = serve_one(move |stream| {
            let mut raw = RawConn::new(stream);
            raw.accept_upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n", &[]);
            raw.send(&frames);
            raw.read_frame()
        });
        let mut ws = connect_deflate(&server.url("/"), deflate_config());
        assert!(
            matches!(read_data(&mut ws), Err(Error::Protocol(_))),
            "{what}"
        );
        assert_eq!(server.join_one().close_code(), Some(1002), "{what}");
    }
}

#[test]
fn a_decompression_bomb_is_refused_with_1009_at_the_inflated_limit() {
    // 64 MiB of zeros compress to about 64 KiB: the client allows 1 MiB.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let server = serve_one(move |stream| {
        let mut ws = stdws::accept_with(stream, deflate_config(), |_, _| Ok(())).unwrap();
        ws.send_binary(&vec![0u8; 64 << 20]).unwrap();
        sent_tx.send(()).unwrap();
        read_data(&mut ws)
    });
    let limited = deflate_config().max_message_size(Some(1 << 20));
    let mut ws = connect_deflate(&server.url("/"), limited);
    // Measure only the client's side: wait until the server's 64 MiB are sent and freed.
    sent_rx.recv().unwrap();
    let watch = heap::HeapWatch::start();
    match ws.read() {
        Err(Error::Capacity(CapacityError::MessageTooLarge { max, .. })) => {
            assert_eq!(max, 1 << 20)
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    watch.assert_peak_below(4 << 20, "inflating a bomb against a 1 MiB limit");
    match server.join_one() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1009),
        other => panic!("server expected our 1009, got {other:?}"),
    }
}

#[test]
fn compressed_messages_stream_in_bounded_pieces() {
    let text = json(7, 3 << 20);
    let sent = text.clone();
    let server = serve_one(move |stream| {
        let mut ws = stdws::accept_with(stream, deflate_config(), |_, _| Ok(())).unwrap();
        ws.send_text(&sent).unwrap();
        ws.send_text("after").unwrap();
        read_data(&mut ws)
    });
    let mut ws = connect_deflate(&server.url("/"), deflate_config());
    let Streamed::Message(mut reader) = ws.read_stream().unwrap() else {
        panic!("expected a message");
    };
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert!(got == text, "streamed text differs");
    // A second compressed message (context taken over) after a streamed one.
    assert_eq!(ws.read().unwrap(), Message::text("after"));
    ws.close(1000, "").unwrap();
    assert!(matches!(server.join_one(), Ok(Message::Close(_))));
}

#[test]
fn a_dropped_compressed_reader_keeps_the_context_in_step() {
    let server = serve_one(|stream| {
        let mut ws = stdws::accept_with(stream, deflate_config(), |_, _| Ok(())).unwrap();
        ws.send_text(&json(1, 100_000)).unwrap();
        ws.send_text(&json(1, 5000)).unwrap();
        read_data(&mut ws)
    });
    let mut ws = connect_deflate(&server.url("/"), deflate_config());
    let Streamed::Message(mut reader) = ws.read_stream().unwrap() else {
        panic!("expected a message");
    };
    let mut head = [0u8; 10];
    reader.read_exact(&mut head).unwrap();
    // The rest of the first message is inflated and dropped; the second one, compressed
    // against it, must still decode.
    assert_eq!(ws.read().unwrap(), Message::Text(json(1, 5000)));
    ws.close(1000, "").unwrap();
    assert!(matches!(server.join_one(), Ok(Message::Close(_))));
}
