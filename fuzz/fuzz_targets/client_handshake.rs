//! `stdws::proto::ClientHandshake` (from `ClientBuilder::handshake_machine`) fed an
//! arbitrary server answer chopped three ways (as the input's chunk bytes say, one byte at a
//! time, and as much as `read_buf()` takes), then `finish()`; after a 101 the bytes behind
//! the head (those the handshake kept, then the rest) go into the `Connection` through the
//! driver and checks of `src/proto.rs`, for the input's chopping and one byte at a time,
//! which must read the same.
//!
//! The accept key depends on the random `Sec-WebSocket-Key` each machine writes, so the
//! marker `@ACCEPT@` in the input's head is replaced with the right value for that key (the
//! `client_stream` convention): inputs built from the seeds get past the handshake. Markers
//! after the head are left alone, so every machine's connection reads the same frames.
//!
//! Checked, besides "no panic, no hang":
//! - the request is one complete head that our own `Request::parse` reads and
//!   `check_request` accepts, offering exactly the configured subprotocols; `consume` of
//!   any piece leaves exactly the rest;
//! - `read_buf()` is never empty nor over 4 KiB, and never offers more than
//!   `max_head_size + 1` bytes in all before the head is complete;
//! - the head is complete exactly when an independent scan finds its end, within
//!   `max_head_size`, and parses the same in one piece; a failure of `filled` comes only
//!   before the head, and is `HeadTooLarge`, `TooManyHeaders`, `Malformed` or (EOF)
//!   `Incomplete`;
//! - `is_complete()` holds exactly when it should: a 101 at once; a refusal once
//!   `Content-Length` bytes (at most 64 KiB) arrived, at once without a valid one, or at
//!   EOF; `finish()` before that fails with `InvalidInput`;
//! - `finish()` accepts a 101 exactly when an independent check of RFC 6455 §4.1 does
//!   (`Upgrade`/`Connection` tokens, one matching `Sec-WebSocket-Accept`, at most one
//!   offered subprotocol, no extension), and then the response's `subprotocol()` is one
//!   that was offered; a refusal is `Error::Http` with the status and as body exactly the
//!   bytes after the head, cut at `Content-Length` and 64 KiB;
//! - the three choppings read the same head (or fail the same way) and finish the same way;
//! - the connection: the sans-I/O oracle of `src/proto.rs`, both choppings reading the same.
//!
//! Layout: `[cfg] [lens] [chunk sizes: lens & 0x0F bytes] [ops: lens >> 4 bytes] [data]`.
//! `cfg` bits 0-1: `max_head_size` 64, 200, 1024, 4096; bits 2-3: `max_headers` 4, 5, 6,
//! 64; bit 4: offer the subprotocols `chat` and `superchat`; bit 5: the request is written
//! in pieces (sizes from the op bytes, `0x3F` masked, 0 meaning all), one before each chunk
//! of the answer, so the answer arrives while the request is still going out; bit 6: EOF
//! after the data; bit 7: keep feeding the handshake two more chunks after the answer is
//! complete, before `finish`. The connection has small limits (frame 300, message 700,
//! read buffer 256, `max_write_buffer_size` 64).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::handshake::derive_accept_key;
use stdws::handshake::server::check_request;
use stdws::proto::ClientHandshake;
use stdws::{ClientBuilder, Config, Error, HandshakeError, Request, Response, State};
use stdws_fuzz::proto::{self, check_same, Counting, Drive};
use stdws_fuzz::{find, head_end, header_value, Input, ACCEPT_MARKER};

#[global_allocator]
static ALLOC: Counting = Counting;

const OFFERED: [&str; 2] = ["chat", "superchat"];

/// Largest refusal body kept (documented on `ClientHandshake::finish`).
const MAX_BODY: usize = 64 << 10;

/// What one chopping came to.
struct Fed {
    /// The server's bytes as this machine saw them (`@ACCEPT@` replaced for its key).
    data: Vec<u8>,
    accept: String,
    /// Bytes given to the handshake.
    fed: usize,
    /// The end of the response head, once it arrived.
    head: Option<usize>,
    how: How,
}

enum How {
    /// `is_complete()`: call `finish`.
    Complete(ClientHandshake),
    /// The data ran out without EOF before the answer was complete.
    Waiting(ClientHandshake),
    /// `filled` failed.
    Failed(Error),
}

/// The elements of every `name` list header, trimmed, empty ones skipped (RFC 9110
/// §5.6.1), from the raw fields.
fn elements<'a>(r: &'a Response, name: &'a str) -> Vec<&'a str> {
    r.headers()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty())
        .collect()
}

/// Whether a 101 passes RFC 6455 §4.1 for a client that sent the key whose accept value
/// is `accept` and offered `offered` (no extension is ever offered).
fn acceptable(r: &Response, accept: &str, offered: &[&str]) -> bool {
    let has = |name, token: &str| {
        elements(r, name)
            .iter()
            .any(|e| e.eq_ignore_ascii_case(token))
    };
    let accepts: Vec<&str> = r
        .headers()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Accept"))
        .map(|(_, v)| v)
        .collect();
    let protocols = elements(r, "Sec-WebSocket-Protocol");
    has("Upgrade", "websocket")
        && has("Connection", "upgrade")
        && accepts == [accept]
        && (protocols.is_empty() || (protocols.len() == 1 && offered.contains(&protocols[0])))
        && elements(r, "Sec-WebSocket-Extensions").is_empty()
}

/// The `Content-Length` a refusal declares, as RFC 9110 §8.6 reads it: every value all
/// digits and the same; `None` when absent or invalid (then the body is what arrived).
fn declared_length(r: &Response) -> Option<u64> {
    let values: Vec<&str> = r
        .headers()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v)
        .collect();
    let mut parsed = values.iter().map(|v| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            v.parse::<u64>().ok()
        }
    });
    let first = parsed.next()??;
    parsed.all(|v| v == Some(first)).then_some(first)
}

/// A response's parts with this machine's accept value put back as the marker, for
/// comparing the heads the three machines (three keys) read.
fn summary(r: &Response, accept: &str) -> String {
    let marker = std::str::from_utf8(ACCEPT_MARKER).unwrap();
    format!(
        "{} {:?} {:?}",
        r.status(),
        r.reason().replace(accept, marker),
        r.headers()
            .iter()
            .map(|(n, v)| (n.replace(accept, marker), v.replace(accept, marker)))
            .collect::<Vec<_>>()
    )
}

/// A new machine; checks the request it writes. Returns it and its accept value.
fn machine(config: &Config, offer: bool) -> (ClientHandshake, String) {
    let mut builder = ClientBuilder::new("ws://example.com/chat")
        .header("Origin", "http://example.com")
        .config(config.clone());
    if offer {
        for p in OFFERED {
            builder = builder.subprotocol(p);
        }
    }
    let hs = builder.handshake_machine().expect("a valid builder");
    let request = hs.output();
    assert_eq!(
        head_end(request),
        Some(request.len()),
        "the request is not one complete head"
    );
    let parsed = Request::parse(request, 64).expect("our own request parses");
    if let Err((_, e)) = check_request(&parsed) {
        panic!("our own request fails the server's check: {e}");
    }
    let offered: Vec<&str> = parsed.subprotocols().collect();
    assert_eq!(offered, if offer { &OFFERED[..] } else { &[] });
    let key = header_value(request, b"Sec-WebSocket-Key").expect("a key");
    let accept = derive_accept_key(std::str::from_utf8(key).expect("an ASCII key"));
    (hs, accept)
}

/// `data` with every marker in its head replaced by `accept` (not in the frames after it:
/// the machines' keys differ, and the runs of the connection must read the same bytes).
fn substitute(data: &[u8], accept: &str) -> Vec<u8> {
    let end = head_end(data).unwrap_or(data.len());
    let mut out = Vec::with_capacity(data.len());
    let mut rest = &data[..end];
    while let Some(i) = find(rest, ACCEPT_MARKER) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(accept.as_bytes());
        rest = &rest[i + ACCEPT_MARKER.len()..];
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(&data[end..]);
    out
}

struct Params<'a> {
    config: &'a Config,
    offer: bool,
    /// Sizes of the request's pieces (empty: all at once).
    writes: &'a [u8],
    eof: bool,
    /// Chunks fed after the answer is complete.
    extra: usize,
}

/// Whether the answer is complete after `after` bytes behind a head parsed as `r` (not
/// counting EOF).
fn complete_after(r: &Response, after: usize) -> bool {
    r.status() == 101 || declared_length(r).map_or(true, |l| after as u64 >= l.min(MAX_BODY as u64))
}

fn feed(p: &Params<'_>, raw: &[u8], chunks: &[u8]) -> Fed {
    let (mut hs, accept) = machine(p.config, p.offer);
    let data = substitute(raw, &accept);
    let max_head = p.config.max_head_size;
    let end = head_end(&data);
    let (mut pos, mut ci, mut wi) = (0usize, 0usize, 0usize);
    let mut left: Option<usize> = None;
    let mut head: Option<usize> = None;
    let done = |how: How, pos, head| Fed {
        data: data.clone(),
        accept: accept.clone(),
        fed: pos,
        head,
        how,
    };
    loop {
        // The request goes out in pieces (or at once) while the answer comes in.
        let out = hs.output().len();
        if out > 0 {
            let piece = match p.writes.get(wi % p.writes.len().max(1)) {
                None => usize::MAX,
                Some(&b) if b & 0x3F == 0 => usize::MAX,
                Some(&b) => usize::from(b & 0x3F),
            };
            wi += 1;
            let before = hs.output().to_vec();
            hs.consume(piece);
            let n = piece.min(out);
            assert_eq!(hs.output(), &before[n..], "consume({piece}) of {out} bytes");
        }
        let room = hs.read_buf().len();
        assert!(
            room > 0 && room <= 4096,
            "read_buf() of {room} bytes (after {pos})"
        );
        if head.is_none() {
            assert!(
                pos + room <= max_head + 1,
                "read_buf() offers {room} bytes after {pos}, past max_head_size {max_head} + 1"
            );
        }
        if pos == data.len() || left == Some(0) {
            if left.is_some() {
                return done(How::Complete(hs), pos, head);
            }
            if !p.eof {
                assert!(!hs.is_complete());
                return done(How::Waiting(hs), pos, head);
            }
            match (hs.filled(0), head) {
                (Err(e @ Error::Handshake(HandshakeError::Incomplete)), None) => {
                    return done(How::Failed(e), pos, head);
                }
                (Ok(()), Some(_)) => {
                    assert!(hs.is_complete(), "a refusal is not complete at EOF");
                    return done(How::Complete(hs), pos, head);
                }
                (r, head) => panic!("filled(0) with the head at {head:?} returned {r:?}"),
            }
        }
        let want = match chunks.get(ci % chunks.len().max(1)) {
            None | Some(0) => usize::MAX,
            Some(&b) => usize::from(b),
        };
        ci += 1;
        let n = want.min(room).min(data.len() - pos);
        hs.read_buf()[..n].copy_from_slice(&data[pos..pos + n]);
        let before = pos;
        pos += n;
        match hs.filled(n) {
            Ok(()) => {}
            Err(e) => {
                assert!(head.is_none(), "filled failed after the head: {e:?}");
                assert!(
                    matches!(
                        e,
                        Error::Handshake(
                            HandshakeError::HeadTooLarge
                                | HandshakeError::TooManyHeaders
                                | HandshakeError::Malformed(_)
                        )
                    ),
                    "filled failed with {e:?}"
                );
                return done(How::Failed(e), pos, head);
            }
        }
        match (head, hs.response()) {
            (None, None) => assert!(
                end.map_or(true, |e| e > pos),
                "the head ends at {end:?} and has not arrived after {pos} bytes"
            ),
            (None, Some(_)) => {
                let e = end.expect("a head arrived where no scan finds one");
                assert!(
                    before < e && e <= pos,
                    "the head ending at {e} arrived with bytes {before}..{pos}"
                );
                assert!(
                    e <= max_head,
                    "a {e}-byte head passed max_head_size {max_head}"
                );
                head = Some(e);
            }
            (Some(_), Some(_)) => {}
            (Some(_), None) => panic!("the response went away"),
        }
        if let (Some(h), Some(r)) = (head, hs.response()) {
            let complete = complete_after(r, pos - h);
            assert_eq!(
                hs.is_complete(),
                complete,
                "is_complete() for status {} with {} bytes after the head",
                r.status(),
                pos - h
            );
        } else {
            assert!(!hs.is_complete());
        }
        if hs.is_complete() {
            left = Some(match left {
                None => p.extra,
                Some(k) => k - 1,
            });
        }
    }
}

/// What `finish` came to, comparable across choppings.
#[derive(Debug, PartialEq)]
enum Finished {
    Open,
    Refused(u16),
    Failed(String),
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::split(bytes);
    let c = input.cfg;
    let max_head = [64, 200, 1024, 4096][usize::from(c & 3)];
    let max_headers = [4, 5, 6, 64][usize::from((c >> 2) & 3)];
    let config = proto::config(false, true, true, true)
        .max_head_size(max_head)
        .max_headers(max_headers);
    let (offer, pieces, eof, keep_feeding) =
        (c & 0x10 != 0, c & 0x20 != 0, c & 0x40 != 0, c & 0x80 != 0);
    let offered: &[&str] = if offer { &OFFERED } else { &[] };
    let params = Params {
        config: &config,
        offer,
        writes: if pieces { input.write_schedule } else { &[] },
        eof,
        extra: if keep_feeding { 2 } else { 0 },
    };
    let raw = input.data;
    let first = feed(&params, raw, input.read_schedule);
    let bytewise = feed(&Params { extra: 0, ..params }, raw, &[1]);
    let whole = feed(&Params { extra: 0, ..params }, raw, &[0]);

    // The three choppings read the same head, or fail the same way.
    let outcome = |f: &Fed| match &f.how {
        How::Complete(hs) | How::Waiting(hs) => Ok(hs.response().map(|r| summary(r, &f.accept))),
        // The same class of failure (where a limit is noticed may depend on the chopping).
        How::Failed(Error::Handshake(e)) => Err(match e {
            HandshakeError::Incomplete => "incomplete",
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => "over a limit",
            HandshakeError::Malformed(_) => "malformed",
            e => panic!("filled failed with {e:?}"),
        }),
        How::Failed(e) => panic!("filled failed with {e:?}"),
    };
    let expected = outcome(&first);
    if stdws_fuzz::debug() {
        eprintln!("[stdws-fuzz] client handshake cfg {c:#04x}: {expected:?}");
    }
    for (other, how) in [(&bytewise, "one byte at a time"), (&whole, "all at once")] {
        assert_eq!(
            expected,
            outcome(other),
            "the handshake read differently {how}"
        );
    }

    let mut finished = Vec::new();
    let mut results = Vec::new();
    for (fed, drive) in [
        (
            first,
            Some(Drive {
                chunks: input.read_schedule,
                ops: input.write_schedule,
                eof,
                owned: false,
                probe_growth: false,
            }),
        ),
        (bytewise, Some(Drive::bytewise(eof, false))),
        (whole, None),
    ] {
        let hs = match fed.how {
            How::Failed(_) => return,
            How::Waiting(hs) => {
                match hs.finish() {
                    Err(Error::InvalidInput(_)) => {}
                    other => panic!(
                        "finish() before the answer returned {:?}",
                        other.map(|r| r.1)
                    ),
                }
                return;
            }
            How::Complete(hs) => hs,
        };
        let head = fed.head.expect("complete without a head");
        let response = hs.response().expect("complete without a response");
        let status = response.status();
        let ok = status == 101 && acceptable(response, &fed.accept, offered);
        let keep = declared_length(response).map_or(MAX_BODY, |l| l.min(MAX_BODY as u64) as usize);
        // The head parses the same alone.
        let alone = Response::parse(&fed.data[..head], max_headers).expect("the head alone parses");
        assert_eq!(summary(&alone, &fed.accept), summary(response, &fed.accept));
        match hs.finish() {
            Ok((conn, resp)) => {
                assert!(ok, "finish() accepted a response the §4.1 check refuses");
                assert_eq!(resp.status(), 101);
                assert!(resp.body().is_empty());
                if let Some(p) = resp.subprotocol() {
                    assert!(
                        offered.contains(&p),
                        "the response's subprotocol() {p:?} was not offered ({offered:?})"
                    );
                }
                assert_eq!(conn.state(), State::Open);
                assert!(conn.output().is_empty(), "a new connection has output");
                finished.push(Finished::Open);
                if let Some(drive) = drive {
                    let ctx = format!(
                        "cfg {c:#04x}, head {head} bytes, {} data bytes",
                        fed.data.len()
                    );
                    let reference = &fed.data[head..];
                    let feed_rest = &fed.data[fed.fed..];
                    results.push(proto::run(conn, drive, false, reference, feed_rest, &ctx));
                }
            }
            Err(Error::Http(r)) => {
                assert_ne!(status, 101, "a 101 refused as Error::Http");
                assert_eq!(r.status(), status);
                let after = &fed.data[head..fed.fed];
                let body = &after[..after.len().min(keep)];
                assert_eq!(
                    r.body(),
                    body,
                    "the refusal's body is not the bytes after its head"
                );
                finished.push(Finished::Refused(status));
            }
            Err(e) => {
                assert!(
                    !ok,
                    "finish() refused a response the §4.1 check accepts: {e:?}"
                );
                assert_eq!(status, 101, "a refusal failed with {e:?}");
                assert!(
                    matches!(
                        e,
                        Error::Handshake(
                            HandshakeError::Header(_)
                                | HandshakeError::AcceptMismatch
                                | HandshakeError::UnexpectedSubprotocol(_)
                                | HandshakeError::UnexpectedExtension(_)
                        )
                    ),
                    "finish() failed with {e:?}"
                );
                let marker = std::str::from_utf8(ACCEPT_MARKER).unwrap();
                finished.push(Finished::Failed(
                    format!("{e:?}").replace(&fed.accept, marker),
                ));
            }
        }
    }
    assert!(
        finished.windows(2).all(|w| w[0] == w[1]),
        "the choppings finished differently: {finished:?}"
    );
    if let [a, b] = &results[..] {
        check_same(a, b, "after the handshake, one byte at a time");
    }
});
