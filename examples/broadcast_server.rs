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
//! Threads: one ticker thread holds the [`WriteHalf`] of every client and writes each update
//! to each in turn; one reader thread per connection reads, which is what answers pings,
//! completes the closing handshake and runs keep-alive. A client is dropped when a send to
//! it fails, or when it is too slow: the socket has a short write timeout, and a write that
//! times out means the kernel's send buffer (at 10 Hz, a minute of updates or more) is
//! full because the client stopped reading. The ticker then shuts that connection down and
//! goes on with the others: a client that stops reading holds the ticker up once, for a
//! few write timeouts (under a second).
//!
//! Data is public, so any `Origin` may connect (compare with `examples/chat.rs`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stdws::{Config, Error, KeepAlive, WriteHalf};

/// Stack size of every thread. Nothing here recurses and every buffer is on the heap, so
/// the stack only holds the frames of a handshake, a read or a send (`examples/chat.rs`,
/// which does the same and more, runs with 16 KiB in a release build and 32 KiB in a debug
/// build); 64 KiB leaves a margin, and 1000 clients reserve 64 MiB, not 8 GiB.
const STACK_SIZE: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The reader wakes up this often to run the keep-alive timers.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may wait for room in a client's socket buffer. The ticker writes to
/// the clients one after another, so a client that stops reading delays the others by a
/// few times this (a partial write, then a write that fails), once: it is dropped then. A
/// healthy client never makes a write wait at all.
const WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// Clients only receive; anything they send beyond a close is ignored, so keep it small.
const MAX_MESSAGE: usize = 1024;

/// A connected client, as the ticker sees it.
struct Subscriber {
    peer: String,
    writer: WriteHalf,
}

type Subscribers = Arc<Mutex<Vec<Subscriber>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

    let subscribers: Subscribers = Arc::default();
    let ticker = {
        let subscribers = Arc::clone(&subscribers);
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
        let subscribers = Arc::clone(&subscribers);
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

/// The ticker: one update per period, written to every client in turn.
fn tick(subscribers: &Mutex<Vec<Subscriber>>, period: Duration) {
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
        lock(subscribers).retain(|sub| match sub.writer.send_text(&update) {
            Ok(()) => true,
            // The write timed out: the client stopped reading. A close frame would queue
            // behind the stuck bytes, so just cut the connection; its reader wakes up.
            Err(e) if e.is_would_block() => {
                eprintln!("broadcast_server: {}: too slow, dropping it", sub.peer);
                let _ = sub.writer.shutdown();
                false
            }
            // The connection ended (its reader logged how) or is closing.
            Err(Error::AlreadyClosed) => false,
            Err(e) => {
                eprintln!("broadcast_server: {}: send failed: {e}", sub.peer);
                let _ = sub.writer.shutdown();
                false
            }
        });
        next += period;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            None => next = Instant::now(), // fell behind: do not try to catch up in a burst
        }
    }
}

/// A connection's reader thread: handshake, subscribe, then read until the connection ends.
fn serve(stream: TcpStream, subscribers: &Mutex<Vec<Subscriber>>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let options = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = options {
        eprintln!("broadcast_server: {peer}: cannot set socket options: {e}");
        return;
    }
    let config = Config::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .keepalive(Some(KeepAlive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)));
    let ws = match stdws::accept_with(stream, config, |_, _| Ok(())) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("broadcast_server: {peer}: handshake failed: {e}");
            return;
        }
    };
    let (mut reader, writer) = match ws.split() {
        Ok(halves) => halves,
        Err(e) => {
            eprintln!("broadcast_server: {peer}: cannot split: {e}");
            return;
        }
    };
    // The read timeout is now the keep-alive tick.
    if let Err(e) = reader.get_ref().set_read_timeout(Some(READ_TIMEOUT)) {
        eprintln!("broadcast_server: {peer}: cannot set the read timeout: {e}");
        return;
    }
    lock(subscribers).push(Subscriber {
        peer: peer.clone(),
        writer: writer.clone(),
    });
    eprintln!("broadcast_server: {peer}: connected");
    let ended = loop {
        match reader.read() {
            Ok(_) => {} // pings and closes are answered by `read`; data is ignored
            Err(e) if e.is_would_block() => {} // keep-alive tick
            Err(Error::ConnectionClosed(Some(frame))) => break format!("closed ({frame})"),
            Err(Error::ConnectionClosed(None)) => break "closed".to_owned(),
            Err(e) => break format!("error: {e}"),
        }
    };
    eprintln!("broadcast_server: {peer}: disconnected: {ended}");
    // Close TCP (the server's job after the closing handshake); the ticker's next send to
    // this client fails and drops it from the list.
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
