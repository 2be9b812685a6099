//! Opening the TCP connection of a client: name resolution, then every address the host
//! resolves to, IPv6 and IPv4 taking turns (RFC 8305 §4), within one overall connect
//! timeout.
//!
//! Each attempt gets an equal share of the time that is left (the timeout divided by the
//! addresses still to try), so an address that swallows SYNs cannot use up the time of the
//! ones after it, and an address that refuses at once leaves its share to the next.
//!
//! Through a proxy, the connection goes to the proxy's addresses, and then the proxy's
//! protocol (`proxy/http_connect.rs`, `proxy/socks5.rs`) opens the tunnel to the server,
//! all by the same deadline.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::http;
use crate::proxy::{http_connect, socks5, ProxyError, ProxyKind, ProxyUrl};
use crate::url::UrlError;

/// Resolves `host` and connects to one of its addresses on `port` by `deadline` (`None`:
/// each attempt waits as long as the operating system lets it).
pub(crate) fn connect_host(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(Error::Resolve)?
        .collect();
    if addrs.is_empty() {
        return Err(UrlError::NoAddress.into());
    }
    connect_any(&interleave(addrs), deadline).map_err(Error::Io)
}

/// Connects to `proxy` and has it open a tunnel to `host:port`, all by `deadline`. The
/// stream returned carries the server's bytes from its first byte.
pub(crate) fn connect_via(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<TcpStream, Error> {
    let mut stream = connect_host(&proxy.host, proxy.port, deadline)?;
    let credentials = proxy
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    let io = Conversation {
        stream: &mut stream,
        deadline,
    };
    match proxy.kind {
        ProxyKind::Http => http_tunnel(io, host, port, credentials)?,
        ProxyKind::Socks5 => socks5_tunnel(io, host, port, credentials)?,
    }
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(stream)
}

/// The proxy's socket, each read and write bounded by the deadline.
struct Conversation<'a> {
    stream: &'a mut TcpStream,
    deadline: Option<Instant>,
}

impl Conversation<'_> {
    /// Sets the time left as the socket's timeouts; fails once it is over.
    fn arm(&mut self) -> io::Result<()> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            self.stream.set_read_timeout(Some(left))?;
            self.stream.set_write_timeout(Some(left))?;
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.arm()?;
        self.stream.write_all(bytes).map_err(timeouts)
    }

    /// Reads exactly `buf.len()` bytes; the proxy closing first is `UnexpectedEof`.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.arm()?;
        self.stream.read_exact(buf).map_err(timeouts)
    }
}

fn timed_out() -> io::Error {
    io::Error::new(ErrorKind::TimedOut, "the proxy did not answer in time")
}

/// A read timeout is a timeout whatever kind the platform gives it.
fn timeouts(e: io::Error) -> io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        timed_out()
    } else {
        e
    }
}

/// HTTP `CONNECT`: the request, then the answer head read byte by byte (nothing after it
/// may be taken from the stream: that is the server's), then its check.
fn http_tunnel(
    mut io: Conversation<'_>,
    host: &str,
    port: u16,
    credentials: Option<(&str, &str)>,
) -> Result<(), Error> {
    io.send(&http_connect::request(host, port, credentials))?;
    let mut head = Vec::with_capacity(256);
    let mut scan = http::HeadScan::default();
    loop {
        let mut byte = [0u8];
        io.recv(&mut byte)?;
        head.push(byte[0]);
        if http::find_head_end(&head, &mut scan).is_some() {
            break;
        }
        if head.len() >= http_connect::MAX_HEAD {
            return Err(ProxyError::Malformed("answer head too large").into());
        }
    }
    Ok(http_connect::check_response(&head)?)
}

/// SOCKS5: greeting, credentials if asked, CONNECT with the host's name, the reply.
fn socks5_tunnel(
    mut io: Conversation<'_>,
    host: &str,
    port: u16,
    credentials: Option<(&str, &str)>,
) -> Result<(), Error> {
    // Checked before anything is sent.
    let connect = socks5::connect_request(host, port)?;
    let auth = credentials
        .map(|(user, pass)| socks5::auth_request(user, pass))
        .transpose()?;
    io.send(&socks5::greeting(auth.is_some()))?;
    let mut reply = [0u8; 2];
    io.recv(&mut reply)?;
    if socks5::check_method(reply, auth.is_some())? == socks5::Method::Password {
        io.send(auth.as_deref().unwrap_or_default())?;
        io.recv(&mut reply)?;
        socks5::check_auth(reply)?;
    }
    io.send(&connect)?;
    let mut head = [0u8; 5];
    io.recv(&mut head)?;
    let mut rest = vec![0u8; socks5::reply_rest(head)?];
    socks5::check_reply(head)?;
    io.recv(&mut rest)?;
    Ok(())
}

/// Tries `addrs` in order until one connects, each attempt with an equal share of the time
/// left before `deadline`. Returns the last attempt's error if none does.
pub(crate) fn connect_any(
    addrs: &[SocketAddr],
    deadline: Option<Instant>,
) -> io::Result<TcpStream> {
    let mut last = io::Error::new(ErrorKind::InvalidInput, "no address to connect to");
    for (i, addr) in addrs.iter().enumerate() {
        let attempt = match deadline {
            None => TcpStream::connect(addr),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
                if share < Duration::from_millis(1) {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("connect timed out before {addr} could be tried"),
                    ));
                }
                TcpStream::connect_timeout(addr, share)
            }
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last)
}

/// Orders addresses so that the two families take turns, starting with the family of the
/// first one (the resolver's preference), each family in the resolver's order.
pub(crate) fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (mut first, mut second): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(first.len() + second.len());
    first.reverse();
    second.reverse();
    loop {
        match (first.pop(), second.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_take_turns() {
        let got = interleave(vec![
            a("[::1]:1"),
            a("[::2]:1"),
            a("[::3]:1"),
            a("1.0.0.1:1"),
        ]);
        assert_eq!(
            got,
            [a("[::1]:1"), a("1.0.0.1:1"), a("[::2]:1"), a("[::3]:1")]
        );
        let got = interleave(vec![a("1.0.0.1:1"), a("1.0.0.2:1"), a("[::1]:1")]);
        assert_eq!(got, [a("1.0.0.1:1"), a("[::1]:1"), a("1.0.0.2:1")]);
        assert!(interleave(Vec::new()).is_empty());
    }

    /// A port on 127.0.0.1 where nothing listens (bound, then released).
    fn refused_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn a_refused_address_falls_through_to_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        let stream = connect_any(&[refused_port(), live], deadline).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live);
        let e = connect_any(&[refused_port(), refused_port()], deadline).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    }

    /// A listener whose accept queue is full (nothing accepts): the kernel drops further
    /// SYNs, so a connect to it hangs as to an address that swallows packets. Returns it
    /// and the connections that fill it.
    fn black_hole() -> (TcpListener, Vec<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..5000 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => held.push(stream),
                Err(e) if e.kind() == ErrorKind::TimedOut => return (listener, held),
                Err(e) => panic!("filling the accept queue: {e}"),
            }
        }
        panic!("the accept queue never filled");
    }

    #[test]
    fn a_silent_address_gets_only_its_share_of_the_timeout() {
        let (hole, _held) = black_hole();
        let silent = hole.local_addr().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        // Two addresses, 2 s: the silent one gets 1 s, then the live one connects.
        let start = Instant::now();
        let deadline = Some(start + Duration::from_secs(2));
        let stream = connect_any(&[silent, live], deadline).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_millis(1800), "{took:?}");
        // Only silent addresses: the whole connect ends at the deadline, not after 2 x 1 s.
        let start = Instant::now();
        let e = connect_any(&[silent, silent], Some(start + Duration::from_secs(1))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_past_deadline_times_out_without_trying() {
        let e = connect_any(&[refused_port()], Some(Instant::now())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn resolution_failures_are_typed() {
        let e = connect_host("no-such-host.invalid", 80, None).unwrap_err();
        assert!(matches!(e, Error::Resolve(_)), "{e:?}");
    }
}
