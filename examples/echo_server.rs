//! Echo server: one thread per connection, echoes every text and binary message.
//!
//! ```text
//! cargo run --release --example echo_server [ADDR]     # default 127.0.0.1:9001
//! ```
//!
//! Accepts any path. Logs connects, disconnects and errors to stderr. This is the testee for
//! the Autobahn|Testsuite's fuzzing client. A silent client is dropped after 10 s during the
//! handshake, and an idle one once it ignores a keep-alive ping (30 s + 30 s).

use std::thread;
use std::time::Duration;

use stdws::{Config, Error, KeepAlive, Message, PendingConnection, Server};

const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    // Idle connections are bounded by keep-alive: after KEEPALIVE_INTERVAL of silence `read`
    // pings the client, and fails the connection (1011) if it stays silent for
    // KEEPALIVE_TIMEOUT more; `read` waits for these deadlines by itself. The
    // handshake is bounded by Config::handshake_timeout (10 s by default).
    let config =
        Config::default().keepalive(Some(KeepAlive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)));
    // Built with `--features deflate`, accept permessage-deflate offers.
    #[cfg(feature = "deflate")]
    let config = config.deflate(Some(stdws::DeflateConfig::default()));
    let server = match Server::bind(&addr) {
        Ok(server) => server.config(config),
        Err(e) => {
            eprintln!("echo_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("echo_server: listening on ws://{addr}/");
    for pending in server.incoming() {
        match pending {
            Ok(pending) => {
                thread::spawn(move || serve(pending));
            }
            Err(e) => eprintln!("echo_server: accept failed: {e}"),
        }
    }
}

fn serve(pending: PendingConnection) {
    let peer = pending.peer_addr();
    let mut ws = match pending.accept() {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("{peer}: handshake failed: {e}");
            return;
        }
    };
    eprintln!("{peer}: connected");
    loop {
        // `write` queues the echo; `read` sends queued echoes before it waits for input,
        // so a burst of messages is answered with one system call.
        let result = match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.write(msg),
            Ok(Message::Close(frame)) => {
                eprintln!("{peer}: closed by peer: {frame:?}");
                return;
            }
            Ok(_) => Ok(()), // pings are answered by the library
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            Err(Error::ConnectionClosed(_)) => {
                eprintln!("{peer}: disconnected");
                return;
            }
            Err(e) => {
                eprintln!("{peer}: error: {e}");
                return;
            }
        }
    }
}
