//! `GracefulShutdown` over real sockets: the accept loop ends, every tracked connection gets
//! close 1001, the ones that answer count as closed, the one that does not is cut at the
//! deadline.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use stdws::{Error, GracefulShutdown, Message, Server, ShutdownReport};

const DEADLINE: Duration = Duration::from_secs(10);

/// An echo server whose connections are tracked by `shutdown`; returns its URL and the
/// accept loop's thread (which ends when the shutdown starts).
fn server(shutdown: &GracefulShutdown) -> (String, thread::JoinHandle<usize>) {
    let server = Server::bind("127.0.0.1:0").unwrap().shutdown_on(shutdown);
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let shutdown = shutdown.clone();
    let accept_loop = thread::spawn(move || {
        let mut accepted = 0;
        for pending in server.incoming() {
            let Ok(pending) = pending else { continue };
            accepted += 1;
            let shutdown = shutdown.clone();
            thread::spawn(move || -> stdws::Result<()> {
                let (mut reader, writer) = pending.accept()?.split()?;
                let _tracked = shutdown.track(&writer);
                while let Ok(message) = reader.read() {
                    if message.is_data() {
                        writer.send(message)?;
                    }
                }
                Ok(())
            });
        }
        accepted
    });
    (url, accept_loop)
}

fn client(url: &str) -> stdws::WebSocket<TcpStream> {
    let (ws, _) = stdws::connect(url).unwrap();
    ws.get_ref().set_read_timeout(Some(DEADLINE)).unwrap();
    ws
}

#[test]
fn shutdown_closes_every_connection_with_1001_and_cuts_the_silent_one() {
    let shutdown = GracefulShutdown::new();
    let (url, accept_loop) = server(&shutdown);
    // Three clients that answer the close (they read), one that never reads again.
    let polite: Vec<_> = (0..3)
        .map(|i| {
            let mut ws = client(&url);
            ws.send_text(&format!("hi {i}")).unwrap();
            assert_eq!(ws.read().unwrap(), Message::text(format!("hi {i}")));
            thread::spawn(move || loop {
                match ws.read() {
                    Ok(Message::Close(frame)) => return frame.map(|f| f.code.as_u16()),
                    Ok(_) => {}
                    Err(e) => panic!("before the close: {e}"),
                }
            })
        })
        .collect();
    let mut silent = client(&url);
    silent.send_text("hi").unwrap();
    assert_eq!(silent.read().unwrap(), Message::text("hi"));
    let until = Instant::now() + DEADLINE;
    while shutdown.live() < 4 {
        assert!(Instant::now() < until, "connections not tracked");
        thread::sleep(Duration::from_millis(5));
    }

    let started = Instant::now();
    let grace = Duration::from_millis(700);
    let report = shutdown.run(grace);
    let took = started.elapsed();
    assert_eq!(
        report,
        ShutdownReport {
            live: 4,
            closed: 3,
            cut: 1
        }
    );
    assert!(
        took >= grace,
        "waited for the silent one until the deadline"
    );
    assert!(took < grace + Duration::from_secs(3));
    for client in polite {
        assert_eq!(client.join().unwrap(), Some(1001));
    }
    // The silent client's close frame was sent, then its socket cut.
    match silent.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code.as_u16(), 1001),
        other => panic!("expected the 1001, got {other:?}"),
    }
    // The accept loop ended by itself, and a new client is refused.
    assert_eq!(accept_loop.join().unwrap(), 4);
    match stdws::connect(&url) {
        Err(Error::Io(_)) | Err(Error::Handshake(_)) => {}
        other => panic!("connected after the shutdown: {:?}", other.map(|_| ())),
    }
}

#[test]
fn shutdown_with_no_connections_ends_the_accept_loop_at_once() {
    let shutdown = GracefulShutdown::new();
    let (_url, accept_loop) = server(&shutdown);
    let started = Instant::now();
    let report = shutdown.run(Duration::from_secs(5));
    assert_eq!(report, ShutdownReport::default());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(accept_loop.join().unwrap(), 0);
}
