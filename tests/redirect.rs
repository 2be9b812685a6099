//! Redirects of the opening handshake, against real servers on 127.0.0.1 that answer
//! 301/302/307/308 before one accepts: followed up to the limit, the final URL reported,
//! credentials not carried to another origin, typed errors for loops and bad locations.

mod common;

use std::time::Duration;

use common::{header_of, serve, RawConn};
use stdws::{ClientBuilder, Error, Message, RedirectError};

/// Answers one request with `status` and `Location: location`; returns the request head.
fn redirect(stream: std::net::TcpStream, status: u16, location: &str) -> String {
    let mut conn = RawConn::new(stream);
    let request = conn.read_head();
    conn.send(
        format!(
            "HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    request
}

/// The request line's path.
fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap()
}

#[test]
fn follows_a_chain_to_another_origin_and_reports_the_final_url() {
    // The final server accepts, echoes one message and closes.
    let last = serve(1, |stream| {
        let mut conn = RawConn::new(stream);
        let request = conn.accept_upgrade("", &[]);
        let frame = conn.read_frame();
        conn.send(&common::server_frame(true, 1, &frame.payload));
        request
    });
    let final_url = last.url("/final?x=1");
    let first = serve(2, move |stream| {
        let mut conn = RawConn::new(stream);
        let head = conn.read_head();
        let (status, location) = match path_of(&head) {
            "/start" => (301, "/two".to_owned()),
            "/two" => (307, final_url.clone()),
            other => panic!("unexpected path {other}"),
        };
        conn.send(
            format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        head
    });
    let (mut ws, response) = ClientBuilder::new(first.url("/start"))
        .header("Authorization", "Bearer secret")
        .header("X-Trace", "7")
        .connect()
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.url(), Some(last.url("/final?x=1").as_str()));
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    ws.send_text("hi").unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hi".into()));

    let heads = first.join();
    assert_eq!(path_of(&heads[0]), "/start");
    assert_eq!(path_of(&heads[1]), "/two");
    // Same origin: the credentials went along.
    assert_eq!(
        header_of(&heads[1], "Authorization").as_deref(),
        Some("Bearer secret")
    );
    let final_head = last.join_one();
    assert_eq!(path_of(&final_head), "/final?x=1");
    // Another origin (another port): the credentials did not, other headers did.
    assert_eq!(header_of(&final_head, "Authorization"), None);
    assert_eq!(header_of(&final_head, "X-Trace").as_deref(), Some("7"));
}

#[test]
fn a_loop_stops_at_the_limit_with_a_typed_error() {
    // The default limit is 3: the first request and 3 redirects followed, then refused.
    let server = serve(4, |stream| redirect(stream, 302, "/again"));
    let e = ClientBuilder::new(server.url("/loop"))
        .connect()
        .unwrap_err();
    match e {
        Error::Redirect(RedirectError::TooMany { max: 3, location }) => {
            assert_eq!(location, "/again")
        }
        other => panic!("expected TooMany, got {other:?}"),
    }
    assert_eq!(server.join().len(), 4);

    let server = serve(2, |stream| redirect(stream, 308, "/again"));
    let e = ClientBuilder::new(server.url("/loop"))
        .max_redirects(1)
        .connect()
        .unwrap_err();
    assert!(
        matches!(e, Error::Redirect(RedirectError::TooMany { max: 1, .. })),
        "{e:?}"
    );
    server.join();
}

#[test]
fn zero_turns_following_off() {
    let server = serve(1, |stream| redirect(stream, 301, "/elsewhere"));
    let e = ClientBuilder::new(server.url("/"))
        .max_redirects(0)
        .connect()
        .unwrap_err();
    match e {
        Error::Http(response) => {
            assert_eq!(response.status(), 301);
            assert_eq!(response.header("Location"), Some("/elsewhere"));
            assert_eq!(response.url(), Some(server.url("/").as_str()));
        }
        other => panic!("expected the 301 itself, got {other:?}"),
    }
    server.join();
}

#[test]
fn bad_or_missing_locations_are_errors_not_panics() {
    let server = serve(1, |stream| redirect(stream, 302, "ftp://example.com/"));
    let e = ClientBuilder::new(server.url("/")).connect().unwrap_err();
    assert!(
        matches!(e, Error::Redirect(RedirectError::InvalidLocation { .. })),
        "{e:?}"
    );
    server.join();

    // A redirect without Location is returned as the answer it is.
    let server = serve(1, |stream| {
        let mut conn = RawConn::new(stream);
        let head = conn.read_head();
        conn.send(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n");
        head
    });
    let e = ClientBuilder::new(server.url("/")).connect().unwrap_err();
    assert!(matches!(&e, Error::Http(r) if r.status() == 302), "{e:?}");
    server.join();

    // To wss:// from the plain connect: it says TLS is needed.
    let server = serve(1, |stream| redirect(stream, 301, "wss://127.0.0.1:1/"));
    let e = ClientBuilder::new(server.url("/")).connect().unwrap_err();
    assert!(
        matches!(e, Error::Url(stdws::UrlError::TlsRequired)),
        "{e:?}"
    );
    server.join();
}

#[cfg(feature = "rustls")]
mod tls {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use stdws::tls::rustls::{ServerConnection, StreamOwned};

    use common::tls_pair;

    #[test]
    fn never_from_wss_to_ws() {
        let (server_config, client_config) = tls_pair();
        // Over TLS, the server redirects to a plain ws:// URL.
        let server = serve(1, move |stream| {
            common::set_timeouts(&stream);
            let conn = ServerConnection::new(Arc::clone(&server_config)).unwrap();
            let mut tls = StreamOwned::new(conn, stream);
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") {
                tls.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            tls.write_all(
                b"HTTP/1.1 301 Moved\r\nLocation: ws://localhost:1/plain\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap();
            tls.flush().unwrap();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
        let url = format!("wss://localhost:{}/secure", server.addr.port());
        let e = ClientBuilder::new(url)
            .tls_config(client_config)
            .connect_tls()
            .unwrap_err();
        match e {
            Error::Redirect(RedirectError::InsecureDowngrade { location }) => {
                assert_eq!(location, "ws://localhost:1/plain")
            }
            other => panic!("expected InsecureDowngrade, got {other:?}"),
        }
        server.join();
    }

    #[test]
    fn from_ws_to_wss_is_followed() {
        let (server_config, client_config) = tls_pair();
        let secure = serve(1, move |stream| {
            let mut ws = stdws::tls::accept(stream, Arc::clone(&server_config)).unwrap();
            common::echo_ws(&mut ws)
        });
        let target = format!("wss://localhost:{}/secure", secure.addr.port());
        let location = target.replace("wss://", "https://");
        let plain = serve(1, move |stream| redirect(stream, 308, &location));
        let (mut ws, response) = ClientBuilder::new(plain.url("/"))
            .tls_config(client_config)
            .connect_tls()
            .unwrap();
        assert!(ws.get_ref().is_tls());
        assert_eq!(response.url(), Some(target.as_str()));
        ws.get_ref()
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ws.send_text("upgraded").unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text("upgraded".into()));
        ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
        plain.join();
        secure.join();
    }
}
