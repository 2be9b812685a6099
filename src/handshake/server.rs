//! The server side of the opening handshake (RFC 6455 §4.2).
//!
//! [`check_request`] applies the rules of §4.2.1 to a parsed request and says which HTTP
//! refusal to send when one fails; [`accept_with`] runs the whole exchange over a stream.

use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

use base64::Engine;

use crate::config::Config;
use crate::connection::Connection;
use crate::error::{is_retryable, Error, HandshakeError};
use crate::handshake::{derive_accept_key, handshake_deadline, reason_phrase, Request};
use crate::http;
use crate::socket::{ReadTimeout, Socket};
use crate::state::Role;
use crate::websocket::{check_keepalive_needs_no_socket, WebSocket};

/// The 101 response being prepared, which the application may shape in the
/// [`accept_with`] callback.
#[derive(Debug, Default, Clone)]
pub struct UpgradeResponse {
    subprotocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl UpgradeResponse {
    /// Chooses the subprotocol; it must be one the client offered
    /// ([`Request::subprotocols`]), or the handshake fails with 500.
    pub fn set_subprotocol(&mut self, protocol: impl Into<String>) {
        self.subprotocol = Some(protocol.into());
    }

    /// The chosen subprotocol.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Adds a header to the 101 response (e.g. `Set-Cookie`). Headers that belong to the
    /// handshake itself (`Upgrade`, `Connection`, `Sec-WebSocket-*`) and invalid names or
    /// values make the handshake fail with 500.
    pub fn append_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }
}

/// An HTTP refusal of an upgrade request, returned from the [`accept_with`] callback.
///
/// ```
/// let no = stdws::Rejection::new(403, "origin not allowed").header("X-Reason", "origin");
/// assert_eq!(no.status(), 403);
/// assert!(no.check().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// A header given to [`header`](Rejection::header) was invalid: the refusal is not sent.
    invalid_header: bool,
}

/// Why a [`Rejection`] with an invalid header is not sent.
const INVALID_REJECTION: &str =
    "invalid rejection header name or value (or a Content-Length/Transfer-Encoding)";

impl Rejection {
    /// A refusal with `status` (use 4xx or 5xx) and a plain-text `body`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Rejection {
            status,
            headers: Vec::new(),
            body: body.into(),
            invalid_header: false,
        }
    }

    /// Adds a header to the refusal. The name must be an HTTP token and the value printable
    /// (no CR or LF); `Content-Length` and `Transfer-Encoding` are the refusal's own. An
    /// invalid header makes the refusal invalid ([`check`](Self::check) says so), and it is
    /// not sent as it is: [`IncomingRequest::reject`] and a refusal from the
    /// [`accept_with`] callback answer 500 instead and fail with
    /// [`Error::InvalidInput`], [`ServerHandshake::reject`] fails with it.
    ///
    /// ```
    /// let bad = stdws::Rejection::new(503, "busy").header("Retry-After", "5\r\nX-Evil: 1");
    /// assert!(bad.check().is_err());
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let own = ["content-length", "transfer-encoding"];
        if !http::is_valid_name(&name)
            || !http::is_valid_value(&value)
            || own.iter().any(|o| o.eq_ignore_ascii_case(&name))
        {
            self.invalid_header = true;
        } else {
            self.headers.push((name, value));
        }
        self
    }

    /// Whether the refusal can be sent: fails with [`Error::InvalidInput`] if a header
    /// given to [`header`](Self::header) was invalid.
    pub fn check(&self) -> Result<(), Error> {
        match self.invalid_header {
            true => Err(Error::InvalidInput(INVALID_REJECTION)),
            false => Ok(()),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Serialises the refusal as an HTTP/1.1 response that closes the connection.
    fn to_bytes(&self) -> Vec<u8> {
        let status = if (400..=599).contains(&self.status) {
            self.status
        } else {
            500
        };
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let mut out = response_head(status, &headers, self.body.len()).into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Headers the application may not set on the 101: the handshake owns them.
const RESERVED: [&str; 7] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// Checks a request against RFC 6455 §4.2.1. Returns the `Sec-WebSocket-Key`, or the
/// refusal to send and the error to report.
pub fn check_request(req: &Request) -> Result<&str, (Rejection, HandshakeError)> {
    let headers = req.headers();
    let bad = |what: &'static str| {
        Err((
            Rejection::new(400, format!("Bad WebSocket handshake: {what}.\n")),
            HandshakeError::Header(what),
        ))
    };
    if req.method() != "GET" {
        return Err((
            Rejection::new(405, "WebSocket upgrades must use GET.\n").header("Allow", "GET"),
            HandshakeError::Method(req.method().to_owned()),
        ));
    }
    if req.version() < (1, 1) {
        return Err((
            Rejection::new(505, "WebSocket needs HTTP/1.1 or later.\n"),
            HandshakeError::HttpVersion,
        ));
    }
    let upgrade_ok = headers.has_token("Upgrade", "websocket");
    let connection_ok = headers.has_token("Connection", "upgrade");
    if headers.get("Upgrade").is_none() && headers.get("Sec-WebSocket-Key").is_none() {
        // A plain HTTP request (a browser opened the URL): say how to talk to us.
        return Err((
            Rejection::new(
                426,
                "This is a WebSocket endpoint; connect with a WebSocket client.\n",
            )
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade"),
            HandshakeError::Header("missing Upgrade: websocket"),
        ));
    }
    if !upgrade_ok {
        return bad("Upgrade header must contain \"websocket\"");
    }
    if !connection_ok {
        return bad("Connection header must contain \"Upgrade\"");
    }
    match (headers.count("Host"), headers.get("Host")) {
        (1, Some(host)) if !host.is_empty() => {}
        _ => return bad("exactly one non-empty Host header is required"),
    }
    // Bytes after the head are WebSocket frames: a request body would be read as frames.
    // (`Content-Length` was checked to be valid by the parser; `0` is harmless.)
    let has_body = headers.get("Transfer-Encoding").is_some()
        || http::content_length(headers).is_ok_and(|l| l.is_some_and(|l| l > 0));
    if has_body {
        return bad("an upgrade request must not have a body");
    }
    let versions: Vec<&str> = headers.get_all("Sec-WebSocket-Version").collect();
    if versions != ["13"] {
        let (status, error) = if versions.is_empty() {
            (400, HandshakeError::Header("missing Sec-WebSocket-Version"))
        } else {
            (426, HandshakeError::UnsupportedVersion)
        };
        return Err((
            Rejection::new(status, "Only WebSocket version 13 is supported.\n")
                .header("Sec-WebSocket-Version", "13"),
            error,
        ));
    }
    let key = match (
        headers.count("Sec-WebSocket-Key"),
        headers.get("Sec-WebSocket-Key"),
    ) {
        (1, Some(key)) => key,
        _ => return bad("exactly one Sec-WebSocket-Key header is required"),
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !matches!(decoded, Ok(bytes) if bytes.len() == 16) {
        return bad("Sec-WebSocket-Key must be 16 bytes in base64");
    }
    Ok(key)
}

/// Accepts a WebSocket connection: reads and validates the client's request and answers
/// with 101, or with an HTTP error response (400, 405, 426, 431, 505) before failing.
///
/// The stream should be blocking (a read timeout, e.g. via `TcpStream::set_read_timeout`,
/// bounds how long a silent client can hold the handshake; it ends it with
/// [`HandshakeError::TimedOut`]). Extension offers are ignored, except `permessage-deflate`
/// when [`Config::deflate`](crate::Config) is set (feature `deflate`): then the first
/// acceptable offer is accepted, on the server's terms.
///
/// ```no_run
/// use std::net::TcpListener;
///
/// let listener = TcpListener::bind("127.0.0.1:9001")?;
/// for stream in listener.incoming() {
///     std::thread::spawn(move || -> Result<(), stdws::Error> {
///         let mut ws = stdws::accept(stream?)?;
///         loop {
///             let msg = ws.read()?;
///             if msg.is_data() {
///                 ws.send(msg)?;
///             }
///         }
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn accept<T: Read + Write>(stream: T) -> Result<WebSocket<T>, Error> {
    accept_with(stream, Config::default(), |_, _| Ok(()))
}

/// [`accept`] with a [`Config`] and a callback that sees the [`Request`] (path, query,
/// headers such as `Origin` and `Authorization`, offered subprotocols) and either shapes the
/// [`UpgradeResponse`] (subprotocol, extra headers) or refuses with a [`Rejection`].
///
/// ```no_run
/// # fn demo(stream: std::net::TcpStream) -> Result<(), stdws::Error> {
/// use stdws::{Config, Rejection};
///
/// let ws = stdws::accept_with(stream, Config::default(), |req, resp| {
///     if req.origin() != Some("https://example.com") {
///         return Err(Rejection::new(403, "cross-site WebSocket refused"));
///     }
///     if req.subprotocols().any(|p| p == "chat.v1") {
///         resp.set_subprotocol("chat.v1");
///     }
///     Ok(())
/// })?;
/// # Ok(()) }
/// ```
pub fn accept_with<T, F>(stream: T, config: Config, callback: F) -> Result<WebSocket<T>, Error>
where
    T: Read + Write,
    F: FnOnce(&Request, &mut UpgradeResponse) -> Result<(), Rejection>,
{
    IncomingRequest::read(stream, config)?.accept_with(callback)
}

/// An HTTP request read from a client and not answered yet: upgrade it to a WebSocket, refuse
/// it, or answer it as plain HTTP. This is how one port serves both a web page and a
/// WebSocket endpoint.
///
/// ```no_run
/// # fn demo(stream: std::net::TcpStream) -> Result<(), stdws::Error> {
/// use stdws::{Config, IncomingRequest};
///
/// let incoming = IncomingRequest::read(stream, Config::default())?;
/// if incoming.request().path() == "/" {
///     return incoming.respond(200, "text/html; charset=utf-8", b"<h1>hello</h1>");
/// }
/// let mut ws = incoming.accept()?;
/// ws.send_text("welcome")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct IncomingRequest<T> {
    stream: T,
    config: Config,
    request: Request,
    /// Bytes the client sent after the request head (its first frames).
    buffered: Vec<u8>,
    /// The stream's read-timeout controls, when the caller knew `T: Socket`.
    timeouts: Option<ReadTimeout<T>>,
}

impl<T: Read + Write> IncomingRequest<T> {
    /// Reads and parses one request head from `stream`, within the limits of `config`. A
    /// head that is too large or has too many header lines (431, as soon as either limit is
    /// crossed) or is malformed (400) is answered and fails here.
    ///
    /// [`Config::handshake_timeout`] (default 10 s) bounds the whole read: a client that
    /// trickles its request fails with [`HandshakeError::TimedOut`]. A client that sends
    /// nothing at all is bounded only by the stream's own read timeout, which a generic
    /// stream cannot be given from here: on a `TcpStream`, call `set_read_timeout` before
    /// accepting, or use [`Server`](crate::Server), which does; otherwise a silent client
    /// holds the thread.
    pub fn read(mut stream: T, config: Config) -> Result<IncomingRequest<T>, Error> {
        let deadline = handshake_deadline(&config);
        let mut handshake = ServerHandshake::new(config);
        loop {
            let n = match stream.read(handshake.read_buf()) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_retryable(e.kind()) => return Err(HandshakeError::TimedOut.into()),
                Err(e) => return Err(e.into()),
            };
            match handshake.filled(n) {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(refusal) => return refuse(&mut stream, refusal),
            }
            // Checked whenever a read returns, so a peer trickling bytes cannot stretch the
            // handshake; a silent peer is bounded by the stream's read timeout.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(HandshakeError::TimedOut.into());
            }
        }
        let (config, request, buffered) = handshake.into_parts();
        Ok(IncomingRequest {
            stream,
            config,
            request,
            buffered,
            timeouts: None,
        })
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether the request is a valid WebSocket upgrade (what [`accept`](Self::accept) would
    /// accept).
    pub fn is_websocket(&self) -> bool {
        check_request(&self.request).is_ok()
    }

    /// The stream (for its peer address, say).
    pub fn get_ref(&self) -> &T {
        &self.stream
    }

    /// Upgrades the connection, or answers an invalid upgrade with the matching HTTP error.
    pub fn accept(self) -> Result<WebSocket<T>, Error> {
        self.accept_with(|_, _| Ok(()))
    }

    /// Upgrades the connection after `callback` approved and shaped the response (see
    /// [`accept_with`]).
    pub fn accept_with<F>(mut self, callback: F) -> Result<WebSocket<T>, Error>
    where
        F: FnOnce(&Request, &mut UpgradeResponse) -> Result<(), Rejection>,
    {
        if self.timeouts.is_none() {
            check_keepalive_needs_no_socket(&self.config)?;
        }
        let (head, agreed) = match upgrade(&self.request, &self.config, callback) {
            Ok(upgraded) => upgraded,
            Err(refusal) => return refuse(&mut self.stream, refusal),
        };
        self.stream.write_all(&head)?;
        self.stream.flush()?;
        // Frames the client sent right behind its request stay buffered for `read`.
        let conn = server_connection(self.config, self.buffered, agreed);
        Ok(WebSocket::from_connection(self.stream, conn).keeping(self.timeouts))
    }

    /// Refuses the request with `rejection` (e.g. 503 when the server is full) and closes.
    /// A rejection with an invalid header (see [`Rejection::header`]) is answered with 500
    /// instead and fails with [`Error::InvalidInput`].
    pub fn reject(mut self, rejection: Rejection) -> Result<(), Error> {
        if let Err(e) = rejection.check() {
            write_response(&mut self.stream, &internal_error().to_bytes())?;
            return Err(e);
        }
        write_response(&mut self.stream, &rejection.to_bytes())
    }

    /// Answers the request as plain HTTP (e.g. the page of a web app) and closes: `status`
    /// (200-599), a `Content-Type` and the body.
    pub fn respond(mut self, status: u16, content_type: &str, body: &[u8]) -> Result<(), Error> {
        let bytes = http_answer(status, content_type, body)?;
        write_response(&mut self.stream, &bytes)
    }
}

impl<T: Read + Write + Socket> IncomingRequest<T> {
    /// Lets the connection set the stream's read timeout, for keep-alive.
    pub(crate) fn with_read_timeouts(mut self) -> Self {
        self.timeouts = Some(ReadTimeout::of());
        self
    }
}

fn write_response<T: Write>(stream: &mut T, bytes: &[u8]) -> Result<(), Error> {
    stream.write_all(bytes)?;
    stream.flush()?;
    Ok(())
}

/// An HTTP/1.1 response head that closes the connection after a body of `len` bytes.
fn response_head(status: u16, headers: &[(&str, &str)], len: usize) -> String {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {len}\r\nConnection: close\r\n",
        reason_phrase(status)
    );
    for (name, value) in headers {
        if http::is_valid_name(name) && http::is_valid_value(value) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    out
}

/// Checks what the callback put into the 101.
fn check_response(req: &Request, resp: &UpgradeResponse) -> Result<(), &'static str> {
    if let Some(p) = &resp.subprotocol {
        if !req.subprotocols().any(|offered| offered == p) {
            return Err("the chosen subprotocol was not offered by the client");
        }
    }
    for (name, value) in &resp.headers {
        if !http::is_valid_name(name) || !http::is_valid_value(value) {
            return Err("invalid response header name or value");
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err("response header reserved for the handshake");
        }
    }
    Ok(())
}

/// The answer when the application's own response (a 101 or a refusal) is invalid.
fn internal_error() -> Rejection {
    Rejection::new(500, "Internal error during the WebSocket handshake.\n")
}

/// Sends a refusal's response (best effort: the client may be gone) and fails with its
/// error.
fn refuse<T: Write, R>(stream: &mut T, refusal: Refusal) -> Result<R, Error> {
    if !refusal.response.is_empty() {
        let _ = stream.write_all(&refusal.response);
        let _ = stream.flush();
    }
    Err(refusal.error)
}

/// A refused opening handshake: the HTTP response to send before closing the connection
/// (empty when there is nobody to answer, e.g. the client went away mid-request), and the
/// error that says why.
#[derive(Debug)]
pub struct Refusal {
    /// The complete HTTP response (head and body) to write, then close.
    pub response: Vec<u8>,
    /// Why the handshake failed.
    pub error: Error,
}

impl Refusal {
    fn new(rejection: &Rejection, error: impl Into<Error>) -> Refusal {
        Refusal {
            response: rejection.to_bytes(),
            error: error.into(),
        }
    }

    /// A refusal of a head that could not be read: 431 for the size limits, 400 otherwise.
    fn bad_head(error: HandshakeError) -> Refusal {
        let status = match error {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            _ => 400,
        };
        Refusal::new(&Rejection::new(status, format!("{error}.\n")), error)
    }
}

/// Decides the answer to an upgrade request (RFC 6455 §4.2.2): checks it, lets `callback`
/// shape or refuse the 101, negotiates permessage-deflate. Returns the 101's head and what
/// it agreed on, or the refusal to send.
fn upgrade<F>(
    request: &Request,
    config: &Config,
    callback: F,
) -> Result<(Vec<u8>, Upgraded), Refusal>
where
    F: FnOnce(&Request, &mut UpgradeResponse) -> Result<(), Rejection>,
{
    let key = check_request(request).map_err(|(rejection, e)| Refusal::new(&rejection, e))?;
    let mut response = UpgradeResponse::default();
    if let Err(rejection) = callback(request, &mut response) {
        if let Err(e) = rejection.check() {
            return Err(Refusal::new(&internal_error(), e));
        }
        let status = rejection.status();
        return Err(Refusal::new(&rejection, HandshakeError::Rejected(status)));
    }
    let checked = check_response(request, &response);
    #[cfg(feature = "deflate")]
    let checked = checked.and_then(|()| {
        config
            .deflate
            .as_ref()
            .map_or(Ok(()), crate::deflate::DeflateConfig::check)
    });
    if let Err(what) = checked {
        return Err(Refusal::new(&internal_error(), Error::InvalidInput(what)));
    }
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key)
    );
    if let Some(protocol) = &response.subprotocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    #[cfg(feature = "deflate")]
    let deflate = config.deflate.as_ref().and_then(|config| {
        crate::deflate::negotiate_server(
            request.headers().get_all("Sec-WebSocket-Extensions"),
            config,
        )
    });
    #[cfg(feature = "deflate")]
    if let Some((_, value)) = &deflate {
        head.push_str(&format!("Sec-WebSocket-Extensions: {value}\r\n"));
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let upgraded = Upgraded {
        subprotocol: response.subprotocol,
        #[cfg(feature = "deflate")]
        deflate: deflate.map(|(params, _)| params),
    };
    Ok((head.into_bytes(), upgraded))
}

/// What a 101 agreed on: the subprotocol and the compression.
struct Upgraded {
    subprotocol: Option<String>,
    #[cfg(feature = "deflate")]
    deflate: Option<crate::deflate::Params>,
}

/// The server's side of the opening handshake as a state machine over bytes (RFC 6455
/// §4.2): resumable, so a request head that arrives in pieces on a non-blocking socket
/// survives `WouldBlock` between them, and every answer (the 101 or a refusal) is produced
/// as bytes for the caller to write.
///
/// Read into [`read_buf`](Self::read_buf) and report the count with
/// [`filled`](Self::filled) until it returns the [`Request`]; then
/// [`accept_with`](Self::accept_with) gives a [`Connection`]
/// whose output starts with the 101 and whose input holds any frames that came right
/// behind the request, or [`reject`](Self::reject) / [`respond`](Self::respond) give the
/// bytes of an HTTP answer to write before closing. The limits of [`Config`] apply as the
/// bytes arrive (431 for `max_head_size` and `max_headers`); the handshake timeout is the
/// driver's, since this type has no clock.
///
/// ```
/// use stdws::proto::ServerHandshake;
/// use stdws::{Config, State};
///
/// let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\n\r\n";
/// let mut handshake = ServerHandshake::new(Config::default());
/// // The request arrives in two pieces; nothing is lost in between.
/// for piece in [&request[..20], &request[20..]] {
///     handshake.read_buf()[..piece.len()].copy_from_slice(piece);
///     let done = handshake.filled(piece.len()).map_err(|refusal| refusal.error)?;
///     assert_eq!(done.is_some(), piece.len() > 20);
/// }
/// assert_eq!(handshake.request().unwrap().path(), "/chat");
/// let conn = handshake.accept().map_err(|refusal| refusal.error)?;
/// assert!(conn.output().starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// assert_eq!(conn.state(), State::Open);
/// # Ok::<(), stdws::Error>(())
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    config: Config,
    input: http::HeadReader,
    /// The parsed request, once its whole head arrived.
    request: Option<Request>,
}

impl ServerHandshake {
    /// A handshake waiting for the client's request, under `config`'s limits.
    pub fn new(config: Config) -> ServerHandshake {
        ServerHandshake {
            config,
            input: http::HeadReader::default(),
            request: None,
        }
    }

    /// Where the next bytes from the client go (never more than the head may still take,
    /// plus one byte to see that it is too large; after the head, room for the frames
    /// behind it, which are kept for the connection).
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.input.room(self.config.max_head_size)
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf); 0 means the client ended its
    /// stream. Returns the request once its head is complete (bytes after it are kept as
    /// the connection's first input), `Ok(None)` while more is needed, or the refusal to
    /// send: 431 when a limit is crossed, 400 for a malformed head, nothing for a client
    /// that left ([`HandshakeError::Incomplete`]).
    pub fn filled(&mut self, n: usize) -> Result<Option<&Request>, Refusal> {
        self.input.filled(n);
        if self.request.is_none() {
            if n == 0 {
                return Err(Refusal {
                    response: Vec::new(),
                    error: HandshakeError::Incomplete.into(),
                });
            }
            let limits = (self.config.max_head_size, self.config.max_headers);
            let head = self
                .input
                .head(limits.0, limits.1)
                .map_err(Refusal::bad_head)?;
            let Some(head) = head else {
                return Ok(None);
            };
            let request = Request::parse(head, limits.1).map_err(Refusal::bad_head)?;
            self.request = Some(request);
        }
        Ok(self.request())
    }

    /// The request, once its whole head has arrived.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// Whether the request is a valid WebSocket upgrade (what [`accept`](Self::accept)
    /// would accept).
    pub fn is_websocket(&self) -> bool {
        self.request().is_some_and(|r| check_request(r).is_ok())
    }

    /// Accepts the upgrade (see [`accept_with`](Self::accept_with)).
    pub fn accept(self) -> Result<Connection, Refusal> {
        self.accept_with(|_, _| Ok(()))
    }

    /// Accepts the upgrade after `callback` approved and shaped the 101, as
    /// [`accept_with`] does: returns the connection, with the 101 as
    /// the start of its output, or the refusal to send (400, 405, 426, 505 for an invalid
    /// request, the callback's [`Rejection`], 500 for an invalid response).
    pub fn accept_with<F>(self, callback: F) -> Result<Connection, Refusal>
    where
        F: FnOnce(&Request, &mut UpgradeResponse) -> Result<(), Rejection>,
    {
        let Some(request) = &self.request else {
            return Err(Refusal {
                response: Vec::new(),
                error: Error::InvalidInput("the request has not arrived yet"),
            });
        };
        let (head, agreed) = upgrade(request, &self.config, callback)?;
        let (config, _, buffered) = self.into_parts();
        let mut conn = server_connection(config, buffered, agreed);
        conn.out.sender.append(&head, None, 0);
        Ok(conn)
    }

    /// The bytes of a refusal (e.g. 503 when the server is full): write them, then close.
    /// Fails with [`Error::InvalidInput`] if the rejection has an invalid header (see
    /// [`Rejection::header`]).
    pub fn reject(self, rejection: &Rejection) -> Result<Vec<u8>, Error> {
        rejection.check()?;
        Ok(rejection.to_bytes())
    }

    /// The bytes of a plain HTTP answer to the request (a page, say): `status` (200-599),
    /// a `Content-Type` and the body. Write them, then close.
    pub fn respond(self, status: u16, content_type: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
        http_answer(status, content_type, body)
    }

    /// The configuration, the request and the bytes that followed its head.
    fn into_parts(self) -> (Config, Request, Vec<u8>) {
        let request = self.request.expect("the request arrived");
        (self.config, request, self.input.into_rest())
    }
}

/// The server's connection after its 101: `buffered` (frames that came behind the request)
/// is its first input, and what the 101 agreed on is in force.
fn server_connection(config: Config, buffered: Vec<u8>, agreed: Upgraded) -> Connection {
    let mut conn = Connection::from_parts(Role::Server, config, buffered, None);
    conn.negotiated.subprotocol = agreed.subprotocol;
    #[cfg(feature = "deflate")]
    if let Some(params) = agreed.deflate {
        conn.set_deflate(params);
    }
    conn
}

/// A plain HTTP/1.1 response that closes the connection.
fn http_answer(status: u16, content_type: &str, body: &[u8]) -> Result<Vec<u8>, Error> {
    if !http::is_valid_value(content_type) {
        return Err(Error::InvalidInput("invalid Content-Type"));
    }
    if !(200..=599).contains(&status) {
        return Err(Error::InvalidInput("HTTP status must be 200-599"));
    }
    let head = response_head(status, &[("Content-Type", content_type)], body.len());
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<String, u16> {
        let req = Request::parse(raw.as_bytes(), 64).unwrap();
        check_request(&req)
            .map(str::to_owned)
            .map_err(|(rejection, _)| rejection.status())
    }

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accepts_rfc_request_and_token_lists() {
        assert_eq!(check(GOOD).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        let firefox = GOOD
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade")
            .replace("Upgrade: websocket", "Upgrade: WebSocket");
        assert!(check(&firefox).is_ok());
        let empty_body = GOOD.replace("Version: 13\r\n", "Version: 13\r\nContent-Length: 0\r\n");
        assert!(check(&empty_body).is_ok());
    }

    #[test]
    fn refuses_each_violation_with_the_right_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /chat", "POST /chat", 405),
            (
                "Version: 13\r\n",
                "Version: 13\r\nContent-Length: 5\r\n",
                400,
            ),
            (
                "Version: 13\r\n",
                "Version: 13\r\nTransfer-Encoding: chunked\r\n",
                400,
            ),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost", 505),
            ("Host: server.example.com\r\n", "", 400),
            ("Upgrade: websocket", "Upgrade: h2c", 400),
            ("Connection: Upgrade", "Connection: keep-alive", 400),
            ("Version: 13", "Version: 8", 426),
            ("Sec-WebSocket-Version: 13\r\n", "", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64!", 400),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400),
        ];
        for (from, to, status) in cases {
            let raw = GOOD.replacen(from, to, 1);
            assert_eq!(check(&raw), Err(*status), "{from} -> {to}");
        }
        let twice = GOOD.replace("Host: server", "Host: a\r\nHost: server");
        assert_eq!(check(&twice), Err(400));
        let plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(check(plain), Err(426));
    }

    #[test]
    fn rejection_is_a_complete_http_response() {
        let bytes = Rejection::new(403, "no")
            .header("X-A", "b")
            .header("Bad\r\n", "x")
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("X-A: b\r\n"));
        assert!(!text.contains("Bad"));
        assert!(text.ends_with("\r\n\r\nno"));
    }
}
