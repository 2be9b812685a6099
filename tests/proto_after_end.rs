//! The sans-I/O `proto::Connection` after its end: a driver that keeps reading (a client
//! waits for the server to close TCP, RFC 6455 §7.1.1; any driver may read what is in
//! flight before it closes) hands it whatever the peer still sends. None of it is kept: the
//! heap stays put however much arrives (measured with a counting allocator).
//!
//! Found by the `connection` fuzz target (fuzz/README.md): before the fix, every byte fed
//! after the end stayed in the read buffer, which grew without limit.

mod common;
#[path = "common/heap.rs"]
mod heap;

use std::time::Instant;

use common::{client_frame, serial, server_frame};
use heap::HeapWatch;
use stdws::proto::Connection;
use stdws::{Config, Error, Message, Role, State};

const MIB: usize = 1 << 20;

fn feed(conn: &mut Connection, bytes: &[u8]) {
    let room = conn.read_buf();
    let n = bytes.len().min(room.len());
    room[..n].copy_from_slice(&bytes[..n]);
    conn.filled(n, Instant::now());
}

/// Feeds 8 MiB of junk after the end, polling as a driver does, and checks that the heap
/// did not grow with it.
fn junk_after_the_end_is_dropped(conn: &mut Connection, what: &str) {
    assert_eq!(conn.state(), State::Closed, "{what}");
    let watch = HeapWatch::start();
    let junk = vec![0x82u8; 64 << 10];
    let mut fed = 0;
    while fed < 8 * MIB {
        let room = conn.read_buf();
        assert!(!room.is_empty(), "{what}: read_buf() is empty");
        let n = room.len().min(junk.len());
        room[..n].copy_from_slice(&junk[..n]);
        conn.filled(n, Instant::now());
        fed += n;
        assert!(
            matches!(conn.poll(), Err(Error::AlreadyClosed)),
            "{what}: poll() after the end"
        );
    }
    watch.assert_peak_below(256 << 10, what);
}

#[test]
fn input_after_the_end_is_not_kept() {
    let _serial = serial();
    // A client that got the server's close (the closing handshake is complete) and reads
    // on until the server's EOF.
    let mut client = Connection::new(Role::Client, Config::default());
    feed(&mut client, &server_frame(true, 8, &1000u16.to_be_bytes()));
    assert!(matches!(client.poll(), Ok(Some(Message::Close(Some(_))))));
    assert!(matches!(client.poll(), Err(Error::ConnectionClosed(_))));
    junk_after_the_end_is_dropped(&mut client, "client after the closing handshake");

    // A server whose client broke the protocol (an unmasked frame): failed with 1002 and
    // reading what is still in flight before it closes.
    let mut server = Connection::new(Role::Server, Config::default());
    feed(&mut server, &server_frame(true, 1, b"unmasked"));
    assert!(matches!(server.poll(), Err(Error::Protocol(_))));
    junk_after_the_end_is_dropped(&mut server, "server after a protocol error");

    // A server that got a client's close, then more frames behind it.
    let mut server = Connection::new(Role::Server, Config::default());
    feed(&mut server, &client_frame(true, 8, b""));
    assert!(matches!(server.poll(), Ok(Some(Message::Close(None)))));
    assert!(matches!(server.poll(), Err(Error::ConnectionClosed(None))));
    junk_after_the_end_is_dropped(&mut server, "server after the client's close");
}
