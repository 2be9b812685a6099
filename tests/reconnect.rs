//! The reconnecting client (`ClientBuilder::reconnecting`) against real servers on
//! 127.0.0.1: a server that is killed and restarted (refusing meanwhile) and then answers
//! 503 before 101; refusals that are not retried; the attempt limit; `Retry-After`; stopping
//! from another thread. Backoff windows are a few milliseconds so every test is quick.

mod common;

use std::net::{Shutdown, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{accept_within, serve, RawConn};
use stdws::{Backoff, ClientBuilder, Error, Message};

fn quick() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 2.0)
}

/// Answers one request with `head` (a whole response head) and returns the request.
fn answer(stream: std::net::TcpStream, head: &str) -> String {
    let mut conn = RawConn::new(stream);
    let request = conn.read_head();
    conn.send(head.as_bytes());
    request
}

#[test]
fn survives_a_restart_refusals_and_a_503() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        // First life: one connection, one message, then the server dies (no close frame).
        let mut ws = stdws::accept(accept_within(&listener)).unwrap();
        ws.send_text("life 1").unwrap();
        ws.get_ref().shutdown(Shutdown::Both).unwrap();
        drop((ws, listener));
        // Down for a while: connections are refused.
        thread::sleep(Duration::from_millis(300));
        // Second life: busy at first, then accepting.
        let listener = TcpListener::bind(addr).expect("rebind the same port");
        answer(
            accept_within(&listener),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        );
        let mut ws = stdws::accept(accept_within(&listener)).unwrap();
        ws.send_text("life 2").unwrap();
        let _ = ws.close_and_wait(1000, "bye", Duration::from_secs(5));
    });

    let retried = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&retried);
    let start = Instant::now();
    let mut received = Vec::new();
    let mut connections = 0;
    for connection in ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting()
        .backoff(quick())
        .on_retry(move |error, delay| log.lock().unwrap().push((error.to_string(), delay)))
    {
        let (mut ws, response) = connection.expect("every failure here is retried");
        assert_eq!(response.status(), 101);
        connections += 1;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => received.push(text),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if received.len() == 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "took too long");
    }
    server.join().unwrap();
    assert_eq!(received, ["life 1", "life 2"]);
    assert_eq!(connections, 2);
    let retried = retried.lock().unwrap();
    assert!(
        retried.iter().any(|(e, _)| e.contains("refused")),
        "no refusal retried: {retried:?}"
    );
    assert!(
        retried.iter().any(|(e, _)| e.contains("HTTP 503")),
        "the 503 was not retried: {retried:?}"
    );
    assert!(retried
        .iter()
        .all(|(_, d)| *d <= Duration::from_millis(100)));
}

#[test]
fn client_errors_end_the_iteration_with_the_refusal() {
    for status in [401, 403, 404, 400] {
        let server = serve(1, move |stream| {
            answer(
                stream,
                &format!("HTTP/1.1 {status} No\r\nContent-Length: 2\r\n\r\nno"),
            )
        });
        let mut connections = ClientBuilder::new(server.url("/"))
            .reconnecting()
            .backoff(quick());
        match connections.next() {
            Some(Err(Error::Http(response))) => {
                assert_eq!(response.status(), status);
                assert_eq!(response.body(), b"no");
            }
            other => panic!("{status}: expected the refusal, got {other:?}"),
        }
        assert!(connections.next().is_none());
        assert_eq!(server.join().len(), 1, "{status} was retried");
    }
}

#[test]
fn gives_up_after_the_attempt_limit() {
    // A port where nothing listens.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let retries = Arc::new(Mutex::new(0));
    let count = Arc::clone(&retries);
    let mut connections = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting()
        .backoff(quick())
        .max_attempts(Some(3))
        .on_retry(move |_, _| *count.lock().unwrap() += 1);
    match connections.next() {
        Some(Err(Error::Io(e))) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(connections.failed_attempts(), 3);
    assert_eq!(*retries.lock().unwrap(), 2);
    assert!(connections.next().is_none());
}

#[test]
fn honours_retry_after_on_429() {
    let mut first = true;
    let server = serve(2, move |stream| {
        let mut conn = RawConn::new(stream);
        if std::mem::take(&mut first) {
            conn.read_head();
            conn.send(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
            );
        } else {
            conn.accept_upgrade("", &[]);
        }
        Instant::now()
    });
    let waited = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&waited);
    let mut connections = ClientBuilder::new(server.url("/"))
        .reconnecting()
        .backoff(Backoff::new(
            Duration::from_millis(1),
            Duration::from_secs(5),
            2.0,
        ))
        .on_retry(move |_, delay| log.lock().unwrap().push(delay));
    let (_ws, response) = connections.next().unwrap().unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(*waited.lock().unwrap(), [Duration::from_secs(1)]);
    let times = server.join();
    assert!(times[1].duration_since(times[0]) >= Duration::from_millis(990));
}

#[test]
fn a_stop_handle_ends_a_long_wait() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut connections = ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting()
        .backoff(Backoff::new(
            Duration::from_secs(30),
            Duration::from_secs(30),
            1.0,
        ));
    let stop = connections.stop_handle();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        stop.stop();
    });
    let start = Instant::now();
    // The backoff's delay may happen to be tiny (full jitter): loop until stopped.
    while connections.next().is_some() {}
    stopper.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_server_that_drops_every_connection_at_once_is_not_hammered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = thread::spawn(move || {
        let end = Instant::now() + Duration::from_millis(1500);
        let mut accepted = 0;
        while Instant::now() < end {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    common::set_timeouts(&stream);
                    // Upgrade, then drop the connection at once.
                    if stdws::accept(stream).is_ok() {
                        accepted += 1;
                    }
                }
                Err(_) => thread::sleep(Duration::from_millis(1)),
            }
        }
        accepted
    });
    // Windows 100 ms, 200 ms, 400 ms, 800 ms, 1 s: with the window growing while
    // connections keep ending at once, one second holds a handful of reconnects (a window
    // reset after each would make it about twenty).
    let start = Instant::now();
    let mut connections = 0;
    for connection in ClientBuilder::new(format!("ws://{addr}/"))
        .reconnecting()
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            2.0,
        ))
        .max_attempts(Some(3))
    {
        let Ok((mut ws, _)) = connection else { break };
        connections += 1;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        while ws.read().is_ok() {}
        if start.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    let accepted = server.join().unwrap();
    assert!(connections >= 2, "{connections} connections");
    assert!(connections < 15, "{connections} connections in 1 s");
    assert!(accepted >= connections);
}

#[cfg(feature = "rustls")]
#[test]
fn reconnecting_tls_retries_a_503_over_tls() {
    use std::io::{Read, Write};
    use stdws::tls::rustls::{ServerConnection, StreamOwned};

    let (server_config, client_config) = common::tls_pair();

    let mut first = true;
    let server = serve(2, move |stream| {
        if std::mem::take(&mut first) {
            let conn = ServerConnection::new(Arc::clone(&server_config)).unwrap();
            let mut tls = StreamOwned::new(conn, stream);
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") {
                tls.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            tls.write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        } else {
            let mut ws = stdws::tls::accept(stream, Arc::clone(&server_config)).unwrap();
            ws.send_text("secure").unwrap();
            let _ = ws.close_and_wait(1000, "", Duration::from_secs(5));
        }
    });
    let retried = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&retried);
    let mut connections = ClientBuilder::new(format!("wss://localhost:{}/", server.addr.port()))
        .tls_config(client_config)
        .reconnecting_tls()
        .backoff(quick())
        .on_retry(move |e, _| log.lock().unwrap().push(e.to_string()));
    let (mut ws, _) = connections.next().unwrap().unwrap();
    assert!(ws.get_ref().is_tls());
    ws.get_ref()
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("secure".into()));
    ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    server.join();
    let retried = retried.lock().unwrap();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!(retried[0].contains("HTTP 503"), "{retried:?}");
}
