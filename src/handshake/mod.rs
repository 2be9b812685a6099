//! The opening handshake (RFC 6455 §4): the HTTP request and response types shared by both
//! roles, and the `Sec-WebSocket-Accept` computation.
//!
//! [`server`] validates a client's upgrade request and answers it; [`client`] builds the
//! request and validates the server's answer. Each side is a state machine over bytes
//! ([`server::ServerHandshake`], [`client::ClientHandshake`]) that reads the HTTP head as it
//! arrives, within the limits of `Config`, and keeps any bytes behind the head as the
//! connection's first input; the blocking `accept*`, `IncomingRequest` and `ClientBuilder`
//! calls run those machines over a stream.

// This file names neither the crate-wide `Error` nor `WebSocket`: `Error::Http` carries a
// `Response`, so the types here sit below `error.rs`. What touches the stream or the new
// connection is in `io.rs`.

pub mod client;
pub mod server;

use std::borrow::Cow;
use std::time::Instant;

use base64::Engine;

use crate::config::Config;
use crate::http::{self, HandshakeError, Headers};
use crate::percent;
pub use crate::percent::PercentDecodeError;

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
///
/// ```
/// assert_eq!(
///     stdws::handshake::derive_accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn derive_accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// A client's HTTP upgrade request, as seen by the server.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    version: (u8, u8),
    headers: Headers,
}

impl Request {
    /// Parses a complete request head (request line and headers, ending with the blank line).
    /// Does not check that it is a valid WebSocket upgrade (see [`server`]).
    pub fn parse(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
        let head = http::parse_head(head, max_headers)?;
        let mut parts = head.start_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HandshakeError::Malformed(
                "request line is not METHOD TARGET VERSION",
            ));
        };
        if method.is_empty() || !method.bytes().all(http::is_tchar) {
            return Err(HandshakeError::Malformed("invalid method"));
        }
        let version = http::parse_version(version)
            .ok_or(HandshakeError::Malformed("invalid HTTP version"))?;
        if target.is_empty() {
            return Err(HandshakeError::Malformed("empty request target"));
        }
        Ok(Request {
            method: method.to_owned(),
            target: target.to_owned(),
            version,
            headers: head.headers,
        })
    }

    /// The request method (`GET` for a valid upgrade).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent, e.g. `/chat?room=1`.
    pub fn uri(&self) -> &str {
        &self.target
    }

    /// The path part of the target, e.g. `/chat`.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query part of the target without the `?`, e.g. `room=1`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The path, percent-decoded (RFC 3986 §2.1): `/rooms/caf%C3%A9` gives `/rooms/café`.
    /// `%2F` decodes to `/` like any other escape, so split [`path`](Self::path) first if a
    /// segment may contain one. A `%` without two hex digits after it, or escapes that do not
    /// decode to UTF-8, give an error (answer it with a 400, say).
    ///
    /// ```
    /// # fn demo(req: &stdws::Request) {
    /// match req.decoded_path() {
    ///     Ok(path) => println!("room {}", path.trim_start_matches("/rooms/")),
    ///     Err(e) => println!("bad path: {e}"),
    /// }
    /// # }
    /// ```
    pub fn decoded_path(&self) -> Result<Cow<'_, str>, PercentDecodeError> {
        percent::decode(self.path(), false)
    }

    /// The query's `name=value` pairs, decoded as a browser's form encoding
    /// (`application/x-www-form-urlencoded`: `+` is a space, then `%XX` escapes), in order;
    /// a name without `=` has an empty value, and repeated names are all kept. No query
    /// gives no pairs. An invalid escape anywhere in the query, or one that does not decode
    /// to UTF-8, is an error.
    ///
    /// ```
    /// let head = b"GET /chat?room=caf%C3%A9&user=ada+l HTTP/1.1\r\nHost: x\r\n\r\n";
    /// let req = stdws::Request::parse(head, 64)?;
    /// assert_eq!(
    ///     req.query_params()?,
    ///     [("room".to_owned(), "café".to_owned()), ("user".to_owned(), "ada l".to_owned())]
    /// );
    /// assert_eq!(req.query_param("user")?.as_deref(), Some("ada l"));
    /// assert_eq!(req.query_param("token")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn query_params(&self) -> Result<Vec<(String, String)>, PercentDecodeError> {
        percent::query_pairs(self.query().unwrap_or(""))
    }

    /// The decoded value of the first query parameter called `name` (see
    /// [`query_params`](Self::query_params), whose errors it shares), or `None`.
    pub fn query_param(&self, name: &str) -> Result<Option<String>, PercentDecodeError> {
        let pairs = self.query_params()?;
        Ok(pairs.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
    }

    /// The HTTP version as (major, minor).
    pub fn version(&self) -> (u8, u8) {
        self.version
    }

    /// All request headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The `Origin` header, which browsers always send; compare it with your own origin to
    /// refuse cross-site connections (RFC 6455 §10.2).
    pub fn origin(&self) -> Option<&str> {
        self.headers.get("Origin")
    }

    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in its order of
    /// preference.
    pub fn subprotocols(&self) -> impl Iterator<Item = &str> {
        self.headers.list("Sec-WebSocket-Protocol")
    }

    /// The extension offers in `Sec-WebSocket-Extensions`, each with its parameters (e.g.
    /// `permessage-deflate; client_max_window_bits`), in the client's order of preference.
    pub fn extensions(&self) -> impl Iterator<Item = &str> {
        self.headers.list("Sec-WebSocket-Extensions")
    }
}

/// An HTTP response head (and for refusals, its body), as seen by the client.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    reason: String,
    headers: Headers,
    body: Vec<u8>,
    url: Option<String>,
}

impl Response {
    /// Parses a complete response head (status line and headers, ending with the blank
    /// line).
    pub fn parse(head: &[u8], max_headers: usize) -> Result<Response, HandshakeError> {
        let head = http::parse_head(head, max_headers)?;
        let mut parts = head.start_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().unwrap_or_default();
        let reason = parts.next().unwrap_or_default();
        if http::parse_version(version).is_none() {
            return Err(HandshakeError::Malformed(
                "invalid HTTP version in status line",
            ));
        }
        let status = match status.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(HandshakeError::Malformed("invalid status code")),
        };
        Ok(Response {
            status,
            reason: reason.to_owned(),
            headers: head.headers,
            body: Vec::new(),
            url: None,
        })
    }

    /// The URL this response answered, as a client's handshake sets it: after redirects,
    /// the last URL asked (`None` for a response made by [`Response::parse`]).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub(crate) fn set_url(&mut self, url: String) {
        self.url = Some(url);
    }

    /// The status code (101 after a successful handshake).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase, e.g. `Switching Protocols`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// All response headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The subprotocol the server chose, if any: the first element of
    /// `Sec-WebSocket-Protocol` read as a list (blanks and empty elements skipped), as the
    /// client's check of the response reads it.
    pub fn subprotocol(&self) -> Option<&str> {
        self.headers.list("Sec-WebSocket-Protocol").next()
    }

    /// The extensions the server enabled in `Sec-WebSocket-Extensions`, each with its
    /// parameters (e.g. `permessage-deflate; server_no_context_takeover`).
    pub fn extensions(&self) -> impl Iterator<Item = &str> {
        self.headers.list("Sec-WebSocket-Extensions")
    }

    /// The body of a refusal (at most 64 KiB, empty for a 101).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }
}

/// When a handshake that starts now must be done, per `config.handshake_timeout`.
pub(crate) fn handshake_deadline(config: &Config) -> Option<Instant> {
    config.handshake_timeout.map(|t| Instant::now() + t)
}

/// The reason phrase for the status codes this crate sends.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            derive_accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_request_parts() {
        let r = Request::parse(b"GET /chat?room=1&x=2 HTTP/1.1\r\nHost: h\r\n\r\n", 10).unwrap();
        assert_eq!(
            (r.method(), r.path(), r.query()),
            ("GET", "/chat", Some("room=1&x=2"))
        );
        assert_eq!(r.version(), (1, 1));
        assert!(Request::parse(b"GET  / HTTP/1.1\r\n\r\n", 10).is_err());
        assert!(Request::parse(b"GET / HTTP/1.1 x\r\n\r\n", 10).is_err());
        assert!(Request::parse(b"G(T / HTTP/1.1\r\n\r\n", 10).is_err());
    }

    #[test]
    fn parses_status_lines() {
        let r = Response::parse(b"HTTP/1.1 101 Switching Protocols\r\nA: b\r\n\r\n", 10).unwrap();
        assert_eq!((r.status(), r.reason()), (101, "Switching Protocols"));
        let r = Response::parse(b"HTTP/1.1 401\r\n\r\n", 10).unwrap();
        assert_eq!((r.status(), r.reason()), (401, ""));
        assert!(Response::parse(b"HTTP/1.1 1010 X\r\n\r\n", 10).is_err());
        assert!(Response::parse(b"FTP/1.1 101 X\r\n\r\n", 10).is_err());
    }
}
