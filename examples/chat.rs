//! Chat room: one port serves a web page and a WebSocket endpoint, and every message a
//! participant sends is broadcast to everyone connected.
//!
//! ```text
//! cargo run --release --example chat [ADDR] [--max-connections N] [--shutdown-after SECS]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:8080` (port 0 picks a free port; the address is logged).
//! Open `http://127.0.0.1:8080/` in two browser windows. `GET /` is a self-contained page
//! (inline CSS and JS); the page connects to `ws://<host>/ws`.
//!
//! - **Threads.** One per TCP connection reads the HTTP request, then, for a WebSocket,
//!   becomes the connection's reader: it handles pings, closes and keep-alive, and
//!   broadcasts what the participant says. Messages go out through a [`Fanout`]: a
//!   broadcast is framed once and queued for everyone, and the fanout's writer threads (one
//!   per CPU) write the queues out. One thread and one descriptor per participant.
//! - **Bounded queues.** Broadcasting never blocks. A participant with more than `BUDGET`
//!   bytes waiting in the server (beyond its socket buffers), or whose socket takes nothing
//!   for 5 s, is too slow: it is cut (close 1008, then the socket is shut down) instead of
//!   stalling the room, and leaves it.
//! - **Origin.** A browser's `Origin` must be `http://<Host header>`; other origins get 403
//!   (cross-site WebSocket hijacking, RFC 6455 §10.2). Requests without `Origin` come from
//!   non-browser clients and are allowed.
//! - **Limits.** `--max-connections N` (default 1000) participants at once; the next one is
//!   answered 503. Connections still reading their request (page loads, handshakes) are
//!   capped at `N + EXTRA_CONNECTIONS` threads; beyond that they are closed unanswered.
//! - **Graceful shutdown.** Typing `quit` (or end of input) when stdin is a terminal, or
//!   `--shutdown-after SECS`: stop accepting, send close 1001 "server shutting down" to
//!   everyone, wait up to 5 s for the closing handshakes, shut the rest down, exit 0.
//!
//! Connects, disconnects and errors are logged to stderr.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use stdws::{
    Config, Error, Fanout, FanoutConfig, IncomingRequest, KeepAlive, Message, PreparedMessage,
    Rejection, Request, Subscription, Topic, WriteHalf,
};

/// Stack size of every connection thread. 64 KiB is plenty: nothing on these threads is
/// recursive, and every buffer lives on the heap (the request head, the 4 KiB read buffer,
/// messages, the JSON we build), so what the stack holds is a handful of frames for the
/// handshake, a read or a send, and formatting a log line. Measured with `tests/e2e/run`'s
/// checks: a release build passes with 16 KiB, a debug build (bigger, unoptimised frames)
/// with 32 KiB but not 16. 1000 participants (1000 threads) then reserve 63 MiB of address
/// space instead of 16 GiB at the default 8 MiB, and only touched pages use memory. (A panic
/// that prints a backtrace needs more: one more reason not to panic on these threads.)
const STACK_SIZE: usize = 64 * 1024;
/// How long a client may take to send its HTTP request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping a participant that was silent this long...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and drop it if the pong (or anything else) does not come within this.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds the handshake's writes (the answer to the request).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes queued for one participant in the server before it counts as too slow.
const BUDGET: usize = 256 * 1024;
/// Largest message a participant may send, in bytes (the page allows 1000 characters).
const MAX_MESSAGE: usize = 4096;
/// How long a graceful shutdown waits for the closing handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connection threads allowed beyond `--max-connections`, for page loads and for answering
/// 503 to the participants who do not fit.
const EXTRA_CONNECTIONS: usize = 64;

/// The close a graceful shutdown sends.
const GOING_AWAY: (u16, &str) = (1001, "server shutting down");

struct Server {
    room: Mutex<Room>,
    /// What the room says goes to everyone through this.
    everyone: Topic,
    /// Set once when the shutdown starts (also checked under the room lock on join).
    stopping: AtomicBool,
    /// Connection threads alive; the shutdown waits for it to reach zero.
    threads: Mutex<usize>,
    threads_done: Condvar,
    /// Participants (WebSocket connections) at the moment, against `max_connections`.
    participants: AtomicUsize,
    max_connections: usize,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Room {
    clients: HashMap<u64, Client>,
}

/// A participant as the room sees it.
struct Client {
    name: String,
    /// Its place in `everyone` (dropping it unsubscribes).
    subscription: Subscription,
    /// The writing half, to close the connection in a shutdown.
    writer: WriteHalf,
}

/// Locks a mutex; a panicked holder leaves data that is still consistent here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Args {
    addr: String,
    max_connections: usize,
    shutdown_after: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".to_owned(),
        max_connections: 1000,
        shutdown_after: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--max-connections" => {
                let v = value("--max-connections")?;
                args.max_connections = v
                    .parse()
                    .map_err(|_| format!("--max-connections: not a number: {v}"))?;
            }
            "--shutdown-after" => {
                let v = value("--shutdown-after")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or(format!("--shutdown-after: not a number of seconds: {v}"))?;
                args.shutdown_after = Some(Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => {
                return Err(String::new());
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            addr => args.addr = addr.to_owned(),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("chat: {e}");
            }
            eprintln!(
                "usage: chat [ADDR] [--max-connections N] [--shutdown-after SECS]   \
                 (default ADDR 127.0.0.1:8080)"
            );
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&args.addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chat: cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("chat: listening on http://{local}/");
    let fanout: Fanout = match Fanout::new(FanoutConfig::default().budget(BUDGET)) {
        Ok(fanout) => fanout,
        Err(e) => {
            eprintln!("chat: cannot start the writer threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = Arc::new(Server {
        room: Mutex::new(Room::default()),
        everyone: fanout.topic(),
        stopping: AtomicBool::new(false),
        threads: Mutex::new(0),
        threads_done: Condvar::new(),
        participants: AtomicUsize::new(0),
        max_connections: args.max_connections,
        next_id: AtomicU64::new(1),
    });

    if std::io::stdin().is_terminal() {
        let server = Arc::clone(&server);
        eprintln!("chat: type quit (or Ctrl-D) to stop");
        thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) if line.trim() == "quit" => break,
                    Ok(_) => eprintln!("chat: type quit to stop"),
                    Err(_) => break,
                }
            }
            begin_shutdown(&server, local);
        });
    }
    if let Some(after) = args.shutdown_after {
        let server = Arc::clone(&server);
        thread::spawn(move || {
            thread::sleep(after);
            begin_shutdown(&server, local);
        });
    }

    accept_loop(&server, &listener);
    drop(listener);
    finish_shutdown(&server);
    ExitCode::SUCCESS
}

/// Accepts connections until the shutdown starts, one thread each.
fn accept_loop(server: &Arc<Server>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if server.stopping.load(Ordering::SeqCst) {
            return; // `begin_shutdown` connected to us to get here
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, say: do not spin on it.
                eprintln!("chat: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let slot = ThreadSlot::take(server);
        if slot.count > server.max_connections + EXTRA_CONNECTIONS {
            // Not even a 503: answering means a thread reading the request. The client
            // sees the connection close.
            eprintln!("chat: too many connections, closing one unanswered");
            continue;
        }
        let server = Arc::clone(server);
        let spawned = thread::Builder::new()
            .name("chat-conn".to_owned())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _slot = slot; // released when the thread ends, however it ends
                handle(&server, stream);
            });
        if let Err(e) = spawned {
            // The closure (stream and slot) was dropped: the connection is closed.
            eprintln!("chat: cannot start a thread: {e}");
        }
    }
}

/// Counts a connection thread for its lifetime.
struct ThreadSlot {
    server: Arc<Server>,
    /// Threads alive including this one, when it was taken.
    count: usize,
}

impl ThreadSlot {
    fn take(server: &Arc<Server>) -> ThreadSlot {
        let mut n = lock(&server.threads);
        *n += 1;
        ThreadSlot {
            server: Arc::clone(server),
            count: *n,
        }
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        *lock(&self.server.threads) -= 1;
        self.server.threads_done.notify_all();
    }
}

/// A participant's place under `--max-connections`, held for the connection's lifetime.
struct Seat<'a>(&'a AtomicUsize);

impl<'a> Seat<'a> {
    fn take(server: &'a Server) -> Option<Seat<'a>> {
        let n = &server.participants;
        let mut current = n.load(Ordering::SeqCst);
        loop {
            if current >= server.max_connections {
                return None;
            }
            match n.compare_exchange(current, current + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(Seat(n)),
                Err(actual) => current = actual,
            }
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One TCP connection: read the request, then serve the page or join the chat.
fn handle(server: &Server, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    // The read timeout bounds the handshake; the write timeout bounds every write for the
    // connection's lifetime (the socket's timeouts are shared by the two halves).
    let socket_options = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = socket_options {
        eprintln!("chat: {peer}: cannot set socket options: {e}");
        return;
    }
    let config = Config::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let incoming = match IncomingRequest::read(stream, config) {
        Ok(incoming) => incoming,
        Err(e) => {
            // Browsers open spare connections they may never use: a timeout is routine.
            eprintln!("chat: {peer}: no request: {e}");
            return;
        }
    };
    let result = match incoming.request().path() {
        "/" if incoming.request().method() == "GET" => {
            incoming.respond(200, "text/html; charset=utf-8", PAGE.as_bytes())
        }
        "/" => incoming.reject(Rejection::new(405, "Only GET here.\n").header("Allow", "GET")),
        "/ws" => return join(server, incoming, &peer),
        _ => incoming.respond(404, "text/plain; charset=utf-8", b"Not found.\n"),
    };
    if let Err(e) = result {
        eprintln!("chat: {peer}: cannot answer: {e}");
    }
}

/// Only pages served by this server may open the chat's WebSocket: a browser's `Origin` must
/// be this host, over `http`. A request without `Origin` is not from a browser (those always
/// send it for WebSockets) and could claim any origin anyway, so it is allowed.
fn check_origin(req: &Request) -> Result<(), Rejection> {
    let Some(origin) = req.origin() else {
        return Ok(());
    };
    let host = req.header("Host").unwrap_or("");
    let ours = origin
        .strip_prefix("http://")
        .is_some_and(|h| !host.is_empty() && h.eq_ignore_ascii_case(host));
    if ours {
        Ok(())
    } else {
        Err(Rejection::new(403, "Cross-origin WebSocket refused.\n"))
    }
}

/// Upgrades the request and runs the participant until it leaves.
fn join(server: &Server, incoming: IncomingRequest<TcpStream>, peer: &str) {
    if let Err(rejection) = check_origin(incoming.request()) {
        let origin = incoming.request().origin().unwrap_or("").to_owned();
        eprintln!("chat: {peer}: refused origin {origin:?} (403)");
        let _ = incoming.reject(rejection);
        return;
    }
    let Some(_seat) = Seat::take(server) else {
        eprintln!("chat: {peer}: room full (503)");
        let no =
            Rejection::new(503, "The chat is full; try again later.\n").header("Retry-After", "30");
        let _ = incoming.reject(no);
        return;
    };
    if server.stopping.load(Ordering::SeqCst) {
        let _ = incoming.reject(Rejection::new(503, "The server is shutting down.\n"));
        return;
    }
    // `accept` answers a request that is not a valid upgrade with the matching error
    // (400, 426, ...).
    let mut ws = match incoming.accept() {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("chat: {peer}: handshake failed: {e}");
            return;
        }
    };
    // The generic `accept` cannot set the socket's read timeout, so keep-alive is turned
    // on here, where the stream is known to be a `TcpStream`.
    ws.set_keepalive(Some(KeepAlive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)));
    let (mut reader, writer) = match ws.split() {
        Ok(halves) => halves,
        Err(e) => {
            eprintln!("chat: {peer}: cannot split the connection: {e}");
            return;
        }
    };
    // The handshake's read timeout is lifted: `read` waits for the keep-alive deadlines
    // by itself.
    if let Err(e) = reader.get_ref().set_read_timeout(None) {
        eprintln!("chat: {peer}: cannot clear the read timeout: {e}");
        return;
    }

    let id = server.next_id.fetch_add(1, Ordering::SeqCst);
    let name = format!("user-{id}");
    {
        let mut room = lock(&server.room);
        // Checked under the room lock, which the shutdown takes after setting the flag:
        // either we join before it empties the room, or we see the flag.
        if server.stopping.load(Ordering::SeqCst) {
            drop(room);
            let _ = writer.close(GOING_AWAY.0, GOING_AWAY.1);
            let _ = writer.shutdown();
            return;
        }
        let mut users: Vec<(u64, &str)> = room
            .clients
            .iter()
            .map(|(id, c)| (*id, c.name.as_str()))
            .collect();
        users.push((id, &name));
        users.sort_unstable();
        // The first thing the participant gets, before it joins the broadcasts (which the
        // room lock holds off); its socket is empty, so this does not wait.
        if let Err(e) = writer.send_text(&welcome(&name, users.iter().map(|u| u.1))) {
            drop(room);
            eprintln!("chat: {peer}: cannot welcome: {e}");
            let _ = writer.shutdown();
            return;
        }
        let subscription = match server.everyone.subscribe(writer.clone()) {
            Ok(subscription) => subscription,
            Err(e) => {
                drop(room);
                eprintln!("chat: {peer}: cannot subscribe: {e}");
                let _ = writer.shutdown();
                return;
            }
        };
        room.clients.insert(
            id,
            Client {
                name: name.clone(),
                subscription,
                writer: writer.clone(),
            },
        );
        broadcast_locked(server, &mut room, &event("join", &name));
    }
    eprintln!("chat: {peer}: {name} joined");

    let ended = loop {
        match reader.read() {
            Ok(Message::Text(text)) => {
                let text = text.trim();
                if !text.is_empty() {
                    let json = chat_message(&name, text);
                    let mut room = lock(&server.room);
                    // A participant dropped for being slow is cut soon; until then it is
                    // not heard either.
                    if room.clients.contains_key(&id) {
                        broadcast_locked(server, &mut room, &json);
                    }
                }
            }
            // The closing handshake is done (the library echoed the peer's close); the next
            // read reports `ConnectionClosed`.
            Ok(Message::Close(_)) => {}
            // Pings were answered by the library; the page sends no binary messages.
            Ok(_) => {}
            Err(Error::ConnectionClosed(frame)) => {
                break match frame {
                    Some(f) => format!("closed ({f})"),
                    None => "closed".to_owned(),
                }
            }
            Err(e) => break format!("error: {e}"),
        }
    };
    eprintln!("chat: {peer}: {name} left: {ended}");
    // The server closes TCP once the closing handshake is over (RFC 6455 §7.1.1), or cuts
    // a failed connection.
    let _ = writer.shutdown();
    leave(server, id, &name);
}

/// Removes a participant from the room and tells everyone else.
fn leave(server: &Server, id: u64, name: &str) {
    let mut room = lock(&server.room);
    room.clients.remove(&id);
    if !server.stopping.load(Ordering::SeqCst) {
        broadcast_locked(server, &mut room, &event("leave", name));
    }
}

/// Queues `text` for every participant without ever blocking (see [`Topic::broadcast`]):
/// one too slow to keep up is cut (close 1008, socket shut down) and removed from the room
/// here; its reader then ends and announces the leave.
fn broadcast_locked(server: &Server, room: &mut Room, text: &str) {
    let delivery = server.everyone.broadcast(&PreparedMessage::text(text));
    for id in delivery.dropped {
        if let Some(id) = room
            .clients
            .iter()
            .find(|(_, c)| c.subscription.id() == id)
            .map(|(id, _)| *id)
        {
            if let Some(client) = room.clients.remove(&id) {
                eprintln!("chat: {} is too slow, dropping it", client.name);
            }
        }
    }
}

/// Starts the graceful shutdown (once): stop accepting, and wake up `accept`.
fn begin_shutdown(server: &Server, local: SocketAddr) {
    if server.stopping.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!("chat: shutting down");
    let mut wake = local;
    if wake.ip().is_unspecified() {
        // Listening on 0.0.0.0 or [::]: connect over loopback.
        wake.set_ip(match local {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
        eprintln!("chat: cannot wake the accept loop: {e}");
    }
}

/// Closes every participant with 1001, waits up to `SHUTDOWN_GRACE` for the connection
/// threads to finish, then shuts down what is left.
fn finish_shutdown(server: &Server) {
    let writers: Vec<WriteHalf> = {
        let mut room = lock(&server.room);
        room.clients
            .drain()
            .map(|(_, client)| client.writer)
            .collect()
    };
    eprintln!(
        "chat: closing {} connection(s) with 1001 \"{}\"",
        writers.len(),
        GOING_AWAY.1
    );
    for writer in &writers {
        // Queued behind what is still unsent if the socket is full; the deadline below
        // bounds the wait for the answer either way.
        let _ = writer.close(GOING_AWAY.0, GOING_AWAY.1);
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let left = wait_for_threads(server, deadline);
    if left > 0 {
        eprintln!(
            "chat: {left} connection(s) still open after {SHUTDOWN_GRACE:?}, shutting them down"
        );
        // Wakes their readers (and a writer blocked in a send), which then end.
        for writer in &writers {
            let _ = writer.shutdown();
        }
        wait_for_threads(server, Instant::now() + Duration::from_secs(1));
    }
    eprintln!("chat: stopped");
}

/// Waits until no connection thread is left, or `deadline`; returns how many are left.
fn wait_for_threads(server: &Server, deadline: Instant) -> usize {
    let mut n = lock(&server.threads);
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        n = server
            .threads_done
            .wait_timeout(n, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    *n
}

// The messages the page understands, as JSON objects:
//   {"type":"welcome","name":"user-3","users":["user-1","user-3"]}   first, to the newcomer
//   {"type":"join","name":"user-3"}   {"type":"leave","name":"user-3"}
//   {"type":"msg","from":"user-3","text":"hello"}

fn welcome<'a>(name: &str, users: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from(r#"{"type":"welcome","name":"#);
    json_string(&mut out, name);
    out.push_str(r#","users":["#);
    for (i, user) in users.enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, user);
    }
    out.push_str("]}");
    out
}

fn event(kind: &str, name: &str) -> String {
    let mut out = format!(r#"{{"type":"{kind}","name":"#);
    json_string(&mut out, name);
    out.push('}');
    out
}

fn chat_message(from: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 48);
    out.push_str(r#"{"type":"msg","from":"#);
    json_string(&mut out, from);
    out.push_str(r#","text":"#);
    json_string(&mut out, text);
    out.push('}');
    out
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The page: no external assets. Everything received is put in the document with
/// `textContent`/`append(string)`, never parsed as HTML.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stdws chat</title>
<link rel="icon" href="data:,">
<style>
  * { box-sizing: border-box; }
  html, body { height: 100%; }
  body {
    margin: 0; display: flex; flex-direction: column;
    font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
    background: #f3f4f6; color: #111827;
  }
  header {
    display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap;
    padding: 12px 18px; background: #fff; border-bottom: 1px solid #e5e7eb;
  }
  h1 { font-size: 17px; margin: 0; }
  #status { font-size: 13px; color: #6b7280; }
  #status::before { content: "\25CF\00A0"; color: #d97706; }
  #status[data-state="open"]::before { color: #16a34a; }
  #status[data-state="closed"]::before { color: #dc2626; }
  #users { margin-left: auto; font-size: 13px; color: #6b7280; }
  main { flex: 1; overflow-y: auto; padding: 14px 18px; }
  #messages { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
  .msg {
    align-self: flex-start; max-width: 75%; padding: 6px 11px;
    background: #fff; border: 1px solid #e5e7eb; border-radius: 12px;
    white-space: pre-wrap; overflow-wrap: anywhere;
  }
  .msg.mine { align-self: flex-end; background: #dbeafe; border-color: #bfdbfe; }
  .from { font-weight: 600; }
  .notice { align-self: center; font-size: 13px; color: #6b7280; font-style: italic; }
  form { display: flex; gap: 8px; padding: 12px 18px; background: #fff; border-top: 1px solid #e5e7eb; }
  input {
    flex: 1; font: inherit; padding: 8px 11px;
    border: 1px solid #d1d5db; border-radius: 8px; outline-color: #2563eb;
  }
  button {
    font: inherit; font-weight: 600; padding: 8px 18px; border: 0; border-radius: 8px;
    background: #2563eb; color: #fff; cursor: pointer;
  }
  button:disabled { background: #9ca3af; cursor: default; }
</style>
</head>
<body>
<header>
  <h1>stdws chat</h1>
  <span id="status" data-state="connecting">connecting&hellip;</span>
  <span id="users"></span>
</header>
<main id="scroller"><ul id="messages" aria-live="polite"></ul></main>
<form id="form" autocomplete="off">
  <input id="input" maxlength="1000" placeholder="Type a message&hellip;" aria-label="message" disabled>
  <button id="send" disabled>Send</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const list = $("messages"), scroller = $("scroller"), input = $("input"), send = $("send");
const users = new Set();
let me = null;

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}
function showUsers() {
  $("users").textContent = users.size + " online: " + [...users].join(", ");
}
// Adds a line. Strings become text nodes (append never parses HTML).
function add(className, ...parts) {
  const atBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 8;
  const li = document.createElement("li");
  li.className = className;
  li.append(...parts);
  list.append(li);
  if (atBottom) scroller.scrollTop = scroller.scrollHeight;
}
function bold(text) {
  const b = document.createElement("span");
  b.className = "from";
  b.textContent = text;
  return b;
}

const ws = new WebSocket("ws://" + location.host + "/ws");
ws.onmessage = (event) => {
  const m = JSON.parse(event.data);
  switch (m.type) {
    case "welcome":
      me = m.name;
      m.users.forEach((u) => users.add(u));
      setStatus("open", "connected as " + me);
      input.disabled = send.disabled = false;
      input.focus();
      break;
    case "join": users.add(m.name); add("notice", m.name + " joined"); break;
    case "leave": users.delete(m.name); add("notice", m.name + " left"); break;
    case "msg": add(m.from === me ? "msg mine" : "msg", bold(m.from), ": " + m.text); break;
  }
  showUsers();
};
ws.onclose = (event) => {
  const why = event.reason ? event.reason + ", " : "";
  setStatus("closed", "disconnected (" + why + event.code + ")");
  input.disabled = send.disabled = true;
  users.clear();
  $("users").textContent = "";
  add("notice", "disconnected" + (event.reason ? ": " + event.reason : "") + " \u2014 reload to rejoin");
};
$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (text && ws.readyState === WebSocket.OPEN) {
    ws.send(text);
    input.value = "";
  }
  input.focus();
});
</script>
</body>
</html>
"##;
