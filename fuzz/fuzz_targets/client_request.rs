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
    // F2/F3 (found here, fixed in 047d62d): an empty `Host` override and a hand-set
    // `Sec-WebSocket-Protocol` are refused with `InvalidInput`, which the checks below
    // enforce (nothing written; the request carries exactly the `.subprotocol()` offer).
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
    if let Some(p) = protocol {
        assert_eq!(request.subprotocols().collect::<Vec<_>>(), [p]);
    }
});
