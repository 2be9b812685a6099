//! The client through real proxies: tinyproxy (HTTP CONNECT) and dante (SOCKS5), started on
//! 127.0.0.1 by `tests/proxy/run`, which installs them if missing and passes their URLs in
//! environment variables. The tests are `#[ignore]`d so that a plain `cargo test` (without
//! the proxies) skips them; the script runs them with `--ignored`.
//!
//! - `STDWS_HTTP_PROXY`: tinyproxy without authentication;
//! - `STDWS_HTTP_PROXY_AUTH`: tinyproxy with Basic authentication, its URL with the right
//!   credentials;
//! - `STDWS_HTTP_PROXY_443`: tinyproxy that allows CONNECT to port 443 only (403 otherwise);
//! - `STDWS_SOCKS_PROXY`: dante without authentication;
//! - `STDWS_SOCKS_PROXY_AUTH`: dante with username/password, its URL with the right ones.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{echo, serve};
use stdws::{ClientBuilder, Error, Message, ProxyError, WebSocket};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/proxy/run"))
}

/// `url` with the password replaced by `pass` (or the credentials removed if `None`).
fn with_password(url: &str, pass: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').expect("URL with credentials");
    let user = userinfo.split(':').next().unwrap();
    match pass {
        Some(pass) => format!("{scheme}://{user}:{pass}@{host}"),
        None => format!("{scheme}://{host}"),
    }
}

/// The port of a proxy URL.
fn port_of(proxy: &str) -> u16 {
    proxy
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Sends a text message and expects it back.
fn round_trip<S: std::io::Read + std::io::Write>(ws: &mut WebSocket<S>, text: &str) {
    ws.send_text(text).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text(text.into()));
}

fn set_timeout(ws: &WebSocket<TcpStream>) {
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
}

/// Connects to a fresh echo server on 127.0.0.1 through `proxy`, with `host` in the URL.
fn echo_through(proxy: &str, host: &str) {
    let server = serve(1, echo);
    let url = format!("ws://{host}:{}/through", server.addr.port());
    let (mut ws, response) = ClientBuilder::new(url.clone())
        .proxy(proxy)
        .connect()
        .unwrap_or_else(|e| panic!("through {proxy}: {e}"));
    assert_eq!(response.url(), Some(url.as_str()));
    // The socket is the proxy's.
    assert_eq!(ws.get_ref().peer_addr().unwrap().port(), port_of(proxy));
    set_timeout(&ws);
    round_trip(&mut ws, "through the proxy");
    ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    server.join().pop().unwrap().unwrap();
}

fn proxy_error(proxy: &str, port: u16) -> ProxyError {
    match ClientBuilder::new(format!("ws://127.0.0.1:{port}/"))
        .proxy(proxy)
        .connect()
    {
        Err(Error::Proxy(e)) => e,
        Err(other) => panic!("expected a proxy error from {proxy}, got {other:?}"),
        Ok(_) => panic!("{proxy} let the connection through"),
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs tinyproxy: tests/proxy/run"]
fn http_connect_without_auth() {
    let proxy = var("STDWS_HTTP_PROXY");
    echo_through(&proxy, "127.0.0.1");
    // The proxy resolves the name.
    echo_through(&proxy, "localhost");
    // Nothing listens: tinyproxy answers with a 5xx, which a reconnecting client retries.
    let e = proxy_error(&proxy, dead_port());
    assert!(e.is_transient(), "{e:?}");
    assert!(
        matches!(
            e,
            ProxyError::Refused {
                status: 500..=599,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
#[ignore = "needs tinyproxy: tests/proxy/run"]
fn http_connect_with_basic_auth() {
    let proxy = var("STDWS_HTTP_PROXY_AUTH");
    echo_through(&proxy, "127.0.0.1");
    // No credentials: 407.
    let e = proxy_error(&with_password(&proxy, None), dead_port());
    assert!(
        matches!(e, ProxyError::Refused { status: 407, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("407"), "{e}");
    assert!(e.to_string().contains("credentials"), "{e}");
    assert!(!e.is_transient());
    // Wrong ones: tinyproxy 1.11 says 401 (RFC 9110 would have 407 again).
    let e = proxy_error(&with_password(&proxy, Some("wrong")), dead_port());
    assert!(
        matches!(
            e,
            ProxyError::Refused {
                status: 401 | 407,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("credentials"), "{e}");
    assert!(!e.is_transient());
}

#[test]
#[ignore = "needs tinyproxy: tests/proxy/run"]
fn http_connect_forbidden_destination() {
    let proxy = var("STDWS_HTTP_PROXY_443");
    let server = serve(1, |_stream| ());
    let e = proxy_error(&proxy, server.addr.port());
    assert!(
        matches!(e, ProxyError::Refused { status: 403, .. }),
        "{e:?}"
    );
    // Unblock the server thread, which waits for one connection.
    drop(TcpStream::connect(server.addr));
    server.join();
}

#[test]
#[ignore = "needs dante-server: tests/proxy/run"]
fn socks5_without_auth() {
    let proxy = var("STDWS_SOCKS_PROXY");
    echo_through(&proxy, "127.0.0.1");
    // A name: resolved by the proxy (address type 3).
    echo_through(&proxy, "localhost");
    echo_through(&proxy.replace("socks5://", "socks5h://"), "localhost");
    let e = proxy_error(&proxy, dead_port());
    assert_eq!(e, ProxyError::SocksRefused(5));
    assert!(e.is_transient());
}

#[test]
#[ignore = "needs dante-server: tests/proxy/run"]
fn socks5_with_username_and_password() {
    let proxy = var("STDWS_SOCKS_PROXY_AUTH");
    echo_through(&proxy, "127.0.0.1");
    let e = proxy_error(&with_password(&proxy, Some("wrong")), dead_port());
    assert_eq!(e, ProxyError::SocksAuthFailed);
    let e = proxy_error(&with_password(&proxy, None), dead_port());
    assert_eq!(e, ProxyError::SocksNoAcceptableMethod);
    assert!(!e.is_transient());
}

#[test]
#[ignore = "needs tinyproxy: tests/proxy/run"]
fn proxy_from_env_and_no_proxy() {
    // The only test in this binary that touches the environment.
    let proxy = var("STDWS_HTTP_PROXY");
    std::env::set_var("http_proxy", &proxy);
    std::env::remove_var("no_proxy");
    std::env::remove_var("NO_PROXY");
    let server = serve(1, echo);
    let (mut ws, _) = ClientBuilder::new(server.url("/"))
        .proxy_from_env()
        .connect()
        .unwrap();
    assert_eq!(ws.get_ref().peer_addr().unwrap().port(), port_of(&proxy));
    set_timeout(&ws);
    round_trip(&mut ws, "env");
    ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    server.join();

    // A proxy that does not exist: used, so the connect fails...
    std::env::set_var("http_proxy", format!("http://127.0.0.1:{}", dead_port()));
    let server_port = dead_port();
    let e = ClientBuilder::new(format!("ws://127.0.0.1:{server_port}/"))
        .proxy_from_env()
        .connect()
        .unwrap_err();
    assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused));
    // ...unless NO_PROXY lists the host, and then the server is reached directly.
    std::env::set_var("NO_PROXY", "example.com,127.0.0.1");
    let server = serve(1, echo);
    let (mut ws, _) = ClientBuilder::new(server.url("/"))
        .proxy_from_env()
        .connect()
        .unwrap();
    assert_eq!(ws.get_ref().peer_addr().unwrap(), server.addr);
    set_timeout(&ws);
    round_trip(&mut ws, "direct");
    ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
    server.join();
    std::env::remove_var("http_proxy");
    std::env::remove_var("NO_PROXY");
}

#[cfg(feature = "rustls")]
mod tls {
    use super::*;
    use std::sync::Arc;

    use common::tls_pair;

    fn wss_through(proxy: &str) {
        let (server_config, client_config) = tls_pair();
        let server = serve(1, move |stream| {
            let mut ws = stdws::tls::accept(stream, Arc::clone(&server_config)).unwrap();
            common::echo_ws(&mut ws)
        });
        let url = format!("wss://localhost:{}/secure", server.addr.port());
        let (mut ws, _) = ClientBuilder::new(url)
            .proxy(proxy)
            .tls_config(client_config)
            .connect_tls()
            .unwrap_or_else(|e| panic!("wss through {proxy}: {e}"));
        assert!(ws.get_ref().is_tls());
        ws.get_ref()
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        round_trip(&mut ws, "encrypted through the tunnel");
        ws.close_and_wait(1000, "", Duration::from_secs(5)).unwrap();
        server.join();
    }

    #[test]
    #[ignore = "needs tinyproxy and dante-server: tests/proxy/run"]
    fn wss_through_both_proxies() {
        wss_through(&var("STDWS_HTTP_PROXY"));
        wss_through(&var("STDWS_HTTP_PROXY_AUTH"));
        wss_through(&var("STDWS_SOCKS_PROXY"));
        wss_through(&var("STDWS_SOCKS_PROXY_AUTH"));
    }
}
