//! The whole client: `ClientBuilder::client` over a fake stream whose read side is the fuzz
//! input (the server's response head, then its frames), then the read/echo loop of
//! `run_connection` (split halves with cfg bit 4).
//!
//! The accept key depends on a random `Sec-WebSocket-Key`, so the stream replaces the marker
//! `@ACCEPT@` in the input with the right value for the key the client wrote: inputs built
//! from the seeds get past the handshake; all others must simply fail cleanly.
//!
//! Also checked: the request the client wrote passes the server's own `check_request`, and a
//! refusal (`Error::Http`) carries the status and at most the declared/64 KiB body, taken
//! from the bytes after the head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::handshake::server::check_request;
use stdws::{ClientBuilder, Error, Request, Role};
use stdws_fuzz::{head_end, run_connection, Conn, FuzzStream, Input};

fuzz_target!(|bytes: &[u8]| {
    let input = Input::split(bytes);
    let url = if input.cfg & 0x80 != 0 {
        "ws://[::1]:9001/a/b?c=d&e"
    } else {
        "ws://example.com/chat"
    };
    let stream = FuzzStream::new(&input, input.data);
    stream.wire().substitute_accept = true;
    stream.wire().calm = input.cfg & 0x40 == 0;
    let result = ClientBuilder::new(url)
        .subprotocol("chat")
        .subprotocol("superchat")
        .header("Origin", "http://example.com")
        .config(input.config())
        .client(stream.clone());

    let out = stream.wire().out.clone();
    let request_len = head_end(&out);
    if !input.write_errors() {
        let end = request_len.expect("the request head was written whole");
        let request = Request::parse(&out[..end], 64).expect("own request parses");
        if let Err((_, e)) = check_request(&request) {
            panic!("own request fails the server's check: {e}");
        }
    }
    let data = stream.wire().data.clone();
    match result {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            stream.wire().calm = false;
            let start = request_len.expect("the request was written");
            let head_len = head_end(&data).expect("the response head was read");
            let conn = Conn::new(ws, input.cfg & 0x10 != 0);
            run_connection(
                &input,
                &stream,
                conn,
                Role::Client,
                &data[head_len..],
                start,
            );
        }
        Err(Error::Http(response)) => {
            assert_ne!(response.status(), 101);
            let head_len = head_end(&data).expect("the response head was read");
            let after = &data[head_len..];
            let body = response.body();
            assert!(body.len() <= 64 << 10, "refusal body over 64 KiB");
            assert!(
                after.starts_with(body),
                "body is not the bytes after the head"
            );
            // F1 (fixed in 047d62d): `Content-Length: 0` means an empty body, not the bytes
            // that follow the head.
            let declared = response
                .header("Content-Length")
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(n) = declared {
                assert!(body.len() <= n, "body longer than its Content-Length");
                let no_read_errors = !input.read_schedule.iter().any(|&b| b >= 0xFC);
                if no_read_errors {
                    assert_eq!(
                        body.len(),
                        n.min(64 << 10).min(after.len()),
                        "body cut short"
                    );
                }
            }
        }
        Err(_) => {}
    }
});
