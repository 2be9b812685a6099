//! Broadcast server: pushes a stream of updates (a made-up price ticker) to every connected
//! client at a fixed rate.
//!
//! ```text
//! cargo run --release --example broadcast_server [ADDR] [--hz N]   # default 127.0.0.1:8081, 10 Hz
//! cargo run --example client -- ws://127.0.0.1:8081/             # watch it
//! ```
//!
//! Every update is a JSON text message: `{"seq":42,"time_ms":1700000000000,"price":101.37}`.
//! Any path is accepted; what clients send is ignored.
//!
//! Threads: one ticker thread frames each update once ([`PreparedMessage`]) and hands it to
//! a [`Topic`], which queues it for every client and returns at once; a [`Fanout`]'s writer
//! threads (one per CPU) write it out. One reader thread per connection reads, which is what
//! answers pings, completes the closing handshake and runs keep-alive. A client that stops
//! reading never holds the ticker or the others up: once more than 64 KiB of updates wait
//! for it in the server (beyond what its socket buffers hold) it is cut (close 1008, socket
//! shut down), and the ticker logs it.
//!
//! Data is public, so any `Origin` may connect (compare with `examples/chat.rs`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stdws::{Config, Error, Fanout, FanoutConfig, KeepAlive, PreparedMessage, Topic};

/// Stack size of every thread. Nothing here recurses and every buffer is on the heap, so
/// the stack only holds the frames of a handshake, a read or a send (`examples/chat.rs`,
/// which does the same and more, runs with 16 KiB in a release build and 32 KiB in a debug
/// build); 64 KiB leaves a margin, and 1000 clients reserve 64 MiB, not 8 GiB.
const STACK_SIZE: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of updates that may wait for one client in the server before it is cut.
const BUDGET: usize = 64 * 1024;
/// Clients only receive; anything they send beyond a close is ignored, so keep it small.
const MAX_MESSAGE: usize = 1024;

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:8081".to_owned();
    let mut hz = 10.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--hz" => {
                match args.next().and_then(|v| v.parse().ok()) {
                    Some(v) if v > 0.0 && v <= 1000.0 => hz = v,
                    _ => return usage("--hz needs a rate between 0 and 1000"),
                };
            }
            flag if flag.starts_with('-') => return usage(&format!("unknown option {flag}")),
            a => addr = a.to_owned(),
        }
    }
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("broadcast_server: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().map_or(addr, |a| a.to_string());
    eprintln!("broadcast_server: streaming at {hz} Hz on ws://{local}/");

    let fanout: Fanout = match Fanout::new(FanoutConfig::default().budget(BUDGET)) {
        Ok(fanout) => fanout,
        Err(e) => {
            eprintln!("broadcast_server: cannot start the writer threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let subscribers = fanout.topic();
    let ticker = {
        let subscribers = subscribers.clone();
        thread::Builder::new()
            .name("ticker".to_owned())
            .stack_size(STACK_SIZE)
            .spawn(move || tick(&subscribers, Duration::from_secs_f64(1.0 / hz)))
    };
    if let Err(e) = ticker {
        eprintln!("broadcast_server: cannot start the ticker: {e}");
        return ExitCode::FAILURE;
    }

    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("broadcast_server: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let subscribers = subscribers.clone();
        let spawned = thread::Builder::new()
            .name("reader".to_owned())
            .stack_size(STACK_SIZE)
            .spawn(move || serve(stream, &subscribers));
        if let Err(e) = spawned {
            eprintln!("broadcast_server: cannot start a thread: {e}");
        }
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("broadcast_server: {problem}");
    eprintln!("usage: broadcast_server [ADDR] [--hz N]   (default 127.0.0.1:8081, 10 Hz)");
    ExitCode::from(2)
}

/// The ticker: one update per period, queued for every client.
fn tick(subscribers: &Topic, period: Duration) {
    let mut rng = Rng::new();
    let mut price_cents: i64 = 10_000; // 100.00
    let mut next = Instant::now();
    for seq in 0_u64.. {
        // A random walk of up to +-25 cents, kept above 1.00.
        price_cents = (price_cents + (rng.next() % 51) as i64 - 25).max(100);
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let update = format!(
            r#"{{"seq":{seq},"time_ms":{time_ms},"price":{}.{:02}}}"#,
            price_cents / 100,
            price_cents % 100
        );
        let delivery = subscribers.broadcast(&PreparedMessage::text(&update));
        if !delivery.dropped.is_empty() {
            eprintln!(
                "broadcast_server: {} client(s) too slow, dropped",
                delivery.dropped.len()
            );
        }
        next += period;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            None => next = Instant::now(), // fell behind: do not try to catch up in a burst
        }
    }
}

/// A connection's reader thread: handshake, subscribe, then read until the connection ends.
fn serve(stream: TcpStream, subscribers: &Topic) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let options = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)));
    if let Err(e) = options {
        eprintln!("broadcast_server: {peer}: cannot set socket options: {e}");
        return;
    }
    let config = Config::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = match stdws::accept_with(stream, config, |_, _| Ok(())) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("broadcast_server: {peer}: handshake failed: {e}");
            return;
        }
    };
    // The generic `accept` cannot set the socket's read timeout, so keep-alive is turned
    // on here, where the stream is known to be a `TcpStream`.
    ws.set_keepalive(Some(KeepAlive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)));
    let (mut reader, writer) = match ws.split() {
        Ok(halves) => halves,
        Err(e) => {
            eprintln!("broadcast_server: {peer}: cannot split: {e}");
            return;
        }
    };
    // The handshake's read timeout is lifted: `read` waits for the keep-alive deadlines
    // by itself.
    if let Err(e) = reader.get_ref().set_read_timeout(None) {
        eprintln!("broadcast_server: {peer}: cannot clear the read timeout: {e}");
        return;
    }
    // The subscription sets the socket's write timeout for the writer threads.
    let subscription = match subscribers.subscribe(writer.clone()) {
        Ok(subscription) => subscription,
        Err(e) => {
            eprintln!("broadcast_server: {peer}: cannot subscribe: {e}");
            return;
        }
    };
    eprintln!("broadcast_server: {peer}: connected");
    let ended = loop {
        match reader.read() {
            Ok(_) => {} // pings and closes are answered by `read`; data is ignored
            Err(Error::ConnectionClosed(Some(frame))) => break format!("closed ({frame})"),
            Err(Error::ConnectionClosed(None)) => break "closed".to_owned(),
            Err(e) => break format!("error: {e}"),
        }
    };
    match subscription.cut() {
        Some(why) => eprintln!("broadcast_server: {peer}: dropped as too slow ({why:?})"),
        None => eprintln!("broadcast_server: {peer}: disconnected: {ended}"),
    }
    drop(subscription);
    // Close TCP (the server's job after the closing handshake).
    let _ = writer.shutdown();
}

/// xorshift64*: plenty for a made-up price. Seeded from `RandomState`, which `std` keys from
/// the OS's entropy.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(RandomState::new().build_hasher().finish() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
