//! Pub/sub fan-out over 127.0.0.x: one contract, four servers, one load generator.
//!
//! ```text
//! benches/fanout/run                               # set up the peers, then everything below
//! cargo bench --bench fanout                       # N = 1,000, 10,000 and max; all servers
//! cargo bench --bench fanout -- 1000 node stdws    # any N (or `max`) and any servers
//! ```
//!
//! The contract is `examples/pubsub.rs`: a client connects to `ws://ADDR/<topic>`, and every
//! text or binary message a client sends is delivered verbatim to every client of the same
//! topic, the sender included; slow subscribers are dropped. The servers, each a child
//! process on its own port of 127.0.0.1: `node` (benches/fanout/relay.js, node `ws` 8),
//! `python` (relay.py, Python `websockets`, asyncio `broadcast()`), `tokio` (benches/fanout/
//! tokio, tokio-tungstenite on a 2-worker runtime, a broadcast channel per topic) and `stdws`
//! (`examples/pubsub`, with `--rate 1000000` so the publisher is not rate-limited).
//! `benches/fanout/run setup` installs and builds them; the bench calls it itself.
//!
//! The load generator is this binary in `load` mode, as child processes (one per 16,000
//! connections, `FANOUT_PER_PROCESS`, so that no process needs more than 20,000 descriptors),
//! each with one thread per core (shared between the processes), non-blocking sockets
//! (mio, edge-triggered; a read shorter than the buffer ends the read loop, as in tokio, so a
//! delivery costs one read, not two) bound to source addresses 127.0.0.2-127.0.0.33 before
//! they connect, and its own handshake (fixed key, accept value checked) and masked
//! frames. An arrival's time is the kernel's (`SO_TIMESTAMPNS`: over loopback, when the
//! server's `send` put the bytes into the subscriber's socket), not the load thread's. Per
//! server and N it opens N subscribers and one publisher on one topic, then: paced 64 B
//! messages, each published 20 ms (250 ms for sporadic ones where the regime cannot be
//! pinned) after the previous one has reached every subscriber
//! (latency to the last one, and the CPU time the server and the load generator spent per
//! delivery meanwhile), in two ACK regimes that the loopback route's metrics pin
//! ([`Regime`], [`LoRoute`]): sporadic messages, which a subscriber's kernel ACKs at once,
//! and a stream, whose ACKs are delayed; during these rounds the load threads run at nice 19
//! (as root), so that the CPU is the server's, as with clients on other machines;
//! a burst of 64 B messages (deliveries/s, every subscriber's sequence checked); a burst of
//! 16 KiB messages with every subscriber reading, then the same burst with one subscriber that
//! stopped reading (the others' time, the server's memory, whether and when the stuck one
//! is dropped). The server's CPU time comes from /proc/PID/task/*/schedstat, memory from
//! VmRSS, threads and descriptors from /proc/PID/status and /proc/PID/fd. Linux only.
//!
//! Every payload is ASCII: a phase letter, a sequence number and the publish time (8 and 16
//! hex digits), then a fixed filler; paced messages go as text, bursts as binary, and every
//! delivery is checked for opcode, length and filler. The processes share
//! `SystemTime` (CLOCK_REALTIME) for the latencies.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

/// The handshake key of RFC 6455 §1.3 and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The masking key of every frame the generator sends.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Payload header: phase letter, 8 hex digits of sequence number, 16 of publish time (ns).
const HDR: usize = 25;
const SMALL: usize = 64;
const LARGE: usize = 16 << 10;
/// The receive buffer of the subscriber that stops reading (`SO_RCVBUF`, set before it
/// connects): the kernel holds little for it, so what the server buffers shows.
const STUCK_RCVBUF: i32 = 16 << 10;
/// Phases, in the order of their index in the per-connection arrays.
const PHASES: [u8; 5] = [b'S', b'P', b'B', b'R', b'T'];
/// The topic every connection joins.
const TOPIC: &str = "/fanout";
/// Connections of one load thread that may be connecting or in the handshake at once.
const WINDOW: usize = 64;
/// A connection that has not finished its handshake after this long counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("load") {
        load_main(&args[1..]);
    } else if args.iter().any(|a| a == "selftest") {
        selftest();
    } else {
        bench_main(&args);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn phase_index(phase: u8) -> Option<usize> {
    PHASES.iter().position(|&p| p == phase)
}

/// The opcode a phase's messages are sent with: paced and sync messages as text, bursts as
/// binary.
fn phase_opcode(phase: u8) -> u8 {
    if phase == b'S' || phase == b'P' {
        0x1
    } else {
        0x2
    }
}

/// The filler byte at offset `i` of every payload.
fn filler(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

fn push_payload(out: &mut Vec<u8>, phase: u8, seq: u32, stamp: u64, size: usize) {
    let start = out.len();
    out.push(phase);
    let _ = write!(HexWriter(out), "{seq:08x}{stamp:016x}");
    out.extend((HDR..size).map(filler));
    debug_assert_eq!(out.len() - start, size);
}

/// `fmt::Write` into a byte vector.
struct HexWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for HexWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
}

/// A masked client frame (FIN set) holding `payload`.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// One frame at the start of `buf`: (FIN, opcode, payload range, frame length), or `None`
/// if the frame is not complete yet. Server frames are not masked.
fn parse_frame(buf: &[u8]) -> Option<(bool, u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at): (usize, usize) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if masked {
        at += 4; // servers never mask; skip a key rather than misparse
    }
    let end = at.checked_add(len)?;
    (buf.len() >= end).then_some((fin, opcode, at..end, end))
}

// ---------------------------------------------------------------------------------------
// Sockets bound to a source address before they connect (no socket2 or libc crate needed)
// ---------------------------------------------------------------------------------------

mod sys {
    #[repr(C)]
    pub struct SockaddrIn {
        pub family: u16,
        pub port: u16,
        pub addr: [u8; 4],
        pub zero: [u8; 8],
    }

    extern "C" {
        pub fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
        pub fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        pub fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        pub fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
        pub fn recvmsg(fd: i32, msg: *mut Msghdr, flags: i32) -> isize;
        pub fn setpriority(which: i32, who: u32, prio: i32) -> i32;
    }

    #[repr(C)]
    pub struct Iovec {
        pub base: *mut u8,
        pub len: usize,
    }

    #[repr(C)]
    pub struct Msghdr {
        pub name: *mut u8,
        pub namelen: u32,
        pub iov: *mut Iovec,
        pub iovlen: usize,
        pub control: *mut u8,
        pub controllen: usize,
        pub flags: i32,
    }

    /// `SO_TIMESTAMPNS` (the old, `struct timespec` form; also its control message type).
    pub const SO_TIMESTAMPNS: i32 = 35;
    /// `setpriority`'s `which` for a process, or with `who` 0 for the calling thread.
    pub const PRIO_PROCESS: i32 = 0;

    pub const AF_INET: i32 = 2;
    pub const SOCK_STREAM: i32 = 1;
    pub const SOCK_NONBLOCK: i32 = 0o4000;
    pub const SOCK_CLOEXEC: i32 = 0o2000000;
    pub const IPPROTO_IP: i32 = 0;
    /// Leave the choice of the source port to `connect`, which only needs the 4-tuple to
    /// be unique (Linux 4.2+; ignored if it fails).
    pub const IP_BIND_ADDRESS_NO_PORT: i32 = 24;
    pub const SOL_SOCKET: i32 = 1;
    pub const SO_RCVBUF: i32 = 8;
    pub const EINPROGRESS: i32 = 115;

    pub fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> SockaddrIn {
        SockaddrIn {
            family: AF_INET as u16,
            port: port.to_be(),
            addr: ip.octets(),
            zero: [0; 8],
        }
    }
}

/// A non-blocking TCP connection from `src` to `dst`, in progress.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, rcvbuf: Option<i32>) -> io::Result<TcpStream> {
    // SAFETY: plain socket system calls on a descriptor this function owns; the
    // `std::net::TcpStream` takes ownership of it right after `socket` succeeds, so every
    // error path closes it.
    unsafe {
        let fd = sys::socket(
            sys::AF_INET,
            sys::SOCK_STREAM | sys::SOCK_NONBLOCK | sys::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let one: i32 = 1;
        sys::setsockopt(fd, sys::IPPROTO_IP, sys::IP_BIND_ADDRESS_NO_PORT, &one, 4);
        if sys::setsockopt(fd, sys::SOL_SOCKET, sys::SO_TIMESTAMPNS, &one, 4) != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(size) = rcvbuf {
            if sys::setsockopt(fd, sys::SOL_SOCKET, sys::SO_RCVBUF, &size, 4) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let from = sys::sockaddr(src, 0);
        if sys::bind(fd, &from, std::mem::size_of::<sys::SockaddrIn>() as u32) != 0 {
            return Err(io::Error::last_os_error());
        }
        let to = sys::sockaddr(*dst.ip(), dst.port());
        if sys::connect(fd, &to, std::mem::size_of::<sys::SockaddrIn>() as u32) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(sys::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

/// `recv` that also returns the kernel's receive time of the last bytes read (from
/// `SO_TIMESTAMPNS`, which every connection sets; CLOCK_REALTIME in ns). Over loopback that
/// is when the sender's `send` put them into this socket, so a late load thread does not
/// make a delivery look late. The layouts are Linux's on a 64-bit little-endian target.
fn recv_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    use std::os::fd::AsRawFd;
    let mut control = [0u64; 8];
    let mut iov = sys::Iovec {
        base: buf.as_mut_ptr(),
        len: buf.len(),
    };
    let mut msg = sys::Msghdr {
        name: std::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_mut_ptr().cast(),
        controllen: std::mem::size_of_val(&control),
        flags: 0,
    };
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, all of which outlive the
    // call, with their true lengths; the kernel writes within them.
    let n = unsafe { sys::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // Control messages: a 16-byte header (length, level, type), then the data, each padded
    // to 8 bytes; SCM_TIMESTAMPNS carries a timespec (seconds, nanoseconds).
    let words = &control[..msg.controllen.min(std::mem::size_of_val(&control)) / 8];
    let mut stamp = None;
    let mut at = 0;
    while at + 2 <= words.len() {
        let len = words[at] as usize;
        let (level, ty) = (words[at + 1] as u32 as i32, (words[at + 1] >> 32) as i32);
        if level == sys::SOL_SOCKET
            && ty == sys::SO_TIMESTAMPNS
            && len >= 32
            && at + 4 <= words.len()
        {
            stamp = Some(words[at + 2] * 1_000_000_000 + words[at + 3]);
        }
        if len < 16 {
            break;
        }
        at += len.div_ceil(8);
    }
    Ok((n as usize, stamp))
}

/// The source address of the connection with this global index: 127.0.0.2 to 127.0.0.33.
fn source_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (index % 32) as u8)
}

// ---------------------------------------------------------------------------------------
// Load mode: `fanout load ADDR FIRST COUNT THREADS PUBLISHER STUCK`
// ---------------------------------------------------------------------------------------

/// Commands from the bench on stdin, one per line:
/// - `connect`: open every connection (subscribers, then the publisher if this process has
///   it); each thread answers `connected OK FAILED FIRST_ERROR`;
/// - `expect PHASE COUNT TIMEOUT_MS`: each thread answers `done PHASE COUNT COMPLETE ACTIVE
///   RECEIVED ERRORS LAST_ARRIVAL_NS DROPPED` once every subscriber it reads has message
///   COUNT-1 of PHASE (or the timeout passed);
/// - `publish PHASE FIRST COUNT SIZE`: the publisher sends COUNT messages and answers
///   `sent PHASE STAMP_NS WRITTEN_NS` once the socket took them all;
/// - `stall` / `resume`: the stuck subscriber stops reading / reads again and answers
///   `stuck GOT HOW CLOSED_NS` (how many `T` messages it got, how it ended: `open`, `eof`,
///   `reset`, `close:CODE`);
/// - `quit`.
#[derive(Clone, Debug)]
enum Cmd {
    Connect,
    Expect(u8, u32, u64),
    Publish(u8, u32, u32, usize),
    Stall,
    Resume,
    /// The nice value of the load threads.
    Nice(i32),
    Quit,
}

fn parse_cmd(line: &str) -> Option<Cmd> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let phase = |s: &str| s.bytes().next().filter(|p| phase_index(*p).is_some());
    Some(match *w.first()? {
        "connect" => Cmd::Connect,
        "expect" => Cmd::Expect(
            phase(w.get(1)?)?,
            w.get(2)?.parse().ok()?,
            w.get(3)?.parse().ok()?,
        ),
        "publish" => Cmd::Publish(
            phase(w.get(1)?)?,
            w.get(2)?.parse().ok()?,
            w.get(3)?.parse().ok()?,
            w.get(4)?.parse().ok()?,
        ),
        "stall" => Cmd::Stall,
        "resume" => Cmd::Resume,
        "nice" => Cmd::Nice(w.get(1)?.parse().ok()?),
        "quit" => Cmd::Quit,
        _ => return None,
    })
}

fn load_main(args: &[String]) {
    let usage = "usage: fanout load ADDR FIRST COUNT THREADS PUBLISHER(0|1) STUCK(0|1)";
    let arg = |i: usize| args.get(i).expect(usage);
    let dst: SocketAddrV4 = arg(0).parse().expect("ADDR: an IPv4 address and port");
    let first: usize = arg(1).parse().expect(usage);
    let count: usize = arg(2).parse().expect(usage);
    let threads: usize = arg(3).parse::<usize>().expect(usage).max(1);
    let publisher = arg(4) == "1";
    let stuck = arg(5) == "1";
    let proc_id = first;

    let mut handles = Vec::new();
    let mut channels = Vec::new();
    for t in 0..threads {
        // Subscribers [lo, hi) of this process go to thread t.
        let lo = count * t / threads;
        let hi = count * (t + 1) / threads;
        let poll = Poll::new().expect("epoll");
        let waker = Waker::new(poll.registry(), WAKER).expect("waker");
        let (tx, rx) = mpsc::channel();
        let name = format!("{proc_id}.{t}");
        let unit = Unit::new(
            name,
            poll,
            rx,
            dst,
            (first + lo..first + hi).collect(),
            publisher && t == 0,
            stuck && t == 0 && hi > lo,
        );
        handles.push(thread::spawn(move || unit.run()));
        channels.push((tx, waker));
    }
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Some(cmd) = parse_cmd(&line) else {
            println!("- error bad command {line:?}");
            continue;
        };
        let quit = matches!(cmd, Cmd::Quit);
        for (tx, waker) in &channels {
            let _ = tx.send(cmd.clone());
            let _ = waker.wake();
        }
        if quit {
            break;
        }
    }
    for (tx, waker) in &channels {
        let _ = tx.send(Cmd::Quit);
        let _ = waker.wake();
    }
    for h in handles {
        let _ = h.join();
    }
}

const WAKER: Token = Token(usize::MAX);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    Connecting,
    Handshake,
    Open,
    Closed,
}

struct Conn {
    stream: Option<TcpStream>,
    state: State,
    /// Global index (source address).
    index: usize,
    started: Instant,
    /// Handshake bytes, or the start of an incomplete frame.
    inbuf: Vec<u8>,
    /// Bytes not written yet, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Per phase: the next sequence number expected, and when the last one arrived.
    next: [u32; PHASES.len()],
    at: [u64; PHASES.len()],
}

impl Conn {
    fn new(index: usize) -> Conn {
        Conn {
            stream: None,
            state: State::Idle,
            index,
            started: Instant::now(),
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            next: [0; PHASES.len()],
            at: [0; PHASES.len()],
        }
    }
}

struct Expect {
    phase: usize,
    count: u32,
    deadline: Instant,
    active: usize,
    complete: usize,
    last_at: u64,
}

/// One load thread: an event loop over its connections.
struct Unit {
    name: String,
    poll: Poll,
    cmds: mpsc::Receiver<Cmd>,
    dst: SocketAddrV4,
    request: Vec<u8>,
    conns: Vec<Conn>,
    publisher: Option<usize>,
    stuck: Option<usize>,
    stalled: bool,
    next_to_start: usize,
    in_flight: Vec<usize>,
    connecting: bool,
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    expect: Option<Expect>,
    received: [u64; PHASES.len()],
    errors: [u64; PHASES.len()],
    dropped: u64,
    publishing: Option<(u8, u64)>,
    /// After `resume`: the deadline of the stuck subscriber's report, and the count it needs.
    stuck_watch: Option<Instant>,
    stuck_target: u32,
    stuck_end: Option<(String, u64)>,
    rbuf: Vec<u8>,
    /// The filler every payload carries, for comparison.
    filler: Vec<u8>,
    quit: bool,
}

impl Unit {
    fn new(
        name: String,
        poll: Poll,
        cmds: mpsc::Receiver<Cmd>,
        dst: SocketAddrV4,
        indices: Vec<usize>,
        publisher: bool,
        stuck: bool,
    ) -> Unit {
        let mut conns: Vec<Conn> = indices.into_iter().map(Conn::new).collect();
        let publisher = publisher.then(|| {
            conns.push(Conn::new(usize::MAX / 2));
            conns.len() - 1
        });
        let request = format!(
            "GET {TOPIC} HTTP/1.1\r\nHost: {dst}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        Unit {
            name,
            poll,
            cmds,
            dst,
            request,
            conns,
            publisher,
            stuck: stuck.then_some(0),
            stalled: false,
            next_to_start: 0,
            in_flight: Vec::new(),
            connecting: false,
            ok: 0,
            failed: 0,
            first_error: None,
            expect: None,
            received: [0; PHASES.len()],
            errors: [0; PHASES.len()],
            dropped: 0,
            publishing: None,
            stuck_watch: None,
            stuck_target: 0,
            stuck_end: None,
            rbuf: vec![0; 64 << 10],
            filler: (0..LARGE).map(filler).collect(),
            quit: false,
        }
    }

    fn say(&self, line: std::fmt::Arguments) {
        let out = io::stdout();
        let mut out = out.lock();
        let _ = writeln!(out, "{} {}", self.name, line);
        let _ = out.flush();
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.quit {
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_millis(20))) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                self.say(format_args!("error poll {e}"));
                return;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    while let Ok(cmd) = self.cmds.try_recv() {
                        self.command(cmd);
                    }
                } else {
                    let idx = event.token().0;
                    self.event(
                        idx,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                    );
                }
            }
            self.tick();
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect => {
                self.connecting = true;
                self.fill_window();
                self.check_connected();
            }
            Cmd::Expect(phase, count, timeout_ms) => {
                let p = phase_index(phase).expect("phase");
                let mut e = Expect {
                    phase: p,
                    count,
                    deadline: Instant::now() + Duration::from_millis(timeout_ms),
                    active: 0,
                    complete: 0,
                    last_at: 0,
                };
                self.rescan(&mut e);
                self.expect = Some(e);
                if phase == b'T' {
                    self.stuck_target = count;
                }
                self.check_done(false);
            }
            Cmd::Publish(phase, first, count, size) => {
                let Some(idx) = self.publisher else { return };
                let stamp = now_ns();
                let mut payload = Vec::with_capacity(size);
                let conn = &mut self.conns[idx];
                for seq in first..first + count {
                    payload.clear();
                    push_payload(&mut payload, phase, seq, stamp, size);
                    push_frame(&mut conn.out, phase_opcode(phase), &payload);
                }
                self.publishing = Some((phase, stamp));
                self.flush(idx);
            }
            Cmd::Stall => {
                if self.stuck.is_some() {
                    self.stalled = true;
                }
            }
            Cmd::Resume => {
                if let Some(idx) = self.stuck {
                    self.stalled = false;
                    self.stuck_watch = Some(Instant::now() + Duration::from_secs(5));
                    if self.conns[idx].state == State::Open {
                        self.read(idx);
                    }
                    self.check_stuck(false);
                }
            }
            Cmd::Nice(value) => {
                // SAFETY: no pointers; with `who` 0 it applies to the calling thread.
                if unsafe { sys::setpriority(sys::PRIO_PROCESS, 0, value) } != 0 {
                    let e = io::Error::last_os_error();
                    self.say(format_args!("error nice {value}: {e}"));
                }
            }
            Cmd::Quit => self.quit = true,
        }
    }

    /// Counts the active subscribers and those that already have `e.count` messages.
    fn rescan(&self, e: &mut Expect) {
        e.active = 0;
        e.complete = 0;
        e.last_at = 0;
        for (i, c) in self.conns.iter().enumerate() {
            if self.is_active(i) {
                e.active += 1;
                if c.next[e.phase] >= e.count {
                    e.complete += 1;
                    e.last_at = e.last_at.max(c.at[e.phase]);
                }
            }
        }
    }

    /// An open subscriber that reads (not the publisher, not the stalled one).
    fn is_active(&self, i: usize) -> bool {
        self.conns[i].state == State::Open
            && Some(i) != self.publisher
            && !(self.stalled && Some(i) == self.stuck)
    }

    fn check_done(&mut self, timed_out: bool) {
        let Some(e) = &self.expect else { return };
        if e.complete < e.active && !timed_out {
            return;
        }
        let (p, e) = (e.phase, self.expect.take().expect("expect"));
        self.say(format_args!(
            "done {} {} {} {} {} {} {} {}",
            PHASES[p] as char,
            e.count,
            e.complete,
            e.active,
            self.received[p],
            self.errors[p],
            e.last_at,
            self.dropped
        ));
    }

    fn check_stuck(&mut self, timed_out: bool) {
        let (Some(idx), Some(_)) = (self.stuck, self.stuck_watch) else {
            return;
        };
        let got = self.conns[idx].next[phase_index(b'T').expect("T")];
        if self.stuck_end.is_none() && got < self.stuck_target && !timed_out {
            return;
        }
        self.stuck_watch = None;
        let (how, at) = self.stuck_end.clone().unwrap_or(("open".into(), 0));
        self.say(format_args!("stuck {got} {how} {at}"));
    }

    fn fill_window(&mut self) {
        while self.connecting
            && self.in_flight.len() < WINDOW
            && self.next_to_start < self.conns.len()
        {
            let idx = self.next_to_start;
            self.next_to_start += 1;
            let c = &mut self.conns[idx];
            c.started = Instant::now();
            let rcvbuf = (Some(idx) == self.stuck).then_some(STUCK_RCVBUF);
            match connect_from(source_ip(c.index), self.dst, rcvbuf) {
                Ok(mut stream) => {
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(idx),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        self.fail(idx, format!("register: {e}"));
                        continue;
                    }
                    c.stream = Some(stream);
                    c.state = State::Connecting;
                    self.in_flight.push(idx);
                }
                Err(e) => self.fail(idx, format!("connect: {e}")),
            }
        }
    }

    fn fail(&mut self, idx: usize, error: String) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
        self.close(idx, None);
        self.in_flight.retain(|&i| i != idx);
    }

    fn opened(&mut self, idx: usize) {
        self.ok += 1;
        self.conns[idx].state = State::Open;
        self.in_flight.retain(|&i| i != idx);
    }

    fn check_connected(&mut self) {
        if self.connecting && self.ok + self.failed == self.conns.len() {
            self.connecting = false;
            let err = self.first_error.clone().unwrap_or_else(|| "-".into());
            self.say(format_args!(
                "connected {} {} {}",
                self.ok,
                self.failed,
                err.replace(' ', "_")
            ));
        }
    }

    /// Closes a connection; `how` is set for an open one that the server closed.
    fn close(&mut self, idx: usize, how: Option<String>) {
        let was_open = self.conns[idx].state == State::Open;
        if let Some(mut s) = self.conns[idx].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.conns[idx].state = State::Closed;
        self.conns[idx].inbuf = Vec::new();
        self.conns[idx].out = Vec::new();
        if !was_open {
            return;
        }
        let how = how.unwrap_or_else(|| "closed".into());
        if Some(idx) == self.publisher {
            self.say(format_args!("error publisher_closed {how}"));
        } else if Some(idx) == self.stuck && self.stuck_end.is_none() {
            self.stuck_end = Some((how, now_ns()));
            if !self.stalled {
                self.dropped += 1;
            }
        } else {
            self.dropped += 1;
        }
        if let Some(mut e) = self.expect.take() {
            self.rescan(&mut e);
            self.expect = Some(e);
            self.check_done(false);
        }
        self.check_stuck(false);
    }

    fn event(&mut self, idx: usize, readable: bool, writable: bool) {
        if idx >= self.conns.len() {
            return;
        }
        match self.conns[idx].state {
            State::Connecting => {
                let stream = self.conns[idx].stream.as_ref().expect("stream");
                match stream.take_error() {
                    Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {e}")),
                    Ok(None) => {}
                }
                match stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => return,
                    Err(e) => return self.fail(idx, format!("connect: {e}")),
                }
                let c = &mut self.conns[idx];
                c.state = State::Handshake;
                c.out.extend_from_slice(&self.request);
                self.flush(idx);
                if readable {
                    self.read(idx);
                }
            }
            State::Handshake | State::Open => {
                if writable {
                    self.flush(idx);
                }
                if readable && !(self.stalled && Some(idx) == self.stuck) {
                    self.read(idx);
                }
            }
            State::Idle | State::Closed => {}
        }
        if self.connecting {
            self.fill_window();
            self.check_connected();
        }
    }

    fn flush(&mut self, idx: usize) {
        loop {
            let c = &mut self.conns[idx];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            if c.out_pos == c.out.len() {
                c.out.clear();
                c.out_pos = 0;
                if Some(idx) == self.publisher {
                    if let Some((phase, stamp)) = self.publishing.take() {
                        self.say(format_args!("sent {} {stamp} {}", phase as char, now_ns()));
                    }
                }
                return;
            }
            match stream.write(&c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let how = format!("write:{}", e.kind());
                    return match c.state {
                        State::Open => self.close(idx, Some(how)),
                        _ => self.fail(idx, how),
                    };
                }
            }
        }
    }

    fn read(&mut self, idx: usize) {
        let mut buf = std::mem::take(&mut self.rbuf);
        while let Some(stream) = self.conns[idx].stream.as_ref() {
            match recv_stamped(stream, &mut buf) {
                Ok((0, _)) => {
                    self.end(idx, "eof".into());
                    break;
                }
                Ok((n, stamp)) => {
                    // A short read took all the socket had: bytes that arrive later raise
                    // a new edge, so the read that would only say WouldBlock is skipped
                    // (one system call fewer per delivery, as tokio does).
                    if !self.input(idx, &buf[..n], stamp) || n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let how = if e.kind() == ErrorKind::ConnectionReset {
                        "reset".to_string()
                    } else {
                        format!("read:{}", e.kind())
                    };
                    self.end(idx, how);
                    break;
                }
            }
        }
        self.rbuf = buf;
    }

    /// The connection ended (EOF, error, close frame) in whatever state it was.
    fn end(&mut self, idx: usize, how: String) {
        match self.conns[idx].state {
            State::Open => self.close(idx, Some(how)),
            State::Connecting | State::Handshake => self.fail(idx, format!("handshake: {how}")),
            _ => {}
        }
    }

    /// Bytes read from a connection; false once it is closed.
    fn input(&mut self, idx: usize, data: &[u8], stamp: Option<u64>) -> bool {
        let now = stamp.unwrap_or_else(now_ns);
        if self.conns[idx].state == State::Handshake {
            let c = &mut self.conns[idx];
            c.inbuf.extend_from_slice(data);
            let Some(end) = c.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.inbuf.len() > 8192 {
                    self.fail(idx, "handshake: response too long".into());
                    return false;
                }
                return true;
            };
            let head = String::from_utf8_lossy(&c.inbuf[..end]).into_owned();
            let status = head.lines().next().unwrap_or("").to_owned();
            if !status.starts_with("HTTP/1.1 101") || !head.contains(ACCEPT) {
                self.fail(idx, format!("handshake: {status}"));
                return false;
            }
            let rest = c.inbuf.split_off(end + 4);
            c.inbuf = Vec::new();
            self.opened(idx);
            return rest.is_empty() || self.frames(idx, &rest, now);
        }
        if self.conns[idx].inbuf.is_empty() {
            return self.frames(idx, data, now);
        }
        let mut joined = std::mem::take(&mut self.conns[idx].inbuf);
        joined.extend_from_slice(data);
        self.frames(idx, &joined, now)
    }

    /// Handles every complete frame in `data`, keeps the rest; false once closed.
    fn frames(&mut self, idx: usize, data: &[u8], now: u64) -> bool {
        let mut at = 0;
        while let Some((fin, opcode, range, len)) = parse_frame(&data[at..]) {
            let payload = &data[at + range.start..at + range.end];
            at += len;
            match opcode {
                0x1 | 0x2 if fin => self.message(idx, opcode, payload, now),
                0x9 => {
                    let c = &mut self.conns[idx];
                    push_frame(&mut c.out, 0xA, payload);
                    self.flush(idx);
                }
                0xA => {}
                0x8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]]).to_string()
                    } else {
                        "none".into()
                    };
                    self.close(idx, Some(format!("close:{code}")));
                    return false;
                }
                _ => {
                    // Fragmented or unknown: the relays never fragment these small messages.
                    self.errors[0] += 1;
                    self.close(idx, Some(format!("unexpected_opcode:{opcode}")));
                    return false;
                }
            }
            if self.conns[idx].state != State::Open {
                return false;
            }
        }
        let c = &mut self.conns[idx];
        c.inbuf.extend_from_slice(&data[at..]);
        true
    }

    fn message(&mut self, idx: usize, opcode: u8, payload: &[u8], now: u64) {
        if Some(idx) == self.publisher || payload.len() < HDR {
            return;
        }
        let Some(p) = phase_index(payload[0]) else {
            return;
        };
        let Some(seq) = parse_hex(&payload[1..9]) else {
            self.errors[p] += 1;
            return;
        };
        let seq = seq as u32;
        self.received[p] += 1;
        let intact = opcode == phase_opcode(PHASES[p])
            && (payload.len() == SMALL || payload.len() == LARGE)
            && payload[HDR..] == self.filler[HDR..payload.len()];
        if !intact {
            self.errors[p] += 1;
        }
        let c = &mut self.conns[idx];
        let before = c.next[p];
        if PHASES[p] == b'S' {
            c.next[p] = 1;
        } else if seq >= c.next[p] {
            if seq > c.next[p] {
                self.errors[p] += u64::from(seq - c.next[p]); // missing
            }
            c.next[p] = seq + 1;
        } else {
            self.errors[p] += 1; // duplicate or out of order
        }
        if c.next[p] != before {
            c.at[p] = now;
        }
        let after = c.next[p];
        let active = self.is_active_fast(idx);
        if let Some(e) = &mut self.expect {
            if e.phase == p && before < e.count && after >= e.count && active {
                e.complete += 1;
                e.last_at = e.last_at.max(now);
            }
        }
        // The stuck subscriber reads like the others until `stall`, so it may be the one
        // that completes an expectation.
        self.check_done(false);
        if Some(idx) == self.stuck {
            self.check_stuck(false);
        }
    }

    fn is_active_fast(&self, idx: usize) -> bool {
        Some(idx) != self.publisher && !(self.stalled && Some(idx) == self.stuck)
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if self.connecting {
            let late: Vec<usize> = self
                .in_flight
                .iter()
                .copied()
                .filter(|&i| now - self.conns[i].started > HANDSHAKE_TIMEOUT)
                .collect();
            for idx in late {
                self.fail(idx, "handshake: timeout".into());
            }
            self.fill_window();
            self.check_connected();
        }
        if self.expect.as_ref().is_some_and(|e| now > e.deadline) {
            self.check_done(true);
        }
        if self.stuck_watch.is_some_and(|d| now > d) {
            self.check_stuck(true);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Node,
    Python,
    Tokio,
    Stdws,
}

const KINDS: [Kind; 4] = [Kind::Node, Kind::Python, Kind::Tokio, Kind::Stdws];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Python => "python",
            Kind::Tokio => "tokio",
            Kind::Stdws => "stdws",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Node => "node ws",
            Kind::Python => "python websockets",
            Kind::Tokio => "tokio-tungstenite",
            Kind::Stdws => "stdws pubsub",
        }
    }

    fn command(self, paths: &Paths, addr: &str, n: usize) -> Command {
        let fanout = paths.root.join("benches/fanout");
        match self {
            Kind::Node => {
                let mut c = Command::new("node");
                c.arg(fanout.join("relay.js")).arg(addr);
                c
            }
            Kind::Python => {
                let mut c = Command::new(fanout.join(".venv/bin/python"));
                c.arg(fanout.join("relay.py")).arg(addr);
                c
            }
            Kind::Tokio => {
                let mut c = Command::new(paths.target.join("fanout-tokio/release/fanout-tokio"));
                c.arg(addr);
                c
            }
            Kind::Stdws => {
                let mut c = Command::new(&paths.pubsub);
                c.arg(addr)
                    .args(["--rate", "1000000", "--max-connections"])
                    .arg((n + 1000).to_string());
                c
            }
        }
    }
}

struct Paths {
    root: PathBuf,
    target: PathBuf,
    /// The stdws relay: `FANOUT_PUBSUB` (another commit's build, to compare), or this
    /// tree's `examples/pubsub`.
    pubsub: PathBuf,
    logs: PathBuf,
}

/// A server as a child process; killed when dropped.
struct Server {
    child: Child,
    pid: u32,
    addr: String,
}

impl Server {
    fn start(kind: Kind, paths: &Paths, n: usize) -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = paths.logs.join(format!("{}.log", kind.name()));
        let log = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = kind
            .command(paths, &addr, n)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", kind.name()))?;
        let mut server = Server {
            pid: child.id(),
            child,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock: std::net::SocketAddr = server.addr.parse().expect("addr");
        loop {
            if std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("{} exited at start: {status}", kind.name()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {} within 30 s",
                    kind.name(),
                    server.addr
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn status(&self, field: &str) -> u64 {
        status_field(self.pid, field).unwrap_or(0)
    }

    fn fds(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count() as u64)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU time of a process in ns: the sum of its threads' schedstat run time, or (marked
/// `false`) utime + stime from /proc/PID/stat in 10 ms ticks if there is no schedstat.
fn cpu_ns(pid: u32) -> (u64, bool) {
    let mut sum = 0u64;
    let mut precise = true;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            match std::fs::read_to_string(task.path().join("schedstat")) {
                Ok(s) => {
                    sum += s
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                }
                Err(e) if e.kind() == ErrorKind::NotFound && task.path().exists() => {
                    precise = false
                }
                Err(_) => {}
            }
        }
    }
    if precise {
        return (sum, true);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 1)..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (ticks * 10_000_000, false)
}

// ---------------------------------------------------------------------------------------
// The load processes, from the bench's side
// ---------------------------------------------------------------------------------------

/// A line from a load thread: its fields after the thread's name.
type Line = Vec<String>;

struct Load {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    lines: mpsc::Receiver<Option<Line>>,
    pending: VecDeque<Line>,
    units: usize,
    processes: usize,
    threads: usize,
}

impl Load {
    fn start(addr: &str, n: usize, per_process: usize) -> Result<Load, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let total = n + 1;
        let processes = total.div_ceil(per_process).max(1);
        let cores = thread::available_parallelism().map_or(2, |c| c.get());
        let threads = (cores / processes).max(1);
        let (tx, lines) = mpsc::channel();
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for p in 0..processes {
            let lo = n * p / processes;
            let hi = n * (p + 1) / processes;
            let mut child = Command::new(&exe)
                .args(["load", addr])
                .arg(lo.to_string())
                .arg((hi - lo).to_string())
                .arg(threads.to_string())
                .arg(if p == 0 { "1" } else { "0" })
                .arg(if p == 0 { "1" } else { "0" })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("start load process: {e}"))?;
            stdins.push(child.stdin.take().expect("stdin"));
            let stdout = child.stdout.take().expect("stdout");
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let fields: Line = line.split_whitespace().skip(1).map(String::from).collect();
                    if tx.send(Some(fields)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(None);
            });
            children.push(child);
        }
        Ok(Load {
            children,
            stdins,
            lines,
            pending: VecDeque::new(),
            units: processes * threads,
            processes,
            threads,
        })
    }

    fn send_all(&mut self, cmd: &str) -> Result<(), String> {
        for s in &mut self.stdins {
            writeln!(s, "{cmd}").map_err(|e| format!("load process gone: {e}"))?;
        }
        Ok(())
    }

    fn send_publisher(&mut self, cmd: &str) -> Result<(), String> {
        writeln!(self.stdins[0], "{cmd}").map_err(|e| format!("load process gone: {e}"))
    }

    /// Waits for `count` lines starting with `kind`; lines of other kinds wait for their
    /// turn. An `error` line ends the wait.
    fn wait(&mut self, kind: &str, count: usize, timeout: Duration) -> Result<Vec<Line>, String> {
        match self.take(kind, count, timeout) {
            (got, None) => Ok(got),
            (_, Some(e)) => Err(e),
        }
    }

    /// Like `wait`, but also returns the lines it got before an error or the timeout.
    fn take(&mut self, kind: &str, count: usize, timeout: Duration) -> (Vec<Line>, Option<String>) {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut keep = VecDeque::new();
        while let Some(line) = self.pending.pop_front() {
            if line.first().map(String::as_str) == Some(kind) && got.len() < count {
                got.push(line);
            } else {
                keep.push_back(line);
            }
        }
        self.pending = keep;
        while got.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) => match line.first().map(String::as_str) {
                    Some(k) if k == kind => got.push(line),
                    Some("error") => {
                        let e = format!("load: {}", line[1..].join(" "));
                        return (got, Some(e));
                    }
                    _ => self.pending.push_back(line),
                },
                Ok(None) => return (got, Some("a load process exited".into())),
                Err(_) => {
                    let e = format!("timed out waiting for {kind} ({} of {count})", got.len());
                    return (got, Some(e));
                }
            }
        }
        (got, None)
    }

    /// `expect` on every thread, `publish` on the publisher, then every thread's `done` line
    /// and the publisher's `sent` line.
    fn round(
        &mut self,
        phase: char,
        first: u32,
        count: u32,
        size: usize,
        timeout: Duration,
    ) -> Result<Round, String> {
        let ms = timeout.as_millis();
        self.send_all(&format!("expect {phase} {} {ms}", first + count))?;
        self.send_publisher(&format!("publish {phase} {first} {count} {size}"))?;
        // A late `sent` of an earlier phase (the sync's repeated publishes) is skipped.
        let sent = loop {
            let sent = self.wait("sent", 1, timeout + Duration::from_secs(5))?;
            if sent[0].get(1).map(String::as_str) == Some(phase.encode_utf8(&mut [0; 4])) {
                break sent;
            }
        };
        let done = self.wait("done", self.units, timeout + Duration::from_secs(5))?;
        let num = |l: &Line, i: usize| l.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let mut r = Round {
            stamp: num(&sent[0], 2),
            ..Round::default()
        };
        for l in &done {
            r.complete += num(l, 3);
            r.active += num(l, 4);
            r.received += num(l, 5);
            r.errors += num(l, 6);
            r.last_at = r.last_at.max(num(l, 7));
            r.dropped += num(l, 8);
        }
        Ok(r)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.send_all("quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Default, Debug)]
struct Round {
    stamp: u64,
    complete: u64,
    active: u64,
    received: u64,
    errors: u64,
    last_at: u64,
    dropped: u64,
}

impl Round {
    /// From the publish stamp to the last arrival at the last subscriber, in seconds.
    fn secs(&self) -> f64 {
        self.last_at.saturating_sub(self.stamp) as f64 / 1e9
    }

    fn check(&self, per_sub: u64) -> String {
        let expected = self.active * per_sub;
        if self.errors == 0
            && self.complete == self.active
            && self.received >= expected
            && self.dropped == 0
        {
            "ok".into()
        } else {
            format!(
                "{} of {} subs complete, {} errors, {} dropped",
                self.complete, self.active, self.errors, self.dropped
            )
        }
    }
}

/// Waits until every subscriber has joined the topic: one message reaches all of them
/// (published every 200 ms, for at most 30 s).
fn sync(load: &mut Load, subs: usize) -> Result<(), String> {
    load.send_all("expect S 1 30000")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done = Vec::new();
    while done.len() < load.units && Instant::now() < deadline {
        load.send_publisher("publish S 0 1 64")?;
        let (mut d, _) = load.take("done", load.units - done.len(), Duration::from_millis(200));
        done.append(&mut d);
    }
    thread::sleep(Duration::from_millis(100));
    let _ = load.take("sent", usize::MAX, Duration::ZERO);
    load.pending
        .retain(|l| l.first().map(String::as_str) != Some("sent"));
    let complete: u64 = done
        .iter()
        .map(|l| l.get(3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    if done.len() < load.units || complete < subs as u64 {
        return Err(format!(
            "sync: {complete} of {subs} subscribers got a message within 30 s"
        ));
    }
    Ok(())
}

/// A stream of chunks: `chunk` messages per round, each round published once the previous
/// one reached every reading subscriber.
struct Stream {
    chunks: usize,
    /// The sum over chunks of the time from its publish to its last arrival.
    secs: f64,
    start: Instant,
    end: Instant,
    /// When each chunk was published.
    issued: Vec<Instant>,
    last: Round,
}

impl Stream {
    fn check(&self, dropped_before: u64) -> String {
        let r = &self.last;
        if r.errors == 0 && r.complete == r.active && r.dropped == dropped_before {
            "ok".into()
        } else {
            format!(
                "{} of {} subs complete, {} errors, {} dropped",
                r.complete,
                r.active,
                r.errors,
                r.dropped - dropped_before
            )
        }
    }
}

/// Publishes chunks until `max_chunks`, or until `min_time` has passed if it is given; the
/// sequence numbers start after `skip` chunks.
fn stream(
    load: &mut Load,
    phase: char,
    chunk: u32,
    skip: u32,
    max_chunks: usize,
    min_time: Option<Duration>,
) -> Result<Stream, String> {
    let start = Instant::now();
    let mut issued = Vec::new();
    let mut secs = 0.0;
    let mut last = Round::default();
    while issued.len() < max_chunks && min_time.map_or(true, |t| start.elapsed() < t) {
        issued.push(Instant::now());
        let first = (skip + issued.len() as u32 - 1) * chunk;
        last = load.round(phase, first, chunk, LARGE, Duration::from_secs(30))?;
        if std::env::var_os("FANOUT_VERBOSE").is_some() {
            eprintln!(
                "fanout: chunk {} of {phase}: {:.1} ms since its publish, {:.1} ms to the last arrival",
                issued.len(),
                issued.last().expect("issued").elapsed().as_secs_f64() * 1e3,
                last.last_at.saturating_sub(last.stamp) as f64 / 1e6
            );
        }
        secs += last.secs();
    }
    Ok(Stream {
        chunks: issued.len(),
        secs,
        start,
        end: Instant::now(),
        issued,
        last,
    })
}

/// The ACK regime of the paced rounds.
///
/// Over loopback a subscriber's kernel receives in the thread that sends to it, so where
/// its ACK is made decides whose CPU pays for it. Linux ACKs a small segment at once (in
/// that sender's `send`, and the server socket's processing of the ACK runs there too)
/// while the receiver is in quick-ACK mode, and otherwise when the receiver reads it (in the
/// load generator's `recv`). A socket enters quick-ACK mode for up to 16 segments when data
/// arrives more than its RTO (at least `tcp_rto_min`, 200 ms) after the previous data. With
/// "the next message 20 ms after the last delivery", whether a subscriber's gap exceeds
/// 200 ms depends on how long the server's rounds take, so a server near 180 ms per round
/// flips between the regimes mid-run (node `ws` at N = 10,000 did). The bench pins the
/// regime with the metrics of the loopback route to 127.0.0.1 instead ([`LoRoute`]).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Regime {
    /// Every message ACKed at once, as a client's kernel does for messages more than its
    /// RTO apart (chat, dashboards): route metric `quickack 1`.
    Sporadic,
    /// Delayed ACKs, as for a steady stream (a ticker): `rto_min 1s`, so that no gap
    /// between rounds puts a subscriber back into quick-ACK mode.
    Stream,
}

impl Regime {
    /// Rounds run before the counted ones. Pinned: one, in which each subscriber's first
    /// ACK after the route change picks up the new route (a socket re-reads its route when
    /// it next transmits); the stream also waits out what is left of the 16 quick ACKs a
    /// connection starts with, which the sporadic rounds spend. Not pinned: sporadic
    /// rounds are paced 250 ms apart, which refills each subscriber's allowance of 16 quick
    /// ACKs, so the stream waits those out.
    fn warmup(self, pinned: bool, paced: u32) -> u32 {
        match (self, pinned) {
            (Regime::Sporadic, _) => 1,
            // The sporadic rounds before (1 + `paced`) have spent all 16 unless fewer.
            (Regime::Stream, true) => 16u32.saturating_sub(1 + paced).max(1),
            (Regime::Stream, false) => 16,
        }
    }

    /// Its name in the table.
    fn name(self) -> &'static str {
        match self {
            Regime::Sporadic => "sporadic",
            Regime::Stream => "stream",
        }
    }

    /// The pause after a round's last delivery.
    fn pause(self, pinned: bool) -> Duration {
        match (self, pinned) {
            (Regime::Sporadic, false) => Duration::from_millis(250),
            _ => Duration::from_millis(20),
        }
    }
}

/// The loopback route to 127.0.0.1, with metrics that pin the ACK regime ([`Regime`])
/// while the bench runs, and put back as found when the bench ends. Setting it needs root
/// and `ip` (iproute2); without them the bench runs with the kernel's defaults and says so.
///
/// The pin holds for the whole bench, since a socket takes its RTO floor from the route
/// when it measures an RTT, which a subscriber does only while it connects. It also raises
/// to 1 s the RTO of anything else that talks to 127.0.0.1 meanwhile; in the bench that
/// shows only where a server's accept queue overflowed (the `ListenDrops` note): a request
/// the server dropped is sent again after 1 s rather than 200 ms. A stream round must stay
/// under 1 s to stay in its regime (every server's does here). A bench killed by a signal
/// leaves the metrics on the route; the next run shows them in its header (the route as
/// found) and puts them back as found, and `ip route change table local local 127.0.0.1
/// dev lo proto kernel scope host src 127.0.0.1` clears them.
struct LoRoute {
    /// `ip route show table local 127.0.0.1` as the bench found it.
    saved: String,
    /// Its words without the `rto_min` and `quickack` metrics...
    base: Vec<String>,
    /// ...and those metrics as `ip route change` takes them (`ip route show` prints
    /// `rto_min lock 1s`, but `rto_min` is always locked and takes no `lock` word).
    found: Vec<String>,
}

impl LoRoute {
    const RTO_MIN: &'static str = "1s";

    fn pin() -> Result<LoRoute, String> {
        let out = Command::new("ip")
            .args(["route", "show", "table", "local", "127.0.0.1"])
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        let saved = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || saved.lines().count() != 1 {
            return Err(format!(
                "ip route show table local 127.0.0.1: {:?} {}",
                saved,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let (mut base, mut found) = (Vec::new(), Vec::new());
        let mut words = saved.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "rto_min" | "quickack" => {
                    let mut value = words.next().unwrap_or_default();
                    if value == "lock" {
                        value = words.next().unwrap_or_default();
                    }
                    found.extend([w.to_string(), value.to_string()]);
                }
                _ => base.push(w.to_string()),
            }
        }
        let route = LoRoute { saved, base, found };
        Self::change(&route.words(), &["rto_min", Self::RTO_MIN])?;
        Ok(route)
    }

    fn quickack(&self, on: bool) -> Result<(), String> {
        let q = if on { "1" } else { "0" };
        Self::change(&self.words(), &["rto_min", Self::RTO_MIN, "quickack", q])
    }

    fn words(&self) -> Vec<&str> {
        self.base.iter().map(String::as_str).collect()
    }

    fn change(route: &[&str], metrics: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(["route", "change", "table", "local"])
            .args(route)
            .args(metrics)
            .output()
            .map_err(|e| format!("ip route change: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip route change table local {} {}: {}",
                route.join(" "),
                metrics.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for LoRoute {
    fn drop(&mut self) {
        let found: Vec<&str> = self.found.iter().map(String::as_str).collect();
        if let Err(e) = Self::change(&self.words(), &found) {
            eprintln!("fanout: could not put the loopback route back: {e}");
        }
    }
}

/// The figures of one run of paced rounds.
struct Paced {
    p50: f64,
    p99: f64,
    /// CPU per delivery over the counted rounds: the server's, and the load generator's.
    server_us: f64,
    load_us: f64,
    /// ACKs the delayed-ACK timer sent (`TcpExt DelayedACKs`) per delivery: in softirq on
    /// whichever core the receive ran, rather than in the load generator's `recv`.
    timer_acks: f64,
    check: String,
    /// Messages published, warm-up included (the next round's sequence number follows).
    rounds: u32,
}

/// `s.paced` counted rounds of one 64 B message each, after the regime's warm-up rounds;
/// the sequence numbers start at `first`.
fn paced(
    load: &mut Load,
    server: &Server,
    subs: usize,
    s: &Settings,
    regime: Regime,
    first: u32,
) -> Result<Paced, String> {
    let pinned = s.routes.is_ok();
    let warmup = regime.warmup(pinned, s.paced);
    let load_cpu = |load: &Load| load.children.iter().map(|c| cpu_ns(c.id()).0).sum::<u64>();
    let mut latencies = Vec::new();
    let mut bad = 0;
    let (mut cpu0, mut load0, mut acks0) = (0, 0, 0);
    for i in 0..warmup + s.paced {
        if i == warmup {
            (cpu0, load0) = (cpu_ns(server.pid).0, load_cpu(load));
            acks0 = tcp_ext("DelayedACKs");
        }
        let lost = || (softnet_drops(), tcp_ext("TCPLossProbes"));
        let lost0 = if s.verbose { lost() } else { (0, 0) };
        let r = load.round('P', first + i, 1, SMALL, Duration::from_secs(10))?;
        let ms = r.secs() * 1e3;
        if s.verbose {
            let what = if i < warmup { " (warm-up)" } else { "" };
            let lost1 = lost();
            eprintln!(
                "fanout: {regime:?} round {i}{what}: {ms:.1} ms ({} packets dropped by a full backlog queue, {} loss probes)",
                lost1.0.saturating_sub(lost0.0),
                lost1.1.saturating_sub(lost0.1)
            );
        }
        if i >= warmup {
            if r.complete != r.active || r.errors != 0 || r.dropped != 0 {
                bad += 1;
            }
            latencies.push(ms);
        }
        thread::sleep(regime.pause(pinned));
    }
    let per = |ns: u64| ns as f64 / 1e3 / (subs as f64 * f64::from(s.paced));
    let server_us = per(cpu_ns(server.pid).0.saturating_sub(cpu0));
    let load_us = per(load_cpu(load).saturating_sub(load0));
    let timer_acks =
        tcp_ext("DelayedACKs").saturating_sub(acks0) as f64 / (subs as f64 * f64::from(s.paced));
    latencies.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(Paced {
        p50: pct(0.5),
        p99: pct(0.99),
        server_us,
        load_us,
        timer_acks,
        check: if bad == 0 {
            "ok".into()
        } else {
            format!("{bad} of {} not delivered to all", s.paced)
        },
        rounds: warmup + s.paced,
    })
}

// ---------------------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Figures {
    connected: Option<usize>,
    connect_rate: Option<f64>,
    kib_per_conn: Option<f64>,
    threads_per_conn: Option<f64>,
    fds_per_conn: Option<f64>,
    /// The paced rounds in each ACK regime ([`Regime`]): a stream, and sporadic messages.
    stream: Option<Paced>,
    sporadic: Option<Paced>,
    burst: Option<u32>,
    deliveries_per_sec: Option<f64>,
    burst_check: Option<String>,
    cpu_us: Option<f64>,
    slow_msgs: Option<u32>,
    slow_ref_ms: Option<f64>,
    slow_stuck_ms: Option<f64>,
    slow_rss_mib: Option<f64>,
    slow_drop: Option<String>,
    slow_check: Option<String>,
    notes: Vec<String>,
}

impl Figures {
    fn paced(&self, regime: Regime) -> Option<&Paced> {
        match regime {
            Regime::Sporadic => self.sporadic.as_ref(),
            Regime::Stream => self.stream.as_ref(),
        }
    }
}

struct Settings {
    paced: u32,
    burst_deliveries: usize,
    slow_chunk_bytes: usize,
    slow_max_bytes: usize,
    slow_secs: Duration,
    slow: bool,
    slow_wait: Duration,
    per_process: usize,
    verbose: bool,
    /// The loopback route's metrics that pin the ACK regime, or why they could not be set.
    routes: Result<LoRoute, String>,
    /// The nice value of the load threads during the paced rounds (0: left alone; 19 by
    /// default where the threads may go back to 0 afterwards).
    nice: i32,
}

fn bench_main(args: &[String]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let logs = target.join("fanout-logs");
    let _ = std::fs::create_dir_all(&logs);
    // A relay built elsewhere (another commit, to compare) is run as it is, not built.
    let pubsub_given = std::env::var_os("FANOUT_PUBSUB").map(PathBuf::from);
    let pubsub = pubsub_given
        .clone()
        .unwrap_or_else(|| target.join("release/examples/pubsub"));
    let paths = Paths {
        root,
        target,
        logs,
        pubsub,
    };
    let nofile = open_files_limit();
    // The most connections one server process can hold here: its descriptors (all four
    // servers use one per connection, plus a few of their own), and for stdws's thread per
    // connection the memory mappings (each thread maps its stack and its signal stack, each
    // with a guard page: 4 of vm.max_map_count).
    let fd_cap = nofile.saturating_sub(100).max(100);
    let map_count: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(65_530);
    // examples/pubsub keeps 32 of those threads for its own (and lowers its
    // --max-connections to the rest).
    let thread_cap = (map_count.saturating_sub(1000) / 4)
        .saturating_sub(32)
        .max(100);

    let mut ns = Vec::new();
    let mut kinds = Vec::new();
    for a in args.iter().filter(|a| !a.starts_with('-')) {
        if let Ok(n) = a.replace([',', '_'], "").parse::<usize>() {
            ns.push(n);
        } else if a == "max" {
            ns.push(0); // resolved below, once the servers are known
        } else if let Some(k) = KINDS.iter().find(|k| k.name() == a) {
            kinds.push(*k);
        } else {
            eprintln!(
                "fanout: unknown argument {a:?} (a number, `max`, or node/python/tokio/stdws)"
            );
            std::process::exit(2);
        }
    }
    if ns.is_empty() {
        ns = vec![1000, 10_000, 0];
    }
    if kinds.is_empty() {
        kinds = KINDS.to_vec();
    }
    let max_n = if kinds.contains(&Kind::Stdws) {
        fd_cap.min(thread_cap)
    } else {
        fd_cap
    };
    for n in &mut ns {
        if *n == 0 {
            *n = max_n;
        }
    }
    let settings = Settings {
        paced: env_or("FANOUT_PACED", 30u32).max(1),
        burst_deliveries: env_or("FANOUT_BURST_DELIVERIES", 500_000usize),
        slow_chunk_bytes: env_or("FANOUT_SLOW_CHUNK_BYTES", 256usize << 20),
        slow_max_bytes: env_or("FANOUT_SLOW_MAX_BYTES", 8usize << 20),
        slow_secs: Duration::from_millis(
            env_or("FANOUT_SLOW_SECS", 8.0f64).mul_add(1000.0, 0.0) as u64
        ),
        slow: env_or("FANOUT_SLOW", 1u32) != 0,
        slow_wait: Duration::from_millis(env_or("FANOUT_SLOW_WAIT_MS", 3000u64)),
        per_process: env_or("FANOUT_PER_PROCESS", 16_000usize).max(100),
        verbose: env_or("FANOUT_VERBOSE", 0u32) != 0,
        routes: LoRoute::pin(),
        nice: if can_renice() {
            env_or("FANOUT_NICE", 19i32)
        } else {
            0
        },
    };

    // Install and build the peers (benches/fanout/run setup); a server that fails to set up
    // is left out with a note.
    let mut unavailable: Vec<(Kind, String)> = Vec::new();
    for &k in &kinds {
        if k == Kind::Stdws && pubsub_given.is_some() {
            continue;
        }
        let status = Command::new("bash")
            .arg(paths.root.join("benches/fanout/run"))
            .args(["setup", k.name()])
            .stdin(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => unavailable.push((k, format!("setup failed ({s})"))),
            Err(e) => unavailable.push((k, format!("setup: {e}"))),
        }
    }

    println!("Pub/sub fan-out over 127.0.0.x: N subscribers + 1 publisher on one topic");
    println!(
        "{} UTC, load average {}, {} cores, open files {} per process, {}",
        utc_now(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        thread::available_parallelism().map_or(0, |c| c.get()),
        nofile,
        versions(&paths)
    );
    println!(
        "max N here: {fd_cap} (open files {nofile} per process, less 100), and for stdws's thread per connection {thread_cap} (vm.max_map_count {map_count}: 4 mappings per thread, less 1,000, less 32 threads pubsub keeps for itself)"
    );
    match &settings.routes {
        Ok(r) => println!(
            "ACK regimes pinned by the loopback route to 127.0.0.1 (found as `{}`): rto_min {} throughout, quickack 1 for the sporadic rounds",
            r.saved,
            LoRoute::RTO_MIN
        ),
        Err(e) => println!(
            "ACK regimes not pinned ({e}; setting the loopback route's metrics needs root and `ip`): sporadic rounds are 250 ms apart, and stream rounds may fall back into quick ACKs"
        ),
    }
    if settings.nice != 0 {
        println!(
            "paced rounds: the load generator's threads at nice {} while the rounds run, arrivals stamped by the kernel (SO_TIMESTAMPNS)",
            settings.nice
        );
    } else {
        println!(
            "paced rounds: the load generator's threads at the servers' priority (FANOUT_NICE=0, or this process may not lower a nice value again), arrivals stamped by the kernel (SO_TIMESTAMPNS)"
        );
    }
    for (k, why) in &unavailable {
        println!("{}: {why}", k.title());
    }
    for &n in &ns {
        let mut results: Vec<(Kind, Figures)> = Vec::new();
        for &k in &kinds {
            if let Some((_, why)) = unavailable.iter().find(|(u, _)| *u == k) {
                let mut f = Figures::default();
                f.notes.push(why.clone());
                results.push((k, f));
                continue;
            }
            eprintln!("fanout: {} N={n}", k.name());
            let started = Instant::now();
            let f = run(k, n, &paths, &settings);
            eprintln!(
                "fanout: {} N={n} done in {:.1} s",
                k.name(),
                started.elapsed().as_secs_f64()
            );
            results.push((k, f));
        }
        print_table(n, &results, &settings);
    }
}

/// Whether a thread here may lower its nice value again after raising it (which takes
/// CAP_SYS_NICE, or an RLIMIT_NICE that allows it), as the load threads must after the
/// paced rounds. Tried on a thread of its own, whose nice value dies with it.
fn can_renice() -> bool {
    thread::spawn(|| {
        // SAFETY: no pointers; with `who` 0 it applies to the calling thread.
        unsafe {
            sys::setpriority(sys::PRIO_PROCESS, 0, 1) == 0
                && sys::setpriority(sys::PRIO_PROCESS, 0, 0) == 0
        }
    })
    .join()
    .unwrap_or(false)
}

/// `ListenDrops` of /proc/net/netstat: connection attempts the kernel dropped because a
/// listening socket's queue was full (for this network namespace, so other programs' count
/// too).
fn listen_drops() -> u64 {
    tcp_ext("ListenDrops")
}

/// Packets the kernel dropped because a CPU's input backlog was full
/// (`net.core.netdev_max_backlog`; over loopback every packet goes through it): the second
/// column of /proc/net/softnet_stat, summed over the CPUs.
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

/// A counter of the `TcpExt` lines of /proc/net/netstat (this network namespace's).
fn tcp_ext(field: &str) -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(keys), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    keys.split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

fn utc_now() -> String {
    let secs = now_ns() / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

fn versions(paths: &Paths) -> String {
    let out = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let fanout = paths.root.join("benches/fanout");
    let node = out(Command::new("node").arg("--version"));
    let ws = out(Command::new("node").arg("-p").arg(format!(
        "require('{}/node_modules/ws/package.json').version",
        fanout.display()
    )));
    let py = out(Command::new(fanout.join(".venv/bin/python")).args([
        "-c",
        "import sys, websockets; print(sys.version.split()[0], websockets.__version__)",
    ]));
    let lock = std::fs::read_to_string(fanout.join("tokio/Cargo.lock")).unwrap_or_default();
    let tt = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"tokio-tungstenite\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap_or("?")
        .trim_matches('"')
        .to_string();
    format!("node {node} ws {ws}, python/websockets {py}, tokio-tungstenite {tt}")
}

fn run(kind: Kind, n: usize, paths: &Paths, s: &Settings) -> Figures {
    let mut f = Figures::default();
    let mut server = match Server::start(kind, paths, n) {
        Ok(server) => server,
        Err(e) => {
            f.notes.push(e);
            return f;
        }
    };
    if let Err(e) = measure(kind, n, &mut server, s, &mut f) {
        f.notes.push(e);
    }
    if let Ok(Some(status)) = server.child.try_wait() {
        // The last lines of its log that say why, without the per-connection chatter.
        let log = std::fs::read_to_string(paths.logs.join(format!("{}.log", kind.name())))
            .unwrap_or_default();
        let why: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("closed abnormally") && !l.contains("handshake failed"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        let why = why[why.len().saturating_sub(3)..].join(" | ");
        f.notes.push(format!("the server exited ({status}): {why}"));
    }
    f
}

fn measure(
    kind: Kind,
    n: usize,
    server: &mut Server,
    s: &Settings,
    f: &mut Figures,
) -> Result<(), String> {
    let log = |what: &str| {
        if s.verbose {
            eprintln!("fanout: {} N={n}: {what}", kind.name());
        }
    };
    thread::sleep(Duration::from_millis(500));
    let rss0 = server.status("VmRSS");
    let threads0 = server.status("Threads");
    let fds0 = server.fds();

    let mut load = Load::start(&server.addr, n, s.per_process)?;
    log(&format!(
        "{} load processes x {} threads",
        load.processes, load.threads
    ));
    let t0 = Instant::now();
    let drops0 = listen_drops();
    load.send_all("connect")?;
    let connected = load.wait(
        "connected",
        load.units,
        Duration::from_secs(60 + n as u64 / 200),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let ok: usize = connected
        .iter()
        .map(|l| l.get(1).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0))
        .sum();
    let failed: usize = connected
        .iter()
        .map(|l| l.get(2).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0))
        .sum();
    let subs = ok.saturating_sub(1);
    f.connected = Some(subs);
    f.connect_rate = Some(ok as f64 / secs);
    if failed > 0 {
        let first = connected
            .iter()
            .filter_map(|l| l.get(3))
            .find(|e| *e != "-")
            .cloned()
            .unwrap_or_default();
        f.notes.push(format!(
            "{failed} of {} connections failed, first: {}",
            n + 1,
            first.replace('_', " ")
        ));
    }
    log(&format!("{ok} connected in {secs:.2} s"));
    let drops = listen_drops().saturating_sub(drops0);
    if drops > 0 {
        f.notes.push(format!(
            "{drops} connection attempts dropped by a full accept queue while connecting (TcpExt ListenDrops; the client retries after 1 s)"
        ));
    }
    if !server.alive() {
        return Err("the server exited while clients connected".into());
    }
    if subs == 0 {
        return Err("nothing connected".into());
    }

    sync(&mut load, subs)?;
    thread::sleep(Duration::from_secs(1));
    let conns = (subs + 1) as f64;
    f.kib_per_conn = Some(server.status("VmRSS").saturating_sub(rss0) as f64 / conns);
    f.threads_per_conn = Some(server.status("Threads").saturating_sub(threads0) as f64 / conns);
    f.fds_per_conn = Some(server.fds().saturating_sub(fds0) as f64 / conns);
    log(&format!("synced; RSS {} KiB", server.status("VmRSS")));

    // Paced: one message at a time, the next 20 ms after the last subscriber has it; first
    // with every subscriber's kernel ACKing each message at once (sporadic messages), then
    // with delayed ACKs (a stream). See `Regime`.
    let pinned = s.routes.as_ref().ok();
    let quick = |on: bool| pinned.map_or(Ok(()), |r| r.quickack(on));
    if s.nice != 0 {
        load.send_all(&format!("nice {}", s.nice))?;
    }
    quick(true)?;
    let sporadic = paced(&mut load, server, subs, s, Regime::Sporadic, 0);
    quick(false)?;
    let sporadic = sporadic?;
    log(&format!("sporadic p50 {:.1} ms", sporadic.p50));
    let next = sporadic.rounds;
    f.sporadic = Some(sporadic);
    let steady = paced(&mut load, server, subs, s, Regime::Stream, next)?;
    log(&format!("stream p50 {:.1} ms", steady.p50));
    f.stream = Some(steady);
    if s.nice != 0 {
        load.send_all("nice 0")?;
    }

    // Burst: B messages of 64 B as fast as the publisher's socket takes them.
    let burst = (s.burst_deliveries / subs).clamp(100, 1000) as u32;
    f.burst = Some(burst);
    let cpu0 = cpu_ns(server.pid);
    let timeout = Duration::from_secs(30 + (subs as u64 * u64::from(burst)) / 20_000);
    let r = load.round('B', 0, burst, SMALL, timeout)?;
    let cpu1 = cpu_ns(server.pid);
    let deliveries = r.complete * u64::from(burst);
    f.deliveries_per_sec = Some(deliveries as f64 / r.secs());
    f.burst_check = Some(r.check(u64::from(burst)));
    f.cpu_us = Some(cpu1.0.saturating_sub(cpu0.0) as f64 / 1e3 / deliveries.max(1) as f64);
    if !(cpu0.1 && cpu1.1) {
        f.notes
            .push("CPU from /proc/PID/stat ticks (no schedstat)".into());
    }
    log(&format!("burst {burst}: {r:?}"));

    if !s.slow {
        return Ok(());
    }
    // Slow subscriber: a stream of 16 KiB messages in chunks, each published once every
    // reading subscriber has the previous one, for FANOUT_SLOW_SECS with everyone reading;
    // then as many chunks with one subscriber that stopped reading.
    thread::sleep(Duration::from_millis(200));
    let chunk = (s.slow_chunk_bytes / (subs * LARGE)).clamp(1, 16) as u32;
    let max_chunks = (s.slow_max_bytes / (chunk as usize * LARGE)).max(1);
    let mut dropped_before = 0;
    // One chunk first, untimed, so that neither run pays for the server's first large
    // messages (buffers, allocator).
    stream(&mut load, 'R', chunk, 0, 1, None)?;
    let reference = stream(&mut load, 'R', chunk, 1, max_chunks, Some(s.slow_secs))?;
    log(&format!(
        "slow reference: {} chunks of {chunk}: {:?}",
        reference.chunks, reference.last
    ));
    let ref_check = reference.check(dropped_before);
    dropped_before = reference.last.dropped;
    f.slow_msgs = Some(reference.chunks as u32 * chunk);
    f.slow_ref_ms = Some(reference.secs * 1e3);
    thread::sleep(Duration::from_millis(200));

    load.send_all("stall")?;
    let rss_before = server.status("VmRSS");
    let fds_before = server.fds();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new((rss_before, None::<Instant>)));
    let sampler = {
        let (stop, samples, pid) = (Arc::clone(&stop), Arc::clone(&samples), server.pid);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rss = status_field(pid, "VmRSS").unwrap_or(0);
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .map_or(u64::MAX, |d| d.count() as u64);
                let mut s = samples.lock().expect("samples");
                s.0 = s.0.max(rss);
                if fds < fds_before && s.1.is_none() {
                    s.1 = Some(Instant::now());
                }
                drop(s);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let stuck = stream(&mut load, 'T', chunk, 0, reference.chunks, None);
    // Give the server time to drop the stuck subscriber after the stream.
    let wait_until = Instant::now() + s.slow_wait;
    while Instant::now() < wait_until && samples.lock().expect("samples").1.is_none() {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (rss_max, fd_drop) = *samples.lock().expect("samples");
    let stuck = stuck?;
    log(&format!(
        "slow stuck: {} chunks: {:?}",
        stuck.chunks, stuck.last
    ));
    f.slow_stuck_ms = Some(stuck.secs * 1e3);
    f.slow_rss_mib = Some(rss_max.saturating_sub(rss_before) as f64 / 1024.0);
    let stuck_check = stuck.check(dropped_before);
    f.slow_check = Some(if ref_check == "ok" && stuck_check == "ok" {
        "ok".into()
    } else {
        format!("reference: {ref_check}; stuck: {stuck_check}")
    });
    load.send_all("resume")?;
    let report = load.wait("stuck", 1, Duration::from_secs(10))?;
    let got = report[0].get(1).cloned().unwrap_or_default();
    let how = report[0].get(2).cloned().unwrap_or_default();
    let total = stuck.chunks as u32 * chunk;
    let mib = |msgs: usize| (msgs * (LARGE + 4)) as f64 / (1 << 20) as f64;
    f.slow_drop = Some(match (fd_drop, how.as_str()) {
        (Some(t), _) => {
            let published = stuck.issued.iter().filter(|&&i| i <= t).count() * chunk as usize;
            format!(
                "dropped {:.2} s after it stopped reading, {:.1} MiB published to it by then ({how}; it got {got} of {total} messages)",
                (t - stuck.start).as_secs_f64(),
                mib(published),
            )
        }
        (None, "open") => format!(
            "not dropped within {:.1} s ({:.1} MiB published to it; it got all {got} later)",
            (stuck.end - stuck.start + s.slow_wait).as_secs_f64(),
            mib(total as usize)
        ),
        (None, _) => format!("closed ({how}; it got {got} of {total} messages)"),
    });
    drop(load);
    Ok(())
}

fn print_table(n: usize, results: &[(Kind, Figures)], s: &Settings) {
    let node = results
        .iter()
        .find(|(k, _)| *k == Kind::Node)
        .map(|(_, f)| f);
    let burst = results.iter().find_map(|(_, f)| f.burst).unwrap_or(0);
    let slow = results.iter().find_map(|(_, f)| f.slow_msgs).unwrap_or(0);
    println!();
    println!(
        "N = {n}: {n} subscribers + 1 publisher; paced {} x 64 B in each ACK regime, burst {burst} x 64 B, slow-subscriber stream {slow} x 16 KiB; (x) = ratio to node ws",
        s.paced
    );
    let mut line = format!("{:<32}", "");
    for (k, _) in results {
        let _ = write!(line, " {:>22}", k.title());
    }
    println!("{line}");
    let row = |label: &str, get: &dyn Fn(&Figures) -> Option<f64>, prec: usize| {
        let mut line = format!("{label:<32}");
        for (k, f) in results {
            let cell = match get(f) {
                Some(v) => {
                    let mut c = fmt_num(v, prec);
                    if *k != Kind::Node && label != "subscribers connected" {
                        if let Some(base) = node.and_then(get).filter(|b| *b > 0.0) {
                            let _ = write!(c, " ({:.2})", v / base);
                        }
                    }
                    c
                }
                None => "-".into(),
            };
            let _ = write!(line, " {cell:>22}");
        }
        println!("{line}");
    };
    type Get = fn(&Figures) -> Option<f64>;
    let head: [(&str, Get, usize); 5] = [
        (
            "subscribers connected",
            |f| f.connected.map(|c| c as f64),
            0,
        ),
        ("connect rate (conn/s)", |f| f.connect_rate, 0),
        ("memory per conn (KiB)", |f| f.kib_per_conn, 1),
        ("threads per conn", |f| f.threads_per_conn, 2),
        ("descriptors per conn", |f| f.fds_per_conn, 2),
    ];
    for (label, get, prec) in head {
        row(label, &get, prec);
    }
    // The paced rows, per regime; the timer's ACKs only for the stream (where ACKs wait).
    type PacedGet = fn(&Paced) -> f64;
    let paced: [(&str, PacedGet, usize); 5] = [
        ("last delivery p50 (ms)", |p| p.p50, 1),
        ("last delivery p99 (ms)", |p| p.p99, 1),
        ("server CPU/deliv. (us)", |p| p.server_us, 2),
        ("load CPU/deliv. (us)", |p| p.load_us, 2),
        ("timer ACKs/delivery", |p| p.timer_acks, 2),
    ];
    for regime in [Regime::Stream, Regime::Sporadic] {
        let rows = match regime {
            Regime::Stream => &paced[..],
            Regime::Sporadic => &paced[..4],
        };
        for (what, get, prec) in rows {
            let label = format!("{}: {what}", regime.name());
            row(&label, &|f| f.paced(regime).map(get), *prec);
        }
    }
    let tail: [(&str, Get, usize); 4] = [
        ("burst deliveries/s", |f| f.deliveries_per_sec, 0),
        ("server CPU per delivery (us)", |f| f.cpu_us, 2),
        ("slow: others' time, ms", |f| f.slow_stuck_ms, 0),
        ("slow: server RSS growth (MiB)", |f| f.slow_rss_mib, 1),
    ];
    for (label, get, prec) in tail {
        row(label, &get, prec);
        if label == "slow: others' time, ms" {
            let mut line = format!("{:<32}", "slow: others' time / reference");
            for (_, f) in results {
                let cell = match (f.slow_stuck_ms, f.slow_ref_ms) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2} ({:.0} ms)", a / b, b),
                    _ => "-".into(),
                };
                let _ = write!(line, " {cell:>22}");
            }
            println!("{line}");
        }
    }
    type Text = fn(&Figures) -> Option<String>;
    let text_rows: [(&str, Text); 5] = [
        ("stream check", |f| {
            f.paced(Regime::Stream).map(|p| p.check.clone())
        }),
        ("sporadic check", |f| {
            f.paced(Regime::Sporadic).map(|p| p.check.clone())
        }),
        ("burst check", |f| f.burst_check.clone()),
        ("slow check (others)", |f| f.slow_check.clone()),
        ("slow: stuck subscriber", |f| f.slow_drop.clone()),
    ];
    for (label, get) in text_rows {
        let cells: Vec<String> = results
            .iter()
            .map(|(_, f)| get(f).unwrap_or_else(|| "-".into()))
            .collect();
        if cells.iter().all(|c| c.len() <= 22) {
            let mut line = format!("{label:<32}");
            for c in &cells {
                let _ = write!(line, " {c:>22}");
            }
            println!("{line}");
        } else {
            println!("{label}:");
            for ((k, _), c) in results.iter().zip(&cells) {
                println!("  {:<20} {c}", k.title());
            }
        }
    }
    for (k, f) in results {
        for note in &f.notes {
            println!("note: {}: {note}", k.title());
        }
    }
}

fn fmt_num(v: f64, prec: usize) -> String {
    if prec > 0 {
        return format!("{v:.prec$}");
    }
    let mut digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        out = format!(",{tail}{out}");
    }
    format!("{}{digits}{out}", if v < 0.0 { "-" } else { "" })
}

// ---------------------------------------------------------------------------------------
// The generator's own check: `cargo bench --bench fanout -- selftest`
// ---------------------------------------------------------------------------------------

/// Runs the load generator against a relay in this process that gets some deliveries
/// wrong on purpose, and checks that the generator counts exactly those.
fn selftest() {
    let addr = faulty_relay();
    let subs = 50;
    let result = (|| -> Result<(), String> {
        let mut load = Load::start(&addr, subs, 16_000)?;
        load.send_all("connect")?;
        let connected = load.wait("connected", load.units, Duration::from_secs(20))?;
        let ok: usize = connected
            .iter()
            .map(|l| l[1].parse::<usize>().unwrap_or(0))
            .sum();
        if ok != subs + 1 {
            return Err(format!("{ok} of {} connected", subs + 1));
        }
        sync(&mut load, subs)?;
        let expect = |what: &str, r: &Round, errors: u64| -> Result<(), String> {
            println!("selftest {what}: {r:?}");
            if r.complete == subs as u64 && r.active == subs as u64 && r.errors == errors {
                Ok(())
            } else {
                Err(format!(
                    "{what}: expected {subs} complete and {errors} errors"
                ))
            }
        };
        let r = load.round('P', 0, 1, SMALL, Duration::from_secs(10))?;
        expect("paced, delivered intact", &r, 0)?;
        let r = load.round('R', 0, 4, LARGE, Duration::from_secs(10))?;
        expect("16 KiB, delivered intact", &r, 0)?;
        // One subscriber misses seq 3 (1 error), one gets seq 5 twice (1), one gets 8 before
        // 7 (a gap, then an old one: 2), one gets a payload with a changed byte (1).
        let r = load.round('B', 0, 20, SMALL, Duration::from_secs(10))?;
        expect("burst with 5 faults", &r, 5)
    })();
    match result {
        Ok(()) => println!("selftest ok"),
        Err(e) => {
            println!("selftest FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// A relay with the pub/sub contract (one topic) that breaks a few deliveries of phase
/// `B` for the first four connections that joined.
fn faulty_relay() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let subs: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let subs = Arc::clone(&subs);
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 << 10];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
                );
                if stream.write_all(response.as_bytes()).is_err() {
                    return;
                }
                subs.lock()
                    .expect("subs")
                    .push(stream.try_clone().expect("clone"));
                buf.clear();
                let mut held: Option<Vec<u8>> = None;
                loop {
                    while let Some((_, opcode, range, len)) = parse_frame(&buf) {
                        let key = [
                            buf[range.start - 4],
                            buf[range.start - 3],
                            buf[range.start - 2],
                            buf[range.start - 1],
                        ];
                        let payload: Vec<u8> = buf[range.clone()]
                            .iter()
                            .enumerate()
                            .map(|(i, b)| b ^ key[i % 4])
                            .collect();
                        buf.drain(..len);
                        if opcode != 1 && opcode != 2 {
                            continue;
                        }
                        let seq = parse_hex(&payload[1..9]).unwrap_or(0);
                        let burst = payload[0] == b'B';
                        let mut subs = subs.lock().expect("subs");
                        for (i, sub) in subs.iter_mut().enumerate() {
                            let mut out = Vec::new();
                            let mut frame = |p: &[u8]| {
                                out.push(0x80 | opcode);
                                out.push(p.len() as u8);
                                out.extend_from_slice(p);
                            };
                            match (burst, i, seq) {
                                (true, 0, 3) => {}
                                (true, 1, 5) => {
                                    frame(&payload);
                                    frame(&payload);
                                }
                                (true, 2, 7) => held = Some(payload.clone()),
                                (true, 2, 8) => {
                                    frame(&payload);
                                    frame(&held.take().expect("seq 7"));
                                }
                                (true, 3, 9) => {
                                    let mut bad = payload.clone();
                                    bad[40] ^= 1;
                                    frame(&bad);
                                }
                                _ if payload.len() < 126 => frame(&payload),
                                _ => {
                                    out.push(0x80 | opcode);
                                    out.push(126);
                                    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                                    out.extend_from_slice(&payload);
                                }
                            }
                            let _ = sub.write_all(&out);
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}
