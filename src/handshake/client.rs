//! The client side of the opening handshake (RFC 6455 §4.1).
//!
//! [`ClientBuilder`] holds the URL, extra headers, offered subprotocols and timeouts;
//! [`ClientBuilder::connect`] opens a TCP connection and [`ClientBuilder::client`] uses a
//! stream the caller opened (for example TLS). The server's answer is checked as §4.1
//! requires: status 101, `Upgrade`/`Connection` tokens, the accept key, and no subprotocol or
//! extension the client did not offer (with feature `deflate` and
//! [`Config::deflate`](crate::Config) set, permessage-deflate is offered, and accepted only
//! on terms the offer allows: RFC 7692 §5.2).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::Config;
use crate::connection::Connection;
use crate::dial;
use crate::error::{is_retryable, Error, HandshakeError, UrlError};
use crate::handshake::{derive_accept_key, handshake_deadline, Response};
use crate::http;
use crate::proxy::{self, ProxyUrl};
use crate::rand::Rng;
use crate::redirect::{self, RedirectError};
use crate::socket::Socket;
use crate::state::Role;
use crate::url::WsUrl;
use crate::websocket::{check_keepalive_needs_no_socket, WebSocket};

/// Where a client's proxy comes from.
#[derive(Clone)]
enum ProxyChoice {
    /// This proxy URL.
    Url(String),
    /// The environment, per connection (see [`proxy::from_env`]).
    FromEnv,
}

impl std::fmt::Debug for ProxyChoice {
    /// Never shows the proxy URL's credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyChoice::Url(url) => match url.rsplit_once('@') {
                Some((_, host)) => write!(f, "Url(\"***@{host}\")"),
                None => write!(f, "Url({url:?})"),
            },
            ProxyChoice::FromEnv => f.write_str("FromEnv"),
        }
    }
}

/// Redirects [`ClientBuilder::connect`] follows by default.
pub const DEFAULT_MAX_REDIRECTS: usize = 3;

/// Largest refusal body kept in [`Error::Http`].
const MAX_ERROR_BODY: usize = 64 << 10;

/// Headers the client handshake writes itself (subprotocols go through
/// [`ClientBuilder::subprotocol`], so the response check knows what was offered).
const RESERVED: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
];

/// Options for a client connection: extra headers, subprotocols, timeouts and limits.
///
/// ```no_run
/// let (mut ws, response) = stdws::ClientBuilder::new("ws://127.0.0.1:9001/chat")
///     .header("Authorization", "Bearer secret")
///     .subprotocol("chat.v1")
///     .connect()?;
/// println!("server chose {:?}", response.subprotocol());
/// ws.send_text("hello")?;
/// # Ok::<(), stdws::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(crate) url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    pub(crate) config: Config,
    connect_timeout: Option<Duration>,
    pub(crate) nodelay: bool,
    max_redirects: usize,
    proxy: Option<ProxyChoice>,
    /// The caller's TLS settings for `wss://` (see `crate::tls`).
    #[cfg(feature = "rustls")]
    pub(crate) tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ClientBuilder {
    /// Options for connecting to `url` (`ws://host[:port]/path?query`, or `wss://` with
    /// [`client`](Self::client)). Defaults: 10 s connect timeout, 10 s handshake timeout,
    /// `TCP_NODELAY` on, up to 3 redirects followed.
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            config: Config::default(),
            connect_timeout: Some(Duration::from_secs(10)),
            nodelay: true,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            proxy: None,
            #[cfg(feature = "rustls")]
            tls_config: None,
        }
    }

    /// Adds a request header (e.g. `Authorization`, `Origin`, `Cookie`). `Host` replaces the
    /// default; the handshake's own headers cannot be set.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); call again for more, in order of
    /// preference.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets the connection's limits, buffer sizes and handshake timeout.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Bounds opening the TCP connection in [`connect`](Self::connect): every address the
    /// host resolves to is tried (IPv6 and IPv4 taking turns) until one connects, all
    /// within this time, each attempt with an equal share of what is left. `None`: each
    /// attempt waits as long as the operating system lets it. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds the handshake: [`connect`](Self::connect) sets it as the socket's read and
    /// write timeouts (cleared afterwards), and any stream's handshake fails with
    /// [`HandshakeError::TimedOut`](crate::HandshakeError) once it is over. `None`: wait
    /// forever. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Whether [`connect`](Self::connect) sets `TCP_NODELAY` (default `true`: small
    /// messages go out at once instead of waiting for Nagle's algorithm).
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// How many redirects (301, 302, 303, 307, 308 with a `Location`) of the opening
    /// handshake [`connect`](Self::connect) follows in a row; 0 turns following off (a
    /// redirect then fails with [`Error::Http`], as any other answer but 101). Default 3.
    ///
    /// Every hop gets the connect and handshake timeouts afresh. A redirect from `wss://`
    /// to `ws://` is refused ([`RedirectError::InsecureDowngrade`]), one more than the
    /// limit fails with [`RedirectError::TooMany`]. A redirect to another host or port
    /// drops the `Authorization`, `Cookie` and `Host` headers set with
    /// [`header`](Self::header). [`Response::url`] tells where the connection ended up.
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }

    /// Connects through a proxy: `http://[user:password@]host[:port]` (HTTP `CONNECT`,
    /// with Basic credentials if the URL has them) or `socks5://` / `socks5h://`
    /// `[user:password@]host[:port]` (SOCKS5, without authentication or with username and
    /// password; either way the proxy resolves the server's name). The port defaults to
    /// 1080, as in curl; userinfo may be percent-encoded. `wss://` goes through the tunnel
    /// too (TLS runs end to end, with `connect_tls`, feature `rustls`).
    ///
    /// The connect timeout bounds reaching the proxy and the proxy's answer. An invalid
    /// proxy URL, a refusal (407, 403, a SOCKS5 error code) or a proxy that breaks its
    /// protocol fails with [`Error::Proxy`]; a proxy that cannot be reached, with
    /// [`Error::Io`].
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(ProxyChoice::Url(url.into()));
        self
    }

    /// Takes the proxy from the environment at each connect, as curl does:
    /// `https_proxy`/`HTTPS_PROXY` for `wss://`, `http_proxy`/`HTTP_PROXY` for `ws://`,
    /// else `all_proxy`/`ALL_PROXY`, and none when `no_proxy`/`NO_PROXY` lists the host
    /// (`*`, names that also cover their subdomains, IP addresses, CIDR blocks). Lowercase
    /// names win; unlike curl, an uppercase `HTTP_PROXY` is read too. Off unless called.
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy = Some(ProxyChoice::FromEnv);
        self
    }

    /// Opens a TCP connection to the URL's host and performs the handshake, following
    /// redirects (see [`max_redirects`](Self::max_redirects)).
    ///
    /// `wss://` URLs fail with [`UrlError::TlsRequired`]: use `connect_tls` (feature
    /// `rustls`), or open a TLS stream yourself and use [`client`](Self::client).
    pub fn connect(self) -> Result<(WebSocket<TcpStream>, Response), Error> {
        self.connect_with(|builder, url| {
            if url.secure {
                return Err(UrlError::TlsRequired.into());
            }
            builder.open_tcp(url)
        })
    }

    /// The blocking connect of [`connect`](Self::connect) and `connect_tls`: for the URL
    /// and then for each redirect, checks the headers, opens a stream with `open` (TCP, and
    /// TLS for `connect_tls`), runs the handshake with the handshake timeout as the
    /// socket's timeouts (cleared afterwards), and follows a redirect answer.
    pub(crate) fn connect_with<S, F>(
        mut self,
        mut open: F,
    ) -> Result<(WebSocket<S>, Response), Error>
    where
        S: Read + Write + Socket,
        F: FnMut(&ClientBuilder, &WsUrl) -> Result<S, Error>,
    {
        let mut followed = 0;
        loop {
            let url = WsUrl::parse(&self.url)?;
            // Headers and subprotocols are checked before any connection is opened.
            let handshake = self.clone().machine(&url)?;
            let stream = open(&self, &url)?;
            stream.set_read_timeout(self.config.handshake_timeout)?;
            stream.set_write_timeout(self.config.handshake_timeout)?;
            match drive(handshake, stream) {
                Ok((ws, response)) => {
                    let ws = ws.with_read_timeouts();
                    ws.get_ref().set_read_timeout(None)?;
                    ws.get_ref().set_write_timeout(None)?;
                    return Ok((ws, response));
                }
                Err(Error::Http(response))
                    if self.max_redirects > 0 && redirect::is_redirect(response.status()) =>
                {
                    let Some(location) = response.header("Location") else {
                        return Err(Error::Http(response));
                    };
                    if followed == self.max_redirects {
                        return Err(RedirectError::TooMany {
                            max: self.max_redirects,
                            location: location.to_owned(),
                        }
                        .into());
                    }
                    let next = redirect::resolve(&url, location)?;
                    let next_url = WsUrl::parse(&next)?;
                    if !redirect::same_origin(&url, &next_url) {
                        self.headers.retain(|(name, _)| {
                            !["authorization", "cookie", "host"]
                                .iter()
                                .any(|h| h.eq_ignore_ascii_case(name))
                        });
                    }
                    self.url = next;
                    followed += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Performs the handshake over `stream`, which the caller connected to the URL's host
    /// (a `TcpStream`, a TLS stream for `wss://`, a Unix socket, ...). Timeouts are the
    /// stream's own.
    pub fn client<T: Read + Write>(self, stream: T) -> Result<(WebSocket<T>, Response), Error> {
        let url = WsUrl::parse(&self.url)?;
        check_keepalive_needs_no_socket(&self.config)?;
        self.handshake(stream, &url)
    }

    /// Opens the TCP connection to the URL's host (through the proxy, if there is one)
    /// within the connect timeout, with `TCP_NODELAY` as set.
    pub(crate) fn open_tcp(&self, url: &WsUrl) -> Result<TcpStream, Error> {
        // A timeout too long for the clock is no timeout.
        let deadline = self
            .connect_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let proxy = match &self.proxy {
            None => None,
            Some(ProxyChoice::Url(p)) => Some(p.clone()),
            Some(ProxyChoice::FromEnv) => {
                proxy::from_env(url.secure, &url.host, |name| std::env::var(name).ok())
            }
        };
        let stream = match proxy {
            None => dial::connect_host(&url.host, url.port, deadline)?,
            Some(p) => {
                let p: ProxyUrl = ProxyUrl::parse(&p)?;
                dial::connect_via(&p, &url.host, url.port, deadline)?
            }
        };
        stream.set_nodelay(self.nodelay)?;
        Ok(stream)
    }

    /// Starts the handshake as a state machine over bytes (see [`ClientHandshake`]): checks
    /// the URL, the headers and the subprotocols now, before any connection is opened.
    pub fn handshake_machine(self) -> Result<ClientHandshake, Error> {
        let url = WsUrl::parse(&self.url)?;
        self.machine(&url)
    }

    fn machine(self, url: &WsUrl) -> Result<ClientHandshake, Error> {
        let mut rng = Rng::new();
        let key = base64::engine::general_purpose::STANDARD.encode(rng.bytes16());
        let request = self.request_head(url, &key)?.into_bytes();
        Ok(ClientHandshake {
            url: self.url,
            config: self.config,
            subprotocols: self.subprotocols,
            key,
            rng,
            request,
            written: 0,
            input: http::HeadReader::default(),
            response: None,
        })
    }

    pub(crate) fn handshake<T: Read + Write>(
        self,
        stream: T,
        url: &WsUrl,
    ) -> Result<(WebSocket<T>, Response), Error> {
        drive(self.machine(url)?, stream)
    }

    fn request_head(&self, url: &WsUrl, key: &str) -> Result<String, Error> {
        let mut host = url.host_header.as_str();
        let mut extra = String::new();
        for (name, value) in &self.headers {
            if !http::is_valid_name(name) || !http::is_valid_value(value) {
                return Err(Error::InvalidInput("invalid request header name or value"));
            }
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(Error::InvalidInput(
                    "request header reserved for the handshake",
                ));
            }
            if name.eq_ignore_ascii_case("host") {
                if value.trim().is_empty() {
                    return Err(Error::InvalidInput("empty Host header"));
                }
                host = value;
            } else {
                extra.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            url.resource
        );
        if !self.subprotocols.is_empty() {
            if self
                .subprotocols
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(http::is_tchar))
            {
                return Err(Error::InvalidInput("subprotocol names must be HTTP tokens"));
            }
            head.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.subprotocols.join(", ")
            ));
        }
        #[cfg(feature = "deflate")]
        if let Some(config) = &self.config.deflate {
            config.check().map_err(Error::InvalidInput)?;
            head.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                crate::deflate::client_offer(config)
            ));
        }
        head.push_str(&extra);
        head.push_str("\r\n");
        Ok(head)
    }
}

/// Runs a client handshake over a blocking `stream`: writes the request, reads the answer
/// (the head within `Config::handshake_timeout`, checked whenever a read returns; a silent
/// server is bounded by the stream's read timeout), then checks it.
fn drive<T: Read + Write>(
    mut handshake: ClientHandshake,
    mut stream: T,
) -> Result<(WebSocket<T>, Response), Error> {
    let deadline = handshake_deadline(&handshake.config);
    stream.write_all(handshake.output()).map_err(timeout)?;
    stream.flush().map_err(timeout)?;
    let n = handshake.output().len();
    handshake.consume(n);
    while !handshake.is_complete() {
        let n = match stream.read(handshake.read_buf()) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A refusal's body ends at whatever arrived; a head must be whole.
            Err(_) if handshake.response().is_some() => 0,
            Err(e) if is_retryable(e.kind()) => return Err(HandshakeError::TimedOut.into()),
            Err(e) => return Err(e.into()),
        };
        handshake.filled(n)?;
        let head_pending = handshake.response().is_none();
        if head_pending && deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(HandshakeError::TimedOut.into());
        }
    }
    let (conn, response) = handshake.finish()?;
    Ok((WebSocket::from_connection(stream, conn), response))
}

/// A write that times out during the handshake is a handshake timeout.
fn timeout(e: std::io::Error) -> Error {
    if is_retryable(e.kind()) {
        HandshakeError::TimedOut.into()
    } else {
        e.into()
    }
}

/// What the server agreed to beyond the base protocol: permessage-deflate parameters.
#[cfg(feature = "deflate")]
type Agreed = Option<crate::deflate::Params>;
/// What the server agreed to beyond the base protocol: nothing without extensions.
#[cfg(not(feature = "deflate"))]
type Agreed = ();

/// Checks a 101 response against RFC 6455 §4.1 (client steps 2-6), and the extension the
/// server enabled against the one `config` offered (RFC 7692 §5.2).
fn check_response(
    response: &Response,
    key: &str,
    offered: &[String],
    config: &Config,
) -> Result<Agreed, Error> {
    let headers = response.headers();
    if !headers.has_token("Upgrade", "websocket") {
        return Err(HandshakeError::Header("response lacks Upgrade: websocket").into());
    }
    if !headers.has_token("Connection", "upgrade") {
        return Err(HandshakeError::Header("response lacks Connection: Upgrade").into());
    }
    let expected = derive_accept_key(key);
    let accepts: Vec<&str> = headers.get_all("Sec-WebSocket-Accept").collect();
    if accepts != [expected.as_str()] {
        return Err(HandshakeError::AcceptMismatch.into());
    }
    let chosen: Vec<&str> = headers.list("Sec-WebSocket-Protocol").collect();
    match chosen.as_slice() {
        [] => {}
        [one] if offered.iter().any(|p| p == one) => {}
        _ => {
            return Err(HandshakeError::UnexpectedSubprotocol(chosen.join(", ")).into());
        }
    }
    let Some(ext) = headers.list("Sec-WebSocket-Extensions").next() else {
        #[allow(clippy::unit_arg)]
        return Ok(Agreed::default());
    };
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &config.deflate {
        let value = headers
            .get_all("Sec-WebSocket-Extensions")
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(Some(crate::deflate::check_client_response(
            &value, deflate,
        )?));
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    Err(HandshakeError::UnexpectedExtension(ext.to_owned()).into())
}

/// The client's side of the opening handshake as a state machine over bytes (RFC 6455
/// §4.1): the request to write, then the server's answer read as it arrives, resumable
/// across `WouldBlock`. Made by [`ClientBuilder::handshake_machine`], which checks the URL
/// and every header before anything is sent.
///
/// Write [`output`](Self::output) (the request) and [`consume`](Self::consume) what was
/// written; read into [`read_buf`](Self::read_buf) and report the count with
/// [`filled`](Self::filled) until [`is_complete`](Self::is_complete); then
/// [`finish`](Self::finish) checks the 101 and gives the
/// [`Connection`], or fails with [`Error::Http`] carrying a
/// refusal (with up to 64 KiB of its body).
///
/// ```
/// use stdws::ClientBuilder;
///
/// let mut handshake = ClientBuilder::new("ws://example.com/chat")
///     .subprotocol("chat.v1")
///     .handshake_machine()?;
/// let request = String::from_utf8(handshake.output().to_vec()).unwrap();
/// assert!(request.starts_with("GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
/// handshake.consume(request.len());
///
/// // The server refuses; its answer arrives in pieces.
/// for piece in ["HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n", "no"] {
///     handshake.read_buf()[..piece.len()].copy_from_slice(piece.as_bytes());
///     handshake.filled(piece.len())?;
/// }
/// assert!(handshake.is_complete());
/// match handshake.finish() {
///     Err(stdws::Error::Http(response)) => {
///         assert_eq!((response.status(), response.body()), (403, &b"no"[..]))
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), stdws::Error>(())
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    /// The URL asked, for [`Response::url`].
    url: String,
    config: Config,
    subprotocols: Vec<String>,
    key: String,
    rng: Rng,
    /// The request head; `request[written..]` is still to be written.
    request: Vec<u8>,
    written: usize,
    input: http::HeadReader,
    /// The response head once it arrived, and whether the answer is complete (a 101 at
    /// once; a refusal when its body is in or the stream ended).
    response: Option<(Response, bool)>,
}

impl ClientHandshake {
    /// The bytes to write next (the rest of the request), empty once it was all written.
    pub fn output(&self) -> &[u8] {
        &self.request[self.written..]
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn consume(&mut self, n: usize) {
        self.written = self.written.saturating_add(n).min(self.request.len());
    }

    /// Where the next bytes from the server go (never more than the head may still take,
    /// plus one byte to see that it is too large).
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.input.room(self.config.max_head_size)
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf); 0 means the server ended its
    /// stream. Fails for a head that breaks the limits or does not parse, or a stream that
    /// ends before the head did.
    pub fn filled(&mut self, n: usize) -> Result<(), Error> {
        self.input.filled(n);
        match &mut self.response {
            None if n == 0 => Err(HandshakeError::Incomplete.into()),
            None => {
                let limits = (self.config.max_head_size, self.config.max_headers);
                let Some(head) = self.input.head(limits.0, limits.1)? else {
                    return Ok(());
                };
                let response = Response::parse(head, limits.1)?;
                self.response = Some((response, false));
                self.check_body(false);
                Ok(())
            }
            Some(_) => {
                self.check_body(n == 0);
                Ok(())
            }
        }
    }

    /// Decides whether the answer is complete: a 101 is (what follows is frames); a
    /// refusal once its `Content-Length` (at most 64 KiB of it) arrived, at once without
    /// one, or when the stream ends.
    fn check_body(&mut self, ended: bool) {
        if let Some((response, complete)) = &mut self.response {
            let declared = http::content_length(response.headers()).ok().flatten();
            let want = declared.unwrap_or(0).min(MAX_ERROR_BODY as u64) as usize;
            *complete = response.status() == 101 || ended || self.input.after_head() >= want;
        }
    }

    /// The server's response head, once it arrived.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref().map(|(response, _)| response)
    }

    /// Whether the server's whole answer is in: call [`finish`](Self::finish).
    pub fn is_complete(&self) -> bool {
        matches!(self.response, Some((_, true)))
    }

    /// Checks the answer (RFC 6455 §4.1: status 101, `Upgrade`/`Connection`, the accept
    /// key, no subprotocol or extension that was not offered) and returns the connection
    /// (its first input is what the server sent behind the 101) with the response. A
    /// refusal fails with [`Error::Http`], its body attached.
    pub fn finish(self) -> Result<(Connection, Response), Error> {
        let Some((mut response, true)) = self.response else {
            return Err(Error::InvalidInput(
                "the server's answer has not arrived yet",
            ));
        };
        let mut rest = self.input.into_rest();
        response.set_url(self.url);
        if response.status() != 101 {
            let declared = http::content_length(response.headers()).ok().flatten();
            // Without a Content-Length, keep what already arrived (up to the cap).
            let keep = declared.map_or(MAX_ERROR_BODY, |l| l.min(MAX_ERROR_BODY as u64) as usize);
            rest.truncate(keep);
            response.set_body(rest);
            return Err(Error::Http(Box::new(response)));
        }
        #[cfg_attr(not(feature = "deflate"), allow(clippy::let_unit_value))]
        let agreed = check_response(&response, &self.key, &self.subprotocols, &self.config)?;
        let mut conn = Connection::from_parts(Role::Client, self.config, rest, Some(self.rng));
        conn.negotiated.subprotocol = response.subprotocol().map(str::to_owned);
        #[cfg(feature = "deflate")]
        if let Some(params) = agreed {
            conn.set_deflate(params);
        }
        #[cfg(not(feature = "deflate"))]
        let () = agreed;
        Ok((conn, response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(extra: &str, key: &str) -> Response {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            derive_accept_key(key)
        );
        Response::parse(head.as_bytes(), 64).unwrap()
    }

    #[test]
    fn validates_the_servers_answer() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let offered = vec!["a".to_owned(), "b".to_owned()];
        assert!(check_response(&response("", key), key, &offered, &Config::default()).is_ok());
        assert!(check_response(
            &response("Sec-WebSocket-Protocol: b\r\n", key),
            key,
            &offered,
            &Config::default()
        )
        .is_ok());
        assert!(matches!(
            check_response(
                &response("", key),
                "AAAAAAAAAAAAAAAAAAAAAA==",
                &offered,
                &Config::default()
            ),
            Err(Error::Handshake(HandshakeError::AcceptMismatch))
        ));
        assert!(matches!(
            check_response(
                &response("Sec-WebSocket-Protocol: c\r\n", key),
                key,
                &offered,
                &Config::default()
            ),
            Err(Error::Handshake(HandshakeError::UnexpectedSubprotocol(_)))
        ));
        assert!(matches!(
            check_response(
                &response("Sec-WebSocket-Protocol: a, b\r\n", key),
                key,
                &offered,
                &Config::default()
            ),
            Err(Error::Handshake(HandshakeError::UnexpectedSubprotocol(_)))
        ));
        assert!(matches!(
            check_response(
                &response("Sec-WebSocket-Extensions: permessage-deflate\r\n", key),
                key,
                &offered,
                &Config::default()
            ),
            Err(Error::Handshake(HandshakeError::UnexpectedExtension(_)))
        ));
    }

    #[test]
    fn debug_hides_the_proxy_credentials() {
        let b = ClientBuilder::new("ws://h/").proxy("http://alice:secret@proxy:3128");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("***@proxy:3128"), "{shown}");
    }

    #[test]
    fn builds_request_with_host_port_and_protocols() {
        let url = WsUrl::parse("ws://[::1]:9001/chat?x=1").unwrap();
        let b = ClientBuilder::new("")
            .subprotocol("a")
            .subprotocol("b")
            .header("Origin", "http://o");
        let head = b.request_head(&url, "KEY").unwrap();
        assert!(head.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: [::1]:9001\r\n"));
        assert!(head.contains("Sec-WebSocket-Protocol: a, b\r\n"));
        assert!(head.contains("Origin: http://o\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        let bad = ClientBuilder::new("")
            .header("Upgrade", "x")
            .request_head(&url, "KEY");
        assert!(matches!(bad, Err(Error::InvalidInput(_))));
        let bad = ClientBuilder::new("")
            .header("X", "a\r\nb")
            .request_head(&url, "KEY");
        assert!(matches!(bad, Err(Error::InvalidInput(_))));
        // Found by fuzzing: an empty Host, and a subprotocol offer that bypasses the
        // response check.
        let bad = ClientBuilder::new("")
            .header("Host", " ")
            .request_head(&url, "KEY");
        assert!(matches!(bad, Err(Error::InvalidInput(_))));
        let bad = ClientBuilder::new("")
            .header("Sec-WebSocket-Protocol", "x")
            .request_head(&url, "KEY");
        assert!(matches!(bad, Err(Error::InvalidInput(_))));
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn offers_permessage_deflate_only_when_configured_and_valid() {
        use crate::deflate::DeflateConfig;
        let url = WsUrl::parse("ws://h/").unwrap();
        let head = ClientBuilder::new("").request_head(&url, "KEY").unwrap();
        assert!(!head.contains("Sec-WebSocket-Extensions"));
        let config = Config::default().deflate(Some(DeflateConfig::default()));
        let head = ClientBuilder::new("")
            .config(config)
            .request_head(&url, "KEY")
            .unwrap();
        assert!(head
            .contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
        let bad = Config::default().deflate(Some(
            DeflateConfig::default().client_max_window_bits(Some(16)),
        ));
        let bad = ClientBuilder::new("").config(bad).request_head(&url, "KEY");
        assert!(matches!(bad, Err(Error::InvalidInput(_))));
    }

    /// Feeds a whole answer to a fresh machine and returns the refusal's body.
    fn refusal_body(answer: &[u8]) -> Vec<u8> {
        let mut handshake = ClientBuilder::new("ws://h/").handshake_machine().unwrap();
        handshake.read_buf()[..answer.len()].copy_from_slice(answer);
        handshake.filled(answer.len()).unwrap();
        assert!(handshake.is_complete());
        match handshake.finish() {
            Err(Error::Http(response)) => response.body().to_vec(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn refusal_body_respects_a_zero_content_length() {
        // Found by fuzzing: bytes after a `Content-Length: 0` head are not the body.
        let body = refusal_body(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\nNOT-A-BODY");
        assert!(body.is_empty());
        let body = refusal_body(b"HTTP/1.1 403 Forbidden\r\n\r\nkept");
        assert_eq!(body, b"kept");
    }

    #[test]
    fn a_refusal_waits_for_its_declared_body_and_a_101_does_not() {
        let mut handshake = ClientBuilder::new("ws://h/").handshake_machine().unwrap();
        let head = b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nab";
        handshake.read_buf()[..head.len()].copy_from_slice(head);
        handshake.filled(head.len()).unwrap();
        assert!(!handshake.is_complete(), "3 body bytes are still to come");
        handshake.read_buf()[..3].copy_from_slice(b"cde");
        handshake.filled(3).unwrap();
        assert!(handshake.is_complete());
        // A stream that ends early ends the body.
        let mut handshake = ClientBuilder::new("ws://h/").handshake_machine().unwrap();
        handshake.read_buf()[..head.len()].copy_from_slice(head);
        handshake.filled(head.len()).unwrap();
        handshake.filled(0).unwrap();
        assert!(handshake.is_complete());
        // Nothing at all: the head never came.
        let mut handshake = ClientBuilder::new("ws://h/").handshake_machine().unwrap();
        assert!(matches!(
            handshake.filled(0),
            Err(Error::Handshake(HandshakeError::Incomplete))
        ));
    }
}
