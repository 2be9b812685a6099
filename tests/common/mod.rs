//! Helpers shared by the integration tests: a server thread on 127.0.0.1:0, a raw TCP peer
//! that speaks bytes (for handshakes and frames the library would never produce), and a
//! frame encoder/decoder independent of the library's own.
//!
//! Everything that touches a socket has a bounded timeout so no test can hang.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use stdws::{Error, Message, WebSocket};

/// The example `Sec-WebSocket-Key` of RFC 6455 §1.3.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` for [`RFC_KEY`].
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The fixed masking key of [`client_frame`].
pub const MASK: [u8; 4] = [1, 2, 3, 4];
/// Read/write timeout of every socket the helpers create.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server thread waits for its connections before giving up.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(10);

/// A server thread listening on 127.0.0.1:0 that runs a handler on each accepted connection,
/// one after the other.
pub struct Server<R> {
    pub addr: SocketAddr,
    handle: JoinHandle<Vec<R>>,
}

/// Starts a server that accepts `conns` connections and runs `handler` on each (with
/// [`IO_TIMEOUT`] read and write timeouts set and `TCP_NODELAY` on). If a connection does
/// not arrive within 10 s the thread panics instead of hanging.
pub fn serve<R, F>(conns: usize, handler: F) -> Server<R>
where
    R: Send + 'static,
    F: FnMut(TcpStream) -> R + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    serve_on(listener, conns, handler)
}

/// [`serve`] with a listener the caller bound (e.g. on `[::1]:0`).
pub fn serve_on<R, F>(listener: TcpListener, conns: usize, mut handler: F) -> Server<R>
where
    R: Send + 'static,
    F: FnMut(TcpStream) -> R + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = thread::spawn(move || {
        let deadline = Instant::now() + ACCEPT_DEADLINE;
        let mut results = Vec::with_capacity(conns);
        while results.len() < conns {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                    stream.set_nodelay(true).unwrap();
                    results.push(handler(stream));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "test server: no connection within {ACCEPT_DEADLINE:?}"
                    );
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("test server: accept failed: {e}"),
            }
        }
        results
    });
    Server { addr, handle }
}

/// A server for exactly one connection.
pub fn serve_one<R, F>(handler: F) -> Server<R>
where
    R: Send + 'static,
    F: FnOnce(TcpStream) -> R + Send + 'static,
{
    let mut handler = Some(handler);
    serve(1, move |stream| {
        (handler.take().expect("one connection"))(stream)
    })
}

impl<R> Server<R> {
    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Waits for the server thread; a panic in it is re-raised here.
    pub fn join(self) -> Vec<R> {
        self.handle
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Waits for a one-connection server and returns its handler's result.
    pub fn join_one(self) -> R {
        let mut results = self.join();
        assert_eq!(results.len(), 1);
        results.pop().unwrap()
    }
}

/// `stdws::connect` with [`IO_TIMEOUT`] read and write timeouts on the connection.
pub fn connect(url: &str) -> WebSocket<TcpStream> {
    let (ws, _response) = stdws::connect(url).expect("client handshake");
    set_timeouts(ws.get_ref());
    ws
}

/// Sets [`IO_TIMEOUT`] as read and write timeout.
pub fn set_timeouts(stream: &TcpStream) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// A server handler: accepts, echoes text and binary messages until the closing handshake
/// (the client's close frame, answered by the library). `Ok` on a clean close.
pub fn echo(stream: TcpStream) -> stdws::Result<()> {
    let mut ws = stdws::accept(stream)?;
    echo_ws(&mut ws)
}

/// The echo loop of [`echo`] on an accepted connection.
pub fn echo_ws<T: Read + Write>(ws: &mut WebSocket<T>) -> stdws::Result<()> {
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.write(msg)?,
            Ok(Message::Close(_)) | Err(Error::ConnectionClosed(_)) => return Ok(()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads until EOF or an error, within [`IO_TIMEOUT`], and discards the bytes. Used by
/// server handlers that refused a connection so they never close with unread input (which
/// would make the kernel answer with RST and could destroy the response in flight).
pub fn drain(stream: &TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = [0u8; 4096];
    let mut s = stream;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Shuts down our sending side (the peer sees EOF after everything we wrote), then waits
/// for the peer to close its side.
pub fn finish(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream);
}

// ---------------------------------------------------------------------------------------
// Frames, encoded and decoded independently of the library.
// ---------------------------------------------------------------------------------------

/// Encodes one frame with the shortest length form. `opcode` is the raw 4-bit value (so
/// reserved opcodes can be produced); `mask` masks the payload.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (opcode & 0x0F)];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame as a client sends it: masked with [`MASK`].
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, opcode, payload, Some(MASK))
}

/// A frame as a server sends it: unmasked.
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, opcode, payload, None)
}

/// A close frame body: code and reason.
pub fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    body
}

/// A decoded frame (payload already unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame with a body.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Decodes the frame at the start of `buf`: `None` if it is not complete.
pub fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let mut pos = 2;
    let len = match b1 & 0x7F {
        126 => {
            let bytes = buf.get(2..4)?;
            pos = 4;
            u64::from(u16::from_be_bytes([bytes[0], bytes[1]]))
        }
        127 => {
            let bytes = buf.get(2..10)?;
            pos = 10;
            u64::from_be_bytes(bytes.try_into().unwrap())
        }
        n => u64::from(n),
    };
    let mask = if b1 & 0x80 != 0 {
        let key = buf.get(pos..pos + 4)?;
        pos += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let end = pos + usize::try_from(len).unwrap();
    let mut payload = buf.get(pos..end)?.to_vec();
    if let Some(key) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0F,
        mask,
        payload,
    };
    Some((frame, end))
}

// ---------------------------------------------------------------------------------------
// HTTP heads.
// ---------------------------------------------------------------------------------------

/// A valid upgrade request for `path` with the RFC example key, as header lines without the
/// terminating blank line (so tests can edit it), CRLF-terminated.
pub fn request_lines(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    )
}

/// [`request_lines`] plus the blank line: a complete valid upgrade request.
pub fn upgrade_request(path: &str) -> String {
    request_lines(path) + "\r\n"
}

/// The status code of an HTTP response.
pub fn status_of(response: &str) -> u16 {
    let line = response.lines().next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line: {line:?}");
    parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {line:?}"))
}

/// The value of the first header `name` (case-insensitive) in the head of an HTTP message.
pub fn header_of(head: &str, name: &str) -> Option<String> {
    let head = head.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The body of an HTTP message (after the blank line).
pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

// ---------------------------------------------------------------------------------------
// A raw TCP peer.
// ---------------------------------------------------------------------------------------

/// A TCP connection driven byte by byte, with [`IO_TIMEOUT`] on every read and write.
/// Bytes read past what a helper consumed stay in `buf`.
pub struct RawConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("raw connect");
        RawConn::new(stream)
    }

    /// Wraps a connected stream, setting timeouts and `TCP_NODELAY`.
    pub fn new(stream: TcpStream) -> RawConn {
        set_timeouts(&stream);
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects to `addr`, sends [`upgrade_request`] and checks for a 101 response.
    pub fn handshake(addr: SocketAddr) -> RawConn {
        let mut conn = RawConn::connect(addr);
        conn.send(upgrade_request("/").as_bytes());
        let head = conn.read_head();
        assert_eq!(status_of(&head), 101, "response: {head}");
        assert_eq!(
            header_of(&head, "Sec-WebSocket-Accept").as_deref(),
            Some(RFC_ACCEPT)
        );
        conn
    }

    /// Acts as a server: reads the client's request head and answers with a correct 101
    /// (plus `extra` header lines, each ending in CRLF) followed by `after` in the same
    /// write. Returns the request head.
    pub fn accept_upgrade(&mut self, extra: &str, after: &[u8]) -> String {
        let request = self.read_head();
        let key = header_of(&request, "Sec-WebSocket-Key").expect("request has a key");
        let accept = stdws::handshake::derive_accept_key(&key);
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        )
        .into_bytes();
        response.extend_from_slice(after);
        self.send(&response);
        request
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
        self.stream.flush().unwrap();
    }

    /// Reads more bytes into `buf`; returns how many (0 at EOF). Panics on timeout.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("raw read failed (buffered {:?}): {e}", self.buf),
            }
        }
    }

    /// Reads an HTTP head (through the blank line) and returns it; later bytes stay in
    /// `buf`.
    pub fn read_head(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return String::from_utf8(head).expect("head is UTF-8");
            }
            assert!(self.fill() > 0, "EOF before the end of the HTTP head");
        }
    }

    /// Reads one complete frame.
    pub fn read_frame(&mut self) -> Frame {
        loop {
            if let Some((frame, len)) = parse_frame(&self.buf) {
                self.buf.drain(..len);
                return frame;
            }
            assert!(self.fill() > 0, "EOF inside a frame: {:?}", self.buf);
        }
    }

    /// Reads until the peer closes; returns everything not consumed before.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
    }
}

/// A raw TCP client: connects to `addr`, writes `request`, and returns the whole response
/// (until the server closes the connection, within [`IO_TIMEOUT`]).
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = RawConn::connect(addr);
    conn.send(request);
    String::from_utf8_lossy(&conn.read_to_end()).into_owned()
}

/// Reads messages until one that is not a ping or pong.
pub fn read_data<T: Read + Write>(ws: &mut WebSocket<T>) -> stdws::Result<Message> {
    loop {
        match ws.read()? {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return Ok(other),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Threads joined with a deadline, and connected pairs.
// ---------------------------------------------------------------------------------------

/// A thread whose result is awaited with a deadline (see [`spawn_bounded`]).
pub struct Bounded<T> {
    rx: std::sync::mpsc::Receiver<T>,
    handle: JoinHandle<()>,
}

/// Runs `f` on a new thread; [`Bounded::join`] waits for its result with a deadline.
pub fn spawn_bounded<T, F>(f: F) -> Bounded<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    Bounded { rx, handle }
}

impl<T> Bounded<T> {
    /// The thread's result, waiting at most `within`. Panics if the thread is still running
    /// then (it is left behind, never waited for); a panic in the thread is re-raised here.
    pub fn join(self, within: Duration) -> T {
        use std::sync::mpsc::RecvTimeoutError;
        match self.rx.recv_timeout(within) {
            Ok(value) => {
                let _ = self.handle.join();
                value
            }
            Err(RecvTimeoutError::Timeout) => panic!("thread still running after {within:?}"),
            Err(RecvTimeoutError::Disconnected) => match self.handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the thread ended without sending its result"),
            },
        }
    }

    /// The thread's result, or `None` if it is still running after `within` (it is then
    /// left behind). A panic in the thread is re-raised here.
    pub fn join_timeout(self, within: Duration) -> Option<T> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.rx.recv_timeout(within) {
            Ok(value) => {
                let _ = self.handle.join();
                Some(value)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => match self.handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the thread ended without sending its result"),
            },
        }
    }

    /// Whether the thread has finished (its result is ready, or it panicked).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Accepts one connection on `listener` within [`IO_TIMEOUT`] (panics otherwise), and
/// returns it blocking, with [`IO_TIMEOUT`] read and write timeouts and `TCP_NODELAY`.
pub fn accept_within(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                set_timeouts(&stream);
                stream.set_nodelay(true).unwrap();
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no connection within {IO_TIMEOUT:?}"
                );
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

/// `stdws::accept_with(stream, config)`, except that keep-alive, which that generic
/// constructor refuses in its config, is turned on with `WebSocket::set_keepalive`.
pub fn accept_config(
    stream: TcpStream,
    config: stdws::Config,
) -> stdws::Result<WebSocket<TcpStream>> {
    let keepalive = config.keepalive;
    let mut ws = stdws::accept_with(stream, config.keepalive(None), |_, _| Ok(()))?;
    if keepalive.is_some() {
        ws.set_keepalive(keepalive);
    }
    Ok(ws)
}

/// A connected (server, client) pair over 127.0.0.1, both with [`IO_TIMEOUT`] read and write
/// timeouts, the server accepted with `server_config` and the client with `client_config`.
pub fn ws_pair_with(
    server_config: stdws::Config,
    client_config: stdws::Config,
) -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let client = spawn_bounded(move || {
        stdws::ClientBuilder::new(url)
            .config(client_config)
            .connect()
    });
    let stream = accept_within(&listener);
    let server = accept_config(stream, server_config).expect("server handshake");
    let (client, _response) = client.join(IO_TIMEOUT).expect("client handshake");
    set_timeouts(client.get_ref());
    (server, client)
}

/// [`ws_pair_with`] default configurations.
pub fn ws_pair() -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
    ws_pair_with(stdws::Config::default(), stdws::Config::default())
}

/// A server connection accepted with `config` and the raw client that opened it with
/// [`RawConn::handshake`]. The server's stream has [`IO_TIMEOUT`] timeouts.
pub fn server_and_raw_client(config: stdws::Config) -> (WebSocket<TcpStream>, RawConn) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let server = spawn_bounded(move || {
        let stream = accept_within(&listener);
        accept_config(stream, config)
    });
    let raw = RawConn::handshake(addr);
    let ws = server.join(IO_TIMEOUT).expect("server handshake");
    (ws, raw)
}

/// A client connection opened with `config` and the raw server that answered its handshake
/// with [`RawConn::accept_upgrade`]. The client's stream has [`IO_TIMEOUT`] timeouts.
pub fn client_and_raw_server(config: stdws::Config) -> (WebSocket<TcpStream>, RawConn) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let client = spawn_bounded(move || stdws::ClientBuilder::new(url).config(config).connect());
    let mut raw = RawConn::new(accept_within(&listener));
    raw.accept_upgrade("", b"");
    let (ws, _response) = client.join(IO_TIMEOUT).expect("client handshake");
    set_timeouts(ws.get_ref());
    (ws, raw)
}

// ---------------------------------------------------------------------------------------
// Memory of this process, and running memory-sensitive tests one at a time.
// ---------------------------------------------------------------------------------------

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`, `Threads` as a count); `None`
/// where `/proc` is not available.
pub fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Serialises the tests of one binary that measure this process's memory (or that would
/// disturb such a measurement): hold the guard for the whole test. A test that panicked
/// while holding it does not block the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Measures how far this process's resident memory rises above where it was at
/// [`MemoryWatch::start`]: the peak (`VmHWM`, reset to the current RSS at the start through
/// `/proc/self/clear_refs` where allowed) and the current RSS. Take [`serial`] first: the
/// figures are for the whole process.
pub struct MemoryWatch {
    rss_start: u64,
    hwm_start: u64,
    /// The peak was reset to the RSS at the start, so it measures this test alone.
    peak_reset: bool,
}

impl MemoryWatch {
    /// `None` where `/proc/self/status` is not available (the checks are then skipped).
    pub fn start() -> Option<MemoryWatch> {
        let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        Some(MemoryWatch {
            rss_start: proc_status("VmRSS")?,
            hwm_start: proc_status("VmHWM")?,
            peak_reset,
        })
    }

    /// How much the peak resident memory rose above the RSS at the start, in KiB. Without
    /// the reset, only a peak above the earlier one shows (an underestimate).
    pub fn peak_growth_kib(&self) -> u64 {
        let hwm = proc_status("VmHWM").unwrap_or(0);
        if self.peak_reset {
            hwm.saturating_sub(self.rss_start)
        } else {
            hwm.saturating_sub(self.hwm_start)
        }
    }

    /// How much the resident memory is above the RSS at the start now, in KiB.
    pub fn rss_growth_kib(&self) -> u64 {
        proc_status("VmRSS")
            .unwrap_or(0)
            .saturating_sub(self.rss_start)
    }

    /// Panics if the peak rose by `max_mib` MiB or more.
    pub fn assert_peak_below(&self, max_mib: u64, what: &str) {
        let grew = self.peak_growth_kib();
        eprintln!("{what}: peak resident memory +{grew} KiB");
        assert!(
            grew < max_mib << 10,
            "{what}: peak resident memory grew by {} KiB (limit {max_mib} MiB)",
            grew
        );
    }
}

/// A small deterministic generator (xorshift64*) for hostile inputs that must be
/// reproducible from a seed.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Reads everything a raw peer receives until EOF, a reset or `within` passes (without
/// panicking, unlike [`RawConn::read_to_end`]); returns the bytes and how it ended.
pub fn read_until_end(stream: &TcpStream, within: Duration) -> (Vec<u8>, std::io::Result<()>) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let mut s = stream;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, Err(ErrorKind::TimedOut.into()));
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Splits bytes into whole frames; the second value is the length of an incomplete frame
/// left at the end (0 if none).
pub fn parse_frames(mut bytes: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    while let Some((frame, len)) = parse_frame(bytes) {
        frames.push(frame);
        bytes = &bytes[len..];
    }
    (frames, bytes.len())
}

/// A server configuration with a fresh self-signed certificate for `localhost`, and a
/// client configuration that trusts only it.
#[cfg(feature = "rustls")]
pub fn tls_pair() -> (
    std::sync::Arc<stdws::tls::rustls::ServerConfig>,
    std::sync::Arc<stdws::tls::rustls::ClientConfig>,
) {
    use stdws::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use stdws::tls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (std::sync::Arc::new(server), std::sync::Arc::new(client))
}
