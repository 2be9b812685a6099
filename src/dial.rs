//! Opening the TCP connection of a client: name resolution, then every address the host
//! resolves to, IPv6 and IPv4 taking turns (RFC 8305 §4), within one overall connect
//! timeout.
//!
//! Each attempt gets an equal share of the time that is left (the timeout divided by the
//! addresses still to try), so an address that swallows SYNs cannot use up the time of the
//! ones after it, and an address that refuses at once leaves its share to the next.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::Error;
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
