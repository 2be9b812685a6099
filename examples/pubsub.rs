//! Publish/subscribe relay: every message a client sends goes to every client on the same
//! topic, itself included. The command line is a contract (benches/fanout.rs relies on it).
//!
//! ```text
//! cargo run --release --example pubsub [ADDR] [--rate N] [--max-connections N] [--budget BYTES]
//!     # default ADDR 127.0.0.1:9002, --rate 1000 (msgs/s per connection, burst as large),
//!     # --max-connections 19000, --budget 1048576
//! cargo run --example client -- ws://127.0.0.1:9002/prices    # any path is a topic
//!
//! # cluster mode: the same program built with a Redis client, one of several instances
//! cargo run --release --manifest-path examples/cluster/Cargo.toml -- ADDR \
//!     --redis redis://127.0.0.1:6379 [--instance NAME]
//! ```
//!
//! A client connects to `ws://ADDR/<topic>`; each text or binary message it sends is
//! delivered verbatim (same opcode, same payload) to every client connected to that topic.
//! One message is framed once for all of them ([`PreparedMessage`]) and written by a
//! [`Fanout`]'s writer threads, so a broadcast never waits on one slow client.
//!
//! Threads: one per connection (64 KiB stacks, of which only the pages a read touches are
//! resident; Linux's `vm.max_map_count`, 65,530 by default, caps a process near 16,000
//! threads, each taking four memory mappings: its stack and the signal stack Rust's
//! runtime gives it, each with a guard page; `--max-connections` is lowered to what
//! `vm.max_map_count` allows, with a message, since the runtime aborts the process when a
//! thread's signal stack cannot be mapped), which reads its client and publishes what it
//! sends, plus the fanout's writer
//! threads (one per CPU). The opening handshakes all run on the accepting thread, over
//! non-blocking sockets under one `mio` poll, each fed to a [`stdws::proto::ServerHandshake`]
//! as its bytes arrive and handed to the blocking driver with [`WebSocket::from_connection`]
//! once accepted: a slow or silent client holds no thread during its handshake (10 s at
//! most), a connection costs one thread start, and the deeper stack of the handshake is
//! never touched by a connection's thread. A split connection holds one descriptor.
//!
//! The usual security advice for a WebSocket server, as code:
//! - **Limits.** `--max-connections` (a client beyond it is answered 503); messages of at
//!   most 64 KiB (a larger one is refused with close 1009); the handshake must finish
//!   within 10 s.
//! - **Rate limiting.** Each connection may publish `--rate` messages per second (a token
//!   bucket holding as many); a client over it is closed with 1008.
//! - **Slow consumers.** A subscriber with more than `--budget` bytes waiting in the server
//!   (beyond what its socket buffers hold), or whose socket takes nothing for 5 s, is cut
//!   (close 1008, socket shut down); the others never wait for it.
//! - **Liveness.** Keep-alive pings a silent client after 30 s and drops it 10 s later if it
//!   does not answer.
//! - **Origin.** Browsers send `Origin`; this relay accepts any (its data is whatever the
//!   clients publish). A relay whose clients hold cookies or credentials should check
//!   `Origin` in the accept callback, as `examples/chat.rs` does, to stop cross-site
//!   WebSocket hijacking.
//!
//! **Cluster mode** (`--redis URL`) links several instances through Redis pub/sub, so that
//! a topic spans all of them: what a client publishes is delivered to the subscribers on
//! every instance. The Redis side lives in `examples/cluster`, a crate of its own that
//! compiles this same file with a [`Link`] over the `redis` crate (see its `src/main.rs`
//! for why it is not a dev-dependency of stdws); built here, as `--example pubsub`, the
//! relay has no Redis client and refuses `--redis`. Without `--redis` both builds behave
//! the same.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token};
use stdws::proto::{Connection, Refusal, ServerHandshake};
use stdws::{
    CloseCode, Config, Error, Fanout, FanoutConfig, KeepAlive, Message, PreparedMessage, ReadHalf,
    Rejection, Subscription, Topic, WebSocket, WriteHalf,
};

/// Stack of a connection's thread; only the pages a read touches (two) become resident.
const STACK_SIZE: usize = 64 * 1024;
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a client has for its handshake: the whole request read and the answer written.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client's input is read and dropped once its answer is written (with
/// unread input, closing the socket sends a reset, which may destroy the answer).
const LINGER: Duration = Duration::from_secs(1);
/// Handshakes in progress at once; beyond, a new connection is closed unanswered.
const MAX_HANDSHAKES: usize = 1024;

/// The most connections this process can hold a thread for, if the kernel says: each
/// thread takes four memory mappings (its stack and the signal stack Rust's runtime gives
/// it, each with a guard page), and a process may have `vm.max_map_count` mappings. Past
/// that a new thread's signal stack cannot be mapped and the runtime aborts the process,
/// so `--max-connections` is kept under it (a client beyond is answered 503 instead).
fn thread_capacity() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
    let maps: usize = text.trim().parse().ok()?;
    // Mappings of the binary, libraries and heap arenas; then the threads beyond the
    // connections': the fanout's writers, main.
    let threads = maps.saturating_sub(1000) / 4;
    Some(threads.saturating_sub(32))
}

struct Args {
    addr: String,
    rate: f64,
    max_connections: usize,
    budget: usize,
    /// Cluster mode: the Redis server's URL.
    redis: Option<String>,
    /// Cluster mode: this instance's name (default: made up at start).
    instance: Option<String>,
}

/// Cluster mode's tie to the other instances; `examples/cluster` implements it over Redis.
/// The relay calls it from its connections' threads, so its methods must not block.
pub trait Link: Send + Sync {
    /// This instance's name, sent to clients in an `X-Pubsub-Instance` response header.
    fn instance(&self) -> &str;
    /// A local client published `message` on `topic` (the local subscribers already have
    /// it): pass it on to the other instances.
    fn publish(&self, topic: &str, message: &PreparedMessage);
    /// `topic` has its first local subscriber (`true`) or lost its last one (`false`). Calls
    /// for one topic come in the order its subscribers came and went.
    fn interest(&self, topic: &str, subscribed: bool);
}

/// Delivers a message that came from another instance to the local subscribers of a topic.
pub type Deliver = Box<dyn Fn(&str, &PreparedMessage) + Send + Sync>;

/// Makes the [`Link`] of cluster mode from the Redis URL, the instance's name if one was
/// given, and the way in for the other instances' messages.
pub type Connect = fn(&str, Option<&str>, Deliver) -> Result<Box<dyn Link>, String>;

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9002".to_owned(),
        rate: 1000.0,
        max_connections: 19_000,
        budget: 1 << 20,
        redis: None,
        instance: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<f64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or(format!("{name}: not a positive number: {v}"))
        };
        match arg.as_str() {
            "--rate" => args.rate = number("--rate")?,
            "--max-connections" => args.max_connections = number("--max-connections")? as usize,
            "--budget" => args.budget = number("--budget")? as usize,
            "--redis" => args.redis = Some(it.next().ok_or("--redis needs a URL")?),
            "--instance" => args.instance = Some(it.next().ok_or("--instance needs a name")?),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            addr => args.addr = addr.to_owned(),
        }
    }
    Ok(args)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The topics with at least one subscriber.
struct Relay {
    fanout: Fanout,
    topics: Mutex<HashMap<String, Topic>>,
    /// WebSocket connections, against `max_connections`.
    subscribers: AtomicUsize,
    max_connections: usize,
    rate: f64,
    /// Cluster mode's link to the other instances; never set in a single relay.
    link: OnceLock<Box<dyn Link>>,
}

impl Relay {
    /// Subscribes `writer` to the topic `name`, which is made if it has no subscriber yet.
    /// Under the topics' lock, so that a topic being forgotten by `leave` cannot take a new
    /// subscriber with it, and so that the link hears of a topic's first and last
    /// subscribers in order.
    fn join(&self, name: &str, writer: WriteHalf) -> stdws::Result<(Topic, Subscription)> {
        let mut topics = lock(&self.topics);
        let topic = match topics.get(name) {
            Some(topic) => topic.clone(),
            None => {
                let topic = self.fanout.topic();
                topics.insert(name.to_owned(), topic.clone());
                if let Some(link) = self.link.get() {
                    link.interest(name, true);
                }
                topic
            }
        };
        let subscription = topic.subscribe(writer);
        if subscription.is_err() && topic.is_empty() {
            topics.remove(name);
            if let Some(link) = self.link.get() {
                link.interest(name, false);
            }
        }
        Ok((topic, subscription?))
    }

    /// Forgets a topic nobody is subscribed to any more.
    fn leave(&self, name: &str) {
        let mut topics = lock(&self.topics);
        if topics.get(name).is_some_and(Topic::is_empty) {
            topics.remove(name);
            if let Some(link) = self.link.get() {
                link.interest(name, false);
            }
        }
    }

    /// A local client published `message` on `topic`: to the local subscribers, then (in
    /// cluster mode) to the other instances.
    fn publish(&self, name: &str, topic: &Topic, message: &PreparedMessage) {
        topic.broadcast(message);
        if let Some(link) = self.link.get() {
            link.publish(name, message);
        }
    }

    /// A message from another instance: to the local subscribers of `name`, if any.
    fn deliver(&self, name: &str, message: &PreparedMessage) {
        let topic = lock(&self.topics).get(name).cloned();
        if let Some(topic) = topic {
            topic.broadcast(message);
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `rate`.
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            tokens: rate,
            rate,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A WebSocket connection's place in the count against `--max-connections`, released when
/// dropped.
struct Seat(Arc<Relay>);

impl Seat {
    /// A seat, unless all `--max-connections` are taken.
    fn take(relay: &Arc<Relay>) -> Option<Seat> {
        let n = relay.subscribers.fetch_add(1, Ordering::AcqRel);
        let seat = Seat(Arc::clone(relay));
        (n < relay.max_connections).then_some(seat)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The opening handshakes, all on the accepting thread: non-blocking sockets under one
/// `mio` poll, each request read by a [`ServerHandshake`] as its bytes arrive. A client
/// that sends its request slowly (or never) holds no thread, only its entry here, until
/// [`HANDSHAKE_TIMEOUT`]; a connection gets its thread once it is a subscriber, and that
/// thread never runs the handshake's deeper stack (its pages would stay resident).
struct Front {
    relay: Arc<Relay>,
    config: Config,
    poll: Poll,
    listener: mio::net::TcpListener,
    pending: HashMap<Token, Handshake>,
    next_token: usize,
    /// Accepting failed (out of descriptors, say): try again at this time.
    retry_accept: Option<Instant>,
}

/// A client whose handshake is under way.
struct Handshake {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    stage: Stage,
}

enum Stage {
    /// Reading the request.
    Request(Box<ServerHandshake>),
    /// Refused: the answer's bytes still to write; then the client's input is read and
    /// dropped until it closes or the deadline comes.
    Refused(Vec<u8>),
}

const LISTENER: Token = Token(usize::MAX);

impl Front {
    fn run(mut self) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(256);
        let mut sweep = Instant::now();
        loop {
            // Wake for the deadlines (a quarter-second resolution is enough for them).
            let idle = self.pending.is_empty() && self.retry_accept.is_none();
            let timeout = (!idle).then_some(Duration::from_millis(250));
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                result => result?,
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    token => self.step(token, now),
                }
            }
            if self.retry_accept.is_some_and(|at| at <= now) {
                self.retry_accept = None;
                self.accept(now);
            }
            if sweep <= now {
                // Dropping a stream closes it, which also takes it out of the poll.
                self.pending.retain(|_, h| h.deadline > now);
                sweep = now + Duration::from_millis(250);
            }
        }
    }

    /// Takes every connection waiting in the listener's queue.
    fn accept(&mut self, now: Instant) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the queue is left as it is for a while.
                    eprintln!("pubsub: accept failed: {e}");
                    self.retry_accept = Some(now + Duration::from_millis(50));
                    return;
                }
            };
            if self.pending.len() >= MAX_HANDSHAKES {
                continue; // dropped: closes the socket
            }
            let token = Token(self.next_token);
            self.next_token = (self.next_token + 1) % LISTENER.0;
            let registry = self.poll.registry();
            if stream.set_nodelay(true).is_err()
                || registry
                    .register(&mut stream, token, Interest::READABLE)
                    .is_err()
            {
                continue;
            }
            let machine = Box::new(ServerHandshake::new(self.config.clone()));
            let handshake = Handshake {
                stream,
                peer,
                deadline: now + HANDSHAKE_TIMEOUT,
                stage: Stage::Request(machine),
            };
            self.pending.insert(token, handshake);
        }
    }

    /// Reads what arrived for one handshake and answers it when the request is whole.
    fn step(&mut self, token: Token, now: Instant) {
        let Some(mut h) = self.pending.remove(&token) else {
            return;
        };
        let registry = self.poll.registry();
        if let Stage::Request(machine) = &mut h.stage {
            let answer = match read_request(&mut h.stream, machine) {
                Ok(false) => {
                    self.pending.insert(token, h);
                    return;
                }
                Ok(true) => match upgrade(&self.relay, registry, h) {
                    Ok(()) => return,
                    Err((back, answer)) => {
                        h = back;
                        answer
                    }
                },
                Err(refusal) => {
                    if !refusal.response.is_empty() {
                        eprintln!("pubsub: {}: handshake failed: {}", h.peer, refusal.error);
                    }
                    refusal.response
                }
            };
            if answer.is_empty() {
                return; // the client left, or its socket failed: nothing to answer
            }
            h.stage = Stage::Refused(answer);
            h.deadline = h.deadline.min(now + LINGER);
            let both = Interest::READABLE | Interest::WRITABLE;
            if registry.reregister(&mut h.stream, token, both).is_err() {
                return;
            }
        }
        if linger(&mut h) {
            self.pending.insert(token, h);
        }
    }
}

/// Reads what has arrived of a request: `Ok(true)` once it is whole, `Ok(false)` when the
/// socket has nothing more for now, or the refusal to send (none when the client left).
fn read_request(
    stream: &mut mio::net::TcpStream,
    machine: &mut ServerHandshake,
) -> Result<bool, Refusal> {
    loop {
        let n = match stream.read(machine.read_buf()) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Refusal {
                    response: Vec::new(),
                    error: e.into(),
                })
            }
        };
        if machine.filled(n)?.is_some() {
            return Ok(true);
        }
    }
}

/// Writes what is left of a refusal, then reads and drops the client's input; `false` once
/// the client has closed (or the socket failed): the handshake is over.
fn linger(h: &mut Handshake) -> bool {
    let Stage::Refused(answer) = &mut h.stage else {
        return false;
    };
    while !answer.is_empty() {
        match h.stream.write(answer) {
            Ok(0) => return false,
            Ok(n) => drop(answer.drain(..n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let _ = h.stream.shutdown(Shutdown::Write);
    let mut scratch = [0u8; 512];
    loop {
        match h.stream.read(&mut scratch) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// The request is whole: accepts it (a seat free, the topic from its path) and starts the
/// subscriber, or returns the handshake with the refusal to send.
fn upgrade(
    relay: &Arc<Relay>,
    registry: &Registry,
    mut h: Handshake,
) -> Result<(), (Handshake, Vec<u8>)> {
    let Stage::Request(machine) = std::mem::replace(&mut h.stage, Stage::Refused(Vec::new()))
    else {
        unreachable!("upgrade follows a whole request");
    };
    let peer = h.peer;
    let mut topic = String::new();
    let mut seat = None;
    let mut full = false;
    let accepted = machine.accept_with(|request, response| {
        seat = Seat::take(relay);
        if seat.is_none() {
            full = true;
            return Err(Rejection::new(503, "Full, try again later.\n").header("Retry-After", "5"));
        }
        topic = request.path().to_owned();
        if let Some(link) = relay.link.get() {
            response.append_header("X-Pubsub-Instance", link.instance());
        }
        Ok(())
    });
    let (conn, seat) = match (accepted, seat) {
        (Ok(conn), Some(seat)) => (conn, seat),
        (Ok(_), None) => unreachable!("accepted with a seat"),
        (Err(refusal), _) => {
            if !full {
                eprintln!("pubsub: {peer}: handshake failed: {}", refusal.error);
            }
            return Err((h, refusal.response));
        }
    };
    // The 101 stays queued in `conn`: it goes out once the subscriber is on its topic (its
    // thread's first read writes it, or a broadcast's writer before that), so a client that
    // has its 101 gets everything published from then on.
    let _ = registry.deregister(&mut h.stream);
    let stream = TcpStream::from(h.stream);
    if let Err(e) = stream.set_nonblocking(false) {
        eprintln!("pubsub: {peer}: {e}");
        return Ok(());
    }
    start(relay, stream, conn, topic, peer, seat);
    Ok(())
}

/// A subscriber: its connection split, subscribed to its topic, read by a thread of its
/// own. Leaving the topic when dropped.
struct Subscriber {
    relay: Arc<Relay>,
    reader: ReadHalf,
    writer: WriteHalf,
    topic_name: String,
    topic: Topic,
    subscription: Option<Subscription>,
    peer: SocketAddr,
    _seat: Seat,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        drop(self.subscription.take());
        self.relay.leave(&self.topic_name);
    }
}

/// Joins the connection to its topic and starts its thread. The split and the join run
/// here, so the thread's stack only ever holds the read loop.
fn start(
    relay: &Arc<Relay>,
    stream: TcpStream,
    conn: Connection,
    topic_name: String,
    peer: SocketAddr,
    seat: Seat,
) {
    let mut ws = WebSocket::from_connection(stream, conn);
    // Keep-alive here rather than in the handshake's `Config`: this also has `read` wait for
    // its deadlines by itself, which a `Config` setting alone would not.
    ws.set_keepalive(Some(KeepAlive::new(
        Duration::from_secs(30),
        Duration::from_secs(10),
    )));
    let (reader, writer) = match ws.split() {
        Ok(halves) => halves,
        Err(e) => return eprintln!("pubsub: {peer}: {e}"),
    };
    let (topic, subscription) = match relay.join(&topic_name, writer.clone()) {
        Ok(joined) => joined,
        Err(e) => return eprintln!("pubsub: {peer}: {e}"),
    };
    let subscriber = Box::new(Subscriber {
        relay: Arc::clone(relay),
        reader,
        writer,
        topic_name,
        topic,
        subscription: Some(subscription),
        peer,
        _seat: seat,
    });
    let spawned = thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || serve(subscriber));
    if let Err(e) = spawned {
        eprintln!("pubsub: {peer}: cannot start a thread: {e}");
    }
}

/// A subscriber's thread: reads what its client publishes, for as long as it is connected.
/// Its stack pages stay resident once touched, so it keeps large values off the stack
/// (the subscriber arrives boxed) and stays within two pages in all.
fn serve(mut sub: Box<Subscriber>) {
    let mut bucket = Bucket::new(sub.relay.rate);
    let ended = loop {
        match sub.reader.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if !bucket.take() {
                    let _ = sub
                        .writer
                        .close(CloseCode::POLICY_VIOLATION, "rate limit exceeded");
                    continue; // read on until the client answers the close
                }
                if let Some(prepared) = PreparedMessage::from_message(&message) {
                    sub.relay.publish(&sub.topic_name, &sub.topic, &prepared);
                }
            }
            Ok(_) => {}
            // A read timeout set by the platform or a keep-alive wakeup: go on reading.
            Err(e) if e.is_would_block() => {}
            Err(e) => break e,
        }
    };
    let peer = sub.peer;
    if let Some(cut) = sub.subscription.as_ref().and_then(Subscription::cut) {
        eprintln!("pubsub: {peer}: dropped ({cut:?})");
    } else if !matches!(ended, Error::ConnectionClosed(_) | Error::AlreadyClosed) {
        eprintln!("pubsub: {peer}: {ended}");
    }
}

#[allow(dead_code)] // examples/cluster compiles this file as a module with a `main` of its own
fn main() -> ExitCode {
    run(None)
}

/// The relay: a single one, or in cluster mode (`--redis`) one instance of several, linked
/// by what `connect` makes.
pub fn run(connect: Option<Connect>) -> ExitCode {
    let mut args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("pubsub: {e}");
            }
            eprintln!(
                "usage: pubsub [ADDR] [--rate N] [--max-connections N] [--budget BYTES] \
                 [--redis URL [--instance NAME]]   \
                 (default 127.0.0.1:9002, 1000 msgs/s, 19000, 1 MiB, no cluster)"
            );
            return ExitCode::from(2);
        }
    };
    if args.redis.is_some() && connect.is_none() {
        eprintln!(
            "pubsub: this build has no Redis client; cluster mode is examples/cluster: \
             cargo run --release --manifest-path examples/cluster/Cargo.toml -- ADDR --redis URL"
        );
        return ExitCode::from(2);
    }
    if args.instance.is_some() && args.redis.is_none() {
        eprintln!("pubsub: --instance names an instance of a cluster: it needs --redis");
        return ExitCode::from(2);
    }
    if let Some(capacity) = thread_capacity() {
        if args.max_connections > capacity {
            eprintln!(
                "pubsub: vm.max_map_count leaves room for about {capacity} connection threads: \
                 --max-connections lowered from {} to {capacity} (raise it with \
                 sysctl vm.max_map_count=N, 4 mappings per connection)",
                args.max_connections
            );
            args.max_connections = capacity;
        }
    }
    let config = Config::default().max_message_size(Some(MAX_MESSAGE));
    let listener = match TcpListener::bind(&args.addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("pubsub: cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let fanout = match Fanout::new(FanoutConfig::default().budget(args.budget)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pubsub: {e}");
            return ExitCode::FAILURE;
        }
    };
    let relay = Arc::new(Relay {
        fanout,
        topics: Mutex::new(HashMap::new()),
        subscribers: AtomicUsize::new(0),
        max_connections: args.max_connections,
        rate: args.rate,
        link: OnceLock::new(),
    });
    if let (Some(url), Some(connect)) = (&args.redis, connect) {
        let relay_ref: Weak<Relay> = Arc::downgrade(&relay);
        let deliver: Deliver = Box::new(move |topic, message| {
            if let Some(relay) = relay_ref.upgrade() {
                relay.deliver(topic, message);
            }
        });
        match connect(url, args.instance.as_deref(), deliver) {
            Ok(link) => {
                eprintln!("pubsub: cluster instance {} over {url}", link.instance());
                let _ = relay.link.set(link);
            }
            Err(e) => {
                eprintln!("pubsub: --redis {url}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match listener.local_addr() {
        Ok(addr) => eprintln!("pubsub: listening on ws://{addr}/<topic>"),
        Err(e) => eprintln!("pubsub: {e}"),
    }
    let front = Poll::new().map(|poll| Front {
        relay,
        config,
        poll,
        listener: mio::net::TcpListener::from_std(listener),
        pending: HashMap::new(),
        next_token: 0,
        retry_accept: None,
    });
    match front.and_then(Front::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubsub: {e}");
            ExitCode::FAILURE
        }
    }
}
