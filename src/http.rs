//! HTTP/1.1 head parsing for the opening handshake (RFC 9112 §2-5), as pure functions.
//!
//! Only what the handshake needs: a start line and header fields, bounded in size and count.
//! Lines may end in CRLF or a bare LF (RFC 9112 §2.2). Obsolete line folding, header names
//! that are not tokens, whitespace before the colon, control characters and non-UTF-8 values
//! are refused rather than guessed at.
//!
//! This file also owns [`HandshakeError`], why an opening handshake failed (RFC 6455 §4.1,
//! §4.2.1; RFC 7692 §5 for permessage-deflate): the head parser below, the handshake's
//! request and response checks and the extension negotiation all report with it. `error.rs`
//! wraps it in `Error::Handshake` and re-exports it, so its public path stays
//! `stdws::HandshakeError`.

use std::fmt;

/// Why an opening handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HTTP head could not be parsed.
    Malformed(&'static str),
    /// The HTTP head exceeded `Config::max_head_size`.
    HeadTooLarge,
    /// The HTTP head had more than `Config::max_headers` header lines.
    TooManyHeaders,
    /// The stream ended before the HTTP head was complete.
    Incomplete,
    /// The request method was not GET.
    Method(String),
    /// The HTTP version is below 1.1.
    HttpVersion,
    /// A required header is missing or has an unacceptable value.
    Header(&'static str),
    /// The client asked for a WebSocket version other than 13.
    UnsupportedVersion,
    /// The server's `Sec-WebSocket-Accept` does not match the key the client sent.
    AcceptMismatch,
    /// The server chose a subprotocol the client did not offer (or none was offered).
    UnexpectedSubprotocol(String),
    /// The server enabled an extension the client did not offer.
    UnexpectedExtension(String),
    /// The server accepted permessage-deflate with parameters the client's offer does not
    /// allow (unknown or repeated parameters, invalid values, a window larger than asked,
    /// a requested parameter left out, more than one extension).
    InvalidExtension {
        /// The server's `Sec-WebSocket-Extensions` value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server application refused the request with this HTTP status.
    Rejected(u16),
    /// The handshake did not finish within the configured time.
    TimedOut,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(what) => write!(f, "malformed HTTP head: {what}"),
            HandshakeError::HeadTooLarge => f.write_str("HTTP head too large"),
            HandshakeError::TooManyHeaders => f.write_str("too many HTTP headers"),
            HandshakeError::Incomplete => f.write_str("stream ended during the handshake"),
            HandshakeError::Method(m) => write!(f, "method {m} is not GET"),
            HandshakeError::HttpVersion => f.write_str("HTTP version below 1.1"),
            HandshakeError::Header(what) => write!(f, "{what}"),
            HandshakeError::UnsupportedVersion => {
                f.write_str("unsupported Sec-WebSocket-Version (only 13 is supported)")
            }
            HandshakeError::AcceptMismatch => f.write_str("wrong Sec-WebSocket-Accept"),
            HandshakeError::UnexpectedSubprotocol(p) => {
                write!(f, "server chose subprotocol {p:?} that was not offered")
            }
            HandshakeError::UnexpectedExtension(e) => {
                write!(f, "server enabled extension {e:?} that was not offered")
            }
            HandshakeError::InvalidExtension { value, reason } => {
                write!(
                    f,
                    "server's Sec-WebSocket-Extensions {value:?} is invalid: {reason}"
                )
            }
            HandshakeError::Rejected(status) => {
                write!(f, "request rejected by the application with HTTP {status}")
            }
            HandshakeError::TimedOut => f.write_str("handshake timed out"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// HTTP header fields in the order received. Names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Headers::default()
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every field called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many fields called `name` there are.
    pub fn count(&self, name: &str) -> usize {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The comma-separated elements of every field called `name`, trimmed, empty ones
    /// skipped (RFC 9110 §5.6.1).
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(|item| item.trim_matches([' ', '\t']))
            .filter(|item| !item.is_empty())
    }

    /// Whether the list header `name` contains `token`, compared case-insensitively
    /// (e.g. `Connection: keep-alive, Upgrade` contains `upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// All fields as (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(crate) fn push(&mut self, name: &str, value: &str) {
        self.fields.push((name.to_owned(), value.to_owned()));
    }
}

/// How far the search for the end of a head that is still arriving got, kept between calls
/// to [`find_head_end`] so that each byte is scanned once however the head is delivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadScan {
    /// Where to resume: everything before holds no undecided line end.
    scanned: usize,
    /// Lines ended so far, not counting the blank line: the start line, then header lines.
    lines: usize,
}

impl HeadScan {
    /// Header lines that have ended so far (the lines after the start line).
    pub fn header_lines(&self) -> usize {
        self.lines.saturating_sub(1)
    }
}

/// Finds the end of an HTTP head (the blank line) in `buf`, resuming where `scan` stopped,
/// so feeding a head one byte at a time stays linear, and counting its lines as they end.
/// Returns the head's length including the blank line.
pub fn find_head_end(buf: &[u8], scan: &mut HeadScan) -> Option<usize> {
    let mut i = scan.scanned;
    while let Some(pos) = buf
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        let nl = i + pos;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => {
                scan.lines += 1;
                return Some(nl + 2);
            }
            Some([b'\r', b'\n', ..]) => {
                scan.lines += 1;
                return Some(nl + 3);
            }
            // Not enough bytes to decide: look at this newline again next time.
            Some([] | [b'\r']) => {
                scan.scanned = nl;
                return None;
            }
            _ => {
                scan.lines += 1;
                i = nl + 1;
            }
        }
    }
    scan.scanned = buf.len();
    None
}

/// Checks `buf` (the bytes received so far) for a complete head within the limits: at most
/// `max_size` bytes and `max_headers` header lines. Both are enforced as the bytes arrive,
/// so a peer sending endless or countless lines is refused as soon as it crosses either.
/// Returns the head's length, `None` if more bytes are needed, or an error.
pub fn check_head(
    buf: &[u8],
    scan: &mut HeadScan,
    max_size: usize,
    max_headers: usize,
) -> Result<Option<usize>, HandshakeError> {
    let end = find_head_end(buf, scan);
    if scan.header_lines() > max_headers {
        return Err(HandshakeError::TooManyHeaders);
    }
    match end {
        Some(end) if end > max_size => Err(HandshakeError::HeadTooLarge),
        Some(end) => Ok(Some(end)),
        None if buf.len() >= max_size => Err(HandshakeError::HeadTooLarge),
        None => Ok(None),
    }
}

/// An HTTP head and the bytes behind it, as they arrive: the buffer both handshake state
/// machines read into, checked against the limits as it fills.
#[derive(Debug, Default)]
pub struct HeadReader {
    /// `buf[..len]` arrived; `buf[len..]` is room handed out by `room`.
    buf: Vec<u8>,
    len: usize,
    scan: HeadScan,
    /// The head's length, once it is complete.
    head: Option<usize>,
}

impl HeadReader {
    /// Where the next bytes go: while the head is incomplete, never more than a head of
    /// `max_size` bytes may still take, plus one byte to see that it is too large; after
    /// it (the peer's first frames, or a body), 4 KiB.
    pub fn room(&mut self, max_size: usize) -> &mut [u8] {
        let chunk = match self.head {
            Some(_) => 4096,
            None => (max_size + 1).saturating_sub(self.len).clamp(1, 4096),
        };
        self.buf.resize(self.len + chunk, 0);
        &mut self.buf[self.len..]
    }

    /// `n` bytes arrived in the last [`room`](Self::room).
    pub fn filled(&mut self, n: usize) {
        self.len = self.len.saturating_add(n).min(self.buf.len());
        self.buf.truncate(self.len);
    }

    /// The head, once it is complete within the limits (see [`check_head`]); `None` while
    /// more bytes are needed.
    pub fn head(
        &mut self,
        max_size: usize,
        max_headers: usize,
    ) -> Result<Option<&[u8]>, HandshakeError> {
        if self.head.is_none() {
            self.head = check_head(&self.buf, &mut self.scan, max_size, max_headers)?;
        }
        Ok(self.head.map(|end| &self.buf[..end]))
    }

    /// How many bytes arrived after the head (0 before it is complete).
    pub fn after_head(&self) -> usize {
        self.head.map_or(0, |end| self.len - end)
    }

    /// The bytes that arrived after the head.
    pub fn into_rest(self) -> Vec<u8> {
        let mut buf = self.buf;
        buf.truncate(self.len);
        buf.drain(..self.head.unwrap_or(self.len));
        buf
    }
}

/// A parsed head: the start line and the header fields.
#[derive(Debug)]
pub struct Head<'a> {
    /// The request line or status line.
    pub start_line: &'a str,
    /// The header fields.
    pub headers: Headers,
}

/// Parses a complete head (as delimited by [`find_head_end`]).
pub fn parse_head(head: &[u8], max_headers: usize) -> Result<Head<'_>, HandshakeError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HandshakeError::Malformed("head is not valid UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or_default();
    let mut headers = Headers::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return Err(HandshakeError::Malformed("obsolete line folding"));
        }
        if headers.len() == max_headers {
            return Err(HandshakeError::TooManyHeaders);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HandshakeError::Malformed("header line without a colon"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(HandshakeError::Malformed("invalid header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HandshakeError::Malformed(
                "control character in header value",
            ));
        }
        headers.push(name, value);
    }
    if start_line.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(HandshakeError::Malformed("control character in start line"));
    }
    content_length(&headers)?;
    Ok(Head {
        start_line,
        headers,
    })
}

/// The message body length announced by `Content-Length` (RFC 9110 §8.6), `None` without
/// one. The value must be decimal digits only: a sign, hex, inner spaces, an empty value or
/// one that does not fit in a `u64` are refused rather than read leniently (`str::parse`
/// would take `+3`), since two parsers disagreeing on a body's length is how requests are
/// smuggled. Several fields (or a list) must all carry the same digits.
pub fn content_length(headers: &Headers) -> Result<Option<u64>, HandshakeError> {
    let invalid = HandshakeError::Malformed("invalid Content-Length");
    let mut length = None;
    for value in headers.get_all("Content-Length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid);
        }
        let parsed = value.parse::<u64>().map_err(|_| invalid.clone())?;
        if length.is_some_and(|l| l != parsed) {
            return Err(HandshakeError::Malformed(
                "conflicting Content-Length values",
            ));
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Parses `HTTP/1.1` into (major, minor).
pub fn parse_version(v: &str) -> Option<(u8, u8)> {
    let digits = v.strip_prefix("HTTP/")?.as_bytes();
    match digits {
        [maj, b'.', min] if maj.is_ascii_digit() && min.is_ascii_digit() => {
            Some((maj - b'0', min - b'0'))
        }
        // HTTP/2 and HTTP/3 spell themselves without a minor version.
        [maj] if maj.is_ascii_digit() => Some((maj - b'0', 0)),
        _ => None,
    }
}

/// A "token" character (RFC 9110 §5.6.2), as used in header names and methods.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` may be sent as a header name.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Whether `s` may be sent as a header value (no CR, LF or other controls but tab).
pub fn is_valid_value(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != 0x7f || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_end_byte_by_byte_and_at_once() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nEXTRA";
        let mut scan = HeadScan::default();
        assert_eq!(find_head_end(head, &mut scan), Some(head.len() - 5));
        assert_eq!(scan.header_lines(), 1);
        let mut scan = HeadScan::default();
        let mut found = None;
        for n in 0..=head.len() {
            if let Some(end) = find_head_end(&head[..n], &mut scan) {
                found = Some((n, end));
                break;
            }
        }
        assert_eq!(found, Some((head.len() - 5, head.len() - 5)));
        assert_eq!(scan.header_lines(), 1);
        let mut scan = HeadScan::default();
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\nHost: a\n\n", &mut scan),
            Some(24)
        );
    }

    #[test]
    fn enforces_size_limit() {
        let mut scan = HeadScan::default();
        assert_eq!(
            check_head(&[b'a'; 100], &mut scan, 100, 64),
            Err(HandshakeError::HeadTooLarge)
        );
        let mut scan = HeadScan::default();
        assert_eq!(
            check_head(b"GET / HTTP/1.1\r\n\r\n", &mut scan, 18, 64),
            Ok(Some(18))
        );
        let mut scan = HeadScan::default();
        assert_eq!(
            check_head(b"GET / HTTP/1.1\r\n\r\n", &mut scan, 17, 64),
            Err(HandshakeError::HeadTooLarge)
        );
    }

    /// Feeds `head` in pieces of `step` bytes; returns the first non-`Ok(None)` answer.
    fn check_in_steps(
        head: &[u8],
        step: usize,
        max_headers: usize,
    ) -> (usize, Result<Option<usize>, HandshakeError>) {
        let mut scan = HeadScan::default();
        let mut fed = 0;
        while fed < head.len() {
            fed = (fed + step).min(head.len());
            match check_head(&head[..fed], &mut scan, 1 << 20, max_headers) {
                Ok(None) => {}
                other => return (fed, other),
            }
        }
        (fed, Ok(None))
    }

    #[test]
    fn counts_header_lines_as_they_arrive() {
        // Exactly `max_headers` headers pass, however the head is chopped, with CRLF or LF.
        for eol in ["\r\n", "\n"] {
            let head = format!("GET / HTTP/1.1{eol}{}{eol}", format!("A: b{eol}").repeat(4));
            for step in [1, 2, 3, 7, head.len()] {
                assert_eq!(
                    check_in_steps(head.as_bytes(), step, 4).1,
                    Ok(Some(head.len())),
                    "eol {eol:?}, step {step}"
                );
                assert_eq!(
                    check_in_steps(head.as_bytes(), step, 3).1,
                    Err(HandshakeError::TooManyHeaders),
                    "eol {eol:?}, step {step}"
                );
            }
        }
        // One more than allowed is refused as soon as that line ends: no blank line needed,
        // however much room `max_head_size` leaves.
        let endless = format!("GET / HTTP/1.1\r\n{}", "A: b\r\n".repeat(10_000));
        let (fed, result) = check_in_steps(endless.as_bytes(), 1, 64);
        assert_eq!(result, Err(HandshakeError::TooManyHeaders));
        assert_eq!(fed, "GET / HTTP/1.1\r\n".len() + 65 * "A: b\r\n".len() + 1);
        // The incremental count agrees with the parser's.
        for count in 0..8 {
            let head = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(count));
            for max in 0..8 {
                let mut scan = HeadScan::default();
                let checked = check_head(head.as_bytes(), &mut scan, 1 << 20, max);
                let parsed = parse_head(head.as_bytes(), max).map(|h| h.headers.len());
                assert_eq!(
                    checked.is_ok(),
                    parsed.is_ok(),
                    "{count} headers, max {max}"
                );
                if let Err(e) = checked {
                    assert_eq!(Err(e), parsed, "{count} headers, max {max}");
                }
            }
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        let parse = |value: &str| {
            let head = format!("HTTP/1.1 400 Bad Request\r\nContent-Length:{value}\r\n\r\n");
            parse_head(head.as_bytes(), 10).map(|h| content_length(&h.headers).unwrap())
        };
        assert_eq!(parse(" 3").unwrap(), Some(3));
        assert_eq!(parse("0").unwrap(), Some(0));
        assert_eq!(parse("007").unwrap(), Some(7));
        // Whitespace around a field value is not part of it (RFC 9110 §5.5).
        assert_eq!(parse(" 3 \t").unwrap(), Some(3));
        assert_eq!(parse("18446744073709551615").unwrap(), Some(u64::MAX));
        for bad in [
            "+3",
            "-1",
            "0x3",
            "3 4",
            "3,3",
            "3;",
            "",
            " ",
            "1e3",
            "\u{663}", // ARABIC-INDIC DIGIT THREE: a digit to char::is_numeric, not to HTTP
            "18446744073709551616",
            "99999999999999999999999999",
        ] {
            assert_eq!(
                parse(bad).unwrap_err(),
                HandshakeError::Malformed("invalid Content-Length"),
                "{bad:?}"
            );
        }
        let head = b"GET / HTTP/1.1\r\ncontent-length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            content_length(&parse_head(head, 10).unwrap().headers),
            Ok(Some(3))
        );
        let head = b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            parse_head(head, 10).unwrap_err(),
            HandshakeError::Malformed("conflicting Content-Length values")
        );
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            content_length(&parse_head(head, 10).unwrap().headers),
            Ok(None)
        );
    }

    #[test]
    fn parses_headers_and_token_lists() {
        let head = b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
                     Sec-WebSocket-Protocol: a, b\r\nsec-websocket-protocol:c\r\n\r\n";
        let h = parse_head(head, 10).unwrap();
        assert_eq!(h.start_line, "GET /chat HTTP/1.1");
        assert!(h.headers.has_token("connection", "UPGRADE"));
        assert!(!h.headers.has_token("connection", "close"));
        let protos: Vec<_> = h.headers.list("Sec-WebSocket-Protocol").collect();
        assert_eq!(protos, ["a", "b", "c"]);
        assert_eq!(h.headers.get("HOST"), Some("x"));
    }

    #[test]
    fn refuses_malformed_heads() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n",
        ];
        for head in bad {
            assert!(
                parse_head(head, 10).is_err(),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(11));
        assert_eq!(
            parse_head(many.as_bytes(), 10).unwrap_err(),
            HandshakeError::TooManyHeaders
        );
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("HTTP/1.1"), Some((1, 1)));
        assert_eq!(parse_version("HTTP/1.0"), Some((1, 0)));
        assert_eq!(parse_version("HTTP/2"), Some((2, 0)));
        assert_eq!(parse_version("HTTP/1.10"), None);
        assert_eq!(parse_version("HTTPS/1.1"), None);
    }
}
