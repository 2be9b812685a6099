//! Echo server over TLS (`wss://`): one thread per connection, echoes every text and binary
//! message.
//!
//! ```text
//! cargo run --release --features rustls --example tls_echo_server -- ADDR CERT.pem KEY.pem
//! ```
//!
//! CERT.pem holds the certificate chain (the server's certificate first), KEY.pem its private
//! key (PKCS#8, PKCS#1 or SEC1). For a local test certificate, for example:
//!
//! ```text
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
//!     -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
//!     -keyout key.pem -out cert.pem
//! cargo run --features rustls --example tls_echo_server -- 127.0.0.1:9443 cert.pem key.pem
//! ```
//!
//! A client must trust that certificate (`ClientBuilder::tls_config`). A client that says
//! nothing is dropped after 10 s of TLS and WebSocket handshake, an idle one once it ignores
//! a keep-alive ping (30 s + 30 s).

use std::net::{TcpListener, TcpStream};
use std::process::exit;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use stdws::tls::rustls::pki_types::pem::PemObject;
use stdws::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use stdws::tls::rustls::ServerConfig;
use stdws::{Config, Error, KeepAlive, Message};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key] = args.as_slice() else {
        eprintln!("usage: tls_echo_server ADDR CERT.pem KEY.pem");
        exit(2);
    };
    let tls = match server_config(cert, key) {
        Ok(tls) => Arc::new(tls),
        Err(e) => {
            eprintln!("tls_echo_server: {e}");
            exit(1);
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tls_echo_server: cannot listen on {addr}: {e}");
            exit(1);
        }
    };
    eprintln!("tls_echo_server: listening on wss://{addr}/");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let tls = Arc::clone(&tls);
                thread::spawn(move || serve(stream, tls));
            }
            Err(e) => eprintln!("tls_echo_server: accept failed: {e}"),
        }
    }
}

/// Loads the certificate chain and key from PEM files into a TLS server configuration.
fn server_config(cert: &str, key: &str) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {cert}"));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {key}: {e}"))?;
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("unusable certificate or key: {e}"))
}

fn serve(stream: TcpStream, tls: Arc<ServerConfig>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    if let Err(e) = stream.set_nodelay(true) {
        eprintln!("{peer}: cannot set TCP_NODELAY: {e}");
    }
    // `tls::accept_with` bounds the TLS and WebSocket handshakes with the handshake timeout
    // (as socket timeouts during the handshakes, so a silent client cannot hold this thread).
    let config = Config::default()
        .handshake_timeout(Some(HANDSHAKE_TIMEOUT))
        .keepalive(Some(KeepAlive::new(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)));
    let mut ws = match stdws::tls::accept_with(stream, tls, config, |_, _| Ok(())) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("{peer}: handshake failed: {e}");
            return;
        }
    };
    eprintln!("{peer}: connected");
    loop {
        let result = match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.write(msg),
            Ok(Message::Close(frame)) => {
                eprintln!("{peer}: closed by peer: {frame:?}");
                // End the TLS session cleanly too (best effort), then drop the connection.
                ws.get_mut().conn.send_close_notify();
                let _ = ws.flush();
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
