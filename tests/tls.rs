//! `wss://` with the `rustls` feature: both roles over 127.0.0.1, with certificates made
//! here by rcgen (no network, no files), and the certificates a client must refuse.

#![cfg(feature = "rustls")]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use stdws::tls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use stdws::tls::rustls::{self, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use stdws::tls::MaybeTlsStream;
use stdws::{ClientBuilder, Config, Error, HandshakeError, Message, WebSocket};

/// Bounds every blocking call in these tests.
const LIMIT: Duration = Duration::from_secs(10);

/// A test CA, and server certificates it signs.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stdws test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server configuration whose certificate, signed by this CA, is valid for `names`.
    fn server(&self, names: &[&str]) -> Arc<ServerConfig> {
        let params = names_params(names);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        server_config(cert, &key)
    }

    /// A client configuration that trusts only this CA.
    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn names_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    CertificateParams::new(names).unwrap()
}

fn server_config(cert: CertificateDer<'static>, key: &KeyPair) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Arc::new(
        ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    )
}

/// A server that accepts one connection on 127.0.0.1 and runs `handler` on it, with
/// timeouts on the socket so that no test can hang.
fn serve_one<R, F>(handler: F) -> (u16, JoinHandle<R>)
where
    R: Send + 'static,
    F: FnOnce(TcpStream) -> R + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        handler(stream)
    });
    (port, handle)
}

/// Echoes data messages until the closing handshake is done; returns what it read.
fn echo<T: std::io::Read + std::io::Write>(ws: &mut WebSocket<T>) -> stdws::Result<Vec<Message>> {
    let mut seen = Vec::new();
    loop {
        let msg = ws.read()?;
        seen.push(msg.clone());
        match msg {
            Message::Text(_) | Message::Binary(_) => ws.send(msg)?,
            Message::Close(_) => return Ok(seen),
            _ => {}
        }
    }
}

/// A TLS echo server for one connection.
fn tls_echo_server(tls: Arc<ServerConfig>) -> (u16, JoinHandle<stdws::Result<Vec<Message>>>) {
    serve_one(move |stream| {
        let mut ws = stdws::tls::accept(stream, tls)?;
        echo(&mut ws)
    })
}

fn connect_wss(url: &str, trust: Arc<ClientConfig>) -> stdws::Result<WebSocket<MaybeTlsStream>> {
    let (ws, response) = ClientBuilder::new(url).tls_config(trust).connect_tls()?;
    assert_eq!(response.status(), 101);
    ws.get_ref().tcp().set_read_timeout(Some(LIMIT)).unwrap();
    Ok(ws)
}

/// Sends text, binary and a large binary message (many TLS records) and checks the echoes.
fn exchange(ws: &mut WebSocket<MaybeTlsStream>) -> Vec<Message> {
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let sent = vec![
        Message::Text("hello over TLS".into()),
        Message::Binary(vec![0, 1, 2, 255]),
        Message::Binary(big),
    ];
    for msg in &sent {
        ws.send(msg.clone()).unwrap();
        assert_eq!(&ws.read().unwrap(), msg);
    }
    sent
}

fn close_code(frame: &Option<stdws::CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| f.code.as_u16())
}

#[test]
fn wss_echo_in_both_roles_by_name_and_by_ip() {
    let ca = Ca::new();
    let tls = ca.server(&["localhost", "127.0.0.1"]);
    for host in ["localhost", "127.0.0.1"] {
        let (port, server) = tls_echo_server(Arc::clone(&tls));
        let mut ws = connect_wss(&format!("wss://{host}:{port}/echo"), ca.client()).unwrap();
        assert!(ws.get_ref().is_tls());
        let sent = exchange(&mut ws);
        let reply = ws
            .close_and_wait(1000, "done", Duration::from_secs(5))
            .unwrap();
        assert_eq!(close_code(&reply), Some(1000));
        let mut seen = server.join().unwrap().unwrap();
        assert_eq!(
            seen.pop(),
            Some(Message::Close(Some(stdws::CloseFrame::new(1000, "done"))))
        );
        assert_eq!(seen, sent, "{host}");
    }
}

#[test]
fn server_close_and_wait_over_tls() {
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| -> stdws::Result<_> {
        let mut ws = stdws::tls::accept(stream, tls)?;
        let first = ws.read()?;
        let reply = ws.close_and_wait(1001, "going away", Duration::from_secs(5))?;
        Ok((first, reply))
    });
    let mut ws = connect_wss(&format!("wss://localhost:{port}/"), ca.client()).unwrap();
    ws.send_text("one").unwrap();
    match ws.read().unwrap() {
        Message::Close(frame) => assert_eq!(close_code(&frame), Some(1001)),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed(_))));
    let (first, reply) = server.join().unwrap().unwrap();
    assert_eq!(first, Message::Text("one".into()));
    assert_eq!(close_code(&reply), Some(1001));
}

/// Client side of the close tests: one echoed text, then `close_and_wait`, which must see
/// the server's 1000.
fn echo_one_then_close_and_wait(port: u16, ca: &Ca) {
    let mut ws = connect_wss(&format!("wss://localhost:{port}/"), ca.client()).unwrap();
    ws.send_text("x").unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("x".into()));
    let reply = ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    assert_eq!(close_code(&reply), Some(1000));
}

#[test]
fn client_close_and_wait_sees_a_clean_end_after_close_notify() {
    // The server ends the TLS session with close_notify after the closing handshake, as the
    // example does; the client's close_and_wait must end without an error either way.
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| -> stdws::Result<_> {
        let mut ws = stdws::tls::accept(stream, tls)?;
        let seen = echo(&mut ws)?;
        ws.get_mut().conn.send_close_notify();
        ws.flush()?;
        Ok(seen)
    });
    echo_one_then_close_and_wait(port, &ca);
    assert_eq!(server.join().unwrap().unwrap().len(), 2);
}

#[test]
fn close_and_wait_ends_the_tls_session_with_close_notify() {
    // rustls's server stream reports a TCP end without close_notify as UnexpectedEof; after
    // the client's close_and_wait it must read a clean end instead.
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| -> stdws::Result<_> {
        let mut ws = stdws::tls::accept(stream, tls)?;
        let seen = echo(&mut ws)?;
        let mut rest = Vec::new();
        let end = std::io::Read::read_to_end(ws.get_mut(), &mut rest);
        Ok((seen, end.map_err(|e| e.kind())))
    });
    echo_one_then_close_and_wait(port, &ca);
    let (seen, end) = server.join().unwrap().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(end, Ok(0), "the server saw the TLS session end cleanly");
}

#[test]
fn close_and_wait_through_a_mut_reference_sends_close_notify() {
    // A WebSocket over `&mut StreamOwned<..>` (the caller keeps the TLS stream): its
    // close_and_wait must end the session with close_notify like one that owns the stream,
    // so the rustls server reads a clean end, not UnexpectedEof.
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| -> stdws::Result<_> {
        let mut ws = stdws::tls::accept(stream, tls)?;
        let seen = echo(&mut ws)?;
        let mut rest = Vec::new();
        let end = std::io::Read::read_to_end(ws.get_mut(), &mut rest);
        Ok((seen, end.map_err(|e| e.kind())))
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.set_write_timeout(Some(LIMIT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(ca.client(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let url = format!("wss://localhost:{port}/");
    let (mut ws, _) = stdws::client(&url, &mut stream).unwrap();
    ws.send_text("x").unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("x".into()));
    // The server waits for our close_notify before it ends TCP, so this returns at the
    // deadline (the handshake is done by then): keep it short.
    let reply = ws.close_and_wait(1000, "", Duration::from_secs(2)).unwrap();
    assert_eq!(close_code(&reply), Some(1000));
    drop(ws);
    let (seen, end) = server.join().unwrap().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(end, Ok(0), "the server saw the TLS session end cleanly");
}

#[test]
fn untrusted_self_signed_certificate_is_rejected() {
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    let self_signed = names_params(&["localhost", "127.0.0.1"])
        .self_signed(&key)
        .unwrap();
    let tls = server_config(self_signed.der().clone(), &key);

    // A client that trusts the test CA, but not this certificate.
    let (port, server) = tls_echo_server(Arc::clone(&tls));
    let err = connect_wss(&format!("wss://localhost:{port}/"), ca.client()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("TLS: invalid peer certificate"), "{text}");
    // The client's alert tells the server why.
    match server.join().unwrap() {
        Err(Error::Tls(rustls::Error::AlertReceived(_))) => {}
        other => panic!("expected the client's alert, got {other:?}"),
    }

    // `tls::connect` trusts the webpki roots, which do not include it either.
    let (port, server) = tls_echo_server(tls);
    let err = stdws::tls::connect(&format!("wss://127.0.0.1:{port}/")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
    assert!(server.join().unwrap().is_err());
}

#[test]
fn certificate_for_another_host_is_rejected() {
    let ca = Ca::new();
    let tls = ca.server(&["other.example"]);
    let (port, server) = tls_echo_server(tls);
    let err = connect_wss(&format!("wss://127.0.0.1:{port}/"), ca.client()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("certificate not valid for name"),
        "{err}"
    );
    assert!(server.join().unwrap().is_err());
}

#[test]
fn tls_connect_speaks_plain_ws_too() {
    let (port, server) = serve_one(|stream| {
        let mut ws = stdws::accept(stream)?;
        echo(&mut ws)
    });
    let (mut ws, _) = stdws::tls::connect(&format!("ws://127.0.0.1:{port}/")).unwrap();
    assert!(!ws.get_ref().is_tls());
    ws.get_ref().tcp().set_read_timeout(Some(LIMIT)).unwrap();
    let sent = exchange(&mut ws);
    let reply = ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    assert_eq!(close_code(&reply), Some(1000));
    let mut seen = server.join().unwrap().unwrap();
    seen.pop();
    assert_eq!(seen, sent);
}

#[test]
fn tls_handshake_is_bounded_by_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);

    // A server that accepts TCP and never answers the ClientHello.
    let (port, server) = serve_one(|mut stream| {
        let mut sink = [0; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    let err = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .handshake_timeout(Some(timeout))
        .connect_tls()
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::TimedOut)),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(server);

    // A client that connects and never starts TLS.
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| {
        let start = Instant::now();
        let config = Config::default().handshake_timeout(Some(timeout));
        let result = stdws::tls::accept_with(stream, tls, config, |_, _| Ok(()));
        (result.map(drop), start.elapsed())
    });
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (result, took) = server.join().unwrap();
    assert!(
        matches!(result, Err(Error::Handshake(HandshakeError::TimedOut))),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn plain_websocket_client_is_refused_by_a_tls_server() {
    let ca = Ca::new();
    let (port, server) = tls_echo_server(ca.server(&["localhost"]));
    let client = ClientBuilder::new(format!("ws://127.0.0.1:{port}/"))
        .handshake_timeout(Some(LIMIT))
        .connect();
    assert!(client.is_err());
    match server.join().unwrap() {
        Err(Error::Tls(_)) => {}
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn tls_end_without_close_frame_is_an_abnormal_closure() {
    // A server that drops the connection after the handshake: no close frame and no
    // close_notify. Like a plain TCP end, the client reports an abnormal closure.
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| stdws::tls::accept(stream, tls).map(drop));
    let mut ws = connect_wss(&format!("wss://localhost:{port}/"), ca.client()).unwrap();
    server.join().unwrap().unwrap();
    assert!(matches!(ws.read(), Err(Error::AbnormalClosure)));
    assert!(matches!(ws.read(), Err(Error::AlreadyClosed)));
}

/// A numbered message of `len` bytes from `side`, its payload derived from the number.
fn numbered(side: u8, i: u32, len: usize) -> Message {
    let mut data: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8 ^ side).collect();
    data[..4].copy_from_slice(&i.to_be_bytes());
    Message::Binary(data)
}

/// Both ends of a `wss://` connection split, both flooding each other at once (the reader
/// never waits for a writer blocked on a full socket, so neither side deadlocks), every
/// message intact and in order; then the closing handshake from the server's reading half,
/// with TLS close_notify.
#[test]
fn split_wss_connections_flood_each_other_without_deadlock() {
    const COUNT: u32 = 300;
    const LEN: usize = 40_000; // several TLS records each; far more than the socket buffers
    let ca = Ca::new();
    let tls = ca.server(&["localhost"]);
    let (port, server) = serve_one(move |stream| -> stdws::Result<()> {
        let ws = stdws::tls::accept(stream, tls)?;
        let (mut reader, writer) = ws.split()?;
        assert!(writer.socket().is_some(), "the TCP socket is reachable");
        let sender = thread::spawn(move || -> stdws::Result<()> {
            for i in 0..COUNT {
                writer.send(numbered(1, i, LEN))?;
            }
            Ok(())
        });
        for i in 0..COUNT {
            let got = reader.read()?;
            assert!(got == numbered(2, i, LEN), "server: message {i} differs");
        }
        sender.join().unwrap()?;
        let frame = reader.close_and_wait(1000, "done", LIMIT)?;
        assert_eq!(close_code(&frame), Some(1000));
        Ok(())
    });
    let ws = connect_wss(&format!("wss://localhost:{port}/"), ca.client()).unwrap();
    let (mut reader, writer) = ws.split().unwrap();
    let sender = thread::spawn(move || -> stdws::Result<()> {
        for i in 0..COUNT {
            writer.send(numbered(2, i, LEN))?;
        }
        Ok(())
    });
    for i in 0..COUNT {
        let got = reader.read().unwrap();
        assert!(got == numbered(1, i, LEN), "client: message {i} differs");
    }
    sender.join().unwrap().unwrap();
    // The server closes: the reader answers it and sees the clean end.
    loop {
        match reader.read() {
            Ok(Message::Close(frame)) => assert_eq!(close_code(&frame), Some(1000)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(Error::ConnectionClosed(_)) => break,
            Err(e) => panic!("client: {e}"),
        }
    }
    server.join().unwrap().unwrap();
}
