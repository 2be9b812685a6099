//! The sans-I/O driver of the `connection` and `server_handshake` targets: feeds bytes into
//! a `stdws::proto::Connection` in chunks the input chooses, interleaved with sends,
//! partial `consume`s of its output and `on_timeout` calls at synthetic instants, and checks
//! every step against a model of the connection's state, the keep-alive timer and the frames
//! it must queue, and the whole run against the reference decoder of `lib.rs`.
//!
//! Everything is checked with the same rules as `run_connection` (the blocking targets),
//! plus what only a sans-I/O API can promise:
//!
//! - `state()`, `wants_write()`, `is_done()` and `next_deadline()` agree with the model
//!   after every call;
//! - every send, close and `on_timeout` returns what the model says (queued,
//!   `WriteBufferFull`, `AlreadyClosed`, `ConnectionClosed` once, `InvalidInput`,
//!   `KeepAliveTimeout`);
//! - the output never exceeds `max_write_buffer_size` by more than one frame queued under
//!   the limit and one close frame, however much input arrives (the driver also stops
//!   reading while it is over the limit, as the blocking driver does); a ping that arrives
//!   while it is over is answered once `consume` brings it under, unless a later ping is;
//! - `read_buf()` is never empty and never larger than the limits allow;
//! - after the end, `poll` keeps failing, and input fed then (a client waits for the
//!   server's EOF, RFC 6455 §7.1.1) does not make the connection's heap grow (measured with
//!   [`Counting`], when the target installs it as its global allocator);
//! - all the output, concatenated, decodes (reference decoder, the peer's role: masked from
//!   a client, unmasked from a server) into exactly the frames the model expected, in order,
//!   at a clean frame boundary, with nothing after our close frame.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stdws::proto::Connection;
use stdws::{CapacityError, CloseFrame, Config, Error, KeepAlive, Message, Role, State};

use crate::{decode, End};

// ---------------------------------------------------------------------------------------
// Heap accounting.
// ---------------------------------------------------------------------------------------

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The highest `LIVE` since the last [`reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// A global allocator that counts live heap bytes (install it with
/// `#[global_allocator] static A: stdws_fuzz::proto::Counting = stdws_fuzz::proto::Counting;`).
pub struct Counting;

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Live heap bytes (0 when [`Counting`] is not the global allocator).
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts measuring the peak of live heap bytes from now; returns the live bytes.
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The most live heap bytes since [`reset_peak`] (0 without [`Counting`]).
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Input.
// ---------------------------------------------------------------------------------------

/// Keep-alive settings of the targets (synthetic time: nothing waits).
pub const KEEPALIVE: KeepAlive = KeepAlive {
    interval: Duration::from_millis(100),
    timeout: Duration::from_millis(50),
};

/// How a run is driven: chunk sizes and operations, both used cyclically.
///
/// - `chunks`: one byte per `filled` call: `0` as much as `read_buf()` offers, otherwise
///   that many bytes (at most what `read_buf()` offers). Empty: always as much as offered.
/// - `ops`: one byte after each chunk is fed and polled; when the input has run out, each
///   once more (before EOF: time passes with nothing heard, so keep-alive can time out);
///   after the end, each once more:
///   - `00kkkkkk`: `consume(k)` (`k == 0`: everything);
///   - `01tttttt`: time advances by `5 * t` ms, then `on_timeout(now)`;
///   - `10llllkk`: a send of kind `k` (text, binary, ping, pong) with `9 * l` payload
///     bytes (over 125 for a ping or pong is refused with `InvalidInput`);
///   - `11rrrccc`: `close(code[c], reason of 20 * r bytes)`, codes 1000, 1001, 3000, 4999,
///     1011 and the unsendable 1005, 999, 2999 (reasons over 123 bytes are refused too).
#[derive(Debug, Clone, Copy)]
pub struct Drive<'a> {
    pub chunks: &'a [u8],
    pub ops: &'a [u8],
    /// Call `filled(0)` (EOF) once all bytes are fed.
    pub eof: bool,
    /// Sends take owned `Message`s (`send`, which recycles the allocation) instead of
    /// slices (`send_text`, `send_binary`, `ping`).
    pub owned: bool,
    /// After the end, feed 256 KiB more and check that the heap does not grow with it.
    pub probe_growth: bool,
}

impl Drive<'_> {
    /// One byte at a time, output consumed in full after each, no ops.
    pub fn bytewise(eof: bool, owned: bool) -> Drive<'static> {
        Drive {
            chunks: &[1],
            ops: &[0],
            eof,
            owned,
            probe_growth: false,
        }
    }

    /// `first` bytes, then the rest at once.
    pub fn split_at(first: &[u8; 2], eof: bool, owned: bool) -> Drive<'_> {
        Drive {
            chunks: first,
            ops: &[0],
            eof,
            owned,
            probe_growth: false,
        }
    }
}

/// How a run's reading side ended, for comparing runs that chop the input differently.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// All bytes were fed (no EOF) and the connection waits for more.
    Pending,
    /// `poll` returned the peer's close frame.
    Close,
    /// `poll` failed with this error (its `Debug` form).
    Failed(String),
    /// `on_timeout` failed the connection (time-dependent: not compared across runs).
    KeepAlive,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub messages: Vec<Message>,
    pub ending: Ending,
}

/// A base instant shared by all runs of the process: time is this plus what the ops add.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

// ---------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Life {
    Open,
    CloseSent,
    /// The peer's close arrived; `ConnectionClosed(frame)` not reported yet.
    Closed(Option<CloseFrame>),
    Ended,
}

impl Life {
    fn state(&self) -> State {
        match self {
            Life::Open => State::Open,
            Life::CloseSent => State::Closing,
            Life::Closed(_) | Life::Ended => State::Closed,
        }
    }
}

/// A frame expected in the output.
#[derive(Debug, Clone)]
enum Expect {
    Exact(Message),
    /// A failure close: its code is ours, its reason is the library's.
    CloseCode(u16),
}

impl Expect {
    fn matches(&self, m: &Message) -> bool {
        match (self, m) {
            (Expect::Exact(e), m) => e == m,
            (Expect::CloseCode(c), Message::Close(Some(f))) => f.code.as_u16() == *c,
            _ => false,
        }
    }
}

/// The keep-alive timer, as `Config::keepalive` documents it.
#[derive(Debug, Clone, Copy)]
struct TimerModel {
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tick {
    Nothing,
    SendPing,
    TimedOut,
}

impl TimerModel {
    fn deadline(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + KEEPALIVE.timeout,
            None => self.last_heard + KEEPALIVE.interval,
        }
    }
    fn tick(&mut self, now: Instant) -> Tick {
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= KEEPALIVE.timeout => {
                Tick::TimedOut
            }
            Some(_) => Tick::Nothing,
            None if now.saturating_duration_since(self.last_heard) >= KEEPALIVE.interval => {
                self.ping_sent = Some(now);
                Tick::SendPing
            }
            None => Tick::Nothing,
        }
    }
}

fn short(m: &Message) -> String {
    let s = format!("{m:?}");
    if s.len() > 100 {
        format!("{}...", &s[..100])
    } else {
        s
    }
}

/// A text payload of exactly `len` bytes with multi-byte characters (so fragments split
/// them).
pub fn text_of(len: usize) -> String {
    let mut s = String::new();
    for c in "aé€𝄞".chars().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(c);
    }
    while s.len() < len {
        s.push('z');
    }
    s
}

const CLOSE_CODES: [u16; 8] = [1000, 1001, 3000, 4999, 1011, 1005, 999, 2999];

/// The driver and its model for one run.
struct Run<'a> {
    conn: Connection,
    server: bool,
    config: Config,
    max_write: usize,
    drive: Drive<'a>,
    now: Instant,
    life: Life,
    keepalive: bool,
    timer: Option<TimerModel>,
    expected: Vec<Expect>,
    written: Vec<u8>,
    got: Vec<Message>,
    ending: Option<Ending>,
    /// The close code of the violation `poll` reported.
    failure_code: Option<u16>,
    /// Whether the output was over `max_write_buffer_size` before the current call.
    over_limit_before: bool,
    /// The latest ping that arrived while the output was over the limit: its pong is due
    /// once `consume` brings the output under it (RFC 6455 §5.5.3: only the latest).
    owed_pong: Option<Vec<u8>>,
    ctx: String,
}

impl Run<'_> {
    fn fail(&self, what: String) -> ! {
        panic!(
            "{what}\n  [{}; state {:?}; got {} messages: {}]",
            self.ctx,
            self.life,
            self.got.len(),
            self.got.iter().map(short).collect::<Vec<_>>().join(", ")
        )
    }

    /// The checks that hold after every call.
    fn check_invariants(&mut self, allowance: usize) {
        // Everything queued: `output()` may be only its first piece.
        let out = self.conn.buffered_amount();
        let piece = self.conn.output().len();
        if piece > out || (piece == 0) != (out == 0) {
            self.fail(format!(
                "output() of {piece} bytes with buffered_amount() {out}"
            ));
        }
        if self.conn.state() != self.life.state() {
            self.fail(format!(
                "state() is {:?}, the model says {:?}",
                self.conn.state(),
                self.life.state()
            ));
        }
        if self.conn.wants_write() != (out > 0) {
            self.fail(format!("wants_write() with {out} bytes of output"));
        }
        if self.conn.is_done() != (self.life.state() == State::Closed && out == 0) {
            self.fail(format!(
                "is_done() {} with {out} bytes of output",
                self.conn.is_done()
            ));
        }
        let deadline = match (&self.life, &self.timer) {
            (Life::Open | Life::CloseSent, Some(t)) => Some(t.deadline()),
            _ => None,
        };
        if self.conn.next_deadline() != deadline {
            self.fail(format!(
                "next_deadline() {:?}, the model says {:?}",
                self.conn.next_deadline().map(|d| d - base()),
                deadline.map(|d| d - base())
            ));
        }
        if out > self.max_write + allowance {
            self.fail(format!(
                "output of {out} bytes, over max_write_buffer_size {} + {allowance}",
                self.max_write
            ));
        }
    }

    /// Consumes `n` bytes of output, piece by piece (`usize::MAX`: all of it).
    fn consume(&mut self, mut n: usize) {
        loop {
            let before = self.conn.buffered_amount();
            let out = self.conn.output();
            let k = n.min(out.len());
            self.written.extend_from_slice(&out[..k]);
            self.conn.consume(k);
            n -= k;
            // A pong owed to the latest ping is queued by the `consume` that brings the
            // output under the limit (judged on what is left, before that pong).
            let left = before - k;
            let mut pong = 0;
            if self.owed_pong.is_some() && left <= self.max_write {
                let payload = self.owed_pong.take().unwrap();
                if self.life == Life::Open {
                    pong = payload.len() + if self.server { 2 } else { 6 };
                    self.expected.push(Expect::Exact(Message::Pong(payload)));
                }
            }
            let after = self.conn.buffered_amount();
            if after != left + pong {
                self.fail(format!(
                    "consume({k}) of {before} bytes left {after} (a pong of {pong} expected)"
                ));
            }
            if n == 0 || k == 0 {
                return;
            }
        }
    }

    fn heard(&mut self) {
        match &mut self.timer {
            Some(t) => {
                t.last_heard = self.now;
                t.ping_sent = None;
            }
            None if self.keepalive => {
                self.timer = Some(TimerModel {
                    last_heard: self.now,
                    ping_sent: None,
                })
            }
            None => {}
        }
    }

    fn over_limit(&self) -> bool {
        self.conn.buffered_amount() > self.max_write
    }

    /// What a send of a data message or a ping/pong must return now (the payload was
    /// checked already).
    fn expect_send(&mut self, result: stdws::Result<()>, queued: Message) {
        let over = self.over_limit_before;
        match (&self.life, result) {
            (Life::Open, Ok(())) if !over => self.expected.push(Expect::Exact(queued)),
            (Life::Open, Err(Error::Capacity(CapacityError::WriteBufferFull))) if over => {}
            (Life::CloseSent | Life::Ended, Err(Error::AlreadyClosed)) => {}
            (Life::Closed(f), Err(Error::ConnectionClosed(g))) if *f == g => {
                self.life = Life::Ended;
            }
            (_, r) => self.fail(format!(
                "send of {} returned {r:?} (over the limit: {over})",
                short(&queued)
            )),
        }
    }

    fn send(&mut self, kind: u8, len: usize) {
        self.over_limit_before = self.over_limit();
        let owned = self.drive.owned;
        match kind {
            0 => {
                let text = text_of(len);
                let r = if owned {
                    self.conn.send(Message::Text(text.clone()))
                } else {
                    self.conn.send_text(&text)
                };
                self.expect_send(r, Message::Text(text));
            }
            1 => {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                let r = if owned {
                    self.conn.send(Message::Binary(data.clone()))
                } else {
                    self.conn.send_binary(&data)
                };
                self.expect_send(r, Message::Binary(data));
            }
            _ => {
                let payload = vec![b'p'; len];
                let message = if kind == 2 {
                    Message::Ping(payload.clone())
                } else {
                    Message::Pong(payload.clone())
                };
                let r = if owned || kind == 3 {
                    self.conn.send(message.clone())
                } else {
                    self.conn.ping(&payload)
                };
                if len > 125 {
                    if !matches!(r, Err(Error::InvalidInput(_))) {
                        self.fail(format!(
                            "a {len}-byte control payload was not refused: {r:?}"
                        ));
                    }
                } else {
                    self.expect_send(r, message);
                }
            }
        }
    }

    fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame::new(code, reason);
        let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) && reason.len() <= 123;
        let r = if self.drive.owned {
            self.conn.send(Message::Close(Some(frame.clone())))
        } else {
            self.conn.close(code, reason)
        };
        match (&self.life, r) {
            (Life::Open, Ok(())) if valid => {
                self.expected
                    .push(Expect::Exact(Message::Close(Some(frame))));
                self.life = Life::CloseSent;
            }
            (Life::Open, Err(Error::InvalidInput(_))) if !valid => {}
            (Life::CloseSent | Life::Closed(_), Ok(())) => {}
            (Life::Ended, Err(Error::AlreadyClosed)) => {}
            (_, r) => self.fail(format!(
                "close({code}, {} bytes) returned {r:?}",
                reason.len()
            )),
        }
    }

    fn on_timeout(&mut self) {
        let r = self.conn.on_timeout(self.now);
        let Some(timer) = &mut self.timer else {
            if !matches!(r, Ok(())) {
                self.fail(format!("on_timeout without a timer returned {r:?}"));
            }
            if self.keepalive {
                self.timer = Some(TimerModel {
                    last_heard: self.now,
                    ping_sent: None,
                });
            }
            return;
        };
        let tick = timer.tick(self.now);
        match (&self.life, tick, r) {
            (Life::Open, Tick::SendPing, Ok(())) => {
                // The output as it was before: the ping is skipped when over the limit.
                if !self.over_limit_before {
                    self.expected
                        .push(Expect::Exact(Message::Ping(b"keepalive".to_vec())));
                }
            }
            (Life::Open | Life::CloseSent, Tick::TimedOut, Err(Error::KeepAliveTimeout)) => {
                if self.life == Life::Open {
                    self.expected.push(Expect::CloseCode(1011));
                }
                self.life = Life::Ended;
                if self.ending.is_none() {
                    self.ending = Some(Ending::KeepAlive);
                }
            }
            (Life::Open | Life::CloseSent, Tick::TimedOut, r) => {
                self.fail(format!("on_timeout past the timeout returned {r:?}"))
            }
            (_, _, Ok(())) => {}
            (_, tick, r) => self.fail(format!("on_timeout ({tick:?}) returned {r:?}")),
        }
    }

    fn op(&mut self, b: u8) {
        self.over_limit_before = self.over_limit();
        let v = b & 0x3F;
        match b >> 6 {
            0 => self.consume(if v == 0 { usize::MAX } else { usize::from(v) }),
            1 => {
                self.now += Duration::from_millis(5 * u64::from(v));
                self.on_timeout();
            }
            2 => self.send(b & 3, usize::from((b >> 2) & 0x0F) * 9),
            _ => {
                let code = CLOSE_CODES[usize::from(b & 7)];
                let reason = text_of(usize::from((b >> 3) & 7) * 20);
                self.close(code, &reason);
            }
        }
    }

    /// Polls until more input is needed or the reading side ends.
    fn poll_all(&mut self) {
        while self.ending.is_none() {
            let before = self.life.clone();
            self.over_limit_before = self.over_limit();
            match self.conn.poll() {
                Ok(None) => return,
                Ok(Some(m)) => self.on_message(m),
                Err(e) => {
                    self.on_error(&before, &e);
                    self.ending = Some(Ending::Failed(format!("{e:?}")));
                }
            }
        }
    }

    fn on_message(&mut self, m: Message) {
        let max_message = self.config.max_message_size.unwrap_or(usize::MAX);
        match &m {
            Message::Text(t) if t.len() > max_message => self.fail("text over the limit".into()),
            Message::Binary(b) if b.len() > max_message => {
                self.fail("binary over the limit".into())
            }
            Message::Ping(p) | Message::Pong(p) if p.len() > 125 => {
                self.fail("control payload over 125 bytes".into())
            }
            Message::Close(Some(f)) if !f.code.is_valid() || f.reason.len() > 123 => {
                self.fail(format!("invalid close frame returned: {f:?}"))
            }
            _ => {}
        }
        if !matches!(self.life, Life::Open | Life::CloseSent) {
            self.fail(format!("poll() returned {} after the end", short(&m)));
        }
        self.got.push(m.clone());
        match m {
            Message::Ping(p) => {
                if self.life == Life::Open {
                    // The output as it was before `poll`, which queued the pong or not.
                    if self.over_limit_before {
                        self.owed_pong = Some(p.clone());
                    } else {
                        self.expected.push(Expect::Exact(Message::Pong(p.clone())));
                    }
                }
                // A ping starting with '!' makes us start the closing handshake.
                if p.first() == Some(&b'!') {
                    self.close(1000, "bye");
                }
            }
            Message::Pong(_) => {}
            Message::Close(f) => {
                if self.life == Life::Open {
                    let reply = f.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.expected.push(Expect::Exact(Message::Close(reply)));
                }
                self.life = Life::Closed(f);
                self.ending = Some(Ending::Close);
            }
            data => {
                // Echo: by value (the allocation is recycled) or by slice.
                self.over_limit_before = self.over_limit();
                let r = match (&data, self.drive.owned) {
                    (_, true) => self.conn.send(data.clone()),
                    (Message::Text(t), false) => self.conn.send_text(t),
                    (Message::Binary(b), false) => self.conn.send_binary(b),
                    _ => unreachable!(),
                };
                self.expect_send(r, data);
            }
        }
    }

    /// `poll` failed with `e` in state `before`.
    fn on_error(&mut self, before: &Life, e: &Error) {
        match (before, e) {
            (Life::Closed(f), Error::ConnectionClosed(g)) if f == g => self.life = Life::Ended,
            (Life::Ended, Error::AlreadyClosed) => {}
            (Life::Open | Life::CloseSent, Error::AbnormalClosure) => self.life = Life::Ended,
            (
                Life::Open | Life::CloseSent,
                Error::Protocol(_) | Error::Utf8 | Error::Capacity(_),
            ) => {
                let Some(code) = e.close_code() else {
                    self.fail(format!("{e:?} has no close code"));
                };
                if *before == Life::Open {
                    self.expected.push(Expect::CloseCode(code.as_u16()));
                }
                self.failure_code = Some(code.as_u16());
                self.life = Life::Ended;
            }
            _ => self.fail(format!("poll() failed with {e:?} in state {before:?}")),
        }
    }

    /// How far the output may pass `max_write_buffer_size`: nothing but close frames is
    /// queued while it is over the limit (a ping's pong waits, sends fail, no keep-alive
    /// ping), so by one frame queued while under it (a whole, possibly fragmented, message,
    /// or a pong of at most 131 bytes) and one close frame (at most 139 bytes), however
    /// much input arrived.
    fn allowance(&self) -> usize {
        let message = self.config.max_message_size.unwrap_or(1 << 20).min(1 << 20);
        let frag = self.config.fragment_size.unwrap_or(usize::MAX).max(1);
        let framed = message + 14 * (message / frag + 1);
        framed.max(131) + 139
    }
}

/// Runs `conn` (a connection of `role` just built, or accepted with its 101 already
/// consumed) over `feed` (the peer's bytes not yet given to it) as `drive` says, checking it
/// against the reference decoder applied to `reference` (every byte the peer sent after the
/// handshake: what the connection holds already, then `feed`).
pub fn run(
    conn: Connection,
    drive: Drive<'_>,
    keepalive: bool,
    reference: &[u8],
    feed: &[u8],
    ctx: &str,
) -> RunResult {
    let role = conn.role();
    let config = conn.config().clone();
    let max_write = config.max_write_buffer_size;
    let max_frame = config.max_frame_size.map_or(u64::MAX, |n| n as u64);
    let max_message = config.max_message_size.map_or(u64::MAX, |n| n as u64);
    let mut run = Run {
        conn,
        server: role == Role::Server,
        max_write,
        drive,
        now: base(),
        life: Life::Open,
        keepalive,
        timer: None,
        expected: Vec::new(),
        written: Vec::new(),
        got: Vec::new(),
        ending: None,
        ctx: format!("{ctx}; role {role:?}, drive {drive:?}"),
        config,
        failure_code: None,
        over_limit_before: false,
        owed_pong: None,
    };
    let read_buf_max = (128usize << 10).max(max_frame.min(1 << 30) as usize);
    run.check_invariants(0);

    // Feed, poll, act.
    let (mut pos, mut ci, mut oi) = (0usize, 0usize, 0usize);
    let mut eof_sent = false;
    // Buffered input (read with the handshake) is there before any read.
    run.poll_all();
    while run.ending.is_none() {
        // Reading pauses while the output is over the limit: a driver writes first.
        if run.over_limit() {
            run.consume(usize::MAX);
        }
        if pos == feed.len() {
            // The input ran out: the ops once more each (time passes with nothing heard,
            // so keep-alive can time out), then EOF.
            for _ in 0..drive.ops.len() {
                if run.ending.is_some() {
                    break;
                }
                let b = drive.ops[oi % drive.ops.len()];
                oi += 1;
                run.op(b);
                run.poll_all();
                run.check_invariants(run.allowance());
            }
            if run.ending.is_some() {
                break;
            }
            if drive.eof && !eof_sent {
                eof_sent = true;
                run.conn.filled(0, run.now);
                run.poll_all();
                run.check_invariants(run.allowance());
            }
            break;
        }
        let want = match drive.chunks.get(ci % drive.chunks.len().max(1)) {
            None | Some(0) => usize::MAX,
            Some(&b) => usize::from(b),
        };
        ci += 1;
        let room = run.conn.read_buf();
        if room.is_empty() || room.len() > read_buf_max {
            let len = room.len();
            run.fail(format!("read_buf() of {len} bytes"));
        }
        let n = want.min(room.len()).min(feed.len() - pos);
        room[..n].copy_from_slice(&feed[pos..pos + n]);
        pos += n;
        run.conn.filled(n, run.now);
        run.heard();
        run.poll_all();
        run.check_invariants(run.allowance());
        if !drive.ops.is_empty() && run.ending.is_none() {
            let b = drive.ops[oi % drive.ops.len()];
            oi += 1;
            run.op(b);
            run.check_invariants(run.allowance());
        }
    }
    let ending = run.ending.clone().unwrap_or(Ending::Pending);
    if ending == Ending::Pending {
        // Nothing more without more input.
        match run.conn.poll() {
            Ok(None) => {}
            other => run.fail(format!("poll() with no more input returned {other:?}")),
        }
    }

    // The oracle for what was read.
    let reference_decoded = decode(reference, run.server, max_frame, max_message);
    if crate::debug() {
        eprintln!(
            "[stdws-fuzz] proto {}: {} messages, {ending:?}, reference {:?}, {} frames expected out",
            run.ctx,
            run.got.len(),
            reference_decoded.end,
            run.expected.len()
        );
    }
    let same_prefix = run.got.len() <= reference_decoded.messages.len()
        && run
            .got
            .iter()
            .zip(&reference_decoded.messages)
            .all(|(a, b)| a == b);
    let all = same_prefix && run.got.len() == reference_decoded.messages.len();
    let agrees = match (&ending, &reference_decoded.end) {
        (Ending::KeepAlive, _) => same_prefix,
        (Ending::Pending, End::Eof { .. }) => all && !drive.eof,
        (Ending::Close, End::Closed { .. }) => all,
        (Ending::Failed(_), End::Eof { .. }) => {
            all && eof_sent
                && matches!(&run.ending, Some(Ending::Failed(s)) if s == "AbnormalClosure")
        }
        (Ending::Failed(_), End::Error(code)) => all && run.failure_code == Some(*code),
        _ => false,
    };
    if !agrees {
        run.fail(format!(
            "the connection ended {ending:?}; the reference decoder ended {:?} after {} messages: {}",
            reference_decoded.end,
            reference_decoded.messages.len(),
            reference_decoded
                .messages
                .iter()
                .map(short)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // After the end: the rest of the ops (each once), then poll keeps failing, and input
    // that keeps coming is not kept.
    if ending != Ending::Pending {
        for &b in drive.ops {
            run.op(b);
            run.check_invariants(run.allowance());
        }
        for _ in 0..2 {
            let before = run.life.clone();
            match run.conn.poll() {
                Ok(m) => run.fail(format!("poll() after the end returned {m:?}")),
                Err(e) => run.on_error(&before, &e),
            }
        }
        if run.life != Life::Ended {
            run.fail("the end was not reported".into());
        }
        let heap = live_bytes();
        let mut rest = &feed[pos.min(feed.len())..];
        let mut fed = 0usize;
        let target = if drive.probe_growth {
            256 << 10
        } else {
            rest.len()
        };
        while fed < target || !rest.is_empty() {
            let room = run.conn.read_buf();
            if room.is_empty() || room.len() > read_buf_max {
                let len = room.len();
                run.fail(format!("read_buf() of {len} bytes after the end"));
            }
            let n = room.len().min(16 << 10);
            let take = n.min(rest.len());
            room[..take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            run.conn.filled(n, run.now);
            fed += n;
            if !matches!(run.conn.poll(), Err(Error::AlreadyClosed)) {
                run.fail("poll() after the end did not fail with AlreadyClosed".into());
            }
        }
        let grown = live_bytes().saturating_sub(heap);
        if grown > 96 << 10 {
            run.fail(format!(
                "the heap grew by {grown} bytes while {fed} bytes were fed after the end"
            ));
        }
    }

    // The oracle for what was written.
    run.consume(usize::MAX);
    run.check_invariants(0);
    let written = decode(&run.written, !run.server, u64::MAX, u64::MAX);
    let ok = !matches!(written.end, End::Error(_))
        && matches!(
            written.end,
            End::Eof { clean: true } | End::Closed { trailing: 0 }
        )
        && written.messages.len() == run.expected.len()
        && run
            .expected
            .iter()
            .zip(&written.messages)
            .all(|(e, m)| e.matches(m));
    if !ok {
        run.fail(format!(
            "wrote {} frames [{}] ending {:?}, expected [{}]",
            written.messages.len(),
            written
                .messages
                .iter()
                .map(short)
                .collect::<Vec<_>>()
                .join(", "),
            written.end,
            run.expected
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    RunResult {
        messages: run.got,
        ending,
    }
}

/// Checks that two runs of the same bytes, chopped differently, read the same: the same
/// messages and the same end (unless keep-alive ended one of them, which depends on time).
pub fn check_same(a: &RunResult, b: &RunResult, what: &str) {
    if a.ending == Ending::KeepAlive || b.ending == Ending::KeepAlive {
        let n = a.messages.len().min(b.messages.len());
        assert_eq!(a.messages[..n], b.messages[..n], "{what}: messages differ");
        return;
    }
    assert!(
        a.messages == b.messages && a.ending == b.ending,
        "{what}: the chopping changed what was read: {} messages ending {:?} vs {} messages ending {:?}",
        a.messages.len(),
        a.ending,
        b.messages.len(),
        b.ending
    );
}

/// A `Config` for the targets from four bits: fragment 7, tight limits (frame 300,
/// message 700), 256-byte read buffer, small max_write_buffer_size (64 bytes).
pub fn config(fragment: bool, tight: bool, small_read: bool, small_write: bool) -> Config {
    let (frame, message) = if tight {
        (300, 700)
    } else {
        (crate::LIMIT, crate::LIMIT)
    };
    Config::default()
        .max_frame_size(Some(frame))
        .max_message_size(Some(message))
        .read_buffer_size(if small_read { 1 } else { 4096 })
        .fragment_size(fragment.then_some(7))
        .max_write_buffer_size(if small_write { 64 } else { 4096 })
}

/// Adds keep-alive to `config`.
pub fn with_keepalive(config: Config, on: bool) -> Config {
    config.keepalive(on.then_some(KEEPALIVE))
}
