//! Line-based client: sends each line of stdin as a text message and prints each text
//! message it receives on its own line.
//!
//! ```text
//! cargo run --example client -- ws://127.0.0.1:9001/
//! ```
//!
//! On end of input it performs the closing handshake (1000) and exits 0 once the server's
//! close arrives. Any failure exits non-zero with a message on stderr.
//!
//! One thread reads stdin; the main thread owns the connection and wakes up from a short
//! read timeout to send what stdin produced (reads resume where they stopped).

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use stdws::{Error, Message};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client URL   (e.g. ws://127.0.0.1:9001/)");
        return ExitCode::from(2);
    };
    match run(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(url: &str) -> Result<(), Error> {
    let (mut ws, _) = stdws::connect(url)?;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))?;

    let (lines_tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
        // Dropping the sender tells the main thread that input ended.
    });

    let mut closing_since: Option<Instant> = None;
    loop {
        if closing_since.is_none() {
            loop {
                match lines.try_recv() {
                    Ok(line) => ws.send_text(&line)?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        ws.close(1000, "")?;
                        closing_since = Some(Instant::now());
                        break;
                    }
                }
            }
        }
        if closing_since.is_some_and(|t| t.elapsed() > CLOSE_TIMEOUT) {
            return Err(Error::Io(std::io::ErrorKind::TimedOut.into()));
        }
        match ws.read() {
            Ok(Message::Text(text)) => println!("{text}"),
            Ok(Message::Close(_)) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is_would_block() => {}
            Err(Error::ConnectionClosed(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
