//! `stdws::Server` over 127.0.0.1: the handshake timeout is on by default and catches silent
//! and trickling clients; normal clients get through with the socket's timeouts restored;
//! a refused client reads its answer and the lingering after a refusal is bounded.

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    read_until_end, request_lines, serial, spawn_bounded, status_of, upgrade_request, Bounded,
};
use stdws::{Config, Error, HandshakeError, Message, PendingConnection, Rejection, Server};

/// A `Server` on 127.0.0.1:0 with `config` that accepts one connection and runs `handshake`
/// on it; the thread returns its result and how long `handshake` took.
fn one_connection<R: Send + 'static>(
    config: Config,
    handshake: impl FnOnce(PendingConnection) -> R + Send + 'static,
) -> (SocketAddr, Bounded<(R, Duration)>) {
    let server = Server::bind("127.0.0.1:0").unwrap().config(config);
    let addr = server.local_addr().unwrap();
    let thread = spawn_bounded(move || {
        let pending = server.accept().unwrap();
        assert_eq!(pending.peer_addr(), pending.get_ref().peer_addr().unwrap());
        let start = Instant::now();
        let result = handshake(pending);
        (result, start.elapsed())
    });
    (addr, thread)
}

fn short_timeout() -> Config {
    Config::default().handshake_timeout(Some(Duration::from_millis(300)))
}

fn timed_out(result: &Result<impl Sized, Error>) -> bool {
    matches!(result, Err(Error::Handshake(HandshakeError::TimedOut)))
}

#[test]
fn handshake_timeout_is_on_by_default() {
    assert_eq!(
        Config::default().handshake_timeout,
        Some(Duration::from_secs(10))
    );
}

/// A client that connects and sends nothing, with no timeout set by the application: the
/// server's handshake fails with `TimedOut` after the 300 ms handshake timeout.
#[test]
fn silent_client_times_out() {
    let _serial = serial();
    let (addr, server) = one_connection(short_timeout(), PendingConnection::accept);
    let client = TcpStream::connect(addr).unwrap();
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(timed_out(&result), "{:?}", result.map(drop));
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1000),
        "{elapsed:?}"
    );
    // Nothing was answered: the client just sees the connection end.
    let (response, _) = read_until_end(&client, Duration::from_secs(2));
    assert!(response.is_empty(), "{response:?}");
}

/// The same through `read_request` and `accept_with`.
#[test]
fn silent_client_times_out_on_every_path() {
    let _serial = serial();
    let (addr, server) = one_connection(short_timeout(), |p| p.read_request().map(drop));
    let _client = TcpStream::connect(addr).unwrap();
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(timed_out(&result), "{result:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    let (addr, server) =
        one_connection(short_timeout(), |p| p.accept_with(|_, _| Ok(())).map(drop));
    let _client = TcpStream::connect(addr).unwrap();
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(timed_out(&result), "{result:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

/// A client that trickles a valid request, one byte every 50 ms (so no read ever times
/// out): `TimedOut` once the 300 ms have passed, within twice that at most.
#[test]
fn trickling_client_times_out() {
    let _serial = serial();
    let (addr, server) = one_connection(short_timeout(), PendingConnection::accept);
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_nodelay(true).unwrap();
    let trickler = spawn_bounded(move || {
        for byte in upgrade_request("/").bytes() {
            if client.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(timed_out(&result), "{:?}", result.map(drop));
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(650),
        "{elapsed:?}"
    );
    trickler.join(Duration::from_secs(10));
}

/// A normal client connects and echoes; during the handshake the socket had the handshake
/// timeouts, afterwards it has none, and `TCP_NODELAY` is on.
#[test]
fn normal_client_works_and_timeouts_are_cleared() {
    let (addr, server) = one_connection(short_timeout(), |pending| -> stdws::Result<_> {
        let mut during = None;
        let mut ws = pending.accept_with(|req, _| {
            during = Some(req.path().to_owned());
            Ok(())
        })?;
        let socket = ws.get_ref();
        let after = (
            socket.read_timeout()?,
            socket.write_timeout()?,
            socket.nodelay()?,
        );
        let msg = ws.read()?;
        ws.send(msg)?;
        assert!(matches!(ws.read()?, Message::Close(_)));
        Ok((during, after))
    });
    let (mut ws, response) = stdws::connect(&format!("ws://{addr}/chat")).unwrap();
    assert_eq!(response.status(), 101);
    ws.send_text("hello").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    let (result, _) = server.join(Duration::from_secs(5));
    let (path, after) = result.unwrap();
    assert_eq!(path.as_deref(), Some("/chat"));
    assert_eq!(after, (None, None, true));
}

/// Timeouts the application set before the handshake are put back afterwards, on both
/// the `accept` and the `read_request` paths; while the request is read, the handshake
/// timeout applies.
#[test]
fn timeouts_set_before_the_handshake_are_restored() {
    let mine = Some(Duration::from_secs(7));
    let (addr, server) = one_connection(short_timeout(), move |pending| {
        pending.get_ref().set_read_timeout(mine).unwrap();
        let incoming = pending.read_request().unwrap();
        let socket = incoming.get_ref();
        let after = (
            socket.read_timeout().unwrap(),
            socket.write_timeout().unwrap(),
        );
        incoming.respond(200, "text/plain", b"plain HTTP").unwrap();
        after
    });
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (response, _) = read_until_end(&client, Duration::from_secs(5));
    let response = String::from_utf8_lossy(&response);
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.ends_with("plain HTTP"), "{response}");
    let (after, _) = server.join(Duration::from_secs(5));
    assert_eq!(after, (mine, None));
}

/// `handshake_timeout(None)` means no timeout: a silent client is still waiting after
/// 500 ms (the client ends it by closing).
#[test]
fn no_handshake_timeout_means_no_socket_timeout() {
    let _serial = serial();
    let config = Config::default().handshake_timeout(None);
    let (addr, server) = one_connection(config, PendingConnection::accept);
    let client = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(500));
    client.shutdown(Shutdown::Both).unwrap();
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::Incomplete))),
        "{:?}",
        result.map(drop)
    );
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
}

/// A client that sends one 1 MiB header line (and only then reads) gets the 431 status
/// line: the server shuts its side down after the answer and reads on for a while before
/// closing, instead of closing on unread input (a reset).
#[test]
fn client_sending_a_huge_head_reads_the_431() {
    let _serial = serial();
    let (addr, server) = one_connection(Config::default(), PendingConnection::accept);
    let client = TcpStream::connect(addr).unwrap();
    let mut writer = client.try_clone().unwrap();
    let mut request = request_lines("/").into_bytes();
    request.extend_from_slice(b"X-Big: ");
    request.extend(std::iter::repeat(b'a').take(1 << 20));
    request.extend_from_slice(b"\r\n\r\n");
    let sender = spawn_bounded(move || writer.write_all(&request).map_err(|e| e.kind()));
    // Read only once the whole request was written, or the server stopped taking it.
    let _ = sender.join(Duration::from_secs(10));
    let (response, _) = read_until_end(&client, Duration::from_secs(5));
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response:?}"
    );
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::HeadTooLarge))),
        "{:?}",
        result.map(drop)
    );
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

/// Lingering after a refusal is bounded: a client that goes on sending as fast as it can
/// is cut after 64 KiB (well before the 1 s limit), one that neither sends nor closes after
/// 1 s, and one that closes at once is not waited for.
#[test]
fn lingering_after_a_refusal_is_bounded() {
    let _serial = serial();
    let refuse = |p: PendingConnection| {
        p.accept_with(|_, _| Err(Rejection::new(403, "no")))
            .map(drop)
    };
    let rejected = |result: &Result<(), Error>| {
        matches!(result, Err(Error::Handshake(HandshakeError::Rejected(403))))
    };

    // Sends forever.
    let (addr, server) = one_connection(Config::default(), refuse);
    let mut client = TcpStream::connect(addr).unwrap();
    let reader = client.try_clone().unwrap();
    let flood = spawn_bounded(move || {
        let _ = client.write_all(upgrade_request("/").as_bytes());
        let chunk = [b'x'; 16 << 10];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) && client.write_all(&chunk).is_ok() {}
    });
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(rejected(&result), "{result:?}");
    assert!(elapsed < Duration::from_millis(700), "flood: {elapsed:?}");
    let (response, _) = read_until_end(&reader, Duration::from_secs(5));
    assert_eq!(status_of(&String::from_utf8_lossy(&response)), 403);
    flood.join(Duration::from_secs(10));

    // Silent and open.
    let (addr, server) = one_connection(Config::default(), refuse);
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(upgrade_request("/").as_bytes()).unwrap();
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(rejected(&result), "{result:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1500),
        "silent: {elapsed:?}"
    );

    // Reads the answer and closes.
    let (addr, server) = one_connection(Config::default(), refuse);
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(upgrade_request("/").as_bytes()).unwrap();
    let (response, _) = read_until_end(&client, Duration::from_secs(5));
    assert_eq!(status_of(&String::from_utf8_lossy(&response)), 403);
    drop(client);
    let (result, elapsed) = server.join(Duration::from_secs(5));
    assert!(rejected(&result), "{result:?}");
    assert!(elapsed < Duration::from_millis(500), "closing: {elapsed:?}");
}

/// `incoming` hands out one pending connection per client, each with its peer address.
#[test]
fn incoming_yields_each_connection() {
    let server = Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let acceptor = spawn_bounded(move || {
        server
            .incoming()
            .take(2)
            .map(|pending| {
                let pending = pending.unwrap();
                let peer = pending.peer_addr();
                let mut ws = pending.accept().unwrap();
                ws.send_text(&peer.to_string()).unwrap();
                ws.close_and_wait(1000, "", Duration::from_secs(5)).ok();
                peer
            })
            .collect::<Vec<_>>()
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (mut ws, _) = stdws::connect(&format!("ws://{addr}/")).unwrap();
        let local = ws.get_ref().local_addr().unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(local.to_string()));
        let _ = ws.read();
        seen.push(local);
    }
    assert_eq!(acceptor.join(Duration::from_secs(10)), seen);
}
