//! Split connections: a `ReadHalf` for one thread and cloneable `WriteHalf`s for the others,
//! from `WebSocket<TcpStream>::split` or `split_with` any writer.
//!
//! Every payload is checked byte for byte, so interleaved or corrupted frames cannot pass.

mod common;

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    client_frame, close_body, connect, echo, serve_one, server_and_raw_client, spawn_bounded,
    ws_pair,
};
use stdws::{CloseFrame, Config, Error, Message, MessageKind, ReadHalf, WriteHalf};

/// How long any thread of these tests may take.
const DEADLINE: Duration = Duration::from_secs(8);

/// Panics unless `got` equals `want`, describing the first difference briefly (payloads
/// here are up to 100 KB, too long to print).
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |b: &[u8]| String::from_utf8_lossy(&b[at..(at + 24).min(b.len())]).into_owned();
    panic!(
        "{what}: got {} bytes, want {}; first difference at byte {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    );
}

/// Panics unless `msg` is exactly `want` (same kind, same payload).
fn assert_message(msg: &Message, want: &Message, what: &str) {
    let kind = |m: &Message| std::mem::discriminant(m);
    if kind(msg) != kind(want) {
        let short = |m: &Message| format!("{:?}", m).chars().take(80).collect::<String>();
        panic!("{what}: got {}, want {}", short(msg), short(want));
    }
    assert_same_bytes(msg.as_bytes(), want.as_bytes(), what);
}

fn close_code(frame: &Option<CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| f.code.as_u16())
}

fn expect_close(result: stdws::Result<Message>) -> Option<CloseFrame> {
    match result {
        Ok(Message::Close(frame)) => frame,
        other => panic!("expected Message::Close, got {other:?}"),
    }
}

fn expect_connection_closed<T: std::fmt::Debug>(result: stdws::Result<T>) -> Option<CloseFrame> {
    match result {
        Err(Error::ConnectionClosed(frame)) => frame,
        other => panic!("expected Err(ConnectionClosed), got {other:?}"),
    }
}

fn expect_already_closed<T: std::fmt::Debug>(result: stdws::Result<T>, what: &str) {
    assert!(
        matches!(result, Err(Error::AlreadyClosed)),
        "{what}: expected Err(AlreadyClosed), got {result:?}"
    );
}

/// Message `i` in direction `dir`: numbered, of varying length: 0 to 500 bytes, 20 KB every
/// 250th (the 16-bit length form and the write-through path), 70 KB once (the 64-bit length
/// form). About 0.4 MB for 1000 messages: little enough for the socket buffers, so a
/// lagging reader cannot run into the deadlock of
/// `mutual_flood_of_two_split_connections_does_not_deadlock`.
fn numbered(dir: &str, i: usize) -> String {
    let len = match i {
        500 => 70_000,
        _ if i % 250 == 249 => 20_000,
        _ => (i * 37) % 500,
    };
    let fill = char::from(b'a' + (i % 26) as u8);
    let mut s = format!("{dir} {i:04}|");
    s.extend(std::iter::repeat(fill).take(len));
    s
}

// ---------------------------------------------------------------------------------------
// Full duplex.
// ---------------------------------------------------------------------------------------

const DUPLEX: usize = 1000;

#[test]
fn full_duplex_with_both_sides_split() {
    let (server, client) = ws_pair();
    let (mut s_read, s_write) = server.split().unwrap();
    let (mut c_read, c_write) = client.split().unwrap();

    let send_all = |w: WriteHalf, dir: &'static str| {
        spawn_bounded(move || {
            for i in 0..DUPLEX {
                w.send_text(&numbered(dir, i))?;
            }
            Ok::<_, Error>(w)
        })
    };
    let read_all = |mut r: ReadHalf, dir: &'static str| {
        spawn_bounded(move || {
            for i in 0..DUPLEX {
                let msg = r.read()?;
                assert_message(&msg, &Message::Text(numbered(dir, i)), dir);
            }
            Ok::<_, Error>(r)
        })
    };
    let s_sender = send_all(s_write, "s2c");
    let c_sender = send_all(c_write, "c2s");
    let s_reader = read_all(s_read, "c2s");
    let c_reader = read_all(c_read, "s2c");
    let s_write = s_sender.join(DEADLINE).expect("server writer");
    let c_write = c_sender.join(DEADLINE).expect("client writer");
    s_read = s_reader.join(DEADLINE).expect("server reader");
    c_read = c_reader.join(DEADLINE).expect("client reader");

    // Both directions are done; the server closes.
    s_write.close(1000, "done").unwrap();
    assert_eq!(
        expect_close(c_read.read()),
        Some(CloseFrame::new(1000, "done"))
    );
    expect_already_closed(c_write.send_text("late"), "client send after the close");
    assert_eq!(close_code(&expect_close(s_read.read())), Some(1000));
    assert_eq!(
        close_code(&expect_connection_closed(s_read.read())),
        Some(1000)
    );
    expect_already_closed(s_read.read(), "server read after the end");
    drop((s_read, s_write));
    // The client reports the end once the server has closed TCP.
    assert_eq!(
        expect_connection_closed(c_read.read()),
        Some(CloseFrame::new(1000, "done"))
    );
    expect_already_closed(c_read.read(), "client read after the end");
}

#[test]
fn full_duplex_against_an_unsplit_client() {
    let (server, mut client) = ws_pair();
    let (mut s_read, s_write) = server.split().unwrap();
    let sender = spawn_bounded(move || {
        for i in 0..DUPLEX {
            s_write.send_text(&numbered("s2c", i))?;
        }
        Ok::<_, Error>(s_write)
    });
    let reader = spawn_bounded(move || {
        for i in 0..DUPLEX {
            let msg = s_read.read()?;
            assert_message(&msg, &Message::Text(numbered("c2s", i)), "server reader");
        }
        Ok::<_, Error>(s_read)
    });
    // One client thread alternates sending and reading, while the server sends on its own.
    for i in 0..DUPLEX {
        client.send_text(&numbered("c2s", i)).unwrap();
        let msg = client.read().unwrap();
        assert_message(&msg, &Message::Text(numbered("s2c", i)), "client");
    }
    let s_write = sender.join(DEADLINE).unwrap();
    let mut s_read = reader.join(DEADLINE).unwrap();

    client.close(1000, "").unwrap();
    assert_eq!(close_code(&expect_close(s_read.read())), Some(1000));
    expect_already_closed(s_write.send_text("x"), "server send after the peer's close");
    assert_eq!(
        close_code(&expect_connection_closed(s_read.read())),
        Some(1000)
    );
    drop((s_read, s_write));
    assert_eq!(close_code(&expect_close(client.read())), Some(1000));
    assert_eq!(
        close_code(&expect_connection_closed(client.read())),
        Some(1000)
    );
}

// ---------------------------------------------------------------------------------------
// Many writers.
// ---------------------------------------------------------------------------------------

const WRITERS: usize = 8;
const PER_WRITER: usize = 40;

/// Message `k` of writer `t`: every fourth a binary one of about 100 KB (a per-writer byte
/// pattern), the rest short texts. Both carry `t` and `k` at the front.
fn writer_message(t: usize, k: usize) -> Message {
    if k % 4 == 0 {
        let len = 100 * 1024 + t * 13 + k;
        let mut data = vec![t as u8, k as u8];
        data.extend((2..len).map(|i| (i * (2 * t + 1) + k) as u8));
        Message::Binary(data)
    } else {
        let fill = char::from(b'A' + t as u8);
        let mut text = format!("t{t} k{k} ");
        text.extend(std::iter::repeat(fill).take((t * 31 + k * 7) % 200));
        Message::Text(text)
    }
}

/// Which writer and message number a received message says it is.
fn writer_and_number(msg: &Message) -> (usize, usize) {
    match msg {
        Message::Binary(data) => (data[0] as usize, data[1] as usize),
        Message::Text(text) => {
            let mut words = text.split(' ');
            let mut num = |prefix: char| {
                let word = words.next().expect("header word");
                word.strip_prefix(prefix).unwrap().parse().unwrap()
            };
            (num('t'), num('k'))
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// `WRITERS` threads share the split side's writer, all starting at once, while the other
/// side reads and checks every message (and the order of each writer's messages).
fn many_writers(split_server: bool) {
    let (server, client) = ws_pair();
    let (split_side, mut other) = if split_server {
        (server, client)
    } else {
        (client, server)
    };
    let (mut reader, writer) = split_side.split().unwrap();

    let checker = spawn_bounded(move || {
        let mut next = [0usize; WRITERS];
        for _ in 0..WRITERS * PER_WRITER {
            let msg = other.read()?;
            let (t, k) = writer_and_number(&msg);
            assert!(t < WRITERS, "writer {t}");
            assert_eq!(k, next[t], "writer {t}'s messages out of order");
            assert_message(
                &msg,
                &writer_message(t, k),
                &format!("writer {t} message {k}"),
            );
            next[t] += 1;
        }
        // Then the close, echoed by the library.
        let frame = expect_close(other.read());
        let end = expect_connection_closed(other.read());
        Ok::<_, Error>((frame, end))
    });

    let start = Arc::new(Barrier::new(WRITERS));
    let senders: Vec<_> = (0..WRITERS)
        .map(|t| {
            let w = writer.clone();
            let start = Arc::clone(&start);
            spawn_bounded(move || {
                start.wait();
                for k in 0..PER_WRITER {
                    w.send(writer_message(t, k))?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for sender in senders {
        sender.join(DEADLINE).expect("writer thread");
    }
    writer.close(1000, "all sent").unwrap();
    assert_eq!(close_code(&expect_close(reader.read())), Some(1000));
    // A server reports the end at once, then closes TCP; a client waits for that.
    expect_connection_closed(reader.read());
    drop((reader, writer));
    let (frame, end) = checker.join(DEADLINE).expect("reading side");
    assert_eq!(frame, Some(CloseFrame::new(1000, "all sent")));
    assert_eq!(end, Some(CloseFrame::new(1000, "all sent")));
}

#[test]
fn many_server_writers_never_interleave_frames() {
    many_writers(true);
}

#[test]
fn many_client_writers_never_interleave_frames() {
    many_writers(false);
}

// ---------------------------------------------------------------------------------------
// Automatic pongs.
// ---------------------------------------------------------------------------------------

#[test]
fn pongs_from_the_reader_share_the_busy_writer() {
    const DATA: usize = 300;
    const PINGS: usize = 60;
    let data = |i: usize| -> Message {
        if i % 10 == 3 {
            Message::Binary(vec![i as u8; 50_000 + i])
        } else {
            Message::Text(format!("data {i} {}", "x".repeat((i * 13) % 500)))
        }
    };
    let (server, mut client) = ws_pair();
    let (mut s_read, s_write) = server.split().unwrap();
    let busy = spawn_bounded(move || {
        for i in 0..DATA {
            s_write.send(data(i))?;
        }
        Ok::<_, Error>(())
    });
    let answering = spawn_bounded(move || {
        // Reads until the closing handshake; pings are answered by the library.
        let mut pings = Vec::new();
        loop {
            match s_read.read()? {
                Message::Ping(p) => pings.push(p),
                Message::Close(_) => break,
                other => panic!("server got {other:?}"),
            }
        }
        expect_connection_closed(s_read.read());
        Ok::<_, Error>(pings)
    });

    let ping = |n: usize| format!("ping {n}").into_bytes();
    let (mut received, mut sent, mut pongs) = (0, 0, Vec::new());
    while received < DATA || pongs.len() < PINGS {
        // A ping after every fifth data message, so they arrive while the server writes.
        if sent < PINGS && (received >= DATA || received >= 5 * (sent + 1)) {
            client.ping(&ping(sent)).unwrap();
            sent += 1;
        }
        match client.read().unwrap() {
            Message::Pong(p) => pongs.push(p),
            msg => {
                assert!(received < DATA, "more data than sent: {msg:?}");
                assert_message(&msg, &data(received), &format!("data message {received}"));
                received += 1;
            }
        }
    }
    busy.join(DEADLINE).expect("writer thread");
    let want: Vec<Vec<u8>> = (0..PINGS).map(ping).collect();
    assert_eq!(pongs, want, "pongs in the order of the pings");
    client.close(1000, "").unwrap();
    assert_eq!(close_code(&expect_close(client.read())), Some(1000));
    let pings = answering.join(DEADLINE).expect("reader thread");
    assert_eq!(pings, want, "pings the server's reader returned");
    assert_eq!(
        close_code(&expect_connection_closed(client.read())),
        Some(1000)
    );
}

// ---------------------------------------------------------------------------------------
// Closing.
// ---------------------------------------------------------------------------------------

#[test]
fn close_from_the_write_half_lets_the_reader_drain_the_peer() {
    let (server, mut raw) = server_and_raw_client(Config::default());
    let (mut reader, writer) = server.split().unwrap();
    raw.send(&client_frame(true, 0x1, b"before"));

    writer.close(1000, "bye").unwrap();
    assert!(!writer.can_write());
    assert!(reader.can_read(), "the reader waits for the peer's close");
    expect_already_closed(writer.send_text("x"), "send_text after close");
    expect_already_closed(writer.send_binary(b"x"), "send_binary after close");
    expect_already_closed(writer.send(Message::text("x")), "send after close");
    expect_already_closed(writer.ping(b"x"), "ping after close");
    writer.close(1001, "again").unwrap(); // no second close frame

    let close = raw.read_frame();
    assert_eq!((close.opcode, close.mask), (0x8, None));
    assert_eq!(close.payload, close_body(1000, b"bye"));

    // The peer still sends data (and a ping) before its own close.
    raw.send(&client_frame(true, 0x1, b"after your close"));
    raw.send(&client_frame(true, 0x2, &[1, 2, 3]));
    raw.send(&client_frame(true, 0x9, b"still there?"));
    raw.send(&client_frame(true, 0x8, &close_body(1000, b"")));

    assert_eq!(reader.read().unwrap(), Message::text("before"));
    assert_eq!(reader.read().unwrap(), Message::text("after your close"));
    assert_eq!(reader.read().unwrap(), Message::binary(vec![1, 2, 3]));
    assert_eq!(
        reader.read().unwrap(),
        Message::Ping(b"still there?".to_vec())
    );
    assert_eq!(expect_close(reader.read()), Some(CloseFrame::new(1000, "")));
    assert!(!reader.can_read());
    assert_eq!(
        expect_connection_closed(reader.read()),
        Some(CloseFrame::new(1000, ""))
    );
    expect_already_closed(reader.read(), "read after the end");
    expect_already_closed(writer.send_text("x"), "send after the end");
    assert!(!writer.can_write());

    // Nothing followed our close frame: no pong after it, no second close.
    drop((reader, writer));
    assert_eq!(raw.read_to_end(), b"");
}

#[test]
fn close_from_the_peer_ends_every_writer() {
    let (server, mut client) = ws_pair();
    let (mut reader, writer) = server.split().unwrap();
    let other_writer = reader.writer();
    client.send_text("last words").unwrap();
    client.close(4001, "peer bye").unwrap();

    assert_eq!(reader.read().unwrap(), Message::text("last words"));
    assert!(writer.can_write());
    assert_eq!(
        expect_close(reader.read()),
        Some(CloseFrame::new(4001, "peer bye"))
    );
    assert!(!reader.can_read());
    for w in [&writer, &other_writer, &writer.clone()] {
        assert!(!w.can_write());
        expect_already_closed(w.send_text("x"), "send after the peer's close");
        expect_already_closed(w.ping(b""), "ping after the peer's close");
    }
    assert_eq!(
        expect_connection_closed(reader.read()),
        Some(CloseFrame::new(4001, "peer bye"))
    );
    expect_already_closed(reader.read(), "read after the end");
    expect_already_closed(writer.send_text("x"), "send after the end");

    // The peer got the echo of its code.
    assert_eq!(expect_close(client.read()), Some(CloseFrame::new(4001, "")));
    drop((reader, writer, other_writer));
    assert_eq!(
        close_code(&expect_connection_closed(client.read())),
        Some(4001)
    );
}

#[test]
fn busy_writer_gets_already_closed_when_the_peer_closes() {
    let (server, client) = ws_pair();
    let (mut reader, writer) = server.split().unwrap();
    let (mut c_read, c_write) = client.split().unwrap();
    let busy = spawn_bounded(move || {
        let mut sent = 0usize;
        loop {
            match writer.send_text(&numbered("busy", sent)) {
                Ok(()) => sent += 1,
                Err(e) => return (sent, e),
            }
        }
    });
    // The client reads everything (so the busy writer never stalls) until the echo of its
    // close.
    let draining = spawn_bounded(move || {
        let mut got = 0;
        loop {
            match c_read.read()? {
                Message::Close(frame) => return Ok::<_, Error>((got, frame, c_read)),
                msg => {
                    assert_message(&msg, &Message::Text(numbered("busy", got)), "busy data");
                    got += 1;
                }
            }
        }
    });
    thread::sleep(Duration::from_millis(100));
    c_write.close(1000, "enough").unwrap();
    assert_eq!(
        expect_close(reader.read()),
        Some(CloseFrame::new(1000, "enough"))
    );
    let (sent, error) = busy.join(DEADLINE);
    assert!(
        matches!(error, Error::AlreadyClosed),
        "the writer ended with {error:?}"
    );
    assert!(sent > 0);
    // Every message sent before that arrived intact, then the echo of the close.
    let (got, frame, mut c_read) = draining.join(DEADLINE).expect("client reader");
    assert_eq!(close_code(&frame), Some(1000));
    assert_eq!(
        got, sent,
        "messages the client received vs. sends that succeeded"
    );
    expect_connection_closed(reader.read());
    drop(reader);
    expect_connection_closed(c_read.read());
}

// ---------------------------------------------------------------------------------------
// Shutdown and vanished peers.
// ---------------------------------------------------------------------------------------

#[test]
fn shutdown_wakes_a_reader_blocked_without_timeout() {
    let (server, client) = ws_pair();
    server.get_ref().set_read_timeout(None).unwrap();
    let (mut reader, writer) = server.split().unwrap();
    let blocked = spawn_bounded(move || {
        let result = reader.read();
        let again = reader.read();
        (result, again)
    });
    thread::sleep(Duration::from_millis(200));
    assert!(!blocked.is_finished(), "read returned with nothing to read");
    let woken = Instant::now();
    writer.shutdown().unwrap();
    let (result, again) = blocked.join(Duration::from_secs(1));
    assert!(woken.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(
            result,
            Err(Error::AbnormalClosure) | Err(Error::ConnectionClosed(_))
        ),
        "read after shutdown: {result:?}"
    );
    expect_already_closed(again, "read after the end was reported");
    assert!(writer.send_text("x").is_err());
    drop(client);
}

#[test]
fn close_then_shutdown_when_the_peer_never_answers() {
    let (server, _raw) = server_and_raw_client(Config::default());
    server.get_ref().set_read_timeout(None).unwrap();
    let (mut reader, writer) = server.split().unwrap();
    let blocked = spawn_bounded(move || reader.read());
    writer.close(1000, "bye").unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(!blocked.is_finished(), "the raw peer never answers");
    writer.shutdown().unwrap();
    let result = blocked.join(Duration::from_secs(1));
    assert!(
        matches!(result, Err(Error::AbnormalClosure)),
        "closing handshake unfinished: {result:?}"
    );
}

#[test]
fn vanished_peer_fails_reader_then_writers() {
    let (server, client) = ws_pair();
    let (mut reader, writer) = server.split().unwrap();
    let other_writer = writer.clone();
    drop(client); // TCP closed without a closing handshake

    let reading = spawn_bounded(move || {
        let first = reader.read();
        let second = reader.read();
        (first, second)
    });
    let (first, second) = reading.join(Duration::from_secs(3));
    assert!(
        matches!(first, Err(Error::AbnormalClosure) | Err(Error::Io(_))),
        "reader: {first:?}"
    );
    expect_already_closed(second, "second read");
    // The reader reported the end: every writer fails at once.
    let writing = spawn_bounded(move || other_writer.send_text(&"z".repeat(1000)));
    expect_already_closed(writing.join(Duration::from_secs(1)), "send after the end");
    expect_already_closed(writer.send_text("x"), "send after the end");
    assert!(!writer.can_write());
}

#[test]
fn vanished_peer_fails_a_writer_even_without_a_reader() {
    let (server, client) = ws_pair();
    let (_reader, writer) = server.split().unwrap();
    drop(client);
    let writing = spawn_bounded(move || {
        for n in 0..100_000 {
            if let Err(e) = writer.send_text("ping?") {
                return (n, e, writer.can_write());
            }
            thread::sleep(Duration::from_micros(100));
        }
        panic!("100000 sends to a closed peer all succeeded");
    });
    let (sent, error, can_write) = writing.join(Duration::from_secs(3));
    assert!(
        matches!(&error, Error::Io(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "writer failed after {sent} sends with {error:?}"
    );
    assert!(!can_write, "the connection ended with the I/O error");
}

// ---------------------------------------------------------------------------------------
// Types, writer(), split_with, state carried over.
// ---------------------------------------------------------------------------------------

fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>() {}
fn assert_send<T: Send + 'static>() {}

#[test]
fn halves_can_move_between_threads() {
    assert_clone_send_sync::<WriteHalf>();
    assert_send::<ReadHalf>();
    assert_send::<WriteHalf<Counting>>();
    assert_send::<ReadHalf<TcpStream, Counting>>();
}

#[test]
fn reader_writer_is_a_working_write_half() {
    let (server, mut client) = ws_pair();
    let (mut reader, writer) = server.split().unwrap();
    drop(writer);
    let writer = reader.writer();
    assert!(writer.can_write());
    writer.send_text("from reader.writer()").unwrap();
    writer.send_binary(&[9; 300]).unwrap();
    assert_eq!(
        client.read().unwrap(),
        Message::text("from reader.writer()")
    );
    assert_eq!(client.read().unwrap(), Message::binary(vec![9; 300]));
    client.send_text("to the reader").unwrap();
    assert_eq!(reader.read().unwrap(), Message::text("to the reader"));
    writer.ping(b"p").unwrap();
    assert_eq!(client.read().unwrap(), Message::Ping(b"p".to_vec()));
    client.flush().unwrap(); // sends the queued pong
    assert_eq!(reader.read().unwrap(), Message::Pong(b"p".to_vec()));
    client.close(1000, "").unwrap();
    assert_eq!(close_code(&expect_close(reader.read())), Some(1000));
    expect_already_closed(reader.writer().send_text("x"), "a new writer after the end");
}

/// A writer that counts the bytes that pass through it.
#[derive(Debug)]
struct Counting {
    inner: TcpStream,
    written: Arc<AtomicUsize>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn split_with_any_writer_carries_queued_output_and_buffered_input() {
    let (mut server, mut client) = ws_pair();
    // Input already buffered by the WebSocket stays with the reading half.
    client.send_text("a").unwrap();
    client.send_text("b").unwrap();
    assert_eq!(server.read().unwrap(), Message::text("a"));
    // Output queued (not flushed) moves to the writing half.
    server.write(Message::text("queued")).unwrap();

    let written = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: server.get_ref().try_clone().unwrap(),
        written: Arc::clone(&written),
    };
    let (mut reader, writer) = server.split_with(counting);
    assert_eq!(written.load(Ordering::SeqCst), 0, "nothing written yet");
    assert_eq!(reader.read().unwrap(), Message::text("b"));

    writer.send_text("hello").unwrap();
    assert_eq!(client.read().unwrap(), Message::text("queued"));
    assert_eq!(client.read().unwrap(), Message::text("hello"));
    assert_eq!(written.load(Ordering::SeqCst), (2 + 6) + (2 + 5));

    // A ping read by the reading half is answered through the same writer; the pong is
    // queued and goes out with the next write, ahead of it.
    client.ping(b"p").unwrap();
    assert_eq!(reader.read().unwrap(), Message::Ping(b"p".to_vec()));
    writer.send_text("after").unwrap();
    assert_eq!(client.read().unwrap(), Message::Pong(b"p".to_vec()));
    assert_eq!(client.read().unwrap(), Message::text("after"));
    assert_eq!(written.load(Ordering::SeqCst), 15 + (2 + 1) + (2 + 5));

    client.close(1000, "").unwrap();
    assert_eq!(close_code(&expect_close(reader.read())), Some(1000));
    assert_eq!(
        written.load(Ordering::SeqCst),
        25 + (2 + 2),
        "the close echo went through the counting writer"
    );
    expect_connection_closed(reader.read());
}

// ---------------------------------------------------------------------------------------
// Client role.
// ---------------------------------------------------------------------------------------

#[test]
fn client_split_against_an_echo_server() {
    const COUNT: usize = 500;
    let message = |i: usize| -> Message {
        if i % 2 == 0 {
            Message::Text(numbered("echo", i))
        } else {
            Message::Binary(numbered("bin", i).into_bytes())
        }
    };
    let server = serve_one(echo);
    let client = connect(&server.url("/"));
    let (mut reader, writer) = client.split().unwrap();
    let sending = {
        let writer = writer.clone();
        spawn_bounded(move || {
            for i in 0..COUNT {
                writer.send(message(i))?;
            }
            writer.ping(b"done?")
        })
    };
    let mut pong = None;
    let mut i = 0;
    while i < COUNT || pong.is_none() {
        match reader.read().unwrap() {
            Message::Pong(p) => pong = Some(p),
            msg => {
                assert_message(&msg, &message(i), &format!("echo {i}"));
                i += 1;
            }
        }
    }
    sending.join(DEADLINE).expect("client writer");
    assert_eq!(pong.as_deref(), Some(&b"done?"[..]));

    writer.close(1000, "done").unwrap();
    assert_eq!(expect_close(reader.read()), Some(CloseFrame::new(1000, "")));
    // The server's handler returned and closed TCP, so the client's end is reported.
    assert_eq!(
        close_code(&expect_connection_closed(reader.read())),
        Some(1000)
    );
    server.join_one().expect("echo server");
}

#[test]
fn split_of_an_unsplit_connection_in_progress_keeps_its_state() {
    // A connection that already started closing splits into halves that know it.
    let (mut server, mut client) = ws_pair();
    server.close(1000, "early").unwrap();
    let (mut reader, writer) = server.split().unwrap();
    assert!(!writer.can_write());
    assert!(reader.can_read());
    expect_already_closed(writer.send_text("x"), "send after close before split");
    assert_eq!(
        expect_close(client.read()),
        Some(CloseFrame::new(1000, "early"))
    );
    assert_eq!(close_code(&expect_close(reader.read())), Some(1000));
    expect_connection_closed(reader.read());
    drop((reader, writer));
    expect_connection_closed(client.read());

    // And a connection whose end was reported splits into halves that report nothing more.
    let (mut server, mut client) = ws_pair();
    client.close(1000, "").unwrap();
    expect_close(server.read());
    expect_connection_closed(server.read());
    let (mut reader, writer) = server.split().unwrap();
    expect_already_closed(reader.read(), "read after the end, split");
    expect_already_closed(writer.send_text("x"), "send after the end, split");
    drop((reader, writer));
    expect_close(client.read());
    expect_connection_closed(client.read());
}

// ---------------------------------------------------------------------------------------
// Library bugs (ignored until fixed).
// ---------------------------------------------------------------------------------------

/// Both ends split, each with a writer thread sending 24 MiB while its reader thread reads.
/// Each `WriteHalf::send` holds the shared lock while it blocks on a full socket, and
/// `ReadHalf::read` takes that lock on every call (state check, flush before waiting,
/// answering), so once both writers block, neither reader can drain the other's data: no
/// progress until the write timeouts fire (forever without them).
#[test]
fn mutual_flood_of_two_split_connections_does_not_deadlock() {
    const MESSAGES: usize = 24;
    const SIZE: usize = 1 << 20;
    let (server, client) = ws_pair();
    for ws in [&server, &client] {
        // Turns the deadlock into errors so the test ends.
        ws.get_ref()
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
    }
    let (s_read, s_write) = server.split().unwrap();
    let (c_read, c_write) = client.split().unwrap();
    let send_all = |w: WriteHalf| {
        spawn_bounded(move || {
            for i in 0..MESSAGES {
                w.send_binary(&vec![i as u8; SIZE])
                    .map_err(|e| format!("send {i}: {e:?}"))?;
            }
            Ok::<_, String>(())
        })
    };
    let read_all = |mut r: ReadHalf| {
        spawn_bounded(move || {
            for i in 0..MESSAGES {
                let msg = r.read().map_err(|e| format!("read {i}: {e:?}"))?;
                assert_message(&msg, &Message::Binary(vec![i as u8; SIZE]), "flood");
            }
            Ok::<_, String>(())
        })
    };
    let started = Instant::now();
    let threads = [
        ("server writer", send_all(s_write)),
        ("client writer", send_all(c_write)),
        ("server reader", read_all(s_read)),
        ("client reader", read_all(c_read)),
    ];
    let deadline = started + Duration::from_secs(5);
    let results: Vec<String> = threads
        .into_iter()
        .filter_map(|(name, t)| {
            let left = deadline.saturating_duration_since(Instant::now());
            match t.join_timeout(left) {
                Some(Ok(())) => None,
                Some(Err(e)) => Some(format!("{name}: {e}")),
                None => Some(format!("{name}: still blocked")),
            }
        })
        .collect();
    assert!(
        results.is_empty(),
        "after {:?}: {results:?}",
        started.elapsed()
    );
}

/// The same lock, seen from the simplest use: a split client sends 32 MiB to an echo server
/// while its reader reads the echoes. Once the client's writer blocks (the server is busy
/// writing echoes the client has not read), the client's reader cannot take the lock to read
/// them, so the echo server blocks too: nothing moves until timeouts fire.
#[test]
fn split_client_streaming_to_an_echo_server_does_not_deadlock() {
    const MESSAGES: usize = 32;
    const SIZE: usize = 1 << 20;
    let server = serve_one(echo);
    let client = connect(&server.url("/"));
    let (mut reader, writer) = client.split().unwrap();
    let started = Instant::now();
    let sending = spawn_bounded(move || {
        for i in 0..MESSAGES {
            writer
                .send_binary(&vec![i as u8; SIZE])
                .map_err(|e| format!("send {i}: {e:?}"))?;
        }
        Ok::<_, String>(writer)
    });
    let reading = spawn_bounded(move || {
        for i in 0..MESSAGES {
            let msg = reader.read().map_err(|e| format!("read {i}: {e:?}"))?;
            assert_message(&msg, &Message::Binary(vec![i as u8; SIZE]), "echo");
        }
        Ok::<_, String>(reader)
    });
    let sent = sending.join_timeout(Duration::from_secs(6));
    let read = reading.join_timeout(Duration::from_secs(6).saturating_sub(started.elapsed()));
    let describe = |result: &Option<Result<_, String>>| match result {
        None => "still blocked".to_owned(),
        Some(Ok(_)) => "done".to_owned(),
        Some(Err(e)) => e.clone(),
    };
    let (writer, mut reader) = match (sent, read) {
        (Some(Ok(writer)), Some(Ok(reader))) => (writer, reader),
        (sent, read) => panic!(
            "after {:?}: writer {}, reader {}",
            started.elapsed(),
            describe(&sent.map(|r| r.map(drop))),
            describe(&read.map(|r| r.map(drop)))
        ),
    };
    writer.close(1000, "").unwrap();
    expect_close(reader.read());
    expect_connection_closed(reader.read());
    server.join_one().expect("echo server");
}

/// A peer that stops reading (alive, but its receive window is full) blocks a writer
/// thread; `WriteHalf::shutdown` from another thread (documented as the way out when the
/// peer does not answer) takes the same lock, so it blocks too, and so does the reader.
#[test]
fn shutdown_unblocks_a_writer_stuck_on_a_peer_that_stopped_reading() {
    let (server, raw) = server_and_raw_client(Config::default());
    server.get_ref().set_write_timeout(None).unwrap();
    server.get_ref().set_read_timeout(None).unwrap();
    let (mut reader, writer) = server.split().unwrap();
    let flooding = {
        let writer = writer.clone();
        spawn_bounded(move || {
            for i in 0..1000 {
                if let Err(e) = writer.send_binary(&vec![0; 1 << 20]) {
                    return (i, e);
                }
            }
            panic!("1000 MiB sent to a peer that reads nothing");
        })
    };
    let reading = spawn_bounded(move || reader.read());
    thread::sleep(Duration::from_millis(300));
    assert!(
        !flooding.is_finished(),
        "the writer is blocked on the full socket"
    );

    let shutting = spawn_bounded(move || writer.shutdown());
    // On failure `raw` is dropped while unwinding, which unblocks the threads.
    match shutting.join_timeout(Duration::from_secs(1)) {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("shutdown failed: {e:?}"),
        None => panic!("shutdown still blocked after 1 s, behind the blocked send"),
    }
    let (sent, error) = flooding.join(Duration::from_secs(1));
    assert!(
        !error.is_would_block(),
        "flood ended after {sent} MiB with {error:?}"
    );
    let read = reading.join(Duration::from_secs(1));
    assert!(
        matches!(read, Err(Error::AbnormalClosure) | Err(Error::Io(_))),
        "reader: {read:?}"
    );
    drop(raw);
}

/// The peer vanished and a writer found out first (its send failed with an I/O error). The
/// reading half then never learns how the connection ended: its first `read` returns
/// `AlreadyClosed` (documented as "used after the end was already reported ... a bug in the
/// calling code"), although `ReadHalf::read` says "the end of the connection is reported
/// here (once)" and outgoing.rs says "the reading half reports how the connection ended".
#[test]
fn reader_reports_the_end_after_a_writer_io_error() {
    let (server, client) = ws_pair();
    let (mut reader, writer) = server.split().unwrap();
    drop(client);
    let writing = spawn_bounded(move || {
        for _ in 0..100_000 {
            if let Err(e) = writer.send_text("anyone?") {
                return e;
            }
            thread::sleep(Duration::from_micros(100));
        }
        panic!("100000 sends to a closed peer all succeeded");
    });
    let error = writing.join(Duration::from_secs(3));
    assert!(matches!(error, Error::Io(_)), "writer: {error:?}");
    let first = spawn_bounded(move || reader.read()).join(Duration::from_secs(1));
    assert!(
        matches!(first, Err(Error::AbnormalClosure) | Err(Error::Io(_))),
        "the reader's first read after the writer's {error:?}: {first:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Streamed messages and the turn to send a data message.
// ---------------------------------------------------------------------------------------

fn expect_unfinished_stream<T: std::fmt::Debug>(result: stdws::Result<T>, what: &str) {
    assert!(
        matches!(&result, Err(Error::InvalidInput(m)) if m.contains("streamed message is unfinished")),
        "{what}: expected Err(InvalidInput) about the unfinished stream, got {result:?}"
    );
}

/// A data message from the thread whose streamed message is unfinished could never go out
/// before it: it fails at once instead of waiting for the turn that thread holds (which
/// used to block forever). Control frames still go out; after `finish` the thread sends
/// again, and the peer gets everything in order.
#[test]
fn data_message_from_the_thread_with_an_open_stream_fails_instead_of_deadlocking() {
    let (mut server, client) = ws_pair();
    let (_reader, writer) = client.split().unwrap();
    let sending = spawn_bounded(move || {
        let mut stream = writer.send_stream(MessageKind::Text).unwrap();
        stream.write_all(b"streamed").unwrap();
        let during = [
            ("send_text", writer.send_text("during")),
            (
                "send_binary on a clone",
                writer.clone().send_binary(b"during"),
            ),
            ("send", writer.send(Message::text("during"))),
            (
                "send_stream",
                writer.send_stream(MessageKind::Binary).map(drop),
            ),
        ];
        let ping = writer.ping(b"between");
        stream.finish().unwrap();
        let after = writer.send_text("after");
        (during, ping, after, writer)
    });
    let (during, ping, after, _writer) = sending.join(Duration::from_secs(5));
    for (what, result) in during {
        expect_unfinished_stream(result, what);
    }
    ping.unwrap();
    after.unwrap();
    assert_eq!(server.read().unwrap(), Message::Ping(b"between".to_vec()));
    assert_eq!(server.read().unwrap(), Message::text("streamed"));
    assert_eq!(server.read().unwrap(), Message::text("after"));
}

/// A `MessageWriter` leaked with `mem::forget` never gives the turn back: data messages
/// from other threads wait for it, but only until the connection closes (by `close` from a
/// third handle, or by the peer); then they fail with `AlreadyClosed` instead of waiting
/// forever.
#[test]
fn leaked_stream_writer_holds_other_threads_only_until_the_connection_closes() {
    for by_peer in [false, true] {
        let what = if by_peer {
            "the peer's close"
        } else {
            "our close"
        };
        let (mut server, client) = ws_pair();
        let (mut reader, writer) = client.split().unwrap();
        std::mem::forget(writer.send_stream(MessageKind::Binary).unwrap());
        let other = writer.clone();
        let waiting = spawn_bounded(move || other.send_text("after the leak"));
        thread::sleep(Duration::from_millis(300));
        assert!(
            !waiting.is_finished(),
            "{what}: another thread's data message waits for the leaked stream's turn"
        );
        if by_peer {
            server.close(1001, "going").unwrap();
            assert_eq!(close_code(&expect_close(reader.read())), Some(1001));
        } else {
            writer.clone().close(1000, "bye").unwrap();
        }
        expect_already_closed(waiting.join(Duration::from_secs(2)), what);
        if !by_peer {
            // Nothing went out before our close frame.
            assert_eq!(close_code(&expect_close(server.read())), Some(1000));
        }
    }
}

/// The thread that leaked its `MessageWriter` holds the turn for good: its next data
/// message (or stream) fails with the unfinished-stream error at once instead of hanging;
/// pings and `close` still work.
#[test]
fn leaked_stream_writer_makes_its_own_threads_data_messages_fail_not_hang() {
    let (mut server, client) = ws_pair();
    let (_reader, writer) = client.split().unwrap();
    let leaking = spawn_bounded(move || {
        let mut stream = writer.send_stream(MessageKind::Binary).unwrap();
        stream.write_all(&[7; 10]).unwrap();
        std::mem::forget(stream);
        let text = writer.send_text("x");
        let again = writer.send_stream(MessageKind::Text).map(drop);
        let ping = writer.ping(b"still");
        (text, again, ping, writer)
    });
    let (text, again, ping, writer) = leaking.join(Duration::from_secs(5));
    expect_unfinished_stream(text, "send_text");
    expect_unfinished_stream(again, "send_stream");
    ping.unwrap();
    assert_eq!(server.read().unwrap(), Message::Ping(b"still".to_vec()));
    writer.close(1000, "").unwrap();
    assert_eq!(close_code(&expect_close(server.read())), Some(1000));
}

/// `split` shares the connection's one socket between both halves (no `dup`): a server with
/// thousands of split connections holds one descriptor per connection, not three.
#[cfg(unix)]
#[test]
fn split_halves_share_the_connections_one_descriptor() {
    use std::os::fd::AsRawFd;
    let (server, _client) = ws_pair();
    let fd = server.get_ref().as_raw_fd();
    let (reader, writer) = server.split().unwrap();
    assert_eq!(reader.get_ref().as_raw_fd(), fd, "the reader's socket");
    let socket = writer
        .socket()
        .expect("split() keeps a handle to the socket");
    assert_eq!(socket.as_raw_fd(), fd, "the writer's socket");
    assert_eq!(
        writer.clone().socket().unwrap().as_raw_fd(),
        fd,
        "a clone's"
    );
    // Options set through one half are the socket's, seen by the other.
    socket
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(
        reader.get_ref().write_timeout().unwrap(),
        Some(Duration::from_secs(2))
    );
}

/// `ReadHalf::close_and_wait`: the whole closing handshake from the reading half, bounded.
#[test]
fn close_and_wait_on_the_reading_half_returns_the_peers_close() {
    let (server, mut client) = ws_pair();
    let (mut reader, writer) = server.split().unwrap();
    let peer = spawn_bounded(move || loop {
        match client.read() {
            Ok(Message::Close(_)) => {}
            Ok(_) => {}
            Err(Error::ConnectionClosed(_)) => return,
            Err(e) => panic!("client: {e}"),
        }
    });
    let frame = reader
        .close_and_wait(1001, "bye", Duration::from_secs(5))
        .unwrap();
    assert_eq!(close_code(&frame), Some(1001), "the client echoes our code");
    expect_already_closed(writer.send_text("late"), "a send after the close");
    peer.join(DEADLINE);
}

#[test]
fn close_and_wait_on_the_reading_half_gives_up_at_its_deadline() {
    let (server, _silent_client) = ws_pair(); // never reads, never answers
    let (mut reader, _writer) = server.split().unwrap();
    let started = Instant::now();
    let result = reader.close_and_wait(1000, "", Duration::from_millis(400));
    let took = started.elapsed();
    match result {
        Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::TimedOut),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
