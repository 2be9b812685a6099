//! `Response::parse` with `max_headers` from the first byte, its accessors, and a
//! serialize -> parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::Response;

fuzz_target!(|input: &[u8]| {
    let [max, head @ ..] = input else { return };
    let max_headers = usize::from(*max);
    let Ok(resp) = Response::parse(head, max_headers) else {
        return;
    };
    assert!(resp.status() <= 999);
    assert!(resp.body().is_empty());
    let headers = resp.headers();
    assert!(headers.len() <= max_headers);
    for (name, value) in headers.iter() {
        assert!(!name.is_empty());
        assert!(!value.contains(['\r', '\n']));
        for item in headers.list(name) {
            assert!(headers.has_token(name, item));
        }
    }
    let _ = (
        resp.subprotocol(),
        resp.header("Sec-WebSocket-Accept"),
        resp.reason(),
    );

    let mut again = format!("HTTP/1.1 {:03} {}\r\n", resp.status(), resp.reason());
    for (name, value) in headers.iter() {
        again.push_str(&format!("{name}: {value}\r\n"));
    }
    again.push_str("\r\n");
    let resp2 = Response::parse(again.as_bytes(), max_headers)
        .unwrap_or_else(|e| panic!("re-serialized response {again:?} fails: {e}"));
    assert_eq!(resp2.status(), resp.status());
    assert_eq!(resp2.reason(), resp.reason());
    assert_eq!(resp2.headers(), headers);
});
