//! The opening handshake over TCP: the server's answers to raw requests, `accept_with`
//! callbacks, subprotocols, and the client's checks of a raw server's answer.

mod common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    body_of, client_frame, header_of, raw_exchange, request_lines, serve_on, serve_one,
    server_frame, status_of, upgrade_request, RawConn, RFC_ACCEPT,
};
use stdws::handshake::derive_accept_key;
use stdws::{
    ClientBuilder, Config, Error, HandshakeError, Message, Rejection, Response, UrlError, WebSocket,
};

/// Sends `request` to `accept_with(config)` and returns the whole HTTP response and what
/// `accept_with` returned.
fn exchange(config: Config, request: &[u8]) -> (String, stdws::Result<()>) {
    let server = serve_one(move |stream| {
        let result = stdws::accept_with(&stream, config, |_, _| Ok(())).map(drop);
        common::finish(&stream);
        result
    });
    let response = raw_exchange(server.addr, request);
    (response, server.join_one())
}

/// A refused request: checks the status and returns the response and the server's error.
fn refused(config: Config, request: &str, status: u16) -> (String, HandshakeError) {
    let (response, result) = exchange(config, request.as_bytes());
    assert_eq!(status_of(&response), status, "response: {response}");
    assert_eq!(
        header_of(&response, "Connection").as_deref(),
        Some("close"),
        "refusals close the connection"
    );
    let length: usize = header_of(&response, "Content-Length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(body_of(&response).len(), length);
    match result {
        Err(Error::Handshake(e)) => (response, e),
        other => panic!("accept_with should fail with a handshake error, got {other:?}"),
    }
}

/// The default valid request with `from` replaced by `to`.
fn request_with(from: &str, to: &str) -> String {
    let request = upgrade_request("/chat");
    assert!(request.contains(from), "{from:?} not in the request");
    request.replacen(from, to, 1)
}

#[test]
fn post_is_405_with_allow_get() {
    let (response, e) = refused(
        Config::default(),
        &request_with("GET /chat", "POST /chat"),
        405,
    );
    assert_eq!(header_of(&response, "Allow").as_deref(), Some("GET"));
    assert_eq!(e, HandshakeError::Method("POST".into()));
}

#[test]
fn http_1_0_is_505() {
    let (_, e) = refused(
        Config::default(),
        &request_with("HTTP/1.1", "HTTP/1.0"),
        505,
    );
    assert_eq!(e, HandshakeError::HttpVersion);
}

#[test]
fn missing_host_is_400() {
    let (_, e) = refused(
        Config::default(),
        &request_with("Host: 127.0.0.1\r\n", ""),
        400,
    );
    assert!(matches!(e, HandshakeError::Header(_)), "{e:?}");
}

#[test]
fn upgrade_to_another_protocol_is_400() {
    let (_, e) = refused(
        Config::default(),
        &request_with("Upgrade: websocket", "Upgrade: h2c"),
        400,
    );
    assert!(matches!(e, HandshakeError::Header(_)), "{e:?}");
}

#[test]
fn missing_connection_upgrade_is_400() {
    let (_, e) = refused(
        Config::default(),
        &request_with("Connection: Upgrade", "Connection: keep-alive"),
        400,
    );
    assert!(matches!(e, HandshakeError::Header(_)), "{e:?}");
}

#[test]
fn version_8_is_426_naming_version_13() {
    let (response, e) = refused(
        Config::default(),
        &request_with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        426,
    );
    assert_eq!(
        header_of(&response, "Sec-WebSocket-Version").as_deref(),
        Some("13")
    );
    assert_eq!(e, HandshakeError::UnsupportedVersion);
}

#[test]
fn key_of_10_bytes_is_400() {
    // "AAAAAAAAAAAAAA==" is base64 for 10 zero bytes.
    let (_, e) = refused(
        Config::default(),
        &request_with(common::RFC_KEY, "AAAAAAAAAAAAAA=="),
        400,
    );
    assert!(matches!(e, HandshakeError::Header(_)), "{e:?}");
}

#[test]
fn plain_http_get_is_426() {
    let (response, _) = refused(
        Config::default(),
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        426,
    );
    assert_eq!(
        header_of(&response, "Upgrade").as_deref(),
        Some("websocket")
    );
}

#[test]
fn garbage_request_line_is_400() {
    let (_, e) = refused(Config::default(), "HELLO\r\n\r\n", 400);
    assert!(matches!(e, HandshakeError::Malformed(_)), "{e:?}");
}

#[test]
fn head_larger_than_max_head_size_is_431() {
    let padded = request_lines("/") + &format!("X-Pad: {}\r\n\r\n", "p".repeat(2000));
    let (_, e) = refused(Config::default().max_head_size(1024), &padded, 431);
    assert_eq!(e, HandshakeError::HeadTooLarge);
}

#[test]
fn max_head_size_is_inclusive() {
    let request = upgrade_request("/");
    let (response, result) = exchange(
        Config::default().max_head_size(request.len()),
        request.as_bytes(),
    );
    assert_eq!(status_of(&response), 101, "{response}");
    result.unwrap();
    let (_, e) = refused(
        Config::default().max_head_size(request.len() - 1),
        &request,
        431,
    );
    assert_eq!(e, HandshakeError::HeadTooLarge);
}

#[test]
fn more_headers_than_max_headers_is_431() {
    let mut request = request_lines("/");
    for i in 0..70 {
        request.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let (_, e) = refused(Config::default(), &request, 431);
    assert_eq!(e, HandshakeError::TooManyHeaders);
}

#[test]
fn max_headers_is_inclusive() {
    // The request has exactly 5 header lines.
    let request = upgrade_request("/");
    let (response, result) = exchange(Config::default().max_headers(5), request.as_bytes());
    assert_eq!(status_of(&response), 101, "{response}");
    result.unwrap();
    let (_, e) = refused(Config::default().max_headers(4), &request, 431);
    assert_eq!(e, HandshakeError::TooManyHeaders);
}

#[test]
fn token_lists_and_mixed_case_upgrade_are_accepted() {
    let request = request_with("Connection: Upgrade", "Connection: keep-alive, Upgrade").replacen(
        "Upgrade: websocket",
        "Upgrade: WebSocket",
        1,
    );
    let (response, result) = exchange(Config::default(), request.as_bytes());
    result.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{response}"
    );
    assert_eq!(
        header_of(&response, "Sec-WebSocket-Accept").as_deref(),
        Some(RFC_ACCEPT)
    );
    assert!(header_of(&response, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(header_of(&response, "Connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    // A 101 has no body and nothing follows it until the server sends frames.
    assert!(response.ends_with("\r\n\r\n"));
}

#[test]
fn header_names_are_case_insensitive() {
    let request = upgrade_request("/")
        .replace("Host:", "host:")
        .replace("Upgrade: websocket", "UPGRADE: websocket")
        .replace("Connection:", "connection:")
        .replace("Sec-WebSocket-Key:", "sec-websocket-key:")
        .replace("Sec-WebSocket-Version:", "SEC-WEBSOCKET-VERSION:");
    let (response, result) = exchange(Config::default(), request.as_bytes());
    result.unwrap();
    assert_eq!(status_of(&response), 101, "{response}");
    assert_eq!(
        header_of(&response, "Sec-WebSocket-Accept").as_deref(),
        Some(RFC_ACCEPT)
    );
}

#[test]
fn permessage_deflate_offer_is_not_accepted() {
    let request = request_lines("/")
        + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let (response, result) = exchange(Config::default(), request.as_bytes());
    result.unwrap();
    assert_eq!(status_of(&response), 101);
    assert_eq!(header_of(&response, "Sec-WebSocket-Extensions"), None);
}

/// A server that accepts, reads one message, and ends the connection cleanly.
fn read_one_message(stream: TcpStream) -> stdws::Result<Message> {
    let result = stdws::accept(&stream).and_then(|mut ws| ws.read());
    common::finish(&stream);
    result
}

#[test]
fn request_head_arriving_one_byte_at_a_time_completes() {
    let server = serve_one(read_one_message);
    let mut raw = RawConn::connect(server.addr);
    for byte in upgrade_request("/slow").bytes() {
        raw.send(&[byte]);
        thread::sleep(Duration::from_millis(1));
    }
    let head = raw.read_head();
    assert_eq!(status_of(&head), 101);
    raw.send(&client_frame(true, 1, b"slow"));
    assert!(raw.read_to_end().is_empty());
    drop(raw); // the server waits for our side to close
    assert_eq!(server.join_one().unwrap(), Message::text("slow"));
}

#[test]
fn frame_sent_with_the_request_head_is_the_first_message() {
    let server = serve_one(|stream| {
        let result = stdws::accept(&stream).and_then(|mut ws| {
            let mut messages = Vec::new();
            for _ in 0..3 {
                messages.push(ws.read()?);
            }
            // The pong is queued; it goes out with the next write or flush.
            ws.flush()?;
            Ok(messages)
        });
        common::finish(&stream);
        result
    });
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend(client_frame(true, 1, b"early"));
    bytes.extend(client_frame(true, 9, b"p"));
    bytes.extend(client_frame(true, 2, &[3; 100_000]));
    let mut raw = RawConn::connect(server.addr);
    raw.send(&bytes);
    assert_eq!(status_of(&raw.read_head()), 101);
    // The pong for the ping follows the 101.
    let pong = raw.read_frame();
    assert_eq!((pong.opcode, pong.payload), (0xA, b"p".to_vec()));
    assert!(raw.read_to_end().is_empty());
    drop(raw); // the server waits for our side to close
    assert_eq!(
        server.join_one().unwrap(),
        [
            Message::text("early"),
            Message::Ping(b"p".to_vec()),
            Message::binary(vec![3; 100_000]),
        ]
    );
}

#[test]
fn handshake_read_timeout_is_timed_out() {
    let server = serve_one(|stream| {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let result = stdws::accept(&stream).map(drop);
        let elapsed = start.elapsed();
        common::finish(&stream);
        (result, elapsed)
    });
    let mut raw = RawConn::connect(server.addr);
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n"); // never finished
    raw.read_to_end();
    drop(raw); // the server waits for our side to close
    let (result, elapsed) = server.join_one();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::TimedOut))),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(3));
}

#[test]
fn stream_ending_inside_the_head_is_incomplete() {
    let server = serve_one(|stream| stdws::accept(&stream).map(drop));
    let mut raw = RawConn::connect(server.addr);
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let result = server.join_one();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::Incomplete))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------
// accept_with and subprotocols, with the library's client.
// ---------------------------------------------------------------------------------------

fn close(mut ws: WebSocket<TcpStream>) {
    ws.close_and_wait(1000, "", Duration::from_secs(5))
        .expect("closing handshake");
}

#[derive(Debug, PartialEq)]
struct Seen {
    uri: String,
    path: String,
    query: Option<String>,
    origin: Option<String>,
    authorization: Option<String>,
    protocols: Vec<String>,
}

#[test]
fn accept_with_callback_sees_the_request() {
    let server = serve_one(|stream| {
        let mut seen = None;
        let mut ws = stdws::accept_with(stream, Config::default(), |req, resp| {
            seen = Some(Seen {
                uri: req.uri().to_owned(),
                path: req.path().to_owned(),
                query: req.query().map(str::to_owned),
                origin: req.origin().map(str::to_owned),
                authorization: req.header("authorization").map(str::to_owned),
                protocols: req.subprotocols().map(str::to_owned).collect(),
            });
            resp.append_header("X-Custom", "yes");
            Ok(())
        })?;
        common::echo_ws(&mut ws)?;
        Ok::<_, Error>(seen.expect("callback ran"))
    });
    let (ws, response) = ClientBuilder::new(server.url("/chat/room?x=1&y=2"))
        .header("Origin", "http://example.com")
        .header("Authorization", "Bearer t0k3n")
        .connect()
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.header("X-Custom"), Some("yes"));
    assert_eq!(response.subprotocol(), None);
    close(ws);
    assert_eq!(
        server.join_one().unwrap(),
        Seen {
            uri: "/chat/room?x=1&y=2".into(),
            path: "/chat/room".into(),
            query: Some("x=1&y=2".into()),
            origin: Some("http://example.com".into()),
            authorization: Some("Bearer t0k3n".into()),
            protocols: vec![],
        }
    );
}

#[test]
fn rejection_reaches_the_client_as_http_error() {
    let server = serve_one(|stream| {
        let result = stdws::accept_with(&stream, Config::default(), |_, _| {
            Err(Rejection::new(401, "no").header("WWW-Authenticate", "Bearer"))
        })
        .map(drop);
        common::finish(&stream);
        result
    });
    let err = stdws::connect(&server.url("/")).unwrap_err();
    let Error::Http(response) = err else {
        panic!("expected Error::Http, got {err:?}");
    };
    assert_eq!(response.status(), 401);
    assert_eq!(response.body(), b"no");
    assert_eq!(response.header("WWW-Authenticate"), Some("Bearer"));
    let result = server.join_one();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::Rejected(401)))),
        "{result:?}"
    );
}

#[test]
fn rejection_with_a_non_error_status_is_sent_as_500() {
    let server = serve_one(|stream| {
        let result = stdws::accept_with(&stream, Config::default(), |_, _| {
            Err(Rejection::new(200, "not an error status"))
        })
        .map(drop);
        common::finish(&stream);
        result
    });
    let err = stdws::connect(&server.url("/")).unwrap_err();
    assert!(
        matches!(&err, Error::Http(response) if response.status() == 500),
        "{err:?}"
    );
    assert!(server.join_one().is_err());
}

#[test]
fn subprotocol_is_negotiated() {
    let server = serve_one(|stream| {
        let mut offered = Vec::new();
        let mut ws = stdws::accept_with(stream, Config::default(), |req, resp| {
            offered = req.subprotocols().map(str::to_owned).collect();
            resp.set_subprotocol("b");
            Ok(())
        })?;
        common::echo_ws(&mut ws)?;
        Ok::<_, Error>(offered)
    });
    let (mut ws, response): (_, Response) = ClientBuilder::new(server.url("/"))
        .subprotocol("a")
        .subprotocol("b")
        .connect()
        .unwrap();
    common::set_timeouts(ws.get_ref());
    assert_eq!(response.subprotocol(), Some("b"));
    ws.send_text("in b").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("in b"));
    close(ws);
    assert_eq!(server.join_one().unwrap(), ["a", "b"]);
}

/// The chosen subprotocol stays readable on the connection, in both roles, whole and on
/// both split halves; without one it is `None` on both ends.
#[test]
fn the_chosen_subprotocol_is_readable_on_both_ends_and_halves() {
    let server = common::serve(2, |stream| {
        let ws = stdws::accept_with(stream, Config::default(), |req, resp| {
            if req.subprotocols().any(|p| p == "chat.v2") {
                resp.set_subprotocol("chat.v2");
            }
            Ok(())
        })?;
        let chosen = ws.subprotocol().map(str::to_owned);
        let (mut reader, writer) = ws.split()?;
        assert_eq!(reader.subprotocol(), chosen.as_deref());
        assert_eq!(writer.subprotocol(), chosen.as_deref());
        // Echo one message, then answer the close.
        let msg = reader.read()?;
        writer.send(msg)?;
        while !matches!(reader.read()?, Message::Close(_)) {}
        Ok::<_, Error>(chosen)
    });
    for (offers, want) in [
        (&["chat.v1", "chat.v2"][..], Some("chat.v2")),
        (&[][..], None),
    ] {
        let mut builder = ClientBuilder::new(server.url("/"));
        for offer in offers {
            builder = builder.subprotocol(*offer);
        }
        let (ws, _) = builder.connect().unwrap();
        common::set_timeouts(ws.get_ref());
        assert_eq!(ws.subprotocol(), want);
        let (mut reader, writer) = ws.split().unwrap();
        assert_eq!(reader.subprotocol(), want);
        assert_eq!(writer.subprotocol(), want);
        writer.send_text("hi").unwrap();
        assert_eq!(reader.read().unwrap(), Message::text("hi"));
        writer.close(1000, "").unwrap();
        while !matches!(reader.read(), Ok(Message::Close(_)) | Err(_)) {}
    }
    let chosen: Vec<Option<String>> = server.join().into_iter().map(Result::unwrap).collect();
    assert_eq!(chosen, [Some("chat.v2".to_owned()), None]);
}

/// The callback sets something invalid: `accept_with` fails with `InvalidInput` and the
/// client gets a 500.
fn invalid_response(shape: fn(&mut stdws::UpgradeResponse)) {
    let server = serve_one(move |stream| {
        let result = stdws::accept_with(&stream, Config::default(), |_, resp| {
            shape(resp);
            Ok(())
        })
        .map(drop);
        common::finish(&stream);
        result
    });
    let err = ClientBuilder::new(server.url("/"))
        .subprotocol("a")
        .subprotocol("b")
        .connect()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Http(response) if response.status() == 500),
        "{err:?}"
    );
    let result = server.join_one();
    assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
}

#[test]
fn choosing_an_unoffered_subprotocol_is_500() {
    invalid_response(|resp| resp.set_subprotocol("c"));
}

#[test]
fn setting_a_handshake_header_in_the_callback_is_500() {
    invalid_response(|resp| resp.append_header("Sec-WebSocket-Accept", "forged"));
}

// ---------------------------------------------------------------------------------------
// The client's checks, against a raw server.
// ---------------------------------------------------------------------------------------

/// Runs the client built by `builder` (from the server's `ws://127.0.0.1:PORT`) against a
/// raw server that answers the request with `respond(key)`. Returns the client's result, the
/// server's connection and the request head the server received.
fn client_against(
    respond: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    builder: impl FnOnce(String) -> ClientBuilder,
) -> (
    stdws::Result<(WebSocket<TcpStream>, Response)>,
    RawConn,
    String,
) {
    let server = serve_one(move |stream| {
        let mut raw = RawConn::new(stream);
        let request = raw.read_head();
        let key = header_of(&request, "Sec-WebSocket-Key").expect("request has a key");
        raw.send(&respond(&key));
        (raw, request)
    });
    let result = builder(server.url("")).connect();
    let (raw, request) = server.join_one();
    (result, raw, request)
}

fn response_101(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn handshake_error(respond: impl FnOnce(&str) -> Vec<u8> + Send + 'static) -> HandshakeError {
    let (result, _, _) = client_against(respond, ClientBuilder::new);
    match result {
        Err(Error::Handshake(e)) => e,
        Err(e) => panic!("expected a handshake error, got {e:?}"),
        Ok(_) => panic!("the client accepted an invalid response"),
    }
}

#[test]
fn client_request_is_well_formed() {
    let (result, _, request) = client_against(
        |key| response_101(&derive_accept_key(key), ""),
        |base| ClientBuilder::new(base + "/café/x?q=1").header("Origin", "http://o.example"),
    );
    let (_ws, _) = result.unwrap();
    let port = request
        .lines()
        .find_map(|l| l.strip_prefix("Host: 127.0.0.1:"))
        .expect("Host with port");
    assert!(port.parse::<u16>().is_ok());
    // Non-ASCII bytes of the path are percent-encoded.
    assert!(
        request.starts_with("GET /caf%C3%A9/x?q=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert_eq!(header_of(&request, "Upgrade").as_deref(), Some("websocket"));
    assert!(header_of(&request, "Connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    assert_eq!(
        header_of(&request, "Sec-WebSocket-Version").as_deref(),
        Some("13")
    );
    assert_eq!(
        header_of(&request, "Origin").as_deref(),
        Some("http://o.example")
    );
    // 16 random bytes in base64: 22 significant characters and "==".
    let key = header_of(&request, "Sec-WebSocket-Key").unwrap();
    assert_eq!(key.len(), 24);
    assert!(key.ends_with("=="));
    assert!(key[..22]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
    assert_eq!(header_of(&request, "Sec-WebSocket-Protocol"), None);
    assert_eq!(header_of(&request, "Sec-WebSocket-Extensions"), None);
}

#[test]
fn client_keys_differ_between_connections() {
    let key = || {
        let (_, _, request) = client_against(
            |_| b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec(),
            ClientBuilder::new,
        );
        header_of(&request, "Sec-WebSocket-Key").unwrap()
    };
    assert_ne!(key(), key());
}

#[test]
fn wrong_accept_key_is_accept_mismatch() {
    let e = handshake_error(|_| response_101(RFC_ACCEPT, ""));
    assert_eq!(e, HandshakeError::AcceptMismatch);
}

#[test]
fn missing_accept_key_is_accept_mismatch() {
    let e = handshake_error(|_| {
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            .to_vec()
    });
    assert_eq!(e, HandshakeError::AcceptMismatch);
}

#[test]
fn missing_upgrade_header_is_refused() {
    let e = handshake_error(|key| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key)
        )
        .into_bytes()
    });
    assert!(matches!(e, HandshakeError::Header(_)), "{e:?}");
}

#[test]
fn unrequested_subprotocol_is_refused() {
    let e = handshake_error(|key| {
        response_101(&derive_accept_key(key), "Sec-WebSocket-Protocol: x\r\n")
    });
    assert_eq!(e, HandshakeError::UnexpectedSubprotocol("x".into()));
}

#[test]
fn unrequested_extension_is_refused() {
    let e = handshake_error(|key| {
        response_101(
            &derive_accept_key(key),
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        )
    });
    assert_eq!(
        e,
        HandshakeError::UnexpectedExtension("permessage-deflate".into())
    );
}

#[test]
fn connection_token_list_in_101_is_accepted() {
    let (result, _, _) = client_against(
        |key| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\
                 Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key)
            )
            .into_bytes()
        },
        ClientBuilder::new,
    );
    let (_, response) = result.expect("101 with a token list is valid");
    assert_eq!(response.status(), 101);
}

#[test]
fn url_without_path_requests_slash() {
    let (result, _, request) = client_against(
        |key| response_101(&derive_accept_key(key), ""),
        ClientBuilder::new,
    );
    result.unwrap();
    assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request}");
}

#[test]
fn server_closing_without_an_answer_is_incomplete() {
    let server = serve_one(|stream| {
        // Read the request, then close without a word.
        RawConn::new(stream).read_head();
    });
    let result = ClientBuilder::new(server.url("/")).connect();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::Incomplete))),
        "{:?}",
        result.map(drop)
    );
    server.join_one();
}

#[test]
fn server_frame_sent_with_the_101_is_the_first_message() {
    let (result, mut raw, _) = client_against(
        |key| {
            let mut bytes = response_101(&derive_accept_key(key), "");
            bytes.extend(server_frame(true, 1, b"first"));
            // Larger than the handshake's reads: the rest follows in later reads.
            bytes.extend(server_frame(true, 2, &[9; 100_000]));
            bytes
        },
        ClientBuilder::new,
    );
    let (mut ws, _) = result.unwrap();
    common::set_timeouts(ws.get_ref());
    assert_eq!(ws.read().unwrap(), Message::text("first"));
    assert_eq!(ws.read().unwrap(), Message::binary(vec![9; 100_000]));
    drop(ws);
    assert!(raw.read_to_end().is_empty());
}

#[test]
fn non_101_response_is_http_error_with_body() {
    let (result, _, _) = client_against(
        |_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!".to_vec(),
        ClientBuilder::new,
    );
    match result {
        Err(Error::Http(response)) => {
            assert_eq!((response.status(), response.reason()), (403, "Forbidden"));
            assert_eq!(response.body(), b"nope!");
        }
        Err(e) => panic!("expected Error::Http, got {e:?}"),
        Ok(_) => panic!("a 403 was accepted"),
    }
}

#[test]
fn client_handshake_timeout() {
    let server = serve_one(|stream| {
        let mut raw = RawConn::new(stream);
        raw.read_head();
        raw.read_to_end() // never answers; the client gives up and closes
    });
    let start = Instant::now();
    let result = ClientBuilder::new(server.url("/"))
        .handshake_timeout(Some(Duration::from_millis(300)))
        .connect();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::TimedOut))),
        "{:?}",
        result.map(drop)
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(server.join_one().is_empty());
}

#[test]
fn wss_urls_need_tls() {
    for url in ["wss://127.0.0.1:1/", "WSS://example.invalid/chat"] {
        assert!(matches!(
            stdws::connect(url),
            Err(Error::Url(UrlError::TlsRequired))
        ));
        assert!(matches!(
            ClientBuilder::new(url).connect(),
            Err(Error::Url(UrlError::TlsRequired))
        ));
    }
}

#[test]
fn ipv6_loopback_works() {
    let listener = match TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("skipping: cannot bind [::1]:0: {e}");
            return;
        }
    };
    let server = serve_on(listener, 1, |stream| {
        let mut host = None;
        let mut ws = stdws::accept_with(stream, Config::default(), |req, _| {
            host = req.header("Host").map(str::to_owned);
            Ok(())
        })?;
        common::echo_ws(&mut ws)?;
        Ok::<_, Error>(host)
    });
    let port = server.addr.port();
    let (mut ws, _) = stdws::connect(&format!("ws://[::1]:{port}/v6")).unwrap();
    common::set_timeouts(ws.get_ref());
    assert!(ws.get_ref().peer_addr().unwrap().is_ipv6());
    ws.send_text("over v6").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("over v6"));
    close(ws);
    let host = server.join().pop().unwrap().unwrap();
    assert_eq!(host, Some(format!("[::1]:{port}")));
}

#[cfg(unix)]
#[test]
fn client_and_server_over_a_unix_socket_pair() {
    use std::os::unix::net::UnixStream;

    let (server_end, client_end) = UnixStream::pair().unwrap();
    for end in [&server_end, &client_end] {
        end.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        end.set_write_timeout(Some(common::IO_TIMEOUT)).unwrap();
    }
    let server = thread::spawn(move || {
        let mut ws = stdws::accept(server_end)?;
        common::echo_ws(&mut ws)
    });
    let (mut ws, response) = stdws::client("ws://localhost/unix", client_end).unwrap();
    assert_eq!(response.status(), 101);
    ws.send_text("over a unix socket").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("over a unix socket"));
    let frame = ws
        .close_and_wait(1000, "", Duration::from_secs(5))
        .expect("close_and_wait over UnixStream");
    assert_eq!(frame.map(|f| f.code.as_u16()), Some(1000));
    server
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
        .expect("server");
}

/// permessage-deflate negotiation (RFC 7692) over TCP, with the `deflate` feature.
#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use stdws::DeflateConfig;

    fn deflate_config() -> Config {
        Config::default().deflate(Some(DeflateConfig::default()))
    }

    #[test]
    fn server_accepts_an_offer_when_configured() {
        let request = request_lines("/")
            + "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; server_max_window_bits=16\r\n\
               Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; \
               server_no_context_takeover\r\n\r\n";
        let (response, result) = exchange(deflate_config(), request.as_bytes());
        result.unwrap();
        assert_eq!(status_of(&response), 101, "{response}");
        assert_eq!(
            header_of(&response, "Sec-WebSocket-Extensions").as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn server_without_config_or_acceptable_offer_answers_without_extension() {
        let offer = request_lines("/") + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let (response, result) = exchange(Config::default(), offer.as_bytes());
        result.unwrap();
        assert_eq!(header_of(&response, "Sec-WebSocket-Extensions"), None);
        let bad = request_lines("/")
            + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n\r\n";
        let (response, result) = exchange(deflate_config(), bad.as_bytes());
        result.unwrap();
        assert_eq!(status_of(&response), 101);
        assert_eq!(header_of(&response, "Sec-WebSocket-Extensions"), None);
    }

    #[test]
    fn server_with_invalid_window_bits_fails_with_500() {
        let config = Config::default().deflate(Some(
            DeflateConfig::default().server_max_window_bits(Some(7)),
        ));
        let offer = request_lines("/") + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let (response, result) = exchange(config, offer.as_bytes());
        assert_eq!(status_of(&response), 500, "{response}");
        assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    }

    #[test]
    fn client_offers_and_accepts_a_matching_response() {
        let (result, _, request) = client_against(
            |key| {
                response_101(
                    &derive_accept_key(key),
                    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
                )
            },
            |url| ClientBuilder::new(url).config(deflate_config()),
        );
        let (_, response) = result.unwrap();
        assert_eq!(
            header_of(&request, "Sec-WebSocket-Extensions").as_deref(),
            Some("permessage-deflate; client_max_window_bits")
        );
        assert_eq!(
            response.extensions().collect::<Vec<_>>(),
            ["permessage-deflate; server_max_window_bits=10"]
        );
    }

    #[test]
    fn client_accepts_a_response_without_extension() {
        let (result, _, _) = client_against(
            |key| response_101(&derive_accept_key(key), ""),
            |url| ClientBuilder::new(url).config(deflate_config()),
        );
        assert_eq!(result.unwrap().1.extensions().count(), 0);
    }

    #[test]
    fn client_refuses_a_response_its_offer_does_not_allow() {
        let cases = [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; unknown",
            "permessage-deflate\r\nSec-WebSocket-Extensions: permessage-deflate",
        ];
        for extra in cases {
            let (result, _, _) = client_against(
                move |key| {
                    response_101(
                        &derive_accept_key(key),
                        &format!("Sec-WebSocket-Extensions: {extra}\r\n"),
                    )
                },
                |url| ClientBuilder::new(url).config(deflate_config()),
            );
            assert!(
                matches!(
                    result,
                    Err(Error::Handshake(HandshakeError::InvalidExtension { .. }))
                ),
                "{extra}: {result:?}"
            );
        }
        let (result, _, _) = client_against(
            |key| {
                response_101(
                    &derive_accept_key(key),
                    "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
                )
            },
            |url| ClientBuilder::new(url).config(deflate_config()),
        );
        assert!(matches!(
            result,
            Err(Error::Handshake(HandshakeError::UnexpectedExtension(_)))
        ));
    }
}

#[test]
fn an_invalid_header_fails_before_any_connection_is_opened() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    for (name, value) in [
        ("Bad Name", "x"),
        ("X-Ok", "line\r\nbreak"),
        ("Upgrade", "h2c"),
    ] {
        let result = stdws::ClientBuilder::new(url.as_str())
            .header(name, value)
            .connect();
        assert!(
            matches!(result, Err(stdws::Error::InvalidInput(_))),
            "{name}: {value:?}"
        );
    }
    let result = stdws::ClientBuilder::new(url.as_str())
        .subprotocol("not a token")
        .connect();
    assert!(matches!(result, Err(stdws::Error::InvalidInput(_))));
    // No connection reached the listener.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection was opened: {accepted:?}"
    );
}

/// The callback reads the decoded path and query parameters of the request a client sent,
/// and refuses one whose percent-encoding is invalid with a 400 of its choosing (no panic).
#[test]
fn the_callback_reads_the_decoded_path_and_query_parameters() {
    let server = common::serve(2, |stream| {
        let mut seen = None;
        let result = stdws::accept_with(stream, Config::default(), |req, _| {
            let path = req.decoded_path();
            let params = req.query_params();
            let user = req.query_param("user");
            seen = Some((
                path.clone().map(|p| p.into_owned()),
                params.clone(),
                user.clone(),
            ));
            match (path, params) {
                (Ok(_), Ok(_)) => Ok(()),
                (Err(e), _) | (_, Err(e)) => Err(stdws::Rejection::new(400, format!("{e}\n"))),
            }
        });
        (result.map(drop), seen.expect("the callback ran"))
    });
    let (ws, _) =
        stdws::connect(&server.url("/rooms/caf%C3%A9?user=ada+l%26co&flag&user=2")).unwrap();
    drop(ws);
    let error = stdws::connect(&server.url("/rooms/x?user=%zz")).unwrap_err();
    assert!(
        matches!(&error, Error::Http(r) if r.status() == 400),
        "{error:?}"
    );
    let mut results = server.join().into_iter();
    let (accepted, (path, params, user)) = results.next().unwrap();
    accepted.unwrap();
    assert_eq!(path.unwrap(), "/rooms/café");
    let params = params.unwrap();
    let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    assert_eq!(params, [("user", "ada l&co"), ("flag", ""), ("user", "2")]);
    assert_eq!(user.unwrap().as_deref(), Some("ada l&co"));
    let (refused, (path, params, user)) = results.next().unwrap();
    assert!(refused.is_err());
    assert_eq!(path.unwrap(), "/rooms/x");
    assert_eq!(
        params,
        Err(stdws::handshake::PercentDecodeError::InvalidEscape)
    );
    assert!(user.is_err());
}
