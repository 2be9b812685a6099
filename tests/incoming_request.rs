//! `IncomingRequest`: read a request, then upgrade it, refuse it, or answer it as plain HTTP,
//! so one port serves both web pages and WebSocket connections.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{
    body_of, client_frame, connect, echo_ws, finish, header_of, raw_exchange, request_lines, serve,
    serve_one, status_of, upgrade_request, RawConn, IO_TIMEOUT,
};
use stdws::{
    ClientBuilder, Config, Error, HandshakeError, IncomingRequest, Message, Rejection, Request,
    UpgradeResponse,
};

const PAGE: &str = "<!doctype html>\n<h1>h\u{e9}llo</h1>\n";

// ---------------------------------------------------------------------------------------
// One port, a page and a WebSocket endpoint.
// ---------------------------------------------------------------------------------------

/// What the server saw of one request: path, query, `is_websocket()`.
type Seen = (String, Option<String>, bool);

/// A server for `conns` connections: `/` is a page, `/ws` a WebSocket echo endpoint,
/// anything else 404.
fn page_and_websocket(conns: usize) -> common::Server<stdws::Result<Seen>> {
    serve(conns, |stream| {
        let incoming = IncomingRequest::read(stream, Config::default())?;
        let request = incoming.request();
        let seen = (
            request.path().to_owned(),
            request.query().map(str::to_owned),
            incoming.is_websocket(),
        );
        match seen.0.as_str() {
            "/" => incoming.respond(200, "text/html; charset=utf-8", PAGE.as_bytes())?,
            "/ws" => {
                let mut ws = incoming.accept()?;
                echo_ws(&mut ws)?;
            }
            _ => incoming.respond(404, "text/plain", b"no such page\n")?,
        }
        Ok(seen)
    })
}

#[test]
fn one_port_serves_a_page_and_a_websocket() {
    let server = page_and_websocket(3);

    // A browser asking for the page.
    let response = raw_exchange(
        server.addr,
        b"GET /?lang=en HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\
          Connection: keep-alive\r\n\r\n",
    );
    assert!(
        response.starts_with("HTTP/1.1 200 OK\r\n"),
        "response: {response:?}"
    );
    let length = PAGE.len().to_string();
    assert_eq!(header_of(&response, "Content-Length"), Some(length));
    assert_eq!(header_of(&response, "Connection").as_deref(), Some("close"));
    assert_eq!(
        header_of(&response, "Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(body_of(&response), PAGE);

    // A WebSocket client on the same port.
    let mut ws = connect(&server.url("/ws"));
    ws.send_text("over the same port").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("over the same port"));
    ws.send_binary(&[0, 1, 2, 255]).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0, 1, 2, 255]));
    let reply = ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    assert_eq!(reply.map(|f| f.code.as_u16()), Some(1000));

    // Anything else.
    let response = raw_exchange(server.addr, b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        response.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{response:?}"
    );
    assert_eq!(
        header_of(&response, "Content-Length").as_deref(),
        Some("13")
    );
    assert_eq!(body_of(&response), "no such page\n");

    let seen: Vec<Seen> = server.join().into_iter().map(Result::unwrap).collect();
    assert_eq!(
        seen,
        [
            ("/".to_owned(), Some("lang=en".to_owned()), false),
            ("/ws".to_owned(), None, true),
            ("/missing".to_owned(), None, false),
        ]
    );
}

#[test]
fn frames_sent_right_behind_the_request_are_read_after_accept() {
    let server = serve_one(|stream| {
        let incoming = IncomingRequest::read(stream, Config::default())?;
        let mut ws = incoming.accept()?;
        let first = ws.read()?;
        let second = ws.read()?;
        Ok::<_, Error>((first, second))
    });
    let mut raw = RawConn::connect(server.addr);
    let mut bytes = upgrade_request("/ws").into_bytes();
    bytes.extend(client_frame(true, 0x1, b"early"));
    bytes.extend(client_frame(true, 0x2, &[7; 300]));
    raw.send(&bytes);
    assert_eq!(status_of(&raw.read_head()), 101);
    let (first, second) = server.join_one().unwrap();
    assert_eq!(first, Message::text("early"));
    assert_eq!(second, Message::binary(vec![7; 300]));
}

// ---------------------------------------------------------------------------------------
// Refusals.
// ---------------------------------------------------------------------------------------

#[test]
fn reject_reaches_the_client_as_an_http_error() {
    let server = serve_one(|stream| {
        let incoming = IncomingRequest::read(stream, Config::default())?;
        assert!(incoming.is_websocket());
        incoming.reject(Rejection::new(503, "full").header("Retry-After", "5"))
    });
    let response = match stdws::connect(&server.url("/ws")) {
        Err(Error::Http(response)) => response,
        other => panic!("expected Err(Http), got {:?}", other.map(|(_, r)| r)),
    };
    assert_eq!(response.status(), 503);
    assert_eq!(response.reason(), "Service Unavailable");
    assert_eq!(response.body(), b"full");
    assert_eq!(response.header("Retry-After"), Some("5"));
    assert_eq!(response.header("Connection"), Some("close"));
    assert_eq!(response.header("Content-Length"), Some("4"));
    server.join_one().expect("reject");
}

/// A refusal with a header that is not valid HTTP (a CR/LF in the value, a name with a
/// space, a `Content-Length` of its own) is not sent with the header dropped: the client gets
/// a 500 and the server an `InvalidInput` error, through `reject` and through the
/// `accept_with` callback alike.
#[test]
fn a_refusal_with_an_invalid_header_is_an_error_not_a_silent_drop() {
    let bad: [(&str, &str); 3] = [
        ("Retry-After", "5\r\nSet-Cookie: stolen=1"),
        ("Retry After", "5"),
        ("Content-Length", "0"),
    ];
    let rejection = |(name, value): (&str, &str)| Rejection::new(503, "full").header(name, value);
    for (n, header) in bad.into_iter().enumerate() {
        let via_callback = n % 2 == 1;
        let server = serve_one(move |stream| {
            if via_callback {
                stdws::accept_with(stream, Config::default(), |_, _| Err(rejection(header)))
                    .map(drop)
            } else {
                IncomingRequest::read(stream, Config::default())?.reject(rejection(header))
            }
        });
        let response = match stdws::connect(&server.url("/ws")) {
            Err(Error::Http(response)) => response,
            other => panic!("expected Err(Http), got {:?}", other.map(|(_, r)| r)),
        };
        assert_eq!(response.status(), 500, "{header:?}");
        assert_eq!(response.header("Set-Cookie"), None);
        assert_eq!(response.header("Retry-After"), None);
        let error = server.join_one().unwrap_err();
        assert!(
            matches!(error, Error::InvalidInput(_)),
            "{header:?}: {error:?}"
        );
        assert!(rejection(header).check().is_err());
    }
    assert!(rejection(("Retry-After", "5")).check().is_ok());

    // The machine over bytes refuses to produce it.
    let mut hs = stdws::proto::ServerHandshake::new(Config::default());
    let request = upgrade_request("/ws");
    hs.read_buf()[..request.len()].copy_from_slice(request.as_bytes());
    assert!(hs.filled(request.len()).unwrap().is_some());
    let error = hs.reject(&rejection(bad[0])).unwrap_err();
    assert!(matches!(error, Error::InvalidInput(_)), "{error:?}");
}

#[test]
fn accept_of_a_plain_http_request_answers_426() {
    let server = serve_one(|stream| {
        let incoming = IncomingRequest::read(stream, Config::default()).unwrap();
        let is_websocket = incoming.is_websocket();
        (is_websocket, incoming.accept().err())
    });
    let response = raw_exchange(server.addr, b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status_of(&response), 426, "{response}");
    assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert_eq!(
        header_of(&response, "Upgrade").as_deref(),
        Some("websocket")
    );
    let (is_websocket, error) = server.join_one();
    assert!(!is_websocket);
    assert!(
        matches!(error, Some(Error::Handshake(HandshakeError::Header(_)))),
        "{error:?}"
    );
}

#[test]
fn malformed_request_is_answered_400_by_read() {
    let server = serve_one(|stream| IncomingRequest::read(stream, Config::default()).err());
    let response = raw_exchange(server.addr, b"NOT A REQUEST\r\n\r\n");
    assert_eq!(status_of(&response), 400, "{response}");
    let error = server.join_one();
    assert!(
        matches!(error, Some(Error::Handshake(HandshakeError::Malformed(_)))),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------
// accept_with: the same as stdws::accept_with.
// ---------------------------------------------------------------------------------------

/// Chooses `chat.v1` when offered, adds a header, refuses `Authorization: deny`.
fn choose(req: &Request, resp: &mut UpgradeResponse) -> Result<(), Rejection> {
    if req.header("Authorization") == Some("deny") {
        return Err(Rejection::new(403, "denied"));
    }
    if req.subprotocols().any(|p| p == "chat.v1") {
        resp.set_subprotocol("chat.v1");
    }
    resp.append_header("X-Served-By", "stdws-test");
    Ok(())
}

/// How a server handler ended, comparable between the two servers.
fn outcome(ws: stdws::Result<stdws::WebSocket<TcpStream>>) -> String {
    match ws {
        Ok(mut ws) => match echo_ws(&mut ws) {
            Ok(()) => "closed cleanly".to_owned(),
            Err(e) => format!("echo ended: {e:?}"),
        },
        Err(e) => format!("refused: {e:?}"),
    }
}

/// The same three clients against a server at `addr`: a raw one (returns its 101 head), a
/// negotiating `ClientBuilder`, and one that gets refused.
fn three_clients(addr: SocketAddr) -> String {
    let url = format!("ws://{addr}/chat");

    let mut raw = RawConn::connect(addr);
    let request = request_lines("/chat") + "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n\r\n";
    raw.send(request.as_bytes());
    let head = raw.read_head();
    finish(&raw.stream);

    let (mut ws, response) = ClientBuilder::new(&url)
        .subprotocol("chat.v2")
        .subprotocol("chat.v1")
        .connect()
        .unwrap();
    common::set_timeouts(ws.get_ref());
    assert_eq!(response.subprotocol(), Some("chat.v1"));
    assert_eq!(response.header("X-Served-By"), Some("stdws-test"));
    ws.send_text("negotiated").unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("negotiated"));
    ws.close_and_wait(1000, "", IO_TIMEOUT).unwrap();

    match ClientBuilder::new(&url)
        .header("Authorization", "deny")
        .connect()
    {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            assert_eq!(response.body(), b"denied");
        }
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r)),
    }
    head
}

#[test]
fn incoming_accept_with_works_like_accept_with() {
    let incoming = serve(3, |stream| {
        outcome(
            IncomingRequest::read(stream, Config::default())
                .and_then(|incoming| incoming.accept_with(choose)),
        )
    });
    let direct = serve(3, |stream| {
        outcome(stdws::accept_with(stream, Config::default(), choose))
    });
    let head_incoming = three_clients(incoming.addr);
    let head_direct = three_clients(direct.addr);

    assert_eq!(status_of(&head_incoming), 101, "{head_incoming}");
    assert_eq!(
        header_of(&head_incoming, "Sec-WebSocket-Protocol").as_deref(),
        Some("chat.v1")
    );
    assert_eq!(head_incoming, head_direct, "the same 101, byte for byte");
    let outcomes_incoming = incoming.join();
    assert_eq!(outcomes_incoming, direct.join());
    assert_eq!(outcomes_incoming[1], "closed cleanly");
    assert!(
        outcomes_incoming[2].contains("Rejected(403)"),
        "{outcomes_incoming:?}"
    );
}

// ---------------------------------------------------------------------------------------
// respond() refuses header injection.
// ---------------------------------------------------------------------------------------

#[test]
fn respond_with_an_invalid_content_type_writes_nothing() {
    let bad_types = [
        "text/html\r\nX-Injected: yes",
        "text/html\nX-Injected: yes",
        "a\0b",
    ];
    let server = serve(bad_types.len(), move |stream| {
        let incoming = IncomingRequest::read(stream, Config::default()).unwrap();
        // Which connection this is, from its path.
        let n: usize = incoming.request().path()[1..].parse().unwrap();
        incoming.respond(200, bad_types[n], b"body").err()
    });
    for (n, content_type) in bad_types.iter().enumerate() {
        let request = format!("GET /{n} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let response = raw_exchange(server.addr, request.as_bytes());
        assert_eq!(response, "", "content type {content_type:?}");
    }
    for error in server.join() {
        assert!(matches!(error, Some(Error::InvalidInput(_))), "{error:?}");
    }
}
