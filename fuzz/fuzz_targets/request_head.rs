//! `Request::parse` with `max_headers` from the first byte, its accessors, the server's
//! upgrade check, and a serialize -> parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::handshake::server::check_request;
use stdws::Request;

fuzz_target!(|input: &[u8]| {
    let [max, head @ ..] = input else { return };
    let max_headers = usize::from(*max);
    let Ok(req) = Request::parse(head, max_headers) else {
        return;
    };
    let uri = req.uri();
    let path = req.path();
    assert!(!uri.is_empty());
    assert!(uri.starts_with(path));
    match req.query() {
        Some(q) => assert_eq!(format!("{path}?{q}"), uri),
        None => assert_eq!(path, uri),
    }
    assert!(!req.method().is_empty());
    assert!(req.version().0 <= 9 && req.version().1 <= 9);
    let headers = req.headers();
    assert!(headers.len() <= max_headers);
    assert_eq!(headers.iter().count(), headers.len());
    for (name, value) in headers.iter() {
        assert!(!name.is_empty());
        assert_eq!(headers.count(name), headers.get_all(name).count());
        assert!(headers.get(name).is_some());
        assert!(!value.starts_with([' ', '\t']) && !value.ends_with([' ', '\t']));
        for item in headers.list(name) {
            assert!(!item.is_empty() && !item.contains(','));
            assert!(headers.has_token(name, &item.to_ascii_uppercase()));
        }
    }
    for p in req.subprotocols() {
        assert!(!p.is_empty() && !p.contains(','));
    }
    let _ = (req.origin(), req.header("Host"), req.header(""));
    if let Ok(key) = check_request(&req) {
        assert_eq!(req.method(), "GET");
        assert!(req.version() >= (1, 1));
        assert_eq!(key.len(), 24, "a 16-byte key is 24 base64 characters");
    }

    // Serializing what was parsed and parsing it again gives the same request.
    let (major, minor) = req.version();
    let mut again = format!("{} {uri} HTTP/{major}.{minor}\r\n", req.method());
    for (name, value) in headers.iter() {
        again.push_str(&format!("{name}: {value}\r\n"));
    }
    again.push_str("\r\n");
    let req2 = Request::parse(again.as_bytes(), max_headers)
        .unwrap_or_else(|e| panic!("re-serialized request {again:?} fails: {e}"));
    assert_eq!(req2.method(), req.method());
    assert_eq!(req2.uri(), uri);
    // `HTTP/2` parses as (2, 0); written back as HTTP/2.0 it must still be (2, 0).
    assert_eq!(req2.version(), req.version());
    assert_eq!(req2.headers(), headers);
});
