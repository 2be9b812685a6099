//! Hostile peers during the opening handshake, over real sockets on 127.0.0.1: huge and
//! endless heads, thousands of headers, truncated requests, silent and trickling peers, on
//! the server side and the client side. Each test checks the HTTP answer (where one is due),
//! the error, how long it took, and where a peer could make us allocate, the heap's peak
//! (counting allocator) and this process's peak resident memory. The tests run one at a
//! time (`common::serial`) so the memory figures are their own.

mod common;
#[path = "common/heap.rs"]
mod heap;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    drain, read_until_end, request_lines, serial, serve_one, spawn_bounded, status_of,
    upgrade_request, MemoryWatch, RawConn, XorShift,
};
use heap::HeapWatch;
use stdws::{ClientBuilder, Config, Error, HandshakeError};

/// What the server side of one hostile handshake produced.
struct Refused {
    /// Everything the server wrote back.
    response: String,
    error: Error,
    /// How long `accept_with` took.
    elapsed: Duration,
}

/// Runs `accept_with(config)` on one connection (read timeout `read_timeout`) while
/// `client` drives the raw peer; the peer's side is shut down for writing when `client`
/// returns, and everything the server answered is collected.
fn server_facing(
    config: Config,
    read_timeout: Duration,
    client: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> Refused {
    let server = serve_one(move |stream| {
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        let start = Instant::now();
        let result = stdws::accept_with(&stream, config, |_, _| Ok(())).map(drop);
        let elapsed = start.elapsed();
        // Never close with unread input: that resets the connection and can destroy the
        // answer in flight.
        drain(&stream);
        (result, elapsed)
    });
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let peer = spawn_bounded(move || {
        client(&mut writer);
        let _ = writer.shutdown(Shutdown::Write);
    });
    let (response, _) = read_until_end(&stream, Duration::from_secs(10));
    peer.join(Duration::from_secs(10));
    let (result, elapsed) = server.join_one();
    Refused {
        response: String::from_utf8_lossy(&response).into_owned(),
        error: result.expect_err("the server accepted a hostile handshake"),
        elapsed,
    }
}

fn handshake_error(error: &Error) -> &HandshakeError {
    match error {
        Error::Handshake(e) => e,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The server side.
// ---------------------------------------------------------------------------------------

/// One header line of 1 MiB: 431 after at most `max_head_size` (16 KiB) was read into
/// memory, `HeadTooLarge`.
#[test]
fn one_mib_header_line_is_431() {
    let _serial = serial();
    let mut request = request_lines("/").into_bytes();
    request.extend_from_slice(b"X-Big: ");
    request.extend(std::iter::repeat(b'a').take(1 << 20));
    request.extend_from_slice(b"\r\n\r\n");
    let memory = MemoryWatch::start();
    let heap = HeapWatch::start();
    let refused = server_facing(Config::default(), Duration::from_secs(5), move |s| {
        let _ = s.write_all(&request); // the server may stop reading once it refused
    });
    assert_eq!(status_of(&refused.response), 431, "{}", refused.response);
    assert_eq!(
        *handshake_error(&refused.error),
        HandshakeError::HeadTooLarge
    );
    assert!(
        refused.elapsed < Duration::from_secs(2),
        "{:?}",
        refused.elapsed
    );
    heap.assert_peak_below(256 << 10, "1 MiB header line");
    if let Some(memory) = memory {
        memory.assert_peak_below(8, "1 MiB header line");
    }
}

/// An endless request head (a header line that never ends, written until the server stops
/// reading): 431 after 16 KiB, memory flat.
#[test]
fn endless_request_head_is_431() {
    let _serial = serial();
    let memory = MemoryWatch::start();
    let heap = HeapWatch::start();
    let refused = server_facing(Config::default(), Duration::from_secs(5), |s| {
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = s.write_all(request_lines("/").as_bytes());
        let chunk = [b'x'; 64 << 10];
        let _ = s.write_all(b"X-Endless: ");
        // Up to 64 MiB, or until the server has refused and stopped reading.
        for _ in 0..1024 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    assert_eq!(status_of(&refused.response), 431, "{}", refused.response);
    assert_eq!(
        *handshake_error(&refused.error),
        HandshakeError::HeadTooLarge
    );
    heap.assert_peak_below(256 << 10, "endless request head");
    if let Some(memory) = memory {
        memory.assert_peak_below(8, "endless request head");
    }
}

fn many_headers(count: usize) -> Vec<u8> {
    let mut request = request_lines("/");
    for i in 0..count {
        request.push_str(&format!("X-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Ten thousand headers: 431 `TooManyHeaders` as soon as the 65th header line has arrived
/// (`max_headers` 64), with the default 16 KiB head and with room for all of them (1 MiB).
#[test]
fn ten_thousand_headers_are_431() {
    let _serial = serial();
    let request = many_headers(10_000);
    assert!(request.len() > 16 << 10 && request.len() < 1 << 20);
    for config in [Config::default(), Config::default().max_head_size(1 << 20)] {
        let bytes = request.clone();
        let refused = server_facing(config, Duration::from_secs(5), move |s| {
            let _ = s.write_all(&bytes);
        });
        assert_eq!(status_of(&refused.response), 431, "{}", refused.response);
        assert_eq!(
            *handshake_error(&refused.error),
            HandshakeError::TooManyHeaders
        );
        assert!(
            refused.elapsed < Duration::from_secs(2),
            "{:?}",
            refused.elapsed
        );
    }
}

/// Ten thousand tiny headers trickled (ten per write, a millisecond apart, which takes the
/// client over a second), never ending the head, with room for all of them (1 MiB): 431
/// after the 65th header line, within a few milliseconds of it and long before the client
/// is done, not when the head ends or fills `max_head_size`. The heap stays flat.
#[test]
fn ten_thousand_trickled_headers_are_431_at_the_65th() {
    let _serial = serial();
    let heap = HeapWatch::start();
    let config = Config::default().max_head_size(1 << 20);
    let started = Instant::now();
    let refused = server_facing(config, Duration::from_secs(5), move |s| {
        let _ = s.write_all(request_lines("/").as_bytes());
        for chunk in 0..1000 {
            let lines: String = (0..10).map(|i| format!("X-{chunk}-{i}: v\r\n")).collect();
            if s.write_all(lines.as_bytes()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
    });
    let client_time = started.elapsed();
    assert_eq!(status_of(&refused.response), 431, "{}", refused.response);
    assert_eq!(
        *handshake_error(&refused.error),
        HandshakeError::TooManyHeaders
    );
    // Seven chunks hold the 65th header (request_lines has 5); 7 ms of sleeps.
    assert!(
        refused.elapsed < Duration::from_millis(500),
        "refused after {:?}",
        refused.elapsed
    );
    assert!(client_time > Duration::from_secs(1), "{client_time:?}");
    heap.assert_peak_below(64 << 10, "10,000 trickled headers");
}

/// `Content-Length` that is not plain digits (RFC 9110 §8.6), or two that disagree, in an
/// upgrade request: 400 `Malformed`, on the server; and in a refusal, on the client.
#[test]
fn lenient_content_lengths_are_refused() {
    let _serial = serial();
    for value in [
        "+3",
        "-1",
        "0x3",
        "3 4",
        "",
        "1e3",
        "99999999999999999999999",
        "3\r\nContent-Length: 4",
    ] {
        let mut request = request_lines("/").into_bytes();
        request.extend_from_slice(format!("Content-Length: {value}\r\n\r\n").as_bytes());
        let refused = server_facing(Config::default(), Duration::from_secs(5), move |s| {
            let _ = s.write_all(&request);
        });
        assert_eq!(
            status_of(&refused.response),
            400,
            "{value:?}: {}",
            refused.response
        );
        assert!(
            matches!(handshake_error(&refused.error), HandshakeError::Malformed(what) if what.contains("Content-Length")),
            "{value:?}: {:?}",
            refused.error
        );
    }
    let (url, server) = hostile_server(|raw| {
        raw.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: +3\r\n\r\nabc");
    });
    match ClientBuilder::new(url).connect() {
        Err(Error::Handshake(HandshakeError::Malformed(what))) => {
            assert!(what.contains("Content-Length"), "{what}")
        }
        other => panic!("{:?}", other.map(drop)),
    }
    server.join_one();
}

/// A request cut short at any point, then EOF: `Incomplete` at once (no waiting for the
/// 5 s read timeout), and no answer.
#[test]
fn truncated_request_then_eof_is_incomplete() {
    let _serial = serial();
    let request = upgrade_request("/chat");
    for cut in [
        0,
        1,
        4,
        16,
        40,
        request.len() / 2,
        request.len() - 2,
        request.len() - 1,
    ] {
        let partial = request.as_bytes()[..cut].to_vec();
        let refused = server_facing(Config::default(), Duration::from_secs(5), move |s| {
            s.write_all(&partial).unwrap();
        });
        assert_eq!(
            *handshake_error(&refused.error),
            HandshakeError::Incomplete,
            "cut at {cut}"
        );
        assert!(
            refused.response.is_empty(),
            "cut at {cut}: {}",
            refused.response
        );
        assert!(
            refused.elapsed < Duration::from_secs(1),
            "cut at {cut}: {:?}",
            refused.elapsed
        );
    }
}

/// A client that connects and says nothing, against a server socket with a 200 ms read
/// timeout: `TimedOut` within about that.
#[test]
fn silent_client_times_out_with_the_read_timeout() {
    let _serial = serial();
    let refused = server_facing(Config::default(), Duration::from_millis(200), |_| {
        thread::sleep(Duration::from_millis(700));
    });
    assert_eq!(*handshake_error(&refused.error), HandshakeError::TimedOut);
    assert!(
        refused.elapsed >= Duration::from_millis(150) && refused.elapsed < Duration::from_secs(1),
        "{:?}",
        refused.elapsed
    );
}

/// Sends `bytes` one byte every 50 ms for at most `within`.
fn trickle(stream: &mut TcpStream, bytes: &[u8], within: Duration) {
    let start = Instant::now();
    for byte in bytes {
        if start.elapsed() >= within || stream.write_all(&[*byte]).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A slowloris client (one byte of a valid request every 50 ms) against a server socket
/// with a 200 ms read timeout: no read ever times out, but `Config::handshake_timeout`
/// (500 ms) ends the handshake with `TimedOut` within about that.
#[test]
fn slowloris_client_is_cut_by_the_handshake_timeout() {
    let _serial = serial();
    let config = Config::default().handshake_timeout(Some(Duration::from_millis(500)));
    let request = upgrade_request("/");
    let refused = server_facing(config, Duration::from_millis(200), move |s| {
        trickle(s, request.as_bytes(), Duration::from_millis(1600));
    });
    assert_eq!(*handshake_error(&refused.error), HandshakeError::TimedOut);
    assert!(
        refused.elapsed >= Duration::from_millis(450)
            && refused.elapsed < Duration::from_millis(1500),
        "{:?}",
        refused.elapsed
    );
}

/// Without a handshake deadline only the per-read timeout applies, and a slowloris keeps
/// the handshake going as long as it trickles: here 1.5 s against a 200 ms read timeout,
/// ending 200 ms after it stops sending.
#[test]
fn without_a_handshake_timeout_a_slowloris_holds_the_handshake() {
    let _serial = serial();
    let config = Config::default().handshake_timeout(None);
    let request = upgrade_request("/");
    let refused = server_facing(config, Duration::from_millis(200), move |s| {
        trickle(s, request.as_bytes(), Duration::from_millis(1500));
        thread::sleep(Duration::from_millis(500)); // silent, connection still open
    });
    assert_eq!(*handshake_error(&refused.error), HandshakeError::TimedOut);
    assert!(
        refused.elapsed >= Duration::from_millis(1500) && refused.elapsed < Duration::from_secs(3),
        "{:?}",
        refused.elapsed
    );
}

/// Random bytes instead of a request (several seeds, some with a plausible start): every
/// one ends in an error, 400/431 or no answer, never a hang or a panic.
#[test]
fn random_bytes_instead_of_a_request_are_refused() {
    let _serial = serial();
    for seed in 1..=16u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let len = [3, 50, 500, 5000, 20_000][(seed % 5) as usize];
        let mut bytes = rng.bytes(len);
        if seed % 2 == 0 {
            // A valid request line, then garbage, sometimes with a blank line in it.
            let mut start = b"GET / HTTP/1.1\r\n".to_vec();
            start.extend_from_slice(&bytes);
            if seed % 4 == 0 {
                start.extend_from_slice(b"\r\n\r\n");
            }
            bytes = start;
        }
        let refused = server_facing(Config::default(), Duration::from_secs(5), move |s| {
            let _ = s.write_all(&bytes);
        });
        let error = handshake_error(&refused.error);
        let status = (!refused.response.is_empty()).then(|| status_of(&refused.response));
        match error {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => {
                assert_eq!(status, Some(431), "seed {seed}: {error:?}")
            }
            HandshakeError::Incomplete => assert_eq!(status, None, "seed {seed}"),
            HandshakeError::Malformed(_)
            | HandshakeError::Method(_)
            | HandshakeError::HttpVersion
            | HandshakeError::Header(_)
            | HandshakeError::UnsupportedVersion => {
                assert!(
                    matches!(status, Some(400 | 405 | 426 | 505)),
                    "seed {seed}: {error:?} answered with {status:?}"
                )
            }
            other => panic!("seed {seed}: unexpected {other:?}"),
        }
        assert!(refused.elapsed < Duration::from_secs(2), "seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// The client side.
// ---------------------------------------------------------------------------------------

/// A raw server on 127.0.0.1 that reads the client's request and then runs `answer`.
fn hostile_server(
    answer: impl FnOnce(&mut RawConn) + Send + 'static,
) -> (String, common::Server<()>) {
    let server = serve_one(move |stream| {
        let mut raw = RawConn::new(stream);
        raw.read_head();
        answer(&mut raw);
        // Wait for the client to give up, so nothing we sent is destroyed by a reset.
        let _ = read_until_end(&raw.stream, Duration::from_secs(5));
    });
    (server.url("/"), server)
}

/// A server that accepts TCP but never answers (it never even calls `accept`: the kernel
/// completes the connection): `connect` with a 300 ms handshake timeout fails with
/// `TimedOut` in well under 2 s.
#[test]
fn server_that_never_answers_times_out() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let start = Instant::now();
    let result = ClientBuilder::new(url)
        .handshake_timeout(Some(Duration::from_millis(300)))
        .connect();
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::TimedOut))),
        "{:?}",
        result.map(drop)
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    drop(listener);
}

/// A server that trickles its 101 response, one byte every 50 ms: each read returns in
/// time, but the 300 ms handshake timeout ends the handshake with `TimedOut` within about
/// that.
#[test]
fn server_trickling_its_response_times_out() {
    let _serial = serial();
    let (url, server) = hostile_server(|raw| {
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        trickle(&mut raw.stream, head.as_bytes(), Duration::from_secs(5));
    });
    let start = Instant::now();
    let result = ClientBuilder::new(url)
        .handshake_timeout(Some(Duration::from_millis(300)))
        .connect();
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::TimedOut))),
        "{:?}",
        result.map(drop)
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    server.join_one();
}

/// Writes up to 64 MiB of `chunk` after `head`, until the client stops reading.
fn endless(raw: &mut RawConn, head: &[u8], chunk: &[u8]) {
    raw.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    if raw.stream.write_all(head).is_err() {
        return;
    }
    let mut written = 0;
    while written < 64 << 20 {
        match raw.stream.write_all(chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A server whose response head never ends (one endless header line): `HeadTooLarge`
/// after 16 KiB, memory flat.
#[test]
fn endless_response_head_is_head_too_large() {
    let _serial = serial();
    let memory = MemoryWatch::start();
    let heap = HeapWatch::start();
    let (url, server) = hostile_server(|raw| {
        endless(
            raw,
            b"HTTP/1.1 101 Switching Protocols\r\nX-Endless: ",
            &[b'y'; 64 << 10],
        );
    });
    let result = ClientBuilder::new(url).connect();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::HeadTooLarge))),
        "{:?}",
        result.map(drop)
    );
    server.join_one();
    heap.assert_peak_below(256 << 10, "endless response head");
    if let Some(memory) = memory {
        memory.assert_peak_below(8, "endless response head");
    }
}

/// A server that sends header line after header line, endlessly or 5,000 of them in a head
/// that fits: refused as too many (`max_headers` 64) as soon as the 65th line arrives,
/// whatever `max_head_size` (16 KiB by default, 1 MiB here) would allow.
#[test]
fn many_response_headers_are_refused() {
    let _serial = serial();
    let lines: Vec<u8> = (0..5000)
        .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
        .collect();
    let big = Config::default().max_head_size(1 << 20);
    for (config, end, expected) in [
        (Config::default(), false, HandshakeError::TooManyHeaders),
        (big.clone(), false, HandshakeError::TooManyHeaders),
        (big, true, HandshakeError::TooManyHeaders),
    ] {
        let chunk = lines.clone();
        let (url, server) = hostile_server(move |raw| {
            if end {
                let mut head = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
                head.extend_from_slice(&chunk);
                head.extend_from_slice(b"\r\n");
                raw.send(&head);
            } else {
                endless(raw, b"HTTP/1.1 101 Switching Protocols\r\n", &chunk);
            }
        });
        let result = ClientBuilder::new(url).config(config).connect();
        match result {
            Err(Error::Handshake(e)) => assert_eq!(e, expected),
            other => panic!("{:?}", other.map(drop)),
        }
        server.join_one();
    }
}

/// A refusal (400) announcing a 1 GB body and sending an endless one: the client keeps at
/// most 64 KiB of it in `Error::Http` and returns without waiting for the rest.
#[test]
fn endless_refusal_body_is_cut_at_64_kib() {
    let _serial = serial();
    let memory = MemoryWatch::start();
    let heap = HeapWatch::start();
    let (url, server) = hostile_server(|raw| {
        endless(
            raw,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 1000000000\r\n\r\n",
            &[b'z'; 64 << 10],
        );
    });
    let start = Instant::now();
    let result = ClientBuilder::new(url).connect();
    match result {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            assert_eq!(response.body().len(), 64 << 10);
        }
        other => panic!("{:?}", other.map(drop)),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    server.join_one();
    heap.assert_peak_below(512 << 10, "endless refusal body");
    if let Some(memory) = memory {
        memory.assert_peak_below(8, "endless refusal body");
    }
}
