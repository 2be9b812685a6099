//! Line-based client: sends each line of stdin as a text message and prints each text
//! message it receives on its own line.
//!
//! ```text
//! cargo run --example client -- URL [--proxy PROXY_URL] [--proxy-from-env] [--reconnect]
//!                                   [--header 'Name: value']... [--subprotocol P]...
//! cargo run --example client -- ws://127.0.0.1:9001/
//! ```
//!
//! On end of input it performs the closing handshake (1000) and exits 0 once the server's
//! close arrives. Any failure exits non-zero with a message on stderr; a command line it
//! cannot read exits 2.
//!
//! - `--proxy PROXY_URL`: connect through `http://[user:pass@]host:port` (HTTP CONNECT) or
//!   `socks5://[user:pass@]host:port` (SOCKS5, the proxy resolves the name).
//! - `--proxy-from-env`: take the proxy from `http_proxy`/`https_proxy`/`all_proxy`/
//!   `no_proxy` (either case), as curl does.
//! - `--header 'Name: value'`, `--subprotocol P`: request headers and offered subprotocols
//!   (repeatable).
//! - `--reconnect`: when the connection cannot be made or drops (the server closes it too),
//!   reconnect with exponential backoff and full jitter (1 s growing to 60 s), logging each
//!   retry on stderr. It exits only on end of input (0) or on a refusal that is not worth
//!   retrying, such as 401, 403 or 404 (non-zero). Lines typed while disconnected wait and
//!   are **sent after the reconnect**, in order; a line whose send failed because the
//!   connection dropped at that moment is reported on stderr as dropped
//!   (`client: dropped (connection lost): LINE`), not resent.
//!
//! Built with `--features rustls`, `wss://` URLs work too (through a proxy as well).
//!
//! One thread reads stdin; the main thread owns the connection and wakes up from a short
//! read timeout to send what stdin produced (reads resume where they stopped).

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use stdws::{ClientBuilder, CloseFrame, Error, Message, Socket, StopHandle, WebSocket};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
const USAGE: &str = "usage: client URL [--proxy PROXY_URL] [--proxy-from-env] [--reconnect] \
                     [--header 'Name: value']... [--subprotocol P]...   (e.g. ws://127.0.0.1:9001/)";

/// The command line.
struct Args {
    url: String,
    proxy: Option<String>,
    proxy_from_env: bool,
    reconnect: bool,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut url = None;
    let mut parsed = Args {
        url: String::new(),
        proxy: None,
        proxy_from_env: false,
        reconnect: false,
        headers: Vec::new(),
        subprotocols: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--proxy" => parsed.proxy = Some(value("--proxy")?),
            "--proxy-from-env" => parsed.proxy_from_env = true,
            "--reconnect" => parsed.reconnect = true,
            "--header" => {
                let header = value("--header")?;
                let (name, v) = header
                    .split_once(':')
                    .ok_or(format!("--header {header:?}: expected 'Name: value'"))?;
                parsed
                    .headers
                    .push((name.trim().to_owned(), v.trim().to_owned()));
            }
            "--subprotocol" => parsed.subprotocols.push(value("--subprotocol")?),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if url.is_none() => url = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if parsed.proxy.is_some() && parsed.proxy_from_env {
        return Err("--proxy and --proxy-from-env exclude each other".to_owned());
    }
    parsed.url = url.ok_or("no URL")?;
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("client: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = if args.reconnect {
        reconnect(&args)
    } else {
        once(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn builder(args: &Args) -> ClientBuilder {
    let mut builder = ClientBuilder::new(&args.url);
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    for protocol in &args.subprotocols {
        builder = builder.subprotocol(protocol);
    }
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(proxy);
    }
    if args.proxy_from_env {
        builder = builder.proxy_from_env();
    }
    builder
}

/// Reads stdin on its own thread; the channel closes at end of input, and `on_end` runs.
fn stdin_lines(on_end: impl FnOnce() + Send + 'static) -> Receiver<String> {
    let (lines_tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
        // Dropping the sender tells the main thread that input ended.
        drop(lines_tx);
        on_end();
    });
    lines
}

/// One connection, as without `--reconnect`: any failure is the end.
fn once(args: &Args) -> Result<(), Error> {
    #[cfg(feature = "rustls")]
    let (ws, _) = builder(args).connect_tls()?;
    #[cfg(not(feature = "rustls"))]
    let (ws, _) = builder(args).connect()?;
    let lines = stdin_lines(|| {});
    match session(ws, &lines, false) {
        Ended::InputDone | Ended::ServerClosed(_) => Ok(()),
        Ended::Lost(e) => Err(e),
    }
}

/// `--reconnect`: a connection after another until input ends or a refusal is final.
fn reconnect(args: &Args) -> Result<(), Error> {
    #[cfg(feature = "rustls")]
    let connections = builder(args).reconnecting_tls();
    #[cfg(not(feature = "rustls"))]
    let connections = builder(args).reconnecting();
    let connections =
        connections.on_retry(|error, delay| eprintln!("client: {error}; retrying in {delay:.1?}"));
    // End of input while disconnected stops the waiting at once.
    let stop: Arc<Mutex<Option<StopHandle>>> =
        Arc::new(Mutex::new(Some(connections.stop_handle())));
    let lines = stdin_lines(move || {
        if let Some(stop) = stop.lock().unwrap().take() {
            stop.stop();
        }
    });
    for connection in connections {
        let (ws, _) = connection?; // not worth retrying: the end
        eprintln!("client: connected");
        match session(ws, &lines, true) {
            Ended::InputDone => return Ok(()),
            Ended::ServerClosed(frame) => {
                let why = frame.map_or("no status".to_owned(), |f| f.to_string());
                eprintln!("client: the server closed the connection ({why}); reconnecting");
            }
            Ended::Lost(e) => eprintln!("client: connection lost: {e}; reconnecting"),
        }
    }
    // Stopped: input ended while disconnected.
    Ok(())
}

/// How a session ended.
enum Ended {
    /// Input ended and the closing handshake is done (or the server closed meanwhile).
    InputDone,
    /// The server closed the connection (closing handshake done) while input goes on.
    ServerClosed(Option<CloseFrame>),
    /// The connection failed.
    Lost(Error),
}

/// Sends stdin's lines and prints what arrives until input ends or the connection does;
/// `report_dropped`: say on stderr which line a failed send lost.
fn session<S: Read + Write + Socket>(
    mut ws: WebSocket<S>,
    lines: &Receiver<String>,
    report_dropped: bool,
) -> Ended {
    if let Err(e) = ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))
    {
        return Ended::Lost(e.into());
    }
    let mut closing_since: Option<Instant> = None;
    loop {
        if closing_since.is_none() {
            loop {
                match lines.try_recv() {
                    Ok(line) => {
                        if let Err(e) = ws.send_text(&line) {
                            if report_dropped {
                                eprintln!("client: dropped (connection lost): {line}");
                            }
                            return Ended::Lost(e);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if let Err(e) = ws.close(1000, "") {
                            return Ended::Lost(e);
                        }
                        closing_since = Some(Instant::now());
                        break;
                    }
                }
            }
        }
        if closing_since.is_some_and(|t| t.elapsed() > CLOSE_TIMEOUT) {
            return Ended::Lost(Error::Io(std::io::ErrorKind::TimedOut.into()));
        }
        let closed = match ws.read() {
            Ok(Message::Text(text)) => {
                println!("{text}");
                continue;
            }
            Ok(Message::Close(frame)) => frame,
            Ok(_) => continue,
            Err(e) if e.is_would_block() => continue,
            Err(Error::ConnectionClosed(frame)) => frame,
            Err(e) => return Ended::Lost(e),
        };
        // A clean close: the end if we asked for it.
        return if closing_since.is_some() {
            Ended::InputDone
        } else {
            Ended::ServerClosed(closed)
        };
    }
}
