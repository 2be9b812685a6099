//! Loopback load and memory benchmark: echo servers in a child process over 127.0.0.1.
//!
//! ```text
//! cargo bench --bench loopback                   # every scenario, one table each
//! cargo bench --bench loopback -- FILTER         # scenarios whose name contains FILTER:
//!                                                # small, large, memory, idle, peak, 16B...
//! target/release/deps/loopback-* server KIND ADDR  # just a server: stdws, tungstenite,
//!                                                # tungstenite-batched or tcp
//! ```
//!
//! Servers are thread-per-connection with the default thread stack; `stdws` is the loop of
//! `examples/echo_server.rs` (`read`, then `write`: the echo is corked and `read` flushes it
//! before it waits), `tungstenite` the usual tungstenite echo loop (`read`, then `send`: one
//! write system call per message), `tungstenite-batched` tungstenite's best case for a
//! blocking socket (`write`; `flush` only when a non-blocking `read` finds nothing more), and
//! `tcp` a plain TCP echo (a 64 KiB `Vec` read buffer, `write_all` of what was read).
//!
//! The benchmark runs each server as a child process (this binary in `server` mode, on an
//! ephemeral port) and loads it from this process with raw TCP and pre-built masked client
//! frames, the same bytes for every server, so the client's cost does not depend on the
//! library under test. The TCP echo server sends the client frames back verbatim. The
//! server's CPU time comes from `/proc/PID/task/*/schedstat` (nanoseconds, taken while the
//! scenario's connections are open), or `/proc/PID/stat` utime+stime (10 ms ticks) if that is
//! missing; its memory from `VmRSS`/`VmHWM` in `/proc/PID/status`. Linux only.
//!
//! Scenarios:
//! - `small 16B`, `small 1KiB`: 4 connections, one client thread each, writing 64 binary
//!   messages in one `write` and reading the 64 echoes, over and over. Latency is from the
//!   batch's write to the last byte of each echo.
//! - `large 64KiB`, `large 1MiB`: 1 connection, one message in flight (a second client thread
//!   writes, so the TCP echo, which answers while the message is still arriving, cannot
//!   deadlock the client).
//!
//!   Load scenarios run in rounds (5 x 0.6 s by default; `LOOPBACK_ROUNDS`,
//!   `LOOPBACK_ROUND_SECS`), servers interleaved; msgs/s and CPU/message are medians of
//!   rounds, the CPU ratio the median of per-round ratios (a round against the baseline
//!   server's round right before or after it), latency percentiles over all rounds.
//!   `LOOPBACK_VERBOSE=1` prints every round's CPU/message and the user-time share.
//! - `memory idle`: a fresh server, 1,000 connections after the handshake (the TCP echo
//!   echoes one byte, so its thread exists), RSS growth per connection after 1 s; then again
//!   after every connection has echoed one 16 B message.
//! - `memory peak`: a fresh server echoes one 16 MiB binary message (one frame); `VmHWM`.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The handshake key of RFC 6455 §1.3 and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Messages per batch in the pipelined scenarios, and connections.
const BATCH: usize = 64;
const SMALL_CONNS: usize = 4;
/// Idle connections for the memory scenario.
const IDLE_CONNS: usize = 1000;
/// Size of the message of the peak-memory scenario.
const PEAK_SIZE: usize = 16 << 20;
/// Every client read and write gives up after this long: nothing can hang the run.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Rounds per server and load scenario, and their length (`LOOPBACK_ROUNDS`,
/// `LOOPBACK_ROUND_SECS`).
const ROUNDS: usize = 5;
const ROUND_SECS: f64 = 0.6;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Stdws,
    Tungstenite,
    TungsteniteBatched,
    Tcp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Stdws => "stdws",
            Kind::Tungstenite => "tungstenite",
            Kind::TungsteniteBatched => "tungstenite-batched",
            Kind::Tcp => "tcp",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Stdws,
            Kind::Tungstenite,
            Kind::TungsteniteBatched,
            Kind::Tcp,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }

    fn is_websocket(self) -> bool {
        self != Kind::Tcp
    }
}

// ---------------------------------------------------------------------------------------
// Server mode
// ---------------------------------------------------------------------------------------

fn server_main(kind: Kind, addr: &str) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loopback server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("local_addr");
    println!("listening on {local}");
    io::stdout().flush().expect("stdout");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                // Default stack size; a failed spawn drops the connection.
                let _ = thread::Builder::new().spawn(move || match kind {
                    Kind::Stdws => serve_stdws(stream),
                    Kind::Tungstenite => serve_tungstenite(stream),
                    Kind::TungsteniteBatched => serve_tungstenite_batched(stream),
                    Kind::Tcp => serve_tcp(stream),
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// `examples/echo_server.rs` without the logging.
fn serve_stdws(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .is_err()
    {
        return;
    }
    let Ok(mut ws) = stdws::accept(stream) else {
        return;
    };
    if ws.get_ref().set_read_timeout(None).is_err() {
        return;
    }
    loop {
        // `write` queues the echo; `read` sends queued echoes before it waits for input.
        let result = match ws.read() {
            Ok(msg @ (stdws::Message::Text(_) | stdws::Message::Binary(_))) => ws.write(msg),
            Ok(stdws::Message::Close(_)) => return,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if result.is_err() {
            return;
        }
    }
}

/// Limits raised so that the 16 MiB message (a 16 MiB frame) passes.
fn tungstenite_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// The usual tungstenite echo loop: tungstenite's `read` does not flush what `write`
/// queued, so a blocking server sends every echo with `send` (write + flush).
fn serve_tungstenite(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept_with_config(stream, Some(tungstenite_config())) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(msg @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_))) => {
                if ws.send(msg).is_err() {
                    return;
                }
            }
            // A close is answered by the next `read`, which then fails.
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Tungstenite's best case on a blocking socket: echoes are queued with `write`, and
/// flushed when a non-blocking `read` finds no more input (two `ioctl(FIONBIO)` and one
/// `EAGAIN` read per batch on top of stdws's system calls).
fn serve_tungstenite_batched(stream: TcpStream) {
    use tungstenite::{Error, Message};
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept_with_config(stream, Some(tungstenite_config())) else {
        return;
    };
    let mut corked = false;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                match ws.write(msg) {
                    Ok(()) => {}
                    Err(Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {} // still queued
                    Err(_) => return,
                }
                if !corked {
                    if ws.get_ref().set_nonblocking(true).is_err() {
                        return;
                    }
                    corked = true;
                }
            }
            Ok(_) => {}
            Err(Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                if ws.get_ref().set_nonblocking(false).is_err() || ws.flush().is_err() {
                    return;
                }
                corked = false;
            }
            Err(_) => return,
        }
    }
}

/// Plain TCP echo: a 64 KiB heap buffer (`Vec`), `write_all` of each read.
fn serve_tcp(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server process and /proc
// ---------------------------------------------------------------------------------------

/// A server child process; killed and reaped on drop (also when the benchmark panics).
struct Server {
    kind: Kind,
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: Kind) -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(["server", kind.name(), "127.0.0.1:0"])
            .env_remove("RUST_MIN_STACK") // the default thread stack
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            kind,
            child,
            pid,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        server.addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{} server did not start: {line:?}", kind.name()));
        server
    }

    fn status_kib(&self, field: &str) -> u64 {
        status_field(self.pid, field)
    }

    fn threads(&self) -> u64 {
        status_field(self.pid, "Threads")
    }

    /// Waits (at most 10 s) until the server has `n` threads: connection threads of an
    /// earlier round have exited, or this round's have all started.
    fn wait_threads(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.threads() != n {
            assert!(
                Instant::now() < deadline,
                "{} server: {} threads, expected {n}",
                self.kind.name(),
                self.threads()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn cpu(&self) -> CpuSample {
        CpuSample::take(self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A numeric field of /proc/PID/status (kB for the Vm* fields).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The server's CPU time: the sum of its live threads' run time (schedstat, ns) and, as a
/// fallback, utime+stime of /proc/PID/stat (clock ticks of 10 ms, exited threads included).
struct CpuSample {
    sched_ns: Option<u64>,
    tick_ns: u64,
    /// utime and stime in ticks, for the user/system split.
    user_ticks: u64,
    sys_ticks: u64,
    threads: usize,
}

impl CpuSample {
    fn take(pid: u32) -> CpuSample {
        let mut sched_ns = Some(0u64);
        let mut threads = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
            let path = task.expect("task").path().join("schedstat");
            match std::fs::read_to_string(&path) {
                Ok(s) => {
                    threads += 1;
                    let ns: Option<u64> = s.split_whitespace().next().and_then(|v| v.parse().ok());
                    sched_ns = sched_ns.zip(ns).map(|(a, b)| a + b);
                }
                Err(e) if e.kind() == ErrorKind::NotFound && path.parent().unwrap().exists() => {
                    sched_ns = None; // no schedstat in this kernel
                }
                Err(_) => {} // the thread exited meanwhile
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        let user_ticks: u64 = fields[11].parse().unwrap();
        let sys_ticks: u64 = fields[12].parse().unwrap();
        CpuSample {
            sched_ns,
            tick_ns: (user_ticks + sys_ticks) * 10_000_000, // USER_HZ is 100 on Linux
            user_ticks,
            sys_ticks,
            threads,
        }
    }

    /// CPU ns between two samples, and whether it is the ns-resolution figure.
    fn since(&self, before: &CpuSample) -> (u64, bool) {
        match (self.sched_ns, before.sched_ns) {
            (Some(a), Some(b)) if self.threads == before.threads && a >= b => (a - b, true),
            _ => (self.tick_ns.saturating_sub(before.tick_ns), false),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------------------

/// Deterministic pseudo-random payload bytes.
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A final binary frame header: 2 bytes below 126, 4 below 65536, else 10 (plus the key).
fn frame_header(out: &mut Vec<u8>, len: usize, mask: bool) {
    let m = if mask { 0x80 } else { 0 };
    out.push(0x82);
    if len < 126 {
        out.push(m | len as u8);
    } else if len < 65536 {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// `count` messages of `size` bytes: the masked client frames (one write), the echo a
/// WebSocket server sends, and where each echo ends (for both kinds of server).
struct Workload {
    size: usize,
    batch: Vec<u8>,
    ws_echo: Vec<u8>,
    ws_ends: Vec<usize>,
    tcp_ends: Vec<usize>,
}

impl Workload {
    fn new(size: usize, count: usize) -> Workload {
        let mut w = Workload {
            size,
            batch: Vec::with_capacity(count * (size + 14)),
            ws_echo: Vec::with_capacity(count * (size + 10)),
            ws_ends: Vec::new(),
            tcp_ends: Vec::new(),
        };
        for i in 0..count {
            let data = payload(size, i as u64 + 1);
            let key = (i as u32 + 1).wrapping_mul(2_654_435_761).to_be_bytes();
            frame_header(&mut w.batch, size, true);
            w.batch.extend_from_slice(&key);
            w.batch
                .extend(data.iter().enumerate().map(|(j, b)| b ^ key[j & 3]));
            frame_header(&mut w.ws_echo, size, false);
            w.ws_echo.extend_from_slice(&data);
            w.tcp_ends.push(w.batch.len());
            w.ws_ends.push(w.ws_echo.len());
        }
        w
    }

    /// The bytes `kind` answers the batch with, and where each message's echo ends.
    fn expected(&self, kind: Kind) -> (&[u8], &[usize]) {
        if kind.is_websocket() {
            (&self.ws_echo, &self.ws_ends)
        } else {
            (&self.batch, &self.tcp_ends)
        }
    }
}

/// Connects; for a WebSocket server does the handshake with the fixed key and checks the
/// 101 and its accept value.
fn connect(addr: SocketAddr, kind: Kind) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    if kind.is_websocket() {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(request.as_bytes()).expect("handshake write");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).expect("handshake read");
            assert!(n > 0, "{}: EOF during the handshake", kind.name());
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 101 ")
                && head.contains(&format!("sec-websocket-accept: {}", ACCEPT.to_lowercase())),
            "{}: bad handshake response: {head}",
            kind.name()
        );
    }
    s
}

/// How the client writes a batch: from the reading thread, or by a writer thread (needed
/// when the echo may come back before the client has written everything).
enum Out {
    Direct,
    Thread(mpsc::SyncSender<()>),
}

fn with_out<R>(stream: &TcpStream, batch: &[u8], concurrent: bool, f: impl FnOnce(&Out) -> R) -> R {
    if !concurrent {
        return f(&Out::Direct);
    }
    let mut writer = stream.try_clone().expect("clone");
    thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        s.spawn(move || {
            while rx.recv().is_ok() {
                writer.write_all(batch).expect("client write");
            }
        });
        let out = Out::Thread(tx);
        let result = f(&out);
        drop(out);
        result
    })
}

/// Writes the batch and reads until every echo has arrived; pushes each message's latency
/// (ns from the write to the last byte of its echo). With `verify`, checks the echoed bytes.
#[allow(clippy::too_many_arguments)]
fn round_trip(
    stream: &mut TcpStream,
    out: &Out,
    batch: &[u8],
    expected: &[u8],
    ends: &[usize],
    verify: bool,
    buf: &mut [u8],
    latencies: &mut Vec<u32>,
) {
    let start = Instant::now();
    match out {
        Out::Direct => stream.write_all(batch).expect("client write"),
        Out::Thread(tx) => tx.send(()).expect("writer thread"),
    }
    let total = expected.len();
    let (mut got, mut next) = (0, 0);
    while got < total {
        let want = (total - got).min(buf.len());
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => panic!("server closed the connection"),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("client read: {e}"),
        };
        if verify {
            assert!(buf[..n] == expected[got..got + n], "wrong echo at {got}");
        }
        got += n;
        let now = Instant::now();
        while next < ends.len() && ends[next] <= got {
            latencies.push((now - start).as_nanos().min(u32::MAX as u128) as u32);
            next += 1;
        }
    }
}

/// A barrier that panics after 60 s instead of waiting forever when a party failed: a
/// client thread that panics cannot hang the run (the panic propagates, and the servers'
/// `Drop` kills them).
struct Barrier {
    n: usize,
    state: Mutex<(usize, u64)>, // (arrived, generation)
    cv: Condvar,
}

impl Barrier {
    fn new(n: usize) -> Barrier {
        Barrier {
            n,
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    fn wait(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = state.1;
        state.0 += 1;
        if state.0 == self.n {
            *state = (0, generation + 1);
            self.cv.notify_all();
            return;
        }
        let (_state, result) = self
            .cv
            .wait_timeout_while(state, Duration::from_secs(60), |s| s.1 == generation)
            .unwrap_or_else(PoisonError::into_inner);
        assert!(!result.timed_out(), "another benchmark thread failed");
    }
}

struct Round {
    msgs: u64,
    secs: f64,
    cpu_ns: u64,
    exact_cpu: bool,
    /// User and system CPU ticks (10 ms) in the round.
    user_ticks: u64,
    sys_ticks: u64,
    latencies: Vec<u32>,
}

/// One timed round against `server`: `conns` connections (a client thread each), each
/// verifying one batch, then repeating batches for `secs`; the server's CPU time is read
/// while every connection is open.
fn load_round(server: &Server, w: &Workload, conns: usize, secs: f64, concurrent: bool) -> Round {
    server.wait_threads(1);
    let (expected, ends) = w.expected(server.kind);
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| connect(server.addr, server.kind))
        .collect();
    let barrier = Barrier::new(conns + 1);
    thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut buf = vec![0u8; 256 << 10];
                    let mut latencies = Vec::new();
                    let mut msgs = 0u64;
                    with_out(&stream.try_clone().unwrap(), &w.batch, concurrent, |out| {
                        let mut trip = |verify: bool, lat: &mut Vec<u32>| {
                            round_trip(
                                &mut stream,
                                out,
                                &w.batch,
                                expected,
                                ends,
                                verify,
                                &mut buf,
                                lat,
                            )
                        };
                        trip(true, &mut Vec::new()); // check the echo; warm up
                        barrier.wait(); // all verified: the server samples CPU
                        barrier.wait(); // start
                        let deadline = Instant::now() + Duration::from_secs_f64(secs);
                        while Instant::now() < deadline {
                            trip(false, &mut latencies);
                            msgs += ends.len() as u64;
                        }
                        barrier.wait(); // done: the server samples CPU again...
                        barrier.wait(); // ...before the connections close
                    });
                    (msgs, latencies)
                })
            })
            .collect();
        barrier.wait();
        server.wait_threads(conns as u64 + 1);
        let cpu0 = server.cpu();
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        let elapsed = start.elapsed().as_secs_f64();
        let cpu1 = server.cpu();
        barrier.wait();
        let (cpu_ns, exact_cpu) = cpu1.since(&cpu0);
        let mut round = Round {
            msgs: 0,
            secs: elapsed,
            cpu_ns,
            exact_cpu,
            user_ticks: cpu1.user_ticks - cpu0.user_ticks,
            sys_ticks: cpu1.sys_ticks - cpu0.sys_ticks,
            latencies: Vec::new(),
        };
        for h in handles {
            let (msgs, lat) = h.join().expect("client thread");
            round.msgs += msgs;
            round.latencies.extend(lat);
        }
        round
    })
}

// ---------------------------------------------------------------------------------------
// Scenarios and reports
// ---------------------------------------------------------------------------------------

fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile_us(sorted: &[u32], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)] as f64 / 1000.0
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct LoadRow {
    kind: Kind,
    msgs_per_s: f64,
    cpu_us: f64,
    /// Median over rounds of this server's CPU per message divided by the baseline's in the
    /// same round (the rounds run back to back, so a slow phase of the machine cancels).
    ratio: f64,
    exact_cpu: bool,
    p50: f64,
    p99: f64,
}

fn cpu_us_per_msg(r: &Round) -> f64 {
    r.cpu_ns as f64 / 1000.0 / r.msgs as f64
}

/// Runs a load scenario on every server, rounds interleaved; prints its table and returns
/// the rows.
fn load_scenario(
    title: &str,
    servers: &[&Server],
    w: &Workload,
    conns: usize,
    concurrent: bool,
    baseline: Kind,
) -> Vec<LoadRow> {
    let rounds: usize = env_or("LOOPBACK_ROUNDS", ROUNDS).max(1);
    let secs: f64 = env_or("LOOPBACK_ROUND_SECS", ROUND_SECS);
    let mut results: Vec<Vec<Round>> = servers.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (server, out) in servers.iter().zip(&mut results) {
            out.push(load_round(server, w, conns, secs, concurrent));
        }
    }
    if std::env::var_os("LOOPBACK_VERBOSE").is_some() {
        for (server, rounds) in servers.iter().zip(&results) {
            let per: Vec<String> = rounds
                .iter()
                .map(|r| format!("{:.3}", cpu_us_per_msg(r)))
                .collect();
            let user: u64 = rounds.iter().map(|r| r.user_ticks).sum();
            let sys: u64 = rounds.iter().map(|r| r.sys_ticks).sum();
            eprintln!(
                "  {:<20} CPU us/msg per round: {}; user {:.0}% (ticks)",
                server.kind.name(),
                per.join(" "),
                100.0 * user as f64 / (user + sys).max(1) as f64
            );
        }
    }
    let base = servers
        .iter()
        .position(|s| s.kind == baseline)
        .expect("baseline server");
    let rows: Vec<LoadRow> = servers
        .iter()
        .zip(&results)
        .map(|(server, rounds)| {
            let mut lat: Vec<u32> = rounds.iter().flat_map(|r| r.latencies.clone()).collect();
            lat.sort_unstable();
            LoadRow {
                kind: server.kind,
                msgs_per_s: median(rounds.iter().map(|r| r.msgs as f64 / r.secs).collect()),
                cpu_us: median(rounds.iter().map(cpu_us_per_msg).collect()),
                ratio: median(
                    rounds
                        .iter()
                        .zip(&results[base])
                        .map(|(r, b)| cpu_us_per_msg(r) / cpu_us_per_msg(b))
                        .collect(),
                ),
                exact_cpu: rounds.iter().all(|r| r.exact_cpu),
                p50: percentile_us(&lat, 50),
                p99: percentile_us(&lat, 99),
            }
        })
        .collect();
    println!();
    println!("{title}");
    println!(
        "{:<20} {:>10} {:>11} {:>9} {:>10} {:>10}",
        "server",
        "msgs/s",
        "CPU us/msg",
        format!("vs {}", if baseline == Kind::Tcp { "tcp" } else { "tung" }),
        "p50 us",
        "p99 us"
    );
    for r in &rows {
        println!(
            "{:<20} {:>10.0} {:>10.3}{} {:>9.2} {:>10.1} {:>10.1}",
            r.kind.name(),
            r.msgs_per_s,
            r.cpu_us,
            if r.exact_cpu { " " } else { "*" },
            r.ratio,
            r.p50,
            r.p99
        );
    }
    rows
}

/// The soft limit on open files (the client holds one descriptor per connection, the
/// server another, in separate processes).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct IdleRow {
    kind: Kind,
    conns: usize,
    before_kib: u64,
    idle_kib: f64,
    used_kib: f64,
}

/// A fresh server; `n` connections opened (handshake done) and left idle for 1 s; RSS growth
/// per connection. Then each connection echoes one 16 B message and idles 1 s again.
fn memory_idle(kind: Kind, n: usize) -> IdleRow {
    let server = Server::start(kind);
    thread::sleep(Duration::from_millis(200));
    let before = server.status_kib("VmRSS");
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = connect(server.addr, kind);
            if kind == Kind::Tcp {
                // No handshake: one echoed byte proves the connection's thread runs.
                s.write_all(b"x").expect("write");
                s.read_exact(&mut [0u8; 1]).expect("read");
            }
            s
        })
        .collect();
    server.wait_threads(n as u64 + 1);
    thread::sleep(Duration::from_secs(1));
    let idle = server.status_kib("VmRSS");
    let w = Workload::new(16, 1);
    let (expected, ends) = w.expected(kind);
    let mut buf = vec![0u8; 4096];
    for s in &mut conns {
        round_trip(
            s,
            &Out::Direct,
            &w.batch,
            expected,
            ends,
            true,
            &mut buf,
            &mut Vec::new(),
        );
    }
    thread::sleep(Duration::from_secs(1));
    let used = server.status_kib("VmRSS");
    drop(conns);
    IdleRow {
        kind,
        conns: n,
        before_kib: before,
        idle_kib: (idle as f64 - before as f64) / n as f64,
        used_kib: (used as f64 - before as f64) / n as f64,
    }
}

struct PeakRow {
    kind: Kind,
    before_kib: u64,
    hwm_kib: u64,
    after_kib: u64,
    ms: f64,
}

/// A fresh server echoes one 16 MiB message on one connection; VmHWM afterwards.
fn memory_peak(kind: Kind, w: &Workload) -> PeakRow {
    let server = Server::start(kind);
    let mut stream = connect(server.addr, kind);
    thread::sleep(Duration::from_millis(200));
    let before = server.status_kib("VmRSS");
    let (expected, ends) = w.expected(kind);
    let mut buf = vec![0u8; 256 << 10];
    let start = Instant::now();
    with_out(&stream.try_clone().unwrap(), &w.batch, true, |out| {
        round_trip(
            &mut stream,
            out,
            &w.batch,
            expected,
            ends,
            true,
            &mut buf,
            &mut Vec::new(),
        )
    });
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    // The server may still be freeing; VmHWM is the peak whatever happens after.
    thread::sleep(Duration::from_millis(100));
    PeakRow {
        kind,
        before_kib: before,
        hwm_kib: server.status_kib("VmHWM"),
        after_kib: server.status_kib("VmRSS"),
        ms,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if args.first().map(String::as_str) == Some("server") {
        let usage = "usage: loopback server stdws|tungstenite|tungstenite-batched|tcp ADDR";
        let kind = args.get(1).and_then(|k| Kind::parse(k)).expect(usage);
        server_main(kind, args.get(2).expect(usage));
        return;
    }
    let filter = args;
    let selected =
        |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let mut summary = String::new();

    let small: Vec<usize> = [16, 1024]
        .into_iter()
        .filter(|&s| selected(&format!("small {}", size_name(s))))
        .collect();
    let large: Vec<usize> = [64 << 10, 1 << 20]
        .into_iter()
        .filter(|&s| selected(&format!("large {}", size_name(s))))
        .collect();
    let secs: f64 = env_or("LOOPBACK_ROUND_SECS", ROUND_SECS);
    let rounds: usize = env_or("LOOPBACK_ROUNDS", ROUNDS);
    println!(
        "Loopback echo benchmark: servers are child processes on 127.0.0.1, {} CPUs. \
         Load: {rounds} rounds of {secs} s per server, interleaved; msgs/s and CPU are medians \
         of rounds, ratios medians of per-round ratios.",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "CPU = the server process's CPU time per echoed message (schedstat, ns; * = \
         /proc/PID/stat ticks, 10 ms). Latency: write of the batch to the echo's last byte."
    );

    if !small.is_empty() || !large.is_empty() {
        let kinds = [
            Kind::Stdws,
            Kind::Tungstenite,
            Kind::TungsteniteBatched,
            Kind::Tcp,
        ];
        let servers: Vec<Server> = kinds.into_iter().map(Server::start).collect();
        for size in small {
            let w = Workload::new(size, BATCH);
            let all: Vec<&Server> = servers.iter().collect();
            let rows = load_scenario(
                &format!(
                    "small {}: {SMALL_CONNS} connections x {BATCH} binary messages of {} \
                     per write (pipelined); ratio vs tungstenite",
                    size_name(size),
                    size_name(w.size)
                ),
                &all,
                &w,
                SMALL_CONNS,
                false,
                Kind::Tungstenite,
            );
            let row = |k| rows.iter().find(|r: &&LoadRow| r.kind == k).unwrap();
            let ratio = row(Kind::Stdws).ratio;
            let _ = writeln!(
                summary,
                "small {:<6} stdws CPU/msg vs tungstenite {ratio:.3} (target <= 0.50: {}); \
                 vs tungstenite-batched {:.2}",
                size_name(size),
                verdict(ratio <= 0.5),
                row(Kind::Stdws).cpu_us / row(Kind::TungsteniteBatched).cpu_us
            );
        }
        for size in large {
            let w = Workload::new(size, 1);
            let some: Vec<&Server> = servers
                .iter()
                .filter(|s| s.kind != Kind::TungsteniteBatched)
                .collect();
            let rows = load_scenario(
                &format!(
                    "large {}: 1 connection, one binary message in flight; ratio vs tcp",
                    size_name(size)
                ),
                &some,
                &w,
                1,
                true,
                Kind::Tcp,
            );
            let row = |k| rows.iter().find(|r: &&LoadRow| r.kind == k).unwrap();
            let ratio = row(Kind::Stdws).ratio;
            let _ = writeln!(
                summary,
                "large {:<6} stdws CPU/msg vs tcp {ratio:.3} (target <= 1.15: {}); \
                 tungstenite vs tcp {:.2}",
                size_name(size),
                verdict(ratio <= 1.15),
                row(Kind::Tungstenite).ratio
            );
        }
    }

    let kinds = [Kind::Stdws, Kind::Tungstenite, Kind::Tcp];
    if selected("memory idle") {
        let mut n = IDLE_CONNS;
        if let Some(limit) = open_files_limit() {
            if limit < n + 64 {
                n = limit.saturating_sub(64).max(1);
                println!(
                    "\nnote: open files limited to {limit} (ulimit -n): {n} connections \
                     instead of {IDLE_CONNS}; run under `ulimit -n 4096` for the full figure"
                );
            }
        }
        println!();
        println!(
            "memory idle: {n} connections after the handshake (tcp: one echoed byte), RSS growth \
             per connection after 1 s; then after each has echoed one 16 B message"
        );
        println!(
            "{:<20} {:>14} {:>18} {:>18}",
            "server", "RSS before KiB", "idle KiB/conn", "after 1 msg KiB"
        );
        for kind in kinds {
            let r = memory_idle(kind, n);
            println!(
                "{:<20} {:>14} {:>18.1} {:>18.1}",
                r.kind.name(),
                r.before_kib,
                r.idle_kib,
                r.used_kib
            );
            if kind == Kind::Stdws {
                let _ = writeln!(
                    summary,
                    "memory idle  stdws {:.1} KiB per idle connection ({} connections)  \
                     (target <= 32: {})",
                    r.idle_kib,
                    r.conns,
                    verdict(r.idle_kib <= 32.0)
                );
            }
        }
    }
    if selected("memory peak") {
        let w = Workload::new(PEAK_SIZE, 1);
        println!();
        println!("memory peak: a fresh server echoes one 16 MiB binary message (one frame)");
        println!(
            "{:<20} {:>14} {:>12} {:>18} {:>14} {:>10}",
            "server", "RSS before KiB", "VmHWM KiB", "VmHWM-before KiB", "RSS after KiB", "echo ms"
        );
        for kind in kinds {
            let r = memory_peak(kind, &w);
            println!(
                "{:<20} {:>14} {:>12} {:>18} {:>14} {:>10.1}",
                r.kind.name(),
                r.before_kib,
                r.hwm_kib,
                r.hwm_kib - r.before_kib,
                r.after_kib,
                r.ms
            );
            if kind == Kind::Stdws {
                let _ = writeln!(
                    summary,
                    "memory peak  stdws VmHWM {:.1} MiB ({:.1} MiB above the RSS before the \
                     message)  (target <= 18 MiB: {})",
                    r.hwm_kib as f64 / 1024.0,
                    (r.hwm_kib - r.before_kib) as f64 / 1024.0,
                    verdict(r.hwm_kib <= 18 << 10)
                );
            }
        }
    }
    if !summary.is_empty() {
        println!("\nTargets (issue):\n{summary}");
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
