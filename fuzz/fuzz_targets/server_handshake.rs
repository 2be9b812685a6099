//! `stdws::proto::ServerHandshake` fed arbitrary bytes chopped three ways (as the input's
//! chunk bytes say, one byte at a time, and as much as `read_buf()` takes): each must give
//! the same parsed request (method, target, version, headers) or a refusal with the same
//! status. Then, for a request: `accept()` (or, with cfg bit 4, `accept_with` choosing the
//! first offered subprotocol and adding a header), `reject(503)` or `respond(200)` (cfg
//! bit 6), and checks on the bytes: a refusal or answer is a complete HTTP response
//! (status line, `Content-Length` matching the body, `Connection: close`), a 101 is the
//! only output at first and carries the right `Sec-WebSocket-Accept` and subprotocol, and
//! `accept` succeeds exactly when `is_websocket()` said so. The bytes after the head (those
//! the handshake kept, then the rest) go into the `Connection` through the driver and
//! checks of `src/proto.rs`, for the input's chopping and one byte at a time, which must
//! read the same.
//!
//! Layout: `[cfg] [lens] [chunk sizes: lens & 0x0F bytes] [ops: lens >> 4 bytes] [data]`.
//! `cfg` bits 0-1: `max_head_size` 64, 200, 1024, 4096; bits 2-3: `max_headers` 4, 5, 6, 64;
//! bit 4: `accept_with` (or `respond` with bit 6); bit 5: keep feeding the handshake after
//! the request arrived (up to 4 more chunks) before accepting; bit 6: `reject`/`respond`
//! instead of accepting; bit 7: EOF after the data. The connection has small limits
//! (frame 300, message 700, read buffer 256, `max_write_buffer_size` 64).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::handshake::derive_accept_key;
use stdws::handshake::server::check_request;
use stdws::proto::{Refusal, ServerHandshake};
use stdws::{Config, Error, HandshakeError, Rejection, Request, Response};
use stdws_fuzz::proto::{self, check_same, Counting, Drive};
use stdws_fuzz::{find, head_end, Input};

#[global_allocator]
static ALLOC: Counting = Counting;

/// What a handshake came to.
#[allow(clippy::large_enum_variant)] // one per run, never moved around
enum Fed {
    /// The request arrived after `fed` bytes of the input were given to the handshake.
    Request(ServerHandshake, usize),
    Refused(Refusal),
}

/// A request's parts, for comparing requests parsed from differently chopped input.
fn summary(r: &Request) -> String {
    format!(
        "{} {} {:?} {:?}",
        r.method(),
        r.uri(),
        r.version(),
        r.headers().iter().collect::<Vec<_>>()
    )
}

/// Checks that `bytes` are one complete HTTP response that closes the connection; returns
/// its status.
fn check_answer(bytes: &[u8], what: &str) -> u16 {
    let end = find(bytes, b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "{what}: not a complete head: {:?}",
            String::from_utf8_lossy(bytes)
        )
    }) + 4;
    let resp = Response::parse(&bytes[..end], 64)
        .unwrap_or_else(|e| panic!("{what}: our own response does not parse: {e}"));
    let len: usize = resp
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Content-Length"));
    assert_eq!(
        len,
        bytes.len() - end,
        "{what}: Content-Length is not the body's length"
    );
    assert!(
        resp.headers().has_token("Connection", "close"),
        "{what}: no Connection: close"
    );
    assert!(bytes.starts_with(format!("HTTP/1.1 {} ", resp.status()).as_bytes()));
    resp.status()
}

/// Checks a refusal of `filled` (a head that could not be read); returns its status (None:
/// nobody to answer).
fn check_refusal(r: &Refusal) -> Option<u16> {
    let expected = match &r.error {
        Error::Handshake(HandshakeError::Incomplete) => None,
        Error::Handshake(HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders) => {
            Some(431)
        }
        Error::Handshake(HandshakeError::Malformed(_)) => Some(400),
        e => panic!("filled() refused with {e:?}"),
    };
    let status = (!r.response.is_empty()).then(|| check_answer(&r.response, "refusal"));
    assert_eq!(
        status, expected,
        "refusal {:?} answered with {status:?}",
        r.error
    );
    status
}

/// Feeds `data` to a new handshake in `chunks` (cyclic; 0: as much as `read_buf` offers),
/// then EOF if the head did not complete; after the request, `extra` more chunks.
fn feed(config: &Config, data: &[u8], chunks: &[u8], extra: usize) -> Fed {
    let mut hs = ServerHandshake::new(config.clone());
    let (mut pos, mut ci) = (0usize, 0usize);
    let mut left: Option<usize> = None;
    loop {
        let len_before = hs.request().is_some();
        let room = hs.read_buf();
        assert!(
            !room.is_empty() && room.len() <= 4096,
            "read_buf() of {} bytes",
            room.len()
        );
        if !len_before {
            assert!(
                pos + room.len() <= config.max_head_size + 1,
                "read_buf() offers {} bytes after {pos}, past max_head_size {} + 1",
                room.len(),
                config.max_head_size
            );
        }
        if pos == data.len() || left == Some(0) {
            if left.is_some() {
                return Fed::Request(hs, pos);
            }
            match hs.filled(0) {
                Err(r) => return Fed::Refused(r),
                Ok(r) => panic!("filled(0) without a request returned {:?}", r.map(summary)),
            }
        }
        let want = match chunks.get(ci % chunks.len().max(1)) {
            None | Some(0) => usize::MAX,
            Some(&b) => usize::from(b),
        };
        ci += 1;
        let n = want.min(room.len()).min(data.len() - pos);
        room[..n].copy_from_slice(&data[pos..pos + n]);
        pos += n;
        match hs.filled(n) {
            Ok(None) => assert!(left.is_none(), "the request went away"),
            Ok(Some(_)) => {
                left = Some(match left {
                    None => extra,
                    Some(k) => k - 1,
                });
                if left == Some(0) {
                    return Fed::Request(hs, pos);
                }
            }
            Err(r) => {
                assert!(
                    left.is_none(),
                    "refused after the request arrived: {:?}",
                    r.error
                );
                return Fed::Refused(r);
            }
        }
    }
}

fn outcome(fed: &Fed) -> Result<String, Option<u16>> {
    match fed {
        Fed::Request(hs, _) => Ok(summary(hs.request().expect("arrived"))),
        Fed::Refused(r) => Err(check_refusal(r)),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::split(bytes);
    let c = input.cfg;
    let max_head = [64, 200, 1024, 4096][usize::from(c & 3)];
    let max_headers = [4, 5, 6, 64][usize::from((c >> 2) & 3)];
    let config = proto::config(false, true, true, true)
        .max_head_size(max_head)
        .max_headers(max_headers);
    let data = input.data;
    let (choose, keep_feeding, answer, eof) =
        (c & 0x10 != 0, c & 0x20 != 0, c & 0x40 != 0, c & 0x80 != 0);

    let first = feed(
        &config,
        data,
        input.read_schedule,
        if keep_feeding { 4 } else { 0 },
    );
    let bytewise = feed(&config, data, &[1], 0);
    let whole = feed(&config, data, &[0], 0);
    let expected = outcome(&first);
    if stdws_fuzz::debug() {
        eprintln!(
            "[stdws-fuzz] handshake cfg {c:#04x}: {:?}",
            expected.as_ref().map(|_| "request")
        );
    }
    for (other, how) in [(&bytewise, "one byte at a time"), (&whole, "all at once")] {
        let got = outcome(other);
        assert_eq!(expected, got, "the handshake read differently {how}");
    }
    let Ok(request) = expected else { return };

    // The head is where an independent scan says, within the limit, and parses the same
    // in one piece.
    let end = head_end(data).expect("a request without a head end");
    assert!(
        end <= max_head,
        "a {end}-byte head passed max_head_size {max_head}"
    );
    let alone = Request::parse(&data[..end], max_headers).expect("the head alone parses");
    assert_eq!(summary(&alone), request);

    let reference = &data[end..];
    let ctx = format!("cfg {c:#04x}, head {end} bytes, {} data bytes", data.len());
    let mut results = Vec::new();
    for (fed, drive) in [
        (
            first,
            Drive {
                chunks: input.read_schedule,
                ops: input.write_schedule,
                eof,
                owned: false,
                probe_growth: false,
            },
        ),
        (bytewise, Drive::bytewise(eof, false)),
    ] {
        let Fed::Request(hs, fed) = fed else {
            unreachable!()
        };
        let req = hs.request().expect("arrived").clone();
        let is_websocket = hs.is_websocket();
        assert_eq!(is_websocket, check_request(&req).is_ok());
        if answer {
            let (bytes, status) = if choose {
                (
                    hs.respond(200, "text/plain", b"hello")
                        .expect("a valid answer"),
                    200,
                )
            } else {
                (
                    hs.reject(&Rejection::new(503, "busy"))
                        .expect("a valid refusal"),
                    503,
                )
            };
            assert_eq!(check_answer(&bytes, "answer"), status);
            return;
        }
        let result = if choose {
            hs.accept_with(|req, resp| {
                if let Some(p) = req.subprotocols().next() {
                    resp.set_subprotocol(p);
                }
                resp.append_header("X-Fuzz", "yes");
                Ok(())
            })
        } else {
            hs.accept()
        };
        let mut conn = match result {
            Ok(conn) => conn,
            Err(refusal) => {
                assert!(
                    !is_websocket,
                    "is_websocket() but refused: {:?}",
                    refusal.error
                );
                assert!(
                    matches!(refusal.error, Error::Handshake(_)),
                    "refused with {:?}",
                    refusal.error
                );
                let status = check_answer(&refusal.response, "refusal of the upgrade");
                assert!((400..=599).contains(&status), "refusal status {status}");
                return;
            }
        };
        assert!(
            is_websocket,
            "accept() took a request is_websocket() refused"
        );
        let out = conn.output();
        let head = find(out, b"\r\n\r\n").expect("a complete 101 head") + 4;
        assert_eq!(head, out.len(), "the 101 is all there is to write at first");
        assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        let resp = Response::parse(out, 64).expect("our own 101 parses");
        assert_eq!(resp.status(), 101);
        let key = req.header("Sec-WebSocket-Key").expect("a key was required");
        assert_eq!(
            resp.header("Sec-WebSocket-Accept"),
            Some(derive_accept_key(key).as_str())
        );
        if choose {
            assert_eq!(resp.subprotocol(), req.subprotocols().next());
            assert_eq!(resp.header("X-Fuzz"), Some("yes"));
        } else {
            assert_eq!(resp.subprotocol(), None);
        }
        conn.consume(head);
        let feed_rest = &data[fed..];
        results.push(proto::run(conn, drive, false, reference, feed_rest, &ctx));
    }
    if let [a, b] = &results[..] {
        check_same(a, b, "after the handshake, one byte at a time");
    }
});
