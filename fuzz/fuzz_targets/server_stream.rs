//! The whole server: `IncomingRequest::read` on a fake stream whose read side is the fuzz
//! input (request head, then the client's frames), then `accept` (or, with cfg bit 4,
//! `accept_with` choosing the first offered subprotocol and adding a header), then the
//! read/echo loop of `run_connection` (split halves with cfg bit 7).
//!
//! Also checked: a refusal is a complete HTTP response (status 4xx/5xx, `Content-Length`
//! matching its body), a 101 parses with our own `Response::parse` and carries the right
//! `Sec-WebSocket-Accept`, and a handshake that fails without reading a whole head writes
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::handshake::derive_accept_key;
use stdws::{Error, HandshakeError, IncomingRequest, Response, Role};
use stdws_fuzz::{find, head_end, run_connection, Conn, FuzzStream, Input};

/// Checks what the server wrote when the handshake failed with `e`.
fn check_refusal(input: &Input<'_>, out: &[u8], e: &Error) {
    match e {
        Error::Handshake(HandshakeError::Incomplete | HandshakeError::TimedOut) | Error::Io(_) => {
            if matches!(e, Error::Io(_)) {
                assert!(
                    input.write_errors() || input.fatal_read_errors(),
                    "I/O error nobody injected: {e:?}"
                );
            } else {
                assert!(
                    out.is_empty(),
                    "wrote {} bytes before the head was read",
                    out.len()
                );
            }
        }
        Error::Handshake(_) => {
            if input.write_errors() {
                return;
            }
            let end = find(out, b"\r\n\r\n").unwrap_or_else(|| {
                panic!(
                    "refusal {e:?} is not a complete head: {:?}",
                    String::from_utf8_lossy(out)
                )
            }) + 4;
            let resp = Response::parse(&out[..end], 64)
                .unwrap_or_else(|err| panic!("own refusal does not parse: {err}"));
            assert!(
                (400..=599).contains(&resp.status()),
                "refusal status {}",
                resp.status()
            );
            let len: usize = resp
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .expect("refusal has a Content-Length");
            assert_eq!(
                len,
                out.len() - end,
                "Content-Length does not match the body"
            );
            assert!(resp.headers().has_token("Connection", "close"));
        }
        other => panic!("unexpected handshake error {other:?}"),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::split(bytes);
    let stream = FuzzStream::new(&input, input.data);
    stream.wire().calm = input.cfg & 0x40 == 0;
    let incoming = match IncomingRequest::read(stream.clone(), input.config()) {
        Ok(incoming) => incoming,
        Err(e) => return check_refusal(&input, &stream.wire().out, &e),
    };
    let request = incoming.request().clone();
    let _ = (request.path(), request.query(), request.origin());
    let is_websocket = incoming.is_websocket();
    let choose = input.cfg & 0x10 != 0;
    let result = if choose {
        incoming.accept_with(|req, resp| {
            if let Some(p) = req.subprotocols().next() {
                resp.set_subprotocol(p);
            }
            resp.append_header("X-Fuzz", "yes");
            Ok(())
        })
    } else {
        incoming.accept()
    };
    let ws = match result {
        Ok(ws) => ws,
        Err(e) => {
            assert!(
                !is_websocket || input.write_errors(),
                "is_websocket() said yes but accept failed: {e:?}"
            );
            return check_refusal(&input, &stream.wire().out, &e);
        }
    };
    assert!(
        is_websocket,
        "accept() took a request is_websocket() refused"
    );
    stream.wire().calm = false;
    let out = stream.wire().out.clone();
    let end = find(&out, b"\r\n\r\n").expect("a complete 101 head") + 4;
    let resp = Response::parse(&out[..end], 64).expect("own 101 parses");
    assert_eq!(resp.status(), 101);
    let key = request
        .header("Sec-WebSocket-Key")
        .expect("a key was required");
    assert_eq!(
        resp.header("Sec-WebSocket-Accept"),
        Some(derive_accept_key(key).as_str())
    );
    if choose {
        assert_eq!(resp.subprotocol(), request.subprotocols().next());
        assert_eq!(resp.header("X-Fuzz"), Some("yes"));
    } else {
        assert_eq!(resp.subprotocol(), None);
    }
    let head_len = head_end(input.data).expect("the request head was read");
    let conn = Conn::new(ws, input.cfg & 0x80 != 0);
    run_connection(
        &input,
        &stream,
        conn,
        Role::Server,
        &input.data[head_len..],
        end,
    );
});
