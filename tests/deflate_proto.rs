//! permessage-deflate through the sans-I/O `proto` API: a `ServerHandshake` that negotiated
//! the extension with stdws's own `ClientHandshake`, fed hand-made compressed frames in
//! pieces of different sizes. Needs `--features deflate`.
#![cfg(feature = "deflate")]

use std::time::Instant;

use stdws::proto::{Connection, ServerHandshake};
use stdws::{ClientBuilder, Config, DeflateConfig, Error};

/// A server connection that agreed permessage-deflate with stdws's client, under `config`.
fn server(config: Config) -> Connection {
    let client_config = Config::default().deflate(Some(DeflateConfig::default()));
    let client = ClientBuilder::new("ws://example.com/")
        .config(client_config)
        .handshake_machine()
        .unwrap();
    let request = client.output().to_vec();
    let mut handshake = ServerHandshake::new(config.deflate(Some(DeflateConfig::default())));
    handshake.read_buf()[..request.len()].copy_from_slice(&request);
    assert!(handshake.filled(request.len()).unwrap().is_some());
    let mut conn = handshake.accept().unwrap();
    let head = String::from_utf8(conn.output().to_vec()).unwrap();
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate"),
        "{head}"
    );
    conn.consume(head.len());
    conn
}

/// A final, masked (all-zero key) text frame with RSV1 set: a compressed message.
fn compressed_text_frame(deflated: &[u8]) -> Vec<u8> {
    frame(0x80 | 0x40 | 0x1, deflated)
}

/// A masked (all-zero key) frame with the first header byte `b0` and a 16-bit length.
fn frame(b0: u8, deflated: &[u8]) -> Vec<u8> {
    let mut frame = vec![b0, 0x80 | 126];
    frame.extend_from_slice(&(deflated.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(deflated);
    frame
}

/// DEFLATE data of one stored (uncompressed) block, not final (RFC 1951 §3.2.4).
fn stored_block(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut block = vec![0x00];
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&(!len).to_le_bytes());
    block.extend_from_slice(data);
    block
}

/// Feeds `bytes` in pieces of at most `piece` bytes and returns the first error of `poll`.
fn fail(mut conn: Connection, bytes: &[u8], piece: usize) -> (Error, Vec<u8>) {
    let now = Instant::now();
    for chunk in bytes.chunks(piece) {
        let room = conn.read_buf();
        assert!(room.len() >= chunk.len());
        room[..chunk.len()].copy_from_slice(chunk);
        conn.filled(chunk.len(), now);
        match conn.poll() {
            Ok(Some(message)) => panic!("read {message:?}"),
            Ok(None) => {}
            Err(e) => return (e, conn.output().to_vec()),
        }
    }
    panic!("the connection did not fail")
}

/// The code of the close frame that is all of `output` (a server's, unmasked).
fn close_code(output: &[u8]) -> u16 {
    assert_eq!(output[0], 0x88, "a close frame: {output:02x?}");
    assert_eq!(
        output.len(),
        2 + usize::from(output[1]),
        "only the close frame"
    );
    u16::from_be_bytes([output[2], output[3]])
}

#[test]
fn invalid_text_before_the_limit_is_1007_however_the_payload_is_chopped() {
    // 791 bytes of text (16 compressed) over a 700-byte limit, with an invalid byte at
    // offset 690: within the limit, so the first violation is the invalid text. One byte
    // at a time it is found before the limit is reached; in one piece it must be too (it
    // was reported as too large, 1009, when the payload came in one piece).
    let mut text = vec![b'a'; 690];
    text.push(0xff);
    text.extend_from_slice(&[b'a'; 100]);
    let deflated = miniz_oxide::deflate::compress_to_vec(&text, 6);
    assert!(deflated.len() < 100);
    let frame = compressed_text_frame(&deflated);
    let config = Config::default()
        .max_message_size(Some(700))
        .read_buffer_size(4096);
    for piece in [frame.len(), 64, 1] {
        let (error, output) = fail(server(config.clone()), &frame, piece);
        assert!(
            matches!(error, Error::Utf8),
            "pieces of {piece} bytes: {error:?}"
        );
        assert_eq!(close_code(&output), 1007);
    }
}

#[test]
fn text_over_the_limit_with_valid_bytes_within_it_is_1009() {
    // The same message with its invalid byte past the limit: too large, whatever the pieces.
    let mut text = vec![b'a'; 750];
    text.push(0xff);
    let frame = compressed_text_frame(&miniz_oxide::deflate::compress_to_vec(&text, 6));
    let config = Config::default().max_message_size(Some(700));
    for piece in [frame.len(), 64, 1] {
        let (error, output) = fail(server(config.clone()), &frame, piece);
        assert!(
            matches!(error, Error::Capacity(_)),
            "pieces of {piece} bytes: {error:?}"
        );
        assert_eq!(close_code(&output), 1009);
    }
}

/// Feeds `bytes` in pieces of at most `piece` bytes and returns the messages read.
fn read_all(mut conn: Connection, bytes: &[u8], piece: usize) -> Vec<stdws::Message> {
    let now = Instant::now();
    let mut messages = Vec::new();
    for chunk in bytes.chunks(piece) {
        let room = conn.read_buf();
        room[..chunk.len()].copy_from_slice(chunk);
        conn.filled(chunk.len(), now);
        while let Some(message) = conn.poll().unwrap_or_else(|e| panic!("{e:?}")) {
            messages.push(message);
        }
    }
    messages
}

#[test]
fn a_compressed_message_within_the_limit_is_read_whatever_its_compressed_size() {
    // 698 bytes under a 700-byte limit, sent as stored blocks (5 bytes of overhead each):
    // one frame of 703 compressed bytes, then two frames whose inflated part plus the next
    // compressed frame is over 700 (600 inflated + 103). The limit is the message's, so
    // both are read (both were refused with 1009, counting compressed bytes as message).
    let text = "a".repeat(698);
    let config = Config::default()
        .max_message_size(Some(700))
        .read_buffer_size(4096);
    let one = compressed_text_frame(&stored_block(text.as_bytes()));
    let two = [
        frame(0x40 | 0x1, &stored_block(&text.as_bytes()[..600])),
        frame(0x80, &stored_block(&text.as_bytes()[600..])),
    ]
    .concat();
    for bytes in [one, two] {
        for piece in [bytes.len(), 1] {
            let messages = read_all(server(config.clone()), &bytes, piece);
            assert_eq!(messages, [stdws::Message::Text(text.clone())]);
        }
    }
    // One byte more is too large, whatever its compressed size.
    let over = "a".repeat(701);
    let bytes = compressed_text_frame(&miniz_oxide::deflate::compress_to_vec(over.as_bytes(), 6));
    let (error, output) = fail(server(config), &bytes, bytes.len());
    assert!(matches!(error, Error::Capacity(_)), "{error:?}");
    assert_eq!(close_code(&output), 1009);
}
