//! What `ClientBuilder` writes for an arbitrary URL, extra header and subprotocol: whatever it
//! accepts must be a request our own server-side parser reads back as a valid upgrade, with
//! the same target, `Host`, header and subprotocol (no injection through any of them).
//!
//! Input: `url \n header-name \n header-value \n subprotocol` (UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::handshake::server::check_request;
use stdws::{ClientBuilder, Error, Request};
use stdws_fuzz::{head_end, FuzzStream, Input};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let url = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    let protocol = parts.next();
    // An empty read side: the handshake fails with `Incomplete` after writing the request.
    let input = Input::split(&[0, 0]);
    let stream = FuzzStream::new(&input, &[]);
    // Known findings (reported, not fixed here), skipped so the run can go on:
    // - F2: `.header("Host", "")` (or only blanks) is written as an empty `Host`, which our
    //   own server refuses;
    // - F3: a hand-set `Sec-WebSocket-Protocol` header is sent next to the one built from
    //   `.subprotocol()`, so the server sees offers the client's check does not know.
    if name.eq_ignore_ascii_case("host") && value.trim_matches([' ', '\t']).is_empty() {
        return;
    }
    let protocol_by_hand = name.eq_ignore_ascii_case("sec-websocket-protocol");
    let mut builder = ClientBuilder::new(url);
    if !name.is_empty() {
        builder = builder.header(name, value);
    }
    if let Some(p) = protocol {
        builder = builder.subprotocol(p);
    }
    let result = builder.client(stream.clone());
    let out = stream.wire().out.clone();
    match result {
        Err(Error::Url(_) | Error::InvalidInput(_)) => {
            assert!(out.is_empty(), "wrote a request for a refused URL/header");
            return;
        }
        Err(Error::Handshake(stdws::HandshakeError::Incomplete)) => {}
        other => panic!("unexpected result {:?}", other.map(|_| ())),
    }
    let end = head_end(&out).expect("a whole request head");
    assert_eq!(end, out.len(), "bytes after the request head");
    let request = Request::parse(&out, 64).unwrap_or_else(|e| {
        panic!(
            "own request does not parse ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    if let Err((_, e)) = check_request(&request) {
        panic!(
            "own request fails check_request ({e}): {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert!(request.uri().starts_with('/'));
    if !name.is_empty() && !name.eq_ignore_ascii_case("host") {
        let trimmed = value.trim_matches([' ', '\t']);
        assert!(
            request.headers().get_all(name).any(|v| v == trimmed),
            "header {name:?}: {value:?} did not arrive as sent"
        );
    }
    if let (Some(p), false) = (protocol, protocol_by_hand) {
        assert_eq!(request.subprotocols().collect::<Vec<_>>(), [p]);
    }
});
