//! Echo server on one thread: a `mio` event loop over non-blocking sockets drives the
//! sans-I/O core, [`stdws::proto`], for every connection at once.
//!
//! ```text
//! cargo run --release --example poll_server [ADDR]     # default 127.0.0.1:9001
//! cargo run --release --features deflate --example poll_server   # + permessage-deflate
//! ```
//!
//! Same contract as `echo_server`: accepts any path, echoes every text and binary message,
//! answers pings, completes the closing handshake; a client that is silent during the
//! handshake is dropped after 10 s (`Config::handshake_timeout`), and an idle one once it
//! ignores a keep-alive ping (30 s + 30 s). Logs connections and errors to stderr, never a
//! message. It is a testee for the Autobahn|Testsuite's fuzzing client
//! (`AUTOBAHN_SERVER_EXAMPLE=poll_server .ci/autobahn server`).
//!
//! What differs from `echo_server`, which runs the blocking `WebSocket` on one thread per
//! connection: here a single thread owns every socket. The opening handshake is a
//! [`ServerHandshake`] fed whatever bytes have arrived (a request head split over many
//! reads survives `WouldBlock`); the connection is a [`Connection`] fed bytes with
//! `read_buf`/`filled`, asked for messages with `poll`, whose `output` is written when the
//! socket takes it, and whose keep-alive runs on `next_deadline`/`on_timeout` with the
//! time passed in. Nothing blocks: a slow client costs memory (its queued output), not a
//! thread, and an idle one costs what its `Connection` holds, not a stack.
//!
//! What a connection holds while idle: the socket, this file's `Client` (120 bytes in the
//! map, on x86-64), the boxed `Connection` (528 bytes) and its buffers: the read buffer,
//! resting at `Config::read_buffer_size` (4 KiB; it grows to 64 KiB during bursts and
//! shrinks back after a short read), the write queue (empty; an allocation that grew past
//! 64 KiB is released once written) and the allocation of the last echoed message (kept up
//! to 64 KiB to receive the next one into). With permessage-deflate, the compressor and
//! decompressor states are allocated with the first compressed message. While the handshake
//! is under way the `ServerHandshake` holds the request head read so far (a 4 KiB buffer,
//! then up to `Config::max_head_size`), which becomes the connection's read buffer.
//! Measured with `tests/load.rs` (`ten_thousand_idle_connections_on_poll_server`): 10,000
//! idle connections, after a handshake and one echo each, add 4.9 KiB of RSS apiece, 4 KiB
//! of it the read buffer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use stdws::proto::{Connection, Refusal, ServerHandshake};
use stdws::{Config, Error, HandshakeError, KeepAlive, Message, State};

const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the last bytes of a connection (a close frame, a refusal) may take to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// After our last bytes and a `shutdown(Write)`, how long and how much of what the client
/// still sends is read and dropped before the socket is closed: closing a socket with unread
/// input makes the kernel reset the connection, which can destroy our last bytes before the
/// client has read them (as `Server` does after a refusal).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;
/// Reading from a client pauses while this much output waits for it (it sends faster than
/// it reads its echoes), and resumes once the socket took most of it.
const PAUSE_READING: usize = 1 << 20;
/// After an accept failed for lack of resources (too many open files), when to try again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    // Keep-alive: after KEEPALIVE_INTERVAL of silence the connection queues a ping, and it
    // fails (1011) if the client stays silent KEEPALIVE_TIMEOUT more. The event loop calls
    // `on_timeout` when `next_deadline` comes. The handshake is bounded by
    // `handshake_timeout` (10 s by default), which this loop enforces itself.
    let config =
        Config::default().keepalive(Some(KeepAlive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)));
    // Built with `--features deflate`, accept permessage-deflate offers.
    #[cfg(feature = "deflate")]
    let config = config.deflate(Some(stdws::DeflateConfig::default()));
    let server = match Server::bind(&addr, config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("poll_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = server.run() {
        eprintln!("poll_server: the event loop failed: {e}");
        std::process::exit(1);
    }
}

/// The event loop's state: the listener, every client by token, and the timers.
struct Server {
    poll: Poll,
    listener: TcpListener,
    config: Config,
    clients: HashMap<Token, Client>,
    /// Deadlines (handshake, keep-alive, flush, linger) as a min-heap of `(when, token)`.
    /// A heap rather than a scan of every client before each wait: with 10,000 mostly idle
    /// connections a scan would cost 10,000 steps per wake-up, the heap O(log n) per timer.
    /// Entries are never removed early: each client remembers the one entry that stands for
    /// it ([`Client::scheduled`]); others (the client left, or its deadline moved earlier and
    /// was pushed again) are skipped when they come up. A deadline that moved later (data
    /// arrived) is found when its old entry comes up and pushed again, so a busy
    /// connection pushes about once per keep-alive interval, not once per read.
    timers: BinaryHeap<Reverse<(Instant, Token)>>,
    /// Tokens are never reused, so a stale timer can never reach a newer client.
    next_token: usize,
    /// Accepting failed for lack of resources; try again then.
    accept_retry: Option<Instant>,
    /// Where lingering clients' input is read and dropped (shared: clients hold no buffer
    /// of their own for it).
    scratch: Vec<u8>,
}

/// One TCP connection, through its phases.
struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    phase: Phase,
    /// WRITABLE is in the registered interest (READABLE always is).
    writable: bool,
    /// The deadline of this client's entry in the timer heap, if it has one.
    scheduled: Option<Instant>,
}

enum Phase {
    /// Reading the request head.
    Handshake {
        handshake: Box<ServerHandshake>,
        deadline: Option<Instant>,
    },
    /// A WebSocket connection: echo. `paused`: reading waits for the output to drain.
    Open { conn: Box<Connection>, paused: bool },
    /// Over: write what is left (a close frame, a refusal), then linger.
    Flush { out: Leftover, deadline: Instant },
    /// Our side is shut down; drop what the client still sends until it closes too.
    Linger { deadline: Instant, left: usize },
    /// Close the socket now.
    Done,
}

/// The last bytes to send: a connection's queued frames, or an HTTP refusal.
enum Leftover {
    Frames(Box<Connection>),
    Response { bytes: Vec<u8>, written: usize },
}

/// Bytes waiting for the socket.
trait Outbox {
    fn bytes(&self) -> &[u8];
    fn consume(&mut self, n: usize);
}

impl Outbox for Connection {
    fn bytes(&self) -> &[u8] {
        self.output()
    }
    fn consume(&mut self, n: usize) {
        Connection::consume(self, n);
    }
}

impl Outbox for Leftover {
    fn bytes(&self) -> &[u8] {
        match self {
            Leftover::Frames(conn) => conn.output(),
            Leftover::Response { bytes, written } => &bytes[*written..],
        }
    }
    fn consume(&mut self, n: usize) {
        match self {
            Leftover::Frames(conn) => conn.consume(n),
            Leftover::Response { written, .. } => *written += n,
        }
    }
}

impl Server {
    fn bind(addr: &str, config: Config) -> io::Result<Server> {
        // std resolves names ("localhost:9001"); mio takes the bound socket over.
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            config,
            clients: HashMap::new(),
            timers: BinaryHeap::new(),
            next_token: 1,
            accept_retry: None,
            scratch: vec![0; 4096],
        })
    }

    fn run(mut self) -> io::Result<()> {
        eprintln!(
            "poll_server: listening on ws://{}/ (one thread)",
            self.listener.local_addr()?
        );
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .next_wakeup()
                .map(|t| t.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(now),
                    // Readable, writable, hang-up or error: `drive` does whatever the
                    // client's phase allows without blocking, so one path serves them all.
                    token => self.update(token, |client| client.drive(now)),
                }
            }
            if self.accept_retry.is_some_and(|t| t <= now) {
                self.accept_retry = None;
                self.accept(now);
            }
            self.fire_timers(now);
        }
    }

    /// The earliest timer or accept retry.
    fn next_wakeup(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        match (timer, self.accept_retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts every pending connection (edge-triggered: until `WouldBlock`).
    fn accept(&mut self, now: Instant) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // EMFILE and the like: the connection waits in the backlog, and no new
                    // event comes for it, so try again shortly.
                    eprintln!("poll_server: accept failed: {e}");
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = stream.set_nodelay(true).and_then(|()| {
                self.poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
            }) {
                eprintln!("{peer}: cannot register: {e}");
                continue;
            }
            // Bytes that are already there raise an event once registered (edge-triggered
            // interest reports the state at registration), so nothing is read here.
            let handshake = Box::new(ServerHandshake::new(self.config.clone()));
            let deadline = self.config.handshake_timeout.map(|t| now + t);
            let client = Client {
                stream,
                peer,
                phase: Phase::Handshake {
                    handshake,
                    deadline,
                },
                writable: false,
                scheduled: None,
            };
            self.clients.insert(token, client);
            self.update(token, |_| {});
        }
    }

    /// Runs `step` on a client, then brings its registration and timer up to date, or
    /// closes it if it is done.
    fn update(&mut self, token: Token, step: impl FnOnce(&mut Client)) {
        let Some(client) = self.clients.get_mut(&token) else {
            return; // closed earlier in this round of events
        };
        step(client);
        if let Phase::Linger { .. } = client.phase {
            client.linger(&mut self.scratch);
        }
        let wants_write = match &client.phase {
            Phase::Open { conn, .. } => conn.wants_write(),
            Phase::Flush { .. } => true,
            Phase::Handshake { .. } | Phase::Linger { .. } => false,
            Phase::Done => {
                // Dropping the stream closes the socket and takes it out of the poll set.
                self.clients.remove(&token);
                return;
            }
        };
        if wants_write != client.writable {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut client.stream, token, interest)
            {
                eprintln!("{}: cannot reregister: {e}", client.peer);
                self.clients.remove(&token);
                return;
            }
            client.writable = wants_write;
        }
        if let Some(deadline) = client.deadline() {
            if client.scheduled.map_or(true, |s| deadline < s) {
                self.timers.push(Reverse((deadline, token)));
                client.scheduled = Some(deadline);
            }
        }
    }

    /// Acts on every timer that is due.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((when, token))) = self.timers.peek() {
            if when > now {
                return;
            }
            self.timers.pop();
            let current = self
                .clients
                .get(&token)
                .is_some_and(|c| c.scheduled == Some(when));
            if !current {
                continue; // stale: the client left or has an earlier entry
            }
            self.update(token, |client| {
                client.scheduled = None;
                client.on_deadline(now);
            });
        }
    }
}

impl Client {
    /// When this client's phase needs the clock next.
    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Handshake { deadline, .. } => *deadline,
            Phase::Open { conn, .. } => conn.next_deadline(),
            Phase::Flush { deadline, .. } | Phase::Linger { deadline, .. } => Some(*deadline),
            Phase::Done => None,
        }
    }

    /// The deadline of the phase may have come (it may also have moved later since).
    fn on_deadline(&mut self, now: Instant) {
        if self.deadline().map_or(true, |d| d > now) {
            return;
        }
        match &mut self.phase {
            Phase::Handshake { .. } => {
                eprintln!("{}: handshake timed out", self.peer);
                self.phase = Phase::Done;
            }
            Phase::Open { conn, .. } => {
                // A ping after silence, or the end (1011 queued) if the ping went unanswered.
                if let Err(e) = conn.on_timeout(now) {
                    eprintln!("{}: {e}", self.peer);
                }
                self.drive(now);
            }
            Phase::Flush { .. } | Phase::Linger { .. } => self.phase = Phase::Done,
            Phase::Done => {}
        }
    }

    /// Does everything the phase allows without blocking: reads, answers, writes, moves on
    /// to the next phase.
    fn drive(&mut self, now: Instant) {
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Done);
            let (next, again) = match phase {
                Phase::Handshake {
                    handshake,
                    deadline,
                } => self.handshake(handshake, deadline, now),
                Phase::Open { conn, paused } => self.serve(conn, paused, now),
                Phase::Flush { out, deadline } => self.flush(out, deadline, now),
                // Lingering reads into the server's scratch buffer (see `update`).
                linger @ Phase::Linger { .. } => (linger, false),
                Phase::Done => (Phase::Done, false),
            };
            self.phase = next;
            if !again {
                return;
            }
        }
    }

    /// Reads the request head; answers it with the 101 (and goes on as a connection) or
    /// with a refusal.
    fn handshake(
        &mut self,
        mut handshake: Box<ServerHandshake>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> (Phase, bool) {
        loop {
            let n = match self.stream.read(handshake.read_buf()) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return (
                        Phase::Handshake {
                            handshake,
                            deadline,
                        },
                        false,
                    )
                }
                Err(e) => {
                    eprintln!("{}: handshake failed: {e}", self.peer);
                    return (Phase::Done, false);
                }
            };
            match handshake.filled(n) {
                Ok(None) => {}
                Ok(Some(_request)) => break, // any path is accepted
                Err(refusal) => return (self.refused(refusal, now), true),
            }
        }
        match handshake.accept() {
            Ok(mut conn) => {
                eprintln!("{}: connected", self.peer);
                // The keep-alive timer starts with the first time the connection is told;
                // a client that never sends a frame must still be pinged.
                let _ = conn.on_timeout(now);
                (
                    Phase::Open {
                        conn: Box::new(conn),
                        paused: false,
                    },
                    true,
                )
            }
            Err(refusal) => (self.refused(refusal, now), true),
        }
    }

    /// A refused handshake: its response is written before the socket is closed.
    fn refused(&self, refusal: Refusal, now: Instant) -> Phase {
        let Refusal { response, error } = refusal;
        if !matches!(error, Error::Handshake(HandshakeError::Incomplete)) {
            eprintln!("{}: handshake failed: {error}", self.peer);
        }
        if response.is_empty() {
            return Phase::Done;
        }
        Phase::Flush {
            out: Leftover::Response {
                bytes: response,
                written: 0,
            },
            deadline: now + FLUSH_TIMEOUT,
        }
    }

    /// The WebSocket connection: reads until `WouldBlock`, echoes every data message,
    /// writes until `WouldBlock`; once it is closed, moves on to flushing its last frames.
    fn serve(
        &mut self,
        mut conn: Box<Connection>,
        mut paused: bool,
        now: Instant,
    ) -> (Phase, bool) {
        while conn.state() != State::Closed {
            if let Err(e) = write_out(&mut self.stream, &mut *conn) {
                return self.io_failed(&e);
            }
            // Backpressure: a client that does not read its echoes is not read either.
            // `buffered_amount`, not `output().len()`: a large echo is queued as it is, and
            // `output()` is then only the piece before it.
            paused = conn.buffered_amount() >= PAUSE_READING;
            if paused {
                break;
            }
            let n = match self.stream.read(conn.read_buf()) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return self.io_failed(&e),
            };
            conn.filled(n, now); // 0: the client ended its stream
            loop {
                match conn.poll() {
                    Ok(Some(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        if let Err(e) = conn.send(message) {
                            // Only WriteBufferFull could happen here (64 MiB queued); the
                            // connection cannot go on without losing an echo.
                            eprintln!("{}: cannot echo: {e}", self.peer);
                            return (Phase::Done, false);
                        }
                    }
                    // Pings are answered and the client's close echoed by `poll`.
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // The closing handshake is over: nothing to report.
                    Err(Error::ConnectionClosed(_)) => break,
                    // A protocol violation (its close frame is queued), the end of the
                    // stream without a close, ...: the connection is closed.
                    Err(e) => {
                        eprintln!("{}: {e}", self.peer);
                        break;
                    }
                }
            }
        }
        if conn.state() == State::Closed {
            return self.flush(Leftover::Frames(conn), now + FLUSH_TIMEOUT, now);
        }
        if let Err(e) = write_out(&mut self.stream, &mut *conn) {
            return self.io_failed(&e);
        }
        // Output drained below the mark while paused: read again (edge-triggered: no
        // readable event comes for bytes that were already waiting).
        let again = paused && conn.buffered_amount() < PAUSE_READING;
        (Phase::Open { conn, paused }, again)
    }

    /// Writes the last bytes, then shuts our side down and lingers.
    fn flush(&mut self, mut out: Leftover, deadline: Instant, now: Instant) -> (Phase, bool) {
        match write_out(&mut self.stream, &mut out) {
            Err(_) => (Phase::Done, false),
            Ok(()) if !out.bytes().is_empty() => (Phase::Flush { out, deadline }, false),
            // Done writing: a server closes the TCP connection first (RFC 6455 §7.1.1).
            Ok(()) => match self.stream.shutdown(Shutdown::Write) {
                Ok(()) => (
                    Phase::Linger {
                        deadline: now + LINGER_TIME,
                        left: LINGER_BYTES,
                    },
                    false,
                ),
                Err(_) => (Phase::Done, false),
            },
        }
    }

    /// Reads and drops what the client still sends; done at its end of stream, an error,
    /// or `LINGER_BYTES`.
    fn linger(&mut self, scratch: &mut [u8]) {
        let Phase::Linger { left, .. } = &mut self.phase else {
            return;
        };
        loop {
            let room = scratch.len().min(*left);
            match self.stream.read(&mut scratch[..room]) {
                Ok(n) if n > 0 && n < *left => *left -= n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                _ => break,
            }
        }
        self.phase = Phase::Done;
    }

    fn io_failed(&self, e: &io::Error) -> (Phase, bool) {
        eprintln!("{}: {e}", self.peer);
        (Phase::Done, false)
    }
}

/// Writes what `out` holds until it is empty or the socket would block. Fails on an error
/// that ends the connection.
fn write_out(stream: &mut TcpStream, out: &mut impl Outbox) -> io::Result<()> {
    while !out.bytes().is_empty() {
        match stream.write(out.bytes()) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => out.consume(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
