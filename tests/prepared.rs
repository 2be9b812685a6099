//! Prepared messages: framed once, queued by reference on every server connection, received
//! intact by every client.

mod common;

use std::time::Instant;

use common::serve;
use stdws::proto::Connection;
use stdws::{Config, Message, PreparedMessage, Role};

fn sizes() -> Vec<PreparedMessage> {
    let mut all = vec![PreparedMessage::text(""), PreparedMessage::text("héllo")];
    for len in [125usize, 126, 65_535, 65_536, 1 << 20] {
        all.push(PreparedMessage::binary(
            &(0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
        ));
    }
    all
}

#[test]
fn every_client_receives_every_prepared_message_intact_and_in_order() {
    const CLIENTS: usize = 8;
    let server = serve(CLIENTS, |stream| {
        let mut ws = stdws::accept(stream)?;
        for message in sizes() {
            ws.send_prepared(&message)?;
            ws.send_text("marker")?; // ordinary frames stay in order around them
        }
        while !matches!(ws.read()?, Message::Close(_)) {}
        Ok::<_, stdws::Error>(())
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = server.url("/");
            std::thread::spawn(move || {
                let mut ws = common::connect(&url);
                for expected in sizes() {
                    assert_eq!(ws.read().unwrap(), expected.to_message());
                    assert_eq!(ws.read().unwrap(), Message::text("marker"));
                }
                ws.close(1000, "").unwrap();
                while !matches!(ws.read().unwrap(), Message::Close(_)) {}
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    for result in server.join() {
        result.unwrap();
    }
}

#[test]
fn server_connections_queue_the_same_bytes_without_a_copy() {
    let message = PreparedMessage::binary(&[1u8; 100_000]);
    let mut a = Connection::new(Role::Server, Config::default());
    let mut b = Connection::new(Role::Server, Config::default());
    a.send_text("before").unwrap();
    a.send_prepared(&message).unwrap();
    b.send_prepared(&message).unwrap();
    let n = a.output().len();
    a.consume(n); // the text frame
    assert!(
        std::ptr::eq(a.output().as_ptr(), b.output().as_ptr()),
        "both connections write the one prepared frame"
    );
    // A client frames and masks it itself; the server reads the same message.
    let mut client = Connection::new(Role::Client, Config::default());
    client.send_prepared(&message).unwrap();
    let mut server = Connection::new(Role::Server, Config::default());
    while client.wants_write() {
        let out = client.output();
        let room = server.read_buf();
        let n = out.len().min(room.len());
        room[..n].copy_from_slice(&out[..n]);
        client.consume(n);
        server.filled(n, Instant::now());
        if let Some(got) = server.poll().unwrap() {
            assert_eq!(got, message.to_message());
            return;
        }
    }
    panic!("the server never got the message");
}

#[test]
fn a_large_owned_payload_is_queued_as_it_is() {
    let payload = vec![3u8; 200_000];
    let at = payload.as_ptr();
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.send(Message::Binary(payload)).unwrap();
    assert_eq!(conn.output(), &[0x82, 127, 0, 0, 0, 0, 0, 3, 0x0d, 0x40]);
    conn.consume(10);
    assert!(
        std::ptr::eq(conn.output().as_ptr(), at),
        "the payload was copied"
    );
}
