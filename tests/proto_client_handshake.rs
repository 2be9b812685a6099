//! `proto::ClientHandshake` over bytes: what the accepted response reports.

use stdws::handshake::derive_accept_key;
use stdws::ClientBuilder;

/// Runs a client handshake offering `chat` and `superchat` against a 101 carrying `extra`
/// header lines; returns what the accepted response's `subprotocol()` says.
fn accepted_subprotocol(extra: &str) -> Option<String> {
    let mut hs = ClientBuilder::new("ws://example.com/chat")
        .subprotocol("chat")
        .subprotocol("superchat")
        .handshake_machine()
        .unwrap();
    let request = String::from_utf8(hs.output().to_vec()).unwrap();
    hs.consume(request.len());
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        derive_accept_key(key)
    );
    hs.read_buf()[..answer.len()].copy_from_slice(answer.as_bytes());
    hs.filled(answer.len()).unwrap();
    let (_conn, response) = hs.finish().unwrap();
    response.subprotocol().map(str::to_owned)
}

// Found by the client_handshake fuzz target: the handshake checks the chosen subprotocol as
// a list (RFC 9110 §5.6.1: empty elements and blanks around them do not count), while
// `Response::subprotocol()` returned the first raw header value, so an accepted response
// could report a subprotocol that was never offered ("chat,", "", " ,").
#[test]
fn the_accepted_subprotocol_is_the_one_element_the_check_accepted() {
    assert_eq!(
        accepted_subprotocol("Sec-WebSocket-Protocol: chat\r\n").as_deref(),
        Some("chat")
    );
    assert_eq!(
        accepted_subprotocol("Sec-WebSocket-Protocol: superchat,\r\n").as_deref(),
        Some("superchat")
    );
    assert_eq!(
        accepted_subprotocol("Sec-WebSocket-Protocol: ,\r\nSec-WebSocket-Protocol: chat\r\n")
            .as_deref(),
        Some("chat")
    );
    assert_eq!(accepted_subprotocol("Sec-WebSocket-Protocol: \r\n"), None);
    assert_eq!(accepted_subprotocol(""), None);
}

// Found by the client_handshake fuzz target: `consume` clamps a count larger than the
// output, but added it to what was written first, which overflowed (a panic with overflow
// checks; without them the count wrapped and part of the request was handed out again).
#[test]
fn consume_takes_a_count_larger_than_the_output() {
    let mut hs = ClientBuilder::new("ws://example.com/chat")
        .handshake_machine()
        .unwrap();
    let len = hs.output().len();
    hs.consume(5);
    assert_eq!(hs.output().len(), len - 5);
    hs.consume(usize::MAX);
    assert!(hs.output().is_empty());
    hs.consume(usize::MAX);
    assert!(hs.output().is_empty());

    // The same for the bytes of the server's answer: a count larger than `read_buf` is
    // clamped to it.
    let mut server = stdws::proto::ServerHandshake::new(stdws::Config::default());
    server.read_buf()[..3].copy_from_slice(b"GET");
    assert!(server.filled(3).unwrap().is_none());
    let room = server.read_buf().len();
    assert!(room > 0);
    let _ = server.filled(usize::MAX);
}
